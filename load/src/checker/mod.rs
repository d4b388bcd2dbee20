//! W3's checker: every acknowledged write is remembered, and later reads that must show
//! it are checked; a read sent more than the freshness bound after the write's
//! acknowledgement that does not show it is a stale read, and a write that the final
//! sweep cannot see is a lost write.
//!
//! Only what a read is bound to show is checked, so a correct server never produces a
//! finding, whatever the timing:
//! - a created review: `GET /review/{id}` answers it (same course and rating), and it is
//!   on its course's newest-first first page unless enough other writes of this run to
//!   that course might be newer (any not acknowledged before it was sent);
//! - a helpful vote answered with count h: every later view of that review shows ≥ h;
//! - a reviewer rename: every later view of that reviewer shows the acknowledged name,
//!   or the name of a rename that may have committed after it.
//!
//! It assumes this run is the only writer to the data it touches.

use std::collections::HashMap;
use std::time::{Duration, Instant};

mod bodies;
mod log;

use serde::Serialize;

pub use bodies::{Page, PageReview, ReviewBody, ReviewerBody};
use log::{Log, Rec, State};

use crate::stats::ErrorKind;
use crate::workload::Intent;

/// How many findings of each kind are kept with their details (all are counted).
const KEEP: u64 = 500;
/// Writes remembered per course or reviewer; older ones are dropped conservatively.
const PER_KEY: usize = 64;

/// One finding, with the ids to look at.
#[derive(Debug, Clone, Serialize)]
pub struct Violation {
    pub kind: ErrorKind,
    pub what: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub review_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub course_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reviewer_id: Option<u64>,
    pub expected: String,
    pub got: String,
    /// When the write was acknowledged, ms since the run's start.
    pub write_acked_ms: f64,
    /// When the read was sent, ms since the run's start.
    pub read_sent_ms: f64,
    /// How long after the acknowledgement the read was sent.
    pub lag_ms: f64,
}

/// The checker's figures for the summary.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckerSummary {
    pub freshness_bound_ms: f64,
    pub writes_acked: u64,
    pub writes_failed: u64,
    pub reads_checked: u64,
    pub stale_reads: u64,
    pub lost_writes: u64,
    /// Sweep reads that failed (connection, timeout, 5xx): those writes are unverified.
    pub unverified: u64,
    pub swept: u64,
    pub violations: Vec<Violation>,
}

#[derive(Debug, Clone)]
struct Created {
    course_id: u64,
    rating: f64,
    acked: Instant,
}

/// What a write needs to be settled when its answer comes.
#[derive(Debug, Clone, Copy)]
pub enum Ticket {
    Post { course_id: u64, ticket: u64 },
    Helpful,
    Put { reviewer_id: u64, ticket: u64 },
}

/// A finding to count in the run's statistics.
#[derive(Debug, Clone, Copy)]
pub struct Finding(pub ErrorKind);

#[derive(Debug)]
pub struct Checker {
    bound: Duration,
    start: Instant,
    next_ticket: u64,
    created: HashMap<u64, Created>,
    posts: HashMap<u64, Log<Option<u64>>>,
    helpful: HashMap<u64, Vec<(u64, Instant)>>,
    renames: HashMap<u64, Log<String>>,
    summary: CheckerSummary,
}

/// What one read showed of one review or reviewer.
struct Seen<'a> {
    sent: Instant,
    kind: ErrorKind,
    findings: &'a mut Vec<Finding>,
}

impl Checker {
    #[must_use]
    pub fn new(bound: Duration, start: Instant) -> Self {
        Self {
            bound,
            start,
            next_ticket: 0,
            created: HashMap::new(),
            posts: HashMap::new(),
            helpful: HashMap::new(),
            renames: HashMap::new(),
            summary: CheckerSummary {
                freshness_bound_ms: bound.as_secs_f64() * 1000.0,
                ..CheckerSummary::default()
            },
        }
    }

    /// A write is about to be sent.
    pub fn on_send(&mut self, intent: &Intent, sent: Instant) -> Option<Ticket> {
        self.next_ticket += 1;
        let ticket = self.next_ticket;
        match intent {
            Intent::ReviewPost { course_id, .. } => {
                self.posts.entry(*course_id).or_default().push(Rec {
                    ticket,
                    sent,
                    state: State::Pending,
                    what: None,
                });
                Some(Ticket::Post {
                    course_id: *course_id,
                    ticket,
                })
            }
            Intent::Helpful { .. } => Some(Ticket::Helpful),
            Intent::ReviewerPut { reviewer_id, name } => {
                self.renames.entry(*reviewer_id).or_default().push(Rec {
                    ticket,
                    sent,
                    state: State::Pending,
                    what: name.clone(),
                });
                Some(Ticket::Put {
                    reviewer_id: *reviewer_id,
                    ticket,
                })
            }
            _ => None,
        }
    }

    /// A write's answer: `acked` with its body when it was 2xx, None when it failed
    /// (which may still have committed, so it stays a candidate for "newer").
    /// Returns the id of a created review.
    pub fn on_write_done(
        &mut self,
        intent: &Intent,
        ticket: Ticket,
        acked: Option<(Instant, &[u8])>,
    ) -> Option<u64> {
        let Some((at, body)) = acked else {
            self.summary.writes_failed += 1;
            match ticket {
                Ticket::Post { course_id, ticket } => {
                    if let Some(log) = self.posts.get_mut(&course_id) {
                        log.settle(ticket, State::Failed);
                    }
                }
                Ticket::Put {
                    reviewer_id,
                    ticket,
                } => {
                    if let Some(log) = self.renames.get_mut(&reviewer_id) {
                        log.settle(ticket, State::Failed);
                    }
                }
                Ticket::Helpful => {}
            }
            return None;
        };
        self.summary.writes_acked += 1;
        match (ticket, intent) {
            (Ticket::Post { course_id, ticket }, Intent::ReviewPost { rating, .. }) => {
                let review = serde_json::from_slice::<ReviewBody>(body).ok();
                let log = self.posts.entry(course_id).or_default();
                let Some(review) = review else {
                    // Acknowledged but unreadable: it may be newer than anything.
                    log.settle(ticket, State::Failed);
                    return None;
                };
                if let Some(r) = log.recs.iter_mut().find(|r| r.ticket == ticket) {
                    r.state = State::Acked(at);
                    r.what = Some(review.id);
                }
                self.created.insert(
                    review.id,
                    Created {
                        course_id,
                        rating: *rating,
                        acked: at,
                    },
                );
                Some(review.id)
            }
            (Ticket::Helpful, Intent::Helpful { review_id }) => {
                if let Ok(review) = serde_json::from_slice::<ReviewBody>(body) {
                    let votes = self.helpful.entry(*review_id).or_default();
                    // Keep only entries that no other entry dominates (higher count,
                    // acknowledged no later).
                    votes.retain(|&(h, a)| !(review.helpful >= h && at <= a));
                    if !votes.iter().any(|&(h, a)| h >= review.helpful && a <= at) {
                        votes.push((review.helpful, at));
                    }
                    if votes.len() > 16 {
                        votes.remove(0);
                    }
                }
                None
            }
            (
                Ticket::Put {
                    reviewer_id,
                    ticket,
                },
                _,
            ) => {
                if let Some(log) = self.renames.get_mut(&reviewer_id) {
                    log.settle(ticket, State::Acked(at));
                }
                None
            }
            _ => None,
        }
    }

    /// A read's answer. `sent` is when the read was sent; `sweep` marks the final
    /// verification, whose findings are lost writes.
    pub fn on_read(
        &mut self,
        intent: &Intent,
        sent: Instant,
        status: u16,
        body: &[u8],
        sweep: bool,
    ) -> Vec<Finding> {
        let mut findings = Vec::new();
        let mut seen = Seen {
            sent,
            kind: if sweep {
                ErrorKind::LostWrite
            } else {
                ErrorKind::StaleRead
            },
            findings: &mut findings,
        };
        match intent {
            Intent::Page {
                course_id,
                first_recent,
                limit,
                ..
            } if status == 200 => {
                let Ok(page) = serde_json::from_slice::<Page>(body) else {
                    return findings;
                };
                self.summary.reads_checked += 1;
                for r in &page.reviews {
                    self.check_helpful(r.id, r.helpful, &mut seen);
                    if let Some(rv) = &r.reviewer {
                        self.check_name(rv.id, &rv.name, &mut seen);
                    }
                }
                if *first_recent {
                    self.check_first_page(*course_id, *limit, &page, &mut seen);
                }
            }
            Intent::ReviewRead { review_id } if status == 200 || status == 404 => {
                self.summary.reads_checked += 1;
                let review = (status == 200)
                    .then(|| serde_json::from_slice::<ReviewBody>(body).ok())
                    .flatten();
                self.check_review(*review_id, status, review.as_ref(), &mut seen);
                // A review that was voted on and now answers 404 shows no votes at all.
                let helpful = review.as_ref().map_or(0, |r| r.helpful);
                self.check_helpful(*review_id, helpful, &mut seen);
            }
            Intent::ReviewerRead { reviewer_id } if status == 200 => {
                if let Ok(rv) = serde_json::from_slice::<ReviewerBody>(body) {
                    self.summary.reads_checked += 1;
                    self.check_name(*reviewer_id, &rv.name, &mut seen);
                }
            }
            _ => {}
        }
        findings
    }

    fn ms(&self, t: Instant) -> f64 {
        t.saturating_duration_since(self.start).as_secs_f64() * 1000.0
    }

    fn fresh_after(&self, acked: Instant, sent: Instant) -> bool {
        sent >= acked + self.bound
    }

    fn report(
        &mut self,
        seen: &mut Seen<'_>,
        what: String,
        ids: (Option<u64>, Option<u64>, Option<u64>),
        expected: String,
        got: String,
        acked: Instant,
    ) {
        let count = match seen.kind {
            ErrorKind::LostWrite => &mut self.summary.lost_writes,
            _ => &mut self.summary.stale_reads,
        };
        *count += 1;
        seen.findings.push(Finding(seen.kind));
        if *count <= KEEP {
            let v = Violation {
                kind: seen.kind,
                what,
                review_id: ids.0,
                course_id: ids.1,
                reviewer_id: ids.2,
                expected,
                got,
                write_acked_ms: self.ms(acked),
                read_sent_ms: self.ms(seen.sent),
                lag_ms: seen.sent.saturating_duration_since(acked).as_secs_f64() * 1000.0,
            };
            self.summary.violations.push(v);
        }
    }

    fn check_review(
        &mut self,
        id: u64,
        status: u16,
        review: Option<&ReviewBody>,
        seen: &mut Seen<'_>,
    ) {
        let Some(c) = self.created.get(&id).cloned() else {
            return;
        };
        if !self.fresh_after(c.acked, seen.sent) {
            return;
        }
        let got = match review {
            Some(r) if r.course_id == c.course_id && (r.rating - c.rating).abs() < 1e-9 => {
                return;
            }
            Some(r) => format!("course {} rating {}", r.course_id, r.rating),
            None => format!("status {status}"),
        };
        self.report(
            seen,
            format!("created review {id} not returned by GET /review/{id}"),
            (Some(id), Some(c.course_id), None),
            format!("course {} rating {}", c.course_id, c.rating),
            got,
            c.acked,
        );
    }

    fn check_helpful(&mut self, id: u64, shown: u64, seen: &mut Seen<'_>) {
        let Some(votes) = self.helpful.get(&id) else {
            return;
        };
        let due = votes
            .iter()
            .filter(|&&(_, a)| self.fresh_after(a, seen.sent))
            .max_by_key(|&&(h, _)| h)
            .copied();
        if let Some((h, acked)) = due
            && shown < h
        {
            self.report(
                seen,
                format!("review {id} shows fewer helpful votes than acknowledged"),
                (Some(id), None, None),
                format!("helpful ≥ {h}"),
                format!("helpful {shown}"),
                acked,
            );
        }
    }

    fn check_name(&mut self, id: u64, shown: &str, seen: &mut Seen<'_>) {
        let Some(log) = self.renames.get(&id) else {
            return;
        };
        let latest = log
            .recs
            .iter()
            .filter(|r| matches!(r.state, State::Acked(a) if self.fresh_after(a, seen.sent)))
            .max_by_key(|r| match r.state {
                State::Acked(a) => Some(a),
                _ => None,
            });
        let Some(w) = latest else {
            return;
        };
        if !log.checkable(w) {
            return;
        }
        let allowed = |name: &str| {
            w.what == name || log.recs.iter().any(|p| p.maybe_after(w) && p.what == name)
        };
        if allowed(shown) {
            return;
        }
        let (expected, acked) = (
            w.what.clone(),
            match w.state {
                State::Acked(a) => a,
                _ => seen.sent,
            },
        );
        self.report(
            seen,
            format!("reviewer {id} shows a name older than an acknowledged rename"),
            (None, None, Some(id)),
            expected,
            shown.to_string(),
            acked,
        );
    }

    fn check_first_page(&mut self, course_id: u64, limit: usize, page: &Page, seen: &mut Seen<'_>) {
        let Some(log) = self.posts.get(&course_id) else {
            return;
        };
        let mut missing = Vec::new();
        for w in &log.recs {
            let (State::Acked(acked), Some(id)) = (w.state, w.what) else {
                continue;
            };
            if !self.fresh_after(acked, seen.sent) || !log.checkable(w) {
                continue;
            }
            let newer = log.recs.iter().filter(|p| p.maybe_after(w)).count();
            if newer < limit && !page.reviews.iter().any(|r| r.id == id) {
                missing.push((id, acked, newer));
            }
        }
        for (id, acked, newer) in missing {
            let got: Vec<String> = page.reviews.iter().map(|r| r.id.to_string()).collect();
            self.report(
                seen,
                format!(
                    "created review {id} missing from course {course_id}'s newest-first first page"
                ),
                (Some(id), Some(course_id), None),
                format!("review {id} among the {limit} newest (at most {newer} of this run's reviews could be newer)"),
                format!("ids [{}]", got.join(", ")),
                acked,
            );
        }
    }

    /// The reads of the final sweep: every review this run created or voted on, and
    /// every reviewer it renamed.
    #[must_use]
    pub fn sweep_targets(&self) -> Vec<Intent> {
        let mut reviews: Vec<u64> = self
            .created
            .keys()
            .chain(self.helpful.keys())
            .copied()
            .collect();
        reviews.sort_unstable();
        reviews.dedup();
        let mut reviewers: Vec<u64> = self.renames.keys().copied().collect();
        reviewers.sort_unstable();
        reviews
            .into_iter()
            .map(|review_id| Intent::ReviewRead { review_id })
            .chain(
                reviewers
                    .into_iter()
                    .map(|reviewer_id| Intent::ReviewerRead { reviewer_id }),
            )
            .collect()
    }

    pub fn note_swept(&mut self, verified: bool) {
        self.summary.swept += 1;
        if !verified {
            self.summary.unverified += 1;
        }
    }

    #[must_use]
    pub fn summary(&self) -> CheckerSummary {
        self.summary.clone()
    }
}
