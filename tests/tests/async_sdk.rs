//! The typed SDK from async code (feature `tokio`): async handlers on a
//! tokio runtime (inferred closures, the capacity bound, heartbeats kept
//! while futures sleep, panics, the runtime taken or given), many awaited
//! requests on a current-thread runtime, and typed notification streams.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use lhcluster::client::Client;
use lhcluster::notify::{
    NotifyBroker, NotifyBrokerConfig, NotifyPublisher, NotifyPublisherConfig, NotifySubscriber,
    NotifySubscriberConfig,
};
use lhcluster::worker::{HandlerError, Worker, WorkerBuilder, WorkerConfig};
use lhcluster::{Broker, Error, Notification, Request, Status, TypedRequestError};
use lhcluster_tests::{Transport, broker, call_typed, client, inproc, time_limit, worker_config};
use serde::{Deserialize, Serialize};

/// Each test's hang fails it in seconds.
const LIMIT: Duration = Duration::from_secs(30);

#[derive(Debug, Serialize, Deserialize, Request)]
#[request_type(name = "async.add", response = u64)]
struct Add {
    a: u64,
    b: u64,
}

#[derive(Debug, Serialize, Deserialize, Request)]
#[request_type(name = "async.nap", response = u32)]
struct Nap {
    millis: u64,
}

#[derive(Debug, Serialize, Deserialize, Request)]
#[request_type(name = "async.div", response = u64)]
struct Div {
    a: u64,
    b: u64,
}

#[derive(Debug, Serialize, Deserialize, Request)]
#[request_type(name = "async.panic")]
struct Panic;

/// A multi-thread runtime for the async handlers of a test that blocks.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("a runtime")
}

/// What a test of async handlers runs against: a broker, a connected
/// client, and a worker whose async handlers run on `rt`.
struct Served {
    rt: tokio::runtime::Runtime,
    broker: Broker,
    client: Client,
    worker: Worker,
}

/// Runs `test` under the time limit against a [`Served`] whose worker has
/// the config `configure` adjusts and the handlers `handlers` adds; then
/// stops the worker, the client and the broker.
fn served(
    configure: impl FnOnce(&mut WorkerConfig) + Send + 'static,
    handlers: impl FnOnce(WorkerBuilder) -> WorkerBuilder + Send + 'static,
    test: impl FnOnce(&Served) + Send + 'static,
) {
    time_limit(LIMIT, || {
        let rt = runtime();
        let broker = broker(Transport::Inproc);
        let client = client(&broker);
        let mut config = worker_config(&broker);
        configure(&mut config);
        let worker = handlers(Worker::builder(config))
            .runtime(rt.handle().clone())
            .start()
            .expect("worker starts");
        let served = Served {
            rt,
            broker,
            client,
            worker,
        };
        test(&served);
        served.worker.stop().unwrap();
        served.client.stop().unwrap();
        served.broker.stop().unwrap();
    });
}

fn refusal<T: std::fmt::Debug>(outcome: Result<T, TypedRequestError>) -> (Status, String) {
    match outcome {
        Err(TypedRequestError::Request(lhcluster::RequestError::Status { status, message })) => {
            (status, message)
        }
        other => panic!("expected a status, got {other:?}"),
    }
}

/// 10 000 requests awaited at once on a current-thread runtime, served by
/// async handlers on that same runtime: nothing blocks its one thread.
#[test]
fn ten_thousand_awaited_requests_on_a_current_thread_runtime() {
    time_limit(LIMIT, || {
        let broker = broker(Transport::Inproc);
        let client = client(&broker);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut config = worker_config(&broker);
            config.capacity = 64;
            // Started in the runtime: its handle is taken.
            let worker = Worker::builder(config)
                .handle_async::<Add>(|req, _ctx| async move {
                    tokio::task::yield_now().await;
                    req.a + req.b
                })
                .start()
                .expect("worker starts");
            let started = Instant::now();
            let tasks: Vec<_> = (0..10_000u64)
                .map(|i| {
                    let handle = client.send_typed(&Add { a: i, b: 1 }).expect("sent");
                    tokio::spawn(handle)
                })
                .collect();
            for (i, task) in tasks.into_iter().enumerate() {
                assert_eq!(task.await.unwrap().unwrap(), i as u64 + 1);
            }
            eprintln!("10 000 awaited requests in {:?}", started.elapsed());
            let stats = worker.stats().unwrap();
            assert_eq!(stats.requests_received, 10_000);
            worker.stop().unwrap();
        });
        client.stop().unwrap();
        broker.stop().unwrap();
    });
}

/// Futures sleeping far longer than the broker's liveness bound (100 ms ×
/// 3): the worker still answers its heartbeats, so none of its requests
/// ends in `WORKER_DEATH`; and no more than `capacity` run at once.
#[test]
fn sleeping_async_handlers_keep_the_heartbeats_and_the_capacity() {
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (r, m) = (running.clone(), most.clone());
    let handlers = move |worker: WorkerBuilder| {
        worker.handle_async::<Nap>(move |req, ctx| {
            let (running, most) = (r.clone(), m.clone());
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(req.millis)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                ctx.attempt
            }
        })
    };
    served(
        |config| config.capacity = 3,
        handlers,
        move |s| {
            let (broker, client) = (&s.broker, &s.client);
            let handles: Vec<_> = (0..6)
                .map(|_| client.send_typed(&Nap { millis: 700 }).unwrap())
                .collect();
            for handle in handles {
                // First attempt each: no retry, no death.
                assert_eq!(handle.wait().unwrap(), 1);
            }
            assert!(most.load(Ordering::SeqCst) <= 3, "at most capacity at once");
            let stats = broker.stats().unwrap();
            assert_eq!(stats.worker_deaths, 0, "{stats:?}");
            assert_eq!(stats.requests_worker_death, 0, "{stats:?}");
        },
    );
}

#[test]
fn async_failures_are_answered_like_blocking_ones() {
    let handlers = |worker: WorkerBuilder| {
        worker
            .handle_async::<Div>(|req, _| async move {
                match req.a.checked_div(req.b) {
                    Some(q) => Ok(q),
                    None => Err(HandlerError::bad_request("division by zero")),
                }
            })
            .handle_async::<Panic>(|_, _| async move {
                tokio::task::yield_now().await;
                // (A future of `!` is no handler's: the `if` makes it `()`.)
                if true {
                    panic!("deliberately");
                }
            })
            // A blocking handler beside the async ones.
            .handle::<Add>(|req, _| req.a + req.b)
    };
    served(
        |_| {},
        handlers,
        |s| {
            let client = &s.client;
            assert_eq!(call_typed(client, &Div { a: 9, b: 3 }), 3);
            assert_eq!(
                refusal(client.send_typed(&Div { a: 1, b: 0 }).unwrap().wait()),
                (Status::BadRequest, "division by zero".to_owned())
            );
            let (status, message) = refusal(client.send_typed(&Panic).unwrap().wait());
            assert_eq!(status, Status::Failed);
            assert!(message.contains("deliberately"), "{message}");
            assert_eq!(call_typed(client, &Add { a: 1, b: 2 }), 3);
            assert_eq!(s.worker.stats().unwrap().handler_panics, 1);
        },
    );
}

#[test]
fn async_handlers_without_a_runtime_fail_at_start_with_a_clear_error() {
    let broker = broker(Transport::Inproc);
    let e = Worker::builder(worker_config(&broker))
        .handle_async::<Add>(|req, _| async move { req.a + req.b })
        .start()
        .unwrap_err();
    assert!(matches!(e, Error::Config(_)), "{e:?}");
    let text = e.to_string();
    assert!(text.contains("need a tokio runtime"), "{text}");
    assert!(text.contains("WorkerBuilder::runtime"), "{text}");
    // Two handlers for one type, async or not, are refused as ever.
    let e = Worker::builder(worker_config(&broker))
        .handle::<Add>(|req, _| req.a)
        .handle_async::<Add>(|req, _| async move { req.a })
        .start()
        .unwrap_err();
    assert!(e.to_string().contains("two handlers"), "{e}");
    broker.stop().unwrap();
}

#[derive(Debug, PartialEq, Serialize, Deserialize, Notification)]
#[notification(name = "async.shipped")]
struct Shipped {
    order_no: u64,
}

#[derive(Debug, PartialEq, Serialize, Deserialize, Notification)]
#[notification(name = "async.cancelled")]
struct Cancelled {
    order_no: u64,
}

fn notify_broker() -> NotifyBroker {
    NotifyBroker::start(NotifyBrokerConfig::new(
        inproc("stream-front"),
        inproc("stream-back"),
    ))
    .expect("notify broker starts")
}

/// Typed streams on a current-thread runtime: each type to its stream, in
/// order, the rest to the handler; a stream ends when its subscriber
/// stops; dropping a stream removes the subscription it added.
#[test]
fn typed_notification_streams() {
    time_limit(LIMIT, || {
        let broker = notify_broker();
        let (tx, rx) = crossbeam_channel::unbounded();
        let subscriber = NotifySubscriber::connect(
            NotifySubscriberConfig::new(broker.frontend()).topic("async.other"),
            move |n: lhcluster::notify::RawNotification| {
                let _ = tx.send(n.topic);
                lhcluster::NotifyOutcome::Continue
            },
        )
        .unwrap();
        let mut shipped = subscriber.stream::<Shipped>().unwrap();
        let mut cancelled = subscriber.stream::<Cancelled>().unwrap();
        let publisher =
            NotifyPublisher::connect(NotifyPublisherConfig::new(broker.backend())).unwrap();
        for order_no in 0..100 {
            publisher.publish_typed(&Shipped { order_no }).unwrap();
            if order_no % 10 == 0 {
                publisher.publish_typed(&Cancelled { order_no }).unwrap();
            }
        }
        publisher.publish("async.other", Vec::new()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            for order_no in 0..100 {
                assert_eq!(shipped.next().await.unwrap().unwrap(), Shipped { order_no });
            }
            for order_no in (0..100).step_by(10) {
                assert_eq!(
                    cancelled.next().await.unwrap().unwrap(),
                    Cancelled { order_no }
                );
            }
        });
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(5)).unwrap(),
            "async.other"
        );
        assert!(rx.try_recv().is_err(), "streamed topics skip the handler");

        // The stream added the subscription, and its drop removes it.
        assert!(subscriber.topics().contains(&"async.cancelled".to_owned()));
        drop(cancelled);
        assert!(!subscriber.topics().contains(&"async.cancelled".to_owned()));

        // A stop ends the stream (after what it had buffered).
        let waiter = rt.spawn(async move {
            let mut rest = 0;
            while shipped.next().await.is_some() {
                rest += 1;
            }
            rest
        });
        subscriber.stop().unwrap();
        assert_eq!(rt.block_on(waiter).unwrap(), 0);
        publisher.stop().unwrap();
        broker.stop().unwrap();
    });
}

/// A stream of a subscriber made for streams only, awaited by a task while
/// the publisher publishes from another thread; an undecodable
/// notification is an `Err` item, and the stream goes on.
#[test]
fn a_stream_wakes_its_task_and_reports_undecodable_notifications() {
    time_limit(LIMIT, || {
        let broker = notify_broker();
        let subscriber =
            NotifySubscriber::connect_streams(NotifySubscriberConfig::new(broker.frontend()))
                .unwrap();
        let mut shipped = subscriber.stream::<Shipped>().unwrap();
        drop(subscriber); // the stream keeps it running
        let publisher =
            NotifyPublisher::connect(NotifyPublisherConfig::new(broker.backend())).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let publishing = publisher.clone();
        rt.block_on(async move {
            let task = tokio::spawn(async move {
                let bad = shipped.next().await.unwrap();
                let good = shipped.next().await.unwrap().unwrap();
                (bad.is_err(), good)
            });
            // The task runs now, finds the stream empty and leaves its
            // waker: what follows is woken from the publishing thread.
            tokio::task::yield_now().await;
            std::thread::spawn(move || {
                publishing
                    .publish("async.shipped", vec![b"\xc1".as_slice().into()])
                    .unwrap();
                publishing.publish_typed(&Shipped { order_no: 3 }).unwrap();
            });
            assert_eq!(task.await.unwrap(), (true, Shipped { order_no: 3 }));
        });
        publisher.stop().unwrap();
        broker.stop().unwrap();
    });
}

#[derive(Debug, Serialize, Deserialize, Request)]
#[request_type(name = "async.hold", response = u32)]
struct Hold;

/// Cancel from async code: a `select!` that takes another branch drops the
/// awaited handle, which cancels the request; the async handler racing its
/// work against `ctx.cancelled()` sees it (docs/guide.md, "Cancel").
#[test]
fn a_dropped_awaited_handle_cancels_and_an_async_handler_sees_it() {
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let (seen_tx, seen_rx) = std::sync::mpsc::channel();
    let handlers = move |worker: WorkerBuilder| {
        worker.handle_async::<Hold>(move |_, ctx| {
            let (started, seen) = (started_tx.clone(), seen_tx.clone());
            async move {
                let _ = started.send(());
                tokio::select! {
                    () = ctx.cancelled() => {
                        let _ = seen.send(true);
                        Err(HandlerError::failed("cancelled"))
                    }
                    () = tokio::time::sleep(Duration::from_secs(60)) => {
                        let _ = seen.send(false);
                        Ok(0)
                    }
                }
            }
        })
    };
    served(
        |_| {},
        handlers,
        move |s| {
            let handle = s.client.send_typed(&Hold).unwrap();
            s.rt.block_on(async move {
                let started = tokio::task::spawn_blocking(move || {
                    started_rx.recv_timeout(Duration::from_secs(10))
                });
                // `biased`: the handle is polled first, so it is an awaited one
                // (dropping a handle never polled does not cancel; with random
                // order, a `started` already ready could win before the handle
                // was ever polled).
                tokio::select! {
                    biased;
                    outcome = handle => panic!("the handler holds it: {outcome:?}"),
                    started = started => assert!(started.unwrap().is_ok(), "the handler runs"),
                }
                // The handle, dropped unfinished by the `select!`, cancelled it.
            });
            assert_eq!(seen_rx.recv_timeout(Duration::from_secs(10)), Ok(true));
            let cancelled = s.worker.stats().unwrap().requests_cancelled;
            assert_eq!(cancelled, 1);
            assert_eq!(s.broker.stats().unwrap().requests_cancelled, 1);
        },
    );
}

/// A graceful stop gives back the async requests waiting for a permit
/// (protocol 1.8, issue 17): their tasks end without running, and another
/// worker answers them.
#[test]
fn a_graceful_stop_gives_back_async_requests_not_started() {
    time_limit(LIMIT, || {
        let rt = runtime();
        let broker = broker(Transport::Inproc);
        let client = client(&broker);
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        // Whichever request gets the one permit first runs until this lets
        // it go (tasks of a multi-thread runtime start in no set order).
        let gate = Arc::new(tokio::sync::Notify::new());
        let mut config = worker_config(&broker);
        config.capacity = 1;
        config.prefetch = 2;
        config.shutdown_timeout = Duration::from_secs(20);
        let (a_log, a_gate) = (log.clone(), gate.clone());
        let a = Arc::new(
            Worker::builder(config)
                .handle_async::<Nap>(move |_, ctx| {
                    let gate = a_gate.clone();
                    let first = {
                        let mut log = a_log.lock().unwrap();
                        log.push(("a", ctx.request_id));
                        log.len() == 1
                    };
                    async move {
                        if first {
                            gate.notified().await;
                        }
                        ctx.attempt
                    }
                })
                .runtime(rt.handle().clone())
                .start()
                .expect("worker starts"),
        );
        lhcluster_tests::expect_workers(&broker, 1, Duration::from_secs(5));
        let handles: Vec<_> = (0..3)
            .map(|_| client.send_typed(&Nap { millis: 0 }).unwrap())
            .collect();
        let started = |who: &str| log.lock().unwrap().iter().filter(|e| e.0 == who).count();
        assert!(lhcluster_tests::eventually(Duration::from_secs(10), || {
            a.stats().unwrap().requests_received == 3 && started("a") == 1
        }));
        let b_log = log.clone();
        let mut config = worker_config(&broker);
        config.capacity = 1;
        let _b = Worker::builder(config)
            .handle_async::<Nap>(move |_, ctx| {
                b_log.lock().unwrap().push(("b", ctx.request_id));
                async move { ctx.attempt }
            })
            .runtime(rt.handle().clone())
            .start()
            .expect("worker starts");
        lhcluster_tests::expect_workers(&broker, 2, Duration::from_secs(5));
        let stopping = {
            let a = a.clone();
            std::thread::spawn(move || a.stop())
        };
        // The two waiting for the permit go back, and run on b.
        assert!(
            lhcluster_tests::eventually(Duration::from_secs(10), || started("b") == 2),
            "{:?}",
            log.lock().unwrap()
        );
        assert_eq!(a.stats().unwrap().requests_returned, 2);
        assert_eq!(started("a"), 1, "nothing else started on a");
        gate.notify_one();
        for handle in handles {
            assert_eq!(handle.wait().unwrap(), 1, "first attempt, not a retry");
        }
        stopping.join().unwrap().unwrap();
        let mut ids: Vec<u64> = log.lock().unwrap().iter().map(|e| e.1).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 3, "each ran once: {:?}", log.lock().unwrap());
        assert_eq!(broker.stats().unwrap().requests_returned, 2);
    });
}
