//! The write checker against a small in-memory Courser: a correct one, and a wrong one
//! that acknowledges every write but never shows it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http::{Method, StatusCode};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};

use crate::helpers::{Server, load, reply, serve};

const COURSES: u64 = 20;
const REVIEWERS: u64 = 20;
const SEEDED: u64 = 60;
const KEY: &str = "test-key";

#[derive(Default)]
struct Store {
    /// id → (course, reviewer, rating, comment, helpful, seq)
    reviews: BTreeMap<u64, (u64, u64, f64, String, u64)>,
    names: BTreeMap<u64, String>,
}

impl Store {
    fn seeded() -> Self {
        let mut s = Self::default();
        for id in 1..=SEEDED {
            s.reviews.insert(
                id,
                (
                    1 + id % COURSES,
                    1 + id % REVIEWERS,
                    4.0,
                    format!("seed {id}"),
                    0,
                ),
            );
        }
        for id in 1..=REVIEWERS {
            s.names.insert(id, format!("reviewer {id}"));
        }
        s
    }

    fn review(&self, id: u64) -> Value {
        let (course, reviewer, rating, comment, helpful) = &self.reviews[&id];
        json!({"id": id, "course_id": course, "reviewer_id": reviewer, "rating": rating,
               "comment": comment, "helpful": helpful, "reported": false,
               "reviewer": {"id": reviewer, "name": self.names[reviewer]}})
    }
}

/// `correct`: writes show at once. Otherwise writes are acknowledged as if applied but
/// the store never changes.
fn courser(correct: bool) -> Server {
    let store = Arc::new(Mutex::new(Store::seeded()));
    let next_id = Arc::new(Mutex::new(SEEDED));
    serve(move |req| {
        let (store, next_id) = (store.clone(), next_id.clone());
        async move {
            let method = req.method().clone();
            let path = req.uri().path().to_string();
            let query: BTreeMap<String, String> = req
                .uri()
                .query()
                .unwrap_or("")
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let authorized = req
                .headers()
                .get("authorization")
                .is_some_and(|v| v.as_bytes() == format!("Bearer {KEY}").as_bytes());
            let body = req.into_body().collect().await.unwrap().to_bytes();
            if method != Method::GET && !authorized {
                return reply(StatusCode::UNAUTHORIZED, "{}");
            }
            let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
            let mut s = store.lock().unwrap();
            let ok = |v: Value| reply(StatusCode::OK, v.to_string());
            let id = |i: usize| {
                parts
                    .get(i)
                    .and_then(|p| p.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            match (method, parts.as_slice()) {
                (Method::GET, ["course", _, "reviews"]) => {
                    let course = id(1);
                    // Like the real API, a cursor is only valid with the query it came from.
                    let order = format!(
                        "c-{}-{}",
                        query.get("sort").map_or("recent", String::as_str),
                        query.get("stars").map_or("all", String::as_str)
                    );
                    if query.get("cursor").is_some_and(|c| *c != order) {
                        return reply(StatusCode::BAD_REQUEST, "{}");
                    }
                    let mut ids: Vec<u64> = s
                        .reviews
                        .iter()
                        .filter(|(_, r)| r.0 == course)
                        .map(|(id, _)| *id)
                        .collect();
                    ids.sort_unstable_by(|a, b| b.cmp(a)); // newest (highest id) first
                    let reviews: Vec<Value> = ids.iter().take(10).map(|i| s.review(*i)).collect();
                    ok(json!({"course_id": course, "reviews": reviews, "next_cursor": order}))
                }
                (Method::GET, ["review", _]) if s.reviews.contains_key(&id(1)) => {
                    ok(s.review(id(1)))
                }
                (Method::GET, ["reviewer", _]) if s.names.contains_key(&id(1)) => {
                    ok(json!({"id": id(1), "name": s.names[&id(1)]}))
                }
                (Method::POST, ["review"]) => {
                    let v: Value = serde_json::from_slice(&body).unwrap();
                    let mut n = next_id.lock().unwrap();
                    *n += 1;
                    let rec = (
                        v["course_id"].as_u64().unwrap(),
                        v["reviewer_id"].as_u64().unwrap(),
                        v["rating"].as_f64().unwrap(),
                        v["comment"].as_str().unwrap().to_string(),
                        0,
                    );
                    let answer = json!({"id": *n, "course_id": rec.0, "reviewer_id": rec.1,
                                        "rating": rec.2, "comment": rec.3, "helpful": 0});
                    if correct {
                        s.reviews.insert(*n, rec);
                    }
                    reply(StatusCode::CREATED, answer.to_string())
                }
                (Method::POST, ["review", _, "helpful"]) if s.reviews.contains_key(&id(1)) => {
                    let rid = id(1);
                    let mut r = s.reviews[&rid].clone();
                    r.4 += 1;
                    let answer = json!({"id": rid, "course_id": r.0, "reviewer_id": r.1,
                                        "rating": r.2, "comment": r.3, "helpful": r.4});
                    if correct {
                        s.reviews.insert(rid, r);
                    }
                    ok(answer)
                }
                (Method::PUT, ["reviewer", _]) if s.names.contains_key(&id(1)) => {
                    let v: Value = serde_json::from_slice(&body).unwrap();
                    let name = v["name"].as_str().unwrap().to_string();
                    if correct {
                        s.names.insert(id(1), name.clone());
                    }
                    ok(json!({"id": id(1), "name": name}))
                }
                _ => reply(StatusCode::NOT_FOUND, "{}"),
            }
        }
    })
}

/// W3 against the test server's small data set, with `run` shaping the run.
fn w3_with(url: &str, run: &[&str]) -> courser_load::cli::Done {
    let mut flags = vec!["--workload", "w3", "--connections", "16"];
    flags.extend_from_slice(run);
    flags.extend_from_slice(&[
        "--courses",
        "20",
        "--reviewers",
        "20",
        "--reviews",
        "60",
        "--api-key",
        KEY,
    ]);
    load(url, &flags)
}

fn w3(url: &str) -> courser_load::cli::Done {
    w3_with(
        url,
        &["--rate", "600", "--duration", "2s", "--warmup", "0s"],
    )
}

#[test]
fn a_server_that_acknowledges_writes_but_never_shows_them_has_stale_reads_and_lost_writes() {
    let server = courser(false);
    let done = w3(&server.url);
    let c = done.result.checker.as_ref().expect("W3 runs the checker");
    assert!(c.writes_acked > 20, "{c:?}");
    assert!(c.stale_reads > 0, "no stale read reported: {c:?}");
    assert!(c.lost_writes > 0, "no lost write reported: {c:?}");
    // Findings name the ids involved, and every kind of write was caught.
    let lost: Vec<_> = c
        .violations
        .iter()
        .filter(|v| v.kind.label() == "lost_write")
        .collect();
    assert!(
        lost.iter()
            .any(|v| v.what.starts_with("created review") && v.review_id.is_some())
    );
    assert!(lost.iter().any(|v| v.what.contains("helpful")));
    assert!(lost.iter().any(|v| v.reviewer_id.is_some()));
    // During the run too: each kind of check found its stale reads, all past the bound.
    let stale: Vec<_> = c
        .violations
        .iter()
        .filter(|v| v.kind.label() == "stale_read")
        .collect();
    assert!(stale.iter().all(|v| v.lag_ms >= 100.0));
    for what in ["first page", "GET /review/", "helpful", "name"] {
        assert!(
            stale.iter().any(|v| v.what.contains(what)),
            "no stale read of kind '{what}'"
        );
    }
    let s = &done.result.summary;
    assert_eq!(s.errors_by_kind.get("stale_read"), Some(&c.stale_reads));
    assert_eq!(s.errors_by_kind.get("lost_write"), Some(&c.lost_writes));
    assert!(!done.result.verdict.passed);
}

#[test]
fn a_capacity_search_keeps_each_failed_trials_findings() {
    let server = courser(false);
    let done = w3_with(
        &server.url,
        &[
            "--find-capacity",
            "--start",
            "400",
            "--max-rate",
            "400",
            "--hold",
            "2s",
            "--trial-warmup",
            "0s",
            "--pause",
            "100ms",
            "--pause-after-failure",
            "100ms",
        ],
    );
    let c = done.result.capacity.as_ref().unwrap();
    let trial = &c.trials[0];
    assert!(!trial.passed);
    assert!(
        trial
            .findings
            .iter()
            .any(|v| v.kind.label() == "stale_read"),
        "{:?}",
        trial.reasons
    );
}

#[test]
fn a_correct_server_has_no_findings() {
    let server = courser(true);
    let done = w3(&server.url);
    let c = done.result.checker.as_ref().expect("W3 runs the checker");
    assert!(c.writes_acked > 20 && c.reads_checked > 500, "{c:?}");
    assert_eq!(c.writes_failed, 0, "{c:?}");
    assert!(c.swept > 20, "{c:?}");
    assert_eq!(
        (c.stale_reads, c.lost_writes),
        (0, 0),
        "{:#?}",
        c.violations
    );
    assert_eq!(
        done.result.summary.errors, 0,
        "{:?}",
        done.result.summary.errors_by_kind
    );
}
