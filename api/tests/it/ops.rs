//! Operations endpoints: health, readiness, metrics and the OpenAPI document.

use std::time::{Duration, Instant};

use courser_api::{Application, Config};
use courser_exposition::testing::sample_sum;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::Connection as _;

use crate::helpers::{TestDb, assert_problem, ok_json, spawn_app, test_config};

#[tokio::test]
async fn health_and_readiness_answer_200_while_the_database_is_up() {
    let app = spawn_app().await;
    assert_eq!(
        ok_json(app.get("/healthz").await, StatusCode::OK).await["status"],
        "ok"
    );
    assert_eq!(
        ok_json(app.get("/readyz").await, StatusCode::OK).await["status"],
        "ready"
    );
}

#[tokio::test]
async fn readiness_answers_503_when_the_database_is_gone_while_health_stays_200() {
    let app = spawn_app().await;
    app.test_db.drop_now().await;
    assert_problem(
        app.get("/readyz").await,
        StatusCode::SERVICE_UNAVAILABLE,
        "database",
    )
    .await;
    assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);
    let response = app.get("/rating/1").await;
    assert_eq!(response.headers()["retry-after"], "1");
    assert_problem(response, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
}

/// A fast shutdown of Postgres first shows as its sessions being terminated (57P01);
/// idle pooled connections hear of it only when the postmaster exits. Each instance
/// keeps a session busy to hear it at once: terminating that session, as a shutdown
/// would, marks the database down without any request waiting, and the next retry
/// finds it up again. Postgres itself is up all along, so only the sentinel can have
/// marked it down. The mark lasts one retry interval (250 ms), too short to catch
/// reliably on a loaded machine, so the test reads the count of marks instead.
#[tokio::test]
async fn the_end_of_the_sentinel_session_marks_the_database_down_until_a_retry_finds_it() {
    let app = spawn_app().await;
    assert_eq!(app.get("/readyz").await.status(), StatusCode::OK);
    let marks = async || {
        let text = app.get("/metrics").await.text().await.unwrap();
        sample_sum(&text, "courser_api_db_unreachable_total", &[])
    };
    assert_eq!(marks().await, 0.0, "marked down while Postgres is up");
    let mut admin = sqlx::PgConnection::connect(&crate::helpers::admin_url())
        .await
        .unwrap();
    let terminate = "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                     WHERE datname = $1 AND application_name = 'courser-api reachability sentinel'";
    let start = Instant::now();
    loop {
        let ended: i64 = sqlx::query_scalar(terminate)
            .bind(&app.test_db.name)
            .fetch_one(&mut admin)
            .await
            .unwrap();
        if ended == 1 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no sentinel session"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let start = Instant::now();
    while marks().await < 1.0 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the sentinel's end never marked the database down"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(marks().await, 1.0, "one end, one mark");
    let start = Instant::now();
    while app.get("/readyz").await.status() != StatusCode::OK {
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "no retry found the database up again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_stopping_instance_leaves_the_balancer_then_stops_once_requests_cease() {
    let test_db = TestDb::create().await;
    let config = Config {
        shutdown_drain_ms: 30_000,
        ..test_config(&test_db.url)
    };
    let app = Application::build(&config).await.unwrap();
    let addr = app.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    let get = |path: &str| client.get(format!("http://{addr}{path}")).send();

    let before = get("/healthz").await.unwrap();
    assert!(before.headers().get("connection").is_none(), "kept alive");
    stop.send(()).unwrap();
    let start = Instant::now();
    while get("/readyz").await.unwrap().status() != StatusCode::SERVICE_UNAVAILABLE {
        assert!(start.elapsed() < Duration::from_secs(2), "still ready");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_problem(
        get("/readyz").await.unwrap(),
        StatusCode::SERVICE_UNAVAILABLE,
        "shutting down",
    )
    .await;

    // Still serving while the balancer lets it go, each connection closed after use.
    for _ in 0..5 {
        let during = get("/healthz").await.unwrap();
        assert_eq!(during.status(), StatusCode::OK);
        assert_eq!(during.headers()["connection"], "close");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!server.is_finished(), "stopped while requests still came");
    let last_request = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("stops once requests cease, long before its 30 s limit")
        .unwrap()
        .unwrap();
    assert!(
        last_request.elapsed() >= Duration::from_millis(400),
        "stopped {:?} after the last request, before it was quiet",
        last_request.elapsed()
    );
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_and_status() {
    let app = spawn_app().await;
    app.create_course(5).await;
    for _ in 0..3 {
        app.get("/rating/5").await;
    }
    app.get("/rating/6").await;
    app.get("/no/such/path").await;

    let response = app.get("/metrics").await;
    // reqwest does not ask for OpenMetrics: the classic text format.
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = response.text().await.unwrap();
    let has = |line: &str| text.lines().any(|l| l == line);
    assert!(
        has(
            r#"courser_api_http_requests_total{method="GET",route="/rating/{course_id}",status="200"} 3"#
        ),
        "{text}"
    );
    assert!(
        has(
            r#"courser_api_http_requests_total{method="GET",route="/rating/{course_id}",status="404"} 1"#
        ),
        "{text}"
    );
    assert!(
        has(r#"courser_api_http_requests_total{method="POST",route="/rating",status="201"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(
            r#"courser_api_http_requests_total{method="GET",route="unmatched",status="404"} 1"#
        ),
        "{text}"
    );
    assert!(
        !text.contains("/rating/5"),
        "raw paths must not become labels"
    );
    assert!(
        has(
            r#"courser_api_http_request_duration_seconds_count{method="GET",route="/rating/{course_id}"} 4"#
        ),
        "{text}"
    );
    assert!(has(r#"courser_api_db_pool_max_connections 8"#), "{text}");
    assert!(
        text.contains(r#"courser_api_db_pool_connections{state="idle"}"#),
        "{text}"
    );
}

/// Every endpoint of API.md, with the methods it answers.
const CONTRACT: &[(&str, &[&str])] = &[
    ("/course/{course_id}/reviews", &["get"]),
    ("/review", &["post"]),
    ("/review/{id}", &["get", "put", "delete"]),
    ("/review/{id}/helpful", &["post"]),
    ("/review/{id}/report", &["post"]),
    ("/reviewer", &["post"]),
    ("/reviewer/{id}", &["get", "put", "delete"]),
    ("/rating", &["post"]),
    ("/rating/{course_id}", &["get", "put", "delete"]),
];

#[tokio::test]
async fn the_openapi_document_describes_every_endpoint_of_the_contract() {
    let app = spawn_app().await;
    let document: Value = ok_json(app.get("/openapi.json").await, StatusCode::OK).await;
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1"));
    for (path, methods) in CONTRACT {
        for method in *methods {
            let operation = &document["paths"][path][method];
            assert!(operation.is_object(), "{method} {path} is missing");
            let writes = *method != "get";
            assert_eq!(
                operation["security"].is_array(),
                writes,
                "{method} {path} security"
            );
            let responses = operation["responses"].as_object().unwrap();
            assert!(responses.len() >= 2, "{method} {path}");
            // What any request to the operation can answer, found missing by schemathesis.
            let mut always = vec!["503"];
            if path.contains('{') {
                always.push("400");
            }
            if operation["requestBody"].is_object() {
                always.extend(["400", "413", "415"]);
            }
            if writes {
                always.push("401");
            }
            for status in always {
                assert!(
                    responses.contains_key(status),
                    "{method} {path} lacks {status}"
                );
            }
        }
    }
    let schemas = &document["components"]["schemas"];
    assert_eq!(schemas["Rating"]["multipleOf"], json!(0.5));
    assert_eq!(schemas["Comment"]["maxLength"], json!(5000));
    assert!(schemas["Problem"].is_object());
    assert_eq!(schemas["CourseId"]["maximum"], json!(i64::MAX));
    for update in ["ReviewChanges", "ReviewerUpdate"] {
        assert_eq!(schemas[update]["minProperties"], json!(1), "{update}");
        assert!(schemas[update].get("maxProperties").is_none(), "{update}");
    }
    assert_eq!(
        schemas["ReviewChanges"]["properties"]["rating"],
        json!({"$ref": "#/components/schemas/Rating"})
    );
    for text in ["Comment", "Name", "Picture"] {
        assert!(schemas[text]["pattern"].is_string(), "{text}");
    }
    assert_eq!(
        document["components"]["securitySchemes"]["api_key"]["scheme"],
        "bearer"
    );
}
