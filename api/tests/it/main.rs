//! Black-box tests of the api: the real application over real HTTP against a real
//! Postgres, one fresh database per test.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a failed unwrap is a failed test"
)]

mod helpers;

mod auth;
mod cache;
mod cache_partition;
mod cancellation;
mod concurrency;
mod course_page;
mod e2e;
mod errors;
mod explain;
mod hostile_input;
mod ops;
mod properties;
mod ratings;
mod reviewers;
mod reviews;
