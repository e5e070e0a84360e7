//! Typed requests on the client: encode, send through a [`RequestBuilder`],
//! and decode the outcome.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use lhcluster_types::{PayloadError, Request};
use serde::de::DeserializeOwned;

use super::{Outcome, RequestBuilder, RequestError, ResponseHandle, Target};
use crate::payload;
use crate::protocol::{Flags, ReceiptKind, RequestId, RequestType, Status};

/// Why a typed request did not produce its response. Every request ends in
/// exactly one outcome: the decoded response or one of these.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TypedRequestError {
    /// The request ended without a response, as a raw request would (see
    /// [`RequestError`]): the worker answered `FAILED` (the handler
    /// returned an error or panicked) or `BAD_REQUEST` (the payload did not
    /// decode as the worker's request type, or the handler said so), the
    /// broker answered (`REJECTED`, `OVERLOADED`, `NO_WORKERS`,
    /// `WORKER_DEATH`, `REDIRECTED`, `UNKNOWN_REPLY_TO`), no outcome came
    /// in time, the broker went away, or the client stopped.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The request could not be encoded; nothing was sent.
    #[error("cannot encode the request: {0}")]
    Encode(#[source] PayloadError),
    /// The response arrived but did not decode as the expected type (the
    /// worker runs an incompatible version of the response type).
    #[error("cannot decode the response: {0}")]
    Decode(#[source] PayloadError),
    /// [`Flags::ONE_WAY`] was given to
    /// [`TypedRequestBuilder::flags`] for a two-way request, whose handle
    /// resolves to the response; nothing was sent. Send it one-way with
    /// [`one_way`](TypedRequestBuilder::one_way), which makes the handle
    /// resolve to `()` on delivery.
    #[error(
        "`Flags::ONE_WAY` on a two-way typed request: use `.one_way()`, whose handle resolves to `()` (nothing was sent)"
    )]
    OneWayFlag,
}

impl TypedRequestError {
    /// The protocol status the worker or broker answered with, if it did
    /// (`FAILED`, `BAD_REQUEST`, `REJECTED` …).
    pub fn status(&self) -> Option<Status> {
        match self {
            TypedRequestError::Request(e) => e.status(),
            TypedRequestError::Encode(_)
            | TypedRequestError::Decode(_)
            | TypedRequestError::OneWayFlag => None,
        }
    }
}

/// A typed request being built: [`Client::request_typed`](crate::Client::request_typed)
/// or [`LocalClient::request_typed`](crate::client::LocalClient::request_typed);
/// [`send`](Self::send) it.
///
/// It is a [`RequestBuilder`] whose type, id and payload come from the
/// request. `O` is what the handle resolves to: the request's response
/// type, or `()` once the response is not for this client
/// ([`one_way`](Self::one_way), [`reply_to`](Self::reply_to)).
#[must_use = "a request is only sent by `send`"]
pub struct TypedRequestBuilder<'a, R: Request, O = <R as Request>::Response> {
    raw: RequestBuilder<'a>,
    request: &'a R,
    /// The last `flags(..)` held `ONE_WAY`: refused at `send` unless the
    /// request is one-way (see `TypedRequestError::OneWayFlag`).
    one_way_flag: bool,
    _output: PhantomData<fn() -> O>,
}

impl<R: Request, O> fmt::Debug for TypedRequestBuilder<'_, R, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedRequestBuilder")
            .field("name", &R::NAME)
            .field("raw", &self.raw)
            .finish_non_exhaustive()
    }
}

impl<'a, R: Request> TypedRequestBuilder<'a, R> {
    pub(crate) fn new(target: Target<'a>, request: &'a R) -> Self {
        let mut raw = RequestBuilder::new(target, R::REQUEST_TYPE);
        raw.request_id = request.request_id();
        if R::ONE_WAY {
            raw.flags = Flags::ONE_WAY;
        }
        TypedRequestBuilder {
            raw,
            request,
            one_way_flag: false,
            _output: PhantomData,
        }
    }
}

impl<'a, R: Request, O: DeserializeOwned> TypedRequestBuilder<'a, R, O> {
    /// The request id, overriding the request's natural id
    /// ([`Request::request_id`]). Without either, the client assigns a
    /// fresh one ([`Client::next_id`](crate::Client::next_id)).
    pub fn id(self, request_id: RequestId) -> Self {
        self.map_raw(|raw| raw.id(request_id))
    }

    /// Delivery flags: receipts, death and redirect handling, fail-fast
    /// (see [`Flags`]). A typed request is one-way when its type is
    /// ([`Request::ONE_WAY`]) or after [`one_way`](Self::one_way), which
    /// also makes the handle resolve to `()`: `Flags::ONE_WAY` here cannot
    /// change what the handle resolves to, so on a two-way request
    /// [`send`](Self::send) refuses it
    /// ([`TypedRequestError::OneWayFlag`], nothing sent). On a one-way
    /// request it is what the request already is.
    pub fn flags(self, flags: Flags) -> Self {
        let mut builder = self.map_raw(|raw| {
            let one_way = raw.flags & Flags::ONE_WAY;
            raw.flags((flags - Flags::ONE_WAY) | one_way)
        });
        builder.one_way_flag = flags.contains(Flags::ONE_WAY);
        builder
    }

    /// Overrides the client's default timeout for this request.
    pub fn timeout(self, timeout: Duration) -> Self {
        self.map_raw(|raw| raw.timeout(timeout))
    }

    /// Sends a two-way request type one-way: the handler runs, its response
    /// goes nowhere, and the handle resolves to `()` when the request is
    /// delivered (at the receipt the flags ask for, or at once).
    pub fn one_way(self) -> TypedRequestBuilder<'a, R, ()> {
        self.retarget(|mut raw| {
            raw.flags |= Flags::ONE_WAY;
            raw
        })
    }

    /// Another client (by name) receives the response, as a raw
    /// [`ClientEvent::Response`](crate::client::ClientEvent::Response)
    /// (decode it with [`typed::decode`](crate::typed::decode)); this
    /// client's handle resolves to `()` on delivery, as for
    /// [`RequestBuilder::reply_to`].
    pub fn reply_to(self, name: impl Into<String>) -> TypedRequestBuilder<'a, R, ()> {
        self.retarget(|raw| raw.reply_to(name))
    }

    fn map_raw(self, f: impl FnOnce(RequestBuilder<'a>) -> RequestBuilder<'a>) -> Self {
        self.retarget(f)
    }

    fn retarget<P>(
        self,
        f: impl FnOnce(RequestBuilder<'a>) -> RequestBuilder<'a>,
    ) -> TypedRequestBuilder<'a, R, P> {
        TypedRequestBuilder {
            raw: f(self.raw),
            request: self.request,
            one_way_flag: self.one_way_flag,
            _output: PhantomData,
        }
    }

    /// Encodes and sends the request. The error is for a request that could
    /// not be encoded, `Flags::ONE_WAY` given to a two-way request
    /// ([`TypedRequestError::OneWayFlag`]) or a stopped client; every other
    /// failure arrives through the handle.
    pub fn send(self) -> Result<TypedResponse<R, O>, TypedRequestError> {
        if self.one_way_flag && !self.raw.flags.contains(Flags::ONE_WAY) {
            return Err(TypedRequestError::OneWayFlag);
        }
        let payload = payload::encode(self.request).map_err(TypedRequestError::Encode)?;
        let raw = self
            .raw
            .payload(payload)
            .submit()
            .ok_or(RequestError::Stopped)?;
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
#[must_use = "the request was sent all the same: dropping its handle only discards the outcome (the response, or for a one-way send the delivery)"]
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
    /// ([`RequestError::Timeout`] in [`TypedRequestError::Request`]; the
    /// request itself goes on).
    pub fn wait_timeout(self, timeout: Duration) -> Result<O, TypedRequestError> {
        typed(self.raw.wait_timeout(timeout))
    }

    /// Blocks until the outcome arrives (`Some`) or `timeout` passes
    /// (`None`: the handle can be waited on again), as
    /// [`ResponseHandle::wait_for`].
    pub fn wait_for(&mut self, timeout: Duration) -> Option<Result<O, TypedRequestError>> {
        self.raw.wait_for(timeout).map(typed)
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

    /// Takes the request back, as [`ResponseHandle::cancel`] does: `true`
    /// if this ended it (its outcome is then
    /// [`RequestError::Cancelled`](super::RequestError::Cancelled)), `false` if
    /// the outcome had arrived already. Dropping an awaited typed handle
    /// before its outcome cancels too.
    pub fn cancel(&self) -> bool {
        self.raw.cancel()
    }

    /// The raw handle, whose reply holds the undecoded payload frames.
    pub fn into_raw(self) -> ResponseHandle {
        self.raw
    }
}

fn typed<O: DeserializeOwned>(outcome: Outcome) -> Result<O, TypedRequestError> {
    let reply = outcome?;
    payload::decode(&reply.payload).map_err(TypedRequestError::Decode)
}

impl<R: Request, O: DeserializeOwned> Future for TypedResponse<R, O> {
    type Output = Result<O, TypedRequestError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.get_mut().raw).poll(cx).map(typed)
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::super::{ClientConfig, LocalClient};
    use super::*;

    #[derive(Serialize, Deserialize)]
    struct Order {
        no: u64,
    }

    impl Request for Order {
        const REQUEST_TYPE: RequestType = 7;
        const NAME: &'static str = "order";
        type Response = u32;
        fn request_id(&self) -> Option<RequestId> {
            Some(self.no)
        }
    }

    #[derive(Serialize, Deserialize)]
    struct Signal;

    impl Request for Signal {
        const REQUEST_TYPE: RequestType = 8;
        const NAME: &'static str = "signal";
        const ONE_WAY: bool = true;
        type Response = ();
    }

    #[test]
    fn the_typed_builder_fills_in_the_raw_one() {
        let mut client = LocalClient::connect(ClientConfig::new("inproc://typed-builder")).unwrap();
        let flags = Flags::RECEIPT_ON_SEND | Flags::ONE_WAY;

        let order = Order { no: 3 };
        let b = TypedRequestBuilder::new(Target::Local(&mut client), &order);
        assert_eq!((b.raw.request_type, b.raw.request_id), (7, Some(3)));
        // `ONE_WAY` is not taken from the flags of a two-way request …
        let b = b.id(4).flags(flags);
        assert_eq!(
            (b.raw.request_id, b.raw.flags),
            (Some(4), Flags::RECEIPT_ON_SEND)
        );
        // … but kept, whatever the flags, once asked for by `one_way`.
        let b = b.one_way().flags(Flags::RECEIPT_ON_SEND);
        assert_eq!(b.raw.flags, flags);

        // A one-way type is one-way from the start.
        let b = TypedRequestBuilder::new(Target::Local(&mut client), &Signal);
        assert_eq!(b.raw.request_id, None);
        assert_eq!(b.flags(Flags::RECEIPT_ON_SEND).raw.flags, flags);
    }

    #[test]
    fn one_way_in_the_flags_of_a_two_way_request_is_refused_not_ignored() {
        let mut client =
            LocalClient::connect(ClientConfig::new("inproc://typed-one-way-flag")).unwrap();
        let order = Order { no: 3 };
        let e = TypedRequestBuilder::new(Target::Local(&mut client), &order)
            .flags(Flags::ONE_WAY | Flags::RECEIPT_ON_SEND)
            .send()
            .unwrap_err();
        assert!(matches!(e, TypedRequestError::OneWayFlag), "{e:?}");
        assert_eq!(e.status(), None);
        assert!(e.to_string().contains("use `.one_way()`"), "{e}");
        // Nothing was sent, nor counted as outstanding.
        let stats = client.stats().unwrap();
        assert_eq!((stats.requests_sent, stats.outstanding), (0, 0));

        // Honoured where the request is one-way: `.one_way()` before or
        // after, or a one-way type.
        let b = TypedRequestBuilder::new(Target::Local(&mut client), &order)
            .flags(Flags::ONE_WAY)
            .one_way();
        assert!(b.send().is_ok());
        let b = TypedRequestBuilder::new(Target::Local(&mut client), &order)
            .one_way()
            .flags(Flags::ONE_WAY);
        assert!(b.send().is_ok());
        let b = TypedRequestBuilder::new(Target::Local(&mut client), &Signal).flags(Flags::ONE_WAY);
        assert!(b.send().is_ok());
        // The last `flags` call counts, as for every other flag.
        let b = TypedRequestBuilder::new(Target::Local(&mut client), &order)
            .flags(Flags::ONE_WAY)
            .flags(Flags::RECEIPT_ON_SEND);
        assert!(b.send().is_ok());
    }

    #[test]
    fn status_is_the_raw_errors_and_none_for_codec_errors() {
        let failed = TypedRequestError::from(RequestError::Status {
            status: Status::Failed,
            message: "boom".to_owned(),
        });
        assert_eq!(failed.status(), Some(Status::Failed));
        assert_eq!(failed.to_string(), "failed: boom");
        let timeout = TypedRequestError::from(RequestError::Timeout(Duration::from_secs(1)));
        assert_eq!(timeout.status(), None);
        let decode = typed::<u32>(Ok(super::super::Reply {
            request_type: 1,
            request_id: 1,
            payload: vec![crate::protocol::Frame::from(&b"\xa1x"[..])],
        }))
        .unwrap_err();
        assert!(matches!(decode, TypedRequestError::Decode(_)), "{decode:?}");
        assert_eq!(decode.status(), None);
        // The MessagePack error stays reachable as the source's source.
        let payload = std::error::Error::source(&decode).expect("a source");
        assert!(payload.is::<PayloadError>());
        assert!(payload.source().is_some());
    }
}
