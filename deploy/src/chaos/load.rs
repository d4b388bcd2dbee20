//! The load beside a fault: `courser-load` running W3 against the proxy as a child
//! process, and the parts of its JSON result the fault suite reads (the per-second
//! series and the write checker's figures).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::Deserialize;

/// One run of the load generator, started and not yet finished.
#[derive(Debug)]
pub struct LoadRun {
    child: Child,
    json: PathBuf,
    /// When the child was started: second `t` of its series ends about `t` s later.
    pub started: Instant,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub bin: PathBuf,
    /// The proxy's base URL.
    pub url: String,
    pub api_key_file: PathBuf,
    /// Requests/s, held after a warm-up ramp.
    pub rate: f64,
    pub warmup: Duration,
    pub duration: Duration,
    /// `--workload w3`, or `--scenario FILE`.
    pub workload: Vec<String>,
    /// The data set the ids are drawn from, as `courser-load` flags (e.g. `--scale 0.0001`).
    pub dataset: Vec<String>,
    /// Where the JSON result and the HTML report go.
    pub out_dir: PathBuf,
    /// Local addresses the load connects from (`--source-addresses`); none: 127.0.0.1.
    pub source_addresses: Vec<std::net::Ipv4Addr>,
}

impl LoadRun {
    /// Starts `courser-load` as the spec says; its progress goes to a log.
    pub fn start(spec: &LoadSpec, name: &str) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&spec.out_dir)
            .with_context(|| format!("cannot create {}", spec.out_dir.display()))?;
        let json = spec.out_dir.join(format!("{name}.json"));
        let log_path = spec.out_dir.join(format!("{name}.log"));
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let secs = |d: Duration| format!("{}ms", d.as_millis());
        let mut command = Command::new(&spec.bin);
        if !spec.source_addresses.is_empty() {
            let sources: Vec<String> = spec
                .source_addresses
                .iter()
                .map(ToString::to_string)
                .collect();
            command.args(["--source-addresses", &sources.join(",")]);
        }
        let child = command
            .args(&spec.workload)
            .args(["--url", &spec.url, "--quiet"])
            .args(["--rate", &spec.rate.to_string()])
            .args(["--warmup", &secs(spec.warmup)])
            .args(["--duration", &secs(spec.duration)])
            .arg("--api-key-file")
            .arg(&spec.api_key_file)
            .args(&spec.dataset)
            .arg("--json")
            .arg(&json)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot run {}", spec.bin.display()))?;
        Ok(Self {
            child,
            json,
            started: Instant::now(),
        })
    }

    /// Seconds since the load started.
    pub fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Sleeps until `at` seconds into the run.
    pub async fn sleep_until(&self, at: f64) {
        let due = self.started + Duration::from_secs_f64(at.max(0.0));
        tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await;
    }

    /// Waits for the run (and its final sweep) to end and reads its result.
    pub async fn finish(mut self) -> anyhow::Result<LoadResult> {
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        // 3: it ran and the SLA did not hold, which the suite judges itself.
        if !status.success() && status.code() != Some(3) {
            bail!(
                "courser-load failed ({status}); see {}",
                self.json.with_extension("log").display()
            );
        }
        read_result(&self.json)
    }
}

impl Drop for LoadRun {
    fn drop(&mut self) {
        // A suite that gives up must not leave load running against the stack.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The parts of `courser-load`'s JSON result the suite uses.
#[derive(Debug, Clone, Deserialize)]
pub struct LoadResult {
    pub series: Vec<Point>,
    pub checker: Option<Checker>,
}

/// One second of the run.
#[derive(Debug, Clone, Deserialize)]
pub struct Point {
    /// End of this second, seconds since the start.
    pub t: f64,
    pub completed: u64,
    /// Successful answers.
    pub achieved: u64,
    pub latency_ms: Latency,
    /// Errors by kind (`connect`, `timeout`, `status_5xx`, …, `stale_read`, `lost_write`).
    pub errors: std::collections::BTreeMap<String, u64>,
    /// Of those, errors of writes.
    #[serde(default)]
    pub write_errors: u64,
}

#[derive(Debug, Clone, Copy, Deserialize)]
pub struct Latency {
    pub p99: f64,
}

/// The W3 write checker's totals.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct Checker {
    pub writes_acked: u64,
    pub writes_failed: u64,
    pub stale_reads: u64,
    pub lost_writes: u64,
    pub unverified: u64,
}

fn read_result(path: &Path) -> anyhow::Result<LoadResult> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("cannot parse {}", path.display()))
}
