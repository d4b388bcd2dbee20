//! The request path: Pingora's [`ProxyHttp`] hooks for Courser.
//!
//! In order: rate limit, body limit and request id (`request_filter`); backend choice
//! with health, ejection, the per-backend cap and the backends already tried
//! (`upstream_peer`); `X-Forwarded-For` (`upstream_request_filter`); passive health from
//! the answer (`upstream_response_filter`); retry decisions (`fail_to_connect`,
//! `error_while_proxy`); problem+json for the proxy's own errors (`fail_to_proxy`); and
//! metrics plus the access-log line (`logging`).
//!
//! Retry policy: a failed connect sent nothing, so any method goes to the next backend.
//! A GET or HEAD whose connection broke before the first response byte goes to the next
//! backend too, and one that timed out is retried once. Any other method is never sent
//! again once its connection was established, since it may have reached a backend.

use std::cell::Cell;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use pingora::ErrorType::{self, HTTPStatus};
use pingora::http::{Method, RequestHeader, ResponseHeader};
use pingora::lb::LoadBalancer;
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorSource};

use crate::backends::{BackendState, InFlight, Registry, now_ms};
use crate::drain::Draining;
use crate::metrics::{Metrics, RetryReason};
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

#[async_trait]
impl ProxyHttp for CourserProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            start: Instant::now(),
            request_id: None,
            client_ip: None,
            attempt: None,
            attempt_started: Instant::now(),
            tried: Vec::new(),
            timeout_retried: false,
            response_started: false,
            body_bytes: 0,
        }
    }

    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<bool> {
        ctx.client_ip = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let id = match session.req_header().headers.get(request_id::HEADER) {
            Some(v) if request_id::is_valid(v.as_bytes()) => v.clone(),
            _ => {
                let id = request_id::generate();
                session
                    .req_header_mut()
                    .insert_header(request_id::HEADER, id.clone())?;
                id
            }
        };
        ctx.request_id = Some(id);
        session.set_read_timeout(Some(self.policy.body_read_timeout));

        if let Some(ip) = ctx.client_ip
            && let Err(wait) = self.limiter.check(ip, Instant::now())
        {
            self.metrics.rate_limited.inc();
            let mut problem = Problem::for_status(429);
            problem.retry_after = Some(wait.as_secs_f64().ceil().max(1.0) as u64);
            problem.send(session, ctx.request_id.as_ref()).await?;
            return Ok(true);
        }

        let declared = session
            .req_header()
            .headers
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > self.policy.body_limit) {
            Problem::for_status(413)
                .send(session, ctx.request_id.as_ref())
                .await?;
            return Ok(true);
        }
        Ok(false)
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        if let Some(chunk) = body {
            ctx.body_bytes += chunk.len() as u64;
            if ctx.body_bytes > self.policy.body_limit {
                return Error::e_explain(HTTPStatus(413), "request body over the limit");
            }
        }
        Ok(())
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<Box<HttpPeer>> {
        let key = course_key(session.req_header().uri.path());
        let state = self.choose(key, ctx)?;
        let mut peer = Box::new(HttpPeer::new(state.addr, false, String::new()));
        peer.options.connection_timeout = Some(self.policy.connect_timeout);
        peer.options.read_timeout = Some(self.policy.read_timeout);
        peer.options.write_timeout = Some(self.policy.write_timeout);
        peer.options.idle_timeout = Some(self.policy.idle_timeout);
        ctx.attempt = Some(state.start());
        ctx.attempt_started = Instant::now();
        Ok(peer)
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        if let Some(ip) = ctx.client_ip {
            let xff = match upstream_request.headers.get("x-forwarded-for") {
                Some(prev) => format!("{}, {ip}", String::from_utf8_lossy(prev.as_bytes())),
                None => ip.to_string(),
            };
            upstream_request.insert_header("x-forwarded-for", xff)?;
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        if upstream_response.status.is_informational() {
            return Ok(());
        }
        ctx.response_started = true;
        if let Some(attempt) = &ctx.attempt {
            let metrics = &attempt.backend().metrics;
            metrics
                .upstream_duration
                .observe(ctx.attempt_started.elapsed().as_secs_f64());
            // A 503 is a live instance shedding load or reporting a database every
            // instance shares: ejecting it would only pile its share onto the others.
            match upstream_response.status {
                StatusCode::SERVICE_UNAVAILABLE => {}
                status if status.is_server_error() => {
                    self.registry.record_server_error(attempt.backend());
                }
                _ => self.registry.record_success(attempt.backend()),
            }
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        if self.draining.get() {
            // Tell the client to reconnect (to the new process, on an upgrade).
            session.set_keepalive(None);
        }
        if let Some(id) = &ctx.request_id {
            upstream_response.insert_header(request_id::HEADER, id.clone())?;
        }
        Ok(())
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let Some(attempt) = self.end_attempt(ctx) {
            self.registry.record_connect_failure(attempt.backend());
        }
        // Nothing was sent: safe for every method.
        let retry = self.can_try_another(ctx);
        if retry {
            self.metrics.retry(RetryReason::Connect);
        }
        e.set_retry(retry);
        e
    }

    fn error_while_proxy(
        &self,
        _peer: &HttpPeer,
        session: &mut Session,
        mut e: Box<Error>,
        ctx: &mut RequestCtx,
        _client_reused: bool,
    ) -> Box<Error> {
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
            && is_retriable_method(&session.req_header().method)
            && !session.as_ref().retry_buffer_truncated()
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
        e.set_retry(retry);
        e
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let code = match (e.etype(), e.esource()) {
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
        };
        if code > 0
            && session.response_written().is_none()
            && let Err(err) = Problem::for_status(code)
                .send(session, ctx.request_id.as_ref())
                .await
        {
            tracing::debug!(error = %err, "could not send the error answer");
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, _error: &Error) -> bool {
        // Every request already gets one access-log line with its outcome.
        self.policy.access_log
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let elapsed = ctx.start.elapsed();
        self.metrics.duration.observe(elapsed.as_secs_f64());
        let attempt = ctx.attempt.take();
        match &attempt {
            Some(a) => a.backend().metrics.observe(status),
            None => self.metrics.own.observe(status),
        }
        if self.policy.access_log {
            let req = session.req_header();
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::course_key;

    #[test]
    fn the_course_id_is_the_key_of_course_and_rating_paths() {
        assert_eq!(course_key("/course/42/reviews"), b"42");
        assert_eq!(course_key("/course/42"), b"42");
        assert_eq!(course_key("/rating/42"), b"42");
        assert_eq!(course_key("/review/42"), b"");
        assert_eq!(course_key("/course/"), b"");
    }
}
