//! `courser verify`: whether every course's rating aggregate and every reviewer's review
//! count equal what their reviews say, over all of them or a random sample.

use std::fmt;

use rand::Rng as _;
use sqlx::PgConnection;

use super::schema::{self, State};

/// Mismatches listed in the report at most; the count covers all.
const SHOWN: i64 = 20;

/// What `verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The last load, if one is recorded.
    pub state: State,
    pub courses_checked: i64,
    pub reviewers_checked: i64,
    /// Courses whose rating row differs from their reviews, as (id, "stored / actual").
    pub course_mismatches: Vec<(i64, String)>,
    pub reviewer_mismatches: Vec<(i64, String)>,
    /// How many mismatches there are in all (the lists hold the first few).
    pub course_mismatch_count: i64,
    pub reviewer_mismatch_count: i64,
}

impl Report {
    /// Every aggregate exact and no unfinished load.
    pub fn is_ok(&self) -> bool {
        self.course_mismatch_count == 0
            && self.reviewer_mismatch_count == 0
            && !matches!(self.state, State::Incomplete { .. })
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.state {
            State::Incomplete { spec, .. } => writeln!(
                f,
                "INCOMPLETE: the load of {spec} did not finish; run `courser seed` to load it again"
            )?,
            State::Complete { spec } => writeln!(f, "loaded: {spec}")?,
            State::None => writeln!(f, "no load by `courser seed` is recorded")?,
        }
        writeln!(
            f,
            "courses:   {} checked, {} mismatched",
            self.courses_checked, self.course_mismatch_count
        )?;
        for (id, detail) in &self.course_mismatches {
            writeln!(f, "  course {id}: {detail}")?;
        }
        writeln!(
            f,
            "reviewers: {} checked, {} mismatched",
            self.reviewers_checked, self.reviewer_mismatch_count
        )?;
        for (id, detail) in &self.reviewer_mismatches {
            writeln!(f, "  reviewer {id}: {detail}")?;
        }
        write!(f, "{}", if self.is_ok() { "OK" } else { "FAILED" })
    }
}

/// Each rating row beside the aggregate of its course's reviews, for the courses in `$1`
/// (all when null): how many were checked, how many differ, and the first `$2` of them.
const COURSES: &str = r#"
    WITH checked AS (
        SELECT course_id, review_count, half_stars_sum, distribution FROM ratings
        WHERE $1::bigint[] IS NULL OR course_id = ANY ($1)
    ), actual AS (
        SELECT course_id, count(*)::int AS review_count, sum(half_stars)::bigint AS half_stars_sum,
               ARRAY[count(*) FILTER (WHERE half_stars = 2), count(*) FILTER (WHERE half_stars = 3),
                     count(*) FILTER (WHERE half_stars = 4), count(*) FILTER (WHERE half_stars = 5),
                     count(*) FILTER (WHERE half_stars = 6), count(*) FILTER (WHERE half_stars = 7),
                     count(*) FILTER (WHERE half_stars = 8), count(*) FILTER (WHERE half_stars = 9),
                     count(*) FILTER (WHERE half_stars = 10)]::int[] AS distribution
        FROM reviews
        WHERE $1::bigint[] IS NULL OR course_id = ANY ($1)
        GROUP BY course_id
    ), compared AS (
        SELECT c.course_id,
               format('stored %s reviews, %s half stars, %s; reviews say %s, %s, %s',
                      c.review_count, c.half_stars_sum, c.distribution,
                      coalesce(a.review_count, 0), coalesce(a.half_stars_sum, 0),
                      coalesce(a.distribution, '{0,0,0,0,0,0,0,0,0}')) AS detail,
               (c.review_count, c.half_stars_sum, c.distribution)
                   IS DISTINCT FROM (coalesce(a.review_count, 0), coalesce(a.half_stars_sum, 0),
                                     coalesce(a.distribution, '{0,0,0,0,0,0,0,0,0}')) AS wrong
        FROM checked c LEFT JOIN actual a USING (course_id)
    )
    SELECT (SELECT count(*) FROM compared), (SELECT count(*) FROM compared WHERE wrong),
           coalesce((SELECT array_agg(course_id ORDER BY course_id) FROM
                        (SELECT course_id FROM compared WHERE wrong ORDER BY course_id LIMIT $2) s), '{}'),
           coalesce((SELECT array_agg(detail ORDER BY course_id) FROM
                        (SELECT course_id, detail FROM compared WHERE wrong ORDER BY course_id LIMIT $2) s), '{}')"#;

/// The same for reviewers' review counts, reviewers in `$1` (all when null).
const REVIEWERS: &str = r#"
    WITH checked AS (
        SELECT id, review_count FROM reviewers
        WHERE $1::bigint[] IS NULL OR id = ANY ($1)
    ), actual AS (
        SELECT reviewer_id, count(*)::int AS review_count FROM reviews
        WHERE $1::bigint[] IS NULL OR reviewer_id = ANY ($1)
        GROUP BY reviewer_id
    ), compared AS (
        SELECT c.id, format('stored %s reviews; reviews say %s', c.review_count,
                            coalesce(a.review_count, 0)) AS detail,
               c.review_count <> coalesce(a.review_count, 0) AS wrong
        FROM checked c LEFT JOIN actual a ON a.reviewer_id = c.id
    )
    SELECT (SELECT count(*) FROM compared), (SELECT count(*) FROM compared WHERE wrong),
           coalesce((SELECT array_agg(id ORDER BY id) FROM
                        (SELECT id FROM compared WHERE wrong ORDER BY id LIMIT $2) s), '{}'),
           coalesce((SELECT array_agg(detail ORDER BY id) FROM
                        (SELECT id, detail FROM compared WHERE wrong ORDER BY id LIMIT $2) s), '{}')"#;

type Found = (i64, i64, Vec<i64>, Vec<String>);

/// Checks every course and reviewer, or with `sample` that many random ones of each
/// (plus course 1, the largest).
pub async fn verify(conn: &mut PgConnection, sample: Option<u64>) -> anyhow::Result<Report> {
    let state = schema::state(conn).await?;
    let (courses, reviewers) = match sample {
        None => (None, None),
        Some(n) => {
            let (max_course, max_reviewer): (Option<i64>, Option<i64>) = sqlx::query_as(
                "SELECT (SELECT max(course_id) FROM ratings), (SELECT max(id) FROM reviewers)",
            )
            .fetch_one(&mut *conn)
            .await?;
            let mut courses = random_ids(max_course.unwrap_or(0), n);
            courses.push(1);
            (
                Some(courses),
                Some(random_ids(max_reviewer.unwrap_or(0), n)),
            )
        }
    };
    let (courses_checked, course_mismatch_count, ids, details): Found = sqlx::query_as(COURSES)
        .bind(courses)
        .bind(SHOWN)
        .fetch_one(&mut *conn)
        .await?;
    let course_mismatches = ids.into_iter().zip(details).collect();
    let (reviewers_checked, reviewer_mismatch_count, ids, details): Found =
        sqlx::query_as(REVIEWERS)
            .bind(reviewers)
            .bind(SHOWN)
            .fetch_one(&mut *conn)
            .await?;
    Ok(Report {
        state,
        courses_checked,
        reviewers_checked,
        course_mismatches,
        reviewer_mismatches: ids.into_iter().zip(details).collect(),
        course_mismatch_count,
        reviewer_mismatch_count,
    })
}

/// `n` random ids in `1..=max` (with repeats when `n` is near `max`).
fn random_ids(max: i64, n: u64) -> Vec<i64> {
    if max < 1 {
        return Vec::new();
    }
    let mut rng = rand::rng();
    (0..n).map(|_| rng.random_range(1..=max)).collect()
}
