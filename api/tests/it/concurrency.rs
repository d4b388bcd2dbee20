//! Concurrent writes never lose an update: storms of creates, edits, deletes, recomputes
//! and course deletions end with every aggregate and reviewer count exactly right, and
//! no request answers 5xx (a deadlock would show as 503 or 500).

use std::collections::HashMap;
use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::helpers::{KEY, TestApp, spawn_app};

/// How many requests are in flight at once.
const IN_FLIGHT: usize = 32;

/// One request of a storm, and what the test remembers about it.
#[derive(Debug, Clone)]
enum Op {
    Create {
        course: i64,
        reviewer: i64,
        half_stars: i16,
    },
    Rerate {
        review: i64,
        half_stars: i16,
    },
    Delete {
        review: i64,
    },
    Recompute {
        course: i64,
    },
    DeleteCourse {
        course: i64,
    },
}

impl Op {
    fn request(&self) -> (Method, String, Option<Value>) {
        match self {
            Op::Create {
                course,
                reviewer,
                half_stars,
            } => (
                Method::POST,
                "/review".to_owned(),
                Some(json!({"course_id": course, "reviewer_id": reviewer,
                            "rating": f64::from(*half_stars) / 2.0, "comment": "storm"})),
            ),
            Op::Rerate { review, half_stars } => (
                Method::PUT,
                format!("/review/{review}"),
                Some(json!({"rating": f64::from(*half_stars) / 2.0})),
            ),
            Op::Delete { review } => (Method::DELETE, format!("/review/{review}"), None),
            Op::Recompute { course } => (Method::PUT, format!("/rating/{course}"), None),
            Op::DeleteCourse { course } => (Method::DELETE, format!("/rating/{course}"), None),
        }
    }

    /// The answers a correct service may give while other writes race with this one.
    fn allowed(&self, status: StatusCode) -> bool {
        match self {
            // 404 only when the course was deleted under it.
            Op::Create { .. } => matches!(status.as_u16(), 201 | 404),
            // The review may have been deleted by a concurrent request.
            Op::Rerate { .. } => matches!(status.as_u16(), 200 | 404),
            Op::Delete { .. } => matches!(status.as_u16(), 204 | 404),
            Op::Recompute { .. } => status == StatusCode::OK,
            Op::DeleteCourse { .. } => status == StatusCode::NO_CONTENT,
        }
    }
}

/// Sends every op concurrently (at most `IN_FLIGHT` at a time) and returns each op with
/// its status and body, in the order given.
async fn storm(app: &TestApp, ops: Vec<Op>) -> Vec<(Op, StatusCode, String)> {
    let gate = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut tasks = JoinSet::new();
    for (index, op) in ops.into_iter().enumerate() {
        let client = app.client.clone();
        let gate = Arc::clone(&gate);
        let (method, path, body) = op.request();
        let url = app.url(&path);
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await.unwrap();
            let mut request = client.request(method, url).bearer_auth(KEY);
            if let Some(body) = body {
                request = request.json(&body);
            }
            let response = request.send().await.unwrap();
            let status = response.status();
            let text = response.text().await.unwrap();
            (index, op, status, text)
        });
    }
    let mut results = Vec::new();
    while let Some(done) = tasks.join_next().await {
        results.push(done.unwrap());
    }
    results.sort_by_key(|(index, ..)| *index);
    let results: Vec<(Op, StatusCode, String)> = results
        .into_iter()
        .map(|(_, op, status, body)| (op, status, body))
        .collect();
    let failed: Vec<String> = results
        .iter()
        .filter(|(op, status, _)| status.is_server_error() || !op.allowed(*status))
        .map(|(op, status, body)| format!("{op:?} → {status}: {body}"))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of the requests answered wrongly:\n{}",
        failed.len(),
        failed.join("\n")
    );
    results
}

/// A course's aggregate computed from scratch from its reviews: count, sum of half
/// stars, and the nine buckets.
async fn aggregate_in_sql(db: &PgPool, course: i64) -> (i64, i64, Vec<i64>) {
    let (count, sum, buckets): (i64, i64, Vec<i64>) = sqlx::query_as(
        r#"SELECT count(*), coalesce(sum(half_stars), 0)::bigint,
                  ARRAY(SELECT count(r.id) FROM generate_series(2, 10) AS h
                        LEFT JOIN reviews r ON r.course_id = $1 AND r.half_stars = h
                        GROUP BY h ORDER BY h)
           FROM reviews WHERE course_id = $1"#,
    )
    .bind(course)
    .fetch_one(db)
    .await
    .unwrap();
    (count, sum, buckets)
}

/// The aggregate the API serves, in the same terms.
async fn aggregate_served(app: &TestApp, course: i64) -> (i64, i64, Vec<i64>) {
    let rating = app.rating(course).await;
    let count = rating["count"].as_i64().unwrap();
    let total = rating["total_stars"].as_f64().unwrap();
    let buckets = ["1", "1.5", "2", "2.5", "3", "3.5", "4", "4.5", "5"]
        .iter()
        .map(|key| rating["distribution"][key].as_i64().unwrap())
        .collect();
    #[expect(
        clippy::cast_possible_truncation,
        reason = "small exact half-star sums"
    )]
    let halves = (total * 2.0) as i64;
    assert_eq!(
        halves as f64,
        total * 2.0,
        "total_stars {total} is not a half step"
    );
    if count > 0 {
        let average = rating["average"].as_f64().unwrap();
        let exact = total / count as f64;
        assert!(
            (average - exact).abs() <= 0.005 + 1e-9,
            "average {average} is not {exact} rounded"
        );
    }
    (count, halves, buckets)
}

/// Every reviewer's served `reviews` equals their number of rows in `reviews`.
async fn assert_reviewer_counts_exact(app: &TestApp, reviewers: &[i64]) {
    for &reviewer in reviewers {
        let (actual,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM reviews WHERE reviewer_id = $1")
                .bind(reviewer)
                .fetch_one(&app.db)
                .await
                .unwrap();
        let served = app.reviewer(reviewer).await["reviews"].as_i64().unwrap();
        assert_eq!(served, actual, "reviewer {reviewer}'s count");
    }
}

async fn reviewers(app: &TestApp, n: usize) -> Vec<i64> {
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(app.create_reviewer(&format!("Reviewer {i}")).await);
    }
    ids
}

/// A varied but reproducible rating for the `i`th request.
fn half_stars_for(i: usize) -> i16 {
    2 + i16::try_from((i * 7 + i / 9) % 9).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_reviews_of_one_course_are_all_counted_exactly() {
    let app = spawn_app().await;
    app.create_course(1).await;
    let reviewers = reviewers(&app, 7).await;

    let ops: Vec<Op> = (0..200)
        .map(|i| Op::Create {
            course: 1,
            reviewer: reviewers[i % reviewers.len()],
            half_stars: half_stars_for(i),
        })
        .collect();
    let mut sent_buckets = vec![0_i64; 9];
    let mut sent_sum = 0_i64;
    let mut sent_by_reviewer: HashMap<i64, i64> = HashMap::new();
    for op in &ops {
        if let Op::Create {
            reviewer,
            half_stars,
            ..
        } = op
        {
            sent_buckets[usize::try_from(*half_stars - 2).unwrap()] += 1;
            sent_sum += i64::from(*half_stars);
            *sent_by_reviewer.entry(*reviewer).or_default() += 1;
        }
    }
    assert!(sent_buckets.iter().all(|&n| n > 0), "{sent_buckets:?}");

    let results = storm(&app, ops).await;
    assert!(
        results.iter().all(|(_, s, _)| *s == StatusCode::CREATED),
        "every create succeeds"
    );

    let expected = (200, sent_sum, sent_buckets);
    assert_eq!(
        aggregate_served(&app, 1).await,
        expected,
        "served aggregate"
    );
    assert_eq!(aggregate_in_sql(&app.db, 1).await, expected, "rows in SQL");
    for &reviewer in &reviewers {
        let served = app.reviewer(reviewer).await["reviews"].as_i64().unwrap();
        assert_eq!(served, sent_by_reviewer[&reviewer], "reviewer {reviewer}");
    }
    assert_reviewer_counts_exact(&app, &reviewers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_storm_of_creates_rerates_deletes_and_recomputes_leaves_the_aggregate_exact() {
    let app = spawn_app().await;
    app.create_course(1).await;
    app.create_course(2).await;
    let reviewers = reviewers(&app, 6).await;
    // Existing reviews to change and delete, and reviews of another course by the same
    // reviewers so that their counts are not just this course's.
    let mut existing = Vec::new();
    for i in 0..80 {
        let rating = f64::from(half_stars_for(i)) / 2.0;
        let review = app
            .create_review(1, reviewers[i % 6], rating, "before")
            .await;
        existing.push(review["id"].as_i64().unwrap());
    }
    for i in 0..12 {
        app.create_review(2, reviewers[i % 6], 3.0, "other").await;
    }

    let mut ops = Vec::new();
    for i in 0..240_usize {
        let target = existing[(i * 13) % existing.len()];
        ops.push(match i % 8 {
            0..=2 => Op::Create {
                course: 1 + i64::from(i % 24 == 0),
                reviewer: reviewers[i % 6],
                half_stars: half_stars_for(i + 3),
            },
            3 | 4 => Op::Rerate {
                review: target,
                half_stars: half_stars_for(i),
            },
            // Some reviews are deleted twice at once: one delete wins, the other is 404.
            5 | 6 => Op::Delete { review: target },
            _ => Op::Recompute { course: 1 },
        });
    }
    let creates_1 = ops
        .iter()
        .filter(|op| matches!(op, Op::Create { course: 1, .. }))
        .count();

    let results = storm(&app, ops).await;
    let deleted = results
        .iter()
        .filter(|(op, s, _)| matches!(op, Op::Delete { .. }) && *s == StatusCode::NO_CONTENT)
        .count();
    assert!(deleted > 0, "nothing was deleted");
    assert!(
        results
            .iter()
            .any(|(op, s, _)| matches!(op, Op::Rerate { .. }) && *s == StatusCode::OK),
        "no rating changed"
    );
    assert!(
        results
            .iter()
            .filter(|(op, _, _)| matches!(op, Op::Create { .. }))
            .all(|(_, s, _)| *s == StatusCode::CREATED),
        "every create succeeds"
    );

    let from_scratch = aggregate_in_sql(&app.db, 1).await;
    let served = aggregate_served(&app, 1).await;
    assert_eq!(
        served, from_scratch,
        "served aggregate vs the reviews table"
    );
    assert_eq!(
        served.0,
        i64::try_from(80 + creates_1 - deleted).unwrap(),
        "count vs what answered 2xx"
    );
    // A recompute now changes nothing: the maintained aggregate was already exact.
    let before = app.rating(1).await;
    let recomputed = app.put("/rating/1", json!(null)).await;
    assert_eq!(recomputed.status(), StatusCode::OK);
    assert_eq!(recomputed.json::<Value>().await.unwrap(), before);
    assert_eq!(
        aggregate_served(&app, 2).await,
        aggregate_in_sql(&app.db, 2).await
    );
    assert_reviewer_counts_exact(&app, &reviewers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleting_two_courses_that_share_reviewers_while_reviews_arrive_keeps_counts_exact() {
    let app = spawn_app().await;
    let reviewers = reviewers(&app, 6).await;
    app.create_course(3).await;
    for &reviewer in &reviewers {
        app.create_review(3, reviewer, 4.0, "survivor").await;
    }
    // Several rounds: a deadlock is a matter of timing.
    for round in 0..5_i64 {
        let (a, b) = (10 + 2 * round, 11 + 2 * round);
        app.create_course(a).await;
        app.create_course(b).await;
        let mut seeded = Vec::new();
        for i in 0..24 {
            let course = if i % 2 == 0 { a } else { b };
            // Reviewers in opposite orders in the two courses.
            let reviewer = if course == a {
                reviewers[i % 6]
            } else {
                reviewers[5 - i % 6]
            };
            let review = app.create_review(course, reviewer, 2.5, "seed").await;
            seeded.push(review["id"].as_i64().unwrap());
        }

        let mut ops = Vec::new();
        for i in 0..120_usize {
            if i == 30 {
                ops.push(Op::DeleteCourse { course: a });
            }
            if i == 33 {
                ops.push(Op::DeleteCourse { course: b });
            }
            ops.push(match i % 6 {
                0 | 1 => Op::Create {
                    course: a,
                    reviewer: reviewers[i % 6],
                    half_stars: half_stars_for(i),
                },
                2 | 3 => Op::Create {
                    course: b,
                    reviewer: reviewers[5 - i % 6],
                    half_stars: half_stars_for(i),
                },
                4 => Op::Create {
                    course: 3,
                    reviewer: reviewers[(i / 6) % 6],
                    half_stars: half_stars_for(i),
                },
                _ => Op::Delete {
                    review: seeded[(i / 6) % seeded.len()],
                },
            });
        }
        let results = storm(&app, ops).await;
        let refused = results
            .iter()
            .filter(|(op, s, _)| {
                matches!(op, Op::Create { course, .. } if *course == a || *course == b)
                    && *s == StatusCode::NOT_FOUND
            })
            .count();
        assert!(
            refused > 0,
            "round {round}: no review arrived after its course was deleted"
        );

        let (left,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM reviews WHERE course_id = $1 OR course_id = $2")
                .bind(a)
                .bind(b)
                .fetch_one(&app.db)
                .await
                .unwrap();
        assert_eq!(left, 0, "round {round}: reviews of deleted courses remain");
        for course in [a, b] {
            let gone = app.get(&format!("/rating/{course}")).await;
            assert_eq!(gone.status(), StatusCode::NOT_FOUND, "course {course}");
        }
        assert_reviewer_counts_exact(&app, &reviewers).await;
        assert_eq!(
            aggregate_served(&app, 3).await,
            aggregate_in_sql(&app.db, 3).await
        );
    }
}
