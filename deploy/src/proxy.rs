//! The proxy: `courser-proxy` on the public port in front of the four api instances, with
//! its metrics on the admin port.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::api::Instance;
use crate::layout::Layout;
use crate::process::Managed;

pub const PROGRAM: &str = "courser-proxy";
pub const LISTEN: &str = "127.0.0.1:8080";
pub const METRICS_LISTEN: &str = "127.0.0.1:9100";

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
    let backends: Vec<String> = Instance::all(layout)
        .iter()
        .map(Instance::address)
        .collect();
    let mut command = Command::new(bin);
    command
        .env("COURSER_PROXY_LISTEN", LISTEN)
        .env("COURSER_PROXY_METRICS_LISTEN", METRICS_LISTEN)
        .env("COURSER_PROXY_BACKENDS", backends.join(","));
    let mut child = proxy.spawn(command)?;
    println!("started proxy (pid {}) on {LISTEN}", child.id());
    let client = crate::api::http_client()?;
    let url = format!("http://{LISTEN}/healthz");
    proxy
        .wait_until_ready(
            Some(&mut child),
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
