//! `store_codec`: the store's session record codec (`sessiond::store::record`)
//! and the takeover notice (`sessiond::store::Moved`).
//!
//! Properties, on every input:
//! 1. `record::decode` of the raw bytes never panics. When it accepts them,
//!    encoding what it returned gives the same bytes back (the encoding is
//!    canonical), except that a blob without the settings trailer (written
//!    before format 3) comes back with the default trailer appended.
//! 2. Attributes and settings built from the bytes (within the codec's
//!    domain: names UTF-8, principal 1 to `MAX_PRINCIPAL` bytes, a timeout or
//!    deadline of 0 meaning none) round trip: `decode(encode(x)) == x`.
//! 3. `Moved::decode` of the bytes as text never panics, and what it
//!    accepts round trips through `Moved::encode`.

use sessiond::region::MAX_PRINCIPAL;
use sessiond::store::Moved;
use sessiond::store::record::{self, Settings};

use super::Bytes;

/// Runs the three properties on `data`; panics if one fails.
pub fn check(data: &[u8]) {
    raw_decode(data);
    round_trip(data);
    if let Ok(s) = std::str::from_utf8(data)
        && let Some(m) = Moved::decode(s)
    {
        assert_eq!(Moved::decode(&m.encode()), Some(m), "notice {s:?} does not round trip");
    }
}

fn raw_decode(data: &[u8]) {
    let Ok((attrs, settings)) = record::decode(data) else { return };
    let again = record::encode(&attrs, &settings);
    if again != data {
        // Only a blob without the trailer may differ: by the default trailer.
        let default_trailer = &record::encode(&[], &Settings::default())[4..];
        assert_eq!(settings, Settings::default(), "blob {data:?} re-encodes as {again:?}");
        assert_eq!(&again[data.len().min(again.len())..], default_trailer, "blob {data:?} re-encodes as {again:?}");
        assert_eq!(&again[..data.len()], data, "blob {data:?} re-encodes as {again:?}");
    }
    assert_eq!(record::decode(&again).expect("a re-encoded blob decodes"), (attrs, settings));
}

fn round_trip(data: &[u8]) {
    let mut b = Bytes::new(data);
    let n = b.pick(6);
    let mut attrs = Vec::new();
    for _ in 0..n {
        let name_len = b.pick(12);
        let name = String::from_utf8_lossy(b.take(name_len)).into_owned();
        let value_len = b.pick(40);
        attrs.push((name, b.take(value_len).to_vec()));
    }
    let flags = b.byte();
    let principal_len = 1 + b.pick(MAX_PRINCIPAL);
    let mut principal = String::from_utf8_lossy(b.take(principal_len)).into_owned();
    // A lossy conversion may grow the text (U+FFFD is 3 bytes): cut it back
    // to a character boundary within the limit.
    while principal.len() > MAX_PRINCIPAL {
        principal.pop();
    }
    let settings = Settings {
        version: b.u64(),
        timeout_s: Some(b.u32()).filter(|&t| flags & 1 != 0 && t > 0),
        deadline_ms: Some(b.u64()).filter(|&d| flags & 2 != 0 && d > 0),
        principal: Some(principal).filter(|p| flags & 4 != 0 && !p.is_empty()),
    };
    let blob = record::encode(&attrs, &settings);
    match record::decode(&blob) {
        Ok(got) => assert_eq!(got, (attrs, settings), "blob {blob:?}"),
        Err(e) => panic!("encode gave a blob decode refuses ({e}): {blob:?}"),
    }
}
