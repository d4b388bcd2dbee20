//! A source of pages in memory, and caches over a real Redis under a fresh key prefix.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use courser_cache::{Cache, CacheConfig, LoadedPage, Skeleton, Source};
use prometheus_client::registry::Registry;
use tokio::sync::Notify;

pub fn redis_url() -> String {
    std::env::var("COURSER_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:16379".into())
}

pub fn config(redis_url: &str, prefix: &str) -> CacheConfig {
    CacheConfig {
        redis_url: Some(redis_url.to_owned()),
        key_prefix: prefix.to_owned(),
        breaker_cooldown: Duration::from_millis(100),
        ..CacheConfig::default()
    }
}

pub fn prefix() -> String {
    format!("cache-test-{:016x}", rand::random::<u64>())
}

/// A cache and the registry its metrics live in.
pub struct Instance {
    pub cache: Cache,
    pub registry: Registry,
}

impl Instance {
    pub fn new(config: &CacheConfig) -> Self {
        let mut registry = Registry::default();
        let cache = Cache::new(config, None, &mut registry).unwrap();
        Self { cache, registry }
    }

    /// Waits until the in-process tier serves (the bus is subscribed).
    pub async fn ready(self) -> Self {
        for _ in 0..200 {
            if self.cache.local_tier_serving() {
                return self;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the invalidation bus never subscribed");
    }

    pub fn metric(&self, name_and_labels: &str) -> f64 {
        self.cache.update_gauges();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).unwrap();
        text.lines()
            .find_map(|line| line.strip_prefix(name_and_labels)?.trim().parse().ok())
            .unwrap_or(0.0)
    }
}

/// Course pages as text, and reviewer names; each load is counted and can be held.
#[derive(Default)]
pub struct Store {
    pub pages: Mutex<HashMap<i64, String>>,
    pub reviewers: Mutex<HashMap<i64, String>>,
    pub page_loads: AtomicUsize,
    /// When set, a page load reads the data, signals `loaded`, then waits for `release`.
    pub hold: Mutex<bool>,
    pub loaded: Notify,
    pub release: Notify,
}

impl Store {
    pub fn with_page(course: i64, text: &str) -> Self {
        let store = Self::default();
        store.set_page(course, text);
        store
    }

    pub fn set_page(&self, course: i64, text: &str) {
        self.pages.lock().unwrap().insert(course, text.to_owned());
    }

    pub fn set_reviewer(&self, id: i64, name: &str) {
        self.reviewers.lock().unwrap().insert(id, name.to_owned());
    }

    pub fn loads(&self) -> usize {
        self.page_loads.load(Ordering::SeqCst)
    }
}

/// A page `[text, reviewer…]`: JSON-ish bytes with each reviewer spliced in.
fn skeleton(text: &str, reviewers: &[i64]) -> Skeleton {
    let mut skeleton = Skeleton::default();
    skeleton.push_json(format!("[\"{text}\""));
    for id in reviewers {
        skeleton.push_json(&b","[..]);
        skeleton.push_reviewer(*id);
    }
    skeleton.push_json(&b"]"[..]);
    skeleton
}

impl Source for Store {
    type Error = Infallible;

    async fn load_page(
        &self,
        course: i64,
        _variant: &str,
    ) -> Result<Option<LoadedPage>, Infallible> {
        self.page_loads.fetch_add(1, Ordering::SeqCst);
        let text = self.pages.lock().unwrap().get(&course).cloned();
        let reviewers: Vec<(i64, Bytes)> = self
            .reviewers
            .lock()
            .unwrap()
            .iter()
            .map(|(id, name)| (*id, Bytes::from(format!("\"{name}\""))))
            .collect();
        let held = *self.hold.lock().unwrap();
        if held {
            self.loaded.notify_one();
            self.release.notified().await;
        }
        let mut ids: Vec<i64> = reviewers.iter().map(|(id, _)| *id).collect();
        ids.sort_unstable();
        Ok(text.map(|text| LoadedPage {
            skeleton: skeleton(&text, &ids),
            reviewers,
        }))
    }

    async fn load_reviewers(&self, ids: &[i64]) -> Result<Vec<(i64, Bytes)>, Infallible> {
        let reviewers = self.reviewers.lock().unwrap();
        Ok(ids
            .iter()
            .filter_map(|id| {
                reviewers
                    .get(id)
                    .map(|name| (*id, Bytes::from(format!("\"{name}\""))))
            })
            .collect())
    }
}

/// The body of the page as text.
pub async fn read(cache: &Cache, course: i64, store: &Store) -> Option<String> {
    let page = cache.course_page(course, "v", store).await.unwrap();
    page.map(|p| String::from_utf8(p.body.to_vec()).unwrap())
}
