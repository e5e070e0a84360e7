//! `ClientConfig::connect_timeout`: `Client::connect` (and
//! `LocalClient::connect`) wait for the broker's WELCOME and fail with
//! `Error::Unreachable` when none comes in time; `query_stats_within`
//! fails the same way (docs/guide.md, "Connecting").

use std::time::{Duration, Instant};

use lhcluster::Error;
use lhcluster::client::{Client, LocalClient};
use lhcluster_tests::{Transport, broker, client_config, time_limit};

const LIMIT: Duration = Duration::from_secs(30);

/// A loopback port where nothing listens (bound, then released).
fn nowhere() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("tcp://127.0.0.1:{port}")
}

#[test]
fn connect_fails_within_its_timeout_when_no_broker_answers() {
    time_limit(LIMIT, || {
        let endpoint = nowhere();
        let mut config = client_config(&endpoint);
        config.connect_timeout = Some(Duration::from_millis(300));
        let started = Instant::now();
        let e = Client::connect(config.clone()).unwrap_err();
        assert!(matches!(e, Error::Unreachable { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            format!("cannot reach the broker at {endpoint} (no answer within 300ms)")
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        let e = LocalClient::connect(config).unwrap_err();
        assert!(matches!(e, Error::Unreachable { .. }), "{e:?}");
        let e = lhcluster::broker::query_stats_within(
            &endpoint,
            Duration::from_millis(300),
            Duration::from_secs(10),
        )
        .unwrap_err();
        assert!(matches!(e, Error::Unreachable { .. }), "{e:?}");
    });
}

#[test]
fn connect_returns_with_a_session_when_the_broker_is_there() {
    time_limit(LIMIT, || {
        let broker = broker(Transport::Tcp);
        let mut config = client_config(broker.frontend());
        config.connect_timeout = Some(Duration::from_secs(10));
        let client = Client::connect(config.clone()).unwrap();
        // No wait needed: the session is up when `connect` returns.
        assert!(client.wait_connected(Duration::ZERO));
        let local = LocalClient::connect(config).unwrap();
        assert!(local.is_connected());
        let stats = lhcluster::broker::query_stats_within(
            broker.frontend(),
            Duration::from_secs(10),
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(stats.clients, 2);
        client.stop().unwrap();
        broker.stop().unwrap();
    });
}
