//! The `cluster.store` URL: which store it names, and how it is shown.
//!
//! Users write the URL forms they already know: libpq's for PostgreSQL
//! (`postgres://user:pw@host:port/db?host=/run/postgresql`) and redis-rs's
//! for Redis (`redis://`, `rediss://`, `redis+unix:///path`). The URL is
//! checked here by the same parsers the store clients use, and every
//! message and log shows it with its password replaced by `***`.
//!
//! Two parts of a URL are read here rather than by a client's parser,
//! because the client does not know them:
//! - libpq's `sslmode` (all five values) and `sslrootcert` ([`PgUrl`]):
//!   tokio-postgres knows only `disable`, `prefer` and `require`, and no
//!   `sslrootcert`; the store builds its rustls connector from [`PgTls`].
//! - Redis Sentinel, `redis+sentinel://host:26379,host2:26379/mymaster/0`
//!   ([`SentinelUrl`]): redis-rs has a sentinel client but no URL form.
//!
//! This module only parses; it never opens a file or a connection.

use std::fmt;
use std::path::PathBuf;

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
                PgUrl::parse(raw).map_err(scrub)?;
                Ok(StoreUrl { kind: StoreKind::Postgres, raw: raw.to_string() })
            }
            Some("redis+sentinel") => {
                SentinelUrl::parse(raw).map_err(scrub)?;
                Ok(StoreUrl { kind: StoreKind::Redis, raw: raw.to_string() })
            }
            Some("redis" | "rediss" | "redis+unix" | "unix") => {
                use redis::IntoConnectionInfo;
                raw.into_connection_info()
                    .map_err(|e| scrub(format!("{shown} is not a Redis URL redis-rs would accept: {e}")))?;
                Ok(StoreUrl { kind: StoreKind::Redis, raw: raw.to_string() })
            }
            _ => Err(format!(
                "{shown}: write postgres://user@host/db (libpq's URL form), redis://host:6379/0, \
                 rediss://host:6380/0, redis+unix:///run/redis/redis.sock \
                 or redis+sentinel://sentinel1:26379,sentinel2:26379/mymaster/0"
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

/// libpq's `sslmode`, with libpq's meaning for each value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS when the server offers it, without verifying its certificate;
    /// plaintext when it does not (libpq's default).
    Prefer,
    /// TLS or no connection, without verifying the certificate (with
    /// `sslrootcert`, as [`Self::VerifyCa`], as libpq does).
    Require,
    /// TLS, and the server's chain must lead to a CA in `sslrootcert`; the
    /// host name is not checked.
    VerifyCa,
    /// As [`Self::VerifyCa`], and the certificate must name the host the
    /// URL names.
    VerifyFull,
}

impl SslMode {
    /// The value as libpq spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    fn parse(v: &str) -> Option<SslMode> {
        Some(match v {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }
}

/// What a PostgreSQL URL asks of TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgTls {
    /// `sslmode` as written (`prefer` when absent, as in libpq).
    pub mode: SslMode,
    /// `sslrootcert`: a PEM file of the CA certificates to trust.
    pub root_cert: Option<PathBuf>,
    /// Whether every host is a unix socket (libpq then ignores `sslmode`,
    /// and so does the store). In a list that mixes both, a unix socket
    /// is asked for TLS like the TCP hosts, which PostgreSQL refuses there:
    /// under `prefer` it is used in plaintext, under `require` and
    /// stricter it fails and the next host is tried.
    pub unix_only: bool,
}

impl PgTls {
    /// Whether the server's chain is checked against `sslrootcert`
    /// (`require` with `sslrootcert` is checked as `verify-ca`, as libpq does).
    pub fn verifies_chain(&self) -> bool {
        matches!(self.mode, SslMode::VerifyCa | SslMode::VerifyFull)
            || (self.mode == SslMode::Require && self.root_cert.is_some())
    }
}

/// A PostgreSQL URL split into what tokio-postgres parses and what the
/// store's TLS connector needs.
#[derive(Clone, Debug)]
pub struct PgUrl {
    /// The client's config: the URL without `sslrootcert`, and `sslmode`
    /// as tokio-postgres knows it (`verify-ca`/`verify-full` are `require`
    /// there; the connector does the verifying).
    pub config: tokio_postgres::Config,
    /// The TLS part.
    pub tls: PgTls,
}

impl PgUrl {
    /// Parses a `postgres://` URL. The error names the bad value and the
    /// fix; it may quote the URL (the caller redacts it).
    pub fn parse(raw: &str) -> Result<PgUrl, String> {
        let shown = redact(raw);
        let (head, query) = match raw.split_once('?') {
            Some((h, q)) => (h, Some(q)),
            None => (raw, None),
        };
        let mut mode = SslMode::Prefer;
        let mut root_cert = None;
        let mut kept: Vec<&str> = Vec::new();
        for p in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let v = percent_encoding::percent_decode_str(v).decode_utf8_lossy();
            match k {
                "sslmode" => {
                    mode = SslMode::parse(&v).ok_or_else(|| {
                        format!(
                            "{shown}: sslmode={v} is not one of libpq's modes: write disable, prefer, require, \
                             verify-ca or verify-full"
                        )
                    })?;
                }
                "sslrootcert" => {
                    if v.is_empty() || v == "system" {
                        return Err(format!(
                            "{shown}: sslrootcert={v}: name the PEM file of the CA that signed the server's \
                             certificate (sslrootcert=/etc/sessiond/pg-ca.pem)"
                        ));
                    }
                    root_cert = Some(PathBuf::from(v.as_ref()));
                }
                _ => kept.push(p),
            }
        }
        if matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull) && root_cert.is_none() {
            return Err(format!(
                "{shown}: sslmode={} needs sslrootcert=PATH, the PEM file of the CA that signed the server's \
                 certificate (sessiond does not read ~/.postgresql/root.crt)",
                mode.as_str()
            ));
        }
        // A first parse to learn the hosts; then tokio-postgres's own
        // sslmode: TLS is negotiated (or not) by it, verified by the
        // store's connector, and skipped over unix sockets as libpq does.
        let with = |m: &str| {
            let mut q: Vec<String> = kept.iter().map(|p| p.to_string()).collect();
            q.push(format!("sslmode={m}"));
            format!("{head}?{}", q.join("&"))
        };
        let parse = |url: String| -> Result<tokio_postgres::Config, String> {
            url.parse().map_err(|e| format!("{shown} is not a PostgreSQL URL libpq would accept: {e}"))
        };
        let config = parse(with("disable"))?;
        let hosts = config.get_hosts();
        let unix_only = hosts.iter().all(|h| matches!(h, tokio_postgres::config::Host::Unix(_)));
        let config = match mode {
            _ if unix_only => config,
            SslMode::Disable => config,
            SslMode::Prefer => parse(with("prefer"))?,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => parse(with("require"))?,
        };
        Ok(PgUrl { config, tls: PgTls { mode, root_cert, unix_only } })
    }
}

/// A `redis+sentinel://` URL: the sentinels to ask, the master's name,
/// and how the master is reached.
///
/// `redis+sentinel://[user[:password]@]host[:port][,host[:port]…]/master-name[/db][?wait_replicas=N]`
/// (port 26379 by default). The user and password are the master's (and
/// `cluster.store_password_file` sets the password); the sentinels are
/// asked without authentication.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentinelUrl {
    /// The sentinels, in the order they are asked.
    pub sentinels: Vec<(String, u16)>,
    /// The name the sentinels monitor the master under.
    pub master: String,
    /// The database index on the master.
    pub db: i64,
    /// The master's user (ACL), if any.
    pub username: Option<String>,
    /// The master's password, if the URL carries one.
    pub password: Option<String>,
    /// `wait_replicas`: a write is confirmed only when this many replicas
    /// have it (`WAIT`); `None`: the store's default.
    pub wait_replicas: Option<u32>,
}

/// The port sentinels listen on unless told otherwise.
pub const SENTINEL_PORT: u16 = 26379;

impl SentinelUrl {
    /// Parses the form in the type's doc; the error names the fix (and may
    /// quote the URL: the caller redacts it).
    pub fn parse(raw: &str) -> Result<SentinelUrl, String> {
        let shown = redact(raw);
        let form = "redis+sentinel://host:26379,host2:26379/mymaster/0";
        let rest = raw
            .strip_prefix("redis+sentinel://")
            .ok_or_else(|| format!("{shown}: a Sentinel URL starts with redis+sentinel:// ({form})"))?;
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hosts) = match authority.rfind('@') {
            Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
            None => (None, authority),
        };
        let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
        let (username, password) = match userinfo {
            None => (None, None),
            Some(u) => match u.split_once(':') {
                Some((user, pw)) => ((!user.is_empty()).then(|| decode(user)), Some(decode(pw))),
                None => ((!u.is_empty()).then(|| decode(u)), None),
            },
        };
        let mut sentinels = Vec::new();
        for h in hosts.split(',') {
            let (host, port) = if let Some(v6) = h.strip_prefix('[') {
                let (host, after) =
                    v6.split_once(']').ok_or_else(|| format!("{shown}: {h}: an IPv6 address needs its closing ]"))?;
                (host, after.strip_prefix(':'))
            } else {
                match h.rsplit_once(':') {
                    Some((host, port)) => (host, Some(port)),
                    None => (h, None),
                }
            };
            if host.is_empty() {
                return Err(format!(
                    "{shown}: name at least one sentinel, host:port, before the master's name ({form})"
                ));
            }
            let port = match port {
                None => SENTINEL_PORT,
                Some(p) => {
                    p.parse().map_err(|_| format!("{shown}: sentinel {h}: {p:?} is not a port number ({form})"))?
                }
            };
            sentinels.push((host.to_string(), port));
        }
        let mut parts = path.split('/').filter(|p| !p.is_empty());
        let master = parts
            .next()
            .map(decode)
            .ok_or_else(|| format!("{shown}: name the master the sentinels monitor after the hosts ({form})"))?;
        let db = match parts.next() {
            None => 0,
            Some(d) => d.parse().map_err(|_| format!("{shown}: {d:?} is not a database number ({form})"))?,
        };
        if let Some(extra) = parts.next() {
            return Err(format!("{shown}: {extra:?} after the database number: the path is /master-name/db ({form})"));
        }
        let mut wait_replicas = None;
        for p in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            match p.split_once('=') {
                Some(("wait_replicas", n)) => {
                    wait_replicas = Some(n.parse().map_err(|_| {
                        format!("{shown}: wait_replicas={n}: write how many replicas must have a write, 0 or more")
                    })?);
                }
                _ => {
                    return Err(format!("{shown}: unknown parameter {p:?}: a Sentinel URL takes only wait_replicas=N"));
                }
            }
        }
        Ok(SentinelUrl { sentinels, master, db, username, password, wait_replicas })
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
        let s = StoreUrl::parse("redis+sentinel://:pw@s1:26380,s2,[::1]:26381/mymaster/2?wait_replicas=1").unwrap();
        assert_eq!(s.kind, StoreKind::Redis);
        assert_eq!(s.shown(), "redis+sentinel://:***@s1:26380,s2,[::1]:26381/mymaster/2?wait_replicas=1");
        assert!(s.has_password());
    }

    #[test]
    fn pg_sslmodes_are_libpqs_and_reach_the_client_as_it_knows_them() {
        use tokio_postgres::config::SslMode as Client;
        let cases = [
            ("", SslMode::Prefer, Client::Prefer),
            ("sslmode=disable", SslMode::Disable, Client::Disable),
            ("sslmode=require", SslMode::Require, Client::Require),
            ("sslmode=verify-ca&sslrootcert=/etc/ca.pem", SslMode::VerifyCa, Client::Require),
            ("sslrootcert=%2Fetc%2Fca.pem&sslmode=verify-full", SslMode::VerifyFull, Client::Require),
        ];
        for (q, mode, client) in cases {
            let u = PgUrl::parse(&format!("postgres://u@db1:5432/s?application_name=x&{q}")).unwrap();
            assert_eq!((u.tls.mode, u.config.get_ssl_mode()), (mode, client), "{q}");
            assert!(!u.tls.unix_only);
            assert_eq!(u.config.get_application_name(), Some("x"), "other parameters are kept");
        }
        let u = PgUrl::parse("postgres://u@h/s?sslmode=verify-full&sslrootcert=/etc/ca.pem").unwrap();
        assert_eq!(u.tls.root_cert.as_deref(), Some(std::path::Path::new("/etc/ca.pem")));
        assert!(u.tls.verifies_chain());
        // require verifies the chain only when a root certificate is given (libpq).
        assert!(!PgUrl::parse("postgres://u@h/s?sslmode=require").unwrap().tls.verifies_chain());
        assert!(PgUrl::parse("postgres://u@h/s?sslmode=require&sslrootcert=/c").unwrap().tls.verifies_chain());
        // Over a unix socket libpq ignores sslmode, and so does the client.
        let u = PgUrl::parse("postgres://u@/s?host=/run/postgresql&sslmode=require").unwrap();
        assert!(u.tls.unix_only);
        assert_eq!(u.config.get_ssl_mode(), Client::Disable);
        // tokio-postgres tries the URL's own host too: not unix-only.
        let u = PgUrl::parse("postgres://u@localhost/s?host=/run/postgresql&sslmode=require").unwrap();
        assert!(!u.tls.unix_only);
    }

    #[test]
    fn pg_tls_mistakes_name_the_fix() {
        let e = PgUrl::parse("postgres://u@h/s?sslmode=verify-full").unwrap_err();
        assert!(e.contains("needs sslrootcert=PATH"), "{e}");
        let e = PgUrl::parse("postgres://u@h/s?sslmode=verify_full").unwrap_err();
        assert!(e.contains("verify-full") && e.contains("sslmode=verify_full"), "{e}");
        let e = PgUrl::parse("postgres://u@h/s?sslrootcert=system&sslmode=verify-ca").unwrap_err();
        assert!(e.contains("PEM file"), "{e}");
    }

    #[test]
    fn sentinel_urls_parse_hosts_master_db_and_wait() {
        let s = SentinelUrl::parse("redis+sentinel://app:pw@s1:26380,s2,[::1]:26381/my%20master/3?wait_replicas=2")
            .unwrap();
        assert_eq!(
            s.sentinels,
            vec![("s1".to_string(), 26380), ("s2".to_string(), SENTINEL_PORT), ("::1".to_string(), 26381)]
        );
        assert_eq!((s.master.as_str(), s.db, s.wait_replicas), ("my master", 3, Some(2)));
        assert_eq!((s.username.as_deref(), s.password.as_deref()), (Some("app"), Some("pw")));
        let s = SentinelUrl::parse("redis+sentinel://s1/mymaster").unwrap();
        assert_eq!((s.db, s.wait_replicas, s.password), (0, None, None));
        for (bad, says) in [
            ("redis+sentinel://s1:26379", "name the master"),
            ("redis+sentinel:///mymaster", "at least one sentinel"),
            ("redis+sentinel://s1:x/mymaster", "not a port"),
            ("redis+sentinel://s1/mymaster/zero", "not a database"),
            ("redis+sentinel://s1/mymaster/0/x", "the path is"),
            ("redis+sentinel://s1/mymaster?db=1", "only wait_replicas"),
            ("redis+sentinel://s1/mymaster?wait_replicas=-1", "0 or more"),
        ] {
            let e = SentinelUrl::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        let e = StoreUrl::parse("redis+sentinel://:topsecret@s1:nope/m").unwrap_err();
        assert!(!e.contains("topsecret") && e.contains("***"), "{e}");
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
