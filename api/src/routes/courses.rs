//! `GET /course/{course_id}/reviews`: a course's rating and one page of its reviews,
//! served through the cache.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use courser_cache::{Cache, Page};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::db::Db;
use crate::domain::{CourseId, PageQuery, RawPageQuery};
use crate::error::{ApiError, Problem};
use crate::extract::{Path, Query};
use crate::pages::{self, CoursePage, PageSource};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(course_page))
}

/// The course's rating and a page of its unreported reviews, each with its reviewer.
///
/// Pages use keyset pagination: follow `next_cursor` with the same `sort`. Responses
/// carry a strong `ETag`; `If-None-Match` with the current tag answers 304.
#[utoipa::path(
    get,
    path = "/course/{course_id}/reviews",
    tag = "courses",
    params(("course_id" = CourseId, Path, description = "The course"), RawPageQuery),
    responses(
        (status = 200, description = "The course page", body = CoursePage,
         headers(("ETag" = String, description = "Tag of this representation"))),
        (status = 304, description = "Unchanged since the tag in If-None-Match"),
        (status = 400, description = "A bad id or query value", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such course", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable or too slow; retry (Retry-After)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn course_page(
    State(db): State<Db>,
    State(cache): State<Cache>,
    Path(course): Path<CourseId>,
    Query(query): Query<PageQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let source = PageSource {
        db: &db,
        course,
        query: &query,
    };
    let page = cache
        .course_page(course.get(), &pages::variant(&query), &source)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("course {course} does not exist")))?;
    Ok(with_etag(page, &headers))
}

/// Answers 304 when the client already holds this page, else the page with its tag.
fn with_etag(page: Page, request: &HeaderMap) -> Response {
    let etag = HeaderValue::from_str(&page.etag).unwrap_or(HeaderValue::from_static("\"\""));
    if matches_if_none_match(request, &page.etag) {
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
    (headers, page.body).into_response()
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
