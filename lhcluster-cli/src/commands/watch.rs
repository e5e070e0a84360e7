//! `lhcluster watch`: prints the requests and outcomes a broker's watch
//! tap publishes (docs/operations.md, "watch").

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use crate::commands::keys::ConnectKeyFlags;
use crate::common::{short_duration, shutdown_signal};

/// Watch requests and outcomes go by a broker, one per line (the broker
/// must run with --watch).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Each line is a request as it arrives (type, id, payload bytes) or an outcome as \
it leaves (status, payload bytes, and for a worker's result its queue wait, service and \
end-to-end times). Payloads are never shown. Events start once the subscription reaches the \
broker (a fraction of a second).\n\nExample:\n  lhcluster broker --frontend tcp://*:5555 --backend tcp://*:5556 --watch tcp://127.0.0.1:5559\n  lhcluster watch --endpoint tcp://127.0.0.1:5559"
)]
pub struct Args {
    /// The broker's watch endpoint (its `--watch`).
    #[arg(
        long,
        visible_alias = "to",
        env = "LHCLUSTER_WATCH",
        value_name = "ENDPOINT"
    )]
    endpoint: String,
    /// Print the events as the broker publishes them, one JSON object a
    /// line.
    #[arg(long)]
    json: bool,
    /// Exit after this many events.
    #[arg(long)]
    count: Option<u64>,
    #[command(flatten)]
    keys: ConnectKeyFlags,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (server, own) = args.keys.read()?;
    let socket = lhcluster::context().socket(zmq::SUB)?;
    socket.set_linger(0)?;
    if let Some(server) = &server {
        // A CURVE broker's tap takes the frontend's clients: its key, and
        // our own key (a fresh one when none is given) in its client list.
        let own = match own {
            Some(own) => own,
            None => lhcluster::curve::SecretKey::generate()?,
        };
        socket.set_curve_serverkey(server.as_bytes())?;
        socket.set_curve_publickey(own.public_key().as_bytes())?;
        // The key's bytes, through its Z85 text (the library lends the
        // bytes of a secret key to no one).
        socket.set_curve_secretkey(&zmq::z85_decode(&own.to_z85())?)?;
    }
    socket.set_subscribe(b"")?;
    socket.connect(&args.endpoint)?;
    eprintln!("watching {}", args.endpoint);
    let signal = shutdown_signal()?;
    let mut seen = 0u64;
    let mut out = std::io::stdout().lock();
    while args.count.is_none_or(|n| seen < n) {
        if signal.try_recv().is_ok() {
            break;
        }
        // Polled in slices, so that a signal ends the wait (and a signal
        // that interrupts the poll is no error).
        match socket.poll(zmq::POLLIN, 200) {
            Ok(0) | Err(zmq::Error::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(e.into()),
        }
        let frames = socket.recv_multipart(0)?;
        let [_, json] = frames.as_slice() else {
            continue;
        };
        let Ok(event) = serde_json::from_slice::<serde_json::Value>(json) else {
            continue;
        };
        let line = if args.json {
            event.to_string()
        } else {
            describe(&event)
        };
        writeln!(out, "{line}")?;
        out.flush()?;
        seen += 1;
    }
    Ok(ExitCode::SUCCESS)
}

/// One event as a line of text: `request orders.create (491762242) id=7
/// bytes=64` or `outcome orders.create (491762242) id=7 ok bytes=2
/// wait=12us service=1.1ms e2e=1.2ms`.
fn describe(e: &serde_json::Value) -> String {
    let kind = e["event"].as_str().unwrap_or("?");
    let id = &e["type"];
    let label = match e["type_name"].as_str() {
        Some(name) => format!("{name} ({id})"),
        None => id.to_string(),
    };
    let mut line = format!("{kind:<8} {label} id={} ", e["id"]);
    if kind == "outcome" {
        line.push_str(e["status"].as_str().unwrap_or("?"));
        line.push(' ');
    }
    line.push_str(&format!("bytes={}", e["bytes"]));
    if e["one_way"].as_bool() == Some(true) {
        line.push_str(" one-way");
    }
    for (field, name) in [
        ("queue_wait_us", "wait"),
        ("service_us", "service"),
        ("end_to_end_us", "e2e"),
    ] {
        if let Some(us) = e[field].as_u64() {
            line.push_str(&format!(
                " {name}={}",
                short_duration(Duration::from_micros(us))
            ));
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_read_as_one_line_each() {
        let request = serde_json::json!({"event": "request", "type": 7,
            "type_name": "orders.create", "id": 42, "bytes": 64, "one_way": false, "flags": 0});
        assert_eq!(
            describe(&request),
            "request  orders.create (7) id=42 bytes=64"
        );
        let outcome = serde_json::json!({"event": "outcome", "type": 8, "type_name": null,
            "id": 1, "status": "ok", "bytes": 2, "queue_wait_us": 12, "service_us": 1100,
            "end_to_end_us": 1_250_000});
        assert_eq!(
            describe(&outcome),
            "outcome  8 id=1 ok bytes=2 wait=12us service=1.1ms e2e=1.2s"
        );
    }
}
