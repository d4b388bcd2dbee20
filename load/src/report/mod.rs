//! What a run leaves behind: the JSON result, the HTML report and the summary printed
//! at the end.

mod html;
pub mod svg;

use std::fmt::Write as _;
use std::path::Path;

pub use html::html;

use crate::Error;
use crate::result::RunResult;

/// Writes the result as pretty JSON.
pub fn write_json(result: &RunResult, path: &Path) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(result).map_err(|e| Error::Write {
        path: path.display().to_string(),
        source: std::io::Error::other(e),
    })?;
    write(path, &text)
}

/// Writes the self-contained HTML report.
pub fn write_html(result: &RunResult, path: &Path) -> Result<(), Error> {
    write(path, &html(result))
}

fn write(path: &Path, text: &str) -> Result<(), Error> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| Error::Write {
            path: dir.display().to_string(),
            source,
        })?;
    }
    std::fs::write(path, text).map_err(|source| Error::Write {
        path: path.display().to_string(),
        source,
    })
}

/// The end-of-run summary for the terminal.
#[must_use]
pub fn summary_text(r: &RunResult) -> String {
    let s = &r.summary;
    let mut t = String::new();
    let _ = writeln!(
        t,
        "{} against {}: {:.0} s measured",
        r.workload, r.target, s.measured_seconds
    );
    let _ = writeln!(
        t,
        "  rate       offered {:.1}/s  sent {:.1}/s  achieved {:.1}/s  ({} requests, {} ok)",
        s.offered_rps, s.sent_rps, s.achieved_rps, s.requests, s.ok
    );
    let l = &s.latency_ms;
    let _ = writeln!(
        t,
        "  latency    p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms  (from due time)",
        l.p50, l.p90, l.p99, l.p999, l.max
    );
    let errors = if s.errors_by_kind.is_empty() {
        "none".to_string()
    } else {
        s.errors_by_kind
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(t, "  errors     {errors}");
    if s.queued_for_connection > 0 {
        let _ = writeln!(
            t,
            "  queued     {} requests were due while every connection was busy",
            s.queued_for_connection
        );
    }
    if s.send_lag_p99_ms > 5.0 {
        let _ = writeln!(
            t,
            "  warning    the tool's own timer lag p99 is {:.1} ms: the load tool may be the bottleneck (more --workers?)",
            s.send_lag_p99_ms
        );
    }
    if let Some(c) = &r.checker {
        let _ = writeln!(
            t,
            "  checker    {} writes acknowledged ({} failed), {} reads checked, {} stale reads past {} ms, {} lost writes ({} swept, {} unverified)",
            c.writes_acked,
            c.writes_failed,
            c.reads_checked,
            c.stale_reads,
            c.freshness_bound_ms,
            c.lost_writes,
            c.swept,
            c.unverified
        );
        for v in c.violations.iter().take(10) {
            let _ = writeln!(
                t,
                "    {}: {} (expected {}, got {}; read {:.0} ms after the ack)",
                v.kind.label(),
                v.what,
                v.expected,
                v.got,
                v.lag_ms
            );
        }
        if c.violations.len() > 10 {
            let _ = writeln!(
                t,
                "    … {} more in the JSON result",
                c.violations.len() - 10
            );
        }
    }
    for p in &r.processes {
        let _ = writeln!(
            t,
            "  process    {:<14} cpu {:.2} s  ({:.4} s per 1k requests)  peak memory {:.1} MiB  pids {:?}",
            p.name,
            p.cpu_seconds,
            p.cpu_seconds_per_1k,
            p.peak_memory_bytes as f64 / (1024.0 * 1024.0),
            p.pids
        );
    }
    if let Some(c) = &r.capacity {
        for tr in &c.trials {
            let _ = writeln!(
                t,
                "  trial      {:>9.0}/s  {}  achieved {:.0}/s  p99 {:.2} ms  errors {}",
                tr.rate,
                if tr.passed { "held  " } else { "failed" },
                tr.achieved_rps,
                tr.p99_ms,
                tr.errors
            );
        }
        let _ = match c.capacity_rps {
            Some(rate) => writeln!(
                t,
                "  capacity   {rate:.0} requests/s held {} for {:.0} s",
                r.verdict.sla.describe(),
                c.hold_s
            ),
            None => writeln!(
                t,
                "  capacity   no rate tried held {}",
                r.verdict.sla.describe()
            ),
        };
    }
    let _ = writeln!(
        t,
        "  SLA        {}: {}{}",
        r.verdict.sla.describe(),
        if r.verdict.passed { "PASS" } else { "FAIL" },
        if r.verdict.reasons.is_empty() {
            String::new()
        } else {
            format!(" ({})", r.verdict.reasons.join("; "))
        }
    );
    t
}
