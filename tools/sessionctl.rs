//! `sessionctl`: inspect and manage a sessiond data directory. Parses flags
//! and calls `sessiond::ctl`; nothing else lives here.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sessiond::config::{Config, Overrides};
use sessiond::ctl::{self, Attached, EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE, Out};

/// Inspect and manage sessiond's session regions (works with the server running or stopped).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Config file, as for sessiond (default: /etc/sessiond/sessiond.toml if it exists).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Data directory (overrides the config's data_dir).
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Print JSON for scripts.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Capacity, fill per stripe, lock and lifecycle counters, clean flag, format version.
    Stats,
    /// Sessions with created, last access, expiry and value count.
    List {
        /// Context (default: default).
        #[arg(long)]
        context: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Show whole ids instead of a short prefix.
        #[arg(long)]
        full_ids: bool,
    },
    /// One session's metadata and attributes (text or hex).
    Show {
        /// The session id.
        id: String,
    },
    /// Invalidate one session.
    Expire {
        /// The session id.
        id: String,
    },
    /// Delete the Version file; a running sessiond rebuilds its caches now (SIGHUP).
    Clear,
    /// Check every header, stripe and slot; exit 1 if anything is wrong. Changes no session data.
    Verify,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    sessiond::logging::set_role(sessiond::logging::Role::Tool);
    sessiond::logging::init("warn");
    let dir = match &cli.data_dir {
        Some(d) => d.clone(),
        None => match Config::load(&Overrides { config: cli.config.clone(), pairs: vec![] }) {
            Ok(c) => c.data_dir,
            Err(e) => {
                eprintln!("sessionctl: configuration error: {e}");
                return ExitCode::from(EXIT_USAGE as u8);
            }
        },
    };
    let out = Out { json: cli.json };
    let result = match &cli.cmd {
        Cmd::Clear => ctl::clear(&dir).map(|s| (s, true)),
        Cmd::Verify => ctl::verify(&dir, out),
        cmd => Attached::open(&dir).and_then(|a| {
            match cmd {
                Cmd::Stats => ctl::stats(&a, out),
                Cmd::List { context, limit, full_ids } => ctl::list(&a, context.as_deref(), *limit, *full_ids, out),
                Cmd::Show { id } => ctl::show(&a, id, out),
                Cmd::Expire { id } => ctl::expire(&a, id),
                Cmd::Clear | Cmd::Verify => unreachable!("handled above"),
            }
            .map(|s| (s, true))
        }),
    };
    match result {
        Ok((text, ok)) => {
            print!("{text}");
            ExitCode::from(if ok { EXIT_OK } else { EXIT_PROBLEMS } as u8)
        }
        Err(e) => {
            eprintln!("sessionctl: {}", e.message);
            ExitCode::from(e.code as u8)
        }
    }
}
