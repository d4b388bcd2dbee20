//! `ratings`: one row per course, the exact aggregate of its reviews.

use serde::Serialize;
use sqlx::FromRow;
use sqlx::postgres::PgRow;
use utoipa::ToSchema;

use crate::db::{Exec, QueryName, Rows};
use crate::domain::{CourseId, Rating};

/// A course's rating aggregate.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CourseRating {
    pub course_id: i64,
    /// Mean rating, rounded to two decimals; 0 when there are no reviews.
    pub average: f64,
    /// How many reviews the course has (reported ones included).
    pub count: i32,
    /// Sum of all ratings.
    pub total_stars: f64,
    pub distribution: Distribution,
}

/// How many reviews gave each rating.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Distribution {
    #[serde(rename = "1")]
    pub s1: i32,
    #[serde(rename = "1.5")]
    pub s1_5: i32,
    #[serde(rename = "2")]
    pub s2: i32,
    #[serde(rename = "2.5")]
    pub s2_5: i32,
    #[serde(rename = "3")]
    pub s3: i32,
    #[serde(rename = "3.5")]
    pub s3_5: i32,
    #[serde(rename = "4")]
    pub s4: i32,
    #[serde(rename = "4.5")]
    pub s4_5: i32,
    #[serde(rename = "5")]
    pub s5: i32,
}

#[derive(sqlx::FromRow)]
struct Row {
    course_id: i64,
    review_count: i32,
    half_stars_sum: i64,
    distribution: Vec<i32>,
}

/// What `recompute` returns, exactly one row.
impl Rows for Row {
    fn rows(&self) -> u64 {
        1
    }
}

/// The rating in a row that has the `ratings` columns among others.
pub(crate) fn from_row(row: &PgRow) -> sqlx::Result<CourseRating> {
    Row::from_row(row).map(Into::into)
}

impl From<Row> for CourseRating {
    fn from(row: Row) -> Self {
        let d = |i: usize| row.distribution.get(i).copied().unwrap_or_default();
        #[expect(clippy::cast_precision_loss, reason = "sums far below 2^52 half stars")]
        let total_stars = row.half_stars_sum as f64 / 2.0;
        let average = if row.review_count == 0 {
            0.0
        } else {
            (total_stars / f64::from(row.review_count) * 100.0).round() / 100.0
        };
        Self {
            course_id: row.course_id,
            average,
            count: row.review_count,
            total_stars,
            distribution: Distribution {
                s1: d(0),
                s1_5: d(1),
                s2: d(2),
                s2_5: d(3),
                s3: d(4),
                s3_5: d(5),
                s4: d(6),
                s4_5: d(7),
                s5: d(8),
            },
        }
    }
}

pub async fn find(db: impl Into<Exec<'_>>, course: CourseId) -> sqlx::Result<Option<CourseRating>> {
    let row: Option<Row> = db
        .into()
        .run(QueryName::RatingsFind, async |conn| {
            sqlx::query_as(
                r#"SELECT course_id, review_count, half_stars_sum, distribution
                   FROM ratings WHERE course_id = $1"#,
            )
            .bind(course.get())
            .fetch_optional(conn)
            .await
        })
        .await?;
    Ok(row.map(Into::into))
}

/// Creates the course with an empty aggregate; `None` if it already exists.
pub async fn create(
    db: impl Into<Exec<'_>>,
    course: CourseId,
) -> sqlx::Result<Option<CourseRating>> {
    let row: Option<Row> = db
        .into()
        .run(QueryName::RatingsCreate, async |conn| {
            sqlx::query_as(
                r#"INSERT INTO ratings (course_id) VALUES ($1)
                   ON CONFLICT (course_id) DO NOTHING
                   RETURNING course_id, review_count, half_stars_sum, distribution"#,
            )
            .bind(course.get())
            .fetch_optional(conn)
            .await
        })
        .await?;
    Ok(row.map(Into::into))
}

/// Locks the course's row for the rest of the transaction; `false` if there is no course.
/// Every review write takes this lock first, so writes to one course run one at a time.
pub async fn lock(db: impl Into<Exec<'_>>, course: CourseId) -> sqlx::Result<bool> {
    let found = db
        .into()
        .run(QueryName::RatingsLock, async |conn| {
            sqlx::query(r#"SELECT 1 FROM ratings WHERE course_id = $1 FOR UPDATE"#)
                .bind(course.get())
                .fetch_optional(conn)
                .await
        })
        .await?;
    Ok(found.is_some())
}

/// Counts one more review with `rating`; `false` if there is no course. Takes the row lock.
pub async fn add_review(
    db: impl Into<Exec<'_>>,
    course: CourseId,
    rating: Rating,
) -> sqlx::Result<bool> {
    let updated = db
        .into()
        .run(QueryName::RatingsAddReview, async |conn| {
            sqlx::query(
                r#"UPDATE ratings
                   SET review_count = review_count + 1,
                       half_stars_sum = half_stars_sum + $2,
                       distribution[$2 - 1] = distribution[$2 - 1] + 1
                   WHERE course_id = $1"#,
            )
            .bind(course.get())
            .bind(i32::from(rating.half_stars()))
            .execute(conn)
            .await
        })
        .await?;
    Ok(updated.rows_affected() == 1)
}

/// Takes back one review with `rating`.
pub async fn remove_review(
    db: impl Into<Exec<'_>>,
    course: CourseId,
    rating: Rating,
) -> sqlx::Result<()> {
    db.into()
        .run(QueryName::RatingsRemoveReview, async |conn| {
            sqlx::query(
                r#"UPDATE ratings
                   SET review_count = review_count - 1,
                       half_stars_sum = half_stars_sum - $2,
                       distribution[$2 - 1] = distribution[$2 - 1] - 1
                   WHERE course_id = $1"#,
            )
            .bind(course.get())
            .bind(i32::from(rating.half_stars()))
            .execute(conn)
            .await
        })
        .await?;
    Ok(())
}

/// Moves one review from rating `from` to rating `to` (which must differ).
pub async fn move_review(
    db: impl Into<Exec<'_>>,
    course: CourseId,
    from: Rating,
    to: Rating,
) -> sqlx::Result<()> {
    db.into()
        .run(QueryName::RatingsMoveReview, async |conn| {
            sqlx::query(
                r#"UPDATE ratings
                   SET half_stars_sum = half_stars_sum - $2 + $3,
                       distribution[$2 - 1] = distribution[$2 - 1] - 1,
                       distribution[$3 - 1] = distribution[$3 - 1] + 1
                   WHERE course_id = $1"#,
            )
            .bind(course.get())
            .bind(i32::from(from.half_stars()))
            .bind(i32::from(to.half_stars()))
            .execute(conn)
            .await
        })
        .await?;
    Ok(())
}

/// Rewrites the aggregate from the course's reviews. Call with the row locked (`lock`),
/// in a statement after the lock: under READ COMMITTED that statement's snapshot then
/// holds every committed review write, and no new one can start until commit.
pub async fn recompute(db: impl Into<Exec<'_>>, course: CourseId) -> sqlx::Result<CourseRating> {
    let row: Row = db
        .into()
        .run(QueryName::RatingsRecompute, async |conn| {
            sqlx::query_as(
                r#"UPDATE ratings SET (review_count, half_stars_sum, distribution) = (
                       SELECT count(*)::int,
                              coalesce(sum(half_stars), 0),
                              ARRAY[count(*) FILTER (WHERE half_stars = 2),
                                    count(*) FILTER (WHERE half_stars = 3),
                                    count(*) FILTER (WHERE half_stars = 4),
                                    count(*) FILTER (WHERE half_stars = 5),
                                    count(*) FILTER (WHERE half_stars = 6),
                                    count(*) FILTER (WHERE half_stars = 7),
                                    count(*) FILTER (WHERE half_stars = 8),
                                    count(*) FILTER (WHERE half_stars = 9),
                                    count(*) FILTER (WHERE half_stars = 10)]::int[]
                       FROM reviews WHERE course_id = $1)
                   WHERE course_id = $1
                   RETURNING course_id, review_count, half_stars_sum, distribution"#,
            )
            .bind(course.get())
            .fetch_one(conn)
            .await
        })
        .await?;
    Ok(row.into())
}

/// Removes the course's row (its reviews must be gone already).
pub async fn delete(db: impl Into<Exec<'_>>, course: CourseId) -> sqlx::Result<()> {
    db.into()
        .run(QueryName::RatingsDelete, async |conn| {
            sqlx::query(r#"DELETE FROM ratings WHERE course_id = $1"#)
                .bind(course.get())
                .execute(conn)
                .await
        })
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_aggregate_reads_as_numbers_with_a_rounded_average() {
        let rating = CourseRating::from(Row {
            course_id: 1,
            review_count: 3,
            half_stars_sum: 25,
            distribution: vec![0, 0, 0, 0, 0, 0, 1, 1, 1],
        });
        assert_eq!(rating.total_stars, 12.5);
        assert_eq!(rating.average, 4.17);
        assert_eq!(rating.distribution.s4, 1);
        assert_eq!(rating.distribution.s5, 1);
    }
}
