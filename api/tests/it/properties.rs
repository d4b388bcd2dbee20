//! Property tests of the domain types that parse client input: each accepts exactly the
//! values the contract allows, keeps what it accepts verbatim, and never panics.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use courser_api::domain::{
    CREATED_AT_MICROS, Comment, CourseId, CoursesTaken, Cursor, Limit, Name, PageQuery, Picture,
    Rating, ReviewId, ReviewerId, Sort, SortKey, Stars,
};
use proptest::prelude::*;
use utoipa::PartialSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::Schema;

/// How many cases a property runs: `default`, or `PROPTEST_CASES` when set (for a
/// longer run by hand).
pub fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

/// Whitespace as Rust's `str::trim` sees it (Unicode White_Space).
fn blank(text: &str) -> bool {
    text.chars().all(char::is_whitespace)
}

fn text_is_valid(text: &str, max_chars: usize) -> bool {
    !blank(text) && text.chars().count() <= max_chars && !text.contains('\0')
}

/// A cursor that satisfies the invariants every decoded cursor must.
fn is_valid_cursor(cursor: &Cursor) -> bool {
    cursor.id > 0
        && match (cursor.sort, cursor.key) {
            (Sort::Recent, SortKey::CreatedAt(at)) => CREATED_AT_MICROS.contains(&at),
            (Sort::Helpful, SortKey::Helpful(h)) => h >= 0,
            (Sort::Highest | Sort::Lowest, SortKey::HalfStars(h)) => (2..=10).contains(&h),
            _ => false,
        }
}

fn any_sort() -> impl Strategy<Value = Sort> {
    prop_oneof![
        Just(Sort::Recent),
        Just(Sort::Helpful),
        Just(Sort::Highest),
        Just(Sort::Lowest)
    ]
}

fn valid_cursor() -> impl Strategy<Value = Cursor> {
    let key_and_sort = prop_oneof![
        CREATED_AT_MICROS.prop_map(|k| (Sort::Recent, SortKey::CreatedAt(k))),
        (0..=i32::MAX).prop_map(|k| (Sort::Helpful, SortKey::Helpful(k))),
        (2_i16..=10).prop_map(|k| (Sort::Highest, SortKey::HalfStars(k))),
        (2_i16..=10).prop_map(|k| (Sort::Lowest, SortKey::HalfStars(k))),
    ];
    (key_and_sort, 1..=i64::MAX).prop_map(|((sort, key), id)| Cursor { sort, key, id })
}

/// Plain texts that look almost like cursors: a sort name (or not), numbers of every
/// size and sign, extra or missing dots.
fn cursor_like_text() -> impl Strategy<Value = String> {
    let word = prop_oneof![
        Just("recent".to_owned()),
        Just("helpful".to_owned()),
        Just("highest".to_owned()),
        Just("lowest".to_owned()),
        "[a-z]{0,8}",
    ];
    let number = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<i128>().prop_map(|n| n.to_string()),
        "[-+]?[0-9]{0,25}",
        ".{0,4}",
    ];
    (
        word,
        prop::collection::vec(number, 0..4),
        prop::bool::ANY,
        ".{0,3}",
    )
        .prop_map(|(word, numbers, dotted, junk)| {
            let mut text = word;
            for number in numbers {
                text.push('.');
                text.push_str(&number);
            }
            if dotted {
                text.push_str(&junk);
            }
            text
        })
}

/// The `pattern` a domain type publishes in the OpenAPI document, as a regex.
fn published_pattern<T: PartialSchema>() -> regex::Regex {
    let RefOr::T(Schema::Object(object)) = T::schema() else {
        panic!("not an inline object schema");
    };
    regex::Regex::new(&object.pattern.expect("a pattern")).unwrap()
}

/// The texts that decide the patterns: white space of every kind, controls, NUL, and
/// pictures that are nearly URLs or colours.
fn tricky_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("\0".to_owned()),
        Just(" ".to_owned()),
        Just("\n".to_owned()),
        Just("\u{85}".to_owned()),
        Just("\u{a0}".to_owned()),
        Just("\u{2028}".to_owned()),
        Just("\u{3000}".to_owned()),
        Just("\u{feff}".to_owned()),
        Just("\u{7f}".to_owned()),
        Just("\u{9f}".to_owned()),
        Just("https://".to_owned()),
        Just("http://".to_owned()),
        Just("#".to_owned()),
        Just("rgb(".to_owned()),
        Just("hsla(".to_owned()),
        Just(")".to_owned()),
        Just("/".to_owned()),
        Just("?".to_owned()),
        "[a-fA-F0-9]{1,8}",
        "[a-z]{1,4}",
        "[ ,.%/;-]",
        any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..6).prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(512)))]

    #[test]
    fn the_published_patterns_accept_exactly_what_the_parsers_accept(text in tricky_text()) {
        let short = text.chars().count() <= 255;
        prop_assert_eq!(
            Picture::parse(text.clone()).is_ok(),
            short && published_pattern::<Picture>().is_match(&text),
            "picture {:?}", text
        );
        prop_assert_eq!(
            Name::parse(text.clone()).is_ok(),
            short && published_pattern::<Name>().is_match(&text),
            "name {:?}", text
        );
        prop_assert_eq!(
            Comment::parse(text.clone()).is_ok(),
            published_pattern::<Comment>().is_match(&text),
            "comment {:?}", text
        );
    }

    #[test]
    fn ids_accept_exactly_the_positive_integers(value in any::<i64>()) {
        prop_assert_eq!(CourseId::new(value).is_ok(), value > 0);
        prop_assert_eq!(ReviewId::new(value).map(ReviewId::get).ok(), (value > 0).then_some(value));
        prop_assert_eq!(ReviewerId::new(value).is_ok(), value > 0);
        let from_json: Result<CourseId, _> = serde_json::from_str(&value.to_string());
        prop_assert_eq!(from_json.ok().map(CourseId::get), (value > 0).then_some(value));
    }

    #[test]
    fn ids_in_json_must_be_integers_that_fit_in_64_bits(
        big in (i64::MAX as u64 + 1)..=u64::MAX,
        fraction in any::<f64>().prop_filter("not whole", |f| f.fract() != 0.0),
        text in ".*",
    ) {
        prop_assert!(serde_json::from_str::<CourseId>(&big.to_string()).is_err());
        prop_assert!(serde_json::from_value::<CourseId>(serde_json::json!(fraction)).is_err());
        prop_assert!(serde_json::from_value::<ReviewId>(serde_json::json!(text)).is_err());
    }

    #[test]
    fn ratings_accept_exactly_the_half_stars_from_one_to_five(stars in any::<f64>()) {
        let halves = stars * 2.0;
        let valid = halves.fract() == 0.0 && (2.0..=10.0).contains(&halves);
        let rating = Rating::from_stars(stars);
        prop_assert_eq!(rating.is_ok(), valid, "{}", stars);
        if let Ok(rating) = rating {
            prop_assert_eq!(rating.stars(), stars);
            prop_assert_eq!(f64::from(rating.half_stars()), halves);
            let json = serde_json::to_string(&rating).unwrap();
            prop_assert_eq!(serde_json::from_str::<Rating>(&json).ok(), Some(rating));
        }
    }

    #[test]
    fn every_half_star_rating_survives_json_and_the_database_column(halves in 2_i16..=10) {
        let rating = Rating::from_half_stars(halves);
        prop_assert_eq!(rating.half_stars(), halves);
        let json = serde_json::to_value(rating).unwrap();
        prop_assert_eq!(serde_json::from_value::<Rating>(json).ok(), Some(rating));
    }

    #[test]
    fn texts_accept_non_blank_strings_within_their_length_and_keep_them_verbatim(
        text in prop_oneof![".{0,300}", "\\PC{0,40}", "[ \t\n\u{a0}\u{3000}]{0,5}", Just("a\0b".to_owned())],
    ) {
        let comment = Comment::parse(text.clone());
        prop_assert_eq!(comment.is_ok(), text_is_valid(&text, 5000));
        if let Ok(comment) = comment {
            prop_assert_eq!(comment.as_str(), &text);
        }
        let name = Name::parse(text.clone());
        prop_assert_eq!(name.is_ok(), text_is_valid(&text, 255));
        if let Ok(name) = name {
            prop_assert_eq!(name.as_str(), &text);
        }
    }

    #[test]
    fn texts_count_characters_not_bytes(c in any::<char>().prop_filter("visible", |c| !c.is_whitespace() && *c != '\0'), extra in 0_usize..3) {
        prop_assert!(Name::parse(c.to_string().repeat(255)).is_ok());
        prop_assert!(Name::parse(c.to_string().repeat(256 + extra)).is_err());
    }

    #[test]
    fn pictures_are_kept_verbatim_and_never_long_blank_or_with_controls(text in prop_oneof![
        ".{0,40}",
        "https?://[a-z.]{0,10}[/?#]?.{0,20}",
        "#[0-9a-fA-Fg]{0,9}",
        "(rgba?|hsla?)\\([0-9 ,.%/a-z;]{0,20}\\)?",
        "[a-zA-Z]{0,25}",
    ]) {
        if let Ok(picture) = Picture::parse(text.clone()) {
            prop_assert_eq!(picture.as_str(), &text);
            prop_assert!(text.chars().count() <= 255);
            prop_assert!(!text.chars().any(char::is_control), "{:?}", text);
            prop_assert!(!text.contains([';', '"', '<', '>']) || text.starts_with("http"), "{:?}", text);
        }
    }

    #[test]
    fn counts_accept_exactly_zero_to_i32_max(value in any::<i64>()) {
        let parsed: Result<CoursesTaken, _> = serde_json::from_str(&value.to_string());
        prop_assert_eq!(parsed.ok().map(CoursesTaken::get).map(i64::from), (0..=i64::from(i32::MAX)).contains(&value).then_some(value));
    }

    #[test]
    fn limits_and_stars_accept_exactly_their_ranges(value in any::<i64>()) {
        prop_assert_eq!(Limit::new(value).ok().map(|l| i64::from(l.get())), (1..=100).contains(&value).then_some(value));
        prop_assert_eq!(Stars::new(value).ok().map(|s| i64::from(s.get())), (1..=5).contains(&value).then_some(value));
    }

    #[test]
    fn every_valid_cursor_survives_encoding(cursor in valid_cursor()) {
        let text = cursor.encode();
        prop_assert!(text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{}", text);
        prop_assert_eq!(Cursor::decode(&text), Ok(cursor));
    }

    #[test]
    fn arbitrary_bytes_decode_to_an_error_or_a_valid_cursor(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        // Through the base64 layer, so that the parser behind it sees every byte string.
        let text = URL_SAFE_NO_PAD.encode(&bytes);
        if let Ok(cursor) = Cursor::decode(&text) {
            prop_assert!(is_valid_cursor(&cursor), "{:?} from {:?}", cursor, bytes);
            prop_assert_eq!(Cursor::decode(&cursor.encode()), Ok(cursor));
        }
    }

    #[test]
    fn arbitrary_text_decodes_to_an_error_or_a_valid_cursor(text in prop_oneof![".*", "[A-Za-z0-9_=+/-]{0,40}"]) {
        if let Ok(cursor) = Cursor::decode(&text) {
            prop_assert!(is_valid_cursor(&cursor), "{:?} from {:?}", cursor, text);
        }
    }

    #[test]
    fn near_miss_cursors_decode_to_an_error_or_a_valid_cursor(plain in cursor_like_text()) {
        let text = URL_SAFE_NO_PAD.encode(&plain);
        match Cursor::decode(&text) {
            Ok(cursor) => {
                prop_assert!(is_valid_cursor(&cursor), "{:?} from {:?}", cursor, plain);
                prop_assert_eq!(Cursor::decode(&cursor.encode()), Ok(cursor));
            }
            Err(detail) => prop_assert!(detail.contains("cursor"), "{}", detail),
        }
    }

    #[test]
    fn page_queries_accept_only_cursors_of_their_own_sort(cursor in valid_cursor(), sort in any_sort()) {
        let query = format!("sort={}&cursor={}", sort_name(sort), cursor.encode());
        let parsed: Result<PageQuery, _> = serde_urlencoded_query(&query);
        prop_assert_eq!(parsed.is_ok(), cursor.sort == sort, "{}", query);
    }
}

fn sort_name(sort: Sort) -> &'static str {
    match sort {
        Sort::Recent => "recent",
        Sort::Helpful => "helpful",
        Sort::Highest => "highest",
        Sort::Lowest => "lowest",
    }
}

/// Parses a query string the way axum's `Query` extractor does.
fn serde_urlencoded_query(query: &str) -> Result<PageQuery, String> {
    let uri: axum::http::Uri = format!("/x?{query}").parse().map_err(|e| format!("{e}"))?;
    axum::extract::Query::<PageQuery>::try_from_uri(&uri)
        .map(|q| q.0)
        .map_err(|e| e.body_text())
}
