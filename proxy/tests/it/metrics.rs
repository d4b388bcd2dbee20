//! The proxy's `/metrics` as scrapers read it: valid for `promtool check metrics`, the
//! families `dashboards/exported-metrics.txt` lists, OpenMetrics for Prometheus, and
//! latency per backend.

use std::sync::atomic::Ordering::SeqCst;

use crate::helpers::{TestBackend, spawn_proxy};
use courser_exposition::testing::{
    PROMETHEUS_ACCEPT, assert_openmetrics, documented_families, promtool_check_metrics, sample_sum,
    served_families,
};

#[tokio::test]
async fn metrics_pass_promtool_after_traffic_and_are_the_documented_families() {
    let b = [
        TestBackend::start("b0").await,
        TestBackend::start("b1").await,
    ];
    let proxy = spawn_proxy(&[&b[0], &b[1]], "").await;
    for course in 0..20 {
        assert_eq!(proxy.get(&format!("/course/{course}/reviews")).await.0, 200);
    }
    let posted = proxy.post("/review", "{}").await;
    assert_eq!(posted.status(), 200);
    // Failures too: 5xx counted per backend, one backend's latency including its 5xx.
    b[1].behaviour.fail.store(true, SeqCst);
    for course in 0..6 {
        proxy.get(&format!("/course/{course}/reviews")).await;
    }
    b[1].behaviour.fail.store(false, SeqCst);

    // What a classic-format client (curl, promtool) gets.
    let response = proxy.client.get(proxy.metrics_url()).send().await.unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = response.text().await.unwrap();
    promtool_check_metrics(&text);
    assert_eq!(
        served_families(&text),
        documented_families("courser_proxy_"),
        "the families served (left) and dashboards/exported-metrics.txt (right) differ"
    );

    // Every attempt that got an answer is timed against the backend that gave it.
    let sent_to = |backend: &TestBackend| backend.total() as f64;
    assert_eq!(sent_to(&b[0]) + sent_to(&b[1]), 27.0);
    for backend in &b {
        let label = format!("backend=\"{}\"", backend.addr);
        let timed = sample_sum(
            &text,
            "courser_proxy_upstream_duration_seconds_count",
            &[&label],
        );
        assert_eq!(timed, sent_to(backend), "{label}: {text}");
        let buckets = sample_sum(
            &text,
            "courser_proxy_upstream_duration_seconds_bucket",
            &[&label, "le=\"+Inf\""],
        );
        assert_eq!(buckets, timed, "{text}");
    }

    // What Prometheus gets.
    let response = proxy
        .client
        .get(proxy.metrics_url())
        .header("accept", PROMETHEUS_ACCEPT)
        .send()
        .await
        .unwrap();
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    let openmetrics = response.text().await.unwrap();
    assert_openmetrics(&content_type, &openmetrics, "courser_proxy_requests");
}
