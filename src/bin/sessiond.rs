//! The `sessiond` binary: parses flags, loads the configuration and hands
//! over to the master (`sessiond::master::run`). Nothing else lives here.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use sessiond::config::{Config, Overrides};

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
    /// listen: host:port or unix:/path.
    #[arg(long)]
    listen: Option<String>,
    /// data_dir.
    #[arg(long)]
    data_dir: Option<String>,
    /// max_procs (iPlanet MaxProcs): worker processes.
    #[arg(long)]
    max_procs: Option<String>,
    /// reuse_port: one SO_REUSEPORT socket per worker.
    #[arg(long)]
    reuse_port: Option<String>,
    /// user to switch to after binding.
    #[arg(long)]
    user: Option<String>,
    /// node_id carried in session ids.
    #[arg(long)]
    node_id: Option<String>,
    /// log_level: error, warn, info, debug, trace.
    #[arg(long)]
    log_level: Option<String>,
    /// shutdown_timeout in seconds.
    #[arg(long)]
    shutdown_timeout: Option<String>,
    /// sessions.max_sessions (maxSessions).
    #[arg(long)]
    max_sessions: Option<String>,
    /// sessions.max_values_per_session (maxValuesPerSession).
    #[arg(long)]
    max_values_per_session: Option<String>,
    /// sessions.max_name_size.
    #[arg(long)]
    max_name_size: Option<String>,
    /// sessions.max_value_size (maxValueSize).
    #[arg(long)]
    max_value_size: Option<String>,
    /// sessions.timeout in seconds (timeOut).
    #[arg(long)]
    timeout: Option<String>,
    /// sessions.absolute_timeout in seconds.
    #[arg(long)]
    absolute_timeout: Option<String>,
    /// sessions.reap_interval in seconds (reapInterval).
    #[arg(long)]
    reap_interval: Option<String>,
    /// sessions.max_locks (maxLocks).
    #[arg(long)]
    max_locks: Option<String>,
    /// sessions.lock_timeout in seconds.
    #[arg(long)]
    lock_timeout: Option<String>,
    /// sessions.when_full: refuse or evict-oldest.
    #[arg(long)]
    when_full: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut o = Overrides { config: cli.config.clone(), pairs: Vec::new() };
    let named = [
        ("listen", &cli.listen),
        ("data_dir", &cli.data_dir),
        ("max_procs", &cli.max_procs),
        ("reuse_port", &cli.reuse_port),
        ("user", &cli.user),
        ("node_id", &cli.node_id),
        ("log_level", &cli.log_level),
        ("shutdown_timeout", &cli.shutdown_timeout),
        ("max_sessions", &cli.max_sessions),
        ("max_values_per_session", &cli.max_values_per_session),
        ("max_name_size", &cli.max_name_size),
        ("max_value_size", &cli.max_value_size),
        ("timeout", &cli.timeout),
        ("absolute_timeout", &cli.absolute_timeout),
        ("reap_interval", &cli.reap_interval),
        ("max_locks", &cli.max_locks),
        ("lock_timeout", &cli.lock_timeout),
        ("when_full", &cli.when_full),
    ];
    for (k, v) in named {
        if let Some(v) = v {
            o.pairs.push((k.to_string(), v.clone()));
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
    if cli.check_config {
        print!("{}", cfg.to_toml());
        return ExitCode::SUCCESS;
    }
    sessiond::logging::init(&cfg.log_level);
    ExitCode::from(sessiond::master::run(o, cfg) as u8)
}
