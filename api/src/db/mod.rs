//! Queries, one module per table, each function taking an [`Exec`] (`&Db`, `&mut Conn` or
//! `&mut Tx`) so handlers can run them on the pool or inside a transaction, and running
//! its statement through `Exec::run`, which measures it (see `exec`). Writes that touch
//! several tables lock rows in one order everywhere — the course's rating row, then
//! reviews, then reviewers (by id) — so concurrent writes queue up instead of deadlocking.

mod exec;
mod metrics;
pub mod ratings;
mod reachability;
pub mod reviewers;
pub mod reviews;

pub(crate) use exec::Rows;
pub use exec::{Conn, Db, Exec, Tx};
pub use metrics::DbMetrics;

macro_rules! query_names {
    ($($variant:ident => $name:literal,)*) => {
        /// The name each statement is measured under: the `query` label of the database
        /// metrics, one value per statement the code can run, so the label stays bounded.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum QueryName {
            $($variant,)*
        }

        impl QueryName {
            /// Every name, to create each series before its first use.
            pub const ALL: &[QueryName] = &[$(QueryName::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(QueryName::$variant => $name,)*
                }
            }
        }
    };
}

query_names! {
    Ping => "ping",
    Begin => "transaction.begin",
    Commit => "transaction.commit",
    RatingsFind => "ratings.find",
    RatingsCreate => "ratings.create",
    RatingsLock => "ratings.lock",
    RatingsAddReview => "ratings.add_review",
    RatingsRemoveReview => "ratings.remove_review",
    RatingsMoveReview => "ratings.move_review",
    RatingsRecompute => "ratings.recompute",
    RatingsDelete => "ratings.delete",
    ReviewersFind => "reviewers.find",
    ReviewersFindMany => "reviewers.find_many",
    ReviewersCreate => "reviewers.create",
    ReviewersUpdate => "reviewers.update",
    ReviewersDelete => "reviewers.delete",
    ReviewersAddToReviewCount => "reviewers.add_to_review_count",
    ReviewersLockOfCourse => "reviewers.lock_reviewers_of_course",
    ReviewsFind => "reviews.find",
    ReviewsInsert => "reviews.insert",
    ReviewsCourseOf => "reviews.course_of",
    ReviewsLock => "reviews.lock",
    ReviewsUpdate => "reviews.update",
    ReviewsDelete => "reviews.delete",
    ReviewsMarkHelpful => "reviews.mark_helpful",
    ReviewsReport => "reviews.report",
    ReviewsDeleteOfCourse => "reviews.delete_course_reviews",
    ReviewsPageRecent => "reviews.page_recent",
    ReviewsPageRecentStars => "reviews.page_recent_stars",
    ReviewsPageHelpful => "reviews.page_helpful",
    ReviewsPageHelpfulStars => "reviews.page_helpful_stars",
    ReviewsPageHighest => "reviews.page_highest",
    ReviewsPageLowest => "reviews.page_lowest",
}
