//! End-to-end tests of the typed layer over `inproc://`: derived requests
//! through a broker to a worker and back, one-way requests, every kind of
//! failure, schema evolution, typed notifications, and the stability of
//! generated ids.

use std::sync::mpsc;
use std::time::Duration;

use lhcluster::client::{Client, ClientConfig, ReceiptKind};
use lhcluster::notify::{
    NotifyBroker, NotifyBrokerConfig, NotifyOutcome, NotifyPublisher, NotifyPublisherConfig,
    NotifySubscriberConfig,
};
use lhcluster::typed::NotifyRouter;
use lhcluster::worker::{HandlerError, RequestContext, Worker, WorkerBuilder, WorkerConfig};
use lhcluster::{
    Broker, BrokerConfig, Flags, Notification, Request, RequestError, Status, TypedRequestError,
    request_type_id,
};
use lhcluster_tests::{block_on, inproc, time_limit};
use serde::{Deserialize, Serialize};

/// Each test's hang fails it in seconds.
const LIMIT: Duration = Duration::from_secs(20);
/// Long enough for anything that does happen.
const WAIT: Duration = Duration::from_secs(5);

/// The status and text a typed request was answered with instead of a
/// response.
fn refusal<T: std::fmt::Debug>(outcome: Result<T, TypedRequestError>) -> (Status, String) {
    match outcome {
        Err(TypedRequestError::Request(RequestError::Status { status, message })) => {
            (status, message)
        }
        other => panic!("expected a status, got {other:?}"),
    }
}

/// A broker and a connected client.
fn cluster(name: &str) -> (Broker, Client) {
    let broker = Broker::start(BrokerConfig::new(
        inproc(&format!("{name}-front")),
        inproc(&format!("{name}-back")),
    ))
    .expect("broker starts");
    let client = Client::connect(ClientConfig::new(broker.frontend())).expect("client starts");
    assert!(client.wait_connected(WAIT), "client connects");
    (broker, client)
}

fn worker_config(broker: &Broker) -> WorkerConfig {
    let mut config = WorkerConfig::new(broker.backend());
    config.capacity = 4;
    config
}

/// Runs `test` under the time limit against a broker, a connected client
/// and a worker with the handlers `handlers` adds; then stops the client,
/// the worker and the broker.
fn served(
    name: &'static str,
    handlers: impl FnOnce(WorkerBuilder) -> WorkerBuilder + Send + 'static,
    test: impl FnOnce(&Broker, &Client) + Send + 'static,
) {
    time_limit(LIMIT, move || {
        let (broker, client) = cluster(name);
        let worker = handlers(Worker::builder(worker_config(&broker)))
            .start()
            .expect("worker starts");
        test(&broker, &client);
        client.stop().unwrap();
        worker.stop().unwrap();
        broker.stop().unwrap();
    });
}

// ---------------------------------------------------------------- types

#[derive(Debug, Serialize, Deserialize, Request)]
#[request_type(name = "test.echo", response = EchoReply)]
struct Echo {
    text: String,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct EchoReply {
    text: String,
    request_type: u32,
    attempt: u32,
}

#[derive(Debug, Serialize, Deserialize, Request)]
#[request_type(name = "test.log", one_way)]
struct LogLine {
    #[request_id]
    seq: u64,
    line: String,
}

/// A job with a natural id (`u32` converts into `u64`).
#[derive(Debug, Serialize, Deserialize, Request)]
#[request_type(name = "test.job", response = u32)]
struct Job {
    #[request_id]
    job: u32,
}

#[derive(Debug, Serialize, Deserialize, Request)]
#[request_type(name = "test.divide", response = i64)]
struct Divide {
    a: i64,
    b: i64,
}

/// The default name is the type's name; the id is its hash.
#[derive(Debug, Serialize, Deserialize, Request)]
struct Ping;

#[derive(Debug, Serialize, Deserialize, Request)]
#[request_type(name = "orders.create", response = OrderCreated)]
struct CreateOrder {
    #[request_id]
    order_no: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct OrderCreated {
    ok: bool,
}

#[derive(Debug, Serialize, Deserialize, Request)]
#[request_type(name = "test.explicit", id = 4242)]
enum Command {
    Start { speed: u8 },
    Stop,
}

// ---------------------------------------------------------------- ids

#[test]
fn generated_ids_are_stable() {
    // Pinned values: if the hash ever changes, every peer in every
    // language breaks, so this must fail first.
    assert_eq!(CreateOrder::REQUEST_TYPE, 0x1D4F_B242);
    assert_eq!(CreateOrder::NAME, "orders.create");
    assert_eq!(request_type_id("orders.create"), 0x1D4F_B242);
    assert_eq!(Echo::REQUEST_TYPE, 0x2D14_AF90);
    assert_eq!(Ping::NAME, "Ping");
    assert_eq!(Ping::REQUEST_TYPE, 0x7FB7_F0A9);
    assert_eq!(Command::REQUEST_TYPE, 4242);
    assert_eq!(Command::NAME, "test.explicit");
    assert_eq!(<OrderPlaced as Notification>::TOPIC, "orders.created");
}

#[test]
fn derived_attributes() {
    const { assert!(!Echo::ONE_WAY) };
    const { assert!(LogLine::ONE_WAY) };
    assert_eq!(Echo { text: "x".into() }.request_id(), None);
    assert_eq!(
        LogLine {
            seq: 7,
            line: String::new()
        }
        .request_id(),
        Some(7)
    );
    assert_eq!(Job { job: 3 }.request_id(), Some(3));
    assert_eq!(Command::Stop.request_id(), None);
    let _: Option<<Ping as Request>::Response> = Some(());
}

#[test]
fn two_handlers_for_one_type_fail_at_start() {
    /// Another type with the same name, hence the same id.
    #[derive(Serialize, Deserialize, Request)]
    #[request_type(name = "test.echo")]
    struct EchoToo;

    let result = Worker::builder(WorkerConfig::new(inproc("nobody")))
        .handle::<Echo>(|req: Echo, _: &RequestContext| {
            Ok::<_, String>(EchoReply {
                text: req.text,
                request_type: 0,
                attempt: 0,
            })
        })
        .handle::<EchoToo>(|_: EchoToo, _: &RequestContext| Ok::<_, String>(()))
        .start();
    let error = result.expect_err("a second handler for one type is refused");
    assert!(
        error.to_string().contains("two handlers for request type"),
        "{error}"
    );
}

// ---------------------------------------------------------------- requests

#[test]
fn typed_request_response() {
    let handlers = |worker: WorkerBuilder| {
        worker.handle::<Echo>(|req: Echo, ctx: &RequestContext| {
            Ok::<_, std::convert::Infallible>(EchoReply {
                text: req.text.to_uppercase(),
                request_type: ctx.request_type,
                attempt: ctx.attempt,
            })
        })
    };
    served("echo", handlers, |broker, client| {
        let reply = client
            .send_typed(&Echo {
                text: "hello".into(),
            })
            .expect("sent")
            .wait()
            .expect("a reply");
        assert_eq!(
            reply,
            EchoReply {
                text: "HELLO".into(),
                request_type: Echo::REQUEST_TYPE,
                attempt: 1,
            }
        );

        // With options, and awaited as a future.
        let handle = client
            .request_typed(&Echo { text: "abc".into() })
            .id(99)
            .flags(Flags::RECEIPT_ON_SEND)
            .timeout(WAIT)
            .send()
            .expect("sent");
        assert_eq!(handle.request_id(), 99);
        assert_eq!(handle.request_type(), Echo::REQUEST_TYPE);
        let reply = block_on(handle).expect("a reply");
        assert_eq!(reply.text, "ABC");

        // Waited on in slices, typed.
        let mut handle = client
            .send_typed(&Echo { text: "xyz".into() })
            .expect("sent");
        let reply = handle
            .wait_for(WAIT)
            .expect("the reply within the wait")
            .expect("a reply");
        assert_eq!(reply.text, "XYZ");

        // The typed handler told the broker its type's name (protocol 1.6).
        let stats = broker.stats().unwrap();
        assert_eq!(
            stats.types[&Echo::REQUEST_TYPE].name.as_deref(),
            Some(Echo::NAME)
        );
        assert_eq!(stats.types[&Echo::REQUEST_TYPE].end_to_end.count, 3);
    });
}

#[test]
fn one_way_requests_are_delivered() {
    // (A crossbeam sender is `Sync`, as a handler must be.)
    let (tx, rx) = crossbeam_channel::unbounded();
    let handlers = move |worker: WorkerBuilder| {
        worker.handle::<LogLine>(move |req: LogLine, ctx: &RequestContext| {
            let _ = tx.send((ctx.request_id, ctx.flags, req.line));
            Ok::<_, String>(())
        })
    };
    served("oneway", handlers, move |_, client| {
        let handle = client
            .request_typed(&LogLine {
                seq: 41,
                line: "started".into(),
            })
            .flags(Flags::RECEIPT_ON_RECEIVE)
            .send()
            .expect("sent");
        assert_eq!(handle.request_id(), 41, "the natural id is used");
        handle.wait().expect("delivered");
        let (id, flags, line) = rx.recv_timeout(WAIT).expect("the worker ran it");
        assert_eq!((id, line.as_str()), (41, "started"));
        assert!(flags.contains(Flags::ONE_WAY));
    });
}

#[test]
fn a_two_way_type_can_be_sent_one_way() {
    // (A crossbeam sender is `Sync`, as a handler must be.)
    let (tx, rx) = crossbeam_channel::unbounded();
    let handlers = move |worker: WorkerBuilder| {
        worker.handle::<Divide>(move |req: Divide, _: &RequestContext| {
            let _ = tx.send(req.a);
            Ok::<_, String>(req.a)
        })
    };
    served("oneway2", handlers, move |_, client| {
        let handle = client
            .request_typed(&Divide { a: 5, b: 1 })
            // Ignored: one-way-ness is chosen by `one_way()`.
            .flags(Flags::ONE_WAY | Flags::RECEIPT_ON_RECEIVE)
            .one_way()
            .send()
            .expect("sent");
        let () = handle.wait().expect("delivered");
        assert_eq!(rx.recv_timeout(WAIT).unwrap(), 5);
    });
}

#[test]
fn handler_errors_reach_the_client() {
    let handlers = |worker: WorkerBuilder| {
        worker
            .handle::<Divide>(|req: Divide, _: &RequestContext| {
                if req.b == 0 {
                    return Err(HandlerError::bad_request("division by zero"));
                }
                if req.a < 0 {
                    return Err(HandlerError::failed("negative numbers are not my job"));
                }
                Ok(req.a / req.b)
            })
            .handle::<Job>(|req: Job, _: &RequestContext| {
                if req.job == 13 {
                    panic!("unlucky job");
                }
                Err::<u32, _>(format!("job {} failed", req.job))
            })
    };
    served("errors", handlers, |_, client| {
        let divide = |a, b| client.send_typed(&Divide { a, b }).unwrap().wait();
        assert_eq!(divide(9, 3).unwrap(), 3);
        assert_eq!(
            refusal(divide(1, 0)),
            (Status::BadRequest, "division by zero".into())
        );
        assert_eq!(
            refusal(divide(-1, 1)),
            (Status::Failed, "negative numbers are not my job".into())
        );
        let job = |job| client.send_typed(&Job { job }).unwrap().wait();
        assert_eq!(refusal(job(5)), (Status::Failed, "job 5 failed".into()));
        let panicked = job(13).unwrap_err();
        assert_eq!(panicked.status(), Some(Status::Failed), "{panicked}");
    });
}

/// The same request type, as an incompatible older worker has it.
mod incompatible {
    use super::*;

    #[derive(Debug, Serialize, Deserialize, Request)]
    #[request_type(name = "test.divide", response = String)]
    pub(crate) struct Divide {
        pub(crate) a: String,
    }

    #[derive(Debug, Serialize, Deserialize, Request)]
    #[request_type(name = "test.job", response = String)]
    pub(crate) struct Job {
        pub(crate) job: u32,
    }
}

#[test]
fn undecodable_requests_and_responses() {
    let handlers = |worker: WorkerBuilder| {
        worker
            .handle::<incompatible::Divide>(|req: incompatible::Divide, _: &RequestContext| {
                Ok::<_, String>(req.a)
            })
            .handle::<incompatible::Job>(|req: incompatible::Job, _: &RequestContext| {
                Ok::<_, String>(format!("job {}", req.job))
            })
    };
    served("decode", handlers, |_, client| {
        // `a` is a number here, a string there: BAD_REQUEST, with why.
        let (status, message) = refusal(client.send_typed(&Divide { a: 1, b: 2 }).unwrap().wait());
        assert_eq!(status, Status::BadRequest);
        assert!(
            message.starts_with("the payload is not a valid `test.divide` request: "),
            "{message}"
        );

        // The request decodes, the response (a string, not a u32) does not.
        let error = client
            .send_typed(&Job { job: 1 })
            .unwrap()
            .wait()
            .unwrap_err();
        assert!(matches!(error, TypedRequestError::Decode(_)), "{error:?}");

        // A raw request with garbage is a BAD_REQUEST too, not a crash.
        let raw = client
            .request(Divide::REQUEST_TYPE)
            .payload_bytes(b"\xc1 not msgpack")
            .send()
            .unwrap()
            .wait()
            .unwrap_err();
        assert_eq!(raw.status(), Some(Status::BadRequest));
    });
}

#[test]
fn natural_ids_dedupe_and_timeouts() {
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = std::sync::Mutex::new(release_rx);
    let handlers = move |worker: WorkerBuilder| {
        worker.handle::<Job>(move |req: Job, _: &RequestContext| {
            let _ = release_rx.lock().unwrap().recv_timeout(WAIT);
            Ok::<_, String>(req.job * 2)
        })
    };
    served("dedupe", handlers, move |broker, client| {
        let first = client
            .request_typed(&Job { job: 21 })
            .flags(Flags::RECEIPT_ON_SEND)
            .send()
            .unwrap();
        assert_eq!(first.request_id(), 21);
        assert!(first.wait_receipt(ReceiptKind::Sent, WAIT), "dispatched");
        assert_eq!(first.receipts(), vec![ReceiptKind::Sent]);

        // Same type, same natural id, while the first runs.
        let other = Client::connect(ClientConfig::new(broker.frontend())).unwrap();
        let duplicate = other.send_typed(&Job { job: 21 }).unwrap().wait();
        assert_eq!(refusal(duplicate).0, Status::Rejected);

        // A request that cannot finish in time.
        let slow = client
            .request_typed(&Job { job: 5 })
            .timeout(Duration::from_millis(100))
            .send()
            .unwrap()
            .wait();
        assert!(
            matches!(
                slow,
                Err(TypedRequestError::Request(RequestError::Timeout(_)))
            ),
            "{slow:?}"
        );

        release_tx.send(()).unwrap();
        release_tx.send(()).unwrap();
        assert_eq!(first.wait().unwrap(), 42);

        other.stop().unwrap();
        client.stop().unwrap();
        // A stopped client refuses to send.
        assert!(matches!(
            client.send_typed(&Job { job: 1 }),
            Err(TypedRequestError::Request(RequestError::Stopped))
        ));
    });
}

// ---------------------------------------------------------------- evolution

/// Version 1 of a request, as an old peer has it.
mod v1 {
    use super::*;

    #[derive(Debug, Serialize, Deserialize, Request)]
    #[request_type(name = "test.evolve", response = Reply)]
    pub(crate) struct Create {
        pub(crate) item: String,
    }

    #[derive(Debug, Serialize, Deserialize)]
    pub(crate) struct Reply {
        pub(crate) item: String,
    }
}

/// Version 2: new optional fields in the request and the response.
mod v2 {
    use super::*;

    #[derive(Debug, Serialize, Deserialize, Request)]
    #[request_type(name = "test.evolve", response = Reply)]
    pub(crate) struct Create {
        pub(crate) item: String,
        pub(crate) note: Option<String>,
        #[serde(default)]
        pub(crate) quantity: u32,
    }

    #[derive(Debug, Serialize, Deserialize)]
    pub(crate) struct Reply {
        pub(crate) item: String,
        #[serde(default)]
        pub(crate) warehouse: Option<String>,
    }
}

#[test]
fn an_old_worker_serves_a_new_client() {
    let handlers = |worker: WorkerBuilder| {
        worker.handle::<v1::Create>(|req: v1::Create, _: &RequestContext| {
            Ok::<_, String>(v1::Reply { item: req.item })
        })
    };
    served("evolve-old", handlers, |_, client| {
        let reply = client
            .send_typed(&v2::Create {
                item: "tea".into(),
                note: Some("green".into()),
                quantity: 3,
            })
            .unwrap()
            .wait()
            .expect("the extra fields are ignored");
        assert_eq!(reply.item, "tea");
        assert_eq!(reply.warehouse, None, "missing in the reply: defaulted");
    });
}

#[test]
fn a_new_worker_serves_an_old_client() {
    let handlers = |worker: WorkerBuilder| {
        worker.handle::<v2::Create>(|req: v2::Create, _: &RequestContext| {
            assert_eq!(req.note, None);
            assert_eq!(req.quantity, 0);
            Ok::<_, String>(v2::Reply {
                item: req.item,
                warehouse: Some("north".into()),
            })
        })
    };
    served("evolve-new", handlers, |_, client| {
        let reply = client
            .send_typed(&v1::Create {
                item: "coffee".into(),
            })
            .unwrap()
            .wait()
            .expect("the missing fields are defaulted");
        assert_eq!(reply.item, "coffee");
    });
}

// ---------------------------------------------------------------- notifications

#[derive(Debug, PartialEq, Serialize, Deserialize, Notification)]
#[notification(name = "orders.created")]
struct OrderPlaced {
    order_no: u64,
    item: String,
}

#[derive(Debug, PartialEq, Serialize, Deserialize, Notification)]
#[notification(name = "orders.cancelled")]
struct OrderCancelled {
    order_no: u64,
}

#[test]
fn typed_notifications() {
    time_limit(LIMIT, || {
        let broker = NotifyBroker::start(NotifyBrokerConfig::new(
            inproc("notify-front"),
            inproc("notify-back"),
        ))
        .unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        let (placed, cancelled, bad, other) = (tx.clone(), tx.clone(), tx.clone(), tx);
        let subscriber = NotifyRouter::new()
            .on::<OrderPlaced>(move |n| {
                let _ = placed.send(format!("placed {} {}", n.order_no, n.item));
                NotifyOutcome::Continue
            })
            .on::<OrderCancelled>(move |n| {
                let _ = cancelled.send(format!("cancelled {}", n.order_no));
                NotifyOutcome::Continue
            })
            .on_decode_error(move |n, e| {
                let _ = bad.send(format!(
                    "undecodable {}: {}",
                    n.topic,
                    !e.to_string().is_empty()
                ));
                NotifyOutcome::Continue
            })
            .fallback(move |n: lhcluster::notify::RawNotification| {
                let _ = other.send(format!("other {}", n.topic));
                NotifyOutcome::Continue
            })
            .connect(NotifySubscriberConfig::new(broker.frontend()).prefix("audit."))
            .unwrap();
        let mut topics = subscriber.topics();
        topics.sort();
        assert_eq!(topics, ["orders.cancelled", "orders.created"]);

        let publisher =
            NotifyPublisher::connect(NotifyPublisherConfig::new(broker.backend())).unwrap();
        publisher
            .publish_typed(&OrderPlaced {
                order_no: 1,
                item: "tea".into(),
            })
            .unwrap();
        publisher
            .publish(OrderPlaced::TOPIC, vec![b"\xc1".as_slice().into()])
            .unwrap();
        publisher
            .publish_typed_with_id(&OrderCancelled { order_no: 1 }, 77)
            .unwrap();
        publisher.publish("audit.login", Vec::new()).unwrap();

        let got: Vec<String> = (0..4).map(|_| rx.recv_timeout(WAIT).unwrap()).collect();
        assert_eq!(
            got,
            [
                "placed 1 tea",
                "undecodable orders.created: true",
                "cancelled 1",
                "other audit.login"
            ]
        );
        // Not only handed to `on_decode_error`: counted, for the stats
        // line and an operator.
        let stats = subscriber.stats().unwrap();
        assert_eq!(stats.decode_errors, 1, "{stats}");

        subscriber.stop().unwrap();
        publisher.stop().unwrap();
        broker.stop().unwrap();
    });
}

#[test]
fn one_handler_per_topic() {
    let error = NotifyRouter::new()
        .on::<OrderPlaced>(|_| NotifyOutcome::Continue)
        .on::<OrderPlaced>(|_| NotifyOutcome::Continue)
        .connect(NotifySubscriberConfig::new(inproc("nobody")))
        .expect_err("two handlers for one topic are refused");
    assert!(error.to_string().contains("orders.created"), "{error}");
    // The shortcut.
    assert_eq!(
        lhcluster::typed::on::<OrderPlaced>(|_| NotifyOutcome::Stop).topics(),
        ["orders.created"]
    );
}

#[test]
fn a_local_client_sends_typed_requests() {
    time_limit(LIMIT, || {
        let broker = Broker::start(BrokerConfig::new(
            inproc("local-front"),
            inproc("local-back"),
        ))
        .expect("broker starts");
        let _worker = Worker::builder(worker_config(&broker))
            .handle::<Divide>(|req: Divide, _: &RequestContext| {
                if req.b == 0 {
                    return Err(HandlerError::bad_request("division by zero"));
                }
                Ok(req.a / req.b)
            })
            .start()
            .expect("worker starts");
        let mut client =
            lhcluster::client::LocalClient::connect(ClientConfig::new(broker.frontend()))
                .expect("client starts");
        let quotient = client.send_typed(&Divide { a: 84, b: 2 }).unwrap();
        assert_eq!(client.wait_typed(quotient).unwrap(), 42);
        let refused = client
            .request_typed(&Divide { a: 1, b: 0 })
            .timeout(WAIT)
            .send()
            .unwrap();
        assert_eq!(
            refusal(client.wait_typed(refused)),
            (Status::BadRequest, "division by zero".into())
        );
    });
}
