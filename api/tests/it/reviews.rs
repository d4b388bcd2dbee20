//! `/review`: every write moves the course's aggregate and the reviewer's count with it.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{assert_problem, ok_json, spawn_app};

#[tokio::test]
async fn posting_a_review_answers_201_and_moves_the_aggregate_and_reviewer_count() {
    let app = spawn_app().await;
    app.create_course(10).await;
    let reviewer = app.create_reviewer("Ann").await;
    let body = json!({"course_id": 10, "reviewer_id": reviewer, "rating": 4.5, "comment": "Clear and deep"});
    let response = app.post("/review", body).await;
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let review = ok_json(response, StatusCode::CREATED).await;

    assert_eq!(location, format!("/review/{}", review["id"]));
    assert_eq!(review["course_id"], 10);
    assert_eq!(review["reviewer_id"], reviewer);
    assert_eq!(review["rating"], 4.5);
    assert_eq!(review["comment"], "Clear and deep");
    assert_eq!(review["helpful"], 0);
    assert_eq!(review["reported"], false);
    let created = review["created_at"].as_str().unwrap();
    assert!(
        created.ends_with('Z') && created.contains('T'),
        "{created} is not RFC 3339 UTC"
    );

    assert_eq!(
        ok_json(app.get(&location).await, StatusCode::OK).await,
        review
    );
    let rating = app.rating(10).await;
    assert_eq!(
        (rating["count"].clone(), rating["total_stars"].clone()),
        (json!(1), json!(4.5))
    );
    assert_eq!(rating["distribution"]["4.5"], 1);
    assert_eq!(app.reviewer(reviewer).await["reviews"], 1);
}

#[tokio::test]
async fn a_review_for_a_missing_course_or_reviewer_is_404_and_changes_nothing() {
    let app = spawn_app().await;
    app.create_course(1).await;
    let reviewer = app.create_reviewer("Ann").await;
    let before = app.snapshot().await;
    let no_course = json!({"course_id": 2, "reviewer_id": reviewer, "rating": 3, "comment": "x"});
    assert_problem(
        app.post("/review", no_course).await,
        StatusCode::NOT_FOUND,
        "course 2",
    )
    .await;
    let no_reviewer =
        json!({"course_id": 1, "reviewer_id": reviewer + 1, "rating": 3, "comment": "x"});
    assert_problem(
        app.post("/review", no_reviewer).await,
        StatusCode::NOT_FOUND,
        "reviewer",
    )
    .await;
    assert_eq!(app.snapshot().await, before);
}

#[tokio::test]
async fn changing_a_rating_moves_the_aggregate_between_buckets() {
    let app = spawn_app().await;
    app.create_course(1).await;
    let reviewer = app.create_reviewer("Ann").await;
    let review = app.create_review(1, reviewer, 2.0, "meh").await;
    app.create_review(1, reviewer, 5.0, "great").await;

    let path = format!("/review/{}", review["id"]);
    let changed = ok_json(app.put(&path, json!({"rating": 3.5})).await, StatusCode::OK).await;
    assert_eq!(changed["rating"], 3.5);
    assert_eq!(changed["comment"], "meh");

    let rating = app.rating(1).await;
    assert_eq!(rating["count"], 2);
    assert_eq!(rating["total_stars"], 8.5);
    assert_eq!(rating["average"], 4.25);
    assert_eq!(rating["distribution"]["2"], 0);
    assert_eq!(rating["distribution"]["3.5"], 1);
    assert_eq!(rating["distribution"]["5"], 1);
}

#[tokio::test]
async fn changing_only_the_comment_keeps_the_aggregate_and_moves_updated_at() {
    let app = spawn_app().await;
    app.create_course(1).await;
    let reviewer = app.create_reviewer("Ann").await;
    let review = app.create_review(1, reviewer, 4.0, "first").await;
    let before = app.rating(1).await;

    let path = format!("/review/{}", review["id"]);
    let changed = ok_json(
        app.put(&path, json!({"comment": "second thoughts"})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(changed["comment"], "second thoughts");
    assert_eq!(changed["rating"], 4.0);
    assert_eq!(changed["created_at"], review["created_at"]);
    assert!(changed["updated_at"].as_str() > review["updated_at"].as_str());
    assert_eq!(app.rating(1).await, before);
}

#[tokio::test]
async fn deleting_a_review_moves_the_aggregate_and_the_reviewer_count_back() {
    let app = spawn_app().await;
    app.create_course(1).await;
    let reviewer = app.create_reviewer("Ann").await;
    let empty = app.rating(1).await;
    let review = app.create_review(1, reviewer, 1.5, "no").await;

    let path = format!("/review/{}", review["id"]);
    assert_eq!(app.delete(&path).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.rating(1).await, empty);
    assert_eq!(app.reviewer(reviewer).await["reviews"], 0);
    assert_problem(
        app.get(&path).await,
        StatusCode::NOT_FOUND,
        "does not exist",
    )
    .await;
    assert_problem(
        app.delete(&path).await,
        StatusCode::NOT_FOUND,
        "does not exist",
    )
    .await;
    assert_problem(
        app.put(&path, json!({"rating": 2})).await,
        StatusCode::NOT_FOUND,
        "does not exist",
    )
    .await;
}

#[tokio::test]
async fn helpful_counts_up_and_report_hides_the_review_but_keeps_it_readable() {
    let app = spawn_app().await;
    app.create_course(1).await;
    let reviewer = app.create_reviewer("Ann").await;
    let review = app.create_review(1, reviewer, 4.0, "useful").await;
    let id = review["id"].as_i64().unwrap();

    for expected in 1..=3 {
        let marked = ok_json(
            app.post(&format!("/review/{id}/helpful"), json!(null))
                .await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(marked["helpful"], expected);
    }
    let reported = ok_json(
        app.post(&format!("/review/{id}/report"), json!(null)).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(reported["reported"], true);
    assert_eq!(reported["helpful"], 3);

    let page = app.course_page(1, "").await;
    assert_eq!(page["reviews"], json!([]));
    assert_eq!(
        page["rating"]["count"], 1,
        "reported reviews still count in the aggregate"
    );
    assert_eq!(
        ok_json(app.get(&format!("/review/{id}")).await, StatusCode::OK).await["reported"],
        true
    );
    assert_problem(
        app.post("/review/424242/helpful", json!(null)).await,
        StatusCode::NOT_FOUND,
        "424242",
    )
    .await;
    assert_problem(
        app.post("/review/424242/report", json!(null)).await,
        StatusCode::NOT_FOUND,
        "424242",
    )
    .await;
}

/// Strings that would break a query built by pasting text into SQL, or a careless
/// JSON or log writer.
const HOSTILE: [&str; 6] = [
    "Robert'); DROP TABLE reviewers;-- 🙂",
    "50% off\\ '\"$1 -- /* */ ; SELECT * FROM ratings; é漢字 \u{1F600}",
    "' OR '1'='1",
    "$$; COPY ratings TO '/tmp/x'; $$",
    "\\x00 \\N %s %d {} \t tab\nnewline \r\n\u{7f}",
    "\u{202e}rtl \u{feff}bom \u{200b}zero-width \u{ffff}",
];

#[tokio::test]
async fn sql_metacharacters_and_unicode_in_every_string_field_are_stored_and_returned_verbatim() {
    let app = spawn_app().await;
    app.create_course(1).await;
    for (i, text) in HOSTILE.iter().enumerate() {
        // A picture must be a URL; the metacharacters go in its path and query.
        let picture = format!(
            "https://img.example/{i}/'%22;--?q={}",
            text.replace(|c: char| c.is_whitespace() || c.is_control(), "")
        );
        let reviewer = ok_json(
            app.post("/reviewer", json!({"name": text, "picture": picture}))
                .await,
            StatusCode::CREATED,
        )
        .await;
        assert_eq!(reviewer["name"], *text);
        assert_eq!(reviewer["picture"], picture);
        let reviewer_id = reviewer["id"].as_i64().unwrap();
        assert_eq!(app.reviewer(reviewer_id).await, reviewer);

        let review = app.create_review(1, reviewer_id, 5.0, text).await;
        assert_eq!(review["comment"], *text);
        let path = format!("/review/{}", review["id"]);
        assert_eq!(
            ok_json(app.get(&path).await, StatusCode::OK).await["comment"],
            *text
        );

        // The same through the updates, reversed so that each field really changes.
        let reversed: String = text.chars().rev().collect();
        let updated = ok_json(
            app.put(&path, json!({"comment": reversed})).await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(updated["comment"], reversed);
        let picture = format!("{picture}&r=1");
        let updated = ok_json(
            app.put(
                &format!("/reviewer/{reviewer_id}"),
                json!({"name": reversed, "picture": picture}),
            )
            .await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(updated["name"], reversed);
        assert_eq!(updated["picture"], picture);
    }
    let page = app.course_page(1, "limit=100").await;
    let listed = page["reviews"].as_array().unwrap();
    assert_eq!(listed.len(), HOSTILE.len());
    for (listed, text) in listed.iter().rev().zip(HOSTILE) {
        let reversed: String = text.chars().rev().collect();
        assert_eq!(listed["comment"], reversed);
        assert_eq!(listed["reviewer"]["name"], reversed);
    }
    // And the tables are all still there.
    assert_eq!(app.rating(1).await["count"], HOSTILE.len());
}

/// A review's `created_at` is when it was stored, after its course's row was locked, not
/// when its transaction began: so a course's reviews sort newest-first in the order they
/// were committed, even when one waited on the course (or its instance was slow).
#[tokio::test]
async fn a_review_that_waited_for_its_course_is_dated_when_it_was_stored() {
    let app = spawn_app().await;
    app.create_course(1).await;
    let reviewer = app.create_reviewer("Ann").await;
    let mut lock = app.lock_course(1).await;
    let (review, released) = tokio::join!(app.create_review(1, reviewer, 4.0, "Waited"), async {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let released: time::OffsetDateTime = sqlx::query_scalar("SELECT clock_timestamp()")
            .fetch_one(&mut *lock)
            .await
            .unwrap();
        lock.commit().await.unwrap();
        released
    });
    let created = time::OffsetDateTime::parse(
        review["created_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert!(
        created >= released,
        "created_at {created} is before the course was free again ({released})"
    );
    assert_eq!(review["updated_at"], review["created_at"]);
}
