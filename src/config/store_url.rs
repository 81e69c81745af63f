//! The `cluster.store` URL: which store it names, and how it is shown.
//!
//! Users write the URL forms they already know: libpq's for PostgreSQL
//! (`postgres://user:pw@host:port/db?host=/run/postgresql`) and redis-rs's
//! for Redis (`redis://`, `rediss://`, `redis+unix:///path`). The URL is
//! checked here by the same parsers the store clients use, and every
//! message and log shows it with its password replaced by `***`.

use std::fmt;

/// Which kind of store a URL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// PostgreSQL through tokio-postgres.
    Postgres,
    /// Redis through redis-rs.
    Redis,
}

/// A checked store URL.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreUrl {
    /// The kind of store.
    pub kind: StoreKind,
    /// The URL as written (may hold a password: never log it).
    raw: String,
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreUrl({})", self.shown())
    }
}

impl serde::Serialize for StoreUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.shown())
    }
}

/// `raw` with the password of its user info and any `password=` query
/// parameter replaced by `***` (the outbound module's one redaction).
pub fn redact(raw: &str) -> String {
    crate::outbound::url::redact(raw, crate::outbound::url::Shown::PasswordMasked)
}

impl StoreUrl {
    /// Checks `raw` with the store client's own parser. The error is the
    /// reason and the fix; it never contains the password.
    pub fn parse(raw: &str) -> Result<StoreUrl, String> {
        let shown = redact(raw);
        let scrub = |e: String| -> String {
            // A parser's message might quote the input back.
            match password_of(raw) {
                Some(pw) if !pw.is_empty() => e.replace(&pw, "***"),
                _ => e,
            }
        };
        let scheme = raw.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        match scheme.as_deref() {
            Some("postgres" | "postgresql") => {
                raw.parse::<tokio_postgres::Config>()
                    .map_err(|e| scrub(format!("{shown} is not a PostgreSQL URL libpq would accept: {e}")))?;
                Ok(StoreUrl { kind: StoreKind::Postgres, raw: raw.to_string() })
            }
            Some("redis" | "rediss" | "redis+unix" | "unix") => {
                use redis::IntoConnectionInfo;
                raw.into_connection_info()
                    .map_err(|e| scrub(format!("{shown} is not a Redis URL redis-rs would accept: {e}")))?;
                Ok(StoreUrl { kind: StoreKind::Redis, raw: raw.to_string() })
            }
            _ => Err(format!(
                "{shown}: write postgres://user@host/db (libpq's URL form), redis://host:6379/0, \
                 rediss://host:6380/0 or redis+unix:///run/redis/redis.sock"
            )),
        }
    }

    /// The URL as written, password included: only for the store client.
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// The URL without its password, for logs and messages.
    pub fn shown(&self) -> String {
        redact(&self.raw)
    }

    /// Whether the URL itself carries a password.
    pub fn has_password(&self) -> bool {
        password_of(&self.raw).is_some_and(|p| !p.is_empty())
    }
}

/// The password written in `raw`, if any.
fn password_of(raw: &str) -> Option<String> {
    let (_, rest) = raw.split_once("://")?;
    let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
    if let Some(at) = rest[..auth_end].rfind('@')
        && let Some((_, pw)) = rest[..at].split_once(':')
    {
        return Some(percent_encoding::percent_decode_str(pw).decode_utf8_lossy().into_owned());
    }
    let (_, query) = raw.split_once('?')?;
    query
        .split('&')
        .find_map(|p| p.split_once('=').filter(|(k, _)| k.eq_ignore_ascii_case("password")).map(|(_, v)| v.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_users_know_are_accepted_and_shown_without_password() {
        let pg = StoreUrl::parse("postgres://sessiond:s3cret@db1:5432/sessions").unwrap();
        assert_eq!(pg.kind, StoreKind::Postgres);
        assert_eq!(pg.shown(), "postgres://sessiond:***@db1:5432/sessions");
        assert!(pg.has_password());
        let sock = StoreUrl::parse("postgres://sessiond@localhost/db?host=/run/postgresql&port=5432").unwrap();
        assert!(!sock.has_password());
        let q = StoreUrl::parse("postgresql://u@h/db?password=hunter2").unwrap();
        assert_eq!(q.shown(), "postgresql://u@h/db?password=***");
        assert!(q.has_password());
        for r in ["redis://127.0.0.1:6379/0", "rediss://:pw@cache:6380/1", "redis+unix:///run/redis.sock"] {
            assert_eq!(StoreUrl::parse(r).unwrap().kind, StoreKind::Redis, "{r}");
        }
        assert_eq!(StoreUrl::parse("rediss://:pw@cache:6380/1").unwrap().shown(), "rediss://:***@cache:6380/1");
    }

    #[test]
    fn bad_urls_name_the_fix_and_never_the_password() {
        let e = StoreUrl::parse("mysql://root:topsecret@h/db").unwrap_err();
        assert!(e.contains("postgres://") && !e.contains("topsecret"), "{e}");
        let e = StoreUrl::parse("postgres://u:topsecret@h/db?sslmode=bogus").unwrap_err();
        assert!(!e.contains("topsecret"), "{e}");
        let e = StoreUrl::parse("redis://:topsecret@h:notaport/0").unwrap_err();
        assert!(!e.contains("topsecret"), "{e}");
    }
}
