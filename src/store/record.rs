//! The attribute blob a store keeps per session, and the numbers every
//! store shares (tombstone life, expiry grace).
//!
//! A store holds a session's attributes as one blob (the session is
//! written whole, as the region holds it): a count, then for each
//! attribute its name length, name, value length and value, lengths as
//! big-endian u32. The session's own settings ([`Settings`]: version,
//! timeout, deadline, principal) follow as a trailer that starts with
//! [`TRAILER_MAGIC`]; a blob without one (written before format 3) decodes
//! with default settings. Store bytes are untrusted: [`decode`] refuses
//! anything malformed or beyond the limits instead of panicking.

/// How long a removed session's tombstone stays in the store, ms: a save
/// that raced the removal finds it and is refused instead of bringing the
/// session back.
pub const TOMBSTONE_MS: u64 = 10 * 60 * 1000;

/// Most attributes a blob may hold (the region's own limit).
const MAX_ATTRS: usize = crate::region::LIMIT_MAX_VALUES as usize;
/// Largest blob accepted, bytes.
pub const MAX_BLOB: usize = 64 << 20;

/// The first bytes of the settings trailer.
pub const TRAILER_MAGIC: [u8; 4] = *b"SDS1";

/// A session's own settings, as a store keeps them beside its attributes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// Its version (the `ETag`), so a condition holds across nodes.
    pub version: u64,
    /// Its own idle timeout, seconds.
    pub timeout_s: Option<u32>,
    /// Its own absolute deadline, ms.
    pub deadline_ms: Option<u64>,
    /// Its principal.
    pub principal: Option<String>,
}

/// Encodes attributes and settings.
pub fn encode(attrs: &[(String, Vec<u8>)], settings: &Settings) -> Vec<u8> {
    let p = settings.principal.as_deref().unwrap_or("");
    let size = 4 + attrs.iter().map(|(k, v)| 8 + k.len() + v.len()).sum::<usize>() + 4 + 8 + 4 + 8 + 2 + p.len();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(attrs.len() as u32).to_be_bytes());
    for (k, v) in attrs {
        out.extend_from_slice(&(k.len() as u32).to_be_bytes());
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(&(v.len() as u32).to_be_bytes());
        out.extend_from_slice(v);
    }
    out.extend_from_slice(&TRAILER_MAGIC);
    out.extend_from_slice(&settings.version.to_be_bytes());
    out.extend_from_slice(&settings.timeout_s.unwrap_or(0).to_be_bytes());
    out.extend_from_slice(&settings.deadline_ms.unwrap_or(0).to_be_bytes());
    out.extend_from_slice(&(p.len() as u16).to_be_bytes());
    out.extend_from_slice(p.as_bytes());
    out
}

/// A decoded blob.
pub type Decoded = (Vec<(String, Vec<u8>)>, Settings);

/// What is wrong with a damaged blob (store bytes are untrusted).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Longer than [`MAX_BLOB`].
    #[error("attribute blob of {0} bytes exceeds {MAX_BLOB}")]
    TooLong(usize),
    /// More attributes than [`MAX_ATTRS`].
    #[error("attribute blob claims {0} attributes")]
    TooManyAttributes(usize),
    /// A length runs past the end.
    #[error("attribute blob cut short")]
    CutShort,
    /// An attribute name is not UTF-8.
    #[error("attribute name is not UTF-8")]
    NameNotUtf8,
    /// Bytes after the attributes that are not a trailer, or after the trailer.
    #[error("attribute blob has trailing bytes")]
    TrailingBytes,
    /// A principal longer than the region allows.
    #[error("stored principal of {0} bytes")]
    PrincipalTooLong(usize),
    /// The principal is not UTF-8.
    #[error("stored principal is not UTF-8")]
    PrincipalNotUtf8,
}

/// Decodes a blob; `Err` names what is wrong.
pub fn decode(b: &[u8]) -> Result<Decoded, DecodeError> {
    if b.len() > MAX_BLOB {
        return Err(DecodeError::TooLong(b.len()));
    }
    let mut r = Reader { b, at: 0 };
    let n = r.u32()? as usize;
    if n > MAX_ATTRS {
        return Err(DecodeError::TooManyAttributes(n));
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let kl = r.u32()? as usize;
        let k = std::str::from_utf8(r.take(kl)?).map_err(|_| DecodeError::NameNotUtf8)?.to_string();
        let vl = r.u32()? as usize;
        out.push((k, r.take(vl)?.to_vec()));
    }
    let mut settings = Settings::default();
    if r.at < b.len() {
        if r.take(4)? != TRAILER_MAGIC {
            return Err(DecodeError::TrailingBytes);
        }
        settings.version = r.u64()?;
        settings.timeout_s = Some(r.u32()?).filter(|&t| t > 0);
        settings.deadline_ms = Some(r.u64()?).filter(|&d| d > 0);
        let pl = u16::from_be_bytes([r.take(1)?[0], r.take(1)?[0]]) as usize;
        if pl > crate::region::MAX_PRINCIPAL {
            return Err(DecodeError::PrincipalTooLong(pl));
        }
        let p = std::str::from_utf8(r.take(pl)?).map_err(|_| DecodeError::PrincipalNotUtf8)?;
        settings.principal = (!p.is_empty()).then(|| p.to_string());
    }
    if r.at != b.len() {
        return Err(DecodeError::TrailingBytes);
    }
    Ok((out, settings))
}

/// A bounds-checked cursor over untrusted bytes.
struct Reader<'b> {
    b: &'b [u8],
    at: usize,
}

impl<'b> Reader<'b> {
    fn take(&mut self, n: usize) -> Result<&'b [u8], DecodeError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len()).ok_or(DecodeError::CutShort)?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        let s = self.take(4)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok((u64::from(self.u32()?) << 32) | u64::from(self.u32()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_and_damage_is_an_error() {
        let a = vec![("user".to_string(), b"ann".to_vec()), ("\u{1}gw".to_string(), vec![0, 255])];
        let set = Settings {
            version: 7,
            timeout_s: Some(60),
            deadline_ms: Some(1_900_000_000_000),
            principal: Some("alice".into()),
        };
        let b = encode(&a, &set);
        assert_eq!(decode(&b).unwrap(), (a.clone(), set));
        assert_eq!(decode(&b[..b.len() - 1]), Err(DecodeError::CutShort));
        let mut extra = b.clone();
        extra.push(0);
        assert_eq!(decode(&extra), Err(DecodeError::TrailingBytes));
        assert_eq!(decode(&[0xff, 0xff, 0xff, 0xff]), Err(DecodeError::TooManyAttributes(0xffff_ffff)));
        assert_eq!(decode(&encode(&[], &Settings::default())).unwrap(), (vec![], Settings::default()));
        // A blob written before the trailer existed: default settings.
        let old = &b[..b.len() - (4 + 8 + 4 + 8 + 2 + 5)];
        assert_eq!(decode(old).unwrap(), (a, Settings::default()));
    }

    proptest! {
        #[test]
        fn any_bytes_decode_without_panic(b in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&b);
        }
    }
}
