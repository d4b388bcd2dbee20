//! Every course-page statement is one index range scan with no sort step below its LIMIT
//! and no OFFSET, for the plan a one-off execution gets and for the generic plan a cached
//! prepared statement may switch to. Run with `--nocapture` to see the plans.

use serde_json::Value;
use sqlx::pool::PoolConnection;
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{AssertSqlSafe, Postgres};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use courser_api::Config;
use courser_api::db::reviews::{
    PAGE_HELPFUL, PAGE_HELPFUL_STARS, PAGE_HIGHEST, PAGE_LOWEST, PAGE_RECENT, PAGE_RECENT_STARS,
    page_sql,
};
use courser_api::domain::Sort;

use crate::helpers::{TestApp, spawn_app};

/// The course the plans are made for: one of many of about the same size.
const COURSE: i64 = 7;

/// A bound parameter, typed as the service binds it.
#[derive(Debug, Clone, Copy)]
enum Bind {
    Bigint(i64),
    Int(i32),
    Smallint(i16),
    Timestamptz(OffsetDateTime),
}

impl Bind {
    fn sql_type(self) -> &'static str {
        match self {
            Bind::Bigint(_) => "bigint",
            Bind::Int(_) => "integer",
            Bind::Smallint(_) => "smallint",
            Bind::Timestamptz(_) => "timestamptz",
        }
    }

    /// The value as an SQL literal, for `EXECUTE`; made only from the test's own values.
    fn literal(self) -> String {
        let text = match self {
            Bind::Bigint(v) => v.to_string(),
            Bind::Int(v) => v.to_string(),
            Bind::Smallint(v) => v.to_string(),
            Bind::Timestamptz(v) => v.format(&Rfc3339).unwrap(),
        };
        format!("'{text}'::{}", self.sql_type())
    }

    fn bind(self, query: Query<'_, Postgres, PgArguments>) -> Query<'_, Postgres, PgArguments> {
        match self {
            Bind::Bigint(v) => query.bind(v),
            Bind::Int(v) => query.bind(v),
            Bind::Smallint(v) => query.bind(v),
            Bind::Timestamptz(v) => query.bind(v),
        }
    }
}

/// One statement with one set of parameters, and the index walk it must be.
#[derive(Debug)]
struct Case {
    name: String,
    sql: &'static str,
    binds: Vec<Bind>,
    index: &'static str,
    direction: &'static str,
    /// A piece of the index condition that shows the star filter is inside the index.
    star_condition: Option<&'static str>,
}

/// A few thousand reviews over many courses and reviewers, loaded straight into the
/// tables, then analysed. A few reviews are reported; one course is tiny.
async fn load(app: &TestApp) {
    for statement in [
        "INSERT INTO ratings (course_id) SELECT generate_series(1, 41)",
        "INSERT INTO reviewers (name, courses_taken) SELECT 'reviewer ' || g, g % 12 FROM generate_series(1, 500) g",
        r#"INSERT INTO reviews (course_id, reviewer_id, half_stars, comment, helpful, reported, created_at, updated_at)
           SELECT 1 + g % 40, 1 + (g * 7) % 500, 2 + (g * 7 + g / 9) % 9,
                  repeat('words ', 20 + g % 40), (g * 13) % 50, g % 50 = 0,
                  timestamptz '2025-01-01T00:00:00Z' - g * interval '1 minute',
                  timestamptz '2025-01-01T00:00:00Z'
           FROM generate_series(1, 20000) g"#,
        r#"INSERT INTO reviews (course_id, reviewer_id, half_stars, comment)
           SELECT 41, g, 8, 'small course' FROM generate_series(1, 5) g"#,
        "ANALYZE",
    ] {
        sqlx::query(statement).execute(&app.db).await.unwrap();
    }
}

/// The sort key and id of a review deep in the course's order: a cursor for a late page.
async fn deep_cursor(app: &TestApp, order: &'static str) -> (Value, i64) {
    // OFFSET here only picks a sample row for the test.
    let sql = format!(
        r#"SELECT to_jsonb(k), id FROM (
             SELECT {order} AS k, id FROM reviews WHERE course_id = $1 AND NOT reported
           ) s ORDER BY k DESC, id DESC OFFSET 300 LIMIT 1"#
    );
    sqlx::query_as(AssertSqlSafe(sql))
        .bind(COURSE)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

async fn cases(app: &TestApp) -> Vec<Case> {
    let course = Bind::Bigint(COURSE);
    let page = Bind::Bigint(11);
    let end_of_time = OffsetDateTime::from_unix_timestamp(253_402_300_799).unwrap();
    let (created, created_id) = deep_cursor(app, "created_at").await;
    let created = OffsetDateTime::parse(created.as_str().unwrap(), &Rfc3339).unwrap();
    let (helpful, helpful_id) = deep_cursor(app, "helpful").await;
    let helpful = i32::try_from(helpful.as_i64().unwrap()).unwrap();
    let (halves, halves_id) = deep_cursor(app, "half_stars").await;
    let halves = i16::try_from(halves.as_i64().unwrap()).unwrap();

    let mut cases = Vec::new();
    let mut add = |name: &str,
                   sql: &'static str,
                   binds: Vec<Bind>,
                   index: &'static str,
                   direction: &'static str,
                   star_condition: Option<&'static str>| {
        cases.push(Case {
            name: name.to_owned(),
            sql,
            binds,
            index,
            direction,
            star_condition,
        });
    };
    for (when, key, id) in [
        ("first page", end_of_time, i64::MAX),
        ("deep page", created, created_id),
    ] {
        let (key, id) = (Bind::Timestamptz(key), Bind::Bigint(id));
        add(
            &format!("PAGE_RECENT, {when}"),
            PAGE_RECENT,
            vec![course, key, id, page],
            "reviews_by_recent",
            "Backward",
            None,
        );
        add(
            &format!("PAGE_RECENT_STARS, {when}"),
            PAGE_RECENT_STARS,
            vec![course, key, id, page, Bind::Int(4)],
            "reviews_by_stars_recent",
            "Forward",
            Some("/ 2)"),
        );
    }
    for (when, key, id) in [
        ("first page", i32::MAX, i64::MAX),
        ("deep page", helpful, helpful_id),
    ] {
        let (key, id) = (Bind::Int(key), Bind::Bigint(id));
        add(
            &format!("PAGE_HELPFUL, {when}"),
            PAGE_HELPFUL,
            vec![course, key, id, page],
            "reviews_by_helpful",
            "Forward",
            None,
        );
        add(
            &format!("PAGE_HELPFUL_STARS, {when}"),
            PAGE_HELPFUL_STARS,
            vec![course, key, id, page, Bind::Int(3)],
            "reviews_by_stars_helpful",
            "Forward",
            Some("/ 2)"),
        );
    }
    for (when, key, id) in [("first page", 11, 0), ("deep page", halves, halves_id)] {
        let (key, id) = (Bind::Smallint(key), Bind::Bigint(id));
        for (filter, low, high) in [("all stars", 2, 10), ("4 stars", 8, 9), ("5 stars", 10, 10)] {
            add(
                &format!("PAGE_HIGHEST, {when}, {filter}"),
                PAGE_HIGHEST,
                vec![
                    course,
                    key,
                    id,
                    page,
                    Bind::Smallint(low),
                    Bind::Smallint(high),
                ],
                "reviews_by_rating",
                "Backward",
                Some("half_stars >="),
            );
        }
    }
    for (when, key, id) in [
        ("first page", 1, i64::MAX),
        ("deep page", halves, halves_id),
    ] {
        let (key, id) = (Bind::Smallint(key), Bind::Bigint(id));
        for (filter, low, high) in [("all stars", 2, 10), ("2 stars", 4, 5), ("5 stars", 10, 10)] {
            add(
                &format!("PAGE_LOWEST, {when}, {filter}"),
                PAGE_LOWEST,
                vec![
                    course,
                    key,
                    id,
                    page,
                    Bind::Smallint(low),
                    Bind::Smallint(high),
                ],
                "reviews_by_rating",
                "Forward",
                Some("half_stars >="),
            );
        }
    }
    cases
}

fn collect_nodes<'a>(node: &'a Value, out: &mut Vec<&'a Value>) {
    out.push(node);
    for child in node["Plans"].as_array().into_iter().flatten() {
        collect_nodes(child, out);
    }
}

/// What is wrong with one JSON plan for the case, if anything; `generic` plans must
/// show their parameters.
fn plan_problems(case: &Case, explained: &Value, generic: bool) -> Vec<String> {
    let mut problems = Vec::new();
    // The page's LIMIT: a sort above it orders at most a page of rows (the outer ORDER
    // BY); one below it would sort the course.
    let mut all = Vec::new();
    collect_nodes(&explained[0]["Plan"], &mut all);
    let Some(limit) = all.iter().find(|n| n["Node Type"] == "Limit") else {
        problems.push("no Limit node".to_owned());
        return problems;
    };
    let mut nodes = Vec::new();
    collect_nodes(limit, &mut nodes);
    for node in &nodes {
        let kind = node["Node Type"].as_str().unwrap_or_default();
        if kind == "Sort" || kind == "Incremental Sort" {
            problems.push(format!(
                "a {kind} node below the Limit (key {})",
                node["Sort Key"]
            ));
        }
    }
    let scans: Vec<&&Value> = nodes
        .iter()
        .filter(|n| n["Relation Name"] == "reviews")
        .collect();
    let [scan] = scans.as_slice() else {
        problems.push(format!("{} scans of reviews", scans.len()));
        return problems;
    };
    if scan["Node Type"] != "Index Scan" {
        problems.push(format!("reviews is read by a {}", scan["Node Type"]));
    }
    if scan["Index Name"] != case.index {
        problems.push(format!(
            "reviews is read through {}, not {}",
            scan["Index Name"], case.index
        ));
    }
    if scan["Scan Direction"] != case.direction {
        problems.push(format!(
            "the scan runs {}, not {}",
            scan["Scan Direction"], case.direction
        ));
    }
    // The keyset is where the scan starts, not a filter over rows already read.
    let condition = scan["Index Cond"].as_str().unwrap_or_default();
    if !(condition.contains("course_id =") && condition.contains("ROW(")) {
        problems.push(format!(
            "the course and cursor are not the index condition: {condition:?}"
        ));
    }
    if let Some(star_condition) = case.star_condition
        && !condition.contains(star_condition)
    {
        problems.push(format!(
            "the star filter is not in the index condition: {condition:?}"
        ));
    }
    if generic && !condition.contains("$1") {
        problems.push(format!("not a generic plan: {condition:?}"));
    }
    problems
}

/// `EXPLAIN` of the statement with its parameters bound, as the service sends it.
async fn explain_bound(conn: &mut PoolConnection<Postgres>, case: &Case, json: bool) -> Value {
    let options = if json { "(FORMAT JSON) " } else { "" };
    let sql = format!("EXPLAIN {options}{}", case.sql);
    let mut query = sqlx::query(AssertSqlSafe(sql));
    for bind in &case.binds {
        query = bind.bind(query);
    }
    let rows = query.fetch_all(&mut **conn).await.unwrap();
    use sqlx::Row as _;
    if json {
        rows[0].get::<Value, _>(0)
    } else {
        let lines: Vec<String> = rows.iter().map(|r| r.get::<String, _>(0)).collect();
        Value::String(lines.join("\n"))
    }
}

/// `EXPLAIN EXECUTE` of the statement prepared under SQL `PREPARE`: with
/// `plan_cache_mode = force_generic_plan` this is the plan a cached prepared statement
/// uses once Postgres switches it to a generic plan.
async fn explain_prepared(conn: &mut PoolConnection<Postgres>, case: &Case, json: bool) -> Value {
    let types: Vec<&str> = case.binds.iter().map(|b| b.sql_type()).collect();
    let args: Vec<String> = case.binds.iter().map(|b| b.literal()).collect();
    // Not DEALLOCATE ALL: that would drop sqlx's own cached statements too.
    let prepare = format!(
        "PREPARE page_under_test ({}) AS {}",
        types.join(", "),
        case.sql
    );
    sqlx::raw_sql(AssertSqlSafe(prepare))
        .execute(&mut **conn)
        .await
        .unwrap();
    let options = if json { "(FORMAT JSON) " } else { "" };
    let explain = format!(
        "EXPLAIN {options}EXECUTE page_under_test ({})",
        args.join(", ")
    );
    let rows = sqlx::raw_sql(AssertSqlSafe(explain))
        .fetch_all(&mut **conn)
        .await
        .unwrap();
    sqlx::raw_sql("DEALLOCATE page_under_test")
        .execute(&mut **conn)
        .await
        .unwrap();
    use sqlx::Row as _;
    if json {
        rows[0].get::<Value, _>(0)
    } else {
        let lines: Vec<String> = rows.iter().map(|r| r.get::<String, _>(0)).collect();
        Value::String(lines.join("\n"))
    }
}

#[test]
fn every_course_page_statement_is_keyset_without_offset_and_page_sql_picks_them() {
    for sql in [
        PAGE_RECENT,
        PAGE_RECENT_STARS,
        PAGE_HELPFUL,
        PAGE_HELPFUL_STARS,
        PAGE_HIGHEST,
        PAGE_LOWEST,
    ] {
        assert!(!sql.to_uppercase().contains("OFFSET"), "{sql}");
        assert!(
            sql.contains("ORDER BY") && sql.contains("LIMIT $4"),
            "{sql}"
        );
    }
    assert_eq!(page_sql(Sort::Recent, false), PAGE_RECENT);
    assert_eq!(page_sql(Sort::Recent, true), PAGE_RECENT_STARS);
    assert_eq!(page_sql(Sort::Helpful, false), PAGE_HELPFUL);
    assert_eq!(page_sql(Sort::Helpful, true), PAGE_HELPFUL_STARS);
    assert_eq!(page_sql(Sort::Highest, false), PAGE_HIGHEST);
    assert_eq!(page_sql(Sort::Highest, true), PAGE_HIGHEST);
    assert_eq!(page_sql(Sort::Lowest, false), PAGE_LOWEST);
    assert_eq!(page_sql(Sort::Lowest, true), PAGE_LOWEST);
}

#[tokio::test]
async fn every_course_page_variant_is_one_index_range_scan_with_no_sort_step() {
    let app = spawn_app().await;
    load(&app).await;
    let cases = cases(&app).await;
    let mut conn = app.db.acquire().await.unwrap();
    let mut failures = Vec::new();
    let mut check = |case: &Case, mode: &str, json: &Value, text: &Value, generic: bool| {
        let text = text.as_str().unwrap_or_default();
        println!("── {} — {mode}\n{text}\n", case.name);
        let problems = plan_problems(case, json, generic);
        if !problems.is_empty() {
            failures.push(format!(
                "{} ({mode}): {}\n{text}",
                case.name,
                problems.join("; ")
            ));
        }
    };

    for case in &cases {
        let json = explain_bound(&mut conn, case, true).await;
        let text = explain_bound(&mut conn, case, false).await;
        check(case, "bound parameters", &json, &text, false);
    }
    sqlx::query("SET plan_cache_mode = force_generic_plan")
        .execute(&mut *conn)
        .await
        .unwrap();
    for case in &cases {
        // Parameters bound through the protocol are still known to EXPLAIN's planner, so
        // this is the custom plan again; the prepared statement below is the generic one.
        let json = explain_bound(&mut conn, case, true).await;
        let text = explain_bound(&mut conn, case, false).await;
        check(case, "bound, force_generic_plan", &json, &text, false);
        let json = explain_prepared(&mut conn, case, true).await;
        let text = explain_prepared(&mut conn, case, false).await;
        check(case, "generic plan", &json, &text, true);
    }
    sqlx::query("RESET plan_cache_mode")
        .execute(&mut *conn)
        .await
        .unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} plans are not one index range scan without a sort:\n\n{}",
        failures.len(),
        cases.len() * 3,
        failures.join("\n\n")
    );
}

/// The service's own connections (`startup::connect`) plan a page statement once and
/// reuse that generic plan: under Postgres' default every execution was planned anew.
#[tokio::test]
async fn the_services_connections_plan_a_page_statement_once() {
    let app = spawn_app().await;
    load(&app).await;
    let config = Config {
        pool_size: 1,
        ..app.config.clone()
    };
    let pool = courser_api::startup::connect(&config).await.unwrap();
    let mut conn = pool.acquire().await.unwrap();
    let later_than_every_review = OffsetDateTime::parse("2100-01-01T00:00:00Z", &Rfc3339).unwrap();
    for course in 1..=10_i64 {
        let rows = sqlx::query(PAGE_RECENT)
            .bind(course)
            .bind(later_than_every_review)
            .bind(i64::MAX)
            .bind(11_i64)
            .fetch_all(&mut *conn)
            .await
            .unwrap();
        assert_eq!(rows.len(), 11, "course {course}");
    }
    let plans: (i64, i64) = sqlx::query_as(
        "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement = $1",
    )
    .bind(PAGE_RECENT)
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    assert_eq!(plans, (10, 0), "(generic plans, custom plans)");
}
