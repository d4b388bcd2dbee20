//! The Courser reviews API: the HTTP contract of `shared/API.md` on Postgres.
//!
//! `startup::Application` builds the service from a `config::Config` and a listener;
//! `routes` holds the HTTP surface, `db` the queries, `domain` the validated input types.

pub mod auth;
pub mod config;
pub mod db;
pub mod domain;
pub mod drain;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod openapi;
pub mod pages;
pub mod routes;
pub mod startup;
pub mod state;

pub use config::Config;
pub use startup::{Application, MIGRATOR};
