//! What libzmq 4.3.4's XPUB does in manual mode (docs/bounds.md §8):
//!
//! 1. subscription messages carry their connection's metadata (`User-Id`
//!    from a ZAP handler, also under the NULL mechanism once a ZAP domain
//!    is set);
//! 2. at a disconnect, the unsubscriptions replayed are those of the
//!    filters the subscriber sent (refused ones included), without
//!    metadata, and never a filter the broker applied with `setsockopt`;
//! 3. subscriptions never applied still cost the XPUB their memory.
//!
//! `cargo run -- manual` or `cargo run -- verbose` (step 3 for the mode
//! given; run each in its own process, so the allocator's reuse does not
//! hide the second).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ZMQ_SUBSCRIBE: i32 = 6;
const ZMQ_XPUB_MANUAL: i32 = 71;
const FILTERS: usize = 200_000;

fn setsockopt(socket: &mut zmq::Socket, option: i32, value: &[u8]) {
    // The `zmq` crate has no setter for ZMQ_XPUB_MANUAL, and applying a
    // subscription on an XPUB is not in its API either.
    let rc = unsafe {
        zmq_sys::zmq_setsockopt(
            socket.as_mut_ptr(),
            option,
            value.as_ptr().cast(),
            value.len(),
        )
    };
    assert_eq!(rc, 0, "zmq_setsockopt({option})");
}

fn rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A ZAP handler that lets everyone in with a user id of its own per
/// handshake: `conn-1`, `conn-2`, …
fn start_zap(ctx: &zmq::Context) {
    let rep = ctx.socket(zmq::REP).unwrap();
    rep.bind("inproc://zeromq.zap.01").unwrap();
    std::thread::spawn(move || {
        for n in 1u64.. {
            let Ok(request) = rep.recv_multipart(0) else {
                return;
            };
            let user = format!("conn-{n}").into_bytes();
            let reply = vec![
                b"1.0".to_vec(),
                request[1].clone(),
                b"200".to_vec(),
                b"OK".to_vec(),
                user,
                vec![],
            ];
            rep.send_multipart(reply, 0).unwrap();
        }
    });
}

/// Everything the XPUB yields for `span`: (message, User-Id).
fn drain(xpub: &zmq::Socket, span: Duration) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let end = Instant::now() + span;
    while Instant::now() < end {
        if xpub.poll(zmq::POLLIN, 50).unwrap() == 0 {
            continue;
        }
        while let Ok(mut m) = xpub.recv_msg(zmq::DONTWAIT) {
            let user = m.gets("User-Id").map(str::to_owned);
            out.push((format!("{:?}", String::from_utf8_lossy(&m)), user));
        }
    }
    out
}

/// The subscriber of step 3, in a process of its own (its own trie is not
/// counted): subscribes `n` distinct filters, then waits for stdin to close.
fn subscriber(endpoint: &str, n: usize) {
    let ctx = zmq::Context::new();
    let sub = ctx.socket(zmq::SUB).unwrap();
    sub.set_sndhwm(0).unwrap();
    sub.connect(endpoint).unwrap();
    for i in 0..n {
        sub.set_subscribe(format!("topic-{i:08}-xxxxxxxx").as_bytes())
            .unwrap();
    }
    let _ = std::io::stdin().read_line(&mut String::new());
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 4 && args[1] == "subscriber" {
        return subscriber(&args[2], args[3].parse().unwrap());
    }
    let manual = match args.get(1).map(String::as_str) {
        Some("manual") => true,
        Some("verbose") => false,
        _ => panic!("usage: xpub-manual-experiment manual|verbose"),
    };
    let ctx = zmq::Context::new();
    start_zap(&ctx);

    if manual {
        // Steps 1 and 2.
        let mut xpub = ctx.socket(zmq::XPUB).unwrap();
        setsockopt(&mut xpub, ZMQ_XPUB_MANUAL, &1i32.to_ne_bytes());
        xpub.set_zap_domain("experiment").unwrap();
        xpub.bind("tcp://127.0.0.1:0").unwrap();
        let endpoint = xpub.get_last_endpoint().unwrap().unwrap();
        let sub = ctx.socket(zmq::SUB).unwrap();
        sub.connect(&endpoint).unwrap();
        for topic in ["a1", "a2", "a3"] {
            sub.set_subscribe(topic.as_bytes()).unwrap();
        }
        for _ in 0..3 {
            let mut m = xpub.recv_msg(0).unwrap();
            let user = m.gets("User-Id").map(str::to_owned);
            let fd = m.gets("__fd").map(str::to_owned);
            println!(
                "read {:?} User-Id={user:?} __fd={fd:?}",
                String::from_utf8_lossy(&m)
            );
            if &m[..] == b"\x01a1" {
                // a1 applied, with a marker; a2 and a3 refused.
                setsockopt(&mut xpub, ZMQ_SUBSCRIBE, b"a1");
                setsockopt(&mut xpub, ZMQ_SUBSCRIBE, b"\xffMARK-A");
            }
        }
        std::thread::sleep(Duration::from_millis(100));
        for topic in ["a1", "a2"] {
            xpub.send(topic, 0).unwrap();
        }
        std::thread::sleep(Duration::from_millis(200));
        while let Ok(m) = sub.recv_bytes(zmq::DONTWAIT) {
            println!("the subscriber received {:?}", String::from_utf8_lossy(&m));
        }
        drop(sub);
        for (m, user) in drain(&xpub, Duration::from_millis(800)) {
            println!("after the subscriber closed: {m} User-Id={user:?}");
        }
    }

    // Step 3: FILTERS distinct subscriptions from one connection, none
    // applied by the broker.
    let mut xpub = ctx.socket(zmq::XPUB).unwrap();
    if manual {
        setsockopt(&mut xpub, ZMQ_XPUB_MANUAL, &1i32.to_ne_bytes());
    } else {
        xpub.set_xpub_verbose(true).unwrap();
    }
    xpub.bind("tcp://127.0.0.1:0").unwrap();
    let endpoint = xpub.get_last_endpoint().unwrap().unwrap();
    let before = rss_kb();
    let mut child = Command::new(&args[0])
        .args(["subscriber", &endpoint, &FILTERS.to_string()])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut read = 0;
    let end = Instant::now() + Duration::from_secs(120);
    while read < FILTERS && Instant::now() < end {
        if xpub.poll(zmq::POLLIN, 100).unwrap() > 0 {
            while xpub.recv_msg(zmq::DONTWAIT).is_ok() {
                read += 1;
            }
        }
    }
    let held = rss_kb();
    drop(child.stdin.take());
    child.wait().unwrap();
    println!(
        "{}: {read} subscriptions read: RSS {before} kB -> {held} kB",
        if manual {
            "manual, none applied"
        } else {
            "verbose, all applied by libzmq"
        }
    );
}
