//! `application/problem+json` answers (RFC 9457) for the errors the proxy itself
//! gives: 502 no backend, 503 saturated, 504 timeout, 429 rate limited, 413 too large.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::protocols::http::v1::server::HttpSession;

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

    fn body(&self) -> Bytes {
        let doc = serde_json::json!({
            "type": "about:blank",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        });
        Bytes::from(doc.to_string())
    }

    /// Writes the whole answer, and closes the connection except after a 429 to a request
    /// without a body: that refusal comes before anything reached a backend and leaves
    /// nothing unread, and keeping the connection spares a limited client (and the proxy)
    /// a new connection for each of its next requests. After a backend failure the
    /// session may be in any state, and a body may be left unread.
    pub async fn send(
        &self,
        session: &mut HttpSession,
        request_id: Option<&http::HeaderValue>,
    ) -> pingora::Result<()> {
        let body = self.body();
        let mut header = ResponseHeader::build(self.status, Some(5))?;
        header.insert_header("content-type", "application/problem+json")?;
        header.insert_header("content-length", body.len().to_string())?;
        if !(self.status == 429 && session.is_body_empty()) {
            header.insert_header("connection", "close")?;
            session.set_server_keepalive(None);
        }
        if let Some(secs) = self.retry_after {
            header.insert_header("retry-after", secs.to_string())?;
        }
        if let Some(id) = request_id {
            header.insert_header(crate::request_id::HEADER, id.clone())?;
        }
        session.write_response_header(Box::new(header)).await?;
        session.write_body(&body).await?;
        session.finish_body().await?;
        Ok(())
    }
}
