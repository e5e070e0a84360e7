//! `lhcluster`: the daemon (broker, proxy, notify broker, whole clusters from
//! a TOML file) and the operator's tools (request, worker, publish,
//! subscribe, stats, bench). Built on the library's public API only.

// A binary: `pub` marks what a module offers the rest of the crate.
#![allow(unreachable_pub)]

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

mod commands;
mod common;
mod daemon;
mod payload;

/// Brokered request queuing and notifications over ZeroMQ.
#[derive(Debug, Parser)]
#[command(name = "lhcluster", version, about, propagate_version = true)]
struct Cli {
    /// Log line format (the level comes from RUST_LOG; default `info` for
    /// the daemons, `warn` for request, publish, subscribe and stats).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    Broker(commands::broker::Args),
    Proxy(commands::proxy::Args),
    NotifyBroker(commands::notify_broker::Args),
    Up(commands::up::Args),
    Request(commands::request::Args),
    Worker(commands::worker::Args),
    Publish(commands::publish::Args),
    Subscribe(commands::subscribe::Args),
    Stats(commands::stats::Args),
    Watch(commands::watch::Args),
    Bench(commands::bench::Args),
    Keygen(commands::keygen::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Daemons say what they do; one-shot tools print their answer, and log
    // only what went wrong (RUST_LOG overrides both).
    let default_level = match cli.command {
        Command::Request(_)
        | Command::Publish(_)
        | Command::Stats(_)
        | Command::Subscribe(_)
        | Command::Watch(_) => "warn",
        _ => "info",
    };
    init_logging(cli.log_format, default_level);
    let result = match cli.command {
        Command::Broker(args) => commands::broker::run(args),
        Command::Proxy(args) => commands::proxy::run(args),
        Command::NotifyBroker(args) => commands::notify_broker::run(args),
        Command::Up(args) => commands::up::run(args),
        Command::Request(args) => commands::request::run(args),
        Command::Worker(args) => commands::worker::run(args),
        Command::Publish(args) => commands::publish::run(args),
        Command::Subscribe(args) => commands::subscribe::run(args),
        Command::Stats(args) => commands::stats::run(args),
        Command::Watch(args) => commands::watch::run(args),
        Command::Bench(args) => commands::bench::run(args),
        Command::Keygen(args) => commands::keygen::run(args),
    };
    // Every role is stopped by now: let what they queued (a notification,
    // a goodbye to peers) leave before the process exits.
    lhcluster::terminate_context(std::time::Duration::from_secs(2));
    match result {
        Ok(code) => code,
        Err(e) => {
            // One clear line, no backtrace.
            eprintln!("lhcluster: error: {e:#}");
            ExitCode::from(common::EXIT_ERROR)
        }
    }
}

fn init_logging(format: LogFormat, default_level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
