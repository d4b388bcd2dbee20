//! The result of a run as it is written to JSON and read by the report: settings,
//! the summary over the measured stages, the SLA verdict, the per-second series, the
//! watched processes, the checker's findings and, for `--find-capacity`, the trials.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::checker::{CheckerSummary, Violation};
use crate::procwatch::ProcessFigures;
use crate::runner::{RunConfig, RunOutput};
use crate::schedule::{Schedule, Stage};
use crate::stats::{Percentiles, Stats};
use crate::workload::Dataset;

/// The service level a run is judged against.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sla {
    /// p99 latency limit, ms.
    pub p99_ms: f64,
    /// Most errors allowed (checker findings included).
    pub max_errors: u64,
    /// When set, an error share allowed instead of `max_errors` (0.01 is 1%).
    pub max_error_rate: Option<f64>,
}

impl Default for Sla {
    /// BENCHMARKS.md: p99 ≤ 25 ms and no errors.
    fn default() -> Self {
        Self {
            p99_ms: 25.0,
            max_errors: 0,
            max_error_rate: None,
        }
    }
}

impl Sla {
    #[must_use]
    pub fn describe(&self) -> String {
        let errors = match self.max_error_rate {
            Some(r) => format!("errors ≤ {}%", r * 100.0),
            None if self.max_errors == 0 => "no errors".to_string(),
            None => format!("at most {} errors", self.max_errors),
        };
        format!("p99 ≤ {} ms, {errors}", self.p99_ms)
    }

    #[must_use]
    pub fn judge(&self, s: &Summary) -> Verdict {
        let mut reasons = Vec::new();
        if s.requests == 0 {
            reasons.push("no request completed".to_string());
        }
        if s.latency_ms.p99 > self.p99_ms {
            reasons.push(format!(
                "p99 {:.2} ms is above {} ms",
                s.latency_ms.p99, self.p99_ms
            ));
        }
        match self.max_error_rate {
            Some(rate) => {
                let share = s.errors as f64 / s.requests.max(1) as f64;
                if share > rate {
                    reasons.push(format!(
                        "{} errors are {:.3}% of requests, above {}%",
                        s.errors,
                        share * 100.0,
                        rate * 100.0
                    ));
                }
            }
            None if s.errors > self.max_errors => reasons.push(format!(
                "{} errors ({}) above the {} allowed",
                s.errors,
                s.errors_by_kind
                    .iter()
                    .map(|(k, n)| format!("{k} {n}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                self.max_errors
            )),
            None => {}
        }
        Verdict {
            sla: *self,
            passed: reasons.is_empty(),
            reasons,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub sla: Sla,
    pub passed: bool,
    pub reasons: Vec<String>,
}

/// The measured stages, in total.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub measured_seconds: f64,
    /// What the schedule offered, requests/s.
    pub offered_rps: f64,
    /// What the tool sent, requests/s (below offered only when slots timed out
    /// waiting for a connection).
    pub sent_rps: f64,
    /// Successful (1xx–3xx) answers, requests/s.
    pub achieved_rps: f64,
    /// Completed requests, any outcome.
    pub requests: u64,
    pub ok: u64,
    /// Errors of every kind, checker findings included.
    pub errors: u64,
    pub errors_by_kind: BTreeMap<String, u64>,
    /// From each request's due time.
    pub latency_ms: Percentiles,
    /// Requests that were due while every connection was busy.
    pub queued_for_connection: u64,
    /// How late the tool's own timer fired (p99, ms): if high, the tool was the
    /// bottleneck, not the server.
    pub send_lag_p99_ms: f64,
}

impl Summary {
    #[must_use]
    pub fn of(stats: &Stats, schedule: &Schedule) -> Self {
        let (from, to) = schedule.measured_window();
        let secs = (to - from).as_secs_f64().max(1e-9);
        let offered = schedule.offered_between(from.as_secs_f64(), to.as_secs_f64());
        Self {
            measured_seconds: secs,
            offered_rps: offered / secs,
            sent_rps: stats.sent as f64 / secs,
            achieved_rps: stats.ok as f64 / secs,
            requests: stats.completed,
            ok: stats.ok,
            errors: stats.error_total(),
            errors_by_kind: Stats::errors_by_kind(&stats.errors),
            latency_ms: Percentiles::of(&stats.total),
            queued_for_connection: stats.queued,
            send_lag_p99_ms: Percentiles::of(&stats.send_lag).p99,
        }
    }
}

/// One second of the run.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    /// Seconds since the start (the end of this second).
    pub t: f64,
    pub offered: f64,
    pub sent: u64,
    /// Successful answers in this second.
    pub achieved: u64,
    pub completed: u64,
    pub latency_ms: Percentiles,
    pub errors: BTreeMap<String, u64>,
    /// Of those errors, the ones of writes (`POST`/`PUT`).
    pub write_errors: u64,
}

/// Per-second points of a run, `offset` seconds into the whole report.
#[must_use]
pub fn series(stats: &Stats, schedule: &Schedule, offset: f64) -> Vec<Point> {
    stats
        .seconds
        .iter()
        .enumerate()
        .map(|(i, s)| Point {
            t: offset + i as f64 + 1.0,
            offered: schedule.offered_between(i as f64, i as f64 + 1.0),
            sent: s.sent,
            achieved: s.ok,
            completed: s.completed,
            latency_ms: Percentiles::of(&s.latency),
            errors: Stats::errors_by_kind(&s.errors),
            write_errors: s.write_errors,
        })
        .collect()
}

/// How the run was set up.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub connections: usize,
    pub workers: usize,
    pub timeout_ms: f64,
    pub seed: u64,
    pub dataset: Dataset,
    pub freshness_bound_ms: Option<f64>,
    pub start_rate: f64,
    pub stages: Vec<Stage>,
    /// Whether every page read was read once, unmeasured, before the run.
    #[serde(default)]
    pub prefill: bool,
}

impl Settings {
    #[must_use]
    pub fn of(cfg: &RunConfig) -> Self {
        Self {
            connections: cfg.connections,
            workers: cfg.workers,
            timeout_ms: ms(cfg.timeout),
            seed: cfg.seed,
            dataset: cfg.mix.dataset(),
            freshness_bound_ms: cfg.freshness.map(ms),
            start_rate: cfg.schedule.start_rate(),
            stages: cfg.schedule.stages(),
            prefill: cfg.prefill,
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One trial of `--find-capacity`.
#[derive(Debug, Clone, Serialize)]
pub struct Trial {
    pub rate: f64,
    /// Where its seconds start in the series.
    pub start_s: f64,
    pub passed: bool,
    pub achieved_rps: f64,
    pub p99_ms: f64,
    pub errors: u64,
    pub reasons: Vec<String>,
    /// The write checker's findings in this trial (the result's `checker` is the best
    /// trial's, which has none when it held).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<Violation>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Capacity {
    /// The highest rate that held the SLA for the hold time; None if none did.
    pub capacity_rps: Option<f64>,
    pub hold_s: f64,
    pub trials: Vec<Trial>,
}

/// Everything written to the JSON file and drawn in the HTML report.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    pub tool: String,
    pub started_at: String,
    pub target: String,
    pub workload: String,
    pub settings: Settings,
    pub summary: Summary,
    pub verdict: Verdict,
    pub series: Vec<Point>,
    pub processes: Vec<ProcessFigures>,
    pub checker: Option<CheckerSummary>,
    pub capacity: Option<Capacity>,
}

impl RunResult {
    /// The result of one plain run.
    #[must_use]
    pub fn of_run(workload: &str, cfg: &RunConfig, out: &RunOutput, sla: &Sla) -> Self {
        let summary = Summary::of(&out.stats, &cfg.schedule);
        Self {
            tool: format!("courser-load {}", env!("CARGO_PKG_VERSION")),
            started_at: rfc3339(out.started_at),
            target: cfg.target.url.clone(),
            workload: workload.to_string(),
            settings: Settings::of(cfg),
            verdict: sla.judge(&summary),
            summary,
            series: series(&out.stats, &cfg.schedule, 0.0),
            processes: out.processes.clone(),
            checker: out.checker.clone(),
            capacity: None,
        }
    }
}

/// RFC 3339 UTC, to the second.
#[must_use]
pub fn rfc3339(t: SystemTime) -> String {
    let odt = time::OffsetDateTime::from(t);
    odt.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
