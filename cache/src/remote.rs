//! The Redis tier: page skeletons and reviewer fragments shared by every instance, each
//! stored with the generation token of its course or reviewer as read before the load.
//! A write replaces the token with a new random one, so an entry stored by a reader that
//! began before the write never matches again, whenever it lands. Every call has a
//! timeout and goes through the breaker, and none is made while the bus's heartbeat is
//! late past its deadline (a paused Redis would hold each for the whole timeout); a
//! failed or skipped invalidation is remembered and sent before this instance reads from
//! Redis again.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use redis::RedisResult;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::breaker::Breaker;
use crate::config::CacheConfig;
use crate::lease::{Lease, Via};
use crate::local::Subject;
use crate::metrics::Metrics;
use crate::page::Skeleton;

/// Most pending invalidations sent in one call.
const FLUSH_CHUNK: usize = 500;

/// Invalidations not yet sent, each with when it was (last) added.
#[derive(Debug, Default)]
struct Pending {
    added: u64,
    subjects: HashMap<Subject, u64>,
}

impl Pending {
    fn add(&mut self, subjects: impl IntoIterator<Item = Subject>) {
        for subject in subjects {
            self.added += 1;
            self.subjects.insert(subject, self.added);
        }
    }

    /// Which of `subjects` are pending, as they are now.
    fn taken(&self, subjects: &HashSet<Subject>) -> Vec<(Subject, u64)> {
        subjects
            .iter()
            .filter_map(|s| self.subjects.get(s).map(|added| (*s, *added)))
            .collect()
    }

    /// Forgets what a successful send took, unless it was added again meanwhile: an
    /// invalidation that failed during the send may be for a write committed after the
    /// send's new token, and must still go out.
    fn sent(&mut self, taken: &[(Subject, u64)]) {
        for (subject, added) in taken {
            if self.subjects.get(subject) == Some(added) {
                self.subjects.remove(subject);
            }
        }
    }
}

/// What Redis said about one entry.
#[derive(Debug)]
pub(crate) enum Lookup<T> {
    Hit(T),
    /// Not there or stale: store a fresh load under this generation token.
    Miss {
        generation: u64,
    },
}

#[derive(Debug)]
pub(crate) struct Remote {
    connection: ConnectionManager,
    breaker: Breaker,
    /// Whose Redis side says whether Redis is answering the bus's heartbeat.
    lease: Arc<Lease>,
    /// Invalidations that could not be sent; sent before this instance reads again.
    pending: Mutex<Pending>,
    /// Held by the one call sending pending invalidations.
    flushing: tokio::sync::Mutex<()>,
    prefix: String,
    pub channel: String,
    pub instance: u64,
    pub config: CacheConfig,
    metrics: Metrics,
}

fn generation_of(value: Option<Vec<u8>>) -> u64 {
    value
        .and_then(|v| std::str::from_utf8(&v).ok().and_then(|s| s.parse().ok()))
        .unwrap_or(0)
}

impl Remote {
    pub fn new(
        url: &str,
        config: &CacheConfig,
        metrics: Metrics,
        instance: u64,
        lease: Arc<Lease>,
    ) -> RedisResult<Self> {
        let client = redis::Client::open(url)?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.redis_timeout * 4))
            .set_response_timeout(Some(config.redis_timeout))
            .set_number_of_retries(1);
        Ok(Self {
            connection: ConnectionManager::new_lazy_with_config(client, manager_config)?,
            breaker: Breaker::new(config.breaker_threshold, config.breaker_cooldown),
            lease,
            pending: Mutex::new(Pending::default()),
            flushing: tokio::sync::Mutex::new(()),
            prefix: config.key_prefix.clone(),
            channel: format!("{}:invalidate", config.key_prefix),
            instance,
            config: config.clone(),
            metrics,
        })
    }

    pub fn breaker_state(&self) -> i64 {
        self.breaker.gauge_value()
    }

    /// The bus lost Redis: requests skip it, rather than each wait out a timeout, until
    /// [`back`](Self::back).
    pub fn lost(&self) {
        self.breaker.hold_open();
    }

    /// The bus has Redis again: ends a hold of [`lost`](Self::lost).
    pub fn back(&self) {
        self.breaker.release();
    }

    /// Whether calls skip Redis because the bus's heartbeat is late past its deadline:
    /// Redis is paused or the link is silent, and each call would wait out its timeout
    /// before the breaker had counted enough failures to open.
    fn silent(&self) -> bool {
        !self.lease.vouches(Via::Redis)
    }

    /// One Redis call under the breaker and the timeout; `None` when skipped or failed.
    async fn call<T, F>(&self, call: impl FnOnce(ConnectionManager) -> F) -> Option<T>
    where
        F: Future<Output = RedisResult<T>>,
    {
        if self.silent() || !self.breaker.allows() {
            return None;
        }
        match tokio::time::timeout(self.config.redis_timeout, call(self.connection.clone())).await {
            Ok(Ok(value)) => {
                self.breaker.succeeded();
                Some(value)
            }
            Ok(Err(error)) => {
                self.failed(&error.to_string());
                None
            }
            Err(_) => {
                self.failed("timed out");
                None
            }
        }
    }

    fn failed(&self, error: &str) {
        self.metrics.redis_errors.inc();
        self.breaker.failed();
        tracing::debug!(error, "redis call failed");
    }

    // Hash tags keep a course's (or reviewer's) keys in one Redis Cluster slot.
    fn generation_key(&self, subject: Subject) -> String {
        match subject {
            Subject::Course(id) => format!("{}:{{c{id}}}:gen", self.prefix),
            Subject::Reviewer(id) => format!("{}:{{r{id}}}:gen", self.prefix),
        }
    }

    fn page_key(&self, course: i64, variant: &str) -> String {
        format!("{}:{{c{course}}}:page:{variant}", self.prefix)
    }

    fn reviewer_key(&self, id: i64) -> String {
        format!("{}:{{r{id}}}:json", self.prefix)
    }

    /// Whether reads may use Redis: only once every earlier invalidation has been sent.
    /// Only one read at a time sends them (the others skip Redis meanwhile), a chunk per
    /// call: after a long outage thousands are pending, and every read sending all of them
    /// at once stalled Redis and every instance when it came back.
    async fn usable(&self) -> bool {
        if self.lock_pending().subjects.is_empty() {
            return true;
        }
        let Ok(_flushing) = self.flushing.try_lock() else {
            return false;
        };
        self.send(&[], true).await && self.lock_pending().subjects.is_empty()
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub async fn page(&self, course: i64, variant: &str) -> Option<Lookup<Skeleton>> {
        if !self.usable().await {
            return None;
        }
        let keys = [
            self.generation_key(Subject::Course(course)),
            self.page_key(course, variant),
        ];
        let (generation, page): (Option<Vec<u8>>, Option<Vec<u8>>) = self
            .call(|mut c| async move { redis::cmd("MGET").arg(&keys).query_async(&mut c).await })
            .await?;
        let generation = generation_of(generation);
        Some(match page.and_then(|p| Skeleton::decode(p.into())) {
            Some((stored, skeleton)) if stored == generation => Lookup::Hit(skeleton),
            _ => Lookup::Miss { generation },
        })
    }

    pub async fn store_page(
        &self,
        course: i64,
        variant: &str,
        generation: u64,
        skeleton: &Skeleton,
    ) {
        let key = self.page_key(course, variant);
        let value = skeleton.encode(generation);
        let ttl = millis(self.config.jittered(self.config.redis_ttl));
        self.call(|mut c| async move {
            redis::cmd("SET")
                .arg(key)
                .arg(&value[..])
                .arg("PX")
                .arg(ttl)
                .query_async::<()>(&mut c)
                .await
        })
        .await;
    }

    /// Each reviewer's fragment, or the generation to store a fresh one under.
    pub async fn reviewers(&self, ids: &[i64]) -> Option<Vec<Lookup<Bytes>>> {
        if ids.is_empty() || !self.usable().await {
            return None;
        }
        let keys: Vec<String> = ids
            .iter()
            .flat_map(|&id| {
                [
                    self.generation_key(Subject::Reviewer(id)),
                    self.reviewer_key(id),
                ]
            })
            .collect();
        let values: Vec<Option<Vec<u8>>> = self
            .call(|mut c| async move { redis::cmd("MGET").arg(&keys).query_async(&mut c).await })
            .await?;
        let mut values = values.into_iter();
        let mut found = Vec::with_capacity(ids.len());
        while let (Some(generation), Some(fragment)) = (values.next(), values.next()) {
            let generation = generation_of(generation);
            found.push(match fragment.map(Bytes::from) {
                Some(stored) if stored.len() >= 8 && stored[..8] == generation.to_le_bytes() => {
                    Lookup::Hit(stored.slice(8..))
                }
                _ => Lookup::Miss { generation },
            });
        }
        Some(found)
    }

    pub async fn store_reviewers(&self, fragments: &[(i64, u64, Bytes)]) {
        if fragments.is_empty() {
            return;
        }
        let mut pipe = redis::pipe();
        for (id, generation, json) in fragments {
            let mut value = BytesMut::with_capacity(json.len() + 8);
            value.put_u64_le(*generation);
            value.put_slice(json);
            let ttl = millis(self.config.jittered(self.config.redis_ttl));
            pipe.cmd("SET")
                .arg(self.reviewer_key(*id))
                .arg(&value[..])
                .arg("PX")
                .arg(ttl)
                .ignore();
        }
        self.call(|mut c| async move { pipe.query_async::<()>(&mut c).await })
            .await;
    }

    /// Gives each subject a new generation token and tells the other instances. Returns
    /// whether Redis took it; if not, the subjects wait in `pending`.
    pub async fn invalidate(&self, subjects: &[Subject]) -> bool {
        let flushing = self.flushing.try_lock();
        self.send(subjects, flushing.is_ok()).await
    }

    /// Keeps `subjects` pending: this instance reads nothing from Redis until a read has
    /// sent them (see [`usable`](Self::usable)).
    pub fn defer(&self, subjects: &[Subject]) {
        self.lock_pending().add(subjects.iter().copied());
    }

    /// Sends `subjects`, with a chunk of the pending ones when `with_pending`.
    async fn send(&self, subjects: &[Subject], with_pending: bool) -> bool {
        if self.silent() || self.breaker.skips() {
            // Not even built: with Redis away for long, the pending set holds thousands
            // of subjects.
            self.lock_pending().add(subjects.iter().copied());
            return false;
        }
        let mut all: HashSet<Subject> = subjects.iter().copied().collect();
        let taken = {
            let pending = self.lock_pending();
            if with_pending {
                all.extend(pending.subjects.keys().take(FLUSH_CHUNK).copied());
            }
            pending.taken(&all)
        };
        let mut pipe = redis::pipe();
        // Tokens outlive every entry stored under the token before them (see module docs).
        let token_ttl = millis(self.config.redis_ttl * 2);
        for subject in &all {
            let token = rand::random::<u64>().max(1);
            pipe.cmd("SET")
                .arg(self.generation_key(*subject))
                .arg(token)
                .arg("PX")
                .arg(token_ttl)
                .ignore();
        }
        pipe.cmd("PUBLISH")
            .arg(&self.channel)
            .arg(encode_message(self.instance, &all))
            .ignore();
        let sent = self
            .call(|mut c| async move { pipe.query_async::<()>(&mut c).await })
            .await
            .is_some();
        let mut pending = self.lock_pending();
        if sent {
            pending.sent(&taken);
            self.metrics.invalidations_sent.inc();
        } else {
            pending.add(all);
        }
        sent
    }

    pub fn is_own(&self, message: &Message) -> bool {
        message.sender == self.instance
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// An invalidation on the channel: who sent it, when, and what it names.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Message {
    pub sender: u64,
    pub sent_at_micros: u64,
    pub subjects: Vec<Subject>,
}

pub(crate) fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// `sender sent_at c1 r2 …` as text: easy to watch with `redis-cli SUBSCRIBE`.
pub(crate) fn encode_message<'a>(
    sender: u64,
    subjects: impl IntoIterator<Item = &'a Subject>,
) -> String {
    let mut text = format!("{sender} {}", now_micros());
    for subject in subjects {
        let (tag, id) = match subject {
            Subject::Course(id) => ('c', id),
            Subject::Reviewer(id) => ('r', id),
        };
        text.push_str(&format!(" {tag}{id}"));
    }
    text
}

pub(crate) fn decode_message(text: &str) -> Option<Message> {
    let mut words = text.split(' ');
    let sender = words.next()?.parse().ok()?;
    let sent_at_micros = words.next()?.parse().ok()?;
    let subjects = words
        .map(|word| {
            let (tag, id) = word.split_at_checked(1)?;
            let id = id.parse().ok()?;
            match tag {
                "c" => Some(Subject::Course(id)),
                "r" => Some(Subject::Reviewer(id)),
                _ => None,
            }
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Message {
        sender,
        sent_at_micros,
        subjects,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_send_forgets_only_what_was_not_added_again_meanwhile() {
        let (a, b) = (Subject::Course(1), Subject::Reviewer(2));
        let mut pending = Pending::default();
        pending.add([a, b]);
        let taken = pending.taken(&HashSet::from([a, b]));
        // While the send is out, an invalidation of `b` fails: it is for a write that may
        // have committed after the send's token, so it must stay pending.
        pending.add([b]);
        pending.sent(&taken);
        assert!(!pending.subjects.contains_key(&a));
        assert!(pending.subjects.contains_key(&b));
    }

    #[test]
    fn messages_round_trip() {
        let subjects: HashSet<Subject> = [Subject::Course(4), Subject::Reviewer(9)].into();
        let message = decode_message(&encode_message(77, &subjects)).unwrap();
        assert_eq!(message.sender, 77);
        assert_eq!(
            message.subjects.into_iter().collect::<HashSet<_>>(),
            subjects
        );
        assert!(decode_message("77 1 x5").is_none());
        assert!(decode_message("garbage").is_none());
    }
}
