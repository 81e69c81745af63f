//! Finding the current session's id in a request: URL rewriting
//! (`;sessionid=ID` path parameters), the `X-Session-Id` header and the
//! session cookie, and splitting a raw path into segments.
//!
//! Owns parsing of client-controlled strings into candidate ids; it never
//! looks an id up. Every input is bounded: at most [`MAX_CANDIDATES`] ids
//! are tried, and anything that does not parse as an id is ignored.
//!
//! This is the read path's hottest code, so it works on bytes and does not
//! allocate. The `Cookie` request header is split by hand into RFC 6265
//! §4.2.1 `name=value` pairs (`;`-separated, optional whitespace, optional
//! double quotes around the value): we only need an exact name match, and
//! callgrind showed the `cookie` crate's general parser (built for
//! `Set-Cookie` attributes, via a lossy UTF-8 copy) at about 2,500
//! instructions per request, 16 % of a worker's user time. The `cookie`
//! crate still builds every `Set-Cookie` we send.

use std::borrow::Cow;

use hyper::HeaderMap;
use percent_encoding::percent_decode;

use crate::region::SessionId;

/// Most candidate ids tried for one request.
pub const MAX_CANDIDATES: usize = 4;
/// Most path segments accepted.
pub const MAX_SEGMENTS: usize = 8;

/// A raw path split into segments, with path parameters removed and kept.
/// Fixed-size: no allocation.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SplitPath<'a> {
    segs: [&'a str; MAX_SEGMENTS],
    nsegs: usize,
    params: [(&'a str, &'a str); MAX_CANDIDATES],
    nparams: usize,
}

impl<'a> SplitPath<'a> {
    /// Segments without their `;params`, still percent-encoded.
    pub fn segments(&self) -> &[&'a str] {
        &self.segs[..self.nsegs]
    }
    /// `(name, value)` path parameters from every segment (at most
    /// [`MAX_CANDIDATES`]; later ones are ignored).
    pub fn params(&self) -> &[(&'a str, &'a str)] {
        &self.params[..self.nparams]
    }
}

/// Index of the first `c` in `b[from..]`, or `b.len()`.
fn find(b: &[u8], from: usize, c: u8) -> usize {
    b[from..].iter().position(|&x| x == c).map_or(b.len(), |i| from + i)
}

/// Splits `/a;x=1/b` into segments `["a", "b"]` and params `[("x","1")]`.
/// `None` if there are more than [`MAX_SEGMENTS`] segments.
pub fn split_path(path: &str) -> Option<SplitPath<'_>> {
    let mut out = SplitPath::default();
    let p = path.strip_prefix('/').unwrap_or(path);
    if p.is_empty() {
        return Some(out);
    }
    let b = p.as_bytes();
    let mut start = 0;
    loop {
        if out.nsegs == MAX_SEGMENTS {
            return None;
        }
        let end = find(b, start, b'/');
        // Slicing at ASCII delimiters always lands on char boundaries.
        let seg = &p[start..end];
        let sb = seg.as_bytes();
        let name_end = find(sb, 0, b';');
        out.segs[out.nsegs] = &seg[..name_end];
        out.nsegs += 1;
        let mut at = name_end;
        while at < sb.len() {
            let next = find(sb, at + 1, b';');
            let param = &seg[at + 1..next];
            let eq = find(param.as_bytes(), 0, b'=');
            if eq < param.len() && out.nparams < MAX_CANDIDATES {
                out.params[out.nparams] = (&param[..eq], &param[eq + 1..]);
                out.nparams += 1;
            }
            at = next;
        }
        if end == b.len() {
            return Some(out);
        }
        start = end + 1;
    }
}

/// Decodes a percent-encoded attribute name: it must be valid UTF-8 with
/// no control characters. The error says which rule failed.
pub fn decode_name(raw: &str) -> Result<Cow<'_, str>, &'static str> {
    let s = percent_decode(raw.as_bytes())
        .decode_utf8()
        .map_err(|_| "attribute name is not valid UTF-8 after percent-decoding")?;
    if s.chars().any(|c| c.is_control()) {
        return Err("attribute name contains a control character");
    }
    Ok(s)
}

/// Every value of a cookie named `name` in one `Cookie` header value.
fn cookie_values<'h>(header: &'h [u8], name: &'h [u8]) -> impl Iterator<Item = &'h [u8]> + 'h {
    header.split(|&b| b == b';').filter_map(move |pair| {
        let pair = pair.trim_ascii();
        let eq = pair.iter().position(|&b| b == b'=')?;
        if pair[..eq].trim_ascii() != name {
            return None;
        }
        let v = pair[eq + 1..].trim_ascii();
        Some(match v {
            [b'"', inner @ .., b'"'] => inner,
            v => v,
        })
    })
}

/// Up to [`MAX_CANDIDATES`] distinct ids, best first, held inline (no
/// allocation on the request path).
#[derive(Clone, Copy, Debug)]
pub struct Ids {
    buf: [SessionId; MAX_CANDIDATES],
    n: usize,
}

impl Ids {
    /// No ids.
    pub fn new() -> Ids {
        let none = SessionId { node: 0, context: 0, slot: 0, token: [0; crate::region::layout::TOKEN_LEN] };
        Ids { buf: [none; MAX_CANDIDATES], n: 0 }
    }
    /// One id.
    pub fn one(id: SessionId) -> Ids {
        let mut ids = Ids::new();
        ids.push(id);
        ids
    }
    /// Adds `id` unless it is already there or the list is full.
    pub fn push(&mut self, id: SessionId) {
        if self.n < MAX_CANDIDATES && !self.as_slice().contains(&id) {
            self.buf[self.n] = id;
            self.n += 1;
        }
    }
    /// Keeps the ids for which `f` holds.
    pub fn retain(&mut self, f: impl Fn(&SessionId) -> bool) {
        let mut kept = Ids::new();
        for id in self.as_slice() {
            if f(id) {
                kept.push(*id);
            }
        }
        *self = kept;
    }
    /// The ids.
    pub fn as_slice(&self) -> &[SessionId] {
        &self.buf[..self.n]
    }
}

impl Default for Ids {
    fn default() -> Ids {
        Ids::new()
    }
}

/// The `X-Session-Id` header name, built once.
static X_SESSION_ID: hyper::header::HeaderName = hyper::header::HeaderName::from_static("x-session-id");

/// Pushes every id in a `cookie_name` cookie onto `out`. Bytes, not str:
/// other cookies on the site may carry UTF-8 or Latin-1 bytes, and they
/// must not hide ours.
fn push_cookie_ids(out: &mut Ids, headers: &HeaderMap, cookie_name: &str) {
    for v in headers.get_all(hyper::header::COOKIE) {
        for value in cookie_values(v.as_bytes(), cookie_name.as_bytes()) {
            if let Some(id) = SessionId::parse(value) {
                out.push(id);
            }
        }
    }
}

/// Ids in the `cookie_name` cookie only (the gateway's public listener,
/// where an id in a header would travel on to the upstream).
pub fn cookie_candidates(headers: &HeaderMap, cookie_name: &str) -> Ids {
    let mut out = Ids::new();
    push_cookie_ids(&mut out, headers, cookie_name);
    out
}

/// Candidate ids in priority order: URL path parameter, `X-Session-Id`
/// header, then every cookie named `cookie_name`.
pub fn candidates(params: &[(&str, &str)], headers: &HeaderMap, url_param: &str, cookie_name: &str) -> Ids {
    let mut out = Ids::new();
    let mut push = |raw: &[u8]| {
        if let Some(id) = SessionId::parse(raw) {
            out.push(id);
        }
    };
    for (k, v) in params {
        if *k == url_param {
            push(v.as_bytes());
        }
    }
    for v in headers.get_all(&X_SESSION_ID) {
        push(v.as_bytes());
    }
    push_cookie_ids(&mut out, headers, cookie_name);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn splits_segments_and_path_params() {
        let p = split_path("/v1/session;sessionid=ABC/attributes/cart").unwrap();
        assert_eq!(p.segments(), ["v1", "session", "attributes", "cart"]);
        assert_eq!(p.params(), [("sessionid", "ABC")]);
        assert_eq!(split_path("/").unwrap().segments().len(), 0);
        assert!(split_path(&"/a".repeat(20)).is_none());
        let p = split_path("/a;x=1;noeq;y=2/;z=3/b/").unwrap();
        assert_eq!(p.segments(), ["a", "", "b", ""]);
        assert_eq!(p.params(), [("x", "1"), ("y", "2"), ("z", "3")]);
        assert_eq!(split_path("/é;k=ü/x").unwrap().segments(), ["é", "x"]);
    }

    #[test]
    fn cookie_pairs_are_split_trimmed_and_unquoted() {
        let got: Vec<&[u8]> = cookie_values(b" a=1; SID = x ;SID=\"q\"; SIDX=no; =SID; SID", b"SID").collect();
        assert_eq!(got, [&b"x"[..], &b"q"[..]]);
    }

    #[test]
    fn names_are_decoded_and_checked() {
        assert_eq!(decode_name("a%2Fb").unwrap(), "a/b");
        assert_eq!(decode_name("caf%C3%A9").unwrap(), "café");
        assert!(decode_name("a%00b").is_err());
        assert!(decode_name("%C0%AF").is_err(), "overlong UTF-8");
        assert!(decode_name("%FF").is_err());
    }

    #[test]
    fn candidates_come_from_url_header_and_cookies_in_order() {
        let a = SessionId::generate(0, 1, 1).unwrap();
        let b = SessionId::generate(0, 1, 2).unwrap();
        let c = SessionId::generate(0, 1, 3).unwrap();
        let mut h = HeaderMap::new();
        h.insert("cookie", format!("other=1; SID={c}; x=y").parse().unwrap());
        h.insert("x-session-id", b.to_string().parse().unwrap());
        let a_str = a.to_string();
        let got = candidates(&[("sid", a_str.as_str()), ("zz", "nope")], &h, "sid", "SID");
        assert_eq!(got.as_slice(), [a, b, c]);
        h.insert("cookie", "SID=garbage".parse().unwrap());
        assert_eq!(candidates(&[], &h, "sid", "SID").as_slice(), [b]);
    }

    #[test]
    fn non_ascii_bytes_in_other_cookies_do_not_hide_the_id() {
        let a = SessionId::generate(0, 1, 1).unwrap();
        let mut h = HeaderMap::new();
        let mut raw = b"pref=caf\xe9; \xff=\x80; ".to_vec();
        raw.extend_from_slice(format!("SID={a}").as_bytes());
        h.insert("cookie", hyper::header::HeaderValue::from_bytes(&raw).unwrap());
        assert_eq!(candidates(&[], &h, "sid", "SID").as_slice(), [a]);
    }

    proptest! {
        #[test]
        fn hostile_paths_and_cookies_never_panic(path in ".{0,200}", cookie in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Some(p) = split_path(&path) {
                for s in p.segments() { let _ = decode_name(s); }
                let mut h = HeaderMap::new();
                if let Ok(v) = hyper::header::HeaderValue::from_bytes(&cookie) {
                    h.insert("cookie", v);
                }
                for &id in candidates(p.params(), &h, "sessionid", "SESSIONID").as_slice() {
                    // Only canonical ids are ever accepted.
                    prop_assert_eq!(SessionId::parse(id.to_string().as_bytes()), Some(id));
                }
            }
        }
    }
}
