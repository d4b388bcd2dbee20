//! Graceful shutdown that ends as soon as it can. On SIGTERM (and on SIGQUIT, once the
//! listeners went to the new process of a graceful upgrade) Pingora stops accepting and
//! then sleeps a fixed grace period before dropping its runtimes (and with them any
//! request still running). This service marks the process as draining, so every answer
//! from then on carries `Connection: close`, and ends the process once no request is in
//! flight, so the grace period (`shutdown_timeout_seconds`) is only an upper bound.
//!
//! Keep-alive connections waiting for their next request are not cut at once: for
//! [`LINGER`] their next request is still served (with `Connection: close`), so a client
//! that sends one just as shutdown begins gets an answer rather than a reset; after it
//! the proxy closes the ones still idle (see `Forwarder::cleanup` in `proxy.rs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::backends::Registry;

/// How long idle keep-alive connections stay open once shutdown has begun.
pub const LINGER: Duration = Duration::from_millis(1000);

/// Set once shutdown has begun: answers stop offering keep-alive.
#[derive(Debug, Default)]
pub struct Draining(AtomicBool);

impl Draining {
    /// Whether shutdown has begun.
    pub fn get(&self) -> bool {
        self.0.load(Relaxed)
    }
}

/// The drain watcher.
#[derive(Debug)]
pub struct Drain {
    /// Where the in-flight counts are.
    pub registry: Arc<Registry>,
    /// Raised when shutdown begins.
    pub draining: Arc<Draining>,
}

#[async_trait]
impl BackgroundService for Drain {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                return;
            }
        }
        self.draining.0.store(true, Relaxed);
        tracing::info!("shutdown started; waiting for in-flight requests");
        // Let the lingering keep-alive connections bring in their last request, and
        // parsed requests reach a backend (only then are they counted in flight).
        tokio::time::sleep(LINGER + Duration::from_millis(200)).await;
        let mut idle_checks = 0;
        while idle_checks < 3 {
            let in_flight: usize = self.registry.all().iter().map(|b| b.in_flight()).sum();
            idle_checks = if in_flight == 0 { idle_checks + 1 } else { 0 };
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        tracing::info!("no request in flight; exiting");
        crate::telemetry::flush();
        std::process::exit(0);
    }
}
