//! `lhcluster notify-broker`: runs a notification broker until SIGINT /
//! SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use lhcluster::notify::{NotifyBroker, NotifyBrokerConfig};

use crate::commands::keys::{self, SecretKeyFlag};
use crate::common::{parse_metrics_addr, set};
use crate::daemon::{self, ConfigFlags, InputLimitFlags, InputLimits};

/// Run a notify broker: subscribers connect to one endpoint, publishers
/// to the other.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  lhcluster notify-broker --subscribers tcp://*:5560 --publishers tcp://*:5561\n\n\
The older names --frontend (subscribers) and --backend (publishers) still work, with a warning."
)]
pub struct Args {
    /// Endpoint subscribers connect to (`subscribe --to`).
    #[arg(long, value_name = "ENDPOINT")]
    subscribers: Option<String>,
    /// Endpoint publishers connect to (`publish --to`).
    #[arg(long, value_name = "ENDPOINT")]
    publishers: Option<String>,
    /// Deprecated name of --subscribers.
    #[arg(long, hide = true, conflicts_with = "subscribers")]
    frontend: Option<String>,
    /// Deprecated name of --publishers.
    #[arg(long, hide = true, conflicts_with = "publishers")]
    backend: Option<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics and a health check
    /// at http://ADDR/healthz (ADDR: HOST:PORT, e.g. 127.0.0.1:9102).
    #[arg(long, value_name = "ADDR", value_parser = parse_metrics_addr)]
    metrics: Option<String>,
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
        for (old, new, given) in [
            ("--frontend", "--subscribers", &self.frontend),
            ("--backend", "--publishers", &self.backend),
        ] {
            if given.is_some() {
                tracing::warn!("{old} is deprecated: use {new} (same meaning)");
            }
        }
        set(&mut config.frontend, &self.subscribers);
        set(&mut config.frontend, &self.frontend);
        set(&mut config.backend, &self.publishers);
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
    // SIGHUP: the key lists read again (the config file's and the key
    // files), put in force for the handshakes and notifications to come.
    let reload = |broker: &NotifyBroker| -> anyhow::Result<()> {
        let fresh = args.config()?;
        broker.reload_keys(fresh.curve_subscriber_keys, fresh.curve_publisher_keys)?;
        Ok(())
    };
    daemon::run(
        "notify-broker",
        config,
        NotifyBroker::start,
        NotifyBroker::stop,
        args.metrics.as_deref(),
        Some(&reload),
    )
}
