//! The private Postgres cluster: finding (or installing) the server binaries, creating
//! the cluster in the project's `.courser/postgres`, starting and stopping it, creating
//! databases, and telling whether it answers.
//!
//! The cluster listens on 127.0.0.1 only, on its own port, with unix sockets disabled
//! (their path length limit would otherwise depend on where the project lives) and
//! trust authentication for the superuser `postgres`: it is a development database that
//! nothing outside this machine can reach.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use sha2::{Digest as _, Sha256};
use sqlx::{AssertSqlSafe, Connection as _, PgConnection};

use crate::binaries;
use crate::layout::{Layout, create_dir};
use crate::process;
use crate::sysuser::{RunAs, is_root, run_quietly};

/// Where Debian (and its derivatives) put each major version's server binaries.
const PG_LIB: &str = "/usr/lib/postgresql";
/// Where the cluster goes, as root, when the postgres account cannot reach the project.
const FALLBACK_ROOT: &str = "/var/lib/courser";

/// The directory holding `initdb`, `pg_ctl` and `postgres` of one version.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub dir: PathBuf,
    pub version: String,
}

impl Binaries {
    /// The newest version under `/usr/lib/postgresql` that has all three binaries.
    pub fn find() -> Option<Self> {
        let entries = std::fs::read_dir(PG_LIB).ok()?;
        entries
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let version = entry.file_name().to_string_lossy().into_owned();
                let dir = entry.path().join("bin");
                let complete = ["initdb", "pg_ctl", "postgres"]
                    .iter()
                    .all(|bin| dir.join(bin).is_file());
                complete.then_some(Self { dir, version })
            })
            .max_by_key(|bin| version_key(&bin.version))
    }

    /// `find`, installing Debian's `postgresql` package first when it finds nothing and
    /// we are root with apt-get; otherwise an error naming the package.
    pub fn ensure_installed() -> anyhow::Result<Self> {
        if let Some(bin) = Self::find() {
            return Ok(bin);
        }
        if binaries::apt_install("postgresql", "PostgreSQL server binaries")?
            && let Some(bin) = Self::find()
        {
            return Ok(bin);
        }
        bail!(
            "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found under {PG_LIB}/*/bin; \
             install Debian's `postgresql` package: sudo apt-get install postgresql"
        )
    }

    fn bin(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Orders `9.6` < `15` < `16`.
fn version_key(version: &str) -> Vec<u64> {
    version
        .split('.')
        .map(|part| part.parse().unwrap_or(0))
        .collect()
}

/// The project's cluster: where its data and log are, who runs it, its port.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub data_dir: PathBuf,
    pub log_file: PathBuf,
    pub port: u16,
    pub user: RunAs,
}

impl Cluster {
    /// The cluster `up` uses: in `.courser/postgres`, or, when we are root and the
    /// account running Postgres cannot reach the project directory, under
    /// `/var/lib/courser/<hash of the project path>`. Creates the account if needed.
    pub fn for_up(layout: &Layout) -> anyhow::Result<Self> {
        let user = RunAs::for_postgres(true)?.context("no account to run Postgres as")?;
        let local = Self::local(layout, user.clone());
        let fallback = Self::fallback(layout, user.clone());
        if is_initialised(&local.data_dir) || !is_root() {
            return Ok(local);
        }
        if is_initialised(&fallback.data_dir) {
            return Ok(fallback);
        }
        if user.can_enter(&layout.home) {
            return Ok(local);
        }
        println!(
            "the `{}` account cannot reach {}, so the Postgres cluster goes in {} instead",
            user.name,
            layout.home.display(),
            fallback.data_dir.display()
        );
        Ok(fallback)
    }

    /// The cluster an earlier `up` made, if any (for `down` and `status`).
    pub fn existing(layout: &Layout) -> anyhow::Result<Option<Self>> {
        let Some(user) = RunAs::for_postgres(false)? else {
            return Ok(None);
        };
        let candidates = [
            Self::local(layout, user.clone()),
            Self::fallback(layout, user),
        ];
        Ok(candidates
            .into_iter()
            .find(|cluster| is_initialised(&cluster.data_dir)))
    }

    fn local(layout: &Layout, user: RunAs) -> Self {
        Self {
            data_dir: layout.home.join("postgres"),
            log_file: layout.logs().join("postgres.log"),
            port: layout.pg_port,
            user,
        }
    }

    fn fallback(layout: &Layout, user: RunAs) -> Self {
        let digest = Sha256::digest(layout.home.as_os_str().as_encoded_bytes());
        let hash: String = digest[..6]
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        let root = Path::new(FALLBACK_ROOT).join(hash);
        Self {
            data_dir: root.join("postgres"),
            log_file: root.join("postgres.log"),
            port: layout.pg_port,
            user,
        }
    }

    /// Creates the cluster unless it exists, then starts it unless it runs.
    pub fn start(&self, bin: &Binaries) -> anyhow::Result<()> {
        if !is_initialised(&self.data_dir) {
            self.init(bin)?;
        }
        self.user.own_tree(&self.data_dir)?;
        if self.is_running(bin) {
            println!(
                "Postgres already running (pid {})",
                self.pid().map_or("?".into(), |pid| pid.to_string())
            );
            return Ok(());
        }
        self.prepare_log()?;
        println!(
            "starting Postgres {} on 127.0.0.1:{}",
            bin.version, self.port
        );
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -c unix_socket_directories='' {LOAD_SETTINGS}",
            self.port
        );
        let started = run_quietly(
            self.user
                .command(bin.bin("pg_ctl"))
                .args(["start", "-w", "-t", "60", "-D"])
                .arg(&self.data_dir)
                .arg("-l")
                .arg(&self.log_file)
                .arg("-o")
                .arg(options),
        );
        if let Err(err) = started {
            bail!(
                "{err:#}\nlast lines of {}:\n{}",
                self.log_file.display(),
                process::tail(&self.log_file, 20)
            );
        }
        Ok(())
    }

    fn init(&self, bin: &Binaries) -> anyhow::Result<()> {
        println!(
            "creating a Postgres {} cluster in {}",
            bin.version,
            self.data_dir.display()
        );
        if let Some(parent) = self.data_dir.parent() {
            create_dir(parent)?;
        }
        create_private_dir(&self.data_dir)?;
        self.user.own(&self.data_dir)?;
        run_quietly(
            self.user
                .command(bin.bin("initdb"))
                .arg("-D")
                .arg(&self.data_dir)
                .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"]),
        )
        .context("initdb failed")
    }

    /// The log file must exist and belong to the account, which cannot create files in
    /// a log directory that root owns.
    fn prepare_log(&self) -> anyhow::Result<()> {
        if let Some(dir) = self.log_file.parent() {
            create_dir(dir)?;
        }
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_file)
            .with_context(|| format!("cannot create {}", self.log_file.display()))?;
        self.user.own(&self.log_file)
    }

    /// `pg_ctl status`: whether a postmaster runs on this data directory.
    pub fn is_running(&self, bin: &Binaries) -> bool {
        self.user
            .command(bin.bin("pg_ctl"))
            .arg("status")
            .arg("-D")
            .arg(&self.data_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .stdin(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }

    /// The postmaster's pid from `postmaster.pid`, if that process is alive.
    pub fn pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.data_dir.join("postmaster.pid")).ok()?;
        let pid = text.lines().next()?.trim().parse().ok()?;
        process::is_alive(pid, None).then_some(pid)
    }

    /// `pg_ctl stop -m fast` if it runs. Returns the pid it stopped.
    pub fn stop(&self, bin: &Binaries) -> anyhow::Result<Option<u32>> {
        if !self.is_running(bin) {
            return Ok(None);
        }
        let pid = self.pid();
        run_quietly(
            self.user
                .command(bin.bin("pg_ctl"))
                .args(["stop", "-m", "fast", "-w", "-D"])
                .arg(&self.data_dir),
        )
        .context("pg_ctl stop failed")?;
        Ok(pid)
    }
}

fn is_initialised(data_dir: &Path) -> bool {
    data_dir.join("PG_VERSION").is_file()
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    // initdb insists on 0700 (or 0750) for a directory it is given.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot set the mode of {}", dir.display()))
}

/// Connects, retrying briefly: a server that has just started may still refuse.
pub async fn connect(url: &str) -> anyhow::Result<PgConnection> {
    let mut attempt = 0;
    loop {
        match PgConnection::connect(url).await {
            Ok(conn) => return Ok(conn),
            Err(_) if attempt < 20 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(err) => return Err(err).with_context(|| format!("cannot connect to {url}")),
        }
    }
}

/// `SELECT 1`: whether the server answers.
pub async fn ping(url: &str) -> anyhow::Result<()> {
    let mut conn = PgConnection::connect(url).await?;
    sqlx::query("SELECT 1").execute(&mut conn).await?;
    conn.close().await?;
    Ok(())
}

/// Creates database `name` unless it exists. Returns whether it created it.
pub async fn create_database(admin: &mut PgConnection, name: &str) -> anyhow::Result<bool> {
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(name)
            .fetch_one(&mut *admin)
            .await?;
    if exists {
        return Ok(false);
    }
    // Identifiers cannot be bound as parameters; the name is checked to be a plain one.
    let sql = format!("CREATE DATABASE {}", plain_identifier(name)?);
    sqlx::query(AssertSqlSafe(sql)).execute(&mut *admin).await?;
    Ok(true)
}

/// Drops database `name` if it exists, closing its connections.
pub async fn drop_database(admin: &mut PgConnection, name: &str) -> anyhow::Result<()> {
    let sql = format!(
        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
        plain_identifier(name)?
    );
    sqlx::query(AssertSqlSafe(sql)).execute(&mut *admin).await?;
    Ok(())
}

/// Settings for a one-machine cluster that bulk loads (`courser seed`) and benchmarks:
/// no replica reads its WAL, so the WAL carries only what crash recovery needs (index
/// builds then write no WAL at all); WAL may grow to 16 GB between checkpoints, so a
/// load is not interrupted by checkpoints; and a shared buffer pool of 1 GB. Crash
/// safety is unchanged: every commit is still durable.
const LOAD_SETTINGS: &str = "-c wal_level=minimal -c max_wal_senders=0 -c max_wal_size=16GB \
     -c checkpoint_timeout=30min -c shared_buffers=1GB";

/// `name` if it is a lower-case identifier that needs no quoting.
fn plain_identifier(name: &str) -> anyhow::Result<&str> {
    let valid = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        bail!("`{name}` is not a plain database name (a–z, 0–9, _)");
    }
    Ok(name)
}
