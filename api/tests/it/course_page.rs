//! `GET /course/{id}/reviews`: the page's shape, keyset pages that cover a course exactly
//! once in every order (ties included), the star filter, hidden reported reviews, bad
//! queries, and the ETag.

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, ok_json, spawn_app};

const SORTS: [&str; 4] = ["recent", "helpful", "highest", "lowest"];

/// One review as stored, for computing the expected order independently of the service.
#[derive(Debug, Clone, Copy)]
struct Row {
    id: i64,
    created_micros: i64,
    helpful: i32,
    half_stars: i16,
}

/// Every unreported review of the course, straight from the table.
async fn unreported_rows(app: &TestApp, course: i64) -> Vec<Row> {
    let rows: Vec<(i64, i64, i32, i16)> = sqlx::query_as(
        r#"SELECT id,
                  (extract(epoch FROM created_at) * 1000000)::bigint,
                  helpful, half_stars
           FROM reviews WHERE course_id = $1 AND NOT reported"#,
    )
    .bind(course)
    .fetch_all(&app.db)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(id, created_micros, helpful, half_stars)| Row {
            id,
            created_micros,
            helpful,
            half_stars,
        })
        .collect()
}

/// The ids in the order the contract gives: the sort key, then id, per sort's direction;
/// only reviews whose rating rounds down to `stars` when it is given.
fn expected_order(rows: &[Row], sort: &str, stars: Option<i16>) -> Vec<i64> {
    let mut rows: Vec<Row> = rows
        .iter()
        .copied()
        .filter(|r| stars.is_none_or(|s| r.half_stars / 2 == s))
        .collect();
    match sort {
        "recent" => rows.sort_by_key(|r| std::cmp::Reverse((r.created_micros, r.id))),
        "helpful" => rows.sort_by_key(|r| std::cmp::Reverse((r.helpful, r.id))),
        "highest" => rows.sort_by_key(|r| std::cmp::Reverse((r.half_stars, r.id))),
        "lowest" => rows.sort_by_key(|r| (r.half_stars, r.id)),
        other => panic!("no sort {other}"),
    }
    rows.into_iter().map(|r| r.id).collect()
}

/// Follows `next_cursor` from the first page to the last and returns the ids in the order
/// served, checking each page on the way.
async fn walk(
    app: &TestApp,
    course: i64,
    sort: &str,
    limit: usize,
    stars: Option<i16>,
) -> Vec<i64> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1_000 {
        let mut query = format!("sort={sort}&limit={limit}");
        if let Some(stars) = stars {
            query.push_str(&format!("&stars={stars}"));
        }
        if let Some(cursor) = &cursor {
            query.push_str(&format!("&cursor={cursor}"));
        }
        let page = app.course_page(course, &query).await;
        let reviews = page["reviews"].as_array().unwrap();
        assert!(reviews.len() <= limit, "{query}: {} > limit", reviews.len());
        for review in reviews {
            assert_eq!(review["course_id"], course, "{query}: {review}");
            assert_eq!(review["reported"], false, "{query}: {review}");
            ids.push(review["id"].as_i64().unwrap());
        }
        match page["next_cursor"].as_str() {
            Some(next) => {
                assert_eq!(
                    reviews.len(),
                    limit,
                    "{query}: a short page with a next page"
                );
                cursor = Some(next.to_owned());
            }
            None => {
                assert!(page["next_cursor"].is_null(), "{query}: {page}");
                return ids;
            }
        }
    }
    panic!("{sort}/{limit}/{stars:?}: next_cursor never ended (ids so far: {ids:?})");
}

async fn review_with_helpful(app: &TestApp, id: i64, helpful: i32) {
    sqlx::query("UPDATE reviews SET helpful = $2 WHERE id = $1")
        .bind(id)
        .bind(helpful)
        .execute(&app.db)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_page_holds_the_rating_the_reviews_with_their_reviewers_and_a_null_cursor_at_the_end() {
    let app = spawn_app().await;
    app.create_course(42).await;
    app.create_course(43).await;
    let ann = ok_json(
        app.post(
            "/reviewer",
            json!({"name": "Ann", "picture": "https://example.com/ann.png", "courses_taken": 3}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await["id"]
        .as_i64()
        .unwrap();
    let bob = app.create_reviewer("Bob").await;
    let first = app.create_review(42, ann, 4.5, "Deep").await;
    let second = app.create_review(42, bob, 2.0, "Too fast").await;
    app.create_review(43, ann, 5.0, "Elsewhere").await;

    let page = app.course_page(42, "").await;
    let keys = |v: &Value| {
        let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };
    assert_eq!(
        keys(&page),
        ["course_id", "next_cursor", "rating", "reviews"],
        "{page}"
    );
    assert_eq!(page["course_id"], 42);
    assert_eq!(
        page["rating"],
        json!({"course_id": 42, "average": 3.25, "count": 2, "total_stars": 6.5,
               "distribution": {"1": 0, "1.5": 0, "2": 1, "2.5": 0, "3": 0, "3.5": 0, "4": 0, "4.5": 1, "5": 0}})
    );
    assert!(page["next_cursor"].is_null(), "{page}");

    let reviews = page["reviews"].as_array().unwrap();
    assert_eq!(reviews.len(), 2, "{page}");
    // Newest first by default.
    assert_eq!(reviews[0]["id"], second["id"]);
    assert_eq!(reviews[1]["id"], first["id"]);
    for (listed, created) in reviews.iter().zip([&second, &first]) {
        let mut without_reviewer = listed.clone();
        let reviewer = without_reviewer
            .as_object_mut()
            .unwrap()
            .remove("reviewer")
            .unwrap();
        assert_eq!(&without_reviewer, created, "a listed review is the review");
        assert_eq!(
            keys(&reviewer),
            ["courses_taken", "id", "name", "picture", "reviews"]
        );
        assert_eq!(reviewer["id"], listed["reviewer_id"]);
    }
    assert_eq!(
        reviews[1]["reviewer"],
        json!({"id": ann, "name": "Ann", "picture": "https://example.com/ann.png",
               "courses_taken": 3, "reviews": 2})
    );
    assert_eq!(
        reviews[0]["reviewer"],
        json!({"id": bob, "name": "Bob", "picture": null, "courses_taken": 0, "reviews": 1})
    );
    assert_eq!(reviews[1]["reviewer"], app.reviewer(ann).await);
}

#[tokio::test]
async fn an_empty_course_has_an_empty_page_and_the_default_page_size_is_ten() {
    let app = spawn_app().await;
    app.create_course(1).await;
    let page = app.course_page(1, "").await;
    assert_eq!(
        page,
        json!({"course_id": 1,
               "rating": {"course_id": 1, "average": 0.0, "count": 0, "total_stars": 0.0,
                          "distribution": {"1": 0, "1.5": 0, "2": 0, "2.5": 0, "3": 0, "3.5": 0, "4": 0, "4.5": 0, "5": 0}},
               "reviews": [], "next_cursor": null})
    );

    let reviewer = app.create_reviewer("Ann").await;
    for _ in 0..11 {
        app.create_review(1, reviewer, 3.0, "Fine").await;
    }
    let first = app.course_page(1, "").await;
    assert_eq!(first["reviews"].as_array().unwrap().len(), 10);
    let cursor = first["next_cursor"].as_str().expect("a next page");
    let last = app.course_page(1, &format!("cursor={cursor}")).await;
    assert_eq!(last["reviews"].as_array().unwrap().len(), 1);
    assert!(last["next_cursor"].is_null());
    // Exactly a page's worth: the last full page already says there is no next one.
    let ten = app.course_page(1, "limit=11").await;
    assert_eq!(ten["reviews"].as_array().unwrap().len(), 11);
    assert!(ten["next_cursor"].is_null(), "{}", ten["next_cursor"]);
    // A filter that matches none of its reviews: an empty page, the whole rating.
    let none = app.course_page(1, "stars=5").await;
    assert_eq!(none["reviews"], json!([]));
    assert_eq!(none["rating"]["count"], 11);
    assert_eq!(none["rating"]["distribution"]["3"], 11);
}

#[tokio::test]
async fn keyset_pages_cover_every_review_once_in_each_sort_order_even_with_ties() {
    let app = spawn_app().await;
    app.create_course(7).await;
    app.create_course(8).await;
    let reviewers = [
        app.create_reviewer("Ann").await,
        app.create_reviewer("Bob").await,
        app.create_reviewer("Cy").await,
    ];
    // Interleave two courses so that the other course's rows sit between ours in every
    // index; ratings cycle through all nine values, so every rating is shared.
    let mut ours = Vec::new();
    for i in 0..45_usize {
        let half_stars = 2 + (i * 4) % 9;
        let rating = half_stars as f64 / 2.0;
        let review = app
            .create_review(7, reviewers[i % 3], rating, &format!("review {i}"))
            .await;
        ours.push(review["id"].as_i64().unwrap());
        if i % 4 == 0 {
            app.create_review(8, reviewers[(i + 1) % 3], rating, "other course")
                .await;
        }
    }
    // Ties on every key, in both courses: two large groups of identical timestamps (one
    // with a fractional second), and helpful counts with many equal values.
    sqlx::query(
        r#"UPDATE reviews SET
             created_at = CASE id % 3 WHEN 0 THEN timestamptz '2024-01-01T00:00:00Z'
                                      WHEN 1 THEN timestamptz '2023-06-01T12:00:00.123456Z'
                                      ELSE created_at END,
             helpful = CASE WHEN id % 5 = 0 THEN 7 ELSE (id % 3)::int END"#,
    )
    .execute(&app.db)
    .await
    .unwrap();
    // Reported reviews must be skipped, including some in the middle of a tie group.
    for id in [ours[3], ours[10], ours[21], ours[40]] {
        ok_json(
            app.post(&format!("/review/{id}/report"), json!(null)).await,
            StatusCode::OK,
        )
        .await;
    }

    let rows = unreported_rows(&app, 7).await;
    assert_eq!(rows.len(), 41);
    let tied = rows
        .iter()
        .filter(|r| r.created_micros == 1_704_067_200_000_000)
        .count();
    assert!(tied >= 10, "only {tied} rows share a timestamp");

    for sort in SORTS {
        for stars in [None, Some(1), Some(2), Some(3), Some(4), Some(5)] {
            let expected = expected_order(&rows, sort, stars);
            assert!(!expected.is_empty(), "{sort} {stars:?}: nothing to list");
            for limit in [1, 3, 100] {
                let served = walk(&app, 7, sort, limit, stars).await;
                let unique: HashSet<i64> = served.iter().copied().collect();
                assert_eq!(
                    unique.len(),
                    served.len(),
                    "sort={sort} limit={limit} stars={stars:?} repeated a review: {served:?}"
                );
                assert_eq!(
                    served, expected,
                    "sort={sort} limit={limit} stars={stars:?}"
                );
            }
        }
    }
}

#[tokio::test]
async fn stars_keeps_only_reviews_whose_rating_rounds_down_to_that_many_stars() {
    let app = spawn_app().await;
    app.create_course(3).await;
    let reviewer = app.create_reviewer("Ann").await;
    for half_stars in 2..=10_u8 {
        let rating = f64::from(half_stars) / 2.0;
        app.create_review(3, reviewer, rating, "x").await;
    }
    let expected: [(u8, &[f64]); 5] = [
        (1, &[1.0, 1.5]),
        (2, &[2.0, 2.5]),
        (3, &[3.0, 3.5]),
        (4, &[4.0, 4.5]),
        (5, &[5.0]),
    ];
    for sort in SORTS {
        for (stars, ratings) in expected {
            let page = app
                .course_page(3, &format!("sort={sort}&stars={stars}"))
                .await;
            let mut got: Vec<f64> = page["reviews"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["rating"].as_f64().unwrap())
                .collect();
            got.sort_by(f64::total_cmp);
            assert_eq!(got, ratings, "sort={sort} stars={stars}");
            // The filter narrows the list, never the course's rating.
            assert_eq!(page["rating"]["count"], 9);
        }
    }
}

#[tokio::test]
async fn reported_reviews_are_hidden_from_every_listing_but_still_counted_in_the_rating() {
    let app = spawn_app().await;
    app.create_course(5).await;
    let reviewer = app.create_reviewer("Ann").await;
    let kept = app.create_review(5, reviewer, 3.0, "Fair").await;
    let kept_id = kept["id"].as_i64().unwrap();
    // The reported ones are the best, worst, newest and most helpful: the first row of
    // every order.
    let best = app.create_review(5, reviewer, 5.0, "Spam").await;
    let worst = app.create_review(5, reviewer, 1.0, "Rude").await;
    let best_id = best["id"].as_i64().unwrap();
    let worst_id = worst["id"].as_i64().unwrap();
    review_with_helpful(&app, best_id, 99).await;
    for id in [best_id, worst_id] {
        let reported = ok_json(
            app.post(&format!("/review/{id}/report"), json!(null)).await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(reported["reported"], true);
    }

    for sort in SORTS {
        for stars in ["", "&stars=1", "&stars=3", "&stars=5"] {
            let page = app.course_page(5, &format!("sort={sort}{stars}")).await;
            let ids: Vec<i64> = page["reviews"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_i64().unwrap())
                .collect();
            let expected = if stars.is_empty() || stars == "&stars=3" {
                vec![kept_id]
            } else {
                vec![]
            };
            assert_eq!(ids, expected, "sort={sort}{stars}");
            assert_eq!(
                (
                    &page["rating"]["count"],
                    &page["rating"]["total_stars"],
                    &page["rating"]["distribution"]["5"],
                    &page["rating"]["distribution"]["1"],
                ),
                (&json!(3), &json!(9.0), &json!(1), &json!(1)),
                "reported reviews still count"
            );
        }
    }
    let still_there = ok_json(app.get(&format!("/review/{best_id}")).await, StatusCode::OK).await;
    assert_eq!(still_there["reported"], true);
    assert_eq!(app.reviewer(reviewer).await["reviews"], 3);
}

#[tokio::test]
async fn an_unknown_course_is_a_404_problem() {
    let app = spawn_app().await;
    app.create_course(1).await;
    assert_problem(
        app.get("/course/999/reviews").await,
        StatusCode::NOT_FOUND,
        "course 999",
    )
    .await;
    // Even with a valid query and a conditional header that would match anything.
    let response = app
        .client
        .get(app.url("/course/998/reviews?sort=helpful&limit=5"))
        .header("if-none-match", "*")
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::NOT_FOUND, "course 998").await;
}

#[tokio::test]
async fn bad_query_values_answer_400_problems_naming_the_value() {
    let app = spawn_app().await;
    app.create_course(1).await;
    let reviewer = app.create_reviewer("Ann").await;
    for i in 0..3_u8 {
        app.create_review(1, reviewer, f64::from(i) + 1.0, "x")
            .await;
    }
    let helpful_page = app.course_page(1, "sort=helpful&limit=1").await;
    let helpful_cursor = helpful_page["next_cursor"].as_str().unwrap().to_owned();
    // The cursor is good with its own sort.
    app.course_page(1, &format!("sort=helpful&limit=1&cursor={helpful_cursor}"))
        .await;

    let cases = [
        ("limit=0".to_owned(), "limit"),
        ("limit=101".to_owned(), "limit"),
        ("limit=-1".to_owned(), "limit"),
        ("limit=abc".to_owned(), "abc"),
        ("limit=".to_owned(), "integer"),
        (
            "limit=99999999999999999999".to_owned(),
            "99999999999999999999",
        ),
        ("sort=newest".to_owned(), "newest"),
        ("sort=".to_owned(), "sort"),
        ("stars=0".to_owned(), "stars"),
        ("stars=6".to_owned(), "stars"),
        ("stars=x".to_owned(), "\"x\""),
        ("stars=4.5".to_owned(), "4.5"),
        ("cursor=not-a-cursor".to_owned(), "cursor"),
        ("cursor=".to_owned(), "cursor"),
        (
            format!("sort=recent&cursor={helpful_cursor}"),
            "sort=helpful",
        ),
        (format!("cursor={helpful_cursor}"), "sort=helpful"),
        ("colour=red".to_owned(), "colour"),
        ("limit=5&limit=6".to_owned(), "limit"),
    ];
    for (query, detail) in cases {
        let response = app.get(&format!("/course/1/reviews?{query}")).await;
        assert_eq!(
            response.status(),
            StatusCode::BAD_REQUEST,
            "?{query} was not refused"
        );
        assert_problem(response, StatusCode::BAD_REQUEST, detail).await;
    }
    // A bad query about an unknown course: either answer is a 4xx problem, never 5xx.
    let response = app.get("/course/999/reviews?limit=0").await;
    assert!(response.status().is_client_error(), "{}", response.status());
}

/// Found by fuzzing: a `recent` cursor dated between 9999 BC and 4713 BC got past the
/// decoder and `time`, and Postgres refused the timestamp: 500.
#[tokio::test]
async fn hand_made_cursors_dated_where_postgres_cannot_go_answer_400() {
    use base64::Engine as _;
    let app = spawn_app().await;
    app.create_course(1).await;
    let reviewer = app.create_reviewer("Ann").await;
    app.create_review(1, reviewer, 3.0, "x").await;
    let forged = |plain: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(plain);
    for micros in [
        "-300000000000000000",
        "-62135596800000001",
        "253402300800000000",
        "-9223372036854775808",
        "9223372036854775807",
    ] {
        let query = format!("cursor={}", forged(&format!("recent.{micros}.5")));
        let response = app.get(&format!("/course/1/reviews?{query}")).await;
        assert_problem(response, StatusCode::BAD_REQUEST, "cursor").await;
    }
    // The ends of the range are fine, and page as they should.
    let oldest = forged("recent.-62135596800000000.5");
    let page = app.course_page(1, &format!("cursor={oldest}")).await;
    assert_eq!(page["reviews"], json!([]));
    let newest = forged("recent.253402300799999999.999");
    let page = app.course_page(1, &format!("cursor={newest}")).await;
    assert_eq!(page["reviews"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn the_etag_answers_304_until_the_course_changes() {
    let app = spawn_app().await;
    app.create_course(9).await;
    let reviewer = app.create_reviewer("Ann").await;
    app.create_review(9, reviewer, 4.0, "Good").await;
    let path = "/course/9/reviews?sort=recent&limit=10";

    let response = app.get(path).await;
    assert_eq!(response.status(), StatusCode::OK);
    let tag = response.headers()["etag"].to_str().unwrap().to_owned();
    assert!(
        tag.starts_with('"') && tag.ends_with('"') && tag.len() > 2,
        "{tag} is not a quoted entity tag"
    );
    let body = response.text().await.unwrap();

    // The same request again gives the same tag.
    let again = app.get(path).await;
    assert_eq!(again.headers()["etag"], tag.as_str());
    assert_eq!(again.text().await.unwrap(), body);

    let conditional = |tag: String| {
        app.client
            .get(app.url(path))
            .header("if-none-match", tag)
            .send()
    };
    let not_modified = conditional(tag.clone()).await.unwrap();
    assert_eq!(not_modified.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(not_modified.headers()["etag"], tag.as_str());
    assert!(
        not_modified.bytes().await.unwrap().is_empty(),
        "304 has a body"
    );
    // A list of tags, one of them ours, matches too.
    let listed = conditional(format!("\"0000\", {tag}")).await.unwrap();
    assert_eq!(listed.status(), StatusCode::NOT_MODIFIED);
    // Another tag does not.
    let other = conditional("\"0000\"".to_owned()).await.unwrap();
    assert_eq!(other.status(), StatusCode::OK);
    assert_eq!(other.text().await.unwrap(), body);

    app.create_review(9, reviewer, 2.0, "Changed my mind").await;
    let changed = conditional(tag.clone()).await.unwrap();
    assert_eq!(
        changed.status(),
        StatusCode::OK,
        "the old tag still matched"
    );
    let new_tag = changed.headers()["etag"].to_str().unwrap().to_owned();
    assert_ne!(new_tag, tag);
    let page: Value = changed.json().await.unwrap();
    assert_eq!(page["reviews"].as_array().unwrap().len(), 2);
    assert_eq!(page["rating"]["count"], 2);
    let now = conditional(new_tag).await.unwrap();
    assert_eq!(now.status(), StatusCode::NOT_MODIFIED);
}
