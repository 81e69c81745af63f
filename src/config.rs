//! Configuration: the TOML file, command-line overrides, iPlanet aliases,
//! defaults and validation.
//!
//! Owns turning user input into an effective [`Config`]; every error names
//! the key, the value and the fix. Sources, later winning: built-in
//! defaults, the TOML file (`--config PATH`, else `/etc/sessiond/sessiond.toml`
//! if it exists), then command-line keys (`--set key=value`, the named
//! flags, and iPlanet's `--init-args "maxSessions=20,timeOut=300"`).
//! Overrides are merged into the TOML table before it is deserialised, so
//! one set of rules (types, aliases, unknown keys) covers every source.
//! It never touches the data directory or the network.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::region::layout::{LayoutParams, context_tag};
use crate::region::{RegionConfig, WhenFull};

/// Default config file read when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/sessiond/sessiond.toml";
/// Largest `max_procs`.
pub const LIMIT_MAX_PROCS: u32 = 512;

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
    /// The TOML did not parse or did not match the schema.
    #[error("{source_name}: {message}")]
    Parse {
        /// The file or "command line".
        source_name: String,
        /// The parser's message, which names the key.
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("invalid value for `{key}`: {value} ({reason})")]
    Invalid {
        /// The key (with its table).
        key: String,
        /// The value given.
        value: String,
        /// Why it is wrong and what to do.
        reason: String,
    },
}

fn invalid(key: impl Into<String>, value: impl ToString, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.into(), value: value.to_string(), reason: reason.into() }
}

/// A duration given in seconds, as an integer or a float.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Seconds(pub f64);

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Seconds;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number of seconds")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Seconds, E> {
                Ok(Seconds(v as f64))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Seconds, E> {
                Ok(Seconds(v as f64))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Seconds, E> {
                Ok(Seconds(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// Per-context session settings; `[sessions]` sets the defaults, each
/// `[[contexts]]` entry may override any of them.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SessionsTable {
    /// Context name (only in `[[contexts]]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Slots in the region.
    #[serde(alias = "maxSessions")]
    pub max_sessions: Option<u32>,
    /// Attributes per session.
    #[serde(alias = "maxValuesPerSession")]
    pub max_values_per_session: Option<u32>,
    /// Longest attribute name.
    #[serde(alias = "maxNameSize")]
    pub max_name_size: Option<u32>,
    /// Longest attribute value.
    #[serde(alias = "maxValueSize")]
    pub max_value_size: Option<u32>,
    /// Idle timeout, seconds.
    #[serde(alias = "timeOut")]
    pub timeout: Option<u64>,
    /// Absolute lifetime, seconds (0 = off).
    #[serde(alias = "absoluteTimeout")]
    pub absolute_timeout: Option<u64>,
    /// Reaper period, seconds.
    #[serde(alias = "reapInterval")]
    pub reap_interval: Option<u64>,
    /// Stripe locks.
    #[serde(alias = "maxLocks")]
    pub max_locks: Option<u32>,
    /// Longest stripe-lock wait, seconds.
    #[serde(alias = "lockTimeout")]
    pub lock_timeout: Option<Seconds>,
    /// Policy when full.
    pub when_full: Option<WhenFull>,
    /// Cookie carrying the id.
    pub cookie_name: Option<String>,
    /// Set `Secure` on the cookie.
    pub cookie_secure: Option<bool>,
    /// `SameSite` value: Strict, Lax or None.
    pub cookie_same_site: Option<String>,
    /// Cookie `Path`.
    pub cookie_path: Option<String>,
    /// URL-rewriting path parameter name.
    pub url_param: Option<String>,
}

/// The TOML file's schema (every key optional).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    #[serde(alias = "MaxProcs", alias = "maxProcs")]
    max_procs: Option<u32>,
    reuse_port: Option<bool>,
    user: Option<String>,
    node_id: Option<u32>,
    log_level: Option<String>,
    shutdown_timeout: Option<Seconds>,
    max_connections: Option<u32>,
    header_timeout: Option<Seconds>,
    request_timeout: Option<Seconds>,
    send_timeout: Option<Seconds>,
    max_header_size: Option<u32>,
    #[serde(default)]
    sessions: SessionsTable,
    #[serde(default)]
    contexts: Vec<SessionsTable>,
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

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Tcp(a) => write!(f, "{a}"),
            Listen::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// SameSite attribute of the session cookie.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum SameSite {
    /// `SameSite=Strict`.
    Strict,
    /// `SameSite=Lax`.
    Lax,
    /// `SameSite=None` (requires `cookie_secure`).
    None,
}

/// One context's effective settings.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ContextConfig {
    /// Name; also the directory under `data_dir/contexts/`.
    pub name: String,
    /// Slots.
    pub max_sessions: u32,
    /// Attributes per session.
    pub max_values_per_session: u32,
    /// Longest name, bytes.
    pub max_name_size: u32,
    /// Longest value, bytes.
    pub max_value_size: u32,
    /// Idle timeout, seconds.
    pub timeout: u64,
    /// Absolute lifetime, seconds; 0 = off.
    pub absolute_timeout: u64,
    /// Reaper period, seconds.
    pub reap_interval: u64,
    /// Stripes.
    pub max_locks: u32,
    /// Stripe-lock wait bound, seconds.
    pub lock_timeout: f64,
    /// Full policy.
    pub when_full: WhenFull,
    /// Cookie name.
    pub cookie_name: String,
    /// Secure flag.
    pub cookie_secure: bool,
    /// SameSite.
    pub cookie_same_site: SameSite,
    /// Cookie path.
    pub cookie_path: String,
    /// URL-rewriting parameter.
    pub url_param: String,
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
            lock_timeout: Duration::from_secs_f64(self.lock_timeout),
        }
    }
}

/// The effective configuration.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// Listening address.
    pub listen: Listen,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Worker processes.
    pub max_procs: u32,
    /// One SO_REUSEPORT socket per worker.
    pub reuse_port: bool,
    /// User to switch to after binding (when started as root).
    pub user: Option<String>,
    /// Node id carried in session ids.
    pub node_id: u32,
    /// Log level filter (RUST_LOG overrides).
    pub log_level: String,
    /// Drain bound at stop and reload, seconds.
    pub shutdown_timeout: f64,
    /// Open connections per worker.
    pub max_connections: u32,
    /// Time allowed to send a request head (also the keep-alive idle limit), seconds.
    pub header_timeout: f64,
    /// Time allowed for a whole request body, seconds.
    pub request_timeout: f64,
    /// Longest stall while sending a response (a client that stops reading), seconds.
    pub send_timeout: f64,
    /// Largest request head, bytes.
    pub max_header_size: u32,
    /// Contexts; the first is the default one.
    pub contexts: Vec<ContextConfig>,
    /// The file this came from, if any.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// Keys accepted inside `[sessions]` (with aliases), used to route
/// command-line overrides.
const SESSION_KEYS: &[&str] = &[
    "max_sessions",
    "maxSessions",
    "max_values_per_session",
    "maxValuesPerSession",
    "max_name_size",
    "maxNameSize",
    "max_value_size",
    "maxValueSize",
    "timeout",
    "timeOut",
    "absolute_timeout",
    "absoluteTimeout",
    "reap_interval",
    "reapInterval",
    "max_locks",
    "maxLocks",
    "lock_timeout",
    "lockTimeout",
    "when_full",
    "cookie_name",
    "cookie_secure",
    "cookie_same_site",
    "cookie_path",
    "url_param",
];

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

fn to_toml_value(v: &str) -> toml::Value {
    if let Ok(i) = v.parse::<i64>() {
        toml::Value::Integer(i)
    } else if let Ok(f) = v.parse::<f64>() {
        toml::Value::Float(f)
    } else if let Ok(b) = v.parse::<bool>() {
        toml::Value::Boolean(b)
    } else {
        toml::Value::String(v.to_string())
    }
}

fn secs(key: &str, v: Option<Seconds>, default: f64, min: f64, max: f64) -> Result<f64, ConfigError> {
    let s = v.map(|s| s.0).unwrap_or(default);
    if !(min..=max).contains(&s) || !s.is_finite() {
        return Err(invalid(key, s, format!("must be between {min} and {max} seconds")));
    }
    Ok(s)
}

fn range<T: PartialOrd + std::fmt::Display + Copy>(key: &str, v: T, lo: T, hi: T) -> Result<T, ConfigError> {
    if v < lo || v > hi {
        return Err(invalid(key, v, format!("must be between {lo} and {hi}")));
    }
    Ok(v)
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
        let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| ConfigError::Parse {
            source_name: source_name.clone(),
            message: e.to_string(),
        })?;
        for (k, v) in &o.pairs {
            let key = k.replace('-', "_");
            let (table_name, leaf) = match key.split_once('.') {
                Some((t, l)) => (Some(t.to_string()), l.to_string()),
                None if SESSION_KEYS.contains(&key.as_str()) => (Some("sessions".to_string()), key),
                None => (None, key),
            };
            let target = match table_name {
                Some(t) => match table.entry(t.clone()).or_insert_with(|| toml::Value::Table(Default::default())) {
                    toml::Value::Table(tb) => tb,
                    _ => return Err(invalid(t, "(not a table)", "cannot set a key inside it")),
                },
                None => &mut table,
            };
            // A command-line key replaces the file's spelling or alias of it.
            if let Some(group) = ALIASES.iter().find(|g| g.contains(&leaf.as_str())) {
                for a in *group {
                    target.remove(*a);
                }
            }
            target.insert(leaf, to_toml_value(v));
        }
        let file: FileConfig = table.try_into().map_err(|e: toml::de::Error| ConfigError::Parse {
            source_name,
            message: e.to_string().trim().to_string(),
        })?;
        let mut cfg = Config::from_file(file)?;
        cfg.source = path;
        Ok(cfg)
    }

    fn from_file(f: FileConfig) -> Result<Config, ConfigError> {
        let listen = parse_listen(f.listen.as_deref().unwrap_or("127.0.0.1:8080"))?;
        let data_dir = f.data_dir.unwrap_or_else(|| match std::env::var_os("STATE_DIRECTORY") {
            // systemd may pass several colon-separated directories; use the first.
            Some(s) => PathBuf::from(s.to_string_lossy().split(':').next().unwrap_or("").to_string()),
            None => PathBuf::from("./sessiond-data"),
        });
        let cpus = std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1);
        let max_procs = range("max_procs", f.max_procs.unwrap_or(cpus), 1, LIMIT_MAX_PROCS)?;
        let node_id = range("node_id", f.node_id.unwrap_or(0), 0, crate::region::id::MAX_NODE_ID)?;
        let log_level = f.log_level.unwrap_or_else(|| "info".into());
        if !["off", "error", "warn", "info", "debug", "trace"].contains(&log_level.as_str()) {
            return Err(invalid("log_level", &log_level, "use one of off, error, warn, info, debug, trace"));
        }
        let mut names = std::collections::HashMap::new();
        let mut contexts = Vec::new();
        let mut entries = f.contexts.clone();
        // `default` is always present and always first: it serves requests
        // without `?context=`.
        match entries.iter().position(|c| c.name.as_deref() == Some("default")) {
            Some(0) => {}
            Some(i) => {
                let d = entries.remove(i);
                entries.insert(0, d);
            }
            None => entries.insert(0, SessionsTable { name: Some("default".into()), ..Default::default() }),
        }
        for (i, c) in entries.iter().enumerate() {
            let name = c.name.clone().ok_or_else(|| {
                invalid(format!("contexts[{i}].name"), "(missing)", "every [[contexts]] entry needs a name")
            })?;
            let ctx = context_from(&name, &f.sessions, c)?;
            if let Some(other) = names.insert(context_tag(&name), name.clone()) {
                return Err(invalid(
                    format!("contexts[{i}].name"),
                    &name,
                    format!("its 16-bit id tag collides with context '{other}' (or it is listed twice); rename one"),
                ));
            }
            contexts.push(ctx);
        }
        Ok(Config {
            listen,
            data_dir,
            max_procs,
            reuse_port: f.reuse_port.unwrap_or(false),
            user: f.user.filter(|u| !u.is_empty()),
            node_id,
            log_level,
            shutdown_timeout: secs("shutdown_timeout", f.shutdown_timeout, 10.0, 0.0, 3600.0)?,
            max_connections: range("max_connections", f.max_connections.unwrap_or(4096), 1, 1_000_000)?,
            header_timeout: secs("header_timeout", f.header_timeout, 10.0, 0.1, 3600.0)?,
            request_timeout: secs("request_timeout", f.request_timeout, 30.0, 0.1, 3600.0)?,
            send_timeout: secs("send_timeout", f.send_timeout, 30.0, 0.1, 3600.0)?,
            max_header_size: range("max_header_size", f.max_header_size.unwrap_or(16 * 1024), 8192, 1 << 20)?,
            contexts,
            source: None,
        })
    }

    /// The default context (always present, always first).
    pub fn default_context(&self) -> &ContextConfig {
        &self.contexts[0]
    }

    /// Renders the effective configuration as TOML (for `--check-config`).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }
}

/// Every spelling of a key (ours first, then iPlanet's and camelCase).
const ALIASES: &[&[&str]] = &[
    &["max_sessions", "maxSessions"],
    &["max_values_per_session", "maxValuesPerSession"],
    &["max_name_size", "maxNameSize"],
    &["max_value_size", "maxValueSize"],
    &["timeout", "timeOut"],
    &["absolute_timeout", "absoluteTimeout"],
    &["reap_interval", "reapInterval"],
    &["max_locks", "maxLocks"],
    &["lock_timeout", "lockTimeout"],
    &["max_procs", "MaxProcs", "maxProcs"],
];

fn read(p: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(p).map_err(|e| ConfigError::Read { path: p.to_path_buf(), source: e })
}

/// Parses `host:port` or `unix:/path`.
pub fn parse_listen(s: &str) -> Result<Listen, ConfigError> {
    if let Some(p) = s.strip_prefix("unix:") {
        if !p.starts_with('/') {
            return Err(invalid("listen", s, "a Unix socket path must be absolute, e.g. unix:/run/sessiond/http.sock"));
        }
        return Ok(Listen::Unix(PathBuf::from(p)));
    }
    s.parse::<SocketAddr>()
        .map(Listen::Tcp)
        .map_err(|_| invalid("listen", s, "expected host:port such as 127.0.0.1:8080, [::1]:8080, or unix:/path"))
}

fn valid_token(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn context_from(name: &str, d: &SessionsTable, c: &SessionsTable) -> Result<ContextConfig, ConfigError> {
    let key = |k: &str| if name == "default" { format!("sessions.{k}") } else { format!("contexts[{name}].{k}") };
    if !valid_token(name) {
        return Err(invalid(key("name"), name, "use 1-64 letters, digits, '_' or '-'"));
    }
    macro_rules! pick {
        ($f:ident, $def:expr) => {
            c.$f.clone().or(d.$f.clone()).unwrap_or($def)
        };
    }
    let l = crate::region::layout::LIMIT_MAX_SESSIONS;
    let max_sessions = range(&key("max_sessions"), pick!(max_sessions, 1000), 1, l)?;
    let max_values = range(&key("max_values_per_session"), pick!(max_values_per_session, 10), 1, 1024)?;
    let max_name = range(&key("max_name_size"), pick!(max_name_size, 64), 1, 1024)?;
    let max_value = range(&key("max_value_size"), pick!(max_value_size, 4096), 1, 16 << 20)?;
    let max_locks = range(&key("max_locks"), pick!(max_locks, 16), 1, 4096)?;
    if max_locks > max_sessions {
        return Err(invalid(key("max_locks"), max_locks, format!("must not exceed max_sessions = {max_sessions}")));
    }
    let timeout = range(&key("timeout"), pick!(timeout, 1800), 1, u32::MAX as u64)?;
    let absolute_timeout = range(&key("absolute_timeout"), pick!(absolute_timeout, 0), 0, 100 * 365 * 86400)?;
    let reap_interval = range(&key("reap_interval"), pick!(reap_interval, 600), 1, 86400)?;
    let lock_timeout = secs(&key("lock_timeout"), c.lock_timeout.or(d.lock_timeout), 1.0, 0.001, 60.0)?;
    let cookie_name = pick!(cookie_name, "SESSIONID".to_string());
    if !valid_token(&cookie_name) {
        return Err(invalid(key("cookie_name"), &cookie_name, "use 1-64 letters, digits, '_' or '-'"));
    }
    let url_param = pick!(url_param, "sessionid".to_string());
    if !valid_token(&url_param) {
        return Err(invalid(key("url_param"), &url_param, "use 1-64 letters, digits, '_' or '-'"));
    }
    let same = pick!(cookie_same_site, "Lax".to_string());
    let cookie_same_site = match same.to_ascii_lowercase().as_str() {
        "strict" => SameSite::Strict,
        "lax" => SameSite::Lax,
        "none" => SameSite::None,
        _ => return Err(invalid(key("cookie_same_site"), &same, "use Strict, Lax or None")),
    };
    let cookie_secure = pick!(cookie_secure, false);
    if cookie_same_site == SameSite::None && !cookie_secure {
        return Err(invalid(
            key("cookie_same_site"),
            "None",
            "browsers reject SameSite=None without Secure; set cookie_secure = true",
        ));
    }
    let cookie_path = pick!(cookie_path, "/".to_string());
    if !cookie_path.starts_with('/') || cookie_path.bytes().any(|b| b == b';' || b.is_ascii_control()) {
        return Err(invalid(
            key("cookie_path"),
            &cookie_path,
            "must start with '/' and contain no ';' or control characters",
        ));
    }
    let cfg = ContextConfig {
        name: name.to_string(),
        max_sessions,
        max_values_per_session: max_values,
        max_name_size: max_name,
        max_value_size: max_value,
        timeout,
        absolute_timeout,
        reap_interval,
        max_locks,
        lock_timeout,
        when_full: pick!(when_full, WhenFull::Refuse),
        cookie_name,
        cookie_secure,
        cookie_same_site,
        cookie_path,
        url_param,
    };
    crate::region::Geometry::new(cfg.region_config(0).layout)
        .map_err(|e| invalid(key("max_sessions"), max_sessions, e))?;
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

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
            ("SESSIONID", "sessionid", SameSite::Lax)
        );
        assert_eq!(d.lock_timeout, 1.0);
        assert_eq!(c.shutdown_timeout, 10.0);
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
        assert_eq!((c.max_procs, c.default_context().lock_timeout, c.default_context().max_sessions), (4, 3.0, 70));
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
}
