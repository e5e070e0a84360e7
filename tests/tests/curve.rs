//! CURVE end to end (docs/security.md): roles with keys talk, and what goes
//! over the wire is encrypted; a role without the server's key gets nothing
//! through. Loopback TCP, each test under a time limit.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lhcluster::client::{Client, ClientConfig, LocalClient};
use lhcluster::curve::{KeyList, PublicKey, SecretKey};
use lhcluster::notify::{
    NotifyBroker, NotifyBrokerConfig, NotifyOutcome, NotifyPublisher, NotifyPublisherConfig,
    NotifySubscriber, NotifySubscriberConfig,
};
use lhcluster::worker::{RequestContext, Worker};
use lhcluster::{Broker, ClientProxy, ClientProxyConfig, Flags, Payload, RequestError};
use lhcluster_tests::*;

const LIMIT: Duration = Duration::from_secs(60);
/// Generous: nothing waits this long when things work.
const WAIT: Duration = Duration::from_secs(10);
/// A payload that must never be seen in clear on the wire.
const SECRET: &[u8] = b"the-payload-nobody-may-read-0123456789";

/// A broker on loopback TCP with `secret` as its CURVE key.
fn curve_broker(secret: &SecretKey) -> Broker {
    broker_with(Transport::Tcp, |c| {
        c.curve_secret_key = Some(secret.clone())
    })
}

fn curve_client_config(endpoint: &str, server: &SecretKey) -> ClientConfig {
    let mut config = client_config(endpoint);
    config.curve_server_key = Some(server.public_key());
    config.curve_secret_key = Some(SecretKey::generate().unwrap());
    config
}

/// An echo worker of type 1 that holds the broker's key (and a key of its
/// own, generated), counting the requests it runs.
fn curve_worker(broker: &Broker, server: &SecretKey, runs: Arc<AtomicU64>) -> Worker {
    keyed_worker(broker, server, None, runs)
}

/// [`curve_worker`] with its own key `own`.
fn keyed_worker(
    broker: &Broker,
    server: &SecretKey,
    own: Option<SecretKey>,
    runs: Arc<AtomicU64>,
) -> Worker {
    let mut config = worker_config(broker);
    config.curve_server_key = Some(server.public_key());
    config.curve_secret_key = own;
    Worker::builder(config)
        .handle_raw(1, move |payload: Payload, ctx: &RequestContext| {
            runs.fetch_add(1, Ordering::Relaxed);
            echo(payload, ctx)
        })
        .start()
        .expect("worker starts")
}

/// A broker of a CURVE cluster whose members share the key pair `shared`,
/// its cluster endpoint bound, `peers` its members to connect to.
fn curve_cluster_member(shared: &SecretKey, peers: Vec<String>) -> Broker {
    broker_with(Transport::Tcp, |c| {
        c.curve_secret_key = Some(shared.clone());
        c.cluster_bind = Some(TCP_ANY.to_owned());
        c.cluster_peers = peers;
    })
}

/// A broker with a fresh CURVE key and a [`curve_worker`] registered at
/// it: the key, the broker, the worker and the worker's run count.
fn curve_broker_and_worker() -> (SecretKey, Broker, Worker, Arc<AtomicU64>) {
    let server = SecretKey::generate().unwrap();
    let broker = curve_broker(&server);
    let runs = Arc::new(AtomicU64::new(0));
    let worker = curve_worker(&broker, &server, runs.clone());
    expect_workers(&broker, 1, WAIT);
    (server, broker, worker, runs)
}

/// A client proxy on loopback TCP with fast heartbeats, its own CURVE key
/// `own`, and the key of `broker`, whose secret is `server`.
fn curve_proxy_config(broker: &Broker, server: &SecretKey, own: &SecretKey) -> ClientProxyConfig {
    let mut config = ClientProxyConfig::new(TCP_ANY, broker.frontend());
    config.heartbeat = HEARTBEAT;
    config.curve_secret_key = Some(own.clone());
    config.curve_server_key = Some(server.public_key());
    config
}

fn secret_payload() -> Payload {
    vec![SECRET.into()]
}

/// Sends [`SECRET`] as request `id` of type 1 and checks it comes back.
fn round_trip(client: &Client, id: u64) {
    let reply = client
        .send(1, id, Flags::empty(), secret_payload())
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(reply.payload[0].as_ref(), SECRET);
}

#[test]
fn keys_on_every_hop_serve_requests_end_to_end() {
    time_limit(LIMIT, || {
        let (server, broker, _worker, runs) = curve_broker_and_worker();

        let client = Client::connect(curve_client_config(broker.frontend(), &server)).unwrap();
        round_trip(&client, 7);

        // The LocalClient takes the same keys.
        let mut local =
            LocalClient::connect(curve_client_config(broker.frontend(), &server)).unwrap();
        let handle = local.send(1, 8, Flags::empty(), secret_payload()).unwrap();
        let reply = local.wait(handle).unwrap();
        assert_eq!(reply.payload[0].as_ref(), SECRET);

        // And a proxy with its own key pair between client and broker.
        let proxy_key = SecretKey::generate().unwrap();
        let proxy = ClientProxy::start(curve_proxy_config(&broker, &server, &proxy_key)).unwrap();
        let behind = Client::connect(curve_client_config(proxy.endpoint(), &proxy_key)).unwrap();
        round_trip(&behind, 9);
        assert_eq!(runs.load(Ordering::Relaxed), 3);
    });
}

/// What libzmq does with a client that has no key, or the wrong server
/// key, at a CURVE server: the handshake fails, the connection is dropped
/// (and retried), and nothing the client queued leaves it. So the client
/// never gets its `WELCOME`: to it the broker is unreachable, and its
/// requests end `Disconnected`, before their timeout: `HeartbeatsMissed`
/// when its session gives the broker up, `NotConnected` if sent while it
/// reconnects, `Send(EAGAIN)` when its socket has no connection to queue
/// on. The worker runs nothing and the broker counts nothing.
#[test]
fn a_client_without_the_servers_key_gets_nothing_through() {
    time_limit(LIMIT, || {
        let (_, broker, _worker, runs) = curve_broker_and_worker();

        let plaintext = client_config(broker.frontend());
        let wrong_key = curve_client_config(broker.frontend(), &SecretKey::generate().unwrap());
        for mut config in [plaintext, wrong_key] {
            config.request_timeout = Some(WAIT);
            let client = Client::connect(config).unwrap();
            assert!(!client.wait_connected(Duration::from_millis(300)));
            for id in 0..3 {
                let outcome = client
                    .send(1, id, Flags::empty(), secret_payload())
                    .unwrap()
                    .wait();
                assert!(
                    matches!(outcome, Err(RequestError::Disconnected(_))),
                    "{outcome:?}"
                );
            }
        }
        assert_eq!(runs.load(Ordering::Relaxed), 0);
        let stats = broker.stats().unwrap();
        assert_eq!(stats.requests_received, 0);
        assert_eq!(stats.malformed_frontend, 0);
    });
}

/// A TCP relay between a client and a broker that keeps a copy of every
/// byte, both ways.
struct Relay {
    endpoint: String,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl Relay {
    fn to(target: &str) -> Relay {
        let target = target.strip_prefix("tcp://").unwrap().to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("tcp://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        // Left running when the test ends: it only ever serves this test's
        // client, and its process ends with the test binary.
        std::thread::spawn(move || {
            for inbound in listener.incoming().flatten() {
                let Ok(outbound) = TcpStream::connect(&target) else {
                    continue;
                };
                pump(
                    inbound.try_clone().unwrap(),
                    outbound.try_clone().unwrap(),
                    &record,
                );
                pump(outbound, inbound, &record);
            }
        });
        Relay { endpoint, seen }
    }

    fn saw(&self, needle: &[u8]) -> bool {
        let seen = self.seen.lock().unwrap();
        seen.windows(needle.len()).any(|w| w == needle)
    }

    fn bytes(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, record: &Arc<Mutex<Vec<u8>>>) {
    let record = record.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        while let Ok(n @ 1..) = from.read(&mut buf) {
            record.lock().unwrap().extend_from_slice(&buf[..n]);
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

#[test]
fn the_payload_never_crosses_the_wire_in_clear() {
    time_limit(LIMIT, || {
        // First without keys: the relay sees the payload, so it records
        // what it should.
        let (broker, _worker, _client) = served(Transport::Tcp, &[1]);
        let relay = Relay::to(broker.frontend());
        let client = Client::connect(client_config(&relay.endpoint)).unwrap();
        round_trip(&client, 1);
        assert!(relay.saw(SECRET), "the relay records the traffic");

        // With CURVE: the same request and response, never in clear.
        let server = SecretKey::generate().unwrap();
        let broker = curve_broker(&server);
        let _worker = curve_worker(&broker, &server, Arc::default());
        let relay = Relay::to(broker.frontend());
        let client = Client::connect(curve_client_config(&relay.endpoint, &server)).unwrap();
        for id in 0..5 {
            round_trip(&client, id);
        }
        assert!(
            relay.bytes() > 5 * SECRET.len(),
            "traffic went through the relay"
        );
        assert!(!relay.saw(SECRET));
        assert!(!relay.saw(&SECRET[..12]));
    });
}

#[test]
fn notifications_flow_over_curve() {
    time_limit(LIMIT, || {
        let server = SecretKey::generate().unwrap();
        let mut config = NotifyBrokerConfig::new(TCP_ANY, TCP_ANY);
        config.curve_secret_key = Some(server.clone());
        let broker = NotifyBroker::start(config).unwrap();

        let (tx, rx) = crossbeam_channel::unbounded();
        let mut sub_config = NotifySubscriberConfig::new(broker.frontend()).topic("t");
        sub_config.curve_server_key = Some(server.public_key());
        sub_config.confirm_timeout = Some(WAIT);
        let _subscriber =
            NotifySubscriber::connect(sub_config, move |n: lhcluster::notify::RawNotification| {
                let _ = tx.send(n.payload[0].to_vec());
                NotifyOutcome::Continue
            })
            .expect("the subscriber's subscription is confirmed over CURVE");

        let mut pub_config = NotifyPublisherConfig::new(broker.backend());
        pub_config.curve_server_key = Some(server.public_key());
        pub_config.connect_timeout = Some(WAIT);
        let publisher = NotifyPublisher::connect(pub_config).expect("publisher connects");
        publisher.publish("t", secret_payload()).unwrap();
        assert_eq!(rx.recv_timeout(WAIT).unwrap(), SECRET);

        // A publisher without the key is never connected.
        let mut plain = NotifyPublisherConfig::new(broker.backend());
        plain.connect_timeout = Some(Duration::from_millis(500));
        assert!(NotifyPublisher::connect(plain).is_err());
    });
}

#[test]
fn keys_are_checked_by_validate() {
    let own = SecretKey::generate().unwrap();
    let mut config = ClientConfig::new("tcp://127.0.0.1:1");
    config.curve_secret_key = Some(own);
    let err = config.validate().unwrap_err();
    assert_eq!(err.field, "curve_secret_key");
    assert!(err.reason.contains("curve_server_key"), "{err}");
    config.curve_server_key = Some(SecretKey::generate().unwrap().public_key());
    config.validate().unwrap();

    assert!("not a key".parse::<PublicKey>().is_err());
}

#[test]
fn cluster_members_sharing_a_key_pair_mesh_over_curve() {
    time_limit(LIMIT, || {
        let shared = SecretKey::generate().unwrap();
        let first = curve_cluster_member(&shared, vec![]);
        let second =
            curve_cluster_member(&shared, vec![first.cluster_endpoint().unwrap().to_owned()]);
        let runs = Arc::new(AtomicU64::new(0));
        let _worker = curve_worker(&second, &shared, runs.clone());
        let served_remotely = eventually(WAIT, || {
            let c = first.stats().unwrap().cluster.expect("clustered");
            c.peers
                .iter()
                .any(|p| p.state == "up" && p.serves.contains_key(&1))
        });
        assert!(served_remotely, "the route is up over CURVE");
        let client = Client::connect(curve_client_config(first.frontend(), &shared)).unwrap();
        round_trip(&client, 1);
        assert_eq!(runs.load(Ordering::Relaxed), 1);
    });
}

/// ZAP: a broker with allow lists lets in only the listed client and
/// worker keys. An unlisted key fails its handshake as a wrong server key
/// does (the client's requests end `Disconnected`), and is counted.
#[test]
fn only_listed_keys_get_in() {
    time_limit(LIMIT, || {
        let server = SecretKey::generate().unwrap();
        let client_key = SecretKey::generate().unwrap();
        let worker_key = SecretKey::generate().unwrap();
        let broker = broker_with(Transport::Tcp, |c| {
            c.curve_secret_key = Some(server.clone());
            c.curve_client_keys = Some(KeyList::from_keys([client_key.public_key()]));
            c.curve_worker_keys =
                Some(KeyList::parse(&format!("{} 1\n", worker_key.public_key())).unwrap());
        });

        // An unlisted worker never registers.
        let stray_runs = Arc::new(AtomicU64::new(0));
        let _stray = curve_worker(&broker, &server, stray_runs.clone());
        assert!(eventually(WAIT, || broker.stats().unwrap().auth_failures > 0));

        let runs = Arc::new(AtomicU64::new(0));
        let _worker = keyed_worker(&broker, &server, Some(worker_key), runs.clone());
        expect_workers(&broker, 1, WAIT);

        let mut listed = curve_client_config(broker.frontend(), &server);
        listed.curve_secret_key = Some(client_key);
        let client = Client::connect(listed).unwrap();
        round_trip(&client, 1);

        let before = broker.stats().unwrap().auth_failures;
        let stranger = Client::connect(curve_client_config(broker.frontend(), &server)).unwrap();
        let outcome = stranger
            .send(1, 2, Flags::empty(), secret_payload())
            .unwrap()
            .wait();
        assert!(
            matches!(outcome, Err(RequestError::Disconnected(_))),
            "{outcome:?}"
        );
        assert!(broker.stats().unwrap().auth_failures > before);
        assert_eq!(runs.load(Ordering::Relaxed), 1);
        assert_eq!(stray_runs.load(Ordering::Relaxed), 0);
        assert_eq!(broker.stats().unwrap().workers, 1);
    });
}

/// A worker with `own` as its key, serving `types` with an echo handler,
/// counting its runs.
fn typed_worker(
    broker: &Broker,
    server: &SecretKey,
    own: &SecretKey,
    types: &[u32],
    runs: Arc<AtomicU64>,
) -> Worker {
    let mut config = worker_config(broker);
    config.curve_server_key = Some(server.public_key());
    config.curve_secret_key = Some(own.clone());
    let mut builder = Worker::builder(config);
    for &t in types {
        let runs = runs.clone();
        builder = builder.handle_raw(t, move |payload: Payload, ctx: &RequestContext| {
            runs.fetch_add(1, Ordering::Relaxed);
            echo(payload, ctx)
        });
    }
    builder.start().expect("worker starts")
}

/// Authorization per type (docs/security.md): a stolen `thumbnails` worker
/// key cannot take `payments`, and a client key limited to `thumbnails`
/// gets FORBIDDEN for `payments`, which no worker ever sees.
#[test]
fn a_stolen_thumbnails_key_cannot_take_payments() {
    time_limit(LIMIT, || {
        let thumbnails = lhcluster::request_type_id("thumbnails");
        let payments = lhcluster::request_type_id("payments");
        let server = SecretKey::generate().unwrap();
        let (thumbs_key, payments_key) = (
            SecretKey::generate().unwrap(),
            SecretKey::generate().unwrap(),
        );
        let (limited, trusted_key) = (
            SecretKey::generate().unwrap(),
            SecretKey::generate().unwrap(),
        );
        let workers = format!(
            "# worker keys\n{} thumbnails\n{} payments\n",
            thumbs_key.public_key(),
            payments_key.public_key()
        );
        let clients = format!(
            "{} thumbnails\n{}\n",
            limited.public_key(),
            trusted_key.public_key()
        );
        let broker = broker_with(Transport::Tcp, |c| {
            c.curve_secret_key = Some(server.clone());
            c.curve_worker_keys = Some(KeyList::parse(&workers).unwrap());
            c.curve_client_keys = Some(KeyList::parse(&clients).unwrap());
        });

        // The stolen key, registering for payments: refused, told why.
        let stolen_runs = Arc::new(AtomicU64::new(0));
        let thief = typed_worker(
            &broker,
            &server,
            &thumbs_key,
            &[payments],
            stolen_runs.clone(),
        );
        assert!(eventually(WAIT, || {
            thief.stats().unwrap().registrations_forbidden > 0
        }));
        assert!(broker.stats().unwrap().workers_forbidden > 0);
        assert!(!thief.stats().unwrap().registered);
        assert_eq!(broker.stats().unwrap().workers, 0);

        // The rightful workers register.
        let runs = Arc::new(AtomicU64::new(0));
        let _thumbs = typed_worker(&broker, &server, &thumbs_key, &[thumbnails], runs.clone());
        let _payments = typed_worker(&broker, &server, &payments_key, &[payments], runs.clone());
        expect_workers(&broker, 2, WAIT);

        let connect = |key: &SecretKey| {
            let mut config = curve_client_config(broker.frontend(), &server);
            config.curve_secret_key = Some(key.clone());
            Client::connect(config).unwrap()
        };
        let trusted = connect(&trusted_key);
        let reply = trusted
            .send(payments, 1, Flags::empty(), secret_payload())
            .unwrap()
            .wait();
        assert_eq!(reply.unwrap().payload[0].as_ref(), SECRET);

        let limited = connect(&limited);
        let reply = limited
            .send(thumbnails, 2, Flags::empty(), secret_payload())
            .unwrap()
            .wait();
        assert!(reply.is_ok(), "{reply:?}");
        let refused = limited
            .send(payments, 3, Flags::empty(), secret_payload())
            .unwrap()
            .wait()
            .unwrap_err();
        assert!(refused.is_forbidden(), "{refused:?}");
        assert!(
            refused.to_string().contains("may not send request type"),
            "{refused}"
        );

        let stats = broker.stats().unwrap();
        assert_eq!(stats.requests_forbidden, 1);
        assert_eq!(
            runs.load(Ordering::Relaxed),
            2,
            "payments once, thumbnails once"
        );
        assert_eq!(stolen_runs.load(Ordering::Relaxed), 0);
        // The counters travel in STATS_REPLY too.
        let queried = lhcluster::broker::query_stats(broker.frontend(), WAIT);
        assert!(
            queried.is_err(),
            "a plaintext query cannot reach a CURVE broker"
        );
    });
}

/// The proxy's client side takes an allow list too: a listed client gets
/// through, another fails its handshake and is counted; the broker sees
/// only the proxy's key.
#[test]
fn a_proxy_lets_in_only_listed_clients() {
    time_limit(LIMIT, || {
        let (server, broker, _worker, _) = curve_broker_and_worker();
        let proxy_key = SecretKey::generate().unwrap();
        let listed = SecretKey::generate().unwrap();
        let mut config = curve_proxy_config(&broker, &server, &proxy_key);
        config.curve_client_keys = Some(KeyList::from_keys([listed.public_key()]));
        let proxy = ClientProxy::start(config).unwrap();

        let mut ok = curve_client_config(proxy.endpoint(), &proxy_key);
        ok.curve_secret_key = Some(listed);
        round_trip(&Client::connect(ok).unwrap(), 1);

        let stranger = Client::connect(curve_client_config(proxy.endpoint(), &proxy_key)).unwrap();
        let outcome = stranger
            .request(1)
            .id(2)
            .payload(secret_payload())
            .timeout(Duration::from_secs(2))
            .send()
            .unwrap()
            .wait();
        assert!(outcome.is_err(), "{outcome:?}");
        assert!(proxy.stats().unwrap().auth_failures > 0);
    });
}

/// The notify broker's two sides take allow lists: an unlisted subscriber
/// never gets its subscription confirmed, an unlisted publisher never
/// connects; both are counted.
#[test]
fn a_notify_broker_lets_in_only_listed_keys() {
    time_limit(LIMIT, || {
        let server = SecretKey::generate().unwrap();
        let (sub_key, pub_key) = (
            SecretKey::generate().unwrap(),
            SecretKey::generate().unwrap(),
        );
        let mut config = NotifyBrokerConfig::new(TCP_ANY, TCP_ANY);
        config.curve_secret_key = Some(server.clone());
        config.curve_subscriber_keys = Some(KeyList::from_keys([sub_key.public_key()]));
        config.curve_publisher_keys = Some(KeyList::from_keys([pub_key.public_key()]));
        let broker = NotifyBroker::start(config).unwrap();

        let subscribe = |own: Option<SecretKey>, wait: Duration| {
            let (tx, rx) = crossbeam_channel::unbounded();
            let mut c = NotifySubscriberConfig::new(broker.frontend()).topic("t");
            c.curve_server_key = Some(server.public_key());
            c.curve_secret_key = own;
            c.confirm_timeout = Some(wait);
            let sub = NotifySubscriber::connect(c, move |n: lhcluster::notify::RawNotification| {
                let _ = tx.send(n.payload[0].to_vec());
                NotifyOutcome::Continue
            });
            (sub, rx)
        };
        let (stranger, _) = subscribe(None, Duration::from_millis(500));
        assert!(stranger.is_err(), "an unlisted subscriber is not confirmed");
        let (listed, rx) = subscribe(Some(sub_key), WAIT);
        let _listed = listed.expect("a listed subscriber is confirmed");

        let publish = |own: Option<SecretKey>, wait: Duration| {
            let mut c = NotifyPublisherConfig::new(broker.backend());
            c.curve_server_key = Some(server.public_key());
            c.curve_secret_key = own;
            c.connect_timeout = Some(wait);
            NotifyPublisher::connect(c)
        };
        assert!(publish(None, Duration::from_millis(500)).is_err());
        let publisher = publish(Some(pub_key), WAIT).expect("a listed publisher connects");
        publisher.publish("t", secret_payload()).unwrap();
        assert_eq!(rx.recv_timeout(WAIT).unwrap(), SECRET);
        assert!(broker.stats().unwrap().auth_failures >= 2);
    });
}

/// A broker's cluster endpoint lets in only the cluster's own key (the
/// members share the key pair): a stranger holding the public key alone
/// fails its handshake and is counted.
#[test]
fn the_cluster_endpoint_lets_in_only_the_members_key() {
    time_limit(LIMIT, || {
        let shared = SecretKey::generate().unwrap();
        let broker = curve_cluster_member(&shared, vec![]);
        let stranger = lhcluster::context().socket(zmq::DEALER).unwrap();
        stranger.set_linger(0).unwrap();
        let own = zmq::CurveKeyPair::new().unwrap();
        stranger
            .set_curve_serverkey(shared.public_key().as_bytes())
            .unwrap();
        stranger.set_curve_publickey(&own.public_key).unwrap();
        stranger.set_curve_secretkey(&own.secret_key).unwrap();
        stranger
            .connect(broker.cluster_endpoint().unwrap())
            .unwrap();
        assert!(eventually(WAIT, || broker.stats().unwrap().auth_failures > 0));
    });
}

/// A proxy's client list reloaded (`reload_keys`, SIGHUP in the CLI): a
/// key added gets in, a connection still allowed is kept (no reconnect),
/// a key removed is refused from its next request (FORBIDDEN, counted),
/// its connection being already made; a proxy started without a list
/// cannot get one.
#[test]
fn a_proxy_reload_keeps_allowed_connections_and_refuses_removed_keys() {
    time_limit(LIMIT, || {
        let (server, broker, _worker, _) = curve_broker_and_worker();
        let proxy_key = SecretKey::generate().unwrap();
        let (a_key, b_key) = (
            SecretKey::generate().unwrap(),
            SecretKey::generate().unwrap(),
        );
        let mut config = curve_proxy_config(&broker, &server, &proxy_key);
        config.curve_client_keys = Some(KeyList::from_keys([a_key.public_key()]));
        let proxy = ClientProxy::start(config).unwrap();
        let keyed = |own: &SecretKey| {
            let mut c = curve_client_config(proxy.endpoint(), &proxy_key);
            c.curve_secret_key = Some(own.clone());
            c.request_timeout = Some(WAIT);
            Client::connect(c).unwrap()
        };
        let a = keyed(&a_key);
        round_trip(&a, 1);
        let b = keyed(&b_key);
        assert!(
            !b.wait_connected(Duration::from_millis(300)),
            "B is not listed yet"
        );

        proxy
            .reload_keys(KeyList::from_keys([a_key.public_key(), b_key.public_key()]))
            .unwrap();
        assert!(b.wait_connected(WAIT), "B gets in once listed");
        round_trip(&b, 2);
        round_trip(&a, 3);
        assert_eq!(a.stats().unwrap().reconnects, 0, "A's connection was kept");
        // B's first tries, refused, count as reconnects: none more after.
        let b_reconnects = b.stats().unwrap().reconnects;

        proxy
            .reload_keys(KeyList::from_keys([b_key.public_key()]))
            .unwrap();
        let refused = a
            .send(1, 4, Flags::empty(), secret_payload())
            .unwrap()
            .wait()
            .unwrap_err();
        assert!(refused.is_forbidden(), "{refused:?}");
        round_trip(&b, 5);
        let stats = proxy.stats().unwrap();
        assert_eq!(stats.requests_forbidden, 1);
        assert_eq!(
            b.stats().unwrap().reconnects,
            b_reconnects,
            "B's connection was kept"
        );

        let mut plain = ClientProxyConfig::new(TCP_ANY, broker.frontend());
        plain.curve_secret_key = Some(proxy_key.clone());
        plain.curve_server_key = Some(server.public_key());
        let unlisted = ClientProxy::start(plain).unwrap();
        let err = unlisted
            .reload_keys(KeyList::from_keys([a_key.public_key()]))
            .unwrap_err();
        assert!(err.to_string().contains("curve_client_keys"), "{err}");
    });
}

/// A notify broker's lists reloaded: a subscriber and a publisher added
/// get in, connections still allowed are kept (the publisher does not
/// reconnect, the subscriber keeps receiving), and a connected publisher
/// whose key is removed has its notifications dropped and counted.
#[test]
fn a_notify_broker_reload_keeps_allowed_connections_and_drops_removed_publishers() {
    time_limit(LIMIT, || {
        let server = SecretKey::generate().unwrap();
        let key = || SecretKey::generate().unwrap();
        let (s1, s2, p1, p2) = (key(), key(), key(), key());
        let mut config = NotifyBrokerConfig::new(TCP_ANY, TCP_ANY);
        config.curve_secret_key = Some(server.clone());
        config.curve_subscriber_keys = Some(KeyList::from_keys([s1.public_key()]));
        config.curve_publisher_keys = Some(KeyList::from_keys([p1.public_key()]));
        let broker = NotifyBroker::start(config).unwrap();
        let subscribe = |own: &SecretKey| {
            let (tx, rx) = crossbeam_channel::unbounded();
            let mut c = NotifySubscriberConfig::new(broker.frontend()).topic("t");
            c.curve_server_key = Some(server.public_key());
            c.curve_secret_key = Some(own.clone());
            c.confirm_timeout = Some(WAIT);
            let sub = NotifySubscriber::connect(c, move |n: lhcluster::notify::RawNotification| {
                let _ = tx.send(n.payload[0].to_vec());
                NotifyOutcome::Continue
            })
            .expect("a listed subscriber is confirmed");
            (sub, rx)
        };
        let publish = |own: &SecretKey| {
            let mut c = NotifyPublisherConfig::new(broker.backend());
            c.curve_server_key = Some(server.public_key());
            c.curve_secret_key = Some(own.clone());
            c.connect_timeout = Some(WAIT);
            NotifyPublisher::connect(c).expect("a listed publisher connects")
        };
        let (_sub1, rx1) = subscribe(&s1);
        let pub1 = publish(&p1);
        pub1.publish("t", vec![b"one".as_slice().into()]).unwrap();
        assert_eq!(rx1.recv_timeout(WAIT).unwrap(), b"one");

        broker
            .reload_keys(
                Some(KeyList::from_keys([s1.public_key(), s2.public_key()])),
                Some(KeyList::from_keys([p1.public_key(), p2.public_key()])),
            )
            .unwrap();
        let (_sub2, rx2) = subscribe(&s2);
        let pub2 = publish(&p2);
        pub1.publish("t", vec![b"two".as_slice().into()]).unwrap();
        assert_eq!(rx1.recv_timeout(WAIT).unwrap(), b"two");
        assert_eq!(rx2.recv_timeout(WAIT).unwrap(), b"two");
        assert_eq!(pub1.stats().unwrap().connections, 1, "P1 was kept");

        // P1 removed (the subscriber list kept: `None`).
        broker
            .reload_keys(None, Some(KeyList::from_keys([p2.public_key()])))
            .unwrap();
        pub1.publish("t", vec![b"refused".as_slice().into()])
            .unwrap();
        assert!(eventually(WAIT, || {
            broker.stats().unwrap().notifications_forbidden == 1
        }));
        pub2.publish("t", vec![b"three".as_slice().into()]).unwrap();
        // Dropped before P2's was forwarded: never delivered after it.
        assert_eq!(rx1.recv_timeout(WAIT).unwrap(), b"three");
        assert_eq!(rx2.recv_timeout(WAIT).unwrap(), b"three");
        assert!(rx1.try_recv().is_err() && rx2.try_recv().is_err());

        let unlisted = NotifyBroker::start(NotifyBrokerConfig::new(TCP_ANY, TCP_ANY)).unwrap();
        let err = unlisted
            .reload_keys(Some(KeyList::from_keys([s1.public_key()])), None)
            .unwrap_err();
        assert!(err.to_string().contains("curve_subscriber_keys"), "{err}");
    });
}
