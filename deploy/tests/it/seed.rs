//! `courser seed`: what it loads is exactly what the spec says, consistent, repeatable.

use courser::seed::{self, Spec};
use sqlx::PgConnection;

use crate::helpers::TestDb;

fn demo_spec(seed: u64) -> Spec {
    Spec::from_scale(seed::DEFAULT_SCALE, seed)
        .expect("valid scale")
        .with_now(1_750_000_000)
}

/// A digest of every row of the three tables, in id order.
async fn fingerprint(conn: &mut PgConnection) -> sqlx::Result<Vec<String>> {
    let mut digests = Vec::new();
    for sql in [
        r#"SELECT md5(string_agg(r::text, '|' ORDER BY course_id)) FROM ratings r"#,
        r#"SELECT md5(string_agg(r::text, '|' ORDER BY id)) FROM reviewers r"#,
        r#"SELECT md5(string_agg(r::text, '|' ORDER BY id)) FROM reviews r"#,
    ] {
        digests.push(sqlx::query_scalar(sql).fetch_one(&mut *conn).await?);
    }
    Ok(digests)
}

#[tokio::test]
async fn seeding_loads_the_documented_counts_with_exact_aggregates() -> anyhow::Result<()> {
    let db = TestDb::create().await?;
    let mut conn = db.connect().await?;
    assert!(seed::is_empty(&mut conn).await?);

    let summary = seed::load(&mut conn, &demo_spec(1), false).await?;
    assert_eq!(
        (summary.courses, summary.reviewers, summary.reviews),
        (1000, 1000, 15_000)
    );

    let counts: (i64, i64, i64) = sqlx::query_as(
        r#"SELECT (SELECT count(*) FROM ratings), (SELECT count(*) FROM reviewers), (SELECT count(*) FROM reviews)"#,
    )
    .fetch_one(&mut conn)
    .await?;
    assert_eq!(counts, (1000, 1000, 15_000));

    // Every course's stored aggregate equals the one computed from its reviews.
    let mismatched_courses: i64 = sqlx::query_scalar(
        r#"WITH actual AS (
               SELECT r.course_id,
                      (SELECT count(*)::int FROM reviews v WHERE v.course_id = r.course_id) AS review_count,
                      (SELECT COALESCE(sum(half_stars), 0)::bigint FROM reviews v
                       WHERE v.course_id = r.course_id) AS half_stars_sum,
                      ARRAY(SELECT (SELECT count(*)::int FROM reviews v
                                    WHERE v.course_id = r.course_id AND v.half_stars = h)
                            FROM generate_series(2, 10) h ORDER BY h) AS distribution
               FROM ratings r
           )
           SELECT count(*) FROM ratings r JOIN actual a USING (course_id)
           WHERE (r.review_count, r.half_stars_sum, r.distribution)
                 IS DISTINCT FROM (a.review_count, a.half_stars_sum, a.distribution)"#,
    )
    .fetch_one(&mut conn)
    .await?;
    assert_eq!(
        mismatched_courses, 0,
        "ratings rows that differ from their reviews"
    );

    let mismatched_reviewers: i64 = sqlx::query_scalar(
        r#"SELECT count(*) FROM reviewers p
           WHERE p.review_count <> (SELECT count(*) FROM reviews v WHERE v.reviewer_id = p.id)"#,
    )
    .fetch_one(&mut conn)
    .await?;
    assert_eq!(
        mismatched_reviewers, 0,
        "reviewers whose review_count differs from their reviews"
    );

    // The identity sequences moved past the loaded ids, so inserts without an id work.
    let reviewer: i64 =
        sqlx::query_scalar(r#"INSERT INTO reviewers (name) VALUES ('New Person') RETURNING id"#)
            .fetch_one(&mut conn)
            .await?;
    assert_eq!(reviewer, 1001);
    let review: i64 = sqlx::query_scalar(
        r#"INSERT INTO reviews (course_id, reviewer_id, half_stars, comment) VALUES (1, 1, 10, 'Fine.') RETURNING id"#,
    )
    .fetch_one(&mut conn)
    .await?;
    assert_eq!(review, 15_001);

    drop(conn);
    db.drop().await
}

#[tokio::test]
async fn seeding_refuses_a_loaded_database_and_reset_reloads_the_same_rows() -> anyhow::Result<()> {
    let db = TestDb::create().await?;
    let mut conn = db.connect().await?;
    seed::load(&mut conn, &demo_spec(7), false).await?;
    let first = fingerprint(&mut conn).await?;

    let refused = seed::load(&mut conn, &demo_spec(7), false).await;
    assert!(refused.is_err_and(|err| err.to_string().contains("--reset")));
    assert_eq!(
        fingerprint(&mut conn).await?,
        first,
        "a refused seed changes nothing"
    );

    seed::load(&mut conn, &demo_spec(7), true).await?;
    assert_eq!(
        fingerprint(&mut conn).await?,
        first,
        "the same seed gives the same rows"
    );

    seed::load(&mut conn, &demo_spec(8), true).await?;
    assert_ne!(
        fingerprint(&mut conn).await?,
        first,
        "another seed gives other rows"
    );

    drop(conn);
    db.drop().await
}
