//! The raw handler API: request frames in, status and response frames out.

use std::fmt;

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
