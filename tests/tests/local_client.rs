//! `LocalClient`: a client whose I/O runs on the caller's thread.

use std::time::{Duration, Instant};

use lhcluster::client::{ClientEvent, LocalClient, ReceiptKind};
use lhcluster::worker::{HandlerError, RequestContext, Worker};
use lhcluster::{Flags, Payload, RequestError, Status};
use lhcluster_tests::*;

const LIMIT: Duration = Duration::from_secs(30);

/// Echoes type 1, fails type 2.
fn echo_worker(broker: &lhcluster::Broker) -> Worker {
    Worker::builder(worker_config(broker))
        .handle_raw(1, echo)
        .handle_raw(
            2,
            |_: Payload, _: &RequestContext| -> Result<Payload, HandlerError> {
                Err(HandlerError::failed("nope"))
            },
        )
        .start()
        .expect("worker starts")
}

fn requests_and_outcomes(transport: Transport) {
    let broker = broker(transport);
    let _worker = echo_worker(&broker);
    let mut client = LocalClient::connect(client_config(broker.frontend())).unwrap();
    // Sent before the greeting completes: queued, then answered.
    let first = client.request(1).payload_bytes(b"first").send().unwrap();
    assert_eq!(text(&client.wait(first).unwrap().payload), "first");
    assert!(client.is_connected());
    // A window of outstanding requests, answered in any order.
    let handles: Vec<_> = (0..50u64)
        .map(|i| numbered(client.request(1), i).send().unwrap())
        .collect();
    for (i, handle) in handles.into_iter().enumerate() {
        let reply = client.wait(handle).unwrap();
        assert_eq!((reply.request_type, reply.request_id), (1, i as u64));
        assert_eq!(text(&reply.payload), format!("n{i}"));
    }
    // Handler errors arrive as statuses.
    let failed = client.request(2).send().unwrap();
    assert_eq!(
        client.wait(failed).unwrap_err(),
        RequestError::Status {
            status: Status::Failed,
            message: "nope".into()
        }
    );
    let stats = client.stats().unwrap();
    assert_eq!(stats.outstanding, 0);
    assert!(stats.connected);
}

inproc_and_tcp_tests!(
    LIMIT,
    requests_and_outcomes,
    requests_and_outcomes_inproc,
    requests_and_outcomes_tcp
);

#[test]
fn handles_resolve_only_while_polled() {
    time_limit(LIMIT, || {
        let broker = broker(Transport::Inproc);
        let _worker = echo_worker(&broker);
        let mut client = LocalClient::connect(client_config(broker.frontend())).unwrap();
        let mut handle = client.request(1).payload_bytes(b"x").send().unwrap();
        // Nobody reads the socket: the response waits in it.
        std::thread::sleep(Duration::from_millis(200));
        assert!(handle.try_take().is_none());
        assert!(eventually(Duration::from_secs(10), || {
            client.poll(Duration::from_millis(50)).unwrap();
            handle.is_done()
        }));
        assert_eq!(text(&handle.try_take().unwrap().unwrap().payload), "x");
    });
}

#[test]
fn a_timeout_and_a_receipt_arrive_through_polling() {
    time_limit(LIMIT, || {
        let broker = broker(Transport::Inproc);
        let mut client = LocalClient::connect(client_config(broker.frontend())).unwrap();
        // No worker serves type 9: the request times out here (also when
        // the broker's EXPIRED for the same deadline overtakes the client's
        // own timer).
        let started = Instant::now();
        let handle = client
            .request(9)
            .timeout(Duration::from_millis(300))
            .send()
            .unwrap();
        assert!(matches!(client.wait(handle), Err(RequestError::Timeout(_))));
        assert!(started.elapsed() >= Duration::from_millis(300));
        // A one-way request with a sent receipt: the handle resolves at the
        // receipt, which also comes as an event.
        let _worker = echo_worker(&broker);
        let handle = client
            .request(1)
            .flags(Flags::ONE_WAY | Flags::RECEIPT_ON_SEND)
            .id(77)
            .send()
            .unwrap();
        assert!(client.wait(handle).is_ok());
        let receipt = client
            .events()
            .try_iter()
            .find(|e| matches!(e, ClientEvent::Receipt { .. }));
        assert_eq!(
            receipt,
            Some(ClientEvent::Receipt {
                request_type: 1,
                request_id: 77,
                kind: ReceiptKind::Sent
            })
        );
    });
}

#[test]
fn dropping_it_says_goodbye() {
    time_limit(LIMIT, || {
        let broker = broker(Transport::Inproc);
        let mut client = LocalClient::connect(client_config(broker.frontend())).unwrap();
        // "Forever" returns as soon as a message (WELCOME, a heartbeat) is in.
        client.poll(Duration::MAX).unwrap();
        assert!(eventually(Duration::from_secs(5), || {
            client.poll(Duration::from_millis(20)).unwrap();
            client.is_connected()
        }));
        assert!(eventually(Duration::from_secs(5), || {
            broker.stats().unwrap().clients == 1
        }));
        drop(client);
        assert!(
            eventually(Duration::from_secs(5), || broker.stats().unwrap().clients
                == 0),
            "the broker forgets the client at once, not after its heartbeats"
        );
    });
}

#[test]
fn far_timeouts_mean_no_deadline() {
    // As with `Client`: `Duration::MAX` (per request, as the default, or as
    // a poll's timeout) is no deadline, not a panic of the caller's thread.
    time_limit(LIMIT, || {
        let broker = broker(Transport::Inproc);
        let _worker = echo_worker(&broker);
        let mut config = client_config(broker.frontend());
        config.request_timeout = Some(Duration::MAX);
        let mut client = LocalClient::connect(config).unwrap();
        let by_default = client.request(1).payload_bytes(b"default").send().unwrap();
        assert_eq!(text(&client.wait(by_default).unwrap().payload), "default");
        let mut explicit = client
            .request(1)
            .timeout(Duration::MAX)
            .payload_bytes(b"explicit")
            .send()
            .unwrap();
        // A poll without a deadline returns once a message is handled.
        while !explicit.is_done() {
            client.poll(Duration::MAX).unwrap();
        }
        let outcome = explicit.try_take().unwrap();
        assert_eq!(text(&outcome.unwrap().payload), "explicit");
    });
}
