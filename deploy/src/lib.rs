//! The `courser` command: runs the Courser stack on one machine from binaries already
//! built (a private Postgres and Redis, four `courser-api` instances behind
//! `courser-proxy`, Prometheus scraping them) and generates demo data.
//!
//! Each service the stack runs has its own module (`postgres`, `api`) with the same
//! shape: start it if needed, stop it, report its status. `stack` puts them in order, so
//! adding a service is one module and a line per command.

pub mod api;
pub mod apikey;
pub mod binaries;
pub mod chaos;
pub mod layout;
pub mod postgres;
pub mod process;
pub mod prometheus;
pub mod proxy;
pub mod redis;
pub mod seed;
pub mod stack;
pub mod sysuser;
