//! Idle keep-alive connections to the backends.
//!
//! Pingora's own pool (`TransportConnector`) spawns a watcher task for each connection it
//! takes back, so once per request, and checks each connection it hands out with a
//! `getpeername` system call. Each worker thread's service has a pool of its own (see
//! [`crate::listeners`]), so this one is a list per backend behind a lock no other thread
//! takes. A connection the backend closed while it sat idle shows up when it is taken:
//! its socket reads (end of stream, or bytes nothing asked for) without waiting, so it is
//! dropped and the next one is tried.

use std::collections::{HashMap, VecDeque};
use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Mutex;
use std::task::Poll;
use std::time::{Duration, Instant};

use pingora::connectors::{ConnectorOptions, TransportConnector};
use pingora::prelude::HttpPeer;
use pingora::protocols::Stream;
use pingora::protocols::http::v1::client::HttpSession;
use pingora::server::configuration::ServerConf;
use pingora::upstreams::peer::Peer;
use tokio::io::AsyncReadExt;

/// Upstream connections: opened by Pingora's connector, kept here between requests.
pub struct Pool {
    connector: TransportConnector,
    idle: Mutex<HashMap<SocketAddr, VecDeque<Idle>>>,
    per_backend: usize,
    idle_timeout: Duration,
}

struct Idle {
    stream: Stream,
    since: Instant,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("per_backend", &self.per_backend)
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}

impl Pool {
    /// Keeps at most `per_backend` idle connections to each backend, each for at most
    /// `idle_timeout`; new connections are made as `conf` says.
    pub fn new(conf: &ServerConf, per_backend: usize, idle_timeout: Duration) -> Self {
        Self {
            connector: TransportConnector::new(Some(ConnectorOptions::from_server_conf(conf))),
            idle: Mutex::new(HashMap::new()),
            per_backend,
            idle_timeout,
        }
    }

    /// An HTTP/1 session to `peer` on an idle connection, or on a new one. The session
    /// has the peer's read and write timeouts.
    pub async fn session(&self, peer: &HttpPeer) -> pingora::Result<HttpSession> {
        let stream = match self.take(peer).await {
            Some(stream) => stream,
            None => self.connector.new_stream(peer).await?,
        };
        let mut session = HttpSession::new_with_options(stream, peer);
        session.read_timeout = peer.options.read_timeout;
        session.write_timeout = peer.options.write_timeout;
        Ok(session)
    }

    /// Keeps the session's connection for the next request to `peer`, when the exchange
    /// on it ended cleanly and both sides want to keep it.
    pub async fn release(&self, mut session: HttpSession, peer: &HttpPeer) {
        session.respect_keepalive();
        let Some(stream) = session.reuse().await else {
            return;
        };
        let Some(addr) = peer.address().as_inet().copied() else {
            return;
        };
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
        if self.per_backend > 0 {
            list.push_back(Idle { stream, since: now });
        }
    }

    /// The most recently used idle connection to `peer` that is still open.
    async fn take(&self, peer: &HttpPeer) -> Option<Stream> {
        let addr = peer.address().as_inet()?;
        loop {
            let mut candidate = {
                let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
                let list = idle.get_mut(addr)?;
                let candidate = list.pop_back()?;
                if candidate.since.elapsed() > self.idle_timeout {
                    // Everything older than the newest is older still.
                    list.clear();
                    return None;
                }
                candidate
            };
            if is_quiet(&mut candidate.stream).await {
                return Some(candidate.stream);
            }
        }
    }
}

/// Whether an idle connection has nothing to read: an open connection to a backend that
/// speaks only when asked. End of stream, an error or unasked-for bytes all mean no.
async fn is_quiet(stream: &mut Stream) -> bool {
    let mut byte = [0u8; 1];
    // Unconstrained: an exhausted task budget must not read as "nothing to read".
    let mut read = pin!(tokio::task::unconstrained(stream.read(&mut byte)));
    poll_fn(|cx| Poll::Ready(read.as_mut().poll(cx).is_pending())).await
}
