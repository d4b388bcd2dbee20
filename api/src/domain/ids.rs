//! Resource identifiers: positive 64-bit integers, in paths and in JSON bodies.

use serde::{Deserialize, Deserializer, Serialize};
use utoipa::openapi::KnownFormat;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(i64);

        super::schema::schema!($name, super::schema::integer(1, None, KnownFormat::Int64));

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
                let value = positive_id(deserializer, $what)?;
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

/// Reads an id with an error that says which id was wrong and why.
fn positive_id<'de, D: Deserializer<'de>>(deserializer: D, what: &str) -> Result<i64, D::Error> {
    struct Visitor<'a>(&'a str);
    impl serde::de::Visitor<'_> for Visitor<'_> {
        type Value = i64;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{} as a positive integer", self.0)
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<i64, E> {
            Ok(v)
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<i64, E> {
            i64::try_from(v).map_err(|_| E::custom(format!("{} {v} is out of range", self.0)))
        }
    }
    // Numbers only: a JSON string "42" is a field of the wrong type. Path segments come
    // through axum's deserializer, which parses the text as an i64 before visiting.
    deserializer.deserialize_i64(Visitor(what))
}
