//! The course-page query: page size, sort order, star filter and the keyset cursor.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};

/// How many reviews a page holds: 1–100.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit(u8);

impl Limit {
    pub const MAX: u8 = 100;

    pub fn new(value: i64) -> Result<Self, String> {
        u8::try_from(value)
            .ok()
            .filter(|v| (1..=Self::MAX).contains(v))
            .map(Self)
            .ok_or_else(|| format!("limit must be from 1 to {}, got {value}", Self::MAX))
    }

    pub fn get(self) -> u8 {
        self.0
    }
}

impl Default for Limit {
    fn default() -> Self {
        Self(10)
    }
}

/// The order of a course page's reviews. Ties on the sort key are broken by review id,
/// so the order is total and keyset pages never skip or repeat a review.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Sort {
    /// Newest first.
    #[default]
    Recent,
    /// Most found helpful first.
    Helpful,
    /// Best rated first.
    Highest,
    /// Worst rated first.
    Lowest,
}

impl Sort {
    fn name(self) -> &'static str {
        match self {
            Sort::Recent => "recent",
            Sort::Helpful => "helpful",
            Sort::Highest => "highest",
            Sort::Lowest => "lowest",
        }
    }
}

/// Keeps only reviews whose rating rounds down to this many stars: 1–5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stars(u8);

impl Stars {
    pub fn new(value: i64) -> Result<Self, String> {
        u8::try_from(value)
            .ok()
            .filter(|v| (1..=5).contains(v))
            .map(Self)
            .ok_or_else(|| format!("stars must be from 1 to 5, got {value}"))
    }

    pub fn get(self) -> u8 {
        self.0
    }
}

/// The sort-key value of the last review of a page, for the page after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// `created_at` in microseconds since the Unix epoch (Postgres' own precision),
    /// within `CREATED_AT_MICROS`.
    CreatedAt(i64),
    Helpful(i32),
    HalfStars(i16),
}

/// The timestamps a cursor may carry: 0001-01-01 to 9999-12-31 UTC, the range that both
/// Postgres and `time` can hold. Every review's `created_at` lies within it; a cursor
/// outside it was made by hand, and Postgres would refuse to compare with it.
pub const CREATED_AT_MICROS: std::ops::RangeInclusive<i64> =
    -62_135_596_800_000_000..=253_402_300_799_999_999;

/// Where the next page starts: the sort key and id of the last review shown. Opaque to
/// clients (base64url of `sort.key.id`); only valid with the sort order it was made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub sort: Sort,
    pub key: SortKey,
    pub id: i64,
}

impl Cursor {
    pub fn encode(&self) -> String {
        let key = match self.key {
            SortKey::CreatedAt(v) => v,
            SortKey::Helpful(v) => v.into(),
            SortKey::HalfStars(v) => v.into(),
        };
        URL_SAFE_NO_PAD.encode(format!("{}.{key}.{}", self.sort.name(), self.id))
    }

    pub fn decode(text: &str) -> Result<Self, String> {
        let invalid = || format!("cursor {text:?} is not a cursor this service issued");
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| invalid())?;
        let plain = std::str::from_utf8(&bytes).map_err(|_| invalid())?;
        let mut parts = plain.split('.');
        let (Some(sort), Some(key), Some(id), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid());
        };
        let key: i64 = key.parse().map_err(|_| invalid())?;
        let id: i64 = id.parse().ok().filter(|id| *id > 0).ok_or_else(invalid)?;
        let (sort, key) = match sort {
            "recent" if CREATED_AT_MICROS.contains(&key) => (Sort::Recent, SortKey::CreatedAt(key)),
            "helpful" => (
                Sort::Helpful,
                SortKey::Helpful(key.try_into().map_err(|_| invalid())?),
            ),
            "highest" | "lowest" => {
                let halves = i16::try_from(key).ok().filter(|h| (2..=10).contains(h));
                let sort = if sort == "highest" {
                    Sort::Highest
                } else {
                    Sort::Lowest
                };
                (sort, SortKey::HalfStars(halves.ok_or_else(invalid)?))
            }
            _ => return Err(invalid()),
        };
        if matches!(key, SortKey::Helpful(h) if h < 0) {
            return Err(invalid());
        }
        Ok(Self { sort, key, id })
    }
}

/// The query string of `GET /course/{course_id}/reviews`, as the client sent it.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RawPageQuery {
    /// Reviews per page, 1–100 (default 10).
    #[param(minimum = 1, maximum = 100, default = 10)]
    #[serde(default, deserialize_with = "number_from_query")]
    limit: Option<i64>,
    /// Sort order (default `recent`).
    #[serde(default)]
    #[param(inline)]
    sort: Option<Sort>,
    /// Only reviews whose rating rounds down to this many stars, 1–5.
    #[param(minimum = 1, maximum = 5)]
    #[serde(default, deserialize_with = "number_from_query")]
    stars: Option<i64>,
    /// Opaque cursor from a previous page's `next_cursor`, with the same `sort`. Any other
    /// value answers 400.
    #[param(min_length = 1, pattern = "^[A-Za-z0-9_-]+$")]
    cursor: Option<String>,
}

/// A valid course-page query.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawPageQuery")]
pub struct PageQuery {
    pub limit: Limit,
    pub sort: Sort,
    pub stars: Option<Stars>,
    pub after: Option<Cursor>,
}

impl TryFrom<RawPageQuery> for PageQuery {
    type Error = String;

    fn try_from(raw: RawPageQuery) -> Result<Self, String> {
        let sort = raw.sort.unwrap_or_default();
        let after = raw.cursor.as_deref().map(Cursor::decode).transpose()?;
        if let Some(cursor) = after.filter(|c| c.sort != sort) {
            return Err(format!(
                "cursor belongs to sort={}, but this request asks for sort={}",
                cursor.sort.name(),
                sort.name()
            ));
        }
        Ok(Self {
            limit: raw.limit.map(Limit::new).transpose()?.unwrap_or_default(),
            sort,
            stars: raw.stars.map(Stars::new).transpose()?,
            after,
        })
    }
}

/// Query-string values arrive as text; this reads one as an integer with a message that
/// quotes what was sent.
fn number_from_query<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.parse()
        .map(Some)
        .map_err(|_| serde::de::Error::custom(format!("expected an integer, got {text:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_for_every_sort() {
        for cursor in [
            Cursor {
                sort: Sort::Recent,
                key: SortKey::CreatedAt(1_700_000_000_123_456),
                id: 9,
            },
            Cursor {
                sort: Sort::Helpful,
                key: SortKey::Helpful(0),
                id: 1,
            },
            Cursor {
                sort: Sort::Highest,
                key: SortKey::HalfStars(10),
                id: i64::MAX,
            },
            Cursor {
                sort: Sort::Lowest,
                key: SortKey::HalfStars(2),
                id: 3,
            },
        ] {
            assert_eq!(Cursor::decode(&cursor.encode()), Ok(cursor));
        }
    }

    #[test]
    fn cursors_this_service_did_not_issue_are_rejected() {
        let forged = |s: &str| URL_SAFE_NO_PAD.encode(s);
        for bad in [
            "".to_string(),
            "!!!".to_string(),
            forged("recent.1"),
            forged("recent.1.0"),
            forged("highest.11.5"),
            forged("helpful.-1.5"),
            forged("helpful.99999999999.5"),
            forged("newest.1.5"),
            forged("recent.1.5.6"),
            forged("recent.-62135596800000001.5"),
            forged("recent.253402300800000000.5"),
            forged("recent.-9223372036854775808.5"),
        ] {
            assert!(Cursor::decode(&bad).is_err(), "{bad} was accepted");
        }
    }
}
