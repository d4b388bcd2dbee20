//! Where the local stack keeps its files and which ports it uses: the `.courser`
//! directory (data, logs, pid files, the write key) and the settings that move it.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

/// Port of the private Postgres cluster unless `COURSER_PG_PORT` says otherwise; not
/// 5432, so that it never meets a system Postgres.
pub const DEFAULT_PG_PORT: u16 = 15432;
/// Port of the private Redis unless `COURSER_REDIS_PORT` says otherwise; not 6379.
pub const DEFAULT_REDIS_PORT: u16 = 16379;

/// One api instance per port; the proxy spreads traffic over them.
pub const DEFAULT_API_PORTS: [u16; 4] = [3001, 3002, 3003, 3004];
pub const DEFAULT_PROXY_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_PROXY_METRICS_LISTEN: &str = "127.0.0.1:9100";

/// Paths and ports of one project's local stack.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The `.courser` directory (absolute): `COURSER_HOME`, else `.courser` in the
    /// current directory, which is taken to be the project root.
    pub home: PathBuf,
    /// Port the private Postgres listens on, on 127.0.0.1 only.
    pub pg_port: u16,
    /// Port the private Redis listens on, on 127.0.0.1 only.
    pub redis_port: u16,
    /// Ports of the api instances, on 127.0.0.1 ([`DEFAULT_API_PORTS`]; tests choose free ones).
    pub api_ports: Vec<u16>,
    /// The proxy's public listener ([`DEFAULT_PROXY_LISTEN`]).
    pub proxy_listen: String,
    /// The proxy's admin listener with `/metrics` ([`DEFAULT_PROXY_METRICS_LISTEN`]).
    pub proxy_metrics_listen: String,
}

impl Layout {
    /// Reads `COURSER_HOME` and `COURSER_PG_PORT`; creates nothing.
    pub fn from_env() -> anyhow::Result<Self> {
        let home = match std::env::var_os("COURSER_HOME") {
            Some(home) if !home.is_empty() => PathBuf::from(home),
            _ => PathBuf::from(".courser"),
        };
        let home = if home.is_absolute() {
            home
        } else {
            std::env::current_dir()
                .context("cannot read the current directory")?
                .join(home)
        };
        let pg_port = port_from_env("COURSER_PG_PORT", DEFAULT_PG_PORT)?;
        let redis_port = port_from_env("COURSER_REDIS_PORT", DEFAULT_REDIS_PORT)?;
        Ok(Self {
            home,
            pg_port,
            redis_port,
            api_ports: DEFAULT_API_PORTS.to_vec(),
            proxy_listen: DEFAULT_PROXY_LISTEN.to_owned(),
            proxy_metrics_listen: DEFAULT_PROXY_METRICS_LISTEN.to_owned(),
        })
    }

    /// Log files of every process the stack starts.
    pub fn logs(&self) -> PathBuf {
        self.home.join("logs")
    }

    /// Pid files of the processes the stack starts itself.
    pub fn run(&self) -> PathBuf {
        self.home.join("run")
    }

    /// The write key handed to every api instance.
    pub fn api_key_file(&self) -> PathBuf {
        self.home.join("api-key")
    }

    /// The socket over which a new proxy takes the listeners of the running one (graceful
    /// upgrade); per home, so that two stacks on one machine never meet there.
    pub fn proxy_upgrade_sock(&self) -> PathBuf {
        self.run().join("proxy-upgrade.sock")
    }

    /// Creates `.courser`, its `logs` and `run` directories.
    pub fn create_dirs(&self) -> anyhow::Result<()> {
        for dir in [self.home.clone(), self.logs(), self.run()] {
            create_dir(&dir)?;
        }
        Ok(())
    }

    /// The application database.
    pub fn database_url(&self) -> String {
        self.database_url_for("courser")
    }

    /// The maintenance database, where tests create their own databases.
    pub fn admin_database_url(&self) -> String {
        self.database_url_for("postgres")
    }

    pub fn redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.redis_port)
    }

    fn database_url_for(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.pg_port)
    }
}

fn port_from_env(variable: &str, default: u16) -> anyhow::Result<u16> {
    match std::env::var(variable) {
        Ok(port) => match port.parse::<u16>() {
            Ok(port) if port > 0 => Ok(port),
            _ => bail!("{variable}: `{port}` is not a port number"),
        },
        Err(_) => Ok(default),
    }
}

pub(crate) fn create_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}
