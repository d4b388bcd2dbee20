//! The invalidation bus: a task subscribed to the Redis channel that applies other
//! instances' invalidations to the in-process tier. The in-process tier serves only while
//! subscribed; whenever the subscription starts or ends, everything it holds is condemned,
//! since invalidations may have been missed meanwhile.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt as _;

use crate::Inner;
use crate::remote::{decode_message, now_micros};

pub(crate) async fn run(client: redis::Client, inner: Arc<Inner>) {
    let mut backoff = Duration::from_millis(50);
    loop {
        if let Some(remote) = &inner.remote
            && let Ok(Ok(mut pubsub)) =
                tokio::time::timeout(Duration::from_secs(1), client.get_async_pubsub()).await
            && pubsub.subscribe(&remote.channel).await.is_ok()
        {
            inner.local.invalidate_all();
            inner.bus_up.store(true, Ordering::SeqCst);
            inner.metrics.bus_connected.set(1);
            tracing::info!("cache invalidation bus subscribed");
            backoff = Duration::from_millis(50);
            let mut messages = pubsub.on_message();
            while let Some(message) = messages.next().await {
                let Some(message) = std::str::from_utf8(message.get_payload_bytes())
                    .ok()
                    .and_then(decode_message)
                else {
                    continue;
                };
                if remote.is_own(&message) {
                    continue;
                }
                for subject in &message.subjects {
                    inner.local.invalidate(*subject).await;
                }
                inner.metrics.invalidations_received.inc();
                let lag = now_micros().saturating_sub(message.sent_at_micros);
                inner.metrics.invalidation_lag.observe(lag as f64 / 1e6);
            }
            tracing::warn!(
                "cache invalidation bus lost; the in-process tier stops serving until it is back"
            );
        }
        inner.bus_up.store(false, Ordering::SeqCst);
        inner.metrics.bus_connected.set(0);
        inner.local.invalidate_all();
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}
