//! The proxy's settings: one typed struct read from an optional TOML file and then
//! `COURSER_PROXY_*` environment variables (env wins), validated once at start with
//! messages that name the offending setting.
//!
//! Durations are whole milliseconds (`*_ms`) so that every setting can be given as a
//! plain environment variable.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Errors found while loading or validating the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or the environment could not be read or has the wrong shape.
    #[error("reading configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    /// A setting has a value the proxy cannot run with.
    #[error("setting `{setting}`: {message}")]
    Invalid {
        /// The name of the setting, as written in the TOML file.
        setting: &'static str,
        /// What is wrong with it.
        message: String,
    },
}

fn invalid(setting: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        setting,
        message: message.into(),
    }
}

/// How requests that carry no course id are spread over the backends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Spread {
    /// Weighted round robin.
    #[default]
    RoundRobin,
    /// The backend with the fewest requests in flight (ties broken by position).
    LeastConnections,
}

/// One backend as written in the configuration: `"host:port"` or
/// `{ addr = "host:port", weight = 2 }`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum BackendSpec {
    /// Just an address, weight 1.
    Addr(String),
    /// An address with a weight.
    Weighted {
        /// `host:port`; a host name may resolve to several addresses (a headless service).
        addr: String,
        /// Relative share of traffic and of the consistent-hash ring.
        weight: usize,
    },
}

impl BackendSpec {
    fn parts(&self) -> (&str, usize) {
        match self {
            BackendSpec::Addr(addr) => (addr, 1),
            BackendSpec::Weighted { addr, weight } => (addr, *weight),
        }
    }
}

/// The backend list: a TOML array, or (from the environment) one comma-separated string.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum BackendList {
    /// `backends = ["a:1", { addr = "b:2", weight = 3 }]`.
    List(Vec<BackendSpec>),
    /// `COURSER_PROXY_BACKENDS=a:1,b:2`.
    Csv(String),
}

impl Default for BackendList {
    fn default() -> Self {
        BackendList::List(Vec::new())
    }
}

impl BackendList {
    /// Whether any entry is a host name rather than an address.
    pub fn has_names(&self) -> bool {
        self.specs()
            .iter()
            .any(|spec| spec.parts().0.parse::<SocketAddr>().is_err())
    }

    fn specs(&self) -> Vec<BackendSpec> {
        match self {
            BackendList::List(list) => list.clone(),
            BackendList::Csv(csv) => csv
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| BackendSpec::Addr(s.to_owned()))
                .collect(),
        }
    }
}

/// A backend after validation and name resolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResolvedBackend {
    /// Where to connect.
    pub addr: SocketAddr,
    /// Relative weight, at least 1.
    pub weight: usize,
}

/// Every setting of `courser-proxy`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the public HTTP listener binds.
    pub listen: String,
    /// Address of the admin listener serving `/metrics` and `/healthz`.
    pub metrics_listen: String,
    /// Worker threads of the proxy service (Pingora runtime threads); by default one
    /// per core the process may use (its CPU quota included), like nginx's
    /// `worker_processes auto`.
    pub threads: usize,
    /// Let the proxy's worker threads steal each other's tasks (one shared Tokio
    /// runtime and one listening socket). `false`, the default, makes each thread a
    /// service of its own, with its own runtime, listening socket (`SO_REUSEPORT`) and
    /// upstream connections, so a connection stays on one thread (BENCHMARKS.md, P1).
    pub work_stealing: bool,
    /// The api instances to spread traffic over.
    pub backends: BackendList,
    /// How requests without a course id are spread: `round_robin` or `least_connections`.
    pub selection: Spread,

    /// Path of the active health check sent to every backend.
    pub health_path: String,
    /// Time between two active health-check rounds.
    pub health_interval_ms: u64,
    /// Connect and read timeout of one health check.
    pub health_timeout_ms: u64,
    /// Consecutive passing checks that bring an unhealthy backend back.
    pub health_consecutive_success: usize,
    /// Consecutive failing checks that take a healthy backend out.
    pub health_consecutive_failure: usize,

    /// Consecutive failed connects that eject a backend (passive health).
    pub eject_consecutive_connect_failures: u32,
    /// Consecutive 5xx answers other than 503 (or resets/timeouts) that eject a backend.
    pub eject_consecutive_5xx: u32,
    /// How long an ejected backend is left out before it is tried again.
    pub eject_cooldown_ms: u64,

    /// Timeout of a TCP connect to a backend.
    pub connect_timeout_ms: u64,
    /// Timeout of one read from a backend (time to first byte, and between bytes).
    pub upstream_read_timeout_ms: u64,
    /// Timeout of one write to a backend.
    pub upstream_write_timeout_ms: u64,
    /// How long an idle kept-alive upstream connection stays in the pool.
    pub upstream_idle_timeout_ms: u64,
    /// Idle kept-alive connections kept per backend; without work stealing each worker
    /// thread keeps its own.
    pub upstream_keepalive_pool_size: usize,

    /// Whole-header deadline: a client must send its complete header block within this
    /// time of its first byte (closes the slowloris gap of a per-read timeout).
    pub client_header_timeout_ms: u64,
    /// How long a client connection may sit idle before (or between) requests.
    pub client_idle_timeout_ms: u64,
    /// Timeout of one read of a request body from the client.
    pub client_body_read_timeout_ms: u64,

    /// Sustained requests per second allowed per client IP; 0 turns the limit off.
    pub rate_limit_per_second: f64,
    /// Burst size (bucket capacity) of the per-client-IP rate limit.
    pub rate_limit_burst: f64,
    /// Largest request body accepted, in bytes.
    pub body_limit_bytes: u64,
    /// Cap on requests in flight to one backend; beyond it the next backend is chosen.
    pub max_requests_per_backend: usize,

    /// Longest wait, after SIGTERM, for in-flight requests to finish; the process exits
    /// as soon as none is left.
    pub shutdown_timeout_seconds: u64,
    /// Unix socket handing the listeners to a new binary in a graceful upgrade
    /// (SIGQUIT to the old process, `--upgrade` on the new one).
    pub upgrade_sock: String,
    /// How often the configuration file is checked for changes (0: only on SIGHUP).
    pub reload_poll_ms: u64,
    /// How often backend host names are resolved again, so that the pods behind a
    /// headless service are followed as they come and go (0: only at start and on
    /// reloads). Lists of addresses only are never re-resolved.
    pub dns_refresh_ms: u64,
    /// Write one JSON access-log line per request.
    pub access_log: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            metrics_listen: "127.0.0.1:9100".into(),
            threads: std::thread::available_parallelism().map_or(2, usize::from),
            work_stealing: false,
            backends: BackendList::default(),
            selection: Spread::RoundRobin,
            health_path: "/readyz".into(),
            health_interval_ms: 1_000,
            health_timeout_ms: 1_000,
            health_consecutive_success: 2,
            health_consecutive_failure: 2,
            eject_consecutive_connect_failures: 1,
            eject_consecutive_5xx: 5,
            eject_cooldown_ms: 10_000,
            connect_timeout_ms: 1_000,
            upstream_read_timeout_ms: 10_000,
            upstream_write_timeout_ms: 10_000,
            upstream_idle_timeout_ms: 60_000,
            upstream_keepalive_pool_size: 256,
            client_header_timeout_ms: 10_000,
            client_idle_timeout_ms: 60_000,
            client_body_read_timeout_ms: 10_000,
            rate_limit_per_second: 0.0,
            rate_limit_burst: 100.0,
            body_limit_bytes: 1024 * 1024,
            max_requests_per_backend: 1024,
            shutdown_timeout_seconds: 30,
            upgrade_sock: "/tmp/courser-proxy-upgrade.sock".into(),
            reload_poll_ms: 2_000,
            dns_refresh_ms: 5_000,
            access_log: true,
        }
    }
}

/// A validated configuration with its backends resolved.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The configuration as read.
    pub config: Config,
    /// The file it was read from, kept for reloads.
    pub path: Option<PathBuf>,
    /// The public listener address.
    pub listen: SocketAddr,
    /// The admin listener address.
    pub metrics_listen: SocketAddr,
    /// The backends, resolved to addresses.
    pub backends: Vec<ResolvedBackend>,
}

impl Settings {
    /// Reads the file (if any) and the environment, then validates.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let config = Config::load(path)?;
        Self::from_config(config, path.map(Path::to_path_buf))
    }

    /// Validates an already-built [`Config`].
    pub fn from_config(config: Config, path: Option<PathBuf>) -> Result<Self, ConfigError> {
        let listen = parse_addr("listen", &config.listen)?;
        let metrics_listen = parse_addr("metrics_listen", &config.metrics_listen)?;
        if listen == metrics_listen {
            return Err(invalid("metrics_listen", "must differ from `listen`"));
        }
        if config.threads == 0 {
            return Err(invalid("threads", "must be at least 1"));
        }
        if !config.health_path.starts_with('/') {
            return Err(invalid("health_path", "must start with `/`"));
        }
        let positive: [(&'static str, u64); 9] = [
            ("health_interval_ms", config.health_interval_ms),
            ("health_timeout_ms", config.health_timeout_ms),
            ("eject_cooldown_ms", config.eject_cooldown_ms),
            ("connect_timeout_ms", config.connect_timeout_ms),
            ("upstream_read_timeout_ms", config.upstream_read_timeout_ms),
            (
                "upstream_write_timeout_ms",
                config.upstream_write_timeout_ms,
            ),
            ("client_header_timeout_ms", config.client_header_timeout_ms),
            ("client_idle_timeout_ms", config.client_idle_timeout_ms),
            (
                "client_body_read_timeout_ms",
                config.client_body_read_timeout_ms,
            ),
        ];
        for (setting, value) in positive {
            if value == 0 {
                return Err(invalid(setting, "must be greater than 0"));
            }
        }
        if config.health_consecutive_success == 0 {
            return Err(invalid("health_consecutive_success", "must be at least 1"));
        }
        if config.health_consecutive_failure == 0 {
            return Err(invalid("health_consecutive_failure", "must be at least 1"));
        }
        if config.eject_consecutive_connect_failures == 0 {
            return Err(invalid(
                "eject_consecutive_connect_failures",
                "must be at least 1",
            ));
        }
        if config.eject_consecutive_5xx == 0 {
            return Err(invalid("eject_consecutive_5xx", "must be at least 1"));
        }
        if !config.rate_limit_per_second.is_finite() || config.rate_limit_per_second < 0.0 {
            return Err(invalid(
                "rate_limit_per_second",
                "must be 0 (off) or positive",
            ));
        }
        if config.rate_limit_per_second > 0.0
            && (!config.rate_limit_burst.is_finite() || config.rate_limit_burst < 1.0)
        {
            return Err(invalid("rate_limit_burst", "must be at least 1"));
        }
        if config.max_requests_per_backend == 0 {
            return Err(invalid("max_requests_per_backend", "must be at least 1"));
        }
        let backends = resolve_backends(&config.backends)?;
        Ok(Self {
            config,
            path,
            listen,
            metrics_listen,
            backends,
        })
    }

    /// Re-reads only the backend list (for SIGHUP and file-change reloads).
    pub fn reload_backends(&self) -> Result<Vec<ResolvedBackend>, ConfigError> {
        let config = Config::load(self.path.as_deref())?;
        resolve_backends(&config.backends)
    }
}

impl Config {
    /// Defaults, then the TOML file, then `COURSER_PROXY_*` variables.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = path {
            if !path.exists() {
                return Err(invalid(
                    "--config",
                    format!("file {} does not exist", path.display()),
                ));
            }
            figment = figment.merge(Toml::file(path));
        }
        // BACKENDS is a comma-separated list: keep it a string rather than letting figment
        // guess at its type. CONFIG and the LOG_ ones are the command line's (`main`),
        // read before the configuration.
        figment = figment.merge(Env::prefixed("COURSER_PROXY_").ignore(&[
            "backends",
            "config",
            "log_file",
            "log_max_bytes",
        ]));
        if let Ok(csv) = std::env::var("COURSER_PROXY_BACKENDS") {
            figment = figment.merge(Serialized::default("backends", BackendList::Csv(csv)));
        }
        figment
            .extract()
            .map_err(|e| ConfigError::Load(Box::new(e)))
    }
}

fn parse_addr(setting: &'static str, value: &str) -> Result<SocketAddr, ConfigError> {
    value
        .to_socket_addrs()
        .map_err(|e| invalid(setting, format!("`{value}` is not host:port ({e})")))?
        .next()
        .ok_or_else(|| invalid(setting, format!("`{value}` resolves to no address")))
}

/// Validates and resolves the backend list; a name may yield several backends.
pub fn resolve_backends(list: &BackendList) -> Result<Vec<ResolvedBackend>, ConfigError> {
    let specs = list.specs();
    if specs.is_empty() {
        return Err(invalid(
            "backends",
            "at least one backend (host:port) is required",
        ));
    }
    let mut out = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let (addr, weight) = spec.parts();
        if weight == 0 {
            return Err(invalid(
                "backends",
                format!("entry {} (`{addr}`): weight must be at least 1", i + 1),
            ));
        }
        let addrs = addr.to_socket_addrs().map_err(|e| {
            invalid(
                "backends",
                format!(
                    "entry {} `{addr}` is not a resolvable host:port ({e})",
                    i + 1
                ),
            )
        })?;
        let before = out.len();
        out.extend(addrs.map(|addr| ResolvedBackend { addr, weight }));
        if out.len() == before {
            return Err(invalid(
                "backends",
                format!("entry {} `{addr}` resolves to no address", i + 1),
            ));
        }
    }
    out.sort();
    out.dedup_by_key(|b| b.addr);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_backends(list: BackendList) -> Config {
        Config {
            backends: list,
            ..Config::default()
        }
    }

    #[test]
    fn only_lists_that_name_hosts_are_resolved_again() {
        let addresses = BackendList::Csv("127.0.0.1:3001, [::1]:3002".into());
        assert!(!addresses.has_names());
        let named = BackendList::List(vec![
            BackendSpec::Addr("127.0.0.1:3001".into()),
            BackendSpec::Weighted {
                addr: "api.courser.svc.cluster.local:3000".into(),
                weight: 2,
            },
        ]);
        assert!(named.has_names());
    }

    #[test]
    fn a_comma_separated_backend_list_is_split_and_resolved() {
        let config = with_backends(BackendList::Csv("127.0.0.1:1, 127.0.0.1:2".into()));
        let settings = Settings::from_config(config, None).unwrap();
        assert_eq!(settings.backends.len(), 2);
        assert!(settings.backends.iter().all(|b| b.weight == 1));
    }

    #[test]
    fn a_missing_backend_list_names_the_setting() {
        let err = Settings::from_config(Config::default(), None).unwrap_err();
        assert!(err.to_string().contains("`backends`"), "{err}");
    }

    #[test]
    fn a_bad_address_names_the_setting_and_the_entry() {
        let config = with_backends(BackendList::Csv("127.0.0.1:1,nonsense".into()));
        let err = Settings::from_config(config, None).unwrap_err().to_string();
        assert!(
            err.contains("`backends`") && err.contains("entry 2"),
            "{err}"
        );
    }

    #[test]
    fn toml_tables_carry_weights() {
        let config: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(
                r#"backends = ["127.0.0.1:1", { addr = "127.0.0.1:2", weight = 3 }]
                   selection = "least_connections""#,
            ))
            .extract()
            .unwrap();
        let settings = Settings::from_config(config, None).unwrap();
        assert_eq!(settings.backends[1].weight, 3);
        assert_eq!(settings.config.selection, Spread::LeastConnections);
    }

    #[test]
    fn a_zero_timeout_is_rejected_by_name() {
        let mut config = with_backends(BackendList::Csv("127.0.0.1:1".into()));
        config.client_header_timeout_ms = 0;
        let err = Settings::from_config(config, None).unwrap_err().to_string();
        assert!(err.contains("client_header_timeout_ms"), "{err}");
    }
}
