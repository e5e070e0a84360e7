//! `lhcluster notify-broker`: runs a notification broker until SIGINT /
//! SIGTERM.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use lhcluster::notify::{NotifyBroker, NotifyBrokerConfig};
use serde::Deserialize;

use crate::common::{parse_duration, shutdown_signal};

/// Run a notify broker: subscribers connect to the frontend, publishers to
/// the backend.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  lhcluster notify-broker --frontend tcp://*:5560 --backend tcp://*:5561"
)]
pub struct Args {
    /// Endpoint for subscribers.
    #[arg(long)]
    frontend: String,
    /// Endpoint for publishers.
    #[arg(long)]
    backend: String,
    /// Log the stats at info level this often.
    #[arg(long, value_parser = parse_duration)]
    stats_interval: Option<Duration>,
}

/// A notify broker in a cluster file (`[[notify_broker]]`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyBrokerSection {
    /// Subscribers' endpoint.
    pub frontend: String,
    /// Publishers' endpoint.
    pub backend: String,
    /// Stats log period.
    pub stats_interval: Option<String>,
}

impl NotifyBrokerSection {
    /// Starts the notify broker this section describes.
    pub fn start(&self) -> anyhow::Result<NotifyBroker> {
        let mut config = NotifyBrokerConfig::new(&self.frontend, &self.backend);
        if let Some(s) = &self.stats_interval {
            config.stats_log_interval = Some(parse_duration(s).map_err(anyhow::Error::msg)?);
        }
        NotifyBroker::start(config).context("starting the notify broker")
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let signal = shutdown_signal()?;
    let section = NotifyBrokerSection {
        frontend: args.frontend,
        backend: args.backend,
        stats_interval: args.stats_interval.map(|d| format!("{}ms", d.as_millis())),
    };
    let broker = section.start()?;
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
