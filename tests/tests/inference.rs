//! Compile-pass tests of the handler forms `WorkerBuilder::handle` takes
//! without annotations (closures and functions, infallible or not), of
//! struct handlers through `handle_with`, and of the async forms; each
//! then answers a request end to end, so a form that compiles but
//! misroutes fails too.

use std::time::Duration;

use lhcluster::typed::Handler;
use lhcluster::worker::{HandlerError, RequestContext, Worker};
use lhcluster::{Request, Status, TypedRequestError};
use lhcluster_tests::{Transport, broker, call_typed, client, time_limit, worker_config};
use serde::{Deserialize, Serialize};

const LIMIT: Duration = Duration::from_secs(20);

#[derive(Serialize, Deserialize, Request)]
#[request_type(name = "infer.add", response = i64)]
struct Add {
    a: i64,
    b: i64,
}

#[derive(Serialize, Deserialize, Request)]
#[request_type(name = "infer.div", response = i64)]
struct Div {
    a: i64,
    b: i64,
}

#[derive(Serialize, Deserialize, Request)]
#[request_type(name = "infer.parse", response = i64)]
struct Parse {
    text: String,
}

#[derive(Serialize, Deserialize, Request)]
#[request_type(name = "infer.attempt", response = u32)]
struct Attempt;

#[derive(Serialize, Deserialize, Request)]
#[request_type(name = "infer.neg", response = i64)]
struct Neg {
    a: i64,
}

#[derive(Serialize, Deserialize, Request)]
#[request_type(name = "infer.log", one_way)]
struct Log {
    line: String,
}

/// A response type that is itself a `Result`.
#[derive(Serialize, Deserialize, Request)]
#[request_type(name = "infer.check", response = Result<u32, String>)]
struct Check {
    n: u32,
}

fn parse(req: Parse, _ctx: &RequestContext) -> Result<i64, std::num::ParseIntError> {
    req.text.trim().parse()
}

fn attempt(_: Attempt, ctx: &RequestContext) -> u32 {
    ctx.attempt
}

struct Negate;

impl Handler<Neg> for Negate {
    fn handle(&self, req: Neg, _ctx: &RequestContext) -> Result<i64, HandlerError> {
        req.a
            .checked_neg()
            .ok_or_else(|| HandlerError::bad_request("overflow"))
    }
}

#[test]
fn unannotated_handlers_compile_and_serve() {
    time_limit(LIMIT, || {
        let broker = broker(Transport::Inproc);
        let client = client(&broker);
        let worker = Worker::builder(worker_config(&broker))
            // A closure that cannot fail returns the response.
            .handle::<Add>(|req, _ctx| req.a + req.b)
            // One that can returns a `Result`; the error type is its `Err`'s.
            .handle::<Div>(|req, _| match req.a.checked_div(req.b) {
                Some(q) => Ok(q),
                None => Err(HandlerError::bad_request("division by zero")),
            })
            // Functions, fallible or not.
            .handle::<Parse>(parse)
            .handle::<Attempt>(attempt)
            // A type implementing `Handler`.
            .handle_with::<Neg>(Negate)
            // A one-way type's handler returns `()`.
            .handle::<Log>(|req, _| assert!(!req.line.is_empty()))
            // The response is a `Result`: returning one answers with it.
            .handle::<Check>(|req, _| {
                if req.n % 2 == 0 {
                    Ok(req.n / 2)
                } else {
                    Err(format!("{} is odd", req.n))
                }
            })
            .start()
            .expect("worker starts");

        assert_eq!(call_typed(&client, &Add { a: 2, b: 3 }), 5);
        assert_eq!(call_typed(&client, &Div { a: 9, b: 3 }), 3);
        let e = client
            .send_typed(&Div { a: 1, b: 0 })
            .unwrap()
            .wait()
            .unwrap_err();
        assert_eq!(e.status(), Some(Status::BadRequest));
        let parsed = client
            .send_typed(&Parse {
                text: " 42 ".into(),
            })
            .unwrap()
            .wait();
        assert_eq!(parsed.unwrap(), 42);
        let e = client
            .send_typed(&Parse { text: "x".into() })
            .unwrap()
            .wait()
            .unwrap_err();
        assert_eq!(e.status(), Some(Status::Failed));
        assert_eq!(call_typed(&client, &Attempt), 1);
        assert_eq!(call_typed(&client, &Neg { a: 4 }), -4);
        let e = client
            .send_typed(&Neg { a: i64::MIN })
            .unwrap()
            .wait()
            .unwrap_err();
        assert!(matches!(e, TypedRequestError::Request(_)), "{e:?}");
        call_typed(&client, &Log { line: "x".into() });
        assert_eq!(call_typed(&client, &Check { n: 4 }), Ok(2));
        assert_eq!(
            call_typed(&client, &Check { n: 3 }),
            Err("3 is odd".to_owned())
        );
        worker.stop().unwrap();
        client.stop().unwrap();
        broker.stop().unwrap();
    });
}

async fn double(req: Add, _ctx: RequestContext) -> Result<i64, String> {
    req.a.checked_mul(2).ok_or_else(|| "overflow".to_owned())
}

#[test]
fn unannotated_async_handlers_compile_and_serve() {
    time_limit(LIMIT, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let broker = broker(Transport::Inproc);
        let client = client(&broker);
        let worker = Worker::builder(worker_config(&broker))
            // An async function.
            .handle_async::<Add>(double)
            // An async block: the response, or a `Result` of it.
            .handle_async::<Attempt>(|_, ctx| async move { ctx.attempt })
            .handle_async::<Div>(|req, _| async move {
                req.a
                    .checked_div(req.b)
                    .ok_or(HandlerError::bad_request("division by zero"))
            })
            .runtime(rt.handle().clone())
            .start()
            .expect("worker starts");
        rt.block_on(async {
            assert_eq!(
                client
                    .send_typed(&Add { a: 4, b: 0 })
                    .unwrap()
                    .await
                    .unwrap(),
                8
            );
            assert_eq!(client.send_typed(&Attempt).unwrap().await.unwrap(), 1);
            let e = client
                .send_typed(&Div { a: 1, b: 0 })
                .unwrap()
                .await
                .unwrap_err();
            assert_eq!(e.status(), Some(Status::BadRequest));
        });
        worker.stop().unwrap();
        client.stop().unwrap();
        broker.stop().unwrap();
    });
}
