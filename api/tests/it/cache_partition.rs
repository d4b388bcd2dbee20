//! Instances cut off from Redis by a partition (their Redis calls time out, nothing is
//! refused): writes succeed, the in-process tiers serve on under Postgres's heartbeat,
//! and the other instances and Redis itself stop serving the old page within the
//! freshness bound, because every invalidation also goes over Postgres.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use courser_api::{Application, Config};
use courser_exposition::testing::sample_sum;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::helpers::{TestApp, TestDb, redis_url, spawn_app_with, test_config};

/// A TCP relay to Redis that a test can partition: while cut, it holds every byte in
/// both directions and accepts new connections without answering, as a network that
/// drops packets does (no RST, no EOF: only timeouts tell).
struct Partition {
    addr: SocketAddr,
    cut: Arc<watch::Sender<bool>>,
}

impl Partition {
    async fn to(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(watch::Sender::new(false));
        let relay_cut = cut.clone();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let Ok(outbound) = TcpStream::connect(&target).await else {
                    continue;
                };
                let (in_read, in_write) = inbound.into_split();
                let (out_read, out_write) = outbound.into_split();
                tokio::spawn(pump(in_read, out_write, relay_cut.subscribe()));
                tokio::spawn(pump(out_read, in_write, relay_cut.subscribe()));
            }
        });
        Self { addr, cut }
    }

    fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    fn set_cut(&self, cut: bool) {
        self.cut.send_replace(cut);
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut cut: watch::Receiver<bool>,
) {
    let mut buffer = vec![0; 16 * 1024];
    while let Ok(n @ 1..) = from.read(&mut buffer).await {
        if cut.wait_for(|cut| !cut).await.is_err() || to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}

/// Another api instance on `config` (same database and cache prefix); its address.
async fn instance(config: &Config) -> SocketAddr {
    let app = Application::build(config).await.unwrap();
    let addr = app.local_addr().unwrap();
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    addr
}

async fn get(app: &TestApp, addr: SocketAddr, path: &str) -> reqwest::Response {
    app.client
        .get(format!("http://{addr}{path}"))
        .send()
        .await
        .unwrap()
}

async fn comment(app: &TestApp, addr: SocketAddr) -> Value {
    let page: Value = get(app, addr, "/course/1/reviews")
        .await
        .json()
        .await
        .unwrap();
    page["reviews"][0]["comment"].clone()
}

async fn metric(app: &TestApp, addr: SocketAddr, name: &str) -> f64 {
    metric_of(app, addr, name, &[]).await
}

async fn metric_of(app: &TestApp, addr: SocketAddr, name: &str, labels: &[&str]) -> f64 {
    let text = get(app, addr, "/metrics").await.text().await.unwrap();
    sample_sum(&text, name, labels)
}

async fn local_page_hits(app: &TestApp, addr: SocketAddr) -> f64 {
    let labels = [r#"tier="local""#, r#"kind="page""#];
    metric_of(app, addr, "courser_api_cache_hits_total", &labels).await
}

/// Waits until the instance's in-process tier serves (bus subscribed, heartbeat answered).
async fn until_local_serving(app: &TestApp, addr: SocketAddr, serving: bool) {
    let start = Instant::now();
    while (metric(app, addr, "courser_api_cache_local_serving").await == 1.0) != serving {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "local tier of {addr} never serving={serving}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A writer and a reader instance with their in-process tiers serving, and a review of
/// course 1 that the reader has read once.
async fn writer_and_reader(
    writer: Config,
    reader: &Config,
    test_db: TestDb,
) -> (TestApp, SocketAddr, Value) {
    let writer = spawn_app_with(writer, test_db).await;
    let reader = instance(reader).await;
    until_local_serving(&writer, writer.addr, true).await;
    until_local_serving(&writer, reader, true).await;
    writer.create_course(1).await;
    let reviewer = writer.create_reviewer("Ann").await;
    let review = writer.create_review(1, reviewer, 3.0, "first").await;
    assert_eq!(comment(&writer, reader).await, "first");
    (writer, reader, review)
}

/// Edits the review's comment through `writer` (which cannot reach Redis) and waits for
/// `reader` to show it: within the freshness bound of the write's answer.
async fn edit_then_read_on(writer: &TestApp, review: &Value, reader: SocketAddr) {
    let edit = writer
        .put(
            &format!("/review/{}", review["id"]),
            json!({"rating": 3.0, "comment": "edited"}),
        )
        .await;
    assert_eq!(edit.status(), 200, "a write succeeds without Redis");
    let answered = Instant::now();
    while comment(writer, reader).await != "edited" {
        let waited = answered.elapsed();
        assert!(
            waited < Duration::from_millis(100),
            "the reader served the old page {waited:?} after the write answered"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    eprintln!(
        "the reader served the new page {:?} after the write answered",
        answered.elapsed()
    );
}

#[tokio::test]
async fn a_write_on_an_instance_cut_off_from_redis_reaches_the_others_within_the_bound() {
    let redis = redis_url();
    let partition = Partition::to(redis.trim_start_matches("redis://").to_owned()).await;
    let test_db = TestDb::create().await;
    let direct = test_config(&test_db.url);
    let cut_off = Config {
        redis_url: partition.url(),
        ..direct.clone()
    };
    let (writer, reader, review) = writer_and_reader(cut_off, &direct, test_db).await;
    // The reader's tier and Redis both hold the page now.
    assert_eq!(comment(&writer, reader).await, "first");
    assert_eq!(local_page_hits(&writer, reader).await, 1.0);

    // The fallback listeners survive losing their Postgres connection.
    let listeners = "SELECT pid FROM pg_stat_activity \
        WHERE datname = current_database() AND query LIKE 'LISTEN %'";
    let old: Vec<i32> = sqlx::query_scalar(listeners)
        .fetch_all(&writer.db)
        .await
        .unwrap();
    assert_eq!(old.len(), 2, "one listener per instance");
    for pid in &old {
        sqlx::query("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .execute(&writer.db)
            .await
            .unwrap();
    }
    let start = Instant::now();
    loop {
        let now: Vec<i32> = sqlx::query_scalar(listeners)
            .fetch_all(&writer.db)
            .await
            .unwrap();
        if now.len() == 2 && now.iter().all(|pid| !old.contains(pid)) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "listeners not back: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    partition.set_cut(true);
    edit_then_read_on(&writer, &review, reader).await;
    assert_eq!(
        comment(&writer, writer.addr).await,
        "edited",
        "the writer does not serve the old page either"
    );
    // Redis itself is fresh: an instance with nothing of its own, reading through Redis,
    // gets the new page (the old one there is under a superseded generation).
    let late = instance(&direct).await;
    assert_eq!(comment(&writer, late).await, "edited");

    let sent = "courser_api_cache_fallback_invalidations_sent_total";
    let received = "courser_api_cache_fallback_invalidations_received_total";
    assert_eq!(metric(&writer, writer.addr, sent).await, 1.0);
    assert!(metric(&writer, reader, received).await >= 1.0);
    let hits = local_page_hits(&writer, writer.addr).await;
    assert_eq!(comment(&writer, writer.addr).await, "edited");
    assert_eq!(comment(&writer, writer.addr).await, "edited");
    assert!(
        local_page_hits(&writer, writer.addr).await > hits,
        "Postgres vouches for the writer's in-process tier while Redis cannot"
    );

    // Healed: the writer resubscribes and sends what it kept; everyone agrees.
    partition.set_cut(false);
    until_local_serving(&writer, writer.addr, true).await;
    assert_eq!(comment(&writer, writer.addr).await, "edited");
    assert_eq!(comment(&writer, reader).await, "edited");
}

#[tokio::test]
async fn with_redis_unreachable_the_in_process_tiers_serve_on_and_writes_still_reach_them() {
    let redis = redis_url();
    let partition = Partition::to(redis.trim_start_matches("redis://").to_owned()).await;
    let test_db = TestDb::create().await;
    let cut_off = Config {
        redis_url: partition.url(),
        ..test_config(&test_db.url)
    };
    let (writer, reader, review) = writer_and_reader(cut_off.clone(), &cut_off, test_db).await;

    // Redis goes silent for both (as a paused Redis or a partition does): Redis stops
    // vouching within its deadline, and Postgres's heartbeat vouches instead.
    partition.set_cut(true);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let page_loads = async || {
        let labels = [r#"kind="page""#];
        metric_of(&writer, reader, "courser_api_cache_loads_total", &labels).await
    };
    let (hits, loaded) = (local_page_hits(&writer, reader).await, page_loads().await);
    for _ in 0..5 {
        assert_eq!(comment(&writer, reader).await, "first");
    }
    let served_locally = local_page_hits(&writer, reader).await - hits;
    // A heartbeat late on a busy machine may send a read or two to the tiers below.
    assert!(
        served_locally >= 3.0,
        "{served_locally} of 5 reads were local hits"
    );
    assert!(page_loads().await - loaded <= 5.0 - served_locally);

    edit_then_read_on(&writer, &review, reader).await;
    assert_eq!(comment(&writer, writer.addr).await, "edited");

    // Healed: Redis vouches again, and nobody serves the old page from it.
    partition.set_cut(false);
    tokio::time::sleep(Duration::from_millis(200)).await;
    for addr in [writer.addr, reader] {
        until_local_serving(&writer, addr, true).await;
        assert_eq!(comment(&writer, addr).await, "edited");
    }
    let direct = Config {
        redis_url: redis,
        ..cut_off
    };
    let late = instance(&direct).await;
    assert_eq!(comment(&writer, late).await, "edited");
}
