//! Graceful shutdown that ends as soon as it can. On SIGTERM Pingora stops accepting
//! and then sleeps a fixed grace period before dropping its runtimes (and with them any
//! request still running). This service watches the requests in flight once shutdown has
//! begun and ends the process when none is left, so the grace period
//! (`shutdown_timeout_seconds`) is only an upper bound.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::backends::Registry;

/// The drain watcher.
#[derive(Debug)]
pub struct Drain {
    /// Where the in-flight counts are.
    pub registry: Arc<Registry>,
}

#[async_trait]
impl BackgroundService for Drain {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                return;
            }
        }
        tracing::info!("shutdown started; waiting for in-flight requests");
        // Give the listeners a moment to stop and parsed requests to reach a backend.
        tokio::time::sleep(Duration::from_millis(200)).await;
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
