//! Queries, one module per table, each function taking any `PgExecutor` so handlers can
//! run them on the pool or inside a transaction. Writes that touch several tables lock
//! rows in one order everywhere — the course's rating row, then reviews, then reviewers
//! (by id) — so concurrent writes queue up instead of deadlocking.

pub mod ratings;
pub mod reviewers;
pub mod reviews;
