//! The course-page cursor decoder: any text a client sends as `cursor` either fails or
//! yields a cursor this service could have issued, and that cursor survives a round trip.
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use courser_api::domain::{CREATED_AT_MICROS, Cursor, Sort, SortKey};
use libfuzzer_sys::fuzz_target;

fn check(text: &str) {
    let Ok(cursor) = Cursor::decode(text) else {
        return;
    };
    assert!(cursor.id > 0, "{cursor:?} from {text:?}");
    match (cursor.sort, cursor.key) {
        (Sort::Recent, SortKey::CreatedAt(at)) => {
            assert!(CREATED_AT_MICROS.contains(&at), "{cursor:?} from {text:?}");
        }
        (Sort::Helpful, SortKey::Helpful(h)) => assert!(h >= 0, "{cursor:?} from {text:?}"),
        (Sort::Highest | Sort::Lowest, SortKey::HalfStars(h)) => {
            assert!((2..=10).contains(&h), "{cursor:?} from {text:?}");
        }
        _ => panic!("sort and key disagree: {cursor:?} from {text:?}"),
    }
    assert_eq!(
        Cursor::decode(&cursor.encode()),
        Ok(cursor),
        "from {text:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    // As sent, and base64url-encoded so that the parser behind the base64 layer sees
    // every byte string too.
    if let Ok(text) = std::str::from_utf8(data) {
        check(text);
    }
    check(&URL_SAFE_NO_PAD.encode(data));
});
