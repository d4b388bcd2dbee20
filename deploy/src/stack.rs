//! The commands over the whole stack, `up`, `down`, `status` and `env`: each service in
//! its order (Postgres and Redis, then the database, migrations, demo data, the apis,
//! and the proxy in front of them).
//! A new service is a module with start/stop/status and a line in each of these.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::api::{self, Instance};
use crate::layout::Layout;
use crate::postgres::{self, Binaries, Cluster};
use crate::{apikey, binaries, prometheus, proxy, redis, seed};

/// The application database the apis use.
const DATABASE: &str = "courser";

/// What `up` starts.
#[derive(Debug, Clone, Copy, Default)]
pub struct UpOptions {
    /// Only the backing services (Postgres with the empty database, and Redis): what
    /// the tests need.
    pub only_services: bool,
}

/// After `courser seed` replaced the data under a running stack: empties its Redis, then
/// restarts its running api instances, so that no cache tier serves a page of the
/// earlier data (each would until its TTL ran out: 10 min in each tier). Redis first:
/// an instance not yet restarted never writes its pages back. Says what it did; `None`
/// when none of the stack runs. `api_bin` is looked for only when an instance runs.
pub async fn forget_cached_data(
    layout: &Layout,
    api_bin: impl FnOnce() -> anyhow::Result<PathBuf>,
    database_url: &str,
) -> anyhow::Result<Option<String>> {
    let mut done = Vec::new();
    if redis::managed(layout).running_pid().is_some() {
        redis::flush(layout.redis_port)
            .await
            .context("emptying the stack's Redis")?;
        done.push("emptied its Redis".to_owned());
    }
    let running: Vec<Instance> = Instance::all(layout)
        .into_iter()
        .filter(|i| i.process.running_pid().is_some())
        .collect();
    if !running.is_empty() {
        let api_bin = api_bin()?;
        let key = apikey::ensure(&layout.api_key_file())?;
        for instance in &running {
            instance.process.stop().await?;
            api::start_again(layout, instance, &api_bin, database_url, &key).await?;
        }
        done.push(format!("restarted its {} api instances", running.len()));
    }
    Ok((!done.is_empty()).then(|| {
        format!(
            "the stack: {}, so no cached page of the earlier data is served",
            done.join(" and ")
        )
    }))
}

/// Starts whatever is not running yet and prints where everything is.
pub async fn up(layout: &Layout, options: UpOptions) -> anyhow::Result<()> {
    layout.create_dirs()?;
    let database_url = layout.database_url();

    let bin = Binaries::ensure_installed()?;
    let cluster = Cluster::for_up(layout)?;
    cluster.start(&bin)?;
    let mut admin = postgres::connect(&layout.admin_database_url()).await?;
    if postgres::create_database(&mut admin, DATABASE).await? {
        println!("created database `{DATABASE}`");
    }
    redis::start(layout, &redis::ensure_installed()?).await?;
    if options.only_services {
        println!("\nPostgres  {database_url}");
        println!(
            "          (data {}, log {})",
            cluster.data_dir.display(),
            cluster.log_file.display()
        );
        println!("Redis     {}", layout.redis_url());
        return Ok(());
    }

    let api_bin = binaries::find(api::PROGRAM)?;
    api::migrate(&api_bin, &database_url)?;
    let mut db = postgres::connect(&database_url).await?;
    let unfinished = matches!(seed::state(&mut db).await?, seed::State::Incomplete { .. });
    if unfinished || seed::is_empty(&mut db).await? {
        let spec = seed::Spec::from_scale(seed::DEFAULT_SCALE, seed::DEFAULT_SEED)?;
        println!("loading demo data ({spec})");
        let summary = seed::load(&database_url, &spec, &seed::Options::new(false)).await?;
        println!("{summary}");
    }
    drop(db);
    let key = apikey::ensure(&layout.api_key_file())?;
    api::start_all(layout, &api_bin, &database_url, &key).await?;
    proxy::start(layout, &binaries::find(proxy::PROGRAM)?).await?;
    let scrape_config = prometheus::config_file(layout)?;
    prometheus::start(layout, &prometheus::ensure_installed()?, &scrape_config).await?;

    print_summary(layout, &cluster);
    Ok(())
}

fn print_summary(layout: &Layout, cluster: &Cluster) {
    let instances = Instance::all(layout);
    let key_file = layout.api_key_file();
    println!("\nCourser is up.");
    println!(
        "  Postgres  {}  (data {})",
        layout.database_url(),
        cluster.data_dir.display()
    );
    println!("  Redis     {}", layout.redis_url());
    for instance in &instances {
        println!("  {}  {}", instance.process.name, instance.url());
    }
    println!(
        "  proxy     http://{}  (metrics http://{}/metrics)",
        layout.proxy_listen, layout.proxy_metrics_listen
    );
    println!(
        "  Prometheus http://{}  (dashboards in dashboards/grafana)",
        prometheus::LISTEN
    );
    println!("  write key {}", key_file.display());
    println!(
        "  logs      {}  (Postgres: {})",
        layout.logs().display(),
        cluster.log_file.display()
    );
    let url = format!("http://{}", layout.proxy_listen);
    println!("\nTry:");
    println!("  curl -s {url}/rating/1");
    println!("  curl -s '{url}/course/1/reviews?sort=helpful&limit=5'");
    println!(
        "  curl -s -X POST {url}/review -H \"Authorization: Bearer $(cat {})\" \\\n       \
         -H 'Content-Type: application/json' \\\n       \
         -d '{{\"course_id\": 1, \"reviewer_id\": 1, \"rating\": 4.5, \"comment\": \"Clear and well paced.\"}}'",
        key_file.display()
    );
    println!("  courser status; courser down");
}

/// Stops Prometheus, the proxy, the apis, Redis, then Postgres. Stopping what is not running is not
/// an error.
pub async fn down(layout: &Layout) -> anyhow::Result<()> {
    for managed in [prometheus::managed(layout), proxy::managed(layout)] {
        if let Some(pid) = managed.stop().await? {
            println!("stopped {} (pid {pid})", managed.name);
        }
    }
    api::stop_all(layout).await?;
    let redis = redis::managed(layout);
    if let Some(pid) = redis.stop().await? {
        println!("stopped redis (pid {pid})");
    }
    if let Some(cluster) = Cluster::existing(layout)? {
        let bin = Binaries::find()
            .context("PostgreSQL server binaries are gone; cannot stop the cluster with pg_ctl")?;
        if let Some(pid) = cluster.stop(&bin)? {
            println!("stopped Postgres (pid {pid})");
        }
    }
    println!("Courser is down.");
    Ok(())
}

/// Writes `text` to standard output. A reader that stopped early (`courser status |
/// head`) is not an error: the rest is simply not shown, as with any Unix tool.
pub fn print_out(text: &str) -> std::io::Result<()> {
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// One line per process; fails (exit code 1) if anything is down.
pub async fn status(layout: &Layout) -> anyhow::Result<ExitCode> {
    let mut all_up = true;
    let mut unprinted = None;
    let mut line = |name: &str, pid: Option<u32>, address: &str, health: String, up: bool| {
        all_up &= up;
        let pid = pid.map_or_else(|| "stopped".to_owned(), |pid| pid.to_string());
        if let Err(err) = print_out(&format!("{name:<10} {pid:<8} {address:<16} {health}\n")) {
            unprinted.get_or_insert(err);
        }
    };

    let pg_address = format!("127.0.0.1:{}", layout.pg_port);
    let pg_pid = Cluster::existing(layout)?.and_then(|cluster| cluster.pid());
    match postgres::ping(&layout.database_url()).await {
        Ok(()) => line("postgres", pg_pid, &pg_address, "SELECT 1 ok".into(), true),
        Err(err) => line(
            "postgres",
            pg_pid,
            &pg_address,
            format!("down: {}", first_line(&err)),
            false,
        ),
    }

    let redis_address = format!("127.0.0.1:{}", layout.redis_port);
    let redis_pid = redis::managed(layout).running_pid();
    match redis::ping(layout.redis_port).await {
        Ok(()) => line("redis", redis_pid, &redis_address, "PING ok".into(), true),
        Err(err) => line(
            "redis",
            redis_pid,
            &redis_address,
            format!("down: {}", first_line(&err)),
            false,
        ),
    }

    let client = api::http_client()?;
    let proxy_pid = proxy::managed(layout).running_pid();
    let forwarded = client
        .get(format!("http://{}/healthz", layout.proxy_listen))
        .send()
        .await;
    match forwarded {
        Ok(response) if response.status().is_success() => {
            line(
                "proxy",
                proxy_pid,
                &layout.proxy_listen,
                "forwards /healthz".into(),
                true,
            );
        }
        Ok(response) => line(
            "proxy",
            proxy_pid,
            &layout.proxy_listen,
            format!("answers {}", response.status()),
            false,
        ),
        Err(_) => line(
            "proxy",
            proxy_pid,
            &layout.proxy_listen,
            "not answering".into(),
            false,
        ),
    }
    let prometheus_pid = prometheus::managed(layout).running_pid();
    let ready = client
        .get(format!("http://{}/-/ready", prometheus::LISTEN))
        .send()
        .await;
    let prometheus_up = ready.is_ok_and(|r| r.status().is_success());
    let health = if prometheus_up {
        "ready"
    } else {
        "not answering"
    };
    line(
        "prometheus",
        prometheus_pid,
        prometheus::LISTEN,
        health.into(),
        prometheus_up,
    );
    for instance in Instance::all(layout) {
        let pid = instance.process.running_pid();
        let healthz = api::probe(&client, &instance, "/healthz").await;
        let readyz = api::probe(&client, &instance, "/readyz").await;
        let show = |result: &Result<u16, String>| match result {
            Ok(code) => code.to_string(),
            Err(reason) => reason.clone(),
        };
        let up = pid.is_some() && healthz == Ok(200) && readyz == Ok(200);
        let health = format!("healthz {} readyz {}", show(&healthz), show(&readyz));
        line(&instance.process.name, pid, &instance.address(), health, up);
    }
    if let Some(err) = unprinted {
        return Err(anyhow::Error::new(err).context("cannot print the status"));
    }
    Ok(if all_up {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn first_line(err: &anyhow::Error) -> String {
    let text = format!("{err:#}");
    text.lines().next().unwrap_or_default().to_owned()
}

/// `export` lines for `eval "$(courser env)"`.
pub fn env(layout: &Layout) -> String {
    format!(
        "export COURSER_DATABASE_URL='{}'\nexport COURSER_TEST_DATABASE_URL='{}'\n\
         export COURSER_REDIS_URL='{redis}'\nexport COURSER_TEST_REDIS_URL='{redis}'\n",
        layout.database_url(),
        layout.admin_database_url(),
        redis = layout.redis_url(),
    )
}
