//! `courser-proxy`: reads its settings, builds the Pingora server and runs it until
//! SIGTERM (graceful), SIGINT (fast) or SIGQUIT (graceful upgrade).

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    courser_proxy::telemetry::init();
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
