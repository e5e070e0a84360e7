//! The request path end to end: broker, workers and clients in one process
//! over inproc and loopback TCP, each test under a time limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lhcluster::client::{ClientEvent, ReceiptKind};
use lhcluster::protocol::{self, Hello, Message, Ready, Request};
use lhcluster::worker::{HandlerError, RequestContext, Worker};
use lhcluster::{Flags, Payload, RequestError, Status};
use lhcluster_tests::*;

const LIMIT: Duration = Duration::from_secs(30);

fn request_response(transport: Transport) {
    let (broker, _worker, client) = served(transport, &[1]);
    for i in 0..20u64 {
        let payload = vec![
            format!("hello-{i}").as_bytes().into(),
            (&b"second"[..]).into(),
        ];
        let reply = client
            .send(1, i, Flags::empty(), payload)
            .unwrap()
            .wait()
            .unwrap();
        assert_eq!(text(&reply.payload), format!("hello-{i}|second"));
        assert_eq!((reply.request_type, reply.request_id), (1, i));
    }
    let stats = broker.stats().unwrap();
    assert_eq!(
        (stats.requests_received, stats.requests_completed),
        (20, 20)
    );
    assert_eq!(stats.malformed_frontend + stats.malformed_backend, 0);
}

inproc_and_tcp_tests!(
    LIMIT,
    request_response,
    request_response_inproc,
    request_response_tcp
);

#[test]
fn response_handle_is_a_future() {
    time_limit(LIMIT, || {
        let (_broker, _worker, client) = served(Transport::Inproc, &[1]);
        let handle = client.request(1).payload_bytes(b"async").send().unwrap();
        let reply = block_on(handle).unwrap();
        assert_eq!(text(&reply.payload), "async");
    });
}

#[test]
fn anonymous_requests_get_distinct_ids() {
    time_limit(LIMIT, || {
        let (_broker, _worker, client) = served(Transport::Inproc, &[1]);
        let a = client.request(1).send().unwrap();
        let b = client.request(1).send().unwrap();
        assert_ne!(a.request_id(), b.request_id());
        a.wait().unwrap();
        b.wait().unwrap();
    });
}

#[test]
fn one_way_requests_run_and_send_nothing_back() {
    time_limit(LIMIT, || {
        let ran = Arc::new(AtomicU64::new(0));
        let counter = ran.clone();
        let broker = broker(Transport::Inproc);
        let _worker = Worker::builder(worker_config(&broker))
            .handle_raw(5, move |_: Payload, _: &RequestContext| {
                counter.fetch_add(1, Ordering::SeqCst);
                Ok(vec![(&b"ignored"[..]).into()])
            })
            .start()
            .unwrap();
        let client = client(&broker);
        for i in 0..10 {
            let reply = client
                .send(5, i, Flags::ONE_WAY, Payload::new())
                .unwrap()
                .wait()
                .unwrap();
            assert!(reply.payload.is_empty());
        }
        assert!(eventually(Duration::from_secs(5), || ran
            .load(Ordering::SeqCst)
            == 10));
        assert!(eventually(Duration::from_secs(5), || {
            broker.stats().unwrap().requests_completed == 10
        }));
        // The workers' responses to one-way requests are not routed back.
        assert_eq!(client.stats().unwrap().responses_unmatched, 0);
    });
}

#[test]
fn two_workers_share_the_load() {
    time_limit(LIMIT, || {
        let broker = broker(Transport::Tcp);
        let counts: Vec<Arc<AtomicU64>> = (0..2).map(|_| Arc::new(AtomicU64::new(0))).collect();
        let _workers: Vec<Worker> = counts
            .iter()
            .map(|count| {
                let count = count.clone();
                Worker::builder(worker_config(&broker))
                    .handle_raw(3, move |p: Payload, _: &RequestContext| {
                        count.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(5));
                        Ok(p)
                    })
                    .start()
                    .unwrap()
            })
            .collect();
        expect_workers(&broker, 2, Duration::from_secs(5));
        let client = client(&broker);
        let handles: Vec<_> = (0..40)
            .map(|i| client.send(3, i, Flags::empty(), Payload::new()).unwrap())
            .collect();
        for h in handles {
            h.wait().unwrap();
        }
        let (a, b) = (
            counts[0].load(Ordering::SeqCst),
            counts[1].load(Ordering::SeqCst),
        );
        assert_eq!(a + b, 40);
        // Capacity-1 workers and 40 queued requests: LRU dispatch alternates.
        assert!(a >= 10 && b >= 10, "unbalanced: {a} vs {b}");
    });
}

/// A worker whose handler for type 9 blocks until released.
/// A worker of type 9 whose handler says on `started` that it runs, then
/// waits for `release`.
fn blocking_worker(
    broker: &lhcluster::Broker,
) -> (
    Worker,
    crossbeam_channel::Sender<()>,
    crossbeam_channel::Receiver<()>,
) {
    let (release, gate) = crossbeam_channel::unbounded::<()>();
    let (started_tx, started) = crossbeam_channel::unbounded::<()>();
    let worker = Worker::builder(worker_config(broker))
        .handle_raw(9, move |p: Payload, _: &RequestContext| {
            let _ = started_tx.send(());
            let _ = gate.recv_timeout(Duration::from_secs(20));
            Ok(p)
        })
        .start()
        .unwrap();
    (worker, release, started)
}

/// A request of type 9 with the payload `x` that a blocking worker runs,
/// and what it runs in.
struct Running {
    broker: lhcluster::Broker,
    worker: Worker,
    /// Lets the handler finish (dropped: at once).
    release: crossbeam_channel::Sender<()>,
    client: lhcluster::client::Client,
    handle: lhcluster::client::ResponseHandle,
}

fn running_request(transport: Transport) -> Running {
    let broker = broker(transport);
    let (worker, release, started) = blocking_worker(&broker);
    let client = client(&broker);
    let handle = send_until_dispatched(client.request(9).payload_bytes(b"x"), Flags::empty());
    // Running, not only dispatched: a graceful stop gives back a dispatch
    // that has not started (protocol 1.8).
    assert_eq!(started.recv_timeout(Duration::from_secs(10)), Ok(()));
    Running {
        broker,
        worker,
        release,
        client,
        handle,
    }
}

#[test]
fn duplicate_while_in_progress_is_rejected_and_runs_once() {
    time_limit(LIMIT, || {
        let broker = broker(Transport::Inproc);
        let (_worker, release, _) = blocking_worker(&broker);
        let first_client = client(&broker);
        let second_client = client(&broker);
        let first = send_until_dispatched(first_client.request(9).id(77), Flags::empty());
        let duplicate = second_client.request(9).id(77).send().unwrap().wait();
        assert_eq!(duplicate.unwrap_err().status(), Some(Status::Rejected));
        // The same client sending it again is refused locally.
        let again = first_client.request(9).id(77).send().unwrap().wait();
        assert_eq!(again.unwrap_err().status(), Some(Status::Rejected));
        release.send(()).unwrap();
        first.wait().unwrap();
        let stats = broker.stats().unwrap();
        assert_eq!((stats.requests_dispatched, stats.requests_rejected), (1, 1));
        // Once done, the same (type, id) runs again.
        release.send(()).unwrap();
        second_client
            .request(9)
            .id(77)
            .send()
            .unwrap()
            .wait()
            .unwrap();
    });
}

#[test]
fn queue_bounds_answer_overloaded() {
    time_limit(LIMIT, || {
        let broker = broker_with(Transport::Inproc, |c| {
            c.max_pending_per_type = 2;
            c.max_pending_total = 3;
        });
        let client = client(&broker);
        let queued: Vec<_> = (0..2)
            .map(|i| client.send(1, i, Flags::empty(), Payload::new()).unwrap())
            .collect();
        let third = client
            .send(1, 2, Flags::empty(), Payload::new())
            .unwrap()
            .wait();
        assert_eq!(third.unwrap_err().status(), Some(Status::Overloaded));
        let other_type = client.send(2, 0, Flags::empty(), Payload::new()).unwrap();
        let over_total = client
            .send(3, 0, Flags::empty(), Payload::new())
            .unwrap()
            .wait();
        assert_eq!(over_total.unwrap_err().status(), Some(Status::Overloaded));
        assert_eq!(broker.stats().unwrap().requests_overloaded, 2);
        // A worker drains the queue; the queued requests complete.
        let _worker = echo_worker(&broker, &[1, 2]);
        for h in queued {
            h.wait().unwrap();
        }
        other_type.wait().unwrap();
    });
}

#[test]
fn fail_fast_answers_no_workers() {
    time_limit(LIMIT, || {
        let broker = broker(Transport::Inproc);
        let client = client(&broker);
        let outcome = client
            .request(42)
            .flags(Flags::FAIL_FAST)
            .send()
            .unwrap()
            .wait();
        assert_eq!(outcome.unwrap_err().status(), Some(Status::NoWorkers));
        // The type leaves no trace behind.
        assert!(broker.stats().unwrap().types.is_empty());
    });
}

#[test]
fn handler_errors_and_panics_become_failed_and_the_worker_keeps_serving() {
    time_limit(LIMIT, || {
        let broker = broker(Transport::Inproc);
        let _worker = Worker::builder(worker_config(&broker))
            .handle_raw(1, |_: Payload, _: &RequestContext| {
                Err(HandlerError::failed("no luck"))
            })
            .handle_raw(
                2,
                |_: Payload, _: &RequestContext| -> Result<Payload, HandlerError> {
                    panic!("boom")
                },
            )
            .handle_raw(3, echo)
            .start()
            .unwrap();
        let client = client(&broker);
        let failed = client.request(1).send().unwrap().wait().unwrap_err();
        assert_eq!(
            failed,
            RequestError::Status {
                status: Status::Failed,
                message: "no luck".into()
            }
        );
        let panicked = client.request(2).send().unwrap().wait().unwrap_err();
        assert_eq!(panicked.status(), Some(Status::Failed));
        assert!(panicked.to_string().contains("boom"), "{panicked}");
        client
            .request(3)
            .payload_bytes(b"ok")
            .send()
            .unwrap()
            .wait()
            .unwrap();
    });
}

#[test]
fn worker_killed_mid_request_gives_worker_death_within_the_liveness_bound() {
    time_limit(LIMIT, || {
        let r = running_request(Transport::Tcp);
        let killed_at = Instant::now();
        r.worker.abort().unwrap();
        let outcome = r.handle.wait();
        assert_eq!(outcome.unwrap_err().status(), Some(Status::WorkerDeath));
        // liveness (3) × heartbeat (100 ms), plus tick and scheduling slack.
        assert!(killed_at.elapsed() < Duration::from_secs(5));
        let stats = r.broker.stats().unwrap();
        assert_eq!(
            (stats.worker_deaths, stats.workers, stats.in_flight),
            (1, 0, 0)
        );
    });
}

#[test]
fn graceful_worker_stop_finishes_running_requests() {
    time_limit(LIMIT, || {
        let Running {
            broker,
            worker,
            release,
            client: _client,
            handle,
        } = running_request(Transport::Inproc);
        let stopper = std::thread::spawn(move || worker.stop());
        // The broker stops sending work to a draining worker...
        assert!(eventually(Duration::from_secs(5), || broker
            .stats()
            .unwrap()
            .requests_received
            == 1));
        release.send(()).unwrap();
        // ...and the running request still completes.
        assert_eq!(text(&handle.wait().unwrap().payload), "x");
        stopper.join().unwrap().unwrap();
        expect_workers(&broker, 0, Duration::from_secs(5));
        assert_eq!(broker.stats().unwrap().worker_deaths, 0);
    });
}

#[test]
fn broker_stop_is_noticed_by_workers_and_clients() {
    time_limit(LIMIT, || {
        let r = running_request(Transport::Tcp);
        r.broker.stop().unwrap();
        let outcome = r.handle.wait();
        assert!(
            matches!(outcome, Err(RequestError::Disconnected(_))),
            "{outcome:?}"
        );
        assert!(eventually(Duration::from_secs(5), || !r
            .worker
            .stats()
            .unwrap()
            .registered));
        assert!(
            r.client
                .events()
                .iter()
                .any(|e| matches!(e, ClientEvent::Disconnected))
        );
    });
}

#[test]
fn broker_restart_workers_reregister_and_serve() {
    time_limit(LIMIT, || {
        let first = broker(Transport::Tcp);
        let (front, back) = (first.frontend().to_owned(), first.backend().to_owned());
        let worker = echo_worker(&first, &[1]);
        let client = client(&first);
        client.request(1).send().unwrap().wait().unwrap();
        first.stop().unwrap();
        drop(first);
        let mut config = lhcluster::BrokerConfig::new(front, back);
        config.heartbeat = HEARTBEAT;
        let second = restart(config);
        expect_workers(&second, 1, Duration::from_secs(10));
        assert!(client.wait_connected(Duration::from_secs(10)));
        // Requests sent while the client was still reconnecting may fail
        // with Disconnected; once connected they succeed.
        let ok = eventually(Duration::from_secs(10), || {
            client
                .request(1)
                .payload_bytes(b"again")
                .send()
                .unwrap()
                .wait()
                .is_ok()
        });
        assert!(ok, "requests succeed through the restarted broker");
        assert!(worker.stats().unwrap().registered);
    });
}

/// Starts a broker on endpoints a stopped one just released. libzmq closes
/// listeners on its I/O thread, so the port can stay busy for a moment.
fn restart(config: lhcluster::BrokerConfig) -> lhcluster::Broker {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match lhcluster::Broker::start(config.clone()) {
            Ok(broker) => return broker,
            Err(e) if Instant::now() < deadline => {
                eprintln!("rebinding: {e}");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("cannot rebind the broker endpoints: {e}"),
        }
    }
}

/// Sends raw frames and reads the reply, if any.
fn exchange(socket: &zmq::Socket, frames: &[&[u8]]) -> Option<Message> {
    socket.send_multipart(frames.iter().copied(), 0).unwrap();
    let reply = socket.recv_multipart(0).ok()?;
    let frames = reply.into_iter().map(|f| f.into()).collect();
    protocol::decode(frames).ok()
}

fn header(msg: Message) -> Vec<u8> {
    let mut buf = Vec::new();
    let encoded = msg.encode(&mut buf);
    assert!(encoded.payload.is_empty());
    buf
}

#[test]
fn malformed_frames_on_both_sockets_do_not_disturb_the_broker() {
    time_limit(LIMIT, || {
        let (broker, _worker, client) = served(Transport::Tcp, &[1]);
        let front = raw_dealer(broker.frontend());
        let back = raw_dealer(broker.backend());
        let garbage: [&[&[u8]]; 4] = [
            &[b"\xff\xff\xff"],
            &[b""],
            &[b"\x08\x02\x18\x03"],
            &[b"\x08\x01\x18\x63", b"x"],
        ];
        for frames in garbage {
            for socket in [&front, &back] {
                match exchange(socket, frames) {
                    Some(Message::Error(e)) => assert!(!e.error.is_empty()),
                    other => panic!("expected an ERROR reply, got {other:?}"),
                }
            }
            // Valid traffic keeps flowing in between.
            client
                .request(1)
                .payload_bytes(b"still fine")
                .send()
                .unwrap()
                .wait()
                .unwrap();
        }
        // A request with type 0 is refused with an error naming the problem.
        let bad = header(Message::Request(Request {
            request_type: 0,
            request_id: 1,
            flags: Flags::empty(),
            route: Vec::new(),
            reply_to: None,
            deadline_ms: 0,
            payload: Payload::new(),
        }));
        assert!(matches!(exchange(&front, &[&bad]), Some(Message::Error(_))));
        // A READY on the frontend is the wrong socket.
        let ready = header(Message::Ready(Ready {
            heartbeat_ms: 100,
            capacity: 1,
            request_types: vec![1],
            type_names: Vec::new(),
            name: None,
        }));
        assert!(matches!(
            exchange(&front, &[&ready]),
            Some(Message::Error(_))
        ));
        let stats = broker.stats().unwrap();
        assert_eq!(
            (
                stats.malformed_frontend,
                stats.malformed_backend,
                stats.requests_completed
            ),
            (6, 4, 4)
        );
        // And a well-formed raw client is served normally.
        let hello = header(Message::Hello(Hello {
            heartbeat_ms: 1000,
            name: None,
            route: Vec::new(),
        }));
        assert!(matches!(
            exchange(&front, &[&hello]),
            Some(Message::Welcome { .. })
        ));
    });
}

#[test]
fn stats_can_be_queried_over_the_protocol() {
    time_limit(LIMIT, || {
        let (broker, _worker, client) = served(Transport::Tcp, &[4]);
        client.request(4).send().unwrap().wait().unwrap();
        let remote =
            lhcluster::broker::query_stats(broker.frontend(), Duration::from_secs(5)).unwrap();
        assert_eq!(remote.requests_completed, 1);
        assert_eq!(remote.workers, 1);
        assert_eq!(remote.types[&4].completed, 1);
        // A stats query is not a client.
        assert_eq!(remote.clients, 1);
        // Nobody listening: said so (no connection made), not a hang.
        let silent =
            lhcluster::broker::query_stats("tcp://127.0.0.1:1", Duration::from_millis(200));
        assert!(
            matches!(silent, Err(lhcluster::Error::Unreachable { .. })),
            "{silent:?}"
        );
    });
}

/// A worker that runs its handlers on its own thread, 8 requests at a time.
fn inline_config(broker: &lhcluster::Broker) -> lhcluster::worker::WorkerConfig {
    let mut config = worker_config(broker);
    config.inline = true;
    config.capacity = 8;
    config
}

#[test]
fn inline_handlers_run_on_the_worker_thread_in_turn() {
    time_limit(LIMIT, || {
        let broker = broker(Transport::Tcp);
        let mut config = inline_config(&broker);
        // The panicking handler below runs the process's panic hook on the
        // worker thread, which reads nothing meanwhile (as documented for
        // inline handlers). With RUST_BACKTRACE=1 (as in CI) the hook's
        // first backtrace loads the binary's debug info: ~100 ms alone, and
        // past the 300 ms liveness bound of the fast test heartbeat when
        // several test processes share two cores. The default heartbeat
        // (1 s, a 3 s bound) leaves the margin; nothing here is about it.
        config.heartbeat = Duration::from_secs(1);
        let threads = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
        let running = Arc::new(AtomicU64::new(0));
        let most = Arc::new(AtomicU64::new(0));
        let seen = threads.clone();
        let (now, max) = (running.clone(), most.clone());
        let _worker = Worker::builder(config)
            .handle_raw(1, move |payload: Payload, _: &RequestContext| {
                let at_once = now.fetch_add(1, Ordering::SeqCst) + 1;
                max.fetch_max(at_once, Ordering::SeqCst);
                let name = std::thread::current().name().map(str::to_owned);
                seen.lock().unwrap().insert(name);
                std::thread::sleep(Duration::from_millis(2));
                now.fetch_sub(1, Ordering::SeqCst);
                Ok(payload)
            })
            .handle_raw(
                2,
                |_: Payload, _: &RequestContext| -> Result<Payload, HandlerError> {
                    panic!("inline boom")
                },
            )
            .start()
            .unwrap();
        let client = client(&broker);
        // A window of 8 outstanding requests: the broker hands all 8 to the
        // worker at once (capacity 8), which runs them one after the other.
        let handles: Vec<_> = (0..32u64)
            .map(|i| numbered(client.request(1), i).send().unwrap())
            .collect();
        for (i, handle) in handles.into_iter().enumerate() {
            assert_eq!(text(&handle.wait().unwrap().payload), format!("n{i}"));
        }
        assert_eq!(
            most.load(Ordering::SeqCst),
            1,
            "inline handlers never overlap"
        );
        let threads = threads.lock().unwrap().clone();
        assert_eq!(
            threads,
            [Some("lhcluster-worker".to_owned())].into_iter().collect(),
            "every handler ran on the worker's own thread"
        );
        // A panic is FAILED, and the worker keeps serving.
        let panicked = client.request(2).send().unwrap().wait().unwrap_err();
        assert_eq!(panicked.status(), Some(Status::Failed));
        assert!(panicked.to_string().contains("inline boom"), "{panicked}");
        let again = client.request(1).payload_bytes(b"after").send().unwrap();
        assert_eq!(text(&again.wait().unwrap().payload), "after");
    });
}

#[test]
fn small_and_large_payloads_cross_intact() {
    // Payloads of one frame up to 1 KiB travel inside the header frame,
    // larger ones and multi-frame payloads as frames: both must arrive as
    // sent, on both legs.
    time_limit(LIMIT, || {
        let (_broker, _worker, client) = served(Transport::Tcp, &[1]);
        let limit = lhcluster::protocol::INLINE_PAYLOAD_MAX;
        let cases: Vec<Payload> = vec![
            vec![],
            vec![(&b""[..]).into()],
            vec![vec![7u8; limit].into()],
            vec![vec![8u8; limit + 1].into()],
            vec![(&b"a"[..]).into(), vec![9u8; 3 * limit].into()],
        ];
        for (i, payload) in cases.into_iter().enumerate() {
            let sent: Vec<Vec<u8>> = payload.iter().map(|f| f.to_vec()).collect();
            let reply = client
                .send(1, i as u64, Flags::empty(), payload)
                .unwrap()
                .wait()
                .unwrap();
            let got: Vec<Vec<u8>> = reply.payload.iter().map(|f| f.to_vec()).collect();
            assert_eq!(got, sent, "case {i}");
        }
    });
}

#[test]
fn graceful_stop_of_an_inline_worker_finishes_what_was_dispatched() {
    time_limit(LIMIT, || {
        let broker = broker(Transport::Tcp);
        let config = inline_config(&broker);
        let worker = Worker::builder(config)
            .handle_raw(1, |p: Payload, _: &RequestContext| {
                std::thread::sleep(Duration::from_millis(5));
                Ok(p)
            })
            .start()
            .unwrap();
        let client = client(&broker);
        let mut handles: Vec<_> = (0..8u64)
            .map(|i| client.request(1).id(i).send().unwrap())
            .collect();
        // The broker handed all 8 over at once (capacity 8); stop while
        // they run one after the other, once the worker has read them all
        // (one still on its way at the stop would be given back, protocol
        // 1.8, and wait at the broker for another worker).
        assert!(eventually(Duration::from_secs(10), || handles[0].is_done()));
        assert!(eventually(Duration::from_secs(10), || {
            worker.stats().unwrap().requests_received == 8
        }));
        worker.stop().unwrap();
        for (i, handle) in handles.drain(..).enumerate() {
            assert!(handle.wait().is_ok(), "request {i} ran to completion");
        }
        let stats = broker.stats().unwrap();
        assert_eq!(stats.requests_completed, 8);
        assert_eq!(stats.worker_deaths, 0, "a graceful stop, not a death");
    });
}

#[test]
fn far_timeouts_mean_no_deadline() {
    // A timeout too far to add to the clock (`Duration::MAX`, or a huge
    // default) means "no deadline": the request is answered as usual, and
    // nothing panics (a panicking driver would leave the handle unresolved).
    time_limit(LIMIT, || {
        let (broker, _worker, client) = served(Transport::Inproc, &[1]);
        let reply = client
            .request(1)
            .timeout(Duration::MAX)
            .payload_bytes(b"per request")
            .send()
            .unwrap()
            .wait()
            .unwrap();
        assert_eq!(text(&reply.payload), "per request");

        let mut config = client_config(broker.frontend());
        config.request_timeout = Some(Duration::MAX);
        let client = lhcluster::client::Client::connect(config).unwrap();
        assert!(client.wait_connected(Duration::MAX), "client connects");
        let handle = client
            .request(1)
            .payload_bytes(b"by default")
            .send()
            .unwrap();
        assert_eq!(
            text(&handle.wait_timeout(Duration::MAX).unwrap().payload),
            "by default"
        );
        let handle = client
            .request(1)
            .flags(Flags::RECEIPT_ON_SEND)
            .send()
            .unwrap();
        assert!(handle.wait_receipt(ReceiptKind::Sent, Duration::MAX));
        assert!(handle.wait().is_ok());
    });
}

/// A worker of capacity 1 with `prefetch` 3 is handed four requests at
/// once, runs them one at a time, in the order they came, and the rest wait
/// at the broker.
#[test]
fn prefetch_holds_requests_beyond_capacity() {
    time_limit(LIMIT, || {
        let broker = broker(Transport::Inproc);
        let gate = Arc::new(std::sync::Mutex::new(()));
        let closed = gate.lock().unwrap();
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (running, most) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let mut config = worker_config(&broker);
        config.capacity = 1;
        config.prefetch = 3;
        let handler = {
            let (gate, order, running, most) =
                (gate.clone(), order.clone(), running.clone(), most.clone());
            move |payload: Payload, ctx: &RequestContext| -> Result<Payload, HandlerError> {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                order.lock().unwrap().push(ctx.request_id);
                drop(gate.lock().unwrap());
                running.fetch_sub(1, Ordering::SeqCst);
                Ok(payload)
            }
        };
        let _worker = Worker::builder(config)
            .handle_raw(1, handler)
            .start()
            .unwrap();
        expect_workers(&broker, 1, Duration::from_secs(5));
        let client = client(&broker);
        let handles: Vec<_> = (1..=6)
            .map(|i| client.request(1).id(i).send().unwrap())
            .collect();
        // The worker holds four (one running, three prefetched); two queue.
        assert!(
            eventually(Duration::from_secs(10), || {
                let s = broker.stats().unwrap();
                (s.in_flight, s.pending) == (4, 2)
            }),
            "{:?}",
            broker.stats().unwrap()
        );
        drop(closed);
        for h in handles {
            h.wait().unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 1, "capacity 1: one at a time");
        assert_eq!(
            *order.lock().unwrap(),
            [1, 2, 3, 4, 5, 6],
            "in the order sent"
        );
    });
}

/// Issue 17 (protocol 1.8): a worker of capacity 1 with `prefetch` 3 holds
/// four requests, one running until released; stopped gracefully, it gives
/// the three it has not started back to the broker, which hands them at
/// once to an idle worker: each answered once, by that worker, in order,
/// none failed or retried, while the running one finishes where it runs.
#[test]
fn a_graceful_stop_hands_prefetched_requests_to_another_worker() {
    time_limit(LIMIT, || {
        let broker = broker(Transport::Inproc);
        let (started_tx, started) = std::sync::mpsc::channel::<u64>();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let started_tx = std::sync::Mutex::new(started_tx);
        let released = std::sync::Mutex::new(released);
        let ran_by = |who: &'static str, log: &Arc<std::sync::Mutex<Vec<(&'static str, u64)>>>| {
            let log = log.clone();
            move |ctx: &RequestContext| log.lock().unwrap().push((who, ctx.request_id))
        };
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut config = worker_config(&broker);
        config.capacity = 1;
        config.prefetch = 3;
        // Room for the other worker to serve what comes back first.
        config.shutdown_timeout = Duration::from_secs(25);
        let record = ran_by("a", &log);
        let a = Arc::new(
            Worker::builder(config)
                .handle_raw(1, move |p: Payload, ctx: &RequestContext| {
                    record(ctx);
                    let _ = started_tx.lock().unwrap().send(ctx.request_id);
                    let _ = released.lock().unwrap().recv_timeout(LIMIT);
                    Ok(p)
                })
                .start()
                .unwrap(),
        );
        expect_workers(&broker, 1, Duration::from_secs(5));
        let client = client(&broker);
        let mut handles: Vec<_> = (1..=4u64)
            .map(|i| {
                let body = format!("job{i}");
                client
                    .request(1)
                    .id(i)
                    .payload_bytes(body.as_bytes())
                    .send()
                    .unwrap()
            })
            .collect();
        assert_eq!(started.recv_timeout(Duration::from_secs(10)), Ok(1));
        assert!(
            eventually(Duration::from_secs(10), || {
                let s = a.stats().unwrap();
                s.requests_received == 4
            }),
            "{:?}",
            a.stats().unwrap()
        );
        // An idle worker of the type.
        let record = ran_by("b", &log);
        let mut config = worker_config(&broker);
        config.capacity = 1;
        let _b = Worker::builder(config)
            .handle_raw(1, move |p: Payload, ctx: &RequestContext| {
                record(ctx);
                Ok(p)
            })
            .start()
            .unwrap();
        expect_workers(&broker, 2, Duration::from_secs(5));
        assert_eq!(broker.stats().unwrap().requests_dispatched, 4, "b is idle");
        let stopping = {
            let a = a.clone();
            std::thread::spawn(move || a.stop())
        };
        let first = handles.remove(0);
        for (i, handle) in (2..=4u64).zip(handles) {
            let reply = handle
                .wait()
                .unwrap_or_else(|e| panic!("request {i}: {e:?}"));
            assert_eq!(text(&reply.payload), format!("job{i}"), "its own payload");
        }
        assert_eq!(
            *log.lock().unwrap(),
            [("a", 1), ("b", 2), ("b", 3), ("b", 4)],
            "each run once, the given-back ones by b, in order"
        );
        let s = a.stats().unwrap();
        assert_eq!((s.requests_returned, s.requests_failed), (3, 0));
        // The running one finishes where it runs, within shutdown_timeout.
        release.send(()).unwrap();
        assert_eq!(text(&first.wait().unwrap().payload), "job1");
        stopping.join().unwrap().unwrap();
        assert!(eventually(Duration::from_secs(10), || {
            broker.stats().unwrap().workers == 1
        }));
        let s = broker.stats().unwrap();
        assert_eq!(s.requests_returned, 3);
        assert_eq!(
            (s.requests_retried, s.requests_worker_death, s.worker_deaths),
            (0, 0, 0)
        );
        assert_eq!((s.requests_completed, s.requests_dispatched), (4, 7));
        assert_eq!(log.lock().unwrap().len(), 4, "nothing ran twice");
    });
}

/// `msg` encoded as a peer of minor `minor` sends it.
fn encoded_as(msg: Message, minor: u8) -> Vec<Vec<u8>> {
    let mut header = Vec::new();
    let encoded = msg.encode(&mut header);
    assert_eq!(&header[..3], &[0x08, 0x01, 0x10]);
    header[3] = minor;
    let mut frames = vec![header];
    frames.extend(encoded.payload.iter().map(|f| f.to_vec()));
    frames
}

/// The next message a worker sends `router`, other than a HEARTBEAT, with
/// the worker's routing id.
fn from_worker(router: &zmq::Socket) -> (Vec<u8>, Message) {
    loop {
        let mut frames = router.recv_multipart(0).expect("a message within 5 s");
        let peer = frames.remove(0);
        let rest = frames.into_iter().map(Into::into).collect();
        match protocol::decode(rest).expect("a valid message") {
            Message::Heartbeat { .. } => continue,
            other => return (peer, other),
        }
    }
}

/// A worker (capacity 1, `prefetch` 2) at a hand-driven broker whose
/// WELCOME says minor `minor` is dispatched requests 1–3, the first
/// running until released, and stopped gracefully. Returns the RESULTs
/// it sent after its DISCONNECT before the release, those after, and its
/// `requests_returned` before the release.
fn stop_with_prefetched_at_minor(
    minor: u8,
) -> (Vec<protocol::WorkResult>, Vec<protocol::WorkResult>, u64) {
    let endpoint = inproc("hand-broker");
    let router = lhcluster::context().socket(zmq::ROUTER).unwrap();
    router.set_linger(0).unwrap();
    router.set_rcvtimeo(5000).unwrap();
    router.bind(&endpoint).unwrap();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let released = std::sync::Mutex::new(released);
    let (started_tx, started) = std::sync::mpsc::channel::<()>();
    let started_tx = std::sync::Mutex::new(started_tx);
    let mut config = lhcluster::worker::WorkerConfig::new(endpoint);
    config.heartbeat = HEARTBEAT;
    config.capacity = 1;
    config.prefetch = 2;
    config.shutdown_timeout = Duration::from_secs(20);
    let worker = Arc::new(
        Worker::builder(config)
            .handle_raw(5, move |p: Payload, ctx: &RequestContext| {
                if ctx.request_id == 1 {
                    let _ = started_tx.lock().unwrap().send(());
                    let _ = released.lock().unwrap().recv_timeout(LIMIT);
                }
                Ok(p)
            })
            .start()
            .unwrap(),
    );
    let (peer, ready) = from_worker(&router);
    assert!(matches!(ready, Message::Ready(_)), "{ready:?}");
    let send = |msg: Message| {
        let mut frames = vec![peer.clone()];
        frames.extend(encoded_as(msg, minor));
        router.send_multipart(frames, 0).unwrap();
    };
    send(Message::Welcome {
        // Long: this hand-driven broker sends no heartbeats.
        heartbeat_ms: 20_000,
        max_message_size: 0,
    });
    for id in 1..=3u64 {
        send(Message::Dispatch(protocol::Dispatch {
            request_type: 5,
            request_id: id,
            flags: Flags::empty(),
            attempt: 1,
            dispatch_tag: 10 + id,
            deadline_ms: 0,
            payload: vec![format!("p{id}").as_bytes().into()],
        }));
    }
    assert_eq!(started.recv_timeout(Duration::from_secs(10)), Ok(()));
    assert!(eventually(Duration::from_secs(10), || {
        worker.stats().unwrap().requests_received == 3
    }));
    let stopping = {
        let worker = worker.clone();
        std::thread::spawn(move || worker.stop())
    };
    let (_, goodbye) = from_worker(&router);
    assert!(matches!(goodbye, Message::Disconnect { .. }), "{goodbye:?}");
    let mut before = Vec::new();
    if minor >= 8 {
        for _ in 0..2 {
            match from_worker(&router) {
                (_, Message::Result(r)) => before.push(r),
                (_, other) => panic!("expected a RESULT, got {other:?}"),
            }
        }
    }
    let returned = worker.stats().unwrap().requests_returned;
    release.send(()).unwrap();
    let mut after = Vec::new();
    while before.len() + after.len() < 3 {
        match from_worker(&router) {
            (_, Message::Result(r)) => after.push(r),
            (_, other) => panic!("expected a RESULT, got {other:?}"),
        }
    }
    stopping.join().unwrap().unwrap();
    (before, after, returned)
}

fn summary(results: &[protocol::WorkResult]) -> Vec<(u64, Status, u64, String)> {
    results
        .iter()
        .map(|r| (r.request_id, r.status, r.dispatch_tag, text(&r.payload)))
        .collect()
}

/// At a 1.8 broker, what has not started goes back at the stop, after the
/// DISCONNECT, in order, with its attempt, tag and payload.
#[test]
fn a_worker_at_a_1_8_broker_gives_back_what_it_has_not_started() {
    time_limit(LIMIT, || {
        let (before, after, returned) = stop_with_prefetched_at_minor(8);
        assert_eq!(
            summary(&before),
            [
                (2, Status::Returned, 12, "p2".to_owned()),
                (3, Status::Returned, 13, "p3".to_owned())
            ]
        );
        assert!(before.iter().all(|r| r.attempt == 1));
        assert_eq!(summary(&after), [(1, Status::Ok, 11, "p1".to_owned())]);
        assert_eq!(returned, 2);
    });
}

/// A broker that speaks minor 7 would refuse status 12: the worker runs
/// what it holds within `shutdown_timeout`, as before 1.8.
#[test]
fn a_worker_at_a_1_7_broker_runs_what_it_holds() {
    time_limit(LIMIT, || {
        let (before, after, returned) = stop_with_prefetched_at_minor(7);
        assert!(before.is_empty());
        assert_eq!(
            summary(&after),
            [
                (1, Status::Ok, 11, "p1".to_owned()),
                (2, Status::Ok, 12, "p2".to_owned()),
                (3, Status::Ok, 13, "p3".to_owned())
            ]
        );
        assert_eq!(returned, 0);
    });
}
