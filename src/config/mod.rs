//! Configuration: the TOML file, command-line overrides, iPlanet aliases,
//! defaults and validation, turned into an effective [`Config`].
//!
//! The effective types below are the schema: serde derives read them, with
//! `deny_unknown_fields`, the iPlanet and camelCase spellings as aliases,
//! and defaults. Durations are [`Duration`]s and choice keys enums, read
//! once. Sources, later winning: built-in defaults, the TOML file
//! (`--config PATH`, else `/etc/sessiond/sessiond.toml` if it exists), then
//! command-line keys (the named flags, `--set key=value`, and iPlanet's
//! `--init-args "maxSessions=20,timeOut=300"`), merged into the file's
//! table before the one deserialise (`config/de.rs`). Then
//! [`Config::validate`] applies the rules that relate keys. A key left at
//! its default never makes a valid setting fail: such a default adapts, and
//! the change is recorded in [`Config::notes`]. [`keys::KEYS`] describes
//! every key for the reference, the flags and messages; a test checks that
//! it and these structs agree.
//!
//! Every error names the key, the value and the fix. This module never
//! touches the data directory or the network. Besides the config file it
//! reads only the files that keys name, so that `--check-config` and a
//! reload catch a bad one: the secrets (`events.secret_file`,
//! `api_token_file`, `gateway.secret_file`, `cluster.store_password_file`),
//! whose contents never appear in a message, and it opens
//! `gateway.verifier`'s file and `gateway.login_template` to see that they
//! are readable (the gateway parses them when it starts).

mod de;
pub mod keys;
pub mod store_url;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use keys::{
    Applies, GATEWAY_FILTER_MAX_ITEM_LEN, GATEWAY_FILTER_MAX_ITEMS, GATEWAY_MAX_SESSION_MANAGERS,
    GATEWAY_MAX_TRUSTED_PROXIES, KEYS, KeyDef, Scope, reference_markdown,
};

use crate::region::id::MAX_NODE_ID as NODE_ID_MAX;
use crate::region::layout::{self, LayoutParams, context_tag};
use crate::region::{RegionConfig, WhenFull};
use de::{Input, dflt};

/// Default config file read when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/sessiond/sessiond.toml";
/// Largest `max_procs`.
pub const LIMIT_MAX_PROCS: u32 = 512;

// Limits as `u64`s, for the deserialisers' const parameters.
const MAX_PROCS: u64 = LIMIT_MAX_PROCS as u64;
const MAX_NODE_ID: u64 = NODE_ID_MAX as u64;
const MAX_SESSIONS: u64 = layout::LIMIT_MAX_SESSIONS as u64;
const MAX_VALUES: u64 = layout::LIMIT_MAX_VALUES as u64;
const MAX_NAME: u64 = layout::LIMIT_MAX_NAME as u64;
const MAX_VALUE: u64 = layout::LIMIT_MAX_VALUE as u64;
const MAX_LOCKS: u64 = layout::LIMIT_MAX_LOCKS as u64;
const U32_MAX: u64 = u32::MAX as u64;
const CENTURY: u64 = 100 * 365 * 86400;
const YEAR: u64 = 365 * 86400;
const HOUR_MS: u64 = 3_600_000;

/// A configuration error, with the key, the value and the reason.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML did not parse.
    #[error("{source_name}: {message}")]
    Parse {
        /// The file or "command line".
        source_name: String,
        /// The parser's message, which names the line.
        message: String,
    },
    /// A value is of the wrong type, out of range or inconsistent.
    #[error("invalid value for `{key}`: {value} ({reason})")]
    Invalid {
        /// The key (with its table).
        key: String,
        /// The value given.
        value: String,
        /// Why it is wrong and what to do.
        reason: String,
    },
    /// A key that the table it appears in does not define.
    #[error("{source_name}: unknown key `{key}` ({help})")]
    UnknownKey {
        /// The file or "command line".
        source_name: String,
        /// The key as written (with its table).
        key: String,
        /// Where the key belongs, or the keys accepted there.
        help: String,
    },
}

fn invalid(key: impl Into<String>, value: impl ToString, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.into(), value: value.to_string(), reason: reason.into() }
}

/// Where to listen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listen {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A Unix socket path.
    Unix(PathBuf),
}

impl Serialize for Listen {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Listen {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        listen_from(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Tcp(a) => write!(f, "{a}"),
            Listen::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// `log_level`: the log filter (`RUST_LOG` overrides it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// No logging.
    Off,
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// The default.
    #[default]
    Info,
    /// Debugging detail.
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    /// The level as `log` and `RUST_LOG` spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Off => "off",
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// One context's effective settings: a `[[contexts]]` entry over
/// `[sessions]` over these defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ContextConfig {
    /// Name; also the directory under `data_dir/contexts/`.
    #[serde(deserialize_with = "de::token")]
    pub name: String,
    /// Slots.
    #[serde(alias = "maxSessions", deserialize_with = "de::int::<_, _, 1, MAX_SESSIONS>")]
    pub max_sessions: u32,
    /// Attributes per session.
    #[serde(alias = "maxValuesPerSession", deserialize_with = "de::int::<_, _, 1, MAX_VALUES>")]
    pub max_values_per_session: u32,
    /// Longest name, bytes.
    #[serde(alias = "maxNameSize", deserialize_with = "de::int::<_, _, 1, MAX_NAME>")]
    pub max_name_size: u32,
    /// Longest value, bytes.
    #[serde(alias = "maxValueSize", deserialize_with = "de::int::<_, _, 1, MAX_VALUE>")]
    pub max_value_size: u32,
    /// Idle timeout, whole seconds (the region counts in seconds).
    #[serde(alias = "timeOut", deserialize_with = "de::int::<_, _, 1, U32_MAX>")]
    pub timeout: u64,
    /// Absolute lifetime, whole seconds; 0 = off.
    #[serde(alias = "absoluteTimeout", deserialize_with = "de::int::<_, _, 0, CENTURY>")]
    pub absolute_timeout: u64,
    /// Reaper period, whole seconds.
    #[serde(alias = "reapInterval", deserialize_with = "de::int::<_, _, 1, 86400>")]
    pub reap_interval: u64,
    /// Stripes; at most `max_sessions` (see [`Config::validate`]).
    #[serde(alias = "maxLocks", deserialize_with = "de::int::<_, _, 1, MAX_LOCKS>")]
    pub max_locks: u32,
    /// Stripe-lock wait bound.
    #[serde(alias = "lockTimeout", deserialize_with = "de::secs::<_, 1, 60_000>", serialize_with = "de::ser_secs")]
    pub lock_timeout: Duration,
    /// Full policy.
    pub when_full: WhenFull,
    /// Cookie name.
    #[serde(deserialize_with = "de::token")]
    pub cookie_name: String,
    /// Secure flag.
    pub cookie_secure: bool,
    /// SameSite; `None` needs `cookie_secure`.
    #[serde(deserialize_with = "de::same_site", serialize_with = "de::ser_same_site")]
    pub cookie_same_site: cookie::SameSite,
    /// Cookie path.
    #[serde(deserialize_with = "de::cookie_path")]
    pub cookie_path: String,
    /// URL-rewriting parameter.
    #[serde(deserialize_with = "de::token")]
    pub url_param: String,
    /// Bound on a session's own timeout and deadline, seconds.
    #[serde(deserialize_with = "de::int::<_, _, 1, YEAR>")]
    pub max_timeout: u32,
    /// Most sessions per principal; 0 = no cap.
    #[serde(deserialize_with = "de::int::<_, _, 0, 1_000_000>")]
    pub max_sessions_per_principal: u32,
    /// What a create past that cap does.
    pub when_principal_full: WhenPrincipalFull,
}

impl Default for ContextConfig {
    /// The `default` context with every key at its default.
    fn default() -> Self {
        ContextConfig {
            name: "default".into(),
            max_sessions: 1000,
            max_values_per_session: 10,
            max_name_size: 64,
            max_value_size: 4096,
            timeout: 1800,
            absolute_timeout: 0,
            reap_interval: 600,
            max_locks: 16,
            lock_timeout: Duration::from_secs(1),
            when_full: WhenFull::Refuse,
            cookie_name: "SESSIONID".into(),
            cookie_secure: false,
            cookie_same_site: cookie::SameSite::Lax,
            cookie_path: "/".into(),
            url_param: "sessionid".into(),
            max_timeout: 86400,
            max_sessions_per_principal: 0,
            when_principal_full: WhenPrincipalFull::EvictOldest,
        }
    }
}

impl ContextConfig {
    /// The region configuration this context maps to.
    pub fn region_config(&self, node_id: u32) -> RegionConfig {
        RegionConfig {
            context: self.name.clone(),
            layout: LayoutParams {
                max_sessions: self.max_sessions,
                max_values: self.max_values_per_session,
                max_name_size: self.max_name_size,
                max_value_size: self.max_value_size,
                max_locks: self.max_locks,
            },
            node_id,
            timeout_s: self.timeout as u32,
            absolute_timeout_s: self.absolute_timeout,
            when_full: self.when_full,
            lock_timeout: self.lock_timeout,
        }
    }
}

/// The lifecycle webhook's effective settings (`[events]`); the defaults
/// when the table is absent, with `url = None` meaning "off".
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsConfig {
    /// Where events are POSTed; `None` (unset or empty) turns the webhook off.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "de::opt_http_url")]
    pub url: Option<String>,
    /// File holding the signing key; always set when `url` is (read it
    /// with [`read_secret_file`]).
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "de::opt_path")]
    pub secret_file: Option<PathBuf>,
    /// Time allowed for one delivery attempt.
    #[serde(deserialize_with = "de::secs::<_, 100, 60_000>", serialize_with = "de::ser_secs")]
    pub timeout: Duration,
    /// Delivery attempts per batch, with exponential back-off between them.
    #[serde(deserialize_with = "de::int::<_, _, 1, 100>")]
    pub max_attempts: u32,
    /// Most events in one POST.
    #[serde(deserialize_with = "de::int::<_, _, 1, 1000>")]
    pub max_batch: u32,
    /// Capacity of each process's bounded event queue.
    #[serde(deserialize_with = "de::int::<_, _, 16, 1_048_576>")]
    pub queue_size: u32,
    /// Whether `touched` events are sent.
    pub include_touched: bool,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            url: None,
            secret_file: None,
            timeout: Duration::from_secs(5),
            max_attempts: 10,
            max_batch: 100,
            queue_size: 4096,
            include_touched: false,
        }
    }
}

/// What a create or a principal change does when the principal already
/// holds `sessions.max_sessions_per_principal` sessions
/// (`sessions.when_principal_full`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WhenPrincipalFull {
    /// Answer 409 `too_many_sessions`.
    Refuse,
    /// End the principal's least recently used session (an `evicted` event).
    #[default]
    EvictOldest,
}

/// What a node does while its store is down (`cluster.when_store_down`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StoreDown {
    /// The owner keeps serving from its region and flushes later.
    #[default]
    ServeLocal,
    /// Changes answer 503 `store_unavailable`.
    FailClosed,
}

/// Which nodes sweep the store (`cluster.reaper`, iPlanet's `reaperActive`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StoreReaper {
    /// One node at a time, elected through the store.
    #[default]
    Elect,
    /// This node, whatever the others do.
    Always,
    /// Never this node.
    Never,
}

/// Cluster mode's effective settings (`[cluster]`, present only when the
/// file has that table or a `cluster.*` key is set on the command line).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The shared store (shown without its password).
    #[serde(deserialize_with = "de::store_url")]
    pub store: store_url::StoreUrl,
    /// File holding the store's password; it passed [`read_secret_file`].
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "de::opt_path")]
    pub store_password_file: Option<PathBuf>,
    /// Last access reaches the store at most once per this many seconds.
    #[serde(default = "dflt::int::<_, 60>", deserialize_with = "de::int::<_, _, 1, 3600>")]
    pub save_period: u32,
    /// Which nodes sweep the store.
    #[serde(default, alias = "reaperActive")]
    pub reaper: StoreReaper,
    /// What happens while the store is down.
    #[serde(default)]
    pub when_store_down: StoreDown,
    /// Time allowed for one store call.
    #[serde(
        default = "dflt::ms::<2000>",
        deserialize_with = "de::secs::<_, 50, 60_000>",
        serialize_with = "de::ser_secs"
    )]
    pub store_timeout: Duration,
    /// Time between store sweeps.
    #[serde(
        default = "dflt::ms::<10_000>",
        deserialize_with = "de::secs::<_, 100, HOUR_MS>",
        serialize_with = "de::ser_secs"
    )]
    pub sweep_interval: Duration,
    /// Most sessions one sweep statement deletes.
    #[serde(default = "dflt::int::<_, 500>", deserialize_with = "de::int::<_, _, 1, 10_000>")]
    pub sweep_batch: u32,
}

/// Gateway mode's effective settings (`[gateway]`, present only when the
/// file has that table or a `gateway.*` key is set on the command line).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// The public listener, served by every worker beside `listen`; never
    /// the same address as `listen`.
    pub listen: Listen,
    /// The context whose sessions the gateway creates; a configured one.
    #[serde(default = "dflt::context", deserialize_with = "de::token")]
    pub context: String,
    /// The htpasswd file of the password verifier (written
    /// `htpasswd:FILE`); it existed and was readable at load, and the
    /// gateway parses it when it starts. `--check-config` prints it as
    /// written.
    #[serde(serialize_with = "htpasswd_verifier", deserialize_with = "de::verifier")]
    pub verifier: PathBuf,
    /// Session-manager hook URLs, tried in turn; empty: no hook.
    #[serde(default, deserialize_with = "de::http_urls")]
    pub session_manager: Vec<String>,
    /// Time allowed for one session-manager call.
    #[serde(
        default = "dflt::ms::<2000>",
        deserialize_with = "de::secs::<_, 100, 60_000>",
        serialize_with = "de::ser_secs"
    )]
    pub session_manager_timeout: Duration,
    /// File holding the key that signs hook calls and control handles; it
    /// passed [`read_secret_file`] with at least 16 bytes at load (read it
    /// again with that function).
    #[serde(deserialize_with = "de::path")]
    pub secret_file: PathBuf,
    /// HTML file replacing the built-in login form; it existed at load.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "de::opt_path")]
    pub login_template: Option<PathBuf>,
    /// Peers whose `Forwarded` / `X-Forwarded-*` headers are kept; a plain
    /// address is a `/32` or `/128` block.
    #[serde(default, serialize_with = "display_all", deserialize_with = "de::ip_nets")]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Time an upstream has to send its response head.
    #[serde(
        default = "dflt::ms::<30_000>",
        deserialize_with = "de::secs::<_, 100, HOUR_MS>",
        serialize_with = "de::ser_secs"
    )]
    pub upstream_timeout: Duration,
    /// Failed logins per client address and per user within `login_window`.
    #[serde(default = "dflt::int::<_, 5>", deserialize_with = "de::int::<_, _, 1, 1000>")]
    pub login_max_failures: u32,
    /// The period failed logins are counted over.
    #[serde(
        default = "dflt::ms::<300_000>",
        deserialize_with = "de::secs::<_, 1000, 86_400_000>",
        serialize_with = "de::ser_secs"
    )]
    pub login_window: Duration,
    /// Paths whose decoded segments hold `%` and two hex digits pass
    /// (`gateway.allow_encoded_percent`); refused as `ambiguous_path` when false.
    #[serde(default)]
    pub allow_encoded_percent: bool,
    /// `[[gateway.upstreams]]`, in file order; at least one, names and
    /// prefixes unique.
    #[serde(default)]
    pub upstreams: Vec<UpstreamConfig>,
    /// `[gateway.filters]`: the filters every session starts with.
    #[serde(default)]
    pub filters: FiltersConfig,
}

/// One `[[gateway.upstreams]]` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Its name (Glacier2's adapter id), what `adapter_ids` filters match.
    #[serde(deserialize_with = "de::token")]
    pub name: String,
    /// `http(s)://host[:port][/base]`, without user info, query or fragment.
    #[serde(deserialize_with = "de::upstream_url")]
    pub url: String,
    /// Path prefix routed here (longest wins): starts with `/`, never ends
    /// with `/` unless it is `/`, and holds no `//`, dot segments, `;`, `?`,
    /// `#`, `%`, backslash or control characters.
    #[serde(default = "dflt::root", deserialize_with = "de::url_prefix")]
    pub prefix: String,
}

/// `[gateway.filters]`: a session's initial filters (Glacier2's
/// `Filter.*.Accept`). Every set empty lets every request through.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FiltersConfig {
    /// Accepted categories (a normalised path's first segment).
    #[serde(deserialize_with = "de::filter_items")]
    pub categories: Vec<String>,
    /// Accepted upstream names.
    #[serde(deserialize_with = "de::filter_items")]
    pub adapter_ids: Vec<String>,
    /// Accepted identities (whole normalised paths).
    #[serde(deserialize_with = "de::filter_items")]
    pub identities: Vec<String>,
    /// Whether the user's own category is accepted too.
    pub accept_user: AcceptUser,
}

/// Whether a new session's user id becomes one of its accepted categories
/// (`gateway.filters.accept_user`, Glacier2's `Filter.Category.AcceptUser`
/// 0/1/2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AcceptUser {
    /// The user id is not added (`AcceptUser=0`).
    #[default]
    None,
    /// The user id itself is added as a category (`AcceptUser=1`): `alice`.
    Category,
    /// `_` and the user id is added as a category (`AcceptUser=2`): `_alice`,
    /// which cannot clash with upstream paths that never start with `_`.
    Underscore,
}

/// `gateway.verifier` as the file writes it, `htpasswd:FILE`.
fn htpasswd_verifier<S: serde::Serializer>(file: &Path, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("htpasswd:{}", file.display()))
}

/// Serialises each item with `Display` (for types without serde support).
fn display_all<S: serde::Serializer, T: std::fmt::Display>(items: &[T], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(items.iter().map(ToString::to_string))
}

/// The effective configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Listening address.
    pub listen: Listen,
    /// Data directory.
    #[serde(deserialize_with = "de::path")]
    pub data_dir: PathBuf,
    /// Worker processes.
    #[serde(alias = "MaxProcs", alias = "maxProcs", deserialize_with = "de::int::<_, _, 1, MAX_PROCS>")]
    pub max_procs: u32,
    /// One SO_REUSEPORT socket per worker.
    pub reuse_port: bool,
    /// User to switch to after binding (when started as root).
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "de::opt_text")]
    pub user: Option<String>,
    /// Node id carried in session ids.
    #[serde(deserialize_with = "de::int::<_, _, 0, MAX_NODE_ID>")]
    pub node_id: u32,
    /// Log level filter (RUST_LOG overrides).
    pub log_level: LogLevel,
    /// Drain bound at stop and reload.
    #[serde(deserialize_with = "de::secs::<_, 0, HOUR_MS>", serialize_with = "de::ser_secs")]
    pub shutdown_timeout: Duration,
    /// Open connections per worker.
    #[serde(deserialize_with = "de::int::<_, _, 1, 1_000_000>")]
    pub max_connections: u32,
    /// Time allowed to send a request head (also the keep-alive idle limit).
    #[serde(deserialize_with = "de::secs::<_, 100, HOUR_MS>", serialize_with = "de::ser_secs")]
    pub header_timeout: Duration,
    /// Time allowed for a whole request body.
    #[serde(deserialize_with = "de::secs::<_, 100, HOUR_MS>", serialize_with = "de::ser_secs")]
    pub request_timeout: Duration,
    /// Longest stall while sending a response (a client that stops reading).
    #[serde(deserialize_with = "de::secs::<_, 100, HOUR_MS>", serialize_with = "de::ser_secs")]
    pub send_timeout: Duration,
    /// Largest request head, bytes.
    #[serde(deserialize_with = "de::int::<_, _, 8192, 1_048_576>")]
    pub max_header_size: u32,
    /// When set, the private listener (`listen`) asks for
    /// `Authorization: Bearer <token>`, the token being this file's contents;
    /// it passed [`read_secret_file`] and holds printable ASCII.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "de::opt_path")]
    pub api_token_file: Option<PathBuf>,
    /// Contexts; the first is the default one.
    pub contexts: Vec<ContextConfig>,
    /// The lifecycle webhook (`[events]`).
    pub events: EventsConfig,
    /// Gateway mode (`[gateway]`); `None` when there is no such table.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewayConfig>,
    /// Cluster mode (`[cluster]`); `None` when there is no such table.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterConfig>,
    /// The file this came from, if any.
    #[serde(skip)]
    pub source: Option<PathBuf>,
    /// Defaults that adapted to other settings, one sentence each, for the
    /// log at start (info level) and `--check-config`.
    #[serde(skip)]
    pub notes: Vec<String>,
}

impl Default for Config {
    /// Every key at its default, with the `default` context.
    fn default() -> Self {
        Config {
            listen: Listen::Tcp(SocketAddr::from(([127, 0, 0, 1], 8080))),
            data_dir: match std::env::var_os("STATE_DIRECTORY") {
                // systemd may pass several colon-separated directories; use the first.
                Some(s) => PathBuf::from(s.to_string_lossy().split(':').next().unwrap_or("").to_string()),
                None => PathBuf::from("./sessiond-data"),
            },
            max_procs: cpus().clamp(1, LIMIT_MAX_PROCS),
            reuse_port: false,
            user: None,
            node_id: 0,
            log_level: LogLevel::Info,
            shutdown_timeout: Duration::from_secs(10),
            max_connections: 4096,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            send_timeout: Duration::from_secs(30),
            max_header_size: 16 * 1024,
            api_token_file: None,
            contexts: vec![ContextConfig::default()],
            events: EventsConfig::default(),
            gateway: None,
            cluster: None,
            source: None,
            notes: Vec::new(),
        }
    }
}

fn cpus() -> u32 {
    std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1)
}

/// Command-line input to configuration (the binary's flags map onto this).
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--config PATH`.
    pub config: Option<PathBuf>,
    /// `key=value` pairs, in order (named flags, `--set`, `--init-args`).
    pub pairs: Vec<(String, String)>,
}

impl Overrides {
    /// Adds iPlanet's `initArgs` form: `maxSessions=20,timeOut=300`.
    pub fn add_init_args(&mut self, s: &str) -> Result<(), ConfigError> {
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').ok_or_else(|| {
                invalid(
                    "--init-args",
                    part,
                    "expected name=value pairs separated by commas, e.g. maxSessions=20,timeOut=300",
                )
            })?;
            self.pairs.push((k.trim().to_string(), v.trim().to_string()));
        }
        Ok(())
    }
}

impl Config {
    /// Loads the effective configuration from the file and overrides.
    pub fn load(o: &Overrides) -> Result<Config, ConfigError> {
        let (path, text) = match &o.config {
            Some(p) => (Some(p.clone()), read(p)?),
            None if Path::new(DEFAULT_CONFIG_PATH).exists() => {
                (Some(PathBuf::from(DEFAULT_CONFIG_PATH)), read(Path::new(DEFAULT_CONFIG_PATH))?)
            }
            None => (None, String::new()),
        };
        let source_name = path.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "built-in defaults".into());
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| ConfigError::Parse {
            source_name: source_name.clone(),
            message: e.to_string().trim().to_string(),
        })?;
        let input = Input::new(&source_name, table, &o.pairs)?;
        let mut cfg: Config = input.deserialize()?;
        cfg.validate(&input)?;
        cfg.source = path;
        Ok(cfg)
    }

    /// The rules that relate keys to each other, and the files keys name.
    /// Defaults that must adapt do so here, with a note.
    fn validate(&mut self, input: &Input) -> Result<(), ConfigError> {
        let cpus = cpus();
        if input.written("", "max_procs").is_none() && cpus > LIMIT_MAX_PROCS {
            self.notes.push(format!(
                "max_procs defaults to the number of CPUs ({cpus}) but is at most {LIMIT_MAX_PROCS}; \
                 using max_procs = {LIMIT_MAX_PROCS}"
            ));
        }
        let mut tags = std::collections::HashMap::new();
        for (i, ctx) in self.contexts.iter_mut().enumerate() {
            let label = input.context_label(i);
            if let Some(other) = tags.insert(context_tag(&ctx.name), ctx.name.clone()) {
                return Err(invalid(
                    format!("{label}name"),
                    &ctx.name,
                    format!("its 16-bit id tag collides with context '{other}' (or it is listed twice); rename one"),
                ));
            }
            validate_context(ctx, label, input, &mut self.notes)?;
        }
        if let Some(p) = &self.api_token_file {
            check_api_token(p)?;
        }
        self.validate_events()?;
        if let Some(g) = &self.gateway {
            validate_gateway(g, &self.listen, &self.contexts, input, &mut self.notes)?;
        }
        if let Some(c) = &self.cluster {
            validate_cluster(c, self.node_id, &self.contexts)?;
        }
        Ok(())
    }

    /// With `events.url` set, the secret file must exist and be private.
    fn validate_events(&mut self) -> Result<(), ConfigError> {
        match (&self.events.url, &self.events.secret_file) {
            (Some(u), None) => Err(invalid(
                "events.secret_file",
                "(missing)",
                format!(
                    "events.url = {u:?} needs a key to sign each POST with: set events.secret_file to a file \
                     only sessiond's user can read (chmod 600)"
                ),
            )),
            // Read now so that --check-config and a reload catch a bad file;
            // the webhook reads it again when it starts.
            (Some(_), Some(p)) => read_secret_file("events.secret_file", p).map(drop),
            (None, Some(p)) => {
                let note =
                    format!("events.secret_file = {} is set but events.url is not; the webhook is off", p.display());
                self.notes.push(note);
                Ok(())
            }
            (None, None) => Ok(()),
        }
    }

    /// The default context (always present, always first).
    pub fn default_context(&self) -> &ContextConfig {
        &self.contexts[0]
    }

    /// Renders the effective configuration as TOML (for `--check-config`),
    /// preceded by the notes as comments.
    pub fn to_toml(&self) -> String {
        let notes: String = self.notes.iter().map(|n| format!("# note: {n}\n")).collect();
        match toml::to_string_pretty(self) {
            Ok(body) => notes + &body,
            Err(e) => format!("# cannot render config: {e}\n"),
        }
    }

    /// Puts back `old`'s value of the top-level key `key` (a
    /// [`Applies::Restart`] key, for a reload); true when it had changed.
    /// The master calls it for every such key of [`KEYS`]; a key this does
    /// not know is a bug that the test of this function catches.
    pub fn keep(&mut self, old: &Config, key: &str) -> bool {
        fn put_back<T: PartialEq + Clone>(new: &mut T, old: &T) -> bool {
            let changed = new != old;
            new.clone_from(old);
            changed
        }
        match key {
            "listen" => put_back(&mut self.listen, &old.listen),
            "data_dir" => put_back(&mut self.data_dir, &old.data_dir),
            "reuse_port" => put_back(&mut self.reuse_port, &old.reuse_port),
            "user" => put_back(&mut self.user, &old.user),
            "log_level" => put_back(&mut self.log_level, &old.log_level),
            _ => false,
        }
    }
}

/// One context's cross-key rules: `max_locks` against `max_sessions` (a
/// default adapts, an explicit value is an error), `SameSite=None` against
/// `cookie_secure`, and the region geometry.
fn validate_context(
    ctx: &mut ContextConfig,
    label: &str,
    input: &Input,
    notes: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let (name, max_sessions) = (&ctx.name, ctx.max_sessions);
    if ctx.max_locks > max_sessions {
        match input.written(label, "max_locks") {
            // A default must not make a valid max_sessions fail: fewer
            // sessions than stripes just means one stripe per session.
            None => {
                notes.push(format!(
                    "context {name}: max_locks defaults to {} but max_sessions = {max_sessions}; \
                     using max_locks = {max_sessions}",
                    ctx.max_locks
                ));
                ctx.max_locks = max_sessions;
            }
            Some(locks_key) => {
                let sessions_key =
                    input.written(label, "max_sessions").unwrap_or_else(|| "max_sessions (its default)".into());
                return Err(invalid(
                    &locks_key,
                    ctx.max_locks,
                    format!(
                        "must not exceed `{sessions_key}` = {max_sessions}; set `{locks_key}` to at most \
                         {max_sessions}, remove it to use the default, or raise max_sessions"
                    ),
                ));
            }
        }
    }
    if ctx.cookie_same_site == cookie::SameSite::None && !ctx.cookie_secure {
        return Err(invalid(
            input.key(label, "cookie_same_site"),
            "None",
            "browsers reject SameSite=None without Secure; set cookie_secure = true",
        ));
    }
    crate::region::Geometry::new(ctx.region_config(0).layout)
        .map_err(|e| invalid(input.key(label, "max_sessions"), max_sessions, e))?;
    Ok(())
}

/// The `[cluster]` rules: a non-zero `node_id`, a password in one place
/// only, and `save_period` shorter than every context's timeout.
fn validate_cluster(c: &ClusterConfig, node_id: u32, contexts: &[ContextConfig]) -> Result<(), ConfigError> {
    if node_id == 0 {
        return Err(invalid(
            "node_id",
            "0",
            "cluster mode needs a node_id other than 0, different on every node (it is the first 4 characters of \
             each session id, which a front proxy routes by): set node_id = 1 on the first node, 2 on the next",
        ));
    }
    if let Some(p) = &c.store_password_file {
        if c.store.has_password() {
            return Err(invalid(
                "cluster.store_password_file",
                p.display().to_string(),
                format!(
                    "cluster.store = {} already carries a password; remove it from the URL or drop \
                     store_password_file",
                    c.store.shown()
                ),
            ));
        }
        read_secret_file("cluster.store_password_file", p)?;
    }
    for ctx in contexts {
        if u64::from(c.save_period) >= ctx.timeout {
            return Err(invalid(
                "cluster.save_period",
                c.save_period.to_string(),
                format!(
                    "must be shorter than context {}'s timeout ({} s), or the store would expire sessions that \
                     are in use; lower save_period or raise timeout",
                    ctx.name, ctx.timeout
                ),
            ));
        }
    }
    Ok(())
}

/// `api_token_file`: a private, non-empty secret of printable ASCII (it is
/// compared with what clients send in an `Authorization` header).
fn check_api_token(path: &Path) -> Result<(), ConfigError> {
    let token = read_secret_file("api_token_file", path)?;
    if !token.iter().all(u8::is_ascii_graphic) {
        let shown = path.display().to_string();
        return Err(invalid(
            "api_token_file",
            &shown,
            format!(
                "the token must be printable ASCII without spaces, as clients send it in an \
                 `Authorization: Bearer` header; write one with `head -c 32 /dev/urandom | base64 > {shown}` \
                 then `chmod 600 {shown}`"
            ),
        ));
    }
    Ok(())
}

/// Shortest `gateway.secret_file` key, bytes.
const GATEWAY_MIN_SECRET: usize = 16;

/// The `[gateway]` rules that relate its keys to each other and to the
/// rest of the configuration, and the files it names.
fn validate_gateway(
    g: &GatewayConfig,
    private: &Listen,
    contexts: &[ContextConfig],
    input: &Input,
    notes: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let key = |name: &str| input.key("gateway.", name);
    let shown = |name: &str, typed: &dyn std::fmt::Display| input.shown_or(&key(name), || format!("\"{typed}\""));
    if let Some(why) = same_listener(&g.listen, private) {
        return Err(invalid(
            key("listen"),
            shown("listen", &g.listen),
            format!(
                "{why} the top-level `listen` = \"{private}\", the private listener; the gateway is a second, \
                 public listener: give it its own address, e.g. listen = \"0.0.0.0:8443\""
            ),
        ));
    }
    if !contexts.iter().any(|c| c.name == g.context) {
        let names = contexts.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ");
        return Err(invalid(
            key("context"),
            format!("{:?}", g.context),
            format!(
                "no context has that name; the configured contexts are: {names}. Use one of them, or add a \
                 [[contexts]] entry with name = {:?}",
                g.context
            ),
        ));
    }
    let verifier_shown = shown("verifier", &format_args!("htpasswd:{}", g.verifier.display()));
    check_readable_file(&key("verifier"), &verifier_shown, &g.verifier, "the htpasswd file")?;

    let secret = read_secret_file(&key("secret_file"), &g.secret_file)?;
    if secret.len() < GATEWAY_MIN_SECRET {
        let shown = g.secret_file.display().to_string();
        return Err(invalid(
            key("secret_file"),
            &shown,
            format!(
                "the key is {} bytes; a signing key needs at least {GATEWAY_MIN_SECRET}: write one with \
                 `head -c 32 /dev/urandom | base64 > {shown}` then `chmod 600 {shown}`",
                secret.len()
            ),
        ));
    }
    drop(secret);
    if let Some(p) = &g.login_template {
        let shown = shown("login_template", &p.display());
        check_readable_file(&key("login_template"), &shown, p, "the login template")?;
    }

    if g.upstreams.is_empty() {
        return Err(invalid(
            "gateway.upstreams",
            "(none)",
            "the gateway needs at least one upstream to forward to: add a [[gateway.upstreams]] entry, e.g. \
             name = \"app\", url = \"http://127.0.0.1:9000\", prefix = \"/\"",
        ));
    }
    for (i, u) in g.upstreams.iter().enumerate() {
        let before = &g.upstreams[..i];
        let label = format!("gateway.upstreams[{i}].");
        if let Some(j) = before.iter().position(|o| o.name == u.name) {
            return Err(invalid(
                input.key(&label, "name"),
                format!("{:?}", u.name),
                format!("gateway.upstreams[{j}] has the same name; each upstream needs its own name"),
            ));
        }
        if let Some((j, other)) = before.iter().enumerate().find(|(_, o)| o.prefix == u.prefix) {
            return Err(invalid(
                input.key(&label, "prefix"),
                input.shown_or(&format!("{label}prefix"), || format!("{:?}", u.prefix)),
                format!(
                    "gateway.upstreams[{j}] ({}) already routes prefix {:?}; each prefix goes to one \
                     upstream: change one of them",
                    other.name, u.prefix
                ),
            ));
        }
    }
    for id in g.filters.adapter_ids.iter().filter(|id| !g.upstreams.iter().any(|u| &u.name == *id)) {
        let names = g.upstreams.iter().map(|u| u.name.as_str()).collect::<Vec<_>>().join(", ");
        notes.push(format!(
            "gateway.filters.adapter_ids: {id:?} names no [[gateway.upstreams]] entry (the upstreams are: {names}); \
             it matches no request"
        ));
    }
    Ok(())
}

fn read(p: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(p).map_err(|e| ConfigError::Read { path: p.to_path_buf(), source: e })
}

/// Parses `host:port` or `unix:/path`; the error is the reason, with the fix.
pub(crate) fn listen_from(s: &str) -> Result<Listen, &'static str> {
    if let Some(p) = s.strip_prefix("unix:") {
        if !p.starts_with('/') {
            return Err("a Unix socket path must be absolute, e.g. unix:/run/sessiond/http.sock");
        }
        return Ok(Listen::Unix(PathBuf::from(p)));
    }
    s.parse::<SocketAddr>()
        .map(Listen::Tcp)
        .map_err(|_| "expected host:port such as 127.0.0.1:8080, [::1]:8080, or unix:/path")
}

/// Why two listeners would share a socket (same path, same address, or the
/// same port with a wildcard address covering the other), or `None`. Port 0
/// picks a fresh port each time, so it never collides.
fn same_listener(a: &Listen, b: &Listen) -> Option<&'static str> {
    match (a, b) {
        (Listen::Unix(p), Listen::Unix(q)) if p == q => Some("is the same socket as"),
        (Listen::Tcp(x), Listen::Tcp(y)) if x.port() != 0 && x.port() == y.port() => {
            let (xi, yi) = (x.ip(), y.ip());
            // An IPv6 wildcard also takes IPv4 (sockets are dual-stack by default).
            let covers = |w: std::net::IpAddr, o: std::net::IpAddr| {
                w.is_unspecified() && (w.is_ipv4() == o.is_ipv4() || w.is_ipv6())
            };
            if xi == yi {
                Some("is the same address as")
            } else if covers(xi, yi) || covers(yi, xi) {
                Some("is on the same port, with a wildcard address covering the other, as")
            } else {
                None
            }
        }
        _ => None,
    }
}

/// Checks that `path` (the file named by `key`, written `shown`) is a
/// regular file this process may open; its contents are read later by the
/// module that uses them.
fn check_readable_file(key: &str, shown: &str, path: &Path, what: &str) -> Result<(), ConfigError> {
    let unreadable = |e: std::io::Error| {
        invalid(
            key,
            shown,
            format!(
                "cannot read {what} {} ({e}); check the path and that the user sessiond runs as may read it",
                path.display()
            ),
        )
    };
    // Look before opening: opening a FIFO would wait for a writer.
    if !std::fs::metadata(path).map_err(unreadable)?.is_file() {
        return Err(invalid(key, shown, format!("{} is not a regular file; point it at {what}", path.display())));
    }
    std::fs::File::open(path).map(drop).map_err(unreadable)
}

/// Reads a secret (such as `events.secret_file`) named by config key `key`.
///
/// Refuses a file that is not a regular file, that group or others may read
/// (`mode & 0o077 != 0`), that cannot be read, or that is empty; strips one
/// trailing newline. Errors name the key, the path and the fix, and never
/// the contents.
pub fn read_secret_file(key: &str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;

    let shown = path.display().to_string();
    let unreadable = |e: std::io::Error| {
        invalid(
            key,
            &shown,
            format!("cannot read it ({e}); check the path and that the user sessiond runs as may read the file"),
        )
    };
    // Check the mode of the file actually opened, not of whatever the path
    // names a moment later.
    let mut file = std::fs::File::open(path).map_err(unreadable)?;
    let meta = file.metadata().map_err(unreadable)?;
    if !meta.is_file() {
        return Err(invalid(key, &shown, "not a regular file; point it at the file that holds the secret"));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(invalid(
            key,
            &shown,
            format!("mode {mode:04o} lets group or others read the secret; run `chmod 600 {shown}`"),
        ));
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(unreadable)?;
    if bytes.ends_with(b"\n") {
        bytes.pop();
        if bytes.ends_with(b"\r") {
            bytes.pop();
        }
    }
    if bytes.is_empty() {
        return Err(invalid(
            key,
            &shown,
            format!(
                "the file is empty; write the secret into it, e.g. `head -c 32 /dev/urandom | base64 > {shown}` \
                 then `chmod 600 {shown}`"
            ),
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn load(toml: &str, pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, toml).unwrap();
        let o =
            Overrides { config: Some(p), pairs: pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect() };
        Config::load(&o)
    }

    #[test]
    fn defaults_match_the_documented_table() {
        let c = load("", &[]).unwrap();
        assert_eq!(c.listen, Listen::Tcp("127.0.0.1:8080".parse().unwrap()));
        let d = c.default_context();
        assert_eq!((d.max_sessions, d.max_values_per_session, d.max_name_size, d.max_value_size), (1000, 10, 64, 4096));
        assert_eq!((d.timeout, d.absolute_timeout, d.reap_interval, d.max_locks), (1800, 0, 600, 16));
        assert_eq!(
            (d.cookie_name.as_str(), d.url_param.as_str(), d.cookie_same_site),
            ("SESSIONID", "sessionid", cookie::SameSite::Lax)
        );
        assert_eq!(d.lock_timeout, secs(1.0));
        assert_eq!(c.shutdown_timeout, secs(10.0));
    }

    #[test]
    fn iplanet_aliases_and_init_args_are_accepted() {
        let c = load("MaxProcs = 3\n[sessions]\nmaxSessions = 20\ntimeOut = 300\n", &[]).unwrap();
        assert_eq!((c.max_procs, c.default_context().max_sessions, c.default_context().timeout), (3, 20, 300));
        let mut o = Overrides::default();
        o.add_init_args("maxSessions=50, reapInterval=150,maxLocks=5").unwrap();
        let pairs: Vec<(&str, &str)> = o.pairs.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let c = load("[sessions]\nmaxSessions = 20\n", &pairs).unwrap();
        let d = c.default_context();
        assert_eq!((d.max_sessions, d.reap_interval, d.max_locks), (50, 150, 5));
    }

    #[test]
    fn contexts_inherit_and_override() {
        let c = load("[sessions]\nmax_sessions = 100\n[[contexts]]\nname = \"admin\"\ntimeout = 60\n", &[]).unwrap();
        assert_eq!(c.contexts.len(), 2);
        assert_eq!(c.contexts[0].name, "default");
        assert_eq!((c.contexts[1].max_sessions, c.contexts[1].timeout), (100, 60));
    }

    #[test]
    fn errors_name_the_key_and_value() {
        let e = load("bogus_key = 1\n", &[]).unwrap_err().to_string();
        assert!(e.contains("bogus_key"), "{e}");
        let e = load("[sessions]\nmax_locks = 0\n", &[]).unwrap_err().to_string();
        assert!(e.contains("sessions.max_locks") && e.contains('0'), "{e}");
        let e = load("", &[("max_procs", "0")]).unwrap_err().to_string();
        assert!(e.contains("max_procs") && e.contains("between 1"), "{e}");
        let e = load("listen = \"nowhere\"\n", &[]).unwrap_err().to_string();
        assert!(e.contains("listen") && e.contains("nowhere"), "{e}");
        let e = load("[[contexts]]\nname = \"../x\"\n", &[]).unwrap_err().to_string();
        assert!(e.contains("../x"), "{e}");
        let e = load("[sessions]\ncookie_same_site = \"None\"\n", &[]).unwrap_err().to_string();
        assert!(e.contains("cookie_secure"), "{e}");
        let e = load("[sessions]\nmax_sessions = \"many\"\n", &[]).unwrap_err().to_string();
        assert!(e.contains("max_sessions"), "{e}");
    }

    #[test]
    fn dashed_keys_aliases_and_default_order_are_handled() {
        let c = load("lockTimeout = 2\n", &[]).unwrap_err().to_string();
        assert!(c.contains("lockTimeout"), "top-level lockTimeout is unknown: {c}");
        let c = load("[sessions]\nlockTimeout = 2\nmaxProcs = 1\n", &[]);
        assert!(c.is_err(), "maxProcs is not a sessions key");
        let c = load(
            "maxProcs = 3\n[sessions]\nlockTimeout = 2\n",
            &[("max-procs", "4"), ("lock-timeout", "3"), ("max-sessions", "70")],
        )
        .unwrap();
        assert_eq!(
            (c.max_procs, c.default_context().lock_timeout, c.default_context().max_sessions),
            (4, secs(3.0), 70)
        );
        let c = load("[[contexts]]\nname = \"admin\"\n[[contexts]]\nname = \"default\"\ntimeout = 5\n", &[]).unwrap();
        assert_eq!((c.contexts[0].name.as_str(), c.contexts[0].timeout), ("default", 5));
        let printed = c.to_toml();
        assert!(printed.contains("listen = \"127.0.0.1:8080\""), "{printed}");
    }

    #[test]
    fn command_line_wins_over_file() {
        let c = load(
            "listen = \"127.0.0.1:1\"\n[sessions]\nmaxSessions = 20\n",
            &[("listen", "unix:/tmp/s.sock"), ("max_sessions", "30")],
        )
        .unwrap();
        assert_eq!(c.listen, Listen::Unix("/tmp/s.sock".into()));
        assert_eq!(c.default_context().max_sessions, 30);
    }

    #[test]
    fn a_default_max_locks_adapts_to_a_small_max_sessions() {
        let mut o = Overrides::default();
        o.add_init_args("maxSessions=3").unwrap();
        let pairs: Vec<(&str, &str)> = o.pairs.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let c = load("[[contexts]]\nname = \"admin\"\nmax_sessions = 200\n", &pairs).unwrap();
        assert_eq!((c.default_context().max_sessions, c.default_context().max_locks), (3, 3));
        assert_eq!(c.contexts[1].max_locks, 16, "a context with room keeps the default");
        assert_eq!(
            c.notes,
            ["context default: max_locks defaults to 16 but max_sessions = 3; using max_locks = 3"],
            "one note, for the context that adapted"
        );
        assert!(c.to_toml().starts_with("# note: context default: max_locks defaults to 16"), "{}", c.to_toml());
        assert!(load("", &[]).unwrap().notes.is_empty());
    }

    #[test]
    fn an_explicit_max_locks_above_max_sessions_is_an_error_naming_both() {
        let e = load("[sessions]\nmax_sessions = 3\nmax_locks = 16\n", &[]).unwrap_err().to_string();
        assert!(e.contains("`sessions.max_locks`: 16") && e.contains("`sessions.max_sessions` = 3"), "{e}");
        let e = load("[sessions]\nmaxLocks = 8\n[[contexts]]\nname = \"admin\"\nmax_sessions = 4\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("`sessions.maxLocks`: 8") && e.contains("`contexts[admin].max_sessions` = 4"), "{e}");
        let e = load("", &[("max_sessions", "3"), ("max_locks", "5")]).unwrap_err().to_string();
        assert!(e.contains("`sessions.max_locks`: 5") && e.contains("max_sessions` = 3"), "{e}");
    }

    #[test]
    fn wrong_types_unknown_keys_and_duplicate_spellings_name_the_key() {
        let e = load("[sessions]\ntimeout = 1.5\n", &[]).unwrap_err().to_string();
        assert!(e.contains("`sessions.timeout`: 1.5") && e.contains("whole number"), "{e}");
        let e = load("reuse_port = \"yes\"\n", &[]).unwrap_err().to_string();
        assert!(e.contains("`reuse_port`: \"yes\"") && e.contains("true or false"), "{e}");
        let e = load("", &[("max_procs", "four")]).unwrap_err().to_string();
        assert!(e.contains("`max_procs`: four") && e.contains("whole number"), "{e}");
        let e = load("[sessions]\nmaxSessions = 5\nmax_sessions = 6\n", &[]).unwrap_err().to_string();
        assert!(
            e.contains("`sessions.max_sessions`") && e.contains("maxSessions") && e.contains("one spelling"),
            "{e}"
        );
        let e = load("[sessions]\nbogus = 1\n", &[]).unwrap_err().to_string();
        assert!(e.contains("`sessions.bogus`") && e.contains("max_sessions, "), "lists the accepted keys: {e}");
        let e = load("", &[("bogus", "1")]).unwrap_err().to_string();
        assert!(e.contains("command line") && e.contains("`bogus`"), "{e}");
        let e = load("sessions = 5\n", &[]).unwrap_err().to_string();
        assert!(e.contains("`sessions`") && e.contains("[sessions]"), "{e}");
        let e = load("[contexts]\nname = \"x\"\n", &[]).unwrap_err().to_string();
        assert!(e.contains("[[contexts]]"), "{e}");
        let e = load("[[contexts]]\ntimeout = 5\n", &[]).unwrap_err().to_string();
        assert!(e.contains("contexts[0].name") && e.contains("needs a name"), "{e}");
    }

    #[test]
    fn command_line_keys_route_by_the_table() {
        let c = load("", &[("max-sessions", "70"), ("events.max-batch", "7"), ("sessions.timeOut", "9")]).unwrap();
        assert_eq!((c.default_context().max_sessions, c.default_context().timeout, c.events.max_batch), (70, 9, 7));
        let e = load("", &[("max_batch", "7")]).unwrap_err().to_string();
        assert!(e.contains("`events.max_batch`"), "a bare [events] key says how to write it: {e}");
        let e = load("", &[("contexts.admin.timeout", "7")]).unwrap_err().to_string();
        assert!(e.contains("only in the config file"), "{e}");
        let e = load("", &[("nope.timeout", "7")]).unwrap_err().to_string();
        assert!(e.contains("no [nope] table"), "{e}");
        let e = load("[sessions]\nmax_procs = 2\n", &[]).unwrap_err().to_string();
        assert!(e.contains("top-level key"), "{e}");
        let c = load("", &[("user", "1000"), ("cookie_name", "123")]).unwrap();
        assert_eq!((c.user.as_deref(), c.default_context().cookie_name.as_str()), (Some("1000"), "123"));
    }

    fn secret(dir: &Path, name: &str, contents: &[u8], mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join(name);
        std::fs::write(&p, contents).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn events_table_defaults_and_values() {
        let e = load("", &[]).unwrap().events;
        assert_eq!(
            e,
            EventsConfig {
                url: None,
                secret_file: None,
                timeout: secs(5.0),
                max_attempts: 10,
                max_batch: 100,
                queue_size: 4096,
                include_touched: false
            }
        );
        let dir = tempfile::tempdir().unwrap();
        let s = secret(dir.path(), "key", b"k3y\n", 0o600);
        let toml = format!(
            "[events]\nurl = \"https://hooks.example.com/s\"\nsecret_file = {:?}\ntimeout = 0.5\n\
             max_attempts = 3\nmax_batch = 1000\nqueue_size = 16\ninclude_touched = true\n",
            s.display().to_string()
        );
        let c = load(&toml, &[]).unwrap();
        assert_eq!(c.events.url.as_deref(), Some("https://hooks.example.com/s"));
        assert_eq!(c.events.secret_file.as_deref(), Some(s.as_path()));
        assert_eq!((c.events.timeout, c.events.max_attempts, c.events.max_batch), (secs(0.5), 3, 1000));
        assert_eq!((c.events.queue_size, c.events.include_touched), (16, true));
        assert!(c.to_toml().contains("[events]"), "{}", c.to_toml());
        let c = load(&toml, &[("events.url", "")]).unwrap();
        assert_eq!(c.events.url, None, "an empty url on the command line turns the webhook off");
        let e = load("[events]\nqueue_size = 8\n", &[]).unwrap_err().to_string();
        assert!(e.contains("`events.queue_size`: 8") && e.contains("between 16 and 1048576"), "{e}");
        let e = load("[events]\ntimeout = 61\n", &[]).unwrap_err().to_string();
        assert!(e.contains("`events.timeout`: 61"), "{e}");
        let e = load("[events]\nmax_attempts = 0\n", &[]).unwrap_err().to_string();
        assert!(e.contains("`events.max_attempts`: 0"), "{e}");
        let e = load("[events]\nmax_batch = 1001\n", &[]).unwrap_err().to_string();
        assert!(e.contains("`events.max_batch`: 1001"), "{e}");
        let e = load("[events]\nbogus = 1\n", &[]).unwrap_err().to_string();
        assert!(e.contains("`events.bogus`") && e.contains("include_touched"), "{e}");
    }

    #[test]
    fn events_url_must_be_http_with_a_host_and_needs_a_secret_file() {
        let e = load("[events]\nurl = \"ftp://example.com/\"\n", &[]).unwrap_err().to_string();
        assert!(e.contains("`events.url`: \"ftp://example.com/\"") && e.contains("http://"), "{e}");
        let e = load("[events]\nurl = \"https://\"\n", &[]).unwrap_err().to_string();
        assert!(e.contains("`events.url`"), "{e}");
        let e = load("[events]\nurl = \"https://hooks.example.com/\"\n", &[]).unwrap_err().to_string();
        assert!(e.contains("`events.secret_file`: (missing)") && e.contains("chmod 600"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let s = secret(dir.path(), "open", b"hunter2\n", 0o644);
        let toml = format!("[events]\nurl = \"https://h.example/\"\nsecret_file = {:?}\n", s.display().to_string());
        let e = load(&toml, &[]).unwrap_err().to_string();
        assert!(e.contains("events.secret_file") && e.contains("chmod 600"), "loading checks the file: {e}");
        let c = load(&format!("[events]\nsecret_file = {:?}\n", s.display().to_string()), &[]).unwrap();
        assert!(c.notes.iter().any(|n| n.contains("webhook is off")), "{:?}", c.notes);
    }

    #[test]
    fn secret_file_errors_name_key_path_and_fix_but_never_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ok = secret(d, "ok", b"s3cr3t-value\n", 0o600);
        assert_eq!(read_secret_file("events.secret_file", &ok).unwrap(), b"s3cr3t-value");
        let crlf = secret(d, "crlf", b"s3cr3t-value\r\n", 0o400);
        assert_eq!(read_secret_file("events.secret_file", &crlf).unwrap(), b"s3cr3t-value");
        let two = secret(d, "two", b"s3cr3t-value\n\n", 0o600);
        assert_eq!(read_secret_file("events.secret_file", &two).unwrap(), b"s3cr3t-value\n", "one newline only");

        let shown = |p: &Path| p.display().to_string();
        for (mode, octal) in [(0o640, "0640"), (0o604, "0604"), (0o644, "0644")] {
            let p = secret(d, "open", b"s3cr3t-value\n", mode);
            let e = read_secret_file("events.secret_file", &p).unwrap_err().to_string();
            assert!(e.contains("`events.secret_file`") && e.contains(&shown(&p)), "{e}");
            assert!(e.contains(octal) && e.contains(&format!("chmod 600 {}", shown(&p))), "{e}");
            assert!(!e.contains("s3cr3t"), "never the contents: {e}");
        }
        for contents in [&b""[..], b"\n"] {
            let p = secret(d, "empty", contents, 0o600);
            let e = read_secret_file("events.secret_file", &p).unwrap_err().to_string();
            assert!(e.contains("`events.secret_file`") && e.contains(&shown(&p)) && e.contains("empty"), "{e}");
        }
        let missing = d.join("missing");
        let e = read_secret_file("events.secret_file", &missing).unwrap_err().to_string();
        assert!(e.contains("`events.secret_file`") && e.contains(&shown(&missing)) && e.contains("cannot read"), "{e}");
        let e = read_secret_file("events.secret_file", d).unwrap_err().to_string();
        assert!(e.contains("`events.secret_file`") && e.contains("not a regular file"), "{e}");
    }

    /// Files a gateway configuration points at: a 0600 secret of 32 bytes,
    /// an htpasswd file and a login template.
    struct Gw {
        dir: tempfile::TempDir,
        secret: PathBuf,
        users: PathBuf,
    }

    const APP: &str = "[[gateway.upstreams]]\nname = \"app\"\nurl = \"http://127.0.0.1:9000\"\n";

    impl Gw {
        fn new() -> Gw {
            let dir = tempfile::tempdir().unwrap();
            let secret = secret(dir.path(), "gateway.secret", b"0123456789abcdef0123456789abcdef", 0o600);
            let users = dir.path().join("users");
            std::fs::write(&users, "alice:$2y$05$c4WoMPo3SXsafkva.HHa6uXQZWr7oboPiC2bT/r7q1BB8I2s0BRqC\n").unwrap();
            Gw { dir, secret, users }
        }

        fn path(&self, name: &str) -> String {
            self.dir.path().join(name).display().to_string()
        }

        /// A valid `[gateway]` table with `changes` applied (`Some` sets a
        /// key to a TOML value, `None` removes it), then `rest` (upstreams,
        /// filters, other tables).
        fn toml(&self, changes: &[(&str, Option<&str>)], rest: &str) -> String {
            let mut keys: Vec<(String, String)> = vec![
                ("listen".into(), "\"0.0.0.0:8443\"".into()),
                ("verifier".into(), format!("\"htpasswd:{}\"", self.users.display())),
                ("secret_file".into(), format!("{:?}", self.secret.display().to_string())),
            ];
            for (k, v) in changes {
                keys.retain(|(name, _)| name != k);
                if let Some(v) = v {
                    keys.push((k.to_string(), v.to_string()));
                }
            }
            let body: String = keys.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
            format!("[gateway]\n{body}{rest}")
        }

        fn err(&self, changes: &[(&str, Option<&str>)], rest: &str) -> String {
            match load(&self.toml(changes, rest), &[]) {
                Ok(c) => panic!("expected an error, got {:?}", c.gateway),
                Err(e) => e.to_string(),
            }
        }
    }

    #[test]
    fn a_full_gateway_table_is_read_into_gateway_config() {
        let f = Gw::new();
        let template = f.dir.path().join("login.html");
        std::fs::write(&template, "<form></form>").unwrap();
        let toml = format!(
            "[[contexts]]\nname = \"web\"\n{}",
            f.toml(
                &[
                    ("context", Some("\"web\"")),
                    (
                        "session_manager",
                        Some("[\"http://sm1.example.internal:9000/sessions\", \"https://sm2.example.internal/s\"]"),
                    ),
                    ("session_manager_timeout", Some("0.5")),
                    ("login_template", Some(&format!("{:?}", template.display().to_string()))),
                    ("trusted_proxies", Some("[\"10.0.0.0/8\", \"192.0.2.7\", \"2001:db8::/32\", \"::1\"]")),
                    ("upstream_timeout", Some("12")),
                    ("login_max_failures", Some("3")),
                    ("login_window", Some("60.5")),
                    ("allow_encoded_percent", Some("true")),
                ],
                "[[gateway.upstreams]]\nname = \"app\"\nurl = \"http://127.0.0.1:9000\"\nprefix = \"/\"\n\
                 [[gateway.upstreams]]\nname = \"api\"\nurl = \"https://api.internal:8443/base\"\nprefix = \"/api/\"\n\
                 [gateway.filters]\ncategories = [\"public\", \"_alice\"]\nadapter_ids = [\"app\"]\n\
                 identities = [\"/public/index.html\"]\naccept_user = \"underscore\"\n",
            )
        );
        let c = load(&toml, &[]).unwrap();
        let net = |s: &str| s.parse::<ipnet::IpNet>().unwrap();
        assert_eq!(
            c.gateway,
            Some(GatewayConfig {
                listen: Listen::Tcp("0.0.0.0:8443".parse().unwrap()),
                context: "web".into(),
                verifier: f.users.clone(),
                session_manager: vec![
                    "http://sm1.example.internal:9000/sessions".into(),
                    "https://sm2.example.internal/s".into()
                ],
                session_manager_timeout: secs(0.5),
                secret_file: f.secret.clone(),
                login_template: Some(template),
                trusted_proxies: vec![net("10.0.0.0/8"), net("192.0.2.7/32"), net("2001:db8::/32"), net("::1/128")],
                upstream_timeout: secs(12.0),
                login_max_failures: 3,
                login_window: secs(60.5),
                allow_encoded_percent: true,
                upstreams: vec![
                    UpstreamConfig { name: "app".into(), url: "http://127.0.0.1:9000".into(), prefix: "/".into() },
                    UpstreamConfig {
                        name: "api".into(),
                        url: "https://api.internal:8443/base".into(),
                        prefix: "/api".into()
                    },
                ],
                filters: FiltersConfig {
                    categories: vec!["public".into(), "_alice".into()],
                    adapter_ids: vec!["app".into()],
                    identities: vec!["/public/index.html".into()],
                    accept_user: AcceptUser::Underscore,
                },
            })
        );
        assert!(c.notes.is_empty(), "{:?}", c.notes);
        let printed = c.to_toml();
        for want in ["[gateway]", "[[gateway.upstreams]]", "[gateway.filters]", "\"192.0.2.7/32\"", "\"underscore\""] {
            assert!(printed.contains(want), "--check-config shows {want}: {printed}");
        }
        assert!(printed.contains(&format!("verifier = \"htpasswd:{}\"", f.users.display())), "{printed}");
        let again = load(&printed, &[]).unwrap();
        assert_eq!(again.gateway, c.gateway, "what --check-config prints loads back to the same gateway");
        assert!(!printed.contains("0123456789abcdef"), "never the secret: {printed}");
        assert!(load("", &[]).unwrap().gateway.is_none(), "no [gateway] table, no gateway");
    }

    #[test]
    fn a_minimal_gateway_table_takes_the_documented_defaults() {
        let f = Gw::new();
        let g = load(&f.toml(&[], APP), &[]).unwrap().gateway.unwrap();
        assert_eq!((g.context.as_str(), g.session_manager.len(), g.session_manager_timeout), ("default", 0, secs(2.0)));
        assert_eq!((g.upstream_timeout, g.login_max_failures, g.login_window), (secs(30.0), 5, secs(300.0)));
        assert_eq!((g.login_template, g.trusted_proxies.len()), (None, 0));
        assert!(!g.allow_encoded_percent, "multiple encoding is refused unless the key says otherwise");
        assert_eq!(g.upstreams[0].prefix, "/", "prefix defaults to /");
        assert_eq!(g.filters, FiltersConfig::default());
        assert_eq!(g.filters.accept_user, AcceptUser::None);
    }

    #[test]
    fn gateway_scalars_are_settable_on_the_command_line_and_arrays_are_not() {
        let f = Gw::new();
        let toml = f.toml(&[], APP);
        let c = load(
            &toml,
            &[
                ("gateway.listen", "unix:/run/sessiond/public.sock"),
                ("gateway.upstream-timeout", "5"),
                ("gateway.filters.accept_user", "category"),
            ],
        )
        .unwrap();
        let g = c.gateway.unwrap();
        assert_eq!(g.listen, Listen::Unix("/run/sessiond/public.sock".into()));
        assert_eq!((g.upstream_timeout, g.filters.accept_user), (secs(5.0), AcceptUser::Category));
        let e = load(&toml, &[("gateway.trusted_proxies", "10.0.0.0/8")]).unwrap_err().to_string();
        assert!(e.contains("`gateway.trusted_proxies`: 10.0.0.0/8") && e.contains("only in the config file"), "{e}");
        let e = load(&toml, &[("gateway.filters.categories", "a")]).unwrap_err().to_string();
        assert!(e.contains("`gateway.filters.categories`") && e.contains("[gateway.filters]"), "{e}");
        let e = load(&toml, &[("gateway.upstreams[0].url", "http://h")]).unwrap_err().to_string();
        assert!(e.contains("`gateway.upstreams[0].url`") && e.contains("only in the config file"), "{e}");
        let e = load(&toml, &[("gateway.listen", "nowhere")]).unwrap_err().to_string();
        assert!(e.contains("`gateway.listen`: nowhere"), "{e}");
        let e = load(&toml, &[("gateway.bogus", "1")]).unwrap_err().to_string();
        assert!(e.contains("`gateway.bogus`") && e.contains("[gateway]") && e.contains("upstream_timeout"), "{e}");
        let e = load("", &[("gateway.listen", "0.0.0.0:8443")]).unwrap_err().to_string();
        assert!(e.contains("`gateway.verifier`: (missing)"), "setting a gateway key turns the gateway on: {e}");
        let e = load("", &[("verifier", "htpasswd:/x")]).unwrap_err().to_string();
        assert!(e.contains("`gateway.verifier`"), "a bare gateway key says how to write it: {e}");
    }

    #[test]
    fn gateway_listen_is_required_valid_and_apart_from_listen() {
        let f = Gw::new();
        let e = f.err(&[("listen", None)], APP);
        assert!(e.contains("`gateway.listen`: (missing)") && e.contains("0.0.0.0:8443"), "{e}");
        let e = f.err(&[("listen", Some("\"nowhere\""))], APP);
        assert!(e.contains("`gateway.listen`: \"nowhere\"") && e.contains("host:port"), "{e}");
        let e = f.err(&[("listen", Some("\"127.0.0.1:8080\""))], APP);
        assert!(e.contains("`gateway.listen`: \"127.0.0.1:8080\"") && e.contains("top-level `listen`"), "{e}");
        let e = f.err(&[("listen", Some("\"[::]:8080\""))], APP);
        assert!(e.contains("`gateway.listen`: \"[::]:8080\"") && e.contains("wildcard"), "{e}");
        let e = load(
            &format!("listen = \"unix:/tmp/s.sock\"\n{}", f.toml(&[("listen", Some("\"unix:/tmp/s.sock\""))], APP)),
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("`gateway.listen`: \"unix:/tmp/s.sock\"") && e.contains("same socket"), "{e}");
        let both_zero = format!("listen = \"127.0.0.1:0\"\n{}", f.toml(&[("listen", Some("\"127.0.0.1:0\""))], APP));
        assert!(load(&both_zero, &[]).is_ok(), "port 0 picks a fresh port each time");
        assert!(load(&f.toml(&[("listen", Some("\"127.0.0.2:8080\""))], APP), &[]).is_ok());
    }

    #[test]
    fn gateway_context_must_be_configured() {
        let f = Gw::new();
        let e = load(&format!("[[contexts]]\nname = \"web\"\n{}", f.toml(&[("context", Some("\"shop\""))], APP)), &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`gateway.context`: \"shop\"") && e.contains("configured contexts are: default, web"),
            "{e}"
        );
        let e = f.err(&[("context", Some("\"../x\""))], APP);
        assert!(e.contains("`gateway.context`: \"../x\""), "{e}");
    }

    #[test]
    fn gateway_verifier_is_an_existing_htpasswd_file() {
        let f = Gw::new();
        let e = f.err(&[("verifier", None)], APP);
        assert!(e.contains("`gateway.verifier`: (missing)") && e.contains("htpasswd:"), "{e}");
        let e = f.err(&[("verifier", Some("\"ldap://dir.example.com\""))], APP);
        assert!(e.contains("`gateway.verifier`: \"ldap://dir.example.com\"") && e.contains("scheme `ldap`"), "{e}");
        assert!(e.contains("only scheme is `htpasswd`"), "{e}");
        let e = f.err(&[("verifier", Some("\"/etc/sessiond/users\""))], APP);
        assert!(e.contains("`gateway.verifier`: \"/etc/sessiond/users\"") && e.contains("scheme"), "{e}");
        let e = f.err(&[("verifier", Some("\"htpasswd:\""))], APP);
        assert!(e.contains("`gateway.verifier`: \"htpasswd:\"") && e.contains("missing"), "{e}");
        let missing = f.path("nobody");
        let e = f.err(&[("verifier", Some(&format!("\"htpasswd:{missing}\"")))], APP);
        assert!(e.contains(&format!("`gateway.verifier`: \"htpasswd:{missing}\"")) && e.contains("cannot read"), "{e}");
        let dir = f.dir.path().display().to_string();
        let e = f.err(&[("verifier", Some(&format!("\"htpasswd:{dir}\"")))], APP);
        assert!(e.contains("`gateway.verifier`") && e.contains("not a regular file"), "{e}");
    }

    #[test]
    fn gateway_session_manager_is_a_short_array_of_http_urls() {
        let f = Gw::new();
        let e = f.err(&[("session_manager", Some("[\"http://sm.internal/s\", \"ftp://sm.internal/\"]"))], APP);
        assert!(e.contains("`gateway.session_manager[1]`: \"ftp://sm.internal/\"") && e.contains("http://"), "{e}");
        let e = f.err(&[("session_manager", Some("[\"\"]"))], APP);
        assert!(e.contains("`gateway.session_manager[0]`: \"\"") && e.contains("empty entry"), "{e}");
        let e = f.err(&[("session_manager", Some("\"http://sm.internal/s\""))], APP);
        assert!(e.contains("`gateway.session_manager`: \"http://sm.internal/s\""), "{e}");
        assert!(e.contains("session_manager = [\"http://sm.internal/s\"]"), "{e}");
        let e = f.err(&[("session_manager", Some("[5]"))], APP);
        assert!(e.contains("`gateway.session_manager[0]`: 5") && e.contains("quoted string"), "{e}");
        let nine = format!("[{}]", ["\"http://sm.internal/s\""; 9].join(", "));
        let e = f.err(&[("session_manager", Some(&nine))], APP);
        assert!(e.contains("`gateway.session_manager`: 9 entries") && e.contains("at most 8"), "{e}");
        for bad in ["0.05", "61"] {
            let e = f.err(&[("session_manager_timeout", Some(bad))], APP);
            assert!(
                e.contains(&format!("`gateway.session_manager_timeout`: {bad}")) && e.contains("0.1 and 60"),
                "{e}"
            );
        }
    }

    #[test]
    fn gateway_secret_file_is_private_and_long_enough() {
        let f = Gw::new();
        let e = f.err(&[("secret_file", None)], APP);
        assert!(e.contains("`gateway.secret_file`: (missing)"), "{e}");
        let open = secret(f.dir.path(), "open", b"0123456789abcdef0123456789abcdef", 0o644);
        let e = f.err(&[("secret_file", Some(&format!("{:?}", open.display().to_string())))], APP);
        assert!(e.contains(&format!("`gateway.secret_file`: {}", open.display())) && e.contains("chmod 600"), "{e}");
        let short = secret(f.dir.path(), "short", b"0123456789abcde\n", 0o600);
        let e = f.err(&[("secret_file", Some(&format!("{:?}", short.display().to_string())))], APP);
        assert!(e.contains(&format!("`gateway.secret_file`: {}", short.display())), "{e}");
        assert!(e.contains("15 bytes") && e.contains("at least 16") && !e.contains("0123"), "{e}");
        let empty = secret(f.dir.path(), "empty", b"", 0o600);
        let e = f.err(&[("secret_file", Some(&format!("{:?}", empty.display().to_string())))], APP);
        assert!(e.contains("`gateway.secret_file`") && e.contains("empty"), "{e}");
        let sixteen = secret(f.dir.path(), "sixteen", b"0123456789abcdef\n", 0o400);
        let ok = f.toml(&[("secret_file", Some(&format!("{:?}", sixteen.display().to_string())))], APP);
        assert!(load(&ok, &[]).is_ok(), "16 bytes after the newline is enough");
    }

    #[test]
    fn gateway_login_template_must_exist() {
        let f = Gw::new();
        let missing = f.path("login.html");
        let e = f.err(&[("login_template", Some(&format!("{missing:?}")))], APP);
        assert!(e.contains(&format!("`gateway.login_template`: {missing:?}")) && e.contains("cannot read"), "{e}");
        let e = f.err(&[("login_template", Some("\"\""))], APP);
        assert!(e.contains("`gateway.login_template`: \"\""), "{e}");
    }

    #[test]
    fn gateway_trusted_proxies_are_addresses_or_cidr_blocks() {
        let f = Gw::new();
        let e = f.err(&[("trusted_proxies", Some("[\"10.0.0.0/8\", \"10.0.0.0/33\"]"))], APP);
        assert!(e.contains("`gateway.trusted_proxies[1]`: \"10.0.0.0/33\"") && e.contains("CIDR"), "{e}");
        let e = f.err(&[("trusted_proxies", Some("[\"proxy.internal\"]"))], APP);
        assert!(e.contains("`gateway.trusted_proxies[0]`: \"proxy.internal\""), "{e}");
    }

    #[test]
    fn gateway_numbers_are_within_their_limits() {
        let f = Gw::new();
        for (key, bad, limits) in [
            ("upstream_timeout", "0", "0.1 and 3600"),
            ("upstream_timeout", "3601", "0.1 and 3600"),
            ("login_max_failures", "0", "1 and 1000"),
            ("login_max_failures", "1001", "1 and 1000"),
            ("login_max_failures", "2.5", "whole number"),
            ("login_window", "0.5", "1 and 86400"),
            ("login_window", "86401", "1 and 86400"),
        ] {
            let e = f.err(&[(key, Some(bad))], APP);
            assert!(e.contains(&format!("`gateway.{key}`: {bad}")) && e.contains(limits), "{e}");
        }
    }

    #[test]
    fn gateway_upstreams_are_required_named_and_unique() {
        let f = Gw::new();
        let e = f.err(&[], "");
        assert!(e.contains("`gateway.upstreams`: (none)") && e.contains("[[gateway.upstreams]]"), "{e}");
        let e = f.err(&[], "[gateway.upstreams]\nname = \"app\"\n");
        assert!(e.contains("`gateway.upstreams`") && e.contains("[[gateway.upstreams]] entry"), "{e}");
        let e = f.err(&[], "[[gateway.upstreams]]\nurl = \"http://127.0.0.1:9000\"\n");
        assert!(e.contains("`gateway.upstreams[0].name`: (missing)"), "{e}");
        let e = f.err(&[], "[[gateway.upstreams]]\nname = \"my app\"\nurl = \"http://127.0.0.1:9000\"\n");
        assert!(e.contains("`gateway.upstreams[0].name`: \"my app\"") && e.contains("letters, digits"), "{e}");
        let e =
            f.err(&[], &format!("{APP}[[gateway.upstreams]]\nname = \"app\"\nurl = \"http://h\"\nprefix = \"/b\"\n"));
        assert!(e.contains("`gateway.upstreams[1].name`: \"app\"") && e.contains("gateway.upstreams[0]"), "{e}");
        let e = f.err(&[], "[[gateway.upstreams]]\nname = \"app\"\n");
        assert!(e.contains("`gateway.upstreams[0].url`: (missing)"), "{e}");
        let e = f.err(&[], &format!("{APP}bogus = 1\n"));
        assert!(e.contains("`gateway.upstreams[0].bogus`") && e.contains("[[gateway.upstreams]]"), "{e}");
        assert!(e.contains("name, url, prefix"), "{e}");
    }

    #[test]
    fn gateway_upstream_urls_have_no_user_info_query_or_fragment() {
        let f = Gw::new();
        for (url, why) in [
            ("ftp://127.0.0.1:9000", "http://"),
            ("127.0.0.1:9000", "http://"),
            ("http://", "host"),
            ("http://u:pw@127.0.0.1:9000", "user"),
            ("http://127.0.0.1:9000/?a=b", "query"),
            ("http://127.0.0.1:9000/#top", "fragment"),
            ("http://bad host/", "valid URL"),
        ] {
            let e = f.err(&[], &format!("[[gateway.upstreams]]\nname = \"app\"\nurl = {url:?}\n"));
            assert!(e.contains(&format!("`gateway.upstreams[0].url`: {url:?}")) && e.contains(why), "{url}: {e}");
        }
        let ok = "[[gateway.upstreams]]\nname = \"app\"\nurl = \"https://[::1]:9443/base/path\"\n";
        assert_eq!(
            load(&f.toml(&[], ok), &[]).unwrap().gateway.unwrap().upstreams[0].url,
            "https://[::1]:9443/base/path"
        );
    }

    #[test]
    fn gateway_upstream_prefixes_are_normalised_paths_and_unique() {
        let f = Gw::new();
        // TOML's own quoting (`\u0001`), not Rust's (`\u{1}`).
        let up = |prefix: &str| format!("{APP}prefix = {}\n", toml::Value::String(prefix.into()));
        for (prefix, why) in [
            ("app", "start with '/'"),
            ("", "start with '/'"),
            ("/a//b", "'//'"),
            ("/a/../b", "'..'"),
            ("/a/./b", "'.'"),
            ("/..", "'..'"),
            ("/a;b", "';'"),
            ("/a?b", "'?'"),
            ("/a#b", "'#'"),
            ("/a%2e", "'%'"),
            ("/a\\b", "'\\\\'"),
            ("/a\u{1}b", "control"),
        ] {
            let e = f.err(&[], &up(prefix));
            assert!(
                e.contains(&format!("`gateway.upstreams[0].prefix`: {prefix:?}")) && e.contains(why),
                "{prefix}: {e}"
            );
        }
        let g = load(&f.toml(&[], &up("/app/")), &[]).unwrap().gateway.unwrap();
        assert_eq!(g.upstreams[0].prefix, "/app", "a trailing / is dropped");
        let two =
            format!("{}[[gateway.upstreams]]\nname = \"api\"\nurl = \"http://h\"\nprefix = \"/app/\"\n", up("/app"));
        let e = f.err(&[], &two);
        assert!(
            e.contains("`gateway.upstreams[1].prefix`: \"/app/\"") && e.contains("gateway.upstreams[0] (app)"),
            "{e}"
        );
        let e = f.err(&[], &format!("{APP}[[gateway.upstreams]]\nname = \"api\"\nurl = \"http://h\"\n"));
        assert!(e.contains("`gateway.upstreams[1].prefix`: \"/\""), "both default to /: {e}");
    }

    #[test]
    fn gateway_filters_are_bounded_sets_of_clean_strings() {
        let f = Gw::new();
        let filters = |body: &str| format!("{APP}[gateway.filters]\n{body}\n");
        for key in ["categories", "adapter_ids", "identities"] {
            let e = f.err(&[], &filters(&format!("{key} = [\"ok\", \"\"]")));
            assert!(e.contains(&format!("`gateway.filters.{key}[1]`: \"\"")) && e.contains("empty"), "{e}");
            let e = f.err(&[], &filters(&format!("{key} = [\"a\\u0007b\"]")));
            assert!(e.contains(&format!("`gateway.filters.{key}[0]`: \"a\\u{{7}}b\"")) && e.contains("control"), "{e}");
            let long = "x".repeat(1025);
            let e = f.err(&[], &filters(&format!("{key} = [\"{long}\"]")));
            assert!(e.contains(&format!("`gateway.filters.{key}[0]`")) && e.contains("1025 bytes"), "{e}");
            let many = format!("[{}]", vec!["\"a\""; 1025].join(","));
            let e = f.err(&[], &filters(&format!("{key} = {many}")));
            assert!(e.contains(&format!("`gateway.filters.{key}`: 1025 entries")) && e.contains("at most 1024"), "{e}");
        }
        let long = "x".repeat(1024);
        let many = format!("[{}]", vec![format!("\"{long}\""); 1024].join(","));
        let g = load(&f.toml(&[], &filters(&format!("identities = {many}"))), &[]).unwrap().gateway.unwrap();
        assert_eq!(g.filters.identities.len(), 1024, "the limits are inclusive");
        let e = f.err(&[], &filters("accept_user = \"yes\""));
        assert!(
            e.contains("`gateway.filters.accept_user`: \"yes\"") && e.contains("none, category, underscore"),
            "{e}"
        );
        let e = f.err(&[], &filters("bogus = []"));
        assert!(e.contains("`gateway.filters.bogus`") && e.contains("[gateway.filters]"), "{e}");
        assert!(e.contains("categories, adapter_ids, identities, accept_user"), "{e}");
        let e = f.err(&[], &filters("listen = \"x\""));
        assert!(e.contains("`gateway.filters.listen`") && e.contains("gateway.listen"), "points at [gateway]: {e}");
    }

    #[test]
    fn an_adapter_id_naming_no_upstream_is_a_note_not_an_error() {
        let f = Gw::new();
        let c = load(&f.toml(&[], &format!("{APP}[gateway.filters]\nadapter_ids = [\"app\", \"billing\"]\n")), &[])
            .unwrap();
        assert_eq!(c.gateway.unwrap().filters.adapter_ids, ["app", "billing"]);
        assert_eq!(c.notes.len(), 1, "{:?}", c.notes);
        assert!(
            c.notes[0].contains("gateway.filters.adapter_ids") && c.notes[0].contains("\"billing\""),
            "{:?}",
            c.notes
        );
        assert!(c.notes[0].contains("the upstreams are: app"), "{:?}", c.notes);
    }

    #[test]
    fn unknown_gateway_keys_name_the_key_and_the_table() {
        let f = Gw::new();
        let e = f.err(&[("timeout", Some("5"))], APP);
        assert!(e.contains("`gateway.timeout`") && e.contains("keys accepted in [gateway]"), "{e}");
        assert!(!e.contains("[events]"), "inside [gateway], never points at [events]: {e}");
        let e = f.err(&[("prefix", Some("\"/\""))], APP);
        assert!(e.contains("`gateway.prefix`") && e.contains("[[gateway.upstreams]]"), "{e}");
        let e = f.err(&[("api_token_file", Some("\"/x\""))], APP);
        assert!(e.contains("`gateway.api_token_file`") && e.contains("top-level key"), "{e}");
        let e = load("gateway = 5\n", &[]).unwrap_err().to_string();
        assert!(e.contains("`gateway`") && e.contains("[gateway]"), "{e}");
        let e = f.err(&[("filters", Some("5"))], APP);
        assert!(e.contains("`gateway.filters`") && e.contains("[gateway.filters]"), "{e}");
    }

    #[test]
    fn api_token_file_is_a_private_printable_secret() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let token = |p: &Path| format!("api_token_file = {:?}\n", p.display().to_string());
        let ok = secret(d, "token", b"dG9rZW4tdG9rZW4tdG9rZW4=\n", 0o600);
        assert_eq!(load(&token(&ok), &[]).unwrap().api_token_file.as_deref(), Some(ok.as_path()));
        assert!(load(&token(&ok), &[]).unwrap().to_toml().contains("api_token_file = "));
        assert_eq!(load("", &[]).unwrap().api_token_file, None);
        let shown = ok.display().to_string();
        assert_eq!(load("", &[("api-token-file", &shown)]).unwrap().api_token_file, Some(ok.clone()));
        let open = secret(d, "open", b"dG9rZW4=\n", 0o640);
        let e = load(&token(&open), &[]).unwrap_err().to_string();
        assert!(e.contains(&format!("`api_token_file`: {}", open.display())) && e.contains("chmod 600"), "{e}");
        let empty = secret(d, "empty", b"\n", 0o600);
        let e = load(&token(&empty), &[]).unwrap_err().to_string();
        assert!(e.contains(&format!("`api_token_file`: {}", empty.display())) && e.contains("empty"), "{e}");
        let binary = secret(d, "binary", b"to ken\x01\xff", 0o600);
        let e = load(&token(&binary), &[]).unwrap_err().to_string();
        assert!(e.contains(&format!("`api_token_file`: {}", binary.display())) && e.contains("printable ASCII"), "{e}");
        assert!(!e.contains("to ken"), "never the token: {e}");
        let missing = d.join("missing");
        let e = load(&token(&missing), &[]).unwrap_err().to_string();
        assert!(e.contains(&format!("`api_token_file`: {}", missing.display())) && e.contains("cannot read"), "{e}");
        let e = load("api_token_file = \"\"\n", &[]).unwrap_err().to_string();
        assert!(e.contains("`api_token_file`: \"\""), "{e}");
    }

    /// A value of `k`'s type that passes its rule (the default when it has one).
    fn sample(k: &KeyDef) -> toml::Value {
        use keys::{Kind, Rule};
        let text = |rule| match rule {
            Rule::Token => "abc",
            Rule::Listen => "127.0.0.1:9",
            Rule::CookiePath | Rule::UrlPrefix => "/",
            Rule::Path => "/tmp/x",
            Rule::HttpUrl => "http://h/",
            Rule::Verifier => "htpasswd:/tmp/x",
            Rule::UpstreamUrl => "http://h",
            Rule::IpNet => "10.0.0.0/8",
            Rule::FilterItem => "a",
            Rule::StoreUrl => "redis://h:6379/0",
            Rule::Any => "u",
        };
        match (k.default_toml(), k.kind) {
            (_, Kind::List { rule, .. }) => toml::Value::Array(vec![toml::Value::String(text(rule).into())]),
            (None, Kind::Text { rule, .. }) => toml::Value::String(text(rule).into()),
            (None, Kind::Int { min, .. }) => toml::Value::Integer(min as i64),
            (Some(d), _) => toml::from_str::<toml::Table>(&format!("v = {d}")).unwrap().remove("v").unwrap(),
            (None, _) => unreachable!("{} has no default", k.qualified()),
        }
    }

    /// The table of `scope` in `t` (created), where `sample` keys go.
    fn table_of(t: &mut toml::Table, scope: Scope) -> &mut toml::Table {
        fn sub<'a>(t: &'a mut toml::Table, name: &str) -> &'a mut toml::Table {
            t.entry(name).or_insert_with(|| toml::Value::Table(toml::Table::new())).as_table_mut().unwrap()
        }
        fn first<'a>(t: &'a mut toml::Table, name: &str) -> &'a mut toml::Table {
            let a = t.entry(name).or_insert_with(|| toml::Value::Array(vec![toml::Value::Table(toml::Table::new())]));
            a.as_array_mut().unwrap()[0].as_table_mut().unwrap()
        }
        match scope {
            Scope::Server => t,
            Scope::Sessions => sub(t, "sessions"),
            Scope::Context => first(t, "contexts"),
            Scope::Events => sub(t, "events"),
            Scope::Gateway => sub(t, "gateway"),
            Scope::Upstream => first(sub(t, "gateway"), "upstreams"),
            Scope::Filters => sub(sub(t, "gateway"), "filters"),
            Scope::Cluster => sub(t, "cluster"),
        }
    }

    /// `t` plus the keys that have no default, then deserialised (no
    /// cross-key rules, no files read).
    fn deserialize(mut t: toml::Table) -> Result<Config, ConfigError> {
        for k in KEYS.iter().filter(|k| k.default_toml().is_none() && k.scope != Scope::Server) {
            let has_table = match k.scope {
                Scope::Gateway | Scope::Upstream | Scope::Filters => t.contains_key("gateway"),
                Scope::Context => t.contains_key("contexts"),
                Scope::Cluster => t.contains_key("cluster"),
                _ => false,
            };
            if has_table {
                table_of(&mut t, k.scope).entry(k.name).or_insert_with(|| sample(k));
            }
        }
        de::Input::new("test", t, &[])?.deserialize()
    }

    #[test]
    fn keys_and_structs_agree() {
        // Every KEYS entry, under each of its spellings, is a field of its struct.
        let mut all = toml::Table::new();
        for k in KEYS {
            for spelled in std::iter::once(&k.name).chain(k.aliases) {
                let mut t = toml::Table::new();
                table_of(&mut t, k.scope).insert(spelled.to_string(), sample(k));
                deserialize(t).unwrap_or_else(|e| panic!("{} spelled {spelled}: {e}", k.qualified()));
            }
            table_of(&mut all, k.scope).insert(k.name.to_string(), sample(k));
        }
        // Every field of every struct is a KEYS entry: what the structs
        // print, with every key set, is exactly the KEYS list.
        let printed: toml::Table = toml::from_str(&deserialize(all).unwrap().to_toml()).unwrap();
        let mut fields: Vec<String> = Vec::new();
        let mut walk = |prefix: &str, t: &toml::Table, skip: &[&str]| {
            fields.extend(t.keys().filter(|k| !skip.contains(&k.as_str())).map(|k| format!("{prefix}{k}")));
        };
        fn table(v: Option<&toml::Value>) -> &toml::Table {
            v.and_then(|v| v.as_table().or_else(|| v.get(0)?.as_table())).unwrap()
        }
        walk("", &printed, &["contexts", "events", "gateway", "cluster"]);
        walk("contexts[].", table(printed.get("contexts")), &[]);
        walk("events.", table(printed.get("events")), &[]);
        walk("cluster.", table(printed.get("cluster")), &[]);
        let g = table(printed.get("gateway"));
        walk("gateway.", g, &["upstreams", "filters"]);
        walk("gateway.upstreams[].", table(g.get("upstreams")), &[]);
        walk("gateway.filters.", table(g.get("filters")), &[]);
        let mut listed: Vec<String> = KEYS
            .iter()
            .map(|k| match k.scope {
                Scope::Sessions | Scope::Context => format!("contexts[].{}", k.name),
                _ => k.qualified(),
            })
            .collect();
        fields.sort();
        listed.sort();
        assert_eq!(fields, listed, "the fields of the config structs and the entries of config::KEYS differ");

        // Every default KEYS documents is the structs' default.
        let mut t = toml::Table::new();
        for scope in [Scope::Gateway, Scope::Upstream, Scope::Filters, Scope::Cluster, Scope::Context] {
            table_of(&mut t, scope);
        }
        let printed: toml::Table = toml::from_str(&deserialize(t).unwrap().to_toml()).unwrap();
        for k in KEYS {
            let Some(want) = k.default_toml() else { continue };
            let mut tables = vec![&printed];
            let path: &[&str] = match k.scope {
                Scope::Server => &[],
                Scope::Sessions | Scope::Context => &["contexts"],
                Scope::Events => &["events"],
                Scope::Gateway => &["gateway"],
                Scope::Upstream => &["gateway", "upstreams"],
                Scope::Filters => &["gateway", "filters"],
                Scope::Cluster => &["cluster"],
            };
            for name in path {
                let next = table(tables.last().unwrap().get(*name));
                tables.push(next);
            }
            let got = tables.last().unwrap().get(k.name).unwrap_or_else(|| panic!("{} not printed", k.qualified()));
            let parsed = toml::from_str::<toml::Table>(&format!("v = {want}")).unwrap().remove("v").unwrap();
            let same = match (got, parsed) {
                (toml::Value::Float(g), toml::Value::Integer(w)) => *g == w as f64,
                (g, w) => *g == w,
            };
            assert!(same, "{}: the struct's default is {got}, KEYS says {want}", k.qualified());
        }

        // Every limit KEYS documents is the one the deserialiser applies.
        for k in KEYS {
            let (lo, hi, below, above) = match k.kind {
                keys::Kind::Int { min, max, .. } => (
                    toml::Value::Integer(min as i64),
                    toml::Value::Integer(max as i64),
                    toml::Value::Integer(min as i64 - 1),
                    toml::Value::Integer(max as i64 + 1),
                ),
                keys::Kind::Secs { min, max, .. } => (
                    toml::Value::Float(min),
                    toml::Value::Float(max),
                    toml::Value::Float(min - 0.0005),
                    toml::Value::Float(max + 0.001),
                ),
                _ => continue,
            };
            let with = |v: &toml::Value| {
                let mut t = toml::Table::new();
                table_of(&mut t, k.scope).insert(k.name.to_string(), v.clone());
                deserialize(t)
            };
            for ok in [&lo, &hi] {
                with(ok).unwrap_or_else(|e| panic!("{} = {ok}: {e}", k.qualified()));
            }
            for bad in [&below, &above] {
                assert!(with(bad).is_err(), "{} = {bad} is outside KEYS's limits but was accepted", k.qualified());
            }
        }
    }

    #[test]
    fn a_reload_keeps_every_restart_only_top_level_key() {
        let old = load(
            "",
            &[
                ("listen", "127.0.0.1:9999"),
                ("data_dir", "/tmp/elsewhere"),
                ("reuse_port", "true"),
                ("user", "nobody"),
                ("log_level", "debug"),
            ],
        )
        .unwrap();
        let mut new = load("", &[]).unwrap();
        let restart = KEYS.iter().filter(|k| k.scope == Scope::Server && k.applies == Applies::Restart);
        for k in restart {
            assert!(
                new.keep(&old, k.name),
                "{}: a reload must keep it (see Config::keep) and this test set it",
                k.name
            );
            assert!(!new.keep(&old, k.name), "{}: kept, so unchanged the second time", k.name);
        }
        assert_eq!(Config { source: None, ..new.clone() }, Config { source: None, ..old.clone() }, "all kept");
        assert!(!new.keep(&old, "max_connections"), "a reloadable key is not kept");
    }

    #[test]
    fn reference_lists_the_gateway_tables() {
        let md = reference_markdown();
        for key in [
            "api_token_file",
            "gateway.listen",
            "gateway.session_manager",
            "gateway.trusted_proxies",
            "gateway.upstreams[].name",
            "gateway.upstreams[].url",
            "gateway.upstreams[].prefix",
            "gateway.filters.categories",
            "gateway.filters.accept_user",
        ] {
            assert!(md.lines().any(|l| l.starts_with(&format!("| `{key}` |"))), "{key} missing: {md}");
        }
        let row = md.lines().find(|l| l.starts_with("| `gateway.session_manager` |")).unwrap();
        assert!(row.contains("array of at most 8 `http://` or `https://` URLs"), "{row}");
    }

    /// The generated section between the markers in `file`.
    fn generated_section(file: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let (begin, end) = ("<!-- config-keys:begin -->", "<!-- config-keys:end -->");
        let start = text.find(begin).unwrap_or_else(|| panic!("{file} has no {begin} marker")) + begin.len();
        let stop = text[start..].find(end).unwrap_or_else(|| panic!("{file} has no {end} marker")) + start;
        text[start..stop].trim().to_string()
    }

    #[test]
    fn docs_carry_the_generated_config_reference() {
        let want = reference_markdown();
        for file in ["docs/operations.md", "README.md"] {
            assert!(
                generated_section(file) == want.trim(),
                "the configuration reference in {file} differs from config::KEYS. Regenerate it: run \
                 `cargo run -q -- --config-reference` and put its output between the \
                 <!-- config-keys:begin --> and <!-- config-keys:end --> lines of {file}"
            );
        }
    }

    #[test]
    fn reference_lists_every_key_with_default_alias_and_range() {
        let md = reference_markdown();
        assert_eq!(md.lines().count(), KEYS.len() + 2);
        let row = |key: &str| md.lines().find(|l| l.starts_with(&format!("| `{key}` |"))).unwrap().to_string();
        assert!(row("sessions.max_sessions").contains("| `1000` | `maxSessions` | 1–268 435 456 |"), "{md}");
        assert!(row("max_procs").contains("`MaxProcs`, `maxProcs`"), "{md}");
        assert!(row("events.queue_size").contains("| `4096` |  | 16–1 048 576 |"), "{md}");
        assert!(
            row("sessions.lock_timeout").contains("| `1` s | `lockTimeout` | 0.001–60 s, decimals allowed |"),
            "{md}"
        );
    }
}
