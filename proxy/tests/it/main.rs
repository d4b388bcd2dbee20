//! Black-box tests of `courser-proxy`: the real binary on loopback in front of small
//! backends started by the test.

#![expect(
    clippy::unwrap_used,
    reason = "test harness: a failed set-up step should fail the test loudly"
)]

mod dns;
mod framing;
mod helpers;
mod logs;
mod metrics;
mod upgrade;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use helpers::{TestBackend, spawn_proxy, write_backends};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn backends(n: usize) -> Vec<TestBackend> {
    let mut out = Vec::new();
    for i in 0..n {
        out.push(TestBackend::start(&format!("b{i}")).await);
    }
    out
}

fn refs(b: &[TestBackend]) -> Vec<&TestBackend> {
    b.iter().collect()
}

#[tokio::test]
async fn each_course_sticks_to_one_backend_and_other_paths_spread_over_all() {
    let b = backends(4).await;
    let proxy = spawn_proxy(&refs(&b), "").await;

    let mut owner = HashMap::new();
    for round in 0..3 {
        for course in 0..40 {
            let (status, name) = proxy.get(&format!("/course/{course}/reviews")).await;
            assert_eq!(status, 200);
            let first = owner.entry(course).or_insert_with(|| name.clone());
            assert_eq!(*first, name, "course {course} moved in round {round}");
        }
    }
    let owners: HashSet<_> = owner.values().collect();
    assert!(owners.len() >= 3, "courses hashed onto {owners:?} only");

    let mut spread: HashMap<String, usize> = HashMap::new();
    for _ in 0..40 {
        let (status, name) = proxy.get("/review/1").await;
        assert_eq!(status, 200);
        *spread.entry(name).or_default() += 1;
    }
    assert_eq!(spread.len(), 4, "{spread:?}");
    assert!(spread.values().all(|&n| n >= 5), "{spread:?}");
}

#[tokio::test]
async fn least_connections_sends_new_requests_away_from_a_busy_backend() {
    let b = backends(2).await;
    b[0].behaviour.delay_ms.store(1500, SeqCst);
    let proxy = Arc::new(spawn_proxy(&refs(&b), "selection = \"least_connections\"").await);
    // Occupy backend 0 with a slow request, then the rest should go to backend 1.
    let mut slow = Vec::new();
    for _ in 0..2 {
        let p = proxy.clone();
        slow.push(tokio::spawn(async move { p.get("/review/1").await }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = b[1].total();
    for _ in 0..10 {
        assert_eq!(proxy.get("/review/2").await.0, 200);
    }
    assert_eq!(b[1].total() - before, 10);
    for s in slow {
        assert_eq!(s.await.unwrap().0, 200);
    }
}

#[tokio::test]
async fn a_killed_backend_is_ejected_and_get_traffic_goes_on_without_client_errors() {
    let b = backends(3).await;
    let proxy = spawn_proxy(&refs(&b), "").await;
    for course in 0..30 {
        assert_eq!(proxy.get(&format!("/course/{course}")).await.0, 200);
    }
    b[1].kill();
    for i in 0..60 {
        let path = if i % 2 == 0 {
            format!("/course/{i}")
        } else {
            "/review/7".to_string()
        };
        let (status, name) = proxy.get(&path).await;
        assert_eq!(status, 200, "request {i} failed");
        assert_ne!(name, "b1");
    }
    let label = format!("backend=\"{}\"", b[1].addr);
    assert_eq!(
        proxy.metric("courser_proxy_backend_up", &[&label]).await,
        0.0
    );
    assert!(proxy.ejections(b[1].addr).await >= 1.0);
    assert!(
        proxy
            .metric("courser_proxy_retries_total", &["connect"])
            .await
            >= 1.0
    );
}

#[tokio::test]
async fn a_backend_comes_back_once_it_is_healthy_again() {
    let b = backends(2).await;
    let proxy = spawn_proxy(
        &refs(&b),
        "health_consecutive_success = 2\nhealth_consecutive_failure = 2",
    )
    .await;
    b[1].behaviour.not_ready.store(true, SeqCst);
    tokio::time::sleep(Duration::from_millis(900)).await;
    let before = b[1].total();
    for _ in 0..20 {
        assert_eq!(proxy.get("/review/1").await.0, 200);
    }
    assert_eq!(b[1].total(), before, "an unhealthy backend got traffic");

    b[1].behaviour.not_ready.store(false, SeqCst);
    tokio::time::sleep(Duration::from_millis(900)).await;
    for _ in 0..20 {
        assert_eq!(proxy.get("/review/1").await.0, 200);
    }
    assert!(
        b[1].total() >= before + 5,
        "the healthy backend got no traffic back"
    );

    // And a killed backend restarted on its port returns as well.
    let addr = b[1].addr;
    b[1].kill();
    for _ in 0..10 {
        assert_eq!(proxy.get("/review/1").await.0, 200);
    }
    let revived = TestBackend::restart("b1-again", addr).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        proxy.get("/review/1").await;
        if revived.total() > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the restarted backend never got traffic"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_backend_answering_bursts_of_5xx_is_ejected() {
    let b = backends(2).await;
    let proxy = spawn_proxy(
        &refs(&b),
        "eject_consecutive_5xx = 3\neject_cooldown_ms = 60000",
    )
    .await;
    b[0].behaviour.fail.store(true, SeqCst);
    let mut errors = 0;
    for _ in 0..30 {
        if proxy.get("/review/1").await.0 == 500 {
            errors += 1;
        }
    }
    // Three 5xx eject it; after that only the sound backend answers.
    assert_eq!(errors, 3);
    assert_eq!(proxy.ejections(b[0].addr).await, 1.0);
}

#[tokio::test]
async fn a_backend_answering_503_is_not_ejected() {
    let b = backends(2).await;
    let proxy = spawn_proxy(
        &refs(&b),
        "eject_consecutive_5xx = 3\neject_cooldown_ms = 60000",
    )
    .await;
    b[0].behaviour.unavailable.store(true, SeqCst);
    let mut unavailable = 0;
    for _ in 0..30 {
        if proxy.get("/review/1").await.0 == 503 {
            unavailable += 1;
        }
    }
    // It is alive and says so: it keeps its share instead of handing it to the other.
    assert!(unavailable >= 10, "only {unavailable} of 30 reached it");
    assert_eq!(proxy.ejections(b[0].addr).await, 0.0);
}

#[tokio::test]
async fn no_post_is_ever_sent_twice() {
    let b = backends(3).await;
    let proxy = spawn_proxy(&refs(&b), "upstream_read_timeout_ms = 300").await;

    // Every backend reads the request and drops the connection: a POST may have been
    // applied, so it must not be sent elsewhere.
    for x in &b {
        x.behaviour.drop_connection.store(true, SeqCst);
    }
    for _ in 0..6 {
        let resp = proxy.post("/review", "{}").await;
        assert_eq!(resp.status().as_u16(), 502);
    }
    let posts: usize = b.iter().map(|x| x.count("POST")).sum();
    assert_eq!(posts, 6);

    // Same with a backend that times out.
    for x in &b {
        x.behaviour.drop_connection.store(false, SeqCst);
        x.behaviour.delay_ms.store(1000, SeqCst);
    }
    let resp = proxy.post("/review", "{}").await;
    assert_eq!(resp.status().as_u16(), 504);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let posts: usize = b.iter().map(|x| x.count("POST")).sum();
    assert_eq!(posts, 7);
}

#[tokio::test]
async fn a_post_after_its_backend_restarted_does_not_go_out_on_a_dead_kept_alive_connection() {
    let b = backends(1).await;
    let proxy = spawn_proxy(&refs(&b), "").await;
    for _ in 0..3 {
        assert_eq!(proxy.post("/review", "{}").await.status(), 200);
    }
    // Killing the backend closes the connections the proxy keeps to it. A POST is never
    // sent twice, so one written to such a connection would come back as a 502.
    let addr = b[0].addr;
    b[0].kill();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let again = TestBackend::restart("b0-again", addr).await;
    for _ in 0..3 {
        assert_eq!(proxy.post("/review", "{}").await.status(), 200);
    }
    assert_eq!(again.count("POST"), 3);
}

#[tokio::test]
async fn a_get_whose_connection_breaks_or_times_out_is_answered_by_another_backend() {
    let b = backends(2).await;
    let proxy = spawn_proxy(
        &refs(&b),
        "upstream_read_timeout_ms = 300\neject_consecutive_5xx = 100",
    )
    .await;
    b[0].behaviour.drop_connection.store(true, SeqCst);
    for _ in 0..6 {
        let (status, name) = proxy.get("/review/1").await;
        assert_eq!((status, name.as_str()), (200, "b1"));
    }
    b[0].behaviour.drop_connection.store(false, SeqCst);
    b[0].behaviour.delay_ms.store(1000, SeqCst);
    for _ in 0..4 {
        let (status, name) = proxy.get("/review/1").await;
        assert_eq!((status, name.as_str()), (200, "b1"));
    }
    assert!(
        proxy
            .metric("courser_proxy_retries_total", &["reset"])
            .await
            >= 1.0
    );
    assert!(
        proxy
            .metric("courser_proxy_retries_total", &["timeout"])
            .await
            >= 1.0
    );
}

#[tokio::test]
async fn a_client_over_its_rate_limit_gets_429_with_retry_after() {
    let b = backends(1).await;
    let proxy = spawn_proxy(
        &refs(&b),
        "rate_limit_per_second = 5.0\nrate_limit_burst = 5.0",
    )
    .await;
    let mut limited = None;
    let mut ok = 0;
    for _ in 0..20 {
        let resp = proxy
            .client
            .get(proxy.url("/review/1"))
            .send()
            .await
            .unwrap();
        if resp.status().as_u16() == 429 {
            limited = Some(resp);
            break;
        }
        ok += 1;
    }
    assert!(ok >= 5, "only {ok} requests passed");
    let resp = limited.expect("never rate limited");
    assert!(resp.headers().contains_key("retry-after"));
    assert_eq!(
        resp.headers()["connection"],
        "keep-alive",
        "a refused GET keeps its connection"
    );
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["status"], 429);
    assert!(body["type"].is_string() && body["title"].is_string() && body["detail"].is_string());
    assert!(proxy.metric("courser_proxy_rate_limited_total", &[]).await >= 1.0);

    let refused_post = proxy.post("/review", vec![b'x'; 100]).await;
    assert_eq!(refused_post.status().as_u16(), 429);
    assert_eq!(
        refused_post.headers()["connection"],
        "close",
        "its unread body cannot stay on the connection"
    );
}

#[tokio::test]
async fn a_body_over_the_limit_gets_413_and_never_reaches_a_backend() {
    let b = backends(1).await;
    let proxy = spawn_proxy(&refs(&b), "body_limit_bytes = 1024").await;
    let resp = proxy.post("/review", vec![b'x'; 4096]).await;
    assert_eq!(resp.status().as_u16(), 413);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["status"], 413);
    assert_eq!(b[0].count("POST"), 0);

    let resp = proxy.post("/review", vec![b'x'; 512]).await;
    assert_eq!(resp.status().as_u16(), 200);
}

#[tokio::test]
async fn a_client_trickling_header_bytes_is_cut_off() {
    let b = backends(1).await;
    let proxy = spawn_proxy(&refs(&b), "client_header_timeout_ms = 1000").await;
    let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let start = Instant::now();
    stream
        .write_all(b"GET /review/1 HTTP/1.1\r\n")
        .await
        .unwrap();
    let (mut read, mut write) = stream.into_split();
    let closed = tokio::spawn(async move {
        let mut buf = [0u8; 1024];
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => return Instant::now(),
                Ok(_) => {}
            }
        }
    });
    // One header byte every 200 ms: each read is quick, the header block never ends.
    for _ in 0..50 {
        if closed.is_finished() || write.write_all(b"X").await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let cut = closed.await.unwrap() - start;
    assert!(cut < Duration::from_secs(3), "cut off only after {cut:?}");
    assert_eq!(b[0].total(), 0);
}

#[tokio::test]
async fn reloading_adds_and_removes_backends_without_failed_requests() {
    let b = backends(3).await;
    let proxy = Arc::new(spawn_proxy(&[&b[0], &b[1]], "").await);
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for worker in 0..4 {
        let (p, stop, failures, sent) =
            (proxy.clone(), stop.clone(), failures.clone(), sent.clone());
        load.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(SeqCst) {
                let path = if i % 2 == 0 {
                    format!("/course/{worker}{i}")
                } else {
                    "/review/1".into()
                };
                match p.client.get(p.url(&path)).send().await {
                    Ok(r) if r.status().is_success() => {}
                    _ => {
                        failures.fetch_add(1, SeqCst);
                    }
                }
                sent.fetch_add(1, SeqCst);
                i += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Swap b0 for b2 in the file and send SIGHUP.
    write_backends(&proxy.config_path, &[&b[1], &b[2]]);
    proxy.signal("HUP");
    tokio::time::sleep(Duration::from_millis(700)).await;
    let b0_after_reload = b[0].total();
    let b2_after_reload = b[2].total();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        b[0].total(),
        b0_after_reload,
        "a removed backend still gets requests"
    );
    assert!(
        b[2].total() > b2_after_reload,
        "the added backend gets no requests"
    );

    // A file change alone (no signal) is picked up too.
    write_backends(&proxy.config_path, &[&b[0], &b[1], &b[2]]);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let b0_back = b[0].total();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        b[0].total() > b0_back,
        "the re-added backend gets no requests"
    );

    stop.store(true, SeqCst);
    for l in load {
        l.await.unwrap();
    }
    assert!(sent.load(SeqCst) > 50);
    assert_eq!(failures.load(SeqCst), 0);
}

#[tokio::test]
async fn metrics_move_as_requests_pass() {
    let b = backends(2).await;
    let proxy = spawn_proxy(&refs(&b), "").await;
    let before = proxy
        .metric("courser_proxy_requests_total", &["class=\"2xx\""])
        .await;
    let count_before = proxy
        .metric("courser_proxy_request_duration_seconds_count", &[])
        .await;
    for _ in 0..5 {
        assert_eq!(proxy.get("/review/1").await.0, 200);
    }
    let after = proxy
        .metric_when(
            "courser_proxy_requests_total",
            &["class=\"2xx\""],
            before + 5.0,
        )
        .await;
    assert_eq!(after - before, 5.0);
    let count_after = proxy
        .metric_when(
            "courser_proxy_request_duration_seconds_count",
            &[],
            count_before + 5.0,
        )
        .await;
    assert_eq!(count_after - count_before, 5.0);
    assert_eq!(proxy.metric("courser_proxy_backend_up", &[]).await, 2.0);
    let text = proxy.metrics().await;
    assert!(
        text.contains(&format!("backend=\"{}\"", b[0].addr)),
        "{text}"
    );
}

#[tokio::test]
async fn request_ids_are_kept_or_made_and_the_client_address_is_forwarded() {
    let b = backends(1).await;
    let proxy = spawn_proxy(&refs(&b), "").await;
    let resp = proxy
        .client
        .get(proxy.url("/review/1"))
        .header("x-request-id", "client-id_42")
        .header("x-forwarded-for", "10.1.2.3")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "client-id_42");
    let (id, xff) = b[0].seen.last_headers.lock().unwrap().clone();
    assert_eq!(id.as_deref(), Some("client-id_42"));
    assert_eq!(xff.as_deref(), Some("10.1.2.3, 127.0.0.1"));

    let resp = proxy
        .client
        .get(proxy.url("/review/1"))
        .header("x-request-id", "not valid!")
        .send()
        .await
        .unwrap();
    let made = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(made.len(), 32);
    assert_eq!(
        b[0].seen.last_headers.lock().unwrap().0.as_deref(),
        Some(made.as_str())
    );
}

/// Reads from `stream` until a whole header block has arrived; returns all read so far.
async fn read_header_block(stream: &mut tokio::net::TcpStream) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        let Ok(read) = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await
        else {
            panic!(
                "no answer within 2 s after {:?}",
                String::from_utf8_lossy(&seen)
            );
        };
        let n = read.unwrap();
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test]
async fn a_post_expecting_100_continue_gets_it_and_then_its_answer() {
    let b = backends(1).await;
    let proxy = spawn_proxy(&refs(&b), "").await;
    let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(
            b"POST /review HTTP/1.1\r\nhost: courser\r\ncontent-length: 2\r\n\
              expect: 100-continue\r\n\r\n",
        )
        .await
        .unwrap();
    let interim = read_header_block(&mut stream).await;
    assert!(interim.starts_with("HTTP/1.1 100"), "{interim}");

    stream.write_all(b"{}").await.unwrap();
    let answer = read_header_block(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(b[0].count("POST"), 1);
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_request_finish_then_exits() {
    let b = backends(1).await;
    b[0].behaviour.delay_ms.store(1000, SeqCst);
    let mut proxy = spawn_proxy(&refs(&b), "").await;
    let (client, url) = (proxy.client.clone(), proxy.url("/review/1"));
    let in_flight = tokio::spawn(async move { client.get(url).send().await.map(|r| r.status()) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.signal("TERM");
    let status = in_flight
        .await
        .unwrap()
        .expect("the in-flight request was dropped");
    assert_eq!(status.as_u16(), 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(exit) = proxy.child.try_wait().unwrap() {
            assert!(exit.success(), "{exit:?}");
            break;
        }
        assert!(Instant::now() < deadline, "the proxy did not exit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_bad_setting_stops_the_start_with_its_name() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_courser-proxy"))
        .env("COURSER_PROXY_BACKENDS", "127.0.0.1:1")
        .env("COURSER_PROXY_THREADS", "0")
        .env_remove("COURSER_PROXY_LOG_FILE")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("threads"), "{stderr}");
}

#[tokio::test]
async fn a_log_file_bound_of_zero_stops_the_start_with_its_name() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_courser-proxy"))
        .env("COURSER_PROXY_BACKENDS", "127.0.0.1:1")
        .env(
            "COURSER_PROXY_LOG_FILE",
            std::env::temp_dir().join("unused.log"),
        )
        .env("COURSER_PROXY_LOG_MAX_BYTES", "0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--log-max-bytes"), "{stderr}");
}

#[tokio::test]
async fn a_second_proxy_on_a_taken_port_refuses_to_start_and_the_first_keeps_serving() {
    let b = TestBackend::start("b0").await;
    let proxy = spawn_proxy(&[&b], "").await;
    let out = proxy.run_second();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on {}", proxy.addr)),
        "{stderr}"
    );
    for i in 0..20 {
        assert_eq!(proxy.get(&format!("/course/{i}")).await.0, 200);
    }
}
