//! Request-path normalisation: the one form of a path that the gateway's
//! filters ever see, and the form that is forwarded upstream.
//!
//! This module owns [`normalise`] and [`normalise_with`], their rules and
//! limits, [`Allow`] (what `gateway.allow_encoded_percent` relaxes), and
//! [`NormalPath`], the value they produce. Allow-list bypasses in other
//! gateways (Envoy CVE-2019-9901, oauth2-proxy GHSA-7rh7-c77v-6434 and
//! GHSA-pxq7-h93f-9jrg) came from matching a form of the path other than the
//! one the upstream acted on, so the gateway matches on a [`NormalPath`] and
//! forwards [`NormalPath::encoded`]: the upstream receives exactly the path
//! that was judged, with no dot segments, no path parameters and no doubled
//! slashes left for it to interpret differently.
//!
//! It must never decode more than once (`%252e` is the literal text `%2e`,
//! not a dot), never let through by default a path that a second decode
//! would change (`%252e` is refused, the CVE-2001-0333 and Traefik
//! CVE-2025-32431 family), never let an encoded separator (`%2F`, `%5C`) or
//! an encoded `;` (`%3B`) through (servers disagree on what they mean), never
//! panic on any input, and never do more than linear work in the length of
//! the input, which is bounded by [`MAX_PATH_LEN`].
//!
//! # Rules
//! In this order:
//! 1. The raw path is at most [`MAX_PATH_LEN`] bytes and starts with `/`
//!    (origin form; the caller has split off the query at the first `?`).
//! 2. A raw `#`, `?`, `\` or ASCII control character anywhere is refused.
//! 3. The path is split on `/`; in each raw segment everything from the
//!    first `;` is dropped (path parameters: `;jsessionid=…`, `..;` → `..`).
//! 4. Each segment is percent-decoded once. A `%` not followed by two hex
//!    digits, an escape decoding to `/`, `\` or `;`, bytes that are not UTF-8
//!    (overlong forms such as `%c0%ae`, lone continuation bytes) and control
//!    characters (`%00`, `%7F`, U+0080–U+009F) are refused.
//! 5. A decoded segment that still holds a `%` followed by two hex digits
//!    (`%252e` → `%2e`, `%255c`, `%2500`, `%25c0%25af`: the path was encoded
//!    more than once) is refused, unless [`Allow::encoded_percent`] is set
//!    (`gateway.allow_encoded_percent`). A decoded `%` followed by anything
//!    else (`%25zz` → `%zz`, a trailing `%25`) is kept as text.
//! 6. Empty segments are removed (`//a` = `/a`), `.` segments are removed,
//!    and `..` removes the segment before it (at the root it is dropped:
//!    `/../a` = `/a`), as RFC 3986 `remove_dot_segments` does after the
//!    empty segments are gone.
//! 7. The result has at most [`MAX_SEGMENTS`] segments, and its re-encoded
//!    form ([`NormalPath::encoded`]) is at most [`MAX_PATH_LEN`] bytes, so
//!    normalising `p.encoded()` under the same rules always gives back `p`.
//!
//! Characters that are valid UTF-8 are text, whatever they look like: the
//! fullwidth full stop and solidus (U+FF0E `%ef%bc%8e`, U+FF0F `%ef%bc%8f`)
//! are neither a dot nor a separator here, and reach the upstream encoded as
//! they came.
//!
//! # Trailing slash
//! A path whose last raw segment is empty, `.` or `..` (`/a/`, `/a/b/..`)
//! keeps a trailing-slash marker, as RFC 3986 does: upstreams often serve
//! `/dir/` and `/dir` differently, so [`NormalPath::encoded`] sends it on.
//! Filters ignore it: [`NormalPath::as_str`] is `/a` for both `/a` and `/a/`.
//! The root `/` never carries the marker.
//!
//! # Upstreams
//! [`NormalPath::encoded`] percent-encodes `%` itself, so an upstream that
//! decodes its request path once gets exactly [`NormalPath::as_str`]. Under
//! the default rules that text holds no `%` followed by two hex digits, so a
//! second decode changes nothing either. With [`Allow::encoded_percent`] a
//! segment that was `%2561dmin` on the wire reaches the upstream as
//! `%2561dmin` again, and an upstream that decodes twice would act on a path
//! the filters never saw.

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

/// The longest raw request path accepted, in bytes; also the longest
/// re-encoded path that [`normalise`] will produce.
pub const MAX_PATH_LEN: usize = 8192;

/// The most segments a normalised path may have (counted after empty and dot
/// segments are removed; the raw form is bounded by [`MAX_PATH_LEN`]).
pub const MAX_SEGMENTS: usize = 256;

/// The bytes [`NormalPath::encoded`] percent-encodes in a segment, besides
/// every non-ASCII byte: controls, space, the delimiters `#`, `%`, `/`, `;`,
/// `?`, and the characters RFC 3986 never allows raw in a path.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b';')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'\\')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// What [`normalise_with`] lets through beyond the default rules.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Allow {
    /// A decoded segment may hold `%` followed by two hex digits (rule 5 of
    /// the [module documentation](self) is off): `gateway.allow_encoded_percent`,
    /// for an application that really has literal `%xx` text in its paths.
    pub encoded_percent: bool,
}

/// Why a request path was refused. Every variant becomes a `400 Bad Request`;
/// offsets are byte offsets into the raw path, and the path itself is never
/// repeated in the message (it is the client's input).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path does not start with `/` (empty, `*`, or an absolute URL).
    #[error(
        "request path does not start with '/'; only origin-form paths are accepted \
         (no '*', no absolute URL)"
    )]
    NotAbsolute,
    /// The raw path is longer than [`MAX_PATH_LEN`].
    #[error("request path is {len} bytes, over the {max}-byte limit")]
    TooLong {
        /// Length of the raw path in bytes.
        len: usize,
        /// The limit, [`MAX_PATH_LEN`].
        max: usize,
    },
    /// The raw path contains `#`.
    #[error(
        "request path has '#' at byte {at}; browsers never send a fragment, \
         so it is refused as an attack or a broken client"
    )]
    Fragment {
        /// Offset of the `#`.
        at: usize,
    },
    /// The raw path contains `?`: the caller did not split off the query.
    #[error("request path has a raw '?' at byte {at}; the query must be split off before the path is judged")]
    Query {
        /// Offset of the `?`.
        at: usize,
    },
    /// The raw path contains `\`, which some servers treat as `/`.
    #[error(
        "request path has '\\' at byte {at}; it is refused because servers disagree \
         on whether it separates segments"
    )]
    Backslash {
        /// Offset of the `\`.
        at: usize,
    },
    /// A segment contains `%2F` or `%5C` (an encoded `/` or `\`).
    #[error(
        "request path has an encoded '/' or '\\' (%2F or %5C) at byte {at}; it is refused \
         because servers disagree on whether it separates segments"
    )]
    EncodedSeparator {
        /// Offset of the `%`.
        at: usize,
    },
    /// A segment contains `%3B` (an encoded `;`).
    #[error(
        "request path has an encoded ';' (%3B) at byte {at}; it is refused because servers \
         disagree on whether it starts path parameters"
    )]
    EncodedSemicolon {
        /// Offset of the `%`.
        at: usize,
    },
    /// A `%` is not followed by two hex digits.
    #[error("request path has a '%' not followed by two hex digits at byte {at}; a literal '%' is written %25")]
    BadEscape {
        /// Offset of the `%`.
        at: usize,
    },
    /// A segment still holds `%` and two hex digits after the one decode
    /// (`%252e` → `%2e`): the path was percent-encoded more than once.
    #[error(
        "request path is percent-encoded more than once at byte {at} (once decoded it still holds an escape, \
         as %252e gives %2e); it is refused because an upstream that decodes twice would act on another path. \
         An application that has literal %xx text in its paths sets gateway.allow_encoded_percent = true"
    )]
    EncodedPercent {
        /// Offset of the escape (`%25`) that decoded to the `%`.
        at: usize,
    },
    /// A segment decodes to bytes that are not UTF-8.
    #[error("request path decodes to bytes that are not UTF-8 at byte {at}; paths must be percent-encoded UTF-8")]
    NotUtf8 {
        /// Offset of the first byte (raw or escape) of the bad sequence.
        at: usize,
    },
    /// The path contains a control character, raw or percent-encoded (`%00`).
    #[error(
        "request path has a control character (raw or encoded, such as %00) at byte {at}; \
         it is refused because servers and logs treat control characters inconsistently"
    )]
    ControlChar {
        /// Offset of the character or of the escape that produced it.
        at: usize,
    },
    /// The normalised path has more than [`MAX_SEGMENTS`] segments.
    #[error("request path has {n} segments once normalised, over the limit of {max}")]
    TooManySegments {
        /// Number of segments after normalising.
        n: usize,
        /// The limit, [`MAX_SEGMENTS`].
        max: usize,
    },
    /// The path, re-encoded for the upstream, would exceed [`MAX_PATH_LEN`]
    /// (raw non-ASCII or unsafe characters grow when encoded).
    #[error("request path would be {len} bytes once re-encoded for the upstream, over the {max}-byte limit")]
    EncodedTooLong {
        /// Length of the re-encoded path in bytes.
        len: usize,
        /// The limit, [`MAX_PATH_LEN`].
        max: usize,
    },
}

impl PathError {
    /// The `error` code of the 400 answer: `ambiguous_path` for a path
    /// encoded more than once, `bad_path` for every other refusal.
    pub fn code(&self) -> &'static str {
        match self {
            PathError::EncodedPercent { .. } => "ambiguous_path",
            _ => "bad_path",
        }
    }
}

/// A request path after [`normalise`]: decoded segments with no empty, `.`
/// or `..` segment, none containing `/`, `\`, `;` or a control character.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalPath {
    /// `/` followed by the decoded segments joined with `/`; `/` for the
    /// root. Never ends with `/` except for the root, so splitting it on `/`
    /// gives the segments back.
    text: String,
    /// Whether the request path ended in a slash (or a dot segment); never
    /// set for the root. Sent upstream, ignored by filters.
    trailing_slash: bool,
}

/// Normalises `raw`, the request target's path as received (origin form,
/// without the query: callers split at the first `?`), under the default
/// rules. The rules are in the [module documentation](self).
pub fn normalise(raw: &str) -> Result<NormalPath, PathError> {
    normalise_with(raw, Allow::default())
}

/// [`normalise`], with what `allow` lets through beyond the default rules.
pub fn normalise_with(raw: &str, allow: Allow) -> Result<NormalPath, PathError> {
    let bytes = raw.as_bytes();
    if bytes.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong { len: bytes.len(), max: MAX_PATH_LEN });
    }
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    // '#', '?' and '\' are ASCII, so they never occur inside a multi-byte
    // UTF-8 sequence and a byte scan finds exactly the characters.
    for (at, &b) in bytes.iter().enumerate() {
        match b {
            b'#' => return Err(PathError::Fragment { at }),
            b'?' => return Err(PathError::Query { at }),
            b'\\' => return Err(PathError::Backslash { at }),
            0x00..=0x1f | 0x7f => return Err(PathError::ControlChar { at }),
            _ => {}
        }
    }

    let mut segments: Vec<String> = Vec::new();
    let mut trailing = false;
    let mut seg_at = 1;
    for raw_seg in raw[1..].split('/') {
        let at = seg_at;
        seg_at += raw_seg.len() + 1;
        let without_params = raw_seg.split(';').next().unwrap_or("");
        let seg = decode_segment(without_params, at, allow)?;
        trailing = matches!(seg.as_str(), "" | "." | "..");
        match seg.as_str() {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            _ => segments.push(seg),
        }
    }
    if segments.len() > MAX_SEGMENTS {
        return Err(PathError::TooManySegments { n: segments.len(), max: MAX_SEGMENTS });
    }
    let path =
        NormalPath { text: format!("/{}", segments.join("/")), trailing_slash: trailing && !segments.is_empty() };
    let len = path.encoded().len();
    if len > MAX_PATH_LEN {
        return Err(PathError::EncodedTooLong { len, max: MAX_PATH_LEN });
    }
    Ok(path)
}

/// The value of one hex digit.
fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes one raw segment (parameters already dropped) that starts
/// at byte `at` of the raw path, refusing what rules 4 and 5 refuse.
///
/// Written here rather than with `percent_encoding::percent_decode`, which
/// passes malformed escapes through unchanged and cannot say which raw byte a
/// decoded byte came from.
fn decode_segment(seg: &str, at: usize, allow: Allow) -> Result<String, PathError> {
    let b = seg.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    // The raw offset each decoded byte came from, for error messages.
    let mut origin = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let here = at + i;
        if b[i] == b'%' {
            let hi = b.get(i + 1).copied().and_then(hex);
            let lo = b.get(i + 2).copied().and_then(hex);
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(PathError::BadEscape { at: here });
            };
            let v = hi << 4 | lo;
            match v {
                b'/' | b'\\' => return Err(PathError::EncodedSeparator { at: here }),
                b';' => return Err(PathError::EncodedSemicolon { at: here }),
                _ => {}
            }
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
        origin.push(here);
    }
    let text = String::from_utf8(out)
        .map_err(|e| PathError::NotUtf8 { at: origin.get(e.utf8_error().valid_up_to()).copied().unwrap_or(at) })?;
    if let Some((i, _)) = text.char_indices().find(|(_, c)| c.is_control()) {
        return Err(PathError::ControlChar { at: origin.get(i).copied().unwrap_or(at) });
    }
    if !allow.encoded_percent {
        let d = text.as_bytes();
        // '%' and hex digits are ASCII, so byte offsets are character offsets here.
        if let Some(i) = (0..d.len()).find(|&i| {
            d[i] == b'%'
                && d.get(i + 1).copied().and_then(hex).is_some()
                && d.get(i + 2).copied().and_then(hex).is_some()
        }) {
            return Err(PathError::EncodedPercent { at: origin.get(i).copied().unwrap_or(at) });
        }
    }
    Ok(text)
}

/// Percent-encodes a decoded path text (`/a/b`, as [`NormalPath::as_str`]
/// gives) segment by segment, so that [`normalise`] decodes it back to the
/// same text. Filters use it to hand identities out in request-path form.
pub(crate) fn encode_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 1);
    for seg in text.split('/').filter(|s| !s.is_empty()) {
        out.push('/');
        out.extend(utf8_percent_encode(seg, SEGMENT));
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

impl NormalPath {
    /// `/a/b`: the decoded segments joined with `/`, `/` for the root, with
    /// no trailing slash. Identity filters compare against this.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The decoded segments in order (none for the root).
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.text.split('/').filter(|s| !s.is_empty())
    }

    /// The first segment (the Glacier2 "category"), if any.
    pub fn category(&self) -> Option<&str> {
        self.segments().next()
    }

    /// Whether the request path ended with a slash (or a dot segment); never
    /// true for the root. Filters ignore it; [`encoded`](Self::encoded)
    /// keeps it.
    pub fn has_trailing_slash(&self) -> bool {
        self.trailing_slash
    }

    /// The path re-encoded for sending upstream: each segment percent-encoded
    /// so that it decodes back to exactly the same segment (controls, space,
    /// `"`, `#`, `%`, `/`, `;`, `?`, `<`, `>`, `\`, `^`, `` ` ``, `{`, `|`,
    /// `}` and non-ASCII are encoded), joined with `/`, with the trailing
    /// slash if the request had one.
    pub fn encoded(&self) -> String {
        let mut out = encode_text(&self.text);
        if self.trailing_slash {
            out.push('/');
        }
        out
    }

    /// Whether `prefix` (a normalised `/app` style string, or `/`) is a
    /// segment-wise prefix of this path: `/app` matches `/app` and `/app/x`,
    /// not `/application`. A trailing `/` on `prefix` is ignored; a prefix
    /// that does not start with `/` matches nothing.
    pub fn starts_with(&self, prefix: &str) -> bool {
        if !prefix.starts_with('/') {
            return false;
        }
        let prefix = prefix.trim_end_matches('/');
        if prefix.is_empty() {
            return true;
        }
        match self.text.strip_prefix(prefix) {
            Some(rest) => rest.is_empty() || rest.starts_with('/'),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn norm(raw: &str) -> String {
        match normalise(raw) {
            Ok(p) => p.as_str().to_string(),
            Err(e) => panic!("{raw:?} refused: {e}"),
        }
    }

    #[test]
    fn bypass_attempts_normalise_to_the_path_the_upstream_acts_on() {
        let table = [
            ("/a/../b", "/b"),
            ("/a/%2e%2e/b", "/b"),
            ("/a/%2E%2E/b", "/b"),
            ("/a/.%2e/b", "/b"),
            ("/a/./b", "/a/b"),
            ("/a/%2e/b", "/a/b"),
            ("//admin", "/admin"),
            ("///admin//x", "/admin/x"),
            ("/admin;x=1/y", "/admin/y"),
            ("/admin;jsessionid=abc", "/admin"),
            ("/public/..;/admin", "/admin"),
            ("/public/..;x=1/admin", "/admin"),
            ("/public/.;/admin", "/public/admin"),
            ("/%25zz", "/%zz"),
            ("/a%25", "/a%"),
            ("/100%25/x", "/100%/x"),
            ("/../../etc", "/etc"),
            ("/..", "/"),
            ("/a//../b", "/b"),
            ("/", "/"),
            ("//", "/"),
            ("/a/b/c/../../d", "/a/d"),
            ("/caf%C3%A9", "/café"),
            ("/café", "/café"),
            ("/a%20b", "/a b"),
            ("/a%3fb%23c", "/a?b#c"),
        ];
        for (raw, want) in table {
            assert_eq!(norm(raw), want, "normalising {raw:?}");
        }
    }

    #[test]
    fn refused_paths_say_why() {
        use PathError::*;
        let table = [
            ("/a%2fb", EncodedSeparator { at: 2 }),
            ("/a%2Fb", EncodedSeparator { at: 2 }),
            ("/a%5cb", EncodedSeparator { at: 2 }),
            ("/a\\b", Backslash { at: 2 }),
            ("/a#b", Fragment { at: 2 }),
            ("/#", Fragment { at: 1 }),
            ("/a?b", Query { at: 2 }),
            ("/%00", ControlChar { at: 1 }),
            ("/a\0", ControlChar { at: 2 }),
            ("/a/%7f", ControlChar { at: 3 }),
            ("/x%c2%85", ControlChar { at: 2 }),
            ("/%ff", NotUtf8 { at: 1 }),
            ("/ok/ab%c3", NotUtf8 { at: 6 }),
            ("/a%3bb", EncodedSemicolon { at: 2 }),
            ("/%2561dmin", EncodedPercent { at: 1 }),
            ("/%252e%252e/admin", EncodedPercent { at: 1 }),
            ("/public/..%252fprivate", EncodedPercent { at: 10 }),
            ("/public/%255c..", EncodedPercent { at: 8 }),
            ("/x/%2500", EncodedPercent { at: 3 }),
            ("/x/%25c0%25af", EncodedPercent { at: 3 }),
            ("/x/a%25%32%65", EncodedPercent { at: 4 }),
            ("/x/%c0%ae%c0%ae", NotUtf8 { at: 3 }),
            ("/x/%c0%af", NotUtf8 { at: 3 }),
            ("/x/%e0%80%ae", NotUtf8 { at: 3 }),
            ("/x/a%80", NotUtf8 { at: 4 }),
            ("/x/%u002e", BadEscape { at: 3 }),
            ("/a%", BadEscape { at: 2 }),
            ("/a%4", BadEscape { at: 2 }),
            ("/a%zz", BadEscape { at: 2 }),
            ("", NotAbsolute),
            ("*", NotAbsolute),
            ("a/b", NotAbsolute),
            ("http://h/a", NotAbsolute),
        ];
        for (raw, want) in table {
            assert_eq!(normalise(raw), Err(want.clone()), "normalising {raw:?}");
            assert!(!want.to_string().is_empty());
        }
    }

    #[test]
    fn multiple_encoding_is_refused_unless_allowed() {
        let literal = Allow { encoded_percent: true };
        for (raw, want) in [
            ("/%2561dmin", "/%61dmin"),
            ("/%252e%252e/admin", "/%2e%2e/admin"),
            ("/public/..%252fprivate", "/public/..%2fprivate"),
            ("/x/%25c0%25af", "/x/%c0%af"),
        ] {
            assert_eq!(normalise(raw).map_err(|e| e.code()), Err("ambiguous_path"), "{raw:?}");
            let p = normalise_with(raw, literal).unwrap_or_else(|e| panic!("{raw:?}: {e}"));
            assert_eq!(p.as_str(), want, "{raw:?}");
            assert_eq!(normalise_with(&p.encoded(), literal), Ok(p.clone()));
        }
        // Everything else is refused as before, with or without the key.
        for raw in ["/a%2fb", "/a%5cb", "/%c0%ae", "/a%", "/a\\b"] {
            assert_eq!(normalise_with(raw, literal), normalise(raw), "{raw:?}");
            assert_eq!(normalise(raw).map_err(|e| e.code()), Err("bad_path"), "{raw:?}");
        }
        // Single-encoded characters pass as they always did.
        assert_eq!(norm("/a%20b/%41/caf%C3%A9"), "/a b/A/café");
        assert!(PathError::EncodedPercent { at: 1 }.to_string().contains("gateway.allow_encoded_percent"));
    }

    #[test]
    fn fullwidth_dots_and_solidus_are_text_not_separators() {
        let p = normalise("/public/%ef%bc%8e%ef%bc%8e%ef%bc%8fprivate").unwrap();
        assert_eq!(p.as_str(), "/public/\u{ff0e}\u{ff0e}\u{ff0f}private");
        assert_eq!(p.category(), Some("public"));
        assert_eq!(p.encoded(), "/public/%EF%BC%8E%EF%BC%8E%EF%BC%8Fprivate");
        assert_eq!(norm("/public/\u{ff0e}\u{ff0e}/x"), "/public/\u{ff0e}\u{ff0e}/x");
    }

    #[test]
    fn what_follows_a_semicolon_is_dropped_unchecked() {
        assert_eq!(norm("/a;%zz/b"), "/a/b");
        assert_eq!(norm("/a;x=%2f/b"), "/a/b");
        // ...but '#', '?', '\' and raw controls are refused anywhere.
        assert!(matches!(normalise("/a;x\\y"), Err(PathError::Backslash { .. })));
        assert!(matches!(normalise("/a;#"), Err(PathError::Fragment { .. })));
    }

    #[test]
    fn limits_are_enforced() {
        let long = format!("/{}", "a".repeat(MAX_PATH_LEN));
        assert_eq!(normalise(&long), Err(PathError::TooLong { len: MAX_PATH_LEN + 1, max: MAX_PATH_LEN }));
        let max = format!("/{}", "a".repeat(MAX_PATH_LEN - 1));
        assert!(normalise(&max).is_ok());

        let many = "/a".repeat(MAX_SEGMENTS + 1);
        assert_eq!(normalise(&many), Err(PathError::TooManySegments { n: MAX_SEGMENTS + 1, max: MAX_SEGMENTS }));
        assert!(normalise(&"/a".repeat(MAX_SEGMENTS)).is_ok());
        // Empty and dot segments do not count.
        assert_eq!(normalise(&"/".repeat(MAX_PATH_LEN)).map(|p| p.as_str().to_string()), Ok("/".into()));
        let undone = format!("{}{}", "/a".repeat(300), "/..".repeat(100));
        assert_eq!(normalise(&undone).map(|p| p.segments().count()), Ok(200));

        // Raw non-ASCII triples in size when encoded for the upstream.
        let wide = format!("/{}", "é".repeat(3000));
        assert!(matches!(normalise(&wide), Err(PathError::EncodedTooLong { len: 18001, .. })));
    }

    #[test]
    fn trailing_slash_is_a_marker_that_filters_ignore() {
        let a = normalise("/a").unwrap();
        let slash = normalise("/a/").unwrap();
        assert_eq!(a.as_str(), slash.as_str());
        assert!(!a.has_trailing_slash());
        assert!(slash.has_trailing_slash());
        assert_ne!(a, slash);
        assert_eq!(slash.encoded(), "/a/");
        assert_eq!(a.encoded(), "/a");
        assert!(normalise("/a/b/..").unwrap().has_trailing_slash());
        assert!(normalise("/a/.").unwrap().has_trailing_slash());
        assert!(normalise("/a//").unwrap().has_trailing_slash());
        assert!(normalise("/a/;x").unwrap().has_trailing_slash());
        assert!(!normalise("/a/..").unwrap().has_trailing_slash());
        assert!(!normalise("/").unwrap().has_trailing_slash());
        assert_eq!(normalise("//").unwrap().encoded(), "/");
    }

    #[test]
    fn root_has_no_category_and_others_have_their_first_segment() {
        let root = normalise("/").unwrap();
        assert_eq!(root.as_str(), "/");
        assert_eq!(root.category(), None);
        assert_eq!(root.segments().count(), 0);
        let p = normalise("/_alice/x/y").unwrap();
        assert_eq!(p.category(), Some("_alice"));
        assert_eq!(p.segments().collect::<Vec<_>>(), ["_alice", "x", "y"]);
    }

    #[test]
    fn encoded_escapes_what_would_change_meaning() {
        let p = normalise("/a%20b/%25/caf%C3%A9/%3F%23/x%22%3C%3E%5E%60%7B%7C%7D").unwrap();
        assert_eq!(p.as_str(), "/a b/%/café/?#/x\"<>^`{|}");
        assert_eq!(p.encoded(), "/a%20b/%25/caf%C3%A9/%3F%23/x%22%3C%3E%5E%60%7B%7C%7D");
        let literal = Allow { encoded_percent: true };
        assert_eq!(normalise_with("/%2561dmin", literal).unwrap().encoded(), "/%2561dmin");
        assert_eq!(normalise("/a:b@c!$&'()*+,=~-_.x").unwrap().encoded(), "/a:b@c!$&'()*+,=~-_.x");
    }

    #[test]
    fn starts_with_is_segment_wise() {
        let p = normalise("/app/x").unwrap();
        assert!(p.starts_with("/"));
        assert!(p.starts_with("/app"));
        assert!(p.starts_with("/app/"));
        assert!(p.starts_with("/app/x"));
        assert!(!p.starts_with("/app/x/y"));
        assert!(!p.starts_with("/ap"));
        assert!(!p.starts_with("app"));
        assert!(!p.starts_with(""));
        assert!(normalise("/app").unwrap().starts_with("/app"));
        assert!(!normalise("/application").unwrap().starts_with("/app"));
        assert!(normalise("/").unwrap().starts_with("/"));
        assert!(!normalise("/").unwrap().starts_with("/app"));
    }

    #[test]
    fn encode_text_round_trips_through_normalise() {
        for text in ["/", "/a", "/a b/%/é/?#", "/%zz"] {
            assert_eq!(normalise(&encode_text(text)).unwrap().as_str(), text);
        }
        let literal = Allow { encoded_percent: true };
        assert_eq!(normalise_with(&encode_text("/%61dmin"), literal).unwrap().as_str(), "/%61dmin");
    }

    /// A raw segment: arbitrary printable text, or a run of the tokens
    /// bypass attempts are made of, so that escapes and dot segments appear.
    fn raw_segment() -> impl Strategy<Value = String> {
        let token = prop::sample::select(vec![
            "%", "%2e", "%2E", "%25", "%2f", "%3b", "%41", "%c3%a9", "%ff", "%00", ";", ";x=1", ".", "..", " ", "a",
            "B", "é", "中", "~", "\"", "{",
        ]);
        prop_oneof![
            "\\PC{0,8}",
            prop::collection::vec(token, 0..5).prop_map(|t| t.concat()),
            Just(String::new()),
            Just("..".to_string()),
        ]
    }

    proptest! {
        #[test]
        fn normal_form_is_clean_and_round_trips(
            segs in prop::collection::vec(raw_segment(), 0..8),
            slash in any::<bool>(),
        ) {
            let raw = format!("/{}{}", segs.join("/"), if slash { "/" } else { "" });
            if let Ok(p) = normalise(&raw) {
                let s = p.as_str();
                prop_assert!(s.starts_with('/'));
                prop_assert!(s == "/" || !s.ends_with('/'));
                for bad in ["/./", "/../", "//", ";", "\\"] {
                    prop_assert!(!s.contains(bad), "{s:?} from {raw:?} contains {bad:?}");
                }
                prop_assert!(!s.ends_with("/.") && !s.ends_with("/.."), "{s:?} from {raw:?}");
                prop_assert!(!s.chars().any(char::is_control));
                let again = normalise(&p.encoded());
                prop_assert_eq!(again, Ok(p.clone()), "raw {:?} encoded {:?}", raw, p.encoded());
            }
        }

        #[test]
        fn encoded_segments_decode_to_exactly_themselves(
            segs in prop::collection::vec("[^;/\\\\\\p{Cc}]{1,8}", 0..8),
        ) {
            let raw: String = segs.iter().map(|s| format!("/{}", utf8_percent_encode(s, SEGMENT))).collect();
            let literal = Allow { encoded_percent: true };
            let p = normalise_with(if raw.is_empty() { "/" } else { &raw }, literal).unwrap();
            // The model: dot segments apply, everything else is kept verbatim.
            let mut want: Vec<&str> = Vec::new();
            for s in &segs {
                match s.as_str() {
                    "." => {}
                    ".." => { want.pop(); }
                    s => want.push(s),
                }
            }
            prop_assert_eq!(p.segments().collect::<Vec<_>>(), want);
        }
    }
}
