//! OpenAPI schemas of the domain types, written out so that the published document
//! carries the same bounds the parsers enforce.

use utoipa::Number;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};

pub fn integer(minimum: i64, maximum: i64, format: KnownFormat) -> RefOr<Schema> {
    // `isize` is 64 bits on every target this service builds for; exact integers in the
    // document keep i64::MAX from turning into the float 2^63, one past it.
    let exact = |n: i64| isize::try_from(n).map_or(Number::Float(n as f64), Number::Int);
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(format)))
        .minimum(Some(exact(minimum)))
        .maximum(Some(exact(maximum)))
        .into()
}

/// White_Space as Unicode (and so Rust's `char::is_whitespace` and `str::trim`) defines
/// it, spelled out because `\s` means slightly different sets in different regex engines.
const WHITE_SPACE: &str = r"\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";

/// Free text as `text::checked_text` accepts it: not blank, no NUL.
pub fn text_pattern() -> String {
    format!(r"^[^\x00]*[^\x00{WHITE_SPACE}][^\x00]*$")
}

pub fn text(max_length: usize, description: &str, pattern: String) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(max_length))
        .pattern(Some(pattern))
        .description(Some(description))
        .into()
}

/// Implements `ToSchema` for a type from an expression building its schema.
macro_rules! schema {
    ($type:ty, $schema:expr) => {
        impl utoipa::PartialSchema for $type {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                $schema
            }
        }
        impl utoipa::ToSchema for $type {}
    };
}
pub(crate) use schema;
