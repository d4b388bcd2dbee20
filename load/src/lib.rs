//! courser-load: an open-model HTTP load generator for Courser.
//!
//! Requests arrive at a constant rate per stage (k6's ramping-arrival-rate), each with
//! a due time; latency is counted from that due time, so a slow server's queue shows
//! in the percentiles (no coordinated omission). It runs the workloads of
//! BENCHMARKS.md (W1 warm reads, W2 cold reads, W3 mixed with a write checker) or a
//! scenario file, finds the capacity at an SLA, accounts the CPU and memory of the
//! processes under test, and writes a JSON result and a self-contained HTML report.
//!
//! It is black-box: it knows Courser only through its HTTP API.

pub mod capacity;
pub mod checker;
pub mod cli;
pub mod client;
pub mod prefill;
pub mod procwatch;
pub mod report;
pub mod result;
pub mod rng;
pub mod runner;
pub mod schedule;
pub mod stats;
pub mod workload;

/// What can go wrong before or around a run (not the requests: those are counted).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting or scenario is wrong; the message names it.
    #[error("{0}")]
    Config(String),
    /// The tool could not run (threads, runtimes).
    #[error("{0}")]
    Runtime(String),
    /// A result or report file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}
