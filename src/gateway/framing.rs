//! Request framing that hyper leaves to sessiond, refused the same way on
//! both listeners: the public gateway listener and the private API.
//!
//! hyper 1.x (with httparse) answers `400` and closes the connection
//! itself, before any handler runs, for `Content-Length` values that differ
//! or are not plain digits (`5, 6`, `+5`), a `Transfer-Encoding` whose last
//! coding is not `chunked` (`identity`, `chunked, identity`), a
//! `Transfer-Encoding` in an HTTP/1.0 request, an obsolete line folding and
//! whitespace between a header name and its colon. A request carrying both
//! `Transfer-Encoding` and `Content-Length` is read by the
//! `Transfer-Encoding` alone, its `Content-Length` is removed before a
//! handler sees it, and the connection is closed after the answer (RFC 9112
//! §6.1), so nothing after the chunked body is ever read as a request.
//!
//! What does reach a handler, this module refuses with `400` and
//! `Connection: close`:
//! - a `Transfer-Encoding` other than exactly one `chunked` (`gzip,
//!   chunked`, `chunked` twice): hyper undoes only the chunked framing, and
//!   would hand on a body still in a coding no one checked ([`check_head`]);
//! - a body whose framing is malformed (chunk lines ended by a bare LF, a
//!   chunk size that is not hex, a bare LF in a chunk extension): hyper
//!   reports it only as an error of the body stream, once the body is read.
//!   [`drain`] reads the body of a request that no route wants, so that the
//!   error is that request's answer rather than a success followed by a
//!   closed connection; the gateway's forwarding turns the same error into
//!   a `400` instead of a `502`.
//!
//! It never reads more than [`DRAIN_LIMIT`] bytes of an unwanted body, and
//! never answers a client's framing with anything but `400`.

use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};
use hyper::header::{HeaderMap, TRANSFER_ENCODING};

/// Most bytes [`drain`] reads of a body that no route wants. Past it the
/// rest is left to hyper, which closes the connection after the answer.
pub const DRAIN_LIMIT: usize = 64 * 1024;

/// Why a request's framing was refused (always a `400`, with the
/// connection closed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// `Transfer-Encoding` is not exactly one `chunked`.
    #[error(
        "Transfer-Encoding {value:?} is refused: only a single \"chunked\" is accepted, with no other \
         transfer coding before it; send the body with Content-Length or as plain chunked"
    )]
    TransferEncoding {
        /// The header's values, joined with `, ` (control characters shown
        /// as `?`).
        value: String,
    },
    /// The body's framing is malformed.
    #[error("the request body's framing is malformed ({0}); the connection is closed")]
    Body(String),
}

impl FramingError {
    /// The `error` code of the 400 answer.
    pub fn code(&self) -> &'static str {
        match self {
            FramingError::TransferEncoding { .. } => "bad_transfer_encoding",
            FramingError::Body(_) => "bad_body",
        }
    }

    /// The error of a body stream, with its causes (hyper's own message
    /// is only "error reading a body from connection").
    pub fn body(e: &(dyn std::error::Error + 'static)) -> FramingError {
        let mut text = e.to_string();
        let mut cause = e.source();
        while let Some(c) = cause {
            text.push_str(": ");
            text.push_str(&c.to_string());
            cause = c.source();
        }
        FramingError::Body(text)
    }
}

/// Checks the head of a request as hyper parsed it: a `Transfer-Encoding`,
/// if any, is exactly one `chunked` (any case; empty list elements are
/// ignored, as RFC 9110 §5.6.1 asks).
pub fn check_head(headers: &HeaderMap) -> Result<(), FramingError> {
    let values = headers.get_all(TRANSFER_ENCODING);
    let mut codings = 0;
    let mut only_chunked = true;
    for v in values.iter() {
        for coding in v.as_bytes().split(|&b| b == b',') {
            let coding = coding.trim_ascii();
            if coding.is_empty() {
                continue;
            }
            codings += 1;
            only_chunked &= coding.eq_ignore_ascii_case(b"chunked");
        }
    }
    let absent = values.iter().next().is_none();
    if absent || (codings == 1 && only_chunked) {
        return Ok(());
    }
    let shown: Vec<String> = values
        .iter()
        .map(|v| {
            v.as_bytes().iter().map(|&b| if b.is_ascii_graphic() || b == b' ' { b as char } else { '?' }).collect()
        })
        .collect();
    Err(FramingError::TransferEncoding { value: shown.join(", ") })
}

/// Reads a request body that no route wants to its end (at most
/// [`DRAIN_LIMIT`] bytes, within `timeout`), so that malformed framing is
/// found before the request is answered. A body that is longer, or slower,
/// is left to hyper: it is not an error here.
pub async fn drain(body: &mut Incoming, timeout: Duration) -> Result<(), FramingError> {
    if body.is_end_stream() {
        return Ok(());
    }
    let read = async {
        let mut n = 0;
        while n <= DRAIN_LIMIT {
            match body.frame().await {
                None => break,
                Some(Ok(f)) => n += f.data_ref().map_or(0, |d| d.len()),
                Some(Err(e)) => return Err(FramingError::body(&e)),
            }
        }
        Ok(())
    };
    tokio::time::timeout(timeout, read).await.unwrap_or(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn te(values: &[&'static str]) -> Result<(), FramingError> {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(TRANSFER_ENCODING, HeaderValue::from_static(v));
        }
        check_head(&h)
    }

    #[test]
    fn only_a_single_chunked_transfer_coding_passes() {
        for ok in [&[][..], &["chunked"], &["Chunked"], &[" chunked "], &[", chunked"]] {
            assert_eq!(te(ok), Ok(()), "{ok:?}");
        }
        for bad in [
            &["gzip, chunked"][..],
            &["chunked, chunked"],
            &["chunked", "chunked"],
            &["identity", "chunked"],
            &["x-custom,chunked"],
            &[""],
        ] {
            let e = te(bad).unwrap_err();
            assert_eq!(e.code(), "bad_transfer_encoding", "{bad:?}");
            assert!(e.to_string().contains("only a single \"chunked\""), "{e}");
        }
        assert_eq!(te(&["gzip", "chunked"]), Err(FramingError::TransferEncoding { value: "gzip, chunked".into() }));
    }

    #[test]
    fn a_body_error_names_its_causes() {
        let inner = std::io::Error::new(std::io::ErrorKind::InvalidInput, "Invalid chunk size LF");
        #[derive(Debug, thiserror::Error)]
        #[error("error reading a body from connection")]
        struct Outer(#[source] std::io::Error);
        let e = FramingError::body(&Outer(inner));
        assert_eq!(e, FramingError::Body("error reading a body from connection: Invalid chunk size LF".into()));
        assert_eq!(e.code(), "bad_body");
    }
}
