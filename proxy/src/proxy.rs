//! The request path: one task per client connection reads each HTTP/1 request, checks
//! it, sends it to a backend and writes the answer back, in that order, with the
//! proxy's own HTTP/1 codec ([`crate::http1`]) and idle upstream connections kept in
//! [`crate::pool`].
//!
//! Pingora's own proxy (`pingora-proxy`) runs every request as two tasks joined by two
//! channels and a `select!`, through cache, compression and module hooks this proxy does
//! not use, and its HTTP/1 sessions rebuild every head as header maps; in P1 that cost
//! about four times nginx's user CPU per request. A request to an api instance is a
//! header, a small body and an answer, so here they are done one after the other: the
//! request body is sent whole before the answer is read, as the api reads it whole
//! before answering.
//!
//! In order: framing checks, request id, rate limit and body limit
//! ([`CourserProxy::admit`]); backend choice with health, ejection, the per-backend cap
//! and the backends already tried ([`CourserProxy::choose`]); the upstream request with
//! `X-Forwarded-For` and without hop-by-hop headers ([`upstream_head`]); passive health
//! from the answer; retry decisions ([`CourserProxy::retry_after`]); problem+json for
//! the proxy's own errors; and metrics plus the access-log line ([`CourserProxy::log`]).
//!
//! Retry policy: a failed connect sent nothing, so any method goes to the next backend.
//! A GET or HEAD without a body whose connection broke before the first response byte
//! goes to the next backend too, and one that timed out is retried once. Any other
//! request is never sent again once its connection was established, since it may have
//! reached a backend.

use std::cell::Cell;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::BytesMut;
use pingora::ErrorType::{self, HTTPStatus};
use pingora::apps::ServerApp;
use pingora::lb::LoadBalancer;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use pingora::{Error, ErrorSource};
use tokio::sync::Notify;

use crate::backends::{BackendState, InFlight, Registry, now_ms};
use crate::drain::{Draining, LINGER};
use crate::http1::{self, CopyError, Framing, Head, HeadDeadline, ReadError, ReadTimer};
use crate::metrics::{Metrics, RetryReason};
use crate::pool::{Pool, Upstream};
use crate::problem::Problem;
use crate::rate_limit::RateLimiter;
use crate::request_id::{self, RequestId};
use crate::selection::CourserSelection;
use crate::telemetry;

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
    /// From a request's first byte to the end of its head.
    pub client_header_timeout: Duration,
    /// From the accept, or the end of an answer, to the next request's first byte.
    pub client_idle_timeout: Duration,
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
    request_id: Option<RequestId>,
    client_ip: Option<IpAddr>,
    /// The current attempt's backend; dropping it ends the attempt.
    attempt: Option<InFlight>,
    /// When the current attempt's backend was chosen.
    attempt_started: Instant,
    /// Backends that failed this request (allocated only on a retry).
    tried: Vec<SocketAddr>,
    timeout_retried: bool,
    /// The status written to the client, once an answer was started.
    status: Option<u16>,
    /// Whether the request has a body (which is not kept to send again).
    has_body: bool,
    continue_sent: bool,
    /// Whether the client connection may carry another request after this one.
    keep_alive: bool,
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

fn is_retriable_method(method: &str) -> bool {
    method == "GET" || method == "HEAD"
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
    fn new(client_ip: Option<IpAddr>) -> Self {
        let now = Instant::now();
        Self {
            start: now,
            request_id: None,
            client_ip,
            attempt: None,
            attempt_started: now,
            tried: Vec::new(),
            timeout_retried: false,
            status: None,
            has_body: false,
            continue_sent: false,
            keep_alive: false,
        }
    }
}

/// Request headers that describe one connection, not the request (RFC 9110 §7.6.1, and
/// the older `Keep-Alive` and `Proxy-Connection`), `Expect`, which the proxy answers
/// itself, and `X-Forwarded-For` and the request id, which it writes anew.
/// Transfer-Encoding stays: it frames the body, which is passed on as it is.
const REQUEST_DROPS: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "x-forwarded-for",
    request_id::HEADER,
];

/// Answer headers that describe the backend's connection, and the request id, which the
/// proxy writes itself.
const RESPONSE_DROPS: [&str; 3] = ["connection", "keep-alive", request_id::HEADER];

fn push_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The request to send upstream, appended to `out`: the client's, without hop-by-hop
/// headers (those the client's `Connection` names too), with the request's id (the
/// client's when it was valid), and with the client's address appended to
/// `X-Forwarded-For`.
fn upstream_head(
    req: &Head,
    request_id: Option<&RequestId>,
    client_ip: Option<&str>,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(req.method().as_bytes());
    out.push(b' ');
    out.extend_from_slice(req.target().as_bytes());
    out.extend_from_slice(if req.minor == 0 {
        b" HTTP/1.0\r\n"
    } else {
        b" HTTP/1.1\r\n"
    });
    // Both usually empty: no allocation then.
    let nominated: Vec<&[u8]> = req.tokens("connection").collect();
    let mut forwarded_for: Vec<&[u8]> = Vec::new();
    for (name, value) in req.headers() {
        if name.eq_ignore_ascii_case(b"x-forwarded-for") {
            forwarded_for.push(value);
        }
        if REQUEST_DROPS
            .iter()
            .any(|d| name.eq_ignore_ascii_case(d.as_bytes()))
            || nominated.iter().any(|n| name.eq_ignore_ascii_case(n))
        {
            continue;
        }
        push_header(out, name, value);
    }
    if let Some(id) = request_id {
        push_header(out, request_id::HEADER.as_bytes(), id.as_bytes());
    }
    if let Some(ip) = client_ip {
        out.extend_from_slice(b"x-forwarded-for: ");
        for prev in forwarded_for {
            out.extend_from_slice(prev);
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(ip.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// The backend's answer head for the client, appended to `out`: its status and headers,
/// without the backend's connection headers, with the request id, and with a
/// `Connection` header saying whether the proxy keeps the client's connection.
fn client_head(resp: &Head, request_id: Option<&RequestId>, close: bool, out: &mut Vec<u8>) {
    out.extend_from_slice(b"HTTP/1.1 ");
    let status = resp.status();
    // httparse reads exactly three digits.
    out.extend_from_slice(&[
        b'0' + (status / 100 % 10) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
    ]);
    out.push(b' ');
    out.extend_from_slice(resp.reason().as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in resp.headers() {
        if !RESPONSE_DROPS
            .iter()
            .any(|d| name.eq_ignore_ascii_case(d.as_bytes()))
        {
            push_header(out, name, value);
        }
    }
    if let Some(id) = request_id {
        push_header(out, request_id::HEADER.as_bytes(), id.as_bytes());
    }
    out.extend_from_slice(connection_header(close).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// The `Connection` line of an answer: HTTP/1.0 clients need `keep-alive` spelled out.
pub fn connection_header(close: bool) -> &'static str {
    if close {
        "connection: close\r\n"
    } else {
        "connection: keep-alive\r\n"
    }
}

/// The error for a failed read; `side` says whose.
fn read_failure(e: ReadError, side: ErrorSource) -> Box<Error> {
    let e = match e {
        ReadError::Io(e) => {
            let etype = match e.kind() {
                io::ErrorKind::TimedOut => ErrorType::ReadTimedout,
                io::ErrorKind::UnexpectedEof
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted => ErrorType::ConnectionClosed,
                _ => ErrorType::ReadError,
            };
            Error::because(etype, "reading", e)
        }
        ReadError::Malformed(what) => Error::explain(ErrorType::InvalidHTTPHeader, what),
        // Only a backend's answer gets here (a client's head is judged on arrival): 502.
        ReadError::TooLarge => Error::explain(ErrorType::InvalidHTTPHeader, "head too large"),
    };
    with_side(e, side)
}

/// The error for a failed write; `side` says whose.
fn write_failure(e: io::Error, side: ErrorSource) -> Box<Error> {
    let etype = match e.kind() {
        io::ErrorKind::TimedOut => ErrorType::WriteTimedout,
        _ => ErrorType::WriteError,
    };
    with_side(Error::because(etype, "writing", e), side)
}

fn with_side(e: Box<Error>, side: ErrorSource) -> Box<Error> {
    match side {
        ErrorSource::Upstream => e.into_up(),
        _ => e.into_down(),
    }
}

/// A client connection: its stream, the bytes read from it but not yet used, a buffer
/// for what is written to it, and its read deadlines.
struct Client {
    stream: Stream,
    buf: BytesMut,
    out: Vec<u8>,
    /// Times each read: the request head's phases, and each read of a body.
    timer: ReadTimer,
    /// Since when the connection has waited for its next request.
    idle_since: tokio::time::Instant,
    ip: Option<IpAddr>,
    /// `ip` as text, for `X-Forwarded-For`: formatted once per connection.
    ip_text: Option<String>,
}

impl CourserProxy {
    /// Request id, rate limit and body limit (by declared length). Answers the request
    /// itself when it may not pass, and returns `false` then.
    async fn admit(
        &self,
        client: &mut Client,
        req: &Head,
        framing: Framing,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<bool> {
        ctx.request_id = Some(
            req.header(request_id::HEADER)
                .and_then(RequestId::from_client)
                .unwrap_or_else(RequestId::generate),
        );
        if let Some(ip) = ctx.client_ip
            && self.limiter.enabled()
            && let Err(wait) = self.limiter.check(ip, Instant::now())
        {
            self.metrics.rate_limited.inc();
            let mut problem = Problem::for_status(429);
            problem.retry_after = Some(wait.as_secs_f64().ceil().max(1.0) as u64);
            // The refusal leaves nothing unread when there is no body, and keeping the
            // connection spares a limited client (and the proxy) a new one per request.
            ctx.keep_alive = ctx.keep_alive && framing == Framing::Empty;
            self.answer(client, &problem, ctx).await?;
            return Ok(false);
        }
        if let Framing::Length(len) = framing
            && len > self.policy.body_limit
        {
            return Error::e_explain(HTTPStatus(413), "declared body over the limit");
        }
        Ok(true)
    }

    /// Writes the proxy's own answer.
    async fn answer(
        &self,
        client: &mut Client,
        problem: &Problem,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        client.out.clear();
        problem.render(ctx.request_id.as_ref(), !ctx.keep_alive, &mut client.out);
        ctx.status = Some(problem.status);
        http1::write_all(&mut client.stream, &client.out, self.policy.write_timeout)
            .await
            .map_err(|e| write_failure(e, ErrorSource::Downstream))
    }

    /// Sends the admitted request to a backend, and to the next one while the retry
    /// policy allows, and writes the answer to the client.
    async fn forward(
        &self,
        pool: &Pool,
        client: &mut Client,
        req: &Head,
        framing: Framing,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        loop {
            let state = self.choose(course_key(req.path()), ctx)?;
            let addr = state.addr;
            ctx.attempt = Some(state.start());
            ctx.attempt_started = Instant::now();
            let mut upstream = match pool
                .connection(addr, self.policy.connect_timeout, self.policy.read_timeout)
                .await
            {
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
                    return Err(Error::because(ErrorType::ConnectError, "connecting", e).into_up());
                }
            };
            match self
                .exchange(client, &mut upstream, req, framing, ctx)
                .await
            {
                Ok(reusable) => {
                    if reusable {
                        pool.release(upstream, addr);
                    }
                    return Ok(());
                }
                Err(e) if self.retry_after(&e, req.method(), ctx) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// One attempt: the request to `upstream`, its answer to `client`. Errors carry
    /// their side (upstream or downstream) for the retry policy and the status. Returns
    /// whether the upstream connection may be kept.
    async fn exchange(
        &self,
        client: &mut Client,
        upstream: &mut Upstream,
        req: &Head,
        framing: Framing,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<bool> {
        use ErrorSource::{Downstream, Upstream as Up};
        let policy = &self.policy;
        client.out.clear();
        upstream_head(
            req,
            ctx.request_id.as_ref(),
            client.ip_text.as_deref(),
            &mut client.out,
        );
        ctx.has_body = framing != Framing::Empty;
        // The api reads the whole body before answering, so the proxy answers
        // `Expect: 100-continue` itself and sends the body as it arrives.
        if ctx.has_body
            && !ctx.continue_sent
            && client.buf.is_empty()
            && req.has_token("expect", "100-continue")
        {
            ctx.continue_sent = true;
            http1::write_all(
                &mut client.stream,
                b"HTTP/1.1 100 Continue\r\n\r\n",
                policy.write_timeout,
            )
            .await
            .map_err(|e| write_failure(e, Downstream))?;
        }
        http1::copy_body(
            &mut client.stream,
            &mut client.buf,
            framing,
            &mut upstream.stream,
            &mut client.out,
            &mut client.timer,
            policy.write_timeout,
            policy.body_limit,
        )
        .await
        .map_err(|e| match e {
            CopyError::Read(e) => read_failure(e, Downstream),
            CopyError::Write(e) => write_failure(e, Up),
            CopyError::OverLimit => Error::explain(HTTPStatus(413), "request body over the limit"),
        })?;

        // Informational answers (100 Continue to the `Expect` the proxy removed) are
        // skipped; the next head is the answer.
        let answer = loop {
            let head =
                http1::read_response(&mut upstream.stream, &mut upstream.buf, &mut upstream.timer)
                    .await
                    .map_err(|e| read_failure(e, Up))?;
            match head.status() {
                101 => {
                    return Error::e_explain(ErrorType::InvalidHTTPHeader, "upgrade not asked for")
                        .map_err(Error::into_up);
                }
                100..=199 => {}
                _ => break head,
            }
        };
        ctx.status = Some(answer.status());
        self.note_answer(answer.status(), ctx);
        let answer_framing = answer
            .response_framing(req.method())
            .map_err(|e| read_failure(e, Up))?;
        ctx.keep_alive = ctx.keep_alive && answer_framing != Framing::UntilClose;
        client.out.clear();
        client_head(
            &answer,
            ctx.request_id.as_ref(),
            !ctx.keep_alive,
            &mut client.out,
        );
        http1::copy_body(
            &mut upstream.stream,
            &mut upstream.buf,
            answer_framing,
            &mut client.stream,
            &mut client.out,
            &mut upstream.timer,
            policy.write_timeout,
            u64::MAX,
        )
        .await
        .map_err(|e| match e {
            CopyError::Read(e) => read_failure(e, Up),
            CopyError::Write(e) => write_failure(e, Downstream),
            CopyError::OverLimit => Error::explain(ErrorType::InternalError, "no limit"),
        })?;
        Ok(answer.keep_alive() && answer_framing != Framing::UntilClose)
    }

    /// Passive health and the upstream latency, from the status of a backend's answer.
    fn note_answer(&self, status: u16, ctx: &RequestCtx) {
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
            503 => {}
            500..=599 => self.registry.record_server_error(backend),
            _ => self.registry.record_success(backend),
        }
    }

    /// Whether an attempt that failed with `e` is tried again on another backend; counts
    /// the failure against the backend and the retry in the metrics.
    fn retry_after(&self, e: &Error, method: &str, ctx: &mut RequestCtx) -> bool {
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
            && ctx.status.is_none()
            && is_retriable_method(method)
            // Nothing of a body is kept to send again.
            && !ctx.has_body
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
    /// The connection is closed after it: a body may be left unread.
    async fn fail(&self, client: &mut Client, e: &Error, ctx: &mut RequestCtx) {
        ctx.keep_alive = false;
        let code = Self::failure_status(e);
        if code > 0
            && ctx.status.is_none()
            && let Err(err) = self.answer(client, &Problem::for_status(code), ctx).await
        {
            tracing::debug!(error = %err, "could not send the error answer");
        }
    }

    /// Metrics and the access-log line of a finished request.
    fn log(&self, req: &Head, e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = ctx.status.unwrap_or(0);
        let elapsed = ctx.start.elapsed();
        self.metrics.duration.observe(elapsed.as_secs_f64());
        let attempt = ctx.attempt.take();
        match &attempt {
            Some(a) => a.backend().metrics.observe(status),
            None => self.metrics.own.observe(status),
        }
        if self.policy.access_log && telemetry::access_enabled() {
            telemetry::access(&telemetry::Access {
                method: req.method(),
                path: req.path(),
                status,
                backend: attempt.as_ref().map_or("-", |a| &a.backend().label),
                duration: elapsed,
                request_id: ctx.request_id.as_ref().map_or("-", RequestId::as_str),
                client_ip: ctx.client_ip,
                retries: ctx.tried.len(),
                error: e.map(|e| e as &dyn std::fmt::Display),
            });
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
    /// `proxy` with a pool keeping `pool_size` idle connections per backend.
    pub fn new(proxy: CourserProxy, pool_size: usize) -> Self {
        let pool = Pool::new(pool_size, proxy.policy.idle_timeout);
        Self {
            proxy,
            pool,
            closing: AtomicBool::new(false),
            closed: Notify::new(),
        }
    }

    /// The next request's head, or `None` when the connection ends (closed, timed out,
    /// unreadable, or the proxy is shutting down) before one arrives.
    async fn read_request(&self, client: &mut Client) -> Option<Head> {
        let mut closed = pin!(self.closed.notified());
        closed.as_mut().enable();
        if self.closing.load(Ordering::Acquire) {
            return None;
        }
        let deadline = HeadDeadline::Client {
            idle: client.idle_since + self.proxy.policy.client_idle_timeout,
            header: self.proxy.policy.client_header_timeout,
        };
        let read = tokio::select! {
            biased;
            read = http1::read_request(&mut client.stream, &mut client.buf, &mut client.timer, deadline) => read,
            () = closed => return None,
        };
        let status = match read {
            Ok(head) => return head,
            Err(ReadError::Io(e)) => {
                tracing::debug!(error = %e, "no request read");
                return None;
            }
            Err(ReadError::Malformed(_)) => 400,
            Err(ReadError::TooLarge) => 431,
        };
        let mut ctx = RequestCtx::new(client.ip);
        if let Err(err) = self
            .proxy
            .answer(client, &Problem::for_status(status), &mut ctx)
            .await
        {
            tracing::debug!(error = %err, "could not send the error answer");
        }
        None
    }

    /// Serves one request; returns whether the connection may carry another.
    async fn serve(&self, client: &mut Client, req: &Head, shutdown: &ShutdownWatch) -> bool {
        let proxy = &self.proxy;
        let mut ctx = RequestCtx::new(client.ip);
        ctx.keep_alive = req.keep_alive() && !*shutdown.borrow() && !proxy.draining.get();
        let outcome = async {
            if req.method() == "CONNECT" {
                return Error::e_explain(HTTPStatus(405), "CONNECT is not proxied");
            }
            let framing = req
                .request_framing()
                .map_err(|e| read_failure(e, ErrorSource::Downstream))?;
            if proxy.admit(client, req, framing, &mut ctx).await? {
                proxy
                    .forward(&self.pool, client, req, framing, &mut ctx)
                    .await?;
            }
            Ok(())
        }
        .await;
        if let Err(e) = &outcome {
            proxy.fail(client, e, &mut ctx).await;
        }
        proxy.log(req, outcome.as_ref().err().map(|e| &**e), &mut ctx);
        ctx.keep_alive
    }
}

#[async_trait]
impl ServerApp for Forwarder {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let ip = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        let mut client = Client {
            stream,
            buf: BytesMut::new(),
            out: Vec::new(),
            timer: ReadTimer::new(self.proxy.policy.body_read_timeout),
            idle_since: tokio::time::Instant::now(),
            ip,
            ip_text: ip.map(|ip| ip.to_string()),
        };
        while let Some(req) = self.read_request(&mut client).await {
            if !self.serve(&mut client, &req, shutdown).await {
                break;
            }
            client.idle_since = tokio::time::Instant::now();
        }
        client.stream.shutdown().await;
        None
    }

    /// Runs once the listener stopped accepting at shutdown: closes every keep-alive
    /// connection waiting for a request, after [`LINGER`], so that a request a client
    /// sends on one just then is still served (with `Connection: close`, see
    /// [`crate::drain`]).
    async fn cleanup(&self) {
        tokio::time::sleep(LINGER).await;
        self.closing.store(true, Ordering::Release);
        self.closed.notify_waiters();
    }
}
#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::{course_key, upstream_head};
    use crate::http1;

    #[test]
    fn the_course_id_is_the_key_of_course_and_rating_paths() {
        assert_eq!(course_key("/course/42/reviews"), b"42");
        assert_eq!(course_key("/course/42"), b"42");
        assert_eq!(course_key("/rating/42"), b"42");
        assert_eq!(course_key("/review/42"), b"");
        assert_eq!(course_key("/course/"), b"");
    }

    #[tokio::test]
    async fn hop_by_hop_headers_and_those_connection_names_stay_behind() {
        let mut raw: &[u8] = b"POST /review HTTP/1.1\r\nhost: courser\r\n\
            connection: keep-alive, x-secret\r\nx-secret: 1\r\nkeep-alive: timeout=5\r\n\
            expect: 100-continue\r\nupgrade: websocket\r\ncontent-length: 2\r\n\
            x-forwarded-for: 10.0.0.1\r\n\r\n";
        let mut buf = BytesMut::new();
        let req = http1::read_request(
            &mut raw,
            &mut buf,
            &mut http1::ReadTimer::new(std::time::Duration::from_secs(5)),
            http1::HeadDeadline::PerRead,
        )
        .await
        .unwrap()
        .unwrap();
        let mut out = Vec::new();
        upstream_head(&req, None, Some("127.0.0.1"), &mut out);
        let sent = String::from_utf8(out).unwrap().to_ascii_lowercase();
        for gone in ["connection", "x-secret", "keep-alive", "expect", "upgrade"] {
            assert!(
                !sent.contains(&format!("{gone}:")),
                "{gone} was forwarded: {sent}"
            );
        }
        assert!(sent.starts_with("post /review http/1.1\r\n"), "{sent}");
        assert!(sent.contains("host: courser\r\n"), "{sent}");
        assert!(sent.contains("content-length: 2\r\n"), "{sent}");
        assert!(
            sent.contains("x-forwarded-for: 10.0.0.1, 127.0.0.1\r\n"),
            "{sent}"
        );
        assert!(sent.ends_with("\r\n\r\n"), "{sent}");
    }
}
