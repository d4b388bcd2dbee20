//! `/review`: create, read, edit, delete, mark helpful and report single reviews. Every
//! write that changes a rating moves the course's aggregate in the same transaction.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::db::reviews::{self, Review};
use crate::db::{Db, ratings, reviewers};
use crate::domain::{Comment, CourseId, Rating, ReviewId, ReviewerId};
use crate::error::{ApiError, Problem};
use crate::extract::{Json, Path, not_null};
use crate::state::AppState;
use courser_cache::{Cache, Subject};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_review))
        .routes(routes!(get_review, update_review, delete_review))
        .routes(routes!(mark_helpful))
        .routes(routes!(report_review))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewReview {
    course_id: CourseId,
    reviewer_id: ReviewerId,
    rating: Rating,
    comment: Comment,
}

/// At least one of the fields (the document says so with `minProperties`, see
/// `openapi::at_least_one_field`). A field left out stays as it is; `null` is refused.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewChanges {
    #[serde(default, deserialize_with = "not_null")]
    #[schema(nullable = false)]
    rating: Option<Rating>,
    #[serde(default, deserialize_with = "not_null")]
    #[schema(nullable = false)]
    comment: Option<Comment>,
}

fn review_not_found(id: ReviewId) -> ApiError {
    ApiError::NotFound(format!("review {id} does not exist"))
}

/// Writes a review; the course's aggregate and the reviewer's count move with it.
#[utoipa::path(
    post, path = "/review", tag = "reviews", security(("api_key" = [])),
    request_body = NewReview,
    responses(
        (status = 201, description = "Created", body = Review,
         headers(("Location" = String, description = "/review/{id}"))),
        (status = 400, description = "Invalid body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such course or reviewer", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body larger than the limit", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body not sent as application/json", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable or too slow; retry (Retry-After)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn create_review(
    State(db): State<Db>,
    State(cache): State<Cache>,
    Json(new): Json<NewReview>,
) -> Result<impl IntoResponse, ApiError> {
    let mut conn = db.acquire().await?;
    let mut tx = conn.begin().await?;
    if !ratings::add_review(&mut tx, new.course_id, new.rating).await? {
        return Err(ApiError::NotFound(format!(
            "course {} does not exist",
            new.course_id
        )));
    }
    if !reviewers::add_to_review_count(&mut tx, new.reviewer_id, 1).await? {
        return Err(ApiError::NotFound(format!(
            "reviewer {} does not exist",
            new.reviewer_id
        )));
    }
    let review = reviews::insert(
        &mut tx,
        new.course_id,
        new.reviewer_id,
        new.rating,
        &new.comment,
    )
    .await?;
    tx.commit().await?;
    drop(conn); // back to the pool before the cache work
    let touched = [
        Subject::Course(new.course_id.get()),
        Subject::Reviewer(new.reviewer_id.get()),
    ];
    cache.invalidate(&touched).await;
    let location = format!("/review/{}", review.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(review),
    ))
}

#[utoipa::path(
    get, path = "/review/{id}", tag = "reviews",
    params(("id" = ReviewId, Path)),
    responses(
        (status = 200, body = Review),
        (status = 400, description = "Bad id", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such review", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable or too slow; retry (Retry-After)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_review(
    State(db): State<Db>,
    Path(id): Path<ReviewId>,
) -> Result<Json<Review>, ApiError> {
    reviews::find(&db, id)
        .await?
        .map(Json)
        .ok_or_else(|| review_not_found(id))
}

/// Changes the rating and/or comment; a rating change moves the course's aggregate.
#[utoipa::path(
    put, path = "/review/{id}", tag = "reviews", security(("api_key" = [])),
    params(("id" = ReviewId, Path)),
    request_body = ReviewChanges,
    responses(
        (status = 200, body = Review),
        (status = 400, description = "Invalid body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such review", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body larger than the limit", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body not sent as application/json", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable or too slow; retry (Retry-After)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn update_review(
    State(db): State<Db>,
    State(cache): State<Cache>,
    Path(id): Path<ReviewId>,
    Json(changes): Json<ReviewChanges>,
) -> Result<Json<Review>, ApiError> {
    if changes.rating.is_none() && changes.comment.is_none() {
        return Err(ApiError::BadRequest(
            "give at least one of rating and comment".into(),
        ));
    }
    let mut conn = db.acquire().await?;
    let mut tx = conn.begin().await?;
    let course = reviews::course_of(&mut tx, id)
        .await?
        .ok_or_else(|| review_not_found(id))?;
    ratings::lock(&mut tx, course).await?;
    let before = reviews::lock(&mut tx, id)
        .await?
        .ok_or_else(|| review_not_found(id))?;
    let after = reviews::update(&mut tx, id, changes.rating, changes.comment.as_ref()).await?;
    if before.rating != after.rating {
        ratings::move_review(&mut tx, course, before.rating, after.rating).await?;
    }
    tx.commit().await?;
    drop(conn); // back to the pool before the cache work
    cache.invalidate(&[Subject::Course(course.get())]).await;
    Ok(Json(after))
}

/// Deletes a review; the course's aggregate and the reviewer's count move back.
#[utoipa::path(
    delete, path = "/review/{id}", tag = "reviews", security(("api_key" = [])),
    params(("id" = ReviewId, Path)),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Bad id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such review", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable or too slow; retry (Retry-After)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn delete_review(
    State(db): State<Db>,
    State(cache): State<Cache>,
    Path(id): Path<ReviewId>,
) -> Result<StatusCode, ApiError> {
    let mut conn = db.acquire().await?;
    let mut tx = conn.begin().await?;
    let course = reviews::course_of(&mut tx, id)
        .await?
        .ok_or_else(|| review_not_found(id))?;
    ratings::lock(&mut tx, course).await?;
    let review = reviews::lock(&mut tx, id)
        .await?
        .ok_or_else(|| review_not_found(id))?;
    reviews::delete(&mut tx, id).await?;
    ratings::remove_review(&mut tx, course, review.rating).await?;
    reviewers::add_to_review_count(&mut tx, review.reviewer_id, -1).await?;
    tx.commit().await?;
    drop(conn); // back to the pool before the cache work
    let touched = [
        Subject::Course(course.get()),
        Subject::Reviewer(review.reviewer_id.get()),
    ];
    cache.invalidate(&touched).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Counts one more reader who found the review helpful.
#[utoipa::path(
    post, path = "/review/{id}/helpful", tag = "reviews", security(("api_key" = [])),
    params(("id" = ReviewId, Path)),
    responses(
        (status = 200, body = Review),
        (status = 400, description = "Bad id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such review", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable or too slow; retry (Retry-After)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn mark_helpful(
    State(db): State<Db>,
    State(cache): State<Cache>,
    Path(id): Path<ReviewId>,
) -> Result<Json<Review>, ApiError> {
    let review = reviews::mark_helpful(&db, id)
        .await?
        .ok_or_else(|| review_not_found(id))?;
    cache
        .invalidate(&[Subject::Course(review.course_id.get())])
        .await;
    Ok(Json(review))
}

/// Reports the review; reported reviews are hidden from course pages (idempotent).
#[utoipa::path(
    post, path = "/review/{id}/report", tag = "reviews", security(("api_key" = [])),
    params(("id" = ReviewId, Path)),
    responses(
        (status = 200, body = Review),
        (status = 400, description = "Bad id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such review", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable or too slow; retry (Retry-After)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn report_review(
    State(db): State<Db>,
    State(cache): State<Cache>,
    Path(id): Path<ReviewId>,
) -> Result<Json<Review>, ApiError> {
    let review = reviews::report(&db, id)
        .await?
        .ok_or_else(|| review_not_found(id))?;
    cache
        .invalidate(&[Subject::Course(review.course_id.get())])
        .await;
    Ok(Json(review))
}
