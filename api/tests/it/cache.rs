//! Through two api instances sharing Postgres and Redis: after every kind of write on
//! one, the other serves the new state within the freshness bound (100 ms).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

struct Pair {
    writer: TestApp,
    reader: SocketAddr,
}

impl Pair {
    async fn new() -> Self {
        let writer = spawn_app().await;
        let reader = writer.another_instance().await;
        // Let both invalidation buses subscribe before the test relies on them.
        tokio::time::sleep(Duration::from_millis(200)).await;
        Self { writer, reader }
    }

    async fn read(&self, path: &str) -> (StatusCode, Value) {
        let response = self
            .writer
            .client
            .get(format!("http://{}{path}", self.reader))
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Reads `path` on the reader twice, so that its tiers hold it.
    async fn warm(&self, path: &str) -> Value {
        self.read(path).await;
        self.read(path).await.1
    }

    /// Polls the reader until `seen` holds; fails past the freshness bound.
    async fn until(&self, path: &str, what: &str, seen: impl Fn(StatusCode, &Value) -> bool) {
        let start = Instant::now();
        loop {
            let (status, body) = self.read(path).await;
            if seen(status, &body) {
                return;
            }
            let waited = start.elapsed();
            assert!(
                waited < Duration::from_millis(100),
                "{what}: still {status} {body} after {waited:?}"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

const PAGE: &str = "/course/1/reviews";

async fn pair_with_a_review() -> (Pair, i64, i64) {
    let pair = Pair::new().await;
    pair.writer.create_course(1).await;
    let reviewer = pair.writer.create_reviewer("Ann").await;
    let review = pair.writer.create_review(1, reviewer, 3.0, "first").await;
    (pair, reviewer, review["id"].as_i64().unwrap())
}

#[tokio::test]
async fn a_new_review_shows_on_the_other_instance_within_the_bound() {
    let (pair, reviewer, _) = pair_with_a_review().await;
    assert_eq!(
        pair.warm(PAGE).await["reviews"].as_array().unwrap().len(),
        1
    );
    pair.writer.create_review(1, reviewer, 5.0, "second").await;
    pair.until(PAGE, "new review", |_, page| {
        page["reviews"].as_array().is_some_and(|r| r.len() == 2)
            && page["rating"]["count"] == 2
            && page["reviews"][0]["reviewer"]["reviews"] == 2
    })
    .await;
}

#[tokio::test]
async fn edits_helpful_marks_reports_and_deletes_show_on_the_other_instance() {
    let (pair, _, id) = pair_with_a_review().await;
    let review = format!("/review/{id}");
    pair.warm(PAGE).await;

    pair.writer
        .put(&review, json!({"rating": 4.5, "comment": "edited"}))
        .await;
    pair.until(PAGE, "edit", |_, p| {
        p["reviews"][0]["comment"] == "edited" && p["rating"]["total_stars"] == 4.5
    })
    .await;

    pair.writer
        .post(&format!("{review}/helpful"), json!(null))
        .await;
    pair.until(PAGE, "helpful", |_, p| p["reviews"][0]["helpful"] == 1)
        .await;

    pair.writer
        .post(&format!("{review}/report"), json!(null))
        .await;
    pair.until(PAGE, "report", |_, p| p["reviews"] == json!([]))
        .await;

    pair.writer.delete(&review).await;
    pair.until(PAGE, "delete", |_, p| p["rating"]["count"] == 0)
        .await;
}

#[tokio::test]
async fn a_renamed_reviewer_shows_on_every_page_of_the_other_instance() {
    let (pair, reviewer, _) = pair_with_a_review().await;
    pair.writer.create_course(2).await;
    pair.writer
        .create_review(2, reviewer, 4.0, "other course")
        .await;
    pair.warm(PAGE).await;
    pair.warm("/course/2/reviews").await;

    pair.writer
        .put(&format!("/reviewer/{reviewer}"), json!({"name": "Annabel"}))
        .await;
    for page in [PAGE, "/course/2/reviews"] {
        pair.until(page, "rename", |_, p| {
            p["reviews"][0]["reviewer"]["name"] == "Annabel"
        })
        .await;
    }
}

#[tokio::test]
async fn creating_repairing_and_deleting_a_course_show_on_the_other_instance() {
    let (pair, reviewer, _) = pair_with_a_review().await;
    let (status, _) = pair.read("/course/9/reviews").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    pair.writer.create_course(9).await;
    pair.until("/course/9/reviews", "create", |status, _| {
        status == StatusCode::OK
    })
    .await;

    pair.warm(PAGE).await;
    sqlx::query("UPDATE ratings SET review_count = 7 WHERE course_id = 1")
        .execute(&pair.writer.db)
        .await
        .unwrap();
    pair.writer.put("/rating/1", json!(null)).await;
    pair.until(PAGE, "recompute", |_, p| p["rating"]["count"] == 1)
        .await;

    pair.writer.create_course(2).await;
    pair.writer
        .create_review(2, reviewer, 4.0, "elsewhere")
        .await;
    pair.warm("/course/2/reviews").await;
    assert_eq!(
        pair.writer.delete("/rating/1").await.status(),
        StatusCode::NO_CONTENT
    );
    pair.until(PAGE, "course delete", |status, _| {
        status == StatusCode::NOT_FOUND
    })
    .await;
    // The reviewer's count on other courses' pages moves back too.
    pair.until("/course/2/reviews", "count", |_, p| {
        p["reviews"][0]["reviewer"]["reviews"] == 1
    })
    .await;
}

#[tokio::test]
async fn cached_pages_answer_the_same_bytes_and_etag_as_fresh_ones() {
    let (pair, _, _) = pair_with_a_review().await;
    let fresh = pair.writer.get(PAGE).await;
    let etag = fresh.headers()["etag"].clone();
    let body = fresh.text().await.unwrap();
    for _ in 0..3 {
        let cached = pair.writer.get(PAGE).await;
        assert_eq!(cached.headers()["etag"], etag);
        assert_eq!(cached.text().await.unwrap(), body);
    }
    let metrics = pair.writer.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"courser_api_cache_hits_total{tier="local",kind="page"} 3"#),
        "{metrics}"
    );
}
