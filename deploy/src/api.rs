//! The `courser-api` instances: migrating the database with the same binary, starting
//! the four instances in the background, waiting until they are ready, stopping them,
//! and asking them for their health.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::layout::Layout;
use crate::process::Managed;

/// The binary's file name, as found next to `courser` or on PATH.
pub const PROGRAM: &str = "courser-api";
/// How long an instance may take to answer `/readyz` with 200.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// The api's setting of its worker threads; set by the operator, it is passed on as is.
const THREADS_ENV: &str = "COURSER_WORKER_THREADS";

/// The api's setting of its in-process cache size; set by the operator, it is passed on
/// as is.
const CACHE_BYTES_ENV: &str = "COURSER_CACHE_LOCAL_BYTES";
/// The api's setting of its Postgres pool size; set by the operator, it is passed on as is.
const POOL_ENV: &str = "COURSER_POOL_SIZE";

/// In-process cache bytes for each of `instances` on a machine of `memory` bytes: an
/// eighth of the memory split between them, no less than the api's own default (256 MiB)
/// and no more than 4 GiB. W1's hot set at 20,000 requests/s (~250k pages, ~1.1 GB)
/// overflowed four tiers of 256 MiB, and each read past them went to Redis
/// (BENCHMARKS.md).
pub fn cache_bytes_each(memory: u64, instances: usize) -> u64 {
    (memory / 8 / instances.max(1) as u64).clamp(256 << 20, 4 << 30)
}

/// The machine's memory, from `/proc/meminfo` (none elsewhere).
fn total_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kib * 1024)
}

/// Worker threads for each of `instances` sharing `cores`: the cores split between them,
/// at least one each. Each instance alone would take one per core, so four on one machine
/// would run four times as many threads as cores, and W2 measured about 30 % more api
/// CPU per request that way (BENCHMARKS.md).
pub fn threads_each(cores: usize, instances: usize) -> usize {
    (cores / instances.max(1)).max(1)
}

/// Postgres connections for each of `instances` sharing `cores`: eight per core in all,
/// split between them, 2 to 16 each (16 is the api's own default). Backends that
/// outnumber the cores only take turns on them: on 2 cores, four instances of 16 (64
/// backends) used 13–20 % more Postgres CPU per W2 request than four of 4, with a higher
/// p99 (BENCHMARKS.md).
pub fn pool_each(cores: usize, instances: usize) -> usize {
    (cores * 8 / instances.max(1)).clamp(2, 16)
}

/// One api instance of the stack.
#[derive(Debug, Clone)]
pub struct Instance {
    pub port: u16,
    pub process: Managed,
}

impl Instance {
    pub fn all(layout: &Layout) -> Vec<Self> {
        layout
            .api_ports
            .iter()
            .map(|&port| Self {
                port,
                process: Managed::new(
                    &format!("api-{port}"),
                    PROGRAM,
                    &layout.run(),
                    &layout.logs(),
                ),
            })
            .collect()
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address())
    }
}

/// Runs `courser-api migrate` against `database_url`; its output is shown on failure.
pub fn migrate(bin: &Path, database_url: &str) -> anyhow::Result<()> {
    println!("migrating {database_url}");
    let output = Command::new(bin)
        .arg("migrate")
        .env("COURSER_DATABASE_URL", database_url)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    if !output.status.success() {
        bail!(
            "`{} migrate` failed ({}):\n{}{}",
            bin.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// Starts every instance that is not running, then waits until all are ready.
pub async fn start_all(
    layout: &Layout,
    bin: &Path,
    database_url: &str,
    key: &str,
) -> anyhow::Result<()> {
    let client = http_client()?;
    let mut started: Vec<(Instance, Option<Child>)> = Vec::new();
    for instance in Instance::all(layout) {
        if let Some(pid) = instance.process.running_pid() {
            println!("{} already running (pid {pid})", instance.process.name);
            started.push((instance, None));
            continue;
        }
        let child = spawn(layout, &instance, bin, database_url, key)?;
        started.push((instance, Some(child)));
    }
    for (instance, mut child) in started {
        wait_ready(&client, &instance, child.as_mut()).await?;
    }
    Ok(())
}

/// Starts one instance in the background (not waiting for it).
pub fn spawn(
    layout: &Layout,
    instance: &Instance,
    bin: &Path,
    database_url: &str,
    key: &str,
) -> anyhow::Result<Child> {
    instance.process.ensure_port_free(&instance.address())?;
    let mut command = Command::new(bin);
    // Shares of the machine, each unless the operator has set it.
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let instances = layout.api_ports.len();
    let unset = |name| std::env::var_os(name).is_none();
    if unset(THREADS_ENV) {
        command.env(THREADS_ENV, threads_each(cores, instances).to_string());
    }
    if unset(POOL_ENV) {
        command.env(POOL_ENV, pool_each(cores, instances).to_string());
    }
    if unset(CACHE_BYTES_ENV)
        && let Some(memory) = total_memory()
    {
        command.env(
            CACHE_BYTES_ENV,
            cache_bytes_each(memory, instances).to_string(),
        );
    }
    command
        .arg("serve")
        .env("COURSER_LISTEN", instance.address())
        .env("COURSER_DATABASE_URL", database_url)
        .env("COURSER_API_KEYS", key)
        .env("COURSER_REDIS_URL", layout.redis_url());
    let child = instance.process.spawn(command)?;
    println!(
        "started {} (pid {}) on {}",
        instance.process.name,
        child.id(),
        instance.address()
    );
    Ok(child)
}

/// Polls `/readyz` until it answers 200; fails with the end of the instance's log if it
/// exits or does not become ready in time.
pub async fn wait_ready(
    client: &reqwest::Client,
    instance: &Instance,
    child: Option<&mut Child>,
) -> anyhow::Result<()> {
    let url = format!("{}/readyz", instance.url());
    instance
        .process
        .wait_until_ready(
            child,
            READY_TIMEOUT,
            "answer GET /readyz with 200",
            async || {
                client
                    .get(&url)
                    .send()
                    .await
                    .is_ok_and(|response| response.status() == reqwest::StatusCode::OK)
            },
        )
        .await
}

/// Starts a stopped (or killed) instance again and waits until it is ready.
pub async fn start_again(
    layout: &Layout,
    instance: &Instance,
    bin: &Path,
    database_url: &str,
    key: &str,
) -> anyhow::Result<()> {
    // The old process may take a moment to leave the port.
    while instance.process.running_pid().is_some() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut child = spawn(layout, instance, bin, database_url, key)?;
    wait_ready(&http_client()?, instance, Some(&mut child)).await
}

/// Stops every instance; prints what it stopped.
pub async fn stop_all(layout: &Layout) -> anyhow::Result<()> {
    for instance in Instance::all(layout) {
        if let Some(pid) = instance.process.stop().await? {
            println!("stopped {} (pid {pid})", instance.process.name);
        }
    }
    Ok(())
}

/// The HTTP status of `GET path`, or a short reason it did not answer.
pub async fn probe(
    client: &reqwest::Client,
    instance: &Instance,
    path: &str,
) -> Result<u16, String> {
    match client.get(format!("{}{path}", instance.url())).send().await {
        Ok(response) => Ok(response.status().as_u16()),
        Err(err) if err.is_timeout() => Err("timeout".into()),
        Err(err) if err.is_connect() => Err("refused".into()),
        Err(_) => Err("error".into()),
    }
}

/// A client for local health checks: short timeouts, never through a proxy.
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .no_proxy()
        .build()
        .context("cannot build an HTTP client")
}

#[cfg(test)]
mod tests {
    use super::{cache_bytes_each, pool_each, threads_each};

    #[test]
    fn instances_share_the_cores_with_at_least_one_thread_each() {
        assert_eq!(threads_each(2, 4), 1);
        assert_eq!(threads_each(16, 4), 4);
        assert_eq!(threads_each(6, 4), 1);
        assert_eq!(threads_each(8, 1), 8);
        assert_eq!(threads_each(4, 0), 4);
    }

    #[test]
    fn instances_share_eight_connections_per_core_within_bounds() {
        assert_eq!(pool_each(2, 4), 4);
        assert_eq!(pool_each(8, 4), 16);
        assert_eq!(pool_each(64, 4), 16, "never over the api's default");
        assert_eq!(pool_each(1, 8), 2, "nor under two");
        assert_eq!(pool_each(1, 0), 8);
    }

    #[test]
    fn instances_share_an_eighth_of_the_memory_within_bounds() {
        const MIB: u64 = 1 << 20;
        const GIB: u64 = 1 << 30;
        assert_eq!(cache_bytes_each(24 * GIB, 4), 768 * MIB);
        assert_eq!(
            cache_bytes_each(4 * GIB, 4),
            256 * MIB,
            "never under the default"
        );
        assert_eq!(cache_bytes_each(512 * GIB, 4), 4 * GIB, "nor over 4 GiB");
        assert_eq!(cache_bytes_each(16 * GIB, 0), 2 * GIB);
    }
}
