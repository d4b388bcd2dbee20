//! The arrival schedule of an open model: piecewise-linear rate stages (k6's
//! ramping-arrival-rate), and the exact due time of every request slot.
//!
//! The rate of a stage goes linearly from the previous stage's target to its own over
//! its duration (a zero-length stage is a step). Slot `i` is due when the integral of
//! the rate reaches `i`, so a constant rate R gives slots at 0, 1/R, 2/R, … and the
//! count offered in any interval is exact, whatever the server does.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Error;

/// One stage as written on the command line or in a scenario file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    /// How long the stage lasts; 0 makes it a step to `target`.
    #[serde(with = "duration_text")]
    pub duration: Duration,
    /// The rate (requests/s) at the end of the stage.
    pub target: f64,
    /// A warm-up stage is run but left out of the summary, the SLA verdict and the
    /// resource figures (its seconds still appear in the charts).
    #[serde(default)]
    pub warmup: bool,
}

/// The stages with their cumulative counts, ready to answer "when is slot i due".
#[derive(Debug, Clone)]
pub struct Schedule {
    segments: Vec<Segment>,
    start_rate: f64,
    total: u64,
    end: f64,
    measure_from: f64,
    measure_to: f64,
}

#[derive(Debug, Clone, Copy)]
struct Segment {
    /// Start, seconds from the run's start.
    t0: f64,
    duration: f64,
    r0: f64,
    r1: f64,
    /// Slots due before this segment (the integral of the rate up to `t0`).
    n0: f64,
    warmup: bool,
}

impl Segment {
    fn count(&self) -> f64 {
        (self.r0 + self.r1) * 0.5 * self.duration
    }
}

/// Where a slot falls: its due time and whether it belongs to a measured stage.
#[derive(Debug, Clone, Copy)]
pub struct Slot {
    pub due: Duration,
    pub measured: bool,
}

impl Schedule {
    /// `start_rate` is the rate at time 0 (the first stage ramps from it).
    pub fn new(start_rate: f64, stages: &[Stage]) -> Result<Self, Error> {
        if stages.is_empty() {
            return Err(Error::Config("a run needs at least one stage".into()));
        }
        if !start_rate.is_finite() || start_rate < 0.0 {
            return Err(Error::Config(format!(
                "start rate must be ≥ 0 (got {start_rate})"
            )));
        }
        let mut segments = Vec::with_capacity(stages.len());
        let (mut t, mut n, mut r) = (0.0, 0.0, start_rate);
        for (i, st) in stages.iter().enumerate() {
            if !st.target.is_finite() || st.target < 0.0 {
                return Err(Error::Config(format!(
                    "stage {}: target rate must be ≥ 0 (got {})",
                    i + 1,
                    st.target
                )));
            }
            let seg = Segment {
                t0: t,
                duration: st.duration.as_secs_f64(),
                r0: r,
                r1: st.target,
                n0: n,
                warmup: st.warmup,
            };
            t += seg.duration;
            n += seg.count();
            r = st.target;
            segments.push(seg);
        }
        if t <= 0.0 {
            return Err(Error::Config("the stages last no time at all".into()));
        }
        let measured: Vec<&Segment> = segments
            .iter()
            .filter(|s| !s.warmup && s.duration > 0.0)
            .collect();
        let measure_from = measured.first().map_or(t, |s| s.t0);
        let measure_to = measured.last().map_or(t, |s| s.t0 + s.duration);
        Ok(Self {
            segments,
            start_rate,
            total: n.ceil() as u64,
            end: t,
            measure_from,
            measure_to,
        })
    }

    /// A warm-up ramp from 0 to `rate` (skipped when `warmup` is zero), then `rate`
    /// held for `hold`.
    pub fn constant(rate: f64, warmup: Duration, hold: Duration) -> Result<Self, Error> {
        let mut stages = Vec::new();
        if !warmup.is_zero() {
            stages.push(Stage {
                duration: warmup,
                target: rate,
                warmup: true,
            });
        }
        stages.push(Stage {
            duration: hold,
            target: rate,
            warmup: false,
        });
        Self::new(if warmup.is_zero() { rate } else { 0.0 }, &stages)
    }

    /// How many slots the whole schedule holds.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The schedule's length.
    #[must_use]
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.end)
    }

    /// The measured window (from the first to the end of the last measured stage).
    #[must_use]
    pub fn measured_window(&self) -> (Duration, Duration) {
        (
            Duration::from_secs_f64(self.measure_from),
            Duration::from_secs_f64(self.measure_to),
        )
    }

    #[must_use]
    pub fn start_rate(&self) -> f64 {
        self.start_rate
    }

    /// The stages, back in the shape they were given.
    #[must_use]
    pub fn stages(&self) -> Vec<Stage> {
        self.segments
            .iter()
            .map(|s| Stage {
                duration: Duration::from_secs_f64(s.duration),
                target: s.r1,
                warmup: s.warmup,
            })
            .collect()
    }

    /// The due time of slot `i` (`i < total()`), or None past the end.
    #[must_use]
    pub fn slot(&self, i: u64) -> Option<Slot> {
        if i >= self.total {
            return None;
        }
        let n = i as f64;
        // The last segment whose start count is ≤ n and that adds slots.
        let idx = self.segments.partition_point(|s| s.n0 <= n);
        let seg = self.segments[..idx]
            .iter()
            .rev()
            .find(|s| s.count() > 0.0 && n < s.n0 + s.count())
            .or_else(|| self.segments[..idx].iter().rev().find(|s| s.count() > 0.0))?;
        let need = (n - seg.n0).max(0.0);
        // Solve n0 + r0·x + a·x²/2 = n for x in the stable form 2m / (r0 + √(r0² + 2am)).
        let a = if seg.duration > 0.0 {
            (seg.r1 - seg.r0) / seg.duration
        } else {
            0.0
        };
        let disc = (seg.r0 * seg.r0 + 2.0 * a * need).max(0.0);
        let denom = seg.r0 + disc.sqrt();
        let x = if denom > 0.0 { 2.0 * need / denom } else { 0.0 };
        let t = seg.t0 + x.min(seg.duration);
        Some(Slot {
            due: Duration::from_secs_f64(t),
            measured: !seg.warmup,
        })
    }

    /// Slots due in `[from, to)` seconds: what was offered in that interval.
    #[must_use]
    pub fn offered_between(&self, from: f64, to: f64) -> f64 {
        (self.cumulative(to) - self.cumulative(from)).max(0.0)
    }

    /// Slots due before `t` seconds (the integral of the rate).
    #[must_use]
    pub fn cumulative(&self, t: f64) -> f64 {
        if t <= 0.0 {
            return 0.0;
        }
        let mut n = 0.0;
        for s in &self.segments {
            if t >= s.t0 + s.duration {
                n = s.n0 + s.count();
                continue;
            }
            let x = t - s.t0;
            let a = if s.duration > 0.0 {
                (s.r1 - s.r0) / s.duration
            } else {
                0.0
            };
            return s.n0 + s.r0 * x + a * x * x * 0.5;
        }
        n
    }
}

/// Parses "1500ms", "10s", "2m", "1h" or a bare number of seconds ("2.5").
pub fn parse_duration(text: &str) -> Result<Duration, Error> {
    let t = text.trim();
    let bad = || Error::Config(format!("'{text}' is not a duration (e.g. 500ms, 10s, 2m)"));
    let (num, scale) = if let Some(v) = t.strip_suffix("ms") {
        (v, 0.001)
    } else if let Some(v) = t.strip_suffix("us") {
        (v, 0.000_001)
    } else if let Some(v) = t.strip_suffix('s') {
        (v, 1.0)
    } else if let Some(v) = t.strip_suffix('m') {
        (v, 60.0)
    } else if let Some(v) = t.strip_suffix('h') {
        (v, 3600.0)
    } else {
        (t, 1.0)
    };
    let v: f64 = num.trim().parse().map_err(|_| bad())?;
    if !v.is_finite() || v < 0.0 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(v * scale))
}

/// Parses `--stages`: comma-separated `DURATION:RATE`, with `warmup=` before the first
/// ones to leave out of the summary, e.g. `warmup=10s:2000,0s:4000,30s:4000`.
pub fn parse_stages(text: &str) -> Result<Vec<Stage>, Error> {
    text.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|part| {
            let part = part.trim();
            let (warmup, rest) = match part.strip_prefix("warmup=") {
                Some(rest) => (true, rest),
                None => (false, part),
            };
            let (d, r) = rest.split_once(':').ok_or_else(|| {
                Error::Config(format!(
                    "stage '{part}' is not DURATION:RATE (e.g. 30s:2000)"
                ))
            })?;
            let target: f64 = r
                .trim()
                .parse()
                .map_err(|_| Error::Config(format!("stage '{part}': '{r}' is not a rate")))?;
            Ok(Stage {
                duration: parse_duration(d)?,
                target,
                warmup,
            })
        })
        .collect()
}

/// Serde for durations written as text ("10s") in scenario files and results.
pub mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}ms", d.as_millis()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_constant_rate_spaces_slots_evenly() {
        let s = Schedule::constant(1000.0, Duration::ZERO, Duration::from_secs(2)).unwrap();
        assert_eq!(s.total(), 2000);
        assert_eq!(s.slot(0).unwrap().due, Duration::ZERO);
        let d = s.slot(500).unwrap().due.as_secs_f64();
        assert!((d - 0.5).abs() < 1e-9, "{d}");
        assert!(s.slot(2000).is_none());
    }

    #[test]
    fn a_ramp_offers_the_area_under_the_rate() {
        let s = Schedule::constant(1000.0, Duration::from_secs(2), Duration::from_secs(1)).unwrap();
        // 0→1000 over 2 s is 1000 slots, then 1000 more.
        assert_eq!(s.total(), 2000);
        let half = s.slot(250).unwrap();
        assert!(half.due.as_secs_f64() - 1.0 < 1e-9 && !half.measured);
        let held = s.slot(1500).unwrap();
        assert!((held.due.as_secs_f64() - 2.5).abs() < 1e-9 && held.measured);
        assert!((s.offered_between(2.0, 3.0) - 1000.0).abs() < 1e-6);
        assert_eq!(s.measured_window().0, Duration::from_secs(2));
    }

    #[test]
    fn steps_and_stage_text_parse() {
        let st = parse_stages("warmup=1s:100, 0s:200,2s:200").unwrap();
        let s = Schedule::new(100.0, &st).unwrap();
        assert_eq!(s.total(), 100 + 400);
        let d = s.slot(100).unwrap().due.as_secs_f64();
        assert!((d - 1.0).abs() < 1e-9, "{d}");
        let d = s.slot(300).unwrap().due.as_secs_f64();
        assert!((d - 2.0).abs() < 1e-9, "{d}");
        assert!(parse_stages("10s").is_err());
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
    }
}
