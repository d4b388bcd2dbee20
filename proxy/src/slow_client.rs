//! Slow-client (slowloris) protection for the public listener.
//!
//! Pingora's HTTP/1 server applies its read timeout to each read, not to the header block
//! (upstream issue #447): a client that sends one header byte every few seconds is never
//! cut off. [`SlowClientGuard`] wraps every accepted connection in a [`DeadlineStream`]
//! that watches the bytes going by and enforces two whole-phase deadlines:
//!
//! - idle: from the connection's start, or the last byte of a response, to the first byte
//!   of the next request (`client_idle_timeout_ms`);
//! - header: from a request's first byte to the blank line ending its header block
//!   (`client_header_timeout_ms`).
//!
//! When one passes, the pending read fails with `TimedOut` and the proxy closes the
//! connection. Body reads are left to Pingora's per-read timeout. The timer is armed only
//! when a read would block and is moved lazily (re-armed when it fires early), so a busy
//! keep-alive connection costs no timer work per request.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, raw_connect::ProxyDigest,
};
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::drain::LINGER;

/// The two deadlines.
#[derive(Debug, Clone, Copy)]
pub struct ClientTimeouts {
    /// First request byte to end of header block.
    pub header: Duration,
    /// End of the last response (or accept) to the first byte of the next request.
    pub idle: Duration,
}

/// A [`ServerApp`] that puts a [`DeadlineStream`] around each connection before handing
/// it to the wrapped app (the proxy's [`Forwarder`](crate::proxy::Forwarder)).
pub struct SlowClientGuard<A> {
    inner: Arc<A>,
    timeouts: ClientTimeouts,
}

impl<A> fmt::Debug for SlowClientGuard<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlowClientGuard")
            .field("timeouts", &self.timeouts)
            .finish_non_exhaustive()
    }
}

impl<A> SlowClientGuard<A> {
    /// Guards `inner` with `timeouts`.
    pub fn new(inner: A, timeouts: ClientTimeouts) -> Self {
        Self {
            inner: Arc::new(inner),
            timeouts,
        }
    }
}

#[async_trait]
impl<A> ServerApp for SlowClientGuard<A>
where
    A: ServerApp + Send + Sync + 'static,
{
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let stream: Stream = if stream.as_any().is::<DeadlineStream>() {
            stream
        } else {
            Box::new(DeadlineStream::new(stream, self.timeouts))
        };
        self.inner.process_new(stream, shutdown).await
    }

    /// Runs once the listener stopped accepting at shutdown. The wrapped app then
    /// closes every keep-alive connection waiting for a request at once; a client may be
    /// sending one on it at that very moment. Waiting [`LINGER`] first lets such
    /// requests be served (with `Connection: close`, see [`crate::drain`]).
    async fn cleanup(&self) {
        tokio::time::sleep(LINGER).await;
        self.inner.cleanup().await;
    }
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for a request's first byte since `since`.
    Idle { since: Instant },
    /// Reading a header block that must end by `deadline`.
    Headers { deadline: Instant },
    /// Header block done: body, upstream time, response.
    Body,
}

/// A client connection with whole-phase deadlines; see the module docs.
pub struct DeadlineStream {
    inner: Stream,
    timeouts: ClientTimeouts,
    phase: Phase,
    /// The last two bytes seen in the header phase, to find `\n\n` or `\n\r\n` across reads.
    last: [u8; 2],
    timer: Option<Pin<Box<Sleep>>>,
}

impl fmt::Debug for DeadlineStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadlineStream")
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

impl DeadlineStream {
    /// Wraps an accepted connection; the idle deadline starts now.
    pub fn new(inner: Stream, timeouts: ClientTimeouts) -> Self {
        Self {
            inner,
            timeouts,
            phase: Phase::Idle {
                since: Instant::now(),
            },
            last: [0; 2],
            timer: None,
        }
    }

    fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Idle { since } => Some(since + self.timeouts.idle),
            Phase::Headers { deadline } => Some(deadline),
            Phase::Body => None,
        }
    }

    fn on_read(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if let Phase::Idle { .. } = self.phase {
            self.phase = Phase::Headers {
                deadline: Instant::now() + self.timeouts.header,
            };
            self.last = [0; 2];
        }
        if let Phase::Headers { .. } = self.phase {
            for &b in bytes {
                if b == b'\n' && (self.last[1] == b'\n' || self.last == [b'\n', b'\r']) {
                    self.phase = Phase::Body;
                    return;
                }
                self.last = [self.last[1], b];
            }
        }
    }

    fn on_write(&mut self, bytes: &[u8]) {
        // An interim `100 Continue` is followed by the body, not by a new request.
        if bytes.is_empty() || bytes.starts_with(b"HTTP/1.1 1") || bytes.starts_with(b"HTTP/1.0 1")
        {
            return;
        }
        self.phase = Phase::Idle {
            since: Instant::now(),
        };
    }

    /// Polls the deadline timer; `Ready` means the deadline has passed.
    fn poll_deadline(&mut self, cx: &mut Context<'_>, deadline: Instant) -> Poll<()> {
        loop {
            if Instant::now() >= deadline {
                return Poll::Ready(());
            }
            let timer = self
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
            if timer.deadline() > deadline {
                timer.as_mut().reset(deadline);
            }
            match timer.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                // Fired for an earlier deadline that has since moved: re-arm and poll again.
                Poll::Ready(()) => timer.as_mut().reset(deadline),
            }
        }
    }
}

impl AsyncRead for DeadlineStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.on_read(&buf.filled()[before..]);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let Some(deadline) = this.deadline() else {
                    return Poll::Pending;
                };
                match this.poll_deadline(cx, deadline) {
                    Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        match this.phase {
                            Phase::Headers { .. } => "client header timeout",
                            _ => "client idle timeout",
                        },
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl AsyncWrite for DeadlineStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = res {
            this.on_write(&buf[..n]);
        }
        res
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = res
            && n > 0
        {
            let first = bufs
                .iter()
                .find(|b| !b.is_empty())
                .map_or(&[][..], |b| &b[..]);
            this.on_write(first);
        }
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for DeadlineStream {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await;
    }
}

impl UniqueID for DeadlineStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for DeadlineStream {}

impl GetTimingDigest for DeadlineStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }
}

impl GetProxyDigest for DeadlineStream {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }
}

impl GetSocketDigest for DeadlineStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest);
    }
}

#[async_trait]
impl Peek for DeadlineStream {
    async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn timeouts() -> ClientTimeouts {
        ClientTimeouts {
            header: Duration::from_secs(2),
            idle: Duration::from_secs(5),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_trickling_its_headers_is_cut_off_at_the_header_deadline() {
        let (client, server) = tokio::io::duplex(1024);
        let mut stream = DeadlineStream::new(Box::new(server), timeouts());
        let mut client = client;
        let trickle = tokio::spawn(async move {
            for b in b"GET / HTTP/1.1\r\nHost: x\r\n" {
                client.write_all(&[*b]).await.unwrap();
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            client
        });
        let start = Instant::now();
        let mut buf = [0u8; 64];
        let err = loop {
            match stream.read(&mut buf).await {
                Ok(_) => continue,
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        let took = start.elapsed();
        assert!(
            took >= Duration::from_secs(2) && took < Duration::from_secs(3),
            "{took:?}"
        );
        drop(trickle);
    }

    #[tokio::test(start_paused = true)]
    async fn a_complete_header_block_ends_the_header_deadline() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut stream = DeadlineStream::new(Box::new(server), timeouts());
        client
            .write_all(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 64];
        let _ = stream.read(&mut buf).await.unwrap();
        // The body may come slowly: only the per-read timeout of Pingora applies.
        let reader = tokio::spawn(async move { stream.read(&mut buf).await.map(|_| ()) });
        tokio::time::sleep(Duration::from_secs(30)).await;
        client.write_all(b"hello").await.unwrap();
        assert!(reader.await.unwrap().is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_is_closed_after_the_idle_timeout() {
        let (_client, server) = tokio::io::duplex(1024);
        let mut stream = DeadlineStream::new(Box::new(server), timeouts());
        let mut buf = [0u8; 8];
        let err = stream.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    }
}
