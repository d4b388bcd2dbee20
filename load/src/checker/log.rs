//! The writes made to one key (a course's new reviews, a reviewer's renames), and
//! which of them may have committed after another: the checker's notion of order.

use std::time::Instant;

use super::PER_KEY;

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum State {
    Pending,
    Acked(Instant),
    Failed,
}

#[derive(Debug, Clone)]
pub(super) struct Rec<T> {
    pub(super) ticket: u64,
    pub(super) sent: Instant,
    pub(super) state: State,
    pub(super) what: T,
}

impl<T> Rec<T> {
    /// Whether `self` may have committed after `w` (it was not acknowledged before `w`
    /// was sent).
    pub(super) fn maybe_after(&self, w: &Self) -> bool {
        self.ticket != w.ticket && !matches!(self.state, State::Acked(a) if a < w.sent)
    }
}

/// Writes to one key (a course's new reviews, a reviewer's renames).
#[derive(Debug)]
pub(super) struct Log<T> {
    pub(super) recs: Vec<Rec<T>>,
    /// Writes sent before this instant are not checked: a dropped record may have
    /// been newer than them.
    pub(super) floor: Option<Instant>,
    pub(super) poisoned: bool,
}

impl<T> Default for Log<T> {
    fn default() -> Self {
        Self {
            recs: Vec::new(),
            floor: None,
            poisoned: false,
        }
    }
}

impl<T> Log<T> {
    pub(super) fn push(&mut self, rec: Rec<T>) {
        if self.recs.len() == PER_KEY {
            let old = self.recs.remove(0);
            match old.state {
                State::Acked(a) => self.floor = Some(self.floor.map_or(a, |f| f.max(a))),
                State::Pending | State::Failed => self.poisoned = true,
            }
        }
        self.recs.push(rec);
    }

    pub(super) fn settle(&mut self, ticket: u64, state: State) -> Option<&Rec<T>> {
        let r = self.recs.iter_mut().find(|r| r.ticket == ticket)?;
        r.state = state;
        Some(r)
    }

    pub(super) fn checkable(&self, w: &Rec<T>) -> bool {
        !self.poisoned && self.floor.is_none_or(|f| w.sent >= f)
    }
}
