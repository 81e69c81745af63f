//! The one list of configuration keys, and what can be said about a key
//! without the rest of the configuration.
//!
//! [`KEYS`] describes every key: its canonical name, its aliases (iPlanet's
//! parameter names and camelCase), the table it lives in, its type, default
//! and limits, when a change takes effect ([`Applies`]) and its one-line
//! documentation. It is the source of the configuration reference
//! ([`reference_markdown`]), the binary's named flags and their help, the
//! type a `--set` value is read as, the hints of "unknown key" messages, and
//! the master's list of restart-only keys. The values themselves are read by
//! serde into the typed structs of `config/mod.rs`; a test there checks that
//! those structs and this table agree (names, aliases, defaults, limits).
//! Adding a key is one entry here plus one field there.
//!
//! Most keys hold one value. A few (`gateway.session_manager`,
//! `gateway.trusted_proxies`, the `[gateway.filters]` sets) hold an array of
//! strings: [`Kind::List`], with a rule for each item and a largest count.
//! Arrays are set only in the file; the command line takes single values.
//!
//! [`Rule`] checks what one string value must look like; the deserialisers
//! in `config/de.rs` apply it. Rules that relate two keys live in
//! `Config::validate`. This module never reads files or the environment.

use std::fmt::Write as _;

use crate::region::id::MAX_NODE_ID;
use crate::region::layout::{LIMIT_MAX_LOCKS, LIMIT_MAX_NAME, LIMIT_MAX_SESSIONS, LIMIT_MAX_VALUE, LIMIT_MAX_VALUES};

use super::{ConfigError, LIMIT_MAX_PROCS, invalid};

/// When a changed key reaches a running server (the reference's last column).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applies {
    /// Only at the next restart; a reload keeps the running value.
    Restart,
    /// At the next reload (SIGHUP).
    Reload,
    /// At the next reload, once the workers have drained.
    Drained,
    /// At the next reload, with the regions migrated to the new limits.
    Migrated,
    /// At the next reload, once the workers have drained; existing sessions
    /// take the new value too.
    DrainedExisting,
}

impl Applies {
    /// The reference's wording.
    pub fn text(self) -> &'static str {
        match self {
            Applies::Restart => "restart",
            Applies::Reload => "reload",
            Applies::Drained => "reload (workers drained)",
            Applies::Migrated => "reload, with migration",
            Applies::DrainedExisting => "reload (workers drained); existing sessions take the new value",
        }
    }
}

/// The table a key lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// A top-level key (server-wide).
    Server,
    /// A `[sessions]` key: the default for every context, which each
    /// `[[contexts]]` entry may override.
    Sessions,
    /// A key that only a `[[contexts]]` entry may hold.
    Context,
    /// An `[events]` key (the lifecycle webhook).
    Events,
    /// A `[gateway]` key (the public listener of gateway mode).
    Gateway,
    /// A key of one `[[gateway.upstreams]]` entry.
    Upstream,
    /// A `[gateway.filters]` key (the filters every gateway session starts with).
    Filters,
    /// A `[cluster]` key (nodes sharing sessions through a store).
    Cluster,
}

impl Scope {
    /// How the reference and `--set` prefix a key of this scope.
    pub fn prefix(self) -> &'static str {
        match self {
            Scope::Server => "",
            Scope::Sessions => "sessions.",
            Scope::Context => "contexts[].",
            Scope::Events => "events.",
            Scope::Gateway => "gateway.",
            Scope::Upstream => "gateway.upstreams[].",
            Scope::Filters => "gateway.filters.",
            Scope::Cluster => "cluster.",
        }
    }

    /// The table as a TOML reader sees it, for messages.
    pub fn table(self) -> &'static str {
        match self {
            Scope::Server => "the top level",
            Scope::Sessions => "[sessions]",
            Scope::Context => "[[contexts]]",
            Scope::Events => "[events]",
            Scope::Gateway => "[gateway]",
            Scope::Upstream => "[[gateway.upstreams]]",
            Scope::Filters => "[gateway.filters]",
            Scope::Cluster => "[cluster]",
        }
    }
}

/// The unit a whole number is counted in (shown in the reference).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// A plain count.
    Count,
    /// Bytes.
    Bytes,
    /// Whole seconds.
    Seconds,
}

/// What a string value must look like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// Any string; an empty one means "unset".
    Any,
    /// 1-64 ASCII letters, digits, `_` or `-` (names that end up in paths,
    /// cookies and URLs).
    Token,
    /// `host:port` or `unix:/absolute/path`.
    Listen,
    /// A cookie `Path`: starts with `/`, no `;` or control characters.
    CookiePath,
    /// A non-empty file system path.
    Path,
    /// An `http://` or `https://` URL with a host.
    HttpUrl,
    /// A password verifier: `htpasswd:/path/to/file` (the only scheme).
    Verifier,
    /// An upstream's URL: `http://` or `https://`, a host, an optional port
    /// and base path; no user info, query or fragment.
    UpstreamUrl,
    /// An upstream's path prefix: starts with `/`; no `//`, no `.` or `..`
    /// segment, no `;`, `?`, `#`, `%`, backslash or control characters.
    UrlPrefix,
    /// An IP address or a CIDR block (`10.0.0.0/8`, `2001:db8::/32`).
    IpNet,
    /// A filter entry: 1 to [`GATEWAY_FILTER_MAX_ITEM_LEN`] bytes, no control
    /// characters.
    FilterItem,
    /// A session store URL: `postgres://…` (libpq's form) or `redis://…`,
    /// `rediss://…`, `redis+unix:///path`.
    StoreUrl,
}

/// Most entries in each `[gateway.filters]` set (also the bound on each
/// session's sets that the control API enforces).
pub const GATEWAY_FILTER_MAX_ITEMS: usize = 1024;
/// Longest entry of a `[gateway.filters]` set, bytes.
pub const GATEWAY_FILTER_MAX_ITEM_LEN: usize = 1024;
/// Most `gateway.session_manager` URLs.
pub const GATEWAY_MAX_SESSION_MANAGERS: usize = 8;
/// Most `gateway.trusted_proxies` entries.
pub const GATEWAY_MAX_TRUSTED_PROXIES: usize = 1024;

impl Rule {
    /// Checks `s`; the error is the reason, with the fix.
    pub(crate) fn check(self, s: &str) -> Result<(), String> {
        match self {
            Rule::Any => Ok(()),
            Rule::Token if valid_token(s) => Ok(()),
            Rule::Token => Err("use 1-64 letters, digits, '_' or '-'".into()),
            Rule::Listen => super::listen_from(s).map(|_| ()).map_err(String::from),
            Rule::CookiePath if s.starts_with('/') && !s.bytes().any(|b| b == b';' || b.is_ascii_control()) => Ok(()),
            Rule::CookiePath => Err("must start with '/' and contain no ';' or control characters".into()),
            Rule::Path if !s.is_empty() => Ok(()),
            Rule::Path => Err("give a file system path".into()),
            Rule::HttpUrl => check_http_url(s),
            Rule::Verifier => check_verifier(s).map(|_| ()),
            Rule::UpstreamUrl => check_upstream_url(s),
            Rule::UrlPrefix => check_url_prefix(s),
            Rule::IpNet => parse_ip_net(s).map(|_| ()),
            Rule::FilterItem if s.len() > GATEWAY_FILTER_MAX_ITEM_LEN => {
                Err(format!("{} bytes; an entry is at most {GATEWAY_FILTER_MAX_ITEM_LEN} bytes", s.len()))
            }
            Rule::FilterItem if s.chars().any(char::is_control) => {
                Err("contains a control character; remove it".into())
            }
            Rule::FilterItem if s.is_empty() => Err("an empty entry; remove it".into()),
            Rule::FilterItem => Ok(()),
            Rule::StoreUrl => super::store_url::StoreUrl::parse(s).map(|_| ()),
        }
    }

    /// The reference's "Allowed" text.
    fn describe(self) -> &'static str {
        match self {
            Rule::Any => "a string",
            Rule::Token => "1–64 letters, digits, `_`, `-`",
            Rule::Listen => "`host:port` (`[::1]:8080` for IPv6) or `unix:/absolute/path`",
            Rule::CookiePath => "starts with `/`, no `;` or control characters",
            Rule::Path => "a path",
            Rule::HttpUrl => "an `http://` or `https://` URL with a host; empty: off",
            Rule::Verifier => "`htpasswd:/path/to/file` (the file must exist)",
            Rule::UpstreamUrl => {
                "`http://` or `https://`, host, optional port and base path; no user info, query or fragment"
            }
            Rule::UrlPrefix => {
                "starts with `/`; no `//`, `.` or `..` segments, `;`, `?`, `#`, `%`, `\\` or control characters; \
                 a trailing `/` is dropped"
            }
            Rule::IpNet => "an IP address or CIDR block",
            Rule::FilterItem => "1–1024 bytes, no control characters",
            Rule::StoreUrl => {
                "`postgres://user@host/db?sslmode=verify-full&sslrootcert=/path` (libpq's URL form), `redis://host:port/db`, `rediss://…`, `redis+unix:///path` or `redis+sentinel://h1:26379,h2/mymaster`"
            }
        }
    }

    /// The reference's "Allowed" text for the items of an array.
    fn describe_items(self) -> &'static str {
        match self {
            Rule::HttpUrl => "`http://` or `https://` URLs with a host",
            Rule::IpNet => "IP addresses or CIDR blocks (`10.0.0.0/8`; an address is one host)",
            Rule::FilterItem => "strings of 1–1024 bytes without control characters",
            other => other.describe(),
        }
    }
}

/// Splits `htpasswd:/path` into its file; the error names the scheme given
/// and the fix.
pub(crate) fn check_verifier(s: &str) -> Result<&str, String> {
    const EXAMPLE: &str = "e.g. verifier = \"htpasswd:/etc/sessiond/users\"";
    match s.split_once(':') {
        Some(("htpasswd", "")) => Err(format!("the htpasswd file is missing after `htpasswd:`; {EXAMPLE}")),
        Some(("htpasswd", path)) => Ok(path),
        Some((scheme, _)) if !scheme.is_empty() && !scheme.contains('/') => Err(format!(
            "unknown verifier scheme `{scheme}`; the only scheme is `htpasswd` (bcrypt and argon2id lines), {EXAMPLE}"
        )),
        _ => Err(format!("write the scheme before the file, {EXAMPLE}")),
    }
}

fn check_upstream_url(s: &str) -> Result<(), String> {
    use crate::outbound::url::{Rules, check};
    check(s, Rules::UPSTREAM).map(drop).map_err(|e| format!("{e}; write it as http://host[:port][/base/path]"))
}

fn check_url_prefix(s: &str) -> Result<(), String> {
    const FORM: &str = "write a path such as / or /app";
    if !s.starts_with('/') {
        return Err(format!("must start with '/'; {FORM}"));
    }
    if s.contains("//") {
        return Err(format!("contains '//'; request paths are matched after '//' is collapsed, so {FORM}"));
    }
    if let Some(c) = s.chars().find(|c| matches!(c, ';' | '?' | '#' | '%' | '\\') || c.is_control()) {
        return Err(format!(
            "contains {c:?}; a prefix is matched against the normalised (decoded) path and cannot hold \
             ';', '?', '#', '%', '\\' or control characters; {FORM}"
        ));
    }
    if s.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(format!("contains a '.' or '..' segment, which normalised paths never have; {FORM}"));
    }
    Ok(())
}

/// An address (one host: `/32` or `/128`) or a CIDR block.
pub(crate) fn parse_ip_net(s: &str) -> Result<ipnet::IpNet, String> {
    if let Ok(net) = s.parse::<ipnet::IpNet>() {
        return Ok(net);
    }
    match s.parse::<std::net::IpAddr>() {
        Ok(addr) => Ok(ipnet::IpNet::from(addr)),
        Err(_) => Err("expected an IP address or CIDR block such as 10.0.0.0/8, 192.0.2.7 or 2001:db8::/32".into()),
    }
}

/// True for 1-64 ASCII letters, digits, `_` or `-`.
pub(crate) fn valid_token(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn check_http_url(s: &str) -> Result<(), String> {
    use crate::outbound::url::{Rules, check};
    if s.is_empty() {
        // Empty is "off", so `--set events.url=` can switch off a file's webhook.
        return Ok(());
    }
    check(s, Rules::ANY).map(drop).map_err(|e| format!("{e}; write it as https://host[:port]/path"))
}

/// A key's type, with its default and limits.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    /// A whole number in `min..=max`. `default` is `None` when it is
    /// computed at start (see [`KeyDef::default_doc`]).
    Int {
        /// Built-in default.
        default: Option<u64>,
        /// Smallest value accepted.
        min: u64,
        /// Largest value accepted.
        max: u64,
        /// What it counts.
        unit: Unit,
    },
    /// A duration in seconds, integer or decimal, in `min..=max`.
    Secs {
        /// Built-in default.
        default: f64,
        /// Smallest value accepted.
        min: f64,
        /// Largest value accepted.
        max: f64,
    },
    /// `true` or `false`.
    Bool {
        /// Built-in default.
        default: bool,
    },
    /// One of a fixed set of words.
    Choice {
        /// Built-in default (one of `choices`).
        default: &'static str,
        /// The accepted words, in their canonical spelling.
        choices: &'static [&'static str],
        /// Accept any letter case (the value is stored in canonical spelling).
        any_case: bool,
    },
    /// A string checked by `rule`. `default` is `None` when the key is
    /// unset by default or computed at start.
    Text {
        /// Built-in default.
        default: Option<&'static str>,
        /// What the string must look like.
        rule: Rule,
    },
    /// An array of strings, each checked by `rule`, at most `max` of them;
    /// empty by default. Set only in the config file.
    List {
        /// What each item must look like.
        rule: Rule,
        /// Most items.
        max: usize,
    },
}

/// One configuration key: everything every consumer needs to know about it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KeyDef {
    /// Canonical name, as written in the TOML file.
    pub name: &'static str,
    /// Other spellings accepted wherever the name is (iPlanet's parameter
    /// names, camelCase).
    pub aliases: &'static [&'static str],
    /// The table the key lives in.
    pub scope: Scope,
    /// Type, default and limits.
    pub kind: Kind,
    /// The default as the reference shows it, when the kind's default is
    /// computed at start, absent, or needs a word of explanation; empty
    /// otherwise.
    pub default_doc: &'static str,
    /// When a change reaches a running server.
    pub applies: Applies,
    /// One line saying what the key does.
    pub doc: &'static str,
}

const RESTART: Applies = Applies::Restart;
const RELOAD: Applies = Applies::Reload;
const DRAINED: Applies = Applies::Drained;
const MIGRATED: Applies = Applies::Migrated;
const DRAINED_EXISTING: Applies = Applies::DrainedExisting;

const fn int(default: u64, min: u64, max: u64, unit: Unit) -> Kind {
    Kind::Int { default: Some(default), min, max, unit }
}

const fn secs(default: f64, min: f64, max: f64) -> Kind {
    Kind::Secs { default, min, max }
}

const fn text(default: &'static str, rule: Rule) -> Kind {
    Kind::Text { default: Some(default), rule }
}

/// Every configuration key, in the order of the reference.
pub const KEYS: &[KeyDef] = &[
    // ---- top level ----
    KeyDef {
        name: "listen",
        aliases: &[],
        scope: Scope::Server,
        kind: text("127.0.0.1:8080", Rule::Listen),
        default_doc: "",
        applies: RESTART,
        doc: "Where to serve HTTP. Ignored under socket activation.",
    },
    KeyDef {
        name: "data_dir",
        aliases: &[],
        scope: Scope::Server,
        kind: Kind::Text { default: None, rule: Rule::Path },
        default_doc: "`$STATE_DIRECTORY`, else `./sessiond-data`",
        applies: RESTART,
        doc: "Regions, `Version`, lock files and `server.stats`.",
    },
    KeyDef {
        name: "max_procs",
        aliases: &["MaxProcs", "maxProcs"],
        scope: Scope::Server,
        kind: Kind::Int { default: None, min: 1, max: LIMIT_MAX_PROCS as u64, unit: Unit::Count },
        default_doc: "number of CPUs available (at most 512)",
        applies: RELOAD,
        doc: "Worker processes.",
    },
    KeyDef {
        name: "reuse_port",
        aliases: &[],
        scope: Scope::Server,
        kind: Kind::Bool { default: false },
        default_doc: "",
        applies: RESTART,
        doc: "The master binds one `SO_REUSEPORT` socket per worker number (before any privilege drop; with port 0, \
              all on the port the first one got) and keeps them. Worker `n` accepts from socket `n`, and the kernel \
              spreads connections across the sockets. A connection hashed to the socket of a worker that is down \
              waits for its replacement. TCP only.",
    },
    KeyDef {
        name: "user",
        aliases: &[],
        scope: Scope::Server,
        kind: Kind::Text { default: None, rule: Rule::Any },
        default_doc: "none",
        applies: RESTART,
        doc: "User to switch to after binding when started as root; `data_dir` is given to it. \
              Leave unset under the shipped unit.",
    },
    KeyDef {
        name: "node_id",
        aliases: &[],
        scope: Scope::Server,
        kind: int(0, 0, MAX_NODE_ID as u64, Unit::Count),
        default_doc: "",
        applies: DRAINED,
        doc: "Carried in the first 4 characters of every new session id, for sticky routing. \
              Old ids stay valid when it changes.",
    },
    KeyDef {
        name: "log_level",
        aliases: &[],
        scope: Scope::Server,
        kind: Kind::Choice {
            default: "info",
            choices: &["off", "error", "warn", "info", "debug", "trace"],
            any_case: false,
        },
        default_doc: "",
        applies: RESTART,
        doc: "Log filter. `RUST_LOG` in the environment overrides it.",
    },
    KeyDef {
        name: "shutdown_timeout",
        aliases: &[],
        scope: Scope::Server,
        kind: secs(10.0, 0.0, 3600.0),
        default_doc: "",
        applies: RELOAD,
        doc: "How long a stopping worker lets requests in flight finish, at stop and at reload. \
              The master sends SIGKILL 2 s after it.",
    },
    KeyDef {
        name: "max_connections",
        aliases: &[],
        scope: Scope::Server,
        kind: int(4096, 1, 1_000_000, Unit::Count),
        default_doc: "",
        applies: RELOAD,
        doc: "Open connections per worker. One more is closed at once.",
    },
    KeyDef {
        name: "header_timeout",
        aliases: &[],
        scope: Scope::Server,
        kind: secs(10.0, 0.1, 3600.0),
        default_doc: "",
        applies: RELOAD,
        doc: "Time a client has to send a request head; also how long an idle keep-alive connection stays open.",
    },
    KeyDef {
        name: "request_timeout",
        aliases: &[],
        scope: Scope::Server,
        kind: secs(30.0, 0.1, 3600.0),
        default_doc: "",
        applies: RELOAD,
        doc: "Time a client has to send a request body (408 `body_timeout`).",
    },
    KeyDef {
        name: "send_timeout",
        aliases: &[],
        scope: Scope::Server,
        kind: secs(30.0, 0.1, 3600.0),
        default_doc: "",
        applies: RELOAD,
        doc: "Longest a response write may stay blocked because the client stopped reading; \
              the connection is then closed.",
    },
    KeyDef {
        name: "max_header_size",
        aliases: &[],
        scope: Scope::Server,
        kind: int(16 * 1024, 8192, 1 << 20, Unit::Bytes),
        default_doc: "",
        applies: RELOAD,
        doc: "Largest request head (431 beyond it).",
    },
    KeyDef {
        name: "api_token_file",
        aliases: &[],
        scope: Scope::Server,
        kind: Kind::Text { default: None, rule: Rule::Path },
        default_doc: "none (no token asked)",
        applies: RELOAD,
        doc: "File holding a bearer token: when set, every request to `listen` (the private listener: session \
              API, `/metrics`, gateway control API) needs `Authorization: Bearer <token>`. Printable ASCII; \
              must not be readable by group or others (`chmod 600`); one trailing newline is ignored. \
              The private listener must never face browsers.",
    },
    // ---- [[contexts]] only ----
    KeyDef {
        name: "name",
        aliases: &[],
        scope: Scope::Context,
        kind: Kind::Text { default: None, rule: Rule::Token },
        default_doc: "required",
        applies: DRAINED,
        doc: "Context name, also its directory under `data_dir/contexts/`. \
              `default` always exists and serves requests without `?context=`.",
    },
    // ---- [sessions], overridable per context ----
    KeyDef {
        name: "max_sessions",
        aliases: &["maxSessions"],
        scope: Scope::Sessions,
        kind: int(1000, 1, LIMIT_MAX_SESSIONS as u64, Unit::Count),
        default_doc: "",
        applies: MIGRATED,
        doc: "Slots in the context's region. The region never grows.",
    },
    KeyDef {
        name: "max_values_per_session",
        aliases: &["maxValuesPerSession"],
        scope: Scope::Sessions,
        kind: int(10, 1, LIMIT_MAX_VALUES as u64, Unit::Count),
        default_doc: "",
        applies: MIGRATED,
        doc: "Attributes per session (409 `too_many_values` beyond it).",
    },
    KeyDef {
        name: "max_name_size",
        aliases: &["maxNameSize"],
        scope: Scope::Sessions,
        kind: int(64, 1, LIMIT_MAX_NAME as u64, Unit::Bytes),
        default_doc: "",
        applies: MIGRATED,
        doc: "Longest attribute name.",
    },
    KeyDef {
        name: "max_value_size",
        aliases: &["maxValueSize"],
        scope: Scope::Sessions,
        kind: int(4096, 1, LIMIT_MAX_VALUE as u64, Unit::Bytes),
        default_doc: "",
        applies: MIGRATED,
        doc: "Longest attribute value (413 `value_too_large` beyond it).",
    },
    KeyDef {
        name: "max_locks",
        aliases: &["maxLocks"],
        scope: Scope::Sessions,
        kind: int(16, 1, LIMIT_MAX_LOCKS as u64, Unit::Count),
        default_doc: "`16`, at most `max_sessions`",
        applies: MIGRATED,
        doc: "Stripe locks in the region. At most `max_sessions`: left at its default it is lowered to \
              `max_sessions`, set explicitly higher it is an error.",
    },
    KeyDef {
        name: "timeout",
        aliases: &["timeOut"],
        scope: Scope::Sessions,
        kind: int(1800, 1, u32::MAX as u64, Unit::Seconds),
        default_doc: "",
        applies: DRAINED_EXISTING,
        doc: "Idle timeout: a session expires this long after its last touch.",
    },
    KeyDef {
        name: "absolute_timeout",
        aliases: &["absoluteTimeout"],
        scope: Scope::Sessions,
        kind: int(0, 0, 100 * 365 * 86400, Unit::Seconds),
        default_doc: "`0` (off)",
        applies: DRAINED_EXISTING,
        doc: "Lifetime from creation, whatever the activity; 0 turns it off.",
    },
    KeyDef {
        name: "reap_interval",
        aliases: &["reapInterval"],
        scope: Scope::Sessions,
        kind: int(600, 1, 86400, Unit::Seconds),
        default_doc: "",
        applies: RELOAD,
        doc: "How often the reaper sweeps the context.",
    },
    KeyDef {
        name: "lock_timeout",
        aliases: &["lockTimeout"],
        scope: Scope::Sessions,
        kind: secs(1.0, 0.001, 60.0),
        default_doc: "",
        applies: DRAINED,
        doc: "Longest wait for a stripe lock; the request then gets 503 `lock_timeout`.",
    },
    KeyDef {
        name: "when_full",
        aliases: &[],
        scope: Scope::Sessions,
        kind: Kind::Choice { default: "refuse", choices: &["refuse", "evict-oldest"], any_case: false },
        default_doc: "",
        applies: DRAINED,
        doc: "At `max_sessions`: refuse the new session (503 `max_sessions`, as iPlanet), \
              or evict the session nearest its deadline in one stripe.",
    },
    KeyDef {
        name: "max_timeout",
        aliases: &[],
        scope: Scope::Sessions,
        kind: int(86400, 1, 365 * 86400, Unit::Seconds),
        default_doc: "",
        applies: RELOAD,
        doc: "Bound on a session's own idle timeout and on how far ahead its own deadline may be \
              (`timeout`/`deadline` in the session API; 400 beyond it).",
    },
    KeyDef {
        name: "max_sessions_per_principal",
        aliases: &[],
        scope: Scope::Sessions,
        kind: int(0, 0, 1_000_000, Unit::Count),
        default_doc: "`0` (no cap)",
        applies: RELOAD,
        doc: "Most live sessions one principal may hold in the context; see `when_principal_full`.",
    },
    KeyDef {
        name: "when_principal_full",
        aliases: &[],
        scope: Scope::Sessions,
        kind: Kind::Choice { default: "evict-oldest", choices: &["refuse", "evict-oldest"], any_case: false },
        default_doc: "",
        applies: RELOAD,
        doc: "At `max_sessions_per_principal`: refuse the new session (409 `too_many_sessions`), \
              or end the principal's least recently used one (an `evicted` event).",
    },
    KeyDef {
        name: "cookie_name",
        aliases: &[],
        scope: Scope::Sessions,
        kind: text("SESSIONID", Rule::Token),
        default_doc: "",
        applies: RELOAD,
        doc: "Cookie that carries the id.",
    },
    KeyDef {
        name: "cookie_secure",
        aliases: &[],
        scope: Scope::Sessions,
        kind: Kind::Bool { default: false },
        default_doc: "",
        applies: RELOAD,
        doc: "Adds `Secure` to the cookie.",
    },
    KeyDef {
        name: "cookie_same_site",
        aliases: &[],
        scope: Scope::Sessions,
        kind: Kind::Choice { default: "Lax", choices: &["Strict", "Lax", "None"], any_case: true },
        default_doc: "",
        applies: RELOAD,
        doc: "The cookie's `SameSite`. `None` needs `cookie_secure = true`.",
    },
    KeyDef {
        name: "cookie_path",
        aliases: &[],
        scope: Scope::Sessions,
        kind: text("/", Rule::CookiePath),
        default_doc: "",
        applies: RELOAD,
        doc: "The cookie's `Path`.",
    },
    KeyDef {
        name: "url_param",
        aliases: &[],
        scope: Scope::Sessions,
        kind: text("sessionid", Rule::Token),
        default_doc: "",
        applies: RELOAD,
        doc: "Path parameter for URL rewriting (`/v1/session;sessionid=ID`).",
    },
    // ---- [events]: the lifecycle webhook ----
    KeyDef {
        name: "url",
        aliases: &[],
        scope: Scope::Events,
        kind: Kind::Text { default: None, rule: Rule::HttpUrl },
        default_doc: "none (webhook off)",
        applies: RELOAD,
        doc: "Where lifecycle events are POSTed. Unset or empty, no events are sent.",
    },
    KeyDef {
        name: "secret_file",
        aliases: &[],
        scope: Scope::Events,
        kind: Kind::Text { default: None, rule: Rule::Path },
        default_doc: "none; required with `url`",
        applies: RELOAD,
        doc: "File holding the key that signs each POST. Must not be readable by group or others \
              (`chmod 600`); one trailing newline is ignored.",
    },
    KeyDef {
        name: "timeout",
        aliases: &[],
        scope: Scope::Events,
        kind: secs(5.0, 0.1, 60.0),
        default_doc: "",
        applies: RELOAD,
        doc: "Time allowed for one delivery attempt.",
    },
    KeyDef {
        name: "max_attempts",
        aliases: &[],
        scope: Scope::Events,
        kind: int(10, 1, 100, Unit::Count),
        default_doc: "",
        applies: RELOAD,
        doc: "Delivery attempts per batch, with exponential back-off between them.",
    },
    KeyDef {
        name: "max_batch",
        aliases: &[],
        scope: Scope::Events,
        kind: int(100, 1, 1000, Unit::Count),
        default_doc: "",
        applies: RELOAD,
        doc: "Most events in one POST.",
    },
    KeyDef {
        name: "queue_size",
        aliases: &[],
        scope: Scope::Events,
        kind: int(4096, 16, 1 << 20, Unit::Count),
        default_doc: "",
        applies: RELOAD,
        doc: "Events each process holds while deliveries are pending (a bounded queue).",
    },
    KeyDef {
        name: "include_touched",
        aliases: &[],
        scope: Scope::Events,
        kind: Kind::Bool { default: false },
        default_doc: "",
        applies: RELOAD,
        doc: "Whether `touched` events are sent; off by default because there can be one per request.",
    },
    // ---- [cluster]: nodes sharing sessions through a store ----
    KeyDef {
        name: "store",
        aliases: &[],
        scope: Scope::Cluster,
        kind: Kind::Text { default: None, rule: Rule::StoreUrl },
        default_doc: "required (a `[cluster]` table turns cluster mode on)",
        applies: RESTART,
        doc: "The shared session store. PostgreSQL in libpq's URL form (a unix-socket directory as \
              `?host=/run/postgresql`; TLS by `sslmode` `require`, `verify-ca` or `verify-full` with \
              `sslrootcert`), or Redis in redis-rs's form, or Redis behind Sentinel as \
              `redis+sentinel://host:port,…/master-name[/db][?wait_replicas=N]`. Not through PgBouncer in \
              transaction mode, nor Redis Cluster. Logged and shown without its password.",
    },
    KeyDef {
        name: "store_password_file",
        aliases: &[],
        scope: Scope::Cluster,
        kind: Kind::Text { default: None, rule: Rule::Path },
        default_doc: "none",
        applies: RESTART,
        doc: "File holding the store's password, instead of writing it in `store`. Must not be readable by \
              group or others (`chmod 600`); one trailing newline is ignored.",
    },
    KeyDef {
        name: "save_period",
        aliases: &[],
        scope: Scope::Cluster,
        kind: int(60, 1, 3600, Unit::Seconds),
        default_doc: "",
        applies: RESTART,
        doc: "A session's last access reaches the store at most once per period (changes are written at once). \
              Keep it well under `timeout`: the store's expiry lags the truth by up to this much.",
    },
    KeyDef {
        name: "reaper",
        aliases: &["reaperActive"],
        scope: Scope::Cluster,
        kind: Kind::Choice { default: "elect", choices: &["elect", "always", "never"], any_case: false },
        default_doc: "",
        applies: RESTART,
        doc: "Which nodes sweep expired sessions out of the store: `elect` one at a time (a PostgreSQL advisory \
              lock or a Redis lease), `always` this node whatever others do, `never` this node.",
    },
    KeyDef {
        name: "when_store_down",
        aliases: &[],
        scope: Scope::Cluster,
        kind: Kind::Choice { default: "serve-local", choices: &["serve-local", "fail-closed"], any_case: false },
        default_doc: "",
        applies: RESTART,
        doc: "`serve-local`: sessions this node owns keep working from the region and are flushed when the store \
              returns. `fail-closed`: changes answer 503 while the store is down. Takeovers answer 503 in both.",
    },
    KeyDef {
        name: "store_timeout",
        aliases: &[],
        scope: Scope::Cluster,
        kind: secs(2.0, 0.05, 60.0),
        default_doc: "",
        applies: RESTART,
        doc: "Time allowed for one store call (connect included) before the store counts as down.",
    },
    KeyDef {
        name: "sweep_interval",
        aliases: &[],
        scope: Scope::Cluster,
        kind: secs(10.0, 0.1, 3600.0),
        default_doc: "",
        applies: RESTART,
        doc: "How often the elected node sweeps expired sessions out of the store.",
    },
    KeyDef {
        name: "sweep_batch",
        aliases: &[],
        scope: Scope::Cluster,
        kind: int(500, 1, 10000, Unit::Count),
        default_doc: "",
        applies: RESTART,
        doc: "Most sessions one sweep statement deletes; a sweep repeats batches until none is left.",
    },
    // ---- [gateway]: the public listener of gateway mode ----
    KeyDef {
        name: "listen",
        aliases: &[],
        scope: Scope::Gateway,
        kind: Kind::Text { default: None, rule: Rule::Listen },
        default_doc: "required (a `[gateway]` table turns gateway mode on)",
        applies: RESTART,
        doc: "Where the public gateway listener serves, beside `listen` in every worker. Must differ from `listen`.",
    },
    KeyDef {
        name: "context",
        aliases: &[],
        scope: Scope::Gateway,
        kind: text("default", Rule::Token),
        default_doc: "",
        applies: RELOAD,
        doc: "The context whose sessions the gateway creates and checks; must be a configured context.",
    },
    KeyDef {
        name: "verifier",
        aliases: &[],
        scope: Scope::Gateway,
        kind: Kind::Text { default: None, rule: Rule::Verifier },
        default_doc: "required",
        applies: RELOAD,
        doc: "Password verifier. `htpasswd:FILE` with bcrypt (`$2y$`, `$2b$`) and argon2id PHC lines; \
              other hashes are refused at start, naming the line.",
    },
    KeyDef {
        name: "session_manager",
        aliases: &[],
        scope: Scope::Gateway,
        kind: Kind::List { rule: Rule::HttpUrl, max: GATEWAY_MAX_SESSION_MANAGERS },
        default_doc: "`[]` (no hook: every verified login gets a session)",
        applies: RELOAD,
        doc: "Session-manager hook URLs, tried in turn at login; each may refuse the session with a reason, \
              and is told when it ends.",
    },
    KeyDef {
        name: "session_manager_timeout",
        aliases: &[],
        scope: Scope::Gateway,
        kind: secs(2.0, 0.1, 60.0),
        default_doc: "",
        applies: RELOAD,
        doc: "Time allowed for one session-manager call; when none answers in time, the login gets 503.",
    },
    KeyDef {
        name: "secret_file",
        aliases: &[],
        scope: Scope::Gateway,
        kind: Kind::Text { default: None, rule: Rule::Path },
        default_doc: "required",
        applies: RELOAD,
        doc: "File holding the key that signs hook calls and control handles: at least 16 bytes, \
              not readable by group or others (`chmod 600`); one trailing newline is ignored.",
    },
    KeyDef {
        name: "login_template",
        aliases: &[],
        scope: Scope::Gateway,
        kind: Kind::Text { default: None, rule: Rule::Path },
        default_doc: "none (the built-in form)",
        applies: RELOAD,
        doc: "HTML file served instead of the built-in login form at `GET /.sessiond/login`; must exist.",
    },
    KeyDef {
        name: "trusted_proxies",
        aliases: &[],
        scope: Scope::Gateway,
        kind: Kind::List { rule: Rule::IpNet, max: GATEWAY_MAX_TRUSTED_PROXIES },
        default_doc: "`[]` (trust no peer)",
        applies: RELOAD,
        doc: "Peers whose `Forwarded` and `X-Forwarded-*` headers are kept; from any other peer they are removed.",
    },
    KeyDef {
        name: "upstream_timeout",
        aliases: &[],
        scope: Scope::Gateway,
        kind: secs(30.0, 0.1, 3600.0),
        default_doc: "",
        applies: RELOAD,
        doc: "Time an upstream has to send its response head (504 beyond it).",
    },
    KeyDef {
        name: "login_max_failures",
        aliases: &[],
        scope: Scope::Gateway,
        kind: int(5, 1, 1000, Unit::Count),
        default_doc: "",
        applies: RELOAD,
        doc: "Failed logins allowed per client address and per user within `login_window`; more get 429.",
    },
    KeyDef {
        name: "login_window",
        aliases: &[],
        scope: Scope::Gateway,
        kind: secs(300.0, 1.0, 86400.0),
        default_doc: "",
        applies: RELOAD,
        doc: "The period over which `login_max_failures` counts.",
    },
    KeyDef {
        name: "allow_encoded_percent",
        aliases: &[],
        scope: Scope::Gateway,
        kind: Kind::Bool { default: false },
        default_doc: "",
        applies: RELOAD,
        doc: "Let a path through whose segments, once percent-decoded, still hold `%` and two hex digits \
              (`%252e` → `%2e`). Off, such a path is encoded more than once and gets 400 `ambiguous_path`, \
              as an upstream that decodes twice would act on another path; on only for an application that has \
              literal `%xx` text in its paths and decodes exactly once. Applies to forward-auth URIs too.",
    },
    // ---- [[gateway.upstreams]]: at least one ----
    KeyDef {
        name: "name",
        aliases: &[],
        scope: Scope::Upstream,
        kind: Kind::Text { default: None, rule: Rule::Token },
        default_doc: "required; unique",
        applies: RELOAD,
        doc: "The upstream's name: Glacier2's adapter id, matched by `gateway.filters.adapter_ids`.",
    },
    KeyDef {
        name: "url",
        aliases: &[],
        scope: Scope::Upstream,
        kind: Kind::Text { default: None, rule: Rule::UpstreamUrl },
        default_doc: "required",
        applies: RELOAD,
        doc: "Where requests routed to this upstream go; a base path is put before the request's path.",
    },
    KeyDef {
        name: "prefix",
        aliases: &[],
        scope: Scope::Upstream,
        kind: text("/", Rule::UrlPrefix),
        default_doc: "`/`; unique",
        applies: RELOAD,
        doc: "Requests whose normalised path starts with this prefix go to this upstream; the longest prefix wins.",
    },
    // ---- [gateway.filters]: every session's initial filters ----
    KeyDef {
        name: "categories",
        aliases: &[],
        scope: Scope::Filters,
        kind: Kind::List { rule: Rule::FilterItem, max: GATEWAY_FILTER_MAX_ITEMS },
        default_doc: "",
        applies: RELOAD,
        doc: "Accepted categories (a path's first segment). Every set empty: all requests pass; otherwise a \
              request passes when any non-empty set matches.",
    },
    KeyDef {
        name: "adapter_ids",
        aliases: &[],
        scope: Scope::Filters,
        kind: Kind::List { rule: Rule::FilterItem, max: GATEWAY_FILTER_MAX_ITEMS },
        default_doc: "",
        applies: RELOAD,
        doc: "Accepted upstream names (the upstream a request routes to). A name that no upstream has is a note at start.",
    },
    KeyDef {
        name: "identities",
        aliases: &[],
        scope: Scope::Filters,
        kind: Kind::List { rule: Rule::FilterItem, max: GATEWAY_FILTER_MAX_ITEMS },
        default_doc: "",
        applies: RELOAD,
        doc: "Accepted identities (a whole normalised path).",
    },
    KeyDef {
        name: "accept_user",
        aliases: &[],
        scope: Scope::Filters,
        kind: Kind::Choice { default: "none", choices: &["none", "category", "underscore"], any_case: false },
        default_doc: "",
        applies: RELOAD,
        doc: "Also accept the category named after the user (`category`), or the user's name with a leading `_` \
              (`underscore`): Glacier2's `Filter.Category.AcceptUser` 1 and 2.",
    },
];

/// The key of `scope` spelled `spelled` (its name or an alias).
pub fn find(scope: Scope, spelled: &str) -> Option<&'static KeyDef> {
    KEYS.iter().find(|k| k.scope == scope && (k.name == spelled || k.aliases.contains(&spelled)))
}

/// The key of `scope` named `name` (tests only).
#[cfg(test)]
pub(crate) fn def(scope: Scope, name: &str) -> &'static KeyDef {
    KEYS.iter()
        .find(|k| k.scope == scope && k.name == name)
        .unwrap_or_else(|| panic!("config key {}{name} is not in config::keys::KEYS", scope.prefix()))
}

/// The canonical names accepted in `scopes`, for "unknown key" messages.
pub(crate) fn names_in(scopes: &[Scope]) -> String {
    KEYS.iter().filter(|k| scopes.contains(&k.scope)).map(|k| k.name).collect::<Vec<_>>().join(", ")
}

impl KeyDef {
    /// The key as `--set` and the reference write it (`sessions.max_sessions`).
    pub fn qualified(&self) -> String {
        format!("{}{}", self.scope.prefix(), self.name)
    }

    /// The built-in default as TOML writes it (`1000`, `"Lax"`, `[]`), or
    /// `None` when it is computed at start or unset.
    pub(crate) fn default_toml(&self) -> Option<String> {
        match self.kind {
            Kind::Int { default, .. } => default.map(|d| d.to_string()),
            Kind::Secs { default, .. } => Some(default.to_string()),
            Kind::Bool { default } => Some(default.to_string()),
            Kind::Choice { default, .. } => Some(format!("{default:?}")),
            Kind::Text { default, .. } => default.map(|d| format!("{d:?}")),
            Kind::List { .. } => Some("[]".into()),
        }
    }

    /// What the value must be, for messages and the reference.
    pub fn allowed(&self) -> String {
        match self.kind {
            Kind::Int { min, max, unit, .. } => format!("{}–{}{}", group(min), group(max), unit_suffix(unit)),
            Kind::Secs { min, max, .. } => format!("{min}–{max} s, decimals allowed"),
            Kind::Bool { .. } => "`true`, `false`".into(),
            Kind::Choice { choices, any_case, .. } => {
                let words = choices.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ");
                if any_case { format!("{words} (any case)") } else { words }
            }
            Kind::Text { rule, .. } => rule.describe().into(),
            Kind::List { rule, max } => format!("array of at most {} {}", group(max as u64), rule.describe_items()),
        }
    }

    /// The default as the reference shows it.
    pub fn default_text(&self) -> String {
        if !self.default_doc.is_empty() {
            return self.default_doc.into();
        }
        match self.kind {
            Kind::Int { default: Some(d), unit: Unit::Seconds, .. } => format!("`{d}` s"),
            Kind::Int { default: Some(d), .. } => format!("`{d}`"),
            Kind::Secs { default, .. } => format!("`{default}` s"),
            Kind::Bool { default } => format!("`{default}`"),
            Kind::Choice { default, .. } | Kind::Text { default: Some(default), .. } => format!("`{default}`"),
            Kind::Int { default: None, .. } | Kind::Text { default: None, .. } => "none".into(),
            Kind::List { .. } => "`[]`".into(),
        }
    }

    /// The placeholder a command-line flag shows for the value.
    pub fn value_name(&self) -> &'static str {
        match self.kind {
            Kind::Int { unit: Unit::Seconds, .. } | Kind::Secs { .. } => "SECONDS",
            Kind::Int { unit: Unit::Bytes, .. } => "BYTES",
            Kind::Int { .. } => "N",
            Kind::Bool { .. } => "BOOL",
            Kind::Choice { .. } => "WORD",
            Kind::Text { rule: Rule::Path, .. } => "PATH",
            Kind::Text { .. } => "VALUE",
            Kind::List { .. } => "LIST",
        }
    }

    /// A command-line value (always a string) as the TOML value of this
    /// key's type, to merge into the file's table; `key` is the key as the
    /// message names it. Limits and rules are left to the deserialiser.
    pub(crate) fn arg_value(&self, key: &str, s: &str) -> Result<toml::Value, ConfigError> {
        let t = s.trim();
        let bad = || invalid(key, s, self.expected());
        Ok(match self.kind {
            Kind::Int { .. } => toml::Value::Integer(t.parse().map_err(|_| bad())?),
            Kind::Secs { .. } => match t.parse::<i64>() {
                Ok(n) => toml::Value::Integer(n),
                Err(_) => toml::Value::Float(t.parse().map_err(|_| bad())?),
            },
            Kind::Bool { .. } => toml::Value::Boolean(t.parse().map_err(|_| bad())?),
            Kind::Choice { .. } | Kind::Text { .. } => toml::Value::String(t.to_string()),
            Kind::List { .. } => {
                return Err(invalid(
                    key,
                    s,
                    format!(
                        "an array is set only in the config file: write {} = [\"…\"] under {}",
                        self.name,
                        self.scope.table()
                    ),
                ));
            }
        })
    }

    /// What a value of this key looks like, as the fix in a type error.
    pub(crate) fn expected(&self) -> String {
        let what = match self.kind {
            Kind::Int { min, max, .. } => format!("a whole number between {min} and {max}"),
            Kind::Secs { min, max, .. } => format!("a number of seconds between {min} and {max}"),
            Kind::Bool { .. } => "true or false".into(),
            Kind::Choice { choices, .. } => format!("one of {}", choices.join(", ")),
            Kind::Text { rule, .. } => format!("a string: {}", rule.describe().replace('`', "")),
            Kind::List { rule, max } => {
                format!("an array of at most {max} strings, {}", rule.describe_items().replace('`', ""))
            }
        };
        match self.default_toml() {
            Some(d) => format!("expected {what}; e.g. {} = {d}", self.name),
            None => format!("expected {what}"),
        }
    }
}

fn unit_suffix(u: Unit) -> &'static str {
    match u {
        Unit::Count => "",
        Unit::Bytes => " bytes",
        Unit::Seconds => " s",
    }
}

/// `1048576` as `1 048 576`; numbers below 10 000 stay ungrouped.
fn group(n: u64) -> String {
    let digits = n.to_string();
    if n < 10_000 {
        return digits;
    }
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// A TOML value as the user wrote it (strings quoted), for messages.
pub(crate) fn toml_display(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => format!("{s:?}"),
        toml::Value::Table(_) => "(a table)".into(),
        toml::Value::Array(_) => "(an array)".into(),
        other => other.to_string(),
    }
}

/// The configuration reference: one Markdown table row per key, generated
/// from [`KEYS`]. `docs/operations.md` and `README.md` carry it between
/// `<!-- config-keys:begin -->` and `<!-- config-keys:end -->`; print it
/// with `sessiond --config-reference`.
pub fn reference_markdown() -> String {
    let mut out = String::new();
    out.push_str("| Key | Default | Alias | Allowed | Meaning | Change takes effect |\n");
    out.push_str("| --- | --- | --- | --- | --- | --- |\n");
    for k in KEYS {
        let aliases = k.aliases.iter().map(|a| format!("`{a}`")).collect::<Vec<_>>().join(", ");
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} | {} |",
            k.qualified(),
            k.default_text(),
            aliases,
            k.allowed(),
            k.doc,
            k.applies.text()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_without_a_static_default_document_theirs() {
        for k in KEYS {
            if k.default_toml().is_none() {
                assert!(!k.default_doc.is_empty(), "{} needs a default_doc", k.qualified());
            }
        }
    }

    #[test]
    fn each_spelling_names_one_key_per_table() {
        for (i, a) in KEYS.iter().enumerate() {
            for b in &KEYS[i + 1..] {
                let same_table = a.scope == b.scope
                    // Bare command-line keys resolve top level first, then
                    // [sessions], so those two must not share a spelling either.
                    || matches!((a.scope, b.scope), (Scope::Server, Scope::Sessions) | (Scope::Sessions, Scope::Server));
                if !same_table {
                    continue;
                }
                for s in std::iter::once(&a.name).chain(a.aliases) {
                    assert!(
                        b.name != *s && !b.aliases.contains(s),
                        "`{s}` names both {} and {}",
                        a.qualified(),
                        b.qualified()
                    );
                }
            }
        }
    }

    #[test]
    fn whole_number_limits_fit_in_u32() {
        for k in KEYS {
            if let Kind::Int { max, .. } = k.kind {
                assert!(max <= u32::MAX as u64, "{}: {max}", k.qualified());
            }
        }
    }

    #[test]
    fn docs_are_one_line_and_table_safe() {
        for k in KEYS {
            for text in [k.doc, k.default_doc, k.applies.text()] {
                assert!(!text.contains('\n') && !text.contains('|'), "{}: {text:?}", k.qualified());
            }
            assert!(!k.doc.is_empty(), "{}", k.qualified());
        }
    }

    #[test]
    fn layout_limits_come_from_the_region() {
        let max = |scope, name| match def(scope, name).kind {
            Kind::Int { max, .. } => max,
            _ => unreachable!(),
        };
        assert_eq!(max(Scope::Sessions, "max_sessions"), LIMIT_MAX_SESSIONS as u64);
        assert_eq!(max(Scope::Sessions, "max_values_per_session"), LIMIT_MAX_VALUES as u64);
        assert_eq!(max(Scope::Sessions, "max_name_size"), LIMIT_MAX_NAME as u64);
        assert_eq!(max(Scope::Sessions, "max_value_size"), LIMIT_MAX_VALUE as u64);
        assert_eq!(max(Scope::Sessions, "max_locks"), LIMIT_MAX_LOCKS as u64);
    }

    #[test]
    fn numbers_are_grouped_in_the_reference() {
        assert_eq!((group(4096), group(16384), group(1 << 20)), ("4096".into(), "16 384".into(), "1 048 576".into()));
    }

    #[test]
    fn filter_item_texts_state_the_limit_the_rule_applies() {
        let len = format!("1–{GATEWAY_FILTER_MAX_ITEM_LEN} bytes");
        assert!(Rule::FilterItem.describe().contains(&len) && Rule::FilterItem.describe_items().contains(&len));
        assert!(Rule::FilterItem.check(&"x".repeat(GATEWAY_FILTER_MAX_ITEM_LEN)).is_ok());
        assert!(Rule::FilterItem.check(&"x".repeat(GATEWAY_FILTER_MAX_ITEM_LEN + 1)).is_err());
    }

    #[test]
    fn http_urls_need_a_scheme_and_a_host() {
        assert!(check_http_url("https://hooks.example.com/x").is_ok());
        assert!(check_http_url("http://127.0.0.1:9000/").is_ok());
        assert!(check_http_url("ftp://example.com/").unwrap_err().contains("http://"));
        assert!(check_http_url("https://").is_err());
        assert!(check_http_url("https:// spaces/").is_err());
    }
}
