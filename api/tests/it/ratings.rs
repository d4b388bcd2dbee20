//! `/rating`: courses and their aggregates.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{assert_problem, ok_json, spawn_app};

fn empty_distribution() -> serde_json::Value {
    json!({"1": 0, "1.5": 0, "2": 0, "2.5": 0, "3": 0, "3.5": 0, "4": 0, "4.5": 0, "5": 0})
}

#[tokio::test]
async fn creating_a_course_gives_an_empty_aggregate_and_a_second_time_409() {
    let app = spawn_app().await;
    let response = app.post("/rating", json!({"course_id": 42})).await;
    assert_eq!(response.headers()["location"], "/rating/42");
    let rating = ok_json(response, StatusCode::CREATED).await;
    let empty = json!({"course_id": 42, "average": 0.0, "count": 0, "total_stars": 0.0, "distribution": empty_distribution()});
    assert_eq!(rating, empty);
    assert_eq!(app.rating(42).await, empty);
    assert_problem(
        app.post("/rating", json!({"course_id": 42})).await,
        StatusCode::CONFLICT,
        "already exists",
    )
    .await;
}

#[tokio::test]
async fn an_unknown_course_is_404_everywhere() {
    let app = spawn_app().await;
    assert_problem(
        app.get("/rating/7").await,
        StatusCode::NOT_FOUND,
        "course 7",
    )
    .await;
    assert_problem(
        app.put("/rating/7", json!(null)).await,
        StatusCode::NOT_FOUND,
        "course 7",
    )
    .await;
    assert_problem(
        app.delete("/rating/7").await,
        StatusCode::NOT_FOUND,
        "course 7",
    )
    .await;
    assert_problem(
        app.get("/course/7/reviews").await,
        StatusCode::NOT_FOUND,
        "course 7",
    )
    .await;
}

#[tokio::test]
async fn recompute_repairs_a_corrupted_aggregate_and_is_idempotent() {
    let app = spawn_app().await;
    app.create_course(1).await;
    let reviewer = app.create_reviewer("Eve").await;
    for rating in [5.0, 4.5, 4.5, 1.0] {
        app.create_review(1, reviewer, rating, "ok").await;
    }
    let correct = app.rating(1).await;
    assert_eq!(correct["count"], 4);
    assert_eq!(correct["total_stars"], 15.0);
    assert_eq!(correct["average"], 3.75);
    assert_eq!(correct["distribution"]["4.5"], 2);

    sqlx::query("UPDATE ratings SET review_count = 99, half_stars_sum = 3, distribution = '{9,9,9,9,9,9,9,9,9}'")
        .execute(&app.db)
        .await
        .unwrap();
    for _ in 0..2 {
        let repaired = ok_json(app.put("/rating/1", json!(null)).await, StatusCode::OK).await;
        assert_eq!(repaired, correct);
    }
    assert_eq!(app.rating(1).await, correct);
}

#[tokio::test]
async fn deleting_a_course_removes_its_reviews_and_moves_reviewer_counts_back() {
    let app = spawn_app().await;
    app.create_course(1).await;
    app.create_course(2).await;
    let (ann, ben) = (
        app.create_reviewer("Ann").await,
        app.create_reviewer("Ben").await,
    );
    let kept = app.create_review(2, ann, 3.0, "keep me").await;
    for reviewer in [ann, ann, ben] {
        app.create_review(1, reviewer, 4.0, "going").await;
    }
    assert_eq!(app.reviewer(ann).await["reviews"], 3);

    assert_eq!(
        app.delete("/rating/1").await.status(),
        StatusCode::NO_CONTENT
    );

    assert_eq!(app.reviewer(ann).await["reviews"], 1);
    assert_eq!(app.reviewer(ben).await["reviews"], 0);
    assert_eq!(app.get("/rating/1").await.status(), StatusCode::NOT_FOUND);
    let (left,): (i64,) = sqlx::query_as("SELECT count(*) FROM reviews")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(left, 1);
    assert_eq!(
        app.get(&format!("/review/{}", kept["id"])).await.status(),
        StatusCode::OK
    );
    assert_eq!(app.rating(2).await["count"], 1);
}
