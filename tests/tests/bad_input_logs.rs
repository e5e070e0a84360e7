//! A flood of garbage must not become a flood of log lines: each role logs
//! the first few malformed messages of a peer in full, then one summary per
//! interval, while its counters stay exact.
//!
//! One test, in its own binary: it installs the process-wide tracing
//! subscriber that counts the warnings of the roles' threads, and runs the
//! roles one after the other so that each one's lines are its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use lhcluster::ClientProxy;
use lhcluster::client_proxy::ClientProxyConfig;
use lhcluster::notify::{NotifyBroker, NotifyBrokerConfig};
use lhcluster_tests::*;
use tracing::{Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// Garbage messages sent to each role.
const GARBAGE: u64 = 1000;
/// The limiter's burst: lines logged in full per peer.
const BURST: u64 = 5;
/// Summaries are written once per 10 s per peer: at most one within a
/// test this short, however slow the machine.
const SUMMARIES: u64 = 1;
const LIMIT: Duration = Duration::from_secs(60);

/// Counts the warnings written.
#[derive(Clone, Default)]
struct WarnCounter(Arc<AtomicU64>);

impl<S: Subscriber> Layer<S> for WarnCounter {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if *event.metadata().level() == Level::WARN {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl WarnCounter {
    fn take(&self) -> u64 {
        self.0.swap(0, Ordering::Relaxed)
    }
}

fn wait_for(what: &str, mut count: impl FnMut() -> u64) {
    let done = eventually(Duration::from_secs(20), || count() >= GARBAGE);
    assert!(done, "{what}: {} of {GARBAGE} counted", count());
    assert_eq!(count(), GARBAGE, "{what}: the counter is exact");
}

/// Sends garbage from a raw DEALER: a header frame that does not decode.
fn send_garbage(endpoint: &str) -> zmq::Socket {
    let socket = raw_dealer(endpoint);
    for i in 0..GARBAGE {
        socket
            .send(&[0xff, 0xff, (i % 251) as u8][..], 0)
            .expect("send garbage");
    }
    socket
}

#[test]
fn garbage_floods_are_logged_in_a_burst_then_summarised() {
    let warnings = WarnCounter::default();
    let subscriber = tracing_subscriber::registry().with(warnings.clone());
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
    time_limit(LIMIT, move || {
        // The broker's frontend.
        let broker = broker(Transport::Tcp);
        warnings.take();
        let _garbage = send_garbage(broker.frontend());
        wait_for("broker", || broker.stats().unwrap().malformed_frontend);
        let lines = warnings.take();
        assert!(lines <= BURST + SUMMARIES, "broker: {lines} warnings");

        // The client proxy's frontend.
        let proxy_endpoint = inproc("proxy");
        let mut config = ClientProxyConfig::new(proxy_endpoint.clone(), broker.frontend());
        config.heartbeat = HEARTBEAT;
        let proxy = ClientProxy::start(config).expect("proxy starts");
        warnings.take();
        let _garbage = send_garbage(&proxy_endpoint);
        wait_for("proxy", || proxy.stats().unwrap().malformed_clients);
        let lines = warnings.take();
        assert!(lines <= BURST + SUMMARIES, "proxy: {lines} warnings");
        proxy.stop().unwrap();
        broker.stop().unwrap();

        // The notify broker's backend, from a raw publisher. An XPUB, so
        // that it can wait for the broker's catch-all subscription before
        // publishing (a PUB would drop what it sends before).
        let notify = NotifyBroker::start(NotifyBrokerConfig::new(TCP_ANY, TCP_ANY)).unwrap();
        let publisher = lhcluster::context().socket(zmq::XPUB).unwrap();
        publisher.set_linger(0).unwrap();
        publisher.set_sndhwm(0).unwrap();
        publisher.connect(notify.backend()).unwrap();
        assert_eq!(publisher.recv_bytes(0).unwrap(), [1u8], "subscribed to all");
        warnings.take();
        for i in 0..GARBAGE {
            let topic = format!("t{i}\0");
            publisher
                .send_multipart([topic.as_bytes(), b"\xff\xff"], 0)
                .unwrap();
        }
        wait_for("notify broker", || notify.stats().unwrap().malformed);
        let lines = warnings.take();
        assert!(
            lines <= BURST + SUMMARIES,
            "notify broker: {lines} warnings"
        );
        notify.stop().unwrap();
    });
}
