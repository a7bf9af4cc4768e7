//! Watches how the requests on one connection are framed, to refuse a request that carries
//! both `Content-Length` and `Transfer-Encoding`.
//!
//! Such a request is the tool of request smuggling: two parsers that disagree on where its
//! body ends disagree on where the next request starts. hyper follows RFC 9112 (the body is
//! framed by `Transfer-Encoding` alone and the connection closed afterwards) and removes the
//! `Content-Length` before the service sees the request, so the service cannot tell. This
//! wrapper reads along with hyper: it finds each request's head, notes which request (by
//! its number on the connection) had both headers, and skips its body by the same rules to
//! find the next head. It never changes the bytes; when it cannot follow the stream (a head
//! hyper will refuse anyway) it stops watching.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// No request number has both headers.
const NONE: usize = usize::MAX;

/// Which request on a connection (0, 1, ...) had both `Content-Length` and
/// `Transfer-Encoding`; shared by the reader and the service.
#[derive(Debug, Clone)]
pub(super) struct Conflict(Arc<AtomicUsize>);

impl Conflict {
    fn new() -> Self {
        Conflict(Arc::new(AtomicUsize::new(NONE)))
    }

    /// Whether request `index` of the connection had both headers.
    pub(super) fn is(&self, index: usize) -> bool {
        self.0.load(Ordering::SeqCst) == index
    }
}

/// Where the reader is in the stream.
#[derive(Debug)]
enum State {
    /// Collecting a request head until its blank line.
    Head(Vec<u8>),
    /// Skipping this many body bytes.
    Body(u64),
    /// Collecting a chunk-size line.
    ChunkSize(Vec<u8>),
    /// Skipping a chunk's data and its CRLF.
    ChunkData(u64),
    /// Collecting trailer lines until a blank one.
    Trailers(Vec<u8>),
    /// Not watching any more.
    Done,
}

/// The framing of the requests read so far.
#[derive(Debug)]
struct Framing {
    state: State,
    /// The number of the request being read.
    index: usize,
    /// The largest head (or chunk line) followed; beyond it hyper refuses the request.
    max_head: usize,
    conflict: Conflict,
}

impl Framing {
    fn new(max_head: usize, conflict: Conflict) -> Self {
        Framing {
            state: State::Head(Vec::new()),
            index: 0,
            max_head,
            conflict,
        }
    }

    /// Follows `bytes`, the next bytes of the stream.
    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let state = std::mem::replace(&mut self.state, State::Done);
            self.state = match state {
                State::Done => return,
                State::Body(left) => match skip(&mut bytes, left) {
                    0 => self.next_request(),
                    left => State::Body(left),
                },
                State::ChunkData(left) => match skip(&mut bytes, left) {
                    0 => State::ChunkSize(Vec::new()),
                    left => State::ChunkData(left),
                },
                State::Head(mut buf) => {
                    // a head ends with an empty line (CRLF or a bare LF, as httparse reads it)
                    let mut found = false;
                    let mut taken = 0;
                    for b in bytes {
                        taken += 1;
                        buf.push(*b);
                        if buf.iter().all(|b| *b == b'\r' || *b == b'\n') {
                            // empty lines before a request line are skipped
                            if buf.ends_with(b"\n") {
                                buf.clear();
                            }
                        } else if buf.ends_with(b"\n\n") || buf.ends_with(b"\n\r\n") {
                            found = true;
                            break;
                        }
                        if buf.len() > self.max_head {
                            break;
                        }
                    }
                    bytes = &bytes[taken..];
                    if found {
                        self.head(&buf)
                    } else if buf.len() > self.max_head {
                        State::Done
                    } else {
                        State::Head(buf)
                    }
                }
                State::ChunkSize(mut buf) => match take_line(&mut buf, &mut bytes, self.max_head) {
                    None => State::Done,
                    Some(false) => State::ChunkSize(buf),
                    Some(true) => chunk_size(&buf).map_or(State::Done, |size| match size {
                        0 => State::Trailers(Vec::new()),
                        n => State::ChunkData(n.saturating_add(2)),
                    }),
                },
                State::Trailers(mut buf) => match take_line(&mut buf, &mut bytes, self.max_head) {
                    None => State::Done,
                    Some(false) => State::Trailers(buf),
                    Some(true) if buf == b"\r\n" || buf == b"\n" => self.next_request(),
                    Some(true) => State::Trailers(Vec::new()),
                },
            };
        }
    }

    fn next_request(&mut self) -> State {
        self.index += 1;
        State::Head(Vec::new())
    }

    /// The state after a whole head.
    fn head(&mut self, head: &[u8]) -> State {
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut request = httparse::Request::new(&mut headers);
        if !matches!(request.parse(head), Ok(httparse::Status::Complete(_))) {
            return State::Done;
        }
        let mut length: Option<u64> = None;
        let mut has_length = false;
        let mut chunked = None;
        for h in request.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                has_length = true;
                length = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse().ok());
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                let last = h.value.rsplit(|b| *b == b',').next().unwrap_or_default();
                chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            }
        }
        match (has_length, chunked) {
            (true, Some(_)) => {
                self.conflict.0.store(self.index, Ordering::SeqCst);
                // hyper closes the connection after this request
                State::Done
            }
            (_, Some(true)) => State::ChunkSize(Vec::new()),
            (_, Some(false)) => State::Done,
            (true, None) => match length {
                Some(0) => self.next_request(),
                Some(n) => State::Body(n),
                None => State::Done,
            },
            (false, None) => self.next_request(),
        }
    }
}

/// Moves the rest of a line from `bytes` into `buf`: whether the line is now whole; `None`
/// when it has grown past `max`.
fn take_line(buf: &mut Vec<u8>, bytes: &mut &[u8], max: usize) -> Option<bool> {
    let taken = memchr::memchr(b'\n', bytes).map_or(bytes.len(), |i| i + 1);
    buf.extend_from_slice(&bytes[..taken]);
    *bytes = &bytes[taken..];
    (buf.len() <= max).then(|| buf.ends_with(b"\n"))
}

/// Skips at most `left` bytes of `bytes`; how many are left to skip.
fn skip(bytes: &mut &[u8], left: u64) -> u64 {
    let take = usize::try_from(left).map_or(bytes.len(), |l| l.min(bytes.len()));
    *bytes = &bytes[take..];
    left - take as u64
}

/// The size of a chunk-size line (`1a;ext=1\r\n`).
fn chunk_size(line: &[u8]) -> Option<u64> {
    let line = std::str::from_utf8(line).ok()?;
    let size = line.split(';').next()?.trim();
    u64::from_str_radix(size, 16).ok()
}

/// A connection whose reads are followed by a [`Framing`].
#[derive(Debug)]
pub(super) struct Watched<T> {
    inner: T,
    framing: Framing,
}

impl<T> Watched<T> {
    /// Watches `inner`; `max_head` is the largest head hyper takes.
    pub(super) fn new(inner: T, max_head: usize) -> (Self, Conflict) {
        let conflict = Conflict::new();
        let framing = Framing::new(max_head, conflict.clone());
        (Watched { inner, framing }, conflict)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            this.framing.feed(&buf.filled()[before..]);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn conflicts(stream: &[u8], step: usize) -> Option<usize> {
        let conflict = Conflict::new();
        let mut framing = Framing::new(16 * 1024, conflict.clone());
        for piece in stream.chunks(step) {
            framing.feed(piece);
        }
        (0..10).find(|i| conflict.is(*i))
    }

    #[test]
    fn finds_the_request_with_both_headers_after_framed_ones() {
        let stream = b"POST /events HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello\
POST /events HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\n\
\r\nGET /leads/a HTTP/1.1\n\n\
POST /events HTTP/1.1\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n";
        for step in [1, 2, 3, 7, 64, stream.len()] {
            assert_eq!(conflicts(stream, step), Some(3), "step {step}");
        }
    }

    #[test]
    fn a_body_that_looks_like_a_head_is_skipped() {
        let body = b"POST /x HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut stream = format!(
            "POST /events HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        stream.extend_from_slice(body);
        for step in [1, 5, stream.len()] {
            assert_eq!(conflicts(&stream, step), None, "step {step}");
        }
    }

    #[test]
    fn stops_watching_what_it_cannot_follow() {
        assert_eq!(conflicts(b"NOT HTTP\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 4), None);
    }
}
