//! Writes need a configured bearer key; reads are public.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{KEY, TestApp, assert_problem, spawn_app};

/// Every write the API has, aimed at rows that exist, with a body that would succeed.
async fn every_write(app: &TestApp) -> Vec<(Method, String, Value)> {
    app.create_course(1).await;
    let reviewer = app.create_reviewer("Ann").await;
    let review = app.create_review(1, reviewer, 4.0, "fine").await["id"].clone();
    vec![
        (Method::POST, "/rating".into(), json!({"course_id": 2})),
        (Method::PUT, "/rating/1".into(), json!(null)),
        (Method::DELETE, "/rating/1".into(), json!(null)),
        (Method::POST, "/reviewer".into(), json!({"name": "Bo"})),
        (
            Method::PUT,
            format!("/reviewer/{reviewer}"),
            json!({"name": "Cy"}),
        ),
        (Method::DELETE, format!("/reviewer/{reviewer}"), json!(null)),
        (
            Method::POST,
            "/review".into(),
            json!({"course_id": 1, "reviewer_id": reviewer, "rating": 3, "comment": "x"}),
        ),
        (
            Method::PUT,
            format!("/review/{review}"),
            json!({"rating": 1}),
        ),
        (Method::DELETE, format!("/review/{review}"), json!(null)),
        (
            Method::POST,
            format!("/review/{review}/helpful"),
            json!(null),
        ),
        (
            Method::POST,
            format!("/review/{review}/report"),
            json!(null),
        ),
    ]
}

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
async fn every_write_endpoint_refuses_a_missing_or_wrong_key_and_changes_nothing() {
    let app = spawn_app().await;
    let writes = every_write(&app).await;
    let before = app.snapshot().await;
    for (method, path, body) in &writes {
        for key in [None, Some("wrong-key-0123456789abcdef"), Some("")] {
            let mut request = app.client.request(method.clone(), app.url(path)).json(body);
            if let Some(key) = key {
                request = request.bearer_auth(key);
            }
            let response = request.send().await.unwrap();
            assert_eq!(
                response.status(),
                StatusCode::UNAUTHORIZED,
                "{method} {path} with {key:?}"
            );
            assert_problem(response, StatusCode::UNAUTHORIZED, "").await;
        }
    }
    assert_eq!(app.snapshot().await, before);
}

#[tokio::test]
async fn a_flood_of_bad_keys_is_refused_every_time_and_the_real_key_still_works() {
    let app = spawn_app().await;
    let writes = every_write(&app).await;
    let before = app.snapshot().await;
    // 1,000 attempts, 50 at a time: random keys, near misses of the real key (each
    // byte changed in turn, prefixes, extensions) and junk headers.
    let mut keys: Vec<String> = (0..400)
        .map(|_| format!("{:032x}", rand::random::<u128>()))
        .collect();
    for i in 0..KEY.len() {
        let mut near = KEY.as_bytes().to_vec();
        near[i] = if near[i] == b'x' { b'y' } else { b'x' };
        keys.push(String::from_utf8(near).unwrap());
        keys.push(KEY[..i].to_owned());
    }
    keys.push(format!("{KEY}{KEY}"));
    keys.push(KEY.to_uppercase());
    keys.push("x".repeat(8000));
    let attempts: Vec<(usize, &String)> = (0..1000).map(|i| (i, &keys[i % keys.len()])).collect();
    for chunk in attempts.chunks(50) {
        let requests = chunk.iter().map(|(i, key)| {
            let (method, path, body) = &writes[i % writes.len()];
            app.client
                .request(method.clone(), app.url(path))
                .bearer_auth(key)
                .json(body)
                .send()
        });
        for response in futures_util::future::join_all(requests).await {
            assert_eq!(response.unwrap().status(), StatusCode::UNAUTHORIZED);
        }
    }
    assert_eq!(app.snapshot().await, before);
    // No lock-out: the configured key writes at once.
    app.create_course(77).await;
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
async fn the_scheme_name_is_case_insensitive_but_the_key_is_not() {
    let app = spawn_app().await;
    for (course, scheme) in ["bearer", "BEARER", "beaRer"].iter().enumerate() {
        let response = app
            .client
            .post(app.url("/rating"))
            .header("authorization", format!("{scheme} {KEY}"))
            .json(&json!({"course_id": course + 1}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED, "{scheme}");
    }
    let response = app
        .client
        .post(app.url("/rating"))
        .header("authorization", format!("Bearer {}", KEY.to_uppercase()))
        .json(&json!({"course_id": 9}))
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::UNAUTHORIZED, "not valid").await;
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
