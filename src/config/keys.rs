//! The one list of configuration keys, and what can be said about a key
//! without the rest of the configuration.
//!
//! [`KEYS`] is the single source for every key: its canonical name, its
//! aliases (iPlanet's parameter names and camelCase), the table it lives in,
//! its type, default and limits, and its one-line documentation. The TOML
//! walk, `--set` and `--init-args` routing, the binary's named flags, the
//! per-value checks and the configuration reference in the docs
//! ([`reference_markdown`]) are all driven by it. Adding a key is one entry
//! here plus the code in `config/mod.rs` that uses its effective value.
//!
//! This module checks one value against one key. Rules that relate two keys
//! (`max_locks` against `max_sessions`, `cookie_same_site` against
//! `cookie_secure`, `events.secret_file` against `events.url`) live with the
//! effective types in `config/mod.rs`. It never reads files or the
//! environment.

use std::fmt::Write as _;

use crate::region::id::MAX_NODE_ID;
use crate::region::layout::{LIMIT_MAX_LOCKS, LIMIT_MAX_NAME, LIMIT_MAX_SESSIONS, LIMIT_MAX_VALUE, LIMIT_MAX_VALUES};

use super::{ConfigError, LIMIT_MAX_PROCS, invalid};

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
}

impl Scope {
    /// How the reference and `--set` prefix a key of this scope.
    pub fn prefix(self) -> &'static str {
        match self {
            Scope::Server => "",
            Scope::Sessions => "sessions.",
            Scope::Context => "contexts[].",
            Scope::Events => "events.",
        }
    }

    /// The table as a TOML reader sees it, for messages.
    pub fn table(self) -> &'static str {
        match self {
            Scope::Server => "the top level",
            Scope::Sessions => "[sessions]",
            Scope::Context => "[[contexts]]",
            Scope::Events => "[events]",
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
}

impl Rule {
    /// Checks `s`; the error is the reason, with the fix.
    fn check(self, s: &str) -> Result<(), String> {
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
        }
    }
}

/// True for 1-64 ASCII letters, digits, `_` or `-`.
pub(crate) fn valid_token(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn check_http_url(s: &str) -> Result<(), String> {
    if s.is_empty() {
        // Empty is "off", so `--set events.url=` can switch off a file's webhook.
        return Ok(());
    }
    if !(s.starts_with("http://") || s.starts_with("https://")) {
        return Err("must start with http:// or https://, e.g. https://hooks.example.com/sessiond".into());
    }
    match s.parse::<hyper::Uri>() {
        Ok(u) if u.host().is_some_and(|h| !h.is_empty()) => Ok(()),
        Ok(_) => Err("the URL has no host; write it as https://host[:port]/path".into()),
        Err(e) => Err(format!("not a valid URL ({e}); write it as https://host[:port]/path")),
    }
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
    pub applies: &'static str,
    /// One line saying what the key does.
    pub doc: &'static str,
}

/// A value that passed its key's type and limit checks.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    /// For [`Kind::Int`].
    Int(u64),
    /// For [`Kind::Secs`].
    Secs(f64),
    /// For [`Kind::Bool`].
    Bool(bool),
    /// For [`Kind::Choice`] (canonical spelling) and [`Kind::Text`].
    Text(String),
}

const RESTART: &str = "restart";
const RELOAD: &str = "reload";
const DRAINED: &str = "reload (workers drained)";
const MIGRATED: &str = "reload, with migration";
const DRAINED_EXISTING: &str = "reload (workers drained); existing sessions take the new value";

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
];

/// The key of `scope` spelled `spelled` (its name or an alias).
pub fn find(scope: Scope, spelled: &str) -> Option<&'static KeyDef> {
    KEYS.iter().find(|k| k.scope == scope && (k.name == spelled || k.aliases.contains(&spelled)))
}

/// The key of `scope` named `name`; a miss is a bug in this crate (the
/// default-config test reads every key).
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

    /// The built-in default, or `None` when it is computed at start or unset.
    pub(crate) fn default_value(&self) -> Option<Value> {
        match self.kind {
            Kind::Int { default, .. } => default.map(Value::Int),
            Kind::Secs { default, .. } => Some(Value::Secs(default)),
            Kind::Bool { default } => Some(Value::Bool(default)),
            Kind::Choice { default, .. } => Some(Value::Text(default.to_string())),
            Kind::Text { default, .. } => default.map(|s| Value::Text(s.to_string())),
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
        }
    }

    /// Checks a value from the TOML file; `key` is the key as the message
    /// names it (`sessions.max_sessions`, `contexts[admin].timeout`).
    pub(crate) fn read_toml(&self, key: &str, v: &toml::Value) -> Result<Value, ConfigError> {
        let shown = toml_display(v);
        let value = match (self.kind, v) {
            (Kind::Int { .. }, toml::Value::Integer(i)) => match u64::try_from(*i) {
                Ok(n) => Value::Int(n),
                Err(_) => return Err(invalid(key, shown, self.expected())),
            },
            (Kind::Secs { .. }, toml::Value::Integer(i)) => Value::Secs(*i as f64),
            (Kind::Secs { .. }, toml::Value::Float(f)) => Value::Secs(*f),
            (Kind::Bool { .. }, toml::Value::Boolean(b)) => Value::Bool(*b),
            (Kind::Choice { .. } | Kind::Text { .. }, toml::Value::String(s)) => Value::Text(s.clone()),
            _ => return Err(invalid(key, shown, self.expected())),
        };
        self.check(key, value, &shown)
    }

    /// Checks a value from the command line (always a string).
    pub(crate) fn read_arg(&self, key: &str, s: &str) -> Result<Value, ConfigError> {
        let t = s.trim();
        let value = match self.kind {
            Kind::Int { .. } => Value::Int(t.parse().map_err(|_| invalid(key, s, self.expected()))?),
            Kind::Secs { .. } => Value::Secs(t.parse().map_err(|_| invalid(key, s, self.expected()))?),
            Kind::Bool { .. } => Value::Bool(t.parse().map_err(|_| invalid(key, s, self.expected()))?),
            Kind::Choice { .. } | Kind::Text { .. } => Value::Text(t.to_string()),
        };
        self.check(key, value, s)
    }

    /// What a value of this key looks like, as the fix in a type error.
    fn expected(&self) -> String {
        let what = match self.kind {
            Kind::Int { min, max, .. } => format!("a whole number between {min} and {max}"),
            Kind::Secs { min, max, .. } => format!("a number of seconds between {min} and {max}"),
            Kind::Bool { .. } => "true or false".into(),
            Kind::Choice { choices, .. } => format!("one of {}", choices.join(", ")),
            Kind::Text { rule, .. } => format!("a string: {}", rule.describe().replace('`', "")),
        };
        match self.default_value() {
            Some(d) => format!("expected {what}; e.g. {} = {}", self.name, value_toml(&d)),
            None => format!("expected {what}"),
        }
    }

    /// Applies the limits to a value of the right type.
    fn check(&self, key: &str, v: Value, shown: &str) -> Result<Value, ConfigError> {
        match (self.kind, v) {
            (Kind::Int { min, max, .. }, Value::Int(n)) if n < min || n > max => {
                Err(invalid(key, shown, format!("must be between {min} and {max}")))
            }
            (Kind::Secs { min, max, .. }, Value::Secs(s)) if !s.is_finite() || s < min || s > max => {
                Err(invalid(key, shown, format!("must be between {min} and {max} seconds")))
            }
            (Kind::Choice { choices, any_case, .. }, Value::Text(s)) => {
                let hit = choices.iter().find(|c| if any_case { c.eq_ignore_ascii_case(&s) } else { **c == s });
                match hit {
                    Some(c) => Ok(Value::Text(c.to_string())),
                    None => Err(invalid(key, shown, format!("use one of {}", choices.join(", ")))),
                }
            }
            (Kind::Text { rule, .. }, Value::Text(s)) => match rule.check(&s) {
                Ok(()) => Ok(Value::Text(s)),
                Err(reason) => Err(invalid(key, shown, reason)),
            },
            (_, v) => Ok(v),
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

fn value_toml(v: &Value) -> String {
    match v {
        Value::Int(n) => n.to_string(),
        Value::Secs(s) => s.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Text(s) => format!("{s:?}"),
    }
}

/// A TOML value as the user wrote it (strings quoted), for messages.
fn toml_display(v: &toml::Value) -> String {
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
            k.applies
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_is_within_its_own_limits() {
        for k in KEYS {
            if let Some(v) = k.default_value() {
                let key = k.qualified();
                k.check(&key, v.clone(), "default").unwrap_or_else(|e| panic!("{key}: default {v:?}: {e}"));
            }
        }
    }

    #[test]
    fn keys_without_a_static_default_document_theirs() {
        for k in KEYS {
            if k.default_value().is_none() {
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
            for text in [k.doc, k.default_doc, k.applies] {
                assert!(!text.contains('\n') && !text.contains('|'), "{}: {text:?}", k.qualified());
            }
            assert!(!k.doc.is_empty() && !k.applies.is_empty(), "{}", k.qualified());
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
    fn http_urls_need_a_scheme_and_a_host() {
        assert!(check_http_url("https://hooks.example.com/x").is_ok());
        assert!(check_http_url("http://127.0.0.1:9000/").is_ok());
        assert!(check_http_url("ftp://example.com/").unwrap_err().contains("http://"));
        assert!(check_http_url("https://").is_err());
        assert!(check_http_url("https:// spaces/").is_err());
    }
}
