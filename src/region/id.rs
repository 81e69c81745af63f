//! Session ids: what they carry, how they are printed and parsed.
//!
//! An id is 27 bytes printed as 36 characters of unpadded base64url, so it
//! is safe in URLs, path parameters and cookies without escaping:
//!
//! | bytes | field | purpose |
//! | --- | --- | --- |
//! | 0..3 | node id (u24, big-endian) | sticky routing in the cluster phase: the first 4 characters are exactly the node |
//! | 3..5 | context tag (u16) | which region the id belongs to |
//! | 5..9 | slot index (u32) | O(1) lookup, no global index |
//! | 9..27 | token (144 bits from the OS CSPRNG) | the secret; compared in constant time |
//!
//! This module owns parsing and must never accept anything but canonical
//! 36-character base64url; it never touches the region.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::layout::TOKEN_LEN;

/// Raw id length in bytes.
pub const ID_BYTES: usize = 27;
/// Printed id length in characters.
pub const ID_CHARS: usize = 36;
/// Largest node id (24 bits).
pub const MAX_NODE_ID: u32 = (1 << 24) - 1;

/// A parsed session id. Its `Debug` form never shows the token.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId {
    /// Node that issued the id.
    pub node: u32,
    /// Tag of the context (see `layout::context_tag`).
    pub context: u16,
    /// Slot index inside the context's region.
    pub slot: u32,
    /// The random secret.
    pub token: [u8; TOKEN_LEN],
}

impl SessionId {
    /// Builds an id with a fresh token from the OS CSPRNG.
    pub fn generate(node: u32, context: u16, slot: u32) -> std::io::Result<SessionId> {
        let mut token = [0u8; TOKEN_LEN];
        getrandom::getrandom(&mut token).map_err(|e| std::io::Error::other(format!("getrandom failed: {e}")))?;
        Ok(SessionId { node, context, slot, token })
    }

    /// The first 12 characters of the printed id, for logs: node, context
    /// and slot only, never any of the token.
    pub fn short(&self) -> String {
        let mut s = self.to_string();
        s.truncate(12);
        s
    }

    /// Raw 27-byte form.
    pub fn to_bytes(&self) -> [u8; ID_BYTES] {
        let mut b = [0u8; ID_BYTES];
        b[0..3].copy_from_slice(&self.node.to_be_bytes()[1..4]);
        b[3..5].copy_from_slice(&self.context.to_be_bytes());
        b[5..9].copy_from_slice(&self.slot.to_be_bytes());
        b[9..].copy_from_slice(&self.token);
        b
    }

    /// Parses the printed form. Anything but exactly 36 canonical base64url
    /// characters is `None`.
    pub fn parse(s: &[u8]) -> Option<SessionId> {
        if s.len() != ID_CHARS {
            return None;
        }
        let mut b = [0u8; ID_BYTES];
        match URL_SAFE_NO_PAD.decode_slice(s, &mut b) {
            Ok(ID_BYTES) => {}
            _ => return None,
        }
        let mut token = [0u8; TOKEN_LEN];
        token.copy_from_slice(&b[9..]);
        Some(SessionId {
            node: u32::from_be_bytes([0, b[0], b[1], b[2]]),
            context: u16::from_be_bytes([b[3], b[4]]),
            slot: u32::from_be_bytes([b[5], b[6], b[7], b[8]]),
            token,
        })
    }

    /// Constant-time comparison of the token with a stored one.
    pub fn token_matches(&self, stored: &[u8; TOKEN_LEN]) -> bool {
        crate::crypto::ct_eq(&self.token, stored)
    }

    /// A short, stable hash of the whole id for logs: never log the id.
    pub fn log_hash(&self) -> String {
        use std::hash::{DefaultHasher, Hash, Hasher};
        let mut h = DefaultHasher::new();
        self.to_bytes().hash(&mut h);
        format!("sid#{:08x}", h.finish() as u32)
    }
}

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&URL_SAFE_NO_PAD.encode(self.to_bytes()))
    }
}

impl std::fmt::Debug for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SessionId(node={}, context={}, slot={}, {})", self.node, self.context, self.slot, self.log_hash())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn id_roundtrips_and_has_fixed_length() {
        let id = SessionId::generate(0xabcdef, 7, 123_456).unwrap();
        let s = id.to_string();
        assert_eq!(s.len(), ID_CHARS);
        assert!(s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_eq!(SessionId::parse(s.as_bytes()), Some(id));
    }

    #[test]
    fn node_is_the_first_four_characters() {
        let a = SessionId::generate(5, 1, 1).unwrap().to_string();
        let b = SessionId::generate(5, 9, 77).unwrap().to_string();
        assert_eq!(a[..4], b[..4]);
        let c = SessionId::generate(6, 1, 1).unwrap().to_string();
        assert_ne!(a[..4], c[..4]);
    }

    #[test]
    fn malformed_ids_are_rejected() {
        let good = SessionId::generate(1, 2, 3).unwrap().to_string();
        assert!(SessionId::parse(b"").is_none());
        assert!(SessionId::parse(&good.as_bytes()[..35]).is_none());
        assert!(SessionId::parse(format!("{good}A").as_bytes()).is_none());
        let mut bad = good.clone().into_bytes();
        bad[10] = b'=';
        assert!(SessionId::parse(&bad).is_none());
        bad[10] = b'+';
        assert!(SessionId::parse(&bad).is_none());
        bad[10] = 0xff;
        assert!(SessionId::parse(&bad).is_none());
    }

    #[test]
    fn tokens_differ_and_compare_exactly() {
        let a = SessionId::generate(1, 1, 1).unwrap();
        let b = SessionId::generate(1, 1, 1).unwrap();
        assert_ne!(a.token, b.token);
        assert!(a.token_matches(&a.token));
        assert!(!a.token_matches(&b.token));
        assert!(!format!("{a:?}").contains(&a.to_string()));
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_only_accepts_canonical(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Some(id) = SessionId::parse(&bytes) {
                let printed = id.to_string();
                prop_assert_eq!(printed.as_bytes(), &bytes[..]);
            }
        }

        #[test]
        fn every_id_roundtrips(node in 0u32..=MAX_NODE_ID, ctx: u16, slot: u32, token: [u8; 18]) {
            let id = SessionId { node, context: ctx, slot, token };
            prop_assert_eq!(SessionId::parse(id.to_string().as_bytes()), Some(id));
        }
    }
}
