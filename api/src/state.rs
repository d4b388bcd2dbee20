//! `AppState`: what every handler may use, cloned cheaply per request.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;

use courser_cache::Cache;

use crate::auth::ApiKeys;
use crate::db::Db;
use crate::drain::Drain;
use crate::metrics::Metrics;

#[derive(Debug, Clone, FromRef)]
pub struct AppState {
    pub db: Db,
    pub keys: ApiKeys,
    pub metrics: Arc<Metrics>,
    pub cache: Cache,
    pub drain: Drain,
    /// Longest a read may run before it answers 503 (writes run to their end).
    pub request_timeout: Duration,
}
