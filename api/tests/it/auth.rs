//! Writes need a configured bearer key; reads are public.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{KEY, assert_problem, spawn_app};

#[tokio::test]
async fn writes_without_a_key_answer_401_and_change_nothing() {
    let app = spawn_app().await;
    app.create_course(1).await;
    let before = app.snapshot().await;
    let attempts = [
        (Method::POST, "/rating", json!({"course_id": 2})),
        (Method::POST, "/reviewer", json!({"name": "Ann"})),
        (Method::DELETE, "/rating/1", json!(null)),
        (Method::PUT, "/rating/1", json!(null)),
    ];
    for (method, path, body) in attempts {
        let response = app
            .client
            .request(method, app.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        assert_problem(response, StatusCode::UNAUTHORIZED, "Authorization").await;
    }
    assert_eq!(app.snapshot().await, before);
}

#[tokio::test]
async fn a_wrong_or_malformed_key_answers_401_and_changes_nothing() {
    let app = spawn_app().await;
    let before = app.snapshot().await;
    let wrong_keys = [
        format!("Bearer {KEY}x"),
        format!("Bearer {}", &KEY[1..]),
        "Bearer ".to_owned(),
        format!("bearer{KEY}"),
        format!("Basic {KEY}"),
        KEY.to_owned(),
    ];
    for header in wrong_keys {
        let response = app
            .client
            .post(app.url("/rating"))
            .header("authorization", header.as_str())
            .json(&json!({"course_id": 5}))
            .send()
            .await
            .unwrap();
        assert_problem(response, StatusCode::UNAUTHORIZED, "").await;
    }
    assert_eq!(app.snapshot().await, before);
}

#[tokio::test]
async fn every_configured_key_may_write() {
    let app = spawn_app().await;
    for (course, key) in app.config.api_keys.iter().enumerate() {
        let response = app
            .client
            .post(app.url("/rating"))
            .bearer_auth(key)
            .json(&json!({"course_id": course + 1}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
    }
}

#[tokio::test]
async fn reads_need_no_key() {
    let app = spawn_app().await;
    app.create_course(3).await;
    for path in [
        "/rating/3",
        "/course/3/reviews",
        "/healthz",
        "/openapi.json",
    ] {
        assert_eq!(app.get(path).await.status(), StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn an_unknown_path_answers_404_even_without_a_key() {
    let app = spawn_app().await;
    let response = app.client.post(app.url("/nowhere")).send().await.unwrap();
    assert_problem(response, StatusCode::NOT_FOUND, "/nowhere").await;
}
