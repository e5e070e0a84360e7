//! Notifications: a NotifyBroker, a publisher and two subscribers in one
//! process.
//!
//! Run with `cargo run --example notify`. One subscriber follows the topic
//! `orders` exactly; the other follows every topic starting with `orders`
//! and stops after the archive's last entry. A third one receives typed
//! `PriceChanged` notifications (`#[derive(Notification)]`, MessagePack
//! payload). It prints what each received and the broker's stats, and exits
//! on its own.

use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

use anyhow::{Context, bail};
use lhcluster::notify::{
    NotifyBroker, NotifyBrokerConfig, NotifyOutcome, NotifyPublisher, NotifyPublisherConfig,
    NotifySubscriber, NotifySubscriberConfig, RawNotification,
};
use lhcluster::typed::NotifyRouter;
use serde::{Deserialize, Serialize};

/// A typed notification: its topic is its name, its payload MessagePack.
#[derive(Debug, Serialize, Deserialize, lhcluster::Notification)]
#[notification(name = "prices")]
struct PriceChanged {
    item: String,
    cents: u64,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();

    // Loopback TCP on ports the OS picks; `inproc://` works the same way.
    let broker = NotifyBroker::start(NotifyBrokerConfig::new(
        "tcp://127.0.0.1:0",
        "tcp://127.0.0.1:0",
    ))?;
    println!(
        "notify broker: frontend {} backend {}",
        broker.frontend(),
        broker.backend()
    );

    // Exact subscription: "orders" only, never "orders-archive".
    let (exact_tx, exact_rx) = channel();
    let exact = NotifySubscriber::connect(
        NotifySubscriberConfig::new(broker.frontend()).topic("orders"),
        move |n: RawNotification| {
            let _ = exact_tx.send(describe(&n));
            NotifyOutcome::Continue
        },
    )?;

    // Prefix subscription: everything starting with "orders". Its handler
    // stops the subscriber after the archive's last entry.
    let (prefix_tx, prefix_rx) = channel();
    let prefix = NotifySubscriber::connect(
        NotifySubscriberConfig::new(broker.frontend()).prefix("orders"),
        move |n: RawNotification| {
            let last = n.topic == "orders-archive" && n.notify_id == Some(99);
            let _ = prefix_tx.send(describe(&n));
            if last {
                NotifyOutcome::Stop
            } else {
                NotifyOutcome::Continue
            }
        },
    )?;

    // Typed: a router subscribes to each type's topic and decodes for it.
    let (typed_tx, typed_rx) = channel();
    let typed = NotifyRouter::new()
        .on::<PriceChanged>(move |p| {
            let _ = typed_tx.send(format!("{} now costs {} cents", p.item, p.cents));
            NotifyOutcome::Continue
        })
        .connect(NotifySubscriberConfig::new(broker.frontend()))?;

    // All `connect` calls returned: their subscriptions are in force at the
    // broker, so nothing published from here on is lost to a slow join.
    let publisher = NotifyPublisher::connect(NotifyPublisherConfig::new(broker.backend()))?;
    for (i, item) in ["apples", "pears", "plums"].iter().enumerate() {
        publisher.publish_with_id("orders", i as u64 + 1, vec![item.as_bytes().into()])?;
    }
    publisher.publish("orders-archive", vec![b"last year".as_slice().into()])?;
    publisher.publish("invoices", vec![b"nobody listens".as_slice().into()])?;
    publisher.publish("orders", vec![b"figs".as_slice().into()])?;
    publisher.publish_with_id("orders-archive", 99, vec![b"the end".as_slice().into()])?;
    publisher.publish_typed(&PriceChanged {
        item: "plums".into(),
        cents: 349,
    })?;

    println!("exact subscriber (orders):");
    for line in take(&exact_rx, 4)? {
        println!("  {line}");
    }
    println!("prefix subscriber (orders*):");
    for line in take(&prefix_rx, 6)? {
        println!("  {line}");
    }
    if !prefix.wait_stopped(Duration::from_secs(5)) {
        bail!("the prefix subscriber's handler should have stopped it");
    }
    println!("prefix subscriber stopped by its handler");
    println!("typed subscriber (PriceChanged):");
    for line in take(&typed_rx, 1)? {
        println!("  {line}");
    }

    println!("broker stats: {}", broker.stats()?);
    println!("publisher stats: {}", publisher.stats()?);
    exact.stop()?;
    typed.stop()?;
    publisher.stop()?;
    broker.stop()?;
    Ok(())
}

fn describe(n: &RawNotification) -> String {
    let payload: Vec<_> = n
        .payload
        .iter()
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    match n.notify_id {
        Some(id) => format!("{} #{id}: {}", n.topic, payload.join("|")),
        None => format!("{}: {}", n.topic, payload.join("|")),
    }
}

fn take(rx: &Receiver<String>, n: usize) -> anyhow::Result<Vec<String>> {
    (0..n)
        .map(|i| {
            rx.recv_timeout(Duration::from_secs(5))
                .with_context(|| format!("notification {} of {n} did not arrive", i + 1))
        })
        .collect()
}
