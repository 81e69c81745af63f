//! Finding the current session's id in a request: URL rewriting
//! (`;sessionid=ID` path parameters), the `X-Session-Id` header and the
//! session cookie, and splitting a raw path into segments.
//!
//! Owns parsing of client-controlled strings into candidate ids; it never
//! looks an id up. Every input is bounded: at most [`MAX_CANDIDATES`] ids
//! are tried, and anything that does not parse as an id is ignored.

use hyper::HeaderMap;
use percent_encoding::percent_decode;

use crate::region::SessionId;

/// Most candidate ids tried for one request.
pub const MAX_CANDIDATES: usize = 4;
/// Most path segments accepted.
pub const MAX_SEGMENTS: usize = 8;

/// A raw path split into segments, with path parameters removed and kept.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SplitPath<'a> {
    /// Segments without their `;params`, still percent-encoded.
    pub segments: Vec<&'a str>,
    /// `(name, value)` path parameters from every segment.
    pub params: Vec<(&'a str, &'a str)>,
}

/// Splits `/a;x=1/b` into segments `["a", "b"]` and params `[("x","1")]`.
/// `None` if there are more than [`MAX_SEGMENTS`] segments.
pub fn split_path(path: &str) -> Option<SplitPath<'_>> {
    let mut out = SplitPath::default();
    let p = path.strip_prefix('/').unwrap_or(path);
    if p.is_empty() {
        return Some(out);
    }
    for seg in p.split('/') {
        if out.segments.len() == MAX_SEGMENTS {
            return None;
        }
        let mut parts = seg.split(';');
        out.segments.push(parts.next().unwrap_or(""));
        for param in parts {
            if let Some((k, v)) = param.split_once('=')
                && out.params.len() < MAX_CANDIDATES
            {
                out.params.push((k, v));
            }
        }
    }
    Some(out)
}

/// Decodes a percent-encoded attribute name: it must be valid UTF-8 with
/// no control characters. The error says which rule failed.
pub fn decode_name(raw: &str) -> Result<String, &'static str> {
    let s = percent_decode(raw.as_bytes())
        .decode_utf8()
        .map_err(|_| "attribute name is not valid UTF-8 after percent-decoding")?;
    if s.chars().any(|c| c.is_control()) {
        return Err("attribute name contains a control character");
    }
    Ok(s.into_owned())
}

/// Candidate ids in priority order: URL path parameter, `X-Session-Id`
/// header, then every cookie named `cookie_name`.
pub fn candidates(params: &[(&str, &str)], headers: &HeaderMap, url_param: &str, cookie_name: &str) -> Vec<SessionId> {
    let mut out = Vec::new();
    let mut push = |raw: &[u8]| {
        if out.len() < MAX_CANDIDATES
            && let Some(id) = SessionId::parse(raw)
            && !out.contains(&id)
        {
            out.push(id);
        }
    };
    for (k, v) in params {
        if *k == url_param {
            push(v.as_bytes());
        }
    }
    for v in headers.get_all("x-session-id") {
        push(v.as_bytes());
    }
    for v in headers.get_all(hyper::header::COOKIE) {
        // Other cookies on the site may carry UTF-8 or Latin-1 bytes, which
        // `to_str` rejects for the whole header; decode lossily so they
        // cannot hide ours (ids are ASCII, so ours is never altered).
        let s = String::from_utf8_lossy(v.as_bytes());
        for c in cookie::Cookie::split_parse(s.as_ref()).flatten() {
            if c.name() == cookie_name {
                push(c.value().as_bytes());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn splits_segments_and_path_params() {
        let p = split_path("/v1/session;sessionid=ABC/attributes/cart").unwrap();
        assert_eq!(p.segments, ["v1", "session", "attributes", "cart"]);
        assert_eq!(p.params, [("sessionid", "ABC")]);
        assert_eq!(split_path("/").unwrap().segments.len(), 0);
        assert!(split_path(&"/a".repeat(20)).is_none());
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
        assert_eq!(got, vec![a, b, c]);
        h.insert("cookie", "SID=garbage".parse().unwrap());
        assert_eq!(candidates(&[], &h, "sid", "SID"), vec![b]);
    }

    #[test]
    fn non_ascii_bytes_in_other_cookies_do_not_hide_the_id() {
        let a = SessionId::generate(0, 1, 1).unwrap();
        let mut h = HeaderMap::new();
        let mut raw = b"pref=caf\xe9; \xff=\x80; ".to_vec();
        raw.extend_from_slice(format!("SID={a}").as_bytes());
        h.insert("cookie", hyper::header::HeaderValue::from_bytes(&raw).unwrap());
        assert_eq!(candidates(&[], &h, "sid", "SID"), vec![a]);
    }

    proptest! {
        #[test]
        fn hostile_paths_and_cookies_never_panic(path in ".{0,200}", cookie in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Some(p) = split_path(&path) {
                for s in &p.segments { let _ = decode_name(s); }
                let mut h = HeaderMap::new();
                if let Ok(v) = hyper::header::HeaderValue::from_bytes(&cookie) {
                    h.insert("cookie", v);
                }
                for id in candidates(&p.params, &h, "sessionid", "SESSIONID") {
                    // Only canonical ids are ever accepted.
                    prop_assert_eq!(SessionId::parse(id.to_string().as_bytes()), Some(id));
                }
            }
        }
    }
}
