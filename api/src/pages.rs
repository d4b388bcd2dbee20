//! Course pages as the cache wants them: built from Postgres as skeletons with each
//! reviewer left as a reference (`courser_cache::Part::Reviewer`), and reviewers as JSON
//! fragments, so that the cache can splice bytes instead of serialising on a hit.

use bytes::Bytes;
use courser_cache::{LoadedPage, Skeleton, Source};
use serde::Serialize;
use utoipa::ToSchema;

use crate::db::Db;
use crate::db::ratings::CourseRating;
use crate::db::reviewers::{self, Reviewer};
use crate::db::reviews::{self, ListedReview};
use crate::domain::{CourseId, PageQuery};
use crate::error::ApiError;

/// A course page, as the OpenAPI document describes it. The bytes sent are assembled by
/// `build_skeleton` in exactly this shape.
#[derive(Debug, Serialize, ToSchema)]
pub struct CoursePage {
    pub course_id: i64,
    pub rating: CourseRating,
    pub reviews: Vec<ListedReview>,
    /// Pass as `cursor` (with the same `sort`) for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// The cache key part that tells one page of a course from another.
pub fn variant(query: &PageQuery) -> String {
    format!(
        "{:?}.{}.{}.{}",
        query.sort,
        query.stars.map_or(0, |s| s.get()),
        query.limit.get(),
        query.after.map(|c| c.encode()).unwrap_or_default()
    )
}

/// Loads one course page (the one its query names) from Postgres.
#[derive(Debug)]
pub struct PageSource<'a> {
    pub db: &'a Db,
    pub course: CourseId,
    pub query: &'a PageQuery,
}

fn json<T: Serialize>(value: &T) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(value).map_err(|e| ApiError::Internal(e.into()))
}

/// `{"course_id":…,"rating":…,"reviews":[{…review…,"reviewer":<ref>},…],"next_cursor":…}`
fn build_skeleton(page: &CoursePage) -> Result<Skeleton, ApiError> {
    let mut skeleton = Skeleton::default();
    let mut head = format!("{{\"course_id\":{},\"rating\":", page.course_id).into_bytes();
    head.extend(json(&page.rating)?);
    head.extend_from_slice(b",\"reviews\":[");
    let mut pending = head;
    for (i, listed) in page.reviews.iter().enumerate() {
        if i > 0 {
            pending.push(b',');
        }
        let mut review = json(&listed.review)?;
        review.pop(); // the closing brace: the reviewer goes inside the object
        pending.extend(review);
        pending.extend_from_slice(b",\"reviewer\":");
        skeleton.push_json(std::mem::take(&mut pending));
        skeleton.push_reviewer(listed.reviewer.id);
        pending.push(b'}');
    }
    pending.extend_from_slice(b"],\"next_cursor\":");
    pending.extend(json(&page.next_cursor)?);
    pending.push(b'}');
    skeleton.push_json(pending);
    Ok(skeleton)
}

fn reviewer_fragment(reviewer: &Reviewer) -> Result<(i64, Bytes), ApiError> {
    Ok((reviewer.id, Bytes::from(json(reviewer)?)))
}

impl Source for PageSource<'_> {
    type Error = ApiError;

    async fn load_page(
        &self,
        _course: i64,
        _variant: &str,
    ) -> Result<Option<LoadedPage>, ApiError> {
        let Some(reviews::Page {
            rating,
            reviews: listed,
            next,
        }) = reviews::page(self.db, self.course, self.query).await?
        else {
            return Ok(None);
        };
        let reviewers = listed
            .iter()
            .map(|l| reviewer_fragment(&l.reviewer))
            .collect::<Result<Vec<_>, _>>()?;
        let page = CoursePage {
            course_id: self.course.get(),
            rating,
            reviews: listed,
            next_cursor: next.map(|cursor| cursor.encode()),
        };
        Ok(Some(LoadedPage {
            skeleton: build_skeleton(&page)?,
            reviewers,
        }))
    }

    async fn load_reviewers(&self, ids: &[i64]) -> Result<Vec<(i64, Bytes)>, ApiError> {
        reviewers::find_many(self.db, ids)
            .await?
            .iter()
            .map(reviewer_fragment)
            .collect()
    }
}
