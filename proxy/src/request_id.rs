//! Request ids: the client's `x-request-id` is kept when it is 1–64 characters of
//! `[A-Za-z0-9_-]`, otherwise a new one is made from a per-process random prefix and a
//! counter (unique without a random draw per request).

use std::hash::{BuildHasher, RandomState};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use http::HeaderValue;

/// The header carrying the id, both ways.
pub const HEADER: &str = "x-request-id";

/// Whether a client-sent id may be passed on as it is.
pub fn is_valid(value: &[u8]) -> bool {
    !value.is_empty()
        && value.len() <= 64
        && value
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
}

/// A fresh id: 16 hex digits of process prefix, 16 of sequence.
pub fn generate() -> HeaderValue {
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| RandomState::new().hash_one(std::process::id()));
    let seq = SEQ.fetch_add(1, Relaxed);
    let mut buf = [0u8; 32];
    hex(prefix, &mut buf[..16]);
    hex(seq, &mut buf[16..]);
    // 32 ASCII hex digits are always a valid header value.
    HeaderValue::from_bytes(&buf).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

fn hex(mut v: u64, out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for slot in out.iter_mut().rev() {
        *slot = DIGITS[(v & 0xf) as usize];
        v >>= 4;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_valid_and_distinct() {
        let (a, b) = (generate(), generate());
        assert!(is_valid(a.as_bytes()) && is_valid(b.as_bytes()));
        assert_ne!(a, b);
    }

    #[test]
    fn odd_client_ids_are_refused() {
        assert!(is_valid(b"abc-DEF_123"));
        assert!(!is_valid(b""));
        assert!(!is_valid(b"has space"));
        assert!(!is_valid(&[b'a'; 65]));
    }
}
