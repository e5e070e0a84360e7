//! Typed handlers: decode the request, run the handler, encode the response.

use std::any::Any;
use std::fmt;
use std::marker::PhantomData;

use lhcluster_types::Request;

use super::{HandlerError, RawHandler, RequestContext};
use crate::payload;
use crate::protocol::Payload;

/// Runs requests of type `R` on a worker: a type that carries state or
/// wants a name, registered with
/// [`WorkerBuilder::handle_with`](crate::worker::WorkerBuilder::handle_with).
///
/// Closures and functions need no impl of their own: give them to
/// [`WorkerBuilder::handle`](crate::worker::WorkerBuilder::handle), which
/// infers their argument types (see [`HandlerFn`]); they implement this
/// trait too.
///
/// ```
/// use lhcluster::typed::Handler;
/// use lhcluster::worker::{HandlerError, RequestContext, Worker, WorkerConfig};
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
///
/// let builder = Worker::builder(WorkerConfig::new("tcp://127.0.0.1:5556"))
///     .handle_with::<Div>(Divider);
/// ```
pub trait Handler<R: Request>: Send + Sync + 'static {
    /// Handles one request. Runs on the worker's pool; a panic becomes a
    /// `FAILED` response and the worker goes on.
    fn handle(&self, request: R, context: &RequestContext) -> Result<R::Response, HandlerError>;
}

/// A closure or function serving requests of type `R`:
/// `Fn(R, &RequestContext) -> Out`, where `Out` is either
///
/// - `R::Response` itself, for a handler that cannot fail, or
/// - `Result<R::Response, E>` for any `E: Display`: the client receives
///   `FAILED` with the error's text, or, if `E` is [`HandlerError`], the
///   status it chose (`FAILED` or `BAD_REQUEST`).
///
/// Implemented for every such closure and function: nothing to implement.
/// It exists so that
/// [`WorkerBuilder::handle`](crate::worker::WorkerBuilder::handle) can take
/// a closure *and* tell Rust its signature: this trait's supertrait is that
/// `Fn` bound, which is where Rust looks to infer a closure's argument
/// types (and the higher-ranked lifetime of `&RequestContext`), so
/// `.handle::<R>(|req, ctx| ..)` needs no annotation.
///
/// ```
/// use lhcluster::worker::{HandlerError, RequestContext, Worker, WorkerConfig};
///
/// #[derive(serde::Serialize, serde::Deserialize, lhcluster::Request)]
/// #[request_type(name = "math.add", response = i64)]
/// struct Add {
///     a: i64,
///     b: i64,
/// }
///
/// #[derive(serde::Serialize, serde::Deserialize, lhcluster::Request)]
/// #[request_type(name = "math.div", response = i64)]
/// struct Div {
///     a: i64,
///     b: i64,
/// }
///
/// #[derive(serde::Serialize, serde::Deserialize, lhcluster::Request)]
/// #[request_type(name = "math.parse", response = i64)]
/// struct Parse {
///     text: String,
/// }
///
/// fn parse(req: Parse, _ctx: &RequestContext) -> Result<i64, std::num::ParseIntError> {
///     req.text.trim().parse()
/// }
///
/// let builder = Worker::builder(WorkerConfig::new("tcp://127.0.0.1:5556"))
///     // Cannot fail: the response itself.
///     .handle::<Add>(|req, _ctx| req.a + req.b)
///     // Can fail: a `Result`, its error type taken from the `Err`.
///     .handle::<Div>(|req, _ctx| match req.a.checked_div(req.b) {
///         Some(q) => Ok(q),
///         None => Err(HandlerError::bad_request("division by zero")),
///     })
///     // A function.
///     .handle::<Parse>(parse);
/// ```
///
/// # Which return is a failure
///
/// A value of type `R::Response` is always the response; only a
/// `Result<R::Response, E>` can fail. The two never overlap, even when the
/// response type is itself a `Result` (`response = Result<u32, String>`):
/// there, a closure returning a `Result<u32, String>` answers with it, and
/// one returning `Result<Result<u32, String>, E>` may fail with `E`. A
/// bare `Err(..)` or `Ok(..)` that could be either is a compile error
/// ("type annotations needed"), never a silent guess.
///
/// A closure whose only return is `Ok(..)` does not say which error type it
/// has, and Rust does not guess one either: return the response itself
/// (it cannot fail), or name the error (`Ok::<_, HandlerError>(..)`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a handler closure or function for `{R}`",
    label = "expected `Fn({R}, &RequestContext) -> Response` or `-> Result<Response, E>` with `E: Display`",
    note = "a type implementing `Handler<{R}>` is registered with `WorkerBuilder::handle_with`"
)]
pub trait HandlerFn<R: Request>:
    Fn(R, &RequestContext) -> <Self as HandlerFn<R>>::Output + Send + Sync + 'static
{
    /// What the closure returns: `R::Response` or `Result<R::Response, E>`.
    type Output: IntoHandlerResult<R::Response>;
}

impl<R, F, O> HandlerFn<R> for F
where
    R: Request,
    F: Fn(R, &RequestContext) -> O + Send + Sync + 'static,
    O: IntoHandlerResult<R::Response>,
{
    type Output = O;
}

impl<R: Request, F: HandlerFn<R>> Handler<R> for F {
    fn handle(&self, request: R, context: &RequestContext) -> Result<R::Response, HandlerError> {
        self(request, context).into_handler_result()
    }
}

/// What a handler closure may return for a response of type `T`: `T`
/// itself (it cannot fail), or `Result<T, E>` with `E: Display` (see
/// [`HandlerFn`]). Sealed: these two are the whole list.
pub trait IntoHandlerResult<T>: sealed::Sealed<T> {
    /// The response, or the failure the client receives.
    fn into_handler_result(self) -> Result<T, HandlerError>;
}

impl<T, E: fmt::Display + 'static> IntoHandlerResult<T> for Result<T, E> {
    fn into_handler_result(self) -> Result<T, HandlerError> {
        self.map_err(handler_error)
    }
}

// Does not overlap the impl above: that one would need `T = Result<T, E>`,
// an infinite type.
impl<T> IntoHandlerResult<T> for T {
    fn into_handler_result(self) -> Result<T, HandlerError> {
        Ok(self)
    }
}

// The usual sealing: a public trait in a private module, nameable by no
// other crate, so none can add a third kind of handler output.
#[allow(unreachable_pub)]
mod sealed {
    pub trait Sealed<T> {}
    impl<T, E> Sealed<T> for Result<T, E> {}
    impl<T> Sealed<T> for T {}
}

/// A [`HandlerError`] keeps its status; any other error is `FAILED` with
/// its text.
pub(crate) fn handler_error<E: fmt::Display + 'static>(error: E) -> HandlerError {
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
        let request: R = decode_request(&payload)?;
        let response = self.handler.handle(request, context)?;
        encode_response::<R>(&response)
    }
}

/// The request, or `BAD_REQUEST` saying why it does not decode.
pub(crate) fn decode_request<R: Request>(payload: &Payload) -> Result<R, HandlerError> {
    payload::decode(payload).map_err(|e| {
        HandlerError::bad_request(format_args!(
            "the payload is not a valid `{}` request: {e}",
            R::NAME
        ))
    })
}

/// The response's payload, or `FAILED` saying why it does not encode.
pub(crate) fn encode_response<R: Request>(response: &R::Response) -> Result<Payload, HandlerError> {
    payload::encode(response).map_err(|e| {
        HandlerError::failed(format_args!(
            "cannot encode the `{}` response: {e}",
            R::NAME
        ))
    })
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
            cancel: Default::default(),
        }
    }

    fn raw<H: Handler<Add>>(handler: H) -> Typed<Add, H> {
        Typed::new(handler)
    }

    /// As `WorkerBuilder::handle` takes them: no annotations.
    fn inferred<R: Request + 'static>(handler: impl HandlerFn<R>) -> Typed<R, impl Handler<R>> {
        Typed::new(handler)
    }

    fn call(h: &impl RawHandler, a: i32, b: i32) -> Result<i32, HandlerError> {
        let out = h.call(payload::encode(&Add { a, b }).unwrap(), &context())?;
        Ok(payload::decode::<i32>(&out).unwrap())
    }

    #[test]
    fn unannotated_closures_and_functions_are_handlers() {
        // The response itself: cannot fail.
        assert_eq!(call(&inferred::<Add>(|req, _| req.a + req.b), 2, 3), Ok(5));
        // The context is usable without naming its type.
        assert_eq!(
            call(
                &inferred::<Add>(|req, ctx| req.a + ctx.attempt as i32),
                2,
                0
            ),
            Ok(3)
        );
        // A `Result` whose error type comes from its `Err`.
        let div = inferred::<Add>(|req, _| {
            if req.b == 0 {
                Err("division by zero")
            } else {
                Ok(req.a / req.b)
            }
        });
        assert_eq!(call(&div, 6, 3), Ok(2));
        let e = call(&div, 1, 0).unwrap_err();
        assert_eq!(
            (e.status(), e.message()),
            (Status::Failed, "division by zero")
        );
        // Functions, fallible or not.
        fn sum(req: Add, _: &RequestContext) -> i32 {
            req.a + req.b
        }
        fn checked(req: Add, _: &RequestContext) -> Result<i32, HandlerError> {
            req.a
                .checked_sub(req.b)
                .ok_or_else(|| HandlerError::bad_request("overflow"))
        }
        assert_eq!(call(&inferred::<Add>(sum), 1, 1), Ok(2));
        let e = call(&inferred::<Add>(checked), i32::MIN, 1).unwrap_err();
        assert_eq!((e.status(), e.message()), (Status::BadRequest, "overflow"));
    }

    /// A response type that is itself a `Result`: a value of the response
    /// type is the response, never a failure.
    #[test]
    fn a_result_response_is_a_response() {
        #[derive(Serialize, Deserialize)]
        struct Check;
        impl Request for Check {
            const REQUEST_TYPE: u32 = 10;
            const NAME: &'static str = "check";
            type Response = Result<u32, String>;
        }
        let call = |h: &dyn RawHandler| {
            let out = h.call(payload::encode(&Check).unwrap(), &context())?;
            Ok::<_, HandlerError>(payload::decode::<Result<u32, String>>(&out).unwrap())
        };
        let ok = inferred::<Check>(|_, _| Ok(5));
        assert_eq!(call(&ok), Ok(Ok(5)));
        let answer: Result<u32, String> = Err("no".into());
        let err = inferred::<Check>(move |_, _| answer.clone());
        assert_eq!(call(&err), Ok(Err("no".into())));
        let failed = inferred::<Check>(|_, _| Err::<Result<u32, String>, _>("handler failed"));
        assert_eq!(call(&failed).unwrap_err().message(), "handler failed");
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
