//! `/reviewer`: the people who write reviews.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Deserializer};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::db::Db;
use crate::db::reviewers::{self, Deleted, Reviewer, ReviewerChanges};
use crate::domain::{CoursesTaken, Name, Picture, ReviewerId};
use crate::error::{ApiError, Problem};
use crate::extract::{Json, Path, not_null};
use crate::state::AppState;
use courser_cache::{Cache, Subject};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_reviewer))
        .routes(routes!(get_reviewer, update_reviewer, delete_reviewer))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewReviewer {
    name: Name,
    picture: Option<Picture>,
    /// Defaults to 0.
    courses_taken: Option<CoursesTaken>,
}

/// At least one of the fields (`minProperties`, see `openapi::at_least_one_field`); a
/// field left out stays as it is, `"picture": null` removes the picture, and `null` for
/// the others is refused.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewerUpdate {
    #[serde(default, deserialize_with = "not_null")]
    #[schema(nullable = false)]
    name: Option<Name>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Picture>)]
    picture: Option<Option<Picture>>,
    #[serde(default, deserialize_with = "not_null")]
    #[schema(nullable = false)]
    courses_taken: Option<CoursesTaken>,
}

/// Tells a field sent as `null` (`Some(None)`) from one left out (`None`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

fn reviewer_not_found(id: ReviewerId) -> ApiError {
    ApiError::NotFound(format!("reviewer {id} does not exist"))
}

#[utoipa::path(
    post, path = "/reviewer", tag = "reviewers", security(("api_key" = [])),
    request_body = NewReviewer,
    responses(
        (status = 201, description = "Created", body = Reviewer,
         headers(("Location" = String, description = "/reviewer/{id}"))),
        (status = 400, description = "Invalid body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body larger than the limit", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body not sent as application/json", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable or too slow; retry (Retry-After)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn create_reviewer(
    State(db): State<Db>,
    Json(new): Json<NewReviewer>,
) -> Result<impl IntoResponse, ApiError> {
    let courses_taken = new.courses_taken.map_or(0, CoursesTaken::get);
    let reviewer = reviewers::create(&db, &new.name, new.picture.as_ref(), courses_taken).await?;
    let location = format!("/reviewer/{}", reviewer.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(reviewer),
    ))
}

#[utoipa::path(
    get, path = "/reviewer/{id}", tag = "reviewers",
    params(("id" = ReviewerId, Path)),
    responses(
        (status = 200, body = Reviewer),
        (status = 400, description = "Bad id", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such reviewer", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable or too slow; retry (Retry-After)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_reviewer(
    State(db): State<Db>,
    Path(id): Path<ReviewerId>,
) -> Result<Json<Reviewer>, ApiError> {
    reviewers::find(&db, id)
        .await?
        .map(Json)
        .ok_or_else(|| reviewer_not_found(id))
}

#[utoipa::path(
    put, path = "/reviewer/{id}", tag = "reviewers", security(("api_key" = [])),
    params(("id" = ReviewerId, Path)),
    request_body = ReviewerUpdate,
    responses(
        (status = 200, body = Reviewer),
        (status = 400, description = "Invalid body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such reviewer", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body larger than the limit", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body not sent as application/json", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable or too slow; retry (Retry-After)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn update_reviewer(
    State(db): State<Db>,
    State(cache): State<Cache>,
    Path(id): Path<ReviewerId>,
    Json(update): Json<ReviewerUpdate>,
) -> Result<Json<Reviewer>, ApiError> {
    if update.name.is_none() && update.picture.is_none() && update.courses_taken.is_none() {
        return Err(ApiError::BadRequest(
            "give at least one of name, picture and courses_taken".into(),
        ));
    }
    let changes = ReviewerChanges {
        name: update.name,
        picture: update.picture,
        courses_taken: update.courses_taken.map(CoursesTaken::get),
    };
    let reviewer = reviewers::update(&db, id, &changes)
        .await?
        .ok_or_else(|| reviewer_not_found(id))?;
    cache.invalidate(&[Subject::Reviewer(id.get())]).await;
    Ok(Json(reviewer))
}

/// Deletes a reviewer who has no reviews (409 while they have some).
#[utoipa::path(
    delete, path = "/reviewer/{id}", tag = "reviewers", security(("api_key" = [])),
    params(("id" = ReviewerId, Path)),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Bad id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such reviewer", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The reviewer still has reviews", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable or too slow; retry (Retry-After)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn delete_reviewer(
    State(db): State<Db>,
    State(cache): State<Cache>,
    Path(id): Path<ReviewerId>,
) -> Result<StatusCode, ApiError> {
    match reviewers::delete(&db, id).await? {
        Deleted::Yes => {
            cache.invalidate(&[Subject::Reviewer(id.get())]).await;
            Ok(StatusCode::NO_CONTENT)
        }
        Deleted::NotFound => Err(reviewer_not_found(id)),
        Deleted::HasReviews => Err(ApiError::Conflict(format!(
            "reviewer {id} still has reviews; delete them first"
        ))),
    }
}
