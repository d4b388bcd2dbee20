//! HTTP/1 framing through the proxy: chunked bodies both ways, HTTP/1.0 clients, and
//! requests the proxy refuses before any backend sees them. Raw bytes on real sockets,
//! so what is checked is exactly what crosses the wire.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::helpers::{TestBackend, spawn_proxy, spawn_proxy_on};

/// The chunked answer of [`raw_backend`].
const CHUNKED_ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
    5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nx-trailer: t\r\n\r\n";

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A backend written on a bare socket: answers `/readyz` with 200, and every other
/// request, once its head and (chunked) body are in, with [`CHUNKED_ANSWER`]. Records
/// each request's bytes as they arrived.
async fn raw_backend() -> (SocketAddr, Arc<Mutex<Vec<Vec<u8>>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let record = record.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    // A whole request: its head and, when chunked, its last chunk.
                    let end = loop {
                        if let Some(head) = find(&buf, b"\r\n\r\n") {
                            let chunked = String::from_utf8_lossy(&buf[..head])
                                .to_ascii_lowercase()
                                .contains("transfer-encoding: chunked");
                            if !chunked {
                                break head + 4;
                            }
                            if let Some(last) = find(&buf[head + 4..], b"0\r\n\r\n") {
                                break head + 4 + last + 5;
                            }
                        }
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let request: Vec<u8> = buf.drain(..end).collect();
                    let answer = if request.starts_with(b"GET /readyz ") {
                        &b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"[..]
                    } else {
                        record.lock().unwrap().push(request);
                        CHUNKED_ANSWER
                    };
                    if stream.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, seen)
}

/// Reads one whole answer: its head and, by its framing, its body (content-length,
/// chunked, or up to the end of the stream).
async fn read_answer(stream: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(head) = find(&buf, b"\r\n\r\n") {
            let text = String::from_utf8_lossy(&buf).to_ascii_lowercase();
            let length = text[..head]
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|v| v.trim().parse::<usize>().ok());
            let complete = match length {
                Some(len) => buf.len() >= head + 4 + len,
                None if text[..head].contains("transfer-encoding: chunked") => {
                    text.ends_with("\r\n\r\n") && text[head + 4..].contains("0\r\n")
                }
                None => false,
            };
            if complete {
                return String::from_utf8_lossy(&buf).into_owned();
            }
        }
        let Ok(read) = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk)).await
        else {
            panic!(
                "no whole answer within 5 s: {:?}",
                String::from_utf8_lossy(&buf)
            );
        };
        match read {
            Ok(0) | Err(_) => return String::from_utf8_lossy(&buf).into_owned(),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Whether the proxy closed `stream` (end of stream or reset) within 2 s.
async fn closed(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(Duration::from_secs(2), stream.read(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test]
async fn chunked_bodies_pass_through_both_ways_on_a_kept_connection() {
    let (backend, seen) = raw_backend().await;
    let proxy = spawn_proxy_on(&[backend], "", &[]).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    // The body arrives in two pieces, split inside a chunk.
    stream
        .write_all(
            b"POST /review HTTP/1.1\r\nhost: courser\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhel",
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    stream.write_all(b"lo\r\n0\r\n\r\n").await.unwrap();
    let answer = read_answer(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(
        answer.contains("transfer-encoding: chunked\r\n"),
        "{answer}"
    );
    assert!(answer.contains("connection: keep-alive\r\n"), "{answer}");
    let body = &CHUNKED_ANSWER[find(CHUNKED_ANSWER, b"\r\n\r\n").unwrap() + 4..];
    assert!(
        answer.ends_with(std::str::from_utf8(body).unwrap()),
        "{answer}"
    );

    // The same connection carries the next request.
    stream
        .write_all(b"GET /review/1 HTTP/1.1\r\nhost: courser\r\n\r\n")
        .await
        .unwrap();
    let second = read_answer(&mut stream).await;
    assert!(second.starts_with("HTTP/1.1 200 OK\r\n"), "{second}");

    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2, "{seen:?}");
    let sent = String::from_utf8_lossy(&seen[0]);
    assert!(sent.starts_with("POST /review HTTP/1.1\r\n"), "{sent}");
    assert!(sent.ends_with("\r\n\r\n5\r\nhello\r\n0\r\n\r\n"), "{sent}");
}

#[tokio::test]
async fn an_http_1_0_client_gets_its_answer_and_then_the_connection_closes() {
    let b = TestBackend::start("b0").await;
    let proxy = spawn_proxy(&[&b], "").await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(b"GET /review/1 HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let answer = read_answer(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert!(answer.contains("connection: close\r\n"), "{answer}");
    assert!(answer.ends_with("\r\n\r\nb0"), "{answer}");
    assert!(closed(&mut stream).await);
    assert_eq!(b.total(), 1);
}

#[tokio::test]
async fn ambiguous_or_unreadable_requests_are_refused_before_any_backend() {
    let b = TestBackend::start("b0").await;
    let proxy = spawn_proxy(&[&b], "").await;
    let many_headers = format!("GET /review/1 HTTP/1.1\r\n{}\r\n", "a: b\r\n".repeat(200));
    let cases: [(&[u8], &str); 5] = [
        (
            b"POST /review HTTP/1.1\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
            "400",
        ),
        (
            b"POST /review HTTP/1.1\r\ntransfer-encoding: gzip\r\n\r\n",
            "400",
        ),
        (
            b"POST /review HTTP/1.1\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nab",
            "400",
        ),
        (b"HELLO THERE\r\n\r\n", "400"),
        (many_headers.as_bytes(), "431"),
    ];
    for (request, status) in cases {
        let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
        stream.write_all(request).await.unwrap();
        let answer = read_answer(&mut stream).await;
        let shown = String::from_utf8_lossy(request);
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status} ")),
            "{shown:.80}: {answer}"
        );
        assert!(answer.contains("application/problem+json"), "{answer}");
        assert!(answer.contains("connection: close\r\n"), "{answer}");
        assert!(closed(&mut stream).await, "{shown:.80}: left open");
    }
    assert_eq!(b.total(), 0, "a refused request reached the backend");
}
