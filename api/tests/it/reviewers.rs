//! `/reviewer`: create, read, update and delete reviewers.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{assert_problem, ok_json, spawn_app};

#[tokio::test]
async fn creating_a_reviewer_answers_201_with_location_and_defaults() {
    let app = spawn_app().await;
    let response = app
        .post("/reviewer", json!({"name": "Ada", "picture": "#3b82f6"}))
        .await;
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let reviewer = ok_json(response, StatusCode::CREATED).await;
    assert_eq!(location, format!("/reviewer/{}", reviewer["id"]));
    assert_eq!(
        reviewer,
        json!({"id": reviewer["id"], "name": "Ada", "picture": "#3b82f6", "courses_taken": 0, "reviews": 0})
    );
    assert_eq!(
        ok_json(app.get(&location).await, StatusCode::OK).await,
        reviewer
    );
}

#[tokio::test]
async fn updating_changes_only_the_fields_given_and_null_clears_the_picture() {
    let app = spawn_app().await;
    let response = app
        .post(
            "/reviewer",
            json!({"name": "Bo", "picture": "https://img.example/bo.png", "courses_taken": 4}),
        )
        .await;
    let id = ok_json(response, StatusCode::CREATED).await["id"]
        .as_i64()
        .unwrap();

    let renamed = ok_json(
        app.put(&format!("/reviewer/{id}"), json!({"name": "Bob"}))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(renamed["name"], "Bob");
    assert_eq!(renamed["picture"], "https://img.example/bo.png");
    assert_eq!(renamed["courses_taken"], 4);

    let cleared = ok_json(
        app.put(
            &format!("/reviewer/{id}"),
            json!({"picture": null, "courses_taken": 5}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(cleared["picture"], json!(null));
    assert_eq!(cleared["courses_taken"], 5);
    assert_eq!(cleared["name"], "Bob");
    assert_eq!(app.reviewer(id).await, cleared);
}

#[tokio::test]
async fn an_empty_update_or_unknown_reviewer_is_refused() {
    let app = spawn_app().await;
    let id = app.create_reviewer("Cy").await;
    assert_problem(
        app.put(&format!("/reviewer/{id}"), json!({})).await,
        StatusCode::BAD_REQUEST,
        "at least one",
    )
    .await;
    assert_problem(
        app.put("/reviewer/999999", json!({"name": "X"})).await,
        StatusCode::NOT_FOUND,
        "reviewer 999999",
    )
    .await;
    assert_problem(
        app.get("/reviewer/999999").await,
        StatusCode::NOT_FOUND,
        "reviewer 999999",
    )
    .await;
    assert_problem(
        app.delete("/reviewer/999999").await,
        StatusCode::NOT_FOUND,
        "reviewer 999999",
    )
    .await;
}

#[tokio::test]
async fn a_reviewer_with_reviews_cannot_be_deleted_until_they_are_gone() {
    let app = spawn_app().await;
    app.create_course(1).await;
    let id = app.create_reviewer("Di").await;
    let review = app.create_review(1, id, 4.0, "Good").await;

    assert_problem(
        app.delete(&format!("/reviewer/{id}")).await,
        StatusCode::CONFLICT,
        "still has reviews",
    )
    .await;
    assert_eq!(app.reviewer(id).await["reviews"], 1);

    assert_eq!(
        app.delete(&format!("/review/{}", review["id"]))
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.delete(&format!("/reviewer/{id}")).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_problem(
        app.get(&format!("/reviewer/{id}")).await,
        StatusCode::NOT_FOUND,
        "does not exist",
    )
    .await;
}
