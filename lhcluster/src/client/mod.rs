//! The client: sends requests to a broker (or a client proxy) and gets
//! their outcomes, receipts and broker statuses asynchronously.
//!
//! ```no_run
//! use lhcluster::client::{Client, ClientConfig};
//! use lhcluster::Flags;
//!
//! let client = Client::connect(ClientConfig::new("tcp://127.0.0.1:5555"))?;
//! let handle = client.request(7).id(42).payload_bytes(b"hello").send()?;
//! match handle.wait() {
//!     Ok(reply) => println!("{} frame(s) back", reply.payload.len()),
//!     Err(e) => println!("failed: {e}"),
//! }
//! # Ok::<(), lhcluster::Error>(())
//! ```

mod config;
pub(crate) mod core;
mod driver;
mod ids;
#[cfg(test)]
mod lead_tests;
mod local;
mod response;
mod stats;
#[cfg(test)]
mod tests;
mod typed;

use std::sync::Arc;

use std::time::Duration;

pub use config::ClientConfig;
pub use local::LocalClient;
pub use response::{DisconnectReason, Outcome, Reply, RequestError, ResponseHandle, Waiter};
pub use stats::ClientStats;
pub use typed::{TypedRequestBuilder, TypedRequestError, TypedResponse};

pub use crate::protocol::ReceiptKind;

use lhcluster_types::Request;

use crate::error::Error;
use crate::protocol::{Flags, Frame, Payload, RequestId, RequestType};
use crate::role::RoleHandle;

/// Something that happened to the client, for callers that stream events
/// ([`Client::events`]).
#[derive(Debug, PartialEq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// A session with the broker is established.
    Connected,
    /// The broker went away; outstanding requests failed.
    Disconnected,
    /// A receipt arrived.
    Receipt {
        /// Request type.
        request_type: RequestType,
        /// Request id.
        request_id: RequestId,
        /// Which receipt.
        kind: ReceiptKind,
    },
    /// An outcome for which no handle is waiting on this client: the
    /// response to another client's request that named this one as
    /// `reply_to`, the broker's refusal of a one-way request, or an outcome
    /// that came after its request timed out here.
    Response {
        /// Request type.
        request_type: RequestType,
        /// Request id.
        request_id: RequestId,
        /// The outcome.
        outcome: Outcome,
    },
}

/// Whether the client has a session; set by the driver, waited on by
/// [`Client::wait_connected`].
pub(crate) type Readiness = crate::role::WaitFlag;

/// A running client. Cheap to clone and usable from any thread; it stops
/// when [`Client::stop`] is called or the last clone is dropped.
///
/// A background thread (the driver) reads what the broker sends, resolves
/// the handles, keeps the session alive and reconnects. A request is sent
/// by the thread that calls [`send`](RequestBuilder::send), on the spot,
/// unless the socket is in use at that moment (by the driver or another
/// caller), other commands wait for the driver, or the client is
/// reconnecting: then the driver sends it, with its next batch. Either way
/// requests from one thread leave in the order they were sent. A thread
/// blocked on a handle ([`ResponseHandle::wait`]) reads the broker's
/// messages itself while it waits (one such thread at a time; others wait
/// for it or the driver to complete their handles), so that its response
/// wakes it directly.
#[derive(Clone, Debug)]
pub struct Client {
    role: Arc<RoleHandle<driver::Command>>,
    /// The state machine and socket, which a caller sends a request on.
    engine: Arc<driver::Engine>,
    readiness: Arc<Readiness>,
    events: crossbeam_channel::Receiver<ClientEvent>,
    ids: Arc<ids::IdSource>,
    /// Given to every handle: sends its cancel to the driver.
    canceller: response::Canceller,
    /// Given to every handle: reads the socket while the handle blocks.
    reader: response::Reader,
}

#[cfg(test)]
crate::role::inject_panic!(Client, role);

#[cfg(test)]
impl Client {
    /// Makes the next request's submit panic (see `Engine::panic_at_submit`).
    pub(crate) fn inject_submit_panic(&self) {
        self.engine.panic_at_submit();
    }
}

impl Client {
    /// Starts the client; it connects and greets the broker in the
    /// background. With a
    /// [`connect_timeout`](ClientConfig::connect_timeout), returns only once
    /// it has a session with a broker (its `WELCOME`), and fails with
    /// [`Error::Unreachable`] if it has none by then; without one (the
    /// default), returns at once. See [`Client::wait_connected`].
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use lhcluster::client::{Client, ClientConfig};
    ///
    /// let mut config = ClientConfig::new("tcp://127.0.0.1:5555");
    /// config.connect_timeout = Some(Duration::from_secs(3));
    /// match Client::connect(config) {
    ///     Ok(_client) => println!("connected"),
    ///     // "cannot reach the broker at tcp://127.0.0.1:5555 (no answer within 3s)"
    ///     Err(e) => eprintln!("{e}"),
    /// }
    /// ```
    pub fn connect(config: ClientConfig) -> Result<Client, Error> {
        config.validate()?;
        let connect_timeout = config.connect_timeout;
        let endpoints = config.brokers.join(", ");
        let (events_tx, events) = crossbeam_channel::bounded(config.event_capacity.max(1));
        let readiness = Arc::new(Readiness::default());
        let ids = Arc::new(ids::IdSource::new());
        let engine = Arc::new(driver::Engine::new()?);
        let role = Arc::new(driver::spawn(
            config,
            events_tx,
            readiness.clone(),
            ids.clone(),
            engine.clone(),
        )?);
        // Weak: a handle outliving its client must not keep the driver
        // running (the client stops when its last clone goes); cancelling
        // then has nothing left to do.
        let weak = Arc::downgrade(&role);
        let canceller = response::Canceller::new(move |t, id, shared| {
            if let Some(role) = weak.upgrade() {
                let _ = role.send(driver::Command::Cancel((t, id), shared));
            }
        });
        let reader = response::Reader::new(engine.clone());
        let client = Client {
            role,
            engine,
            readiness,
            events,
            ids,
            canceller,
            reader,
        };
        if let Some(timeout) = connect_timeout {
            if !client.wait_connected(timeout) {
                let _ = client.stop();
                return Err(Error::Unreachable {
                    role: "broker",
                    endpoint: endpoints,
                    timeout,
                });
            }
        }
        Ok(client)
    }

    /// Blocks until the client has a session with the broker, up to
    /// `timeout`. Requests sent before that are queued by ZeroMQ and go out
    /// on connect; this is for callers that want to know. Returns `false`
    /// at once after the client stopped (or its driver thread ended by a
    /// bug), whatever the timeout.
    pub fn wait_connected(&self, timeout: Duration) -> bool {
        self.readiness.wait(timeout)
    }

    /// Receipts, one-way refusals and connection changes, in order. Events
    /// beyond [`ClientConfig::event_capacity`] are dropped and counted.
    pub fn events(&self) -> &crossbeam_channel::Receiver<ClientEvent> {
        &self.events
    }

    /// A fresh request id, unique to this client (random start, then
    /// counting), for requests with no natural id.
    pub fn next_id(&self) -> RequestId {
        self.ids.next()
    }

    /// Starts building a request of the given type.
    pub fn request(&self, request_type: RequestType) -> RequestBuilder<'_> {
        RequestBuilder::new(Target::Client(self), request_type)
    }

    /// Sends a request with the given id, flags and payload frames.
    pub fn send(
        &self,
        request_type: RequestType,
        request_id: RequestId,
        flags: Flags,
        payload: Payload,
    ) -> Result<ResponseHandle, Error> {
        RequestBuilder::with_parts(
            Target::Client(self),
            request_type,
            request_id,
            flags,
            payload,
        )
        .send()
    }

    /// Sends a typed request: encoded as MessagePack, with its type's
    /// request type id, its natural id ([`Request::request_id`]) or a fresh
    /// one, and `ONE_WAY` if the type is one-way. The handle resolves to the
    /// decoded response. For flags, an explicit id, a timeout or reply-to,
    /// use [`request_typed`](Self::request_typed).
    pub fn send_typed<R: Request>(
        &self,
        request: &R,
    ) -> Result<TypedResponse<R>, TypedRequestError> {
        self.request_typed(request).send()
    }

    /// Starts building a typed request, to set options before
    /// [`send`](TypedRequestBuilder::send).
    pub fn request_typed<'a, R: Request>(&'a self, request: &'a R) -> TypedRequestBuilder<'a, R> {
        TypedRequestBuilder::new(Target::Client(self), request)
    }

    /// A snapshot of the client's statistics.
    pub fn stats(&self) -> Result<ClientStats, Error> {
        self.role.request(driver::Command::Stats)
    }

    /// Says goodbye to the broker and stops; outstanding requests end with
    /// [`RequestError::Stopped`]. Idempotent.
    pub fn stop(&self) -> Result<(), Error> {
        self.role.stop(driver::Command::Stop)
    }
}

/// A request being built; [`send`](Self::send) it.
#[derive(Debug)]
#[must_use = "a request is only sent by `send`"]
pub struct RequestBuilder<'a> {
    target: Target<'a>,
    request_type: RequestType,
    request_id: Option<RequestId>,
    flags: Flags,
    payload: Payload,
    reply_to: Option<String>,
    timeout: Option<Duration>,
}

/// Where a request goes: to a client's socket (on the caller's thread, or
/// through its driver thread), or to a local client's.
#[derive(Debug)]
pub(crate) enum Target<'a> {
    Client(&'a Client),
    Local(&'a mut LocalClient),
}

impl<'a> RequestBuilder<'a> {
    pub(crate) fn new(target: Target<'a>, request_type: RequestType) -> Self {
        RequestBuilder {
            target,
            request_type,
            request_id: None,
            flags: Flags::empty(),
            payload: Payload::new(),
            reply_to: None,
            timeout: None,
        }
    }

    /// A request with all its parts given: the `send` of both clients.
    pub(crate) fn with_parts(
        target: Target<'a>,
        request_type: RequestType,
        request_id: RequestId,
        flags: Flags,
        payload: Payload,
    ) -> Self {
        RequestBuilder {
            request_id: Some(request_id),
            flags,
            payload,
            ..Self::new(target, request_type)
        }
    }

    /// The request id (the dedupe key within the type). Without one, the
    /// client assigns a fresh id ([`Client::next_id`]).
    pub fn id(mut self, request_id: RequestId) -> Self {
        self.request_id = Some(request_id);
        self
    }

    /// Delivery flags (default: none, a two-way request).
    pub fn flags(mut self, flags: Flags) -> Self {
        self.flags = flags;
        self
    }

    /// Payload frames.
    pub fn payload(mut self, payload: Payload) -> Self {
        self.payload = payload;
        self
    }

    /// A single payload frame copied from `bytes`.
    pub fn payload_bytes(mut self, bytes: &[u8]) -> Self {
        self.payload = vec![Frame::from(bytes)];
        self
    }

    /// Another client (by name) receives the response instead of this one,
    /// as a [`ClientEvent::Response`]. This client's handle then resolves
    /// like a one-way request's: at the receipt its flags ask for
    /// (`RECEIPT_ON_SEND` / `RECEIPT_ON_RECEIVE`), or at once without one;
    /// refusals (say `UNKNOWN_REPLY_TO`) reach the handle while it waits, or
    /// the events stream after.
    pub fn reply_to(mut self, name: impl Into<String>) -> Self {
        self.reply_to = Some(name.into());
        self
    }

    /// Overrides the client's default timeout for this request.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sends the request. The error is only for a stopped client; every
    /// other failure arrives through the handle.
    pub fn send(self) -> Result<ResponseHandle, Error> {
        self.submit().ok_or(Error::Stopped)
    }

    /// Sends the request; `None` if the client has stopped.
    fn submit(mut self) -> Option<ResponseHandle> {
        let request_id = match (self.request_id, &mut self.target) {
            (Some(id), _) => id,
            // In a cluster, an id its broker owns: no hop to another broker.
            (None, Target::Client(client)) => client.ids.next_for(self.request_type),
            (None, Target::Local(local)) => local.next_id(),
        };
        let (slot, shared) = response::Slot::new();
        let submit = core::Submit {
            request_type: self.request_type,
            request_id,
            flags: self.flags,
            payload: self.payload,
            reply_to: self.reply_to,
            timeout: self.timeout,
            shared: slot,
        };
        let handle = ResponseHandle::new(shared, self.request_type, request_id);
        let canceller = match self.target {
            Target::Client(client) => {
                let queued = client.role.has_queued();
                let direct = client.engine.submit(submit, queued);
                let unwatched = match direct {
                    driver::Direct::Sent { unwatched } => unwatched,
                    driver::Direct::Stopped => return None,
                    driver::Direct::Queue(submit) => {
                        client.role.send(driver::Command::Submit(submit)).ok()?;
                        false
                    }
                };
                return Some(
                    handle
                        .with_canceller(client.canceller.clone())
                        .with_reader(client.reader.clone(), unwatched),
                );
            }
            Target::Local(local) => {
                local.submit(submit);
                local.canceller()
            }
        };
        Some(handle.with_canceller(canceller))
    }
}
