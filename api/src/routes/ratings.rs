//! `/rating`: courses and their rating aggregates.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::db::ratings::{self, CourseRating};
use crate::db::{Db, reviewers, reviews};
use crate::domain::CourseId;
use crate::error::{ApiError, Problem};
use crate::extract::{Json, Path};
use crate::state::AppState;
use courser_cache::{Cache, Subject};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_course))
        .routes(routes!(get_rating, recompute_rating, delete_course))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCourse {
    course_id: CourseId,
}

fn course_not_found(course: CourseId) -> ApiError {
    ApiError::NotFound(format!("course {course} does not exist"))
}

/// Creates the course with an empty aggregate.
#[utoipa::path(
    post, path = "/rating", tag = "ratings", security(("api_key" = [])),
    request_body = NewCourse,
    responses(
        (status = 201, description = "Created", body = CourseRating,
         headers(("Location" = String, description = "/rating/{course_id}"))),
        (status = 400, description = "Invalid body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The course exists", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body larger than the limit", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body not sent as application/json", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable or too slow; retry (Retry-After)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn create_course(
    State(db): State<Db>,
    State(cache): State<Cache>,
    Json(new): Json<NewCourse>,
) -> Result<impl IntoResponse, ApiError> {
    let rating = ratings::create(&db, new.course_id)
        .await?
        .ok_or_else(|| ApiError::Conflict(format!("course {} already exists", new.course_id)))?;
    // Pages remember that a course does not exist; now it does.
    cache
        .invalidate(&[Subject::Course(new.course_id.get())])
        .await;
    let location = format!("/rating/{}", new.course_id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(rating),
    ))
}

#[utoipa::path(
    get, path = "/rating/{course_id}", tag = "ratings",
    params(("course_id" = CourseId, Path)),
    responses(
        (status = 200, body = CourseRating),
        (status = 400, description = "Bad id", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such course", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable or too slow; retry (Retry-After)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_rating(
    State(db): State<Db>,
    Path(course): Path<CourseId>,
) -> Result<Json<CourseRating>, ApiError> {
    ratings::find(&db, course)
        .await?
        .map(Json)
        .ok_or_else(|| course_not_found(course))
}

/// Recomputes the aggregate from the course's reviews: a repair, idempotent.
#[utoipa::path(
    put, path = "/rating/{course_id}", tag = "ratings", security(("api_key" = [])),
    params(("course_id" = CourseId, Path)),
    responses(
        (status = 200, body = CourseRating),
        (status = 400, description = "Bad id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such course", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable or too slow; retry (Retry-After)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn recompute_rating(
    State(db): State<Db>,
    State(cache): State<Cache>,
    Path(course): Path<CourseId>,
) -> Result<Json<CourseRating>, ApiError> {
    let mut conn = db.acquire().await?;
    let mut tx = conn.begin().await?;
    if !ratings::lock(&mut tx, course).await? {
        return Err(course_not_found(course));
    }
    let rating = ratings::recompute(&mut tx, course).await?;
    tx.commit().await?;
    drop(conn); // back to the pool before the cache work
    cache.invalidate(&[Subject::Course(course.get())]).await;
    Ok(Json(rating))
}

/// Removes the course and its reviews; their reviewers' counts move back.
#[utoipa::path(
    delete, path = "/rating/{course_id}", tag = "ratings", security(("api_key" = [])),
    params(("course_id" = CourseId, Path)),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Bad id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such course", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable or too slow; retry (Retry-After)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn delete_course(
    State(db): State<Db>,
    State(cache): State<Cache>,
    Path(course): Path<CourseId>,
) -> Result<StatusCode, ApiError> {
    let mut conn = db.acquire().await?;
    let mut tx = conn.begin().await?;
    if !ratings::lock(&mut tx, course).await? {
        return Err(course_not_found(course));
    }
    reviewers::lock_reviewers_of_course(&mut tx, course).await?;
    let reviewers = reviews::delete_course_reviews(&mut tx, course).await?;
    ratings::delete(&mut tx, course).await?;
    tx.commit().await?;
    drop(conn); // back to the pool before the cache work
    // The reviewers' counts changed, and pages of other courses show them.
    let touched: Vec<Subject> = std::iter::once(Subject::Course(course.get()))
        .chain(reviewers.into_iter().map(Subject::Reviewer))
        .collect();
    cache.invalidate(&touched).await;
    Ok(StatusCode::NO_CONTENT)
}
