//! Prometheus metrics of the proxy, served on the admin port.
//!
//! Labels are bounded: `backend` takes one value per configured backend (series of a
//! removed backend are dropped at reload) plus `none` for answers the proxy gave itself,
//! `class` one of `1xx`..`5xx` or `error` (no response), `reason` a fixed set. Handles
//! are resolved when a backend is added so that the request path only bumps atomics.

use std::sync::Arc;

use courser_exposition::Format;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    backend: Arc<str>,
    class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabel {
    backend: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "error"];

/// Why a request was sent again.
#[derive(Clone, Copy, Debug)]
pub enum RetryReason {
    /// The connect failed: nothing was sent.
    Connect,
    /// The connection broke before any response byte.
    Reset,
    /// A GET/HEAD timed out and was tried once more.
    Timeout,
}

/// Handles of one backend, resolved once.
#[derive(Clone, Debug)]
pub struct BackendMetrics {
    requests: [Counter; 6],
    /// Times the outlier tracker ejected it.
    pub ejections: Counter,
    /// Time from choosing it for an attempt to its response headers.
    pub upstream_duration: Histogram,
}

impl BackendMetrics {
    /// Counts a finished request by status (0: no response).
    pub fn observe(&self, status: u16) {
        self.requests[class_index(status)].inc();
    }
}

fn class_index(status: u16) -> usize {
    match status {
        100..=599 => usize::from(status / 100 - 1),
        _ => 5,
    }
}

/// The api's request latency buckets (0.5 ms to 5 s, with the SLO's 300 ms), so that a
/// backend's latency seen from the proxy compares bucket for bucket with its own.
const UPSTREAM_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0,
];

/// Every metric of the proxy.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    ejections: Family<BackendLabel, Counter>,
    upstream_duration: Family<BackendLabel, Histogram>,
    backend_up: Family<BackendLabel, Gauge>,
    in_flight: Family<BackendLabel, Gauge>,
    retries: [Counter; 3],
    /// Requests answered 429 by the per-client rate limit.
    pub rate_limited: Counter,
    /// Latency of every request, from its header being read to its end.
    pub duration: Histogram,
    /// Counters of answers the proxy gave without a backend (`backend="none"`).
    pub own: BackendMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers everything.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "courser_proxy_requests",
            "Requests finished, by backend and status class",
            requests.clone(),
        );
        let duration = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register(
            "courser_proxy_request_duration_seconds",
            "Time from request header to the end of the response",
            duration.clone(),
        );
        let retries_family = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "courser_proxy_retries",
            "Requests sent again to another backend, by reason",
            retries_family.clone(),
        );
        let retries = ["connect", "reset", "timeout"].map(|reason| {
            retries_family
                .get_or_create(&ReasonLabel { reason })
                .clone()
        });
        let ejections = Family::<BackendLabel, Counter>::default();
        registry.register(
            "courser_proxy_ejections",
            "Backends ejected by passive health (connect failures, 5xx bursts)",
            ejections.clone(),
        );
        let upstream_duration = Family::<BackendLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(UPSTREAM_BUCKETS)
        });
        registry.register(
            "courser_proxy_upstream_duration_seconds",
            "Time from choosing a backend for an attempt (connect included) to its response headers, by backend",
            upstream_duration.clone(),
        );
        let backend_up = Family::<BackendLabel, Gauge>::default();
        registry.register(
            "courser_proxy_backend_up",
            "1 when the backend passes active checks and is not ejected",
            backend_up.clone(),
        );
        let in_flight = Family::<BackendLabel, Gauge>::default();
        registry.register(
            "courser_proxy_backend_in_flight",
            "Requests in flight to the backend",
            in_flight.clone(),
        );
        let rate_limited = Counter::default();
        registry.register(
            "courser_proxy_rate_limited",
            "Requests refused with 429 by the per-client rate limit",
            rate_limited.clone(),
        );
        let own = BackendMetrics {
            requests: CLASSES.map(|class| {
                requests
                    .get_or_create(&RequestLabels {
                        backend: Arc::from("none"),
                        class,
                    })
                    .clone()
            }),
            ejections: Counter::default(),
            upstream_duration: Histogram::new(UPSTREAM_BUCKETS),
        };
        Self {
            registry,
            requests,
            ejections,
            upstream_duration,
            backend_up,
            in_flight,
            retries,
            rate_limited,
            duration,
            own,
        }
    }

    /// Resolves the handles of a backend.
    pub fn backend(&self, label: &Arc<str>) -> BackendMetrics {
        BackendMetrics {
            requests: CLASSES.map(|class| {
                self.requests
                    .get_or_create(&RequestLabels {
                        backend: label.clone(),
                        class,
                    })
                    .clone()
            }),
            ejections: self
                .ejections
                .get_or_create(&BackendLabel {
                    backend: label.clone(),
                })
                .clone(),
            upstream_duration: self
                .upstream_duration
                .get_or_create(&BackendLabel {
                    backend: label.clone(),
                })
                .clone(),
        }
    }

    /// Drops the series of a backend that left the configuration.
    pub fn forget_backend(&self, label: &Arc<str>) {
        for class in CLASSES {
            self.requests.remove(&RequestLabels {
                backend: label.clone(),
                class,
            });
        }
        let label = BackendLabel {
            backend: label.clone(),
        };
        self.ejections.remove(&label);
        self.upstream_duration.remove(&label);
        self.backend_up.remove(&label);
        self.in_flight.remove(&label);
    }

    /// Counts one retry.
    pub fn retry(&self, reason: RetryReason) {
        self.retries[reason as usize].inc();
    }

    /// Renders the exposition in `format`, after setting the per-backend gauges from
    /// `(label, up, in_flight)` of every current backend.
    pub fn render(
        &self,
        backends: impl IntoIterator<Item = (Arc<str>, bool, usize)>,
        format: Format,
    ) -> String {
        self.backend_up.clear();
        self.in_flight.clear();
        for (backend, up, in_flight) in backends {
            let label = BackendLabel { backend };
            self.backend_up.get_or_create(&label).set(i64::from(up));
            self.in_flight
                .get_or_create(&label)
                .set(i64::try_from(in_flight).unwrap_or(i64::MAX));
        }
        courser_exposition::encode(&self.registry, format).unwrap_or_else(|e| {
            tracing::error!(error = %e, "encoding metrics failed");
            String::new()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_fall_into_their_class() {
        assert_eq!(CLASSES[class_index(204)], "2xx");
        assert_eq!(CLASSES[class_index(503)], "5xx");
        assert_eq!(CLASSES[class_index(0)], "error");
    }
}
