//! The proxy: `courser-proxy` on the public port in front of the four api instances, with
//! its metrics on the admin port.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::api::Instance;
use crate::layout::Layout;
use crate::process::Managed;

pub const PROGRAM: &str = "courser-proxy";

pub fn managed(layout: &Layout) -> Managed {
    Managed::new("proxy", PROGRAM, &layout.run(), &layout.logs())
}

/// Starts the proxy unless it runs, then waits until it forwards a request.
pub async fn start(layout: &Layout, bin: &Path) -> anyhow::Result<()> {
    let proxy = managed(layout);
    if let Some(pid) = proxy.running_pid() {
        println!("proxy already running (pid {pid})");
        return Ok(());
    }
    let mut child = proxy.spawn(command(layout, bin))?;
    println!(
        "started proxy (pid {}) on {}",
        child.id(),
        layout.proxy_listen
    );
    wait_ready(layout, &mut child).await
}

/// Starts a new proxy that takes the listeners over from the running one (Pingora's
/// graceful upgrade): the new process waits on the upgrade socket, SIGQUIT makes the old
/// one hand its listeners over and finish its requests in flight. Returns the old pid.
/// `env` adds settings (`COURSER_PROXY_*`) the new process runs with.
pub async fn upgrade(layout: &Layout, bin: &Path, env: &[(&str, String)]) -> anyhow::Result<u32> {
    let proxy = managed(layout);
    let Some(old) = proxy.running_pid() else {
        anyhow::bail!("no proxy runs; nothing to upgrade");
    };
    let mut command = command(layout, bin);
    command
        .arg("--upgrade")
        .envs(env.iter().map(|(k, v)| (k, v)));
    let sock = layout.proxy_upgrade_sock();
    let _ = std::fs::remove_file(&sock);
    let mut child = proxy.spawn(command)?;
    // The new process must be listening on the socket before the old one sends.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !sock.exists() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let old_pid = nix::unistd::Pid::from_raw(i32::try_from(old)?);
    nix::sys::signal::kill(old_pid, nix::sys::signal::Signal::SIGQUIT)?;
    println!("upgrading proxy: pid {} takes over from {old}", child.id());
    wait_ready(layout, &mut child).await?;
    Ok(old)
}

fn command(layout: &Layout, bin: &Path) -> Command {
    let backends: Vec<String> = Instance::all(layout)
        .iter()
        .map(Instance::address)
        .collect();
    let mut command = Command::new(bin);
    command
        .env("COURSER_PROXY_LISTEN", &layout.proxy_listen)
        .env("COURSER_PROXY_METRICS_LISTEN", &layout.proxy_metrics_listen)
        .env("COURSER_PROXY_UPGRADE_SOCK", layout.proxy_upgrade_sock())
        .env("COURSER_PROXY_BACKENDS", backends.join(","))
        // The proxy writes its log itself, rotated at 256 MiB (at 15,000 requests/s the
        // access log grows by ~3 MB/s); stdout and stderr, which `Managed` sends to the
        // same file, then carry only what comes before the log starts, or a panic.
        .env("COURSER_PROXY_LOG_FILE", managed(layout).log_file);
    command
}

async fn wait_ready(layout: &Layout, child: &mut std::process::Child) -> anyhow::Result<()> {
    let client = crate::api::http_client()?;
    let url = format!("http://{}/healthz", layout.proxy_listen);
    managed(layout)
        .wait_until_ready(
            Some(child),
            Duration::from_secs(20),
            "forward GET /healthz",
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
