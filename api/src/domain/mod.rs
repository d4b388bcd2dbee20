//! Values the API accepts from clients, each parsed once at the edge into a type that
//! cannot hold a bad value, so handlers and queries only ever see valid input.

mod counts;
mod ids;
mod listing;
mod rating;
mod schema;
mod text;

pub use counts::CoursesTaken;
pub use ids::{CourseId, ReviewId, ReviewerId};
pub use listing::{
    CREATED_AT_MICROS, Cursor, Limit, PageQuery, RawPageQuery, Sort, SortKey, Stars,
};
pub use rating::Rating;
pub use text::{Comment, Name, Picture};
