//! Gives hyper's own refusals the JSON error body of SPEC §6.
//!
//! A request head hyper cannot parse (a garbled request line, a malformed header, an
//! invalid `Content-Length` or `Transfer-Encoding`, a head over the size limit) never
//! reaches the service: hyper answers it itself, `400`, `414` or `431` with an empty body,
//! and closes the connection. This wrapper recognises that answer on its way out (a status
//! line with one of those codes and a head with no `Content-Type`, nothing after it: every
//! answer of the service is JSON and says so) and writes in its place the same status with
//! the JSON error body, so a client reads every refusal the same way. Everything else passes
//! through unchanged.

use leadscore_core::api::ApiResponse;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// An answer being written in place of hyper's.
#[derive(Debug)]
struct Replacement {
    bytes: Vec<u8>,
    written: usize,
    /// The length of hyper's answer, reported written once the replacement is.
    replaced: usize,
}

/// A connection whose writes have hyper's empty refusals replaced by JSON ones.
#[derive(Debug)]
pub(super) struct JsonRefusals<T> {
    inner: T,
    max_head: usize,
    replacing: Option<Replacement>,
}

impl<T> JsonRefusals<T> {
    /// Wraps `inner`; `max_head` is hyper's head limit, named in a `431`'s message.
    pub(super) fn new(inner: T, max_head: usize) -> Self {
        JsonRefusals {
            inner,
            max_head,
            replacing: None,
        }
    }
}

/// The status of hyper's automatic refusal, when `buf` is one: a whole head and nothing
/// more, status `400`, `414` or `431`, without a `Content-Type`.
fn refusal_status(buf: &[u8]) -> Option<u16> {
    let rest = buf.strip_prefix(b"HTTP/1.1 ")?;
    let status = match rest.get(..4)? {
        b"400 " => 400,
        b"414 " => 414,
        b"431 " => 431,
        _ => return None,
    };
    let end = memchr::memmem::find(buf, b"\r\n\r\n")?;
    if end + 4 != buf.len() {
        return None;
    }
    let typed = buf[..end]
        .split(|b| *b == b'\n')
        .any(|line| line.len() >= 13 && line[..13].eq_ignore_ascii_case(b"content-type:"));
    (!typed).then_some(status)
}

/// The JSON answer for hyper's refusal `head` with `status`: its status line and headers
/// (the `date`), the body's type and length, and the connection closed.
fn json_refusal(head: &[u8], status: u16, max_head: usize) -> Vec<u8> {
    let (code, message) = match status {
        431 => (
            "headers_too_large",
            format!("the request line and headers are over the limit of {max_head} bytes"),
        ),
        414 => (
            "uri_too_long",
            "the request target is too long".to_owned(),
        ),
        _ => (
            "invalid_request",
            "the request line or a header is malformed (an invalid `Content-Length` or `Transfer-Encoding` included); send a well-formed HTTP/1.1 request".to_owned(),
        ),
    };
    let response = ApiResponse::error(status, code, message, None);
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n").filter(|l| !l.is_empty());
    let mut out = String::new();
    if let Some(status_line) = lines.next() {
        out.push_str(status_line);
        out.push_str("\r\n");
    }
    for line in lines {
        let name = line.split(':').next().unwrap_or_default().trim();
        if !name.eq_ignore_ascii_case("content-length") && !name.eq_ignore_ascii_case("connection")
        {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    for (name, value) in &response.headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        response.body.len()
    ));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&response.body);
    bytes
}

impl<T: AsyncRead + Unpin> AsyncRead for JsonRefusals<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for JsonRefusals<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.replacing.is_none() {
            let Some(status) = refusal_status(buf) else {
                return Pin::new(&mut this.inner).poll_write(cx, buf);
            };
            eprintln!("(a request hyper could not read) {status}");
            this.replacing = Some(Replacement {
                bytes: json_refusal(buf, status, this.max_head),
                written: 0,
                replaced: buf.len(),
            });
        }
        let Some(replacement) = this.replacing.as_mut() else {
            return Poll::Ready(Ok(0));
        };
        while replacement.written < replacement.bytes.len() {
            let rest = &replacement.bytes[replacement.written..];
            match ready!(Pin::new(&mut this.inner).poll_write(cx, rest)) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => replacement.written += n,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        let replaced = replacement.replaced;
        this.replacing = None;
        Poll::Ready(Ok(replaced))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut filled = bufs.iter().filter(|b| !b.is_empty());
        if let (Some(only), None) = (filled.next(), filled.next()) {
            if self.replacing.is_some() || refusal_status(only).is_some() {
                return self.poll_write(cx, only);
            }
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tokio::io::AsyncWriteExt;

    const HYPER_400: &[u8] =
        b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: Fri, 04 Dec 2026 06:00:00 GMT\r\n\r\n";

    #[test]
    fn knows_hypers_refusals_and_nothing_else() {
        assert_eq!(refusal_status(HYPER_400), Some(400));
        assert_eq!(
            refusal_status(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n"
            ),
            Some(431)
        );
        // the service's own answers say they are JSON, and have a body
        assert_eq!(
            refusal_status(b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\ncontent-length: 0\r\n\r\n"),
            None
        );
        assert_eq!(
            refusal_status(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n{}"),
            None
        );
        assert_eq!(
            refusal_status(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"),
            None
        );
        assert_eq!(refusal_status(b"{\"HTTP/1.1 400 \"}"), None);
    }

    #[tokio::test]
    async fn writes_the_json_error_in_place_of_hypers_and_passes_the_rest() {
        let mut out = JsonRefusals::new(Vec::new(), 16_384);
        out.write_all(HYPER_400).await.unwrap();
        let written = String::from_utf8(out.inner.clone()).unwrap();
        let (head, body) = written.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
        assert!(head.contains("date: Fri, 04 Dec 2026"), "{head}");
        assert!(head.contains("content-type: application/json"), "{head}");
        assert!(head.contains("connection: close"), "{head}");
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["code"], "invalid_request");

        let mut out = JsonRefusals::new(Vec::new(), 16_384);
        let ok =
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
        out.write_all(ok).await.unwrap();
        assert_eq!(out.inner, ok);
    }
}
