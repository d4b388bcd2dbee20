//! Resource identifiers: positive 64-bit integers, in paths and in JSON bodies.

use serde::{Deserialize, Deserializer, Serialize};
use utoipa::openapi::KnownFormat;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(i64);

        super::schema::schema!($name, super::schema::integer(1, i64::MAX, KnownFormat::Int64));

        impl $name {
            /// The id, rejecting zero and negative numbers.
            pub fn new(value: i64) -> Result<Self, String> {
                if value > 0 {
                    Ok(Self(value))
                } else {
                    Err(format!("{} must be a positive integer, got {value}", $what))
                }
            }

            pub fn get(self) -> i64 {
                self.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let value = integer(deserializer, $what)?;
                Self::new(value).map_err(serde::de::Error::custom)
            }
        }

        /// For ids read back from the database.
        impl TryFrom<i64> for $name {
            type Error = String;
            fn try_from(value: i64) -> Result<Self, String> {
                Self::new(value)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// A course's id, chosen by the marketplace (the course exists once its rating row does).
    CourseId,
    "course id"
);
id_type!(
    /// A review's id, assigned by the database.
    ReviewId,
    "review id"
);
id_type!(
    /// A reviewer's id, assigned by the database.
    ReviewerId,
    "reviewer id"
);

/// Reads a JSON integer with an error that says which value was wrong and why. A number
/// written with a zero fraction (`42.0`) is an integer too, as JSON Schema (and so the
/// OpenAPI document) counts it; `42.5` and `"42"` are not.
pub(super) fn integer<'de, D: Deserializer<'de>>(
    deserializer: D,
    what: &str,
) -> Result<i64, D::Error> {
    struct Visitor<'a>(&'a str);
    impl serde::de::Visitor<'_> for Visitor<'_> {
        type Value = i64;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{} as an integer", self.0)
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<i64, E> {
            Ok(v)
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<i64, E> {
            i64::try_from(v).map_err(|_| E::custom(format!("{} {v} is out of range", self.0)))
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<i64, E> {
            // -2^63 ≤ v < 2^63, both exact in f64, is exactly the range of i64.
            let in_range = (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&v);
            if v.fract() == 0.0 && in_range {
                #[expect(
                    clippy::cast_possible_truncation,
                    reason = "whole and within i64, checked above"
                )]
                Ok(v as i64)
            } else if v.fract() == 0.0 {
                Err(E::custom(format!("{} {v} is out of range", self.0)))
            } else {
                Err(E::custom(format!("{} must be an integer, got {v}", self.0)))
            }
        }
    }
    // Numbers only: a JSON string "42" is a field of the wrong type. Path segments come
    // through axum's deserializer, which parses the text as an i64 before visiting.
    deserializer.deserialize_i64(Visitor(what))
}
