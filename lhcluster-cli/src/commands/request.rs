//! `lhcluster request`: sends one request and prints what comes back.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::ValueEnum;
use lhcluster::client::{Client, ClientConfig, ClientEvent, ReceiptKind};
use lhcluster::{Flags, RequestError, RequestType, Status};

use crate::commands::keys::{SecretKeyFlag, ServerKeyFlag};
use crate::common::{parse_duration, parse_request_type};

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
    /// Broker frontend or proxy endpoint; repeat it to give several (the
    /// request goes to the first that answers, in order).
    #[arg(long, required = true)]
    to: Vec<String>,
    /// Request type: a number, or a name (hashed as #[derive(Request)] does).
    #[arg(long = "type", value_parser = parse_request_type)]
    request_type: RequestType,
    /// Request id (default: a fresh one).
    #[arg(long)]
    id: Option<u64>,
    /// Payload text.
    #[arg(long, conflicts_with = "payload_file")]
    payload: Option<String>,
    /// Payload file.
    #[arg(long)]
    payload_file: Option<PathBuf>,
    /// One-way: no response is routed back.
    #[arg(long)]
    one_way: bool,
    /// Ask for a receipt (repeatable).
    #[arg(long, value_enum)]
    receipt: Vec<Receipt>,
    #[arg(long)]
    notify_on_death: bool,
    #[arg(long)]
    retry_on_death: bool,
    #[arg(long)]
    allow_redirect: bool,
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
    /// Print JSON lines instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    server_key: ServerKeyFlag,
    #[command(flatten)]
    secret_key: SecretKeyFlag,
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
    let payload = match (&args.payload, &args.payload_file) {
        (Some(text), _) => text.as_bytes().to_vec(),
        (None, Some(path)) => {
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?
        }
        (None, None) => Vec::new(),
    };
    let mut config = ClientConfig::new(&args.to[0]);
    config.brokers.clone_from(&args.to);
    config.name = args.name.clone();
    config.request_timeout = Some(args.timeout);
    args.server_key.apply(&mut config.curve_server_key)?;
    args.secret_key.apply(&mut config.curve_secret_key)?;
    let client = Client::connect(config)?;
    // With several, the first may be down: a request sent while greeting
    // it would end with it. Wait for a session (within the timeout, which
    // the request then shares): the client moves on to the next by itself.
    if args.to.len() > 1 {
        client.wait_connected(args.timeout);
    }
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
            let text: Vec<u8> = reply.payload.iter().flat_map(|f| f.to_vec()).collect();
            ("ok", exit::OK, String::from_utf8_lossy(&text).into_owned())
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
        Err(e) => ("error", crate::common::EXIT_ERROR, e.to_string()),
    };
    if args.json {
        let line = serde_json::json!({
            "request_type": args.request_type,
            "request_id": id,
            "status": status,
            if code == exit::OK { "payload" } else { "error" }: text,
        });
        println!("{line}");
    } else if code == exit::OK {
        println!("status: ok");
        println!("{text}");
    } else {
        println!("status: {status}");
        println!("error: {text}");
    }
    code
}
