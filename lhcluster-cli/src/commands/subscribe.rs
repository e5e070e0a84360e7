//! `lhcluster subscribe`: prints notifications, one per line.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use lhcluster::notify::{NotifyOutcome, NotifySubscriber, NotifySubscriberConfig};

use crate::commands::keys::ConnectKeyFlags;
use crate::common::{
    ProbeKeys, check_notify_side, notify_unreachable, parse_duration, shutdown_signal,
};
use crate::payload;

/// Subscribe to notification types and print each notification on a line.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "A payload that is one MessagePack map or array (what typed publishers send) \
prints as JSON; other payloads as text.\n\nExample:\n  lhcluster subscribe --to tcp://127.0.0.1:5560 orders payments --count 10 --json"
)]
pub struct Args {
    /// The notify broker's subscribers endpoint (`--subscribers` of
    /// notify-broker), or a publisher's bound endpoint; repeat it (or give
    /// a comma-separated list) for several: one is used at a time, the
    /// next when it goes silent.
    #[arg(
        long,
        required = true,
        env = "LHCLUSTER_NOTIFY_SUBSCRIBERS",
        value_delimiter = ',',
        value_name = "ENDPOINT"
    )]
    to: Vec<String>,
    /// Notification types (topics).
    #[arg(required = true)]
    topics: Vec<String>,
    /// Treat the topics as prefixes.
    #[arg(long)]
    prefix: bool,
    /// Exit after this many notifications.
    #[arg(long)]
    count: Option<u64>,
    /// Print JSON lines (the payload as a JSON value when it is a
    /// MessagePack map or array).
    #[arg(long, conflicts_with = "raw")]
    json: bool,
    /// Print each payload's bytes as they are (no JSON view).
    #[arg(long)]
    raw: bool,
    /// How long to wait for the notify broker to confirm the
    /// subscriptions; past it: `cannot reach the notify broker at …`.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    connect_timeout: Duration,
    #[command(flatten)]
    keys: ConnectKeyFlags,
}

#[derive(Clone, Copy)]
enum Format {
    Text,
    Json,
    Raw,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let signal = shutdown_signal()?;
    let mut config = NotifySubscriberConfig::new(&args.to[0]);
    config.endpoints.clone_from(&args.to);
    config.confirm_timeout = Some(args.connect_timeout);
    args.keys
        .apply(&mut config.curve_server_key, &mut config.curve_secret_key)?;
    let keys = ProbeKeys::of(
        config.curve_server_key.as_ref(),
        config.curve_secret_key.as_ref(),
    );
    check_notify_side(&args.to, zmq::SUB, args.connect_timeout, keys, |endpoint| {
        format!(
            "{endpoint} does not take subscribers: it closed a subscriber's handshake, as a notify \
             broker's publishers endpoint does (subscribe to its --subscribers endpoint), or it requires \
             CURVE keys (docs/security.md)"
        )
    })?;
    for topic in &args.topics {
        config = if args.prefix {
            config.prefix(topic)
        } else {
            config.topic(topic)
        };
    }
    let format = match (args.json, args.raw) {
        (true, _) => Format::Json,
        (_, true) => Format::Raw,
        _ => Format::Text,
    };
    let seen = Arc::new(AtomicU64::new(0));
    let (done_tx, done) = crossbeam_channel::bounded::<()>(1);
    let (count, counter) = (args.count, seen.clone());
    let handler = move |n: lhcluster::notify::RawNotification| {
        let bytes: Vec<u8> = n.payload.iter().flat_map(|f| f.to_vec()).collect();
        let mut out = std::io::stdout().lock();
        // A closed stdout (a pager quit) is not worth a panic.
        let _ = match format {
            Format::Json => {
                let (key, value) = payload::to_json_field(&bytes);
                let line = serde_json::json!({"topic": n.topic, "id": n.notify_id, key: value});
                writeln!(out, "{line}")
            }
            Format::Raw => write!(out, "{} ", n.topic)
                .and_then(|()| out.write_all(&bytes))
                .and_then(|()| writeln!(out)),
            Format::Text => writeln!(out, "{} {}", n.topic, payload::to_text(&bytes)),
        }
        .and_then(|()| out.flush());
        let seen = counter.fetch_add(1, Ordering::SeqCst) + 1;
        if count.is_some_and(|c| seen >= c) {
            let _ = done_tx.try_send(());
            return NotifyOutcome::Stop;
        }
        NotifyOutcome::Continue
    };
    let subscriber = match NotifySubscriber::connect(config, handler) {
        Ok(subscriber) => subscriber,
        Err(lhcluster::Error::Connect {
            source: zmq::Error::ENOTCONN,
            ..
        }) => return Err(notify_unreachable(&args.to, zmq::SUB, args.connect_timeout)),
        Err(e) => return Err(e.into()),
    };
    eprintln!("subscribed to {:?}", args.topics);
    crossbeam_channel::select! {
        recv(signal) -> _ => tracing::info!("signal received: stopping"),
        recv(done) -> _ => {}
    }
    subscriber.stop()?;
    Ok(ExitCode::SUCCESS)
}
