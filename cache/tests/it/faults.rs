//! Redis killed, restarted and its subscriptions cut: reads go on, nothing stale is served.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use courser_cache::Subject;

use crate::helpers::{Instance, Store, config, prefix, read};

const LOCAL_PAGE_HITS: &str = r#"cache_hits_total{tier="local",kind="page"}"#;
const REDIS_ERRORS: &str = "cache_redis_errors_total";

/// A Redis server of the test's own, on a port of its own.
struct Redis {
    port: u16,
    process: Option<Child>,
}

impl Redis {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut redis = Self {
            port,
            process: None,
        };
        redis.restart();
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn restart(&mut self) {
        let port = self.port.to_string();
        let args = [
            "--port",
            &port,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ];
        let child = Command::new("redis-server")
            .args(args)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/test installs it)");
        self.process = Some(child);
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends `signal` (`STOP`, `CONT`) to the server: a paused Redis keeps its connections
    /// open and says nothing, as a partition without RST does.
    fn signal(&self, signal: &str) {
        let pid = self.process.as_ref().unwrap().id().to_string();
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {pid}");
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.process.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn until(what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < Duration::from_secs(5), "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn with_redis_killed_reads_and_writes_go_on_and_the_cache_comes_back_with_it() {
    let mut redis = Redis::start();
    let a = Instance::new(&config(&redis.url(), &prefix()))
        .ready()
        .await;
    let store = Store::with_page(1, "v1");
    read(&a.cache, 1, &store).await;

    redis.kill();
    until("the bus notices", || !a.cache.local_tier_serving()).await;
    store.set_page(1, "v2");
    a.cache.invalidate(&[Subject::Course(1)]).await; // must neither fail nor hang
    let start = Instant::now();
    for _ in 0..20 {
        assert_eq!(
            read(&a.cache, 1, &store).await.as_deref(),
            Some(r#"["v2"]"#)
        );
    }
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "a dead Redis must cost next to nothing"
    );
    assert_eq!(
        a.metric("cache_breaker_state"),
        2.0,
        "open: the bus lost Redis"
    );

    redis.restart();
    until("the bus resubscribes", || a.cache.local_tier_serving()).await;
    // The bus releases the breaker, or failing that the next misses probe Redis until
    // one gets through.
    let start = Instant::now();
    let mut course = 10;
    while a.metric("cache_breaker_state") != 0.0 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the breaker never closed"
        );
        course += 1;
        store.set_page(course, "fresh");
        read(&a.cache, course, &store).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    course += 1;
    store.set_page(course, "shared");
    read(&a.cache, course, &store).await;
    let loads = store.loads();
    for _ in 0..5 {
        assert_eq!(
            read(&a.cache, course, &store).await.as_deref(),
            Some(r#"["shared"]"#)
        );
    }
    assert_eq!(store.loads(), loads, "the local tier serves again");
}

#[tokio::test]
async fn an_instance_whose_subscription_is_cut_serves_nothing_stale() {
    let redis = Redis::start();
    let config = config(&redis.url(), &prefix());
    let a = Instance::new(&config).ready().await;
    let b = Instance::new(&config).ready().await;
    let store = Store::with_page(1, "v1");
    read(&a.cache, 1, &store).await;
    read(&a.cache, 1, &store).await;

    let client = redis::Client::open(redis.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(killed, 2);
    // A write on b while a may be deaf: a must not keep serving v1 past the bound.
    store.set_page(1, "v2");
    b.cache.invalidate(&[Subject::Course(1)]).await;
    let start = Instant::now();
    while read(&a.cache, 1, &store).await.as_deref() != Some(r#"["v2"]"#) {
        assert!(
            start.elapsed() < Duration::from_millis(100),
            "a served v1 for {:?}",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    until("a resubscribes", || a.cache.local_tier_serving()).await;
}

#[tokio::test]
async fn a_silently_paused_redis_stops_local_hits_within_the_heartbeat_deadline() {
    let redis = Redis::start();
    let config = config(&redis.url(), &prefix());
    let a = Instance::new(&config).ready().await;
    let store = Store::with_page(1, "v1");
    read(&a.cache, 1, &store).await;
    read(&a.cache, 1, &store).await;
    assert_eq!(a.metric(LOCAL_PAGE_HITS), 1.0);

    // No RST, no EOF: only the heartbeat can tell. The source changes without an
    // invalidation, as if one published now were lost: past the deadline, reads must
    // not come from the local tier, and come from the source without even trying Redis
    // (each try would wait out its timeout).
    redis.signal("STOP");
    let paused = Instant::now();
    store.set_page(1, "v2");
    until("the local tier stops serving", || {
        !a.cache.local_tier_serving()
    })
    .await;
    let stopped_after = paused.elapsed();
    eprintln!("local hits stopped {stopped_after:?} into the pause");
    assert!(
        stopped_after < Duration::from_millis(100),
        "the local tier served {stopped_after:?} into the pause"
    );
    let (hits, errors) = (a.metric(LOCAL_PAGE_HITS), a.metric(REDIS_ERRORS));
    for _ in 0..3 {
        assert_eq!(
            read(&a.cache, 1, &store).await.as_deref(),
            Some(r#"["v2"]"#),
            "read past the local tier, from the source"
        );
    }
    assert_eq!(a.metric(LOCAL_PAGE_HITS), hits);
    assert_eq!(
        a.metric(REDIS_ERRORS),
        errors,
        "no Redis call was made to time out"
    );
    until("the bus gives up on the silent connection", || {
        a.metric("cache_heartbeat_misses_total") >= 1.0 && a.metric("cache_bus_connected") == 0.0
    })
    .await;
    assert_eq!(a.metric("cache_local_serving"), 0.0);

    redis.signal("CONT");
    until("a resubscribes", || a.cache.local_tier_serving()).await;
    assert_eq!(a.metric("cache_local_serving"), 1.0);
    let start = Instant::now();
    while a.metric(LOCAL_PAGE_HITS) == hits {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no local hit after CONT"
        );
        read(&a.cache, 1, &store).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
