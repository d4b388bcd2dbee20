//! Case 5: slow dependencies under cached reads. A slow Postgres: the tables locked
//! (`ACCESS EXCLUSIVE`) so that every statement waits; a slow Redis: `CLIENT PAUSE`.
//! The cache's timeouts and breaker must keep p99 of cached reads within the SLA.

use std::path::Path;

use sqlx::Connection as _;

use super::{Expect, Injected, LoadRun, Plan, Stack, Window};
use crate::postgres;

/// Course ids 1..=HOT: few enough that the warm-up caches every page.
const HOT_COURSES: u64 = 50;

/// `courser-load` flags for cached reads: newest-first course pages of the hot set.
pub fn cached_reads_scenario(dir: &Path) -> anyhow::Result<Vec<String>> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("cached-reads.toml");
    std::fs::write(
        &path,
        "name = \"cached reads\"\ncheck = false\n\n[[request]]\nkind = \"course_page\"\n\
         weight = 1\nids = \"zipf\"\nvariants = 0\n",
    )?;
    Ok(vec![
        "--scenario".into(),
        path.display().to_string(),
        "--courses".into(),
        HOT_COURSES.to_string(),
    ])
}

pub async fn postgres(stack: &Stack, load: &LoadRun, plan: &Plan) -> anyhow::Result<Injected> {
    let mut conn = postgres::connect(&stack.database_url).await?;
    load.sleep_until(plan.fault_at).await;
    let start = load.elapsed();
    let mut tx = conn.begin().await?;
    sqlx::query("LOCK TABLE reviews, reviewers, ratings IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await?;
    tokio::time::sleep(plan.length).await;
    tx.rollback().await?;
    Ok(cached_reads_within_sla(
        load,
        start,
        format!(
            "reviews, reviewers and ratings locked ACCESS EXCLUSIVE for {} s (every statement on them waits)",
            plan.length.as_secs()
        ),
    ))
}

pub async fn redis(stack: &Stack, load: &LoadRun, plan: &Plan) -> anyhow::Result<Injected> {
    load.sleep_until(plan.fault_at).await;
    let start = load.elapsed();
    let millis = plan.length.as_millis();
    crate::redis::command(
        stack.layout.redis_port,
        &format!("CLIENT PAUSE {millis} ALL"),
        "+OK",
    )
    .await?;
    tokio::time::sleep(plan.length).await;
    Ok(cached_reads_within_sla(
        load,
        start,
        format!("Redis paused (CLIENT PAUSE {millis} ALL: every command waits)"),
    ))
}

/// A slow-dependency fault that ends now: cached reads must have stayed within the SLA.
fn cached_reads_within_sla(load: &LoadRun, start: f64, what: String) -> Injected {
    Injected {
        window: Window {
            start,
            end: load.elapsed(),
        },
        expect: Expect::WithinSla,
        notes: vec![format!(
            "{what}; load: course pages of courses 1..={HOT_COURSES}, cached by the warm-up"
        )],
        failures: Vec::new(),
    }
}
