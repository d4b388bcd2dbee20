//! Integration tests of `courser` against a real Postgres: the stack's cluster, whose
//! maintenance database `COURSER_TEST_DATABASE_URL` names (`eval "$(courser env)"`,
//! after `courser up --only-services`; `scripts/test` does both).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a failed unwrap is a failed test"
)]

mod chaos;
mod cli;
mod helpers;
mod seed;
