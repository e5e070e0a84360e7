//! `lhcluster publish`: publishes one notification.

use std::process::ExitCode;
use std::time::Duration;

use lhcluster::notify::{NotifyPublisher, NotifyPublisherConfig};

use crate::commands::keys::ConnectKeyFlags;
use crate::common::{ProbeKeys, check_notify_side, notify_unreachable, parse_duration};
use crate::payload;

/// Publish one notification to a notify broker.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  lhcluster publish --to tcp://127.0.0.1:5561 orders 'order 7 placed'\n  \
lhcluster publish --to tcp://127.0.0.1:5561 orders --payload-json '{\"id\": 7}'   (as a typed subscriber decodes it)\n  \
echo hello | lhcluster publish --to tcp://127.0.0.1:5561 greetings -"
)]
pub struct Args {
    /// The notify broker's publishers endpoint (`--publishers` of
    /// notify-broker); repeat it (or give a comma-separated list) to
    /// publish to several at once.
    #[arg(
        long,
        required = true,
        env = "LHCLUSTER_NOTIFY_PUBLISHERS",
        value_delimiter = ',',
        value_name = "ENDPOINT"
    )]
    to: Vec<String>,
    /// Notification type (topic).
    topic: String,
    /// Payload text (one frame); `-` reads it from stdin.
    #[arg(conflicts_with = "payload_json")]
    payload: Option<String>,
    /// Payload as JSON, sent as MessagePack, as a typed subscriber
    /// (#[derive(Notification)]) decodes it; `-` reads it from stdin.
    #[arg(long, value_name = "JSON")]
    payload_json: Option<String>,
    /// Notification id handed to subscribers (0: none).
    #[arg(long)]
    id: Option<u64>,
    /// How long to wait for the notify broker to take notifications from
    /// us; past it: `cannot reach the notify broker at …`, nothing is
    /// published.
    #[arg(long, visible_alias = "timeout", value_parser = parse_duration, default_value = "3s")]
    connect_timeout: Duration,
    #[command(flatten)]
    keys: ConnectKeyFlags,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let payload = match (&args.payload, &args.payload_json) {
        (Some(text), _) => vec![payload::text_or_stdin(text)?.into()],
        (None, Some(json)) => vec![payload::json_to_msgpack(json)?.into()],
        (None, None) => Vec::new(),
    };
    let mut config = NotifyPublisherConfig::new(&args.to[0]);
    config.endpoints.clone_from(&args.to);
    config.connect_timeout = Some(args.connect_timeout);
    args.keys
        .apply(&mut config.curve_server_key, &mut config.curve_secret_key)?;
    let keys = ProbeKeys::of(
        config.curve_server_key.as_ref(),
        config.curve_secret_key.as_ref(),
    );
    check_notify_side(
        &args.to,
        zmq::XPUB,
        args.connect_timeout,
        keys,
        |endpoint| {
            format!(
                "{endpoint} does not take publishers: it closed a publisher's handshake, as a notify \
             broker's subscribers endpoint does (publish to its --publishers endpoint), or it requires \
             CURVE keys (docs/security.md)"
            )
        },
    )?;
    let publisher = match NotifyPublisher::connect(config) {
        Ok(publisher) => publisher,
        Err(lhcluster::Error::Connect {
            source: zmq::Error::ENOTCONN,
            ..
        }) => {
            return Err(notify_unreachable(
                &args.to,
                zmq::XPUB,
                args.connect_timeout,
            ));
        }
        Err(e) => return Err(e.into()),
    };
    match args.id {
        Some(id) => publisher.publish_with_id(&args.topic, id, payload)?,
        None => publisher.publish(&args.topic, payload)?,
    }
    // Let the message leave before the socket closes.
    publisher.stop()?;
    Ok(ExitCode::SUCCESS)
}
