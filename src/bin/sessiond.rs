//! The `sessiond` binary: parses flags, loads the configuration and hands
//! over to the master (`sessiond::master::run`). Nothing else lives here.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser};
use sessiond::config::{self, Config, KEYS, KeyDef, Overrides, Scope};

/// Web sessions in shared memory: a prefork HTTP server over mmap'd session regions.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// TOML config file (default: /etc/sessiond/sessiond.toml if it exists).
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Print the effective configuration and exit.
    #[arg(long)]
    check_config: bool,
    /// iPlanet-style settings, e.g. "maxSessions=20,timeOut=300".
    #[arg(long, value_name = "ARGS")]
    init_args: Option<String>,
    /// Set any key, e.g. --set sessions.max_sessions=5000 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Print the configuration reference (every key, as a Markdown table) and exit.
    #[arg(long)]
    config_reference: bool,
    // Every top-level and [sessions] key also has its own flag
    // (`--max-sessions 5000`), added from `config::KEYS` by `with_key_flags`.
}

/// The keys that get a named flag: every top-level and `[sessions]` key.
fn flag_keys() -> impl Iterator<Item = &'static KeyDef> {
    KEYS.iter().filter(|k| matches!(k.scope, Scope::Server | Scope::Sessions))
}

/// Adds one `--dashed-name VALUE` flag per key of [`flag_keys`].
fn with_key_flags(mut cmd: clap::Command) -> clap::Command {
    for k in flag_keys() {
        // clap keeps flag names as `&'static str`; these few short strings
        // live as long as the process anyway.
        let long: &'static str = Box::leak(k.name.replace('_', "-").into_boxed_str());
        let aliases = k.aliases.join(", ");
        let alias_note = if aliases.is_empty() { String::new() } else { format!("; alias {aliases}") };
        let help = format!("{} [{}{alias_note}; default {}]", k.doc, k.qualified(), k.default_text().replace('`', ""));
        cmd = cmd.arg(
            clap::Arg::new(k.name)
                .long(long)
                .overrides_with(k.name)
                .value_name(k.value_name())
                .help(help)
                .help_heading("Configuration keys (see --config-reference)"),
        );
    }
    cmd
}

fn main() -> ExitCode {
    let matches = with_key_flags(Cli::command()).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    if cli.config_reference {
        print!("{}", config::reference_markdown());
        return ExitCode::SUCCESS;
    }
    let mut o = Overrides { config: cli.config.clone(), pairs: Vec::new() };
    for k in flag_keys() {
        if let Some(v) = matches.get_one::<String>(k.name) {
            o.pairs.push((k.qualified(), v.clone()));
        }
    }
    for kv in &cli.set {
        match kv.split_once('=') {
            Some((k, v)) => o.pairs.push((k.trim().to_string(), v.trim().to_string())),
            None => {
                eprintln!("sessiond: --set {kv:?}: expected KEY=VALUE, e.g. --set sessions.max_sessions=5000");
                return ExitCode::from(2);
            }
        }
    }
    if let Some(a) = &cli.init_args
        && let Err(e) = o.add_init_args(a)
    {
        eprintln!("sessiond: {e}");
        return ExitCode::from(2);
    }
    let cfg = match Config::load(&o) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sessiond: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    // The password file is the gateway's, parsed by its verifier: checked
    // here too, so a bad line stops the start (and --check-config) with its
    // line number instead of failing in every worker.
    if let Some(g) = &cfg.gateway
        && let Err(e) = sessiond::gateway::verifier::Verifier::load(&g.verifier)
    {
        eprintln!("sessiond: configuration error: gateway.verifier: {e}");
        return ExitCode::from(2);
    }
    if cli.check_config {
        print!("{}", cfg.to_toml());
        return ExitCode::SUCCESS;
    }
    sessiond::logging::init(cfg.log_level.as_str());
    for note in &cfg.notes {
        log::info!("{note}");
    }
    ExitCode::from(sessiond::master::run(o, cfg) as u8)
}
