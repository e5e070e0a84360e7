//! The plain ZeroMQ baselines, measured with the same load engine:
//!
//! - `direct`: client DEALERs ↔ one echo thread on a ROUTER;
//! - `3-hop`: client DEALERs → a forwarding thread (ROUTER front, DEALER
//!   back, like `zmq_proxy`) → worker threads on DEALERs that echo.
//!
//! Payloads are copied once into a new message by the client (as the
//! lhcluster client does) and moved everywhere else.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use super::load::{self, Control, DRAIN_TIMEOUT, LoadSpec, RunResult};
use super::transport::{self, Transport};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topology {
    Direct,
    ThreeHop,
}

impl Topology {
    pub fn label(self) -> &'static str {
        match self {
            Topology::Direct => "zmq direct",
            Topology::ThreeHop => "zmq 3-hop",
        }
    }
}

/// Runs one measured interval of a baseline with `workers` echo threads
/// (3-hop only).
pub fn run(
    topology: Topology,
    spec: &LoadSpec,
    transport: Transport,
    workers: usize,
) -> anyhow::Result<RunResult> {
    let ctx = zmq::Context::new();
    let stop = Arc::new(AtomicBool::new(false));
    let mut servers: Vec<JoinHandle<()>> = Vec::new();
    let mut endpoints = Vec::new();
    let front = match topology {
        Topology::Direct => {
            let router = ctx.socket(zmq::ROUTER)?;
            router.set_linger(0)?;
            let ep = transport::bind(&router, transport, "echo")?;
            let stop = stop.clone();
            servers.push(spawn("bench-echo", move || echo_router(&router, &stop))?);
            endpoints.push(ep.clone());
            ep
        }
        Topology::ThreeHop => {
            let front = ctx.socket(zmq::ROUTER)?;
            let back = ctx.socket(zmq::DEALER)?;
            front.set_linger(0)?;
            back.set_linger(0)?;
            let front_ep = transport::bind(&front, transport, "front")?;
            let back_ep = transport::bind(&back, transport, "back")?;
            let stop_fwd = stop.clone();
            servers.push(spawn("bench-forwarder", move || {
                forwarder(&front, &back, &stop_fwd)
            })?);
            for _ in 0..workers.max(1) {
                let worker = ctx.socket(zmq::DEALER)?;
                worker.set_linger(0)?;
                worker.connect(&back_ep)?;
                let stop = stop.clone();
                servers.push(spawn("bench-echo", move || echo_dealer(&worker, &stop))?);
            }
            endpoints.push(front_ep.clone());
            endpoints.push(back_ep);
            front_ep
        }
    };

    let control = Control::new(spec.clients);
    let result = load::run(topology.label(), spec, control, |idx, control| {
        let socket = ctx.socket(zmq::DEALER).map_err(std::io::Error::other)?;
        let front = front.clone();
        let (window, size) = (spec.window, spec.size);
        spawn("bench-client", move || {
            if let Err(e) = client(&socket, &front, &control, idx, window, size) {
                tracing::warn!(error = %e, "baseline client failed");
            }
        })
    });
    stop.store(true, Ordering::SeqCst);
    for s in servers {
        let _ = s.join();
    }
    for ep in endpoints {
        transport::cleanup(&ep);
    }
    result
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name(name.to_owned()).spawn(f)
}

fn client(
    socket: &zmq::Socket,
    endpoint: &str,
    control: &Control,
    idx: usize,
    window: usize,
    size: usize,
) -> zmq::Result<()> {
    socket.set_linger(0)?;
    socket.set_rcvtimeo(100)?;
    socket.connect(endpoint)?;
    let mut buf = vec![0xa5_u8; size];
    let mut in_flight = 0;
    while in_flight < window && control.sending() {
        control.stamp_payload(&mut buf, idx);
        socket.send(&buf[..], 0)?;
        in_flight += 1;
    }
    let mut deadline = None;
    loop {
        match socket.recv_msg(0) {
            Ok(msg) => {
                in_flight -= 1;
                match control.read_stamp(&msg) {
                    Some((latency, _)) => control.record(idx, latency),
                    None => control.error(idx),
                }
                if control.sending() {
                    control.stamp_payload(&mut buf, idx);
                    socket.send(&buf[..], 0)?;
                    in_flight += 1;
                }
            }
            Err(zmq::Error::EAGAIN) => {}
            Err(e) => return Err(e),
        }
        if !control.sending() {
            if in_flight == 0 {
                return Ok(());
            }
            let at = *deadline.get_or_insert_with(|| Instant::now() + DRAIN_TIMEOUT);
            if Instant::now() >= at {
                return Ok(());
            }
        }
    }
}

/// Echoes `[identity, payload]` back on a ROUTER.
fn echo_router(router: &zmq::Socket, stop: &AtomicBool) {
    let _ = router.set_rcvtimeo(100);
    while !stop.load(Ordering::Relaxed) {
        let Ok(id) = router.recv_msg(0) else { continue };
        let Ok(payload) = router.recv_msg(0) else {
            continue;
        };
        let _ = router.send(id, zmq::SNDMORE);
        let _ = router.send(payload, 0);
    }
}

/// Echoes whatever multipart message arrives (`[client identity, payload]`
/// from the forwarder's DEALER).
fn echo_dealer(socket: &zmq::Socket, stop: &AtomicBool) {
    let _ = socket.set_rcvtimeo(100);
    while !stop.load(Ordering::Relaxed) {
        let Ok(msg) = socket.recv_msg(0) else {
            continue;
        };
        relay(msg, socket, socket);
    }
}

/// Moves whole multipart messages between a ROUTER and a DEALER, like
/// `zmq_proxy`, in batches.
fn forwarder(front: &zmq::Socket, back: &zmq::Socket, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let (front_ready, back_ready) = {
            let mut items = [
                front.as_poll_item(zmq::POLLIN),
                back.as_poll_item(zmq::POLLIN),
            ];
            if zmq::poll(&mut items, 100).is_err() {
                continue;
            }
            (items[0].is_readable(), items[1].is_readable())
        };
        if front_ready {
            forward_batch(front, back);
        }
        if back_ready {
            forward_batch(back, front);
        }
    }
}

fn forward_batch(from: &zmq::Socket, to: &zmq::Socket) {
    for _ in 0..256 {
        let Ok(msg) = from.recv_msg(zmq::DONTWAIT) else {
            return;
        };
        if !relay(msg, from, to) {
            return;
        }
    }
}

/// Sends `msg`, the first part of a multipart message, and the parts of
/// it still to come from `from`, to `to`; false if a part could not be
/// read.
fn relay(mut msg: zmq::Message, from: &zmq::Socket, to: &zmq::Socket) -> bool {
    loop {
        let more = msg.get_more();
        let _ = to.send(msg, if more { zmq::SNDMORE } else { 0 });
        if !more {
            return true;
        }
        match from.recv_msg(0) {
            Ok(m) => msg = m,
            Err(_) => return false,
        }
    }
}
