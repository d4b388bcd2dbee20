//! The lease under which the in-process tier serves: it holds while one of the two
//! invalidation buses has proved, less than `deadline` ago, that every invalidation sent
//! before then has been applied here.
//!
//! - The Redis bus proves it with a PING on its subscribed connection (see `bus`).
//! - The Postgres bus proves it with a `NOTIFY` this instance sends itself: Postgres
//!   delivers notifications in commit order, so once it is back, every invalidation
//!   committed before it has been applied (see `postgres_bus`). Every write's invalidation goes
//!   over Postgres too, so a tier vouched for by Postgres alone misses nothing, and a
//!   Redis that is paused or gone does not take the in-process tier down with it.
//!
//! A bus whose connection drops may have missed invalidations meanwhile; when it is back,
//! the tier is condemned unless the other bus was connected for the whole outage (and so
//! brought them).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    Redis = 0,
    Postgres = 1,
}

impl Via {
    fn other(self) -> Self {
        match self {
            Self::Redis => Self::Postgres,
            Self::Postgres => Self::Redis,
        }
    }
}

/// One bus's state, in microseconds since the lease's epoch plus one (0: never or none).
#[derive(Debug, Default)]
struct Bus {
    /// When the last proof that was sent (not answered) went out.
    confirmed: AtomicU64,
    /// Since when the bus has been connected; 0 while it is not.
    up_since: AtomicU64,
    /// When it was last lost.
    down_at: AtomicU64,
}

#[derive(Debug)]
pub(crate) struct Lease {
    epoch: Instant,
    deadline: Duration,
    buses: [Bus; 2],
}

impl Lease {
    pub fn new(deadline: Duration) -> Self {
        Self {
            epoch: Instant::now(),
            deadline,
            buses: Default::default(),
        }
    }

    /// The lease's clock: what proofs carry as their send time.
    pub fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX) + 1
    }

    fn bus(&self, via: Via) -> &Bus {
        &self.buses[via as usize]
    }

    /// Every invalidation sent over `via` before `sent` (a time of [`now`](Self::now))
    /// has been applied.
    pub fn confirm(&self, via: Via, sent: u64) {
        self.bus(via).confirmed.fetch_max(sent, Ordering::SeqCst);
    }

    /// How long ago the last proof over `via` was sent.
    pub fn age(&self, via: Via) -> Duration {
        match self.bus(via).confirmed.load(Ordering::SeqCst) {
            0 => Duration::MAX,
            confirmed => Duration::from_micros(self.now().saturating_sub(confirmed)),
        }
    }

    /// Whether `via` proved less than `deadline` ago that everything sent over it before
    /// then has been applied.
    pub fn vouches(&self, via: Via) -> bool {
        self.age(via) < self.deadline
    }

    /// Whether every invalidation sent more than `deadline` ago has been applied.
    pub fn holds(&self) -> bool {
        self.vouches(Via::Redis) || self.vouches(Via::Postgres)
    }

    /// `via` is connected; returns whether the tier must be condemned, because the other
    /// bus was not connected for the whole time `via` was not.
    #[must_use]
    pub fn connected(&self, via: Via) -> bool {
        let bus = self.bus(via);
        let down_at = bus.down_at.load(Ordering::SeqCst);
        bus.up_since.store(self.now(), Ordering::SeqCst);
        let other = self.bus(via.other()).up_since.load(Ordering::SeqCst);
        other == 0 || other > down_at
    }

    /// `via` lost its connection: its proofs no longer count.
    pub fn disconnected(&self, via: Via) {
        let bus = self.bus(via);
        bus.confirmed.store(0, Ordering::SeqCst);
        // Only the first loss counts: what the other bus must have covered starts there.
        if bus.up_since.swap(0, Ordering::SeqCst) != 0 {
            bus.down_at.store(self.now(), Ordering::SeqCst);
        }
    }

    /// Whether `via` is connected now.
    pub fn is_up(&self, via: Via) -> bool {
        self.bus(via).up_since.load(Ordering::SeqCst) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sleep() {
        std::thread::sleep(Duration::from_millis(2));
    }

    #[test]
    fn the_lease_holds_only_within_the_deadline_of_the_last_proof_of_either_bus() {
        let lease = Lease::new(Duration::from_millis(30));
        assert!(!lease.holds(), "not before the first proof");
        lease.confirm(Via::Redis, lease.now());
        assert!(lease.holds());
        let sent = lease.now();
        std::thread::sleep(Duration::from_millis(40));
        assert!(
            !lease.holds(),
            "lapsed: no answer for longer than the deadline"
        );
        lease.confirm(Via::Redis, sent);
        assert!(
            !lease.holds(),
            "a proof counts from when it was sent, not when it came back"
        );
        lease.confirm(Via::Postgres, lease.now());
        assert!(lease.holds(), "Postgres vouches while Redis does not");
        lease.disconnected(Via::Postgres);
        assert!(!lease.holds());
    }

    #[test]
    fn a_bus_back_from_an_outage_condemns_the_tier_unless_the_other_covered_all_of_it() {
        let lease = Lease::new(Duration::from_millis(30));
        assert!(lease.connected(Via::Redis), "nothing covered before");
        sleep();
        assert!(lease.connected(Via::Postgres), "Redis came up after start");
        sleep();
        lease.disconnected(Via::Redis);
        sleep();
        assert!(
            !lease.connected(Via::Redis),
            "Postgres was up for the whole Redis outage"
        );

        sleep();
        lease.disconnected(Via::Postgres);
        sleep();
        lease.disconnected(Via::Redis);
        sleep();
        lease.disconnected(Via::Redis); // again: the outage began at the first
        assert!(lease.connected(Via::Postgres), "Redis was down too");
        sleep();
        assert!(
            lease.connected(Via::Redis),
            "Postgres came up in the middle of the Redis outage"
        );
        assert!(lease.is_up(Via::Redis) && lease.is_up(Via::Postgres));
    }
}
