//! Connections to the backends, kept idle between requests.
//!
//! Each worker thread's service has a pool of its own (see [`crate::listeners`]), so this
//! is a list per backend behind a lock no other thread takes. A connection the backend
//! closed while it sat idle shows up when it is taken: its socket is readable (end of
//! stream, or bytes nothing asked for), so it is dropped and the next one is tried.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::net::TcpStream;

use crate::http1::ReadTimer;

/// A connection to a backend, the bytes read from it but not yet used, and its read
/// timeout.
#[derive(Debug)]
pub struct Upstream {
    /// The connection.
    pub stream: TcpStream,
    /// Read but not yet used.
    pub buf: BytesMut,
    /// Times each read from the backend.
    pub timer: ReadTimer,
}

/// Idle upstream connections by backend address.
#[derive(Debug)]
pub struct Pool {
    idle: Mutex<HashMap<SocketAddr, VecDeque<Idle>>>,
    per_backend: usize,
    idle_timeout: Duration,
}

#[derive(Debug)]
struct Idle {
    upstream: Upstream,
    since: Instant,
}

impl Pool {
    /// Keeps at most `per_backend` idle connections to each backend, each for at most
    /// `idle_timeout`.
    pub fn new(per_backend: usize, idle_timeout: Duration) -> Self {
        Self {
            idle: Mutex::new(HashMap::new()),
            per_backend,
            idle_timeout,
        }
    }

    /// An idle connection to `addr`, or a new one made within `connect_timeout` whose
    /// reads time out after `read_timeout`.
    pub async fn connection(
        &self,
        addr: SocketAddr,
        connect_timeout: Duration,
        read_timeout: Duration,
    ) -> io::Result<Upstream> {
        if let Some(upstream) = self.take(addr) {
            return Ok(upstream);
        }
        let stream = tokio::time::timeout(connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        stream.set_nodelay(true)?;
        Ok(Upstream {
            stream,
            buf: BytesMut::new(),
            timer: ReadTimer::new(read_timeout),
        })
    }

    /// Keeps `upstream` for the next request to `addr`. Only a connection whose last
    /// exchange ended cleanly, with nothing left unread, may be given back.
    pub fn release(&self, upstream: Upstream, addr: SocketAddr) {
        if self.per_backend == 0 || !upstream.buf.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.entry(addr).or_default();
        // The oldest are at the front: drop those idle too long, then make room.
        while list
            .front()
            .is_some_and(|c| now.duration_since(c.since) > self.idle_timeout)
            || list.len() >= self.per_backend
        {
            list.pop_front();
        }
        list.push_back(Idle {
            upstream,
            since: now,
        });
    }

    /// The most recently used idle connection to `addr` that is still open.
    fn take(&self, addr: SocketAddr) -> Option<Upstream> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(&addr)?;
        while let Some(candidate) = list.pop_back() {
            if candidate.since.elapsed() > self.idle_timeout {
                // Everything older than the newest is older still.
                list.clear();
                return None;
            }
            if is_quiet(&candidate.upstream.stream) {
                return Some(candidate.upstream);
            }
        }
        None
    }
}

/// Whether an idle connection has nothing to read: an open connection to a backend that
/// speaks only when asked. End of stream, an error or unasked-for bytes all mean no.
fn is_quiet(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.try_read(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}
