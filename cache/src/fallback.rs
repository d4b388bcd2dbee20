//! The fallback path for an invalidation Redis did not take: Postgres `NOTIFY`.
//!
//! A writer that cannot reach Redis keeps its invalidation pending (see `remote`), but
//! until it reaches Redis again the other instances would go on serving the old page from
//! Redis. Postgres is reachable (the write just committed there), so the writer sends the
//! invalidation with `pg_notify` on a channel every instance LISTENs on. Each instance
//! that hears it invalidates them in Redis itself (new generation tokens, and a message
//! on the Redis bus for the others), then forgets them locally; one that cannot
//! reach Redis either keeps them pending, and so reads nothing from Redis until it has
//! sent them. One instance hearing it is enough to make Redis fresh for all.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgListener, PgPoolOptions};

use crate::Inner;
use crate::local::Subject;
use crate::remote::{decode_message, encode_message};

/// Subjects per notification: a `NOTIFY` payload must stay under 8000 bytes, and one
/// subject takes at most 21 (`r` and an i64, and a space).
const CHUNK: usize = 300;

/// Longest wait for Postgres to take one notification.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub(crate) struct Fallback {
    pool: PgPool,
    channel: String,
}

impl Fallback {
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

    /// Sends the subjects to every listening instance; whether Postgres took them all.
    pub async fn send(&self, sender: u64, subjects: &[Subject]) -> bool {
        for chunk in subjects.chunks(CHUNK) {
            let payload = encode_message(sender, chunk);
            let notify = sqlx::query("SELECT pg_notify($1, $2)")
                .bind(&self.channel)
                .bind(payload)
                .execute(&self.pool);
            match tokio::time::timeout(SEND_TIMEOUT, notify).await {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => {
                    tracing::warn!(%error, "cannot send a fallback invalidation");
                    return false;
                }
                Err(_) => {
                    tracing::warn!("sending a fallback invalidation timed out");
                    return false;
                }
            }
        }
        true
    }
}

/// Listens on the channel for as long as the cache lives, on a connection of its own (not
/// one of the caller's pool), reconnecting when it is lost.
pub(crate) async fn listen(inner: Arc<Inner>) {
    let Some(fallback) = &inner.fallback else {
        return;
    };
    let options = (*fallback.pool.connect_options()).clone();
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .connect_lazy_with(options);
    let mut backoff = Duration::from_millis(50);
    loop {
        if let Ok(mut listener) = PgListener::connect_with(&pool).await
            && listener.listen(&fallback.channel).await.is_ok()
        {
            backoff = Duration::from_millis(50);
            inner.metrics.fallback_listening.set(1);
            // `None`: the connection was lost (notifications may have been missed).
            while let Ok(Some(notification)) = listener.try_recv().await {
                receive(&inner, notification.payload()).await;
            }
            inner.metrics.fallback_listening.set(0);
            tracing::warn!("cache fallback listener lost its Postgres connection");
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

async fn receive(inner: &Inner, payload: &str) {
    let (Some(message), Some(remote)) = (decode_message(payload), &inner.remote) else {
        return;
    };
    if remote.is_own(&message) {
        return;
    }
    inner.metrics.fallback_received.inc();
    remote.invalidate(&message.subjects).await;
    inner.local.invalidate_after_redis(&message.subjects).await;
}
