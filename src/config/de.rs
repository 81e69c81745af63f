//! From TOML to the typed structs of `config/mod.rs`.
//!
//! [`Input::new`] prepares one `toml::Table`: it merges the command line
//! into the file's table (each value read as its key's TOML type, from
//! [`KEYS`]), refuses a key given under two spellings, and copies
//! `[sessions]` into every `[[contexts]]` entry that does not set the key
//! itself (the `default` context first, added when the file has none).
//! Then [`Input::deserialize`] runs serde once over the whole table, with
//! `serde_path_to_error` to know which key failed, and [`Input::error`]
//! turns serde's message into a [`ConfigError`] that names the key as the
//! user wrote it (`contexts[admin].maxLocks`, `sessions.timeout` for a value
//! a context inherited), the value as written and the fix.
//!
//! The `deserialize_with` helpers at the end apply the limits and the
//! string rules ([`Rule`]) of each field; their error text is the reason.
//! This module reads no files.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use serde::de::{Deserializer, Error as _, SeqAccess, Unexpected, Visitor};
use serde_path_to_error::Segment;

use super::keys::{self, KEYS, Kind, Rule, Scope, toml_display};
use super::{ConfigError, invalid};

/// The merged table and what messages need to name its keys.
pub(crate) struct Input {
    /// The file and the command line, `[sessions]` folded into `contexts`.
    table: toml::Table,
    /// The file's name, for unknown-key messages.
    source_name: String,
    /// Command-line values by the key as messages name it, shown as typed.
    cli: HashMap<String, String>,
    /// Keys given explicitly, by table label and canonical name
    /// (`"sessions.max_locks"`), to the key as the user wrote it.
    written: HashMap<String, String>,
    /// Per merged `contexts` entry: its label (`contexts[admin].`) and the
    /// spellings it holds itself (the rest came from `[sessions]`).
    contexts: Vec<(String, HashSet<String>)>,
    /// `[sessions]` as given, for showing its values.
    sessions: toml::Table,
}

/// The top-level tables, with the scope of their keys.
const TABLES: [(&str, Scope); 4] = [
    ("events", Scope::Events),
    ("cluster", Scope::Cluster),
    ("gateway", Scope::Gateway),
    ("sessions", Scope::Sessions),
];

impl Input {
    /// Merges `pairs` (the command line) into `table` (the file) and
    /// folds `[sessions]` into the contexts.
    pub(crate) fn new(
        source_name: &str,
        mut table: toml::Table,
        pairs: &[(String, String)],
    ) -> Result<Input, ConfigError> {
        let mut cli = HashMap::new();
        for (k, v) in pairs {
            set(&mut table, k, v, &mut cli)?;
        }
        let mut input = Input {
            table,
            source_name: source_name.into(),
            cli,
            written: HashMap::new(),
            contexts: Vec::new(),
            sessions: toml::Table::new(),
        };
        input.note_spellings()?;
        input.fold_sessions()?;
        Ok(input)
    }

    /// Records how each known key is spelled, refusing two spellings of one
    /// key in one table.
    fn note_spellings(&mut self) -> Result<(), ConfigError> {
        let t = &self.table;
        let mut tables: Vec<(String, Vec<Scope>, &toml::Table)> = vec![(String::new(), vec![Scope::Server], t)];
        for (name, scope) in TABLES {
            if let Some(sub) = t.get(name).and_then(toml::Value::as_table) {
                tables.push((format!("{name}."), vec![scope], sub));
            }
        }
        if let Some(g) = t.get("gateway").and_then(toml::Value::as_table) {
            if let Some(f) = g.get("filters").and_then(toml::Value::as_table) {
                tables.push(("gateway.filters.".into(), vec![Scope::Filters], f));
            }
            for (i, u) in g.get("upstreams").and_then(toml::Value::as_array).into_iter().flatten().enumerate() {
                if let Some(u) = u.as_table() {
                    tables.push((format!("gateway.upstreams[{i}]."), vec![Scope::Upstream], u));
                }
            }
        }
        for (i, e) in t.get("contexts").and_then(toml::Value::as_array).into_iter().flatten().enumerate() {
            if let Some(e) = e.as_table() {
                tables.push((context_label(i, e), vec![Scope::Sessions, Scope::Context], e));
            }
        }
        let mut written = HashMap::new();
        for (label, scopes, table) in tables {
            let mut seen: HashMap<&str, &str> = HashMap::new();
            for spelled in table.keys() {
                let Some(def) = scopes.iter().find_map(|s| keys::find(*s, spelled)) else { continue };
                if let Some(first) = seen.insert(def.name, spelled) {
                    return Err(invalid(
                        format!("{label}{}", def.name),
                        format!("given twice, as `{first}` and as `{spelled}`"),
                        "they are one key; keep one spelling",
                    ));
                }
                written.insert(format!("{label}{}", def.name), format!("{label}{spelled}"));
            }
        }
        self.written = written;
        Ok(())
    }

    /// Copies `[sessions]` into each `[[contexts]]` entry (the entry's own
    /// keys win) and puts the `default` context first.
    fn fold_sessions(&mut self) -> Result<(), ConfigError> {
        let sessions = match self.table.remove("sessions") {
            None => toml::Table::new(),
            Some(toml::Value::Table(t)) => t,
            Some(v) => return Err(not_a_table("sessions", &v)),
        };
        if sessions.contains_key("name") {
            return Err(ConfigError::UnknownKey {
                source_name: self.source_name.clone(),
                key: "sessions.name".into(),
                help: "only a [[contexts]] entry takes `name`".into(),
            });
        }
        const FIX: &str = "write each context as a [[contexts]] entry with a name";
        let entries = match self.table.remove("contexts") {
            None => Vec::new(),
            Some(toml::Value::Array(a)) => a,
            Some(v) => return Err(invalid("contexts", v, FIX)),
        };
        let mut out: Vec<(String, toml::Table)> = Vec::with_capacity(entries.len() + 1);
        for (i, e) in entries.into_iter().enumerate() {
            let toml::Value::Table(e) = e else { return Err(invalid(format!("contexts[{i}]"), e, FIX)) };
            if !e.contains_key("name") {
                return Err(invalid(
                    format!("contexts[{i}].name"),
                    "(missing)",
                    "every [[contexts]] entry needs a name, e.g. name = \"admin\"",
                ));
            }
            out.push((context_label(i, &e), e));
        }
        // `default` is always present and always first: it serves requests
        // without `?context=`.
        match out.iter().position(|(_, e)| e.get("name").and_then(toml::Value::as_str) == Some("default")) {
            Some(i) => {
                let d = out.remove(i);
                out.insert(0, d);
            }
            None => {
                let name = toml::Table::from_iter([("name".to_string(), toml::Value::String("default".into()))]);
                out.insert(0, ("contexts[default].".into(), name));
            }
        }
        let mut merged = Vec::with_capacity(out.len());
        for (label, mut entry) in out {
            let own: HashSet<String> = entry.keys().cloned().collect();
            for (spelled, v) in &sessions {
                let canonical = keys::find(Scope::Sessions, spelled).map(|d| d.name);
                let has =
                    |k: &String| canonical.is_some_and(|c| keys::find(Scope::Sessions, k).is_some_and(|d| d.name == c));
                if !entry.contains_key(spelled) && !entry.keys().any(has) {
                    entry.insert(spelled.clone(), v.clone());
                }
            }
            self.contexts.push((label, own));
            merged.push(toml::Value::Table(entry));
        }
        self.table.insert("contexts".into(), toml::Value::Array(merged));
        self.sessions = sessions;
        Ok(())
    }

    /// The one deserialise.
    pub(crate) fn deserialize<T: serde::de::DeserializeOwned>(&self) -> Result<T, ConfigError> {
        serde_path_to_error::deserialize(toml::Value::Table(self.table.clone())).map_err(|e| self.error(&e))
    }

    /// The key as the user wrote it, or `None` when it was left to its
    /// default. `label` is the table (`""`, `"events."`, a context's label);
    /// a context inherits what `[sessions]` sets.
    pub(crate) fn written(&self, label: &str, name: &str) -> Option<String> {
        let own = self.written.get(&format!("{label}{name}")).cloned();
        match label.starts_with("contexts[") {
            true => own.or_else(|| self.written.get(&format!("sessions.{name}")).cloned()),
            false => own,
        }
    }

    /// [`Input::written`], else the canonical key (`sessions.NAME` for a
    /// context key nobody set).
    pub(crate) fn key(&self, label: &str, name: &str) -> String {
        self.written(label, name).unwrap_or_else(|| match label.starts_with("contexts[") {
            true => format!("sessions.{name}"),
            false => format!("{label}{name}"),
        })
    }

    /// The label of merged context `i` (`contexts[admin].`).
    pub(crate) fn context_label(&self, i: usize) -> &str {
        &self.contexts[i].0
    }

    /// The value at `key` (`gateway.upstreams[1].prefix`,
    /// `contexts[admin].timeout`, `sessions.timeout`) in the merged table.
    fn lookup(&self, key: &str) -> Option<&toml::Value> {
        let (mut table, rest) = if let Some(rest) = key.strip_prefix("sessions.") {
            (Some(&self.sessions), rest)
        } else if key.starts_with("contexts[") {
            let (label, rest) = key.split_once("].")?;
            let i = self.contexts.iter().position(|(l, _)| l.strip_suffix("].") == Some(label))?;
            (self.table.get("contexts")?.get(i)?.as_table(), rest)
        } else {
            (Some(&self.table), key)
        };
        let mut v = None;
        for part in rest.split('.') {
            let (name, index) = match part.split_once('[') {
                Some((n, i)) => (n, i.trim_end_matches(']').parse::<usize>().ok()),
                None => (part, None),
            };
            v = table?.get(name);
            if let Some(i) = index {
                v = v?.get(i);
            }
            table = v.and_then(toml::Value::as_table);
        }
        v
    }

    /// The value at `key` as written: a command-line value as typed, a file
    /// value in TOML (strings quoted); `default` when the key is not given.
    pub(crate) fn shown_or(&self, key: &str, default: impl FnOnce() -> String) -> String {
        match self.cli.get(key) {
            Some(v) => v.clone(),
            None => self.lookup(key).map(toml_display).unwrap_or_else(default),
        }
    }

    /// Serde's error as a [`ConfigError`] naming the key, the value and the fix.
    fn error(&self, e: &serde_path_to_error::Error<toml::de::Error>) -> ConfigError {
        let msg = e.inner().message().to_string();
        let mut segs: Vec<String> = Vec::new();
        let mut path = String::new();
        let mut label = String::new();
        let mut scopes = vec![Scope::Server];
        for seg in e.path().iter() {
            match seg {
                Segment::Map { key } => segs.push(key.clone()),
                Segment::Seq { index } => {
                    let last = segs.pop().unwrap_or_default();
                    segs.push(format!("{last}[{index}]"));
                }
                _ => segs.push("?".into()),
            }
        }
        // The unknown field is reported at its table; name it too.
        let unknown = msg.strip_prefix("unknown field `").and_then(|m| m.split('`').next()).map(str::to_string);
        if let Some(u) = &unknown
            && segs.last() != Some(u)
        {
            segs.push(u.clone());
        }
        let missing = msg.strip_prefix("missing field `").and_then(|m| m.split('`').next()).map(str::to_string);
        if let Some(m) = &missing {
            segs.push(m.clone());
        }
        let leaf = segs.pop().unwrap_or_default();
        for s in &segs {
            let table = s.split('[').next().unwrap_or_default();
            (label, scopes) = match (label.as_str(), table) {
                ("", "contexts") => {
                    let i = s[9..].trim_end_matches(']').parse::<usize>().unwrap_or(0);
                    let (l, own) = &self.contexts[i.min(self.contexts.len().saturating_sub(1))];
                    if own.contains(leaf.split('[').next().unwrap_or_default()) {
                        (l.clone(), vec![Scope::Sessions, Scope::Context])
                    } else {
                        ("sessions.".into(), vec![Scope::Sessions])
                    }
                }
                ("gateway.", "upstreams") => (format!("gateway.{s}."), vec![Scope::Upstream]),
                ("gateway.", "filters") => ("gateway.filters.".into(), vec![Scope::Filters]),
                (_, t) => {
                    let scope = TABLES.iter().find(|(n, _)| *n == t).map_or(Scope::Server, |(_, s)| *s);
                    (format!("{label}{s}."), vec![scope])
                }
            };
        }
        path.push_str(&label);
        path.push_str(&leaf);
        if let Some(u) = unknown {
            return unknown_key(&self.source_name, &label, &u, &scopes);
        }
        let name = leaf.split('[').next().unwrap_or_default();
        let item = leaf.contains('[');
        let def = scopes.iter().find_map(|s| keys::find(*s, name));
        if missing.is_some() {
            return invalid(path, "(missing)", missing_reason(&label, name, &scopes));
        }
        let value = self.shown_or(&path, || "(missing)".into());
        let type_error = msg.starts_with("invalid type:") || msg.starts_with("invalid value:");
        let Some(def) = def else {
            // A table itself (`gateway = 5`, `[gateway.upstreams]`).
            let table = format!("{label}{name}");
            let v = value;
            return match table.as_str() {
                "gateway.upstreams" => {
                    invalid(path, v, "write each upstream as a [[gateway.upstreams]] entry with name, url and prefix")
                }
                _ if item => invalid(path, v, format!("write each entry as a [[{table}]] table")),
                _ if type_error => {
                    invalid(path, v, format!("must be a table: write [{table}] on its own line, then its keys"))
                }
                _ => invalid(path, v, msg),
            };
        };
        let reason = match def.kind {
            Kind::List { .. } if type_error && item => {
                format!("each entry must be a quoted string; {}", def.expected())
            }
            Kind::List { .. } if type_error && value.starts_with('"') => {
                format!("must be an array of strings: write {} = [{value}]", def.name)
            }
            Kind::Choice { choices, .. } if msg.starts_with("unknown variant") || type_error => {
                format!("use one of {}", choices.join(", "))
            }
            _ if type_error => def.expected(),
            _ => msg,
        };
        let value = match (def.kind, &value) {
            (Kind::List { .. }, v) if v == "(an array)" && !item => {
                format!("{} entries", self.lookup(&path).and_then(toml::Value::as_array).map_or(0, Vec::len))
            }
            (Kind::Text { rule: Rule::StoreUrl, .. }, v) => super::store_url::redact(v),
            _ => value,
        };
        invalid(path, value, reason)
    }
}

/// `contexts[NAME].` for an entry with a valid name, else `contexts[INDEX].`.
fn context_label(i: usize, e: &toml::Table) -> String {
    match e.get("name").and_then(toml::Value::as_str) {
        Some(n) if keys::valid_token(n) => format!("contexts[{n}]."),
        _ => format!("contexts[{i}]."),
    }
}

fn not_a_table(name: &str, v: &toml::Value) -> ConfigError {
    invalid(name, v, format!("must be a table: write [{name}] on its own line, then its keys"))
}

/// Why a key that has no default is missing, with what to write.
fn missing_reason(label: &str, name: &str, scopes: &[Scope]) -> String {
    let example = match (label, name) {
        ("cluster.", "store") => {
            return "cluster mode needs the shared store: set cluster.store = \"postgres://sessiond@db1/sessions\" \
                    or \"redis://cache:6379/0\""
                .into();
        }
        ("gateway.", "listen") => "\"0.0.0.0:8443\"",
        ("gateway.", "verifier") => "\"htpasswd:/etc/sessiond/users\"",
        ("gateway.", "secret_file") => "\"/etc/sessiond/gateway.secret\"",
        (_, "url") => "\"http://127.0.0.1:9000\"",
        (_, "name") => "\"app\"",
        _ => "…",
    };
    let table = scopes.first().map_or("the table", |s| s.table());
    format!("{table} needs `{name}`, e.g. {name} = {example}")
}

/// Merges one command-line `key=value` into the table. A bare key is a
/// top-level key or else a `[sessions]` key; `[events]`, `[gateway]`,
/// `[gateway.filters]` and `[cluster]` keys take their prefix. Dashes read as
/// underscores. The value replaces the file's, whatever its spelling there.
fn set(t: &mut toml::Table, k: &str, v: &str, cli: &mut HashMap<String, String>) -> Result<(), ConfigError> {
    let key = k.trim().replace('-', "_");
    let (tables, scope, leaf): (&[&str], Scope, &str) = match key.split_once('.') {
        Some(("sessions", leaf)) => (&["sessions"], Scope::Sessions, leaf),
        Some(("events", leaf)) => (&["events"], Scope::Events, leaf),
        // Setting a cluster key turns cluster mode on, as a [cluster] table does.
        Some(("cluster", leaf)) => (&["cluster"], Scope::Cluster, leaf),
        Some(("gateway", rest)) if rest.starts_with("upstreams") => {
            return Err(invalid(
                k,
                v,
                "[[gateway.upstreams]] entries can be set only in the config file; \
                 gateway.KEY and gateway.filters.KEY set the other gateway keys",
            ));
        }
        // Setting a gateway key turns gateway mode on, as a [gateway] table
        // in the file does; its required keys are then checked.
        Some(("gateway", rest)) => match rest.strip_prefix("filters.") {
            Some(leaf) => (&["gateway", "filters"], Scope::Filters, leaf),
            None => (&["gateway"], Scope::Gateway, rest),
        },
        Some(("contexts", _)) => {
            return Err(invalid(
                k,
                v,
                "[[contexts]] entries can be set only in the config file; sessions.KEY sets every context",
            ));
        }
        Some((table, _)) => {
            return Err(invalid(
                k,
                v,
                format!(
                    "there is no [{table}] table; use KEY, sessions.KEY, events.KEY, gateway.KEY, \
                     gateway.filters.KEY or cluster.KEY"
                ),
            ));
        }
        None if keys::find(Scope::Server, &key).is_some() => (&[], Scope::Server, key.as_str()),
        None => (&["sessions"], Scope::Sessions, key.as_str()),
    };
    let label: String = tables.iter().map(|t| format!("{t}.")).collect();
    let def = match keys::find(scope, leaf) {
        Some(def) => def,
        None if !key.contains('.') => {
            return Err(unknown_key("command line", "", leaf, &[Scope::Server, Scope::Sessions]));
        }
        None => return Err(unknown_key("command line", &label, leaf, &[scope])),
    };
    let value = def.arg_value(&format!("{label}{leaf}"), v)?;
    let mut table = t;
    for name in tables {
        let entry = table.entry(name.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = match entry {
            toml::Value::Table(sub) => sub,
            other => return Err(not_a_table(&label[..label.len() - 1], other)),
        };
    }
    table.retain(|spelled, _| keys::find(scope, spelled).is_none_or(|d| d.name != def.name));
    table.insert(leaf.to_string(), value);
    cli.insert(format!("{label}{leaf}"), v.to_string());
    Ok(())
}

/// An unknown key: where `spelled` belongs if not in `scopes`, else which
/// keys `scopes` accept.
fn unknown_key(source_name: &str, label: &str, spelled: &str, scopes: &[Scope]) -> ConfigError {
    const GATEWAY_TABLES: [Scope; 3] = [Scope::Gateway, Scope::Upstream, Scope::Filters];
    // Inside the gateway's tables, point at the gateway's other tables, else
    // at the top level, never further: `timeout` there is not "the [events]
    // key", and `listen` there is `gateway.listen`.
    let in_gateway = scopes.iter().all(|s| GATEWAY_TABLES.contains(s));
    let spelled_as =
        |k: &&keys::KeyDef| !scopes.contains(&k.scope) && (k.name == spelled || k.aliases.contains(&spelled));
    let elsewhere = if in_gateway {
        let mut near = KEYS.iter().filter(spelled_as);
        near.clone().find(|k| GATEWAY_TABLES.contains(&k.scope)).or_else(|| near.find(|k| k.scope == Scope::Server))
    } else {
        KEYS.iter().find(spelled_as)
    };
    let help = match elsewhere.map(|k| (k.scope, k)) {
        Some((Scope::Server, k)) => format!("`{}` is a top-level key: move it above the first [table] header", k.name),
        Some((Scope::Context, k)) => format!("only a [[contexts]] entry takes `{}`", k.name),
        Some((scope, k)) => format!("it belongs in {}: write it as `{}`", scope.table(), k.qualified()),
        None if scopes.contains(&Scope::Server) && scopes.contains(&Scope::Sessions) => {
            format!(
                "the keys accepted here are: {}; [events] keys are written events.KEY, [gateway] keys gateway.KEY",
                keys::names_in(scopes)
            )
        }
        None => match scopes {
            [one] if *one != Scope::Server => {
                format!("the keys accepted in {} are: {}", one.table(), keys::names_in(scopes))
            }
            _ => format!("the keys accepted here are: {}", keys::names_in(scopes)),
        },
    };
    ConfigError::UnknownKey { source_name: source_name.into(), key: format!("{label}{spelled}"), help }
}

// ---- deserialize_with helpers: limits and string rules ----

/// A whole number in `MIN..=MAX`.
pub(super) fn int<'de, D, T, const MIN: u64, const MAX: u64>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    struct V<const MIN: u64, const MAX: u64>;
    impl<const MIN: u64, const MAX: u64> Visitor<'_> for V<MIN, MAX> {
        type Value = u64;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            write!(f, "a whole number between {MIN} and {MAX}")
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<u64, E> {
            let n = u64::try_from(v).map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))?;
            self.visit_u64(n)
        }
        fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<u64, E> {
            match (MIN..=MAX).contains(&n) {
                true => Ok(n),
                false => Err(E::custom(format!("must be between {MIN} and {MAX}"))),
            }
        }
    }
    let n = d.deserialize_u64(V::<MIN, MAX>)?;
    T::try_from(n).map_err(|_| D::Error::custom(format!("{n} does not fit this key's type")))
}

/// A duration in seconds, whole or decimal, between `MIN_MS` and `MAX_MS`
/// milliseconds.
pub(super) fn secs<'de, D, const MIN_MS: u64, const MAX_MS: u64>(d: D) -> Result<Duration, D::Error>
where
    D: Deserializer<'de>,
{
    struct V<const MIN_MS: u64, const MAX_MS: u64>;
    impl<const MIN_MS: u64, const MAX_MS: u64> Visitor<'_> for V<MIN_MS, MAX_MS> {
        type Value = Duration;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a number of seconds")
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Duration, E> {
            self.visit_f64(v as f64)
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Duration, E> {
            self.visit_f64(v as f64)
        }
        fn visit_f64<E: serde::de::Error>(self, s: f64) -> Result<Duration, E> {
            let (min, max) = (MIN_MS as f64 / 1000.0, MAX_MS as f64 / 1000.0);
            match s.is_finite() && (min..=max).contains(&s) {
                true => Ok(Duration::from_secs_f64(s)),
                false => Err(E::custom(format!("must be between {min} and {max} seconds"))),
            }
        }
    }
    d.deserialize_any(V::<MIN_MS, MAX_MS>)
}

/// Serialises a duration as seconds (`10.0`), as the file writes it.
pub(super) fn ser_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// A string that passes `rule`.
fn checked<'de, D: Deserializer<'de>>(d: D, rule: Rule) -> Result<String, D::Error> {
    let s: String = serde::Deserialize::deserialize(d)?;
    rule.check(&s).map_err(D::Error::custom)?;
    Ok(s)
}

macro_rules! rules {
    ($($(#[$doc:meta])* $name:ident => $rule:ident;)*) => {$(
        $(#[$doc])*
        pub(super) fn $name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
            checked(d, Rule::$rule)
        }
    )*};
}

rules! {
    /// 1-64 letters, digits, `_` or `-`.
    token => Token;
    /// A cookie `Path`.
    cookie_path => CookiePath;
    /// An upstream's URL.
    upstream_url => UpstreamUrl;
}

/// A non-empty path.
pub(super) fn path<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    checked(d, Rule::Path).map(PathBuf::from)
}

/// An optional non-empty path.
pub(super) fn opt_path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    path(d).map(Some)
}

/// Any string; empty is unset.
pub(super) fn opt_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s: String = serde::Deserialize::deserialize(d)?;
    Ok(Some(s).filter(|s| !s.is_empty()))
}

/// An `http(s)://` URL; empty is off.
pub(super) fn opt_http_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    checked(d, Rule::HttpUrl).map(|s| Some(s).filter(|s| !s.is_empty()))
}

/// `htpasswd:FILE`, as its file.
pub(super) fn verifier<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    let s: String = serde::Deserialize::deserialize(d)?;
    keys::check_verifier(&s).map(PathBuf::from).map_err(D::Error::custom)
}

/// An upstream's path prefix, without its trailing `/` (except `/` itself).
pub(super) fn url_prefix<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let p = checked(d, Rule::UrlPrefix)?;
    Ok(match p.trim_end_matches('/') {
        "" => "/".to_string(),
        trimmed => trimmed.to_string(),
    })
}

/// An array of at most `max` strings, each passing `rule` and not empty.
fn list<'de, D: Deserializer<'de>>(d: D, rule: Rule, max: usize) -> Result<Vec<String>, D::Error> {
    struct Item(Rule);
    impl<'de> serde::de::DeserializeSeed<'de> for Item {
        type Value = String;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
            let s = checked(d, self.0)?;
            // An empty string is "off" for a single URL, never an entry.
            if s.is_empty() {
                return Err(D::Error::custom("an empty entry; remove it"));
            }
            Ok(s)
        }
    }
    struct V(Rule, usize);
    impl<'de> Visitor<'de> for V {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an array of strings")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
            let mut out = Vec::new();
            while let Some(s) = seq.next_element_seed(Item(self.0))? {
                out.push(s);
            }
            match out.len() > self.1 {
                true => Err(A::Error::custom(format!("at most {} entries; remove {}", self.1, out.len() - self.1))),
                false => Ok(out),
            }
        }
    }
    d.deserialize_seq(V(rule, max))
}

/// `gateway.session_manager`.
pub(super) fn http_urls<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    list(d, Rule::HttpUrl, keys::GATEWAY_MAX_SESSION_MANAGERS)
}

/// A `[gateway.filters]` set.
pub(super) fn filter_items<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    list(d, Rule::FilterItem, keys::GATEWAY_FILTER_MAX_ITEMS)
}

/// `gateway.trusted_proxies`: addresses (one host) or CIDR blocks (each
/// item passed [`Rule::IpNet`], which parses it the same way).
pub(super) fn ip_nets<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ipnet::IpNet>, D::Error> {
    let items = list(d, Rule::IpNet, keys::GATEWAY_MAX_TRUSTED_PROXIES)?;
    items.iter().map(|s| keys::parse_ip_net(s).map_err(D::Error::custom)).collect()
}

/// `cookie_same_site`, any letter case.
pub(super) fn same_site<'de, D: Deserializer<'de>>(d: D) -> Result<cookie::SameSite, D::Error> {
    let s: String = serde::Deserialize::deserialize(d)?;
    match s.to_ascii_lowercase().as_str() {
        "strict" => Ok(cookie::SameSite::Strict),
        "lax" => Ok(cookie::SameSite::Lax),
        "none" => Ok(cookie::SameSite::None),
        _ => Err(D::Error::unknown_variant(&s, &["Strict", "Lax", "None"])),
    }
}

/// `cookie_same_site` as the file writes it (`Lax`).
pub(super) fn ser_same_site<S: serde::Serializer>(v: &cookie::SameSite, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// `cluster.store`, checked by the store client's own parser.
pub(super) fn store_url<'de, D: Deserializer<'de>>(d: D) -> Result<super::store_url::StoreUrl, D::Error> {
    let s: String = serde::Deserialize::deserialize(d)?;
    super::store_url::StoreUrl::parse(&s).map_err(D::Error::custom)
}

/// Defaults for fields of tables that have required keys (and so no
/// `Default`).
pub(super) mod dflt {
    use std::time::Duration;

    /// A whole number.
    pub fn int<T: From<u32>, const N: u32>() -> T {
        T::from(N)
    }

    /// A duration of `MS` milliseconds.
    pub fn ms<const MS: u64>() -> Duration {
        Duration::from_millis(MS)
    }

    /// `gateway.context`.
    pub fn context() -> String {
        "default".into()
    }

    /// `gateway.upstreams[].prefix`.
    pub fn root() -> String {
        "/".into()
    }
}
