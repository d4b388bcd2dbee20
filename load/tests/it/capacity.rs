use std::sync::{Arc, Mutex};
use std::time::Instant;

use http::StatusCode;

use crate::helpers::{load, reply, serve};

/// Answers 429 above `rate` requests/s (a token bucket holding 20 ms of tokens).
fn rate_limited(rate: f64) -> crate::helpers::Server {
    let burst = rate * 0.02;
    let bucket = Arc::new(Mutex::new((burst, Instant::now())));
    serve(move |_req| {
        let bucket = bucket.clone();
        async move {
            let mut b = bucket.lock().unwrap();
            let now = Instant::now();
            b.0 = (b.0 + now.duration_since(b.1).as_secs_f64() * rate).min(burst);
            b.1 = now;
            if b.0 >= 1.0 {
                b.0 -= 1.0;
                reply(StatusCode::OK, "ok")
            } else {
                reply(StatusCode::TOO_MANY_REQUESTS, "slow down")
            }
        }
    })
}

#[test]
fn find_capacity_finds_the_rate_a_server_is_limited_to() {
    let server = rate_limited(3000.0);
    let done = load(
        &server.url,
        &[
            "--find-capacity",
            "--start",
            "1000",
            "--step-factor",
            "2",
            "--precision",
            "0.1",
            "--hold",
            "1s",
            "--trial-warmup",
            "200ms",
            "--pause",
            "100ms",
            "--connections",
            "16",
        ],
    );
    let c = done.result.capacity.as_ref().unwrap();
    let found = c.capacity_rps.expect("some rate held");
    assert!(
        (2500.0..=3300.0).contains(&found),
        "found {found}/s for a 3000/s server; {:#?}",
        c.trials
    );
    // It stepped up past the limit and bisected back.
    assert!(c.trials.iter().any(|t| !t.passed && t.rate > 3000.0));
    assert!(c.trials.len() >= 4);
    assert!(
        done.result.verdict.passed,
        "the result's verdict is the best trial's"
    );
}
