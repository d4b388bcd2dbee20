use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http::StatusCode;

use crate::helpers::{load, reply, serve, trivial};

#[test]
fn the_offered_rate_stays_within_one_percent_of_the_target() {
    let server = trivial();
    let done = load(
        &server.url,
        &[
            "--rate",
            "2000",
            "--duration",
            "3s",
            "--warmup",
            "0s",
            "--connections",
            "16",
        ],
    );
    let s = &done.result.summary;
    let within = |v: f64, what: &str| {
        assert!(
            (v - 2000.0).abs() <= 20.0,
            "{what} {v}/s is not within 1% of 2000/s"
        );
    };
    within(s.offered_rps, "offered");
    within(s.sent_rps, "sent");
    within(s.achieved_rps, "achieved");
    // Every full second, not just the average, holds the rate.
    for p in done.result.series.iter().take(3) {
        within(p.sent as f64, &format!("second {} sent", p.t));
    }
    assert_eq!(s.errors, 0, "{:?}", s.errors_by_kind);
}

#[test]
fn a_ramp_offers_the_area_under_its_stages_also_split_over_two_workers() {
    let server = trivial();
    // 0 → 1000/s over 1 s (500 requests) then 1000/s for 1 s (1000 requests); two
    // workers take alternate slots of the one schedule.
    let done = load(
        &server.url,
        &[
            "--stages",
            "1s:1000,1s:1000",
            "--connections",
            "8",
            "--workers",
            "2",
        ],
    );
    let sent: u64 = done.result.series.iter().map(|p| p.sent).sum();
    assert!((1485..=1515).contains(&sent), "sent {sent}");
    let first = done.result.series[0].sent as f64;
    assert!((first - 500.0).abs() <= 10.0, "first second sent {first}");
}

#[test]
fn connections_come_from_the_source_addresses_in_turn() {
    let seen: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let server = serve({
        let seen = seen.clone();
        move |req| {
            let peer = req.extensions().get::<SocketAddr>().unwrap().ip();
            *seen.lock().unwrap().entry(peer.to_string()).or_default() += 1;
            async { reply(StatusCode::OK, "{}") }
        }
    });
    let done = load(
        &server.url,
        &[
            "--rate",
            "400",
            "--duration",
            "1s",
            "--warmup",
            "0s",
            "--connections",
            "8",
            "--source-addresses",
            "127.0.1.1,127.0.1.2",
        ],
    );
    assert_eq!(done.result.summary.errors, 0);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    for address in ["127.0.1.1", "127.0.1.2"] {
        let n = seen.get(address).copied().unwrap_or(0);
        assert!(
            (150..=250).contains(&n),
            "{address} sent {n} of 400: {seen:?}"
        );
    }
}
