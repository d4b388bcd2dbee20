//! Black-box tests of courser-load against real HTTP servers on loopback.

mod capacity;
mod checker;
mod helpers;
mod omission;
mod reports;
mod scheduler;
