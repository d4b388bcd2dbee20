//! The request path: one task per client connection reads each HTTP/1 request, checks
//! it, sends it to a backend and writes the answer back, in that order, on Pingora's
//! HTTP/1 codec, with idle upstream connections kept in [`crate::pool`].
//!
//! Pingora's own proxy (`pingora-proxy`) runs every request as two tasks joined by two
//! channels and a `select!`, through cache, compression and module hooks this proxy does
//! not use; in P1 that cost about four times nginx's user CPU per request. A request to
//! an api instance is a header, a small body and an answer, so here they are done one
//! after the other: the request body is sent whole before the answer is read, as the
//! api reads it whole before answering.
//!
//! In order: rate limit, body limit and request id ([`CourserProxy::admit`]); backend
//! choice with health, ejection, the per-backend cap and the backends already tried
//! ([`CourserProxy::choose`]); the upstream request with `X-Forwarded-For` and without
//! hop-by-hop headers ([`upstream_request`]); passive health from the answer; retry
//! decisions ([`CourserProxy::retry_after`]); problem+json for the proxy's own errors;
//! and metrics plus the access-log line ([`CourserProxy::log`]).
//!
//! Retry policy: a failed connect sent nothing, so any method goes to the next backend.
//! A GET or HEAD without a body whose connection broke before the first response byte
//! goes to the next backend too, and one that timed out is retried once. Any other
//! request is never sent again once its connection was established, since it may have
//! reached a backend.

use std::cell::Cell;
use std::net::{IpAddr, SocketAddr};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use http::{HeaderValue, StatusCode, Version, header};
use pingora::ErrorType::{self, HTTPStatus};
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ReusedHttpStream};
use pingora::http::{Method, RequestHeader};
use pingora::lb::LoadBalancer;
use pingora::prelude::HttpPeer;
use pingora::protocols::http::ServerSession;
use pingora::protocols::http::v1::client::HttpSession as UpstreamSession;
use pingora::protocols::http::v1::common::is_expect_continue_req;
use pingora::protocols::http::v1::server::HttpSession as ClientSession;
use pingora::server::ShutdownWatch;
use pingora::server::configuration::ServerConf;
use pingora::{Error, ErrorSource};
use tokio::sync::Notify;

use crate::backends::{BackendState, InFlight, Registry, now_ms};
use crate::drain::Draining;
use crate::metrics::{Metrics, RetryReason};
use crate::pool::Pool;
use crate::problem::Problem;
use crate::rate_limit::RateLimiter;
use crate::request_id;
use crate::selection::CourserSelection;

/// How far along the Ketama ring (or the list) a choice may look.
const MAX_ITERATIONS: usize = 256;

/// Limits and timeouts applied per request.
#[derive(Debug, Clone, Copy)]
pub struct RequestPolicy {
    /// Largest request body, bytes.
    pub body_limit: u64,
    /// Requests in flight per backend before it is passed over.
    pub max_per_backend: usize,
    /// Per-read timeout of a request body from the client.
    pub body_read_timeout: Duration,
    /// Connect timeout to a backend.
    pub connect_timeout: Duration,
    /// Per-read timeout from a backend.
    pub read_timeout: Duration,
    /// Per-write timeout to a backend.
    pub write_timeout: Duration,
    /// How long an idle upstream connection is kept in the pool.
    pub idle_timeout: Duration,
    /// Whether to write the access log.
    pub access_log: bool,
}

/// The Courser proxy logic. Clones share all state: each worker thread's service gets one.
#[derive(Clone)]
pub struct CourserProxy {
    /// The backends, their active health and the selection.
    pub lb: Arc<LoadBalancer<CourserSelection>>,
    /// Live per-backend state and passive health.
    pub registry: Arc<Registry>,
    /// Where request outcomes are counted.
    pub metrics: Arc<Metrics>,
    /// Per-client-IP token buckets.
    pub limiter: Arc<RateLimiter>,
    /// Limits and timeouts.
    pub policy: RequestPolicy,
    /// Raised at shutdown: answers then close their connection.
    pub draining: Arc<Draining>,
}

impl std::fmt::Debug for CourserProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CourserProxy")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// Per-request state.
#[derive(Debug)]
pub struct RequestCtx {
    start: Instant,
    request_id: Option<HeaderValue>,
    client_ip: Option<IpAddr>,
    /// The current attempt's backend; dropping it ends the attempt.
    attempt: Option<InFlight>,
    /// When the current attempt's backend was chosen.
    attempt_started: Instant,
    /// Backends that failed this request (allocated only on a retry).
    tried: Vec<SocketAddr>,
    timeout_retried: bool,
    response_started: bool,
    body_bytes: u64,
}

/// The course id of `/course/{id}/...` and `/rating/{id}`: the consistent-hash key.
/// Empty for every other path.
pub fn course_key(path: &str) -> &[u8] {
    let rest = path
        .strip_prefix("/course/")
        .or_else(|| path.strip_prefix("/rating/"));
    match rest {
        Some(rest) => rest.split('/').next().unwrap_or("").as_bytes(),
        None => b"",
    }
}

fn is_retriable_method(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

impl CourserProxy {
    fn choose(&self, key: &[u8], ctx: &RequestCtx) -> Result<Arc<BackendState>, Box<Error>> {
        let now = now_ms();
        let chosen: Cell<Option<Arc<BackendState>>> = Cell::new(None);
        let saturated = Cell::new(false);
        let (chosen_ref, saturated_ref) = (&chosen, &saturated);
        let accept = |strict: bool| {
            move |b: &pingora::lb::Backend, healthy: bool| {
                let Some(addr) = b.addr.as_inet() else {
                    return false;
                };
                if ctx.tried.contains(addr) {
                    return false;
                }
                let Some(state) = self.registry.get(&b.addr) else {
                    return false;
                };
                if strict && (!healthy || state.is_ejected(now)) {
                    return false;
                }
                if state.in_flight() >= self.policy.max_per_backend {
                    saturated_ref.set(true);
                    return false;
                }
                chosen_ref.set(Some(state));
                true
            }
        };
        // First the healthy, non-ejected backends; if none is left, any backend not yet
        // tried (a "panic mode": trying a doubtful backend beats a certain 502).
        if self
            .lb
            .select_with(key, MAX_ITERATIONS, accept(true))
            .is_none()
        {
            self.lb.select_with(key, MAX_ITERATIONS, accept(false));
        }
        match chosen.into_inner() {
            Some(state) => Ok(state),
            None if saturated.get() => Err(Error::explain(HTTPStatus(503), "backends saturated")),
            None => Err(Error::explain(HTTPStatus(502), "no backend available")),
        }
    }

    fn can_try_another(&self, ctx: &RequestCtx) -> bool {
        ctx.tried.len() < self.lb.backends().get_backend().len()
    }

    /// Marks the current attempt's backend as tried and returns it.
    fn end_attempt(&self, ctx: &mut RequestCtx) -> Option<InFlight> {
        let attempt = ctx.attempt.take()?;
        ctx.tried.push(attempt.backend().addr);
        Some(attempt)
    }
}

impl RequestCtx {
    fn new() -> Self {
        let now = Instant::now();
        Self {
            start: now,
            request_id: None,
            client_ip: None,
            attempt: None,
            attempt_started: now,
            tried: Vec::new(),
            timeout_retried: false,
            response_started: false,
            body_bytes: 0,
        }
    }
}

/// Whether [`CourserProxy::admit`] let the request through or answered it itself.
#[derive(Debug)]
enum Admission {
    Admitted,
    Answered,
}

/// Request headers that describe one connection, not the request (RFC 9110 §7.6.1, and
/// the older `Keep-Alive` and `Proxy-Connection`), and `Expect`, which the proxy answers
/// itself. Transfer-Encoding stays: it frames the body.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
    "expect",
];

/// The request to send upstream: the client's, as HTTP/1.1, without hop-by-hop headers
/// (those the client's `Connection` names too), with the client's address appended to
/// `X-Forwarded-For`.
fn upstream_request(
    client: &RequestHeader,
    client_ip: Option<IpAddr>,
) -> pingora::Result<Box<RequestHeader>> {
    let mut req = Box::new(client.clone());
    req.set_version(Version::HTTP_11);
    if let Some(nominated) = client.headers.get(header::CONNECTION) {
        for name in String::from_utf8_lossy(nominated.as_bytes()).split(',') {
            req.remove_header(name.trim());
        }
    }
    for name in HOP_BY_HOP {
        req.remove_header(name);
    }
    if let Some(ip) = client_ip {
        let xff = match client.headers.get("x-forwarded-for") {
            Some(prev) => format!("{}, {ip}", String::from_utf8_lossy(prev.as_bytes())),
            None => ip.to_string(),
        };
        req.insert_header("x-forwarded-for", xff)?;
    }
    Ok(req)
}

impl CourserProxy {
    /// Rate limit, body limit (by declared length) and request id. Answers the request
    /// itself when it may not pass.
    async fn admit(
        &self,
        client: &mut ClientSession,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<Admission> {
        ctx.client_ip = client
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let id = match client.get_header(request_id::HEADER) {
            Some(v) if request_id::is_valid(v.as_bytes()) => v.clone(),
            _ => {
                let id = request_id::generate();
                client
                    .req_header_mut()
                    .insert_header(request_id::HEADER, id.clone())?;
                id
            }
        };
        ctx.request_id = Some(id);
        client.set_read_timeout(Some(self.policy.body_read_timeout));

        if let Some(ip) = ctx.client_ip
            && let Err(wait) = self.limiter.check(ip, Instant::now())
        {
            self.metrics.rate_limited.inc();
            let mut problem = Problem::for_status(429);
            problem.retry_after = Some(wait.as_secs_f64().ceil().max(1.0) as u64);
            problem.send(client, ctx.request_id.as_ref()).await?;
            return Ok(Admission::Answered);
        }

        let declared = client
            .get_header(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > self.policy.body_limit) {
            Problem::for_status(413)
                .send(client, ctx.request_id.as_ref())
                .await?;
            return Ok(Admission::Answered);
        }
        Ok(Admission::Admitted)
    }

    fn peer(&self, state: &BackendState) -> HttpPeer {
        let mut peer = HttpPeer::new(state.addr, false, String::new());
        peer.options.connection_timeout = Some(self.policy.connect_timeout);
        peer.options.read_timeout = Some(self.policy.read_timeout);
        peer.options.write_timeout = Some(self.policy.write_timeout);
        peer
    }

    /// Sends the admitted request to a backend, and to the next one while the retry
    /// policy allows, and writes the answer to the client.
    async fn forward(
        &self,
        pool: &Pool,
        client: &mut ClientSession,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        loop {
            let state = self.choose(course_key(client.req_header().uri.path()), ctx)?;
            let peer = self.peer(&state);
            ctx.attempt = Some(state.start());
            ctx.attempt_started = Instant::now();
            let mut upstream = match pool.session(&peer).await {
                Ok(upstream) => upstream,
                Err(e) => {
                    if let Some(attempt) = self.end_attempt(ctx) {
                        self.registry.record_connect_failure(attempt.backend());
                    }
                    // Nothing was sent: safe for every method.
                    if self.can_try_another(ctx) {
                        self.metrics.retry(RetryReason::Connect);
                        continue;
                    }
                    return Err(e.into_up());
                }
            };
            match self.exchange(client, &mut upstream, ctx).await {
                Ok(()) => {
                    pool.release(upstream, &peer).await;
                    return Ok(());
                }
                Err(e) if self.retry_after(&e, client.req_header(), ctx) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// One attempt: the request to `upstream`, its answer to `client`. Errors carry
    /// their side (upstream or downstream) for the retry policy and the status.
    async fn exchange(
        &self,
        client: &mut ClientSession,
        upstream: &mut UpstreamSession,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        let req = upstream_request(client.req_header(), ctx.client_ip)?;
        upstream
            .write_request_header(req)
            .await
            .map_err(Error::into_up)?;
        if !client.is_body_done() {
            // The api reads the whole body before answering, so the proxy answers
            // `Expect: 100-continue` itself and sends the body as it arrives.
            if is_expect_continue_req(client.req_header()) {
                client
                    .write_continue_response()
                    .await
                    .map_err(Error::into_down)?;
            }
            while let Some(chunk) = client.read_body_bytes().await.map_err(Error::into_down)? {
                ctx.body_bytes += chunk.len() as u64;
                if ctx.body_bytes > self.policy.body_limit {
                    return Error::e_explain(HTTPStatus(413), "request body over the limit");
                }
                upstream.write_body(&chunk).await.map_err(Error::into_up)?;
            }
        }
        upstream.finish_body().await.map_err(Error::into_up)?;

        // Informational answers (100 Continue to the `Expect` the proxy removed) are
        // skipped; `read_response` then reads the next header.
        let mut answer = loop {
            upstream.read_response().await.map_err(Error::into_up)?;
            match upstream.resp_header() {
                Some(header) if header.status.is_informational() => {}
                Some(header) => break Box::new(header.clone()),
                None => {
                    return Error::e_explain(ErrorType::InvalidHTTPHeader, "no response header")
                        .map_err(Error::into_up);
                }
            }
        };
        ctx.response_started = true;
        self.note_answer(answer.status, ctx);
        if let Some(id) = &ctx.request_id {
            answer.insert_header(request_id::HEADER, id.clone())?;
        }
        if self.draining.get() {
            // Tell the client to reconnect (to the new process, on an upgrade).
            client.set_server_keepalive(None);
        }
        client
            .write_response_header(answer)
            .await
            .map_err(Error::into_down)?;
        while let Some(chunk) = upstream.read_body_ref().await.map_err(Error::into_up)? {
            client.write_body(chunk).await.map_err(Error::into_down)?;
        }
        client.finish_body().await.map_err(Error::into_down)?;
        Ok(())
    }

    /// Passive health and the upstream latency, from the status of a backend's answer.
    fn note_answer(&self, status: StatusCode, ctx: &RequestCtx) {
        let Some(attempt) = &ctx.attempt else {
            return;
        };
        let backend = attempt.backend();
        backend
            .metrics
            .upstream_duration
            .observe(ctx.attempt_started.elapsed().as_secs_f64());
        // A 503 is a live instance shedding load or reporting a database every
        // instance shares: ejecting it would only pile its share onto the others.
        match status {
            StatusCode::SERVICE_UNAVAILABLE => {}
            status if status.is_server_error() => self.registry.record_server_error(backend),
            _ => self.registry.record_success(backend),
        }
    }

    /// Whether an attempt that failed with `e` is tried again on another backend; counts
    /// the failure against the backend and the retry in the metrics.
    fn retry_after(&self, e: &Error, req: &RequestHeader, ctx: &mut RequestCtx) -> bool {
        let upstream = *e.esource() == ErrorSource::Upstream;
        let timeout = matches!(
            e.etype(),
            ErrorType::ReadTimedout | ErrorType::WriteTimedout
        );
        let broken = matches!(
            e.etype(),
            ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError
        );
        if upstream
            && (timeout || broken)
            && let Some(attempt) = self.end_attempt(ctx)
        {
            self.registry.record_server_error(attempt.backend());
        }
        let eligible = upstream
            && !ctx.response_started
            && is_retriable_method(&req.method)
            // Nothing of a body is kept to send again.
            && ctx.body_bytes == 0
            && self.can_try_another(ctx);
        let retry = eligible && (broken || (timeout && !ctx.timeout_retried));
        if retry {
            if timeout {
                ctx.timeout_retried = true;
                self.metrics.retry(RetryReason::Timeout);
            } else {
                self.metrics.retry(RetryReason::Reset);
            }
        }
        retry
    }

    /// The status the proxy answers a failed request with; 0 when the client is gone.
    fn failure_status(e: &Error) -> u16 {
        match (e.etype(), e.esource()) {
            (HTTPStatus(code), _) => *code,
            (ErrorType::ReadTimedout | ErrorType::WriteTimedout, ErrorSource::Upstream) => 504,
            (_, ErrorSource::Upstream) => 502,
            (
                ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectionClosed,
                ErrorSource::Downstream,
            ) => 0,
            (ErrorType::ReadTimedout, ErrorSource::Downstream) => 408,
            (_, ErrorSource::Downstream) => 400,
            _ => 500,
        }
    }

    /// Answers a failed request with a problem, unless an answer was already started.
    async fn fail(&self, client: &mut ClientSession, e: &Error, ctx: &RequestCtx) {
        let code = Self::failure_status(e);
        if code > 0
            && client
                .response_written()
                .is_none_or(|r| r.status.is_informational())
            && let Err(err) = Problem::for_status(code)
                .send(client, ctx.request_id.as_ref())
                .await
        {
            tracing::debug!(error = %err, "could not send the error answer");
        }
    }

    /// Metrics and the access-log line of a finished request.
    fn log(&self, client: &ClientSession, e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = client.response_written().map_or(0, |r| r.status.as_u16());
        let elapsed = ctx.start.elapsed();
        self.metrics.duration.observe(elapsed.as_secs_f64());
        let attempt = ctx.attempt.take();
        match &attempt {
            Some(a) => a.backend().metrics.observe(status),
            None => self.metrics.own.observe(status),
        }
        if self.policy.access_log {
            let req = client.req_header();
            tracing::info!(
                target: "access",
                method = req.method.as_str(),
                path = req.uri.path(),
                status,
                backend = attempt.as_ref().map_or("-", |a| &a.backend().label),
                duration_ms = elapsed.as_secs_f64() * 1000.0,
                request_id = ctx
                    .request_id
                    .as_ref()
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-"),
                client_ip = ctx.client_ip.map(tracing::field::display),
                retries = ctx.tried.len(),
                error = e.map(tracing::field::display),
            );
        } else if let Some(e) = e {
            tracing::warn!(error = %e, status, "request failed");
        }
    }
}

/// The public listener's app: [`CourserProxy`] with an upstream connection pool. Each
/// worker thread's service has its own (see [`crate::listeners`]), so a pooled
/// connection is always used by the thread that opened it.
pub struct Forwarder {
    proxy: CourserProxy,
    pool: Pool,
    /// Set at shutdown: connections waiting for their next request close.
    closing: AtomicBool,
    closed: Notify,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder")
            .field("proxy", &self.proxy)
            .finish_non_exhaustive()
    }
}

impl Forwarder {
    /// `proxy` with a pool keeping `upstream_keepalive_pool_size` idle connections per
    /// backend.
    pub fn new(proxy: CourserProxy, conf: &ServerConf) -> Self {
        let pool = Pool::new(
            conf,
            conf.upstream_keepalive_pool_size,
            proxy.policy.idle_timeout,
        );
        Self {
            proxy,
            pool,
            closing: AtomicBool::new(false),
            closed: Notify::new(),
        }
    }

    /// The next request's header, or `None` when the connection ends (closed, timed out,
    /// unreadable, or the proxy is shutting down) before one arrives.
    async fn read_request(&self, client: &mut ClientSession) -> Option<()> {
        let mut closed = pin!(self.closed.notified());
        closed.as_mut().enable();
        if self.closing.load(Ordering::Acquire) {
            return None;
        }
        let read = tokio::select! {
            biased;
            read = client.read_request() => read,
            () = closed => return None,
        };
        match read {
            Ok(Some(_)) => Some(()),
            Ok(None) => None,
            Err(e) => {
                if *e.etype() == ErrorType::InvalidHTTPHeader {
                    let problem = Problem::for_status(400);
                    if let Err(err) = problem.send(client, None).await {
                        tracing::debug!(error = %err, "could not send the error answer");
                    }
                }
                tracing::debug!(error = %e, "no request read");
                None
            }
        }
    }
}

#[async_trait]
impl HttpServerApp for Forwarder {
    async fn process_new_http(
        self: &Arc<Self>,
        session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        // Only HTTP/1 is served: no TLS, no h2c.
        let ServerSession::H1(mut client) = session else {
            return None;
        };
        self.read_request(&mut client).await?;
        if *shutdown.borrow() {
            client.set_server_keepalive(None);
        }
        let proxy = &self.proxy;
        let mut ctx = RequestCtx::new();
        let outcome = if client.req_header().method == Method::CONNECT {
            Error::e_explain(HTTPStatus(405), "CONNECT is not proxied")
        } else {
            match proxy.admit(&mut client, &mut ctx).await {
                Ok(Admission::Admitted) => proxy.forward(&self.pool, &mut client, &mut ctx).await,
                Ok(Admission::Answered) => Ok(()),
                Err(e) => Err(e),
            }
        };
        if let Err(e) = &outcome {
            proxy.fail(&mut client, e, &ctx).await;
        }
        proxy.log(&client, outcome.as_ref().err().map(|e| &**e), &mut ctx);
        if outcome.is_err() {
            client.shutdown().await;
            return None;
        }
        let session = ServerSession::H1(client);
        let settings = HttpPersistentSettings::for_session(&session);
        let reusable = session.finish().await.ok().flatten()?;
        Some(ReusedHttpStream::from_reusable_stream(reusable, settings))
    }

    async fn http_cleanup(&self) {
        self.closing.store(true, Ordering::Release);
        self.closed.notify_waiters();
    }
}
#[cfg(test)]
mod tests {
    use pingora::http::RequestHeader;

    use super::{course_key, upstream_request};

    #[test]
    fn the_course_id_is_the_key_of_course_and_rating_paths() {
        assert_eq!(course_key("/course/42/reviews"), b"42");
        assert_eq!(course_key("/course/42"), b"42");
        assert_eq!(course_key("/rating/42"), b"42");
        assert_eq!(course_key("/review/42"), b"");
        assert_eq!(course_key("/course/"), b"");
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_stay_behind() {
        let mut req = RequestHeader::build("POST", b"/review", None).unwrap();
        for (name, value) in [
            ("host", "courser"),
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("expect", "100-continue"),
            ("upgrade", "websocket"),
            ("content-length", "2"),
            ("x-forwarded-for", "10.0.0.1"),
        ] {
            req.append_header(name, value).unwrap();
        }
        let upstream = upstream_request(&req, Some("127.0.0.1".parse().unwrap())).unwrap();
        for gone in ["connection", "x-secret", "keep-alive", "expect", "upgrade"] {
            assert!(upstream.headers.get(gone).is_none(), "{gone} was forwarded");
        }
        assert_eq!(upstream.headers["host"], "courser");
        assert_eq!(upstream.headers["content-length"], "2");
        assert_eq!(upstream.headers["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
    }
}
