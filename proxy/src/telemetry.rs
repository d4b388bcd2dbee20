//! Logging: JSON lines on stdout through a non-blocking writer (a background thread does
//! the writing, so a slow stdout never stalls a worker), filtered by `RUST_LOG`
//! (default `info`, Pingora's own chatter at `warn`). Access-log lines carry the target
//! `access`.

use std::sync::Mutex;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

static GUARD: Mutex<Option<WorkerGuard>> = Mutex::new(None);

/// Installs the subscriber; call once at start.
pub fn init() {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(64 * 1024)
        .finish(std::io::stdout());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(
            "info,pingora=warn,pingora_core=warn,pingora_proxy=warn,pingora_load_balancing=warn",
        )
    });
    let installed = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_env_filter(filter)
        .with_writer(writer)
        .try_init()
        .is_ok();
    if installed {
        *GUARD.lock().unwrap_or_else(|p| p.into_inner()) = Some(guard);
    }
}

/// Writes out whatever is buffered; used before exiting the process.
pub fn flush() {
    drop(GUARD.lock().unwrap_or_else(|p| p.into_inner()).take());
}
