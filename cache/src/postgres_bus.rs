//! The Postgres bus: `NOTIFY` on a channel every instance LISTENs on, beside the Redis
//! bus (see `bus`).
//!
//! - Every invalidation goes over it, after Redis has its new tokens: the other instances
//!   apply it to their in-process tiers, so that Postgres can vouch for a tier (see
//!   `lease`) while Redis cannot. While Redis does not, each instance sends itself a ping
//!   on the channel every `heartbeat_interval`; its return proves every invalidation
//!   committed before it has been applied.
//! - One that Redis did not take is sent as a *fallback*: until the writer reaches Redis
//!   again the other instances would go on serving the old page from Redis, so each
//!   instance that hears it invalidates it in Redis itself (new generation tokens, and a
//!   message on the Redis bus) before it reads from Redis again, and forgets it locally at
//!   once. Every instance hearing it keeps it pending like that, so none reads the old
//!   page from Redis, and the first read on any of them makes Redis fresh for all.
//!
//! An invalidation whose write committed but whose `NOTIFY` failed (Postgres lost between
//! the two) reaches only the instances Redis vouches for; a Postgres that is gone also
//! ends every instance's LISTEN, and with it Postgres's word.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgListener, PgPoolOptions};

use crate::Inner;
use crate::lease::Via;
use crate::local::Subject;
use crate::remote::{decode_message, encode_message};

/// Subjects per notification: a `NOTIFY` payload must stay under 8000 bytes, and one
/// subject takes at most 21 (`r` and an i64, and a space).
const CHUNK: usize = 300;

/// Longest wait for Postgres to take one notification.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub(crate) struct PostgresBus {
    pool: PgPool,
    channel: String,
}

impl PostgresBus {
    pub fn new(pool: PgPool, key_prefix: &str) -> Self {
        // Channel names are identifiers: at most 63 bytes.
        let mut channel = format!("{key_prefix}:invalidate");
        if channel.len() > 63 {
            channel = format!(
                "courser-cache-{:016x}",
                xxhash_rust::xxh3::xxh3_64(key_prefix.as_bytes())
            );
        }
        Self { pool, channel }
    }

    /// Sends the subjects to every listening instance, as a fallback unless Redis took
    /// them; whether Postgres took them all.
    pub async fn send(&self, sender: u64, subjects: &[Subject], redis_took: bool) -> bool {
        for chunk in subjects.chunks(CHUNK) {
            let message = encode_message(sender, chunk);
            let payload = if redis_took {
                format!("{WRITTEN}{message}")
            } else {
                message
            };
            if !self.notify(payload).await {
                return false;
            }
        }
        true
    }

    async fn notify(&self, payload: String) -> bool {
        // Postgres serialises the commits of transactions that notify, each holding the
        // lock through its WAL flush: with every write's invalidation notified, a slow
        // flush stalled every write (400 ms in fault case 3). Nothing here needs the
        // flush (a notification does not outlive a crash anyway), so this commit does
        // not wait for it.
        let notify =
            sqlx::query("SELECT set_config('synchronous_commit', 'off', true), pg_notify($1, $2)")
                .bind(&self.channel)
                .bind(payload)
                .execute(&self.pool);
        match tokio::time::timeout(SEND_TIMEOUT, notify).await {
            Ok(Ok(_)) => true,
            Ok(Err(error)) => {
                tracing::warn!(%error, "cannot send a notification to the Postgres bus");
                false
            }
            Err(_) => {
                tracing::warn!("sending a notification to the Postgres bus timed out");
                false
            }
        }
    }
}

/// Payload prefixes: an invalidation Redis took, and a ping (`p<instance> <sent>`).
const WRITTEN: &str = "w";
const PING: &str = "p";

/// While Redis does not vouch for the in-process tier, pings this instance over Postgres
/// so that Postgres does (see `lease`), one ping out at a time.
pub(crate) async fn ping(inner: Arc<Inner>) {
    let (Some(bus), Some(remote)) = (&inner.postgres_bus, &inner.remote) else {
        return;
    };
    let interval = remote.config.heartbeat_interval;
    // Redis's PONGs come every interval while it vouches: ping once one is half an
    // interval late, so that Postgres's word is in before Redis's lapses.
    let late = interval + interval / 2;
    let mut beat = tokio::time::interval(interval / 2);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        beat.tick().await;
        if !inner.lease.is_up(Via::Postgres) || inner.lease.age(Via::Redis) < late {
            continue;
        }
        let sent = inner.lease.now();
        bus.notify(format!("{PING}{} {sent}", remote.instance))
            .await;
    }
}

/// Listens on the channel for as long as the cache lives, on a connection of its own (not
/// one of the caller's pool), reconnecting when it is lost.
pub(crate) async fn listen(inner: Arc<Inner>) {
    let Some(bus) = &inner.postgres_bus else {
        return;
    };
    let options = (*bus.pool.connect_options()).clone();
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .connect_lazy_with(options);
    let mut backoff = Duration::from_millis(50);
    loop {
        if let Ok(mut listener) = PgListener::connect_with(&pool).await
            && listener.listen(&bus.channel).await.is_ok()
        {
            backoff = Duration::from_millis(50);
            if inner.lease.connected(Via::Postgres) {
                inner.local.invalidate_all();
            }
            inner.metrics.fallback_listening.set(1);
            // `None`: the connection was lost (notifications may have been missed).
            while let Ok(Some(notification)) = listener.try_recv().await {
                receive(&inner, notification.payload()).await;
            }
            inner.lease.disconnected(Via::Postgres);
            inner.metrics.fallback_listening.set(0);
            tracing::warn!("cache invalidation bus on Postgres lost its connection");
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

async fn receive(inner: &Inner, payload: &str) {
    let Some(remote) = &inner.remote else {
        return;
    };
    if let Some(ping) = payload.strip_prefix(PING) {
        if let Some((instance, sent)) = ping.split_once(' ')
            && instance.parse() == Ok(remote.instance)
            && let Ok(sent) = sent.parse()
        {
            inner.lease.confirm(Via::Postgres, sent);
        }
        return;
    }
    let (written, message) = match payload.strip_prefix(WRITTEN) {
        Some(message) => (true, message),
        None => (false, payload),
    };
    let Some(message) = decode_message(message) else {
        return;
    };
    if remote.is_own(&message) {
        return;
    }
    if written {
        // Redis has the new tokens already (the writer sent them first).
        inner.local.invalidate_after_redis(&message.subjects).await;
        return;
    }
    inner.metrics.fallback_received.inc();
    // Pending first, so that no read here refills from Redis's old page; the next read
    // sends them. Waiting for Redis here would hold up every notification behind it.
    remote.defer(&message.subjects);
    inner.local.invalidate_after_redis(&message.subjects).await;
}
