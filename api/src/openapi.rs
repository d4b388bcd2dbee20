//! The OpenAPI document's frame. Paths and schemas come from the `#[utoipa::path]`
//! handlers as they are mounted (see `routes::app`), so the document cannot drift from
//! the router.

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::Schema;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::Problem;

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Courser reviews API",
        description = "Course reviews: rating summaries, star distributions and review lists. \
            Reads are public; writes need `Authorization: Bearer <key>`. Every error is \
            `application/problem+json` (RFC 9457). Ratings are half-star steps from 1 to 5. \
            A course's aggregate counts all its reviews, reported ones included; course \
            pages list only unreported reviews."
    ),
    modifiers(&BearerKey),
    components(schemas(Problem)),
    tags(
        (name = "courses", description = "Course pages"),
        (name = "reviews", description = "Single reviews"),
        (name = "reviewers", description = "People who write reviews"),
        (name = "ratings", description = "Courses and their rating aggregates"),
    )
)]
pub struct ApiDoc;

struct BearerKey;

impl Modify for BearerKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Marks the update bodies, which must change something, with `minProperties: 1`. Done
/// here on the finished document because utoipa 5.5's `#[schema(min_properties = …)]`
/// writes `maxProperties` instead, and the schemas only exist once the routes are merged.
pub fn at_least_one_field(openapi: &mut utoipa::openapi::OpenApi) {
    let Some(components) = openapi.components.as_mut() else {
        return;
    };
    for name in ["ReviewChanges", "ReviewerUpdate"] {
        if let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(name) {
            object.min_properties = Some(1);
        }
    }
}
