//! Case 1: `kill -9` of one api instance under load, then its restart. Reads must not
//! fail (the proxy retries a refused connect or a reset GET elsewhere); a write in flight
//! on the killed instance may fail, but no acknowledged write may be lost.

use anyhow::Context as _;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::{Expect, Injected, LoadRun, Plan, Stack, Window};
use crate::api::{self, Instance};

pub async fn run(stack: &Stack, load: &LoadRun, plan: &Plan) -> anyhow::Result<Injected> {
    let instance = Instance::all(&stack.layout)
        .into_iter()
        .next()
        .context("no api instance")?;
    load.sleep_until(plan.fault_at).await;
    let start = load.elapsed();
    let pid = kill_hard(&instance)?;
    tokio::time::sleep(plan.length).await;
    restart(stack, &instance).await?;
    Ok(Injected {
        window: Window {
            start,
            end: load.elapsed(),
        },
        expect: Expect::NoReadErrors,
        notes: vec![format!(
            "killed {} (pid {pid}), restarted it after {} s",
            instance.process.name,
            plan.length.as_secs()
        )],
        failures: Vec::new(),
    })
}

/// SIGKILL to the instance; returns its pid once it is gone.
pub fn kill_hard(instance: &Instance) -> anyhow::Result<u32> {
    let pid = instance
        .process
        .running_pid()
        .with_context(|| format!("{} is not running", instance.process.name))?;
    kill(Pid::from_raw(i32::try_from(pid)?), Signal::SIGKILL)?;
    Ok(pid)
}

/// Starts the instance again and waits until it is ready.
pub async fn restart(stack: &Stack, instance: &Instance) -> anyhow::Result<()> {
    let key = stack.api_key()?;
    api::start_again(
        &stack.layout,
        instance,
        &stack.api_bin,
        &stack.database_url,
        &key,
    )
    .await
}
