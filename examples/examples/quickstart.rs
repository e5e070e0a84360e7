//! Quick start: a broker, two workers and a client in one process, with
//! typed requests.
//!
//! Run with `cargo run --release --example quickstart`. It sends a mix of
//! two-way and one-way requests, shows a duplicate being rejected, prints
//! the responses and the broker's stats, and exits on its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use lhcluster::client::{Client, ClientConfig, ReceiptKind};
use lhcluster::worker::{RequestContext, Worker, WorkerConfig};
use lhcluster::{Broker, BrokerConfig, Flags, Request, Status, TypedRequestError};
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
                .handle::<Uppercase>(|req: Uppercase, _: &RequestContext| {
                    Ok::<_, String>(req.text.to_uppercase())
                })
                .handle::<LogLine>(move |req: LogLine, ctx: &RequestContext| {
                    logged.fetch_add(1, Ordering::Relaxed);
                    println!("  worker-{n} logged #{}: {}", ctx.request_id, req.line);
                    Ok::<_, String>(())
                })
                .handle::<SlowJob>(|_: SlowJob, _: &RequestContext| {
                    std::thread::sleep(Duration::from_millis(300));
                    Err::<(), _>("slow job gave up")
                })
                .start()
        })
        .collect::<Result<Vec<_>, _>>()?;

    let client = Client::connect(ClientConfig::new(broker.frontend()))?;
    if !client.wait_connected(Duration::from_secs(5)) {
        bail!("the client did not connect to the broker");
    }

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
        Err(TypedRequestError::Broker {
            status: Status::Rejected,
            message,
        }) => println!("  rejected: {message}"),
        other => bail!("expected a rejection, got {other:?}"),
    }
    match first.wait() {
        Err(e) => println!("  the original ran once and failed as designed: {e}"),
        Ok(()) => bail!("the slow job should fail"),
    }

    // One-way requests complete on the workers in the background.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while logged.load(Ordering::Relaxed) < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }

    println!("broker stats: {}", broker.stats()?);
    client.stop()?;
    other.stop()?;
    for w in &workers {
        w.stop()?;
    }
    broker.stop()?;
    Ok(())
}
