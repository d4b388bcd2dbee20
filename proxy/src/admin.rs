//! The admin listener (`metrics_listen`): `GET /metrics` (OpenMetrics for Prometheus, the
//! classic text format for anyone who does not ask for OpenMetrics) and `GET /healthz`
//! for the proxy's own liveness.

use std::sync::Arc;

use async_trait::async_trait;
use courser_exposition::Format;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::lb::LoadBalancer;
use pingora::protocols::http::ServerSession;

use crate::backends::{Registry, now_ms};
use crate::metrics::Metrics;
use crate::selection::CourserSelection;

/// Serves the admin endpoints.
pub struct Admin {
    /// The proxy's metrics.
    pub metrics: Arc<Metrics>,
    /// Per-backend live state, for the gauges.
    pub registry: Arc<Registry>,
    /// Active health, for `courser_proxy_backend_up`.
    pub lb: Arc<LoadBalancer<CourserSelection>>,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin").finish_non_exhaustive()
    }
}

fn respond(status: u16, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("content-length", body.len())
        .body(body)
        .unwrap_or_else(|_| Response::new(Vec::new()))
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        match session.req_header().uri.path() {
            "/metrics" => {
                let now = now_ms();
                let current = self.lb.backends().get_backend();
                let gauges = current.iter().filter_map(|b| {
                    let state = self.registry.get(&b.addr)?;
                    let up = self.lb.backends().ready(b) && !state.is_ejected(now);
                    Some((state.label.clone(), up, state.in_flight()))
                });
                let accept = session
                    .req_header()
                    .headers
                    .get(http::header::ACCEPT)
                    .and_then(|v| v.to_str().ok());
                let format = Format::negotiate(accept);
                let text = self.metrics.render(gauges, format);
                respond(200, format.content_type(), text.into_bytes())
            }
            "/healthz" => respond(200, "text/plain", b"ok\n".to_vec()),
            _ => respond(404, "text/plain", b"not found\n".to_vec()),
        }
    }
}
