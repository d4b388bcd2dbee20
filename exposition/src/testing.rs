//! Test support for the crates that serve `/metrics`: `promtool check metrics` (Debian's
//! `prometheus` package; `dashboards/check` installs it, CI runs that first), and the
//! families served against `dashboards/exported-metrics.txt`, which the dashboards are
//! checked against. Failures panic: these run inside tests.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test support: a failed unwrap is a failed test"
)]

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};

/// The `Accept` header Prometheus sends.
pub const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// Runs `promtool check metrics` on `exposition` (classic text format), failing the test
/// with promtool's findings unless it is clean.
pub fn promtool_check_metrics(exposition: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run promtool ({e}): install Debian's prometheus package \
                 (apt-get install prometheus; dashboards/check does it)"
            )
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics: {}\n{}{}\n--- the exposition ---\n{exposition}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}

/// `(name, type)` of every family a classic exposition declares.
pub fn served_families(exposition: &str) -> BTreeSet<(String, String)> {
    exposition
        .lines()
        .filter_map(|line| {
            let mut words = line.strip_prefix("# TYPE ")?.split(' ');
            Some((words.next()?.to_owned(), words.next()?.to_owned()))
        })
        .collect()
}

/// `(name, type)` of every family `dashboards/exported-metrics.txt` lists under `prefix`.
pub fn documented_families(prefix: &str) -> BTreeSet<(String, String)> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../dashboards/exported-metrics.txt"
    );
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|line| {
            let mut words = line.split('#').next()?.split_whitespace();
            let name = words.next()?;
            let kind = words.next()?;
            name.starts_with(prefix)
                .then(|| (name.to_owned(), kind.to_owned()))
        })
        .collect()
}

/// The sum of the samples named `name` whose line contains every one of `parts`.
pub fn sample_sum(exposition: &str, name: &str, parts: &[&str]) -> f64 {
    exposition
        .lines()
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter(|l| parts.iter().all(|p| l.contains(p)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Asserts that a response to Prometheus' `Accept` header is OpenMetrics: its content
/// type, the closing `# EOF`, and the counter family `counter` declared the OpenMetrics
/// way (without `_total`).
pub fn assert_openmetrics(content_type: &str, body: &str, counter: &str) {
    assert_eq!(
        content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");
    assert!(
        body.contains(&format!("# TYPE {counter} counter\n")),
        "{body}"
    );
}
