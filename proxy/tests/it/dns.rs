//! Backends named by host: the proxy resolves the names again every `dns_refresh_ms`,
//! so it follows the pods behind a headless service as they come and go. The test makes
//! its name real in `/etc/hosts`, which the system resolver reads at each lookup; where
//! that file cannot be written (not root), it says so and stops there.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::helpers::{TestBackend, spawn_proxy_on};

const HOSTS: &str = "/etc/hosts";

/// `/etc/hosts` as it was, put back when dropped; one line of it is the test's.
struct HostsLine {
    original: String,
}

impl HostsLine {
    /// `None` when `/etc/hosts` cannot be written.
    fn take() -> Option<Self> {
        let original = std::fs::read_to_string(HOSTS).ok()?;
        std::fs::write(HOSTS, &original).ok()?;
        Some(Self { original })
    }

    /// Makes `name` resolve to `ip` (and only to it).
    fn point(&self, name: &str, ip: &str) {
        let mut text = self.original.clone();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&format!("{ip} {name}\n"));
        std::fs::write(HOSTS, text).unwrap();
    }
}

impl Drop for HostsLine {
    fn drop(&mut self) {
        let _ = std::fs::write(HOSTS, &self.original);
    }
}

#[tokio::test]
async fn a_backend_name_is_resolved_again_and_its_new_address_gets_the_requests() {
    let Some(hosts) = HostsLine::take() else {
        eprintln!("{HOSTS} is not writable here (not root): the DNS refresh is not tested");
        return;
    };
    let name = format!("courser-proxy-dns-{}.test", std::process::id());
    // Two pods of one service: the same port on two addresses.
    let first = TestBackend::start("first").await;
    let port = first.addr.port();
    let second = TestBackend::restart("second", SocketAddr::from(([127, 0, 0, 2], port))).await;
    hosts.point(&name, "127.0.0.1");
    let backends = format!("{name}:{port}");
    let proxy = spawn_proxy_on(
        &[first.addr],
        "dns_refresh_ms = 100",
        &[("COURSER_PROXY_BACKENDS", &backends)],
    )
    .await;
    for _ in 0..5 {
        assert_eq!(proxy.get("/review/1").await.0, 200);
    }
    assert_eq!((first.total(), second.total()), (5, 0));

    // The service's pod moves: the name now resolves to the second address only.
    hosts.point(&name, "127.0.0.2");
    let deadline = Instant::now() + Duration::from_secs(5);
    while second.total() == 0 {
        assert!(
            Instant::now() < deadline,
            "the new address never got a request"
        );
        assert_eq!(proxy.get("/review/1").await.0, 200);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (first_before, second_before) = (first.total(), second.total());
    for _ in 0..10 {
        assert_eq!(proxy.get("/review/1").await.0, 200);
    }
    assert_eq!(
        first.total(),
        first_before,
        "the old address still gets requests"
    );
    assert_eq!(second.total(), second_before + 10);
}
