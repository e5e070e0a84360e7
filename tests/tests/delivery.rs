//! Delivery guarantees end to end: receipts, death policies, takeover,
//! reply-to, and the client proxy across broker restarts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lhcluster::client::{Client, ClientConfig, ClientEvent, ReceiptKind};
use lhcluster::client_proxy::{ClientProxy, ClientProxyConfig};
use lhcluster::worker::{HandlerError, RequestContext, Worker};
use lhcluster::{Broker, BrokerConfig, Flags, Payload, RequestError, Status};
use lhcluster_tests::*;

const LIMIT: Duration = Duration::from_secs(60);

fn echo_attempt(payload: Payload, ctx: &RequestContext) -> Result<Payload, HandlerError> {
    let mut out = payload;
    out.push(format!("attempt={}", ctx.attempt).as_bytes().into());
    Ok(out)
}

fn start_echo(broker: &Broker, types: &[u32]) -> Worker {
    let mut builder = Worker::builder(worker_config(broker));
    for &t in types {
        builder = builder.handle_raw(t, echo_attempt);
    }
    builder.start().unwrap()
}

/// A worker whose handler blocks until released (or 20 s).
fn blocking_worker(broker: &Broker, t: u32) -> (Worker, crossbeam_channel::Sender<()>) {
    let (release, gate) = crossbeam_channel::unbounded::<()>();
    let worker = Worker::builder(worker_config(broker))
        .handle_raw(t, move |p: Payload, ctx: &RequestContext| {
            let _ = gate.recv_timeout(Duration::from_secs(20));
            echo_attempt(p, ctx)
        })
        .start()
        .unwrap();
    (worker, release)
}

fn last_frame(reply: &lhcluster::client::Reply) -> String {
    String::from_utf8_lossy(reply.payload.last().map_or(&[][..], |f| &f[..])).into_owned()
}

fn receipt_events(client: &Client) -> Vec<ReceiptKind> {
    client
        .events()
        .try_iter()
        .filter_map(|e| match e {
            ClientEvent::Receipt { kind, .. } => Some(kind),
            _ => None,
        })
        .collect()
}

#[test]
fn receipts_arrive_in_order_for_each_flag_combination() {
    time_limit(LIMIT, || {
        let broker = broker(Transport::Tcp);
        let _worker = start_echo(&broker, &[1]);
        let client = client(&broker);
        let cases = [
            (Flags::RECEIPT_ON_SEND, vec![ReceiptKind::Sent]),
            (Flags::RECEIPT_ON_RECEIVE, vec![ReceiptKind::Received]),
            (
                Flags::RECEIPT_ON_SEND | Flags::RECEIPT_ON_RECEIVE,
                vec![ReceiptKind::Sent, ReceiptKind::Received],
            ),
            (Flags::empty(), vec![]),
        ];
        for (id, (flags, expected)) in cases.into_iter().enumerate() {
            let _ = receipt_events(&client);
            let handle = client.request(1).id(id as u64).flags(flags).send().unwrap();
            // Receipts come on the same connection before the response.
            let outcome = handle.wait();
            assert!(outcome.is_ok(), "{flags:?}: {outcome:?}");
            let receipts_seen = receipt_events(&client);
            assert_eq!(receipts_seen, expected, "flags {flags:?}");
        }
        // One-way with RECEIPT_ON_RECEIVE resolves exactly at that receipt.
        let handle = client
            .request(1)
            .flags(Flags::ONE_WAY | Flags::RECEIPT_ON_SEND | Flags::RECEIPT_ON_RECEIVE)
            .send()
            .unwrap();
        assert!(handle.wait_receipt(ReceiptKind::Received, Duration::from_secs(5)));
        assert_eq!(
            handle.receipts(),
            [ReceiptKind::Sent, ReceiptKind::Received]
        );
        handle.wait().unwrap();
    });
}

#[test]
fn retry_on_death_completes_on_a_second_worker() {
    time_limit(LIMIT, || {
        let broker = broker(Transport::Tcp);
        let (doomed, _release) = blocking_worker(&broker, 1);
        let client = client(&broker);
        let handle = send_until_dispatched(
            client.request(1).payload_bytes(b"work"),
            Flags::RETRY_ON_DEATH,
        );
        let _rescuer = start_echo(&broker, &[1]);
        expect_workers(&broker, 2, Duration::from_secs(5));
        doomed.abort().unwrap();
        let reply = handle.wait().unwrap();
        assert_eq!(last_frame(&reply), "attempt=2");
        assert_eq!(&reply.payload[0][..], b"work");
        let stats = broker.stats().unwrap();
        assert_eq!(
            (stats.requests_retried, stats.requests_worker_death),
            (1, 0)
        );
        // RECEIPT_ON_SEND is sent once, not again for the retry.
        assert_eq!(receipt_events(&client), [ReceiptKind::Sent]);
    });
}

#[test]
fn retries_are_bounded_by_max_tries() {
    time_limit(LIMIT, || {
        let broker = broker(Transport::Inproc);
        let client = client(&broker);
        let (first, _r1) = blocking_worker(&broker, 1);
        let handle = send_until_dispatched(client.request(1), Flags::RETRY_ON_DEATH);
        let (second, _r2) = blocking_worker(&broker, 1);
        expect_workers(&broker, 2, Duration::from_secs(5));
        first.abort().unwrap();
        assert!(eventually(Duration::from_secs(5), || {
            broker.stats().unwrap().requests_retried == 1
        }));
        second.abort().unwrap();
        // max_tries = 2 (default): no third dispatch, the client is told.
        assert_eq!(
            handle.wait().unwrap_err().status(),
            Some(Status::WorkerDeath)
        );
        assert_eq!(broker.stats().unwrap().requests_dispatched, 2);
    });
}

#[test]
fn worker_death_policies() {
    time_limit(LIMIT, || {
        let broker = broker(Transport::Inproc);
        let client = client(&broker);
        for (id, flags) in [(1, Flags::NOTIFY_ON_DEATH), (2, Flags::empty())] {
            let (worker, _release) = blocking_worker(&broker, 1);
            let handle = send_until_dispatched(client.request(1).id(id), flags);
            worker.abort().unwrap();
            // Two-way requests always learn of the death.
            assert_eq!(
                handle.wait().unwrap_err().status(),
                Some(Status::WorkerDeath),
                "{flags:?}"
            );
        }
        // One-way with NOTIFY_ON_DEATH: told through the events stream.
        let (worker, _release) = blocking_worker(&broker, 1);
        let handle = client
            .request(1)
            .id(3)
            .flags(Flags::ONE_WAY | Flags::NOTIFY_ON_DEATH | Flags::RECEIPT_ON_RECEIVE)
            .send()
            .unwrap();
        handle.wait().unwrap();
        worker.abort().unwrap();
        let death = response_event(&client, 3);
        assert_eq!(
            death.unwrap().unwrap_err().status(),
            Some(Status::WorkerDeath)
        );
        // One-way without NOTIFY_ON_DEATH: dropped and counted.
        let (worker, _release) = blocking_worker(&broker, 1);
        let handle = client
            .request(1)
            .id(4)
            .flags(Flags::ONE_WAY | Flags::RECEIPT_ON_RECEIVE)
            .send()
            .unwrap();
        handle.wait().unwrap();
        worker.abort().unwrap();
        assert!(eventually(Duration::from_secs(5), || {
            broker.stats().unwrap().requests_dropped_on_death == 1
        }));
    });
}

#[test]
fn takeover_redirect_while_pending() {
    time_limit(LIMIT, || {
        let broker = broker(Transport::Inproc);
        let first = client(&broker);
        let second = client(&broker);
        let a = first
            .request(1)
            .id(5)
            .payload_bytes(b"old")
            .flags(Flags::ALLOW_REDIRECT | Flags::NOTIFY_ON_REDIRECT)
            .send()
            .unwrap();
        assert!(eventually(Duration::from_secs(5), || broker
            .stats()
            .unwrap()
            .pending
            == 1));
        let b = second
            .request(1)
            .id(5)
            .payload_bytes(b"new")
            .send()
            .unwrap();
        assert_eq!(a.wait().unwrap_err().status(), Some(Status::Redirected));
        let _worker = start_echo(&broker, &[1]);
        let reply = b.wait().unwrap();
        // Pending: the newer request replaced the stored one.
        assert_eq!(&reply.payload[0][..], b"new");
        assert_eq!(broker.stats().unwrap().requests_dispatched, 1);
    });
}

#[test]
fn takeover_redirect_while_in_progress() {
    time_limit(LIMIT, || {
        let broker = broker(Transport::Inproc);
        let (first, second) = (client(&broker), client(&broker));
        let (_worker, release) = blocking_worker(&broker, 1);
        // One-way first requester without NOTIFY_ON_REDIRECT: not told.
        let a = send_until_dispatched(first.request(1).id(6), Flags::ALLOW_REDIRECT);
        let b = second
            .request(1)
            .id(6)
            .flags(Flags::RECEIPT_ON_SEND)
            .send()
            .unwrap();
        // The taker gets the receipt the request already earned.
        assert!(b.wait_receipt(ReceiptKind::Sent, Duration::from_secs(5)));
        // A two-way first requester always learns it was redirected.
        assert_eq!(a.wait().unwrap_err().status(), Some(Status::Redirected));
        release.send(()).unwrap();
        b.wait().unwrap();
        let stats = broker.stats().unwrap();
        assert_eq!(
            (stats.requests_dispatched, stats.requests_redirected),
            (1, 1)
        );
    });
}

#[test]
fn explicit_reply_to_another_named_client() {
    time_limit(LIMIT, || {
        let broker = broker(Transport::Tcp);
        let _worker = start_echo(&broker, &[1]);
        let mut config = client_config(broker.frontend());
        config.name = Some("bob".into());
        let bob = Client::connect(config).unwrap();
        assert!(bob.wait_connected(Duration::from_secs(5)));
        let alice = client(&broker);
        let handle = alice
            .request(1)
            .id(9)
            .payload_bytes(b"for bob")
            .reply_to("bob")
            .flags(Flags::RECEIPT_ON_RECEIVE)
            .send()
            .unwrap();
        handle.wait().unwrap();
        let delivered = response_event(&bob, 9);
        assert_eq!(&delivered.unwrap().unwrap().payload[0][..], b"for bob");
        // Unknown names are refused.
        let unknown = alice
            .request(1)
            .reply_to("nobody")
            .flags(Flags::RECEIPT_ON_SEND)
            .send()
            .unwrap()
            .wait();
        assert_eq!(unknown.unwrap_err().status(), Some(Status::UnknownReplyTo));
    });
}

/// Starts a broker on endpoints a stopped one just released.
fn restart(front: &str, back: &str) -> Broker {
    let mut config = BrokerConfig::new(front, back);
    config.heartbeat = HEARTBEAT;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match Broker::start(config.clone()) {
            Ok(b) => return b,
            Err(e) if std::time::Instant::now() < deadline => {
                eprintln!("rebinding: {e}");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("cannot rebind: {e}"),
        }
    }
}

fn proxy_for(broker: &Broker, adjust: impl FnOnce(&mut ClientProxyConfig)) -> ClientProxy {
    let mut config = ClientProxyConfig::new(TCP_ANY, broker.frontend());
    config.heartbeat = HEARTBEAT;
    config.reconnect_min = Duration::from_millis(20);
    config.reconnect_max = Duration::from_millis(200);
    config.resend_initial = Duration::from_millis(500);
    adjust(&mut config);
    ClientProxy::start(config).unwrap()
}

fn proxied_client(proxy: &ClientProxy) -> Client {
    let mut config: ClientConfig = client_config(proxy.endpoint());
    config.request_timeout = Some(Duration::from_secs(40));
    let client = Client::connect(config).unwrap();
    assert!(client.wait_connected(Duration::from_secs(5)));
    client
}

fn broker_restart_through_a_proxy(downtime: Duration) {
    const N: u64 = 200;
    let first = broker(Transport::Tcp);
    let (front, back) = (first.frontend().to_owned(), first.backend().to_owned());
    let runs: Arc<Mutex<HashMap<u64, u32>>> = Arc::default();
    let worker = {
        let runs = runs.clone();
        let mut config = worker_config(&first);
        config.capacity = 4;
        Worker::builder(config)
            .handle_raw(1, move |p: Payload, ctx: &RequestContext| {
                *runs.lock().unwrap().entry(ctx.request_id).or_default() += 1;
                std::thread::sleep(Duration::from_millis(2));
                Ok(p)
            })
            .start()
            .unwrap()
    };
    let proxy = proxy_for(&first, |_| {});
    let clients: Vec<Client> = (0..2).map(|_| proxied_client(&proxy)).collect();
    let flags = Flags::RECEIPT_ON_RECEIVE;
    let mut handles = Vec::new();
    for id in 0..N {
        let client = &clients[(id % 2) as usize];
        handles.push(
            client
                .request(1)
                .id(id)
                .payload_bytes(&id.to_le_bytes())
                .flags(flags)
                .send()
                .unwrap(),
        );
        if id == N / 2 {
            // Mid-stream: wait until some are done, then kill the broker.
            assert!(eventually(Duration::from_secs(10), || {
                first.stats().unwrap().requests_completed >= 20
            }));
            first.stop().unwrap();
            drop(first.clone());
            std::thread::sleep(downtime);
        }
    }
    drop(first);
    let second = restart(&front, &back);
    for (id, handle) in handles.into_iter().enumerate() {
        let reply = handle
            .wait_timeout(Duration::from_secs(20))
            .unwrap_or_else(|e| {
                panic!(
                    "request {id}: {e}\nclients: {:?}\nproxy: {:?}\nbroker: {:?}\nworker: {:?}",
                    clients.iter().map(|c| c.stats()).collect::<Vec<_>>(),
                    proxy.stats(),
                    second.stats(),
                    worker.stats()
                )
            });
        assert_eq!(&reply.payload[0][..], &(id as u64).to_le_bytes());
    }
    // Every request ran; each ended once for its client (one handle, one
    // outcome). A request in progress when the broker died may have run
    // twice: the documented at-least-once edge.
    let runs = runs.lock().unwrap();
    assert_eq!(runs.len() as u64, N);
    let stats = proxy.stats().unwrap();
    assert_eq!((stats.buffered, stats.buffered_bytes), (0, 0));
    assert!(stats.requests_resent > 0);
    for c in &clients {
        assert_eq!(c.stats().unwrap().responses_unmatched, 0);
    }
    drop(worker);
    drop(second);
}

#[test]
fn broker_restart_through_a_proxy_loses_nothing() {
    time_limit(LIMIT, || broker_restart_through_a_proxy(Duration::ZERO));
}

#[test]
fn broker_down_for_many_heartbeats_through_a_proxy_loses_nothing() {
    time_limit(LIMIT, || broker_restart_through_a_proxy(HEARTBEAT * 10));
}

#[test]
fn proxy_bound_answers_overloaded_and_memory_returns_to_baseline() {
    time_limit(LIMIT, || {
        let broker = broker(Transport::Tcp);
        let proxy = proxy_for(&broker, |c| c.max_buffered = 5);
        let client = proxied_client(&proxy);
        let handles: Vec<_> = (0..5)
            .map(|i| {
                client
                    .request(1)
                    .id(i)
                    .payload_bytes(&[0; 100])
                    .send()
                    .unwrap()
            })
            .collect();
        assert!(eventually(Duration::from_secs(5), || proxy
            .stats()
            .unwrap()
            .buffered
            == 5));
        assert_eq!(proxy.stats().unwrap().buffered_bytes, 500);
        let over = client.request(1).id(99).send().unwrap().wait();
        assert_eq!(over.unwrap_err().status(), Some(Status::Overloaded));
        let _worker = start_echo(&broker, &[1]);
        for h in handles {
            h.wait().unwrap();
        }
        let stats = proxy.stats().unwrap();
        assert_eq!((stats.buffered, stats.buffered_bytes), (0, 0));
        assert_eq!(stats.requests_overloaded, 1);
    });
}

#[test]
fn statuses_reach_clients_through_the_proxy() {
    time_limit(LIMIT, || {
        let broker = broker(Transport::Tcp);
        let (_worker, release) = blocking_worker(&broker, 1);
        let proxy = proxy_for(&broker, |_| {});
        let a = proxied_client(&proxy);
        let b = proxied_client(&proxy);
        let first = send_until_dispatched(a.request(1).id(1), Flags::empty());
        // REJECTED, NO_WORKERS and WORKER_DEATH all make it through.
        let dup = b.request(1).id(1).send().unwrap().wait();
        assert_eq!(dup.unwrap_err().status(), Some(Status::Rejected));
        let none = b.request(77).flags(Flags::FAIL_FAST).send().unwrap().wait();
        assert_eq!(none.unwrap_err().status(), Some(Status::NoWorkers));
        release.send(()).unwrap();
        first.wait().unwrap();
        let failing = Worker::builder(worker_config(&broker))
            .handle_raw(2, |_: Payload, _: &RequestContext| {
                Err(HandlerError::failed("nope"))
            })
            .start()
            .unwrap();
        let failed = b.request(2).send().unwrap().wait();
        assert_eq!(
            failed.unwrap_err(),
            RequestError::Status {
                status: Status::Failed,
                message: "nope".into()
            }
        );
        drop(failing);
    });
}
