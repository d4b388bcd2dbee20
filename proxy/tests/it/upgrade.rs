//! Pingora's graceful upgrade: a second `courser-proxy --upgrade` takes the listeners
//! over from the running one on SIGQUIT while clients keep sending requests.

use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use crate::helpers::{TestBackend, signal_pid, spawn_proxy};

/// Kills the new process even when an assertion fails half-way.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_graceful_upgrade_hands_over_the_listener_without_a_failed_request() {
    let b = [
        TestBackend::start("b0").await,
        TestBackend::start("b1").await,
    ];
    let mut old = spawn_proxy(&[&b[0], &b[1]], "").await;
    let (client, base) = (old.client.clone(), old.url(""));
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut load = Vec::new();
    for worker in 0..8 {
        let (client, base, stop, sent, failures) = (
            client.clone(),
            base.clone(),
            stop.clone(),
            sent.clone(),
            failures.clone(),
        );
        load.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(SeqCst) {
                let url = format!("{base}/course/{worker}{i}");
                match client.get(&url).send().await {
                    Ok(r) if r.status().is_success() => {}
                    Ok(r) => failures
                        .lock()
                        .unwrap()
                        .push(format!("status {}", r.status())),
                    Err(e) => failures.lock().unwrap().push(format!("{e:?}")),
                }
                sent.fetch_add(1, SeqCst);
                i += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut new = Reaped(old.spawn_upgrade());
    // The new process waits on upgrade_sock; the old one retries its connect too, so
    // this pause only makes the hand-over the usual first-try case.
    tokio::time::sleep(Duration::from_millis(500)).await;
    signal_pid(old.child.id(), "QUIT");

    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(exit) = old.child.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "the old process did not exit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "the old process exited with {exit:?}");

    // Only the new process holds the listener now, and it serves.
    let after_exit = sent.load(SeqCst);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        new.0.try_wait().unwrap().is_none(),
        "the new process is gone"
    );
    let fresh = reqwest::Client::new();
    let resp = fresh.get(format!("{base}/review/1")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);

    stop.store(true, SeqCst);
    for l in load {
        l.await.unwrap();
    }
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {:?}",
        failures.len(),
        sent.load(SeqCst),
        &failures[..failures.len().min(5)]
    );
    assert!(
        sent.load(SeqCst) > after_exit + 20,
        "the new process served too few requests"
    );
}
