//! `application/problem+json` answers (RFC 9457) for the errors the proxy itself
//! gives: 502 no backend, 503 saturated, 504 timeout, 429 rate limited, 413 too large,
//! 400 unreadable, 431 header block too large, 408 too slow.

use crate::request_id::RequestId;

/// One problem document.
#[derive(Debug, Clone, Copy)]
pub struct Problem {
    /// HTTP status.
    pub status: u16,
    /// Short, fixed summary.
    pub title: &'static str,
    /// What happened to this request.
    pub detail: &'static str,
    /// Seconds for `Retry-After`, when there is one.
    pub retry_after: Option<u64>,
}

impl Problem {
    /// The problem for a status the proxy answers with.
    pub fn for_status(status: u16) -> Self {
        let (title, detail) = match status {
            413 => (
                "Payload Too Large",
                "the request body is larger than this service accepts",
            ),
            429 => (
                "Too Many Requests",
                "this client sent more requests than its rate limit allows",
            ),
            502 => (
                "Bad Gateway",
                "no backend could be reached to serve this request",
            ),
            503 => (
                "Service Unavailable",
                "every backend is at its limit of requests in flight",
            ),
            504 => ("Gateway Timeout", "the backend did not answer in time"),
            400 => ("Bad Request", "the request could not be read"),
            431 => (
                "Request Header Fields Too Large",
                "the request's header block is larger than this service accepts",
            ),
            405 => (
                "Method Not Allowed",
                "the proxy does not tunnel CONNECT requests",
            ),
            408 => ("Request Timeout", "the request was not received in time"),
            _ => ("Error", "the proxy could not serve this request"),
        };
        Self {
            status,
            title,
            detail,
            retry_after: None,
        }
    }

    /// The whole answer, head and body, appended to `out`, closing the connection when
    /// `close`.
    pub fn render(&self, request_id: Option<&RequestId>, close: bool, out: &mut Vec<u8>) {
        let body = serde_json::json!({
            "type": "about:blank",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        })
        .to_string();
        let mut head = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: application/problem+json\r\ncontent-length: {}\r\n",
            self.status,
            self.title,
            body.len()
        );
        head.push_str(crate::proxy::connection_header(close));
        if let Some(secs) = self.retry_after {
            head.push_str(&format!("retry-after: {secs}\r\n"));
        }
        if let Some(id) = request_id {
            head.push_str(&format!(
                "{}: {}\r\n",
                crate::request_id::HEADER,
                id.as_str()
            ));
        }
        head.push_str("\r\n");
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(body.as_bytes());
    }
}
