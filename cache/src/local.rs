//! The in-process tier: pages ready to send and reviewer fragments in bounded moka
//! caches, and the invalidation floors that decide whether an entry may still be served.
//!
//! Every entry records the sequence number current when the read that filled it began.
//! An invalidation takes a new sequence number as the floor of its course or reviewer;
//! an entry filled from a read that began before the floor is stale, even when it was
//! stored after the invalidation (the slow-reader race). A page is stale when its
//! course's floor is above the read of its skeleton, or the floor of a reviewer it shows
//! above the read of that reviewer's fragment. Floors outlive the entries they guard, so
//! a floor never expires while an entry it condemns could still exist.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use moka::Expiry;
use moka::future::Cache;

use crate::config::CacheConfig;
use crate::page::Page;

/// What an invalidation names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subject {
    Course(i64),
    Reviewer(i64),
}

#[derive(Debug)]
pub(crate) struct Filled<T> {
    pub value: T,
    /// The sequence number when the read that produced `value` began.
    pub read_from: u64,
    ttl: Duration,
}

impl<T> Filled<T> {
    pub fn new(value: T, read_from: u64, ttl: Duration) -> Arc<Self> {
        Arc::new(Self {
            value,
            read_from,
            ttl,
        })
    }
}

/// Each entry's own (jittered) time to live.
struct OwnTtl;

impl<K, T> Expiry<K, Arc<Filled<T>>> for OwnTtl {
    fn expire_after_create(&self, _: &K, value: &Arc<Filled<T>>, _: Instant) -> Option<Duration> {
        Some(value.ttl)
    }
}

pub(crate) type PageKey = (i64, Arc<str>);

/// A page as the in-process tier keeps it: assembled, so that a hit splices nothing,
/// with the reviewers it shows for the freshness check.
#[derive(Debug)]
pub(crate) struct LocalPage {
    pub page: Page,
    /// Each reviewer it shows, with when the read of their fragment began. A fragment
    /// kept here may be older than the page's skeleton and still fresh: judged by the
    /// skeleton's read, a course written since would condemn every refill of its page.
    pub reviewers: Box<[(i64, u64)]>,
}

impl LocalPage {
    fn weight(&self) -> usize {
        self.page.body.len() + self.page.etag.len() + self.reviewers.len() * 16
    }
}

#[derive(Debug)]
pub(crate) struct Local {
    sequence: AtomicU64,
    /// Entries filled from reads that began before this are stale: raised when the
    /// invalidation bus reconnects, since messages may have been missed meanwhile.
    global_floor: AtomicU64,
    /// The highest floor raised so far, global or of any subject. An entry read from
    /// it or later is fresh without a lookup: in a spell without writes, every entry.
    latest_floor: AtomicU64,
    floors: Cache<Subject, u64>,
    /// `None` remembers that the course does not exist.
    pub pages: Cache<PageKey, Arc<Filled<Option<LocalPage>>>>,
    pub reviewers: Cache<i64, Arc<Filled<Bytes>>>,
    config: CacheConfig,
}

impl Local {
    pub fn new(config: &CacheConfig) -> Self {
        // Pages carry their reviewers' JSON; the fragments are only for assembling pages
        // that are not here yet, so they get the smaller share.
        let pages = Cache::builder()
            .max_capacity(config.local_bytes / 4 * 3)
            .weigher(|key: &PageKey, entry: &Arc<Filled<Option<LocalPage>>>| {
                let weight = entry.value.as_ref().map_or(0, LocalPage::weight);
                u32::try_from(key.1.len() + weight + 64).unwrap_or(u32::MAX)
            })
            .expire_after(OwnTtl)
            .build();
        let reviewers = Cache::builder()
            .max_capacity(config.local_bytes / 4)
            .weigher(|_: &i64, entry: &Arc<Filled<Bytes>>| {
                u32::try_from(entry.value.len() + 32).unwrap_or(u32::MAX)
            })
            .expire_after(OwnTtl)
            .build();
        // Longer than any entry's TTL, and never evicted for size.
        let floors = Cache::builder().time_to_live(config.local_ttl * 2).build();
        Self {
            sequence: AtomicU64::new(1),
            global_floor: AtomicU64::new(0),
            latest_floor: AtomicU64::new(0),
            floors,
            pages,
            reviewers,
            config: config.clone(),
        }
    }

    /// Call before reading from Redis or the source; the result goes into `fill`.
    pub fn read_begins(&self) -> u64 {
        self.sequence.load(Ordering::SeqCst)
    }

    pub fn ttl(&self) -> Duration {
        self.config.jittered(self.config.local_ttl)
    }

    /// Whether an entry read from `read_from` may be served for `subject`.
    pub async fn is_fresh(&self, subject: Subject, read_from: u64) -> bool {
        // Raised before any floor is stored, so no floor stored before this check is
        // above it.
        if read_from >= self.latest_floor.load(Ordering::SeqCst) {
            return true;
        }
        let floor = self.floors.get(&subject).await.unwrap_or(0);
        read_from >= floor.max(self.global_floor.load(Ordering::SeqCst))
    }

    /// Whether a page of `course` may be served: the course was not invalidated since
    /// its skeleton was read (`entry.read_from`), nor any reviewer it shows since their
    /// fragment was.
    pub async fn is_page_fresh(&self, course: i64, entry: &Filled<Option<LocalPage>>) -> bool {
        let reviewers = entry.value.iter().flat_map(|page| page.reviewers.iter());
        // No floor raised since the oldest of its reads: fresh without a lookup.
        let oldest_read = reviewers
            .clone()
            .map(|&(_, read)| read)
            .fold(entry.read_from, u64::min);
        if oldest_read >= self.latest_floor.load(Ordering::SeqCst) {
            return true;
        }
        if !self
            .is_fresh(Subject::Course(course), entry.read_from)
            .await
        {
            return false;
        }
        for &(id, read_from) in reviewers {
            if !self.is_fresh(Subject::Reviewer(id), read_from).await {
                return false;
            }
        }
        true
    }

    /// Invalidates `subjects` once Redis has their new tokens (or this instance has
    /// stopped reading Redis until it has sent them): a fill here that read Redis before
    /// that began before these floors, so it is never served. Raised before, such a fill
    /// would pass for fresh with the old page and stay until the next write.
    pub async fn invalidate_after_redis(&self, subjects: &[Subject]) {
        for subject in subjects {
            self.invalidate(*subject).await;
        }
    }

    pub async fn invalidate(&self, subject: Subject) {
        let floor = self.sequence.fetch_add(1, Ordering::SeqCst) + 1;
        self.raise_floor(subject, floor).await;
        if let Subject::Reviewer(id) = subject {
            self.reviewers.invalidate(&id).await;
        }
    }

    /// Concurrent invalidations of one subject (a write here, a message from the bus) may
    /// store their floors in either order: a floor only ever rises, or a fill begun
    /// between them would pass for fresh.
    async fn raise_floor(&self, subject: Subject, floor: u64) {
        self.latest_floor.fetch_max(floor, Ordering::SeqCst);
        self.floors
            .entry(subject)
            .and_upsert_with(|old| {
                std::future::ready(old.map_or(floor, |old| old.into_value().max(floor)))
            })
            .await;
    }

    /// Condemns everything read so far, and frees its memory.
    pub fn invalidate_all(&self) {
        let floor = self.sequence.fetch_add(1, Ordering::SeqCst) + 1;
        self.latest_floor.fetch_max(floor, Ordering::SeqCst);
        self.global_floor.store(floor, Ordering::SeqCst);
        self.pages.invalidate_all();
        self.reviewers.invalidate_all();
    }

    pub fn weighted_size(&self) -> u64 {
        self.pages.weighted_size() + self.reviewers.weighted_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_entry_read_before_an_invalidation_is_stale_even_if_stored_after_it() {
        let local = Local::new(&CacheConfig::default());
        let course = Subject::Course(1);
        let slow_reader = local.read_begins();
        local.invalidate(course).await;
        let late_reader = local.read_begins();
        assert!(!local.is_fresh(course, slow_reader).await);
        assert!(local.is_fresh(course, late_reader).await);
        assert!(
            local.is_fresh(Subject::Course(2), slow_reader).await,
            "other courses are untouched"
        );
        local.invalidate_all();
        assert!(!local.is_fresh(Subject::Course(2), late_reader).await);
    }

    #[tokio::test]
    async fn floors_only_rise_whatever_order_invalidations_land_in() {
        let local = Local::new(&CacheConfig::default());
        let course = Subject::Course(1);
        local.raise_floor(course, 11).await;
        local.raise_floor(course, 10).await;
        assert!(
            !local.is_fresh(course, 10).await,
            "a fill begun between the two is stale"
        );
        assert!(local.is_fresh(course, 11).await);
    }
}
