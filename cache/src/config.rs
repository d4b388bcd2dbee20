//! Settings of the cache tiers.

use std::time::Duration;

/// How the cache behaves. `redis_url: None` turns caching off: every read goes to the
/// source, since an in-process tier without the invalidation bus could serve pages that
/// another instance has changed.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// Redis for the shared tier and the invalidation bus.
    pub redis_url: Option<String>,
    /// Prefix of every Redis key and of the channel, so several stacks (or tests) can
    /// share one Redis.
    pub key_prefix: String,
    /// Most bytes of page skeletons and reviewer fragments kept in process; 0 turns the
    /// in-process tier off (every read goes to Redis).
    pub local_bytes: u64,
    /// How long an in-process entry may live. Invalidations, not this, keep the tier
    /// fresh; the entry comes back from Redis, which keeps it for `redis_ttl`, so a
    /// shorter life re-reads the same bytes. At 60 s, re-reading each page a minute
    /// held W1 to 4,667 requests/s against 7,667/s at 10 min (BENCHMARKS.md).
    pub local_ttl: Duration,
    /// How long a Redis entry may live. Longer than `local_ttl`: entries of both tiers
    /// filled by one read would otherwise expire together, and every in-process expiry
    /// would go to the source. After a warm-up that filled ~136k pages in a minute, W1
    /// met ~800 Postgres loads/s ten minutes later and failed its SLA (BENCHMARKS.md).
    /// Generation tokens, not this, keep Redis fresh, so a longer life costs only memory.
    pub redis_ttl: Duration,
    /// Each TTL is shortened by a random fraction up to this, so that entries filled
    /// together do not expire together.
    pub ttl_jitter: f64,
    /// Longest wait for one Redis call before it counts as failed.
    pub redis_timeout: Duration,
    /// Consecutive Redis failures that open the breaker.
    pub breaker_threshold: u32,
    /// How long the breaker stays open before one call probes Redis again.
    pub breaker_cooldown: Duration,
    /// How often the invalidation bus PINGs Redis over its subscribed connection.
    pub heartbeat_interval: Duration,
    /// The in-process tier serves only while a PING sent less than this ago has been
    /// answered. Keep it well under the freshness bound (100 ms): it is how stale a
    /// silently deaf instance can be.
    pub heartbeat_deadline: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            redis_url: None,
            key_prefix: "courser".into(),
            local_bytes: 256 * 1024 * 1024,
            local_ttl: Duration::from_secs(600),
            redis_ttl: Duration::from_secs(1800),
            ttl_jitter: 0.1,
            redis_timeout: Duration::from_millis(50),
            breaker_threshold: 3,
            breaker_cooldown: Duration::from_millis(500),
            heartbeat_interval: Duration::from_millis(10),
            heartbeat_deadline: Duration::from_millis(50),
        }
    }
}

impl CacheConfig {
    /// A TTL shortened by up to `ttl_jitter` at random.
    pub(crate) fn jittered(&self, ttl: Duration) -> Duration {
        let cut = rand::random::<f64>() * self.ttl_jitter.clamp(0.0, 0.9);
        ttl.mul_f64(1.0 - cut)
    }
}
