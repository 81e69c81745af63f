//! The crate's cryptographic helpers: HMAC-SHA256 and constant-time
//! comparisons, over the `hmac`, `sha2` and `subtle` crates.
//!
//! A leaf module: it imports nothing from the crate, so every layer that
//! needs a MAC (webhook signatures, session keys in events, the gateway's
//! control handles) takes it from here instead of from the module that
//! happens to use it most. It never logs and never sees where its keys came
//! from.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// HMAC-SHA256 of the concatenation of `parts` under `key`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC takes a key of any length: this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// Whether `a` and `b` are equal, in time that depends only on their
/// lengths (never on where they first differ).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    bool::from(a.ct_eq(b))
}

/// Whether `a` and `b` are equal, comparing their SHA-256 digests in
/// constant time, so not even the length of a secret leaks (bearer tokens).
pub fn digests_eq(a: &[u8], b: &[u8]) -> bool {
    use sha2::Digest;
    bool::from(Sha256::digest(a).ct_eq(&Sha256::digest(b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_case_2_and_ct_eq_compares_bytes() {
        // RFC 4231, test case 2: key "Jefe", data "what do ya want for nothing?".
        let mac = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(digests_eq(b"token", b"token") && !digests_eq(b"token", b"token2"));
    }
}
