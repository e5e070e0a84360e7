//! # lhcluster
//!
//! Brokered request queuing and notifications over ZeroMQ.
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
//!   through a [`ResponseHandle`] (`wait`, `wait_timeout` or `.await`).
//!
//! Every role runs in-process on its own driver thread; its handle is
//! `Clone + Send + Sync`. See `docs/architecture.md` for the design and
//! `docs/protocol.md` for the wire protocol.
//!
//! ## Quick start
//!
//! ```
//! use std::time::Duration;
//! use lhcluster::client::{Client, ClientConfig};
//! use lhcluster::worker::{RequestContext, Worker, WorkerConfig};
//! use lhcluster::{Broker, BrokerConfig, Payload};
//!
//! let broker = Broker::start(BrokerConfig::new("inproc://doc-front", "inproc://doc-back"))?;
//! let worker = Worker::builder(WorkerConfig::new(broker.backend()))
//!     .handle_raw(1, |_ctx: &RequestContext, payload: Payload| Ok(payload)) // echo
//!     .start()?;
//! let client = Client::connect(ClientConfig::new(broker.frontend()))?;
//! let reply = client.request(1).payload_bytes(b"hello").send()?.wait()?;
//! assert_eq!(&reply.payload[0][..], b"hello");
//! # client.stop()?; worker.stop()?; broker.stop()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Outcomes
//!
//! A two-way request ends in exactly one outcome: the worker's response
//! (`Ok`), a status from the worker or the broker
//! ([`RequestError::Status`]: `FAILED`, `BAD_REQUEST`, `REJECTED`,
//! `OVERLOADED`, `NO_WORKERS`, `WORKER_DEATH`, `REDIRECTED`,
//! `UNKNOWN_REPLY_TO`), a timeout, or a disconnection. Nothing waits
//! forever.
//!
//! ## Delivery flags
//!
//! [`Flags`] ask for receipts (`RECEIPT_ON_SEND`, `RECEIPT_ON_RECEIVE`),
//! death handling (`NOTIFY_ON_DEATH`, `RETRY_ON_DEATH`), response takeover
//! (`ALLOW_REDIRECT`, `NOTIFY_ON_REDIRECT`), one-way delivery (`ONE_WAY`) and
//! fail-fast (`FAIL_FAST`). Their exact promises are in `docs/protocol.md`.
//!
//! ## Logging
//!
//! The library logs through [`tracing`] and never installs a subscriber:
//! info for lifecycle, warn for protocol violations and dropped peers, debug
//! for state changes.
#![warn(missing_docs)]

pub mod broker;
pub mod client;
pub mod client_proxy;
mod context;
mod endpoint;
mod error;
mod io;
mod peer;
#[doc(hidden)]
pub mod protocol;
mod role;
mod slab;
mod wake;
pub mod worker;

pub use broker::{Broker, BrokerConfig, BrokerStats, TypeStats};
pub use client::{Client, ClientConfig, RequestError, ResponseHandle};
pub use client_proxy::{ClientProxy, ClientProxyConfig};
pub use context::context;
pub use error::{ConfigError, Error};
pub use protocol::{Flags, Frame, Payload, RequestId, RequestType, Status};
pub use worker::{Worker, WorkerConfig};
