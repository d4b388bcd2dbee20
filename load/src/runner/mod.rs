//! Runs one schedule against the target: worker threads, each a single-threaded tokio
//! runtime owning a share of the connections, and the open-model loop of each
//! connection.
//!
//! Every connection task takes the next slot of the schedule when it is free, waits
//! until the slot is due, and sends. When every connection is busy (a slow or stalled
//! server), slots are taken late, but latency is still counted from each slot's due
//! time, so the queue shows in the percentiles instead of being omitted; a slot taken
//! after its timeout has passed counts as a timeout without being sent, so the tool
//! catches up instead of drifting. A request that is sent has the whole timeout from
//! then: counted from its due time, past capacity the tool's own queue left each one
//! only the end of its timeout, so the tool hung up on answers the server was about to
//! give (W3 at 4,000/s: the proxy answered in 25 ms at the median while the tool timed
//! out 97,000 requests). Workers take interleaved slots (worker k of n takes k, k+n, …),
//! so the whole run follows the schedule exactly.

use std::cell::{Cell, RefCell};
use std::io::{IsTerminal, Write};
use std::rc::Rc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

mod sweep;

use crate::Error;
use crate::checker::{Checker, CheckerSummary, Page, ReviewBody};
use crate::client::{Answer, Conn, Target, status_error};
use crate::prefill;
use crate::procwatch::{ProcWatch, ProcessFigures, WatchSpec};
use crate::rng::Rng;
use crate::schedule::Schedule;
use crate::stats::{ErrorKind, Outcome, Percentiles, Stats};
use crate::workload::{Intent, Mix, Planned, Targets};

/// How progress is shown while running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    Off,
    /// One line per second.
    Lines,
    /// One status line rewritten in place.
    Terminal,
}

impl Progress {
    /// Rewrites in place on a terminal, lines otherwise.
    #[must_use]
    pub fn auto() -> Self {
        if std::io::stderr().is_terminal() {
            Self::Terminal
        } else {
            Self::Lines
        }
    }
}

/// Everything one run needs.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub target: Target,
    pub schedule: Schedule,
    pub mix: Mix,
    /// Keep-alive connections in all.
    pub connections: usize,
    /// Worker threads (each a single-threaded runtime).
    pub workers: usize,
    /// For a connection, from a request's due time; for the answer, from its sending.
    pub timeout: Duration,
    /// The freshness bound; Some runs the write checker.
    pub freshness: Option<Duration>,
    pub seed: u64,
    pub watch: Vec<WatchSpec>,
    pub progress: Progress,
    /// Shown before progress lines (e.g. the capacity trial).
    pub label: String,
    /// GET every page the run will read once before it starts (see `prefill`).
    pub prefill: bool,
}

impl RunConfig {
    /// The worker threads a run starts: `workers`, but none without a connection.
    #[must_use]
    pub fn workers_used(&self) -> usize {
        self.workers.min(self.connections)
    }
}

/// The seed of worker `id`'s request generator.
#[must_use]
pub fn worker_seed(seed: u64, id: u64) -> u64 {
    seed.wrapping_add(id * 7919)
}

/// What a run produced.
#[derive(Debug)]
pub struct RunOutput {
    pub stats: Stats,
    pub checker: Option<CheckerSummary>,
    pub processes: Vec<ProcessFigures>,
    pub started_at: SystemTime,
    pub elapsed: Duration,
}

/// Runs the schedule to its end (plus the time in-flight requests need, at most the
/// timeout), then the checker's sweep.
pub fn run(cfg: &RunConfig) -> Result<RunOutput, Error> {
    if cfg.connections == 0 || cfg.workers == 0 {
        return Err(Error::Config(
            "--connections and --workers must be ≥ 1".into(),
        ));
    }
    let workers = cfg.workers_used();
    if cfg.prefill {
        let p = prefill::run(cfg)?;
        eprintln!(
            "{}prefill    {} pages read once in {:.1} s before the run, {} failed",
            cfg.label,
            p.paths,
            p.elapsed.as_secs_f64(),
            p.failed
        );
    }
    let started_at = SystemTime::now();
    // A little lead so every worker is up before the first slot is due.
    let start = Instant::now() + Duration::from_millis(50);
    let checker = cfg
        .freshness
        .map(|bound| Arc::new(Mutex::new(Checker::new(bound, start))));
    let shared: Vec<Arc<Mutex<Stats>>> = (0..workers).map(|_| Arc::default()).collect();
    let mut handles = Vec::with_capacity(workers);
    for (id, stats) in shared.iter().enumerate() {
        let conns = cfg.connections / workers + usize::from(id < cfg.connections % workers);
        let w = Worker {
            cfg: cfg.clone(),
            id: id as u64,
            stride: workers as u64,
            start,
            next: Cell::new(0),
            seq: Cell::new(0),
            rng: RefCell::new(Rng::new(worker_seed(cfg.seed, id as u64))),
            targets: RefCell::new(Targets::default()),
            stats: stats.clone(),
            checker: checker.clone(),
        };
        let handle = std::thread::Builder::new()
            .name(format!("load-worker-{id}"))
            .spawn(move || w.run(conns))
            .map_err(|e| Error::Runtime(format!("cannot start a worker thread: {e}")))?;
        handles.push(handle);
    }

    let mut watch = ProcWatch::new(&cfg.watch);
    let (measure_from, measure_to) = cfg.schedule.measured_window();
    let mut shown = 0usize;
    let mut window = 0u8; // 0 before, 1 inside, 2 after the measured window
    while handles.iter().any(|h| !h.is_finished()) {
        std::thread::sleep(Duration::from_millis(100));
        let now = Instant::now();
        let t = now.saturating_duration_since(start);
        if window == 0 && t >= measure_from {
            watch.start_window();
            window = 1;
        }
        if window == 1 && t >= measure_to {
            watch.end_window();
            window = 2;
        } else if window == 1 {
            watch.sample();
        }
        while cfg.progress != Progress::Off && (shown as u64) < t.as_secs() {
            show_second(cfg, &shared, shown);
            shown += 1;
        }
    }
    for h in handles {
        h.join()
            .map_err(|_| Error::Runtime("a worker thread panicked".into()))??;
    }
    if window < 2 {
        watch.end_window();
    }
    if cfg.progress == Progress::Terminal {
        eprintln!();
    }

    let mut stats = Stats::default();
    for s in &shared {
        stats.merge(&lock(s));
    }
    let checker = match checker {
        Some(c) => {
            sweep::sweep(cfg, &c, start, &mut stats)?;
            Some(lock(&c).summary())
        }
        None => None,
    };
    let processes = watch.figures(stats.completed);
    Ok(RunOutput {
        stats,
        checker,
        processes,
        started_at,
        elapsed: start.elapsed(),
    })
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means a worker panicked; its figures are still readable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn show_second(cfg: &RunConfig, shared: &[Arc<Mutex<Stats>>], i: usize) {
    let mut s = crate::stats::Second::default();
    for w in shared {
        if let Some(sec) = lock(w).seconds.get(i) {
            s.merge(sec);
        }
    }
    let offered = cfg.schedule.offered_between(i as f64, i as f64 + 1.0);
    let p = Percentiles::of(&s.latency);
    let errors = s.error_total();
    let kinds = Stats::errors_by_kind(&s.errors)
        .into_iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let line = format!(
        "{}{:>4}s  offered {:>7.0}/s  sent {:>7}/s  achieved {:>7}/s  p99 {:>8.2} ms  errors {}{}",
        cfg.label,
        i + 1,
        offered,
        s.sent,
        s.ok,
        p.p99,
        errors,
        if kinds.is_empty() {
            String::new()
        } else {
            format!(" ({kinds})")
        }
    );
    let mut err = std::io::stderr().lock();
    let _ = match cfg.progress {
        Progress::Terminal => write!(err, "\r\x1b[2K{line}"),
        _ => writeln!(err, "{line}"),
    };
    let _ = err.flush();
}

/// One worker thread's share of the run.
struct Worker {
    cfg: RunConfig,
    id: u64,
    stride: u64,
    start: Instant,
    /// This worker's next slot, counted in its own slots.
    next: Cell<u64>,
    /// Numbers this worker's requests (unique reviewer names).
    seq: Cell<u64>,
    rng: RefCell<Rng>,
    targets: RefCell<Targets>,
    stats: Arc<Mutex<Stats>>,
    checker: Option<Arc<Mutex<Checker>>>,
}

impl Worker {
    fn run(self, connections: usize) -> Result<(), Error> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Runtime(format!("cannot start a worker runtime: {e}")))?;
        let local = tokio::task::LocalSet::new();
        let me = Rc::new(self);
        local.block_on(&rt, async move {
            let tasks: Vec<_> = (0..connections)
                .map(|_| tokio::task::spawn_local(me.clone().connection()))
                .collect();
            for t in tasks {
                let _ = t.await;
            }
        });
        Ok(())
    }

    /// Takes the next slot: its due instant and whether it is measured.
    fn claim(&self) -> Option<(Instant, bool)> {
        let local = self.next.get();
        self.next.set(local + 1);
        let slot = self.cfg.schedule.slot(local * self.stride + self.id)?;
        Some((self.start + slot.due, slot.measured))
    }

    fn stats(&self) -> MutexGuard<'_, Stats> {
        lock(&self.stats)
    }

    /// One keep-alive connection's loop, until the schedule runs out.
    async fn connection(self: Rc<Self>) {
        let timeout = self.cfg.timeout;
        let mut conn: Option<Conn> = None;
        while let Some((due, measured)) = self.claim() {
            let now = Instant::now();
            // The tool's own lateness when this connection was idle at the due time;
            // None when every connection was busy (the server's queue, not the tool's).
            let mut lag = None;
            if due > now {
                tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await;
                lag = Some(Instant::now().saturating_duration_since(due));
            } else if now - due >= timeout {
                // It could not get a connection in time.
                let mut stats = self.stats();
                stats.queued += 1;
                stats.record(
                    now - self.start,
                    now - due,
                    Outcome::Error(ErrorKind::Timeout),
                    measured,
                );
                continue;
            }
            let planned = {
                let seq = self.seq.get();
                self.seq.set(seq + 1);
                self.cfg
                    .mix
                    .next(&mut self.rng.borrow_mut(), &self.targets.borrow(), seq)
            };
            let sent = Instant::now();
            let ticket = match (&self.checker, planned.intent.is_write()) {
                (Some(c), true) => lock(c).on_send(&planned.intent, sent),
                _ => None,
            };
            let keep_body = planned.intent.wants_body();
            let result =
                tokio::time::timeout_at(tokio::time::Instant::from_std(sent + timeout), async {
                    Conn::reuse_or_open(&mut conn, &self.cfg.target)
                        .await?
                        .send(&self.cfg.target, &planned, keep_body)
                        .await
                })
                .await
                .unwrap_or(Err(ErrorKind::Timeout));
            let end = Instant::now();
            let outcome = match &result {
                Ok(a) => status_error(a.status).map_or(Outcome::Ok, Outcome::Error),
                Err(kind) => {
                    conn = None;
                    Outcome::Error(*kind)
                }
            };
            let findings = self.learn(&planned, sent, end, result.as_ref().ok(), ticket);
            // One lock per request for all its figures.
            let mut stats = self.stats();
            stats.record_sent(sent - self.start, measured);
            match lag {
                Some(lag) => stats.record_send_lag(lag),
                None => stats.queued += 1,
            }
            stats.record(end - self.start, end - due, outcome, measured);
            if matches!(outcome, Outcome::Error(_)) && planned.intent.is_write() {
                stats.record_write_error(end - self.start);
            }
            for f in findings {
                stats.record_finding(end - self.start, f, measured);
            }
        }
    }

    /// Feeds an answer to the targets and the checker; returns the checker's findings.
    fn learn(
        &self,
        planned: &Planned,
        sent: Instant,
        end: Instant,
        answer: Option<&Answer>,
        ticket: Option<crate::checker::Ticket>,
    ) -> Vec<ErrorKind> {
        if !planned.intent.wants_body() {
            return Vec::new();
        }
        let ok = answer.filter(|a| (200..300).contains(&a.status));
        // Aim later writes and reads at what reads and writes showed.
        if let Some(a) = ok {
            let mut t = self.targets.borrow_mut();
            match &planned.intent {
                Intent::Page {
                    course_id, query, ..
                } => {
                    if let Ok(page) = serde_json::from_slice::<Page>(&a.body) {
                        for r in &page.reviews {
                            t.seen_reviews.push(r.id);
                            if let Some(rv) = &r.reviewer {
                                t.seen_reviewers.push(rv.id);
                            }
                        }
                        if let Some(c) = page.next_cursor {
                            t.cursors.push((*course_id, query.clone(), c));
                        }
                    }
                }
                Intent::ReviewPost { .. } | Intent::Helpful { .. } => {
                    if let Ok(r) = serde_json::from_slice::<ReviewBody>(&a.body) {
                        t.written_reviews.push(r.id);
                        t.seen_reviews.push(r.id);
                    }
                }
                _ => {}
            }
        }
        let Some(checker) = &self.checker else {
            return Vec::new();
        };
        let mut c = lock(checker);
        if let Some(ticket) = ticket {
            c.on_write_done(&planned.intent, ticket, ok.map(|a| (end, &a.body[..])));
            return Vec::new();
        }
        match answer {
            Some(a) => c
                .on_read(&planned.intent, sent, a.status, &a.body, false)
                .into_iter()
                .map(|f| f.0)
                .collect(),
            None => Vec::new(),
        }
    }
}
