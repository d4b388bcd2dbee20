//! The HTTP/1.1 the proxy speaks on both sides: heads parsed in place with `httparse`,
//! bodies passed through as they arrive, framing checked.
//!
//! Pingora's HTTP/1 sessions turn every head into `http` header maps (with a second
//! case-preserving map) and back, clone them, and time each read; in P1 that was most of
//! the proxy's user-space CPU. The proxy needs much less: a request's method, target and
//! a few headers, then the head's bytes again without the hop-by-hop headers. So a head
//! stays the bytes it arrived as, with the ranges of its parts ([`Head`]), and bodies
//! (chunked ones included) are copied as they are, framing and all: both peers speak
//! HTTP/1.1, so nothing needs re-encoding, only the end of each body must be found
//! ([`Framing`], [`Chunked`]) so that connections can be kept.

use std::future::{Future, poll_fn};
use std::io;
use std::ops::Range;
use std::pin::{Pin, pin};
use std::task::Poll;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, Sleep};

/// Largest head accepted, request or response.
pub const MAX_HEAD: usize = 64 * 1024;
/// Most header lines in a head.
const MAX_HEADERS: usize = 128;
/// Bytes read at a time.
const READ_CHUNK: usize = 8 * 1024;
/// Body bytes gathered before they are written on.
const WRITE_CHUNK: usize = 64 * 1024;

/// Why a head or a body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The peer closed the connection or the read failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The bytes are not HTTP/1.x as this proxy accepts it.
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    /// The head is longer than [`MAX_HEAD`] or has more than 128 header lines.
    #[error("header block too large")]
    TooLarge,
}

/// How a message's body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// The body runs until the sender closes the connection (responses only).
    UntilClose,
}

/// A parsed head: its bytes as received, and where its parts are.
#[derive(Debug, Clone)]
pub struct Head {
    bytes: Bytes,
    /// A request's method; empty for a response.
    first: Range<usize>,
    /// A request's target, or a response's reason phrase.
    second: Range<usize>,
    /// The minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    /// A response's status code; 0 for a request.
    status: u16,
    headers: Vec<(Range<usize>, Range<usize>)>,
}

impl Head {
    /// A request's method.
    pub fn method(&self) -> &str {
        self.str(&self.first)
    }

    /// A request's target, as sent (path and query, usually).
    pub fn target(&self) -> &str {
        self.str(&self.second)
    }

    /// A request's path: the target without its query.
    pub fn path(&self) -> &str {
        let target = self.target();
        target.split_once('?').map_or(target, |(path, _)| path)
    }

    /// A response's status code (three digits).
    pub fn status(&self) -> u16 {
        self.status
    }

    /// A response's reason phrase.
    pub fn reason(&self) -> &str {
        self.str(&self.second)
    }

    fn str(&self, range: &Range<usize>) -> &str {
        // httparse checked these are tokens or visible ASCII.
        std::str::from_utf8(&self.bytes[range.clone()]).unwrap_or("")
    }

    /// Every header line, in order, as name and value.
    pub fn headers(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.headers
            .iter()
            .map(|(name, value)| (&self.bytes[name.clone()], &self.bytes[value.clone()]))
    }

    /// The values of every `name` line (case-insensitive), in order.
    pub fn values(&self, name: &str) -> impl Iterator<Item = &[u8]> {
        self.headers()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.values(name).next()
    }

    /// The elements of a comma-separated list header (such as `Connection`), over all its
    /// lines, trimmed; empty elements left out.
    pub fn tokens(&self, name: &str) -> impl Iterator<Item = &[u8]> {
        self.values(name)
            .flat_map(|v| v.split(|b| *b == b','))
            .map(<[u8]>::trim_ascii)
            .filter(|t| !t.is_empty())
    }

    /// Whether list header `name` holds `token` (case-insensitive).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.tokens(name)
            .any(|t| t.eq_ignore_ascii_case(token.as_bytes()))
    }

    /// Whether the sender wants the connection kept after this message.
    pub fn keep_alive(&self) -> bool {
        if self.minor == 0 {
            self.has_token("connection", "keep-alive")
        } else {
            !self.has_token("connection", "close")
        }
    }

    /// How a request's body is framed. Both `Content-Length` and `Transfer-Encoding`, a
    /// transfer coding other than a final `chunked`, and disagreeing or unreadable
    /// lengths are refused: a peer behind the proxy could read them differently
    /// (request smuggling).
    pub fn request_framing(&self) -> Result<Framing, ReadError> {
        match (self.transfer_chunked()?, self.content_length()?) {
            // HTTP/1.0 has no transfer codings (RFC 9112 §6.1): the sender is confused.
            (Some(_), _) if self.minor == 0 => Err(ReadError::Malformed(
                "Transfer-Encoding in an HTTP/1.0 request",
            )),
            (Some(_), Some(_)) => Err(ReadError::Malformed(
                "both Content-Length and Transfer-Encoding",
            )),
            (Some(true), None) => Ok(Framing::Chunked),
            (Some(false), None) => Err(ReadError::Malformed(
                "a request's transfer coding must end with chunked",
            )),
            (None, Some(0) | None) => Ok(Framing::Empty),
            (None, Some(len)) => Ok(Framing::Length(len)),
        }
    }

    /// How a response to a `method` request is framed (RFC 9112 §6.3).
    pub fn response_framing(&self, method: &str) -> Result<Framing, ReadError> {
        let status = self.status();
        if method == "HEAD" || (100..200).contains(&status) || status == 204 || status == 304 {
            return Ok(Framing::Empty);
        }
        match (self.transfer_chunked()?, self.content_length()?) {
            (Some(true), _) => Ok(Framing::Chunked),
            (Some(false), _) => Ok(Framing::UntilClose),
            (None, Some(0)) => Ok(Framing::Empty),
            (None, Some(len)) => Ok(Framing::Length(len)),
            (None, None) => Ok(Framing::UntilClose),
        }
    }

    /// `Some(chunked is the last coding)` when there is a `Transfer-Encoding`.
    fn transfer_chunked(&self) -> Result<Option<bool>, ReadError> {
        if self.values("transfer-encoding").next().is_none() {
            return Ok(None);
        }
        match self.tokens("transfer-encoding").last() {
            Some(last) => Ok(Some(last.eq_ignore_ascii_case(b"chunked"))),
            None => Err(ReadError::Malformed("empty Transfer-Encoding")),
        }
    }

    fn content_length(&self) -> Result<Option<u64>, ReadError> {
        let mut length = None;
        for part in self
            .values("content-length")
            .flat_map(|v| v.split(|b| *b == b','))
        {
            let part = part.trim_ascii();
            if part.is_empty() || part.len() > 18 || !part.iter().all(u8::is_ascii_digit) {
                return Err(ReadError::Malformed("unreadable Content-Length"));
            }
            let len = part.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0'));
            if length.is_some_and(|l| l != len) {
                return Err(ReadError::Malformed("disagreeing Content-Length values"));
            }
            length = Some(len);
        }
        Ok(length)
    }
}

fn offset(outer: &[u8], inner: &[u8]) -> Range<usize> {
    let start = inner.as_ptr() as usize - outer.as_ptr() as usize;
    start..start + inner.len()
}

fn parsed_headers(
    buf: &[u8],
    headers: &[httparse::Header<'_>],
) -> Vec<(Range<usize>, Range<usize>)> {
    headers
        .iter()
        .map(|h| (offset(buf, h.name.as_bytes()), offset(buf, h.value)))
        .collect()
}

/// A complete head at the start of a buffer, with its length; `None` while incomplete.
type Parsed = Result<Option<(usize, Head)>, ReadError>;

fn parse_error(e: httparse::Error) -> ReadError {
    match e {
        httparse::Error::TooManyHeaders => ReadError::TooLarge,
        httparse::Error::Version => ReadError::Malformed("not HTTP/1.x"),
        _ => ReadError::Malformed("unreadable header block"),
    }
}

/// A request head at the start of `buf`, with its length, once it is complete.
fn parse_request(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(len) = req.parse(buf).map_err(parse_error)? else {
        return Ok(None);
    };
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(ReadError::Malformed("incomplete request line"));
    };
    Ok(Some((
        len,
        Head {
            bytes: Bytes::new(),
            first: offset(buf, method.as_bytes()),
            second: offset(buf, target.as_bytes()),
            minor,
            status: 0,
            headers: parsed_headers(buf, req.headers),
        },
    )))
}

/// A response head at the start of `buf`, with its length, once it is complete.
fn parse_response(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(len) = resp.parse(buf).map_err(parse_error)? else {
        return Ok(None);
    };
    let (Some(status), Some(minor)) = (resp.code, resp.version) else {
        return Err(ReadError::Malformed("incomplete status line"));
    };
    Ok(Some((
        len,
        Head {
            bytes: Bytes::new(),
            first: 0..0,
            status,
            second: offset(buf, resp.reason.unwrap_or("").as_bytes()),
            minor,
            headers: parsed_headers(buf, resp.headers),
        },
    )))
}

/// A read timeout that costs no timer work per read on a busy connection: its timer is
/// armed once, and moved only when it fires before the deadline of the read under way
/// (a timer set and cancelled for every read showed up in P1).
#[derive(Debug)]
pub struct ReadTimer {
    timeout: Duration,
    timer: Option<Pin<Box<Sleep>>>,
}

impl ReadTimer {
    /// Each read must bring bytes within `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            timer: None,
        }
    }

    /// Reads more bytes into `buf` within the timeout; 0 at end of stream.
    pub async fn read<S: AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
        buf: &mut BytesMut,
    ) -> io::Result<usize> {
        let deadline = Instant::now() + self.timeout;
        self.read_until(stream, buf, deadline).await
    }

    /// Reads more bytes into `buf` by `deadline`; 0 at end of stream.
    pub async fn read_until<S: AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
        buf: &mut BytesMut,
        deadline: Instant,
    ) -> io::Result<usize> {
        buf.reserve(READ_CHUNK);
        let mut read = pin!(stream.read_buf(buf));
        poll_fn(|cx| {
            if let Poll::Ready(done) = read.as_mut().poll(cx) {
                return Poll::Ready(done);
            }
            let timer = self
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
            // Set for a later deadline (an idle connection's, say): bring it forward.
            if timer.deadline() > deadline {
                timer.as_mut().reset(deadline);
            }
            loop {
                match timer.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(()) if Instant::now() >= deadline => {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "read timed out",
                        )));
                    }
                    // Fired for an earlier read's deadline: move it to this one's.
                    Poll::Ready(()) => timer.as_mut().reset(deadline),
                }
            }
        })
        .await
    }
}

/// Writes all of `bytes`, within `timeout`. Most writes complete at once, and those
/// set no timer.
pub async fn write_all<S: AsyncWrite + Unpin>(
    stream: &mut S,
    bytes: &[u8],
    timeout: Duration,
) -> io::Result<()> {
    let mut write = pin!(async {
        stream.write_all(bytes).await?;
        stream.flush().await
    });
    let first = poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx))).await;
    if let Poll::Ready(done) = first {
        return done;
    }
    tokio::time::timeout(timeout, write)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "write timed out"))?
}

/// Until when a head may take to arrive.
#[derive(Debug, Clone, Copy)]
pub enum HeadDeadline {
    /// Each read within the timer's own timeout (a backend's answer).
    PerRead,
    /// A client's request: its first byte by `idle`, and its whole head within
    /// `header` of its first byte. Pingora's HTTP/1 server timed each read only
    /// (upstream issue #447), so a client trickling header bytes was never cut off.
    Client {
        /// When the connection has waited long enough for a request.
        idle: Instant,
        /// How long a head may take once begun.
        header: Duration,
    },
}

async fn read_head<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    timer: &mut ReadTimer,
    deadline: HeadDeadline,
    parse: fn(&[u8]) -> Parsed,
) -> Result<Option<Head>, ReadError> {
    let mut header_deadline = None;
    loop {
        if !buf.is_empty()
            && let Some((len, mut head)) = parse(buf)?
        {
            head.bytes = buf.split_to(len).freeze();
            return Ok(Some(head));
        }
        if buf.len() >= MAX_HEAD {
            return Err(ReadError::TooLarge);
        }
        let read = match deadline {
            HeadDeadline::PerRead => timer.read(stream, buf).await,
            HeadDeadline::Client { idle, .. } if buf.is_empty() => {
                timer.read_until(stream, buf, idle).await
            }
            HeadDeadline::Client { header, .. } => {
                let by = *header_deadline.get_or_insert_with(|| Instant::now() + header);
                timer.read_until(stream, buf, by).await
            }
        };
        if read? == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(
                    io::Error::new(io::ErrorKind::UnexpectedEof, "closed within a header block")
                        .into(),
                )
            };
        }
    }
}

/// The next request head from a client, by `deadline`; `None` when the client closed
/// the connection between requests. Bytes after the head stay in `buf`.
pub async fn read_request<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    timer: &mut ReadTimer,
    deadline: HeadDeadline,
) -> Result<Option<Head>, ReadError> {
    read_head(stream, buf, timer, deadline, parse_request).await
}

/// The next response head from a backend, each read timed by `timer`. Bytes after the
/// head stay in `buf`.
pub async fn read_response<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    timer: &mut ReadTimer,
) -> Result<Head, ReadError> {
    read_head(stream, buf, timer, HeadDeadline::PerRead, parse_response)
        .await?
        .ok_or_else(|| {
            io::Error::new(io::ErrorKind::UnexpectedEof, "closed before an answer").into()
        })
}

/// Which side of a body copy failed.
#[derive(Debug)]
pub enum CopyError {
    /// Reading from the source, or its framing.
    Read(ReadError),
    /// Writing to the destination.
    Write(io::Error),
    /// The body passed the limit given.
    OverLimit,
}

/// Where a body copy stands: what is left of the current framing.
#[derive(Debug)]
enum Remaining {
    Length(u64),
    Chunked(Chunked),
    UntilClose,
}

/// Copies a body framed as `framing` from `src` (its first bytes may already be in
/// `buf`) to `dst`, after the bytes already in `out` (a head, say), which are written
/// with the body's first bytes in one write where they are at hand. Returns the body's
/// payload length. Reads are timed by `timer`, writes time out after `write_timeout`.
#[allow(clippy::too_many_arguments)]
pub async fn copy_body<R, W>(
    src: &mut R,
    buf: &mut BytesMut,
    framing: Framing,
    dst: &mut W,
    out: &mut Vec<u8>,
    timer: &mut ReadTimer,
    write_timeout: Duration,
    limit: u64,
) -> Result<u64, CopyError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut remaining = match framing {
        Framing::Empty => Remaining::Length(0),
        Framing::Length(len) => Remaining::Length(len),
        Framing::Chunked => Remaining::Chunked(Chunked::default()),
        Framing::UntilClose => Remaining::UntilClose,
    };
    let mut payload = 0u64;
    loop {
        // Move what is buffered of the body into `out`.
        let (take, done) = match &mut remaining {
            Remaining::Length(left) => {
                let take = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                *left -= take as u64;
                payload += take as u64;
                (take, *left == 0)
            }
            Remaining::Chunked(chunked) => {
                let (take, done) = chunked.scan(buf).map_err(CopyError::Read)?;
                payload = chunked.payload;
                (take, done)
            }
            Remaining::UntilClose => {
                payload += buf.len() as u64;
                (buf.len(), false)
            }
        };
        if payload > limit {
            return Err(CopyError::OverLimit);
        }
        out.extend_from_slice(&buf[..take]);
        buf.advance(take);
        if done || !out.is_empty() && (buf.is_empty() || out.len() >= WRITE_CHUNK) {
            write_all(dst, out, write_timeout)
                .await
                .map_err(CopyError::Write)?;
            out.clear();
        }
        if done {
            return Ok(payload);
        }
        let read = timer
            .read(src, buf)
            .await
            .map_err(|e| CopyError::Read(e.into()))?;
        if read == 0 {
            return match remaining {
                Remaining::UntilClose => Ok(payload),
                _ => Err(CopyError::Read(
                    io::Error::new(io::ErrorKind::UnexpectedEof, "closed within a body").into(),
                )),
            };
        }
    }
}

/// Finds the end of a chunked body (RFC 9112 §7.1) in the bytes going by.
#[derive(Debug, Default)]
pub struct Chunked {
    state: ChunkState,
    size: u64,
    digits: u8,
    /// Payload bytes seen so far (chunk data, without the framing).
    pub payload: u64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Reading a chunk size's hex digits.
    #[default]
    Size,
    /// Skipping a chunk extension up to its line end.
    Extension,
    /// Expecting the LF after a size line's CR.
    SizeLf,
    /// Inside a chunk's data.
    Data,
    /// Expecting the CR after a chunk's data.
    DataCr,
    /// Expecting the LF after a chunk's data.
    DataLf,
    /// At the start of a trailer line (or of the final empty line).
    TrailerStart,
    /// Inside a trailer line.
    Trailer,
    /// Expecting the LF of the final empty line.
    EndLf,
    /// The body is complete.
    Done,
}

/// `next` when `b` is the `want`ed framing byte; `what` went wrong otherwise.
fn expect(b: u8, want: u8, next: ChunkState, what: &'static str) -> Result<ChunkState, ReadError> {
    if b == want {
        Ok(next)
    } else {
        Err(ReadError::Malformed(what))
    }
}

impl Chunked {
    /// How many of `bytes` belong to the body, and whether the body ends with them.
    pub fn scan(&mut self, bytes: &[u8]) -> Result<(usize, bool), ReadError> {
        use ChunkState::*;
        let malformed = |what| Err(ReadError::Malformed(what));
        let mut i = 0;
        while i < bytes.len() && self.state != Done {
            let b = bytes[i];
            match self.state {
                Size => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        if self.digits == 15 {
                            return malformed("chunk size too large");
                        }
                        let digit = (b as char).to_digit(16).unwrap_or(0);
                        self.size = self.size << 4 | u64::from(digit);
                        self.digits += 1;
                    }
                    b';' | b' ' | b'\t' if self.digits > 0 => self.state = Extension,
                    b'\r' if self.digits > 0 => self.state = SizeLf,
                    _ => return malformed("unreadable chunk size"),
                },
                Extension => {
                    if b == b'\r' {
                        self.state = SizeLf;
                    }
                }
                SizeLf => {
                    self.digits = 0;
                    let next = if self.size == 0 { TrailerStart } else { Data };
                    self.state = expect(b, b'\n', next, "chunk size line without LF")?;
                }
                Data => {
                    let take =
                        (bytes.len() - i).min(usize::try_from(self.size).unwrap_or(usize::MAX));
                    self.size -= take as u64;
                    self.payload += take as u64;
                    i += take;
                    if self.size == 0 {
                        self.state = DataCr;
                    }
                    continue;
                }
                DataCr => self.state = expect(b, b'\r', DataLf, "chunk data longer than its size")?,
                DataLf => self.state = expect(b, b'\n', Size, "chunk data without CRLF")?,
                TrailerStart => {
                    self.state = if b == b'\r' { EndLf } else { Trailer };
                }
                Trailer => {
                    if b == b'\n' {
                        self.state = TrailerStart;
                    }
                }
                EndLf => {
                    self.state = expect(b, b'\n', Done, "chunked body without its final CRLF")?
                }
                Done => {}
            }
            i += 1;
        }
        Ok((i, self.state == Done))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(raw: &str) -> Result<Head, ReadError> {
        let (len, mut head) = parse_request(raw.as_bytes())?.expect("complete");
        head.bytes = Bytes::copy_from_slice(&raw.as_bytes()[..len]);
        Ok(head)
    }

    #[test]
    fn a_request_head_gives_its_parts_and_framing() {
        let head = request(
            "POST /course/7/reviews?page=2 HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\
             Connection: Keep-Alive, X-Drop\r\n\r\nbody",
        )
        .unwrap();
        assert_eq!(head.method(), "POST");
        assert_eq!(head.target(), "/course/7/reviews?page=2");
        assert_eq!(head.path(), "/course/7/reviews");
        assert_eq!(head.header("host"), Some(&b"x"[..]));
        assert!(head.has_token("connection", "x-drop"));
        assert!(head.keep_alive());
        assert_eq!(head.request_framing().unwrap(), Framing::Length(12));
    }

    #[test]
    fn ambiguous_request_framing_is_refused() {
        for raw in [
            "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: -3\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 3x\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            let framing = request(raw).unwrap().request_framing();
            assert!(
                matches!(framing, Err(ReadError::Malformed(_))),
                "{raw}: {framing:?}"
            );
        }
        let same = request("POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n");
        assert_eq!(same.unwrap().request_framing().unwrap(), Framing::Length(3));
    }

    #[test]
    fn an_http_1_0_request_is_kept_alive_only_when_it_asks() {
        assert!(!request("GET / HTTP/1.0\r\n\r\n").unwrap().keep_alive());
        let asks = request("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap();
        assert!(asks.keep_alive());
        assert!(
            !request("GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
                .unwrap()
                .keep_alive()
        );
    }

    #[test]
    fn response_framing_follows_the_method_and_status() {
        let parse = |raw: &str| {
            let (len, mut head) = parse_response(raw.as_bytes()).unwrap().unwrap();
            head.bytes = Bytes::copy_from_slice(&raw.as_bytes()[..len]);
            head
        };
        let ok = parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n");
        assert_eq!(ok.status(), 200);
        assert_eq!(ok.reason(), "OK");
        assert_eq!(ok.response_framing("GET").unwrap(), Framing::Length(5));
        assert_eq!(ok.response_framing("HEAD").unwrap(), Framing::Empty);
        let none = parse("HTTP/1.1 204 No Content\r\n\r\n");
        assert_eq!(none.response_framing("GET").unwrap(), Framing::Empty);
        let close = parse("HTTP/1.0 200 OK\r\n\r\n");
        assert_eq!(close.response_framing("GET").unwrap(), Framing::UntilClose);
        assert!(!close.keep_alive());
        let chunked = parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(chunked.response_framing("GET").unwrap(), Framing::Chunked);
    }

    #[test]
    fn a_chunked_body_ends_after_its_last_chunk_and_trailers_in_any_split() {
        let body = b"4;ext=1\r\nWiki\r\n6\r\npedia \r\n0\r\nx-trailer: 1\r\n\r\nNEXT";
        let end = body.len() - 4;
        for split in 0..end {
            let mut chunked = Chunked::default();
            let (first, done) = chunked.scan(&body[..split]).unwrap();
            assert_eq!((first, done), (split, false), "split at {split}");
            let (second, done) = chunked.scan(&body[split..]).unwrap();
            assert!(done, "split at {split}");
            assert_eq!(first + second, end, "split at {split}");
            assert_eq!(chunked.payload, 10);
        }
    }

    /// The first request head of `raw`, read as from a client that sent only that.
    async fn read_one(mut raw: &[u8]) -> Result<Option<Head>, ReadError> {
        read_request(
            &mut raw,
            &mut BytesMut::new(),
            &mut ReadTimer::new(Duration::from_secs(5)),
            HeadDeadline::PerRead,
        )
        .await
    }

    #[tokio::test]
    async fn a_head_over_the_limit_is_refused_and_a_clean_close_is_no_request() {
        let big = format!("GET / HTTP/1.1\r\nx: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        let read = read_one(big.as_bytes()).await;
        assert!(matches!(read, Err(ReadError::TooLarge)), "{read:?}");
        let read = read_one(b"").await;
        assert!(read.unwrap().is_none());
        let read = read_one(b"GET / HTTP/1.1\r\nhost").await;
        assert!(matches!(read, Err(ReadError::Io(_))), "{read:?}");
    }

    #[tokio::test]
    async fn a_body_is_copied_after_the_head_to_its_end_and_no_further() {
        let secs = Duration::from_secs(1);
        let mut src: &[u8] = b"llo worldNEXT";
        let mut buf = BytesMut::from(&b"he"[..]);
        let (mut dst, mut out) = (Vec::new(), b"HEAD|".to_vec());
        let copied = copy_body(
            &mut src,
            &mut buf,
            Framing::Length(11),
            &mut dst,
            &mut out,
            &mut ReadTimer::new(secs),
            secs,
            u64::MAX,
        )
        .await
        .unwrap();
        assert_eq!(copied, 11);
        assert_eq!(dst, b"HEAD|hello world");
        assert_eq!(&buf[..], b"NEXT");

        let copy_chunked = |mut src: &'static [u8]| async move {
            let (mut dst, mut out) = (Vec::new(), Vec::new());
            let (mut buf, mut timer) = (BytesMut::new(), ReadTimer::new(secs));
            let limit = 5;
            copy_body(
                &mut src,
                &mut buf,
                Framing::Chunked,
                &mut dst,
                &mut out,
                &mut timer,
                secs,
                limit,
            )
            .await
        };
        let bad = copy_chunked(b"xyz").await;
        assert!(
            matches!(bad, Err(CopyError::Read(ReadError::Malformed(_)))),
            "{bad:?}"
        );
        let over = copy_chunked(b"a\r\n0123456789\r\n0\r\n\r\n").await;
        assert!(matches!(over, Err(CopyError::OverLimit)), "{over:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_timer_cuts_a_stalled_read_but_not_a_busy_connection() {
        let (mut peer, mut stream) = tokio::io::duplex(64);
        let mut timer = ReadTimer::new(Duration::from_secs(1));
        let mut buf = BytesMut::new();
        // Ten reads, each 0.6 s after the last: the first timer fires mid-way and moves.
        for _ in 0..10 {
            let write = async {
                tokio::time::sleep(Duration::from_millis(600)).await;
                peer.write_all(b"x").await.unwrap();
            };
            let (read, ()) = tokio::join!(timer.read(&mut stream, &mut buf), write);
            assert_eq!(read.unwrap(), 1);
        }
        let started = Instant::now();
        let err = timer.read(&mut stream, &mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(1));
    }

    proptest::proptest! {
        /// Any bytes, in any pieces: a head is read or refused, never a panic, and a
        /// head read is no longer than what arrived.
        #[test]
        fn arbitrary_bytes_never_panic_the_head_reader(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600),
            text in "[A-Za-z0-9 :/,;\r\n-]{0,400}",
        ) {
            for input in [&bytes[..], text.as_bytes()] {
                let mut reader = input;
                let mut buf = BytesMut::new();
                let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
                if let Ok(Some(head)) = runtime.block_on(read_request(&mut reader, &mut buf, &mut ReadTimer::new(Duration::from_secs(5)), HeadDeadline::PerRead)) {
                    proptest::prop_assert!(head.bytes.len() <= input.len());
                    let _ = (head.request_framing(), head.keep_alive(), head.path());
                }
                let mut chunked = Chunked::default();
                if let Ok((used, _)) = chunked.scan(input) {
                    proptest::prop_assert!(used <= input.len());
                }
            }
        }

        /// A chunked body of any chunk sizes, cut anywhere: its end is found exactly,
        /// with its payload counted.
        #[test]
        fn the_end_of_any_chunked_body_is_found_in_any_split(
            sizes in proptest::collection::vec(1usize..300, 0..6),
            cut in 0usize..2000,
        ) {
            let mut body = Vec::new();
            for (i, size) in sizes.iter().enumerate() {
                body.extend_from_slice(format!("{size:x}\r\n").as_bytes());
                body.extend(std::iter::repeat_n(b'a' + i as u8, *size));
                body.extend_from_slice(b"\r\n");
            }
            body.extend_from_slice(b"0\r\n\r\nGET / HTTP/1.1\r\n");
            let end = body.len() - 16;
            let cut = cut.min(end);
            let mut chunked = Chunked::default();
            let (first, done) = chunked.scan(&body[..cut]).unwrap();
            let (second, _) = if done { (0, true) } else { chunked.scan(&body[cut..]).unwrap() };
            proptest::prop_assert_eq!(first + second, end);
            proptest::prop_assert_eq!(chunked.payload, sizes.iter().sum::<usize>() as u64);
        }
    }

    fn client_deadline() -> HeadDeadline {
        HeadDeadline::Client {
            idle: Instant::now() + Duration::from_secs(5),
            header: Duration::from_secs(2),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_trickling_its_head_is_cut_off_at_the_header_deadline() {
        let (mut client, mut stream) = tokio::io::duplex(1024);
        let deadline = client_deadline();
        let trickle = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            for b in b"GET / HTTP/1.1\r\nHost: x\r\n" {
                client.write_all(&[*b]).await.unwrap();
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            client
        });
        let start = Instant::now();
        let (mut timer, mut buf) = (ReadTimer::new(Duration::from_secs(5)), BytesMut::new());
        let read = read_request(&mut stream, &mut buf, &mut timer, deadline).await;
        assert!(matches!(&read, Err(ReadError::Io(e)) if e.kind() == io::ErrorKind::TimedOut));
        // First byte at 3 s (within the idle 5 s), cut 2 s later.
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        drop(trickle);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_client_is_cut_off_and_a_prompt_one_is_read() {
        let (_quiet, mut stream) = tokio::io::duplex(1024);
        let start = Instant::now();
        let (mut timer, mut buf) = (ReadTimer::new(Duration::from_secs(5)), BytesMut::new());
        let read = read_request(&mut stream, &mut buf, &mut timer, client_deadline()).await;
        assert!(matches!(&read, Err(ReadError::Io(e)) if e.kind() == io::ErrorKind::TimedOut));
        assert_eq!(start.elapsed(), Duration::from_secs(5));

        let (mut client, mut stream) = tokio::io::duplex(1024);
        let deadline = client_deadline();
        client
            .write_all(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhe")
            .await
            .unwrap();
        let read = read_request(&mut stream, &mut buf, &mut timer, deadline).await;
        assert_eq!(read.unwrap().unwrap().method(), "POST");
        assert_eq!(&buf[..], b"he");
    }

    #[test]
    fn a_chunk_longer_than_its_size_is_refused() {
        let mut chunked = Chunked::default();
        assert!(chunked.scan(b"2\r\nabc\r\n0\r\n\r\n").is_err());
        assert!(Chunked::default().scan(b"zz\r\n").is_err());
        assert!(Chunked::default().scan(b"1234567890abcdef0\r\n").is_err());
    }
}
