//! The parts of Courser's JSON answers the checker and the targeting read (serde
//! ignores the rest).

use serde::Deserialize;

/// A page of `GET /course/{id}/reviews`, the fields the checker and targeting use.
#[derive(Debug, Deserialize)]
pub struct Page {
    #[serde(default)]
    pub reviews: Vec<PageReview>,
    #[serde(default)]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct PageReview {
    pub id: u64,
    #[serde(default)]
    pub helpful: u64,
    #[serde(default)]
    pub reviewer: Option<ReviewerBody>,
}

/// `GET /review/{id}` and the answers of review writes.
#[derive(Debug, Deserialize)]
pub struct ReviewBody {
    pub id: u64,
    #[serde(default)]
    pub course_id: u64,
    #[serde(default)]
    pub rating: f64,
    #[serde(default)]
    pub helpful: u64,
}

#[derive(Debug, Deserialize)]
pub struct ReviewerBody {
    pub id: u64,
    #[serde(default)]
    pub name: String,
}
