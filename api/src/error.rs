//! `ApiError`: every way a request can fail, answered as `application/problem+json`
//! (RFC 9457). Internals of 5xx errors are logged here, once, and never sent to clients.

use std::time::Duration;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed or a value in it is out of range.
    #[error("{0}")]
    BadRequest(String),
    /// An extractor rejected the request with a status of its own (413, 415).
    #[error("{detail}")]
    Rejected { status: StatusCode, detail: String },
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the request took longer than {} ms", .0.as_millis())]
    Timeout(Duration),
    /// The database cannot be reached or is shedding load; worth retrying shortly.
    #[error("the database is unavailable")]
    Unavailable(#[source] BoxError),
    #[error("internal error")]
    Internal(#[source] BoxError),
    /// The instance is draining before it stops (see `drain`).
    #[error("this instance is shutting down")]
    ShuttingDown,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A cache fill's error is shared by every request that waited on that fill; each gets
/// the original when it is the only one, else a copy with the same status and message.
impl From<std::sync::Arc<ApiError>> for ApiError {
    fn from(shared: std::sync::Arc<ApiError>) -> Self {
        std::sync::Arc::try_unwrap(shared).unwrap_or_else(|shared| {
            let source = |e: &BoxError| BoxError::from(e.to_string());
            match &*shared {
                Self::BadRequest(d) => Self::BadRequest(d.clone()),
                Self::Rejected { status, detail } => Self::Rejected {
                    status: *status,
                    detail: detail.clone(),
                },
                Self::Unauthorized(d) => Self::Unauthorized(d),
                Self::NotFound(d) => Self::NotFound(d.clone()),
                Self::MethodNotAllowed(d) => Self::MethodNotAllowed(d.clone()),
                Self::Conflict(d) => Self::Conflict(d.clone()),
                Self::Timeout(d) => Self::Timeout(*d),
                Self::Unavailable(e) => Self::Unavailable(source(e)),
                Self::Internal(e) => Self::Internal(source(e)),
                Self::ShuttingDown => Self::ShuttingDown,
            }
        })
    }
}

/// The problem+json body.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URN naming the kind of problem, stable across releases.
    #[serde(rename = "type")]
    #[schema(example = "urn:courser:problem:invalid-input")]
    pub kind: String,
    /// Short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong with this request, naming the offending input.
    pub detail: String,
}

impl ApiError {
    fn status_and_kind(&self) -> (StatusCode, &'static str) {
        match self {
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "invalid-input"),
            Self::Rejected { status, .. } if *status == StatusCode::PAYLOAD_TOO_LARGE => {
                (*status, "body-too-large")
            }
            Self::Rejected { status, .. } if *status == StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                (*status, "unsupported-media-type")
            }
            Self::Rejected { status, .. } => (*status, "invalid-input"),
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not-found"),
            Self::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Self::Timeout(_) => (StatusCode::SERVICE_UNAVAILABLE, "timeout"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            Self::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "shutting-down"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind) = self.status_and_kind();
        match &self {
            Self::Internal(source) => tracing::error!(error = %source, "request failed"),
            Self::Unavailable(source) => tracing::warn!(error = %source, "database unavailable"),
            _ => {}
        }
        let problem = Problem {
            kind: format!("urn:courser:problem:{kind}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: self.to_string(),
        };
        let mut response = (status, axum::Json(problem)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        match self {
            Self::Unauthorized(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Self::Unavailable(_) | Self::Timeout(_) | Self::ShuttingDown => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}

/// SQLSTATE classes of failures that say nothing about the request.
const TRANSIENT: [&str; 6] = ["40", "08", "28", "3D", "53", "57"];

/// Maps database failures to what the client should hear: constraint violations that
/// input can cause become 4xx, an unreachable or overloaded database becomes 503.
impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        use sqlx::Error as E;
        match &error {
            E::PoolTimedOut | E::PoolClosed | E::Io(_) | E::Tls(_) | E::WorkerCrashed => {
                Self::Unavailable(error.into())
            }
            E::Database(db) => match (db.code().as_deref(), db.constraint()) {
                (_, Some("reviews_reviewer_id_fkey")) => {
                    Self::Conflict("the reviewer still has reviews".into())
                }
                (_, Some("ratings_pkey")) => Self::Conflict("the course already exists".into()),
                (Some("23514"), Some(constraint)) => {
                    Self::BadRequest(format!("the request breaks the rule {constraint}"))
                }
                (Some("22003"), _) => Self::Conflict("a counter is at its maximum".into()),
                // Serialization failures and deadlocks (40), lost or refused connections
                // (08, 28, 3D: the database went away), resources exhausted (53),
                // statement timeouts and shutdowns (57): the client may retry.
                (Some(code), _) if TRANSIENT.iter().any(|class| code.starts_with(class)) => {
                    Self::Unavailable(error.into())
                }
                _ => Self::Internal(error.into()),
            },
            _ => Self::Internal(error.into()),
        }
    }
}

// Extractor rejections arrive here so that they too are problem+json. Axum answers bad
// JSON data with 422; this API answers every invalid value with 400 and keeps 413/415.
fn rejected(status: StatusCode, detail: String) -> ApiError {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE | StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ApiError::Rejected { status, detail }
        }
        _ => ApiError::BadRequest(detail),
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let detail = match &rejection {
            JsonRejection::MissingJsonContentType(_) => {
                "the body must be JSON with Content-Type: application/json".to_owned()
            }
            _ => rejection.body_text(),
        };
        rejected(rejection.status(), detail)
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        rejected(rejection.status(), rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        rejected(rejection.status(), rejection.body_text())
    }
}
