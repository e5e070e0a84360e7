//! `lhcluster notify-broker`: runs a notification broker until SIGINT /
//! SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use lhcluster::notify::{NotifyBroker, NotifyBrokerConfig};

use crate::common::{parse_duration, read_toml, set, shutdown_signal};

/// Run a notify broker: subscribers connect to the frontend, publishers to
/// the backend.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  lhcluster notify-broker --frontend tcp://*:5560 --backend tcp://*:5561"
)]
pub struct Args {
    /// Endpoint for subscribers.
    #[arg(long)]
    frontend: Option<String>,
    /// Endpoint for publishers.
    #[arg(long)]
    backend: Option<String>,
    /// TOML file with the notify broker's settings, keys as a
    /// `[[notify_broker]]` table of a cluster file (flags win over the file).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Log the stats at info level this often.
    #[arg(long, visible_alias = "stats-interval", value_parser = parse_duration)]
    stats_log_interval: Option<Duration>,
}

impl Args {
    /// The file's configuration (or the defaults), with the flags applied.
    fn config(&self) -> anyhow::Result<NotifyBrokerConfig> {
        let mut config = match &self.config {
            Some(path) => read_toml(path)?,
            None => NotifyBrokerConfig::new("", ""),
        };
        set(&mut config.frontend, &self.frontend);
        set(&mut config.backend, &self.backend);
        if self.stats_log_interval.is_some() {
            config.stats_log_interval = self.stats_log_interval;
        }
        Ok(config)
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = args.config()?;
    let signal = shutdown_signal()?;
    let broker = NotifyBroker::start(config)?;
    println!(
        "notify-broker frontend={} backend={}",
        broker.frontend(),
        broker.backend()
    );
    let _ = signal.recv();
    tracing::info!("signal received: stopping");
    broker.stop()?;
    Ok(ExitCode::SUCCESS)
}
