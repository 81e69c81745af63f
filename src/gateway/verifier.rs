//! The gateway's password verifier: an htpasswd-style file of `user:hash`
//! lines, checked with bcrypt or argon2id.
//!
//! # What it owns
//! - Parsing the file: one `user:hash` per line; blank lines and lines whose
//!   first non-blank character is `#` are ignored; a trailing `\r` is
//!   tolerated. Every line is validated at load, so a bad file stops the
//!   server at start instead of failing one login at a time.
//! - The accepted hashes: bcrypt (`$2y$`, `$2b$`, `$2a$`, cost 4 to 31) and
//!   argon2id PHC strings (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`). Every
//!   other kind (`{SHA}`, `$apr1$`, `$1$`, `$5$`, `$6$`, DES, plain text,
//!   argon2i, argon2d, bcrypt `$2x$`) is refused at load with the file, the
//!   line, the user and the kind, never the hash itself.
//! - Keeping login timing from telling which users exist: an unknown user is
//!   verified against a dummy hash made at load from a random password, of
//!   the kind most entries use and the most expensive cost of that kind
//!   present; user names are compared over every entry without early exit.
//!
//! # What it must never do
//! - Print, log or put into an error a password or a stored hash
//!   (`Debug` shows the number of users and the dummy's parameters only).
//! - Run on an async runtime thread: [`Verifier::check`] blocks for tens of
//!   milliseconds, so callers run it on `tokio::task::spawn_blocking`.
//! - Hash or compare passwords by hand: the `bcrypt` and `argon2` crates do
//!   that, and compare their outputs in constant time.
//!
//! bcrypt reads only the first 72 bytes of a password, as Apache's
//! `htpasswd` and every other bcrypt do; argon2id reads all of it.
//!
//! A file that mixes both kinds, or several costs, still leaks a little:
//! a known user whose hash is cheaper (or of the other kind) than the dummy
//! answers measurably faster than an unknown user. One kind and one cost
//! per file avoids that; `load` logs a warning when the file mixes them.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use argon2::password_hash::{PasswordHashString, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use subtle::{ConditionallySelectable, ConstantTimeEq};

/// Longest accepted user name, in bytes.
pub const MAX_USER_LEN: usize = 256;

/// Longest accepted password, in bytes; longer ones are refused (after the
/// same dummy verification an unknown user costs).
pub const MAX_PASSWORD_LEN: usize = 1024;

/// What every refusal says about the formats sessiond accepts.
const ACCEPTED: &str = "accepted are bcrypt `$2y$`/`$2b$`/`$2a$` (make one with \
     `htpasswd -nbB user pass`) and argon2id PHC strings `$argon2id$v=19$m=…,t=…,p=…$salt$hash` \
     (make one with `echo -n pass | argon2 \"$(openssl rand -base64 16)\" -id -e`)";

/// Why a password file was refused.
#[derive(Debug, thiserror::Error)]
pub enum VerifierError {
    /// The file could not be read.
    #[error("cannot read the password file {path}: {source}; check the path and that sessiond's user may read it")]
    Io {
        /// The file's path.
        path: String,
        /// The error from the read.
        source: std::io::Error,
    },
    /// The file is not UTF-8.
    #[error("{path} line {line}: not UTF-8; save the password file as UTF-8")]
    NotUtf8 {
        /// The file's path (or the origin given to [`Verifier::parse`]).
        path: String,
        /// The first line (1-based) holding a byte that is not UTF-8.
        line: usize,
    },
    /// A line is not `user:hash`, or its user name is not allowed.
    #[error("{path} line {line}: {why}; each line is `user:hash`, blank, or a `#` comment")]
    BadLine {
        /// The file's path (or the origin given to [`Verifier::parse`]).
        path: String,
        /// The line number, from 1.
        line: usize,
        /// What is wrong with it (never the line's text, which may hold a secret).
        why: String,
    },
    /// A user's hash is of a kind sessiond refuses (weak, or not supported).
    #[error(
        "{path} line {line}: user {user:?} has a {kind} hash, which sessiond refuses; {accepted}",
        accepted = ACCEPTED
    )]
    Unsupported {
        /// The file's path (or the origin given to [`Verifier::parse`]).
        path: String,
        /// The line number, from 1.
        line: usize,
        /// The user whose hash is refused.
        user: String,
        /// The kind of hash found, e.g. "SHA-1 `{SHA}`".
        kind: &'static str,
    },
    /// A user's hash is of an accepted kind but does not parse.
    #[error(
        "{path} line {line}: user {user:?} has a malformed {kind} hash ({why}); make a new one: {accepted}",
        accepted = ACCEPTED
    )]
    Malformed {
        /// The file's path (or the origin given to [`Verifier::parse`]).
        path: String,
        /// The line number, from 1.
        line: usize,
        /// The user whose hash is malformed.
        user: String,
        /// The accepted kind the hash claims to be: "bcrypt" or "argon2id".
        kind: &'static str,
        /// What is wrong with it (never the hash itself).
        why: String,
    },
    /// A user appears on two lines.
    #[error("{path} line {line}: user {user:?} is already defined on line {first_line}; keep one of the two lines")]
    Duplicate {
        /// The file's path (or the origin given to [`Verifier::parse`]).
        path: String,
        /// The line of the second definition, from 1.
        line: usize,
        /// The line of the first definition, from 1.
        first_line: usize,
        /// The user defined twice.
        user: String,
    },
    /// The file defines no user.
    #[error("{path} defines no users; add `user:hash` lines (make one with `htpasswd -nbB user pass`)")]
    Empty {
        /// The file's path (or the origin given to [`Verifier::parse`]).
        path: String,
    },
    /// The dummy hash that keeps unknown users' timing could not be made.
    #[error(
        "{path}: cannot make the dummy hash that keeps unknown users' timing ({why}); check that the system random source works"
    )]
    Dummy {
        /// The file's path (or the origin given to [`Verifier::parse`]).
        path: String,
        /// What failed.
        why: String,
    },
}

/// A validated stored hash.
enum Stored {
    /// A bcrypt hash (`$2y$`, `$2b$` or `$2a$`); the crate ignores the
    /// prefix, which only differs for passwords longer than bcrypt reads.
    Bcrypt {
        /// The whole hash string, as in the file.
        hash: String,
        /// Its cost (log2 of the rounds), 4 to 31.
        cost: u32,
    },
    /// An argon2id v=19 PHC string.
    Argon2id {
        /// The parsed PHC string.
        hash: PasswordHashString,
        /// Its memory, passes and lanes, validated by the crate.
        params: Params,
    },
}

impl Stored {
    /// Verifies `password` against this hash; every failure is `false`.
    fn verify(&self, password: &[u8]) -> bool {
        #[cfg(test)]
        tests::VERIFICATIONS.with(|n| n.set(n.get() + 1));
        match self {
            Stored::Bcrypt { hash, .. } => bcrypt::verify(password, hash).unwrap_or(false),
            Stored::Argon2id { hash, .. } => Argon2::default().verify_password(password, &hash.password_hash()).is_ok(),
        }
    }

    /// How the parameters read, for `Debug` and log lines (never the hash).
    fn describe(&self) -> String {
        match self {
            Stored::Bcrypt { cost, .. } => format!("bcrypt cost {cost}"),
            Stored::Argon2id { params, .. } => {
                format!("argon2id m={},t={},p={}", params.m_cost(), params.t_cost(), params.p_cost())
            }
        }
    }
}

/// One user of the file.
struct Entry {
    /// The user name, zero-padded to [`MAX_USER_LEN`] so every comparison
    /// reads the same number of bytes.
    name: [u8; MAX_USER_LEN],
    /// The user name's length in bytes (1 to [`MAX_USER_LEN`]).
    name_len: u64,
    /// The user's hash.
    stored: Stored,
}

/// The users of a password file and their hashes, checked in constant time
/// with respect to which users exist (see the module doc).
pub struct Verifier {
    /// Every user, in file order; [`Verifier::check`] compares against all.
    entries: Vec<Entry>,
    /// The hash unknown users (and over-long input) are verified against:
    /// a random password hashed with the most expensive parameters of the
    /// kind most entries use.
    dummy: Stored,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("users", &self.entries.len())
            .field("dummy", &self.dummy.describe())
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// Parses an htpasswd-style file: one `user:hash` per line; blank lines
    /// and lines starting with `#` ignored; trailing `\r` tolerated.
    ///
    /// Accepted hashes are bcrypt (`$2y$`, `$2b$`, `$2a$`) and argon2id PHC
    /// strings, each validated here; everything else is refused with the
    /// file, line number, user and kind. A user name is 1 to 256 bytes of
    /// printable characters other than space and `:`; a user defined twice
    /// and a file with no users are errors.
    pub fn load(path: &Path) -> Result<Verifier, VerifierError> {
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| VerifierError::Io { path: shown.clone(), source })?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            VerifierError::NotUtf8 { path: shown.clone(), line: 1 + valid.iter().filter(|&&b| b == b'\n').count() }
        })?;
        let verifier = Verifier::parse(&text, &shown)?;
        if verifier.mixes_parameters() {
            log::warn!(
                "password file {shown}: users' hashes differ in kind or cost; unknown users are \
                 checked against {} and a known user with a cheaper hash answers faster; \
                 rehash every user with one kind and cost",
                verifier.dummy.describe()
            );
        }
        Ok(verifier)
    }

    /// Builds from text (for tests and [`Verifier::load`]); `origin` names
    /// the source in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Verifier, VerifierError> {
        let mut entries = Vec::new();
        let mut lines_by_user: HashMap<&str, usize> = HashMap::new();
        for (index, raw) in text.split('\n').enumerate() {
            let line = index + 1;
            let content = raw.strip_suffix('\r').unwrap_or(raw);
            let trimmed = content.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let bad = |why: String| VerifierError::BadLine { path: origin.to_string(), line, why };
            let Some((user, hash)) = content.split_once(':') else {
                return Err(bad("no `:` between user and hash".to_string()));
            };
            check_user_name(user).map_err(bad)?;
            if hash.trim() != hash {
                return Err(bad(format!("user {user:?}: blank space around the hash; remove it")));
            }
            if let Some(&first_line) = lines_by_user.get(user) {
                return Err(VerifierError::Duplicate {
                    path: origin.to_string(),
                    line,
                    first_line,
                    user: user.to_string(),
                });
            }
            let stored = classify(hash).map_err(|refusal| match refusal {
                Refusal::Unsupported(kind) => {
                    VerifierError::Unsupported { path: origin.to_string(), line, user: user.to_string(), kind }
                }
                Refusal::Malformed { kind, why } => {
                    VerifierError::Malformed { path: origin.to_string(), line, user: user.to_string(), kind, why }
                }
            })?;
            lines_by_user.insert(user, line);
            let mut name = [0u8; MAX_USER_LEN];
            name[..user.len()].copy_from_slice(user.as_bytes());
            entries.push(Entry { name, name_len: user.len() as u64, stored });
        }
        if entries.is_empty() {
            return Err(VerifierError::Empty { path: origin.to_string() });
        }
        let dummy = make_dummy(&entries).map_err(|why| VerifierError::Dummy { path: origin.to_string(), why })?;
        Ok(Verifier { entries, dummy })
    }

    /// BLOCKING (bcrypt and argon2 take tens of milliseconds): callers run it
    /// on `tokio::task::spawn_blocking`, never on a runtime thread.
    ///
    /// Returns true only for a known user with the right password. An
    /// unknown user costs the same as a wrong password: the password is
    /// verified against the dummy hash. A user name longer than 256 bytes or
    /// a password longer than 1024 bytes is `false`, after the same dummy
    /// verification.
    pub fn check(&self, user: &str, password: &str) -> bool {
        if user.len() > MAX_USER_LEN || password.len() > MAX_PASSWORD_LEN {
            let cut = password.len().min(MAX_PASSWORD_LEN);
            self.dummy.verify(&password.as_bytes()[..cut]);
            return false;
        }
        let mut wanted = [0u8; MAX_USER_LEN];
        wanted[..user.len()].copy_from_slice(user.as_bytes());
        let wanted_len = user.len() as u64;
        // Every entry is compared, all 256 bytes, without early exit; the
        // match is picked with a constant-time select.
        let mut found = subtle::Choice::from(0);
        let mut at = 0u64;
        for (i, entry) in self.entries.iter().enumerate() {
            let same = entry.name[..].ct_eq(&wanted[..]) & entry.name_len.ct_eq(&wanted_len);
            at.conditional_assign(&(i as u64), same);
            found |= same;
        }
        if bool::from(found) {
            self.entries[at as usize].stored.verify(password.as_bytes())
        } else {
            self.dummy.verify(password.as_bytes());
            false
        }
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Always false: a verifier holds at least one user (an empty file is
    /// refused).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether the entries differ in kind or parameters (so the dummy
    /// cannot match every one of them).
    fn mixes_parameters(&self) -> bool {
        let first = self.entries[0].stored.describe();
        self.entries.iter().any(|entry| entry.stored.describe() != first)
    }
}

/// Checks a user name: 1 to 256 bytes, printable, no space, no `:`.
fn check_user_name(user: &str) -> Result<(), String> {
    if user.is_empty() {
        return Err("the user name is empty".to_string());
    }
    if user.len() > MAX_USER_LEN {
        return Err(format!("the user name is {} bytes long; at most {MAX_USER_LEN} are allowed", user.len()));
    }
    if let Some((at, _)) = user.char_indices().find(|&(_, c)| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "the user name has a space or control character at byte {at}; user names are printable without spaces"
        ));
    }
    Ok(())
}

/// Why a hash was refused.
enum Refusal {
    /// A kind sessiond does not accept.
    Unsupported(&'static str),
    /// An accepted kind that does not parse.
    Malformed {
        /// "bcrypt" or "argon2id".
        kind: &'static str,
        /// What is wrong, never the hash.
        why: String,
    },
}

/// Validates a stored hash, or says which kind it is and why it is refused.
fn classify(hash: &str) -> Result<Stored, Refusal> {
    if ["$2y$", "$2b$", "$2a$"].iter().any(|p| hash.starts_with(p)) {
        parse_bcrypt(hash).map_err(|why| Refusal::Malformed { kind: "bcrypt", why })
    } else if hash.starts_with("$argon2id$") {
        parse_argon2id(hash).map_err(|why| Refusal::Malformed { kind: "argon2id", why })
    } else {
        Err(Refusal::Unsupported(refused_kind(hash)))
    }
}

/// Names a refused hash's kind from its prefix or shape (never its text).
fn refused_kind(hash: &str) -> &'static str {
    const PREFIXES: &[(&str, &str)] = &[
        ("{SHA}", "SHA-1 `{SHA}`"),
        ("{SSHA}", "salted SHA-1 `{SSHA}`"),
        ("$apr1$", "Apache MD5 `$apr1$`"),
        ("$1$", "MD5-crypt `$1$`"),
        ("$5$", "SHA-256-crypt `$5$`"),
        ("$6$", "SHA-512-crypt `$6$`"),
        ("$y$", "yescrypt `$y$`"),
        ("$7$", "scrypt `$7$`"),
        ("$2x$", "bcrypt `$2x$` (marks hashes from the buggy crypt_blowfish before 1.1)"),
        ("$argon2i$", "argon2i (only argon2id is accepted)"),
        ("$argon2d$", "argon2d (only argon2id is accepted)"),
    ];
    if hash.is_empty() {
        return "empty";
    }
    if let Some((_, kind)) = PREFIXES.iter().find(|(p, _)| hash.starts_with(p)) {
        return kind;
    }
    if hash.starts_with('$') {
        return "unknown `$…$` crypt scheme";
    }
    let des_char = |b: u8| b.is_ascii_alphanumeric() || b == b'.' || b == b'/';
    if hash.len() == 13 && hash.bytes().all(des_char) {
        return "DES crypt";
    }
    "plain text (or unknown)"
}

/// Validates a bcrypt hash: `$2?$NN$` then 22 characters of salt and 31 of
/// hash in bcrypt's base64, cost 4 to 31.
fn parse_bcrypt(hash: &str) -> Result<Stored, String> {
    let parts: bcrypt::HashParts =
        hash.parse().map_err(|_| "expected `$2y$NN$` and 53 characters of salt and hash".to_string())?;
    let rest = &hash[4..];
    let (cost_text, body) = rest.split_once('$').ok_or_else(|| "no `$` after the cost".to_string())?;
    if cost_text.len() != 2 || !cost_text.bytes().all(|b| b.is_ascii_digit()) {
        return Err("the cost is not two digits".to_string());
    }
    let cost = parts.get_cost();
    if !(4..=31).contains(&cost) {
        return Err(format!("cost {cost} is outside 4 to 31"));
    }
    if body.len() != 53 || !body.is_ascii() {
        return Err(format!("{} characters after the cost; bcrypt has 53", body.chars().count()));
    }
    let (salt, digest) = body.split_at(22);
    match (bcrypt::BASE_64.decode(salt).map(|s| s.len()), bcrypt::BASE_64.decode(digest).map(|d| d.len())) {
        (Ok(16), Ok(23)) => Ok(Stored::Bcrypt { hash: hash.to_string(), cost }),
        _ => Err("the salt or hash is not bcrypt base64".to_string()),
    }
}

/// Validates an argon2id PHC string: version 19, parameters the crate
/// accepts, a salt of at least 8 bytes and a hash.
fn parse_argon2id(hash: &str) -> Result<Stored, String> {
    let parsed = PasswordHashString::new(hash).map_err(|e| e.to_string())?;
    let phc = parsed.password_hash();
    if phc.algorithm != argon2::ARGON2ID_IDENT {
        return Err("the algorithm is not argon2id".to_string());
    }
    if phc.version != Some(Version::V0x13 as u32) {
        return Err("the version must be `v=19`".to_string());
    }
    let params = Params::try_from(&phc).map_err(|e| format!("parameters: {e}"))?;
    let salt = phc.salt.ok_or_else(|| "no salt".to_string())?;
    let mut buf = [0u8; 64];
    let salt_len = salt.decode_b64(&mut buf).map_err(|e| format!("salt: {e}"))?.len();
    if salt_len < argon2::MIN_SALT_LEN {
        return Err(format!("the salt is {salt_len} bytes; argon2 needs at least {}", argon2::MIN_SALT_LEN));
    }
    if phc.hash.is_none() {
        return Err("no hash after the salt".to_string());
    }
    Ok(Stored::Argon2id { hash: parsed, params })
}

/// Makes the dummy hash: a random password hashed with the most expensive
/// parameters of the kind most entries use (bcrypt on a tie).
fn make_dummy(entries: &[Entry]) -> Result<Stored, String> {
    let mut password = [0u8; 32];
    getrandom::getrandom(&mut password).map_err(|e| format!("getrandom: {e}"))?;
    let bcrypt_costs = entries.iter().filter_map(|e| match e.stored {
        Stored::Bcrypt { cost, .. } => Some(cost),
        Stored::Argon2id { .. } => None,
    });
    let bcrypt_count = bcrypt_costs.clone().count();
    if bcrypt_count * 2 >= entries.len() {
        let cost = bcrypt_costs.max().unwrap_or(bcrypt::DEFAULT_COST);
        let hash = bcrypt::hash(password, cost).map_err(|e| format!("bcrypt: {e}"))?;
        return Ok(Stored::Bcrypt { hash, cost });
    }
    let params = entries
        .iter()
        .filter_map(|e| match &e.stored {
            Stored::Argon2id { params, .. } => Some(params),
            Stored::Bcrypt { .. } => None,
        })
        .max_by_key(|p| {
            (
                u64::from(p.m_cost()) * u64::from(p.t_cost()),
                p.m_cost(),
                p.t_cost(),
                p.p_cost(),
                p.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN),
            )
        })
        .cloned()
        .unwrap_or_default();
    let mut salt = [0u8; argon2::RECOMMENDED_SALT_LEN];
    getrandom::getrandom(&mut salt).map_err(|e| format!("getrandom: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| format!("salt: {e}"))?;
    let hasher = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let hash = argon2::password_hash::PasswordHasher::hash_password(&hasher, &password, &salt)
        .map_err(|e| format!("argon2id: {e}"))?
        .serialize();
    Ok(Stored::Argon2id { hash, params })
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::PasswordHasher;
    use std::cell::Cell;

    thread_local! {
        /// Hash verifications run on this thread (tests run one per thread).
        pub(super) static VERIFICATIONS: Cell<u64> = const { Cell::new(0) };
    }

    /// Verifications `f` ran on this thread.
    fn verifications(f: impl FnOnce()) -> u64 {
        let before = VERIFICATIONS.with(Cell::get);
        f();
        VERIFICATIONS.with(Cell::get) - before
    }

    fn bcrypt_hash(password: &str, cost: u32, version: bcrypt::Version) -> String {
        bcrypt::hash_with_result(password, cost).unwrap().format_for_version(version)
    }

    fn argon2id_hash(password: &str, m: u32, t: u32) -> String {
        let params = Params::new(m, t, 1, None).unwrap();
        let hasher = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let salt = SaltString::encode_b64(b"sixteen byte slt").unwrap();
        hasher.hash_password(password.as_bytes(), &salt).unwrap().to_string()
    }

    fn refusal(text: &str) -> VerifierError {
        Verifier::parse(text, "users.htpasswd").unwrap_err()
    }

    #[test]
    fn verifier_is_send_and_sync() {
        fn both<T: Send + Sync>() {}
        both::<Verifier>();
    }

    #[test]
    fn bcrypt_right_password_passes_wrong_fails() {
        let text = format!("alice:{}\n", bcrypt_hash("s3cret", 4, bcrypt::Version::TwoB));
        let v = Verifier::parse(&text, "t").unwrap();
        assert_eq!(v.len(), 1);
        assert!(v.check("alice", "s3cret"));
        assert!(!v.check("alice", "s3cret!"));
        assert!(!v.check("alice", ""));
        assert!(!v.check("Alice", "s3cret"));
    }

    #[test]
    fn bcrypt_2y_and_2a_are_accepted_and_verify() {
        let text = format!(
            "y:{}\na:{}\n",
            bcrypt_hash("pw-y", 4, bcrypt::Version::TwoY),
            bcrypt_hash("pw-a", 4, bcrypt::Version::TwoA)
        );
        assert!(text.contains("y:$2y$04$") && text.contains("a:$2a$04$"));
        let v = Verifier::parse(&text, "t").unwrap();
        assert!(v.check("y", "pw-y"));
        assert!(v.check("a", "pw-a"));
        assert!(!v.check("y", "pw-a"));
    }

    #[test]
    fn argon2id_right_password_passes_wrong_fails() {
        let text = format!("bob:{}\n", argon2id_hash("hunter2", 8, 1));
        let v = Verifier::parse(&text, "t").unwrap();
        assert!(v.check("bob", "hunter2"));
        assert!(!v.check("bob", "hunter3"));
    }

    #[test]
    fn unknown_user_is_refused_after_a_real_verification() {
        let text = format!("alice:{}\n", bcrypt_hash("s3cret", 4, bcrypt::Version::TwoB));
        let v = Verifier::parse(&text, "t").unwrap();
        let mut result = true;
        assert_eq!(verifications(|| result = v.check("mallory", "s3cret")), 1);
        assert!(!result);
        assert_eq!(verifications(|| result = v.check("alice", "nope")), 1);
        assert!(!result);
    }

    #[test]
    fn dummy_has_the_most_expensive_bcrypt_cost() {
        let text = format!(
            "a:{}\nb:{}\n",
            bcrypt_hash("x", 4, bcrypt::Version::TwoB),
            bcrypt_hash("y", 5, bcrypt::Version::TwoY)
        );
        let v = Verifier::parse(&text, "t").unwrap();
        match &v.dummy {
            Stored::Bcrypt { hash, cost } => {
                assert_eq!(*cost, 5);
                assert_eq!(hash.parse::<bcrypt::HashParts>().unwrap().get_cost(), 5);
            }
            Stored::Argon2id { .. } => panic!("the dummy should be bcrypt"),
        }
    }

    #[test]
    fn dummy_has_the_most_expensive_argon2id_params() {
        let text = format!("a:{}\nb:{}\n", argon2id_hash("x", 8, 1), argon2id_hash("y", 16, 2));
        let v = Verifier::parse(&text, "t").unwrap();
        match &v.dummy {
            Stored::Argon2id { hash, params } => {
                assert_eq!((params.m_cost(), params.t_cost(), params.p_cost()), (16, 2, 1));
                let phc = hash.password_hash();
                assert_eq!(phc.algorithm, argon2::ARGON2ID_IDENT);
                assert_eq!(Params::try_from(&phc).unwrap().m_cost(), 16);
            }
            Stored::Bcrypt { .. } => panic!("the dummy should be argon2id"),
        }
        let mut result = true;
        assert_eq!(verifications(|| result = v.check("nobody", "x")), 1);
        assert!(!result);
    }

    #[test]
    fn over_long_input_is_refused_after_a_dummy_verification() {
        let long = "p".repeat(MAX_PASSWORD_LEN + 1);
        let exact = "p".repeat(MAX_PASSWORD_LEN);
        let text =
            format!("alice:{}\nbob:{}\n", bcrypt_hash(&long, 4, bcrypt::Version::TwoB), argon2id_hash(&exact, 8, 1));
        let v = Verifier::parse(&text, "t").unwrap();
        let mut result = true;
        // bcrypt would accept it (it reads 72 bytes), the length limit does not.
        assert_eq!(verifications(|| result = v.check("alice", &long)), 1);
        assert!(!result);
        assert!(v.check("bob", &exact));
        let long_user = "u".repeat(MAX_USER_LEN + 1);
        assert_eq!(verifications(|| result = v.check(&long_user, "p")), 1);
        assert!(!result);
    }

    #[test]
    fn comments_blank_lines_and_crlf_are_tolerated() {
        let text = format!(
            "# users\r\n\r\n   \n  # indented comment\nalice:{}\r\n\nbob:{}\n",
            bcrypt_hash("a", 4, bcrypt::Version::TwoY),
            argon2id_hash("b", 8, 1)
        );
        let v = Verifier::parse(&text, "t").unwrap();
        assert_eq!(v.len(), 2);
        assert!(v.check("alice", "a"));
        assert!(v.check("bob", "b"));
    }

    #[test]
    fn refused_kinds_name_line_user_and_kind_but_not_the_hash() {
        let cases = [
            ("{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", "SHA-1"),
            ("$apr1$lZL6V/ci$eIMz/iKDkbtys/uU7LEK00", "Apache MD5"),
            ("$1$saltsalt$KDVZ4xKLpyjdpQ6cT2UlZ.", "MD5-crypt"),
            ("$5$saltsalt$Gcm6FsVtF/Qa77ZKD.iwsJlCVPY0XSMgLJL0Hnww/c1", "SHA-256-crypt"),
            (
                "$6$saltsalt$qFmFH.bQmmtXzyBY0s9v7Oicd2z4XSIecDzlB5KiA2/jctKu9YterLp8wwnSq.qc.eoxqOmSuNp2xS0ktL3nh/",
                "SHA-512-crypt",
            ),
            ("rqXexS6ZhobKA", "DES crypt"),
            ("my password!", "plain text"),
            ("$argon2i$v=19$m=8,t=1,p=1$c2l4dGVlbiBieXRlIHNsdA$KhDvl1dwQWdUhNbd7yrR3A", "argon2i"),
            ("$argon2d$v=19$m=8,t=1,p=1$c2l4dGVlbiBieXRlIHNsdA$KhDvl1dwQWdUhNbd7yrR3A", "argon2d"),
            ("$2x$04$abcdefghijklmnopqrstuu5s2v8.iXieOjg/.AySBTTZIIVFJeBui", "$2x$"),
        ];
        for (hash, kind) in cases {
            let text = format!("# header\nok:{}\n\ncarol:{hash}\n", argon2id_hash("x", 8, 1));
            let err = refusal(&text);
            assert!(matches!(err, VerifierError::Unsupported { line: 4, .. }), "{err:?}");
            let msg = err.to_string();
            assert!(msg.contains("users.htpasswd line 4"), "{msg}");
            assert!(msg.contains("\"carol\""), "{msg}");
            assert!(msg.contains(kind), "{kind}: {msg}");
            assert!(msg.contains("htpasswd -nbB"), "{msg}");
            assert!(msg.contains("argon2id"), "{msg}");
            assert!(!msg.contains(hash), "the message shows the hash: {msg}");
            assert!(!format!("{err:?}").contains(hash), "Debug shows the hash");
        }
    }

    #[test]
    fn malformed_accepted_hashes_are_refused_without_the_hash() {
        let good = bcrypt_hash("x", 4, bcrypt::Version::TwoY);
        let cases = [
            good[..good.len() - 1].to_string(),
            good.replace("$04$", "$03$"),
            good.replace("$04$", "$4$"),
            format!("{}!", &good[..good.len() - 1]),
            "$argon2id$v=19$m=8,t=1,p=1$c2FsdA$KhDvl1dwQWdUhNbd7yrR3A".to_string(),
            "$argon2id$v=16$m=8,t=1,p=1$c2l4dGVlbiBieXRlIHNsdA$KhDvl1dwQWdUhNbd7yrR3A".to_string(),
            "$argon2id$v=19$m=8,t=1,p=1$c2l4dGVlbiBieXRlIHNsdA".to_string(),
            "$argon2id$v=19$m=1,t=1,p=1$c2l4dGVlbiBieXRlIHNsdA$KhDvl1dwQWdUhNbd7yrR3A".to_string(),
        ];
        for hash in cases {
            let err = refusal(&format!("dave:{hash}\n"));
            assert!(matches!(err, VerifierError::Malformed { line: 1, .. }), "{hash}: {err:?}");
            let msg = err.to_string();
            assert!(msg.contains("line 1") && msg.contains("\"dave\""), "{msg}");
            assert!(!msg.contains(&hash), "the message shows the hash: {msg}");
        }
    }

    #[test]
    fn duplicate_user_names_both_lines() {
        let h = bcrypt_hash("x", 4, bcrypt::Version::TwoB);
        let err = refusal(&format!("alice:{h}\nbob:{h}\n#\nalice:{h}\n"));
        assert!(
            matches!(
                &err,
                VerifierError::Duplicate { line: 4, first_line: 1, user, .. } if user == "alice"
            ),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains("line 4") && msg.contains("line 1"), "{msg}");
    }

    #[test]
    fn empty_file_is_refused() {
        for text in ["", "\n\n", "# only a comment\n"] {
            assert!(matches!(refusal(text), VerifierError::Empty { .. }));
        }
    }

    #[test]
    fn bad_lines_and_user_names_are_refused_with_their_line() {
        let h = bcrypt_hash("x", 4, bcrypt::Version::TwoB);
        let long = "u".repeat(MAX_USER_LEN + 1);
        let max = "u".repeat(MAX_USER_LEN);
        for (text, line) in [
            (format!("ok:{h}\nno colon here\n"), 2),
            (format!(":{h}\n"), 1),
            (format!("a user:{h}\n"), 1),
            (format!("tab\tuser:{h}\n"), 1),
            (format!("{long}:{h}\n"), 1),
            (format!("alice:{h} \n"), 1),
        ] {
            let err = refusal(&text);
            assert!(matches!(err, VerifierError::BadLine { line: l, .. } if l == line), "{text:?}: {err:?}");
            assert!(!err.to_string().contains(&h));
        }
        let v = Verifier::parse(&format!("{max}:{h}\nzoë:{h}\n"), "t").unwrap();
        assert!(v.check(&max, "x"));
        assert!(v.check("zoë", "x"));
    }

    #[test]
    fn load_reads_a_file_and_names_it_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users");
        std::fs::write(&path, format!("alice:{}\n", argon2id_hash("pw", 8, 1))).unwrap();
        let v = Verifier::load(&path).unwrap();
        assert!(v.check("alice", "pw"));

        std::fs::write(&path, b"alice:\xff\xfe\n").unwrap();
        let err = Verifier::load(&path).unwrap_err();
        assert!(matches!(err, VerifierError::NotUtf8 { line: 1, .. }), "{err:?}");

        let missing = dir.path().join("missing");
        let err = Verifier::load(&missing).unwrap_err();
        assert!(err.to_string().contains(&missing.display().to_string()));
    }

    #[test]
    fn debug_shows_no_hash() {
        let h = bcrypt_hash("x", 4, bcrypt::Version::TwoB);
        let v = Verifier::parse(&format!("alice:{h}\n"), "t").unwrap();
        let shown = format!("{v:?}");
        assert!(!shown.contains("$2"), "{shown}");
        assert!(shown.contains("users: 1"), "{shown}");
    }
}
