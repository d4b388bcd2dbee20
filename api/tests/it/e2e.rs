//! The real `courser-api` binary, started as a process and spoken to over HTTP.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{KEY, TestDb, ok_json};

const BINARY: &str = env!("CARGO_BIN_EXE_courser-api");

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn the_binary_migrates_serves_the_api_and_stops_cleanly_on_sigterm() {
    let db = TestDb::create().await;
    let migrate = Command::new(BINARY)
        .arg("migrate")
        .env("COURSER_DATABASE_URL", &db.url)
        .output()
        .unwrap();
    assert!(
        migrate.status.success(),
        "{}",
        String::from_utf8_lossy(&migrate.stderr)
    );

    let addr = format!("127.0.0.1:{}", free_port());
    let mut server = Process(
        Command::new(BINARY)
            .env("COURSER_LISTEN", &addr)
            .env("COURSER_DATABASE_URL", &db.url)
            .env("COURSER_API_KEYS", format!("{KEY},another-key-0123456789"))
            .env("COURSER_MIGRATE_ON_START", "false")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let client = reqwest::Client::new();
    let url = |path: &str| format!("http://{addr}{path}");
    let mut ready = false;
    for _ in 0..100 {
        if client
            .get(url("/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == StatusCode::OK)
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "courser-api did not become ready");

    let created = client
        .post(url("/rating"))
        .bearer_auth(KEY)
        .json(&json!({"course_id": 9}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let page = ok_json(
        client.get(url("/course/9/reviews")).send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(page["course_id"], 9);

    let pid = server.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::task::spawn_blocking(move || server.0.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "exit status {status}");
}

#[tokio::test]
async fn the_binary_refuses_to_start_with_a_configuration_mistake_and_names_it() {
    let cases = [
        (vec![("COURSER_API_KEYS", "")], "api_keys"),
        (
            vec![
                ("COURSER_API_KEYS", "0123456789abcdef0"),
                ("COURSER_POOL_SIZE", "many"),
            ],
            "pool_size",
        ),
        (
            vec![
                ("COURSER_API_KEYS", "0123456789abcdef0"),
                ("COURSER_LISTEN", "nowhere"),
            ],
            "listen",
        ),
    ];
    for (env, setting) in cases {
        let output = Command::new(BINARY).envs(env).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success());
        let named = stderr.to_lowercase().contains(setting);
        assert!(named, "stderr does not name {setting}: {stderr}");
    }
}
