//! Whole requests through the real router: path ids, query strings, the key check, JSON
//! bodies and every extractor rejection, down to the error mapping. No input may make a
//! handler panic or answer 500, and every error must be problem+json.
//!
//! The database is a pool that cannot connect (port 1), so anything that gets past the
//! parsers answers 503 quickly; that is allowed, 500 is not. Input layout: byte 0 picks
//! the method and headers, byte 1 the route prefix, then the rest of the path and query
//! up to the first newline, then the body.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use courser_api::auth::ApiKeys;
use courser_api::metrics::Metrics;
use courser_api::state::AppState;
use courser_api::{Config, routes};
use courser_cache::Cache;
use http_body_util::BodyExt as _;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt as _;

const KEY: &str = "fuzz-key-0123456789abcdef";
const METHODS: [&str; 6] = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"];
const PREFIXES: [&str; 8] = [
    "/course/",
    "/review/",
    "/reviewer/",
    "/rating/",
    "/review",
    "/reviewer",
    "/rating",
    "/",
];

struct Harness {
    runtime: tokio::runtime::Runtime,
    router: Router,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let router = runtime.block_on(async {
            let config = Config {
                api_keys: vec![KEY.to_owned()],
                redis_url: String::new(),
                ..Config::default()
            };
            let db = sqlx::postgres::PgPoolOptions::new()
                .acquire_timeout(Duration::from_millis(1))
                .connect_lazy("postgres://fuzz@127.0.0.1:1/fuzz")
                .expect("lazy pool");
            let mut metrics = Metrics::new();
            let cache = Cache::new(&config.cache(), metrics.registry_mut()).expect("cache");
            let state = AppState {
                db,
                keys: ApiKeys::new(&config.api_keys),
                metrics: std::sync::Arc::new(metrics),
                cache,
                request_timeout: Duration::from_secs(5),
            };
            routes::app(state, 64 * 1024).0
        });
        Harness { runtime, router }
    })
}

fuzz_target!(|data: &[u8]| {
    let [flags, prefix, rest @ ..] = data else {
        return;
    };
    let (target, body) = match rest.iter().position(|b| *b == b'\n') {
        Some(end) => (&rest[..end], &rest[end + 1..]),
        None => (rest, &[][..]),
    };
    let Ok(target) = std::str::from_utf8(target) else {
        return;
    };
    let uri = format!(
        "{}{target}",
        PREFIXES[usize::from(*prefix) % PREFIXES.len()]
    );
    let mut request = Request::builder()
        .method(METHODS[usize::from(flags & 0x07) % METHODS.len()])
        .uri(uri.as_str());
    if flags & 0x08 != 0 {
        request = request.header(header::AUTHORIZATION, format!("Bearer {KEY}"));
    }
    if flags & 0x10 != 0 {
        request = request.header(header::CONTENT_TYPE, "application/json");
    }
    if flags & 0x20 != 0 {
        request = request.header(header::IF_NONE_MATCH, "\"x\", W/\"y\", *");
    }
    let Ok(request) = request.body(Body::from(body.to_vec())) else {
        return; // Not a request a client could send: hyper would refuse it first.
    };
    let harness = harness();
    let (status, content_type, text) = harness.runtime.block_on(async {
        let response = harness
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status();
        let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (
            status,
            content_type,
            String::from_utf8_lossy(&bytes).into_owned(),
        )
    });
    assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "{uri}: {text}");
    if status.is_client_error() || status.is_server_error() {
        assert_eq!(
            content_type.as_ref().and_then(|v| v.to_str().ok()),
            Some("application/problem+json"),
            "{status} for {uri}: {text}"
        );
    }
});
