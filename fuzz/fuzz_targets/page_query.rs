//! The course-page query string, parsed as the `Query` extractor does: any query either
//! fails or gives a page query within its bounds.
#![no_main]

use axum::extract::Query;
use axum::http::Uri;
use courser_api::domain::{Limit, PageQuery};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(uri) = format!("/course/1/reviews?{query}").parse::<Uri>() else {
        return;
    };
    let Ok(Query(page)) = Query::<PageQuery>::try_from_uri(&uri) else {
        return;
    };
    assert!(
        (1..=Limit::MAX).contains(&page.limit.get()),
        "{page:?} from {query:?}"
    );
    if let Some(stars) = page.stars {
        assert!((1..=5).contains(&stars.get()), "{page:?} from {query:?}");
    }
    if let Some(cursor) = page.after {
        assert_eq!(cursor.sort, page.sort, "from {query:?}");
        assert!(cursor.id > 0, "{page:?} from {query:?}");
    }
});
