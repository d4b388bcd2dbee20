//! Case 2: a rolling deploy: every api instance stopped (SIGTERM, it finishes its
//! requests) and started again, one after the other, under load. No client errors.

use std::time::Duration;

use super::{Expect, Injected, LoadRun, Plan, Stack, Window, api_kill};
use crate::api::Instance;

pub async fn run(stack: &Stack, load: &LoadRun, plan: &Plan) -> anyhow::Result<Injected> {
    let instances = Instance::all(&stack.layout);
    load.sleep_until(plan.fault_at).await;
    let start = load.elapsed();
    let mut took = Vec::new();
    for instance in &instances {
        let began = load.elapsed();
        instance.process.stop().await?;
        api_kill::restart(stack, instance).await?;
        took.push(format!("{:.1}", load.elapsed() - began));
        // Give the proxy's health check time to see it back before the next goes.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    Ok(Injected {
        window: Window {
            start,
            end: load.elapsed(),
        },
        expect: Expect::NoErrors,
        notes: vec![format!(
            "{} instances stopped with SIGTERM and restarted one by one (s each: {})",
            instances.len(),
            took.join(", ")
        )],
        failures: Vec::new(),
    })
}
