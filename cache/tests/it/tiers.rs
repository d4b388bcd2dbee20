//! Hits, fills, invalidation across instances, the slow-reader race and stampedes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use courser_cache::Subject;

use crate::helpers::{Instance, Store, config, prefix, read, redis_url};

const LOCAL_PAGE_HITS: &str = r#"cache_hits_total{tier="local",kind="page"}"#;
const REDIS_PAGE_HITS: &str = r#"cache_hits_total{tier="redis",kind="page"}"#;
const REDIS_PAGE_MISSES: &str = r#"cache_misses_total{tier="redis",kind="page"}"#;
const REVIEWER_LOCAL_HITS: &str = r#"cache_hits_total{tier="local",kind="reviewer"}"#;

/// Two instances sharing one Redis, as two api processes do.
async fn two_instances() -> (Instance, Instance) {
    let config = config(&redis_url(), &prefix());
    (
        Instance::new(&config).ready().await,
        Instance::new(&config).ready().await,
    )
}

/// Reads through `instance` until the page is `expected`; the time it took.
async fn until_page_is(instance: &Instance, store: &Store, expected: &str) -> Duration {
    let start = Instant::now();
    while read(&instance.cache, 1, store).await.as_deref() != Some(expected) {
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "never saw {expected}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    start.elapsed()
}

#[tokio::test]
async fn a_miss_loads_from_the_source_once_and_the_local_tier_serves_after() {
    let (a, _) = two_instances().await;
    let store = Store::with_page(1, "v1");
    for _ in 0..3 {
        assert_eq!(
            read(&a.cache, 1, &store).await.as_deref(),
            Some(r#"["v1"]"#)
        );
    }
    assert_eq!(store.loads(), 1);
    assert_eq!(a.metric(LOCAL_PAGE_HITS), 2.0);
    assert_eq!(
        read(&a.cache, 2, &store).await,
        None,
        "a missing course is a miss, not an error"
    );
}

#[tokio::test]
async fn a_hit_is_served_assembled_and_a_pages_reviewers_serve_the_next_page_that_shows_them() {
    let (a, b) = two_instances().await;
    let store = Store::with_page(1, "one");
    store.set_page(2, "two");
    store.set_reviewer(7, "Ann");
    store.set_reviewer(8, "Bob");
    read(&a.cache, 1, &store).await;
    assert_eq!(
        read(&a.cache, 1, &store).await.as_deref(),
        Some(r#"["one","Ann","Bob"]"#)
    );
    assert_eq!(a.metric(LOCAL_PAGE_HITS), 1.0);
    assert_eq!(
        a.metric(REVIEWER_LOCAL_HITS),
        0.0,
        "a hit looks up no reviewer"
    );
    // Page 2's skeleton goes to Redis through `b`; `a` takes it from there and its
    // reviewers from what page 1's load brought.
    read(&b.cache, 2, &store).await;
    assert_eq!(
        read(&a.cache, 2, &store).await.as_deref(),
        Some(r#"["two","Ann","Bob"]"#)
    );
    assert_eq!(a.metric(REDIS_PAGE_HITS), 1.0);
    assert_eq!(a.metric(REVIEWER_LOCAL_HITS), 2.0);
    assert_eq!(a.metric(r#"cache_loads_total{kind="reviewer"}"#), 0.0);
}

#[tokio::test]
async fn a_write_to_another_course_or_reviewer_leaves_a_page_served_locally() {
    let (a, _) = two_instances().await;
    let store = Store::with_page(1, "one");
    store.set_reviewer(7, "Ann");
    read(&a.cache, 1, &store).await;
    a.cache
        .invalidate(&[Subject::Course(2), Subject::Reviewer(8)])
        .await;
    assert_eq!(
        read(&a.cache, 1, &store).await.as_deref(),
        Some(r#"["one","Ann"]"#)
    );
    assert_eq!(a.metric(LOCAL_PAGE_HITS), 1.0);
    assert_eq!(a.metric(REDIS_PAGE_HITS), 0.0);
    a.cache.invalidate(&[Subject::Reviewer(7)]).await;
    read(&a.cache, 1, &store).await;
    assert_eq!(
        a.metric(REDIS_PAGE_HITS),
        1.0,
        "a write to a reviewer it shows drops it"
    );
}

#[tokio::test]
async fn a_page_refilled_after_a_write_is_served_locally_again() {
    let (a, b) = two_instances().await;
    let store = Store::with_page(1, "one");
    store.set_reviewer(7, "Ann");
    store.set_reviewer(8, "Bob");
    read(&a.cache, 1, &store).await;
    // A write to the course and one to Bob; `b` puts the new skeleton in Redis. `a`'s
    // refill takes it from there, Bob anew, and Ann from its own tier: her fragment is
    // older than both floors and still fresh.
    store.set_page(1, "one, edited");
    store.set_reviewer(8, "Rob");
    a.cache
        .invalidate(&[Subject::Course(1), Subject::Reviewer(8)])
        .await;
    read(&b.cache, 1, &store).await;
    assert_eq!(
        read(&a.cache, 1, &store).await.as_deref(),
        Some(r#"["one, edited","Ann","Rob"]"#)
    );
    assert_eq!(a.metric(REVIEWER_LOCAL_HITS), 1.0, "Ann came from the tier");
    let redis_reads = a.metric(REDIS_PAGE_HITS) + a.metric(REDIS_PAGE_MISSES);
    for _ in 0..3 {
        read(&a.cache, 1, &store).await;
    }
    assert_eq!(
        a.metric(LOCAL_PAGE_HITS),
        3.0,
        "the refilled page is not condemned by floors older than its own reads"
    );
    assert_eq!(
        a.metric(REDIS_PAGE_HITS) + a.metric(REDIS_PAGE_MISSES),
        redis_reads
    );
}

#[tokio::test]
async fn another_instance_is_served_from_redis_without_a_load() {
    let (a, b) = two_instances().await;
    let store = Store::with_page(1, "v1");
    read(&a.cache, 1, &store).await;
    assert_eq!(
        read(&b.cache, 1, &store).await.as_deref(),
        Some(r#"["v1"]"#)
    );
    assert_eq!(store.loads(), 1);
    assert_eq!(b.metric(REDIS_PAGE_HITS), 1.0);
}

#[tokio::test]
async fn a_write_through_one_instance_reaches_the_other_within_the_bound() {
    let (a, b) = two_instances().await;
    let store = Store::with_page(1, "v1");
    read(&a.cache, 1, &store).await;
    read(&b.cache, 1, &store).await;
    read(&b.cache, 1, &store).await;
    assert_eq!(
        b.metric(LOCAL_PAGE_HITS),
        1.0,
        "b serves v1 from its own tier"
    );

    store.set_page(1, "v2");
    a.cache.invalidate(&[Subject::Course(1)]).await;
    assert_eq!(
        read(&a.cache, 1, &store).await.as_deref(),
        Some(r#"["v2"]"#),
        "the writer is fresh at once"
    );
    let lag = until_page_is(&b, &store, r#"["v2"]"#).await;
    assert!(lag < Duration::from_millis(100), "took {lag:?}");
    assert_eq!(b.metric("cache_invalidations_received_total"), 1.0);
    assert_eq!(b.metric("cache_invalidation_lag_seconds_count"), 1.0);
}

#[tokio::test]
async fn a_slow_reader_that_loaded_before_a_write_never_leaves_a_stale_entry() {
    let (a, b) = two_instances().await;
    let store = Arc::new(Store::with_page(1, "old"));
    *store.hold.lock().unwrap() = true;
    // The reader loads "old", then stalls before storing it.
    let reader = {
        let (cache, store) = (a.cache.clone(), store.clone());
        tokio::spawn(async move { read(&cache, 1, &store).await })
    };
    store.loaded.notified().await;
    // The write commits and invalidates while the reader is stalled.
    store.set_page(1, "new");
    *store.hold.lock().unwrap() = false;
    b.cache.invalidate(&[Subject::Course(1)]).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    store.release.notify_one();
    // Even the slow reader finds its own fill older than the invalidation and reloads.
    assert_eq!(reader.await.unwrap().as_deref(), Some(r#"["new"]"#));
    assert_eq!(
        store.loads(),
        2,
        "the stale fill was loaded, then thrown away"
    );

    // Neither tier may hand out what the slow reader stored.
    assert_eq!(
        read(&a.cache, 1, &store).await.as_deref(),
        Some(r#"["new"]"#),
        "local tier"
    );
    assert_eq!(
        read(&b.cache, 1, &store).await.as_deref(),
        Some(r#"["new"]"#),
        "redis tier"
    );
}

/// The writer's own reads while its invalidation is on the way to Redis: a fill there
/// reads the old token and the old page from Redis, and must not pass for fresh once the
/// write has answered. Invalidating many subjects at once widens that window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_on_the_writer_while_its_invalidation_is_out_leaves_nothing_stale() {
    let config = courser_cache::CacheConfig {
        // The long send must succeed, not fall back to keeping it pending.
        redis_timeout: Duration::from_secs(5),
        ..config(&redis_url(), &prefix())
    };
    let a = Arc::new(Instance::new(&config).ready().await);
    let store = Arc::new(Store::with_page(1, "v1"));
    read(&a.cache, 1, &store).await;

    store.set_page(1, "v2");
    let subjects: Vec<Subject> = (1..=20_000).map(Subject::Course).collect();
    let writing = {
        let a = a.clone();
        tokio::spawn(async move { a.cache.invalidate(&subjects).await })
    };
    let mut reads_meanwhile = 0;
    while !writing.is_finished() {
        read(&a.cache, 1, &store).await;
        reads_meanwhile += 1;
    }
    writing.await.unwrap();
    assert!(reads_meanwhile > 1, "no read overlapped the invalidation");
    assert_eq!(
        read(&a.cache, 1, &store).await.as_deref(),
        Some(r#"["v2"]"#),
        "after {reads_meanwhile} reads during the invalidation"
    );
}

#[tokio::test]
async fn concurrent_misses_on_one_key_load_it_once() {
    let (a, _) = two_instances().await;
    let store = Arc::new(Store::with_page(1, "v1"));
    *store.hold.lock().unwrap() = true;
    let readers: Vec<_> = (0..50)
        .map(|_| {
            let (cache, store) = (a.cache.clone(), store.clone());
            tokio::spawn(async move { read(&cache, 1, &store).await })
        })
        .collect();
    store.loaded.notified().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    store.release.notify_one();
    for reader in readers {
        assert_eq!(reader.await.unwrap().as_deref(), Some(r#"["v1"]"#));
    }
    assert_eq!(store.loads(), 1);
}

#[tokio::test]
async fn renaming_a_reviewer_updates_every_page_without_reloading_the_pages() {
    let (a, b) = two_instances().await;
    let store = Store::with_page(1, "one");
    store.set_page(2, "two");
    store.set_reviewer(7, "Ann");
    for course in [1, 2] {
        let page = a
            .cache
            .course_page(course, "v", &store)
            .await
            .unwrap()
            .unwrap();
        assert!(String::from_utf8_lossy(&page.body).contains("Ann"));
        read(&b.cache, course, &store).await;
    }
    let loads = store.loads();

    store.set_reviewer(7, "Anna");
    a.cache.invalidate(&[Subject::Reviewer(7)]).await;
    for instance in [&a, &b] {
        let start = Instant::now();
        for course in [1, 2] {
            loop {
                let page = instance
                    .cache
                    .course_page(course, "v", &store)
                    .await
                    .unwrap()
                    .unwrap();
                if String::from_utf8_lossy(&page.body).contains("Anna") {
                    break;
                }
                assert!(
                    start.elapsed() < Duration::from_millis(100),
                    "rename not seen"
                );
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
    assert_eq!(store.loads(), loads, "the page skeletons stayed cached");
}
