//! Backend selection: Pingora's Ketama consistent hashing on the course id, so each
//! course sticks to the instance whose in-process cache holds it (and when a backend
//! leaves only its share of courses moves), and round robin or least connections for
//! everything else.
//!
//! One [`BackendSelection`] serves both so that one `LoadBalancer` (one health-check
//! loop, one backend list) does all the choosing: a non-empty key means "hash this
//! course id", an empty key means "spread".

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use pingora::lb::Backend;
use pingora::lb::selection::consistent::{KetamaHashing, OwnedNodeIterator};
use pingora::lb::selection::weighted::WeightedIterator;
use pingora::lb::selection::{BackendIter, BackendSelection, RoundRobin, algorithms};

use crate::backends::{BackendState, Registry};
use crate::config::Spread;

/// What [`CourserSelection`] is built with.
#[derive(Debug, Clone)]
pub struct SelectionConfig {
    /// How keyless requests are spread.
    pub spread: Spread,
    /// Where least connections reads the in-flight counts.
    pub registry: Arc<Registry>,
}

/// Ketama for course keys, round robin or least connections for the rest.
pub struct CourserSelection {
    ketama: Arc<KetamaHashing>,
    round_robin: Arc<RoundRobin>,
    /// Backends with their live state, for least connections; empty under round robin.
    least: Vec<(Backend, Arc<BackendState>)>,
    /// Rotates the starting point of the least-connections scan so ties spread.
    cursor: AtomicUsize,
}

impl std::fmt::Debug for CourserSelection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CourserSelection")
            .field("least_connections", &!self.least.is_empty())
            .finish_non_exhaustive()
    }
}

impl BackendSelection for CourserSelection {
    type Iter = CourserIter;
    type Config = SelectionConfig;

    fn build_with_config(backends: &BTreeSet<Backend>, config: &SelectionConfig) -> Self {
        let least = match config.spread {
            Spread::RoundRobin => Vec::new(),
            Spread::LeastConnections => backends
                .iter()
                .filter_map(|b| Some((b.clone(), config.registry.get(&b.addr)?)))
                .collect(),
        };
        Self {
            least,
            ..Self::build(backends)
        }
    }

    fn build(backends: &BTreeSet<Backend>) -> Self {
        Self {
            ketama: Arc::new(KetamaHashing::build(backends)),
            round_robin: Arc::new(RoundRobin::build(backends)),
            least: Vec::new(),
            cursor: AtomicUsize::new(0),
        }
    }

    fn iter(self: &Arc<Self>, key: &[u8]) -> CourserIter {
        if !key.is_empty() {
            return CourserIter::Ketama(self.ketama.iter(key));
        }
        if self.least.is_empty() {
            return CourserIter::RoundRobin(self.round_robin.iter(key));
        }
        CourserIter::Least(LeastIter {
            first: self.least_loaded(),
            step: 0,
            selection: self.clone(),
        })
    }
}

impl CourserSelection {
    /// Index of the backend with the fewest requests in flight per unit of weight.
    fn least_loaded(&self) -> usize {
        let n = self.least.len();
        let start = self.cursor.fetch_add(1, Relaxed) % n;
        let mut best = start;
        let (mut best_load, mut best_weight) = load(&self.least[start]);
        for i in 1..n {
            let idx = (start + i) % n;
            let (l, w) = load(&self.least[idx]);
            // l / w < best_load / best_weight, without division
            if l * best_weight < best_load * w {
                best = idx;
                best_load = l;
                best_weight = w;
            }
        }
        best
    }
}

fn load((backend, state): &(Backend, Arc<BackendState>)) -> (usize, usize) {
    (state.in_flight(), backend.weight.max(1))
}

/// The candidates for one request, best first.
pub enum CourserIter {
    /// Along the Ketama ring from the course's point.
    Ketama(OwnedNodeIterator),
    /// Weighted round robin.
    RoundRobin(WeightedIterator<algorithms::RoundRobin>),
    /// Least loaded first, then the others in ring order.
    Least(LeastIter),
}

impl std::fmt::Debug for CourserIter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CourserIter::Ketama(_) => "CourserIter::Ketama",
            CourserIter::RoundRobin(_) => "CourserIter::RoundRobin",
            CourserIter::Least(_) => "CourserIter::Least",
        })
    }
}

impl BackendIter for CourserIter {
    fn next(&mut self) -> Option<&Backend> {
        match self {
            CourserIter::Ketama(it) => it.next(),
            CourserIter::RoundRobin(it) => it.next(),
            CourserIter::Least(it) => it.next(),
        }
    }
}

/// Least-connections candidates.
#[derive(Debug)]
pub struct LeastIter {
    selection: Arc<CourserSelection>,
    first: usize,
    step: usize,
}

impl BackendIter for LeastIter {
    fn next(&mut self) -> Option<&Backend> {
        let n = self.selection.least.len();
        if self.step >= n {
            return None;
        }
        let idx = (self.first + self.step) % n;
        self.step += 1;
        self.selection.least.get(idx).map(|(b, _)| b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ports: &[u16]) -> BTreeSet<Backend> {
        ports
            .iter()
            .map(|p| Backend::new(&format!("127.0.0.1:{p}")).unwrap())
            .collect()
    }

    fn first(sel: &Arc<CourserSelection>, key: &[u8]) -> Backend {
        sel.iter(key).next().unwrap().clone()
    }

    #[test]
    fn removing_a_backend_moves_only_its_own_courses() {
        let before = Arc::new(CourserSelection::build(&set(&[1, 2, 3, 4])));
        let after = Arc::new(CourserSelection::build(&set(&[1, 2, 4])));
        let removed = Backend::new("127.0.0.1:3").unwrap();
        let mut moved = 0;
        for id in 0..2000 {
            let key = id.to_string();
            let (b, a) = (
                first(&before, key.as_bytes()),
                first(&after, key.as_bytes()),
            );
            if b != a {
                assert_eq!(b, removed, "course {id} moved off a backend that stayed");
                moved += 1;
            }
        }
        assert!(moved > 200 && moved < 800, "moved {moved}");
    }

    #[test]
    fn an_empty_key_round_robins() {
        let sel = Arc::new(CourserSelection::build(&set(&[1, 2])));
        let a = first(&sel, b"");
        let b = first(&sel, b"");
        assert_ne!(a, b);
    }
}
