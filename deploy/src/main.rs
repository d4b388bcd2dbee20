//! `courser`: runs the Courser stack on this machine (`up`, `down`, `status`, `env`),
//! loads demo and benchmark data (`seed`) and checks it (`verify`); `load` runs the load
//! generator beside it; `chaos` runs the fault suite against it.

use std::ffi::OsString;
use std::os::unix::process::CommandExt as _;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use courser::layout::Layout;
use courser::stack::{self, UpOptions};
use courser::{api, binaries, chaos, postgres, seed};

/// After `courser seed --reset` into a database that is not the stack's own.
const OTHER_DATABASE_RELOADED: &str = "api instances serving this database keep cached pages of the earlier data until their cache TTLs run out (COURSER_CACHE_LOCAL_TTL_MS, COURSER_CACHE_REDIS_TTL_MS): restart them and empty their Redis to serve the new data at once";

#[derive(Debug, Parser)]
#[command(version, about = "Runs the Courser stack on this machine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start Postgres (installing it if needed), migrate, load demo data into an empty
    /// database, and start four api instances on 127.0.0.1:3001–3004.
    Up {
        /// Only Postgres and the empty `courser` database (what the tests need).
        #[arg(long)]
        only_services: bool,
    },
    /// Stop the apis and Postgres.
    Down,
    /// One line per process; exits non-zero if anything is down.
    Status,
    /// Empty the stack's Redis and restart its api instances (which empties their
    /// in-process tiers), so that nothing cached before is served: a cold start.
    ForgetCache,
    /// Print `export` lines: `eval "$(courser env)"`.
    Env,
    /// Generate a deterministic data set and load it with parallel binary COPY, then
    /// build the indexes and keys and analyze. Refuses a database holding data unless
    /// `--reset`; loads again over an earlier load that did not finish.
    Seed {
        /// Fraction of the full data set (10M courses, 10M reviewers, 150M reviews).
        #[arg(long, default_value_t = seed::DEFAULT_SCALE)]
        scale: f64,
        /// Random seed; the same seed and scale give the same data.
        #[arg(long, default_value_t = seed::DEFAULT_SEED)]
        seed: u64,
        /// Database to load (default: the local stack's `courser` database).
        #[arg(long, env = "COURSER_DATABASE_URL")]
        database_url: Option<String>,
        /// Empty ratings, reviewers and reviews first if they hold data.
        #[arg(long)]
        reset: bool,
        /// Reviewer generator threads and index builds at once (default: the number of
        /// cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Memory for each index build's sort (Postgres `maintenance_work_mem`).
        #[arg(long, default_value = "2GB")]
        index_memory: String,
    },
    /// Check that every course's rating aggregate and every reviewer's review count
    /// match the reviews; exits non-zero on any mismatch or an unfinished load.
    Verify {
        /// Check this many random courses and reviewers instead of all of them.
        #[arg(long)]
        sample: Option<u64>,
        /// Database to check (default: the local stack's `courser` database).
        #[arg(long, env = "COURSER_DATABASE_URL")]
        database_url: Option<String>,
    },
    /// The fault suite: run W3 through the proxy, inject each fault (cases 1–7 of
    /// issue 8), and judge client errors, p99, recovery and lost or stale writes. Starts
    /// whatever of the stack is not running.
    Chaos {
        /// Cases to run, comma-separated (default: all): 1 kill -9 an api, 2 rolling
        /// restart, 3 Redis down, 4 Postgres down, 5 slow Postgres and Redis, 6 proxy
        /// graceful upgrade, 7 slowloris and a client over its rate limit.
        #[arg(long, value_delimiter = ',')]
        case: Vec<u8>,
        /// Requests/s of the load.
        #[arg(long, default_value_t = 1000.0)]
        rate: f64,
        /// Seconds of load after each fault is undone (the recovery window).
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// The seeder's --scale of the stack's data (the ids the load draws).
        #[arg(long, default_value_t = seed::DEFAULT_SCALE)]
        scale: f64,
        /// Write the summary (command, conditions, table) to this file, e.g. RELIABILITY.md.
        #[arg(long)]
        report: Option<std::path::PathBuf>,
    },
    /// Run the load generator `courser-load` (built beside this binary) with these
    /// arguments: `courser load --help` shows its own.
    #[command(disable_help_flag = true)]
    Load {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
}

/// Empties the stack's caches; looks for the api binary only when an instance runs.
async fn forget_cached_data(layout: &Layout, database_url: &str) -> anyhow::Result<Option<String>> {
    stack::forget_cached_data(layout, || binaries::find(api::PROGRAM), database_url).await
}

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    if let Command::Load { args } = cli.command {
        let bin = binaries::find("courser-load")?;
        let err = std::process::Command::new(&bin).args(args).exec();
        return Err(err).with_context(|| format!("cannot run {}", bin.display()));
    }
    let layout = Layout::from_env()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        match cli.command {
            Command::Up { only_services } => {
                stack::up(&layout, UpOptions { only_services }).await?
            }
            Command::Down => stack::down(&layout).await?,
            Command::Status => return stack::status(&layout).await,
            Command::ForgetCache => {
                match forget_cached_data(&layout, &layout.database_url()).await? {
                    Some(done) => println!("{done}"),
                    None => println!("the stack is not running: nothing is cached"),
                }
            }
            Command::Env => stack::print_out(&stack::env(&layout))?,
            Command::Chaos {
                case,
                rate,
                seconds,
                scale,
                report,
            } => {
                stack::up(&layout, UpOptions::default()).await?;
                let passed = chaos::cli::run(&layout, &case, rate, seconds, scale, report).await?;
                if !passed {
                    return Ok(ExitCode::FAILURE);
                }
            }
            // Replaced this process above, before any runtime started.
            Command::Load { .. } => {}
            Command::Seed {
                scale,
                seed,
                database_url,
                reset,
                threads,
                index_memory,
            } => {
                let spec = seed::Spec::from_scale(scale, seed)?;
                let url = database_url.unwrap_or_else(|| layout.database_url());
                let defaults = seed::Options::new(reset);
                let options = seed::Options {
                    threads: threads.unwrap_or(defaults.threads),
                    index_memory,
                    ..defaults
                };
                println!(
                    "generating and loading {spec} ({} threads)",
                    options.threads
                );
                println!("{}", seed::load(&url, &spec, &options).await?);
                if url == layout.database_url() {
                    if let Some(done) = forget_cached_data(&layout, &url).await? {
                        println!("{done}");
                    }
                } else if reset {
                    println!("{OTHER_DATABASE_RELOADED}");
                }
            }
            Command::Verify {
                sample,
                database_url,
            } => {
                let url = database_url.unwrap_or_else(|| layout.database_url());
                let mut conn = postgres::connect(&url).await?;
                let report = seed::verify(&mut conn, sample).await?;
                println!("{report}");
                if !report.is_ok() {
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
