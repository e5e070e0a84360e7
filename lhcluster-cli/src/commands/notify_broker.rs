//! `lhcluster notify-broker`: runs a notification broker until SIGINT /
//! SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use lhcluster::notify::{NotifyBroker, NotifyBrokerConfig};

use crate::commands::keys::{self, SecretKeyFlag};
use crate::common::set;
use crate::daemon::{self, ConfigFlags, InputLimitFlags, InputLimits};

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
    #[command(flatten)]
    secret_key: SecretKeyFlag,
    /// File of the subscriber public keys the frontend lets in, one per
    /// line (needs --secret-key).
    #[arg(long, value_name = "FILE")]
    subscriber_keys: Option<PathBuf>,
    /// File of the publisher public keys the backend lets in, one per line
    /// (needs --secret-key).
    #[arg(long, value_name = "FILE")]
    publisher_keys: Option<PathBuf>,
    #[command(flatten)]
    limits: InputLimitFlags,
}

impl Args {
    /// The file's configuration (or the defaults), with the flags applied.
    fn config(&self) -> anyhow::Result<NotifyBrokerConfig> {
        let mut config: NotifyBrokerConfig = self.config.load()?;
        set(&mut config.frontend, &self.frontend);
        set(&mut config.backend, &self.backend);
        self.secret_key.apply(&mut config.curve_secret_key)?;
        keys::apply_list(&self.subscriber_keys, &mut config.curve_subscriber_keys)?;
        keys::apply_list(&self.publisher_keys, &mut config.curve_publisher_keys)?;
        config.apply_limits(&self.limits);
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
        None,
    )
}
