//! The private Redis: the cache's shared tier and invalidation bus, on its own port and
//! keeping nothing on disk (a restarted Redis is an empty cache, which the cache expects).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::bail;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::binaries;
use crate::layout::Layout;
use crate::process::Managed;

pub const PROGRAM: &str = "redis-server";

/// The Redis process of the stack.
pub fn managed(layout: &Layout) -> Managed {
    Managed::new("redis", PROGRAM, &layout.run(), &layout.logs())
}

/// `redis-server`, installed with apt-get if missing and possible.
pub fn ensure_installed() -> anyhow::Result<PathBuf> {
    if let Some(bin) = binaries::on_path(PROGRAM) {
        return Ok(bin);
    }
    if binaries::apt_install("redis-server", "Redis")?
        && let Some(bin) = binaries::on_path(PROGRAM)
    {
        return Ok(bin);
    }
    bail!(
        "`{PROGRAM}` was not found; install Debian's `redis-server` package: sudo apt-get install redis-server"
    )
}

/// Starts Redis unless it runs, then waits until it answers PING.
pub async fn start(layout: &Layout, bin: &PathBuf) -> anyhow::Result<()> {
    let redis = managed(layout);
    if let Some(pid) = redis.running_pid() {
        println!("redis already running (pid {pid})");
        return Ok(());
    }
    // Ours would fail to bind, but only after another Redis had answered the readiness
    // PING for it: the stack would run on a Redis it does not own and cannot stop.
    if ping(layout.redis_port).await.is_ok() {
        anyhow::bail!(
            "another Redis answers on 127.0.0.1:{port}, not this stack's (no live pid in {pid_file}): \
             stop it, or give this stack another port with COURSER_REDIS_PORT",
            port = layout.redis_port,
            pid_file = redis.pid_file.display()
        );
    }
    let mut command = Command::new(bin);
    command.args([
        "--port",
        &layout.redis_port.to_string(),
        "--bind",
        "127.0.0.1",
    ]);
    command
        .args(["--save", "", "--appendonly", "no", "--dir"])
        .arg(layout.run());
    let mut child = redis.spawn(command)?;
    println!(
        "started redis (pid {}) on 127.0.0.1:{}",
        child.id(),
        layout.redis_port
    );
    redis
        .wait_until_ready(
            Some(&mut child),
            Duration::from_secs(10),
            "answer PING",
            async || ping(layout.redis_port).await.is_ok(),
        )
        .await
}

/// `PING` over a plain connection: `+PONG` or an error.
pub async fn ping(port: u16) -> anyhow::Result<()> {
    command(port, "PING", "+PONG").await
}

/// Empties the stack's Redis: every cached page and reviewer is gone. `ASYNC` empties the
/// keyspace at once and frees the memory in the background: a synchronous flush of the
/// bench data set's pages outran the one-second reply deadline of `command`.
pub async fn flush(port: u16) -> anyhow::Result<()> {
    command(port, "FLUSHALL ASYNC", "+OK").await
}

/// Sends one inline command over a plain connection and expects `reply` (a simple
/// string) back, within a second for each step.
pub async fn command(port: u16, command: &str, reply: &str) -> anyhow::Result<()> {
    let step = Duration::from_secs(1);
    let mut stream =
        tokio::time::timeout(step, tokio::net::TcpStream::connect(("127.0.0.1", port))).await??;
    stream
        .write_all(format!("{command}\r\n").as_bytes())
        .await?;
    let want = format!("{reply}\r\n");
    let mut got = vec![0u8; want.len()];
    tokio::time::timeout(step, stream.read_exact(&mut got)).await??;
    if got != want.as_bytes() {
        bail!(
            "{command} answered {:?}, not {reply}",
            String::from_utf8_lossy(&got)
        );
    }
    Ok(())
}
