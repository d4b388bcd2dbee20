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
            "--pause-after-failure",
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

#[test]
fn the_before_trial_command_runs_once_before_every_trial() {
    let server = crate::helpers::trivial();
    let marks = crate::helpers::temp_path("before-trial.txt");
    let command = format!("echo trial >> '{}'", marks.display());
    let done = load(
        &server.url,
        &[
            "--find-capacity",
            "--start",
            "100",
            "--max-rate",
            "400",
            "--step-factor",
            "2",
            // Every trial must hold even on a machine busy with other tests: this test
            // is about the command, not the SLA.
            "--sla-p99",
            "5s",
            "--hold",
            "300ms",
            "--trial-warmup",
            "100ms",
            "--pause",
            "50ms",
            "--before-trial",
            &command,
        ],
    );
    let trials = done.result.capacity.as_ref().unwrap().trials.len();
    assert_eq!(
        trials, 3,
        "100, 200 and 400/s, all held: {:#?}",
        done.result.capacity
    );
    let ran = std::fs::read_to_string(&marks).unwrap().lines().count();
    assert_eq!(ran, trials, "one run of the command per trial");
}

#[test]
fn the_search_pauses_longer_after_a_trial_that_failed() {
    // Every trial fails (500s): the start rate, then four steps down.
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let seen = arrivals.clone();
    let server = serve(move |_req| {
        seen.lock().unwrap().push(Instant::now());
        async { reply(StatusCode::INTERNAL_SERVER_ERROR, "down") }
    });
    let done = load(
        &server.url,
        &[
            "--find-capacity",
            "--start",
            "200",
            "--hold",
            "300ms",
            "--trial-warmup",
            "0s",
            "--pause",
            "10ms",
            "--pause-after-failure",
            "800ms",
        ],
    );
    let trials = done.result.capacity.as_ref().unwrap().trials.len();
    assert_eq!(trials, 5, "{:#?}", done.result.capacity);
    let arrivals = arrivals.lock().unwrap();
    let long_gaps = arrivals
        .windows(2)
        .filter(|pair| pair[1] - pair[0] >= std::time::Duration::from_millis(750))
        .count();
    assert_eq!(
        long_gaps,
        trials - 1,
        "one long pause before each later trial"
    );
}
