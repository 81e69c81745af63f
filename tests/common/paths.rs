//! Paths as attackers spell them, and what a careless upstream could make
//! of a forwarded path: the model that the path property test and the
//! attack corpus judge the gateway's output by.

/// Spellings of `.`: raw, single-encoded (both cases), double-encoded,
/// overlong UTF-8 (two and three bytes), overlong and double-encoded, and
/// the fullwidth full stop U+FF0E.
pub const DOTS: &[&str] = &[".", "%2e", "%2E", "%252e", "%c0%ae", "%e0%80%ae", "%25c0%25ae", "%ef%bc%8e"];

/// Spellings of `/` and `\`: raw, single-, double-encoded, overlong
/// (`%c0%af`, `%e0%80%af`, `%c1%9c`), overlong and double-encoded, and the
/// fullwidth solidus and reverse solidus (U+FF0F, U+FF3C).
pub const SEPARATORS: &[&str] = &[
    "/",
    "%2f",
    "%2F",
    "%252f",
    "%c0%af",
    "%e0%80%af",
    "%25c0%25af",
    "\\",
    "%5c",
    "%255c",
    "%c1%9c",
    "%25c1%259c",
    "%ef%bc%8f",
    "%ef%bc%bc",
];

/// Other pieces of bypass attempts: path parameters, encoded `;`, encoded
/// NUL, a lone or literal `%`, IIS `%u` escapes, single-encoded text.
pub const OTHERS: &[&str] = &[
    "..", ".", "a", "public", "private", ";", ";x=1", "%3b", "%253b", "%00", "%2500", "%25", "%2541", "%41", "%u002e",
    "%zz", "%c3%a9", "é", "~", " ", "%20",
];

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// One careless decode: every `%` and two hex digits becomes its byte
/// (anything else stays), overlong UTF-8 forms of `.`, `/` and `\` become
/// those characters (as old IIS read them), and `\` becomes `/`.
pub fn careless_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut bytes = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let (Some(hi), Some(lo)) = (b.get(i + 1).copied().and_then(hex), b.get(i + 2).copied().and_then(hex))
        {
            bytes.push(hi << 4 | lo);
            i += 3;
        } else {
            bytes.push(b[i]);
            i += 1;
        }
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let folded = match bytes[i..] {
            [0xc0, 0xae, ..] => Some((b'.', 2)),
            [0xc0, 0xaf, ..] => Some((b'/', 2)),
            [0xc1, 0x9c, ..] => Some((b'\\', 2)),
            [0xe0, 0x80, 0xae, ..] => Some((b'.', 3)),
            [0xe0, 0x80, 0xaf, ..] => Some((b'/', 3)),
            [0xe0, 0x81, 0x9c, ..] => Some((b'\\', 3)),
            _ => None,
        };
        match folded {
            Some((c, n)) => {
                out.push(c);
                i += n;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).replace('\\', "/")
}

/// A decoded path as a careless upstream resolves it: path parameters
/// dropped from each segment, empty and `.` segments removed, `..`
/// removing the segment before it (RFC 3986 `remove_dot_segments`).
pub fn resolve(decoded: &str) -> String {
    let mut segs: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        match seg.split(';').next().unwrap_or("") {
            "" | "." => {}
            ".." => {
                segs.pop();
            }
            s => segs.push(s),
        }
    }
    format!("/{}", segs.join("/"))
}

/// Every resolved reading of a forwarded path (the path part, as sent
/// upstream): as it is (with `\` read as `/`), after one careless decode,
/// after two, and so on until a decode changes nothing (at most 16).
pub fn careless_readings(forwarded: &str) -> Vec<String> {
    let mut out = vec![resolve(&forwarded.replace('\\', "/"))];
    let mut s = forwarded.to_string();
    for _ in 0..16 {
        let next = careless_decode(&s);
        out.push(resolve(&next));
        if next == s {
            break;
        }
        s = next;
    }
    out
}

/// Whether the resolved `path` is `prefix` (`/public`) or under it,
/// segment-wise.
pub fn within(path: &str, prefix: &str) -> bool {
    path == prefix || path.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/'))
}

/// Whether some careless reading of the forwarded path leaves `prefix`.
pub fn escapes(forwarded: &str, prefix: &str) -> bool {
    careless_readings(forwarded).iter().any(|p| !within(p, prefix))
}
