//! Backend-list reloads without dropping requests: on SIGHUP, when the configuration
//! file's modification time changes, and (when the list names hosts) every
//! `dns_refresh_ms` to follow what the names resolve to, the backend list is read again
//! (file, then env), resolved, and applied when it differs from the live one: live state
//! is kept for backends that stay, new ones are registered before the selection sees
//! them, and removed ones simply stop being chosen while their in-flight requests finish.
//! Other settings need a restart (or Pingora's graceful upgrade).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use pingora::lb::LoadBalancer;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::signal::unix::{SignalKind, signal};

use crate::backends::{ConfigDiscovery, Registry};
use crate::config::{ResolvedBackend, Settings};
use crate::selection::CourserSelection;

/// Applies a backend list to the registry, the discovery and the load balancer.
#[derive(Clone)]
pub struct BackendSet {
    /// Live per-backend state.
    pub registry: Arc<Registry>,
    /// What the load balancer discovers.
    pub discovery: ConfigDiscovery,
    /// The load balancer.
    pub lb: Arc<LoadBalancer<CourserSelection>>,
}

impl std::fmt::Debug for BackendSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendSet").finish_non_exhaustive()
    }
}

impl BackendSet {
    /// Makes `backends` the live list.
    pub async fn apply(&self, backends: &[ResolvedBackend]) -> pingora::Result<()> {
        self.registry.set(backends);
        self.discovery.set(backends);
        self.lb.update().await
    }
}

/// The background service that watches for reload triggers.
#[derive(Debug)]
pub struct Reloader {
    /// The start-up settings (for the file path).
    pub settings: Settings,
    /// Where changes go.
    pub set: BackendSet,
    /// How often to look at the file's modification time; `None`: SIGHUP only.
    pub poll: Option<Duration>,
    /// How often to resolve the backends' host names again; `None`: never.
    pub dns_refresh: Option<Duration>,
}

/// What set a reload off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    Hangup,
    FileChanged,
    DnsRefresh,
}

impl Trigger {
    fn name(self) -> &'static str {
        match self {
            Trigger::Hangup => "SIGHUP",
            Trigger::FileChanged => "file changed",
            Trigger::DnsRefresh => "dns refresh",
        }
    }
}

fn modified(path: Option<&PathBuf>) -> Option<SystemTime> {
    std::fs::metadata(path?).and_then(|m| m.modified()).ok()
}

impl Reloader {
    /// Reads and resolves the backend list, and applies it if it differs from `live`.
    async fn reload(&self, trigger: Trigger, live: &mut Vec<ResolvedBackend>) {
        let name = trigger.name();
        let settings = self.settings.clone();
        let loaded = tokio::task::spawn_blocking(move || settings.reload_backends()).await;
        let backends = match loaded {
            Ok(Ok(backends)) => backends,
            // A name that does not resolve now (DNS away, say) keeps what was resolved.
            Ok(Err(e)) => {
                tracing::error!(reload.trigger = name, error = %e, "reload refused; keeping the current backends");
                return;
            }
            Err(e) => {
                tracing::error!(reload.trigger = name, error = %e, "reload task failed");
                return;
            }
        };
        if backends == *live {
            // A periodic refresh that found nothing new says nothing.
            if trigger != Trigger::DnsRefresh {
                tracing::info!(reload.trigger = name, "backends unchanged");
            }
            return;
        }
        match self.set.apply(&backends).await {
            Ok(()) => {
                tracing::info!(
                    reload.trigger = name,
                    backends = ?backends.iter().map(|b| b.addr).collect::<Vec<_>>(),
                    "backends reloaded"
                );
                *live = backends;
            }
            Err(e) => {
                tracing::error!(reload.trigger = name, error = %e, "applying backends failed")
            }
        }
    }
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGHUP; reload on file change only");
                return;
            }
        };
        let path = self.settings.path.clone();
        let mut last = modified(path.as_ref());
        let mut live = self.settings.backends.clone();
        let every = |period: Option<Duration>| {
            let mut tick = tokio::time::interval(period.unwrap_or(Duration::from_secs(3600)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick
        };
        let mut tick = every(self.poll);
        let mut dns_tick = every(self.dns_refresh);
        loop {
            tokio::select! {
                _ = shutdown.changed() => {
                    if *shutdown.borrow() {
                        return;
                    }
                }
                Some(()) = hangup.recv() => {
                    last = modified(path.as_ref());
                    self.reload(Trigger::Hangup, &mut live).await;
                }
                _ = tick.tick(), if self.poll.is_some() && path.is_some() => {
                    let now = modified(path.as_ref());
                    if now != last {
                        last = now;
                        self.reload(Trigger::FileChanged, &mut live).await;
                    }
                }
                _ = dns_tick.tick(), if self.dns_refresh.is_some() => {
                    self.reload(Trigger::DnsRefresh, &mut live).await;
                }
            }
        }
    }
}
