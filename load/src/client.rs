//! The HTTP side: the target's address, one keep-alive HTTP/1 connection (hyper's
//! low-level client, no pool of its own: the runner owns one connection per task), and
//! sending one request on it.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST, USER_AGENT};
use http::{HeaderValue, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpSocket, TcpStream};

use crate::Error;
use crate::stats::ErrorKind;
use crate::workload::Planned;

/// Where requests go.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    pub addr: SocketAddr,
    host: HeaderValue,
    /// A path prefix from the base URL, prepended to every request path.
    prefix: String,
    /// `Bearer <key>` for writes.
    auth: Option<HeaderValue>,
    /// Local addresses that new connections are made from, in turn (none: the system's
    /// choice), so that the load can look like several clients to a per-address limit.
    sources: Arc<[IpAddr]>,
    next_source: Arc<AtomicUsize>,
}

impl Target {
    /// Parses `http://host[:port][/prefix]` and resolves the host once.
    pub fn new(url: &str, api_key: Option<&str>) -> Result<Self, Error> {
        let uri: Uri = url
            .parse()
            .map_err(|e| Error::Config(format!("--url '{url}': {e}")))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => {
                return Err(Error::Config(format!(
                    "--url '{url}': only http is supported (got {other}); put TLS in front of, not inside, the measurement"
                )));
            }
            None => return Err(Error::Config(format!("--url '{url}' needs http://"))),
        }
        let authority = uri
            .authority()
            .ok_or_else(|| Error::Config(format!("--url '{url}' has no host")))?;
        let port = authority.port_u16().unwrap_or(80);
        let addr = (authority.host(), port)
            .to_socket_addrs()
            .map_err(|e| Error::Config(format!("cannot resolve {}: {e}", authority.host())))?
            .next()
            .ok_or_else(|| Error::Config(format!("{} resolves to nothing", authority.host())))?;
        let host = HeaderValue::from_str(authority.as_str())
            .map_err(|e| Error::Config(format!("--url host: {e}")))?;
        let auth = api_key
            .map(|k| HeaderValue::from_str(&format!("Bearer {}", k.trim())))
            .transpose()
            .map_err(|_| {
                Error::Config("the API key holds characters not allowed in a header".into())
            })?;
        Ok(Self {
            url: url.to_string(),
            addr,
            host,
            prefix: uri.path().trim_end_matches('/').to_string(),
            auth,
            sources: Arc::new([]),
            next_source: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Connections are made from these local addresses, in turn.
    #[must_use]
    pub fn with_sources(mut self, sources: Vec<IpAddr>) -> Self {
        self.sources = sources.into();
        self
    }

    async fn connect(&self) -> std::io::Result<TcpStream> {
        if self.sources.is_empty() {
            return TcpStream::connect(self.addr).await;
        }
        let source =
            self.sources[self.next_source.fetch_add(1, Ordering::Relaxed) % self.sources.len()];
        let socket = match source {
            IpAddr::V4(_) => TcpSocket::new_v4()?,
            IpAddr::V6(_) => TcpSocket::new_v6()?,
        };
        socket.bind(SocketAddr::new(source, 0))?;
        socket.connect(self.addr).await
    }

    fn request(&self, p: &Planned) -> Result<Request<Full<Bytes>>, ErrorKind> {
        let path = if self.prefix.is_empty() {
            Uri::try_from(p.path.as_str())
        } else {
            Uri::try_from(format!("{}{}", self.prefix, p.path))
        }
        .map_err(|_| ErrorKind::Io)?;
        let mut req = Request::new(Full::new(p.body.clone().unwrap_or_default()));
        *req.method_mut() = p.method.clone();
        *req.uri_mut() = path;
        let h = req.headers_mut();
        h.insert(HOST, self.host.clone());
        h.insert(USER_AGENT, HeaderValue::from_static("courser-load"));
        if p.body.is_some() {
            h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        if p.method != http::Method::GET
            && let Some(auth) = &self.auth
        {
            h.insert(AUTHORIZATION, auth.clone());
        }
        Ok(req)
    }
}

/// One keep-alive connection.
#[derive(Debug)]
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
}

/// An answer: its status and, when asked for, its body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Bytes,
}

impl Conn {
    /// Connects and starts the connection's task on the current `LocalSet`.
    pub async fn open(target: &Target) -> Result<Self, ErrorKind> {
        let stream = target.connect().await.map_err(|_| ErrorKind::Connect)?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|_| ErrorKind::Connect)?;
        tokio::task::spawn_local(async move {
            // Errors surface on the next send; nothing to log here.
            let _ = conn.await;
        });
        Ok(Self { sender })
    }

    /// Whether the server (or an error) closed it: then it must be opened again.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    /// The connection kept in `slot`, or a new one in its place when there is none or
    /// the server closed it.
    pub async fn reuse_or_open<'a>(
        slot: &'a mut Option<Self>,
        target: &Target,
    ) -> Result<&'a mut Self, ErrorKind> {
        if slot.as_ref().is_none_or(Self::is_closed) {
            *slot = Some(Self::open(target).await?);
        }
        slot.as_mut().ok_or(ErrorKind::Connect)
    }

    /// Sends one request and reads the whole answer (the body is kept only when
    /// `keep_body`, otherwise drained so the connection can be reused).
    pub async fn send(
        &mut self,
        target: &Target,
        p: &Planned,
        keep_body: bool,
    ) -> Result<Answer, ErrorKind> {
        let req = target.request(p)?;
        self.sender.ready().await.map_err(|_| ErrorKind::Io)?;
        let resp = self
            .sender
            .send_request(req)
            .await
            .map_err(|_| ErrorKind::Io)?;
        let status = resp.status().as_u16();
        let mut body = resp.into_body();
        let body = if keep_body {
            body.collect().await.map_err(|_| ErrorKind::Io)?.to_bytes()
        } else {
            while let Some(frame) = body.frame().await {
                frame.map_err(|_| ErrorKind::Io)?;
            }
            Bytes::new()
        };
        Ok(Answer { status, body })
    }
}

/// The error kind of an answer's status, if it is one.
#[must_use]
pub fn status_error(status: u16) -> Option<ErrorKind> {
    match status {
        400..=499 => Some(ErrorKind::Status4xx),
        500..=599 => Some(ErrorKind::Status5xx),
        _ => None,
    }
}
