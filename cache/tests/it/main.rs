//! The cache against a real Redis, with a source whose loads a test can count, hold and
//! change, so that races can be forced in the order under test.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a failed unwrap is a failed test"
)]

mod faults;
mod helpers;
mod tiers;
