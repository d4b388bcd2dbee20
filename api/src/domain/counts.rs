//! Non-negative counts that clients set.

use serde::{Deserialize, Deserializer, Serialize};
use utoipa::openapi::KnownFormat;

/// How many courses a reviewer has taken: 0 to 2³¹ − 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct CoursesTaken(i32);

super::schema::schema!(
    CoursesTaken,
    super::schema::integer(0, i32::MAX.into(), KnownFormat::Int32)
);

impl CoursesTaken {
    pub fn get(self) -> i32 {
        self.0
    }
}

impl<'de> Deserialize<'de> for CoursesTaken {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = super::ids::integer(deserializer, "courses_taken")?;
        i32::try_from(value)
            .ok()
            .filter(|v| *v >= 0)
            .map(Self)
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "courses_taken must be from 0 to {}, got {value}",
                    i32::MAX
                ))
            })
    }
}
