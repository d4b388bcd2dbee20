//! A circuit breaker for Redis: after a few consecutive failures it opens, and calls are
//! skipped at no cost until a cool-down has passed and one probe call succeeds. The
//! invalidation bus can also hold it open: when its connection drops, Redis is gone, and
//! requests need not each find that out.

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
    /// One probe is in flight; others keep skipping Redis until it answers, or until
    /// `until` if it never does (its request was dropped mid-call).
    HalfOpen {
        until: Instant,
    },
    /// The bus lost Redis: skip it until the bus has subscribed again.
    Held,
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
        let cooldown = self.cooldown;
        self.with(|state| match *state {
            State::Closed { .. } => true,
            State::Open { until } | State::HalfOpen { until } if Instant::now() >= until => {
                *state = State::HalfOpen {
                    until: Instant::now() + cooldown,
                };
                true
            }
            State::Open { .. } | State::HalfOpen { .. } | State::Held => false,
        })
    }

    /// Whether a call now would be skipped, without claiming the probe as
    /// [`allows`](Self::allows) does.
    pub fn skips(&self) -> bool {
        self.with(|state| match *state {
            State::Closed { .. } => false,
            State::Open { until } | State::HalfOpen { until } => Instant::now() < until,
            State::Held => true,
        })
    }

    /// A call answered; while held, only the bus's [`release`](Self::release) closes it.
    pub fn succeeded(&self) {
        self.with(|state| {
            if *state != State::Held {
                *state = State::Closed { failures: 0 };
            }
        });
    }

    pub fn failed(&self) {
        let (threshold, cooldown) = (self.threshold, self.cooldown);
        self.with(|state| {
            *state = match *state {
                State::Held => State::Held,
                State::Closed { failures } if failures + 1 < threshold => State::Closed {
                    failures: failures + 1,
                },
                _ => State::Open {
                    until: Instant::now() + cooldown,
                },
            }
        });
    }

    /// Opens until [`release`](Self::release): no probes meanwhile.
    pub fn hold_open(&self) {
        self.with(|state| *state = State::Held);
    }

    /// Ends a hold; a breaker opened by failed calls stays as it is.
    pub fn release(&self) {
        self.with(|state| {
            if *state == State::Held {
                *state = State::Closed { failures: 0 };
            }
        });
    }

    /// 0 closed, 1 half-open, 2 open: the gauge's values.
    pub fn gauge_value(&self) -> i64 {
        self.with(|state| match state {
            State::Closed { .. } => 0,
            State::HalfOpen { .. } => 1,
            State::Open { .. } | State::Held => 2,
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
        assert!(breaker.skips());
        tokio::time::advance(Duration::from_millis(499)).await;
        assert!(!breaker.allows());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(!breaker.skips(), "the next call would probe");
        assert!(breaker.allows(), "one probe after the cool-down");
        assert!(breaker.skips(), "while the probe is out");
        assert!(!breaker.allows(), "only one");
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(
            breaker.allows(),
            "another probe once the first has been out a cool-down (dropped mid-call)"
        );
        breaker.failed();
        assert!(!breaker.allows(), "a failed probe opens it again");
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(breaker.allows());
        breaker.succeeded();
        assert!(breaker.allows());
        assert_eq!(breaker.gauge_value(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_held_breaker_skips_every_call_until_released() {
        let breaker = Breaker::new(3, Duration::from_millis(500));
        breaker.hold_open();
        assert!(!breaker.allows());
        assert_eq!(breaker.gauge_value(), 2);
        breaker.succeeded();
        breaker.failed();
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(
            !breaker.allows(),
            "calls in flight and the cool-down do not end the hold"
        );
        breaker.release();
        assert!(breaker.allows());
        assert_eq!(breaker.gauge_value(), 0);

        for _ in 0..3 {
            breaker.failed();
        }
        breaker.release();
        assert!(
            !breaker.allows(),
            "opened by failures, not held: stays open"
        );
    }
}
