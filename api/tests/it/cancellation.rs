//! Writes that lose their client, or outlast the request time limit, are not cut off
//! halfway: a write cancelled after its commit never invalidated the caches (its change
//! unseen until their TTL), and one answered 503 might still commit and be sent again.

use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use reqwest::StatusCode;
use serde_json::json;
use sqlx::Row as _;
use sqlx::postgres::PgPoolOptions;

use crate::helpers::{KEY, TestDb, spawn_app, spawn_app_with, test_config};

#[tokio::test]
async fn a_write_whose_client_left_still_commits_and_reaches_the_cached_page() {
    let app = spawn_app().await;
    app.create_course(1).await;
    let reviewer = app.create_reviewer("Ann").await;
    // Cached now, in both tiers.
    assert_eq!(app.course_page(1, "").await["rating"]["count"], 0);

    let lock = app.lock_course(1).await;
    let gave_up = app
        .client
        .post(app.url("/review"))
        .bearer_auth(KEY)
        .json(&json!({"course_id": 1, "reviewer_id": reviewer, "rating": 4.0, "comment": "Left early"}))
        .timeout(Duration::from_millis(300))
        .send()
        .await
        .expect_err("the write waits on the lock past the client's timeout");
    assert!(gave_up.is_timeout(), "{gave_up}");
    // Time for the server to see the connection close before the write can go on.
    tokio::time::sleep(Duration::from_millis(300)).await;
    lock.commit().await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let page = app.course_page(1, "").await;
        if page["rating"]["count"] == 1 {
            assert_eq!(page["reviews"][0]["comment"], "Left early");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the write was dropped with its client, or the cached page never learnt of it: {page}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM reviews WHERE course_id = 1")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(stored, 1);
}

#[tokio::test]
async fn the_time_limit_answers_a_slow_read_503_and_lets_a_slow_write_finish() {
    let test_db = TestDb::create().await;
    let config = courser_api::Config {
        request_timeout_ms: 300,
        ..test_config(&test_db.url)
    };
    let app = spawn_app_with(config, test_db).await;
    app.create_course(1).await;
    let reviewer = app.create_reviewer("Ann").await;

    // Course 1's page is not cached yet, so reading it waits on the table too.
    let mut lock = app.db.begin().await.unwrap();
    sqlx::query("LOCK TABLE ratings IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let body = json!({"course_id": 1, "reviewer_id": reviewer, "rating": 4.0, "comment": "Slow"});
    let (read, write, ()) = tokio::join!(
        app.get("/course/1/reviews"),
        app.post("/review", body),
        async {
            tokio::time::sleep(Duration::from_millis(900)).await;
            lock.commit().await.unwrap();
        }
    );
    assert_eq!(read.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        write.status(),
        StatusCode::CREATED,
        "{}",
        write.text().await.unwrap()
    );
    assert_eq!(app.rating(1).await["count"], 1);
}

/// sqlx 0.9.0 counted a transaction only once `BEGIN` had come back, so a `begin()`
/// cancelled in between put its connection back in the pool inside a transaction that
/// nothing ended: the next borrower's statements ran in it, uncommitted, and under W3's
/// overload acknowledged writes went unseen for seconds (transact-rs/sqlx#4393, fixed
/// in 0.9.1).
#[tokio::test]
async fn a_cancelled_begin_leaves_no_transaction_open_in_the_pool() {
    let test_db = TestDb::create().await;
    let pool = PgPoolOptions::new()
        .max_connections(1)
        // So that the first poll of `begin()` gets as far as sending `BEGIN`.
        .test_before_acquire(false)
        .connect(&test_db.url)
        .await
        .unwrap();
    let mut cancelled = 0;
    for attempt in 0..40 {
        // One poll sends `BEGIN`; dropping the future then is what a client leaving does.
        // On a quiet machine Postgres may answer within that poll: then nothing was cut
        // off, and the transaction is dropped whole (which rolls it back).
        if let Some(begun) = pool.begin().now_or_never() {
            drop(begun.unwrap());
            continue;
        }
        cancelled += 1;
        // As a simple query, a statement outside a transaction is its own transaction,
        // which starts with it.
        let row = sqlx::raw_sql("SELECT now() <> statement_timestamp()")
            .fetch_one(&pool)
            .await
            .unwrap();
        let inside_a_transaction: bool = row.get(0);
        assert!(
            !inside_a_transaction,
            "attempt {attempt}: a statement ran inside the cancelled transaction"
        );
    }
    assert!(
        cancelled >= 10,
        "only {cancelled} of 40 begins were cut off midway"
    );
}
