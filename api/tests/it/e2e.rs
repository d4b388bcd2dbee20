//! The real `courser-api` binary, started as a process and spoken to over HTTP.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{KEY, TestDb, ok_json, redis_url};
use courser_exposition::testing::{
    PROMETHEUS_ACCEPT, assert_openmetrics, documented_families, promtool_check_metrics, sample_sum,
    served_families,
};

const BINARY: &str = env!("CARGO_BIN_EXE_courser-api");

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the binary on a free port against `db`, with `env` on top of the test key, and
/// waits until it is ready.
async fn start(db: &TestDb, env: &[(&str, &str)]) -> (Process, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let server = Process(
        Command::new(BINARY)
            .env("COURSER_LISTEN", &addr)
            .env("COURSER_DATABASE_URL", &db.url)
            .env("COURSER_API_KEYS", format!("{KEY},another-key-0123456789"))
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let client = reqwest::Client::new();
    for _ in 0..100 {
        if client
            .get(format!("http://{addr}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == StatusCode::OK)
        {
            return (server, addr);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("courser-api did not become ready");
}

/// The threads of process `pid` that are tokio's workers (blocking threads have another
/// name).
fn worker_threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter(|task| {
            let comm = task.as_ref().unwrap().path().join("comm");
            std::fs::read_to_string(comm).is_ok_and(|name| name.trim() == "tokio-rt-worker")
        })
        .count()
}

#[tokio::test]
async fn the_binary_migrates_serves_the_api_and_stops_cleanly_on_sigterm() {
    let db = TestDb::create().await;
    let migrate = Command::new(BINARY)
        .arg("migrate")
        .env("COURSER_DATABASE_URL", &db.url)
        .output()
        .unwrap();
    assert!(
        migrate.status.success(),
        "{}",
        String::from_utf8_lossy(&migrate.stderr)
    );

    let env = [
        ("COURSER_MIGRATE_ON_START", "false"),
        ("COURSER_WORKER_THREADS", "3"),
    ];
    let (mut server, addr) = start(&db, &env).await;
    assert_eq!(worker_threads(server.0.id()), 3, "COURSER_WORKER_THREADS");
    let client = reqwest::Client::new();
    let url = |path: &str| format!("http://{addr}{path}");

    let created = client
        .post(url("/rating"))
        .bearer_auth(KEY)
        .json(&json!({"course_id": 9}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let page = ok_json(
        client.get(url("/course/9/reviews")).send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(page["course_id"], 9);

    let pid = server.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::task::spawn_blocking(move || server.0.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "exit status {status}");
}

#[tokio::test]
async fn the_binary_refuses_to_start_with_a_configuration_mistake_and_names_it() {
    let cases = [
        (vec![("COURSER_API_KEYS", "")], "api_keys"),
        (
            vec![
                ("COURSER_API_KEYS", "0123456789abcdef0"),
                ("COURSER_POOL_SIZE", "many"),
            ],
            "pool_size",
        ),
        (
            vec![
                ("COURSER_API_KEYS", "0123456789abcdef0"),
                ("COURSER_LISTEN", "nowhere"),
            ],
            "listen",
        ),
        (
            vec![
                ("COURSER_API_KEYS", "0123456789abcdef0"),
                ("COURSER_WORKER_THREADS", "0"),
            ],
            "worker_threads",
        ),
    ];
    for (env, setting) in cases {
        let output = Command::new(BINARY).envs(env).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success());
        let named = stderr.to_lowercase().contains(setting);
        assert!(named, "stderr does not name {setting}: {stderr}");
    }
}

#[tokio::test]
async fn the_binary_s_metrics_pass_promtool_after_traffic_and_are_the_documented_families() {
    let db = TestDb::create().await;
    let prefix = format!("courser-test-{:016x}", rand::random::<u64>());
    let redis = redis_url();
    let env = [
        ("COURSER_REDIS_URL", redis.as_str()),
        ("COURSER_CACHE_PREFIX", &prefix),
    ];
    let (_server, addr) = start(&db, &env).await;
    let client = reqwest::Client::new();
    let url = |path: &str| format!("http://{addr}{path}");
    let write = |method: reqwest::Method, path: &str, body: Value| {
        client
            .request(method, url(path))
            .bearer_auth(KEY)
            .json(&body)
            .send()
    };

    // Reads and writes through every kind of statement, a miss and a hit of the cache,
    // and answers 400 and 404, so that counters and histograms have samples.
    use reqwest::Method;
    let created = write(Method::POST, "/rating", json!({"course_id": 9}))
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let reviewer = write(Method::POST, "/reviewer", json!({"name": "Ada Lovelace"}));
    let reviewer = ok_json(reviewer.await.unwrap(), StatusCode::CREATED).await;
    let body = json!({"course_id": 9, "reviewer_id": reviewer["id"], "rating": 4.5, "comment": "Clear and thorough."});
    let review = ok_json(
        write(Method::POST, "/review", body).await.unwrap(),
        StatusCode::CREATED,
    )
    .await;
    let id = review["id"].as_i64().unwrap();
    for query in ["", "", "?sort=helpful", "?sort=highest&stars=4"] {
        let page = client.get(url(&format!("/course/9/reviews{query}"))).send();
        ok_json(page.await.unwrap(), StatusCode::OK).await;
    }
    let helpful = write(Method::POST, &format!("/review/{id}/helpful"), json!(null));
    assert_eq!(helpful.await.unwrap().status(), StatusCode::OK);
    let recomputed = write(Method::PUT, "/rating/9", json!(null)).await.unwrap();
    assert_eq!(recomputed.status(), StatusCode::OK);
    let bad = client.get(url("/review/0")).send().await.unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let missing = client.get(url("/rating/404")).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    // What a classic-format client (curl, promtool) gets.
    let response = client.get(url("/metrics")).send().await.unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = response.text().await.unwrap();
    promtool_check_metrics(&text);
    let served: std::collections::BTreeSet<_> = served_families(&text)
        .into_iter()
        .filter(|(name, _)| name.starts_with("courser_api_"))
        .collect();
    assert_eq!(
        served,
        documented_families("courser_api_"),
        "the families served (left) and dashboards/exported-metrics.txt (right) differ"
    );
    let count = |name: &str, parts: &[&str]| sample_sum(&text, name, parts);
    assert!(count("courser_api_http_request_duration_seconds_count", &[]) >= 12.0);
    assert!(count("courser_api_http_requests_total", &["status=\"404\""]) >= 1.0);
    for query in [
        "ratings.create",
        "ratings.find",
        "reviewers.create",
        "reviews.insert",
        "reviews.page_recent",
        "reviews.page_helpful",
        "reviews.page_highest",
        "reviews.mark_helpful",
        "ratings.recompute",
        "transaction.begin",
        "transaction.commit",
        "ping",
    ] {
        let label = format!("query=\"{query}\"");
        let statements = count("courser_api_db_query_duration_seconds_count", &[&label]);
        assert!(statements >= 1.0, "no {query} statement timed:\n{text}");
    }
    // The course page's first read found the review (1 row) and the page was cached:
    // the second identical read ran no statement.
    assert_eq!(
        count(
            "courser_api_db_query_duration_seconds_count",
            &["query=\"reviews.page_recent\""]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        count(
            "courser_api_db_query_rows_total",
            &["query=\"reviews.page_recent\""]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        count("courser_api_db_query_errors_total", &[]),
        0.0,
        "{text}"
    );
    assert!(count("courser_api_db_pool_acquire_duration_seconds_count", &[]) >= 10.0);
    assert_eq!(count("courser_api_db_pool_waiting", &[]), 0.0);

    // What Prometheus gets.
    let response = client
        .get(url("/metrics"))
        .header("accept", PROMETHEUS_ACCEPT)
        .send()
        .await
        .unwrap();
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    let openmetrics = response.text().await.unwrap();
    assert_openmetrics(&content_type, &openmetrics, "courser_api_db_query_rows");
}
