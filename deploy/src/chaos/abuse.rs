//! Case 7: abuse beside normal traffic. Slow clients (slowloris: headers a line at a
//! time, never finished) from 127.0.0.3 and one client at three times its rate limit
//! from 127.0.0.2, while the load, as eight clients (127.0.1.1–8) each under the limit,
//! must keep p99 within the SLA.
//! The proxy's rate limit is off by default: the proxy is upgraded (gracefully) to one
//! with the limit on for this case, and back afterwards.

use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::{Expect, Injected, LoadRun, Plan, Stack, Window};
use crate::proxy;

const SLOW_CLIENTS: usize = 256;
const ABUSER_CONNECTIONS: usize = 16;
/// The abuser's rate as a multiple of its limit.
const ABUSE_FACTOR: f64 = 3.0;
const ABUSER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const SLOWLORIS: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
/// The load's client addresses: a per-address limit is far below the whole load's rate.
const LOAD_SOURCES: u8 = 8;

/// The addresses the load connects from in this case.
pub fn load_sources() -> Vec<Ipv4Addr> {
    (1..=LOAD_SOURCES)
        .map(|i| Ipv4Addr::new(127, 0, 1, i))
        .collect()
}

pub async fn run(
    stack: &Stack,
    load: &LoadRun,
    plan: &Plan,
    rate: f64,
) -> anyhow::Result<Injected> {
    // Twice the load's rate per client address: the load stays under it, the abuser goes
    // far over.
    let limit = (2.0 * rate / LOAD_SOURCES as f64).ceil();
    let limited = [
        ("COURSER_PROXY_RATE_LIMIT_PER_SECOND", limit.to_string()),
        ("COURSER_PROXY_RATE_LIMIT_BURST", limit.to_string()),
    ];
    proxy::upgrade(&stack.layout, &stack.proxy_bin, &limited).await?;
    let target: SocketAddr = stack.layout.proxy_listen.parse()?;
    load.sleep_until(plan.fault_at).await;
    let start = load.elapsed();
    let until = Instant::now() + plan.length;

    let dropped = Rc::new(Cell::new(0u64));
    let tasks = tokio::task::LocalSet::new();
    for _ in 0..SLOW_CLIENTS {
        tasks.spawn_local(slow_client(target, until, dropped.clone()));
    }
    let statuses = Rc::new(Cell::new((0u64, 0u64, 0u64))); // (429, 2xx, other)
    // Paced: the abuser shares this machine's two cores with the stack, and the point is
    // a client far over its limit, not one that starves the machine.
    let pace = Duration::from_secs_f64(ABUSER_CONNECTIONS as f64 / (ABUSE_FACTOR * limit));
    for _ in 0..ABUSER_CONNECTIONS {
        tasks.spawn_local(abuser(target, until, pace, statuses.clone()));
    }
    tasks.await;
    let end = load.elapsed();
    // Back to the proxy as `courser up` runs it.
    proxy::upgrade(&stack.layout, &stack.proxy_bin, &[]).await?;

    let (limited_n, ok_n, other_n) = statuses.get();
    let secs = plan.length.as_secs_f64();
    let abuser_rate = (limited_n + ok_n + other_n) as f64 / secs;
    let mut failures = Vec::new();
    if abuser_rate < 2.0 * limit {
        failures.push(format!(
            "the abusive client sent only {abuser_rate:.0} req/s, not far over its limit of {limit}/s"
        ));
    }
    if limited_n == 0 {
        failures.push("the abusive client was never answered 429".into());
    }
    Ok(Injected {
        window: Window { start, end },
        expect: Expect::WithinSla,
        notes: vec![format!(
            "rate limit {limit}/s per address (burst {limit}); the load came from {LOAD_SOURCES} addresses; {ABUSER} sent {abuser_rate:.0} req/s: {limited_n} answered 429, {ok_n} 2xx, {other_n} other; {SLOW_CLIENTS} slowloris connections from {SLOWLORIS}, {} of them closed by the proxy (and reopened)",
            dropped.get()
        )],
        failures,
    })
}

/// Opens a connection and sends a request's headers a line every 2 s, never ending
/// them; when the proxy closes it, counts that and opens another.
async fn slow_client(target: SocketAddr, until: Instant, dropped: Rc<Cell<u64>>) {
    while Instant::now() < until {
        let Ok(mut stream) = connect_from(SLOWLORIS, target).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let mut line: &[u8] = b"GET /rating/1 HTTP/1.1\r\nHost: courser\r\n";
        loop {
            if stream.write_all(line).await.is_err() {
                dropped.set(dropped.get() + 1);
                break;
            }
            line = b"X-Slow: 1\r\n";
            if Instant::now() >= until {
                return;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
}

/// Sends a request every `pace` (or as fast as the proxy answers, if slower) on a
/// connection from the abuser's address, opening another whenever the proxy closes it.
/// Raw HTTP/1.1: an HTTP client's pool and connector cost more than the requests.
async fn abuser(
    target: SocketAddr,
    until: Instant,
    pace: Duration,
    statuses: Rc<Cell<(u64, u64, u64)>>,
) {
    let mut connection = None;
    let mut ticks = tokio::time::interval(pace);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while Instant::now() < until {
        ticks.tick().await;
        let stream = match &mut connection {
            Some(stream) => stream,
            None => match connect_from(ABUSER, target).await {
                Ok(stream) => connection.insert(stream),
                Err(_) => {
                    count(&statuses, None);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        match tokio::time::timeout(Duration::from_secs(2), get(stream, "/rating/1")).await {
            Ok(Ok((status, keep_alive))) => {
                count(&statuses, Some(status));
                if !keep_alive {
                    connection = None;
                }
            }
            _ => {
                count(&statuses, None);
                connection = None;
            }
        }
    }
}

fn count(statuses: &Cell<(u64, u64, u64)>, status: Option<u16>) {
    let (mut limited, mut ok, mut other) = statuses.get();
    match status {
        Some(429) => limited += 1,
        Some(200..=299) => ok += 1,
        _ => other += 1,
    }
    statuses.set((limited, ok, other));
}

async fn connect_from(from: Ipv4Addr, target: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(from), 0))?;
    socket.connect(target).await
}

/// One GET; the status and whether the connection stays open.
async fn get(stream: &mut TcpStream, path: &str) -> std::io::Result<(u16, bool)> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: courser\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut buf = Vec::with_capacity(1024);
    let head_end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or(std::io::ErrorKind::InvalidData)?;
    let header = |name: &str| {
        head.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
            .map(str::to_owned)
    };
    let length: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .ok_or(std::io::ErrorKind::InvalidData)?;
    while buf.len() < head_end + length {
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok((status, header("connection").as_deref() != Some("close")))
}
