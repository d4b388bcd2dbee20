use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use http::StatusCode;

use crate::helpers::{load, reply, serve};

/// Runs W1 over 5,000 courses (plus `extra` flags) against a server that logs every
/// path in the order it arrives; returns the log.
fn w1_paths(extra: &[&str]) -> Vec<String> {
    let log = Arc::new(Mutex::new(Vec::new()));
    let server = serve({
        let log = log.clone();
        move |req| {
            log.lock().unwrap().push(req.uri().to_string());
            async { reply(StatusCode::OK, "{}") }
        }
    });
    let mut flags = vec![
        "--workload",
        "w1",
        "--courses",
        "5000",
        "--rate",
        "1000",
        "--duration",
        "1s",
        "--warmup",
        "0s",
        "--connections",
        "8",
    ];
    flags.extend_from_slice(extra);
    let done = load(&server.url, &flags);
    assert_eq!(done.result.summary.errors, 0);
    assert_eq!(done.result.settings.prefill, extra.contains(&"--prefill"));
    log.lock().unwrap().clone()
}

#[test]
fn a_prefill_reads_every_page_of_the_run_once_before_the_run_starts() {
    let log = w1_paths(&["--prefill"]);
    let distinct: HashSet<&String> = log.iter().collect();
    let (prefill, run) = log.split_at(distinct.len());
    assert_eq!(
        prefill.iter().collect::<HashSet<_>>().len(),
        prefill.len(),
        "the prefill reads each page once"
    );
    assert_eq!(run.len(), 1000, "then the run's own requests");
    let first = run.iter().position(|p| !prefill.contains(p));
    assert_eq!(first, None, "the run read a page the prefill had not");
    assert!(
        run.iter().collect::<HashSet<_>>().len() == prefill.len(),
        "the prefill read only pages the run reads"
    );

    // Without it, Zipf ids repeat from the start: the same split fails.
    let log = w1_paths(&[]);
    let distinct = log.iter().collect::<HashSet<_>>().len();
    assert!(
        log[..distinct].iter().collect::<HashSet<_>>().len() < distinct,
        "a run without prefill reads some pages more than once early on"
    );
}
