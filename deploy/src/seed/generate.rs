//! Deterministic generation of the data set, with no I/O: courses in id order, each
//! with its reviews and its exact rating aggregate, then the reviewers with the exact
//! number of reviews generated for each.
//!
//! Every course draws from its own random stream (the seed's ChaCha stream number is the
//! course id) and its review ids follow from a closed formula, so a course's reviews do
//! not depend on what was generated before them.

use rand::{Rng, SeedableRng as _};
use rand_chacha::ChaCha8Rng;

use super::Spec;
use super::text;

/// Offset of the Zipf-like curve: course `i` gets reviews in proportion to `1 / (i + k)`.
/// 10 keeps the top course near 7 % of all reviews at demo scale and over a million at
/// full scale, while most courses get a handful.
const ZIPF_OFFSET: f64 = 10.0;
/// Reviews are dated within this many seconds before `Spec::now` (five years).
const HISTORY_SECS: f64 = 5.0 * 365.25 * 86_400.0;
/// Mixed into the seed for reviewers, so they do not share streams with courses.
const REVIEWER_SALT: u64 = 0x7265_7669_6577_6572;

/// Half-star weights (index 0 = 2 half stars = 1 star) for three kinds of course, so
/// courses differ and ratings overall are skewed high.
const PROFILES: [[u32; 9]; 3] = [
    [1, 0, 1, 1, 2, 3, 12, 20, 60],   // excellent
    [2, 1, 3, 3, 8, 10, 30, 20, 23],  // good
    [15, 5, 15, 8, 15, 8, 15, 6, 13], // poor
];
/// How often each profile occurs, in percent.
const PROFILE_SHARE: [u32; 3] = [55, 30, 15];

/// One row of `reviews`. Times are Unix seconds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Review {
    pub id: i64,
    pub course_id: i64,
    pub reviewer_id: i64,
    pub half_stars: i16,
    pub comment: String,
    pub helpful: i32,
    pub reported: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One row of `ratings`: the aggregate of the course's reviews.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rating {
    pub course_id: i64,
    pub review_count: i32,
    pub half_stars_sum: i64,
    /// `distribution[i]` counts reviews with `half_stars = i + 2` (the column is 1-based).
    pub distribution: [i32; 9],
}

/// One row of `reviewers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reviewer {
    pub id: i64,
    pub name: String,
    pub picture: String,
    pub courses_taken: i32,
    pub review_count: i32,
}

/// How many reviews courses `1..=course` have together (0 for course 0): the rounded
/// integral of the Zipf-like curve, so counts add up to `spec.reviews` exactly.
pub fn reviews_before(spec: &Spec, course: u64) -> u64 {
    if course >= spec.courses {
        return spec.reviews;
    }
    let share = (course as f64 / ZIPF_OFFSET).ln_1p() / (spec.courses as f64 / ZIPF_OFFSET).ln_1p();
    (spec.reviews as f64 * share).round() as u64
}

/// Generates courses in id order and counts reviews per reviewer as it goes.
#[derive(Debug)]
pub struct Generator<'a> {
    spec: &'a Spec,
    /// Reviews generated so far per reviewer (index = id - 1).
    reviewer_counts: Vec<i32>,
}

impl<'a> Generator<'a> {
    pub fn new(spec: &'a Spec) -> Self {
        let reviewers = usize::try_from(spec.reviewers).unwrap_or(usize::MAX);
        Self {
            spec,
            reviewer_counts: vec![0; reviewers],
        }
    }

    /// The reviews of course `course_id` (1-based) into `reviews` (replacing what it held,
    /// reusing its comment buffers), in id order, which is date order, and the course's
    /// rating row.
    pub fn course(&mut self, course_id: u64, reviews: &mut Vec<Review>) -> Rating {
        let mut rng = ChaCha8Rng::seed_from_u64(self.spec.seed);
        rng.set_stream(course_id);
        let profile = &PROFILES[weighted(&mut rng, &PROFILE_SHARE)];
        let first_id = reviews_before(self.spec, course_id - 1) + 1;
        let count = reviews_before(self.spec, course_id) + 1 - first_id;
        let course = to_i64(course_id);
        let mut rating = Rating {
            course_id: course,
            review_count: 0,
            half_stars_sum: 0,
            distribution: [0; 9],
        };
        let count = usize::try_from(count).unwrap_or(usize::MAX);
        reviews.truncate(count);
        for index in 0..count {
            let slot = weighted(&mut rng, profile);
            let half_stars = slot as i16 + 2;
            let reviewer = rng.random_range(0..self.reviewer_counts.len());
            self.reviewer_counts[reviewer] += 1;
            rating.review_count += 1;
            rating.half_stars_sum += i64::from(half_stars);
            rating.distribution[slot] += 1;

            let age = HISTORY_SECS * rng.random::<f64>().powf(1.5); // more recent than old
            let created_at = self.spec.now - age as i64;
            let updated_at = if rng.random_bool(0.15) {
                created_at + ((self.spec.now - created_at) as f64 * rng.random::<f64>()) as i64
            } else {
                created_at
            };
            if index == reviews.len() {
                reviews.push(Review::default());
            }
            let review = &mut reviews[index];
            review.course_id = course;
            review.reviewer_id = to_i64(reviewer as u64 + 1);
            review.half_stars = half_stars;
            text::comment(&mut rng, half_stars, &mut review.comment);
            review.helpful = helpful(&mut rng);
            review.reported = rng.random_bool(0.01);
            review.created_at = created_at;
            review.updated_at = updated_at;
        }
        // Ids follow the dates, as they would in a live system, so the rows come out in
        // the order of `reviews_by_recent` and its build sorts presorted input.
        reviews.sort_by_key(|review| review.created_at);
        for (review, id) in reviews.iter_mut().zip(first_id..) {
            review.id = to_i64(id);
        }
        rating
    }

    /// How many reviews each reviewer got from the courses generated so far (index =
    /// id - 1); the sum over every course range is what [`reviewer`] needs.
    pub fn into_reviewer_counts(self) -> Vec<i32> {
        self.reviewer_counts
    }
}

/// Reviewer `id` (1-based), who wrote `review_count` of the generated reviews.
pub fn reviewer(spec: &Spec, id: u64, review_count: i32) -> Reviewer {
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed ^ REVIEWER_SALT);
    rng.set_stream(id);
    let id = to_i64(id);
    Reviewer {
        id,
        name: text::name(&mut rng),
        picture: text::picture(&mut rng, id),
        courses_taken: review_count + rng.random_range(0..=12),
        review_count,
    }
}

/// Most reviews have no helpful votes; the rest follow a Pareto tail (a few have
/// thousands).
fn helpful(rng: &mut impl Rng) -> i32 {
    if rng.random_bool(0.6) {
        return 0;
    }
    let u = 1.0 - rng.random::<f64>();
    (u.powf(-0.8).floor() as i32).min(10_000)
}

/// An index drawn in proportion to `weights`.
fn weighted(rng: &mut impl Rng, weights: &[u32]) -> usize {
    let total: u32 = weights.iter().sum();
    let mut draw = rng.random_range(0..total);
    for (index, &weight) in weights.iter().enumerate() {
        if draw < weight {
            return index;
        }
        draw -= weight;
    }
    weights.len() - 1
}

/// Ids stay far below `i64::MAX` for any scale `Spec` accepts.
fn to_i64(id: u64) -> i64 {
    i64::try_from(id).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Spec {
        Spec::from_scale(0.0001, 1)
            .map(|spec| spec.with_now(1_700_000_000))
            .unwrap()
    }

    fn generate(spec: &Spec) -> (Vec<Rating>, Vec<Review>, Vec<Reviewer>) {
        let mut generator = Generator::new(spec);
        let (mut ratings, mut all, mut batch) = (Vec::new(), Vec::new(), Vec::new());
        for course in 1..=spec.courses {
            ratings.push(generator.course(course, &mut batch));
            all.extend_from_slice(&batch);
        }
        let reviewers = (1..)
            .zip(generator.into_reviewer_counts())
            .map(|(id, count)| reviewer(spec, id, count))
            .collect();
        (ratings, all, reviewers)
    }

    #[test]
    fn demo_scale_has_the_documented_sizes() {
        let spec = spec();
        let (ratings, reviews, reviewers) = generate(&spec);
        assert_eq!(
            (ratings.len(), reviewers.len(), reviews.len()),
            (1000, 1000, 15_000)
        );
        let ids: Vec<i64> = reviews.iter().map(|review| review.id).collect();
        assert_eq!(ids, (1..=15_000).collect::<Vec<_>>());
    }

    #[test]
    fn reviews_per_course_fall_with_the_id_and_are_heavy_tailed() {
        let spec = spec();
        let counts: Vec<u64> = (1..=spec.courses)
            .map(|c| reviews_before(&spec, c) - reviews_before(&spec, c - 1))
            .collect();
        assert_eq!(counts.iter().sum::<u64>(), spec.reviews);
        let max = counts.iter().copied().max().unwrap();
        assert_eq!(counts[0], max, "course 1 has the most");
        assert!(
            counts.windows(2).all(|pair| pair[1] <= pair[0] + 1),
            "roughly falling"
        );
        let mut sorted = counts.clone();
        sorted.sort_unstable();
        let median = sorted[sorted.len() / 2];
        assert!(median < 15 && max > 20 * 15, "median {median}, max {max}");
    }

    #[test]
    fn a_course_generates_the_same_reviews_whatever_came_before() {
        let spec = spec();
        let (mut fresh, mut reused) = (Vec::new(), Vec::new());
        let mut generator = Generator::new(&spec);
        generator.course(1, &mut reused); // leaves long buffers behind
        let rating = generator.course(500, &mut reused);
        assert_eq!(Generator::new(&spec).course(500, &mut fresh), rating);
        assert_eq!(fresh, reused);
    }

    #[test]
    fn full_scale_top_course_has_over_100_000_reviews() {
        let spec = Spec::from_scale(1.0, 1).unwrap();
        let top = reviews_before(&spec, 1);
        assert!(top > 100_000, "{top}");
        assert_eq!(reviews_before(&spec, spec.courses), 150_000_000);
    }

    #[test]
    fn aggregates_match_the_reviews_exactly() {
        let spec = spec();
        let (ratings, reviews, reviewers) = generate(&spec);
        let mut per_course = vec![(0i32, 0i64, [0i32; 9]); ratings.len()];
        let mut per_reviewer = vec![0i32; reviewers.len()];
        for review in &reviews {
            let entry = &mut per_course[review.course_id as usize - 1];
            entry.0 += 1;
            entry.1 += i64::from(review.half_stars);
            entry.2[review.half_stars as usize - 2] += 1;
            per_reviewer[review.reviewer_id as usize - 1] += 1;
        }
        for (rating, (count, sum, distribution)) in ratings.iter().zip(per_course) {
            assert_eq!(
                (
                    rating.review_count,
                    rating.half_stars_sum,
                    rating.distribution
                ),
                (count, sum, distribution)
            );
        }
        for (reviewer, count) in reviewers.iter().zip(per_reviewer) {
            assert_eq!(reviewer.review_count, count);
            assert!(reviewer.courses_taken >= count);
        }
    }

    #[test]
    fn ratings_are_skewed_high_and_dates_within_five_years() {
        let spec = spec();
        let (_, reviews, _) = generate(&spec);
        let mean =
            reviews.iter().map(|r| f64::from(r.half_stars)).sum::<f64>() / reviews.len() as f64;
        assert!((7.0..9.0).contains(&mean), "mean half stars {mean}");
        assert!(reviews.iter().all(|r| (2..=10).contains(&r.half_stars)));
        let oldest = spec.now - HISTORY_SECS as i64 - 1;
        assert!(reviews.iter().all(|r| r.created_at >= oldest
            && r.created_at <= r.updated_at
            && r.updated_at <= spec.now));
        let reported = reviews.iter().filter(|r| r.reported).count();
        assert!((50..300).contains(&reported), "{reported} reported");
    }

    #[test]
    fn the_same_seed_gives_the_same_data_and_another_seed_does_not() {
        let spec = spec();
        assert_eq!(generate(&spec), generate(&spec));
        let other = Spec::from_scale(0.0001, 2)
            .map(|spec| spec.with_now(1_700_000_000))
            .unwrap();
        assert_ne!(generate(&spec).1, generate(&other).1);
    }
}
