//! A review's rating: a half-star step from 1 to 5.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::openapi::schema::{ObjectBuilder, Type};

/// A rating in half stars: 1, 1.5, 2, … 5. Stored as the number of half stars (2–10),
/// which keeps sums exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rating(i16);

super::schema::schema!(
    Rating,
    ObjectBuilder::new()
        .schema_type(Type::Number)
        .minimum(Some(1.0))
        .maximum(Some(5.0))
        .multiple_of(Some(0.5))
        .description(Some("Half-star steps from 1 to 5"))
        .into()
);

impl Rating {
    pub fn from_stars(stars: f64) -> Result<Self, String> {
        let halves = stars * 2.0;
        if halves.fract() != 0.0 || !(2.0..=10.0).contains(&halves) {
            return Err(format!(
                "rating must be a half-star step from 1 to 5 (1, 1.5, … 5), got {stars}"
            ));
        }
        #[expect(
            clippy::cast_possible_truncation,
            reason = "checked to be 2..=10 above"
        )]
        Ok(Self(halves as i16))
    }

    /// From the database column, which a CHECK constraint keeps within 2–10.
    pub fn from_half_stars(halves: i16) -> Self {
        Self(halves.clamp(2, 10))
    }

    pub fn half_stars(self) -> i16 {
        self.0
    }

    pub fn stars(self) -> f64 {
        f64::from(self.0) / 2.0
    }
}

impl Serialize for Rating {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.stars())
    }
}

impl<'de> Deserialize<'de> for Rating {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Self::from_stars(f64::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_every_half_star_from_one_to_five() {
        let all: Vec<i16> = (2..=10)
            .map(|h| Rating::from_stars(f64::from(h) / 2.0).map(Rating::half_stars))
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(all, (2..=10).collect::<Vec<_>>());
    }

    #[test]
    fn rejects_off_steps_and_out_of_range_values() {
        for bad in [0.0, 0.5, 4.3, 5.5, -1.0, f64::NAN, f64::INFINITY, 4.25] {
            assert!(Rating::from_stars(bad).is_err(), "{bad} was accepted");
        }
    }
}
