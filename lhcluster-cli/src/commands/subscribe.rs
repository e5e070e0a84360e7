//! `lhcluster subscribe`: prints notifications, one per line.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use lhcluster::notify::{NotifyOutcome, NotifySubscriber, NotifySubscriberConfig};

use crate::commands::keys::{SecretKeyFlag, ServerKeyFlag};
use crate::common::shutdown_signal;

/// Subscribe to notification types and print each notification on a line.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  lhcluster subscribe --to tcp://127.0.0.1:5560 orders payments --count 10 --json"
)]
pub struct Args {
    /// The notify broker's frontend (or a publisher's bound endpoint);
    /// repeat it to give several (one is used at a time, the next when it
    /// goes silent).
    #[arg(long, required = true)]
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
    /// Print JSON lines.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    server_key: ServerKeyFlag,
    #[command(flatten)]
    secret_key: SecretKeyFlag,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let signal = shutdown_signal()?;
    let mut config = NotifySubscriberConfig::new(&args.to[0]);
    config.endpoints.clone_from(&args.to);
    args.server_key.apply(&mut config.curve_server_key)?;
    args.secret_key.apply(&mut config.curve_secret_key)?;
    for topic in &args.topics {
        config = if args.prefix {
            config.prefix(topic)
        } else {
            config.topic(topic)
        };
    }
    let seen = Arc::new(AtomicU64::new(0));
    let (done_tx, done) = crossbeam_channel::bounded::<()>(1);
    let (count, json, counter) = (args.count, args.json, seen.clone());
    let subscriber =
        NotifySubscriber::connect(config, move |n: lhcluster::notify::RawNotification| {
            let text: Vec<u8> = n.payload.iter().flat_map(|f| f.to_vec()).collect();
            let text = String::from_utf8_lossy(&text);
            if json {
                let line =
                    serde_json::json!({"topic": n.topic, "id": n.notify_id, "payload": text});
                println!("{line}");
            } else {
                println!("{} {}", n.topic, text);
            }
            let seen = counter.fetch_add(1, Ordering::SeqCst) + 1;
            if count.is_some_and(|c| seen >= c) {
                let _ = done_tx.try_send(());
                return NotifyOutcome::Stop;
            }
            NotifyOutcome::Continue
        })?;
    eprintln!("subscribed to {:?}", args.topics);
    crossbeam_channel::select! {
        recv(signal) -> _ => tracing::info!("signal received: stopping"),
        recv(done) -> _ => {}
    }
    subscriber.stop()?;
    Ok(ExitCode::SUCCESS)
}
