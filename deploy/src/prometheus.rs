//! Prometheus on 127.0.0.1:9090, scraping the proxy and every api instance with the
//! config and rules in `dashboards/` (read in place: the rule paths are relative to it).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::binaries;
use crate::layout::{self, Layout};
use crate::process::Managed;

pub const PROGRAM: &str = "prometheus";
pub const LISTEN: &str = "127.0.0.1:9090";

pub fn managed(layout: &Layout) -> Managed {
    Managed::new("prometheus", PROGRAM, &layout.run(), &layout.logs())
}

/// `prometheus`, installed with apt-get if missing and possible.
pub fn ensure_installed() -> anyhow::Result<PathBuf> {
    if let Some(bin) = binaries::on_path(PROGRAM) {
        return Ok(bin);
    }
    if binaries::apt_install("prometheus", "Prometheus")?
        && let Some(bin) = binaries::on_path(PROGRAM)
    {
        return Ok(bin);
    }
    bail!(
        "`{PROGRAM}` was not found; install Debian's `prometheus` package: sudo apt-get install prometheus"
    )
}

/// Starts Prometheus unless it runs, with `config` (the project's
/// `dashboards/prometheus.yml`), then waits until it is ready.
pub async fn start(layout: &Layout, bin: &Path, config: &Path) -> anyhow::Result<()> {
    let prometheus = managed(layout);
    if let Some(pid) = prometheus.running_pid() {
        println!("prometheus already running (pid {pid})");
        return Ok(());
    }
    prometheus.ensure_port_free(LISTEN)?;
    let data = layout.home.join("prometheus");
    layout::create_dir(&data)?;
    let mut command = Command::new(bin);
    command
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg(format!("--web.listen-address={LISTEN}"));
    let mut child = prometheus.spawn(command)?;
    println!("started prometheus (pid {}) on {LISTEN}", child.id());
    let client = crate::api::http_client()?;
    let url = format!("http://{LISTEN}/-/ready");
    prometheus
        .wait_until_ready(
            Some(&mut child),
            Duration::from_secs(30),
            "become ready",
            async || {
                client
                    .get(&url)
                    .send()
                    .await
                    .is_ok_and(|response| response.status().is_success())
            },
        )
        .await
}

/// The project's scrape config: `dashboards/prometheus.yml` beside `.courser`.
pub fn config_file(layout: &Layout) -> anyhow::Result<PathBuf> {
    let root = layout
        .home
        .parent()
        .context("the .courser directory has no parent")?;
    let config = root.join("dashboards").join("prometheus.yml");
    if !config.is_file() {
        bail!(
            "{} not found: run courser from the project root",
            config.display()
        );
    }
    Ok(config)
}
