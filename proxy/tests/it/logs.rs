//! The access log: one JSON line per request, in a log file the proxy keeps bounded.

use std::time::{Duration, Instant};

use crate::helpers::{TestBackend, spawn_proxy_with_env};

#[tokio::test]
async fn each_request_gets_a_json_access_line_and_a_full_log_file_is_rotated() {
    let backend = TestBackend::start("b0").await;
    let dir = std::env::temp_dir().join(format!("courser-proxy-logs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("proxy.log");
    let old = dir.join("proxy.log.1");
    let _ = std::fs::remove_file(&log);
    let _ = std::fs::remove_file(&old);
    let proxy = spawn_proxy_with_env(
        &[&backend],
        "",
        &[
            ("RUST_LOG", "warn,access=info"),
            ("COURSER_PROXY_LOG_FILE", log.to_str().unwrap()),
            ("COURSER_PROXY_LOG_MAX_BYTES", "4000"),
        ],
    )
    .await;

    // Several flushes (every 50 ms), each line ~300 bytes: past 4,000 bytes, rotated.
    for i in 0..40 {
        assert_eq!(proxy.get(&format!("/item/{i}")).await.0, 200);
        if i % 5 == 4 {
            tokio::time::sleep(Duration::from_millis(80)).await;
        }
    }
    let read = |path: &std::path::Path| std::fs::read_to_string(path).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(5);
    // A file is rotated right after the batch that filled it: the last line may be in either.
    while !(read(&old) + &read(&log)).contains("\"/item/39\"") {
        assert!(
            Instant::now() < deadline,
            "the last request was never logged"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (current, previous) = (read(&log), read(&old));
    assert!(
        !previous.is_empty(),
        "the full file was kept as proxy.log.1"
    );
    assert!(
        current.len() < 8000,
        "the log file is bounded, not {} bytes",
        current.len()
    );
    let mut paths = Vec::new();
    for line in previous.lines().chain(current.lines()) {
        let entry: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a whole JSON line ({e}): {line}"));
        assert_eq!(entry["target"], "access", "{line}");
        assert_eq!(entry["status"], 200, "{line}");
        paths.push(entry["path"].as_str().unwrap().to_owned());
    }
    // Lines of older files are gone; those kept are the latest, in order, one each.
    let first: usize = paths[0].trim_start_matches("/item/").parse().unwrap();
    let expected: Vec<String> = (first..40).map(|i| format!("/item/{i}")).collect();
    assert_eq!(paths, expected);
    std::fs::remove_dir_all(&dir).unwrap();
}
