//! Typed requests end to end: `#[derive(Request)]` types, a worker that
//! serves them with closures, and a client that sends them and gets typed
//! responses and typed errors.
//!
//! Run with `cargo run --example typed_echo`. It echoes a few messages,
//! shows a request the handler refuses, a payload the worker cannot decode,
//! a one-way request and an `.await`ed one, and exits on its own.

use std::sync::{Arc, mpsc};
use std::time::Duration;

use anyhow::{Context, bail};
use lhcluster::client::{Client, ClientConfig};
use lhcluster::worker::{HandlerError, RequestContext, Worker, WorkerConfig};
use lhcluster::{Broker, BrokerConfig, Flags, Request, RequestError, Status, TypedRequestError};
use serde::{Deserialize, Serialize};

/// Echoes `text` back, shouted `times` times.
#[derive(Debug, Serialize, Deserialize, Request)]
#[request_type(name = "examples.echo", response = EchoReply)]
struct Echo {
    text: String,
    times: u8,
}

#[derive(Debug, Serialize, Deserialize)]
struct EchoReply {
    text: String,
    /// Which worker answered, and on which attempt.
    worker: String,
    attempt: u32,
}

/// A one-way request: the client learns that it was delivered, nothing
/// more. Its natural id makes a resend of the same line harmless.
#[derive(Debug, Serialize, Deserialize, Request)]
#[request_type(name = "examples.audit", one_way)]
struct Audit {
    #[request_id]
    seq: u64,
    line: String,
}

/// The same name as `Echo` with a different shape: what an incompatible
/// peer sends.
mod other_version {
    use super::*;

    #[derive(Debug, Serialize, Deserialize, Request)]
    #[request_type(name = "examples.echo", response = String)]
    pub(crate) struct Echo {
        pub(crate) text: Vec<u32>,
    }
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();

    let broker = Broker::start(BrokerConfig::new("tcp://127.0.0.1:0", "tcp://127.0.0.1:0"))?;
    println!(
        "broker: frontend {} backend {}",
        broker.frontend(),
        broker.backend()
    );
    println!(
        "request types: {} = {:#010x}, {} = {:#010x}",
        Echo::NAME,
        Echo::REQUEST_TYPE,
        Audit::NAME,
        Audit::REQUEST_TYPE
    );

    let (audit_tx, audit_rx) = mpsc::channel();
    let mut config = WorkerConfig::new(broker.backend());
    config.name = Some("echo-worker".into());
    config.capacity = 2;
    let worker = Worker::builder(config)
        .handle::<Echo>(echo)
        .handle::<Audit>(move |req, _ctx| {
            let _ = audit_tx.send(format!("#{} {}", req.seq, req.line));
        })
        .start()?;

    let client = Client::connect(ClientConfig::new(broker.frontend()))?;
    if !client.wait_connected(Duration::from_secs(5)) {
        bail!("the client did not connect to the broker");
    }

    println!("two-way, typed:");
    for (text, times) in [("hello", 1), ("typed", 2), ("world", 3)] {
        let reply = client
            .send_typed(&Echo {
                text: text.into(),
                times,
            })?
            .wait()
            .context("echo")?;
        println!(
            "  {text} x{times} -> {:?} (from {}, attempt {})",
            reply.text, reply.worker, reply.attempt
        );
    }

    println!("the handler refuses an empty text:");
    let empty = Echo {
        text: String::new(),
        times: 1,
    };
    print_bad_request(client.send_typed(&empty)?.wait())?;

    println!("a payload the worker cannot decode:");
    let undecodable = other_version::Echo { text: vec![1, 2] };
    print_bad_request(client.send_typed(&undecodable)?.wait())?;

    println!("one-way, with a receipt when the worker takes it:");
    client
        .request_typed(&Audit {
            seq: 1,
            line: "echo example ran".into(),
        })
        .flags(Flags::RECEIPT_ON_RECEIVE)
        .send()?
        .wait()
        .context("audit delivery")?;
    let line = audit_rx
        .recv_timeout(Duration::from_secs(5))
        .context("the audit handler did not run")?;
    println!("  worker logged {line}");

    println!("awaited (any executor works; this one is hand-made):");
    let reply = block_on(client.send_typed(&Echo {
        text: "async".into(),
        times: 1,
    })?)?;
    println!("  async -> {:?}", reply.text);

    client.stop()?;
    worker.stop()?;
    broker.stop()?;
    Ok(())
}

/// The `Echo` handler: a plain function is a handler too.
fn echo(req: Echo, ctx: &RequestContext) -> Result<EchoReply, HandlerError> {
    if req.text.is_empty() {
        return Err(HandlerError::bad_request("nothing to echo"));
    }
    let shout = req.text.to_uppercase();
    Ok(EchoReply {
        text: vec![shout; usize::from(req.times.max(1))].join(" "),
        worker: "echo-worker".into(),
        attempt: ctx.attempt,
    })
}

/// Prints the message of a request refused with `BAD_REQUEST`; any other
/// outcome is an error.
fn print_bad_request<T: std::fmt::Debug>(
    outcome: Result<T, TypedRequestError>,
) -> anyhow::Result<()> {
    match outcome {
        Err(TypedRequestError::Request(RequestError::Status {
            status: Status::BadRequest,
            message,
        })) => {
            println!("  BAD_REQUEST: {message}");
            Ok(())
        }
        other => bail!("expected BAD_REQUEST, got {other:?}"),
    }
}

/// Polls a future to completion on this thread: the SDK needs no runtime.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};

    struct ThreadWaker(std::thread::Thread);
    impl Wake for ThreadWaker {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(v) = future.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}
