//! A broker or notify broker that binds a TCP endpoint other hosts can
//! reach without CURVE says once that its traffic is unauthenticated and in
//! clear (docs/security.md); one that has keys, or stays on this host, says
//! nothing.
//!
//! In its own binary: it installs the process-wide tracing subscriber.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lhcluster::curve::SecretKey;
use lhcluster::notify::{NotifyBroker, NotifyBrokerConfig};
use lhcluster::{Broker, BrokerConfig};
use lhcluster_tests::*;
use tracing::field::{Field, Visit};
use tracing::{Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// The messages of the warnings written.
#[derive(Clone, Default)]
struct Warnings(Arc<Mutex<Vec<String>>>);

struct Message<'a>(&'a mut String);

impl Visit for Message<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            *self.0 = format!("{value:?}");
        }
    }
}

impl<S: Subscriber> Layer<S> for Warnings {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if *event.metadata().level() == Level::WARN {
            let mut message = String::new();
            event.record(&mut Message(&mut message));
            self.0.lock().unwrap().push(message);
        }
    }
}

impl Warnings {
    /// How many warnings about clear traffic were written since the last
    /// call.
    fn clear_traffic(&self) -> usize {
        let mut all = self.0.lock().unwrap();
        let n = all.iter().filter(|m| m.contains("in clear")).count();
        all.clear();
        n
    }
}

#[test]
fn binding_for_other_hosts_in_clear_is_warned_about_once() {
    let warnings = Warnings::default();
    let subscriber = tracing_subscriber::registry().with(warnings.clone());
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
    time_limit(Duration::from_secs(60), move || {
        // Every interface, no keys: one warning for the whole broker.
        let broker = Broker::start(BrokerConfig::new("tcp://0.0.0.0:0", "tcp://*:0")).unwrap();
        assert_eq!(warnings.clear_traffic(), 1);
        broker.stop().unwrap();

        // The same with a key: none.
        let mut config = BrokerConfig::new("tcp://0.0.0.0:0", "tcp://*:0");
        config.curve_secret_key = Some(SecretKey::generate().unwrap());
        let broker = Broker::start(config).unwrap();
        assert_eq!(warnings.clear_traffic(), 0);
        broker.stop().unwrap();

        // This host only: none.
        let local = lhcluster_tests::broker(Transport::Tcp);
        assert_eq!(warnings.clear_traffic(), 0);
        local.stop().unwrap();

        // The notify broker likewise.
        let notify = NotifyBroker::start(NotifyBrokerConfig::new("tcp://*:0", TCP_ANY)).unwrap();
        assert_eq!(warnings.clear_traffic(), 1);
        notify.stop().unwrap();
        let notify = NotifyBroker::start(NotifyBrokerConfig::new(TCP_ANY, TCP_ANY)).unwrap();
        assert_eq!(warnings.clear_traffic(), 0);
        notify.stop().unwrap();
    });
}
