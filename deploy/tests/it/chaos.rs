//! Short cases of the fault suite (`courser chaos`), on a stack of the test's own: its
//! seeded database, its own Redis, two api instances and the proxy on free ports, with
//! the built binaries (`scripts/test` builds them). The shared Postgres and Redis other
//! tests use are never touched.

use std::path::{Path, PathBuf};
use std::time::Duration;

use courser::chaos::{self, Fault, Options, Row, Stack};
use courser::layout::Layout;
use courser::{api, apikey, binaries, proxy, redis, seed, stack};
use rand::Rng as _;

use crate::helpers::TestDb;

const SCALE: f64 = 0.0001;

/// The test's own stack; its processes are killed when it is dropped.
struct TestStack {
    stack: Stack,
    db: Option<TestDb>,
    /// Released after the processes on them are killed (fields drop after `drop`).
    _ports: Ports,
}

/// Ports reserved for one test stack, free again when it is dropped.
///
/// Each is below the kernel's ephemeral range (32768 and up): a port from that range can
/// be taken while its api instance is down, by an outgoing connection or by the proxy's
/// health check connecting to itself, and then the restart cannot bind it. Ports are
/// picked before any server binds them, so a bind check alone could hand out one port
/// twice (once, Redis and the proxy got the same one): each is reserved by creating a
/// file named after it, which also keeps tests running in other processes off it.
#[derive(Default)]
struct Ports(Vec<u16>);

impl Ports {
    fn dir() -> PathBuf {
        std::env::temp_dir().join("courser-test-ports")
    }

    fn reserve(&mut self) -> u16 {
        let dir = Self::dir();
        std::fs::create_dir_all(&dir).unwrap();
        loop {
            let port = rand::rng().random_range(20_000..32_000);
            let mark = dir.join(port.to_string());
            let reserved = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&mark)
                .is_ok();
            if !reserved {
                continue;
            }
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                self.0.push(port);
                return port;
            }
            let _ = std::fs::remove_file(mark);
        }
    }
}

impl Drop for Ports {
    fn drop(&mut self) {
        for port in &self.0 {
            let _ = std::fs::remove_file(Self::dir().join(port.to_string()));
        }
    }
}

/// Where cargo put this workspace's binaries (`courser` is beside the others).
fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_courser"))
        .parent()
        .unwrap()
        .to_path_buf()
}

impl TestStack {
    async fn start() -> Self {
        let home = std::env::temp_dir().join(format!(
            "courser-chaos-{:016x}",
            rand::rng().random::<u64>()
        ));
        let mut ports = Ports::default();
        let layout = Layout {
            home,
            pg_port: 0, // the test database's URL says where Postgres is
            redis_port: ports.reserve(),
            api_ports: vec![ports.reserve(), ports.reserve()],
            proxy_listen: format!("127.0.0.1:{}", ports.reserve()),
            proxy_metrics_listen: format!("127.0.0.1:{}", ports.reserve()),
        };
        layout.create_dirs().unwrap();
        let db = TestDb::create().await.unwrap();
        let spec = seed::Spec::from_scale(SCALE, 11).unwrap();
        seed::load(&db.url, &spec, &seed::Options::new(false))
            .await
            .unwrap();
        let dir = bin_dir();
        let stack = Stack {
            layout: layout.clone(),
            database_url: db.url.clone(),
            api_key_file: layout.api_key_file(),
            api_bin: dir.join(api::PROGRAM),
            proxy_bin: dir.join(proxy::PROGRAM),
            load_bin: dir.join("courser-load"),
            redis_bin: binaries::on_path(redis::PROGRAM).expect("redis-server on PATH"),
            dataset: vec!["--scale".into(), SCALE.to_string()],
        };
        let test = Self {
            stack,
            db: Some(db),
            _ports: ports,
        };
        redis::start(&layout, &test.stack.redis_bin).await.unwrap();
        let key = apikey::ensure(&layout.api_key_file()).unwrap();
        api::start_all(&layout, &test.stack.api_bin, &test.stack.database_url, &key)
            .await
            .unwrap();
        proxy::start(&layout, &test.stack.proxy_bin).await.unwrap();
        test
    }

    /// A short run: a few seconds of baseline, the fault, a few seconds after; checks that
    /// writes were acknowledged and none was lost or read stale.
    async fn run(&self, fault: Fault, length: Duration) -> Row {
        let options = Options {
            rate: 200.0,
            warmup: Duration::from_secs(2),
            lead: Duration::from_secs(4),
            length: Some(length),
            after: Duration::from_secs(6),
            out_dir: self.stack.layout.home.join("chaos"),
        };
        let row = chaos::run_fault(&self.stack, fault, &options)
            .await
            .unwrap();
        println!("{}", row.line());
        assert!(
            row.writes_acked > 0,
            "the run acknowledged no write: {row:?}"
        );
        assert_eq!(row.lost_writes, 0, "{row:?}");
        assert_eq!(row.stale_reads, 0, "{row:?}");
        row
    }

    async fn stop(mut self) {
        self.kill_all();
        if let Some(db) = self.db.take() {
            db.drop().await.unwrap();
        }
        let _ = std::fs::remove_dir_all(&self.stack.layout.home);
    }

    fn kill_all(&self) {
        let layout = &self.stack.layout;
        let mut managed = vec![proxy::managed(layout), redis::managed(layout)];
        managed.extend(api::Instance::all(layout).into_iter().map(|i| i.process));
        for process in managed {
            if let Some(pid) = process.running_pid() {
                let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap());
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            }
        }
    }
}

impl Drop for TestStack {
    fn drop(&mut self) {
        // A failed test must not leave servers behind.
        self.kill_all();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_an_api_instance_fails_no_read_and_loses_no_acknowledged_write() {
    let stack = TestStack::start().await;
    // Started by `api::spawn`, the instances share the machine's cores (the api's own
    // tests show that the setting sizes its runtime).
    let cores = std::thread::available_parallelism().unwrap().get();
    let setting = format!("COURSER_WORKER_THREADS={}", api::threads_each(cores, 2));
    for instance in api::Instance::all(&stack.stack.layout) {
        let pid = instance.process.running_pid().unwrap();
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        assert!(
            environ.split(|&b| b == 0).any(|v| v == setting.as_bytes()),
            "{setting} not in the environment of {pid}"
        );
    }
    let row = stack.run(Fault::KillApi, Duration::from_secs(2)).await;
    assert_eq!(row.errors - row.write_errors, 0, "read errors: {row:?}");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_then_back_costs_clients_nothing() {
    let stack = TestStack::start().await;
    let row = stack.run(Fault::RedisDown, Duration::from_secs(3)).await;
    assert_eq!(row.errors, 0, "client errors: {row:?}");
    assert!(
        redis::ping(stack.stack.layout.redis_port).await.is_ok(),
        "Redis is back"
    );
    stack.stop().await;
}

/// `courser seed --reset` under a running stack: afterwards it serves the new data, not
/// the pages its caches (Redis, and the instance that answered) held of the old.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_reload_no_cached_page_of_the_earlier_data_is_served() {
    let stack = TestStack::start().await;
    let db = stack.db.as_ref().unwrap();
    let layout = &stack.stack.layout;
    let url = format!("{}/course/1/reviews", stack.stack.proxy_url());
    let client = reqwest::Client::new();
    let comments = async || -> Vec<String> {
        let page: serde_json::Value = client.get(&url).send().await.unwrap().json().await.unwrap();
        page["reviews"]
            .as_array()
            .unwrap_or_else(|| panic!("not a page: {page}"))
            .iter()
            .map(|r| r["comment"].as_str().unwrap().to_owned())
            .collect()
    };
    let old = comments().await;
    assert_eq!(comments().await, old, "the page is cached");

    let other_data = seed::Spec::from_scale(SCALE, 12).unwrap();
    seed::load(&db.url, &other_data, &seed::Options::new(true))
        .await
        .unwrap();
    let done = stack::forget_cached_data(layout, || Ok(stack.stack.api_bin.clone()), &db.url)
        .await
        .unwrap();
    assert!(done.is_some_and(|d| d.contains("restarted its 2 api instances")));

    let mut conn = db.connect().await.unwrap();
    let stored: Vec<String> = sqlx::query_scalar(
        "SELECT comment FROM reviews WHERE course_id = 1 AND NOT reported
         ORDER BY created_at DESC, id DESC LIMIT 10",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_ne!(
        stored, old,
        "seed 12 gives course 1 other reviews than seed 11"
    );
    assert_eq!(comments().await, stored);
    stack.stop().await;
}

/// A stack layout in a fresh temporary home with no ports; a test sets the ones it uses.
fn scratch_layout(name: &str) -> Layout {
    let layout = Layout {
        home: std::env::temp_dir().join(format!("courser-{name}-{}", rand::rng().random::<u64>())),
        pg_port: 0,
        redis_port: 0,
        api_ports: Vec::new(),
        proxy_listen: String::new(),
        proxy_metrics_listen: String::new(),
    };
    layout.create_dirs().unwrap();
    layout
}

/// Another Redis on the stack's port: the stack's Redis would fail to bind only after
/// that one had answered its readiness PING, and the stack would run on a Redis it does
/// not own (which is how `courser chaos` once found "redis is not running" mid-suite).
#[tokio::test]
async fn the_stack_does_not_take_another_redis_on_its_port_for_its_own() {
    let mut ports = Ports::default();
    let layout = Layout {
        redis_port: ports.reserve(),
        ..scratch_layout("foreign-redis")
    };
    let bin = redis::ensure_installed().unwrap();
    let port = layout.redis_port.to_string();
    let mut foreign = std::process::Command::new(&bin)
        .args(["--port", &port, "--bind", "127.0.0.1", "--save", ""])
        .args(["--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while redis::ping(layout.redis_port).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the other Redis never answered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let started = redis::start(&layout, &bin).await;
    foreign.kill().unwrap();
    foreign.wait().unwrap();
    let error = format!("{:#}", started.unwrap_err());
    assert!(error.contains("another Redis answers"), "{error}");
    assert_eq!(redis::managed(&layout).running_pid(), None);
    let _ = std::fs::remove_dir_all(&layout.home);
}

/// Another process answering `/readyz` on an api instance's port (another stack's
/// instance, say) would pass the readiness check before the stack's own instance failed
/// to bind, and the stack would run on an instance it does not own.
#[tokio::test]
async fn the_stack_does_not_take_another_process_on_an_api_port_for_its_own() {
    let foreign = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = foreign.local_addr().unwrap().port();
    let answering = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        loop {
            let (mut conn, _) = foreign.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf).await;
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                .await;
        }
    });
    let layout = Layout {
        api_ports: vec![port],
        ..scratch_layout("foreign-api")
    };

    let started = api::start_all(&layout, Path::new("/bin/sleep"), "postgres://unused", "k").await;
    answering.abort();
    let error = format!("{:#}", started.unwrap_err());
    assert!(
        error.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{error}"
    );
    let _ = std::fs::remove_dir_all(&layout.home);
}
