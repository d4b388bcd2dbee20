//! `--find-capacity`: the highest constant arrival rate that holds the SLA for the
//! hold time. Rates step up by a factor until one fails, then the gap between the last
//! that held and the first that failed is bisected down to the precision asked. Each
//! trial is a run of its own (warm-up, then the hold), with a pause between trials so
//! the server drains: a longer one after a trial that failed, whose backlog (requests
//! the clients gave up on, writes that run to their end) would else weigh on the next.

use std::time::Duration;

use crate::Error;
use crate::result::{Capacity, RunResult, Sla, Summary, Trial, series};
use crate::runner::{self, RunConfig};
use crate::schedule::Schedule;

#[derive(Debug, Clone)]
pub struct CapacityPlan {
    pub start_rate: f64,
    /// Never try above this rate.
    pub max_rate: Option<f64>,
    /// Each step multiplies the rate by this (> 1).
    pub factor: f64,
    /// Stop bisecting when the gap is below this share of the rate that held.
    pub precision: f64,
    pub hold: Duration,
    pub warmup: Duration,
    pub pause: Duration,
    /// The pause after a trial that failed.
    pub pause_after_failure: Duration,
    /// A shell command run before each trial (after the pause), e.g. one that empties
    /// every cache so that each trial of a cold-read workload starts cold.
    pub before_trial: Option<String>,
}

/// Runs the search; the result carries every trial and the series of the whole search,
/// with the summary and verdict of the best trial that held (or of the last one).
pub fn find(
    workload: &str,
    base: &RunConfig,
    plan: &CapacityPlan,
    sla: &Sla,
) -> Result<RunResult, Error> {
    if plan.factor <= 1.0 || plan.start_rate <= 0.0 || plan.precision <= 0.0 {
        return Err(Error::Config(
            "--find-capacity needs --start-rate > 0, --step-factor > 1, --precision > 0".into(),
        ));
    }
    let mut trials: Vec<Trial> = Vec::new();
    let mut all_series = Vec::new();
    let mut best: Option<RunResult> = None;
    let mut last: Option<RunResult> = None;
    let mut offset = 0.0;
    let mut attempt = |rate: f64,
                       trials: &mut Vec<Trial>,
                       best: &mut Option<RunResult>,
                       last: &mut Option<RunResult>|
     -> Result<bool, Error> {
        let mut cfg = base.clone();
        cfg.schedule = Schedule::constant(rate, plan.warmup, plan.hold)?;
        cfg.label = format!("[{rate:.0}/s] ");
        match trials.last() {
            Some(previous) if previous.passed => std::thread::sleep(plan.pause),
            Some(_) => std::thread::sleep(plan.pause_after_failure),
            None => {}
        }
        if let Some(command) = &plan.before_trial {
            run_shell(command)?;
        }
        let out = runner::run(&cfg)?;
        let summary = Summary::of(&out.stats, &cfg.schedule);
        let verdict = sla.judge(&summary);
        trials.push(Trial {
            rate,
            start_s: offset,
            passed: verdict.passed,
            achieved_rps: summary.achieved_rps,
            p99_ms: summary.latency_ms.p99,
            errors: summary.errors,
            reasons: verdict.reasons.clone(),
            findings: out
                .checker
                .as_ref()
                .map(|c| c.violations.clone())
                .unwrap_or_default(),
        });
        let s = series(&out.stats, &cfg.schedule, offset);
        offset += s.len() as f64;
        all_series.extend(s);
        let result = RunResult::of_run(workload, &cfg, &out, sla);
        let passed = verdict.passed;
        if passed {
            *best = Some(result);
        } else {
            *last = Some(result);
        }
        Ok(passed)
    };

    let cap = plan.max_rate.unwrap_or(f64::INFINITY);
    let mut rate = plan.start_rate.min(cap);
    let mut held: Option<f64> = None;
    let mut failed: Option<f64> = None;
    // Step up until a rate fails (or the cap is reached).
    loop {
        if attempt(rate, &mut trials, &mut best, &mut last)? {
            held = Some(rate);
            if rate >= cap {
                break;
            }
            rate = (rate * plan.factor).min(cap);
        } else {
            failed = Some(rate);
            break;
        }
    }
    // The start rate itself failed: step down a few times to find one that holds.
    if held.is_none() {
        let mut r = plan.start_rate;
        for _ in 0..4 {
            r /= plan.factor;
            if attempt(r, &mut trials, &mut best, &mut last)? {
                held = Some(r);
                break;
            }
            failed = Some(r);
        }
    }
    // Bisect between the last rate that held and the first that failed.
    if let (Some(mut lo), Some(mut hi)) = (held, failed) {
        while (hi - lo) / lo > plan.precision {
            let mid = ((lo + hi) / 2.0).round();
            if mid <= lo || mid >= hi {
                break;
            }
            if attempt(mid, &mut trials, &mut best, &mut last)? {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        held = Some(lo);
    }

    let mut result = best
        .or(last)
        .ok_or_else(|| Error::Runtime("no capacity trial ran".into()))?;
    result.series = all_series;
    result.capacity = Some(Capacity {
        capacity_rps: held,
        hold_s: plan.hold.as_secs_f64(),
        trials,
    });
    Ok(result)
}

/// Runs `command` with `sh -c`; a failure stops the search, since the trials that
/// follow would not measure what was asked.
fn run_shell(command: &str) -> Result<(), Error> {
    let status = std::process::Command::new("sh")
        .args(["-c", command])
        .status()
        .map_err(|e| Error::Runtime(format!("--before-trial: cannot run sh: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Runtime(format!(
            "--before-trial command `{command}` failed ({status})"
        )))
    }
}
