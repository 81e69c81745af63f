//! `config_parse`: the configuration loader, through its public entry
//! point only (`Config::load` with an `Overrides` naming a file), so the
//! target holds whatever parses the text inside.
//!
//! The input is the config file's bytes, then optionally a NUL byte and
//! `--set` pairs, one `key=value` a line. Property: loading never panics;
//! a refusal is an error value whose message renders, and an accepted
//! configuration renders as TOML (`--check-config`) without panicking.

use std::io::Write;

use sessiond::config::{Config, Overrides};

/// Loads `data` as a config file plus `--set` pairs; panics only if the
/// loader does.
pub fn check(data: &[u8]) {
    let (file, pairs) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("sessiond.toml");
    std::fs::File::create(&path).and_then(|mut f| f.write_all(file)).expect("write the config file");
    let pairs = String::from_utf8_lossy(pairs)
        .lines()
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (l.to_string(), String::new()),
        })
        .collect();
    match Config::load(&Overrides { config: Some(path), pairs }) {
        Ok(cfg) => drop(cfg.to_toml()),
        Err(e) => drop(e.to_string()),
    }
}
