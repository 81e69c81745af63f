//! `gateway_path`: the gateway's request-path normaliser
//! (`sessiond::gateway::path`).
//!
//! The input is the raw request path (invalid UTF-8 is replaced, as the
//! path reaches the normaliser as `&str`). Under both rule sets (default,
//! and `allow_encoded_percent`), whenever the normaliser accepts a path `p`:
//! 1. The path checked equals the path forwarded: the filters judge
//!    `p.as_str()` and the upstream is sent `p.encoded()`. The forwarded
//!    form parses as a request URI whose path is exactly that text, and
//!    percent-decoding it once gives `p.as_str()` (plus the trailing slash,
//!    if `p` has one).
//! 2. Normalising twice changes nothing: `normalise(p.encoded()) == p`.
//! 3. The text is in normal form: it starts with `/`, and no segment is
//!    empty, `.` or `..`, or holds `/`, `\`, `;` or a control character;
//!    under the default rules, a second decode of it changes nothing.
//! 4. The default rules accept nothing the relaxed ones refuse, and both
//!    agree on what they accept.
//!
//! A refusal is fine; it must only not panic (its message and code are
//! rendered).

use percent_encoding::percent_decode_str;
use sessiond::gateway::path::{Allow, MAX_PATH_LEN, NormalPath, normalise_with};

/// Runs the properties on `data`; panics if one fails.
pub fn check(data: &[u8]) {
    let raw = String::from_utf8_lossy(data);
    let strict = judge(&raw, Allow::default());
    let relaxed = judge(&raw, Allow { encoded_percent: true });
    if let Some(p) = strict {
        assert_eq!(relaxed.as_ref(), Some(&p), "{raw:?}: the relaxed rules disagree with the default ones");
        let text = p.as_str();
        let twice = percent_decode_str(text).decode_utf8().expect("normal text is UTF-8");
        assert_eq!(twice, text, "{raw:?}: a second decode of {text:?} changes it");
    }
}

/// Normalises `raw` under `allow` and checks properties 1 to 3 of what it
/// accepts.
fn judge(raw: &str, allow: Allow) -> Option<NormalPath> {
    let p = match normalise_with(raw, allow) {
        Ok(p) => p,
        Err(e) => {
            let _ = (e.to_string(), e.code());
            return None;
        }
    };
    let text = p.as_str();
    let sent = p.encoded();
    assert!(sent.len() <= MAX_PATH_LEN, "{raw:?}: forwarded form is {} bytes", sent.len());
    // 1. What the upstream receives is what the filters judged.
    let uri: hyper::Uri = sent.parse().unwrap_or_else(|e| panic!("{raw:?}: forwarded {sent:?} is not a URI: {e}"));
    assert_eq!(uri.path(), sent, "{raw:?}: the URI parser changed the forwarded path");
    let decoded = percent_decode_str(&sent).decode_utf8().expect("the forwarded form decodes to UTF-8");
    let expected = if p.has_trailing_slash() { format!("{text}/") } else { text.to_string() };
    assert_eq!(decoded, expected, "{raw:?}: forwarded {sent:?} decodes to another path than the one judged");
    // 2. Idempotent.
    assert_eq!(normalise_with(&sent, allow).as_ref(), Ok(&p), "{raw:?}: normalising {sent:?} again changes it");
    // 3. Normal form.
    assert!(text.starts_with('/'), "{raw:?}: {text:?}");
    assert!(text == "/" || !text.ends_with('/'), "{raw:?}: {text:?} ends with '/'");
    assert!(!(text == "/" && p.has_trailing_slash()), "{raw:?}: the root carries a trailing slash");
    for seg in text[1..].split('/').filter(|_| text != "/") {
        assert!(!matches!(seg, "" | "." | ".."), "{raw:?}: segment {seg:?} in {text:?}");
        assert!(!seg.contains(['\\', ';']) && !seg.chars().any(char::is_control), "{raw:?}: segment {seg:?}");
    }
    assert_eq!(p.segments().count(), if text == "/" { 0 } else { text[1..].split('/').count() });
    Some(p)
}
