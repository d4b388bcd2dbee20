//! Write authentication: `Authorization: Bearer <key>` with a key from the configuration.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;

/// The configured keys, kept only as SHA-256 digests: comparing fixed-length digests in
/// constant time reveals neither a key's bytes nor its length through timing.
#[derive(Clone)]
pub struct ApiKeys(std::sync::Arc<[[u8; 32]]>);

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKeys({} keys)", self.0.len())
    }
}

impl ApiKeys {
    pub fn new(keys: &[String]) -> Self {
        Self(keys.iter().map(|k| digest(k.as_bytes())).collect())
    }

    /// Checks every key without stopping at a match, so the time taken does not say
    /// which key matched.
    fn accepts(&self, presented: &[u8]) -> bool {
        let presented = digest(presented);
        self.0
            .iter()
            .fold(subtle::Choice::from(0), |found, key| {
                found | key.ct_eq(&presented)
            })
            .into()
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Middleware on every write route: reads pass, writes need a valid key.
pub async fn require_key_for_writes(
    State(keys): State<ApiKeys>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if request.method().is_safe() {
        return Ok(next.run(request).await);
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or(ApiError::Unauthorized(
            "writes need an Authorization: Bearer <key> header",
        ))?;
    // The scheme name is case-insensitive (RFC 9110 §11.1); the key is not.
    let key = presented
        .as_bytes()
        .split_at_checked(7)
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case(b"Bearer "))
        .map(|(_, key)| key)
        .ok_or(ApiError::Unauthorized(
            "the Authorization header must be Bearer <key>",
        ))?;
    if !keys.accepts(key) {
        return Err(ApiError::Unauthorized("the API key is not valid"));
    }
    Ok(next.run(request).await)
}
