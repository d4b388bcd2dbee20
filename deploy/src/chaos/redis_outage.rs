//! Case 3: Redis killed (SIGKILL) for a while, then started again, empty. No client
//! errors (the cache's timeouts and breaker send reads to the local tier and Postgres),
//! and the page hit ratio comes back by itself.

use anyhow::Context as _;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::metrics::CacheCounters;
use super::{Expect, Injected, LoadRun, Plan, Stack, Window};
use crate::redis;

/// The page hit ratio after the outage must reach this share of the one before.
const RECOVERED_SHARE: f64 = 0.8;

pub async fn run(stack: &Stack, load: &LoadRun, plan: &Plan) -> anyhow::Result<Injected> {
    let layout = &stack.layout;
    let lead = plan.fault_at - load.elapsed();
    load.sleep_until(plan.fault_at - lead / 2.0).await;
    let baseline_from = CacheCounters::scrape(layout).await?;
    load.sleep_until(plan.fault_at).await;
    let baseline_to = CacheCounters::scrape(layout).await?;
    let start = load.elapsed();
    let pid = redis::managed(layout)
        .running_pid()
        .context("redis is not running")?;
    kill(Pid::from_raw(i32::try_from(pid)?), Signal::SIGKILL)?;
    tokio::time::sleep(plan.length).await;
    redis::start(layout, &stack.redis_bin).await?;
    let end = load.elapsed();

    // The ratio over the second half of the time left, once the cache had time to refill.
    let tail = plan.end - end;
    load.sleep_until(end + tail / 2.0).await;
    let after_from = CacheCounters::scrape(layout).await?;
    load.sleep_until(plan.end - 0.5).await;
    let after_to = CacheCounters::scrape(layout).await?;

    let before = baseline_to.hit_ratio_since(&baseline_from);
    let after = after_to.hit_ratio_since(&after_from);
    let show =
        |r: Option<f64>| r.map_or_else(|| "no lookups".into(), |r| format!("{:.0}%", r * 100.0));
    let mut failures = Vec::new();
    if let (Some(b), a) = (before, after)
        && a.is_none_or(|a| a < b * RECOVERED_SHARE)
    {
        failures.push(format!(
            "page hit ratio {} after, below {:.0}% of the {} before",
            show(after),
            RECOVERED_SHARE * 100.0,
            show(before)
        ));
    }
    Ok(Injected {
        window: Window { start, end },
        expect: Expect::NoErrors,
        notes: vec![format!(
            "killed redis (pid {pid}) for {} s; course-page hit ratio (either tier) {} before, {} in the second half of the time after",
            plan.length.as_secs(),
            show(before),
            show(after)
        )],
        failures,
    })
}
