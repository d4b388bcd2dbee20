//! Drawing requests: a scenario's kinds by weight, ids from the data set (Zipf or
//! uniform), write bodies, and the targets learnt from earlier answers.

use std::collections::VecDeque;

use bytes::Bytes;
use http::Method;

use super::{Dataset, IdDist, Kind, Scenario};
use crate::rng::{Rng, Zipf};

/// What a request was, for the checker: enough to know what its answer must show.
#[derive(Debug, Clone, PartialEq)]
pub enum Intent {
    /// Nothing to learn from the answer.
    Plain,
    /// A course page; `first_recent` when it is the default first page (newest first).
    Page {
        course_id: u64,
        first_recent: bool,
        limit: usize,
        /// The page's `sort`/`stars` query (`"sort=helpful&"`, or empty): a cursor
        /// from this page is only valid with the same query.
        query: String,
    },
    ReviewRead {
        review_id: u64,
    },
    ReviewerRead {
        reviewer_id: u64,
    },
    ReviewPost {
        course_id: u64,
        reviewer_id: u64,
        rating: f64,
        comment_len: usize,
    },
    Helpful {
        review_id: u64,
    },
    ReviewerPut {
        reviewer_id: u64,
        name: String,
    },
}

impl Intent {
    #[must_use]
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            Self::ReviewPost { .. } | Self::Helpful { .. } | Self::ReviewerPut { .. }
        )
    }

    /// Whether the answer's body must be parsed (for the checker or for later targets).
    #[must_use]
    pub fn wants_body(&self) -> bool {
        !matches!(self, Self::Plain)
    }
}

/// A request ready to send.
#[derive(Debug, Clone)]
pub struct Planned {
    pub method: Method,
    pub path: String,
    pub body: Option<Bytes>,
    pub intent: Intent,
}

/// What earlier answers taught a worker: ids to aim writes and follow-up reads at, so
/// that writes land where reads look (and the checker has something to check).
#[derive(Debug, Default)]
pub struct Targets {
    pub seen_reviews: Ring<u64>,
    pub seen_reviewers: Ring<u64>,
    pub written_reviews: Ring<u64>,
    /// (course, the query the cursor belongs to, cursor).
    pub cursors: Ring<(u64, String, String)>,
}

/// A bounded list that forgets its oldest entries.
#[derive(Debug)]
pub struct Ring<T>(VecDeque<T>);

impl<T> Default for Ring<T> {
    fn default() -> Self {
        Self(VecDeque::with_capacity(RING))
    }
}

const RING: usize = 1024;

impl<T: Clone> Ring<T> {
    pub fn push(&mut self, v: T) {
        if self.0.len() == RING {
            self.0.pop_front();
        }
        self.0.push_back(v);
    }

    pub fn pick(&self, rng: &mut Rng) -> Option<T> {
        if self.0.is_empty() {
            None
        } else {
            self.0.get(rng.index(self.0.len())).cloned()
        }
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A scenario made ready to draw requests from.
#[derive(Debug, Clone)]
pub struct Mix {
    kinds: Vec<Kind>,
    /// Cumulative weights, normalised to end at 1.
    cumulative: Vec<f64>,
    data: Dataset,
    zipf: Zipf,
    /// Makes reviewer names unique across runs and workers.
    tag: String,
}

impl Mix {
    #[must_use]
    pub fn new(scenario: &Scenario, data: Dataset, tag: String) -> Self {
        let total: f64 = scenario.requests.iter().map(|r| r.weight.max(0.0)).sum();
        let mut acc = 0.0;
        let mut kinds = Vec::new();
        let mut cumulative = Vec::new();
        for r in scenario.requests.iter().filter(|r| r.weight > 0.0) {
            acc += r.weight / total;
            kinds.push(r.kind.clone());
            cumulative.push(acc);
        }
        if let Some(last) = cumulative.last_mut() {
            *last = 1.0;
        }
        Self {
            kinds,
            cumulative,
            data,
            zipf: Zipf::new(data.courses, 1.0),
            tag,
        }
    }

    #[must_use]
    pub fn dataset(&self) -> Dataset {
        self.data
    }

    /// Draws the next request. `seq` numbers this worker's requests (for unique names).
    pub fn next(&self, rng: &mut Rng, targets: &Targets, seq: u64) -> Planned {
        let u = rng.f64();
        let i = self
            .cumulative
            .partition_point(|&c| c <= u)
            .min(self.kinds.len() - 1);
        match &self.kinds[i] {
            Kind::CoursePage { ids, variants } => self.page(rng, targets, *ids, *variants),
            Kind::Review => {
                let review_id = match targets.written_reviews.pick(rng) {
                    Some(id) if rng.f64() < 0.5 => id,
                    _ => rng.one_to(self.data.reviews),
                };
                get(
                    format!("/review/{review_id}"),
                    Intent::ReviewRead { review_id },
                )
            }
            Kind::ReviewPost => {
                let course_id = self.zipf.sample(rng);
                let reviewer_id = rng.one_to(self.data.reviewers);
                let rating = half_star(rng);
                let comment = comment(rng);
                let body = serde_json::json!({
                    "course_id": course_id,
                    "reviewer_id": reviewer_id,
                    "rating": rating,
                    "comment": comment,
                });
                Planned {
                    method: Method::POST,
                    path: "/review".into(),
                    body: Some(Bytes::from(body.to_string())),
                    intent: Intent::ReviewPost {
                        course_id,
                        reviewer_id,
                        rating,
                        comment_len: comment.chars().count(),
                    },
                }
            }
            Kind::Helpful => {
                let review_id = targets
                    .seen_reviews
                    .pick(rng)
                    .unwrap_or_else(|| rng.one_to(self.data.reviews));
                Planned {
                    method: Method::POST,
                    path: format!("/review/{review_id}/helpful"),
                    body: None,
                    intent: Intent::Helpful { review_id },
                }
            }
            Kind::ReviewerPut => {
                let reviewer_id = targets
                    .seen_reviewers
                    .pick(rng)
                    .unwrap_or_else(|| rng.one_to(self.data.reviewers));
                let name = format!("load {} {seq}", self.tag);
                let body = serde_json::json!({ "name": name });
                Planned {
                    method: Method::PUT,
                    path: format!("/reviewer/{reviewer_id}"),
                    body: Some(Bytes::from(body.to_string())),
                    intent: Intent::ReviewerPut { reviewer_id, name },
                }
            }
            Kind::Reviewer => {
                let reviewer_id = rng.one_to(self.data.reviewers);
                get(
                    format!("/reviewer/{reviewer_id}"),
                    Intent::ReviewerRead { reviewer_id },
                )
            }
            Kind::Rating { ids } => {
                let id = self.course(rng, *ids);
                get(format!("/rating/{id}"), Intent::Plain)
            }
            Kind::Get { path } => get(path.clone(), Intent::Plain),
        }
    }

    fn course(&self, rng: &mut Rng, ids: IdDist) -> u64 {
        match ids {
            IdDist::Zipf => self.zipf.sample(rng),
            IdDist::Uniform => rng.one_to(self.data.courses),
        }
    }

    fn page(&self, rng: &mut Rng, targets: &Targets, ids: IdDist, variants: f64) -> Planned {
        const LIMIT: usize = 10;
        let wants_body = variants > 0.0 || self.parses_pages();
        let page = |course_id, query: String, first_recent| Intent::Page {
            course_id,
            first_recent,
            limit: LIMIT,
            query,
        };
        if variants > 0.0 && rng.f64() < variants {
            // A fifth of W3's pages: an order, a star filter, or the next page.
            let pick = rng.one_to(3);
            if pick == 3
                && let Some((course_id, query, cursor)) = targets.cursors.pick(rng)
            {
                let path = format!(
                    "/course/{course_id}/reviews?{query}cursor={}",
                    percent_encode(&cursor)
                );
                return get(path, page(course_id, query, false));
            }
            let course_id = self.course(rng, ids);
            let query = if pick == 1 {
                format!("sort={}&", ["helpful", "highest", "lowest"][rng.index(3)])
            } else {
                format!("stars={}&", rng.one_to(5))
            };
            let path = format!(
                "/course/{course_id}/reviews?{}",
                query.trim_end_matches('&')
            );
            return get(path, page(course_id, query, false));
        }
        let course_id = self.course(rng, ids);
        let intent = if wants_body {
            page(course_id, String::new(), true)
        } else {
            Intent::Plain
        };
        get(format!("/course/{course_id}/reviews"), intent)
    }

    /// Page bodies are parsed when the mix writes (to aim writes and check reads).
    fn parses_pages(&self) -> bool {
        self.kinds.iter().any(Kind::is_write)
    }
}

fn get(path: String, intent: Intent) -> Planned {
    Planned {
        method: Method::GET,
        path,
        body: None,
        intent,
    }
}

/// Escapes everything but RFC 3986's unreserved characters (cursors are opaque).
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Half stars skewed high, like the seeded data.
fn half_star(rng: &mut Rng) -> f64 {
    const STARS: [(f64, f64); 9] = [
        (1.0, 0.03),
        (1.5, 0.01),
        (2.0, 0.03),
        (2.5, 0.02),
        (3.0, 0.06),
        (3.5, 0.08),
        (4.0, 0.2),
        (4.5, 0.22),
        (5.0, 0.35),
    ];
    let mut u = rng.f64();
    for (stars, p) in STARS {
        if u < p {
            return stars;
        }
        u -= p;
    }
    5.0
}

fn comment(rng: &mut Rng) -> String {
    const WORDS: [&str; 24] = [
        "clear",
        "course",
        "lectures",
        "examples",
        "pace",
        "instructor",
        "helpful",
        "project",
        "exercises",
        "well",
        "explained",
        "too",
        "fast",
        "slow",
        "great",
        "content",
        "quizzes",
        "practical",
        "worth",
        "it",
        "beginner",
        "advanced",
        "recommend",
        "material",
    ];
    let len = 40 + rng.index(200);
    let mut s = String::with_capacity(len + 12);
    s.push_str("load test: ");
    while s.len() < len {
        s.push_str(WORDS[rng.index(WORDS.len())]);
        s.push(' ');
    }
    s.truncate(s.trim_end().len());
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> Dataset {
        Dataset {
            courses: 100,
            reviewers: 50,
            reviews: 1500,
        }
    }

    #[test]
    fn w3_draws_its_shares() {
        let mix = Mix::new(&Scenario::builtin("w3").unwrap(), data(), "t".into());
        let mut rng = Rng::new(3);
        let targets = Targets::default();
        let mut counts = std::collections::HashMap::<&str, u32>::new();
        let n = 100_000;
        let mut variants = 0;
        for seq in 0..n {
            let p = mix.next(&mut rng, &targets, seq);
            let key = match (&p.method, &p.intent) {
                (&Method::GET, Intent::Page { first_recent, .. }) => {
                    if !first_recent {
                        variants += 1;
                    }
                    "page"
                }
                (&Method::GET, _) => "review",
                (&Method::POST, Intent::ReviewPost { .. }) => "post",
                (&Method::POST, _) => "helpful",
                _ => "put",
            };
            *counts.entry(key).or_default() += 1;
        }
        let share = |k| f64::from(counts[k]) / n as f64;
        assert!((share("page") - 0.90).abs() < 0.005);
        assert!((share("review") - 0.05).abs() < 0.003);
        assert!((share("post") - 0.03).abs() < 0.003);
        assert!((share("helpful") - 0.01).abs() < 0.002);
        assert!((share("put") - 0.01).abs() < 0.002);
        let v = f64::from(variants) / f64::from(counts["page"]);
        assert!((v - 0.2).abs() < 0.01, "{v}");
    }
}
