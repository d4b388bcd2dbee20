//! What each request is: the kinds of request a workload mixes (course pages, review
//! reads and writes, reviewer writes, fixed paths), the built-in workloads W1–W3 of
//! BENCHMARKS.md, and scenario files that mix kinds and stages freely.

mod mix;

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use mix::{Intent, Mix, Planned, Ring, Targets};

use crate::Error;
use crate::schedule::Stage;

/// The size of the seeded data set: ids run from 1 to these counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dataset {
    pub courses: u64,
    pub reviewers: u64,
    pub reviews: u64,
}

impl Dataset {
    /// The seeder's data set at `scale` (1.0 is 10M courses, 10M reviewers, 150M reviews).
    #[must_use]
    pub fn from_scale(scale: f64) -> Self {
        let count = |full: f64| ((full * scale).round() as u64).max(1);
        Self {
            courses: count(10_000_000.0),
            reviewers: count(10_000_000.0),
            reviews: count(150_000_000.0),
        }
    }
}

/// How course ids are drawn.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdDist {
    /// Zipf(s=1.0) over 1..=courses: course 1 (the largest) is the most requested.
    #[default]
    Zipf,
    Uniform,
}

/// One kind of request in a mix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Kind {
    /// `GET /course/{id}/reviews`; `variants` is the share that uses `sort`, `stars` or
    /// a `cursor` from an earlier page of the same course.
    CoursePage {
        #[serde(default)]
        ids: IdDist,
        #[serde(default)]
        variants: f64,
    },
    /// `GET /review/{id}`: half of them on reviews this run wrote to (when there are
    /// any yet), the rest uniform over the data set.
    Review,
    /// `POST /review` on a course drawn like W3's pages, by a uniform reviewer.
    ReviewPost,
    /// `POST /review/{id}/helpful` on a review seen on a recent page.
    Helpful,
    /// `PUT /reviewer/{id}` with a new, unique name, on a reviewer seen on a recent page.
    ReviewerPut,
    /// `GET /reviewer/{id}`, uniform.
    Reviewer,
    /// `GET /rating/{id}`.
    Rating {
        #[serde(default)]
        ids: IdDist,
    },
    /// A fixed request, for anything else (e.g. `/healthz`, or a trivial server).
    Get { path: String },
}

impl Kind {
    /// A short name for tables and the checker's notes.
    #[must_use]
    pub fn label(&self) -> &'static str {
        match self {
            Self::CoursePage { .. } => "course_page",
            Self::Review => "review",
            Self::ReviewPost => "review_post",
            Self::Helpful => "helpful",
            Self::ReviewerPut => "reviewer_put",
            Self::Reviewer => "reviewer",
            Self::Rating { .. } => "rating",
            Self::Get { .. } => "get",
        }
    }

    pub(crate) fn is_write(&self) -> bool {
        matches!(self, Self::ReviewPost | Self::Helpful | Self::ReviewerPut)
    }
}

/// A kind with its share of the traffic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Weighted {
    pub weight: f64,
    #[serde(flatten)]
    pub kind: Kind,
}

/// A scenario file: a mix, optionally its stages, and whether to run the checker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    #[serde(default = "default_name")]
    pub name: String,
    /// Check that acknowledged writes show up in later reads (W3's checker).
    #[serde(default)]
    pub check: bool,
    #[serde(default)]
    pub start_rate: f64,
    #[serde(rename = "request")]
    pub requests: Vec<Weighted>,
    /// Stages; when absent, `--rate`, `--warmup` and `--duration` decide.
    #[serde(default, rename = "stage")]
    pub stages: Vec<Stage>,
}

fn default_name() -> String {
    "scenario".into()
}

impl Scenario {
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
        Self::from_toml(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }

    pub fn from_toml(text: &str) -> Result<Self, Error> {
        let s: Self = toml::from_str(text).map_err(|e| Error::Config(e.to_string()))?;
        if s.requests.is_empty() || s.requests.iter().all(|r| r.weight <= 0.0) {
            return Err(Error::Config(
                "a scenario needs at least one [[request]] with a positive weight".into(),
            ));
        }
        if let Some(w) = s
            .requests
            .iter()
            .find(|r| !r.weight.is_finite() || r.weight < 0.0)
        {
            return Err(Error::Config(format!(
                "{}: weight must be ≥ 0",
                w.kind.label()
            )));
        }
        Ok(s)
    }

    /// The built-in workloads of BENCHMARKS.md.
    pub fn builtin(name: &str) -> Result<Self, Error> {
        let page = |ids, variants, weight| Weighted {
            weight,
            kind: Kind::CoursePage { ids, variants },
        };
        let w = |kind, weight| Weighted { weight, kind };
        let (requests, check) = match name.to_ascii_lowercase().as_str() {
            "w1" => (vec![page(IdDist::Zipf, 0.0, 100.0)], false),
            "w2" => (vec![page(IdDist::Uniform, 0.0, 100.0)], false),
            "w3" => (
                vec![
                    page(IdDist::Zipf, 0.2, 90.0),
                    w(Kind::Review, 5.0),
                    w(Kind::ReviewPost, 3.0),
                    w(Kind::Helpful, 1.0),
                    w(Kind::ReviewerPut, 1.0),
                ],
                true,
            ),
            other => {
                return Err(Error::Config(format!(
                    "unknown workload '{other}' (w1, w2, w3, or --scenario FILE)"
                )));
            }
        };
        Ok(Self {
            name: name.to_ascii_uppercase(),
            check,
            start_rate: 0.0,
            requests,
            stages: Vec::new(),
        })
    }

    #[must_use]
    pub fn has_writes(&self) -> bool {
        self.requests
            .iter()
            .any(|r| r.weight > 0.0 && r.kind.is_write())
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_files_parse_kinds_and_stages() {
        let s = Scenario::from_toml(
            r#"
            name = "mine"
            check = true
            [[request]]
            kind = "course_page"
            weight = 8
            ids = "uniform"
            [[request]]
            kind = "get"
            path = "/healthz"
            weight = 2
            [[stage]]
            duration = "2s"
            target = 100
            warmup = true
            [[stage]]
            duration = "10s"
            target = 100
            "#,
        )
        .unwrap();
        assert_eq!(s.requests.len(), 2);
        assert_eq!(s.stages.len(), 2);
        assert!(s.stages[0].warmup && s.check);
        assert!(Scenario::from_toml("[[request]]\nkind = \"nope\"\nweight = 1").is_err());
    }
}
