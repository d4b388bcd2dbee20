//! `--prefill`: before a run, GET once every distinct path the run's reads will ask for,
//! unmeasured, so that the run measures the warm path and not first-time misses.
//!
//! The runner draws each worker's requests from its own seeded generator, one draw per
//! slot, so the same draws here give the run's paths ahead of time (a superset: a slot
//! that times out before it is sent draws nothing). W1's ids are Zipf over every course,
//! so a run of 60 s reaches hundreds of thousands of courses no earlier run read; without
//! this, the capacity it finds is how far the warm-up happened to reach, not the rate the
//! cached path holds.

use std::cell::Cell;
use std::collections::HashSet;
use std::rc::Rc;
use std::time::{Duration, Instant};

use http::Method;

use crate::Error;
use crate::client::{Conn, status_error};
use crate::rng::Rng;
use crate::runner::{RunConfig, worker_seed};
use crate::workload::{Planned, Targets};

/// Concurrent connections of the prefill: enough to keep the server busy, few enough
/// that it does not queue for seconds.
const CONNECTIONS: usize = 64;

/// What a prefill did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefilled {
    pub paths: usize,
    pub failed: usize,
    pub elapsed: Duration,
}

/// The distinct GET requests of `cfg`'s run, in the order the run first asks for them.
/// Exact for mixes whose draws do not depend on answers (W1, W2). Where they do (W3's
/// follow-up reads and its writes aim at ids earlier answers showed), the draws here
/// part from the run's at the first such request, and the pages are only alike.
/// `cfg` has been checked by the runner: at least one worker and one connection.
fn reads(cfg: &RunConfig) -> Vec<Planned> {
    let workers = cfg.workers_used() as u64;
    let total = cfg.schedule.total();
    let targets = Targets::default();
    let mut seen = HashSet::new();
    let mut reads = Vec::new();
    for id in 0..workers {
        let mut rng = Rng::new(worker_seed(cfg.seed, id));
        let slots = total / workers + u64::from(id < total % workers);
        for seq in 0..slots {
            let planned = cfg.mix.next(&mut rng, &targets, seq);
            if planned.method == Method::GET && seen.insert(planned.path.clone()) {
                reads.push(planned);
            }
        }
    }
    reads
}

/// GETs each of [`reads`] once, over [`CONNECTIONS`] keep-alive connections.
pub fn run(cfg: &RunConfig) -> Result<Prefilled, Error> {
    let started = Instant::now();
    let reads = Rc::new(reads(cfg));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Runtime(format!("cannot start the prefill runtime: {e}")))?;
    let next = Rc::new(Cell::new(0usize));
    let failed = Rc::new(Cell::new(0usize));
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let tasks: Vec<_> = (0..CONNECTIONS.min(reads.len()))
            .map(|_| {
                let (reads, next, failed) = (reads.clone(), next.clone(), failed.clone());
                let (target, timeout) = (cfg.target.clone(), cfg.timeout);
                tokio::task::spawn_local(async move {
                    let mut conn: Option<Conn> = None;
                    loop {
                        let i = next.get();
                        let Some(planned) = reads.get(i) else { break };
                        next.set(i + 1);
                        let answer = tokio::time::timeout(timeout, async {
                            Conn::reuse_or_open(&mut conn, &target)
                                .await?
                                .send(&target, planned, false)
                                .await
                        })
                        .await;
                        match answer {
                            Ok(Ok(a)) if status_error(a.status).is_none() => {}
                            Ok(Ok(_)) => failed.set(failed.get() + 1),
                            _ => {
                                conn = None;
                                failed.set(failed.get() + 1);
                            }
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    });
    Ok(Prefilled {
        paths: reads.len(),
        failed: failed.get(),
        elapsed: started.elapsed(),
    })
}
