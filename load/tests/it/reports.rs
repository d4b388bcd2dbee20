use crate::helpers::{load, temp_path, trivial};

#[test]
fn the_json_result_and_html_report_hold_the_series() {
    let server = trivial();
    let json = temp_path("run.json");
    let html = temp_path("run.html");
    let pid = std::process::id().to_string();
    let done = load(
        &server.url,
        &[
            "--rate",
            "500",
            "--duration",
            "2s",
            "--warmup",
            "1s",
            "--json",
            json.to_str().unwrap(),
            "--html",
            html.to_str().unwrap(),
            "--watch",
            &format!("tests={pid}"),
            "--watch-process",
            "nothing=no-such-process-xyz",
            // The verdict is checked, not the machine's speed: a loaded CI machine can
            // miss the default 25 ms p99 against even a trivial server.
            "--sla-p99",
            "500ms",
        ],
    );
    assert_eq!(done.json, json);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let series = v["series"].as_array().unwrap();
    assert!(series.len() >= 3, "{} seconds", series.len());
    for key in ["t", "offered", "sent", "achieved", "latency_ms", "errors"] {
        assert!(series[1].get(key).is_some(), "series lacks {key}");
    }
    for key in ["p50", "p90", "p99", "p999"] {
        assert!(
            series[1]["latency_ms"][key].as_f64().unwrap() > 0.0,
            "{key}"
        );
    }
    assert!((v["summary"]["offered_rps"].as_f64().unwrap() - 500.0).abs() < 1.0);
    assert_eq!(v["verdict"]["passed"], true);
    let procs = v["processes"].as_array().unwrap();
    let names: Vec<&str> = procs.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["tests", "nothing", "courser-load"]);
    assert!(procs[0]["peak_memory_bytes"].as_u64().unwrap() > 0);
    assert!(procs[0]["cpu_seconds_per_1k"].as_f64().unwrap() > 0.0);

    let page = std::fs::read_to_string(&html).unwrap();
    assert_eq!(page.matches("<svg").count(), 3);
    for text in [
        "Request rate",
        "Latency from due time",
        "Errors per second",
        "p99.9",
        "achieved",
        "PASS",
    ] {
        assert!(page.contains(text), "report lacks {text}");
    }
    // One polyline point per second for each drawn line.
    let points = page.split("<polyline").nth(1).unwrap();
    let points = points
        .split("points=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    assert_eq!(points.split(' ').count(), series.len());
    assert!(
        !page.contains("http://") || !page.contains("<script"),
        "nothing is fetched"
    );
}
