//! Free-text fields: review comments, reviewer names and pictures.

use serde::{Deserialize, Deserializer, Serialize};

/// Rejects what Postgres `text` cannot store (NUL) and strings that are only blank.
fn checked_text(field: &str, value: String, max_chars: usize) -> Result<String, String> {
    let chars = value.chars().count();
    if value.trim().is_empty() {
        Err(format!("{field} must not be empty or blank"))
    } else if chars > max_chars {
        Err(format!(
            "{field} is {chars} characters long; at most {max_chars} are allowed"
        ))
    } else if value.contains('\0') {
        Err(format!("{field} must not contain the NUL character"))
    } else {
        Ok(value)
    }
}

macro_rules! text_type {
    ($(#[$doc:meta])* $name:ident, $field:literal, $max:literal, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        super::schema::schema!(
            $name,
            super::schema::text($max, $what, super::schema::text_pattern())
        );

        impl $name {
            pub fn parse(value: String) -> Result<Self, String> {
                checked_text($field, value, $max).map(Self)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                Self::parse(String::deserialize(deserializer)?).map_err(serde::de::Error::custom)
            }
        }
    };
}

text_type!(
    /// A review's comment: 1–5000 characters.
    Comment,
    "comment",
    5000,
    "1–5000 characters, not only white space, without NUL"
);
text_type!(
    /// A reviewer's display name: 1–255 characters.
    Name,
    "name",
    255,
    "1–255 characters, not only white space, without NUL"
);

/// A reviewer's picture: an http(s) URL, or a CSS colour (`#abc`, `#aabbcc`, `#aabbccdd`,
/// `rgb(…)`, `rgba(…)`, `hsl(…)`, `hsla(…)`, or a named colour such as `teal`); ≤ 255 chars.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Picture(String);

super::schema::schema!(
    Picture,
    super::schema::text(
        255,
        "An http(s) URL or a CSS colour such as #3b82f6",
        picture_pattern()
    )
);

/// What `Picture::parse` accepts, as a regular expression for the OpenAPI document (and
/// checked against the parser by a property test): `is_http_url`, then each form of
/// `is_css_colour`.
fn picture_pattern() -> String {
    // Rust's `is_whitespace() || is_control()`: C0, space, DEL and C1 (with NEL and
    // NBSP), and the rest of Unicode's White_Space.
    const EXCLUDED: &str = r"\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";
    format!(
        r"^(?:https?://[^/?#{EXCLUDED}][^{EXCLUDED}]*|#(?:[0-9a-fA-F]{{3,4}}|[0-9a-fA-F]{{6}}|[0-9a-fA-F]{{8}})|(?:rgba?|hsla?)\([A-Za-z0-9 ,.%()/-]*\)|[A-Za-z]{{3,20}})$"
    )
}

impl Picture {
    pub fn parse(value: String) -> Result<Self, String> {
        let value = checked_text("picture", value, 255)?;
        if is_http_url(&value) || is_css_colour(&value) {
            Ok(Self(value))
        } else {
            Err(format!(
                "picture must be an http(s) URL or a CSS colour such as #3b82f6, got {value:?}"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Picture {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Self::parse(String::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

fn is_http_url(value: &str) -> bool {
    let rest = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"));
    rest.is_some_and(|rest| {
        let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
        !host.is_empty() && !rest.chars().any(|c| c.is_whitespace() || c.is_control())
    })
}

fn is_css_colour(value: &str) -> bool {
    if let Some(hex) = value.strip_prefix('#') {
        return matches!(hex.len(), 3 | 4 | 6 | 8) && hex.chars().all(|c| c.is_ascii_hexdigit());
    }
    let functional = ["rgb(", "rgba(", "hsl(", "hsla("]
        .iter()
        .any(|prefix| value.starts_with(prefix))
        && value.ends_with(')')
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " ,.%()/-".contains(c));
    let named = (3..=20).contains(&value.len()) && value.chars().all(|c| c.is_ascii_alphabetic());
    functional || named
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pictures_are_urls_or_colours() {
        for good in [
            "https://x.io/a.png",
            "http://cdn/p?s=1",
            "#abc",
            "#AABBCC",
            "rgb(1, 2, 3)",
            "teal",
        ] {
            assert!(Picture::parse(good.into()).is_ok(), "{good} was rejected");
        }
        for bad in [
            "ftp://x",
            "https://",
            "#ggg",
            "javascript:alert(1)",
            "red; x",
            "",
            "https://a b",
        ] {
            assert!(Picture::parse(bad.into()).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn text_is_counted_in_characters_not_bytes() {
        assert!(Comment::parse("é".repeat(5000)).is_ok());
        assert!(Comment::parse("é".repeat(5001)).is_err());
        assert!(Name::parse("  ".into()).is_err());
        assert!(Name::parse("a\0b".into()).is_err());
    }
}
