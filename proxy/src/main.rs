//! `courser-proxy`: reads its settings, builds the Pingora server and runs it until
//! SIGTERM (graceful), SIGINT (fast) or SIGQUIT (graceful upgrade).

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use courser_proxy::telemetry::Output;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The Courser load balancer.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// TOML configuration file; `COURSER_PROXY_*` environment variables override it.
    #[arg(long, env = "COURSER_PROXY_CONFIG")]
    config: Option<PathBuf>,
    /// Take the listening sockets over from a running instance (graceful upgrade).
    #[arg(long)]
    upgrade: bool,
    /// Write the log (and the access log) to this file instead of stdout, kept bounded:
    /// see `--log-max-bytes`.
    #[arg(long, env = "COURSER_PROXY_LOG_FILE")]
    log_file: Option<PathBuf>,
    /// Once the log file holds this many bytes it becomes `<file>.1`, replacing the
    /// previous one, and a new file begins. At least 1 (0 would keep one batch of lines).
    #[arg(
        long,
        env = "COURSER_PROXY_LOG_MAX_BYTES",
        default_value_t = 256 << 20,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    log_max_bytes: u64,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let log = match cli.log_file {
        Some(path) => Output::File {
            path,
            max_bytes: cli.log_max_bytes,
        },
        None => Output::Stdout,
    };
    courser_proxy::telemetry::init(&log).context("cannot open the log file")?;
    let settings =
        courser_proxy::Settings::load(cli.config.as_deref()).context("invalid configuration")?;
    tracing::info!(
        listen = %settings.listen,
        metrics_listen = %settings.metrics_listen,
        backends = settings.backends.len(),
        "courser-proxy starting"
    );
    let server = courser_proxy::build(settings, cli.upgrade).context("building the server")?;
    server.run_forever()
}
