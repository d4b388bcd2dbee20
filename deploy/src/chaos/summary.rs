//! Judging a run: from the load's per-second series and the write checker, a row of the
//! suite's table (client errors, p99 during and after, recovery time, lost and stale
//! writes, verdict), and RELIABILITY.md made of those rows.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::Injected;
use super::load::{LoadResult, Point};

/// BENCHMARKS.md's SLA: p99 ≤ 25 ms.
pub const SLA_P99_MS: f64 = 25.0;

/// Normal seconds in a row that make a recovery.
const STEADY_SECONDS: usize = 3;

/// What clients may see while a fault lasts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Expect {
    /// Nothing: no error of any kind.
    NoErrors,
    /// No read errors; a write may fail (its outcome is in doubt, the checker tells
    /// whether an acknowledged one was lost).
    NoReadErrors,
    /// Errors only as 5xx answers, none slower than this (no pile-up), and some
    /// requests still served.
    QuickUnavailable { max_p99_ms: f64 },
    /// No errors, and p99 within the SLA throughout.
    WithinSla,
}

/// When the fault lasted, seconds into the load run.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub start: f64,
    pub end: f64,
}

/// Errors a client sees (the checker's findings are counted apart).
const CLIENT_ERRORS: [&str; 5] = ["connect", "timeout", "status_4xx", "status_5xx", "io"];

/// One fault's line of the table.
#[derive(Debug, Clone)]
pub struct Row {
    pub fault: String,
    pub errors: u64,
    pub write_errors: u64,
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Worst per-second p99 while the fault lasted.
    pub p99_during_ms: f64,
    /// Worst per-second p99 after it was undone (the recovery included).
    pub p99_after_ms: f64,
    /// From the fault's end to the first of three normal seconds in a row (no errors,
    /// p99 within the SLA or twice the baseline); None if never.
    pub recovery_s: Option<f64>,
    pub writes_acked: u64,
    pub lost_writes: u64,
    pub stale_reads: u64,
    pub notes: Vec<String>,
    pub failures: Vec<String>,
}

fn client_errors(p: &Point) -> u64 {
    CLIENT_ERRORS
        .iter()
        .filter_map(|kind| p.errors.get(*kind))
        .sum()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

fn worst(points: &[&Point]) -> f64 {
    points.iter().map(|p| p.latency_ms.p99).fold(0.0, f64::max)
}

impl Row {
    /// Judges a run: `warmup` seconds at its start are left out of the baseline.
    pub fn judge(fault: &str, warmup: f64, injected: &Injected, result: &LoadResult) -> Self {
        let Window { start, end } = injected.window;
        // The last second is partial (and holds the final sweep); leave it out.
        let points: Vec<&Point> = match result.series.split_last() {
            Some((_, rest)) => rest.iter().collect(),
            None => Vec::new(),
        };
        let before: Vec<&Point> = points
            .iter()
            .copied()
            .filter(|p| p.t - 1.0 >= warmup && p.t <= start)
            .collect();
        let during: Vec<&Point> = points
            .iter()
            .copied()
            .filter(|p| p.t > start && p.t - 1.0 < end)
            .collect();
        let after: Vec<&Point> = points
            .iter()
            .copied()
            .filter(|p| p.t - 1.0 >= end)
            .collect();
        let baseline = median(before.iter().map(|p| p.latency_ms.p99).collect());
        let normal_p99 = SLA_P99_MS.max(2.0 * baseline);
        let normal = |p: &Point| client_errors(p) == 0 && p.latency_ms.p99 <= normal_p99;
        // The first second that starts a run of normal ones (a lone slow second later,
        // on a shared machine, is noise, not a relapse).
        let recovered_from =
            (0..after.len()).find(|&i| after[i..].iter().take(STEADY_SECONDS).all(|p| normal(p)));
        let recovery_s = recovered_from.map(|i| (after[i].t - 1.0 - end).max(0.0));

        let mut errors_by_kind = BTreeMap::new();
        for p in &points {
            for kind in CLIENT_ERRORS {
                if let Some(n) = p.errors.get(kind) {
                    *errors_by_kind.entry(kind.to_owned()).or_insert(0) += n;
                }
            }
        }
        let checker = result.checker;
        let mut row = Self {
            fault: fault.to_owned(),
            errors: points.iter().map(|p| client_errors(p)).sum(),
            write_errors: points.iter().map(|p| p.write_errors).sum(),
            errors_by_kind,
            p99_during_ms: worst(&during),
            p99_after_ms: worst(&after),
            recovery_s,
            writes_acked: checker.map_or(0, |c| c.writes_acked),
            lost_writes: checker.map_or(0, |c| c.lost_writes),
            stale_reads: checker.map_or(0, |c| c.stale_reads),
            notes: injected.notes.clone(),
            failures: injected.failures.clone(),
        };
        if let Some(c) = checker
            && c.unverified > 0
        {
            row.notes.push(format!(
                "{} writes could not be verified by the sweep",
                c.unverified
            ));
        }
        row.notes.push(format!(
            "baseline p99 {baseline:.1} ms; normal = no errors and p99 ≤ {normal_p99:.1} ms"
        ));
        row.check(injected.expect, &during);
        row
    }

    fn check(&mut self, expect: Expect, during: &[&Point]) {
        let mut fail = |why: String| self.failures.push(why);
        if self.lost_writes > 0 {
            fail(format!("{} acknowledged writes lost", self.lost_writes));
        }
        if self.stale_reads > 0 {
            fail(format!("{} stale reads", self.stale_reads));
        }
        if self.recovery_s.is_none() {
            fail("did not recover before the run ended".into());
        }
        let read_errors = self.errors - self.write_errors;
        match expect {
            Expect::NoErrors if self.errors > 0 => fail(format!("{} client errors", self.errors)),
            Expect::NoReadErrors if read_errors > 0 => {
                fail(format!("{read_errors} read errors"));
            }
            Expect::QuickUnavailable { max_p99_ms } => {
                let not_5xx = self.errors - self.errors_by_kind.get("status_5xx").unwrap_or(&0);
                if not_5xx > 0 {
                    fail(format!("{not_5xx} errors other than a 5xx answer"));
                }
                if self.p99_during_ms > max_p99_ms {
                    fail(format!(
                        "p99 during {:.0} ms, above {max_p99_ms} ms",
                        self.p99_during_ms
                    ));
                }
                if during.iter().any(|p| p.achieved == 0) {
                    fail("a second with no request served".into());
                }
            }
            Expect::WithinSla => {
                if self.errors > 0 {
                    fail(format!("{} client errors", self.errors));
                }
                if self.p99_during_ms > SLA_P99_MS {
                    fail(format!(
                        "p99 during {:.1} ms, above the SLA's {SLA_P99_MS} ms",
                        self.p99_during_ms
                    ));
                }
            }
            _ => {}
        }
    }

    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    fn errors_cell(&self) -> String {
        if self.errors == 0 {
            return "0".into();
        }
        let kinds: Vec<String> = self
            .errors_by_kind
            .iter()
            .map(|(kind, n)| format!("{kind} {n}"))
            .collect();
        format!(
            "{} ({}; {} of writes)",
            self.errors,
            kinds.join(", "),
            self.write_errors
        )
    }

    fn cells(&self) -> [String; 8] {
        [
            self.fault.clone(),
            self.errors_cell(),
            format!("{:.1} ms", self.p99_during_ms),
            format!("{:.1} ms", self.p99_after_ms),
            self.recovery_s
                .map_or_else(|| "never".into(), |s| format!("{s:.0} s")),
            format!("{} of {}", self.lost_writes, self.writes_acked),
            self.stale_reads.to_string(),
            if self.passed() { "pass" } else { "FAIL" }.into(),
        ]
    }

    /// One line for the terminal.
    pub fn line(&self) -> String {
        let mut line = self.cells().join(" | ");
        for why in &self.failures {
            let _ = write!(line, "\n    failed: {why}");
        }
        line
    }
}

/// The Markdown table of the rows, with each row's notes and failures below it.
pub fn markdown(rows: &[Row]) -> String {
    let mut out = String::from(
        "| fault | client errors | p99 during | p99 after | recovery time | lost writes (of acked) | stale reads | verdict |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for row in rows {
        let _ = writeln!(out, "| {} |", row.cells().join(" | "));
    }
    out.push('\n');
    for row in rows {
        let _ = writeln!(out, "- **{}**: {}", row.fault, row.notes.join("; "));
        for why in &row.failures {
            let _ = writeln!(out, "  - failed: {why}");
        }
    }
    out
}
