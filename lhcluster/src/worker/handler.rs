//! The raw handler API: request frames in, status and response frames out.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use crate::protocol::{Flags, Payload, RequestId, RequestType, Status};

/// What a handler knows about the request it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestContext {
    /// The request type.
    pub request_type: RequestType,
    /// The request id.
    pub request_id: RequestId,
    /// The request's delivery flags.
    pub flags: Flags,
    /// 1 on the first dispatch, more after a retry on worker death.
    pub attempt: u32,
    /// When the requester stops waiting (its timeout, sent with the
    /// request and read against this worker's clock when the handler
    /// started; docs/deadlines.md); `None` if it set none. The broker never
    /// dispatches a request past its deadline, but a handler that runs past
    /// it works for nobody: check [`RequestContext::remaining`] before long
    /// work.
    pub deadline: Option<std::time::Instant>,
    /// Set when the requester cancels the request (protocol 1.5).
    pub(crate) cancel: Cancellation,
}

impl RequestContext {
    /// The time left until the deadline (zero once it has passed), or
    /// `None` without one.
    pub fn remaining(&self) -> Option<std::time::Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(std::time::Instant::now()))
    }

    /// Whether the deadline has passed (never, without one).
    pub fn is_expired(&self) -> bool {
        self.remaining().is_some_and(|left| left.is_zero())
    }

    /// Whether the requester has cancelled the request (its
    /// `ResponseHandle::cancel`, or its awaited handle dropped; protocol
    /// 1.5): nobody waits for the outcome any more. Cancel is cooperative:
    /// the worker never stops a handler, so a long handler should check
    /// this between steps and return early (with any error: the broker
    /// drops the result of a cancelled request). A blocking handler run
    /// `inline` on the driver thread never sees it turn true.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// A future that resolves when the requester cancels the request
    /// (never, if it does not), for an async handler to race its work
    /// against, say with `tokio::select!`. Owned, so it outlives the
    /// borrow of the context.
    pub fn cancelled(&self) -> WhenCancelled {
        WhenCancelled(self.cancel.clone())
    }
}

/// A request's cancellation flag, shared by its handler's
/// [`RequestContext`] and the worker's driver, which sets it when the
/// broker sends CANCEL for the dispatch.
#[derive(Clone, Debug, Default)]
pub(crate) struct Cancellation(Arc<CancelState>);

#[derive(Debug, Default)]
struct CancelState {
    cancelled: AtomicBool,
    /// The tasks waiting in [`WhenCancelled`].
    wakers: Mutex<Vec<Waker>>,
}

impl Cancellation {
    /// Cancels: the flag turns true and the waiting futures wake.
    pub(crate) fn cancel(&self) {
        self.0.cancelled.store(true, Ordering::Release);
        let wakers = std::mem::take(&mut *lock(&self.0.wakers));
        for waker in wakers {
            waker.wake();
        }
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.0.cancelled.load(Ordering::Acquire)
    }
}

/// Two contexts are equal with the same flag, not merely equal values.
impl PartialEq for Cancellation {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Cancellation {}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Resolves when the requester cancels the request: see
/// [`RequestContext::cancelled`].
#[derive(Debug)]
#[must_use = "a future does nothing unless awaited"]
pub struct WhenCancelled(Cancellation);

impl Future for WhenCancelled {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.is_cancelled() {
            return Poll::Ready(());
        }
        {
            let mut wakers = lock(&self.0.0.wakers);
            if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                wakers.push(cx.waker().clone());
            }
        }
        // Cancelled while the waker was being registered: `cancel` may
        // have taken the list before it was in.
        if self.0.is_cancelled() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// A request for a handler to run, with its cancellation flag.
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) dispatch: crate::protocol::Dispatch,
    pub(crate) cancel: Cancellation,
}

/// A handler's failure, sent back to the client as `FAILED` or `BAD_REQUEST`
/// with its message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandlerError {
    status: Status,
    message: String,
}

impl HandlerError {
    /// The handler could not do the work (`FAILED`).
    pub fn failed(message: impl fmt::Display) -> Self {
        Self {
            status: Status::Failed,
            message: message.to_string(),
        }
    }

    /// The request itself is invalid (`BAD_REQUEST`).
    pub fn bad_request(message: impl fmt::Display) -> Self {
        Self {
            status: Status::BadRequest,
            message: message.to_string(),
        }
    }

    /// `FAILED` or `BAD_REQUEST`.
    pub fn status(&self) -> Status {
        self.status
    }

    /// The error text the client receives.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status, self.message)
    }
}

impl std::error::Error for HandlerError {}

/// Runs requests of the types it is registered for, on the worker's pool.
///
/// Closures `Fn(Payload, &RequestContext) -> Result<Payload, HandlerError>`
/// implement it: the request first, its context second, as typed handlers
/// take `(req, ctx)`. A handler that panics produces a `FAILED` response;
/// the worker keeps serving.
pub trait RawHandler: Send + Sync + 'static {
    /// Handles one request.
    fn call(&self, payload: Payload, context: &RequestContext) -> Result<Payload, HandlerError>;
}

impl<F> RawHandler for F
where
    F: Fn(Payload, &RequestContext) -> Result<Payload, HandlerError> + Send + Sync + 'static,
{
    fn call(&self, payload: Payload, context: &RequestContext) -> Result<Payload, HandlerError> {
        self(payload, context)
    }
}
