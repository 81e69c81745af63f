//! The attribute blob a store keeps per session, and the numbers every
//! store shares (tombstone life, expiry grace).
//!
//! A store holds a session's attributes as one blob (the session is
//! written whole, as the region holds it): a count, then for each
//! attribute its name length, name, value length and value, lengths as
//! big-endian u32. Store bytes are untrusted: [`decode`] refuses anything
//! malformed or beyond the limits instead of panicking.

/// How long a removed session's tombstone stays in the store, ms: a save
/// that raced the removal finds it and is refused instead of bringing the
/// session back.
pub const TOMBSTONE_MS: u64 = 10 * 60 * 1000;

/// Most attributes a blob may hold (the region's own limit).
const MAX_ATTRS: usize = crate::region::LIMIT_MAX_VALUES as usize;
/// Largest blob accepted, bytes.
pub const MAX_BLOB: usize = 64 << 20;

/// Encodes attributes.
pub fn encode(attrs: &[(String, Vec<u8>)]) -> Vec<u8> {
    let size = 4 + attrs.iter().map(|(k, v)| 8 + k.len() + v.len()).sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(attrs.len() as u32).to_be_bytes());
    for (k, v) in attrs {
        out.extend_from_slice(&(k.len() as u32).to_be_bytes());
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(&(v.len() as u32).to_be_bytes());
        out.extend_from_slice(v);
    }
    out
}

/// Decodes a blob; `Err` names what is wrong.
pub fn decode(b: &[u8]) -> Result<Vec<(String, Vec<u8>)>, String> {
    if b.len() > MAX_BLOB {
        return Err(format!("attribute blob of {} bytes exceeds {MAX_BLOB}", b.len()));
    }
    let mut at = 0usize;
    let mut take = |n: usize| -> Result<&[u8], String> {
        let end = at.checked_add(n).filter(|&e| e <= b.len()).ok_or("attribute blob cut short")?;
        let s = &b[at..end];
        at = end;
        Ok(s)
    };
    let u32_of = |s: &[u8]| u32::from_be_bytes([s[0], s[1], s[2], s[3]]) as usize;
    let n = u32_of(take(4)?);
    if n > MAX_ATTRS {
        return Err(format!("attribute blob claims {n} attributes"));
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let kl = u32_of(take(4)?);
        let k = std::str::from_utf8(take(kl)?).map_err(|_| "attribute name is not UTF-8")?.to_string();
        let vl = u32_of(take(4)?);
        out.push((k, take(vl)?.to_vec()));
    }
    if at != b.len() {
        return Err("attribute blob has trailing bytes".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_and_damage_is_an_error() {
        let a = vec![("user".to_string(), b"ann".to_vec()), ("\u{1}gw".to_string(), vec![0, 255])];
        let b = encode(&a);
        assert_eq!(decode(&b).unwrap(), a);
        assert!(decode(&b[..b.len() - 1]).is_err());
        let mut extra = b.clone();
        extra.push(0);
        assert!(decode(&extra).is_err());
        assert!(decode(&[0xff, 0xff, 0xff, 0xff]).is_err());
        assert_eq!(decode(&encode(&[])).unwrap(), vec![]);
    }

    proptest! {
        #[test]
        fn any_bytes_decode_without_panic(b in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&b);
        }
    }
}
