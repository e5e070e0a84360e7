//! Failover of the connecting roles between independent brokers: a client,
//! a worker and a client proxy given several brokers use one at a time and
//! move to the next of their list when theirs is gone (docs/guide.md,
//! "Several brokers"; docs/guarantees.md).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossbeam_channel::Receiver;
use lhcluster::client::{
    Client, ClientConfig, ClientEvent, DisconnectReason, LocalClient, RequestError, ResponseHandle,
};
use lhcluster::client_proxy::{ClientProxy, ClientProxyConfig};
use lhcluster::protocol::{self, Message};
use lhcluster::worker::{HandlerError, RequestContext, Worker, WorkerConfig};
use lhcluster::{Broker, Flags, Payload};
use lhcluster_tests::{
    HEARTBEAT, TCP_ANY, Transport, broker, client_config, eventually, expect_workers, inproc,
    time_limit, times_out,
};

const LIMIT: Duration = Duration::from_secs(30);
/// Longer than any wait below: a wait that ends by this is a failure.
const WAIT: Duration = Duration::from_secs(10);

fn frontends(brokers: &[&Broker]) -> Vec<String> {
    brokers.iter().map(|b| b.frontend().to_owned()).collect()
}

fn backends(brokers: &[&Broker]) -> Vec<String> {
    brokers.iter().map(|b| b.backend().to_owned()).collect()
}

fn client_of(brokers: Vec<String>) -> Client {
    let mut config: ClientConfig = client_config(&brokers[0]);
    config.brokers = brokers;
    Client::connect(config).expect("client starts")
}

fn echo_worker_of(brokers: Vec<String>, t: u32) -> Worker {
    let mut config = worker_config_of(brokers);
    config.capacity = 4;
    Worker::builder(config)
        .handle_raw(t, |p: Payload, _: &RequestContext| Ok(p))
        .start()
        .expect("worker starts")
}

fn worker_config_of(brokers: Vec<String>) -> WorkerConfig {
    let mut config = WorkerConfig::new(&brokers[0]);
    config.brokers = brokers;
    config.heartbeat = HEARTBEAT;
    config.reconnect_min = Duration::from_millis(20);
    config.reconnect_max = Duration::from_millis(200);
    config
}

fn echo(client: &Client, t: u32, text: &str) -> Result<String, RequestError> {
    let reply = client
        .request(t)
        .payload_bytes(text.as_bytes())
        .send()
        .expect("request sent")
        .wait()?;
    Ok(String::from_utf8_lossy(&reply.payload[0]).into_owned())
}

/// Waits for the next session event of `events`: `true` for Connected,
/// `false` for Disconnected.
fn next_session_event(events: &Receiver<ClientEvent>) -> bool {
    loop {
        match events.recv_timeout(WAIT).expect("a session event") {
            ClientEvent::Connected => return true,
            ClientEvent::Disconnected => return false,
            _ => {}
        }
    }
}

#[test]
fn a_client_whose_first_broker_is_dead_is_served_by_the_next() {
    time_limit(LIMIT, || {
        let alive = broker(Transport::Inproc);
        let _worker = echo_worker_of(backends(&[&alive]), 1);
        // Nothing is bound there, ever.
        let dead = inproc("nobody-home");
        let client = client_of(vec![dead, alive.frontend().to_owned()]);
        // The dead one is given up within the liveness bound (3 × 100 ms).
        assert!(client.wait_connected(WAIT), "moves on to the live broker");
        assert_eq!(echo(&client, 1, "hi").unwrap(), "hi");
        assert_eq!(client.stats().unwrap().failovers, 1);
    });
}

#[test]
fn a_local_client_moves_past_a_dead_broker_while_polled() {
    time_limit(LIMIT, || {
        let alive = broker(Transport::Inproc);
        let _worker = echo_worker_of(backends(&[&alive]), 1);
        let mut config: ClientConfig = client_config(alive.frontend());
        config.brokers = vec![inproc("nobody-home"), alive.frontend().to_owned()];
        let mut client = LocalClient::connect(config).unwrap();
        // Its I/O happens while it is polled: poll until the session is up.
        let deadline = std::time::Instant::now() + WAIT;
        while !client.is_connected() {
            assert!(std::time::Instant::now() < deadline, "never connected");
            client.poll(Duration::from_millis(50)).unwrap();
        }
        let handle = client.request(1).payload_bytes(b"local").send().unwrap();
        let reply = client.wait(handle).unwrap();
        assert_eq!(&reply.payload[0][..], b"local");
        assert_eq!(client.stats().unwrap().failovers, 1);
    });
}

/// A broker that greets, then says nothing more: what a killed (`kill
/// -9`) or cut-off broker looks like to its peers. Its WELCOME says it
/// sends a heartbeat every `heartbeat`.
struct SilentBroker {
    endpoint: String,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SilentBroker {
    fn start(heartbeat: Duration) -> Self {
        let endpoint = inproc("silent");
        let socket = lhcluster::context().socket(zmq::ROUTER).unwrap();
        socket.bind(&endpoint).unwrap();
        socket.set_linger(0).unwrap();
        // Looks at `stop` between reads.
        socket.set_rcvtimeo(50).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut welcome = Vec::new();
            let heartbeat_ms = u32::try_from(heartbeat.as_millis()).unwrap();
            Message::Welcome {
                heartbeat_ms,
                max_message_size: 0,
            }
            .encode(&mut welcome);
            while !stopped.load(Ordering::Relaxed) {
                let Ok(frames) = socket.recv_multipart(0) else {
                    continue;
                };
                let Some((peer, rest)) = frames.split_first() else {
                    continue;
                };
                let rest = rest.iter().map(|f| f.clone().into()).collect();
                if let Ok(Message::Hello(_) | Message::Ready(_)) = protocol::decode(rest) {
                    let _ = socket.send_multipart([peer.as_slice(), &welcome], 0);
                }
            }
        });
        Self {
            endpoint,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for SilentBroker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn a_silent_broker_ends_the_requests_sent_to_it_and_the_client_moves_on() {
    time_limit(LIMIT, || {
        let silent = SilentBroker::start(HEARTBEAT);
        let alive = broker(Transport::Inproc);
        let _worker = echo_worker_of(backends(&[&alive]), 1);
        let client = client_of(vec![silent.endpoint.clone(), alive.frontend().to_owned()]);
        assert!(client.wait_connected(WAIT), "the silent broker welcomes");
        let events = client.events().clone();
        assert!(next_session_event(&events), "the silent broker's WELCOME");
        // Sent to the silent broker: it never answers, and the request ends
        // when the broker is declared dead, not at its 10 s timeout.
        let lost = client.request(1).payload_bytes(b"lost").send().unwrap();
        let started = std::time::Instant::now();
        match lost.wait() {
            Err(RequestError::Disconnected(DisconnectReason::HeartbeatsMissed)) => {}
            other => panic!("expected a broker-gone error, got {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(!next_session_event(&events));
        assert!(next_session_event(&events), "connected to the next broker");
        assert_eq!(echo(&client, 1, "after").unwrap(), "after");
        drop(silent);
    });
}

/// A worker whose handler waits, for a request `held`, for a go (or its
/// sender to drop).
fn held_worker(brokers: Vec<String>, t: u32) -> (Worker, crossbeam_channel::Sender<()>) {
    let (go, wait) = crossbeam_channel::unbounded::<()>();
    let worker = Worker::builder(worker_config_of(brokers))
        .handle_raw(t, move |p: Payload, _: &RequestContext| {
            if p.first().is_some_and(|f| &f[..] == b"held") {
                let _ = wait.recv();
            }
            Ok::<_, HandlerError>(p)
        })
        .start()
        .expect("worker starts");
    (worker, go)
}

#[test]
fn a_client_and_a_worker_on_a_stopped_broker_both_move_to_the_next() {
    time_limit(LIMIT, || {
        let b1 = broker(Transport::Tcp);
        let b2 = broker(Transport::Tcp);
        let (worker, go) = held_worker(backends(&[&b1, &b2]), 1);
        expect_workers(&b1, 1, WAIT);
        let client = client_of(frontends(&[&b1, &b2]));
        assert!(client.wait_connected(WAIT));
        assert_eq!(echo(&client, 1, "on b1").unwrap(), "on b1");
        // Held by the worker when b1 goes.
        let held: ResponseHandle = lhcluster_tests::send_until_dispatched(
            client.request(1).id(1000).payload_bytes(b"held"),
            Flags::empty(),
        );
        b1.stop().unwrap();
        // A definite outcome for the request in flight, at once.
        match held.wait() {
            Err(RequestError::Disconnected(DisconnectReason::BrokerShutDown)) => {}
            other => panic!("expected a broker-gone error, got {other:?}"),
        }
        // Both are on b2 now: the worker registered there (READY), and
        // requests sent after the move are served there.
        expect_workers(&b2, 1, WAIT);
        assert!(client.wait_connected(WAIT));
        // The handler of b1's request is still running: capacity 1, so
        // b2's request waits for it; its result is not sent to b2.
        drop(go);
        assert_eq!(echo(&client, 1, "on b2").unwrap(), "on b2");
        assert_eq!(b2.stats().unwrap().requests_completed, 1);
        assert!(eventually(WAIT, || worker.stats().unwrap().stale_dropped == 1));
        let s = worker.stats().unwrap();
        assert_eq!((s.failovers, s.requests_succeeded), (1, 3));
        assert_eq!(
            b2.stats().unwrap().stale_results,
            0,
            "nothing stale reached b2"
        );
        assert_eq!(client.stats().unwrap().failovers, 1);
    });
}

#[test]
fn a_proxy_resends_its_whole_buffer_to_the_next_broker() {
    time_limit(LIMIT, || {
        const N: u64 = 50;
        // b1 has no worker: what the proxy sends it stays buffered there.
        let b1 = broker(Transport::Tcp);
        let b2 = broker(Transport::Tcp);
        let worker = echo_worker_of(backends(&[&b2]), 1);
        expect_workers(&b2, 1, WAIT);
        let mut config = ClientProxyConfig::new(TCP_ANY, b1.frontend());
        config.brokers = frontends(&[&b1, &b2]);
        config.heartbeat = HEARTBEAT;
        config.reconnect_min = Duration::from_millis(20);
        config.reconnect_max = Duration::from_millis(200);
        // No timer re-send during the test: only the failover re-sends.
        config.resend_initial = Duration::from_secs(60);
        let proxy = ClientProxy::start(config).unwrap();
        let mut client_config = client_config(proxy.endpoint());
        client_config.request_timeout = Some(Duration::from_secs(20));
        let client = Client::connect(client_config).unwrap();
        assert!(client.wait_connected(WAIT));
        let handles: Vec<ResponseHandle> = (0..N)
            .map(|i| {
                client
                    .request(1)
                    .id(i)
                    .payload_bytes(&i.to_le_bytes())
                    .send()
                    .unwrap()
            })
            .collect();
        // Every request reached b1 and waits there.
        assert!(eventually(WAIT, || {
            b1.stats().unwrap().requests_received == N
        }));
        assert_eq!(proxy.stats().unwrap().buffered, N);
        b1.stop().unwrap();
        for (i, handle) in handles.into_iter().enumerate() {
            let reply = handle.wait().unwrap_or_else(|e| panic!("request {i}: {e}"));
            assert_eq!(&reply.payload[0][..], &(i as u64).to_le_bytes());
        }
        assert_eq!(b2.stats().unwrap().requests_completed, N);
        let s = proxy.stats().unwrap();
        assert_eq!(s.buffered, 0);
        assert!(s.requests_resent >= N, "the whole buffer went to b2");
        assert_eq!(worker.stats().unwrap().requests_succeeded, N);
    });
}

// ---------------------------------------------------------------- notifications

mod notify {
    use super::*;
    use lhcluster::notify::{
        NotifyBroker, NotifyBrokerConfig, NotifyOutcome, NotifyPublisher, NotifyPublisherConfig,
        NotifySubscriber, NotifySubscriberConfig, RawNotification,
    };

    fn notify_broker() -> NotifyBroker {
        let mut config = NotifyBrokerConfig::new(TCP_ANY, TCP_ANY);
        config.heartbeat = HEARTBEAT;
        NotifyBroker::start(config).expect("notify broker starts")
    }

    /// A subscriber of topic `t` on `endpoints`, and what it receives.
    fn subscriber(endpoints: Vec<String>) -> (NotifySubscriber, Receiver<String>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut config = NotifySubscriberConfig::new(&endpoints[0]).topic("t");
        config.endpoints = endpoints;
        config.heartbeat = HEARTBEAT;
        let subscriber = NotifySubscriber::connect(config, move |n: RawNotification| {
            let _ = tx.send(String::from_utf8_lossy(&n.payload[0]).into_owned());
            NotifyOutcome::Continue
        })
        .expect("subscriber connects");
        (subscriber, rx)
    }

    /// Publishes pings until `got` receives one: the path from the
    /// publisher to that subscriber is up.
    fn until_received(publisher: &NotifyPublisher, got: &Receiver<String>) {
        loop {
            publisher
                .publish("t", vec![b"ping".as_slice().into()])
                .unwrap();
            if got.recv_timeout(Duration::from_millis(50)).is_ok() {
                return;
            }
        }
    }

    /// The next notification of `got` that is not a ping.
    fn next(got: &Receiver<String>, timeout: Duration) -> Option<String> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match got.recv_timeout(left) {
                Ok(text) if text == "ping" => {}
                Ok(text) => return Some(text),
                Err(_) => return None,
            }
        }
    }

    #[test]
    fn a_publisher_reaches_every_notify_broker_and_a_subscriber_fails_over() {
        time_limit(LIMIT, || {
            let (nb1, nb2) = (notify_broker(), notify_broker());
            let mut config = NotifyPublisherConfig::new(nb1.backend());
            config.endpoints = vec![nb1.backend().to_owned(), nb2.backend().to_owned()];
            config.heartbeat = HEARTBEAT;
            let publisher = NotifyPublisher::connect(config).unwrap();
            let (moving, got) =
                subscriber(vec![nb1.frontend().to_owned(), nb2.frontend().to_owned()]);
            let (on_nb2, got_nb2) = subscriber(vec![nb2.frontend().to_owned()]);
            until_received(&publisher, &got);
            until_received(&publisher, &got_nb2);
            // Each broker forwards it (the subscriber on nb1, and the one on
            // nb2, get it); each subscriber gets it once.
            publisher
                .publish("t", vec![b"one".as_slice().into()])
                .unwrap();
            assert_eq!(next(&got, WAIT).as_deref(), Some("one"));
            assert_eq!(next(&got_nb2, WAIT).as_deref(), Some("one"));
            assert_eq!(next(&got, Duration::from_millis(200)), None, "no copy");

            nb1.stop().unwrap();
            // Silent for 3 × 100 ms: the subscriber moves to nb2, and its
            // subscription is confirmed there.
            assert!(eventually(WAIT, || moving.stats().unwrap().failovers == 1));
            moving.subscribe("t").unwrap();
            assert!(publisher.is_connected(), "nb2 still takes notifications");
            publisher
                .publish("t", vec![b"two".as_slice().into()])
                .unwrap();
            assert_eq!(next(&got, WAIT).as_deref(), Some("two"));
            assert_eq!(next(&got_nb2, WAIT).as_deref(), Some("two"));
            assert_eq!(on_nb2.stats().unwrap().failovers, 0);
        });
    }
}

/// A `Client` sends on the caller's thread while its driver sleeps until
/// its next timer (client/driver.rs): a request whose timeout comes sooner
/// must wake it.
#[test]
fn a_timeout_sooner_than_the_drivers_next_timer_fires_in_time() {
    time_limit(LIMIT, || {
        // Nothing comes from the broker, which promises a heartbeat every
        // 20 s; the client's own heartbeats are as far apart (its driver,
        // not woken, would sleep for 10 s).
        let silent = SilentBroker::start(Duration::from_secs(20));
        let mut config = client_config(&silent.endpoint);
        config.heartbeat = Duration::from_secs(20);
        let client = Client::connect(config).unwrap();
        assert!(client.wait_connected(WAIT), "the silent broker welcomes");
        // Let the driver fall asleep after the greeting.
        std::thread::sleep(Duration::from_millis(50));
        let started = std::time::Instant::now();
        times_out(client.request(1), Duration::from_millis(100));
        let waited = started.elapsed();
        assert!(
            waited < Duration::from_secs(5),
            "the 100 ms timeout fired after {waited:?}: the driver slept through it"
        );
    });
}
