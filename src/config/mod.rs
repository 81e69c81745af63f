//! Configuration: the TOML file, command-line overrides, iPlanet aliases,
//! defaults and validation, turned into an effective [`Config`].
//!
//! Every key is defined once, in [`keys::KEYS`]; this module walks the TOML
//! table and the command line by that list and builds the effective types
//! from it. Sources, later winning: built-in defaults, the TOML file
//! (`--config PATH`, else `/etc/sessiond/sessiond.toml` if it exists), then
//! command-line keys (the named flags, `--set key=value`, and iPlanet's
//! `--init-args "maxSessions=20,timeOut=300"`). Each value is checked
//! against its key where it is read, so one set of rules (types, aliases,
//! limits, unknown keys) covers every source; rules that relate two keys are
//! applied here, on the merged values. A key left at its default never makes
//! a valid setting fail: such a default adapts, and the change is recorded in
//! [`Config::notes`].
//!
//! Every error names the key, the value and the fix. This module never
//! touches the data directory or the network; the only file it reads besides
//! the config file is `events.secret_file`, whose contents never appear in a
//! message.

pub mod keys;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use keys::Value;
pub use keys::{KEYS, KeyDef, Scope, reference_markdown};

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

/// The lifecycle webhook's effective settings (`[events]`); the defaults
/// when the table is absent, with `url = None` meaning "off".
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EventsConfig {
    /// Where events are POSTed; `None` turns the webhook off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// File holding the signing key; always set when `url` is (read it
    /// with [`read_secret_file`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
    /// Time allowed for one delivery attempt, seconds.
    pub timeout: f64,
    /// Delivery attempts per batch, with exponential back-off between them.
    pub max_attempts: u32,
    /// Most events in one POST.
    pub max_batch: u32,
    /// Capacity of each process's bounded event queue.
    pub queue_size: u32,
    /// Whether `touched` events are sent.
    pub include_touched: bool,
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
    /// The lifecycle webhook (`[events]`).
    pub events: EventsConfig,
    /// The file this came from, if any.
    #[serde(skip)]
    pub source: Option<PathBuf>,
    /// Defaults that adapted to other settings, one sentence each, for the
    /// log at start (info level) and `--check-config`.
    #[serde(skip)]
    pub notes: Vec<String>,
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

/// Explicit values of one table, by canonical key, each already checked
/// against its key.
#[derive(Clone, Debug, Default)]
struct Given {
    /// How messages name the table: "", "sessions.", "contexts[admin].", "events.".
    label: String,
    /// Canonical name to (value, the spelling the user wrote).
    values: BTreeMap<&'static str, (Value, String)>,
}

impl Given {
    fn new(label: &str) -> Given {
        Given { label: label.to_string(), values: BTreeMap::new() }
    }
}

/// Every table of the input: the file merged with the command line.
#[derive(Debug)]
struct Input {
    /// Top-level keys.
    top: Given,
    /// `[sessions]`.
    sessions: Given,
    /// `[[contexts]]` entries, in file order; each has a `name`.
    contexts: Vec<Given>,
    /// `[events]`.
    events: Given,
}

/// Where `spelled` belongs if not in `scopes`, else which keys `scopes` accept.
fn unknown(source_name: &str, label: &str, spelled: &str, scopes: &[Scope]) -> ConfigError {
    let elsewhere =
        KEYS.iter().find(|k| !scopes.contains(&k.scope) && (k.name == spelled || k.aliases.contains(&spelled)));
    let help = match elsewhere.map(|k| (k.scope, k)) {
        Some((Scope::Server, k)) => format!("`{}` is a top-level key: move it above the first [table] header", k.name),
        Some((Scope::Context, k)) => format!("only a [[contexts]] entry takes `{}`", k.name),
        Some((scope, k)) => format!("it belongs in {}: write it as `{}`", scope.table(), k.qualified()),
        None if scopes.contains(&Scope::Server) && scopes.contains(&Scope::Sessions) => {
            format!("the keys accepted here are: {}; [events] keys are written events.KEY", keys::names_in(scopes))
        }
        None => format!("the keys accepted here are: {}", keys::names_in(scopes)),
    };
    ConfigError::UnknownKey { source_name: source_name.into(), key: format!("{label}{spelled}"), help }
}

/// Reads the keys of one TOML table, skipping the sub-tables in `skip`.
fn read_table(
    source_name: &str,
    label: &str,
    scopes: &[Scope],
    table: &toml::Table,
    skip: &[&str],
) -> Result<Given, ConfigError> {
    let mut given = Given::new(label);
    for (spelled, v) in table.iter().filter(|(k, _)| !skip.contains(&k.as_str())) {
        let def = scopes
            .iter()
            .find_map(|s| keys::find(*s, spelled))
            .ok_or_else(|| unknown(source_name, label, spelled, scopes))?;
        let value = def.read_toml(&format!("{label}{spelled}"), v)?;
        if let Some((_, first)) = given.values.get(def.name) {
            return Err(invalid(
                format!("{label}{}", def.name),
                format!("given twice, as `{first}` and as `{spelled}`"),
                "they are one key; keep one spelling",
            ));
        }
        given.values.insert(def.name, (value, spelled.clone()));
    }
    Ok(given)
}

fn sub_table<'a>(name: &str, v: &'a toml::Value) -> Result<&'a toml::Table, ConfigError> {
    v.as_table()
        .ok_or_else(|| invalid(name, v, format!("must be a table: write [{name}] on its own line, then its keys")))
}

impl Input {
    /// Walks the file's TOML by [`KEYS`].
    fn from_toml(source_name: &str, t: &toml::Table) -> Result<Input, ConfigError> {
        let top = read_table(source_name, "", &[Scope::Server], t, &["sessions", "contexts", "events"])?;
        let mut input =
            Input { top, sessions: Given::new("sessions."), contexts: Vec::new(), events: Given::new("events.") };
        if let Some(v) = t.get("sessions") {
            input.sessions = read_table(source_name, "sessions.", &[Scope::Sessions], sub_table("sessions", v)?, &[])?;
        }
        if let Some(v) = t.get("events") {
            input.events = read_table(source_name, "events.", &[Scope::Events], sub_table("events", v)?, &[])?;
        }
        if let Some(v) = t.get("contexts") {
            let fix = "write each context as a [[contexts]] entry with a name";
            let entries = v.as_array().ok_or_else(|| invalid("contexts", v, fix))?;
            for (i, e) in entries.iter().enumerate() {
                let e = e.as_table().ok_or_else(|| invalid(format!("contexts[{i}]"), e, fix))?;
                let label = match e.get("name").and_then(toml::Value::as_str) {
                    Some(n) if keys::valid_token(n) => format!("contexts[{n}]."),
                    _ => format!("contexts[{i}]."),
                };
                let given = read_table(source_name, &label, &[Scope::Sessions, Scope::Context], e, &[])?;
                if !given.values.contains_key("name") {
                    return Err(invalid(
                        format!("contexts[{i}].name"),
                        "(missing)",
                        "every [[contexts]] entry needs a name, e.g. name = \"admin\"",
                    ));
                }
                input.contexts.push(given);
            }
        }
        Ok(input)
    }

    /// Applies one command-line `key=value`. A bare key is a top-level key
    /// or else a `[sessions]` key; `[events]` keys take their prefix.
    /// Dashes read as underscores.
    fn set(&mut self, k: &str, v: &str) -> Result<(), ConfigError> {
        const SOURCE: &str = "command line";
        let key = k.trim().replace('-', "_");
        let (given, scope, leaf) = match key.split_once('.') {
            Some(("sessions", leaf)) => (&mut self.sessions, Scope::Sessions, leaf),
            Some(("events", leaf)) => (&mut self.events, Scope::Events, leaf),
            Some(("contexts", _)) => {
                return Err(invalid(
                    k,
                    v,
                    "[[contexts]] entries can be set only in the config file; sessions.KEY sets every context",
                ));
            }
            Some((table, _)) => {
                return Err(invalid(k, v, format!("there is no [{table}] table; use KEY, sessions.KEY or events.KEY")));
            }
            None if keys::find(Scope::Server, &key).is_some() => (&mut self.top, Scope::Server, key.as_str()),
            None => (&mut self.sessions, Scope::Sessions, key.as_str()),
        };
        let bare = !key.contains('.');
        let def = match keys::find(scope, leaf) {
            Some(def) => def,
            None if bare => return Err(unknown(SOURCE, "", leaf, &[Scope::Server, Scope::Sessions])),
            None => return Err(unknown(SOURCE, &given.label, leaf, &[scope])),
        };
        let value = def.read_arg(&format!("{}{leaf}", given.label), v)?;
        // A command-line key replaces the file's value, whatever its spelling.
        given.values.insert(def.name, (value, leaf.to_string()));
        Ok(())
    }
}

/// One setting's layers: a context's own entry, then `[sessions]`, then the
/// built-in default (or one table, then the default).
struct Layers<'a> {
    /// The scope the keys are looked up in.
    scope: Scope,
    /// Explicit values, most specific first.
    tables: Vec<&'a Given>,
}

impl Layers<'_> {
    /// The value of `name` and, when it was given explicitly, the key as
    /// the user wrote it (`contexts[admin].maxLocks`).
    fn pick(&self, name: &str) -> (Option<Value>, Option<String>) {
        let def = keys::def(self.scope, name);
        for g in &self.tables {
            if let Some((v, spelled)) = g.values.get(def.name) {
                return (Some(v.clone()), Some(format!("{}{spelled}", g.label)));
            }
        }
        (def.default_value(), None)
    }

    fn int_opt(&self, name: &str) -> Option<u64> {
        match self.pick(name).0 {
            Some(Value::Int(n)) => Some(n),
            None => None,
            Some(other) => kind_bug(name, other),
        }
    }

    fn int(&self, name: &str) -> u64 {
        self.int_opt(name).unwrap_or_else(|| kind_bug(name, "no default"))
    }

    /// A whole number whose limits fit in u32 (a `keys` test checks them all).
    fn u32(&self, name: &str) -> u32 {
        u32::try_from(self.int(name)).unwrap_or(u32::MAX)
    }

    fn secs(&self, name: &str) -> f64 {
        match self.pick(name).0 {
            Some(Value::Secs(s)) => s,
            other => kind_bug(name, other),
        }
    }

    fn bool(&self, name: &str) -> bool {
        match self.pick(name).0 {
            Some(Value::Bool(b)) => b,
            other => kind_bug(name, other),
        }
    }

    fn text_opt(&self, name: &str) -> Option<String> {
        match self.pick(name).0 {
            Some(Value::Text(s)) => Some(s),
            None => None,
            Some(other) => kind_bug(name, other),
        }
    }

    fn text(&self, name: &str) -> String {
        self.text_opt(name).unwrap_or_else(|| kind_bug(name, "no default"))
    }
}

/// A getter that does not match its key's kind in [`KEYS`]: a bug in this
/// module, caught by the default-config test, which reads every key.
fn kind_bug(name: &str, got: impl std::fmt::Debug) -> ! {
    unreachable!("config key `{name}` read with the wrong getter (found {got:?}); fix config/mod.rs or KEYS")
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
        let mut input = Input::from_toml(&source_name, &table)?;
        for (k, v) in &o.pairs {
            input.set(k, v)?;
        }
        let mut cfg = Config::from_input(&input)?;
        cfg.source = path;
        Ok(cfg)
    }

    fn from_input(input: &Input) -> Result<Config, ConfigError> {
        let mut notes = Vec::new();
        let top = Layers { scope: Scope::Server, tables: vec![&input.top] };
        let listen = parse_listen(&top.text("listen"))?;
        let data_dir = top.text_opt("data_dir").map(PathBuf::from).unwrap_or_else(|| {
            match std::env::var_os("STATE_DIRECTORY") {
                // systemd may pass several colon-separated directories; use the first.
                Some(s) => PathBuf::from(s.to_string_lossy().split(':').next().unwrap_or("").to_string()),
                None => PathBuf::from("./sessiond-data"),
            }
        });
        let max_procs = match top.int_opt("max_procs") {
            Some(n) => u32::try_from(n).unwrap_or(LIMIT_MAX_PROCS),
            None => {
                let cpus = std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1);
                if cpus > LIMIT_MAX_PROCS {
                    notes.push(format!(
                        "max_procs defaults to the number of CPUs ({cpus}) but is at most {LIMIT_MAX_PROCS}; \
                         using max_procs = {LIMIT_MAX_PROCS}"
                    ));
                }
                cpus.clamp(1, LIMIT_MAX_PROCS)
            }
        };

        let mut entries: Vec<&Given> = input.contexts.iter().collect();
        let implicit_default = Given {
            label: "contexts[default].".into(),
            values: BTreeMap::from([("name", (Value::Text("default".into()), "name".into()))]),
        };
        // `default` is always present and always first: it serves requests
        // without `?context=`.
        match entries.iter().position(|c| context_name(c) == "default") {
            Some(0) => {}
            Some(i) => {
                let d = entries.remove(i);
                entries.insert(0, d);
            }
            None => entries.insert(0, &implicit_default),
        }
        let mut tags = std::collections::HashMap::new();
        let mut contexts = Vec::new();
        for entry in entries {
            let name = context_name(entry);
            let ctx = context_from(name, entry, &input.sessions, &mut notes)?;
            if let Some(other) = tags.insert(context_tag(name), name.to_string()) {
                return Err(invalid(
                    format!("{}name", entry.label),
                    name,
                    format!("its 16-bit id tag collides with context '{other}' (or it is listed twice); rename one"),
                ));
            }
            contexts.push(ctx);
        }
        let events = events_from(&input.events, &mut notes)?;
        Ok(Config {
            listen,
            data_dir,
            max_procs,
            reuse_port: top.bool("reuse_port"),
            user: top.text_opt("user").filter(|u| !u.is_empty()),
            node_id: top.u32("node_id"),
            log_level: top.text("log_level"),
            shutdown_timeout: top.secs("shutdown_timeout"),
            max_connections: top.u32("max_connections"),
            header_timeout: top.secs("header_timeout"),
            request_timeout: top.secs("request_timeout"),
            send_timeout: top.secs("send_timeout"),
            max_header_size: top.u32("max_header_size"),
            contexts,
            events,
            source: None,
            notes,
        })
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
}

/// The `name` of a `[[contexts]]` entry ([`Input::from_toml`] makes sure
/// there is one).
fn context_name(entry: &Given) -> &str {
    match entry.values.get("name") {
        Some((Value::Text(n), _)) => n,
        other => kind_bug("name", other),
    }
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

/// Parses `host:port` or `unix:/path`.
pub fn parse_listen(s: &str) -> Result<Listen, ConfigError> {
    listen_from(s).map_err(|reason| invalid("listen", s, reason))
}

/// One context's effective settings: its entry, then `[sessions]`, then the
/// defaults, with the rules that relate two keys.
fn context_from(
    name: &str,
    entry: &Given,
    sessions: &Given,
    notes: &mut Vec<String>,
) -> Result<ContextConfig, ConfigError> {
    let l = Layers { scope: Scope::Sessions, tables: vec![entry, sessions] };
    let max_sessions = l.u32("max_sessions");
    let sessions_key = l.pick("max_sessions").1;
    let (_, locks_from) = l.pick("max_locks");
    let mut max_locks = l.u32("max_locks");
    if max_locks > max_sessions {
        match locks_from {
            // A default must not make a valid max_sessions fail: fewer
            // sessions than stripes just means one stripe per session.
            None => {
                notes.push(format!(
                    "context {name}: max_locks defaults to {max_locks} but max_sessions = {max_sessions}; \
                     using max_locks = {max_sessions}"
                ));
                max_locks = max_sessions;
            }
            Some(locks_key) => {
                let sessions_key = sessions_key.unwrap_or_else(|| "max_sessions (its default)".into());
                return Err(invalid(
                    &locks_key,
                    max_locks,
                    format!(
                        "must not exceed `{sessions_key}` = {max_sessions}; set `{locks_key}` to at most \
                         {max_sessions}, remove it to use the default, or raise max_sessions"
                    ),
                ));
            }
        }
    }
    let (_, same_from) = l.pick("cookie_same_site");
    let cookie_same_site = match l.text("cookie_same_site").as_str() {
        "Strict" => SameSite::Strict,
        "None" => SameSite::None,
        _ => SameSite::Lax,
    };
    let cookie_secure = l.bool("cookie_secure");
    if cookie_same_site == SameSite::None && !cookie_secure {
        return Err(invalid(
            same_from.unwrap_or_else(|| "sessions.cookie_same_site".into()),
            "None",
            "browsers reject SameSite=None without Secure; set cookie_secure = true",
        ));
    }
    let when_full = match l.text("when_full").as_str() {
        "evict-oldest" => WhenFull::EvictOldest,
        _ => WhenFull::Refuse,
    };
    let cfg = ContextConfig {
        name: name.to_string(),
        max_sessions,
        max_values_per_session: l.u32("max_values_per_session"),
        max_name_size: l.u32("max_name_size"),
        max_value_size: l.u32("max_value_size"),
        timeout: l.int("timeout"),
        absolute_timeout: l.int("absolute_timeout"),
        reap_interval: l.int("reap_interval"),
        max_locks,
        lock_timeout: l.secs("lock_timeout"),
        when_full,
        cookie_name: l.text("cookie_name"),
        cookie_secure,
        cookie_same_site,
        cookie_path: l.text("cookie_path"),
        url_param: l.text("url_param"),
    };
    crate::region::Geometry::new(cfg.region_config(0).layout).map_err(|e| {
        invalid(l.pick("max_sessions").1.unwrap_or_else(|| "sessions.max_sessions".into()), max_sessions, e)
    })?;
    Ok(cfg)
}

/// The `[events]` table's effective settings; with `url` set, the secret
/// file must exist and be private.
fn events_from(events: &Given, notes: &mut Vec<String>) -> Result<EventsConfig, ConfigError> {
    let l = Layers { scope: Scope::Events, tables: vec![events] };
    let url = l.text_opt("url").filter(|u| !u.is_empty());
    let secret_file = l.text_opt("secret_file").map(PathBuf::from);
    match (&url, &secret_file) {
        (Some(u), None) => {
            return Err(invalid(
                "events.secret_file",
                "(missing)",
                format!(
                    "events.url = {u:?} needs a key to sign each POST with: set events.secret_file to a file \
                     only sessiond's user can read (chmod 600)"
                ),
            ));
        }
        // Read now so that --check-config and a reload catch a bad file;
        // the webhook reads it again when it starts.
        (Some(_), Some(p)) => drop(read_secret_file("events.secret_file", p)?),
        (None, Some(p)) => {
            notes.push(format!("events.secret_file = {} is set but events.url is not; the webhook is off", p.display()))
        }
        (None, None) => {}
    }
    Ok(EventsConfig {
        url,
        secret_file,
        timeout: l.secs("timeout"),
        max_attempts: l.u32("max_attempts"),
        max_batch: l.u32("max_batch"),
        queue_size: l.u32("queue_size"),
        include_touched: l.bool("include_touched"),
    })
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
                timeout: 5.0,
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
        assert_eq!((c.events.timeout, c.events.max_attempts, c.events.max_batch), (0.5, 3, 1000));
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
