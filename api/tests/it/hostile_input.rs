//! Property tests through the real application (HTTP, router, extractors, Postgres):
//! whatever a client sends, the answer is a success or a 4xx problem, never a 5xx, and a
//! rejected write changes nothing.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value, json};

use crate::helpers::{KEY, TestApp, spawn_app};
use crate::properties::cases;

/// One app for a whole property: cases run one after another on a runtime of their own
/// (proptest is synchronous).
struct Harness {
    runtime: tokio::runtime::Runtime,
    app: TestApp,
    reviewer: i64,
    review: i64,
}

impl Harness {
    fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (app, reviewer, review) = runtime.block_on(async {
            let app = spawn_app().await;
            app.create_course(1).await;
            let reviewer = app.create_reviewer("Ann").await;
            let review = app.create_review(1, reviewer, 4.0, "fine").await;
            (app, reviewer, review["id"].as_i64().unwrap())
        });
        Self {
            runtime,
            app,
            reviewer,
            review,
        }
    }

    /// Sends the request; returns the status, the content type and the body.
    fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> (StatusCode, String, String) {
        self.runtime.block_on(async {
            let mut request = self
                .app
                .client
                .request(method, self.app.url(path))
                .bearer_auth(KEY);
            if let Some(body) = body {
                request = request
                    .header("content-type", "application/json")
                    .body(body);
            }
            let response = request.send().await.unwrap();
            let status = response.status();
            let content_type = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            (status, content_type, response.text().await.unwrap())
        })
    }

    fn snapshot(&self) -> Value {
        self.runtime.block_on(self.app.snapshot())
    }
}

/// Any JSON value, nested a little.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|n| json!(n)),
        (1_i64..5).prop_map(|n| json!(n)),
        ".{0,20}".prop_map(Value::String),
        Just(json!("Robert'); DROP TABLE reviews;--")),
        Just(json!("#fff")),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(field_name(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// The fields the bodies have, and some they do not.
fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("course_id".to_owned()),
        Just("reviewer_id".to_owned()),
        Just("rating".to_owned()),
        Just("comment".to_owned()),
        Just("name".to_owned()),
        Just("picture".to_owned()),
        Just("courses_taken".to_owned()),
        Just("reviews".to_owned()),
        "[a-z_]{1,8}",
    ]
}

/// An object of known fields with values of any type: closer to the real bodies than
/// `any_json`, so more of them get past the first field.
fn body_like() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(field_name(), any_json(), 0..5)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

fn assert_answer_is_sound(
    harness: &Harness,
    before: &Value,
    what: &str,
    (status, content_type, body): &(StatusCode, String, String),
) -> Result<(), TestCaseError> {
    prop_assert!(
        !status.is_server_error(),
        "{what} answered {status}: {body}"
    );
    if status.is_client_error() {
        prop_assert_eq!(
            content_type,
            "application/problem+json",
            "{}: {}",
            what,
            body
        );
        let problem: Value = serde_json::from_str(body).unwrap();
        prop_assert!(
            problem["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{}",
            body
        );
        prop_assert_eq!(
            &harness.snapshot(),
            before,
            "{} was refused but changed data",
            what
        );
    }
    Ok(())
}

#[test]
fn any_json_body_to_any_write_answers_success_or_a_4xx_problem_and_refusals_change_nothing() {
    let harness = Harness::start();
    let review = format!("/review/{}", harness.review);
    let reviewer = format!("/reviewer/{}", harness.reviewer);
    let targets = [
        (Method::POST, "/review"),
        (Method::PUT, review.as_str()),
        (Method::POST, "/reviewer"),
        (Method::PUT, reviewer.as_str()),
        (Method::POST, "/rating"),
    ];
    let mut runner = TestRunner::new(Config::with_cases(cases(200)));
    let strategy = (
        0..targets.len(),
        prop_oneof![any_json(), body_like(), body_like()],
    );
    runner
        .run(&strategy, |(target, body)| {
            let (method, path) = &targets[target];
            let before = harness.snapshot();
            let answer = harness.send(
                method.clone(),
                path,
                Some(serde_json::to_vec(&body).unwrap()),
            );
            assert_answer_is_sound(
                &harness,
                &before,
                &format!("{method} {path} {body}"),
                &answer,
            )
        })
        .unwrap();
}

#[test]
fn arbitrary_bytes_as_a_json_body_answer_4xx_problems() {
    let harness = Harness::start();
    let mut runner = TestRunner::new(Config::with_cases(cases(128)));
    let bytes = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        "\\{\"name\": ?\"?.{0,10}".prop_map(String::into_bytes),
    ];
    let before = harness.snapshot();
    runner
        .run(&bytes, |bytes| {
            let answer = harness.send(Method::POST, "/reviewer", Some(bytes.clone()));
            if answer.0.is_success() {
                // Some byte strings are valid reviewers; that is fine, and is new data.
                return Ok(());
            }
            assert_answer_is_sound(&harness, &before, &format!("{bytes:?}"), &answer)
        })
        .unwrap();
}

/// What `POST /review` should answer for this body, given that course 1 and the
/// harness's reviewer exist and nothing else does.
fn expected_review_status(body: &Value, reviewer: i64) -> StatusCode {
    let id = |v: &Value| v.as_i64().filter(|id| *id > 0);
    let rating_ok = body["rating"]
        .as_f64()
        .is_some_and(|r| (r * 2.0).fract() == 0.0 && (1.0..=5.0).contains(&r));
    let comment_ok = body["comment"]
        .as_str()
        .is_some_and(|c| !c.trim().is_empty() && c.chars().count() <= 5000 && !c.contains('\0'));
    match (id(&body["course_id"]), id(&body["reviewer_id"])) {
        (Some(course), Some(who)) if rating_ok && comment_ok => {
            if course == 1 && who == reviewer {
                StatusCode::CREATED
            } else {
                StatusCode::NOT_FOUND
            }
        }
        _ => StatusCode::BAD_REQUEST,
    }
}

#[test]
fn review_bodies_are_accepted_exactly_when_every_field_is_valid_and_stored_verbatim() {
    let harness = Harness::start();
    let reviewer = harness.reviewer;
    let id = prop_oneof![
        Just(json!(1)),
        Just(json!(reviewer)),
        any::<i64>().prop_map(|n| json!(n)),
        Just(json!(0)),
        Just(json!("1")),
        Just(json!(1.5)),
        Just(json!(u64::MAX)),
    ];
    let rating = prop_oneof![
        (2_i32..=10).prop_map(|h| json!(f64::from(h) / 2.0)),
        (1_i64..=5).prop_map(|n| json!(n)),
        any::<f64>().prop_map(|n| json!(n)),
        Just(json!("4")),
        Just(json!(null)),
    ];
    let comment = prop_oneof![
        ".{1,40}".prop_map(|s| json!(s)),
        "\\PC{0,20}".prop_map(|s| json!(s)),
        "[ \t\n\u{3000}]{0,3}".prop_map(|s| json!(s)),
        Just(json!("x".repeat(5000))),
        Just(json!("x".repeat(5001))),
        Just(json!("a\u{0}b")),
        Just(json!(5)),
    ];
    let strategy = (id.clone(), id, rating, comment);
    let mut runner = TestRunner::new(Config::with_cases(cases(200)));
    runner
        .run(&strategy, |(course_id, reviewer_id, rating, comment)| {
            let body = json!({"course_id": course_id, "reviewer_id": reviewer_id, "rating": rating, "comment": comment});
            let before = harness.snapshot();
            let answer = harness.send(Method::POST, "/review", Some(body.to_string().into_bytes()));
            let expected = expected_review_status(&body, reviewer);
            prop_assert_eq!(answer.0, expected, "{} -> {}", body, answer.2);
            if expected == StatusCode::CREATED {
                let review: Value = serde_json::from_str(&answer.2).unwrap();
                prop_assert_eq!(&review["comment"], &body["comment"]);
                prop_assert_eq!(review["rating"].as_f64(), body["rating"].as_f64());
                let stored = harness.send(Method::GET, &format!("/review/{}", review["id"]), None);
                let stored: Value = serde_json::from_str(&stored.2).unwrap();
                prop_assert_eq!(&stored["comment"], &body["comment"]);
            } else {
                assert_answer_is_sound(&harness, &before, &body.to_string(), &answer)?;
            }
            Ok(())
        })
        .unwrap();
}

/// Query strings of a course page: known keys and others, good values and bad ones,
/// cursors this service issued for any sort and texts that only look like cursors.
fn page_query() -> impl Strategy<Value = String> {
    let number = prop_oneof![
        (-3_i64..120).prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        "[0-9a-z.+-]{0,6}",
    ];
    let sort = prop_oneof![
        Just("recent".to_owned()),
        Just("helpful".to_owned()),
        Just("highest".to_owned()),
        Just("lowest".to_owned()),
        "[a-zA-Z]{0,8}",
    ];
    let cursor_text = (
        prop_oneof![
            Just("recent"),
            Just("helpful"),
            Just("highest"),
            Just("lowest"),
            Just("x")
        ],
        prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            (-400_000_000_000_000_000_i64..400_000_000_000_000_000).prop_map(|n| n.to_string()),
            (-3_i64..12).prop_map(|n| n.to_string()),
        ],
        prop_oneof![any::<i64>(), 1_i64..100].prop_map(|n| n.to_string()),
    )
        .prop_map(|(sort, key, id)| URL_SAFE_NO_PAD.encode(format!("{sort}.{key}.{id}")));
    let cursor = prop_oneof![cursor_text, "[A-Za-z0-9_-]{0,24}", ".{0,10}"];
    let pair = prop_oneof![
        number.clone().prop_map(|v| ("limit".to_owned(), v)),
        number.prop_map(|v| ("stars".to_owned(), v)),
        sort.prop_map(|v| ("sort".to_owned(), v)),
        cursor.prop_map(|v| ("cursor".to_owned(), v)),
        ("[a-z]{1,6}", ".{0,5}"),
    ];
    let mixed = prop::collection::vec(pair, 0..4).prop_map(|pairs| {
        let mut query = url_encoded(&pairs);
        if query.is_empty() {
            query.push_str("limit=2");
        }
        query
    });
    // A cursor that matches its sort, with a key of any size: what gets past the
    // parsers to the database.
    let key = prop_oneof![
        any::<i64>(),
        -400_000_000_000_000_000_i64..400_000_000_000_000_000,
        -3_i64..12,
        Just(i64::from(i32::MAX)),
    ];
    let matching = (
        prop_oneof![
            Just("recent"),
            Just("helpful"),
            Just("highest"),
            Just("lowest")
        ],
        key,
        any::<i64>(),
        prop::option::of(1_i64..=5),
    )
        .prop_map(|(sort, key, id, stars)| {
            let cursor = URL_SAFE_NO_PAD.encode(format!("{sort}.{key}.{id}"));
            let stars = stars.map(|s| format!("&stars={s}")).unwrap_or_default();
            format!("sort={sort}&cursor={cursor}{stars}")
        });
    prop_oneof![mixed, matching]
}

fn url_encoded(pairs: &[(String, String)]) -> String {
    let encode = |s: &str| {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[test]
fn any_course_page_query_answers_a_page_or_a_400_problem() {
    let harness = Harness::start();
    harness.runtime.block_on(async {
        for i in 0..12 {
            let helpful = f64::from(i % 9 + 2) / 2.0;
            harness
                .app
                .create_review(1, harness.reviewer, helpful, &format!("review {i}"))
                .await;
        }
    });
    let mut runner = TestRunner::new(Config::with_cases(cases(300)));
    runner
        .run(&page_query(), |query| {
            let (status, content_type, body) =
                harness.send(Method::GET, &format!("/course/1/reviews?{query}"), None);
            prop_assert!(
                status == StatusCode::OK || status == StatusCode::BAD_REQUEST,
                "{query} answered {status}: {body}"
            );
            if status == StatusCode::OK {
                let page: Value = serde_json::from_str(&body).unwrap();
                prop_assert!(page["reviews"].is_array(), "{}", body);
            } else {
                prop_assert_eq!(content_type, "application/problem+json");
            }
            Ok(())
        })
        .unwrap();
}
