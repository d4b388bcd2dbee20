use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::StatusCode;

use crate::helpers::{load, reply, serve};

/// Answers at once, except that one second after its first request it stalls every
/// answer for 200 ms (once).
fn stalling_server() -> crate::helpers::Server {
    let state: Arc<Mutex<(Option<Instant>, Option<Instant>)>> = Arc::default();
    serve(move |_req| {
        let state = state.clone();
        async move {
            let now = Instant::now();
            let until = {
                let mut s = state.lock().unwrap();
                let first = *s.0.get_or_insert(now);
                if s.1.is_none() && now.duration_since(first) >= Duration::from_secs(1) {
                    s.1 = Some(now + Duration::from_millis(200));
                }
                s.1.filter(|u| *u > now)
            };
            if let Some(u) = until {
                tokio::time::sleep_until(u.into()).await;
            }
            reply(StatusCode::OK, "ok")
        }
    })
}

#[test]
fn a_200_ms_stall_shows_in_p99_because_latency_counts_from_the_due_time() {
    let server = stalling_server();
    // 8 connections: timed from when each request was sent, only the 8 requests
    // caught in the stall would be slow (0.3% of 3,000) and p99 would hide it; timed
    // from when they were due, the ~200 requests due during the stall all count.
    let done = load(
        &server.url,
        &[
            "--rate",
            "1000",
            "--duration",
            "3s",
            "--warmup",
            "0s",
            "--connections",
            "8",
        ],
    );
    let l = &done.result.summary.latency_ms;
    assert!(l.p99 >= 100.0, "p99 {} ms hides a 200 ms stall", l.p99);
    assert!(l.max >= 180.0, "max {} ms", l.max);
    assert!(
        l.p50 < 10.0,
        "p50 {} ms: the stall should not move the median",
        l.p50
    );
    assert!(done.result.summary.queued_for_connection >= 150);
    assert!(
        !done.result.verdict.passed,
        "a 200 ms stall breaks a 25 ms p99 SLA"
    );
}

/// Past capacity the tool's queue grows, but a request it sends still has the whole
/// timeout for its answer. Timed out from its due time instead, each request sent at the
/// end of the queue had only what was left of its timeout, and the tool hung up on
/// nearly every answer the server was about to give: the run answered a fraction of what
/// the server could.
#[test]
fn past_capacity_the_server_still_answers_at_its_own_rate() {
    // 4 connections to a server that takes 50 ms per answer: 80/s at most.
    let server = serve(|_req| async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        reply(StatusCode::OK, "ok")
    });
    let done = load(
        &server.url,
        &[
            "--rate",
            "200",
            "--duration",
            "4s",
            "--warmup",
            "0s",
            "--connections",
            "4",
            "--timeout",
            "300ms",
        ],
    );
    let summary = &done.result.summary;
    assert!(
        summary.ok >= 240,
        "{} answers in 4 s from a server that gives 80 a second: {:?}",
        summary.ok,
        summary.errors_by_kind
    );
    assert!(
        summary.errors_by_kind.get("timeout").copied().unwrap_or(0) >= 300,
        "what the server could not take counts as timeouts: {:?}",
        summary.errors_by_kind
    );
}
