//! Request ids: the client's `x-request-id` is kept when it is 1–64 characters of
//! `[A-Za-z0-9_-]`, otherwise a new one is made from a per-process random prefix and a
//! counter (unique without a random draw per request).

use std::hash::{BuildHasher, RandomState};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The header carrying the id, both ways.
pub const HEADER: &str = "x-request-id";

/// Longest id kept from a client.
const MAX_LEN: usize = 64;

/// Whether a client-sent id may be passed on as it is.
pub fn is_valid(value: &[u8]) -> bool {
    !value.is_empty()
        && value.len() <= MAX_LEN
        && value
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
}

/// A request id, held inline: no allocation per request.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RequestId {
    bytes: [u8; MAX_LEN],
    len: u8,
}

impl RequestId {
    /// The client's id, when it is valid.
    pub fn from_client(value: &[u8]) -> Option<Self> {
        is_valid(value).then(|| {
            let mut bytes = [0u8; MAX_LEN];
            bytes[..value.len()].copy_from_slice(value);
            Self {
                bytes,
                len: value.len() as u8,
            }
        })
    }

    /// A fresh id: 16 hex digits of process prefix, 16 of sequence.
    pub fn generate() -> Self {
        static PREFIX: OnceLock<u64> = OnceLock::new();
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let prefix = *PREFIX.get_or_init(|| RandomState::new().hash_one(std::process::id()));
        let seq = SEQ.fetch_add(1, Relaxed);
        let mut bytes = [0u8; MAX_LEN];
        hex(prefix, &mut bytes[..16]);
        hex(seq, &mut bytes[16..32]);
        Self { bytes, len: 32 }
    }

    /// The id's bytes (ASCII letters, digits, `-` and `_`).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or("-")
    }
}

impl std::fmt::Debug for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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
        let (a, b) = (RequestId::generate(), RequestId::generate());
        assert!(is_valid(a.as_bytes()) && is_valid(b.as_bytes()));
        assert_ne!(a, b);
        let kept = RequestId::from_client(b"abc-1").unwrap();
        assert_eq!(kept.as_str(), "abc-1");
    }

    #[test]
    fn odd_client_ids_are_refused() {
        assert!(is_valid(b"abc-DEF_123"));
        assert!(!is_valid(b""));
        assert!(!is_valid(b"has space"));
        assert!(!is_valid(&[b'a'; 65]));
    }
}
