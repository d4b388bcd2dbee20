//! Case 6: the proxy replaced under load by Pingora's graceful upgrade: a new
//! `courser-proxy --upgrade` takes the listening sockets over from the old one (SIGQUIT),
//! which finishes its requests in flight. No client errors.

use std::time::Duration;

use super::{Expect, Injected, LoadRun, Plan, Stack, Window};
use crate::process;
use crate::proxy;

pub async fn run(stack: &Stack, load: &LoadRun, plan: &Plan) -> anyhow::Result<Injected> {
    load.sleep_until(plan.fault_at).await;
    let start = load.elapsed();
    let old = proxy::upgrade(&stack.layout, &stack.proxy_bin, &[]).await?;
    let new = proxy::managed(&stack.layout).running_pid();
    let end = load.elapsed();
    // The old process drains, then exits: note how long it took, without waiting forever.
    let mut gone_after = None;
    while load.elapsed() < plan.end {
        if !process::is_alive(old, Some(proxy::PROGRAM)) {
            gone_after = Some(load.elapsed() - start);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let gone = gone_after.map_or_else(
        || "was still draining at the end of the run".into(),
        |s| format!("exited {s:.1} s after the upgrade began"),
    );
    Ok(Injected {
        window: Window { start, end },
        expect: Expect::NoErrors,
        notes: vec![format!(
            "proxy pid {old} handed its listeners to pid {}; the old one {gone}",
            new.map_or_else(|| "?".into(), |pid| pid.to_string())
        )],
        failures: Vec::new(),
    })
}
