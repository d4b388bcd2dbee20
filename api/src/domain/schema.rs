//! OpenAPI schemas of the domain types, written out so that the published document
//! carries the same bounds the parsers enforce.

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};

pub fn integer(minimum: i64, maximum: Option<i64>, format: KnownFormat) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(format)))
        .minimum(Some(minimum as f64))
        .maximum(maximum.map(|m| m as f64))
        .into()
}

pub fn text(min_length: usize, max_length: usize, description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(min_length))
        .max_length(Some(max_length))
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
