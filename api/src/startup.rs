//! Building and running the application: connect to Postgres, migrate, bind, serve until
//! a shutdown future resolves. `main` and the tests take the same path.

use std::future::Future;
use std::net::SocketAddr;
use std::str::FromStr;

use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;

use courser_cache::Cache;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio::net::TcpListener;

use crate::auth::ApiKeys;
use crate::config::Config;
use crate::db::Db;
use crate::drain::Drain;
use crate::metrics::Metrics;
use crate::routes;
use crate::state::AppState;

/// The schema, embedded in the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot connect to the database: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("cannot migrate the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("cannot set up the cache: {0}")]
    Cache(#[from] courser_cache::CacheError),
}

/// A built application, bound and ready to serve.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    drain: Drain,
    longest_drain: Duration,
}

impl Application {
    /// Binds `config.listen` and builds the application.
    pub async fn build(config: &Config) -> Result<Self, StartupError> {
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartupError::Bind {
                    addr: config.listen,
                    source,
                })?;
        Self::with_listener(config, listener).await
    }

    /// Builds the application on a listener bound by the caller (tests bind port 0).
    pub async fn with_listener(
        config: &Config,
        listener: TcpListener,
    ) -> Result<Self, StartupError> {
        let db = connect(config).await?;
        if config.migrate_on_start {
            MIGRATOR.run(&db).await?;
        }
        let drain = Drain::default();
        let mut metrics = Metrics::new();
        let cache = Cache::new(&config.cache(), Some(db.clone()), metrics.registry_mut())?;
        let state = AppState {
            db: Db::new(db, metrics.db()),
            keys: ApiKeys::new(&config.api_keys),
            metrics: Arc::new(metrics),
            cache,
            drain: drain.clone(),
            request_timeout: config.request_timeout(),
        };
        let (router, _openapi) = routes::app(state, config.body_limit_bytes);
        Ok(Self {
            listener,
            router,
            drain,
            longest_drain: Duration::from_millis(config.shutdown_drain_ms),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, drains (see `drain`), then finishes the
    /// requests in flight and the writes whose clients have gone.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (drain, longest) = (self.drain.clone(), self.longest_drain);
        let stop = async move {
            shutdown.await;
            drain.drain(longest).await;
        };
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(stop)
            .await?;
        self.drain.writes_finished().await;
        Ok(())
    }
}

/// A pool whose connections carry the statement timeout, checked by one connection now
/// so that a wrong URL fails at start-up rather than on the first request.
///
/// Its connections plan each prepared statement once. Under Postgres' default
/// (`plan_cache_mode = auto`) every course page was planned again on each execution, as
/// the custom plan looked cheaper than the generic one: planning was half of Postgres'
/// CPU on cold pages (BENCHMARKS.md). The generic plans are the ones
/// `tests/it/explain.rs` checks.
pub async fn connect(config: &Config) -> Result<PgPool, StartupError> {
    let statement_timeout = config.statement_timeout().as_millis().to_string();
    let options = PgConnectOptions::from_str(&config.database_url)
        .map_err(StartupError::Connect)?
        .application_name("courser-api")
        .options([
            ("statement_timeout", statement_timeout.as_str()),
            ("plan_cache_mode", "force_generic_plan"),
        ]);
    PgPoolOptions::new()
        .max_connections(config.pool_size)
        .min_connections(config.pool_min_idle.min(config.pool_size))
        .acquire_timeout(config.pool_timeout())
        .connect_with(options)
        .await
        .map_err(StartupError::Connect)
}
