//! Cancel end to end (protocol 1.5, docs/deadlines.md): a caller takes its
//! request back with `ResponseHandle::cancel` (or by dropping an awaited
//! handle); a queued request never runs, a running one's handler sees
//! `ctx.is_cancelled()`, and the handle ends `Cancelled`. Directly, through
//! a proxy, and across a cluster.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Waker};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, bounded};
use lhcluster::client::{Client, LocalClient};
use lhcluster::client_proxy::{ClientProxy, ClientProxyConfig};
use lhcluster::protocol::{self, Dispatch, Hello, Message, Ready, Request, WorkResult};
use lhcluster::worker::{RequestContext, Worker, WorkerConfig};
use lhcluster::{Broker, Flags, Payload, RequestError, Status};
use lhcluster_tests::*;

const LIMIT: Duration = Duration::from_secs(60);
/// How long a test waits for something that should happen at once.
const PROMPT: Duration = Duration::from_secs(10);

/// A worker whose handler for type 5 says when it starts, then works
/// until its request is cancelled (checking between steps, as a
/// cooperative handler does) or the test releases it, and says whether it
/// saw the cancel; one request at a time.
struct Patient {
    worker: Worker,
    started: Receiver<u64>,
    seen: Receiver<bool>,
    release: Sender<()>,
}

fn patient_worker(mut config: WorkerConfig) -> Patient {
    let (started_tx, started) = bounded(16);
    let (seen_tx, seen) = bounded(16);
    let (release, released) = bounded::<()>(16);
    config.capacity = 1;
    let worker = Worker::builder(config)
        .handle_raw(5, move |p: Payload, ctx: &RequestContext| {
            let _ = started_tx.send(ctx.request_id);
            let cancelled = loop {
                if ctx.is_cancelled() {
                    break true;
                }
                // One step of the work (bounded, as the test is).
                if released.recv_timeout(Duration::from_millis(10)).is_ok() {
                    break false;
                }
            };
            let _ = seen_tx.send(cancelled);
            Ok(p)
        })
        .start()
        .unwrap();
    Patient {
        worker,
        started,
        seen,
        release,
    }
}

/// A request to a type no worker serves waits at the broker; cancelled, it
/// ends `Cancelled` at once and never runs, even when a worker comes.
#[test]
fn a_queued_request_cancelled_never_runs() {
    time_limit(LIMIT, || {
        let broker = broker(Transport::Inproc);
        let client = client(&broker);
        let handle = client.request(9).id(1).send().unwrap();
        assert!(eventually(PROMPT, || broker.stats().unwrap().pending == 1));
        assert!(handle.cancel());
        assert_eq!(handle.wait(), Err(RequestError::Cancelled));
        let gone = eventually(PROMPT, || {
            let s = broker.stats().unwrap();
            s.requests_cancelled == 1 && s.pending == 0
        });
        assert!(gone, "the broker takes it out of its queue");
        let (_worker, runs) = counting_echo_worker(&broker, 9);
        let reply = client.request(9).id(2).send().unwrap().wait().unwrap();
        assert_eq!((reply.request_id, runs.load(Ordering::SeqCst)), (2, 1));
        assert_eq!(client.stats().unwrap().requests_cancelled, 1);
    });
}

/// The handler running a cancelled request sees it; its result gives the
/// worker's slot back (the next request runs) and reaches nobody.
fn a_running_request_is_cancelled_at_its_worker(client: &Client, broker: &Broker, p: &Patient) {
    let handle = client.request(5).id(1).send().unwrap();
    assert_eq!(p.started.recv_timeout(PROMPT), Ok(1));
    assert!(handle.cancel());
    assert_eq!(handle.wait(), Err(RequestError::Cancelled));
    assert_eq!(p.seen.recv_timeout(PROMPT), Ok(true), "the handler saw it");
    let told = eventually(PROMPT, || p.worker.stats().unwrap().requests_cancelled == 1);
    assert!(told);
    // Capacity 1: the next request runs only once the slot is back.
    let next = client.request(5).id(2).send().unwrap();
    assert_eq!(p.started.recv_timeout(PROMPT), Ok(2));
    assert!(next.cancel());
    assert_eq!(p.seen.recv_timeout(PROMPT), Ok(true));
    let s = broker.stats().unwrap();
    assert_eq!((s.requests_cancelled, s.cancels_ignored), (2, 0));
    // Both results were dropped at the broker: nothing reached the client.
    assert!(eventually(PROMPT, || broker.stats().unwrap().in_flight == 0));
    assert_eq!(broker.stats().unwrap().requests_completed, 2);
    assert_eq!(client.stats().unwrap().responses_unmatched, 0);
}

#[test]
fn a_running_request_is_cancelled_directly() {
    time_limit(LIMIT, || {
        let broker = broker(Transport::Inproc);
        let patient = patient_worker(worker_config(&broker));
        let client = client(&broker);
        a_running_request_is_cancelled_at_its_worker(&client, &broker, &patient);
    });
}

#[test]
fn a_running_request_is_cancelled_through_a_proxy() {
    time_limit(LIMIT, || {
        let broker = broker(Transport::Tcp);
        let patient = patient_worker(worker_config(&broker));
        let mut config = ClientProxyConfig::new(TCP_ANY, broker.frontend());
        config.heartbeat = HEARTBEAT;
        let proxy = ClientProxy::start(config).unwrap();
        let client = Client::connect(client_config(proxy.endpoint())).unwrap();
        assert!(client.wait_connected(PROMPT));
        a_running_request_is_cancelled_at_its_worker(&client, &broker, &patient);
        let s = proxy.stats().unwrap();
        assert_eq!((s.requests_cancelled, s.buffered), (2, 0));
    });
}

/// An awaited handle dropped before its outcome (a `select!` that took
/// another branch, a `timeout` that fired) cancels its request; a handle
/// never polled, dropped, does not.
#[test]
fn dropping_an_awaited_handle_cancels_and_dropping_a_blocking_one_does_not() {
    time_limit(LIMIT, || {
        let broker = broker(Transport::Inproc);
        let p = patient_worker(worker_config(&broker));
        let _echo = echo_worker(&broker, &[9]);
        let client = client(&broker);
        let mut handle = client.request(5).id(1).send().unwrap();
        assert_eq!(p.started.recv_timeout(PROMPT), Ok(1));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(Pin::new(&mut handle).poll(&mut cx).is_pending());
        drop(handle);
        assert_eq!(p.seen.recv_timeout(PROMPT), Ok(true), "awaited: cancelled");
        // Never polled: dropping it lets the request go on.
        let handle = client.request(5).id(2).send().unwrap();
        assert_eq!(p.started.recv_timeout(PROMPT), Ok(2));
        drop(handle);
        // A round trip behind it on the same connection: a CANCEL sent at
        // the drop would have reached the broker first.
        client.request(9).id(3).send().unwrap().wait().unwrap();
        assert_eq!(broker.stats().unwrap().requests_cancelled, 1);
        p.release.send(()).unwrap();
        assert_eq!(
            p.seen.recv_timeout(PROMPT),
            Ok(false),
            "blocking: not cancelled"
        );
    });
}

/// Across a cluster: the client's broker forwards the CANCEL to the owner,
/// which passes it to the broker whose worker runs the request.
#[test]
fn a_request_run_on_another_broker_is_cancelled() {
    time_limit(LIMIT, || {
        let first = broker_with(Transport::Inproc, |c| {
            c.cluster_bind = Some(Transport::Inproc.endpoint("cluster"));
        });
        let peer = first.cluster_endpoint().unwrap().to_owned();
        let second = broker_with(Transport::Inproc, |c| {
            c.cluster_bind = Some(Transport::Inproc.endpoint("cluster"));
            c.cluster_peers = vec![peer];
        });
        let p = patient_worker(worker_config(&second));
        let served = eventually(PROMPT, || {
            let c = first.stats().unwrap().cluster.unwrap();
            c.peers.iter().any(|p| p.serves.contains_key(&5))
        });
        assert!(served, "the first broker learns what the second serves");
        let client = client(&first);
        // Ids owned by either broker: one hop or two.
        for id in 1..=4u64 {
            let handle = client.request(5).id(id).send().unwrap();
            assert_eq!(p.started.recv_timeout(PROMPT), Ok(id));
            assert!(handle.cancel());
            assert_eq!(p.seen.recv_timeout(PROMPT), Ok(true), "request {id}");
        }
        let total: u64 = [&first, &second]
            .iter()
            .map(|b| b.stats().unwrap().requests_cancelled)
            .sum();
        assert!(total >= 4, "{total}");
        assert_eq!(first.stats().unwrap().cluster.unwrap().relayed, 0);
    });
}

/// A message encoded as a 1.4 peer sends it: the same bytes but `minor` 4.
fn as_1_4(msg: Message) -> Vec<Vec<u8>> {
    let mut header = Vec::new();
    let encoded = msg.encode(&mut header);
    assert_eq!(&header[..3], &[0x08, 0x01, 0x10]);
    header[3] = 4;
    let mut frames = vec![header];
    frames.extend(encoded.payload.iter().map(|f| f.to_vec()));
    frames
}

/// The next message on `socket` other than a HEARTBEAT.
fn next_message(socket: &zmq::Socket) -> Message {
    loop {
        let frames = socket.recv_multipart(0).expect("a message within 5 s");
        let frames = frames.into_iter().map(Into::into).collect();
        match protocol::decode(frames).expect("a valid message") {
            Message::Heartbeat { .. } => continue,
            other => return other,
        }
    }
}

/// Peers of the previous minor (1.4) are served by a 1.5 broker as
/// before: a 1.4 client's request runs, and a 1.4 worker is never sent a
/// CANCEL (kind 25, which it would refuse); a request cancelled on it runs
/// to its end, and its result gives the slot back and is dropped.
#[test]
fn peers_of_minor_4_are_still_served() {
    time_limit(LIMIT, || {
        let broker = broker(Transport::Tcp);
        let worker = raw_dealer(broker.backend());
        let ready = Message::Ready(Ready {
            // Long, so that this hand-driven worker needs no heartbeats.
            heartbeat_ms: 20_000,
            capacity: 1,
            request_types: vec![5],
            type_names: Vec::new(),
            name: Some("old".into()),
        });
        worker.send_multipart(as_1_4(ready), 0).unwrap();
        assert!(matches!(next_message(&worker), Message::Welcome { .. }));
        let answer = |worker: &zmq::Socket, d: &Dispatch, body: &[u8]| {
            let result = Message::Result(WorkResult {
                request_type: d.request_type,
                request_id: d.request_id,
                attempt: d.attempt,
                dispatch_tag: d.dispatch_tag,
                status: Status::Ok,
                error: None,
                payload: vec![body.into()],
            });
            worker.send_multipart(as_1_4(result), 0).unwrap();
        };

        // A 1.4 client, by hand: its request runs on the 1.4 worker.
        let old_client = raw_dealer(broker.frontend());
        let hello = Message::Hello(Hello {
            heartbeat_ms: 20_000,
            name: None,
            route: vec![],
        });
        old_client.send_multipart(as_1_4(hello), 0).unwrap();
        assert!(matches!(next_message(&old_client), Message::Welcome { .. }));
        let request = Message::Request(Request {
            request_type: 5,
            request_id: 100,
            flags: Flags::empty(),
            route: vec![],
            reply_to: None,
            deadline_ms: 0,
            payload: vec![(&b"old"[..]).into()],
        });
        old_client.send_multipart(as_1_4(request), 0).unwrap();
        let Message::Dispatch(d) = next_message(&worker) else {
            panic!("expected a DISPATCH");
        };
        answer(&worker, &d, b"served");
        match next_message(&old_client) {
            Message::Response(r) => assert_eq!((r.status, r.request_id), (Status::Ok, 100)),
            other => panic!("expected the RESPONSE, got {other:?}"),
        }

        // A 1.5 client cancels a request the 1.4 worker runs.
        let client = client(&broker);
        let handle = client.request(5).id(1).send().unwrap();
        let Message::Dispatch(first) = next_message(&worker) else {
            panic!("expected a DISPATCH");
        };
        assert!(handle.cancel());
        assert!(eventually(PROMPT, || broker
            .stats()
            .unwrap()
            .requests_cancelled
            == 1));
        let second = client.request(5).id(2).send().unwrap();
        // The worker finishes the first; the next thing it gets is the
        // second request's DISPATCH, not a CANCEL (which the broker would
        // have sent before it).
        answer(&worker, &first, b"for nobody");
        let Message::Dispatch(d) = next_message(&worker) else {
            panic!("a 1.4 worker gets no CANCEL: expected the next DISPATCH");
        };
        assert_eq!(d.request_id, 2);
        answer(&worker, &d, b"two");
        assert_eq!(text(&second.wait().unwrap().payload), "two");
        assert_eq!(handle.wait(), Err(RequestError::Cancelled));
        assert_eq!(client.stats().unwrap().responses_unmatched, 0);
    });
}

/// A `LocalClient`'s handle cancels too: the CANCEL goes out at the
/// client's next poll (it does its I/O only in its own calls).
#[test]
fn a_local_clients_request_is_cancelled_at_its_next_poll() {
    time_limit(LIMIT, || {
        let broker = broker(Transport::Inproc);
        let mut local = LocalClient::connect(client_config(broker.frontend())).unwrap();
        let handle = local.request(9).id(1).send().unwrap();
        let queued = eventually(PROMPT, || {
            local.poll(Duration::ZERO).unwrap();
            broker.stats().unwrap().pending == 1
        });
        assert!(queued);
        assert!(handle.cancel());
        assert_eq!(local.wait(handle), Err(RequestError::Cancelled));
        let gone = eventually(PROMPT, || {
            local.poll(Duration::ZERO).unwrap();
            broker.stats().unwrap().pending == 0
        });
        assert!(gone, "the broker took it out of its queue");
        assert_eq!(broker.stats().unwrap().requests_cancelled, 1);
        assert_eq!(local.stats().unwrap().requests_cancelled, 1);
    });
}
