//! Response handles: the eventual outcome of one request, usable by
//! blocking code (`wait`, `wait_timeout`) and by async code (`.await`),
//! with no runtime required.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::protocol::{Payload, ReceiptKind, RequestId, RequestType, Status};

/// A successful outcome.
#[derive(Debug)]
#[non_exhaustive]
pub struct Reply {
    /// The request type.
    pub request_type: RequestType,
    /// The request id.
    pub request_id: RequestId,
    /// The handler's response frames (empty for a one-way request, whose
    /// outcome is its delivery).
    pub payload: Payload,
}

impl PartialEq for Reply {
    fn eq(&self, other: &Self) -> bool {
        self.request_type == other.request_type
            && self.request_id == other.request_id
            && self.payload.len() == other.payload.len()
            && self
                .payload
                .iter()
                .zip(&other.payload)
                .all(|(a, b)| a[..] == b[..])
    }
}

/// Why a request did not succeed. Every request ends in exactly one
/// outcome: a [`Reply`] or one of these.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The broker or the worker answered with a status other than `OK`:
    /// `FAILED` (handler error), `BAD_REQUEST`, `REJECTED` (duplicate),
    /// `WORKER_DEATH`, `REDIRECTED`, `OVERLOADED`, `NO_WORKERS`,
    /// `UNKNOWN_REPLY_TO`, `EXPIRED`, `FORBIDDEN` (this client's CURVE key
    /// may not send the request type: docs/security.md).
    #[error("{status}: {message}")]
    Status {
        /// The status received.
        status: Status,
        /// The error text that came with it.
        message: String,
    },
    /// No outcome within the request's timeout.
    #[error("no outcome within {0:?}")]
    Timeout(Duration),
    /// The broker went away (stopped, or missed its heartbeats) before the
    /// outcome arrived, or the client had no session when it was sent.
    #[error("disconnected from the broker: {0}")]
    Disconnected(#[source] DisconnectReason),
    /// The client stopped before the outcome arrived.
    #[error("the client has stopped")]
    Stopped,
    /// The broker reported a protocol error about this request.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The caller cancelled the request: [`ResponseHandle::cancel`], or an
    /// awaited handle dropped before its outcome (protocol 1.5). The broker
    /// was told to take it back: a queued request never runs, a running one
    /// is flagged to its handler (cooperative), and its outcome, if any
    /// comes, goes to [`ClientEvent`](super::ClientEvent)s.
    #[error("the request was cancelled")]
    Cancelled,
    /// The client failed before the outcome arrived: its driver thread
    /// panicked (a bug, logged at error level with the panic's message), or
    /// a [`LocalClient`](super::LocalClient) was dropped while a panic
    /// unwound its thread. Whether the request ran is unknown; the client
    /// has stopped.
    #[error("the client failed (a panic) before the outcome arrived")]
    Internal,
    /// The request is larger than the broker (or proxy) accepts, as its
    /// WELCOME said (`max_message_size`): it was not sent, since the broker
    /// would drop it or cut the connection it came on (docs/security.md,
    /// "Limits on input").
    #[error("the request is {size} bytes, over the broker's max_message_size of {limit}: not sent")]
    TooLarge {
        /// The request's size as checked: its payload, its `reply_to` and
        /// room for its header.
        size: usize,
        /// The largest message the broker accepts.
        limit: usize,
    },
}

impl RequestError {
    /// The protocol status, for [`RequestError::Status`].
    pub fn status(&self) -> Option<Status> {
        match self {
            RequestError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the broker refused the request because this client's CURVE
    /// key may not send its type ([`Status::Forbidden`]; docs/security.md).
    /// Sending it again will not help until the broker's key list changes.
    pub fn is_forbidden(&self) -> bool {
        self.status() == Some(Status::Forbidden)
    }
}

/// Why a request ended with [`RequestError::Disconnected`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The client had no session when the request was sent (it is
    /// reconnecting); nothing was sent.
    #[error("not connected to the broker (reconnecting)")]
    NotConnected,
    /// The broker no longer knew this client's session (most likely it
    /// restarted), so it will not answer what it had been sent.
    #[error("the broker lost this client's session (restarted?)")]
    SessionLost,
    /// The broker said it is shutting down.
    #[error("the broker shut down")]
    BrokerShutDown,
    /// The broker missed its heartbeats: it is gone, or unreachable.
    #[error("the broker missed its heartbeats")]
    HeartbeatsMissed,
    /// The request could not be handed to the socket.
    #[error("cannot send: {0}")]
    Send(#[source] zmq::Error),
}

/// The outcome of a request.
pub type Outcome = Result<Reply, RequestError>;

#[derive(Debug, Default)]
struct SlotState {
    outcome: Option<Outcome>,
    done: bool,
    receipts: Vec<ReceiptKind>,
    waker: Option<Waker>,
    /// Threads blocked on the condition variable. Notifying costs a
    /// syscall even when nobody waits, so it is skipped then.
    waiters: usize,
}

/// The state shared by a handle and the client driver.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    state: Mutex<SlotState>,
    cond: Condvar,
    /// Sent while nobody read the socket: unless a wait leads, the first
    /// other use of the handle kicks the reader (see `driver.rs`).
    kick: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the outcome; later calls are ignored (exactly one outcome).
    fn complete(&self, outcome: Outcome) -> bool {
        let (waker, waiters) = {
            let mut s = self.lock();
            if s.done {
                return false;
            }
            s.done = true;
            s.outcome = Some(outcome);
            (s.waker.take(), s.waiters)
        };
        if waiters > 0 {
            self.cond.notify_all();
        }
        if let Some(w) = waker {
            w.wake();
        }
        true
    }

    fn add_receipt(&self, kind: ReceiptKind) {
        let mut s = self.lock();
        if !s.receipts.contains(&kind) {
            s.receipts.push(kind);
        }
        let waiters = s.waiters;
        drop(s);
        if waiters > 0 {
            self.cond.notify_all();
        }
    }

    /// Blocks on the condition variable while `pending` holds, at most
    /// `timeout` (`None`: as long as it takes), counted as a waiter
    /// meanwhile. The standard library's `wait_timeout_while` measures the
    /// time spent instead of adding it to the clock, so a far timeout
    /// (`Duration::MAX`) is simply a long one.
    fn wait_while<'a>(
        &self,
        mut s: MutexGuard<'a, SlotState>,
        timeout: Option<Duration>,
        mut pending: impl FnMut(&SlotState) -> bool,
    ) -> MutexGuard<'a, SlotState> {
        s.waiters += 1;
        let mut s = match timeout {
            None => self
                .cond
                .wait_while(s, |s| pending(s))
                .unwrap_or_else(|p| p.into_inner()),
            Some(t) => {
                self.cond
                    .wait_timeout_while(s, t, |s| pending(s))
                    .unwrap_or_else(|p| p.into_inner())
                    .0
            }
        };
        s.waiters -= 1;
        s
    }

    pub(crate) fn is_done(&self) -> bool {
        self.lock().done
    }
}

/// The driver's side of one request's outcome, held by whoever owes the
/// outcome (the client's state machine, or the command on its way there).
///
/// Dropped without an outcome, it completes the handle: with
/// [`RequestError::Internal`] while unwinding (the driver panicked with the
/// request outstanding), else with [`RequestError::Stopped`] (a request
/// still in the command channel when the driver ended). Either way no
/// handle waits forever.
#[derive(Debug)]
pub(crate) struct Slot(Arc<Shared>);

impl Slot {
    /// A slot and the state its handle shares.
    pub(crate) fn new() -> (Slot, Arc<Shared>) {
        let shared = Arc::new(Shared::default());
        (Slot(shared.clone()), shared)
    }

    /// Sets the outcome; later calls are ignored (exactly one outcome).
    pub(crate) fn complete(&self, outcome: Outcome) -> bool {
        self.0.complete(outcome)
    }

    /// Whether this slot is the one `shared` belongs to (a new request
    /// under the same key has another).
    pub(crate) fn is(&self, shared: &Arc<Shared>) -> bool {
        Arc::ptr_eq(&self.0, shared)
    }

    pub(crate) fn add_receipt(&self, kind: ReceiptKind) {
        self.0.add_receipt(kind);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // `complete` ignores a second outcome: a completed slot is left as is.
        let error = if std::thread::panicking() {
            RequestError::Internal
        } else {
            RequestError::Stopped
        };
        self.0.complete(Err(error));
    }
}

/// How a handle asks its client to take its request back: a
/// [`Client`](super::Client)'s sends a command to its driver, a
/// [`LocalClient`](super::LocalClient)'s leaves a note for its next poll.
/// Given the request's key and its handle's state, so that the client
/// cancels that request and not a newer one under the same key.
#[derive(Clone)]
pub(crate) struct Canceller(Arc<dyn Fn(RequestType, RequestId, Arc<Shared>) + Send + Sync>);

impl Canceller {
    pub(crate) fn new(
        f: impl Fn(RequestType, RequestId, Arc<Shared>) + Send + Sync + 'static,
    ) -> Self {
        Self(Arc::new(f))
    }
}

impl std::fmt::Debug for Canceller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Canceller")
    }
}

/// A client whose socket a blocked handle reads while it waits (a
/// [`Client`](super::Client)'s engine, see `driver.rs`).
pub(crate) trait SocketReader: Send + Sync {
    /// Reads the socket until the request whose state is `shared` is done
    /// or `until` passes; `false` if it could not (the handle then waits
    /// as usual for what is left).
    fn lead(&self, shared: &Arc<Shared>, until: Option<Instant>) -> bool;

    /// Makes sure someone reads the socket (for a request sent while
    /// nobody did, whose handle is not waited on by blocking).
    fn kick(&self);
}

/// How a handle reaches its client's [`SocketReader`].
#[derive(Clone)]
pub(crate) struct Reader(Arc<dyn SocketReader>);

impl Reader {
    pub(crate) fn new(reader: Arc<dyn SocketReader>) -> Self {
        Self(reader)
    }
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reader")
    }
}

/// The eventual outcome of one request.
///
/// Block with [`wait`](Self::wait) / [`wait_timeout`](Self::wait_timeout),
/// or `.await` it (it implements [`Future`]). [`cancel`](Self::cancel)
/// takes the request back.
///
/// Dropping a handle that has been polled as a future (awaited) before its
/// outcome arrived cancels the request, as async code expects of a future
/// dropped unfinished (a `select!` that took another branch, a `timeout`
/// that fired): nobody can see the outcome any more. Dropping a handle
/// that was never polled (a blocking caller that lets a request go, a
/// `wait_timeout` that gave up) does not: the request goes on.
#[derive(Debug)]
#[must_use = "the request was sent all the same: dropping its handle only discards the outcome (the response, or for a one-way send the delivery)"]
pub struct ResponseHandle {
    shared: Arc<Shared>,
    request_type: RequestType,
    request_id: RequestId,
    /// `None` for a handle whose client cannot cancel (tests).
    canceller: Option<Canceller>,
    /// Reads the client's socket while `wait` blocks (a `Client`'s).
    reader: Option<Reader>,
    /// Polled as a future: dropped before its outcome, it cancels.
    polled: bool,
    /// What dropping it unresolved does, when set: cancel or not,
    /// whether polled or not.
    cancel_on_drop: Option<bool>,
}

impl ResponseHandle {
    pub(crate) fn new(
        shared: Arc<Shared>,
        request_type: RequestType,
        request_id: RequestId,
    ) -> Self {
        Self {
            shared,
            request_type,
            request_id,
            canceller: None,
            reader: None,
            polled: false,
            cancel_on_drop: None,
        }
    }

    /// The same handle, which `canceller` cancels.
    pub(crate) fn with_canceller(mut self, canceller: Canceller) -> Self {
        self.canceller = Some(canceller);
        self
    }

    /// The same handle, which reads its client's socket while it blocks;
    /// `unwatched`: its request was sent while nobody read the socket.
    pub(crate) fn with_reader(mut self, reader: Reader, unwatched: bool) -> Self {
        self.reader = Some(reader);
        self.shared.kick.store(unwatched, Ordering::Relaxed);
        self
    }

    /// Reads the client's socket while this blocks, until the outcome or
    /// `until`; kicks the reader if it cannot.
    fn lead(&self, until: Option<Instant>) {
        if let Some(reader) = &self.reader {
            lead(reader, &self.shared, until);
        }
    }

    /// The first use of a handle sent while nobody read the socket, other
    /// than a blocking wait (which reads it): someone must read it.
    fn kick_reader(&self) {
        if let Some(reader) = &self.reader {
            kick(reader, &self.shared);
        }
    }

    /// A [`Waiter`]: blocks any thread until this handle's outcome arrives,
    /// without the handle (which takes the outcome).
    pub fn waiter(&self) -> Waiter {
        Waiter {
            shared: self.shared.clone(),
            reader: self.reader.clone(),
        }
    }

    /// Takes the request back (protocol 1.5). Returns `true` if this ended
    /// it: the handle's outcome is then [`RequestError::Cancelled`], and the
    /// client tells the broker, which takes a queued request out of its
    /// queue (it never runs) and tells the worker running one
    /// ([`RequestContext::is_cancelled`](crate::worker::RequestContext::is_cancelled);
    /// cooperative: a handler that does not look runs to its end, and its
    /// result is dropped). Returns `false` if the outcome had arrived
    /// already (take it as usual): nothing is cancelled.
    ///
    /// Through a [`ClientProxy`](crate::ClientProxy), and in a cluster
    /// whatever broker holds the request, the same happens. A broker older
    /// than 1.5 is not told (the request runs for nobody, as before), but
    /// the handle ends all the same. An outcome that arrives after the
    /// cancel goes to [`ClientEvent`](super::ClientEvent)s, as a late one
    /// does after a timeout.
    pub fn cancel(&self) -> bool {
        if !self.shared.complete(Err(RequestError::Cancelled)) {
            return false;
        }
        if let Some(canceller) = &self.canceller {
            (canceller.0)(self.request_type, self.request_id, self.shared.clone());
        }
        true
    }

    /// Sets what dropping this handle before its outcome does: `true`,
    /// cancel the request (as [`cancel`](Self::cancel)), `false`, nothing
    /// (the request goes on). By default, dropping cancels only a handle
    /// that has been polled as a future. For code that polls a handle as a
    /// future but means "drop = let go", such as language bindings.
    pub fn set_cancel_on_drop(&mut self, cancel: bool) {
        self.cancel_on_drop = Some(cancel);
    }

    /// The request type.
    pub fn request_type(&self) -> RequestType {
        self.request_type
    }

    /// The request id (assigned by the client for anonymous requests).
    pub fn request_id(&self) -> RequestId {
        self.request_id
    }

    /// Blocks until the outcome arrives. With a [`Client`](super::Client)
    /// this always ends: the client fails requests on timeout, broker death
    /// and stop, and should its driver thread panic,
    /// with [`RequestError::Internal`]. A [`LocalClient`](super::LocalClient)'s handle only
    /// resolves while that client is polled: wait for it with
    /// [`LocalClient::wait`](super::LocalClient::wait) instead (this, or
    /// `.await`, on the thread that owns the client would block forever).
    ///
    /// With a `Client`, the blocked thread reads the client's socket
    /// meanwhile (one such thread at a time), completing other handles too
    /// and running their wakers: its own response then wakes it directly.
    pub fn wait(self) -> Outcome {
        self.lead(None);
        let s = self.shared.lock();
        let mut s = self.shared.wait_while(s, None, |s| !s.done);
        take(&mut s)
    }

    /// Blocks until the outcome arrives or `timeout` passes
    /// ([`RequestError::Timeout`]; the request itself goes on).
    pub fn wait_timeout(mut self, timeout: Duration) -> Outcome {
        self.wait_for(timeout)
            .unwrap_or(Err(RequestError::Timeout(timeout)))
    }

    /// Blocks until the outcome arrives (`Some`) or `timeout` passes
    /// (`None`: the request goes on, and the handle can be waited on
    /// again), as for a caller that waits in slices (to look at something
    /// else in between). Like [`wait`](Self::wait), it reads the client's
    /// socket while it blocks. Once the outcome has been taken, further
    /// calls return a `Protocol` error at once, as
    /// [`try_take`](Self::try_take) does.
    pub fn wait_for(&mut self, timeout: Duration) -> Option<Outcome> {
        let start = Instant::now();
        self.lead(start.checked_add(timeout));
        let left = timeout.saturating_sub(start.elapsed());
        let s = self.shared.lock();
        let mut s = self.shared.wait_while(s, Some(left), |s| !s.done);
        s.done.then(|| take(&mut s))
    }

    /// The outcome if it has arrived, without blocking.
    pub fn try_take(&mut self) -> Option<Outcome> {
        self.kick_reader();
        let mut s = self.shared.lock();
        s.done.then(|| take(&mut s))
    }

    /// Whether the outcome has arrived.
    pub fn is_done(&self) -> bool {
        self.kick_reader();
        self.shared.is_done()
    }

    /// The receipts received so far, in arrival order.
    pub fn receipts(&self) -> Vec<ReceiptKind> {
        self.kick_reader();
        self.shared.lock().receipts.clone()
    }

    /// Blocks until the receipt `kind` arrives (`true`), or the outcome
    /// arrives without it or `timeout` passes (`false`).
    pub fn wait_receipt(&self, kind: ReceiptKind, timeout: Duration) -> bool {
        self.kick_reader();
        let s = self.shared.lock();
        let s = self
            .shared
            .wait_while(s, Some(timeout), |s| !s.receipts.contains(&kind) && !s.done);
        s.receipts.contains(&kind)
    }
}

/// Blocks until a handle's outcome has arrived, from any thread, without
/// the handle ([`ResponseHandle::waiter`]): for code that keeps the handle
/// where it cannot block on it (behind a lock other threads use, say).
/// Like [`ResponseHandle::wait`], a thread blocked here reads a `Client`'s
/// socket meanwhile. The outcome stays for the handle to take. As with
/// `wait`, a [`LocalClient`](super::LocalClient)'s requests resolve only
/// while that client is polled.
#[derive(Clone, Debug)]
pub struct Waiter {
    shared: Arc<Shared>,
    reader: Option<Reader>,
}

impl Waiter {
    /// Blocks until the outcome has arrived (`true`) or `timeout` passes
    /// (`false`).
    pub fn wait(&self, timeout: Duration) -> bool {
        let start = Instant::now();
        if let Some(reader) = &self.reader {
            lead(reader, &self.shared, start.checked_add(timeout));
        }
        let left = timeout.saturating_sub(start.elapsed());
        let s = self.shared.lock();
        self.shared.wait_while(s, Some(left), |s| !s.done).done
    }
}

/// Reads the client's socket while a thread blocks on `shared`, until the
/// outcome or `until`; kicks the reader if it cannot (and the request was
/// sent while nobody read the socket).
fn lead(reader: &Reader, shared: &Arc<Shared>, until: Option<Instant>) {
    // Done already (a handle waited on after others, say): nothing to read
    // for it, and leading would wake the driver twice.
    if !shared.is_done() && !reader.0.lead(shared, until) {
        kick(reader, shared);
    }
    shared.kick.store(false, Ordering::Relaxed);
}

/// Kicks the reader once if the request was sent while nobody read the
/// socket and is not done yet.
fn kick(reader: &Reader, shared: &Shared) {
    if shared.kick.swap(false, Ordering::Relaxed) && !shared.is_done() {
        reader.0.kick();
    }
}

fn take(s: &mut SlotState) -> Outcome {
    s.outcome
        .take()
        .unwrap_or_else(|| Err(RequestError::Protocol("outcome already taken".to_owned())))
}

impl Future for ResponseHandle {
    type Output = Outcome;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        self.kick_reader();
        self.polled = true;
        let mut s = self.shared.lock();
        if s.done {
            return Poll::Ready(take(&mut s));
        }
        s.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for ResponseHandle {
    /// An awaited handle dropped before its outcome cancels its request
    /// (see [`ResponseHandle`]).
    fn drop(&mut self) {
        if self.cancel_on_drop.unwrap_or(self.polled) && !self.shared.is_done() {
            self.cancel();
        }
        self.kick_reader();
    }
}
