//! Typed requests on the client: encode, send, and decode the outcome.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::codec::{self, PayloadError};
use super::request::Request;
use crate::client::{Outcome, ReceiptKind, RequestBuilder, RequestError, ResponseHandle, Target};
use crate::protocol::{Flags, RequestId, RequestType, Status};

/// Why a typed request did not produce its response. Every request ends in
/// exactly one outcome: the decoded response or one of these.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TypedRequestError {
    /// The worker's handler failed (`FAILED`): it returned an error or
    /// panicked. The text is the handler's.
    #[error("the handler failed: {0}")]
    Failed(String),
    /// The worker refused the request as invalid (`BAD_REQUEST`): its
    /// payload did not decode as the worker's request type (the text says
    /// why), or the handler said so.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The broker answered instead of a worker: `REJECTED` (a request with
    /// this type and id is already pending), `OVERLOADED`, `NO_WORKERS`,
    /// `WORKER_DEATH`, `REDIRECTED` or `UNKNOWN_REPLY_TO`.
    #[error("{status}: {message}")]
    Broker {
        /// The status received.
        status: Status,
        /// The text that came with it.
        message: String,
    },
    /// The response arrived but did not decode as the expected type (the
    /// worker runs an incompatible version of the response type).
    #[error("cannot decode the response: {0}")]
    Decode(#[source] PayloadError),
    /// The request could not be encoded; nothing was sent.
    #[error("cannot encode the request: {0}")]
    Encode(#[source] PayloadError),
    /// No outcome within the request's timeout.
    #[error("no outcome within {0:?}")]
    Timeout(Duration),
    /// The broker went away before the outcome arrived.
    #[error("disconnected from the broker: {0}")]
    Disconnected(String),
    /// The client has stopped.
    #[error("the client has stopped")]
    Stopped,
    /// The broker reported a protocol error about this request.
    #[error("protocol error: {0}")]
    Protocol(String),
}

impl TypedRequestError {
    /// The protocol status, for `Failed`, `BadRequest` and `Broker`.
    pub fn status(&self) -> Option<Status> {
        match self {
            TypedRequestError::Failed(_) => Some(Status::Failed),
            TypedRequestError::BadRequest(_) => Some(Status::BadRequest),
            TypedRequestError::Broker { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl From<RequestError> for TypedRequestError {
    fn from(error: RequestError) -> Self {
        match error {
            RequestError::Status {
                status: Status::Failed,
                message,
            } => TypedRequestError::Failed(message),
            RequestError::Status {
                status: Status::BadRequest,
                message,
            } => TypedRequestError::BadRequest(message),
            RequestError::Status { status, message } => {
                TypedRequestError::Broker { status, message }
            }
            RequestError::Timeout(d) => TypedRequestError::Timeout(d),
            RequestError::Disconnected(why) => TypedRequestError::Disconnected(why),
            RequestError::Stopped => TypedRequestError::Stopped,
            RequestError::Protocol(why) => TypedRequestError::Protocol(why),
        }
    }
}

/// A typed request being built: [`Client::request_typed`](crate::Client::request_typed)
/// or [`LocalClient::request_typed`](crate::client::LocalClient::request_typed);
/// [`send`](Self::send) it.
///
/// `O` is what the handle resolves to: the request's response type, or `()`
/// once the response is not for this client ([`one_way`](Self::one_way),
/// [`reply_to`](Self::reply_to)).
#[must_use = "a request is only sent by `send`"]
pub struct TypedRequestBuilder<'a, R: Request, O = <R as Request>::Response> {
    target: Target<'a>,
    request: &'a R,
    request_id: Option<RequestId>,
    flags: Flags,
    one_way: bool,
    reply_to: Option<String>,
    timeout: Option<Duration>,
    _output: PhantomData<fn() -> O>,
}

impl<R: Request, O> fmt::Debug for TypedRequestBuilder<'_, R, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedRequestBuilder")
            .field("name", &R::NAME)
            .field("request_type", &R::REQUEST_TYPE)
            .field("request_id", &self.request_id)
            .field("flags", &self.flags)
            .field("one_way", &(R::ONE_WAY || self.one_way))
            .field("reply_to", &self.reply_to)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl<'a, R: Request> TypedRequestBuilder<'a, R> {
    pub(crate) fn new(target: Target<'a>, request: &'a R) -> Self {
        TypedRequestBuilder {
            target,
            request,
            request_id: None,
            flags: Flags::empty(),
            one_way: false,
            reply_to: None,
            timeout: None,
            _output: PhantomData,
        }
    }
}

impl<'a, R: Request, O: DeserializeOwned> TypedRequestBuilder<'a, R, O> {
    /// The request id, overriding the request's natural id
    /// ([`Request::request_id`]). Without either, the client assigns a
    /// fresh one ([`Client::next_id`](crate::Client::next_id)).
    pub fn id(mut self, request_id: RequestId) -> Self {
        self.request_id = Some(request_id);
        self
    }

    /// Delivery flags: receipts, death and redirect handling, fail-fast
    /// (see [`Flags`]). `Flags::ONE_WAY` is not taken from here: a typed
    /// request is one-way when its type is ([`Request::ONE_WAY`]) or after
    /// [`one_way`](Self::one_way), which also changes what the handle
    /// resolves to.
    pub fn flags(mut self, flags: Flags) -> Self {
        self.flags = flags - Flags::ONE_WAY;
        self
    }

    /// Overrides the client's default timeout for this request.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sends a two-way request type one-way: the handler runs, its response
    /// goes nowhere, and the handle resolves to `()` when the request is
    /// delivered (at the receipt the flags ask for, or at once).
    pub fn one_way(self) -> TypedRequestBuilder<'a, R, ()> {
        TypedRequestBuilder {
            one_way: true,
            ..self.retarget()
        }
    }

    /// Another client (by name) receives the response, as a raw
    /// [`ClientEvent::Response`](crate::client::ClientEvent::Response)
    /// (decode it with [`typed::decode`](crate::typed::decode)); this
    /// client's handle resolves to `()` on delivery, as for
    /// [`RequestBuilder::reply_to`](crate::client::RequestBuilder::reply_to).
    pub fn reply_to(self, name: impl Into<String>) -> TypedRequestBuilder<'a, R, ()> {
        TypedRequestBuilder {
            reply_to: Some(name.into()),
            ..self.retarget()
        }
    }

    fn retarget<P>(self) -> TypedRequestBuilder<'a, R, P> {
        TypedRequestBuilder {
            target: self.target,
            request: self.request,
            request_id: self.request_id,
            flags: self.flags,
            one_way: self.one_way,
            reply_to: self.reply_to,
            timeout: self.timeout,
            _output: PhantomData,
        }
    }

    /// Encodes and sends the request. The error is for a request that could
    /// not be encoded or a stopped client; every other failure arrives
    /// through the handle.
    pub fn send(self) -> Result<TypedResponse<R, O>, TypedRequestError> {
        let payload = codec::encode(self.request).map_err(TypedRequestError::Encode)?;
        let mut flags = self.flags;
        if R::ONE_WAY || self.one_way {
            flags |= Flags::ONE_WAY;
        }
        let mut builder = RequestBuilder::new(self.target, R::REQUEST_TYPE)
            .flags(flags)
            .payload(payload);
        if let Some(id) = self.request_id.or_else(|| self.request.request_id()) {
            builder = builder.id(id);
        }
        if let Some(timeout) = self.timeout {
            builder = builder.timeout(timeout);
        }
        if let Some(name) = self.reply_to {
            builder = builder.reply_to(name);
        }
        let raw = builder.send().map_err(|e| match e {
            crate::Error::Stopped => TypedRequestError::Stopped,
            other => TypedRequestError::Protocol(other.to_string()),
        })?;
        Ok(TypedResponse::new(raw))
    }
}

/// The eventual typed outcome of one request: `Result<O,
/// TypedRequestError>`, where `O` is the request's
/// [`Response`](Request::Response) (or `()` for a one-way send).
///
/// Like [`ResponseHandle`], which it wraps: block with
/// [`wait`](Self::wait) / [`wait_timeout`](Self::wait_timeout), or `.await`
/// it (it implements [`Future`], no runtime needed). Dropping it does not
/// cancel the request.
#[must_use = "a response handle does nothing unless waited on"]
pub struct TypedResponse<R: Request, O = <R as Request>::Response> {
    raw: ResponseHandle,
    _types: PhantomData<fn() -> (R, O)>,
}

impl<R: Request, O> fmt::Debug for TypedResponse<R, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedResponse")
            .field("name", &R::NAME)
            .field("raw", &self.raw)
            .finish()
    }
}

impl<R: Request, O: DeserializeOwned> TypedResponse<R, O> {
    fn new(raw: ResponseHandle) -> Self {
        Self {
            raw,
            _types: PhantomData,
        }
    }

    /// The request type (`R::REQUEST_TYPE`).
    pub fn request_type(&self) -> RequestType {
        self.raw.request_type()
    }

    /// The request id: the natural one, the one given, or the one the
    /// client assigned.
    pub fn request_id(&self) -> RequestId {
        self.raw.request_id()
    }

    /// Blocks until the outcome arrives. With a [`Client`](crate::Client)
    /// this always ends: the client fails requests on timeout, broker death
    /// and stop. For a [`LocalClient`](crate::client::LocalClient)'s
    /// request use
    /// [`LocalClient::wait_typed`](crate::client::LocalClient::wait_typed):
    /// its handles only resolve while it is polled.
    pub fn wait(self) -> Result<O, TypedRequestError> {
        typed(self.raw.wait())
    }

    /// Blocks until the outcome arrives or `timeout` passes
    /// ([`TypedRequestError::Timeout`]; the request itself goes on).
    pub fn wait_timeout(self, timeout: Duration) -> Result<O, TypedRequestError> {
        typed(self.raw.wait_timeout(timeout))
    }

    /// The outcome if it has arrived, without blocking.
    pub fn try_take(&mut self) -> Option<Result<O, TypedRequestError>> {
        self.raw.try_take().map(typed)
    }

    /// Whether the outcome has arrived.
    pub fn is_done(&self) -> bool {
        self.raw.is_done()
    }

    /// The receipts received so far, in arrival order.
    pub fn receipts(&self) -> Vec<ReceiptKind> {
        self.raw.receipts()
    }

    /// Blocks until the receipt `kind` arrives (`true`), or the outcome
    /// arrives without it or `timeout` passes (`false`).
    pub fn wait_receipt(&self, kind: ReceiptKind, timeout: Duration) -> bool {
        self.raw.wait_receipt(kind, timeout)
    }

    /// The raw handle, whose reply holds the undecoded payload frames.
    pub fn into_raw(self) -> ResponseHandle {
        self.raw
    }
}

fn typed<O: DeserializeOwned>(outcome: Outcome) -> Result<O, TypedRequestError> {
    let reply = outcome?;
    codec::decode(&reply.payload).map_err(TypedRequestError::Decode)
}

impl<R: Request, O: DeserializeOwned> Future for TypedResponse<R, O> {
    type Output = Result<O, TypedRequestError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.get_mut().raw).poll(cx).map(typed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_errors_map_to_typed_ones() {
        let status = |status, message: &str| RequestError::Status {
            status,
            message: message.to_owned(),
        };
        assert_eq!(
            TypedRequestError::from(status(Status::Failed, "boom")),
            TypedRequestError::Failed("boom".into())
        );
        assert_eq!(
            TypedRequestError::from(status(Status::BadRequest, "bad")),
            TypedRequestError::BadRequest("bad".into())
        );
        let rejected = TypedRequestError::from(status(Status::Rejected, "dup"));
        assert_eq!(rejected.status(), Some(Status::Rejected));
        assert!(matches!(rejected, TypedRequestError::Broker { .. }));
        assert_eq!(
            TypedRequestError::from(RequestError::Timeout(Duration::from_secs(1))),
            TypedRequestError::Timeout(Duration::from_secs(1))
        );
        assert_eq!(
            TypedRequestError::from(RequestError::Stopped),
            TypedRequestError::Stopped
        );
    }
}
