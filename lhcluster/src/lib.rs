//! # lhcluster
//!
//! Brokered request queuing and notifications over ZeroMQ: typed requests
//! routed from clients to workers through a broker, with deduplication,
//! receipts, retries and a guaranteed outcome for every request, and
//! topic-based notifications.
//!
//! ## Roles
//!
//! - [`Broker`]: binds a frontend (clients, proxies) and a backend (workers);
//!   routes each request to the least recently used free worker serving its
//!   [`RequestType`], queues it (bounded) while none is free, and routes the
//!   outcome back. Requests are keyed by ([`RequestType`], [`RequestId`]) and
//!   never run twice while one is pending or in progress.
//! - [`Worker`]: registers request types with a capacity, runs handlers on a
//!   pool of that many threads, reconnects and re-registers by itself.
//! - [`Client`]: sends one-way or two-way requests and gets every outcome
//!   through a handle ([`TypedResponse`], or [`ResponseHandle`] for raw
//!   requests: `wait`, `wait_timeout` or `.await`).
//! - [`ClientProxy`]: sits between clients and a broker, buffers requests and
//!   re-sends them until the delivery they asked for is confirmed, across
//!   broker restarts.
//! - [`NotifyBroker`], [`NotifyPublisher`], [`NotifySubscriber`]: fan-out of
//!   notifications by topic ([`notify`]).
//!
//! Every role runs in-process on its own driver thread; its handle is
//! `Clone + Send + Sync`. Each can run in its own process, on its own
//! machine, over `tcp://`, `ipc://` or `inproc://` endpoints. See
//! `docs/architecture.md` for the design and `docs/protocol.md` for the wire
//! protocol; `docs/guide.md` is this guide outside rustdoc.
//!
//! ## Quick start
//!
//! A request type is a serde struct with `#[derive(Request)]`; a worker
//! serves it with a closure, a client sends it and gets the typed response.
//!
//! ```
//! use lhcluster::client::{Client, ClientConfig};
//! use lhcluster::worker::{Worker, WorkerConfig};
//! use lhcluster::{Broker, BrokerConfig, Request};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, Request)]
//! #[request_type(name = "greeter.hello", response = Greeting)]
//! struct Hello {
//!     name: String,
//! }
//!
//! #[derive(Serialize, Deserialize)]
//! struct Greeting {
//!     text: String,
//! }
//!
//! let broker = Broker::start(BrokerConfig::new("inproc://guide-front", "inproc://guide-back"))?;
//! let worker = Worker::builder(WorkerConfig::new(broker.backend()))
//!     .handle::<Hello>(|req, _ctx| Greeting { text: format!("hello, {}", req.name) })
//!     .start()?;
//! let client = Client::connect(ClientConfig::new(broker.frontend()))?;
//! let greeting = client.send_typed(&Hello { name: "world".into() })?.wait()?;
//! assert_eq!(greeting.text, "hello, world");
//! # client.stop()?; worker.stop()?; broker.stop()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Typed requests
//!
//! `#[derive(Request)]` implements [`trait@Request`] for a struct or enum
//! that is also `Serialize + Deserialize`. Options, all optional, go in
//! `#[request_type(...)]`:
//!
//! | option | meaning | default |
//! |---|---|---|
//! | `name = "orders.create"` | the name, hashed into the id | the type's name |
//! | `id = 1234` | an explicit request type id (not 0) | [`request_type_id(name)`](request_type_id) |
//! | `response = T` | the response type | `()` |
//! | `one_way` | the client learns of delivery, never a response | two-way |
//! | `crate = "path"` | the path to this crate, if renamed in `Cargo.toml` | `::lhcluster` |
//!
//! A field marked `#[request_id]` (a `u64`, or a `Copy` type that converts
//! into one) is the request's natural id: the broker's dedupe key, so a
//! duplicate sent while the first is pending is `REJECTED`. Without it the
//! client assigns a fresh id to each send.
//!
//! ```
//! use lhcluster::Request;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, Request)]
//! #[request_type(name = "orders.create", response = OrderCreated)]
//! struct CreateOrder {
//!     #[request_id]
//!     order_no: u64,
//!     item: String,
//!     /// Added in version 2: older peers ignore it, newer ones see `None`
//!     /// from older peers.
//!     gift_wrap: Option<bool>,
//! }
//!
//! #[derive(Serialize, Deserialize)]
//! struct OrderCreated {
//!     eta_days: u32,
//! }
//!
//! assert_eq!(CreateOrder::REQUEST_TYPE, 0x1D4F_B242);
//! ```
//!
//! **Ids.** A generated id is the 32-bit FNV-1a hash of the name's UTF-8
//! bytes, 0 mapped to 1 ([`request_type_id`]); a Python or C peer computes
//! the same. Pick names unique across the system (`"orders.create"` rather
//! than the default type name). Two handlers for one id in a worker make
//! [`WorkerBuilder::start`](worker::WorkerBuilder::start) fail.
//!
//! **Payloads.** Requests, responses and notifications travel as one
//! MessagePack payload frame, structs as maps keyed by field name
//! ([`typed::encode`]). Adding an `Option` field (or one with
//! `#[serde(default)]`) keeps old and new peers compatible both ways.
//!
//! **Workers** serve a type with
//! [`WorkerBuilder::handle`](worker::WorkerBuilder::handle) and a closure
//! or function `Fn(R, &RequestContext)` ([`typed::HandlerFn`]; Rust infers
//! its argument types) returning the response when it cannot fail, or
//! `Result<R::Response, E>` for any `E: Display`. A value of the response
//! type is always the response, even when that type is a `Result`. A type
//! implementing [`typed::Handler`] registers with
//! [`handle_with`](worker::WorkerBuilder::handle_with); async handlers
//! with `handle_async` (feature `tokio`, below). The [`RequestContext`](worker::RequestContext) has the
//! type, id, flags and attempt number.
//!
//! ```
//! # use lhcluster::worker::{HandlerError, Worker, WorkerConfig};
//! # #[derive(serde::Serialize, serde::Deserialize, lhcluster::Request)]
//! # #[request_type(name = "math.add", response = i64)]
//! # struct Add { a: i64, b: i64 }
//! # #[derive(serde::Serialize, serde::Deserialize, lhcluster::Request)]
//! # #[request_type(name = "math.div", response = i64)]
//! # struct Div { a: i64, b: i64 }
//! let builder = Worker::builder(WorkerConfig::new("tcp://127.0.0.1:5556"))
//!     .handle::<Add>(|req, _ctx| req.a + req.b)
//!     .handle::<Div>(|req, _ctx| {
//!         req.a.checked_div(req.b).ok_or(HandlerError::bad_request("division by zero"))
//!     });
//! ```
//!
//! **Clients** send with [`Client::send_typed`], or
//! [`Client::request_typed`] to set flags, an id, a timeout, `one_way()` or
//! `reply_to(name)` first. The [`TypedResponse`] resolves to
//! `Result<R::Response, TypedRequestError>`; a [`TypedRequestError`] is a
//! [`RequestError`] (the request ended without a response, as a raw one
//! would) or a codec error, and its
//! [`status()`](TypedRequestError::status) is the status answered:
//!
//! | outcome | error |
//! |---|---|
//! | the payload does not decode as the worker's type | [`RequestError::Status`] `BAD_REQUEST`, with the decode error |
//! | the handler returns `Err(e)` or panics | [`RequestError::Status`] `FAILED`, with `e`'s text |
//! | the broker answers: `REJECTED`, `OVERLOADED`, `NO_WORKERS`, `WORKER_DEATH`, `REDIRECTED`, `UNKNOWN_REPLY_TO` | [`RequestError::Status`] with the status |
//! | no outcome within the timeout, the broker went away, the client stopped | [`RequestError`] `Timeout`, `Disconnected` (with a [`DisconnectReason`](client::DisconnectReason)), `Stopped` |
//! | the response does not decode as `R::Response` | [`TypedRequestError::Decode`] |
//!
//! ```
//! # use lhcluster::{RequestError, Status, TypedRequestError};
//! fn describe<T>(outcome: Result<T, TypedRequestError>) -> String {
//!     match outcome {
//!         Ok(_) => "done".into(),
//!         Err(TypedRequestError::Request(RequestError::Status { status: Status::Rejected, .. })) => {
//!             "already running".into()
//!         }
//!         Err(e) if e.status().is_some() => format!("refused: {e}"),
//!         Err(e) => format!("no answer: {e}"),
//!     }
//! }
//! # assert_eq!(describe::<()>(Err(RequestError::Stopped.into())), "no answer: the client has stopped");
//! ```
//!
//! A two-way request ends in exactly one of these outcomes; nothing waits
//! forever. A handle that is dropped unread, never awaited, does not
//! cancel its request: it was sent all the same. `handle.cancel()` takes it
//! back (and so does dropping an awaited handle before its outcome): see
//! [`ResponseHandle::cancel`](client::ResponseHandle::cancel). On a typed request, `Flags::ONE_WAY` comes
//! from the type or from `.one_way()` (whose handle resolves to `()`); in
//! `flags(..)` of a two-way request it is refused at `send`
//! ([`TypedRequestError::OneWayFlag`]).
//!
//! **Raw requests.** The untyped API stays complete, for payloads that are
//! not serde values and for bindings to other languages:
//! [`WorkerBuilder::handle_raw`](worker::WorkerBuilder::handle_raw) and
//! [`Client::request`] carry payload frames as they are, and
//! [`RequestError::Status`] holds the status.
//!
//! ## Delivery flags
//!
//! [`Flags`] ask for receipts (`RECEIPT_ON_SEND`: the broker handed the
//! request to a worker; `RECEIPT_ON_RECEIVE`: the worker accepted it), death
//! handling (`NOTIFY_ON_DEATH`, `RETRY_ON_DEATH` with a bounded number of
//! tries), response takeover by a later duplicate (`ALLOW_REDIRECT`,
//! `NOTIFY_ON_REDIRECT`), one-way delivery (`ONE_WAY`) and fail-fast when no
//! worker serves the type (`FAIL_FAST`). Their exact promises are in
//! `docs/protocol.md`; a [`ClientProxy`] extends them across broker
//! restarts (`docs/guarantees.md`).
//!
//! ```no_run
//! # use std::time::Duration;
//! # use lhcluster::client::{Client, ClientConfig, ReceiptKind};
//! # use lhcluster::Flags;
//! # #[derive(serde::Serialize, serde::Deserialize, lhcluster::Request)]
//! # #[request_type(name = "orders.create", response = u32)]
//! # struct CreateOrder { #[request_id] order_no: u64 }
//! # let client = Client::connect(ClientConfig::new("tcp://127.0.0.1:5555"))?;
//! let handle = client
//!     .request_typed(&CreateOrder { order_no: 7 })
//!     .flags(Flags::RECEIPT_ON_SEND | Flags::RETRY_ON_DEATH | Flags::FAIL_FAST)
//!     .timeout(Duration::from_secs(30))
//!     .send()?;
//! if handle.wait_receipt(ReceiptKind::Sent, Duration::from_secs(5)) {
//!     println!("a worker has order 7");
//! }
//! let eta = handle.wait()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Notifications
//!
//! `#[derive(Notification)]` with `#[notification(name = "topic")]` makes
//! a serde type a [`trait@Notification`] published on that topic.
//! [`NotifyPublisher::publish_typed`] publishes one (it never blocks); a
//! [`typed::NotifyRouter`] subscribes to the topics of the types it has
//! handlers for and calls the right one. Topics match exactly unless a
//! prefix subscription is asked for; `docs/notifications.md` has the
//! promises.
//!
//! ```
//! use std::time::Duration;
//! use lhcluster::notify::*;
//! use lhcluster::typed::NotifyRouter;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, lhcluster::Notification)]
//! #[notification(name = "orders.shipped")]
//! struct Shipped {
//!     order_no: u64,
//! }
//!
//! let broker = NotifyBroker::start(NotifyBrokerConfig::new(
//!     "inproc://guide-notify-front",
//!     "inproc://guide-notify-back",
//! ))?;
//! let (tx, rx) = std::sync::mpsc::channel();
//! let subscriber = NotifyRouter::new()
//!     .on::<Shipped>(move |n| {
//!         let _ = tx.send(n.order_no);
//!         NotifyOutcome::Continue
//!     })
//!     .connect(NotifySubscriberConfig::new(broker.frontend()))?;
//! let publisher = NotifyPublisher::connect(NotifyPublisherConfig::new(broker.backend()))?;
//! publisher.publish_typed(&Shipped { order_no: 7 })?;
//! assert_eq!(rx.recv_timeout(Duration::from_secs(5))?, 7);
//! # subscriber.stop()?; publisher.stop()?; broker.stop()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Async code
//!
//! Every response handle is a [`Future`] that needs no
//! runtime: `client.send_typed(&req)?.await`. With the `tokio` feature,
//! `WorkerBuilder::handle_async` serves a type with an async closure,
//! `|req, ctx| async move { .. }` (the context by value), each request a
//! task of a tokio runtime (the one `start` is called in, or the one given
//! to `WorkerBuilder::runtime`), at most `capacity` at once; the worker's
//! own thread never awaits them, so a slow future does not stop its
//! heartbeats. With the `stream` feature (part of `tokio`),
//! `NotifySubscriber::stream::<N>()` is a `futures_core::Stream` of typed
//! notifications, polled without blocking a thread.
//!
//! ## Connecting
//!
//! [`Client::connect`](client::Client::connect) returns at once and
//! connects in the background. With
//! [`ClientConfig::connect_timeout`](client::ClientConfig::connect_timeout)
//! set, it waits for the broker's `WELCOME` and fails with
//! [`Error::Unreachable`] ("cannot reach the broker at …") when none comes
//! in time. `docs/guide.md` ("Connecting") has the details.
//!
//! ## Several brokers (failover)
//!
//! Every role that connects to a broker takes a list (`brokers` in
//! [`ClientConfig`], [`WorkerConfig`]
//! and [`ClientProxyConfig`]; `endpoints`
//! for the notification roles). A client, worker or proxy uses one broker at
//! a time, the first at start, and moves to the next of the list (round
//! robin) when it loses its own: missed heartbeats, `SHUTDOWN`, no `WELCOME`
//! within the liveness bound, or a failed connect. A direct client's requests
//! in flight then end with a "broker gone" error, a proxy re-sends its buffer
//! to the next broker, and a worker registers there and drops the results it
//! owed the broker it left. A notify publisher connects to all of its notify
//! brokers; a subscriber to one at a time. `docs/guide.md` ("Several
//! brokers") has the details.
//!
//! ```no_run
//! use lhcluster::client::{Client, ClientConfig};
//!
//! let mut config = ClientConfig::new("tcp://b1:5555");
//! config.brokers.push("tcp://b2:5555".to_owned());
//! let client = Client::connect(config)?;
//! # Ok::<(), lhcluster::Error>(())
//! ```
//!
//! ## Security (CURVE)
//!
//! Without keys every connection is in clear and anyone who reaches a port
//! can connect. With CURVE keys each connection is encrypted, clients check
//! the server's key, and a broker can let in only listed client and worker
//! keys (`docs/security.md` has the threat model):
//!
//! ```rust,no_run
//! use lhcluster::curve::{KeyList, SecretKey};
//! use lhcluster::{Broker, BrokerConfig, Client, ClientConfig};
//!
//! let broker_key = SecretKey::generate()?; // or curve::read_secret_key("broker.key")
//! let client_key = SecretKey::generate()?;
//!
//! let mut config = BrokerConfig::new("tcp://*:5555", "tcp://*:5556");
//! config.curve_secret_key = Some(broker_key.clone());
//! config.curve_client_keys = Some(KeyList::from_keys([client_key.public_key()]));
//! let broker = Broker::start(config)?;
//!
//! let mut config = ClientConfig::new("tcp://b1:5555");
//! config.curve_server_key = Some(broker_key.public_key()); // the broker's NAME.pub
//! config.curve_secret_key = Some(client_key);
//! let client = Client::connect(config)?;
//! # Ok::<(), lhcluster::Error>(())
//! ```
//!
//! Workers, proxies and the notification roles take the same fields. From the
//! command line: `lhcluster keygen broker` writes `broker.key` (mode 0600) and
//! `broker.pub`; `lhcluster broker --secret-key broker.key --client-keys
//! clients.keys`; `lhcluster worker --server-key broker.pub --secret-key
//! worker.key …` (`docs/operations.md` shows a secured broker, worker and
//! client end to end). A client without the right keys gets nothing
//! through: its requests end `Disconnected`.
//!
//! A key in a broker's list may name the request types it may use: a worker
//! key the types it may register, a client key the types it may send (none:
//! any). A request its key may not send ends `Forbidden`; a worker whose key
//! may not register its types is refused and keeps trying
//! (`WorkerStats::registrations_forbidden`):
//!
//! ```rust,no_run
//! # use lhcluster::curve::{KeyList, SecretKey};
//! # use lhcluster::{Broker, BrokerConfig, Client, ClientConfig};
//! # let broker_key = SecretKey::generate()?;
//! # let client_key = SecretKey::generate()?;
//! # let thumbs_worker = SecretKey::generate()?.public_key();
//! let mut workers = KeyList::default();
//! workers.allow(thumbs_worker, ["thumbnails"])?; // may register only `thumbnails`
//! let mut clients = KeyList::default();
//! clients.allow(client_key.public_key(), ["thumbnails"])?;
//! let mut config = BrokerConfig::new("tcp://*:5555", "tcp://*:5556");
//! config.curve_secret_key = Some(broker_key.clone());
//! config.curve_worker_keys = Some(workers);
//! config.curve_client_keys = Some(clients); // or KeyList::parse / curve::read_key_list
//! let broker = Broker::start(config)?;
//!
//! let mut config = ClientConfig::new("tcp://b1:5555");
//! config.curve_server_key = Some(broker_key.public_key());
//! config.curve_secret_key = Some(client_key);
//! let client = Client::connect(config)?;
//! let err = client.request(lhcluster::request_type_id("payments")).send()?.wait().unwrap_err();
//! assert!(err.is_forbidden());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! `lhcluster broker`, `proxy` and `notify-broker` reload their key files on
//! SIGHUP (`reload_keys` on [`Broker`], [`ClientProxy`] and
//! [`NotifyBroker`] in code). Every bound socket also limits what a peer may send
//! (`max_message_size`, default 16 MiB per frame; `max_message_frames`,
//! default 1024): `docs/security.md`, "Limits on input".
//!
//! ## Running the daemon
//!
//! The roles run in any process that links this crate. To run them as
//! daemons, the `lhcluster` binary (crate `lhcluster-cli`) has
//! `lhcluster broker --frontend tcp://*:5555 --backend tcp://*:5556`,
//! `lhcluster proxy`, `lhcluster notify-broker`, and `lhcluster up
//! cluster.toml` for a whole cluster from one TOML file, plus operator tools
//! (`request`, `worker`, `publish`, `subscribe`, `stats`, `bench`). Request
//! types are given by number or by name, hashed like the derive does.
//! `docs/operations.md` is the reference.
//!
//! ## Feature flags
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `derive` | on | `#[derive(Request)]` and `#[derive(Notification)]` (the `lhcluster-derive` crate); without it, implement [`trait@Request`] and [`trait@Notification`] by hand |
//! | `serde` | off | `Deserialize` for every role's config, to read them from files: keys named as the fields, durations as `"100ms"`/`"5s"` (`"off"` for an optional one), missing fields at their `new` defaults, unknown keys refused; `validate()` still checks the values at start |
//! | `tokio` | off | `WorkerBuilder::handle_async`: async handlers on a tokio runtime; includes `stream` |
//! | `stream` | off | `NotifySubscriber::stream::<N>()`: typed notifications as a `futures_core::Stream`, on any runtime |
//! | `unstable-internals` | off | **no semver promise**: makes the wire codec (`protocol`) and the broker's state machine without sockets (`bench_support`) public, for this workspace's CLI, benchmarks, fuzz target and tests; they may change in any release, a patch release included. Applications need neither: what they use of the protocol is re-exported here by name |
//!
//! ## Logging
//!
//! The library logs through [`tracing`] and never installs a subscriber:
//! info for lifecycle, warn for protocol violations and dropped peers, debug
//! for state changes.
#![warn(missing_docs)]

#[doc(hidden)]
mod accept;
#[cfg(feature = "unstable-internals")]
pub mod bench_support;
pub mod broker;
pub mod client;
pub mod client_proxy;
mod config_common;
#[cfg(feature = "serde")]
mod config_serde;
mod context;
pub mod curve;
mod deadline;
mod endpoint;
mod error;
mod io;
mod link;
mod log_limit;
pub mod notify;
mod outbox;
mod ownership;
mod payload;
mod peer;
#[cfg(feature = "unstable-internals")]
pub mod protocol;
#[cfg(not(feature = "unstable-internals"))]
mod protocol;
mod role;
mod session;
mod slab;
mod stats_log;
#[cfg(test)]
mod testing;
pub mod typed;
mod wake;
pub mod worker;

pub use broker::{
    Broker, BrokerConfig, BrokerStats, ClusterStats, LatencyHistogram, PeerStats, ServedStats,
    TypeStats,
};
pub use client::{Client, ClientConfig, RequestError, ResponseHandle};
pub use client_proxy::{ClientProxy, ClientProxyConfig};
pub use context::{context, terminate_context};
pub use error::{ConfigError, Error};
pub use lhcluster_types::request_type_id;
pub use notify::{
    NotifyBroker, NotifyBrokerConfig, NotifyOutcome, NotifyPublisher, NotifyPublisherConfig,
    NotifySubscriber, NotifySubscriberConfig,
};
pub use protocol::{Flags, Frame, MAX_TYPE_NAME_LEN, Payload, RequestId, RequestType, Status};
pub use typed::{Notification, Request, TypedRequestError, TypedResponse};
pub use worker::{Worker, WorkerConfig};

/// The ZeroMQ binding this crate is built on (crate `zmq`), so that the
/// types in this API are nameable without depending on it separately:
/// a [`Frame`] is a [`zmq::Message`], a ZeroMQ failure in an [`Error`] is a
/// [`zmq::Error`], and [`context()`] is a [`zmq::Context`].
pub use zmq;

/// `#[derive(Request)]` and `#[derive(Notification)]`: see the
/// [`Request`](trait@Request) and [`Notification`](trait@Notification)
/// traits, and the [typed requests](crate#typed-requests) section.
#[cfg(feature = "derive")]
pub use lhcluster_derive::{Notification, Request};

/// What code generated by `lhcluster-derive` refers to: the one of
/// `lhcluster-types`, so that the derive's tests can do without ZeroMQ.
/// Not public API.
#[doc(hidden)]
pub use lhcluster_types::__private;
