//! `lhcluster request`: sends one request and prints what comes back.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::ValueEnum;
use lhcluster::client::{Client, ClientConfig, ClientEvent, ReceiptKind};
use lhcluster::{Flags, RequestError, RequestType, Status};

use crate::commands::keys::ConnectKeyFlags;
use crate::common::{diagnose, parse_duration, parse_request_type, shutdown_signal};
use crate::payload;

/// Exit codes of `lhcluster request`, one per outcome (see --help).
pub mod exit {
    /// The handler succeeded.
    pub const OK: u8 = 0;
    /// The handler failed (FAILED).
    pub const FAILED: u8 = 3;
    /// The request was invalid (BAD_REQUEST).
    pub const BAD_REQUEST: u8 = 4;
    /// A duplicate was pending or in progress (REJECTED).
    pub const REJECTED: u8 = 5;
    /// A queue bound was reached (OVERLOADED).
    pub const OVERLOADED: u8 = 6;
    /// The worker died (WORKER_DEATH).
    pub const WORKER_DEATH: u8 = 7;
    /// Another requester took over the response (REDIRECTED).
    pub const REDIRECTED: u8 = 8;
    /// No worker serves the type (NO_WORKERS).
    pub const NO_WORKERS: u8 = 9;
    /// The reply-to client is unknown (UNKNOWN_REPLY_TO).
    pub const UNKNOWN_REPLY_TO: u8 = 10;
    /// No outcome within --timeout.
    pub const TIMEOUT: u8 = 11;
    /// The broker (or proxy) could not be reached or went away.
    pub const CONNECTION: u8 = 12;
    /// Interrupted (SIGINT or SIGTERM): the request was cancelled, as a
    /// shell reports a process that SIGINT ended.
    pub const CANCELLED: u8 = 130;
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Receipt {
    Sent,
    Received,
}

/// Send one request to a broker or proxy; print receipts as they arrive,
/// then the outcome.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit codes: 0 ok, 1 error, 2 usage, 3 failed, 4 bad_request, 5 rejected, \
6 overloaded, 7 worker_death, 8 redirected, 9 no_workers, 10 unknown_reply_to, 11 timeout, \
12 connection.\n\nExample:\n  lhcluster request --to tcp://127.0.0.1:5555 --type echo --payload hello --receipt received"
)]
pub struct Args {
    /// Broker frontend or proxy endpoint; repeat it (or give a
    /// comma-separated list) for several: the request goes to the first
    /// that answers, in order.
    #[arg(
        long,
        required = true,
        env = "LHCLUSTER_BROKER",
        value_delimiter = ',',
        value_name = "ENDPOINT"
    )]
    to: Vec<String>,
    /// Request type: a number, or a name (hashed as #[derive(Request)] does).
    #[arg(long = "type", value_parser = parse_request_type, value_name = "TYPE")]
    request_type: RequestType,
    /// Request id (default: a fresh one).
    #[arg(long)]
    id: Option<u64>,
    /// Payload text; `-` reads it from stdin.
    #[arg(long, group = "input", value_name = "TEXT")]
    payload: Option<String>,
    /// Payload file, sent as it is.
    #[arg(long, group = "input", value_name = "PATH")]
    payload_file: Option<PathBuf>,
    /// Payload as JSON, sent as MessagePack, as a typed handler
    /// (#[derive(Request)]) decodes it: `{"a":1,"b":2}`; `-` reads it
    /// from stdin.
    #[arg(long, group = "input", value_name = "JSON")]
    payload_json: Option<String>,
    /// One-way: no response is routed back.
    #[arg(long)]
    one_way: bool,
    /// Ask for a receipt (repeatable).
    #[arg(long, value_enum)]
    receipt: Vec<Receipt>,
    /// If the worker dies, end with WORKER_DEATH rather than waiting for
    /// the timeout.
    #[arg(long)]
    notify_on_death: bool,
    /// If the worker dies, run the request again on another (up to the
    /// broker's max-tries).
    #[arg(long)]
    retry_on_death: bool,
    /// Let another request with the same type and id take over the
    /// response (this one then ends REDIRECTED if it asks to be told).
    #[arg(long)]
    allow_redirect: bool,
    /// End with REDIRECTED when another request takes the response over.
    #[arg(long)]
    notify_on_redirect: bool,
    /// Fail at once with NO_WORKERS when no worker serves the type.
    #[arg(long)]
    fail_fast: bool,
    /// Send the response to the client with this name instead.
    #[arg(long)]
    reply_to: Option<String>,
    /// This client's name (others can reply to it).
    #[arg(long)]
    name: Option<String>,
    /// How long to wait for the outcome.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    timeout: Duration,
    /// How long to wait for the broker to answer the greeting (per
    /// endpoint given); past it: `cannot reach the broker at …`, exit 12.
    #[arg(long, value_parser = parse_duration, default_value = "3s")]
    connect_timeout: Duration,
    /// Print JSON lines instead of text (the payload as a JSON value when
    /// it is a MessagePack map or array).
    #[arg(long, conflicts_with = "raw")]
    json: bool,
    /// Print the response payload's bytes as they are (no JSON view).
    #[arg(long)]
    raw: bool,
    #[command(flatten)]
    keys: ConnectKeyFlags,
}

impl Args {
    fn flags(&self) -> Flags {
        let mut flags = Flags::empty();
        for (on, flag) in [
            (self.one_way, Flags::ONE_WAY),
            (self.notify_on_death, Flags::NOTIFY_ON_DEATH),
            (self.retry_on_death, Flags::RETRY_ON_DEATH),
            (self.allow_redirect, Flags::ALLOW_REDIRECT),
            (self.notify_on_redirect, Flags::NOTIFY_ON_REDIRECT),
            (self.fail_fast, Flags::FAIL_FAST),
        ] {
            if on {
                flags |= flag;
            }
        }
        for r in &self.receipt {
            flags |= match r {
                Receipt::Sent => Flags::RECEIPT_ON_SEND,
                Receipt::Received => Flags::RECEIPT_ON_RECEIVE,
            };
        }
        flags
    }
}

fn receipt_name(kind: ReceiptKind) -> &'static str {
    match kind {
        ReceiptKind::Sent => "sent",
        ReceiptKind::Received => "received",
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let payload = match (&args.payload, &args.payload_file, &args.payload_json) {
        (Some(text), _, _) => payload::text_or_stdin(text)?,
        (_, Some(path), _) => {
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?
        }
        (_, _, Some(json)) => payload::json_to_msgpack(json)?,
        (None, None, None) => Vec::new(),
    };
    let mut config = ClientConfig::new(&args.to[0]);
    config.brokers.clone_from(&args.to);
    config.name = args.name.clone();
    config.request_timeout = Some(args.timeout);
    // With several, the client moves past one that does not answer by
    // itself: each gets the connect timeout.
    let endpoints = u32::try_from(args.to.len()).unwrap_or(u32::MAX);
    config.connect_timeout = Some(args.connect_timeout.saturating_mul(endpoints));
    args.keys
        .apply(&mut config.curve_server_key, &mut config.curve_secret_key)?;
    let client = match Client::connect(config) {
        Ok(client) => client,
        Err(e @ lhcluster::Error::Unreachable { .. }) => {
            // Nothing was sent: the outcome is the connection's.
            let text = match args.to.as_slice() {
                [endpoint] => diagnose("broker", endpoint, zmq::DEALER, e.to_string()),
                _ => e.to_string(),
            };
            // No id was assigned unless the caller gave one: JSON says null.
            print_failure(&args, args.id, "connection", &text);
            return Ok(ExitCode::from(exit::CONNECTION));
        }
        Err(e) => return Err(e.into()),
    };
    let mut builder = client
        .request(args.request_type)
        .flags(args.flags())
        .payload(vec![payload.as_slice().into()])
        .timeout(args.timeout);
    if let Some(id) = args.id {
        builder = builder.id(id);
    }
    if let Some(name) = &args.reply_to {
        builder = builder.reply_to(name);
    }
    // Ctrl-C takes the request back at the broker (CANCEL), rather than
    // leaving it to run for nobody.
    let interrupted = shutdown_signal()?;
    let mut handle = builder.send()?;
    let id = handle.request_id();
    let print_receipt = |kind: ReceiptKind| {
        if args.json {
            println!(
                r#"{{"receipt":"{}","request_id":{id}}}"#,
                receipt_name(kind)
            );
        } else {
            println!("receipt: {}", receipt_name(kind));
        }
    };
    let outcome = loop {
        if let Ok(ClientEvent::Receipt {
            request_id, kind, ..
        }) = client.events().recv_timeout(Duration::from_millis(20))
        {
            if request_id == id {
                print_receipt(kind);
            }
        }
        if let Some(outcome) = handle.try_take() {
            break outcome;
        }
        if interrupted.try_recv().is_ok() {
            // Ends the handle with `Cancelled` (unless the outcome came
            // first: then that outcome is what is reported).
            handle.cancel();
        }
    };
    // Receipts are emitted before the outcome that follows them.
    for event in client.events().try_iter() {
        if let ClientEvent::Receipt {
            request_id, kind, ..
        } = event
        {
            if request_id == id {
                print_receipt(kind);
            }
        }
    }
    let code = report(&args, id, outcome);
    let _ = client.stop();
    Ok(ExitCode::from(code))
}

fn report(args: &Args, id: u64, outcome: lhcluster::client::Outcome) -> u8 {
    let (status, code, text) = match outcome {
        Ok(reply) => {
            let bytes: Vec<u8> = reply.payload.iter().flat_map(|f| f.to_vec()).collect();
            print_ok(args, id, &bytes);
            return exit::OK;
        }
        Err(RequestError::Status { status, message }) => {
            let code = match status {
                Status::Failed => exit::FAILED,
                Status::BadRequest => exit::BAD_REQUEST,
                Status::Rejected => exit::REJECTED,
                Status::Overloaded => exit::OVERLOADED,
                Status::WorkerDeath => exit::WORKER_DEATH,
                Status::Redirected => exit::REDIRECTED,
                Status::NoWorkers => exit::NO_WORKERS,
                Status::UnknownReplyTo => exit::UNKNOWN_REPLY_TO,
                // The broker gave up when the caller's timeout ran out.
                Status::Expired => exit::TIMEOUT,
                _ => crate::common::EXIT_ERROR,
            };
            (status.as_str(), code, message)
        }
        Err(RequestError::Timeout(d)) => {
            ("timeout", exit::TIMEOUT, format!("no outcome within {d:?}"))
        }
        Err(e @ (RequestError::Disconnected(_) | RequestError::Stopped)) => {
            ("connection", exit::CONNECTION, e.to_string())
        }
        Err(RequestError::Cancelled) => (
            "cancelled",
            exit::CANCELLED,
            "interrupted: the request was cancelled".to_owned(),
        ),
        Err(e) => ("error", crate::common::EXIT_ERROR, e.to_string()),
    };
    print_failure(args, Some(id), status, &text);
    code
}

/// `status: ok` and the payload: as JSON when it is a MessagePack map or
/// array, else as text; its bytes as they are with `--raw`.
fn print_ok(args: &Args, id: u64, bytes: &[u8]) {
    if args.json {
        let (key, value) = payload::to_json_field(bytes);
        let line = serde_json::json!({
            "request_type": args.request_type,
            "request_id": id,
            "status": "ok",
            key: value,
        });
        println!("{line}");
    } else if args.raw {
        println!("status: ok");
        let mut out = std::io::stdout().lock();
        // A closed stdout (a pager quit) is not this command's failure.
        let _ = out.write_all(bytes).and_then(|()| out.flush());
    } else {
        println!("status: ok");
        println!("{}", payload::to_text(bytes));
    }
}

/// `status: NAME` and `error: TEXT` (or their JSON line, whose
/// `request_id` is `null` when the request never got one).
fn print_failure(args: &Args, id: Option<u64>, status: &str, text: &str) {
    if args.json {
        let line = serde_json::json!({
            "request_type": args.request_type,
            "request_id": id,
            "status": status,
            "error": text,
        });
        println!("{line}");
    } else {
        println!("status: {status}");
        println!("error: {text}");
    }
}
