//! Quick start: a broker, two workers and a client in one process, with
//! typed requests, and a notify broker fanning out notifications.
//!
//! Run with `cargo run --release --example quickstart`. It sends a mix of
//! two-way and one-way requests, shows a duplicate being rejected, publishes
//! a notification for every answer it got to a subscriber, prints the
//! responses, the notifications and the brokers' stats, and exits on its
//! own.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::channel;
use std::time::Duration;

use anyhow::{Context, bail};
use lhcluster::client::{Client, ClientConfig, ReceiptKind};
use lhcluster::notify::{
    NotifyBroker, NotifyBrokerConfig, NotifyOutcome, NotifyPublisher, NotifyPublisherConfig,
    NotifySubscriberConfig,
};
use lhcluster::typed::NotifyRouter;
use lhcluster::worker::{Worker, WorkerConfig};
use lhcluster::{Broker, BrokerConfig, Flags, Request, RequestError, Status, TypedRequestError};
use serde::{Deserialize, Serialize};

/// Two-way: the worker answers with the text in capitals.
#[derive(Serialize, Deserialize, Request)]
#[request_type(name = "quickstart.uppercase", response = String)]
struct Uppercase {
    text: String,
}

/// One-way: the client only learns that it was delivered.
#[derive(Serialize, Deserialize, Request)]
#[request_type(name = "quickstart.log", one_way)]
struct LogLine {
    #[request_id]
    seq: u64,
    line: String,
}

/// A notification, published for every answer: its topic is its name.
#[derive(Serialize, Deserialize, lhcluster::Notification)]
#[notification(name = "quickstart.answered")]
struct Answered {
    word: String,
    answer: String,
}

/// A job with a natural id: while job 7 runs, another job 7 is rejected.
#[derive(Serialize, Deserialize, Request)]
#[request_type(name = "quickstart.slow")]
struct SlowJob {
    #[request_id]
    job: u64,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();

    // Loopback TCP on ports the OS picks; `inproc://` works the same way.
    let broker = Broker::start(BrokerConfig::new("tcp://127.0.0.1:0", "tcp://127.0.0.1:0"))?;
    println!(
        "broker: frontend {} backend {}",
        broker.frontend(),
        broker.backend()
    );

    let logged = Arc::new(AtomicU64::new(0));
    let workers = (1..=2)
        .map(|n| {
            let logged = logged.clone();
            let mut config = WorkerConfig::new(broker.backend());
            config.name = Some(format!("worker-{n}"));
            config.capacity = 2;
            Worker::builder(config)
                // Cannot fail: the closure returns the response itself.
                .handle::<Uppercase>(|req, _ctx| req.text.to_uppercase())
                .handle::<LogLine>(move |req, ctx| {
                    logged.fetch_add(1, Ordering::Relaxed);
                    println!("  worker-{n} logged #{}: {}", ctx.request_id, req.line);
                })
                // Can fail: a `Result`, here always an `Err`.
                .handle::<SlowJob>(|_req, _ctx| {
                    std::thread::sleep(Duration::from_millis(300));
                    Err("slow job gave up")
                })
                .start()
        })
        .collect::<Result<Vec<_>, _>>()?;

    let client = Client::connect(ClientConfig::new(broker.frontend()))?;
    if !client.wait_connected(Duration::from_secs(5)) {
        bail!("the client did not connect to the broker");
    }

    // Notifications: a notify broker, a subscriber to `Answered`, and a
    // publisher. Once `connect` returns, the subscription is in force at the
    // broker: nothing published after it is lost to a slow join.
    let notify = NotifyBroker::start(NotifyBrokerConfig::new(
        "tcp://127.0.0.1:0",
        "tcp://127.0.0.1:0",
    ))?;
    let (answered_tx, answered_rx) = channel();
    let subscriber = NotifyRouter::new()
        .on::<Answered>(move |a| {
            let _ = answered_tx.send(format!("{} was answered {}", a.word, a.answer));
            NotifyOutcome::Continue
        })
        .connect(NotifySubscriberConfig::new(notify.frontend()))?;
    let publisher = NotifyPublisher::connect(NotifyPublisherConfig::new(notify.backend()))?;

    println!("two-way requests:");
    let words = ["alpha", "bravo", "charlie", "delta"];
    let handles = words
        .iter()
        .map(|w| {
            client.send_typed(&Uppercase {
                text: w.to_string(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    for (word, handle) in words.iter().zip(handles) {
        let upper = handle.wait().context("uppercase request")?;
        println!("  {word} -> {upper}");
        publisher.publish_typed(&Answered {
            word: word.to_string(),
            answer: upper,
        })?;
    }
    println!("notifications received by the subscriber:");
    for _ in &words {
        let line = answered_rx
            .recv_timeout(Duration::from_secs(5))
            .context("a notification did not arrive")?;
        println!("  {line}");
    }

    println!("one-way requests:");
    for (seq, line) in ["started", "working", "done"].iter().enumerate() {
        client
            .send_typed(&LogLine {
                seq: seq as u64,
                line: line.to_string(),
            })?
            .wait()?;
    }

    // One-way requests complete on the workers in the background: their
    // handles resolved at submission. Let them print before going on.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while logged.load(Ordering::Relaxed) < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }

    println!("a duplicate (same type and id while the first runs) is rejected:");
    let first = client
        .request_typed(&SlowJob { job: 7 })
        .flags(Flags::RECEIPT_ON_SEND)
        .send()?;
    // Wait until a worker has it, so the duplicate surely comes second.
    if !first.wait_receipt(ReceiptKind::Sent, Duration::from_secs(5)) {
        bail!("the slow request was not dispatched");
    }
    let other = Client::connect(ClientConfig::new(broker.frontend()))?;
    match other.send_typed(&SlowJob { job: 7 })?.wait() {
        Err(TypedRequestError::Request(RequestError::Status {
            status: Status::Rejected,
            message,
        })) => println!("  rejected: {message}"),
        other => bail!("expected a rejection, got {other:?}"),
    }
    match first.wait() {
        Err(e) => println!("  the original ran once and failed as designed: {e}"),
        Ok(()) => bail!("the slow job should fail"),
    }

    println!("broker stats: {}", broker.stats()?);
    println!("notify broker stats: {}", notify.stats()?);
    subscriber.stop()?;
    publisher.stop()?;
    notify.stop()?;
    client.stop()?;
    other.stop()?;
    for w in &workers {
        w.stop()?;
    }
    broker.stop()?;
    Ok(())
}
