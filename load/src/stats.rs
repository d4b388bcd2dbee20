//! What a run measured: latency histograms (HdrHistogram, from each request's due
//! time), counts and errors by kind, per second of the run and in total over the
//! measured stages.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Why a request did not succeed, or what the checker found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The TCP connection (or the HTTP handshake) could not be made.
    Connect,
    /// No answer within the timeout of being sent, or no connection free within the
    /// timeout of the request's due time.
    Timeout,
    /// 4xx answers.
    Status4xx,
    /// 5xx answers.
    Status5xx,
    /// The connection broke mid-request or the answer was not HTTP.
    Io,
    /// A read, past the freshness bound after a write was acknowledged, did not show it.
    StaleRead,
    /// An acknowledged write not seen by the final verification sweep.
    LostWrite,
}

impl ErrorKind {
    pub const ALL: [Self; 7] = [
        Self::Connect,
        Self::Timeout,
        Self::Status4xx,
        Self::Status5xx,
        Self::Io,
        Self::StaleRead,
        Self::LostWrite,
    ];

    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Timeout => "timeout",
            Self::Status4xx => "status_4xx",
            Self::Status5xx => "status_5xx",
            Self::Io => "io",
            Self::StaleRead => "stale_read",
            Self::LostWrite => "lost_write",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Latency is kept in microseconds, from 1 µs to an hour.
const MAX_MICROS: u64 = 3_600_000_000;

fn histogram(sigfig: u8) -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts.
    #[expect(clippy::expect_used, reason = "constant, valid bounds")]
    Histogram::new_with_bounds(1, MAX_MICROS, sigfig).expect("valid histogram bounds")
}

/// One second of the run (by completion time, except `sent`, by send time).
#[derive(Debug, Clone)]
pub struct Second {
    pub latency: Histogram<u64>,
    /// Requests sent in this second.
    pub sent: u64,
    /// Requests that completed (any outcome) in this second.
    pub completed: u64,
    /// Completed with a 1xx–3xx answer.
    pub ok: u64,
    pub errors: [u64; ErrorKind::ALL.len()],
    /// Of those errors, the ones of write requests (whose outcome a client may not know;
    /// a fault suite tells them from read errors).
    pub write_errors: u64,
}

impl Default for Second {
    fn default() -> Self {
        Self {
            // Two significant digits are plenty for charts and keep a second at ~5 KiB.
            latency: histogram(2),
            sent: 0,
            completed: 0,
            ok: 0,
            errors: [0; ErrorKind::ALL.len()],
            write_errors: 0,
        }
    }
}

impl Second {
    pub fn merge(&mut self, other: &Self) {
        // Same bounds on both sides: cannot fail.
        let _ = self.latency.add(&other.latency);
        self.sent += other.sent;
        self.completed += other.completed;
        self.ok += other.ok;
        self.write_errors += other.write_errors;
        for (a, b) in self.errors.iter_mut().zip(other.errors) {
            *a += b;
        }
    }

    #[must_use]
    pub fn error_total(&self) -> u64 {
        self.errors.iter().sum()
    }
}

/// Everything one worker (or, merged, the whole run) measured.
#[derive(Debug, Clone)]
pub struct Stats {
    pub seconds: Vec<Second>,
    /// Latency of the measured stages' requests, three significant digits.
    pub total: Histogram<u64>,
    /// Requests of the measured stages that were sent.
    pub sent: u64,
    pub completed: u64,
    pub ok: u64,
    pub errors: [u64; ErrorKind::ALL.len()],
    /// Requests that were due while every connection was busy, and so waited for one.
    pub queued: u64,
    /// Requests whose timer fired late (the tool's own lag, not the server's): how late.
    pub send_lag: Histogram<u64>,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            seconds: Vec::new(),
            total: histogram(3),
            sent: 0,
            completed: 0,
            ok: 0,
            errors: [0; ErrorKind::ALL.len()],
            queued: 0,
            send_lag: histogram(2),
        }
    }
}

/// The outcome of one request.
#[derive(Debug, Clone, Copy)]
pub enum Outcome {
    Ok,
    Error(ErrorKind),
}

impl Stats {
    fn second(&mut self, at: Duration) -> &mut Second {
        let i = at.as_secs() as usize;
        if self.seconds.len() <= i {
            self.seconds.resize_with(i + 1, Second::default);
        }
        &mut self.seconds[i]
    }

    pub fn record_sent(&mut self, at: Duration, measured: bool) {
        self.second(at).sent += 1;
        if measured {
            self.sent += 1;
        }
    }

    /// `at` is the completion time since the run's start; `latency` is from the due time.
    pub fn record(&mut self, at: Duration, latency: Duration, outcome: Outcome, measured: bool) {
        let micros = (latency.as_micros() as u64).clamp(1, MAX_MICROS);
        let s = self.second(at);
        s.latency.saturating_record(micros);
        s.completed += 1;
        match outcome {
            Outcome::Ok => s.ok += 1,
            Outcome::Error(kind) => s.errors[kind.index()] += 1,
        }
        if measured {
            self.total.saturating_record(micros);
            self.completed += 1;
            match outcome {
                Outcome::Ok => self.ok += 1,
                Outcome::Error(kind) => self.errors[kind.index()] += 1,
            }
        }
    }

    /// Marks an error already recorded at `at` as one of a write request.
    pub fn record_write_error(&mut self, at: Duration) {
        self.second(at).write_errors += 1;
    }

    /// A checker finding: counted as an error of its second (and of the total when measured).
    pub fn record_finding(&mut self, at: Duration, kind: ErrorKind, measured: bool) {
        self.second(at).errors[kind.index()] += 1;
        if measured {
            self.errors[kind.index()] += 1;
        }
    }

    pub fn record_send_lag(&mut self, lag: Duration) {
        self.send_lag
            .saturating_record((lag.as_micros() as u64).clamp(1, MAX_MICROS));
    }

    pub fn merge(&mut self, other: &Self) {
        if self.seconds.len() < other.seconds.len() {
            self.seconds
                .resize_with(other.seconds.len(), Second::default);
        }
        for (a, b) in self.seconds.iter_mut().zip(&other.seconds) {
            a.merge(b);
        }
        let _ = self.total.add(&other.total);
        let _ = self.send_lag.add(&other.send_lag);
        self.sent += other.sent;
        self.completed += other.completed;
        self.ok += other.ok;
        self.queued += other.queued;
        for (a, b) in self.errors.iter_mut().zip(other.errors) {
            *a += b;
        }
    }

    #[must_use]
    pub fn error_total(&self) -> u64 {
        self.errors.iter().sum()
    }

    /// Errors by kind, only the kinds that happened.
    #[must_use]
    pub fn errors_by_kind(errors: &[u64; ErrorKind::ALL.len()]) -> BTreeMap<String, u64> {
        ErrorKind::ALL
            .iter()
            .zip(errors)
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| (k.label().to_string(), *n))
            .collect()
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

impl Percentiles {
    #[must_use]
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |micros: u64| micros as f64 / 1000.0;
        Self {
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: h.mean() / 1000.0,
        }
    }
}
