//! The api's configuration: one typed struct, read from an optional TOML file and then
//! `COURSER_*` environment variables (env wins), validated before anything starts.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use courser_cache::CacheConfig;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Deserializer, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP server listens on (`COURSER_LISTEN`).
    pub listen: SocketAddr,
    /// Threads serving requests (`COURSER_WORKER_THREADS`); one per usable core by
    /// default. Several instances on one machine should share its cores between them
    /// (`courser up` does): more threads than cores only adds wake-ups and switches.
    pub worker_threads: usize,
    /// Postgres connection URL (`COURSER_DATABASE_URL`).
    pub database_url: String,
    /// Most connections this instance opens to Postgres (`COURSER_POOL_SIZE`). Four
    /// instances share the server's `max_connections` (100 by default).
    pub pool_size: u32,
    /// Connections kept open even when idle, at most `pool_size` (`COURSER_POOL_MIN_IDLE`),
    /// so that a sudden turn of reads to the database (a Redis outage, a cold cache) does
    /// not first wait for dozens of new Postgres backends to start.
    pub pool_min_idle: u32,
    /// How long a request waits for a free database connection before it answers 503
    /// (`COURSER_POOL_TIMEOUT_MS`); short, so that an overloaded database sheds load
    /// instead of piling up waiting requests.
    pub pool_timeout_ms: u64,
    /// Postgres `statement_timeout` for every query (`COURSER_STATEMENT_TIMEOUT_MS`).
    pub statement_timeout_ms: u64,
    /// Bearer keys that may write (`COURSER_API_KEYS`, comma-separated). At least one;
    /// each 16–256 visible ASCII characters.
    #[serde(deserialize_with = "comma_separated")]
    pub api_keys: Vec<String>,
    /// Largest request body accepted, in bytes (`COURSER_BODY_LIMIT_BYTES`).
    pub body_limit_bytes: usize,
    /// Longest a read may take before it answers 503 (`COURSER_REQUEST_TIMEOUT_MS`);
    /// writes run to their end, bounded by the pool and statement timeouts.
    pub request_timeout_ms: u64,
    /// Longest an instance told to stop goes on serving while balancers let it go: it
    /// answers `/readyz` with 503 and stops once no request has come for half a second
    /// (`COURSER_SHUTDOWN_DRAIN_MS`; 0 stops at once). See `drain`.
    pub shutdown_drain_ms: u64,
    /// Apply pending migrations at start-up (`COURSER_MIGRATE_ON_START`).
    pub migrate_on_start: bool,
    /// Log lines as JSON instead of text (`COURSER_LOG_JSON`).
    pub log_json: bool,
    /// Redis for the shared cache tier and invalidation bus (`COURSER_REDIS_URL`); empty
    /// turns caching off.
    pub redis_url: String,
    /// Prefix of the cache's Redis keys and channel (`COURSER_CACHE_PREFIX`).
    pub cache_prefix: String,
    /// Bytes the in-process cache tier may hold (`COURSER_CACHE_LOCAL_BYTES`).
    pub cache_local_bytes: u64,
    /// Lifetime of an in-process cache entry (`COURSER_CACHE_LOCAL_TTL_MS`).
    pub cache_local_ttl_ms: u64,
    /// Lifetime of a Redis cache entry (`COURSER_CACHE_REDIS_TTL_MS`); longer than the
    /// in-process one, so that an in-process expiry refills from Redis.
    pub cache_redis_ttl_ms: u64,
    /// Longest wait for one Redis call before the cache goes on without it
    /// (`COURSER_REDIS_TIMEOUT_MS`).
    pub redis_timeout_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 3000)),
            worker_threads: std::thread::available_parallelism().map_or(2, usize::from),
            database_url: "postgres://postgres@127.0.0.1:15432/courser".into(),
            pool_size: 16,
            pool_min_idle: 4,
            pool_timeout_ms: 2_000,
            statement_timeout_ms: 5_000,
            api_keys: Vec::new(),
            body_limit_bytes: 1024 * 1024,
            request_timeout_ms: 10_000,
            shutdown_drain_ms: 5_000,
            migrate_on_start: true,
            log_json: false,
            redis_url: "redis://127.0.0.1:16379".into(),
            cache_prefix: "courser".into(),
            cache_local_bytes: 256 * 1024 * 1024,
            cache_local_ttl_ms: 600_000,
            cache_redis_ttl_ms: 1_800_000,
            redis_timeout_ms: 50,
        }
    }
}

/// Why the configuration was refused; each message names the setting.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Read(#[from] Box<figment::Error>),
    #[error("{setting}: {problem}")]
    Invalid {
        setting: &'static str,
        problem: String,
    },
}

/// The environment variables read, one per field.
const ENV_KEYS: &[&str] = &[
    "listen",
    "worker_threads",
    "database_url",
    "pool_size",
    "pool_min_idle",
    "pool_timeout_ms",
    "statement_timeout_ms",
    "api_keys",
    "body_limit_bytes",
    "request_timeout_ms",
    "shutdown_drain_ms",
    "migrate_on_start",
    "log_json",
    "redis_url",
    "cache_prefix",
    "cache_local_bytes",
    "cache_local_ttl_ms",
    "cache_redis_ttl_ms",
    "redis_timeout_ms",
];

impl Config {
    /// Defaults, then the TOML file if given, then `COURSER_*` variables; validated.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let config = Self::extract(file)?;
        config.validate()?;
        Ok(config)
    }

    /// Like `load` without the checks that only serving needs (`migrate` has no keys).
    pub fn extract(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        // Only our own keys: other COURSER_* variables belong to other binaries.
        let env = Env::prefixed("COURSER_").only(ENV_KEYS);
        Ok(figment.merge(env).extract().map_err(Box::new)?)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |setting, problem: &str| {
            Err(ConfigError::Invalid {
                setting,
                problem: problem.to_owned(),
            })
        };
        if !self.database_url.starts_with("postgres://")
            && !self.database_url.starts_with("postgresql://")
        {
            return invalid("database_url", "must be a postgres:// URL");
        }
        if !(1..=1024).contains(&self.worker_threads) {
            return invalid("worker_threads", "must be 1–1024");
        }
        if self.pool_size == 0 {
            return invalid("pool_size", "must be at least 1");
        }
        if self.api_keys.is_empty() {
            return invalid(
                "api_keys",
                "at least one key is needed, or no write can succeed (set COURSER_API_KEYS)",
            );
        }
        for key in &self.api_keys {
            if !(16..=256).contains(&key.len()) || !key.bytes().all(|b| b.is_ascii_graphic()) {
                return invalid(
                    "api_keys",
                    "each key must be 16–256 visible ASCII characters",
                );
            }
        }
        if self.body_limit_bytes < 1024 {
            return invalid("body_limit_bytes", "must be at least 1024");
        }
        if !self.redis_url.is_empty()
            && !self.redis_url.starts_with("redis://")
            && !self.redis_url.starts_with("rediss://")
        {
            return invalid(
                "redis_url",
                "must be a redis:// URL, or empty to turn caching off",
            );
        }
        for (setting, ms) in [
            ("cache_local_ttl_ms", self.cache_local_ttl_ms),
            ("cache_redis_ttl_ms", self.cache_redis_ttl_ms),
            ("redis_timeout_ms", self.redis_timeout_ms),
            ("pool_timeout_ms", self.pool_timeout_ms),
            ("statement_timeout_ms", self.statement_timeout_ms),
            ("request_timeout_ms", self.request_timeout_ms),
        ] {
            if ms == 0 {
                return invalid(setting, "must be more than 0");
            }
        }
        Ok(())
    }

    pub fn pool_timeout(&self) -> Duration {
        Duration::from_millis(self.pool_timeout_ms)
    }

    pub fn statement_timeout(&self) -> Duration {
        Duration::from_millis(self.statement_timeout_ms)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub fn cache(&self) -> CacheConfig {
        CacheConfig {
            redis_url: Some(self.redis_url.clone()).filter(|url| !url.is_empty()),
            key_prefix: self.cache_prefix.clone(),
            local_bytes: self.cache_local_bytes,
            local_ttl: Duration::from_millis(self.cache_local_ttl_ms),
            redis_ttl: Duration::from_millis(self.cache_redis_ttl_ms),
            redis_timeout: Duration::from_millis(self.redis_timeout_ms),
            ..CacheConfig::default()
        }
    }
}

/// Keys come as a TOML array or as one comma-separated string (from the environment).
fn comma_separated<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Keys {
        List(Vec<String>),
        Text(String),
    }
    Ok(match Keys::deserialize(deserializer)? {
        Keys::List(keys) => keys,
        Keys::Text(text) => text
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> Config {
        Config {
            api_keys: vec!["k".repeat(32)],
            ..Config::default()
        }
    }

    #[test]
    fn defaults_with_a_key_are_valid() {
        assert!(valid().validate().is_ok());
    }

    #[test]
    fn each_mistake_names_its_setting() {
        let cases: [(&str, Config); 5] = [
            ("api_keys", Config::default()),
            (
                "api_keys",
                Config {
                    api_keys: vec!["short".into()],
                    ..valid()
                },
            ),
            (
                "pool_size",
                Config {
                    pool_size: 0,
                    ..valid()
                },
            ),
            (
                "worker_threads",
                Config {
                    worker_threads: 0,
                    ..valid()
                },
            ),
            (
                "database_url",
                Config {
                    database_url: "mysql://x".into(),
                    ..valid()
                },
            ),
        ];
        for (setting, config) in cases {
            let message = config.validate().unwrap_err().to_string();
            assert!(message.starts_with(setting), "{message}");
        }
    }
}
