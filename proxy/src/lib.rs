//! `courser-proxy`: the Pingora load balancer in front of the Courser api instances.
//!
//! [`build`] turns validated [`Settings`] into a Pingora [`Server`]: the public proxy
//! (one service per worker thread, see [`listeners`]),
//! the admin listener (`/metrics`), the load balancer's active health checks, and the
//! reload and drain watchers. `main` only parses the command line and runs it.

pub mod admin;
pub mod backends;
pub mod config;
pub mod drain;
pub mod http1;
pub mod listeners;
pub mod metrics;
pub mod pool;
pub mod problem;
pub mod proxy;
pub mod rate_limit;
pub mod reload;
pub mod request_id;
pub mod selection;
pub mod telemetry;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::http_app::HttpServer;
use pingora::http::RequestHeader;
use pingora::lb::health_check::{HealthObserve, HttpHealthCheck};
use pingora::lb::{Backend, Backends, LoadBalancer};
use pingora::server::Server;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::services::background::background_service;
use pingora::services::listening::Service;

use crate::admin::Admin;
use crate::backends::{ConfigDiscovery, OutlierPolicy, Registry};
pub use crate::config::{Config, ConfigError, Settings};
use crate::drain::{Drain, Draining};
use crate::metrics::Metrics;
use crate::proxy::{CourserProxy, Forwarder, RequestPolicy};
use crate::rate_limit::RateLimiter;
use crate::reload::{BackendSet, Reloader};
use crate::selection::{CourserSelection, SelectionConfig};

/// Errors while building the server.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The configuration is not usable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Pingora refused a part of the set-up.
    #[error("setting up {what}: {source}")]
    Pingora {
        /// Which part.
        what: &'static str,
        /// Pingora's error.
        source: Box<pingora::Error>,
    },
    /// The start-up runtime could not be made.
    #[error("start-up runtime: {0}")]
    Runtime(#[from] std::io::Error),
    /// Another socket listens on the public address.
    #[error("{0}")]
    Listen(std::io::Error),
}

/// Logs active health flips.
struct HealthLog;

#[async_trait]
impl HealthObserve for HealthLog {
    async fn observe(&self, target: &Backend, healthy: bool) {
        if healthy {
            tracing::info!(backend.addr = %target.addr, "backend passes health checks again");
        } else {
            tracing::warn!(backend.addr = %target.addr, "backend fails health checks");
        }
    }
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// Builds the server from validated settings. `upgrade` takes the listeners over from a
/// running instance (Pingora's graceful upgrade).
pub fn build(settings: Settings, upgrade: bool) -> Result<Server, BuildError> {
    let c = &settings.config;
    let conf = ServerConf {
        threads: c.threads,
        work_stealing: c.work_stealing,
        grace_period_seconds: Some(c.shutdown_timeout_seconds),
        graceful_shutdown_timeout_seconds: Some(1),
        upstream_keepalive_pool_size: c.upstream_keepalive_pool_size,
        upgrade_sock: c.upgrade_sock.clone(),
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();

    let metrics = Arc::new(Metrics::new());
    let registry = Arc::new(Registry::new(
        OutlierPolicy {
            connect_failures: c.eject_consecutive_connect_failures,
            server_errors: c.eject_consecutive_5xx,
            cooldown: ms(c.eject_cooldown_ms),
        },
        metrics.clone(),
    ));
    let discovery = ConfigDiscovery::default();
    let mut lb = LoadBalancer::<CourserSelection>::from_backends_with_config(
        Backends::new(Box::new(discovery.clone())),
        Some(SelectionConfig {
            spread: c.selection,
            registry: registry.clone(),
        }),
    );
    let mut check = HttpHealthCheck::new("localhost", false);
    let pingora_err = |what| move |source| BuildError::Pingora { what, source };
    let mut req = RequestHeader::build("GET", c.health_path.as_bytes(), None)
        .map_err(pingora_err("health check request"))?;
    req.insert_header("host", "localhost")
        .map_err(pingora_err("health check request"))?;
    req.insert_header("user-agent", "courser-proxy")
        .map_err(pingora_err("health check request"))?;
    check.req = req;
    check.consecutive_success = c.health_consecutive_success;
    check.consecutive_failure = c.health_consecutive_failure;
    check.peer_template.options.connection_timeout = Some(ms(c.health_timeout_ms));
    check.peer_template.options.read_timeout = Some(ms(c.health_timeout_ms));
    check.health_changed_callback = Some(Box::new(HealthLog));
    lb.set_health_check(Box::new(check));
    lb.health_check_frequency = Some(ms(c.health_interval_ms));
    lb.parallel_health_check = true;
    let health_service = background_service("health check", lb);
    let lb = health_service.task();

    let set = BackendSet {
        registry: registry.clone(),
        discovery,
        lb: lb.clone(),
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(set.apply(&settings.backends))
        .map_err(pingora_err("backends"))?;

    let draining = Arc::new(Draining::default());
    let proxy = CourserProxy {
        draining: draining.clone(),
        lb: lb.clone(),
        registry: registry.clone(),
        metrics: metrics.clone(),
        limiter: Arc::new(RateLimiter::new(
            c.rate_limit_per_second,
            c.rate_limit_burst,
        )),
        policy: RequestPolicy {
            body_limit: c.body_limit_bytes,
            max_per_backend: c.max_requests_per_backend,
            body_read_timeout: ms(c.client_body_read_timeout_ms),
            client_header_timeout: ms(c.client_header_timeout_ms),
            client_idle_timeout: ms(c.client_idle_timeout_ms),
            connect_timeout: ms(c.connect_timeout_ms),
            read_timeout: ms(c.upstream_read_timeout_ms),
            write_timeout: ms(c.upstream_write_timeout_ms),
            idle_timeout: ms(c.upstream_idle_timeout_ms),
            access_log: c.access_log,
        },
    };
    let conf = server.configuration.clone();
    let public_service = |name: String| {
        let forwarder = Forwarder::new(proxy.clone(), conf.upstream_keepalive_pool_size);
        Service::new(name, forwarder)
    };
    if !upgrade {
        listeners::ensure_free(settings.listen).map_err(BuildError::Listen)?;
    }
    if c.work_stealing {
        let mut service = public_service("courser proxy".to_string());
        service.add_tcp(&settings.listen.to_string());
        server.add_service(service);
    } else {
        let keys = listeners::per_thread_keys(settings.listen, c.threads);
        for (thread, key) in keys.iter().enumerate() {
            let mut service = public_service(format!("courser proxy {thread}"));
            service.threads = Some(1);
            service.add_tcp_with_settings(key, listeners::per_thread_options());
            server.add_service(service);
        }
    }

    let mut admin = Service::new(
        "admin".to_string(),
        HttpServer::new_app(Admin {
            metrics,
            registry: registry.clone(),
            lb,
        }),
    );
    admin.threads = Some(1);
    admin.add_tcp(&settings.metrics_listen.to_string());

    let poll = (c.reload_poll_ms > 0).then(|| ms(c.reload_poll_ms));
    let dns_refresh =
        (c.dns_refresh_ms > 0 && c.backends.has_names()).then(|| ms(c.dns_refresh_ms));
    let reloader = background_service(
        "reload",
        Reloader {
            settings: settings.clone(),
            set,
            poll,
            dns_refresh,
        },
    );
    let drain = background_service("drain", Drain { registry, draining });

    server.add_service(admin);
    server.add_service(health_service);
    server.add_service(reloader);
    server.add_service(drain);
    Ok(server)
}
