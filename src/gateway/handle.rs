//! Control handles: how the backend names a gateway session without
//! holding its id.
//!
//! A handle is `<slot>.<mac>`: the session's slot in the gateway context
//! (hex) and the first 16 bytes of HMAC-SHA256 over a domain label, the
//! context tag, the slot and the session's token, keyed by the gateway
//! secret, in base64url. It names exactly one session: a rotation or a new
//! occupant of the slot makes the old handle stale (404). It cannot be
//! turned into the id (the token is under the MAC), so a backend that
//! logs or leaks a handle leaks no credential. Checked in constant time.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::region::SessionId;

/// Bytes of MAC kept in a handle (128 bits).
const MAC_BYTES: usize = 16;
/// Longest handle text accepted (slot in hex, '.', 22 base64url chars).
pub const MAX_HANDLE_LEN: usize = 8 + 1 + 22;

fn mac(secret: &[u8], id: &SessionId) -> [u8; MAC_BYTES] {
    let full = crate::crypto::hmac_sha256(
        secret,
        &[b"sessiond control handle v1\0", &id.context.to_be_bytes(), &id.slot.to_be_bytes(), &id.token],
    );
    let mut out = [0u8; MAC_BYTES];
    out.copy_from_slice(&full[..MAC_BYTES]);
    out
}

/// The handle of `id`.
pub fn handle_of(secret: &[u8], id: &SessionId) -> String {
    format!("{:x}.{}", id.slot, URL_SAFE_NO_PAD.encode(mac(secret, id)))
}

/// A parsed, not yet verified handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handle {
    /// The slot it names.
    pub slot: u32,
    /// Its MAC.
    mac: [u8; MAC_BYTES],
}

impl Handle {
    /// Parses the text form; `None` for anything malformed (answered as a
    /// stale handle, 404, like any other miss).
    pub fn parse(s: &str) -> Option<Handle> {
        if s.len() > MAX_HANDLE_LEN {
            return None;
        }
        let (slot, mac_text) = s.split_once('.')?;
        if slot.is_empty() || slot.len() > 8 || !slot.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let slot = u32::from_str_radix(slot, 16).ok()?;
        let raw = URL_SAFE_NO_PAD.decode(mac_text).ok()?;
        let mac: [u8; MAC_BYTES] = raw.try_into().ok()?;
        Some(Handle { slot, mac })
    }

    /// Whether this handle names `id` (the session now in its slot), in
    /// constant time.
    pub fn names(&self, secret: &[u8], id: &SessionId) -> bool {
        id.slot == self.slot && crate::crypto::ct_eq(&mac(secret, id), &self.mac)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(slot: u32, t: u8) -> SessionId {
        SessionId { node: 1, context: 0x1234, slot, token: [t; crate::region::TOKEN_LEN] }
    }

    #[test]
    fn a_handle_names_one_session_and_nothing_else() {
        let s = b"0123456789abcdef0123456789abcdef";
        let a = id(42, 7);
        let h = handle_of(s, &a);
        assert!(h.starts_with("2a.") && h.len() <= MAX_HANDLE_LEN, "{h}");
        let p = Handle::parse(&h).unwrap();
        assert!(p.names(s, &a));
        assert!(!p.names(s, &id(42, 8)), "another token in the same slot (rotation, new occupant)");
        assert!(!p.names(s, &id(43, 7)), "another slot");
        assert!(!p.names(b"another secret of thirty-two b!!", &a));
        assert!(!h.contains(&a.to_string()));
        for bad in ["", ".", "2a", "2a.", "zz.AAAA", "2a.!!!!", "123456789.AAAAAAAAAAAAAAAAAAAAAA", &format!("{h}x")] {
            assert!(Handle::parse(bad).is_none_or(|p| !p.names(s, &a)), "{bad:?}");
        }
    }
}
