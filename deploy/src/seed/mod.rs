//! Demo and benchmark data: `Spec` says how much (a scale of the full 10M courses,
//! 10M reviewers, 150M reviews) and which seed; `generate` makes the rows
//! deterministically with their aggregates; `load` streams them in with binary COPY and
//! rebuilds the indexes and keys `schema` set aside; `verify` checks the aggregates.

mod binary;
pub mod generate;
mod load;
mod progress;
mod schema;
mod text;
mod verify;

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::bail;

pub use load::{Options, Timings, load};
pub use schema::{State, is_empty, state};
pub use verify::{Report, verify};

/// `courser seed` and `courser up` load this fraction of the full data set by default:
/// 1,000 courses, 1,000 reviewers, 15,000 reviews.
pub const DEFAULT_SCALE: f64 = 0.0001;
pub const DEFAULT_SEED: u64 = 1;

/// The full data set (scale 1), as in BENCHMARKS.md.
const FULL_COURSES: f64 = 10_000_000.0;
const FULL_REVIEWERS: f64 = 10_000_000.0;
const FULL_REVIEWS: f64 = 150_000_000.0;
/// Scales above this would overflow the 32-bit counters of the schema.
const MAX_SCALE: f64 = 10.0;

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub scale: f64,
    pub courses: u64,
    pub reviewers: u64,
    pub reviews: u64,
    pub seed: u64,
    /// Reviews are dated in the five years before this Unix time; part of the spec so
    /// that generation is repeatable.
    pub now: i64,
}

impl Spec {
    /// `scale` times the full data set, dated up to the current time.
    pub fn from_scale(scale: f64, seed: u64) -> anyhow::Result<Self> {
        if !scale.is_finite() || scale <= 0.0 || scale > MAX_SCALE {
            bail!("--scale must be above 0 and at most {MAX_SCALE} (got {scale})");
        }
        let count = |full: f64| (full * scale).round() as u64;
        let spec = Self {
            scale,
            courses: count(FULL_COURSES),
            reviewers: count(FULL_REVIEWERS),
            reviews: count(FULL_REVIEWS),
            seed,
            now: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or(Duration::ZERO)
                .as_secs()
                .try_into()
                .unwrap_or(i64::MAX),
        };
        if spec.courses == 0 || spec.reviewers == 0 {
            bail!(
                "--scale {scale} is too small: it must give at least one course and one reviewer (1e-7)"
            );
        }
        Ok(spec)
    }

    /// The same spec dated up to `now` (Unix seconds) instead of the current time.
    #[must_use]
    pub fn with_now(self, now: i64) -> Self {
        Self { now, ..self }
    }
}

impl fmt::Display for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "scale {}: {} courses, {} reviewers, {} reviews, seed {}",
            self.scale, self.courses, self.reviewers, self.reviews, self.seed
        )
    }
}

/// What a load did.
#[derive(Debug, Clone)]
pub struct Summary {
    pub courses: u64,
    pub reviewers: u64,
    pub reviews: u64,
    pub elapsed: Duration,
    pub timings: Timings,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.timings;
        write!(
            f,
            "loaded {} courses, {} reviewers and {} reviews in {:.1} s \
             (prepare {:.1} s, rows {:.1} s, indexes and keys {:.1} s, analyze {:.1} s, foreign keys {:.1} s)",
            self.courses,
            self.reviewers,
            self.reviews,
            self.elapsed.as_secs_f64(),
            t.prepare.as_secs_f64(),
            t.copy.as_secs_f64(),
            t.indexes.as_secs_f64(),
            t.analyze.as_secs_f64(),
            t.foreign_keys.as_secs_f64()
        )
    }
}
