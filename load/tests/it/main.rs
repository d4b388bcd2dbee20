//! Black-box tests of courser-load against real HTTP servers on loopback.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a failed unwrap is a failed test"
)]

mod capacity;
mod checker;
mod helpers;
mod omission;
mod prefill;
mod reports;
mod scheduler;
