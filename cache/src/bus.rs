//! The invalidation bus: a task subscribed to the Redis channel that applies other
//! instances' invalidations to the in-process tier.
//!
//! The bus renews its half of the [`Lease`](crate::lease::Lease) with a heartbeat: every
//! `heartbeat_interval` it PINGs Redis on the subscribed connection. Redis answers in
//! order, after every message it sent before, so once the PONG is in and the messages
//! queued ahead of it are applied, every invalidation published before the PING went out
//! has been applied. Redis vouches for `heartbeat_deadline` from that PING: a connection
//! that goes silent (Redis paused, a partition with no RST) stops vouching within the
//! deadline, and the in-process tier serves on only if Postgres vouches instead.
//!
//! A late PONG only lets Redis stop vouching until the next one is in time: nothing was
//! missed, since the messages ahead of it are applied before it counts. Under load a
//! busy process or Redis answers late all the time, and dropping the tier and
//! resubscribing on each late PONG kept every instance cold, which sent more reads to
//! Postgres and made the next PONG later still (W3 collapsed). Only a PING unanswered for
//! [`GIVE_UP_AFTER`] ends the subscription. When the connection drops, the bus holds the
//! Redis breaker open until it has subscribed again, so that requests go to the source
//! rather than each try a Redis that is gone. When it has subscribed again, the tier is
//! condemned unless the Postgres bus was connected all along (see `lease`).

use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt as _, StreamExt as _};
use redis::aio::{PubSub, PubSubStream};

use crate::Inner;
use crate::lease::Via;
use crate::remote::{Remote, decode_message, now_micros};

/// How long Redis may leave a subscription or a heartbeat unanswered before the bus
/// gives up on the connection (a paused Redis accepts the TCP connection and then says
/// nothing).
const GIVE_UP_AFTER: Duration = Duration::from_secs(1);

pub(crate) async fn run(client: redis::Client, inner: Arc<Inner>) {
    let mut backoff = Duration::from_millis(50);
    loop {
        if let Some(remote) = &inner.remote
            && let Some(pubsub) = subscribe(&client, &remote.channel).await
        {
            backoff = Duration::from_millis(50);
            listen(pubsub, &inner, remote).await;
        }
        inner.lease.disconnected(Via::Redis);
        inner.metrics.bus_connected.set(0);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// A subscribed connection, or `None` when Redis does not give one in time.
async fn subscribe(client: &redis::Client, channel: &str) -> Option<PubSub> {
    let subscribing = async {
        let mut pubsub = client.get_async_pubsub().await.ok()?;
        pubsub.subscribe(channel).await.ok()?;
        Some(pubsub)
    };
    tokio::time::timeout(GIVE_UP_AFTER, subscribing)
        .await
        .ok()
        .flatten()
}

/// Applies messages and keeps the lease renewed until the subscription is lost.
async fn listen(pubsub: PubSub, inner: &Inner, remote: &Remote) {
    let config = &remote.config;
    if inner.lease.connected(Via::Redis) {
        inner.local.invalidate_all();
    }
    inner.lease.confirm(Via::Redis, inner.lease.now());
    remote.back();
    inner.metrics.bus_connected.set(1);
    tracing::info!("cache invalidation bus subscribed");
    let (mut sink, mut stream) = pubsub.split();
    let mut beat = tokio::time::interval(config.heartbeat_interval);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            message = stream.next() => match message {
                Some(message) => apply(inner, remote, &message).await,
                None => {
                    tracing::warn!("cache invalidation bus lost; the in-process tier stops serving until it is back");
                    remote.lost();
                    return;
                }
            },
            _ = beat.tick() => {
                let sent = inner.lease.now();
                let answered =
                    tokio::time::timeout(GIVE_UP_AFTER, sink.ping::<redis::Value>()).await;
                if !matches!(answered, Ok(Ok(_))) {
                    inner.metrics.heartbeat_misses.inc();
                    tracing::warn!("cache invalidation bus: a heartbeat went unanswered for 1 s; resubscribing");
                    return;
                }
                if !inner.lease.vouches(Via::Redis) {
                    // Late: Redis stopped vouching meanwhile, and resumes with the next PONG in time.
                    inner.metrics.heartbeat_misses.inc();
                }
                drain(&mut stream, inner, remote).await;
                inner.lease.confirm(Via::Redis, sent);
            }
        }
    }
}

/// Applies the messages already queued: those Redis sent before the PONG just received.
async fn drain(stream: &mut PubSubStream, inner: &Inner, remote: &Remote) {
    while let Some(Some(message)) = stream.next().now_or_never() {
        apply(inner, remote, &message).await;
    }
}

async fn apply(inner: &Inner, remote: &Remote, message: &redis::Msg) {
    let Some(message) = std::str::from_utf8(message.get_payload_bytes())
        .ok()
        .and_then(decode_message)
    else {
        return;
    };
    if remote.is_own(&message) {
        return;
    }
    for subject in &message.subjects {
        inner.local.invalidate(*subject).await;
    }
    inner.metrics.invalidations_received.inc();
    let lag = now_micros().saturating_sub(message.sent_at_micros);
    inner.metrics.invalidation_lag.observe(lag as f64 / 1e6);
}
