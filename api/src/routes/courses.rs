//! `GET /course/{course_id}/reviews`: a course's rating and one page of its reviews.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::db::ratings::{self, CourseRating};
use crate::db::reviews::{self, ListedReview};
use crate::domain::{CourseId, PageQuery, RawPageQuery};
use crate::error::{ApiError, Problem};
use crate::extract::{Path, Query};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(course_page))
}

/// A course page.
#[derive(Debug, Serialize, ToSchema)]
pub struct CoursePage {
    pub course_id: i64,
    pub rating: CourseRating,
    pub reviews: Vec<ListedReview>,
    /// Pass as `cursor` (with the same `sort`) for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// The course's rating and a page of its unreported reviews, each with its reviewer.
///
/// Pages use keyset pagination: follow `next_cursor` with the same `sort`. Responses
/// carry a strong `ETag`; `If-None-Match` with the current tag answers 304.
#[utoipa::path(
    get,
    path = "/course/{course_id}/reviews",
    tag = "courses",
    params(("course_id" = i64, Path, description = "The course", minimum = 1), RawPageQuery),
    responses(
        (status = 200, description = "The course page", body = CoursePage,
         headers(("ETag" = String, description = "Tag of this representation"))),
        (status = 304, description = "Unchanged since the tag in If-None-Match"),
        (status = 400, description = "A bad id or query value", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such course", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn course_page(
    State(db): State<PgPool>,
    Path(course): Path<CourseId>,
    Query(query): Query<PageQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let rating = ratings::find(&db, course)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("course {course} does not exist")))?;
    let (reviews, next) = reviews::page(&db, course, &query).await?;
    let page = CoursePage {
        course_id: course.get(),
        rating,
        reviews,
        next_cursor: next.map(|cursor| cursor.encode()),
    };
    let body = serde_json::to_vec(&page).map_err(|e| ApiError::Internal(e.into()))?;
    Ok(with_etag(body, &headers))
}

/// Answers 304 when the client already holds this body, else the body with its tag.
fn with_etag(body: Vec<u8>, request: &HeaderMap) -> Response {
    let digest = Sha256::digest(&body);
    let tag = format!("\"{}\"", hex(&digest[..16]));
    let etag = HeaderValue::from_str(&tag).unwrap_or(HeaderValue::from_static("\"\""));
    if matches_if_none_match(request, &tag) {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    let headers = [
        (header::ETAG, etag),
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ),
        // Caches may keep it but must revalidate: pages change with every write.
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ];
    (headers, body).into_response()
}

/// `If-None-Match` uses the weak comparison (RFC 9110 §13.1.2): `*`, or any listed tag
/// equal to ours once a `W/` prefix is ignored.
fn matches_if_none_match(request: &HeaderMap, tag: &str) -> bool {
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|candidate| candidate.trim())
        .any(|candidate| candidate == "*" || candidate.trim_start_matches("W/") == tag)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}
