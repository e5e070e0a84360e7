//! Quick start: a broker, two workers and a client in one process.
//!
//! Run with `cargo run --release --example quickstart`. It sends a mix of
//! two-way and one-way requests, shows a duplicate being rejected, prints
//! the responses and the broker's stats, and exits on its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use lhcluster::client::{Client, ClientConfig, ReceiptKind};
use lhcluster::worker::{HandlerError, RequestContext, Worker, WorkerConfig};
use lhcluster::{Broker, BrokerConfig, Flags, Payload, RequestError, Status};

const UPPERCASE: u32 = 1;
const LOG_LINE: u32 = 2;
const SLOW: u32 = 3;

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
                .handle_raw(UPPERCASE, move |_: &RequestContext, payload: Payload| {
                    let text = payload
                        .first()
                        .map(|f| f.to_ascii_uppercase())
                        .unwrap_or_default();
                    Ok(vec![text.into()])
                })
                .handle_raw(LOG_LINE, move |ctx: &RequestContext, payload: Payload| {
                    logged.fetch_add(1, Ordering::Relaxed);
                    println!(
                        "  worker-{n} logged #{}: {}",
                        ctx.request_id,
                        String::from_utf8_lossy(payload.first().map_or(&[][..], |f| &f[..]))
                    );
                    Ok(Payload::new())
                })
                .handle_raw(SLOW, |_: &RequestContext, _payload: Payload| {
                    std::thread::sleep(Duration::from_millis(300));
                    Err(HandlerError::failed("slow job gave up"))
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
        .map(|w| client.request(UPPERCASE).payload_bytes(w.as_bytes()).send())
        .collect::<Result<Vec<_>, _>>()?;
    for (word, handle) in words.iter().zip(handles) {
        let reply = handle.wait().context("uppercase request")?;
        println!("  {word} -> {}", String::from_utf8_lossy(&reply.payload[0]));
    }

    println!("one-way requests:");
    for (i, line) in ["started", "working", "done"].iter().enumerate() {
        client
            .send(
                LOG_LINE,
                i as u64,
                Flags::ONE_WAY,
                vec![line.as_bytes().into()],
            )?
            .wait()?;
    }

    println!("a duplicate (same type and id while the first runs) is rejected:");
    let first = client
        .request(SLOW)
        .id(7)
        .flags(Flags::RECEIPT_ON_SEND)
        .send()?;
    // Wait until a worker has it, so the duplicate surely comes second.
    if !first.wait_receipt(ReceiptKind::Sent, Duration::from_secs(5)) {
        bail!("the slow request was not dispatched");
    }
    let other = Client::connect(ClientConfig::new(broker.frontend()))?;
    let duplicate = other.request(SLOW).id(7).send()?;
    match duplicate.wait() {
        Err(RequestError::Status {
            status: Status::Rejected,
            message,
        }) => println!("  rejected: {message}"),
        other => bail!("expected a rejection, got {other:?}"),
    }
    match first.wait() {
        Err(e) => println!("  the original ran once and failed as designed: {e}"),
        Ok(_) => bail!("the slow job should fail"),
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
