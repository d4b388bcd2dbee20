//! Background processes the stack starts itself: spawning them detached with their
//! output in a log file, pid files, telling whether they still run, and stopping them.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How long a process gets to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// One process of the stack, known by its pid file.
#[derive(Debug, Clone)]
pub struct Managed {
    /// Its name in messages and file names, e.g. `api-3001`.
    pub name: String,
    /// File name of the program, checked against a live pid so that a pid reused by an
    /// unrelated process is not taken for ours.
    pub program: String,
    pub pid_file: PathBuf,
    pub log_file: PathBuf,
}

impl Managed {
    pub fn new(name: &str, program: &str, run_dir: &Path, log_dir: &Path) -> Self {
        Self {
            name: name.to_owned(),
            program: program.to_owned(),
            pid_file: run_dir.join(format!("{name}.pid")),
            log_file: log_dir.join(format!("{name}.log")),
        }
    }

    /// The pid of the running process, if its pid file names a live process of ours.
    pub fn running_pid(&self) -> Option<u32> {
        let pid = std::fs::read_to_string(&self.pid_file)
            .ok()?
            .trim()
            .parse()
            .ok()?;
        is_alive(pid, Some(&self.program)).then_some(pid)
    }

    /// Starts `command` in its own process group (so a Ctrl-C in the terminal that ran
    /// `courser up` does not reach it), output appended to the log file, and records its
    /// pid. The caller keeps the `Child` to notice an early exit while waiting for it.
    pub fn spawn(&self, mut command: Command) -> anyhow::Result<Child> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_file)
            .with_context(|| format!("cannot open {}", self.log_file.display()))?;
        let child = command
            // A fatal error's message, not its backtrace, should end the log.
            .env("RUST_LIB_BACKTRACE", "0")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot start {}", self.name))?;
        std::fs::write(&self.pid_file, format!("{}\n", child.id()))
            .with_context(|| format!("cannot write {}", self.pid_file.display()))?;
        Ok(child)
    }

    /// Fails, naming the address, when another process listens on `addr`. Ours would
    /// fail to bind, but only after the other one might have answered the readiness
    /// check for it (another stack's instance would), and the stack would then run on a
    /// process it neither owns nor can stop.
    pub fn ensure_port_free(&self, addr: &str) -> anyhow::Result<()> {
        match std::net::TcpListener::bind(addr) {
            Ok(_) => Ok(()),
            Err(err) => anyhow::bail!(
                "{} cannot listen on {addr} ({err}): another process holds it, not this \
                 stack's (no live pid in {}); stop it, or give this stack other ports",
                self.name,
                self.pid_file.display()
            ),
        }
    }

    /// Polls `ready` until it says yes; fails with the end of the log if `child` exits
    /// first or `timeout` passes. `what` completes "did not …" in that message.
    pub async fn wait_until_ready(
        &self,
        mut child: Option<&mut Child>,
        timeout: Duration,
        what: &str,
        mut ready: impl AsyncFnMut() -> bool,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let log = || {
            format!(
                "last lines of {}:\n{}",
                self.log_file.display(),
                tail(&self.log_file, 20)
            )
        };
        loop {
            if let Some(child) = child.as_deref_mut()
                && let Some(status) = child.try_wait()?
            {
                anyhow::bail!(
                    "{} exited ({status}) before it was ready; {}",
                    self.name,
                    log()
                );
            }
            if ready().await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                anyhow::bail!(
                    "{} did not {what} within {} s; {}",
                    self.name,
                    timeout.as_secs(),
                    log()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the process if it runs (SIGTERM, then SIGKILL after a grace period) and
    /// removes its pid file. Returns the pid it stopped, if any.
    pub async fn stop(&self) -> anyhow::Result<Option<u32>> {
        let stopped = match self.running_pid() {
            Some(pid) => {
                terminate(pid, Some(&self.program)).await?;
                Some(pid)
            }
            None => None,
        };
        match std::fs::remove_file(&self.pid_file) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => {
                return Err(err)
                    .with_context(|| format!("cannot remove {}", self.pid_file.display()));
            }
        }
        Ok(stopped)
    }
}

/// Whether `pid` is a live (not zombie) process, running `program` when given.
pub fn is_alive(pid: u32, program: Option<&str>) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    if raw <= 0 || kill(Pid::from_raw(raw), None).is_err() {
        return false;
    }
    // Linux tells more through /proc; elsewhere the signal check has to do.
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next());
        if state == Some('Z') {
            return false;
        }
    }
    match (program, std::fs::read(format!("/proc/{pid}/cmdline"))) {
        (Some(program), Ok(cmdline)) => {
            let argv0 = cmdline.split(|&b| b == 0).next().unwrap_or_default();
            let argv0 = String::from_utf8_lossy(argv0);
            // Some servers rewrite their title (`redis-server 127.0.0.1:16379`).
            let argv0 = argv0.split(' ').next().unwrap_or_default();
            Path::new(argv0)
                .file_name()
                .is_some_and(|name| name == program)
        }
        _ => true,
    }
}

/// SIGTERM, wait up to the grace period, then SIGKILL.
pub async fn terminate(pid: u32, program: Option<&str>) -> anyhow::Result<()> {
    let target = Pid::from_raw(i32::try_from(pid).context("pid out of range")?);
    if kill(target, Signal::SIGTERM).is_err() {
        return Ok(()); // already gone
    }
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline {
        if !is_alive(pid, program) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "pid {pid} did not stop within {} s; killing it",
        STOP_GRACE.as_secs()
    );
    let _ = kill(target, Signal::SIGKILL);
    Ok(())
}

/// The last `lines` lines of a log file, for error messages.
pub fn tail(path: &Path, lines: usize) -> String {
    const WINDOW: u64 = 64 * 1024;
    let Ok(mut file) = File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    let len = file.metadata().map(|meta| meta.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(WINDOW)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
