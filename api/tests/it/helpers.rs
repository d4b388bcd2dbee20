//! `spawn_app()`: the real application on port 0 against a fresh database of its own,
//! with a client that has one method per endpoint.

use std::net::SocketAddr;

use courser_api::{Application, Config};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool};

/// The admin URL of the Postgres the tests may create databases in. `scripts/test`
/// starts a private cluster and sets it; the default is that cluster's address.
pub fn admin_url() -> String {
    std::env::var("COURSER_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:15432/postgres".into())
}

/// A database created for one test and dropped when the test ends.
#[derive(Debug)]
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn create() -> Self {
        let name = format!("courser_test_{:016x}", rand::random::<u64>());
        let admin = admin_url();
        let mut conn = PgConnection::connect(&admin).await.unwrap_or_else(|e| {
            panic!("cannot reach the test Postgres at {admin} ({e}); run scripts/test")
        });
        // Identifiers cannot be bound; the name is ours, made of hex digits.
        let create = format!(r#"CREATE DATABASE "{name}""#);
        sqlx::raw_sql(AssertSqlSafe(create))
            .execute(&mut conn)
            .await
            .unwrap();
        let url = match admin.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{name}"),
            None => panic!("COURSER_TEST_DATABASE_URL must end in /database"),
        };
        Self { name, url }
    }
}

impl TestDb {
    /// Drops the database now, cutting off every connection to it.
    pub async fn drop_now(&self) {
        let mut conn = PgConnection::connect(&admin_url()).await.unwrap();
        let drop = format!(r#"DROP DATABASE IF EXISTS "{}" WITH (FORCE)"#, self.name);
        sqlx::raw_sql(AssertSqlSafe(drop))
            .execute(&mut conn)
            .await
            .unwrap();
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs outside async; a short-lived runtime on its own thread does the work.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let mut conn = PgConnection::connect(&admin_url())
                    .await
                    .map_err(std::io::Error::other)?;
                let drop = format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#);
                sqlx::raw_sql(AssertSqlSafe(drop))
                    .execute(&mut conn)
                    .await
                    .map_err(std::io::Error::other)?;
                Ok::<_, std::io::Error>(())
            })
        })
        .join();
    }
}

pub const KEY: &str = "test-key-0123456789abcdef";

/// A running application and what a test needs to talk to it.
#[derive(Debug)]
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    /// Direct access to the app's database, to check what a request did to it.
    pub db: PgPool,
    pub config: Config,
    // Last, so the database is dropped after the pool above is closed.
    pub test_db: TestDb,
}

/// The Redis the tests use, each test under a key prefix of its own. `scripts/test`
/// starts a private Redis and sets it; the default is that Redis's address.
pub fn redis_url() -> String {
    std::env::var("COURSER_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:16379".into())
}

pub fn test_config(database_url: &str) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: database_url.to_owned(),
        pool_size: 8,
        api_keys: vec![KEY.to_owned(), "second-key-for-rotation-xyz".to_owned()],
        redis_url: redis_url(),
        cache_prefix: format!("courser-test-{:016x}", rand::random::<u64>()),
        ..Config::default()
    }
}

pub async fn spawn_app() -> TestApp {
    let test_db = TestDb::create().await;
    spawn_app_with(test_config(&test_db.url), test_db).await
}

pub async fn spawn_app_with(config: Config, test_db: TestDb) -> TestApp {
    let app = Application::build(&config)
        .await
        .expect("application builds");
    let addr = app.local_addr().unwrap();
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    let db = PgPool::connect(&config.database_url).await.unwrap();
    TestApp {
        addr,
        client: reqwest::Client::new(),
        db,
        config,
        test_db,
    }
}

impl TestApp {
    /// Another instance of the api on the same database and Redis prefix, as a second
    /// process behind the proxy would be; returns its address.
    pub async fn another_instance(&self) -> SocketAddr {
        let app = Application::build(&self.config)
            .await
            .expect("application builds");
        let addr = app.local_addr().unwrap();
        tokio::spawn(app.run_until_stopped(std::future::pending()));
        addr
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    /// A write with the test key and a JSON body (if any).
    pub async fn write(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Response {
        let mut request = self.client.request(method, self.url(path)).bearer_auth(KEY);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }

    pub async fn post(&self, path: &str, body: Value) -> Response {
        self.write(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Response {
        self.write(reqwest::Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.write(reqwest::Method::DELETE, path, None).await
    }

    pub async fn create_course(&self, course_id: i64) -> Value {
        ok_json(
            self.post("/rating", json!({"course_id": course_id})).await,
            StatusCode::CREATED,
        )
        .await
    }

    pub async fn create_reviewer(&self, name: &str) -> i64 {
        let reviewer = ok_json(
            self.post("/reviewer", json!({"name": name})).await,
            StatusCode::CREATED,
        )
        .await;
        reviewer["id"].as_i64().unwrap()
    }

    pub async fn create_review(
        &self,
        course_id: i64,
        reviewer_id: i64,
        rating: f64,
        comment: &str,
    ) -> Value {
        let body = json!({"course_id": course_id, "reviewer_id": reviewer_id, "rating": rating, "comment": comment});
        ok_json(self.post("/review", body).await, StatusCode::CREATED).await
    }

    pub async fn rating(&self, course_id: i64) -> Value {
        ok_json(
            self.get(&format!("/rating/{course_id}")).await,
            StatusCode::OK,
        )
        .await
    }

    pub async fn reviewer(&self, id: i64) -> Value {
        ok_json(self.get(&format!("/reviewer/{id}")).await, StatusCode::OK).await
    }

    pub async fn course_page(&self, course_id: i64, query: &str) -> Value {
        ok_json(
            self.get(&format!("/course/{course_id}/reviews?{query}"))
                .await,
            StatusCode::OK,
        )
        .await
    }

    /// Holds the course's rating row locked, so that writes to the course wait; commit
    /// the transaction to let them go on.
    pub async fn lock_course(&self, course_id: i64) -> sqlx::Transaction<'static, sqlx::Postgres> {
        let mut lock = self.db.begin().await.unwrap();
        sqlx::query("SELECT 1 FROM ratings WHERE course_id = $1 FOR UPDATE")
            .bind(course_id)
            .execute(&mut *lock)
            .await
            .unwrap();
        lock
    }

    /// A snapshot of every table, to show that a rejected write changed nothing.
    pub async fn snapshot(&self) -> Value {
        let (snapshot,): (Value,) = sqlx::query_as(
            r#"SELECT json_build_object(
                 'ratings', (SELECT coalesce(json_agg(r ORDER BY course_id), '[]') FROM ratings r),
                 'reviewers', (SELECT coalesce(json_agg(v ORDER BY id), '[]') FROM reviewers v),
                 'reviews', (SELECT coalesce(json_agg(x ORDER BY id), '[]') FROM reviews x))"#,
        )
        .fetch_one(&self.db)
        .await
        .unwrap();
        snapshot
    }
}

/// Asserts the status and returns the JSON body.
pub async fn ok_json(response: Response, expected: StatusCode) -> Value {
    let status = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(status, expected, "body: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// Asserts a problem+json answer with this status whose detail mentions `detail_part`.
pub async fn assert_problem(response: Response, status: StatusCode, detail_part: &str) -> Value {
    let content_type = response.headers().get("content-type").cloned();
    let problem = ok_json(response, status).await;
    assert_eq!(
        content_type.as_ref().and_then(|v| v.to_str().ok()),
        Some("application/problem+json"),
        "{problem}"
    );
    assert_eq!(problem["status"], status.as_u16(), "{problem}");
    assert!(
        problem["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("urn:courser:problem:")),
        "{problem}"
    );
    assert!(problem["title"].is_string(), "{problem}");
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(
        detail.to_lowercase().contains(&detail_part.to_lowercase()),
        "detail {detail:?} does not mention {detail_part:?}"
    );
    problem
}
