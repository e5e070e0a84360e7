//! A client without a background thread: the caller's thread does its I/O.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lhcluster_types::Request;
use serde::de::DeserializeOwned;

use super::core::{ClientCore, Submit};
use super::response::{Canceller, Shared};
use super::{
    ClientConfig, ClientEvent, ClientStats, Outcome, RequestBuilder, ResponseHandle,
    TypedRequestBuilder, TypedRequestError, TypedResponse,
};
use crate::error::Error;
use crate::link::Link;
use crate::protocol::{Flags, Payload, RequestId, RequestType};

/// A client that lives on one thread: it has no driver thread, and does its
/// socket I/O (sending, receiving, heartbeats, reconnecting) only while its
/// owner calls into it: in [`send`](RequestBuilder::send),
/// [`poll`](Self::poll) and [`wait`](Self::wait).
///
/// This is the ZeroMQ way (a socket per thread), and the cheapest client
/// there is: a request crosses no thread boundary on its way out, and its
/// response none on its way in. The price is that nothing happens between
/// calls: a thread that stops calling for longer than the broker's liveness
/// bound (its `liveness` × heartbeat, 3 s by default) loses its session, and
/// its outstanding requests fail with
/// [`RequestError::Disconnected`](super::RequestError::Disconnected) the
/// next time it polls. Use a [`Client`](super::Client) (cheap to clone,
/// usable from any thread, always driven) unless one thread sends and waits
/// in a loop.
///
/// Handles work as with a [`Client`](super::Client), but only resolve while
/// this client is polled: wait for one with [`LocalClient::wait`], not
/// [`ResponseHandle::wait`].
///
/// ```no_run
/// use lhcluster::client::{ClientConfig, LocalClient};
///
/// let mut client = LocalClient::connect(ClientConfig::new("tcp://127.0.0.1:5555"))?;
/// let handles: Vec<_> = (0..10u64)
///     .map(|i| client.request(7).id(i).payload_bytes(b"hello").send())
///     .collect::<Result<_, _>>()?;
/// for handle in handles {
///     println!("{:?}", client.wait(handle).map(|reply| reply.payload.len()));
/// }
/// # Ok::<(), lhcluster::Error>(())
/// ```
#[derive(Debug)]
pub struct LocalClient {
    core: ClientCore,
    link: Link,
    events: crossbeam_channel::Receiver<ClientEvent>,
    next_id: RequestId,
    stats_log: crate::stats_log::StatsLog,
    /// Requests its handles cancelled since the last poll (a handle may be
    /// on another thread: it cannot reach the state machine itself).
    cancels: Arc<Mutex<Vec<Cancelled>>>,
}

/// A cancelled request's key and its handle's state.
type Cancelled = ((RequestType, RequestId), Arc<Shared>);

impl LocalClient {
    /// Creates the client and starts connecting (the greeting completes
    /// while it is polled). With a
    /// [`connect_timeout`](ClientConfig::connect_timeout), polls until the
    /// session is up and fails with [`Error::Unreachable`] if it is not by
    /// then; otherwise fails only on an invalid configuration.
    pub fn connect(config: ClientConfig) -> Result<LocalClient, Error> {
        let connect_timeout = config.connect_timeout;
        let endpoints = config.brokers.join(", ");
        let mut client = Self::start(config)?;
        if let Some(timeout) = connect_timeout {
            let deadline = crate::deadline::deadline(Instant::now(), timeout);
            while !client.is_connected() {
                let left = match deadline {
                    Some(d) => d.saturating_duration_since(Instant::now()),
                    None => Duration::from_secs(1),
                };
                if left.is_zero() {
                    return Err(Error::Unreachable {
                        role: "broker",
                        endpoint: endpoints,
                        timeout,
                    });
                }
                client.poll(left.min(Duration::from_millis(50)))?;
            }
        }
        Ok(client)
    }

    fn start(config: ClientConfig) -> Result<LocalClient, Error> {
        config.validate()?;
        let (events_tx, events) = crossbeam_channel::bounded(config.event_capacity.max(1));
        let mut client = LocalClient {
            core: ClientCore::new(&config, Some(events_tx), Instant::now()),
            link: Link::new(config.hwm).with_curve(
                config.curve_server_key.as_ref(),
                config.curve_secret_key.as_ref(),
            )?,
            events,
            next_id: crate::peer::random_u64(),
            stats_log: crate::stats_log::StatsLog::new(config.stats_log_interval, Instant::now()),
            cancels: Arc::default(),
        };
        // Open the socket and queue the greeting now, so that requests sent
        // at once are accepted (ZeroMQ queues them until it connects).
        client.link.flush(&mut client.core);
        Ok(client)
    }

    /// Starts building a request of the given type; its
    /// [`send`](RequestBuilder::send) hands it to the socket at once.
    pub fn request(&mut self, request_type: RequestType) -> RequestBuilder<'_> {
        RequestBuilder::new(super::Target::Local(self), request_type)
    }

    /// Sends a request with the given id, flags and payload.
    pub fn send(
        &mut self,
        request_type: RequestType,
        request_id: RequestId,
        flags: Flags,
        payload: Payload,
    ) -> Result<ResponseHandle, Error> {
        let target = super::Target::Local(self);
        RequestBuilder::with_parts(target, request_type, request_id, flags, payload).send()
    }

    /// Sends a typed request, as [`Client::send_typed`](super::Client::send_typed)
    /// does; wait for its outcome with [`wait_typed`](Self::wait_typed).
    pub fn send_typed<R: Request>(
        &mut self,
        request: &R,
    ) -> Result<TypedResponse<R>, TypedRequestError> {
        self.request_typed(request).send()
    }

    /// Starts building a typed request, to set options before
    /// [`send`](TypedRequestBuilder::send).
    pub fn request_typed<'a, R: Request>(
        &'a mut self,
        request: &'a R,
    ) -> TypedRequestBuilder<'a, R> {
        TypedRequestBuilder::new(super::Target::Local(self), request)
    }

    /// Polls until a typed response resolves, and returns its outcome.
    pub fn wait_typed<R: Request, O: DeserializeOwned>(
        &mut self,
        mut response: TypedResponse<R, O>,
    ) -> Result<O, TypedRequestError> {
        loop {
            if let Some(outcome) = response.try_take() {
                return outcome;
            }
            self.poll_a_while();
        }
    }

    /// A fresh request id, unique to this client (random start, then
    /// counting).
    pub fn next_id(&mut self) -> RequestId {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        id
    }

    /// Does the client's I/O for up to `timeout`: reads what the broker
    /// sent (resolving handles), sends heartbeats, reconnects. Returns once
    /// it has handled at least one message, or when `timeout` has passed;
    /// `Duration::ZERO` only does what is ready.
    pub fn poll(&mut self, timeout: Duration) -> Result<(), Error> {
        // `Duration::MAX` and the like: no deadline (until a message).
        let deadline = crate::deadline::deadline(Instant::now(), timeout);
        let passed = |now: Instant| deadline.is_some_and(|d| now >= d);
        loop {
            self.take_cancels();
            self.link.flush(&mut self.core);
            let mut handled = self.link.read(&mut self.core, |_, _| {});
            let now = Instant::now();
            let mut failed = None;
            if handled == 0 && !passed(now) {
                let tick = self.stats_log.wake_at(self.core.next_tick(now));
                let until = deadline.map_or(tick, |d| tick.min(d));
                match self.wait_readable(until) {
                    Ok(true) => handled = self.link.read(&mut self.core, |_, _| {}),
                    Ok(false) => {}
                    Err(e) => failed = Some(e),
                }
            }
            // Ticks even after a failed wait, so that timeouts still fire.
            let now = Instant::now();
            self.core.on_tick(now);
            if self.stats_log.due(now) {
                tracing::info!(stats = ?self.core.stats(), "local client stats");
            }
            self.link.flush(&mut self.core);
            if let Some(e) = failed {
                return Err(e);
            }
            if handled > 0 || passed(Instant::now()) {
                return Ok(());
            }
        }
    }

    /// Polls until `handle` (a handle of this client's) resolves, and
    /// returns its outcome. A request without a timeout waits as long as it
    /// takes (the client's default timeout,
    /// [`ClientConfig::request_timeout`], applies as usual).
    pub fn wait(&mut self, mut handle: ResponseHandle) -> Outcome {
        loop {
            if let Some(outcome) = handle.try_take() {
                return outcome;
            }
            self.poll_a_while();
        }
    }

    /// One poll while waiting for a handle. It returns at least at each
    /// tick, so timeouts and liveness are handled; a failed poll (only a
    /// terminated context fails one) is logged, and the request's own
    /// outcome (its timeout at the latest) still comes.
    fn poll_a_while(&mut self) {
        if let Err(e) = self.poll(Duration::from_millis(100)) {
            tracing::warn!(error = %e, "local client poll failed");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether the client has a session with the broker (as of its last
    /// poll).
    pub fn is_connected(&self) -> bool {
        self.core.is_ready()
    }

    /// Receipts, one-way refusals and connection changes, as for
    /// [`Client::events`](super::Client::events); they arrive while the
    /// client is polled.
    pub fn events(&self) -> &crossbeam_channel::Receiver<ClientEvent> {
        &self.events
    }

    /// A snapshot of the client's statistics. Never fails (the client is
    /// right here); a `Result` like every role's `stats`, whose driver
    /// thread may be gone.
    pub fn stats(&self) -> Result<ClientStats, Error> {
        Ok(self.core.stats())
    }

    /// Makes the next poll panic, as a bug in the state machine would.
    #[cfg(test)]
    pub(super) fn inject_panic(&mut self) {
        self.core.panic_at_tick = true;
    }

    /// What a handle of this client calls on `cancel`: a note for the
    /// next poll.
    pub(super) fn canceller(&self) -> Canceller {
        let cancels = self.cancels.clone();
        Canceller::new(move |t, id, shared| {
            cancels
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(((t, id), shared));
        })
    }

    /// Hands the cancels noted since the last poll to the state machine.
    fn take_cancels(&mut self) {
        let cancels = std::mem::take(&mut *self.cancels.lock().unwrap_or_else(|p| p.into_inner()));
        let now = Instant::now();
        for (key, shared) in cancels {
            self.core.on_cancel(now, key, &shared);
        }
    }

    pub(super) fn submit(&mut self, submit: Submit) {
        self.take_cancels();
        self.core.on_submit(Instant::now(), submit);
        self.link.flush(&mut self.core);
    }

    /// Sleeps until the socket is readable or `until`; `true` if readable.
    fn wait_readable(&mut self, until: Instant) -> Result<bool, Error> {
        let Some(socket) = self.link.socket() else {
            // Reconnecting: nothing to read until the backoff ends.
            std::thread::sleep(until.saturating_duration_since(Instant::now()));
            return Ok(false);
        };
        crate::io::wait(None, [Some(socket), None], Some(until))
            .map(|ready| ready.sockets[0])
            .map_err(crate::error::zmq_err("polling the client socket"))
    }
}

impl Drop for LocalClient {
    /// Says goodbye to the broker; outstanding requests end with
    /// [`RequestError::Stopped`](super::RequestError::Stopped).
    ///
    /// Dropped while a panic unwinds (one raised inside this client's own
    /// `poll`, say), the client may be half way through a change: it says
    /// nothing to the broker (a second panic would abort the process), and
    /// its outstanding requests end with
    /// [`RequestError::Internal`](super::RequestError::Internal) as the
    /// state machine is dropped.
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        self.core.on_stop(Instant::now());
        self.link.flush(&mut self.core);
    }
}
