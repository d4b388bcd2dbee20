//! `reviewers`: people who write reviews, with a count of how many they have written.

use serde::Serialize;
use utoipa::ToSchema;

use crate::db::{Exec, QueryName, Rows};
use crate::domain::{CourseId, Name, Picture, ReviewerId};

#[derive(Debug, Clone, Serialize, sqlx::FromRow, ToSchema)]
pub struct Reviewer {
    pub id: i64,
    pub name: String,
    /// An http(s) URL or a CSS colour.
    pub picture: Option<String>,
    pub courses_taken: i32,
    /// How many reviews this reviewer has written; maintained by the service.
    #[sqlx(rename = "review_count")]
    pub reviews: i32,
}

/// What `create` returns, exactly one row.
impl Rows for Reviewer {
    fn rows(&self) -> u64 {
        1
    }
}

/// The changes a `PUT /reviewer/{id}` asks for; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct ReviewerChanges {
    pub name: Option<Name>,
    /// `Some(None)` clears the picture.
    pub picture: Option<Option<Picture>>,
    pub courses_taken: Option<i32>,
}

pub async fn find(db: impl Into<Exec<'_>>, id: ReviewerId) -> sqlx::Result<Option<Reviewer>> {
    db.into()
        .run(QueryName::ReviewersFind, async |conn| {
            sqlx::query_as(
                r#"SELECT id, name, picture, courses_taken, review_count
                   FROM reviewers WHERE id = $1"#,
            )
            .bind(id.get())
            .fetch_optional(conn)
            .await
        })
        .await
}

pub async fn find_many(db: impl Into<Exec<'_>>, ids: &[i64]) -> sqlx::Result<Vec<Reviewer>> {
    db.into()
        .run(QueryName::ReviewersFindMany, async |conn| {
            sqlx::query_as(
                r#"SELECT id, name, picture, courses_taken, review_count
                   FROM reviewers WHERE id = ANY($1)"#,
            )
            .bind(ids)
            .fetch_all(conn)
            .await
        })
        .await
}

pub async fn create(
    db: impl Into<Exec<'_>>,
    name: &Name,
    picture: Option<&Picture>,
    courses_taken: i32,
) -> sqlx::Result<Reviewer> {
    db.into()
        .run(QueryName::ReviewersCreate, async |conn| {
            sqlx::query_as(
                r#"INSERT INTO reviewers (name, picture, courses_taken) VALUES ($1, $2, $3)
                   RETURNING id, name, picture, courses_taken, review_count"#,
            )
            .bind(name.as_str())
            .bind(picture.map(Picture::as_str))
            .bind(courses_taken)
            .fetch_one(conn)
            .await
        })
        .await
}

pub async fn update(
    db: impl Into<Exec<'_>>,
    id: ReviewerId,
    changes: &ReviewerChanges,
) -> sqlx::Result<Option<Reviewer>> {
    let picture = changes.picture.as_ref();
    db.into()
        .run(QueryName::ReviewersUpdate, async |conn| {
            sqlx::query_as(
                r#"UPDATE reviewers
                   SET name = coalesce($2, name),
                       picture = CASE WHEN $3 THEN $4 ELSE picture END,
                       courses_taken = coalesce($5, courses_taken)
                   WHERE id = $1
                   RETURNING id, name, picture, courses_taken, review_count"#,
            )
            .bind(id.get())
            .bind(changes.name.as_ref().map(Name::as_str))
            .bind(picture.is_some())
            .bind(picture.and_then(Option::as_ref).map(Picture::as_str))
            .bind(changes.courses_taken)
            .fetch_optional(conn)
            .await
        })
        .await
}

/// What happened to a delete request.
#[derive(Debug, PartialEq, Eq)]
pub enum Deleted {
    Yes,
    NotFound,
    HasReviews,
}

/// Deletes the reviewer only if they have no reviews, in one statement so that a review
/// written at the same moment cannot slip in between the check and the delete.
pub async fn delete(db: impl Into<Exec<'_>>, id: ReviewerId) -> sqlx::Result<Deleted> {
    let outcome: Option<(bool,)> = db
        .into()
        .run(QueryName::ReviewersDelete, async |conn| {
            sqlx::query_as(
                r#"WITH target AS (SELECT id, review_count FROM reviewers WHERE id = $1),
                        gone AS (DELETE FROM reviewers WHERE id = $1 AND review_count = 0 RETURNING id)
                   SELECT EXISTS (SELECT 1 FROM gone) FROM target"#,
            )
            .bind(id.get())
            .fetch_optional(conn)
            .await
        })
        .await?;
    Ok(match outcome {
        None => Deleted::NotFound,
        Some((true,)) => Deleted::Yes,
        Some((false,)) => Deleted::HasReviews,
    })
}

/// Adds `delta` to the reviewer's review count; `false` if there is no such reviewer.
pub async fn add_to_review_count(
    db: impl Into<Exec<'_>>,
    id: ReviewerId,
    delta: i32,
) -> sqlx::Result<bool> {
    let updated = db
        .into()
        .run(QueryName::ReviewersAddToReviewCount, async |conn| {
            sqlx::query(r#"UPDATE reviewers SET review_count = review_count + $2 WHERE id = $1"#)
                .bind(id.get())
                .bind(delta)
                .execute(conn)
                .await
        })
        .await?;
    Ok(updated.rows_affected() == 1)
}

/// Locks, in id order, every reviewer with a review of the course, before a course
/// deletion changes their counts (see the lock order in `db`).
pub async fn lock_reviewers_of_course(
    db: impl Into<Exec<'_>>,
    course: CourseId,
) -> sqlx::Result<()> {
    db.into()
        .run(QueryName::ReviewersLockOfCourse, async |conn| {
            sqlx::query(
                r#"SELECT 1 FROM reviewers
                   WHERE id IN (SELECT reviewer_id FROM reviews WHERE course_id = $1)
                   ORDER BY id FOR UPDATE"#,
            )
            .bind(course.get())
            .execute(conn)
            .await
        })
        .await?;
    Ok(())
}
