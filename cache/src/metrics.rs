//! The cache's Prometheus metrics, registered into the caller's registry.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct TierLabels {
    /// `local` or `redis`.
    pub tier: &'static str,
    /// `page` or `reviewer`.
    pub kind: &'static str,
}

#[derive(Debug, Clone)]
pub struct Metrics {
    pub hits: Family<TierLabels, Counter>,
    pub misses: Family<TierLabels, Counter>,
    /// Loads from the source (the database), after both tiers missed.
    pub loads: Family<TierLabels, Counter>,
    pub invalidations_sent: Counter,
    pub invalidations_received: Counter,
    pub invalidation_lag: Histogram,
    pub redis_errors: Counter,
    pub breaker_state: Gauge,
    pub bus_connected: Gauge,
    pub heartbeat_misses: Counter,
    pub fallback_sent: Counter,
    pub fallback_errors: Counter,
    pub fallback_received: Counter,
    pub fallback_listening: Gauge,
    pub local_serving: Gauge,
    pub local_bytes: Gauge,
}

impl Metrics {
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = Self {
            hits: Family::default(),
            misses: Family::default(),
            loads: Family::default(),
            invalidations_sent: Counter::default(),
            invalidations_received: Counter::default(),
            invalidation_lag: Histogram::new([
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ]),
            redis_errors: Counter::default(),
            breaker_state: Gauge::default(),
            bus_connected: Gauge::default(),
            heartbeat_misses: Counter::default(),
            fallback_sent: Counter::default(),
            fallback_errors: Counter::default(),
            fallback_received: Counter::default(),
            fallback_listening: Gauge::default(),
            local_serving: Gauge::default(),
            local_bytes: Gauge::default(),
        };
        let registry = registry.sub_registry_with_prefix("cache");
        registry.register("hits", "Cache hits by tier and kind", metrics.hits.clone());
        registry.register(
            "misses",
            "Cache misses by tier and kind",
            metrics.misses.clone(),
        );
        registry.register(
            "loads",
            "Loads from the database after both tiers missed",
            metrics.loads.clone(),
        );
        registry.register(
            "invalidations_sent",
            "Invalidation messages published after writes",
            metrics.invalidations_sent.clone(),
        );
        registry.register(
            "invalidations_received",
            "Invalidation messages received from other instances",
            metrics.invalidations_received.clone(),
        );
        registry.register_with_unit(
            "invalidation_lag",
            "Time from a write's invalidation being published to this instance applying it",
            Unit::Seconds,
            metrics.invalidation_lag.clone(),
        );
        registry.register(
            "redis_errors",
            "Redis calls that failed or timed out",
            metrics.redis_errors.clone(),
        );
        registry.register(
            "breaker_state",
            "Redis circuit breaker: 0 closed, 1 half-open, 2 open",
            metrics.breaker_state.clone(),
        );
        registry.register(
            "bus_connected",
            "1 while subscribed to the invalidation channel (the in-process tier serves only then)",
            metrics.bus_connected.clone(),
        );
        registry.register(
            "heartbeat_misses",
            "PINGs on the subscribed connection answered after the deadline (local hits pause until one is in time) or not within 1 s (the in-process tier is dropped and the bus resubscribes)",
            metrics.heartbeat_misses.clone(),
        );
        registry.register(
            "local_serving",
            "1 while the in-process tier may serve: a heartbeat over Redis or Postgres answered within the deadline",
            metrics.local_serving.clone(),
        );
        registry.register(
            "fallback_invalidations_sent",
            "Invalidations Redis did not take, sent to the other instances over Postgres NOTIFY",
            metrics.fallback_sent.clone(),
        );
        registry.register(
            "fallback_invalidation_errors",
            "Invalidations Postgres NOTIFY did not take: instances that only Postgres vouches for miss them (those Redis did not take either stay pending for Redis)",
            metrics.fallback_errors.clone(),
        );
        registry.register(
            "fallback_invalidations_received",
            "Invalidations heard from other instances over Postgres NOTIFY (each re-sent to Redis)",
            metrics.fallback_received.clone(),
        );
        registry.register(
            "fallback_listening",
            "1 while the Postgres invalidation bus is listening",
            metrics.fallback_listening.clone(),
        );
        registry.register_with_unit(
            "local",
            "Bytes held by the in-process tier",
            Unit::Bytes,
            metrics.local_bytes.clone(),
        );
        metrics
    }

    pub fn hit(&self, tier: &'static str, kind: &'static str) {
        self.hits.get_or_create(&TierLabels { tier, kind }).inc();
    }

    pub fn miss(&self, tier: &'static str, kind: &'static str) {
        self.misses.get_or_create(&TierLabels { tier, kind }).inc();
    }

    pub fn load(&self, kind: &'static str) {
        self.loads
            .get_or_create(&TierLabels {
                tier: "source",
                kind,
            })
            .inc();
    }
}
