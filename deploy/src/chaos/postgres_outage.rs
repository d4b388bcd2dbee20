//! Case 4: Postgres stopped (`pg_ctl stop -m fast`) for a while, then started. Cached
//! course pages keep being served; writes and cache misses answer 503 problem+json
//! quickly, and everything recovers by itself.

use anyhow::Context as _;

use super::{Expect, Injected, LoadRun, Plan, Stack, Window};
use crate::postgres::{Binaries, Cluster};

/// "Quickly": an answer while the database is down must not wait for it.
const MAX_P99_MS: f64 = 250.0;

pub async fn run(stack: &Stack, load: &LoadRun, plan: &Plan) -> anyhow::Result<Injected> {
    let cluster = Cluster::existing(&stack.layout)?
        .context("no Postgres cluster in this COURSER_HOME (run `courser up`)")?;
    let bin = Binaries::find().context("PostgreSQL server binaries not found")?;
    load.sleep_until(plan.fault_at).await;
    let start = load.elapsed();
    // pg_ctl blocks; keep the runtime's timers honest meanwhile.
    let stopped = {
        let (cluster, bin) = (cluster.clone(), bin.clone());
        tokio::task::spawn_blocking(move || cluster.stop(&bin)).await??
    };
    let stopped_at = load.elapsed();
    tokio::time::sleep(plan.length).await;
    let restart_at = load.elapsed();
    tokio::task::spawn_blocking(move || cluster.start(&bin)).await??;
    let end = load.elapsed();
    Ok(Injected {
        window: Window { start, end },
        expect: Expect::QuickUnavailable {
            max_p99_ms: MAX_P99_MS,
        },
        notes: vec![format!(
            "Postgres (pid {}) stopped in {:.1} s, down {} s, started again in {:.1} s",
            stopped.map_or_else(|| "?".into(), |pid| pid.to_string()),
            stopped_at - start,
            plan.length.as_secs(),
            end - restart_at
        )],
        failures: Vec::new(),
    })
}
