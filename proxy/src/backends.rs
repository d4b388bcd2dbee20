//! What the proxy knows about each backend beyond Pingora's active health: requests in
//! flight (for least connections and the per-backend cap), the passive outlier tracker
//! (ejection on connect failures and bursts of 5xx, re-admitted after a cool-down), and
//! the metric handles, resolved once so the request path never builds label sets.
//!
//! Also the service discovery that feeds Pingora's [`Backends`](pingora::lb::Backends)
//! from the configuration and can be swapped at reload.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::lb::Backend;
use pingora::lb::discovery::ServiceDiscovery;
use pingora::protocols::l4::socket::SocketAddr as PingoraAddr;

use crate::config::ResolvedBackend;
use crate::metrics::{BackendMetrics, Metrics};

/// Milliseconds since the first call: a cheap monotonic clock for deadlines kept in atomics.
pub fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Thresholds of the passive health (outlier) tracker.
#[derive(Clone, Copy, Debug)]
pub struct OutlierPolicy {
    /// Consecutive failed connects that eject.
    pub connect_failures: u32,
    /// Consecutive 5xx / resets / timeouts that eject.
    pub server_errors: u32,
    /// How long an ejection lasts.
    pub cooldown: Duration,
}

/// Live state of one backend, shared by every request that goes to it.
#[derive(Debug)]
pub struct BackendState {
    /// Where it is.
    pub addr: SocketAddr,
    /// `addr` as text, for logs.
    pub label: Arc<str>,
    /// Requests sent to it and not finished.
    in_flight: AtomicUsize,
    consecutive_connect_failures: AtomicU32,
    consecutive_errors: AtomicU32,
    /// `now_ms()` until which it is ejected; 0 when it is not.
    ejected_until_ms: AtomicU64,
    /// Its metric handles.
    pub metrics: BackendMetrics,
}

impl BackendState {
    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Relaxed)
    }

    /// Whether the outlier tracker keeps it out at `now`.
    pub fn is_ejected(&self, now: u64) -> bool {
        self.ejected_until_ms.load(Relaxed) > now
    }

    /// Counts one more request in flight until the guard drops.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Relaxed);
        InFlight(self.clone())
    }
}

/// A request in flight to a backend; dropping it ends the request.
#[derive(Debug)]
pub struct InFlight(Arc<BackendState>);

impl InFlight {
    /// The backend this request went to.
    pub fn backend(&self) -> &Arc<BackendState> {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

/// The passive health tracker and the state registry.
#[derive(Debug)]
pub struct Registry {
    states: ArcSwap<HashMap<SocketAddr, Arc<BackendState>>>,
    policy: OutlierPolicy,
    metrics: Arc<Metrics>,
    writer: std::sync::Mutex<()>,
}

impl Registry {
    /// An empty registry.
    pub fn new(policy: OutlierPolicy, metrics: Arc<Metrics>) -> Self {
        Self {
            states: ArcSwap::from_pointee(HashMap::new()),
            policy,
            metrics,
            writer: std::sync::Mutex::new(()),
        }
    }

    /// Makes the registry hold exactly `backends`, keeping the state of those that stay.
    pub fn set(&self, backends: &[ResolvedBackend]) {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let old = self.states.load_full();
        let mut new = HashMap::with_capacity(backends.len());
        for b in backends {
            let state = old.get(&b.addr).cloned().unwrap_or_else(|| {
                let label: Arc<str> = Arc::from(b.addr.to_string());
                Arc::new(BackendState {
                    addr: b.addr,
                    metrics: self.metrics.backend(&label),
                    label,
                    in_flight: AtomicUsize::new(0),
                    consecutive_connect_failures: AtomicU32::new(0),
                    consecutive_errors: AtomicU32::new(0),
                    ejected_until_ms: AtomicU64::new(0),
                })
            });
            new.insert(b.addr, state);
        }
        for (addr, state) in old.iter() {
            if !new.contains_key(addr) {
                self.metrics.forget_backend(&state.label);
            }
        }
        self.states.store(Arc::new(new));
    }

    /// The state of a backend by address.
    pub fn get(&self, addr: &PingoraAddr) -> Option<Arc<BackendState>> {
        let addr = addr.as_inet()?;
        self.states.load().get(addr).cloned()
    }

    /// Every backend now configured.
    pub fn all(&self) -> Vec<Arc<BackendState>> {
        let mut all: Vec<_> = self.states.load().values().cloned().collect();
        all.sort_by_key(|s| s.addr);
        all
    }

    /// A response (or a completed exchange) came back below 500.
    pub fn record_success(&self, state: &BackendState) {
        if state.consecutive_errors.load(Relaxed) != 0 {
            state.consecutive_errors.store(0, Relaxed);
        }
        if state.consecutive_connect_failures.load(Relaxed) != 0 {
            state.consecutive_connect_failures.store(0, Relaxed);
        }
    }

    /// A connect to it failed.
    pub fn record_connect_failure(&self, state: &BackendState) {
        let n = state.consecutive_connect_failures.fetch_add(1, Relaxed) + 1;
        if n >= self.policy.connect_failures {
            self.eject(state, "connect failures");
        }
    }

    /// It answered 5xx, reset the connection, or timed out.
    pub fn record_server_error(&self, state: &BackendState) {
        let n = state.consecutive_errors.fetch_add(1, Relaxed) + 1;
        if n >= self.policy.server_errors {
            self.eject(state, "server errors");
        }
    }

    fn eject(&self, state: &BackendState, reason: &'static str) {
        let now = now_ms();
        let current = state.ejected_until_ms.load(Relaxed);
        if current > now {
            return;
        }
        let until = now + u64::try_from(self.policy.cooldown.as_millis()).unwrap_or(u64::MAX);
        if state
            .ejected_until_ms
            .compare_exchange(current, until, Relaxed, Relaxed)
            .is_ok()
        {
            state.consecutive_errors.store(0, Relaxed);
            state.consecutive_connect_failures.store(0, Relaxed);
            state.metrics.ejections.inc();
            tracing::warn!(
                backend.addr = %state.addr,
                eject.reason = reason,
                eject.cooldown_ms = self.policy.cooldown.as_millis() as u64,
                "backend ejected"
            );
        }
    }
}

/// Service discovery from the configuration; [`ConfigDiscovery::set`] swaps the list.
#[derive(Debug, Clone, Default)]
pub struct ConfigDiscovery {
    backends: Arc<RwLock<BTreeSet<Backend>>>,
}

impl ConfigDiscovery {
    /// Replaces the list served on the next discovery.
    pub fn set(&self, backends: &[ResolvedBackend]) {
        let set = backends
            .iter()
            .map(|b| Backend {
                addr: PingoraAddr::Inet(b.addr),
                weight: b.weight,
                ext: Default::default(),
            })
            .collect();
        *self.backends.write().unwrap_or_else(|p| p.into_inner()) = set;
    }
}

#[async_trait]
impl ServiceDiscovery for ConfigDiscovery {
    async fn discover(&self) -> pingora::Result<(BTreeSet<Backend>, HashMap<u64, bool>)> {
        let set = self
            .backends
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        Ok((set, HashMap::new()))
    }
}
