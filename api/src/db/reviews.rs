//! `reviews`: single reviews, and the keyset-paginated listing of a course page.

use serde::Serialize;
use sqlx::postgres::PgRow;
use sqlx::{FromRow, Row as _};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::db::ratings::{self, CourseRating};
use crate::db::reviewers::Reviewer;
use crate::db::{Exec, QueryName, Rows};
use crate::domain::{
    CREATED_AT_MICROS, Comment, CourseId, Cursor, PageQuery, Rating, ReviewId, ReviewerId, Sort,
    SortKey,
};

#[derive(Debug, Clone, Serialize, sqlx::FromRow, ToSchema)]
pub struct Review {
    #[sqlx(try_from = "i64")]
    pub id: ReviewId,
    #[sqlx(try_from = "i64")]
    pub course_id: CourseId,
    #[sqlx(try_from = "i64")]
    pub reviewer_id: ReviewerId,
    #[sqlx(rename = "half_stars", try_from = "i16")]
    pub rating: Rating,
    pub comment: String,
    /// How many readers found it helpful.
    pub helpful: i32,
    /// Reported reviews are hidden from course pages.
    pub reported: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When the rating or comment last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// What `insert` and `update` return, exactly one row.
impl Rows for Review {
    fn rows(&self) -> u64 {
        1
    }
}

impl From<i16> for Rating {
    fn from(half_stars: i16) -> Self {
        Rating::from_half_stars(half_stars)
    }
}

/// A review on a course page, with its reviewer embedded.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ListedReview {
    #[serde(flatten)]
    pub review: Review,
    pub reviewer: Reviewer,
}

#[derive(sqlx::FromRow)]
struct ListedRow {
    #[sqlx(flatten)]
    review: Review,
    reviewer_name: String,
    reviewer_picture: Option<String>,
    reviewer_courses_taken: i32,
    reviewer_review_count: i32,
}

impl From<ListedRow> for ListedReview {
    fn from(row: ListedRow) -> Self {
        let reviewer = Reviewer {
            id: row.review.reviewer_id.get(),
            name: row.reviewer_name,
            picture: row.reviewer_picture,
            courses_taken: row.reviewer_courses_taken,
            reviews: row.reviewer_review_count,
        };
        Self {
            review: row.review,
            reviewer,
        }
    }
}

pub async fn find(db: impl Into<Exec<'_>>, id: ReviewId) -> sqlx::Result<Option<Review>> {
    db.into()
        .run(QueryName::ReviewsFind, async |conn| {
            sqlx::query_as(
                r#"SELECT id, course_id, reviewer_id, half_stars, comment, helpful, reported, created_at, updated_at
                   FROM reviews WHERE id = $1"#,
            )
            .bind(id.get())
            .fetch_optional(conn)
            .await
        })
        .await
}

/// Dated when stored (`clock_timestamp()`), not when the transaction began (`now()`): the
/// caller has locked the course's rating row by then, so a course's reviews are dated in
/// the order they commit and its newest-first page lists them in that order.
pub async fn insert(
    db: impl Into<Exec<'_>>,
    course: CourseId,
    reviewer: ReviewerId,
    rating: Rating,
    comment: &Comment,
) -> sqlx::Result<Review> {
    db.into()
        .run(QueryName::ReviewsInsert, async |conn| {
            sqlx::query_as(
                r#"INSERT INTO reviews (course_id, reviewer_id, half_stars, comment, created_at, updated_at)
                   SELECT $1, $2, $3, $4, stored, stored FROM clock_timestamp() AS stored
                   RETURNING id, course_id, reviewer_id, half_stars, comment, helpful, reported, created_at, updated_at"#,
            )
            .bind(course.get())
            .bind(reviewer.get())
            .bind(rating.half_stars())
            .bind(comment.as_str())
            .fetch_one(conn)
            .await
        })
        .await
}

/// The course a review belongs to (which never changes), read without a lock so that the
/// caller can lock the course first.
pub async fn course_of(db: impl Into<Exec<'_>>, id: ReviewId) -> sqlx::Result<Option<CourseId>> {
    let course: Option<(i64,)> = db
        .into()
        .run(QueryName::ReviewsCourseOf, async |conn| {
            sqlx::query_as(r#"SELECT course_id FROM reviews WHERE id = $1"#)
                .bind(id.get())
                .fetch_optional(conn)
                .await
        })
        .await?;
    course
        .map(|(id,)| CourseId::new(id).map_err(|e| sqlx::Error::Decode(e.into())))
        .transpose()
}

/// Locks the review and returns it; `None` if it is gone.
pub async fn lock(db: impl Into<Exec<'_>>, id: ReviewId) -> sqlx::Result<Option<Review>> {
    db.into()
        .run(QueryName::ReviewsLock, async |conn| {
            sqlx::query_as(
                r#"SELECT id, course_id, reviewer_id, half_stars, comment, helpful, reported, created_at, updated_at
                   FROM reviews WHERE id = $1 FOR UPDATE"#,
            )
            .bind(id.get())
            .fetch_optional(conn)
            .await
        })
        .await
}

/// Changes the rating and/or comment; `None` leaves a field as it is.
pub async fn update(
    db: impl Into<Exec<'_>>,
    id: ReviewId,
    rating: Option<Rating>,
    comment: Option<&Comment>,
) -> sqlx::Result<Review> {
    db.into()
        .run(QueryName::ReviewsUpdate, async |conn| {
            sqlx::query_as(
                r#"UPDATE reviews
                   SET half_stars = coalesce($2, half_stars), comment = coalesce($3, comment), updated_at = now()
                   WHERE id = $1
                   RETURNING id, course_id, reviewer_id, half_stars, comment, helpful, reported, created_at, updated_at"#,
            )
            .bind(id.get())
            .bind(rating.map(Rating::half_stars))
            .bind(comment.map(Comment::as_str))
            .fetch_one(conn)
            .await
        })
        .await
}

pub async fn delete(db: impl Into<Exec<'_>>, id: ReviewId) -> sqlx::Result<()> {
    db.into()
        .run(QueryName::ReviewsDelete, async |conn| {
            sqlx::query(r#"DELETE FROM reviews WHERE id = $1"#)
                .bind(id.get())
                .execute(conn)
                .await
        })
        .await?;
    Ok(())
}

pub async fn mark_helpful(db: impl Into<Exec<'_>>, id: ReviewId) -> sqlx::Result<Option<Review>> {
    db.into()
        .run(QueryName::ReviewsMarkHelpful, async |conn| {
            sqlx::query_as(
                r#"UPDATE reviews SET helpful = helpful + 1 WHERE id = $1
                   RETURNING id, course_id, reviewer_id, half_stars, comment, helpful, reported, created_at, updated_at"#,
            )
            .bind(id.get())
            .fetch_optional(conn)
            .await
        })
        .await
}

pub async fn report(db: impl Into<Exec<'_>>, id: ReviewId) -> sqlx::Result<Option<Review>> {
    db.into()
        .run(QueryName::ReviewsReport, async |conn| {
            sqlx::query_as(
                r#"UPDATE reviews SET reported = true WHERE id = $1
                   RETURNING id, course_id, reviewer_id, half_stars, comment, helpful, reported, created_at, updated_at"#,
            )
            .bind(id.get())
            .fetch_optional(conn)
            .await
        })
        .await
}

/// Deletes every review of the course and takes them off their reviewers' counts,
/// returning those reviewers. Call with the course and its reviewers locked.
pub async fn delete_course_reviews(
    db: impl Into<Exec<'_>>,
    course: CourseId,
) -> sqlx::Result<Vec<i64>> {
    db.into()
        .run(QueryName::ReviewsDeleteOfCourse, async |conn| {
            sqlx::query_scalar(
                r#"WITH gone AS (DELETE FROM reviews WHERE course_id = $1 RETURNING reviewer_id),
                        per_reviewer AS (SELECT reviewer_id, count(*)::int AS n FROM gone GROUP BY reviewer_id)
                   UPDATE reviewers SET review_count = review_count - per_reviewer.n
                   FROM per_reviewer WHERE reviewers.id = per_reviewer.reviewer_id
                   RETURNING reviewers.id"#,
            )
            .bind(course.get())
            .fetch_all(conn)
            .await
        })
        .await
}

// One statement per sort order (and star filter where it needs its own index), each
// walking exactly one index of the migration from the cursor onward: no OFFSET, no sort
// step below the LIMIT. A first page starts from a cursor before every row, so the same
// statement serves every page. The statements are built from literals at compile time,
// never from input. `$1` course, `$2`/`$3` the cursor's key and id, `$4` the page size
// plus one (to learn whether a next page exists); `$5` the star filter.
//
// The course's rating comes in the same statement (one round trip and one snapshot for
// the whole page): no row means no such course, one row with a null review id an empty
// page. The outer ORDER BY repeats the inner one so that the order is SQL's promise, not
// the plan's; it sorts at most `$4` rows.
macro_rules! page_sql {
    ($filter:literal, $order:literal) => {
        concat!(
            r#"SELECT g.course_id, g.review_count, g.half_stars_sum, g.distribution,
       p.id, p.reviewer_id, p.half_stars, p.comment, p.helpful, p.reported, p.created_at,
       p.updated_at, p.reviewer_name, p.reviewer_picture, p.reviewer_courses_taken,
       p.reviewer_review_count
FROM ratings g LEFT JOIN (
    SELECT r.id, r.reviewer_id, r.half_stars, r.comment, r.helpful, r.reported,
           r.created_at, r.updated_at, v.name AS reviewer_name,
           v.picture AS reviewer_picture, v.courses_taken AS reviewer_courses_taken,
           v.review_count AS reviewer_review_count
    FROM reviews r JOIN reviewers v ON v.id = r.reviewer_id
    WHERE r.course_id = $1 AND NOT r.reported "#,
            $filter,
            "\n    ORDER BY ",
            $order,
            r#" LIMIT $4
) p ON true
WHERE g.course_id = $1
ORDER BY "#,
            $order
        )
    };
}

pub const PAGE_RECENT: &str = page_sql!(
    "AND (r.created_at, r.id) < ($2, $3)",
    "created_at DESC, id DESC"
);
pub const PAGE_RECENT_STARS: &str = page_sql!(
    "AND r.half_stars / 2 = $5 AND (r.created_at, r.id) < ($2, $3)",
    "created_at DESC, id DESC"
);
pub const PAGE_HELPFUL: &str =
    page_sql!("AND (r.helpful, r.id) < ($2, $3)", "helpful DESC, id DESC");
pub const PAGE_HELPFUL_STARS: &str = page_sql!(
    "AND r.half_stars / 2 = $5 AND (r.helpful, r.id) < ($2, $3)",
    "helpful DESC, id DESC"
);
// For highest/lowest a star filter is a half_stars range ($5..=$6) in the same index.
pub const PAGE_HIGHEST: &str = page_sql!(
    "AND r.half_stars BETWEEN $5 AND $6 AND (r.half_stars, r.id) < ($2, $3)",
    "half_stars DESC, id DESC"
);
pub const PAGE_LOWEST: &str = page_sql!(
    "AND r.half_stars BETWEEN $5 AND $6 AND (r.half_stars, r.id) > ($2, $3)",
    "half_stars, id"
);

/// The statement for a query's sort order and star filter.
pub fn page_sql(sort: Sort, filtered: bool) -> &'static str {
    page_statement(sort, filtered).1
}

/// The statement for a query's sort order and star filter, and the name it is measured
/// under (each walks its own index, so each is timed on its own).
fn page_statement(sort: Sort, filtered: bool) -> (QueryName, &'static str) {
    match (sort, filtered) {
        (Sort::Recent, false) => (QueryName::ReviewsPageRecent, PAGE_RECENT),
        (Sort::Recent, true) => (QueryName::ReviewsPageRecentStars, PAGE_RECENT_STARS),
        (Sort::Helpful, false) => (QueryName::ReviewsPageHelpful, PAGE_HELPFUL),
        (Sort::Helpful, true) => (QueryName::ReviewsPageHelpfulStars, PAGE_HELPFUL_STARS),
        (Sort::Highest, _) => (QueryName::ReviewsPageHighest, PAGE_HIGHEST),
        (Sort::Lowest, _) => (QueryName::ReviewsPageLowest, PAGE_LOWEST),
    }
}

/// A course's rating, one page of its unreported reviews, and the cursor of the next
/// page if any.
#[derive(Debug)]
pub struct Page {
    pub rating: CourseRating,
    pub reviews: Vec<ListedReview>,
    pub next: Option<Cursor>,
}

/// One page of a course, or `None` if there is no such course.
pub async fn page(
    db: impl Into<Exec<'_>>,
    course: CourseId,
    query: &PageQuery,
) -> sqlx::Result<Option<Page>> {
    let limit = usize::from(query.limit.get());
    let (key, id) = match query.after {
        Some(cursor) => (cursor.key, cursor.id),
        None => start_of(query.sort),
    };
    let (name, sql) = page_statement(query.sort, query.stars.is_some());
    let statement = sqlx::query(sql).bind(course.get());
    let statement = match key {
        SortKey::CreatedAt(micros) => statement.bind(timestamp_from_micros(micros)),
        SortKey::Helpful(helpful) => statement.bind(helpful),
        SortKey::HalfStars(halves) => statement.bind(halves),
    };
    let statement = statement.bind(id).bind(i64::from(query.limit.get()) + 1);
    let stars = query.stars.map(|s| i16::from(s.get()));
    let statement = match query.sort {
        Sort::Recent | Sort::Helpful => match stars {
            Some(stars) => statement.bind(i32::from(stars)),
            None => statement,
        },
        // 5 stars is exactly 10 half stars; n stars otherwise covers 2n and 2n + 1.
        Sort::Highest | Sort::Lowest => match stars {
            Some(stars) => statement.bind(stars * 2).bind((stars * 2 + 1).min(10)),
            None => statement.bind(2_i16).bind(10_i16),
        },
    };
    let rows: Vec<PgRow> = db
        .into()
        .run(name, async |conn| statement.fetch_all(conn).await)
        .await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let rating = ratings::from_row(first)?;
    let mut reviews = Vec::with_capacity(rows.len());
    for row in &rows {
        // The one row of an empty page carries the rating only.
        if row.try_get::<Option<i64>, _>("id")?.is_none() {
            break;
        }
        reviews.push(ListedReview::from(ListedRow::from_row(row)?));
    }
    let next = if reviews.len() > limit {
        reviews.truncate(limit);
        reviews
            .last()
            .map(|last| cursor_after(query.sort, &last.review))
    } else {
        None
    };
    Ok(Some(Page {
        rating,
        reviews,
        next,
    }))
}

/// A key and id that sort before every review in `sort`'s order.
fn start_of(sort: Sort) -> (SortKey, i64) {
    match sort {
        // Far in the future: every stored timestamp is earlier.
        Sort::Recent => (SortKey::CreatedAt(253_402_300_799_000_000), i64::MAX),
        Sort::Helpful => (SortKey::Helpful(i32::MAX), i64::MAX),
        Sort::Highest => (SortKey::HalfStars(11), 0),
        Sort::Lowest => (SortKey::HalfStars(1), i64::MAX),
    }
}

fn cursor_after(sort: Sort, review: &Review) -> Cursor {
    let key = match sort {
        Sort::Recent => SortKey::CreatedAt(micros_of(review.created_at)),
        Sort::Helpful => SortKey::Helpful(review.helpful),
        Sort::Highest | Sort::Lowest => SortKey::HalfStars(review.rating.half_stars()),
    };
    Cursor {
        sort,
        key,
        id: review.id.get(),
    }
}

fn micros_of(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX)
}

/// A cursor's timestamp. Decoded cursors are within the range Postgres and `time` share
/// (`CREATED_AT_MICROS`); anything else clamps to its ends, which pages correctly, rather
/// than reaching Postgres as a timestamp it refuses.
fn timestamp_from_micros(micros: i64) -> OffsetDateTime {
    let first = time::macros::datetime!(0001-01-01 0:00 UTC);
    let last = time::macros::datetime!(9999-12-31 23:59:59.999999 UTC);
    let micros = micros.clamp(*CREATED_AT_MICROS.start(), *CREATED_AT_MICROS.end());
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000)
        .map_or(first, |at| at.clamp(first, last))
}
