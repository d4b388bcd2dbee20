//! The HTML report: one self-contained page (inline CSS and SVG, no scripts, nothing
//! fetched) with the summary, the verdict, the processes, the checker's findings and
//! charts over time.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::svg::{Chart, Line, esc};
use crate::result::RunResult;

const COLORS: [&str; 8] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
];

#[must_use]
pub fn html(r: &RunResult) -> String {
    let s = &r.summary;
    let mut h = String::new();
    let title = format!("{} against {}", r.workload, r.target);
    let _ = write!(
        h,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>courser-load: {t}</title>
<style>body{{font-family:sans-serif;margin:2em;color:#222;max-width:980px}}table{{border-collapse:collapse;margin:.5em 0 1.5em}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}th{{background:#f4f4f4}}td.l,th.l{{text-align:left}}
.pass{{color:#fff;background:#2a2;padding:2px 8px}}.fail{{color:#fff;background:#c22;padding:2px 8px}}svg{{display:block;margin:1em 0}}</style></head><body>
<h1>{t}</h1><p>{tool}, started {started}. Latency counts from each request's due time (open model).</p>"#,
        t = esc(&title),
        tool = esc(&r.tool),
        started = esc(&r.started_at)
    );
    let _ = write!(
        h,
        r#"<h2>Verdict: <span class="{}">{}</span></h2><p>SLA: {}. {}</p>"#,
        if r.verdict.passed { "pass" } else { "fail" },
        if r.verdict.passed { "PASS" } else { "FAIL" },
        esc(&r.verdict.sla.describe()),
        esc(&r.verdict.reasons.join("; "))
    );
    if let Some(c) = &r.capacity {
        let _ = write!(
            h,
            "<h2>Capacity at SLA: {}</h2><table><tr><th>rate/s</th><th>held</th><th>achieved/s</th><th>p99 ms</th><th>errors</th><th class=l>why not</th></tr>",
            c.capacity_rps
                .map_or("none of the rates tried".to_string(), |v| format!(
                    "{v:.0} requests/s for {:.0} s",
                    c.hold_s
                ))
        );
        for t in &c.trials {
            let _ = write!(
                h,
                "<tr><td>{:.0}</td><td>{}</td><td>{:.1}</td><td>{:.2}</td><td>{}</td><td class=l>{}</td></tr>",
                t.rate,
                if t.passed { "yes" } else { "no" },
                t.achieved_rps,
                t.p99_ms,
                t.errors,
                esc(&t.reasons.join("; "))
            );
        }
        h.push_str("</table>");
    }
    let l = &s.latency_ms;
    let _ = write!(
        h,
        "<h2>Summary (measured stages, {:.0} s)</h2><table>\
<tr><th>offered/s</th><th>sent/s</th><th>achieved/s</th><th>requests</th><th>errors</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>p99.9 ms</th><th>max ms</th></tr>\
<tr><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td></tr></table>",
        s.measured_seconds,
        s.offered_rps,
        s.sent_rps,
        s.achieved_rps,
        s.requests,
        s.errors,
        l.p50,
        l.p90,
        l.p99,
        l.p999,
        l.max
    );
    if !s.errors_by_kind.is_empty() {
        h.push_str("<table><tr><th class=l>error kind</th><th>count</th></tr>");
        for (k, n) in &s.errors_by_kind {
            let _ = write!(h, "<tr><td class=l>{}</td><td>{n}</td></tr>", esc(k));
        }
        h.push_str("</table>");
    }
    if !r.processes.is_empty() {
        h.push_str("<h2>Processes</h2><table><tr><th class=l>name</th><th class=l>pids</th><th>CPU s</th><th>CPU s per 1k requests</th><th>peak memory MiB</th></tr>");
        for p in &r.processes {
            let _ = write!(
                h,
                "<tr><td class=l>{}</td><td class=l>{:?}</td><td>{:.2}</td><td>{:.4}</td><td>{:.1}</td></tr>",
                esc(&p.name),
                p.pids,
                p.cpu_seconds,
                p.cpu_seconds_per_1k,
                p.peak_memory_bytes as f64 / (1024.0 * 1024.0)
            );
        }
        h.push_str("</table>");
    }
    if let Some(c) = &r.checker {
        let _ = write!(
            h,
            "<h2>Write checker</h2><p>{} writes acknowledged ({} failed), {} reads checked; \
<b>{} stale reads</b> past the {} ms bound, <b>{} lost writes</b> ({} sweep reads, {} unverified).</p>",
            c.writes_acked,
            c.writes_failed,
            c.reads_checked,
            c.stale_reads,
            c.freshness_bound_ms,
            c.lost_writes,
            c.swept,
            c.unverified
        );
        if !c.violations.is_empty() {
            h.push_str("<table><tr><th class=l>kind</th><th class=l>what</th><th class=l>expected</th><th class=l>got</th><th>acked at ms</th><th>read at ms</th><th>lag ms</th></tr>");
            for v in c.violations.iter().take(200) {
                let _ = write!(
                    h,
                    "<tr><td class=l>{}</td><td class=l>{}</td><td class=l>{}</td><td class=l>{}</td><td>{:.0}</td><td>{:.0}</td><td>{:.0}</td></tr>",
                    v.kind.label(),
                    esc(&v.what),
                    esc(&v.expected),
                    esc(&v.got),
                    v.write_acked_ms,
                    v.read_sent_ms,
                    v.lag_ms
                );
            }
            h.push_str("</table>");
        }
    }

    let markers: Vec<(f64, String)> = r
        .capacity
        .iter()
        .flat_map(|c| {
            c.trials
                .iter()
                .map(|t| (t.start_s, format!("{:.0}/s", t.rate)))
        })
        .collect();
    let pts = |f: &dyn Fn(&crate::result::Point) -> f64| -> Vec<(f64, f64)> {
        r.series.iter().map(|p| (p.t, f(p))).collect()
    };
    h.push_str("<h2>Over time</h2>");
    let rate = Chart {
        title: "Request rate",
        unit: "requests/s",
        lines: vec![
            Line {
                name: "offered",
                color: COLORS[0],
                points: pts(&|p| p.offered),
                dashed: true,
            },
            Line {
                name: "sent",
                color: COLORS[7],
                points: pts(&|p| p.sent as f64),
                dashed: false,
            },
            Line {
                name: "achieved (ok)",
                color: COLORS[2],
                points: pts(&|p| p.achieved as f64),
                dashed: false,
            },
        ],
        log_y: false,
        markers: markers.clone(),
    };
    h.push_str(&rate.render());
    let sla = r.verdict.sla.p99_ms;
    let latency = Chart {
        title: "Latency from due time (log scale)",
        unit: "ms",
        lines: vec![
            Line {
                name: "p50",
                color: COLORS[0],
                points: pts(&|p| p.latency_ms.p50),
                dashed: false,
            },
            Line {
                name: "p90",
                color: COLORS[2],
                points: pts(&|p| p.latency_ms.p90),
                dashed: false,
            },
            Line {
                name: "p99",
                color: COLORS[1],
                points: pts(&|p| p.latency_ms.p99),
                dashed: false,
            },
            Line {
                name: "p99.9",
                color: COLORS[3],
                points: pts(&|p| p.latency_ms.p999),
                dashed: false,
            },
            Line {
                name: "SLA p99",
                color: COLORS[7],
                points: r.series.iter().map(|p| (p.t, sla)).collect(),
                dashed: true,
            },
        ],
        log_y: true,
        markers: markers.clone(),
    };
    h.push_str(&latency.render());
    let kinds: BTreeSet<&String> = r.series.iter().flat_map(|p| p.errors.keys()).collect();
    let mut lines: Vec<Line<'_>> = kinds
        .iter()
        .enumerate()
        .map(|(i, k)| Line {
            name: k.as_str(),
            color: COLORS[(i + 3) % COLORS.len()],
            points: r
                .series
                .iter()
                .map(|p| (p.t, p.errors.get(*k).copied().unwrap_or(0) as f64))
                .collect(),
            dashed: false,
        })
        .collect();
    if lines.is_empty() {
        lines.push(Line {
            name: "no errors",
            color: COLORS[2],
            points: pts(&|_| 0.0),
            dashed: false,
        });
    }
    let errors = Chart {
        title: "Errors per second by kind",
        unit: "errors/s",
        lines,
        log_y: false,
        markers,
    };
    h.push_str(&errors.render());
    let st = &r.settings;
    let _ = write!(
        h,
        "<h2>Settings</h2><table><tr><th class=l>connections</th><td>{}</td></tr><tr><th class=l>workers</th><td>{}</td></tr>\
<tr><th class=l>timeout ms</th><td>{}</td></tr><tr><th class=l>data set (courses / reviewers / reviews)</th><td>{} / {} / {}</td></tr>\
<tr><th class=l>stages</th><td>{}</td></tr></table></body></html>",
        st.connections,
        st.workers,
        st.timeout_ms,
        st.dataset.courses,
        st.dataset.reviewers,
        st.dataset.reviews,
        esc(&st
            .stages
            .iter()
            .map(|s| format!(
                "{}{}ms→{}/s",
                if s.warmup { "warm-up " } else { "" },
                s.duration.as_millis(),
                s.target
            ))
            .collect::<Vec<_>>()
            .join(", "))
    );
    h.push('\n');
    h
}
