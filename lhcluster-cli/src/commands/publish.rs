//! `lhcluster publish`: publishes one notification.

use std::process::ExitCode;
use std::time::Duration;

use lhcluster::notify::{NotifyPublisher, NotifyPublisherConfig};

use crate::commands::keys::{SecretKeyFlag, ServerKeyFlag};
use crate::common::parse_duration;

/// Publish one notification to a notify broker.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  lhcluster publish --to tcp://127.0.0.1:5561 orders '{\"id\": 7}'"
)]
pub struct Args {
    /// The notify broker's backend endpoint; repeat it to publish to
    /// several at once.
    #[arg(long, required = true)]
    to: Vec<String>,
    /// Notification type (topic).
    topic: String,
    /// Payload text.
    payload: Option<String>,
    /// Optional notification id.
    #[arg(long)]
    id: Option<u64>,
    /// How long to wait for the connection.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    timeout: Duration,
    #[command(flatten)]
    server_key: ServerKeyFlag,
    #[command(flatten)]
    secret_key: SecretKeyFlag,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut config = NotifyPublisherConfig::new(&args.to[0]);
    config.endpoints.clone_from(&args.to);
    args.server_key.apply(&mut config.curve_server_key)?;
    args.secret_key.apply(&mut config.curve_secret_key)?;
    let publisher = NotifyPublisher::connect(config)?;
    if !publisher.wait_connected(args.timeout) {
        anyhow::bail!(
            "could not connect to {} within {:?}",
            args.to.join(", "),
            args.timeout
        );
    }
    let payload = args
        .payload
        .as_deref()
        .map(|p| vec![p.as_bytes().into()])
        .unwrap_or_default();
    match args.id {
        Some(id) => publisher.publish_with_id(&args.topic, id, payload)?,
        None => publisher.publish(&args.topic, payload)?,
    }
    // Let the message leave before the socket closes.
    publisher.stop()?;
    Ok(ExitCode::SUCCESS)
}
