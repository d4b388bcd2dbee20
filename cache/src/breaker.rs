//! A circuit breaker for Redis: after a few consecutive failures it opens, and calls are
//! skipped at no cost until a cool-down has passed and one probe call succeeds.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One probe is in flight; others keep skipping Redis until it answers.
    HalfOpen,
}

#[derive(Debug)]
pub struct Breaker {
    state: Mutex<State>,
    threshold: u32,
    cooldown: Duration,
}

impl Breaker {
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            state: Mutex::new(State::Closed { failures: 0 }),
            threshold: threshold.max(1),
            cooldown,
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut state)
    }

    /// Whether a call may go to Redis now.
    pub fn allows(&self) -> bool {
        self.with(|state| match *state {
            State::Closed { .. } => true,
            State::Open { until } if Instant::now() >= until => {
                *state = State::HalfOpen;
                true
            }
            State::Open { .. } | State::HalfOpen => false,
        })
    }

    pub fn succeeded(&self) {
        self.with(|state| *state = State::Closed { failures: 0 });
    }

    pub fn failed(&self) {
        let (threshold, cooldown) = (self.threshold, self.cooldown);
        self.with(|state| {
            *state = match *state {
                State::Closed { failures } if failures + 1 < threshold => State::Closed {
                    failures: failures + 1,
                },
                _ => State::Open {
                    until: Instant::now() + cooldown,
                },
            }
        });
    }

    /// 0 closed, 1 half-open, 2 open: the gauge's values.
    pub fn gauge_value(&self) -> i64 {
        self.with(|state| match state {
            State::Closed { .. } => 0,
            State::HalfOpen => 1,
            State::Open { .. } => 2,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_after_the_threshold_and_probes_once_after_the_cooldown() {
        let breaker = Breaker::new(3, Duration::from_millis(500));
        for _ in 0..2 {
            breaker.failed();
            assert!(breaker.allows());
        }
        breaker.failed();
        assert!(!breaker.allows(), "open after three failures");
        tokio::time::advance(Duration::from_millis(499)).await;
        assert!(!breaker.allows());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(breaker.allows(), "one probe after the cool-down");
        assert!(!breaker.allows(), "only one");
        breaker.failed();
        assert!(!breaker.allows(), "a failed probe opens it again");
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(breaker.allows());
        breaker.succeeded();
        assert!(breaker.allows());
        assert_eq!(breaker.gauge_value(), 0);
    }
}
