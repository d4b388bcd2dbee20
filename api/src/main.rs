//! `courser-api [serve]` runs the API; `courser-api migrate` applies the migrations.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use courser_api::{Application, Config, MIGRATOR, startup};
use tracing_subscriber::EnvFilter;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(version, about = "The Courser reviews API")]
struct Cli {
    /// A TOML configuration file; `COURSER_*` environment variables override it.
    #[arg(long, env = "COURSER_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::extract(cli.config.as_deref()).context("invalid configuration")?;
    init_logging(config.log_json);
    let command = cli.command.unwrap_or(Command::Serve);
    // Checked before the runtime exists, since serving sizes it from the configuration.
    let threads = match command {
        Command::Serve => {
            config.validate().context("invalid configuration")?;
            config.worker_threads
        }
        Command::Migrate => 1,
    };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .context("cannot start the runtime")?
        .block_on(run(command, config))
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Migrate => {
            let db = startup::connect(&config).await?;
            MIGRATOR.run(&db).await.context("migration failed")?;
            tracing::info!("migrations applied");
        }
        Command::Serve => {
            let app = Application::build(&config).await?;
            tracing::info!(listen = %app.local_addr()?, "courser-api serving");
            app.run_until_stopped(shutdown_signal()).await?;
            tracing::info!("courser-api stopped");
        }
    }
    Ok(())
}

fn init_logging(json: bool) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Ctrl-C or SIGTERM: stop accepting, finish what is in flight.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
