//! `courser chaos`: the cases asked for, run in order against the local stack, with the
//! summary printed and optionally written as a Markdown report.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

use super::{Fault, Options, Stack, summary};
use crate::layout::Layout;

/// Runs the cases (all when `cases` is empty); true when every fault met its target.
pub async fn run(
    layout: &Layout,
    cases: &[u8],
    rate: f64,
    seconds: u64,
    scale: f64,
    report: Option<PathBuf>,
) -> anyhow::Result<bool> {
    let cases: Vec<u8> = if cases.is_empty() {
        (1..=7).collect()
    } else {
        cases.to_vec()
    };
    let mut faults = Vec::new();
    for &case in &cases {
        faults.extend(Fault::of_case(case)?);
    }
    let stack = Stack::local(layout, scale)?;
    let options = Options {
        rate,
        warmup: Duration::from_secs(5),
        lead: Duration::from_secs(10),
        length: None,
        after: Duration::from_secs(seconds),
        out_dir: layout.home.join("chaos"),
    };
    let started = time::OffsetDateTime::now_utc();
    let rows = super::run_all(&stack, &faults, &options).await?;
    let table = summary::markdown(&rows);
    println!("\n{table}");
    println!(
        "load results (JSON, HTML, logs): {}",
        options.out_dir.display()
    );
    if let Some(path) = report {
        let command: Vec<String> = std::env::args().collect();
        let mut doc = String::from("# Reliability: the fault suite\n\n");
        let _ = writeln!(
            doc,
            "Measured with `{}` (`courser chaos`, issue 8) on {} UTC.\n",
            command
                .join(" ")
                .replace(&std::env::current_exe()?.display().to_string(), "courser"),
            started
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        );
        let _ = writeln!(doc, "{}\n", conditions(rate, seconds, scale));
        doc.push_str(&table);
        std::fs::write(&path, doc).with_context(|| format!("cannot write {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(rows.iter().all(summary::Row::passed))
}

/// The conditions of the run, for the report.
fn conditions(rate: f64, seconds: u64, scale: f64) -> String {
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let loadavg = loadavg.split(' ').take(3).collect::<Vec<_>>().join(" ");
    format!(
        "Conditions: the local stack of `courser up` (Postgres, Redis, 4 api instances behind \
         the proxy) with data seeded at scale {scale}, on one machine with {cores} cores \
         (load average {loadavg} at the end). Each fault runs its own `courser-load` run: \
         5 s warm-up ramp, 10 s at {rate} req/s before the fault (the baseline), the fault, \
         then {seconds} s after it is undone; W3 with its write checker, except case 5 \
         (cached course pages only). p99 during/after are the worst one-second p99 in \
         those windows; recovery time runs from the fault's end to the first of three seconds \
         in a row with no client error and p99 within the SLA (25 ms) or twice the \
         baseline. Lost writes are acknowledged writes the checker's final sweep did \
         not find; stale reads are reads past the 100 ms freshness bound that did not \
         show an acknowledged write."
    )
}
