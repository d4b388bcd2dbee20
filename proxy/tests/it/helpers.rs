//! Test harness: small HTTP backends that answer with their own name and can be told to
//! fail, stall, drop connections or die, and the real `courser-proxy` binary started on
//! free loopback ports in front of them.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// How a backend answers.
#[derive(Default)]
pub struct Behaviour {
    /// Answer 500 to everything but `/readyz`.
    pub fail: AtomicBool,
    /// Answer 503 to everything but `/readyz`, as an api whose database is down does.
    pub unavailable: AtomicBool,
    /// Answer `/readyz` with 503.
    pub not_ready: AtomicBool,
    /// Close the connection without an answer (after reading the request).
    pub drop_connection: AtomicBool,
    /// Wait this many milliseconds before answering.
    pub delay_ms: AtomicU64,
}

/// What a backend saw.
#[derive(Default)]
pub struct Seen {
    /// Requests by method, `/readyz` left out.
    pub by_method: Mutex<HashMap<String, usize>>,
    /// Requests other than `/readyz`.
    pub total: AtomicUsize,
    /// Headers of the last request: (x-request-id, x-forwarded-for).
    pub last_headers: Mutex<(Option<String>, Option<String>)>,
}

/// A running test backend.
pub struct TestBackend {
    pub addr: SocketAddr,
    pub behaviour: Arc<Behaviour>,
    pub seen: Arc<Seen>,
    task: tokio::task::JoinHandle<()>,
}

impl TestBackend {
    /// Starts a backend on a free port.
    pub async fn start(name: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(name, listener, Default::default(), Default::default())
    }

    /// Starts a backend on a given address (to bring a killed one back).
    pub async fn restart(name: &str, addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).await.unwrap();
        Self::serve(name, listener, Default::default(), Default::default())
    }

    fn serve(
        name: &str,
        listener: TcpListener,
        behaviour: Arc<Behaviour>,
        seen: Arc<Seen>,
    ) -> Self {
        let addr = listener.local_addr().unwrap();
        let (b, s, n) = (behaviour.clone(), seen.clone(), name.to_string());
        let task = tokio::spawn(async move {
            // Connections live in this set: aborting the task kills them all, like a
            // process dying.
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (b, s, n) = (b.clone(), s.clone(), n.clone());
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        handle(req, b.clone(), s.clone(), n.clone())
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
                while connections.try_join_next().is_some() {}
            }
        });
        Self {
            addr,
            behaviour,
            seen,
            task,
        }
    }

    /// Stops it at once: listener and every connection.
    pub fn kill(&self) {
        self.task.abort();
    }

    pub fn total(&self) -> usize {
        self.seen.total.load(SeqCst)
    }

    pub fn count(&self, method: &str) -> usize {
        *self
            .seen
            .by_method
            .lock()
            .unwrap()
            .get(method)
            .unwrap_or(&0)
    }
}

impl Drop for TestBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dropped on purpose")
    }
}

impl std::error::Error for Dropped {}

async fn handle(
    req: Request<Incoming>,
    behaviour: Arc<Behaviour>,
    seen: Arc<Seen>,
    name: String,
) -> Result<Response<Full<Bytes>>, Dropped> {
    if req.uri().path() == "/readyz" {
        let status = if behaviour.not_ready.load(SeqCst) {
            503
        } else {
            200
        };
        return Ok(Response::builder()
            .status(status)
            .body(Full::new(Bytes::from_static(b"ready")))
            .unwrap());
    }
    let header = |h: &str| {
        req.headers()
            .get(h)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    *seen.last_headers.lock().unwrap() = (header("x-request-id"), header("x-forwarded-for"));
    *seen
        .by_method
        .lock()
        .unwrap()
        .entry(req.method().to_string())
        .or_default() += 1;
    seen.total.fetch_add(1, SeqCst);
    let _ = req.into_body().collect().await;
    let delay = behaviour.delay_ms.load(SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    if behaviour.drop_connection.load(SeqCst) {
        return Err(Dropped);
    }
    let status = if behaviour.fail.load(SeqCst) {
        500
    } else if behaviour.unavailable.load(SeqCst) {
        503
    } else {
        200
    };
    Ok(Response::builder()
        .status(status)
        .header("x-backend", name.as_str())
        .body(Full::new(Bytes::from(name)))
        .unwrap())
}

/// A free loopback port (bound, then released).
pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// The proxy binary, running.
pub struct TestProxy {
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub config_path: PathBuf,
    pub child: Child,
    pub client: reqwest::Client,
}

/// Extra `key = value` TOML lines on top of the harness's defaults.
pub async fn spawn_proxy(backends: &[&TestBackend], extra: &str) -> TestProxy {
    spawn_proxy_with_env(backends, extra, &[]).await
}

/// [`spawn_proxy`] with environment variables set for the process.
pub async fn spawn_proxy_with_env(
    backends: &[&TestBackend],
    extra: &str,
    env: &[(&str, &str)],
) -> TestProxy {
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    spawn_proxy_on(&addrs, extra, env).await
}

/// [`spawn_proxy_with_env`] in front of backends given by address.
pub async fn spawn_proxy_on(
    backends: &[SocketAddr],
    extra: &str,
    env: &[(&str, &str)],
) -> TestProxy {
    let addr = free_addr();
    let metrics_addr = free_addr();
    let dir = std::env::temp_dir().join(format!(
        "courser-proxy-it-{}-{}",
        std::process::id(),
        addr.port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let config_path = dir.join("proxy.toml");
    let config = format!(
        "listen = \"{addr}\"\nmetrics_listen = \"{metrics_addr}\"\nthreads = 2\n\
         health_interval_ms = 200\nreload_poll_ms = 200\nupgrade_sock = \"{}\"\n{extra}\n",
        dir.join("upgrade.sock").display()
    );
    let mut file = std::fs::File::create(&config_path).unwrap();
    file.write_all(config.as_bytes()).unwrap();
    write_backend_addrs(&config_path, backends);

    let child = proxy_command(&config_path)
        .envs(env.iter().copied())
        .spawn()
        .unwrap();
    let proxy = TestProxy {
        addr,
        metrics_addr,
        config_path,
        child,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap(),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let admin = proxy.client.get(proxy.metrics_url()).send().await;
        let public = tokio::net::TcpStream::connect(proxy.addr).await;
        if admin.is_ok() && public.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "proxy did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    proxy
}

/// The proxy binary on a config file, quiet, deaf to the caller's `COURSER_PROXY_*`.
fn proxy_command(config_path: &PathBuf) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_courser-proxy"));
    command
        .arg("--config")
        .arg(config_path)
        .env("RUST_LOG", "warn")
        .env_remove("COURSER_PROXY_BACKENDS")
        .env_remove("COURSER_PROXY_LISTEN")
        .env_remove("COURSER_PROXY_METRICS_LISTEN")
        .env_remove("COURSER_PROXY_LOG_FILE")
        .env_remove("COURSER_PROXY_LOG_MAX_BYTES")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

/// Rewrites the `backends` line of a config file.
pub fn write_backends(path: &PathBuf, backends: &[&TestBackend]) {
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    write_backend_addrs(path, &addrs);
}

fn write_backend_addrs(path: &PathBuf, backends: &[SocketAddr]) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with("backends"))
        .map(str::to_string)
        .collect();
    let list: Vec<String> = backends.iter().map(|addr| format!("\"{addr}\"")).collect();
    lines.insert(0, format!("backends = [{}]", list.join(", ")));
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

impl TestProxy {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.metrics_addr)
    }

    /// GET, returning (status, backend name).
    pub async fn get(&self, path: &str) -> (u16, String) {
        let resp = self.client.get(self.url(path)).send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap())
    }

    /// POST `body` to `path`.
    pub async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .body(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn metrics(&self) -> String {
        self.client
            .get(self.metrics_url())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Sum of the samples of a metric whose line contains every one of `parts`.
    pub async fn metric(&self, name: &str, parts: &[&str]) -> f64 {
        self.metrics()
            .await
            .lines()
            .filter(|l| l.starts_with(name) && parts.iter().all(|p| l.contains(p)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// How many times the backend at `addr` has been ejected.
    pub async fn ejections(&self, addr: SocketAddr) -> f64 {
        let label = format!("backend=\"{addr}\"");
        self.metric("courser_proxy_ejections_total", &[&label])
            .await
    }

    /// `metric`, once it equals `expected` or after two seconds: request counters move in
    /// the proxy's logging phase, which may run after the client has its response.
    pub async fn metric_when(&self, name: &str, parts: &[&str], expected: f64) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let value = self.metric(name, parts).await;
            if value == expected || Instant::now() > deadline {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn signal(&self, signal: &str) {
        signal_pid(self.child.id(), signal);
    }

    /// A second proxy on the same config, started with `--upgrade`: it waits on
    /// `upgrade_sock` for this one's listeners (handed over on SIGQUIT).
    pub fn spawn_upgrade(&self) -> Child {
        proxy_command(&self.config_path)
            .arg("--upgrade")
            .spawn()
            .unwrap()
    }

    /// A second proxy started, without `--upgrade`, on this one's configuration but its
    /// own admin address; waits for it to exit.
    pub fn run_second(&self) -> std::process::Output {
        proxy_command(&self.config_path)
            .env("COURSER_PROXY_METRICS_LISTEN", free_addr().to_string())
            .stderr(Stdio::piped())
            .output()
            .unwrap()
    }
}

/// Sends `signal` (a name such as `TERM`) to a process.
pub fn signal_pid(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = self.config_path.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
