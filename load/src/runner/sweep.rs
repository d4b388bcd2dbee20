//! The checker's final sweep: once the run is over and the freshness bound has passed,
//! every review and reviewer the run wrote is read once more; what it cannot see is a
//! lost write.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{RunConfig, lock};
use crate::Error;
use crate::checker::Checker;
use crate::client::Conn;
use crate::stats::{ErrorKind, Stats};
use crate::workload::{Intent, Planned};

/// The checker's final sweep: after the bound has passed, read every review and
/// reviewer the run wrote, on `connections` connections, closed loop.
pub(super) fn sweep(
    cfg: &RunConfig,
    checker: &Arc<Mutex<Checker>>,
    start: Instant,
    stats: &mut Stats,
) -> Result<(), Error> {
    let targets = lock(checker).sweep_targets();
    if targets.is_empty() {
        return Ok(());
    }
    if let Some(bound) = cfg.freshness {
        std::thread::sleep(bound + Duration::from_millis(10));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Runtime(format!("cannot start the sweep runtime: {e}")))?;
    let queue = Rc::new(RefCell::new(targets));
    let found = Rc::new(RefCell::new(Vec::new()));
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let tasks: Vec<_> = (0..cfg.connections.min(64))
            .map(|_| {
                let (queue, found, checker) = (queue.clone(), found.clone(), checker.clone());
                let target = cfg.target.clone();
                let timeout = cfg.timeout.max(Duration::from_secs(2));
                tokio::task::spawn_local(async move {
                    let mut conn: Option<Conn> = None;
                    loop {
                        let Some(intent) = queue.borrow_mut().pop() else {
                            break;
                        };
                        let path = match &intent {
                            Intent::ReviewRead { review_id } => format!("/review/{review_id}"),
                            Intent::ReviewerRead { reviewer_id } => {
                                format!("/reviewer/{reviewer_id}")
                            }
                            _ => continue,
                        };
                        let planned = Planned {
                            method: http::Method::GET,
                            path,
                            body: None,
                            intent,
                        };
                        let sent = Instant::now();
                        let answer = tokio::time::timeout(timeout, async {
                            Conn::reuse_or_open(&mut conn, &target)
                                .await?
                                .send(&target, &planned, true)
                                .await
                        })
                        .await
                        .unwrap_or(Err(ErrorKind::Timeout));
                        let mut c = lock(&checker);
                        match answer {
                            Ok(a) if a.status == 200 || a.status == 404 => {
                                c.note_swept(true);
                                let f = c.on_read(&planned.intent, sent, a.status, &a.body, true);
                                found.borrow_mut().extend(f);
                            }
                            Ok(_) => c.note_swept(false),
                            Err(_) => {
                                conn = None;
                                c.note_swept(false);
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
    let at = start.elapsed();
    for f in found.borrow().iter() {
        stats.record_finding(at, f.0, true);
    }
    Ok(())
}
