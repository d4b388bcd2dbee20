//! `courser chaos`: the fault suite of issue 8. Each fault runs W3 (or, for the slow
//! dependencies, cached reads) through the proxy with `courser-load`, injects the fault
//! at a fixed second, undoes it, and judges the per-second series and the write checker:
//! client errors, p99 during and after, recovery time, lost and stale writes.
//!
//! One file per fault; `summary` turns a run into a table row and RELIABILITY.md.

mod abuse;
mod api_kill;
pub mod cli;
mod load;
mod metrics;
mod postgres_outage;
mod proxy_upgrade;
mod redis_outage;
mod rolling;
mod slow;
pub mod summary;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;

use crate::binaries;
use crate::layout::Layout;
pub use load::{LoadResult, LoadRun, LoadSpec};
pub use summary::{Expect, Row, Window};

/// The stack under test and the programs the suite runs.
#[derive(Debug, Clone)]
pub struct Stack {
    pub layout: Layout,
    /// The database the apis use (restarted instances get the same).
    pub database_url: String,
    pub api_key_file: PathBuf,
    pub api_bin: PathBuf,
    pub proxy_bin: PathBuf,
    pub load_bin: PathBuf,
    pub redis_bin: PathBuf,
    /// `courser-load` flags naming the data set (e.g. `--scale 0.0001`).
    pub dataset: Vec<String>,
}

impl Stack {
    /// The stack `courser up` runs in this layout, its data set seeded at `scale`.
    pub fn local(layout: &Layout, scale: f64) -> anyhow::Result<Self> {
        Ok(Self {
            layout: layout.clone(),
            database_url: layout.database_url(),
            api_key_file: layout.api_key_file(),
            api_bin: binaries::find(crate::api::PROGRAM)?,
            proxy_bin: binaries::find(crate::proxy::PROGRAM)?,
            load_bin: binaries::find("courser-load")?,
            redis_bin: crate::redis::ensure_installed()?,
            dataset: vec!["--scale".into(), scale.to_string()],
        })
    }

    /// The api write key, as the apis were started with it.
    pub fn api_key(&self) -> anyhow::Result<String> {
        Ok(std::fs::read_to_string(&self.api_key_file)?
            .trim()
            .to_owned())
    }

    pub fn proxy_url(&self) -> String {
        format!("http://{}", self.layout.proxy_listen)
    }
}

/// One fault the suite can inject; case 5 is two of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    KillApi,
    RollingRestart,
    RedisDown,
    PostgresDown,
    SlowPostgres,
    SlowRedis,
    ProxyUpgrade,
    Abuse,
}

impl Fault {
    /// The faults of the case `n` (1–7).
    pub fn of_case(n: u8) -> anyhow::Result<Vec<Self>> {
        Ok(match n {
            1 => vec![Self::KillApi],
            2 => vec![Self::RollingRestart],
            3 => vec![Self::RedisDown],
            4 => vec![Self::PostgresDown],
            5 => vec![Self::SlowPostgres, Self::SlowRedis],
            6 => vec![Self::ProxyUpgrade],
            7 => vec![Self::Abuse],
            _ => bail!("case {n}: there are cases 1 to 7"),
        })
    }

    fn label(self) -> &'static str {
        match self {
            Self::KillApi => "1. kill -9 one api, restart it",
            Self::RollingRestart => "2. rolling restart of the apis",
            Self::RedisDown => "3. Redis killed, then back",
            Self::PostgresDown => "4. Postgres stopped, then back",
            Self::SlowPostgres => "5a. slow Postgres (reviews locked)",
            Self::SlowRedis => "5b. slow Redis (CLIENT PAUSE)",
            Self::ProxyUpgrade => "6. proxy graceful upgrade",
            Self::Abuse => "7. slowloris + one client over its limit",
        }
    }

    /// How long the fault lasts by default, seconds.
    fn default_length(self) -> f64 {
        match self {
            Self::KillApi => 5.0,
            Self::RollingRestart => 16.0,
            Self::RedisDown => 30.0,
            Self::PostgresDown | Self::SlowPostgres | Self::SlowRedis => 10.0,
            Self::ProxyUpgrade => 2.0,
            Self::Abuse => 15.0,
        }
    }
}

/// How each fault is run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Requests/s of the load.
    pub rate: f64,
    /// The load's warm-up ramp.
    pub warmup: Duration,
    /// Steady load before the fault (the baseline).
    pub lead: Duration,
    /// How long the fault lasts, instead of each fault's own length (tests shorten it).
    pub length: Option<Duration>,
    /// Load after the fault is undone (the recovery window).
    pub after: Duration,
    /// Where load results and scenario files go.
    pub out_dir: PathBuf,
}

/// When a fault is due, and how long it should last.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Seconds into the load run.
    pub fault_at: f64,
    pub length: Duration,
    /// When the load run ends, seconds.
    pub end: f64,
}

/// What a fault did: when, what the clients should have seen, and what it found itself.
#[derive(Debug, Clone)]
pub struct Injected {
    pub window: Window,
    pub expect: Expect,
    /// Facts the fault measured itself (hit ratios, 429s, …), for the report.
    pub notes: Vec<String>,
    /// Targets of its own that it missed.
    pub failures: Vec<String>,
}

/// Runs one fault under load and judges it.
pub async fn run_fault(stack: &Stack, fault: Fault, options: &Options) -> anyhow::Result<Row> {
    let length = options
        .length
        .unwrap_or(Duration::from_secs_f64(fault.default_length()));
    let warmup = options.warmup.as_secs_f64();
    let fault_at = warmup + options.lead.as_secs_f64();
    let duration = options.lead + length + options.after;
    let plan = Plan {
        fault_at,
        length,
        end: warmup + duration.as_secs_f64(),
    };
    let mut spec = LoadSpec {
        bin: stack.load_bin.clone(),
        url: stack.proxy_url(),
        api_key_file: stack.api_key_file.clone(),
        rate: options.rate,
        warmup: options.warmup,
        duration,
        workload: vec!["--workload".into(), "w3".into()],
        dataset: stack.dataset.clone(),
        out_dir: options.out_dir.clone(),
        source_addresses: Vec::new(),
    };
    if fault == Fault::Abuse {
        spec.source_addresses = abuse::load_sources();
    }
    if matches!(fault, Fault::SlowPostgres | Fault::SlowRedis) {
        // Cached reads only: a small hot set of course pages that the warm-up caches.
        spec.workload = slow::cached_reads_scenario(&options.out_dir)?;
    }
    let name = format!("{fault:?}").to_lowercase();
    println!(
        "{}: load {} req/s for {:.0} s",
        fault.label(),
        options.rate,
        plan.end
    );
    let load = LoadRun::start(&spec, &name)?;
    let injected = match fault {
        Fault::KillApi => api_kill::run(stack, &load, &plan).await,
        Fault::RollingRestart => rolling::run(stack, &load, &plan).await,
        Fault::RedisDown => redis_outage::run(stack, &load, &plan).await,
        Fault::PostgresDown => postgres_outage::run(stack, &load, &plan).await,
        Fault::SlowPostgres => slow::postgres(stack, &load, &plan).await,
        Fault::SlowRedis => slow::redis(stack, &load, &plan).await,
        Fault::ProxyUpgrade => proxy_upgrade::run(stack, &load, &plan).await,
        Fault::Abuse => abuse::run(stack, &load, &plan, options.rate).await,
    }?;
    let result = load.finish().await?;
    let row = Row::judge(fault.label(), warmup, &injected, &result);
    println!("{}", row.line());
    Ok(row)
}

/// Runs the faults in order; a fault that cannot be run stops the suite (the stack may
/// be left broken), a fault that misses its target does not.
pub async fn run_all(
    stack: &Stack,
    faults: &[Fault],
    options: &Options,
) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for &fault in faults {
        rows.push(run_fault(stack, fault, options).await?);
        // Let the stack settle (drained old proxies, refilled caches) before the next.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    Ok(rows)
}
