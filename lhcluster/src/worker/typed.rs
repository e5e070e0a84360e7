//! Typed handlers: decode the request, run the handler, encode the response.

use std::any::Any;
use std::fmt;
use std::marker::PhantomData;

use lhcluster_types::Request;

use super::{HandlerError, RawHandler, RequestContext};
use crate::payload;
use crate::protocol::Payload;

/// Runs requests of type `R` on a worker (see
/// [`WorkerBuilder::handle`](crate::worker::WorkerBuilder::handle)).
///
/// Closures `Fn(R, &RequestContext) -> Result<R::Response, E>` implement
/// it, for any error type `E: Display`: the client receives `FAILED` with
/// the error's text, or, if `E` is [`HandlerError`], the status it chose
/// (`FAILED` or `BAD_REQUEST`). Write the closure's argument types (`|req:
/// MyReq, ctx: &RequestContext|`); Rust infers closure signatures only from
/// `Fn` bounds, not from a trait like this one.
///
/// A type can implement it too, to carry state or to be named:
///
/// ```
/// use lhcluster::typed::Handler;
/// use lhcluster::worker::{HandlerError, RequestContext};
///
/// #[derive(serde::Serialize, serde::Deserialize, lhcluster::Request)]
/// #[request_type(name = "math.div", response = i64)]
/// struct Div {
///     a: i64,
///     b: i64,
/// }
///
/// struct Divider;
///
/// impl Handler<Div> for Divider {
///     fn handle(&self, req: Div, _ctx: &RequestContext) -> Result<i64, HandlerError> {
///         req.a
///             .checked_div(req.b)
///             .ok_or_else(|| HandlerError::bad_request("division by zero"))
///     }
/// }
/// ```
pub trait Handler<R: Request>: Send + Sync + 'static {
    /// Handles one request. Runs on the worker's pool; a panic becomes a
    /// `FAILED` response and the worker goes on.
    fn handle(&self, request: R, context: &RequestContext) -> Result<R::Response, HandlerError>;
}

impl<R, F, E> Handler<R> for F
where
    R: Request,
    F: Fn(R, &RequestContext) -> Result<R::Response, E> + Send + Sync + 'static,
    E: fmt::Display + 'static,
{
    fn handle(&self, request: R, context: &RequestContext) -> Result<R::Response, HandlerError> {
        self(request, context).map_err(handler_error)
    }
}

/// A [`HandlerError`] keeps its status; any other error is `FAILED` with
/// its text.
fn handler_error<E: fmt::Display + 'static>(error: E) -> HandlerError {
    match (&error as &dyn Any).downcast_ref::<HandlerError>() {
        Some(e) => e.clone(),
        None => HandlerError::failed(error),
    }
}

/// A typed handler as a raw one, for `WorkerBuilder::add`.
pub(crate) struct Typed<R, H> {
    handler: H,
    _request: PhantomData<fn(R)>,
}

impl<R, H> Typed<R, H> {
    pub(crate) fn new(handler: H) -> Self {
        Self {
            handler,
            _request: PhantomData,
        }
    }
}

impl<R, H> RawHandler for Typed<R, H>
where
    R: Request + 'static,
    H: Handler<R>,
{
    fn call(&self, payload: Payload, context: &RequestContext) -> Result<Payload, HandlerError> {
        let request: R = payload::decode(&payload).map_err(|e| {
            HandlerError::bad_request(format_args!(
                "the payload is not a valid `{}` request: {e}",
                R::NAME
            ))
        })?;
        let response = self.handler.handle(request, context)?;
        payload::encode(&response).map_err(|e| {
            HandlerError::failed(format_args!(
                "cannot encode the `{}` response: {e}",
                R::NAME
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;
    use crate::protocol::{Flags, Frame, Status};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Add {
        a: i32,
        b: i32,
    }

    impl Request for Add {
        const REQUEST_TYPE: u32 = 9;
        const NAME: &'static str = "add";
        type Response = i32;
    }

    fn context() -> RequestContext {
        RequestContext {
            request_type: 9,
            request_id: 1,
            flags: Flags::empty(),
            attempt: 1,
            deadline: None,
        }
    }

    fn raw<H: Handler<Add>>(handler: H) -> Typed<Add, H> {
        Typed::new(handler)
    }

    #[test]
    fn decodes_runs_and_encodes() {
        let h =
            raw(|req: Add, _: &RequestContext| Ok::<_, std::convert::Infallible>(req.a + req.b));
        let out = h
            .call(payload::encode(&Add { a: 2, b: 3 }).unwrap(), &context())
            .unwrap();
        assert_eq!(payload::decode::<i32>(&out).unwrap(), 5);
    }

    #[test]
    fn undecodable_payload_is_bad_request() {
        let h = raw(|req: Add, _: &RequestContext| Ok::<_, String>(req.a));
        let e = h
            .call(vec![Frame::from(&b"\x93\x01"[..])], &context())
            .unwrap_err();
        assert_eq!(e.status(), Status::BadRequest);
        assert!(
            e.message()
                .starts_with("the payload is not a valid `add` request: "),
            "{e}"
        );
    }

    #[test]
    fn errors_are_failed_with_their_text_and_handler_errors_keep_their_status() {
        let h = raw(|_: Add, _: &RequestContext| Err::<i32, _>("no luck"));
        let e = h
            .call(payload::encode(&Add { a: 1, b: 1 }).unwrap(), &context())
            .unwrap_err();
        assert_eq!((e.status(), e.message()), (Status::Failed, "no luck"));

        let h = raw(|_: Add, _: &RequestContext| {
            Err::<i32, _>(HandlerError::bad_request("b must be positive"))
        });
        let e = h
            .call(payload::encode(&Add { a: 1, b: 1 }).unwrap(), &context())
            .unwrap_err();
        assert_eq!(
            (e.status(), e.message()),
            (Status::BadRequest, "b must be positive")
        );
    }
}
