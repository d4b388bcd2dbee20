//! Leaving the balancer before stopping. On SIGTERM an instance first answers `/readyz`
//! with 503 and closes each connection after its response, so that the proxy stops
//! choosing it and keeps no idle connection to it; it stops (finishing what is in flight)
//! once nothing but readiness checks has come for [`QUIET`], or after the configured
//! longest drain. Stopping at once raced the proxy: a write sent on a kept-alive
//! connection just as the instance closed it may have arrived, so it is never retried,
//! and the client got a 502 (the fault suite's rolling restart).
//!
//! Writes run on tasks of their own (see `routes::request_lifetime`), which outlive their
//! connections; the instance waits for them too before it stops.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

/// How long without a request (other than readiness checks) before a draining instance
/// takes it that the balancer has let it go.
const QUIET: Duration = Duration::from_millis(500);

#[derive(Debug)]
struct Inner {
    draining: AtomicBool,
    epoch: Instant,
    /// Milliseconds since `epoch` of the last request that was not a readiness check.
    last_request_ms: AtomicU64,
    writes: TaskTracker,
}

/// Whether the instance is draining, and when it last had traffic; cheap to clone.
#[derive(Debug, Clone)]
pub struct Drain(Arc<Inner>);

impl Default for Drain {
    fn default() -> Self {
        Self(Arc::new(Inner {
            draining: AtomicBool::new(false),
            epoch: Instant::now(),
            last_request_ms: AtomicU64::new(0),
            writes: TaskTracker::new(),
        }))
    }
}

impl Drain {
    pub fn is_draining(&self) -> bool {
        self.0.draining.load(Ordering::Relaxed)
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.0.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn note_request(&self) {
        self.0
            .last_request_ms
            .store(self.now_ms(), Ordering::Relaxed);
    }

    /// Runs `write` to its end on a task of its own, whether or not anyone awaits it.
    pub fn spawn_write<F>(&self, write: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.0.writes.spawn(write)
    }

    /// Waits for every write begun so far, and refuses new ones: the last step of a stop.
    pub async fn writes_finished(&self) {
        self.0.writes.close();
        self.0.writes.wait().await;
    }

    /// Starts draining, then waits until the balancer has stopped sending (no request
    /// for [`QUIET`]) or `longest` has passed.
    pub async fn drain(&self, longest: Duration) {
        self.0.draining.store(true, Ordering::Relaxed);
        tracing::info!("draining: /readyz answers 503 and connections close after each response");
        let deadline = Instant::now() + longest;
        let quiet = u64::try_from(QUIET.as_millis()).unwrap_or(u64::MAX);
        while Instant::now() < deadline {
            let idle = self
                .now_ms()
                .saturating_sub(self.0.last_request_ms.load(Ordering::Relaxed));
            if idle >= quiet {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Notes each request's arrival (readiness checks aside) and, while draining, closes its
/// connection after the response.
pub async fn track(State(drain): State<Drain>, request: Request, next: Next) -> Response {
    if request.uri().path() != "/readyz" {
        drain.note_request();
    }
    let mut response = next.run(request).await;
    if drain.is_draining() {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}
