//! Operations endpoints of each instance: liveness, readiness, metrics and the OpenAPI
//! document. Kept out of the OpenAPI router's write-key layer; they are all reads.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use courser_exposition::Format;
use serde_json::json;

use crate::error::ApiError;
use crate::extract::Json;
use crate::state::AppState;

pub fn router(openapi: utoipa::openapi::OpenApi) -> Router<AppState> {
    let document = Arc::new(openapi);
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(move || async move { Json(document) }))
}

/// The process is up and serving.
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// The database answers within a second and the instance is not shutting down; 503
/// otherwise, so balancers send traffic elsewhere.
async fn readyz(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    if state.drain.is_draining() {
        return Err(ApiError::ShuttingDown);
    }
    let ping = state.db.ping();
    match tokio::time::timeout(Duration::from_secs(1), ping).await {
        Ok(Ok(_)) => Ok(Json(json!({"status": "ready"}))),
        Ok(Err(error)) => Err(ApiError::Unavailable(error.into())),
        Err(_) => Err(ApiError::Unavailable("no answer within a second".into())),
    }
}

/// OpenMetrics for Prometheus, the classic text format for anyone who does not ask for
/// OpenMetrics (see `courser_exposition`).
async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    state.cache.update_gauges();
    match state.metrics.render(state.db.pool(), format) {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(format.content_type()),
            )],
            text,
        )
            .into_response(),
        Err(error) => ApiError::Internal(error.into()).into_response(),
    }
}
