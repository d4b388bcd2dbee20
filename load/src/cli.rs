//! The command line: flags, and turning them into a run (or a capacity search) whose
//! result is written to JSON and HTML and summarised.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::Error;
use crate::capacity::{self, CapacityPlan};
use crate::client::Target;
use crate::procwatch::WatchSpec;
use crate::report;
use crate::result::{RunResult, Sla};
use crate::runner::{self, Progress, RunConfig};
use crate::schedule::{Schedule, parse_duration, parse_stages};
use crate::workload::{Dataset, Mix, Scenario};

/// Open-model load generator for Courser: constant arrival rate, latency from each
/// request's due time, the workloads of BENCHMARKS.md, an SLA verdict and reports.
#[derive(Debug, Clone, Parser)]
#[command(name = "courser-load", version)]
pub struct Args {
    /// Base URL of the service (the proxy by default).
    #[arg(
        long,
        default_value = "http://127.0.0.1:8080",
        env = "COURSER_LOAD_URL"
    )]
    pub url: String,
    /// Built-in workload: w1 (warm reads, Zipf), w2 (cold reads, uniform), w3 (mixed, checked).
    #[arg(long, short, default_value = "w1")]
    pub workload: String,
    /// A scenario file (TOML: weighted [[request]] kinds, optional [[stage]]s); replaces --workload.
    #[arg(long)]
    pub scenario: Option<PathBuf>,

    /// Requests/s of the hold stage.
    #[arg(long, short, default_value_t = 1000.0)]
    pub rate: f64,
    /// How long the rate is held (e.g. 60s, 2m).
    #[arg(long, short, default_value = "60s", value_parser = duration)]
    pub duration: Duration,
    /// Warm-up: a ramp from 0 to --rate before the hold, left out of the summary.
    #[arg(long, default_value = "10s", value_parser = duration)]
    pub warmup: Duration,
    /// Explicit stages instead of --warmup/--duration: DURATION:RATE ramps, comma-separated,
    /// `warmup=` before the ones to leave out, e.g. "warmup=10s:2000,0s:4000,30s:4000".
    #[arg(long)]
    pub stages: Option<String>,
    /// The rate the first stage ramps from.
    #[arg(long, default_value_t = 0.0)]
    pub start_rate: f64,

    /// Keep-alive HTTP/1 connections in all.
    #[arg(long, short, default_value_t = 64)]
    pub connections: usize,
    /// Local addresses to connect from, taken in turn by the connections (e.g.
    /// 127.0.1.1,127.0.1.2): several clients, as a per-address rate limit sees them.
    #[arg(long, value_delimiter = ',')]
    pub source_addresses: Vec<std::net::IpAddr>,
    /// Worker threads (each a single-threaded runtime); 1 costs one core.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// A request not sent within this of its due time (every connection busy), or not
    /// answered within this of being sent, is a timeout error.
    #[arg(long, default_value = "2s", value_parser = duration)]
    pub timeout: Duration,
    /// Random seed for the request sequence.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// The seeder's --scale of the data set (sets --courses, --reviewers, --reviews).
    #[arg(long)]
    pub scale: Option<f64>,
    /// Courses in the data set (ids 1..=N); default: the `courser up` demo set.
    #[arg(long)]
    pub courses: Option<u64>,
    #[arg(long)]
    pub reviewers: Option<u64>,
    #[arg(long)]
    pub reviews: Option<u64>,

    /// The write key (sent as `Authorization: Bearer KEY` on writes).
    #[arg(long, env = "COURSER_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// A file holding the write key (e.g. .courser/api-key).
    #[arg(long)]
    pub api_key_file: Option<PathBuf>,
    /// The freshness bound of API.md for the write checker.
    #[arg(long, default_value = "100ms", value_parser = duration)]
    pub freshness: Duration,
    /// Run the write checker even if the workload does not by default.
    #[arg(long)]
    pub check: bool,
    /// Do not run the write checker.
    #[arg(long, conflicts_with = "check")]
    pub no_check: bool,

    /// SLA: p99 latency limit.
    #[arg(long, default_value = "25ms", value_parser = duration)]
    pub sla_p99: Duration,
    /// SLA: most errors allowed (checker findings included).
    #[arg(long, default_value_t = 0)]
    pub sla_max_errors: u64,
    /// SLA: an error share allowed instead (e.g. 0.01 for the original's 1%).
    #[arg(long)]
    pub sla_max_error_rate: Option<f64>,

    /// Find the highest rate that holds the SLA for --hold.
    #[arg(long)]
    pub find_capacity: bool,
    /// Capacity search: first rate tried.
    #[arg(long, default_value_t = 1000.0)]
    pub start: f64,
    /// Capacity search: never above this rate.
    #[arg(long)]
    pub max_rate: Option<f64>,
    /// Capacity search: each step multiplies the rate by this.
    #[arg(long, default_value_t = 2.0)]
    pub step_factor: f64,
    /// Capacity search: stop bisecting when the gap is below this share.
    #[arg(long, default_value_t = 0.05)]
    pub precision: f64,
    /// Capacity search: how long each rate must hold (BENCHMARKS.md: 60 s).
    #[arg(long, default_value = "60s", value_parser = duration)]
    pub hold: Duration,
    /// Capacity search: warm-up before each trial.
    #[arg(long, default_value = "5s", value_parser = duration)]
    pub trial_warmup: Duration,
    /// Capacity search: pause between trials.
    #[arg(long, default_value = "2s", value_parser = duration)]
    pub pause: Duration,
    /// Capacity search: pause after a trial that failed, for the stack to drain.
    #[arg(long, default_value = "10s", value_parser = duration)]
    pub pause_after_failure: Duration,
    /// Capacity search: a shell command run before each trial (e.g. one emptying the caches).
    #[arg(long)]
    pub before_trial: Option<String>,
    /// Before the run (and each capacity trial, after --before-trial), GET once every
    /// page it will read, unmeasured: the run then measures the warm path (W1).
    #[arg(long)]
    pub prefill: bool,

    /// Account CPU and peak memory of these pids: NAME=PID[,PID..] (repeatable).
    #[arg(long)]
    pub watch: Vec<String>,
    /// Account CPU and peak memory of processes whose name contains PATTERN: NAME=PATTERN.
    #[arg(long)]
    pub watch_process: Vec<String>,

    /// Folder for the JSON result and HTML report.
    #[arg(long, default_value = "load-results")]
    pub out: PathBuf,
    /// The JSON result's path (default: OUT/<workload>-<time>.json).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// The HTML report's path (default: beside the JSON, .html).
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// No live progress.
    #[arg(long, short)]
    pub quiet: bool,
}

fn duration(text: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|e| e.to_string())
}

/// What a finished run left: its result and where it was written.
#[derive(Debug)]
pub struct Done {
    pub result: RunResult,
    pub json: PathBuf,
    pub html: PathBuf,
}

impl Done {
    /// Whether the SLA held (for a capacity search: whether any rate held).
    #[must_use]
    pub fn passed(&self) -> bool {
        match &self.result.capacity {
            Some(c) => c.capacity_rps.is_some(),
            None => self.result.verdict.passed,
        }
    }
}

/// The run the flags describe, ready to go.
#[derive(Debug)]
pub struct Prepared {
    pub workload: String,
    pub config: RunConfig,
    pub sla: Sla,
    pub capacity: Option<CapacityPlan>,
}

impl Args {
    pub fn prepare(&self) -> Result<Prepared, Error> {
        let scenario = match &self.scenario {
            Some(path) => Scenario::from_file(path)?,
            None => Scenario::builtin(&self.workload)?,
        };
        let mut data = self
            .scale
            .map_or(Dataset::from_scale(0.0001), Dataset::from_scale);
        if let Some(n) = self.courses {
            data.courses = n;
        }
        if let Some(n) = self.reviewers {
            data.reviewers = n;
        }
        if let Some(n) = self.reviews {
            data.reviews = n;
        }
        if data.courses == 0 || data.reviewers == 0 || data.reviews == 0 {
            return Err(Error::Config(
                "--courses, --reviewers and --reviews must be ≥ 1".into(),
            ));
        }
        let api_key =
            match (&self.api_key, &self.api_key_file) {
                (Some(k), _) => Some(k.clone()),
                (None, Some(path)) => Some(std::fs::read_to_string(path).map_err(|e| {
                    Error::Config(format!("--api-key-file {}: {e}", path.display()))
                })?),
                (None, None) => None,
            };
        if scenario.has_writes() && api_key.is_none() {
            return Err(Error::Config(format!(
                "{} writes: give the write key with --api-key or --api-key-file",
                scenario.name
            )));
        }
        let schedule = if let Some(text) = &self.stages {
            Schedule::new(self.start_rate, &parse_stages(text)?)?
        } else if !scenario.stages.is_empty() {
            Schedule::new(scenario.start_rate, &scenario.stages)?
        } else {
            Schedule::constant(self.rate, self.warmup, self.duration)?
        };
        let check = (scenario.check || self.check) && !self.no_check;
        let mut watch = Vec::new();
        for w in &self.watch {
            watch.push(WatchSpec::parse_pids(w)?);
        }
        for w in &self.watch_process {
            watch.push(WatchSpec::parse_pattern(w)?);
        }
        let tag = format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        );
        let config = RunConfig {
            target: Target::new(&self.url, api_key.as_deref())?
                .with_sources(self.source_addresses.clone()),
            schedule,
            mix: Mix::new(&scenario, data, tag),
            connections: self.connections,
            workers: self.workers,
            timeout: self.timeout,
            freshness: check.then_some(self.freshness),
            seed: self.seed,
            watch,
            progress: if self.quiet {
                Progress::Off
            } else {
                Progress::auto()
            },
            label: String::new(),
            prefill: self.prefill,
        };
        let sla = Sla {
            p99_ms: self.sla_p99.as_secs_f64() * 1000.0,
            max_errors: self.sla_max_errors,
            max_error_rate: self.sla_max_error_rate,
        };
        let capacity = self.find_capacity.then_some(CapacityPlan {
            start_rate: self.start,
            max_rate: self.max_rate,
            factor: self.step_factor,
            precision: self.precision,
            hold: self.hold,
            warmup: self.trial_warmup,
            pause: self.pause,
            pause_after_failure: self.pause_after_failure,
            before_trial: self.before_trial.clone(),
        });
        Ok(Prepared {
            workload: scenario.name,
            config,
            sla,
            capacity,
        })
    }

    /// Runs what the flags say and writes the JSON result and HTML report.
    pub fn execute(&self) -> Result<Done, Error> {
        let p = self.prepare()?;
        let result = match &p.capacity {
            Some(plan) => capacity::find(&p.workload, &p.config, plan, &p.sla)?,
            None => {
                let out = runner::run(&p.config)?;
                RunResult::of_run(&p.workload, &p.config, &out, &p.sla)
            }
        };
        let stamp = result
            .started_at
            .replace([':', '-'], "")
            .replace('T', "-")
            .trim_end_matches('Z')
            .to_string();
        let json = self.json.clone().unwrap_or_else(|| {
            self.out.join(format!(
                "{}-{stamp}.json",
                p.workload.to_ascii_lowercase().replace(' ', "-")
            ))
        });
        let html = self
            .html
            .clone()
            .unwrap_or_else(|| json.with_extension("html"));
        report::write_json(&result, &json)?;
        report::write_html(&result, &html)?;
        Ok(Done { result, json, html })
    }
}
