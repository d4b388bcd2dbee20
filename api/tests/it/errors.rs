//! Bad input of every kind answers 4xx problem+json naming the problem, and changes nothing.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{KEY, TestApp, assert_problem, spawn_app};

/// A course 1, a reviewer and one review, for the requests below to aim at.
async fn app_with_a_review() -> (TestApp, i64, i64) {
    let app = spawn_app().await;
    app.create_course(1).await;
    let reviewer = app.create_reviewer("Ann").await;
    let review = app.create_review(1, reviewer, 4.0, "fine").await;
    (app, reviewer, review["id"].as_i64().unwrap())
}

#[tokio::test]
async fn invalid_json_bodies_answer_400_naming_the_problem_and_change_nothing() {
    let (app, reviewer, review) = app_with_a_review().await;
    let long = "x".repeat(5001);
    let review_path = format!("/review/{review}");
    let reviewer_path = format!("/reviewer/{reviewer}");
    let good = json!({"course_id": 1, "reviewer_id": reviewer, "rating": 4, "comment": "ok"});
    let with = |field: &str, value: serde_json::Value| {
        let mut body = good.clone();
        body[field] = value;
        body
    };
    let cases = vec![
        (
            "/review",
            Method::POST,
            with("rating", json!(4.3)),
            "half-star",
        ),
        (
            "/review",
            Method::POST,
            with("rating", json!(0.5)),
            "half-star",
        ),
        (
            "/review",
            Method::POST,
            with("rating", json!(5.5)),
            "half-star",
        ),
        (
            "/review",
            Method::POST,
            with("rating", json!("5")),
            "rating",
        ),
        (
            "/review",
            Method::POST,
            with("comment", json!("")),
            "comment",
        ),
        (
            "/review",
            Method::POST,
            with("comment", json!("   ")),
            "comment",
        ),
        (
            "/review",
            Method::POST,
            with("comment", json!(long)),
            "5000",
        ),
        (
            "/review",
            Method::POST,
            with("comment", json!("nul\u{0}byte")),
            "NUL",
        ),
        (
            "/review",
            Method::POST,
            with("comment", json!(42)),
            "comment",
        ),
        (
            "/review",
            Method::POST,
            with("course_id", json!(0)),
            "course id",
        ),
        (
            "/review",
            Method::POST,
            with("course_id", json!(-3)),
            "course id",
        ),
        (
            "/review",
            Method::POST,
            with("course_id", json!("1")),
            "course_id",
        ),
        (
            "/review",
            Method::POST,
            with("course_id", json!(1.5)),
            "course_id",
        ),
        (
            "/review",
            Method::POST,
            with("course_id", json!(u64::MAX)),
            "out of range",
        ),
        (
            "/review",
            Method::POST,
            with("reviewer_id", json!(null)),
            "reviewer_id",
        ),
        (
            "/review",
            Method::POST,
            with("surprise", json!(1)),
            "surprise",
        ),
        (
            "/review",
            Method::POST,
            json!({"course_id": 1, "reviewer_id": reviewer, "rating": 4}),
            "comment",
        ),
        ("/review", Method::POST, json!([1, 2]), "expected"),
        (&review_path, Method::PUT, json!({}), "at least one"),
        (&review_path, Method::PUT, json!({"rating": 6}), "half-star"),
        (
            &review_path,
            Method::PUT,
            json!({"course_id": 2}),
            "course_id",
        ),
        ("/reviewer", Method::POST, json!({"name": ""}), "name"),
        (
            "/reviewer",
            Method::POST,
            json!({"name": "x".repeat(256)}),
            "255",
        ),
        (
            "/reviewer",
            Method::POST,
            json!({"name": "Al", "picture": "javascript:alert(1)"}),
            "picture",
        ),
        (
            "/reviewer",
            Method::POST,
            json!({"name": "Al", "courses_taken": -1}),
            "courses_taken",
        ),
        (
            "/reviewer",
            Method::POST,
            json!({"name": "Al", "courses_taken": 3_000_000_000_i64}),
            "courses_taken",
        ),
        (
            "/reviewer",
            Method::POST,
            json!({"picture": "#fff"}),
            "name",
        ),
        (
            &reviewer_path,
            Method::PUT,
            json!({"reviews": 100}),
            "reviews",
        ),
        (
            &reviewer_path,
            Method::PUT,
            json!({"picture": 7}),
            "picture",
        ),
        (&reviewer_path, Method::PUT, json!({"name": null}), "name"),
        (
            &reviewer_path,
            Method::PUT,
            json!({"courses_taken": null}),
            "courses_taken",
        ),
        (&review_path, Method::PUT, json!({"rating": null}), "rating"),
        (
            &review_path,
            Method::PUT,
            json!({"comment": null, "rating": 3}),
            "comment",
        ),
        (
            "/rating",
            Method::POST,
            json!({"course_id": "abc"}),
            "course_id",
        ),
        ("/rating", Method::POST, json!({}), "course_id"),
    ];
    let before = app.snapshot().await;
    for (path, method, body, detail) in cases {
        let response = app.write(method.clone(), path, Some(body.clone())).await;
        let status = response.status();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {path} {body}");
        assert_problem(response, status, detail).await;
    }
    assert_eq!(app.snapshot().await, before);
}

#[tokio::test]
async fn malformed_bodies_wrong_content_types_and_oversized_bodies_are_refused() {
    let (app, _, _) = app_with_a_review().await;
    let before = app.snapshot().await;
    let send = |body: Vec<u8>, content_type: Option<&'static str>| {
        let mut request = app
            .client
            .post(app.url("/reviewer"))
            .bearer_auth(KEY)
            .body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        request.send()
    };
    let json = Some("application/json");
    assert_problem(
        send(b"{\"name\": ".to_vec(), json).await.unwrap(),
        StatusCode::BAD_REQUEST,
        "EOF",
    )
    .await;
    assert_problem(
        send(b"not json".to_vec(), json).await.unwrap(),
        StatusCode::BAD_REQUEST,
        "expected",
    )
    .await;
    assert_problem(
        send(b"".to_vec(), json).await.unwrap(),
        StatusCode::BAD_REQUEST,
        "EOF",
    )
    .await;
    assert_problem(
        send(vec![0xff, 0xfe], json).await.unwrap(),
        StatusCode::BAD_REQUEST,
        "",
    )
    .await;
    assert_problem(
        send(b"{\"name\":\"A\"}".to_vec(), Some("text/plain"))
            .await
            .unwrap(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "Content-Type",
    )
    .await;
    assert_problem(
        send(b"{\"name\":\"A\"}".to_vec(), None).await.unwrap(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "JSON",
    )
    .await;
    let huge = format!("{{\"name\": \"{}\"}}", "x".repeat(2 * 1024 * 1024));
    assert_problem(
        send(huge.into_bytes(), json).await.unwrap(),
        StatusCode::PAYLOAD_TOO_LARGE,
        "",
    )
    .await;
    assert_eq!(app.snapshot().await, before);
}

#[tokio::test]
async fn bad_ids_in_paths_answer_400_and_unknown_routes_or_methods_are_problems_too() {
    let (app, _, _) = app_with_a_review().await;
    for path in [
        "/review/abc",
        "/review/0",
        "/review/-1",
        "/review/99999999999999999999",
        "/review/1.5",
        "/reviewer/%20",
        "/rating/0x10",
        "/course/abc/reviews",
        "/course/0/reviews",
    ] {
        let response = app.get(path).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{path}");
        assert_problem(response, StatusCode::BAD_REQUEST, "").await;
    }
    assert_problem(app.get("/reviews").await, StatusCode::NOT_FOUND, "/reviews").await;
    assert_problem(
        app.get("/course/1").await,
        StatusCode::NOT_FOUND,
        "/course/1",
    )
    .await;
    let patch = app
        .client
        .patch(app.url("/review/1"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_problem(patch, StatusCode::METHOD_NOT_ALLOWED, "PATCH").await;
    let put = app.write(Method::PUT, "/review", Some(json!({}))).await;
    assert_problem(put, StatusCode::METHOD_NOT_ALLOWED, "PUT").await;
}

// Found by scripts/fuzz-api (schemathesis): the document said these were valid input.

#[tokio::test]
async fn integers_written_with_a_zero_fraction_are_integers_as_the_document_says() {
    let app = spawn_app().await;
    let created = app.post("/rating", json!({"course_id": 5.0})).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    // A whole number below 2^53 is exact in a double, so its decimal text must be read
    // exactly: serde_json's default float parsing read this one as ….25 (it needs the
    // `float_roundtrip` feature).
    let large = json!({"course_id": 2_251_799_813_685_247.0_f64});
    assert_eq!(
        app.post("/rating", large).await.status(),
        StatusCode::CREATED
    );
    let reviewer = app
        .post("/reviewer", json!({"name": "Ann", "courses_taken": 3.0}))
        .await;
    let reviewer: serde_json::Value = reviewer.json().await.unwrap();
    assert_eq!(reviewer["courses_taken"], 3);
    let review = app
        .post(
            "/review",
            json!({"course_id": 5.0, "reviewer_id": reviewer["id"].as_f64(), "rating": 4, "comment": "ok"}),
        )
        .await;
    assert_eq!(review.status(), StatusCode::CREATED);
    let before = app.snapshot().await;
    for (body, detail) in [
        (json!({"course_id": 5.5}), "integer"),
        (json!({"course_id": 1e19}), "out of range"),
        (json!({"course_id": -2.0}), "positive"),
    ] {
        assert_problem(
            app.post("/rating", body).await,
            StatusCode::BAD_REQUEST,
            detail,
        )
        .await;
    }
    assert_eq!(app.snapshot().await, before);
}

#[tokio::test]
async fn update_bodies_with_no_field_or_a_null_field_answer_400_and_change_nothing() {
    let (app, reviewer, review) = app_with_a_review().await;
    let before = app.snapshot().await;
    for (path, body, detail) in [
        (format!("/review/{review}"), json!({}), "at least one"),
        (
            format!("/review/{review}"),
            json!({"rating": null}),
            "rating",
        ),
        (format!("/reviewer/{reviewer}"), json!({}), "at least one"),
        (
            format!("/reviewer/{reviewer}"),
            json!({"name": null}),
            "name",
        ),
    ] {
        assert_problem(app.put(&path, body).await, StatusCode::BAD_REQUEST, detail).await;
    }
    assert_eq!(app.snapshot().await, before);
}
