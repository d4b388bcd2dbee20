//! The HTTP surface: one module per resource, each exposing `router()`, merged here with
//! the middleware every request passes through.

mod courses;
mod ops;
mod ratings;
mod reviewers;
mod reviews;

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::Response;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;

use crate::auth;
use crate::drain::{self, Drain};
use crate::error::ApiError;
use crate::metrics;
use crate::openapi::{self, ApiDoc};
use crate::state::AppState;

/// The whole application, and the OpenAPI document generated from the same routes.
pub fn app(state: AppState, body_limit: usize) -> (Router, utoipa::openapi::OpenApi) {
    let (resources, mut openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(courses::router())
        .merge(reviews::router())
        .merge(reviewers::router())
        .merge(ratings::router())
        // Only matched routes check keys, so an unknown path answers 404, not 401.
        .route_layer(middleware::from_fn_with_state(
            state.keys.clone(),
            auth::require_key_for_writes,
        ))
        .split_for_parts();
    openapi::at_least_one_field(&mut openapi);
    let router = resources
        .merge(ops::router(openapi.clone()))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        // Each middleware holds only what it uses: its state is cloned per request.
        .layer(middleware::from_fn_with_state(
            (state.request_timeout, state.drain.clone()),
            request_lifetime,
        ))
        .layer(middleware::from_fn_with_state(
            state.metrics.clone(),
            metrics::track,
        ))
        .layer(middleware::from_fn_with_state(
            state.drain.clone(),
            drain::track,
        ))
        .with_state(state);
    (router, openapi)
}

async fn no_route(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("there is no route for {method} {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("{} does not allow {method}", uri.path()))
}

/// Reads answer 503 past the configured limit, instead of holding the client (and a
/// database connection) indefinitely. Writes run to their end on a task of their own,
/// whether the client waits or not: cancelled midway, by the client leaving or by that
/// limit, a write could commit and never invalidate the caches (its change unseen until
/// their TTL), or be answered 503 while it commits. The pool and statement timeouts
/// bound a write instead.
async fn request_lifetime(
    State((timeout, drain)): State<(Duration, Drain)>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if request.method().is_safe() {
        return tokio::time::timeout(timeout, next.run(request))
            .await
            .map_err(|_| ApiError::Timeout(timeout));
    }
    drain
        .spawn_write(next.run(request))
        .await
        .map_err(|e| ApiError::Internal(e.into()))
}
