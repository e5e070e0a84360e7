//! Notifications end to end: NotifyBroker, publishers and subscribers in one
//! process over inproc and loopback TCP, each test under a time limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use lhcluster::notify::*;
use lhcluster::protocol::{self, Message};
use lhcluster::{Error, Payload};
use lhcluster_tests::*;

const LIMIT: Duration = Duration::from_secs(60);
/// How long a notification that must arrive may take (generous: CI machines
/// are slow and loaded; nothing waits this long when things work).
const WAIT: Duration = Duration::from_secs(10);
/// The sentinel topic every collecting subscriber also subscribes to: once
/// it arrives, everything published before it on the same path has too.
const END: &str = "end-of-test";
/// ZMTP heartbeat interval of every notification socket in these tests
/// (a connection is dropped after three silent intervals).
const HEARTBEAT: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Got {
    topic: String,
    notify_id: Option<u64>,
    payload: Vec<String>,
}

fn got(n: RawNotification) -> Got {
    Got {
        topic: n.topic,
        notify_id: n.notify_id,
        payload: n
            .payload
            .iter()
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .collect(),
    }
}

fn text(s: &str) -> Payload {
    vec![s.as_bytes().into()]
}

fn notify_broker(transport: Transport) -> NotifyBroker {
    NotifyBroker::start(broker_config(
        &transport.endpoint("nfront"),
        &transport.endpoint("nback"),
    ))
    .expect("notify broker starts")
}

fn broker_config(frontend: &str, backend: &str) -> NotifyBrokerConfig {
    let mut config = NotifyBrokerConfig::new(frontend, backend);
    config.heartbeat = HEARTBEAT;
    config
}

fn publisher_config(endpoint: &str) -> NotifyPublisherConfig {
    let mut config = NotifyPublisherConfig::new(endpoint);
    config.heartbeat = HEARTBEAT;
    config.reconnect_min = Duration::from_millis(20);
    config.reconnect_max = Duration::from_millis(200);
    config.connect_timeout = Some(WAIT);
    config
}

fn publisher(endpoint: &str) -> NotifyPublisher {
    NotifyPublisher::connect(publisher_config(endpoint)).expect("publisher connects")
}

fn subscriber_config(endpoint: &str, topics: &[&str], prefixes: &[&str]) -> NotifySubscriberConfig {
    let mut config = NotifySubscriberConfig::new(endpoint).topic(END);
    for t in topics {
        config = config.topic(*t);
    }
    for p in prefixes {
        config = config.prefix(*p);
    }
    config.heartbeat = HEARTBEAT;
    config.reconnect_min = Duration::from_millis(20);
    config.reconnect_max = Duration::from_millis(200);
    config.confirm_timeout = Some(WAIT);
    config
}

/// A subscriber whose handler forwards everything to a channel.
fn collector(
    endpoint: &str,
    topics: &[&str],
    prefixes: &[&str],
) -> (NotifySubscriber, Receiver<Got>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let subscriber =
        NotifySubscriber::connect(subscriber_config(endpoint, topics, prefixes), forward(tx))
            .expect("subscriber connects");
    (subscriber, rx)
}

/// A subscriber of `topics` whose handler decides with `outcome`, then
/// forwards the notification to a channel.
fn collector_answering(
    endpoint: &str,
    topics: &[&str],
    mut outcome: impl FnMut(&RawNotification) -> NotifyOutcome + Send + 'static,
) -> (NotifySubscriber, Receiver<Got>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let handler = move |n: RawNotification| {
        let answer = outcome(&n);
        let _ = tx.send(got(n));
        answer
    };
    let subscriber = NotifySubscriber::connect(subscriber_config(endpoint, topics, &[]), handler)
        .expect("subscriber connects");
    (subscriber, rx)
}

/// A notify broker over `transport`, a collector of `topics` and
/// `prefixes` behind it, and a publisher in front of it.
fn wired(
    transport: Transport,
    topics: &[&str],
    prefixes: &[&str],
) -> (
    NotifyBroker,
    NotifySubscriber,
    Receiver<Got>,
    NotifyPublisher,
) {
    let broker = notify_broker(transport);
    let (subscriber, rx) = collector(broker.frontend(), topics, prefixes);
    let publisher = publisher(broker.backend());
    (broker, subscriber, rx, publisher)
}

fn forward(tx: Sender<Got>) -> impl FnMut(RawNotification) -> NotifyOutcome + Send + 'static {
    move |n| {
        let _ = tx.send(got(n));
        NotifyOutcome::Continue
    }
}

fn recv(rx: &Receiver<Got>) -> Got {
    rx.recv_timeout(WAIT).expect("a notification arrives")
}

/// Everything received before the sentinel (which the caller published
/// last).
fn until_end(rx: &Receiver<Got>) -> Vec<Got> {
    let mut all = Vec::new();
    loop {
        let g = recv(rx);
        if g.topic == END {
            return all;
        }
        all.push(g);
    }
}

fn topics(all: &[Got]) -> Vec<&str> {
    all.iter().map(|g| g.topic.as_str()).collect()
}

fn fan_out(transport: Transport) {
    let broker = notify_broker(transport);
    let subscribers: Vec<_> = (0..3)
        .map(|_| collector(broker.frontend(), &["news"], &[]))
        .collect();
    let publisher = publisher(broker.backend());
    for i in 0..20u64 {
        publisher
            .publish_with_id("news", i + 1, text(&format!("item {i}")))
            .unwrap();
    }
    publisher.publish(END, Payload::new()).unwrap();
    for (subscriber, rx) in &subscribers {
        let all = until_end(rx);
        assert_eq!(all.len(), 20);
        for (i, g) in all.iter().enumerate() {
            assert_eq!(g.topic, "news");
            assert_eq!(g.notify_id, Some(i as u64 + 1));
            assert_eq!(g.payload, [format!("item {i}")]);
        }
        let stats = subscriber.stats().unwrap();
        assert_eq!((stats.received, stats.malformed), (21, 0));
    }
    let stats = broker.stats().unwrap();
    assert_eq!(stats.forwarded, 21);
    assert_eq!(stats.topics["news"].forwarded, 20);
    assert_eq!(stats.malformed, 0);
    assert_eq!(publisher.stats().unwrap().published, 21);
    assert_eq!(publisher.stats().unwrap().dropped(), 0);
}

inproc_and_tcp_tests!(
    LIMIT,
    fan_out,
    fan_out_to_several_subscribers_inproc,
    fan_out_to_several_subscribers_tcp
);

#[test]
fn exact_and_prefix_subscriptions() {
    time_limit(LIMIT, || {
        let broker = notify_broker(Transport::Inproc);
        let (_exact, exact_rx) = collector(broker.frontend(), &["orders"], &[]);
        let (_prefix, prefix_rx) = collector(broker.frontend(), &[], &["orders"]);
        let (_all, all_rx) = collector(broker.frontend(), &[], &[""]);
        let publisher = publisher(broker.backend());
        for topic in [
            "orders",
            "orders-archive",
            "order",
            "ordersx",
            "other",
            "orders",
        ] {
            publisher.publish(topic, Payload::new()).unwrap();
        }
        publisher.publish(END, Payload::new()).unwrap();
        assert_eq!(topics(&until_end(&exact_rx)), ["orders", "orders"]);
        assert_eq!(
            topics(&until_end(&prefix_rx)),
            ["orders", "orders-archive", "ordersx", "orders"]
        );
        assert_eq!(
            topics(&until_end(&all_rx)),
            [
                "orders",
                "orders-archive",
                "order",
                "ordersx",
                "other",
                "orders"
            ]
        );
    });
}

#[test]
fn unsubscribe_at_runtime() {
    time_limit(LIMIT, || {
        let (broker, subscriber, rx, publisher) = wired(Transport::Inproc, &["a", "b"], &["p-"]);
        for topic in ["a", "b", "p-1"] {
            publisher.publish(topic, Payload::new()).unwrap();
        }
        publisher.publish(END, Payload::new()).unwrap();
        assert_eq!(topics(&until_end(&rx)), ["a", "b", "p-1"]);

        subscriber.unsubscribe("a").unwrap();
        subscriber.unsubscribe_prefix("p-").unwrap();
        assert_eq!(subscriber.topics(), ["b", END]);
        assert!(subscriber.prefixes().is_empty());
        for topic in ["a", "b", "p-2", "a"] {
            publisher.publish(topic, Payload::new()).unwrap();
        }
        publisher.publish(END, Payload::new()).unwrap();
        assert_eq!(topics(&until_end(&rx)), ["b"]);

        // Subscribing again works again, at once.
        subscriber.subscribe("a").unwrap();
        publisher.publish("a", Payload::new()).unwrap();
        assert_eq!(recv(&rx).topic, "a");
        // The broker saw the unsubscriptions (publishers filter nothing, the
        // broker's frontend does).
        assert!(broker.stats().unwrap().unsubscribes >= 2);
    });
}

#[test]
fn handler_unsubscribe_outcome_drops_the_topic() {
    time_limit(LIMIT, || {
        let broker = notify_broker(Transport::Inproc);
        let (subscriber, rx) = collector_answering(broker.frontend(), &["once", "always"], |n| {
            if n.topic == "once" {
                NotifyOutcome::Unsubscribe
            } else {
                NotifyOutcome::Continue
            }
        });
        let publisher = publisher(broker.backend());
        // Published back to back: the later "once" are already on their way
        // (or queued) when the handler unsubscribes, and still not handled.
        for topic in ["once", "always", "once", "once", "always"] {
            publisher.publish(topic, Payload::new()).unwrap();
        }
        publisher.publish(END, Payload::new()).unwrap();
        assert_eq!(topics(&until_end(&rx)), ["once", "always", "always"]);
        assert_eq!(subscriber.topics(), ["always", END]);
        // Subscribed again, it is received again.
        subscriber.subscribe("once").unwrap();
        publisher.publish("once", Payload::new()).unwrap();
        assert_eq!(recv(&rx).topic, "once");
    });
}

#[test]
fn handler_stop_outcome_stops_the_subscriber() {
    time_limit(LIMIT, || {
        let broker = notify_broker(Transport::Inproc);
        let handled = Arc::new(AtomicU64::new(0));
        let counter = handled.clone();
        let subscriber = NotifySubscriber::connect(
            subscriber_config(broker.frontend(), &["t"], &[]),
            move |_: RawNotification| {
                counter.fetch_add(1, Ordering::SeqCst);
                NotifyOutcome::Stop
            },
        )
        .unwrap();
        let publisher = publisher(broker.backend());
        for _ in 0..5 {
            publisher.publish("t", Payload::new()).unwrap();
        }
        assert!(subscriber.wait_stopped(WAIT), "the handler stopped it");
        assert!(subscriber.is_stopped());
        assert_eq!(handled.load(Ordering::SeqCst), 1);
        assert!(matches!(subscriber.subscribe("x"), Err(Error::Stopped)));
        assert_eq!(subscriber.stats().unwrap().handled, 1);
        subscriber.stop().unwrap(); // idempotent
    });
}

#[test]
fn a_panicking_handler_is_counted_and_the_subscriber_carries_on() {
    time_limit(LIMIT, || {
        let broker = notify_broker(Transport::Inproc);
        let (subscriber, rx) = collector_answering(broker.frontend(), &["boom", "ok"], |n| {
            assert_ne!(n.topic, "boom", "handler panics on purpose");
            NotifyOutcome::Continue
        });
        let publisher = publisher(broker.backend());
        for topic in ["boom", "ok", "boom", "ok"] {
            publisher.publish(topic, Payload::new()).unwrap();
        }
        publisher.publish(END, Payload::new()).unwrap();
        assert_eq!(topics(&until_end(&rx)), ["ok", "ok"]);
        assert_eq!(subscriber.stats().unwrap().handler_panics, 2);
    });
}

/// The no-slow-joiner guarantee, many times over: whatever is published
/// after `subscribe` (or the subscriber's or publisher's constructor)
/// returned is delivered.
fn subscribe_then_publish(transport: Transport, rounds: usize) {
    let broker = notify_broker(transport);
    let publisher = publisher(broker.backend());
    let (subscriber, rx) = collector(broker.frontend(), &[], &[]);
    for i in 0..rounds {
        let topic = format!("topic-{i}");
        subscriber.subscribe(&topic).unwrap();
        publisher.publish(&topic, text(&i.to_string())).unwrap();
        let g = recv(&rx);
        assert_eq!(
            (g.topic.as_str(), g.payload[0].as_str()),
            (topic.as_str(), &*i.to_string())
        );
        if i % 2 == 0 {
            subscriber.unsubscribe(&topic).unwrap();
        }
    }
    // A new subscriber each time: its constructor's subscriptions.
    for i in 0..rounds / 5 {
        let topic = format!("fresh-{i}");
        let (_fresh, fresh_rx) = collector(broker.frontend(), &[&topic], &[]);
        publisher.publish(&topic, Payload::new()).unwrap();
        assert_eq!(recv(&fresh_rx).topic, topic);
    }
    // A new publisher each time: its first notification is not lost.
    subscriber.subscribe("first").unwrap();
    for _ in 0..rounds / 5 {
        let fresh = self::publisher(broker.backend());
        fresh.publish("first", Payload::new()).unwrap();
        assert_eq!(recv(&rx).topic, "first");
    }
    assert!(rx.try_recv().is_err(), "nothing unexpected");
    assert_eq!(publisher.stats().unwrap().dropped(), 0);
}

#[test]
fn subscribe_then_publish_is_delivered_inproc() {
    time_limit(LIMIT, || subscribe_then_publish(Transport::Inproc, 300));
}

#[test]
fn subscribe_then_publish_is_delivered_tcp() {
    time_limit(LIMIT, || subscribe_then_publish(Transport::Tcp, 250));
}

fn direct_mode(transport: Transport) {
    let publisher = NotifyPublisher::bind(publisher_config(&transport.endpoint("direct")))
        .expect("publisher binds");
    assert!(publisher.is_connected());
    let (subscriber, rx) = collector(publisher.endpoint(), &["direct"], &[]);
    let (_other, other_rx) = collector(publisher.endpoint(), &[], &["dir"]);
    publisher.publish("direct", text("hello")).unwrap();
    publisher.publish("directory", Payload::new()).unwrap();
    publisher.publish(END, Payload::new()).unwrap();
    assert_eq!(
        until_end(&rx),
        [Got {
            topic: "direct".into(),
            notify_id: None,
            payload: vec!["hello".into()],
        }]
    );
    assert_eq!(topics(&until_end(&other_rx)), ["direct", "directory"]);
    // The guarantee holds without a broker too: the publisher answers
    // probes.
    for i in 0..100 {
        let topic = format!("direct-{i}");
        subscriber.subscribe(&topic).unwrap();
        publisher.publish(&topic, Payload::new()).unwrap();
        assert_eq!(recv(&rx).topic, topic);
    }
    assert!(publisher.stats().unwrap().probes_answered >= 100);
}

inproc_and_tcp_tests!(LIMIT, direct_mode, direct_mode_inproc, direct_mode_tcp);

/// Publishes `topic` until the subscriber gets it (bounded), for the
/// moments when delivery is best-effort (a broker restarting).
fn publish_until_delivered(publisher: &NotifyPublisher, rx: &Receiver<Got>, topic: &str) -> usize {
    let deadline = Instant::now() + WAIT;
    let mut attempts = 0;
    loop {
        attempts += 1;
        publisher.publish(topic, Payload::new()).unwrap();
        if let Ok(g) = rx.recv_timeout(Duration::from_millis(50)) {
            assert_eq!(g.topic, topic);
            // Drain duplicates of earlier attempts.
            while rx.recv_timeout(Duration::from_millis(100)).is_ok() {}
            return attempts;
        }
        assert!(Instant::now() < deadline, "{topic} never delivered");
    }
}

/// Starts a broker on endpoints a stopped one just released. libzmq closes
/// listeners on its I/O thread, so the port can stay busy for a moment.
fn restart(frontend: &str, backend: &str) -> NotifyBroker {
    let deadline = Instant::now() + WAIT;
    loop {
        match NotifyBroker::start(broker_config(frontend, backend)) {
            Ok(broker) => return broker,
            Err(e) if Instant::now() < deadline => {
                eprintln!("rebinding: {e}");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("cannot rebind the notify broker endpoints: {e}"),
        }
    }
}

#[test]
fn subscribers_and_publishers_recover_after_a_broker_restart() {
    time_limit(LIMIT, || {
        let broker = notify_broker(Transport::Tcp);
        let (frontend, backend) = (broker.frontend().to_owned(), broker.backend().to_owned());
        let (subscriber, rx) = collector(&frontend, &["before"], &["pre-"]);
        let publisher = publisher(&backend);
        // Runtime subscriptions are re-sent as well as the initial ones.
        subscriber.subscribe("runtime").unwrap();
        publisher.publish("before", Payload::new()).unwrap();
        assert_eq!(recv(&rx).topic, "before");
        assert_eq!(publisher.stats().unwrap().connections, 1);

        broker.stop().unwrap();
        drop(broker);
        let broker = restart(&frontend, &backend);

        assert!(publisher.wait_connected(WAIT), "publisher reconnects");
        for topic in ["before", "pre-x", "runtime"] {
            publish_until_delivered(&publisher, &rx, topic);
        }
        assert!(publisher.stats().unwrap().connections >= 2);
        // The new broker learnt the old subscriptions without a new call.
        assert!(broker.stats().unwrap().active_subscriptions >= 4);
        // And the guarantee holds again.
        subscriber.subscribe("after").unwrap();
        publisher.publish("after", Payload::new()).unwrap();
        assert_eq!(recv(&rx).topic, "after");
    });
}

fn raw_notification(topic: &str, body: &str) -> Vec<Vec<u8>> {
    Message::Notification(protocol::RawNotification {
        topic: topic.to_owned(),
        notify_id: None,
        payload: text(body),
    })
    .into_frames()
    .iter()
    .map(|f| f.to_vec())
    .collect()
}

fn send_raw(socket: &zmq::Socket, frames: &[Vec<u8>]) {
    socket.send_multipart(frames, 0).expect("raw send");
}

#[test]
fn malformed_notifications_are_counted_and_do_not_disturb_delivery() {
    time_limit(LIMIT, || {
        let (broker, subscriber, rx, publisher) = wired(Transport::Tcp, &["t"], &[""]);
        let raw = lhcluster::context().socket(zmq::PUB).unwrap();
        raw.set_linger(0).unwrap();
        raw.connect(broker.backend()).unwrap();
        // A raw PUB has no way to know when the broker's subscription has
        // arrived: send a warm-up notification until one comes through.
        let header = Message::Heartbeat { heartbeat_ms: 1 }.into_frames()[0].to_vec();
        let good_header = raw_notification("t", "")[1].clone();
        let malformed: Vec<Vec<Vec<u8>>> = vec![
            vec![b"t".to_vec(), good_header.clone()], // no NUL terminator
            vec![b"t\0".to_vec()],                    // no header
            vec![b"t\0".to_vec(), b"\xff\xff\xff".to_vec()], // header not protobuf
            vec![b"t\0".to_vec(), header],            // not a NOTIFICATION
            vec![b"\xff\xfe\0".to_vec(), good_header], // topic not UTF-8
            vec![Vec::new()],                         // empty frame
        ];
        let warm_up = raw_notification("warm-up", "");
        let deadline = Instant::now() + WAIT;
        loop {
            send_raw(&raw, &warm_up);
            if rx.recv_timeout(Duration::from_millis(20)).is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "the raw publisher gets through");
        }
        let before = broker.stats().unwrap().malformed;
        assert_eq!(before, 0);
        for (i, bad) in malformed.iter().enumerate() {
            send_raw(&raw, bad);
            send_raw(&raw, &raw_notification("t", &format!("raw {i}")));
            publisher.publish("t", text(&format!("sdk {i}"))).unwrap();
        }
        publisher.publish(END, Payload::new()).unwrap();
        let mut raw_seen = Vec::new();
        let mut sdk_seen = Vec::new();
        // The two publishers' streams interleave in any order; each is in
        // order. Wait for all twelve.
        while raw_seen.len() + sdk_seen.len() < 2 * malformed.len() {
            let g = recv(&rx);
            if g.topic != "t" {
                continue;
            }
            let body = g.payload[0].clone();
            if body.starts_with("raw") {
                raw_seen.push(body);
            } else {
                sdk_seen.push(body);
            }
        }
        let expect = |kind: &str| {
            (0..malformed.len())
                .map(|i| format!("{kind} {i}"))
                .collect::<Vec<_>>()
        };
        assert_eq!(raw_seen, expect("raw"));
        assert_eq!(sdk_seen, expect("sdk"));
        let stats = broker.stats().unwrap();
        assert_eq!(stats.malformed - before, malformed.len() as u64);
        // Nothing malformed got through to the subscriber.
        assert_eq!(subscriber.stats().unwrap().malformed, 0);
    });
}

#[test]
fn a_subscriber_counts_and_drops_malformed_notifications() {
    time_limit(LIMIT, || {
        // A raw PUB bound in place of a publisher: it does not answer probes.
        let raw = lhcluster::context().socket(zmq::PUB).unwrap();
        raw.set_linger(0).unwrap();
        raw.bind("tcp://127.0.0.1:0").unwrap();
        let endpoint = raw.get_last_endpoint().unwrap().unwrap();
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut config = NotifySubscriberConfig::new(&endpoint).prefix("");
        config.confirm_timeout = None;
        let subscriber = NotifySubscriber::connect(config, forward(tx)).unwrap();
        assert!(eventually(WAIT, || {
            send_raw(&raw, &[b"t\0".to_vec(), b"junk".to_vec()]);
            subscriber.stats().unwrap().malformed > 0
        }));
        send_raw(&raw, &raw_notification("t", "fine"));
        assert_eq!(recv(&rx).payload, ["fine"]);
    });
}

#[test]
fn topics_with_spaces_and_any_utf8() {
    time_limit(LIMIT, || {
        let broker = notify_broker(Transport::Tcp);
        let odd = [
            "with spaces",
            " leading and trailing ",
            "ünïcødé",
            "日本語のトピック",
            "emoji 🚀 topic",
            "tab\there",
        ];
        let (subscriber, rx) = collector(broker.frontend(), &odd, &["日本"]);
        let publisher = publisher(broker.backend());
        for topic in odd {
            publisher.publish(topic, text(topic)).unwrap();
        }
        publisher.publish("with", Payload::new()).unwrap(); // first word only: not subscribed
        publisher.publish("日本", Payload::new()).unwrap(); // prefix match
        publisher.publish(END, Payload::new()).unwrap();
        let all = until_end(&rx);
        let mut expected: Vec<&str> = odd.to_vec();
        expected.push("日本");
        assert_eq!(topics(&all), expected);
        for g in &all[..odd.len()] {
            assert_eq!(g.payload, std::slice::from_ref(&g.topic));
        }
        subscriber.unsubscribe("with spaces").unwrap();
        publisher.publish("with spaces", Payload::new()).unwrap();
        publisher.publish(END, Payload::new()).unwrap();
        assert!(until_end(&rx).is_empty());
        let stats = broker.stats().unwrap();
        assert_eq!(stats.topics["日本語のトピック"].forwarded, 1);
    });
}

#[test]
fn invalid_topics_are_refused() {
    time_limit(LIMIT, || {
        let (broker, subscriber, _rx, publisher) = wired(Transport::Inproc, &[], &[]);
        assert!(matches!(
            publisher.publish("", Payload::new()),
            Err(PublishError::InvalidTopic(_))
        ));
        assert!(matches!(
            publisher.publish("a\0b", Payload::new()),
            Err(PublishError::InvalidTopic(_))
        ));
        assert!(matches!(subscriber.subscribe(""), Err(Error::Config(_))));
        assert!(matches!(
            subscriber.subscribe_prefix("x\0"),
            Err(Error::Config(_))
        ));
        let config = subscriber_config(broker.frontend(), &["ok", "bad\0"], &[]);
        assert!(matches!(
            NotifySubscriber::connect(config, |_: RawNotification| NotifyOutcome::Continue),
            Err(Error::Config(_))
        ));
    });
}

#[test]
fn waits_are_bounded_when_no_broker_is_there() {
    time_limit(LIMIT, || {
        let nobody = inproc("nobody");
        let mut config = subscriber_config(&nobody, &["t"], &[]);
        config.confirm_timeout = Some(Duration::from_millis(200));
        let result =
            NotifySubscriber::connect(config, |_: RawNotification| NotifyOutcome::Continue);
        assert!(matches!(result, Err(Error::Connect { .. })), "{result:?}");

        let mut config = publisher_config(&nobody);
        config.connect_timeout = Some(Duration::from_millis(200));
        let result = NotifyPublisher::connect(config);
        assert!(matches!(result, Err(Error::Connect { .. })), "{result:?}");

        // Without a wait, a publisher starts at once and counts what it
        // cannot deliver.
        let mut config = publisher_config(&nobody);
        config.connect_timeout = None;
        let publisher = NotifyPublisher::connect(config).unwrap();
        assert!(!publisher.is_connected());
        publisher.publish("t", Payload::new()).unwrap();
        assert!(eventually(WAIT, || publisher
            .stats()
            .unwrap()
            .dropped_disconnected
            == 1));
        publisher.stop().unwrap();
        assert!(matches!(
            publisher.publish("t", Payload::new()),
            Err(PublishError::Stopped)
        ));
    });
}

#[test]
fn a_full_publish_queue_drops_and_counts_without_blocking() {
    time_limit(LIMIT, || {
        let broker = notify_broker(Transport::Inproc);
        let mut config = publisher_config(broker.backend());
        config.queue_capacity = 1;
        let publisher = NotifyPublisher::connect(config).unwrap();
        let attempts = 20_000u64;
        let mut refused = 0u64;
        for _ in 0..attempts {
            match publisher.publish("flood", Payload::new()) {
                Ok(()) => {}
                Err(PublishError::QueueFull) => refused += 1,
                Err(e) => panic!("unexpected {e}"),
            }
        }
        publisher.stop().unwrap();
        let stats = publisher.stats().unwrap();
        assert_eq!(stats.dropped_queue_full, refused);
        assert_eq!(stats.published + stats.dropped(), attempts);
    });
}

#[test]
fn a_slow_handler_drops_and_counts_beyond_its_queue() {
    time_limit(LIMIT, || {
        let broker = notify_broker(Transport::Inproc);
        let (entered_tx, entered_rx) = crossbeam_channel::unbounded::<()>();
        let (gate_tx, gate_rx) = crossbeam_channel::bounded::<()>(0);
        let mut config = subscriber_config(broker.frontend(), &["t"], &[]);
        config.queue_capacity = 2;
        let subscriber = NotifySubscriber::connect(config, move |_: RawNotification| {
            let _ = entered_tx.send(());
            // Blocks until the test drops the gate.
            let _ = gate_rx.recv();
            NotifyOutcome::Continue
        })
        .unwrap();
        let publisher = publisher(broker.backend());
        publisher.publish("t", Payload::new()).unwrap();
        entered_rx.recv_timeout(WAIT).expect("the handler runs");
        // The handler is busy: two fit in the queue, the rest are dropped.
        for _ in 0..9 {
            publisher.publish("t", Payload::new()).unwrap();
        }
        assert!(eventually(WAIT, || subscriber.stats().unwrap().received == 10));
        let stats = subscriber.stats().unwrap();
        assert_eq!((stats.queued, stats.dropped_queue_full), (2, 7));
        drop(gate_tx);
        assert!(eventually(WAIT, || subscriber.stats().unwrap().handled == 3));
        assert_eq!(subscriber.stats().unwrap().queued, 0);
    });
}

#[test]
fn stats_are_reported_per_topic() {
    time_limit(LIMIT, || {
        let (broker, subscriber, rx, publisher) = wired(Transport::Inproc, &["a"], &["b"]);
        for topic in ["a", "a", "b1", "b2", "c"] {
            publisher.publish(topic, Payload::new()).unwrap();
        }
        publisher.publish(END, Payload::new()).unwrap();
        assert_eq!(until_end(&rx).len(), 4);
        let stats = broker.stats().unwrap();
        let per_topic: Vec<(&str, u64)> = stats
            .topics
            .iter()
            .map(|(t, s)| (t.as_str(), s.forwarded))
            .collect();
        assert_eq!(
            per_topic,
            [("a", 2), ("b1", 1), ("b2", 1), ("c", 1), (END, 1)]
        );
        assert_eq!(stats.forwarded, 6);
        // END, a and the prefix b (probes not included).
        assert_eq!(stats.active_subscriptions, 3);
        assert!(stats.probes_answered >= 1);
        let s = subscriber.stats().unwrap();
        assert_eq!((s.received, s.handled, s.topics, s.prefixes), (5, 5, 2, 1));
        assert!(!format!("{stats}").is_empty());
    });
}
