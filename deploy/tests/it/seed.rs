//! `courser seed` and `courser verify` against a real Postgres: what a load leaves is
//! exactly what the spec says, consistent and repeatable, with the schema the migrations
//! made; a database holding other data is refused; an interrupted load is reported and
//! redone.

use std::process::Stdio;
use std::time::Duration;

use courser::seed::{self, Options, Spec, State};
use sqlx::PgConnection;

use crate::helpers::TestDb;

fn spec(scale: f64, seed: u64) -> Spec {
    Spec::from_scale(scale, seed)
        .expect("valid scale")
        .with_now(1_750_000_000)
}

fn demo_spec(seed: u64) -> Spec {
    spec(seed::DEFAULT_SCALE, seed)
}

/// `threads` reviewer generators and index builds at once.
fn options(threads: usize, reset: bool) -> Options {
    Options {
        threads,
        ..Options::new(reset)
    }
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

/// Every index and constraint of the three tables, with whether it is valid.
async fn schema(conn: &mut PgConnection) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        r#"SELECT d FROM (
               SELECT pg_get_indexdef(indexrelid) || ' valid=' || indisvalid AS d FROM pg_index
               WHERE indrelid IN ('ratings'::regclass, 'reviewers'::regclass, 'reviews'::regclass)
               UNION ALL
               SELECT conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
                      || ' valid=' || convalidated
               FROM pg_constraint
               WHERE conrelid IN ('ratings'::regclass, 'reviewers'::regclass, 'reviews'::regclass)
           ) s ORDER BY d"#,
    )
    .fetch_all(conn)
    .await
}

#[tokio::test]
async fn seeding_loads_the_documented_counts_with_exact_aggregates() -> anyhow::Result<()> {
    let db = TestDb::create().await?;
    let mut conn = db.connect().await?;
    assert!(seed::is_empty(&mut conn).await?);
    let migrated = schema(&mut conn).await?;
    assert!(migrated.len() >= 12, "{migrated:#?}");

    let summary = seed::load(&db.url, &demo_spec(1), &options(2, false)).await?;
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
    assert_eq!(
        schema(&mut conn).await?,
        migrated,
        "every index and key is back, as the migrations made it, and valid"
    );
    assert!(matches!(
        seed::state(&mut conn).await?,
        State::Complete { .. }
    ));

    // Every course's stored aggregate equals the one computed from its reviews, checked
    // here by a query independent of `verify`'s.
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
        "reviewers whose review_count differs"
    );

    let report = seed::verify(&mut conn, None).await?;
    assert!(report.is_ok(), "{report}");
    assert_eq!(
        (report.courses_checked, report.reviewers_checked),
        (1000, 1000)
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
async fn the_data_has_the_documented_shape() -> anyhow::Result<()> {
    let db = TestDb::create().await?;
    seed::load(&db.url, &spec(0.001, 3), &options(2, false)).await?;
    let mut conn = db.connect().await?;

    // Reviews per course: mean 15, falling with the id, heavy-tailed.
    let (courses, mean, median, top, top_course, p99): (i64, f64, f64, i32, i64, f64) =
        sqlx::query_as(
            r#"SELECT count(*), avg(review_count)::float8,
                      percentile_cont(0.5) WITHIN GROUP (ORDER BY review_count),
                      max(review_count),
                      (SELECT course_id FROM ratings ORDER BY review_count DESC, course_id LIMIT 1),
                      percentile_cont(0.99) WITHIN GROUP (ORDER BY review_count)
               FROM ratings"#,
        )
        .fetch_one(&mut conn)
        .await?;
    assert_eq!(courses, 10_000);
    assert!((mean - 15.0).abs() < 1e-9, "mean reviews per course {mean}");
    assert_eq!(top_course, 1, "course 1 has the most reviews");
    assert!(
        median < 15.0,
        "most courses have fewer than the mean: median {median}"
    );
    assert!(
        f64::from(top) > 100.0 * median,
        "top {top}, median {median}"
    );
    assert!(p99 > 5.0 * median, "p99 {p99}, median {median}");
    let falling: bool = sqlx::query_scalar(
        r#"SELECT bool_and(b.review_count <= a.review_count + 1)
           FROM ratings a JOIN ratings b ON b.course_id = a.course_id + 1"#,
    )
    .fetch_one(&mut conn)
    .await?;
    assert!(
        falling,
        "review counts fall with the course id (give or take rounding)"
    );

    // Ratings skewed high: mean above 3.5 stars, far more fives than ones.
    let (mean_stars, fives, ones): (f64, i64, i64) = sqlx::query_as(
        r#"SELECT avg(half_stars)::float8 / 2, count(*) FILTER (WHERE half_stars = 10),
                  count(*) FILTER (WHERE half_stars = 2)
           FROM reviews"#,
    )
    .fetch_one(&mut conn)
    .await?;
    assert!((3.5..4.5).contains(&mean_stars), "mean stars {mean_stars}");
    assert!(fives > 5 * ones, "fives {fives}, ones {ones}");

    // Comments: long-tailed lengths, median about 80, mean about 150, at most 1,000.
    let (median_len, mean_len, max_len, min_len): (f64, f64, i32, i32) = sqlx::query_as(
        r#"SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY char_length(comment)),
                  avg(char_length(comment))::float8, max(char_length(comment)),
                  min(char_length(comment))
           FROM reviews"#,
    )
    .fetch_one(&mut conn)
    .await?;
    assert!(
        (70.0..=90.0).contains(&median_len),
        "median comment {median_len}"
    );
    assert!(
        (135.0..=165.0).contains(&mean_len),
        "mean comment {mean_len}"
    );
    assert!(
        (700..=1000).contains(&max_len) && min_len >= 2,
        "{min_len}..{max_len}"
    );

    // Dates within five years before the spec's now; reviewers look like people.
    let (oldest, newest, bad_reviewers): (f64, f64, i64) = sqlx::query_as(
        r#"SELECT (SELECT extract(epoch FROM min(created_at))::float8 FROM reviews),
                  (SELECT extract(epoch FROM max(updated_at))::float8 FROM reviews),
                  (SELECT count(*) FROM reviewers
                   WHERE name !~ '^[A-Z][a-z]+ [A-Z]' OR picture !~ '^(https://|#[0-9a-f]{6}$)')"#,
    )
    .fetch_one(&mut conn)
    .await?;
    let five_years = 5.0 * 365.25 * 86_400.0;
    assert!(
        oldest >= 1_750_000_000.0 - five_years - 1.0,
        "oldest {oldest}"
    );
    assert!(newest <= 1_750_000_000.0, "newest {newest}");
    assert!(
        oldest < 1_750_000_000.0 - five_years * 0.9,
        "spread over five years"
    );
    assert_eq!(bad_reviewers, 0);

    // Ids follow the dates within a course, and the table is stored in id order (what
    // lets the primary key and reviews_by_recent build from presorted input).
    let (dated_out_of_order, stored_out_of_order): (i64, i64) = sqlx::query_as(
        r#"SELECT count(*) FILTER (WHERE created_at < previous_date),
                  count(*) FILTER (WHERE id < previous_stored)
           FROM (SELECT id, created_at,
                        lag(created_at) OVER (PARTITION BY course_id ORDER BY id) AS previous_date,
                        lag(id) OVER (ORDER BY ctid) AS previous_stored
                 FROM reviews) r"#,
    )
    .fetch_one(&mut conn)
    .await?;
    assert_eq!((dated_out_of_order, stored_out_of_order), (0, 0));

    drop(conn);
    db.drop().await
}

#[tokio::test]
async fn the_same_seed_gives_the_same_rows_whatever_the_threads() -> anyhow::Result<()> {
    let db = TestDb::create().await?;
    let mut conn = db.connect().await?;
    seed::load(&db.url, &demo_spec(7), &options(1, false)).await?;
    let first = fingerprint(&mut conn).await?;

    seed::load(&db.url, &demo_spec(7), &options(3, true)).await?;
    assert_eq!(fingerprint(&mut conn).await?, first, "3 threads, same rows");
    seed::load(&db.url, &demo_spec(7), &options(4, true)).await?;
    assert_eq!(fingerprint(&mut conn).await?, first, "4 threads, same rows");

    seed::load(&db.url, &demo_spec(8), &options(2, true)).await?;
    assert_ne!(
        fingerprint(&mut conn).await?,
        first,
        "another seed, other rows"
    );

    drop(conn);
    db.drop().await
}

#[tokio::test]
async fn seeding_a_database_without_the_schema_says_to_migrate_it() -> anyhow::Result<()> {
    let db = TestDb::create_unmigrated().await?;
    let err = seed::load(&db.url, &demo_spec(1), &options(2, true))
        .await
        .expect_err("no tables to load into");
    let message = format!("{err:#}");
    assert!(
        message.contains("no ratings, reviewers, reviews table") && message.contains("migrate"),
        "{message}"
    );
    db.drop().await
}

#[tokio::test]
async fn seeding_refuses_data_it_did_not_load_unless_reset() -> anyhow::Result<()> {
    let db = TestDb::create().await?;
    let mut conn = db.connect().await?;
    // Data written by someone else, not by a seed.
    sqlx::query("INSERT INTO ratings (course_id) VALUES (424242)")
        .execute(&mut conn)
        .await?;

    let refused = seed::load(&db.url, &demo_spec(1), &options(2, false)).await;
    let err = refused.expect_err("a database with data is refused");
    assert!(err.to_string().contains("--reset"), "{err:#}");
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM ratings WHERE course_id = 424242")
        .fetch_one(&mut conn)
        .await?;
    assert_eq!(kept, 1, "a refused seed changes nothing");
    assert_eq!(seed::state(&mut conn).await?, State::None);

    seed::load(&db.url, &demo_spec(1), &options(2, true)).await?;
    let gone: i64 = sqlx::query_scalar("SELECT count(*) FROM ratings WHERE course_id = 424242")
        .fetch_one(&mut conn)
        .await?;
    assert_eq!(gone, 0, "--reset empties the tables first");

    // A complete load is data too: loading again needs --reset.
    let again = seed::load(&db.url, &demo_spec(1), &options(2, false)).await;
    assert!(again.is_err_and(|err| err.to_string().contains("--reset")));

    drop(conn);
    db.drop().await
}

#[tokio::test]
async fn verify_reports_every_wrong_aggregate_with_its_id() -> anyhow::Result<()> {
    let db = TestDb::create().await?;
    seed::load(&db.url, &demo_spec(2), &options(2, false)).await?;
    let mut conn = db.connect().await?;
    sqlx::query("UPDATE ratings SET review_count = review_count + 1 WHERE course_id IN (1, 17)")
        .execute(&mut conn)
        .await?;
    sqlx::query("UPDATE ratings SET distribution[9] = distribution[9] + 1 WHERE course_id = 40")
        .execute(&mut conn)
        .await?;
    sqlx::query("UPDATE reviewers SET review_count = review_count + 2 WHERE id = 33")
        .execute(&mut conn)
        .await?;

    let report = seed::verify(&mut conn, None).await?;
    assert!(!report.is_ok());
    let courses: Vec<i64> = report.course_mismatches.iter().map(|m| m.0).collect();
    assert_eq!(courses, [1, 17, 40]);
    assert_eq!(report.course_mismatch_count, 3);
    let reviewers: Vec<i64> = report.reviewer_mismatches.iter().map(|m| m.0).collect();
    assert_eq!(reviewers, [33]);
    assert!(
        report.to_string().contains("reviewer 33: stored"),
        "{report}"
    );

    // A sample always includes course 1, the largest.
    let sampled = seed::verify(&mut conn, Some(10)).await?;
    assert!(
        sampled.course_mismatches.iter().any(|m| m.0 == 1),
        "{sampled}"
    );
    assert!(sampled.courses_checked <= 11);

    drop(conn);
    db.drop().await
}

/// Waits until `sql` (a boolean query) is true, polling quickly.
async fn wait_for(conn: &mut PgConnection, sql: &'static str) -> anyhow::Result<()> {
    for _ in 0..6000 {
        if sqlx::query_scalar::<_, bool>(sql)
            .fetch_one(&mut *conn)
            .await?
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    anyhow::bail!("timed out waiting for: {sql}")
}

/// Runs `courser seed` at `scale` into `db` and kills it (SIGKILL) once `sql` is true.
async fn kill_seed_when(db: &TestDb, scale: &str, sql: &'static str) -> anyhow::Result<()> {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_courser"))
        .args([
            "seed",
            "--reset",
            "--scale",
            scale,
            "--database-url",
            &db.url,
        ])
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let mut watcher = db.connect().await?;
    wait_for(&mut watcher, sql).await?;
    child.start_kill()?;
    let status = child.wait().await?;
    assert!(!status.success(), "the seed was killed, not finished");
    Ok(())
}

#[tokio::test]
async fn an_interrupted_load_is_reported_incomplete_and_loaded_again() -> anyhow::Result<()> {
    let db = TestDb::create().await?;
    let migrated = schema(&mut db.connect().await?).await?;

    // Killed while reviews stream in: nothing visible, but the indexes are gone.
    kill_seed_when(
        &db,
        "0.002",
        r#"SELECT EXISTS (SELECT 1 FROM pg_stat_progress_copy
                          WHERE datname = current_database() AND relid = 'reviews'::regclass
                            AND tuples_processed > 0)"#,
    )
    .await?;
    let mut conn = db.connect().await?;
    assert!(
        matches!(seed::state(&mut conn).await?, State::Incomplete { .. }),
        "the load is recorded as unfinished"
    );
    let report = seed::verify(&mut conn, None).await?;
    assert!(
        !report.is_ok() && report.to_string().contains("INCOMPLETE"),
        "{report}"
    );

    // Killed again while the indexes are built: rows are visible now, and still the
    // database does not look complete.
    kill_seed_when(
        &db,
        "0.002",
        r#"SELECT EXISTS (SELECT 1 FROM pg_stat_progress_create_index
                          WHERE datname = current_database() AND relid = 'reviews'::regclass)"#,
    )
    .await?;
    let reviews: i64 = sqlx::query_scalar("SELECT count(*) FROM reviews")
        .fetch_one(&mut conn)
        .await?;
    assert_eq!(
        reviews, 300_000,
        "the rows were in when the index builds began"
    );
    assert!(matches!(
        seed::state(&mut conn).await?,
        State::Incomplete { .. }
    ));
    assert_ne!(schema(&mut conn).await?, migrated, "indexes are missing");

    // Loading again needs no --reset: the partial data is the seed's own.
    seed::load(&db.url, &demo_spec(5), &options(2, false)).await?;
    assert!(matches!(
        seed::state(&mut conn).await?,
        State::Complete { .. }
    ));
    assert_eq!(schema(&mut conn).await?, migrated);
    let report = seed::verify(&mut conn, None).await?;
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.courses_checked, 1000);

    drop(conn);
    db.drop().await
}
