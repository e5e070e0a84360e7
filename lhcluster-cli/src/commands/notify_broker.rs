//! `lhcluster notify-broker`: runs a notification broker until SIGINT /
//! SIGTERM.

use std::process::ExitCode;

use lhcluster::notify::{NotifyBroker, NotifyBrokerConfig};

use crate::common::set;
use crate::daemon::{self, ConfigFlags};

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
    #[command(flatten)]
    config: ConfigFlags,
}

impl Args {
    /// The file's configuration (or the defaults), with the flags applied.
    fn config(&self) -> anyhow::Result<NotifyBrokerConfig> {
        let mut config: NotifyBrokerConfig = self.config.load()?;
        set(&mut config.frontend, &self.frontend);
        set(&mut config.backend, &self.backend);
        Ok(config)
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = args.config()?;
    daemon::run(
        "notify-broker",
        || NotifyBroker::start(config),
        NotifyBroker::stop,
        None,
    )
}
