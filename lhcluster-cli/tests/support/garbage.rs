//! Hostile peers: what a chaos test throws at a daemon's bound sockets.
//!
//! Two layers. Raw TCP noise: libzmq takes a peer whose first byte is not
//! the ZMTP signature's for a ZMTP 1.0 peer, so part of the noise reaches
//! the daemon as messages, in numbers nobody can predict; the rest dies in
//! the handshake. ZeroMQ-framed garbage all reaches the daemon, which must
//! count it and go on serving. Of the framed garbage, some classes are
//! invalid by construction (counted as `invalid`: the daemon's malformed
//! counter must grow by at least that many); the rest is random frames,
//! which may by chance decode as a valid message (counted only in
//! `total`).

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use lhcluster::protocol::{Message, Request};

/// How much framed garbage was sent.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Sent {
    /// Messages invalid by construction.
    pub(crate) invalid: u64,
    /// All messages sent.
    pub(crate) total: u64,
}

/// A small deterministic generator (xorshift64*), seeded per test and
/// printed, so a failing run can be replayed.
#[derive(Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Random bytes, fewer than `max` of them.
    pub(crate) fn bytes(&mut self, max: u64) -> Vec<u8> {
        let len = self.below(max);
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// A seed that differs between runs.
pub(crate) fn seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    nanos ^ (u64::from(std::process::id()) << 32)
}

/// `tcp://host:port` → `host:port`.
fn socket_addr(endpoint: &str) -> &str {
    endpoint.strip_prefix("tcp://").expect("a tcp:// endpoint")
}

/// Raw TCP noise at `endpoint` (any TCP listener, ZeroMQ or HTTP): random
/// bytes, a ZMTP signature followed by random bytes, and a connection
/// closed in the middle of a greeting.
pub(crate) fn tcp_noise(endpoint: &str, rng: &mut Rng) {
    let addr = socket_addr(endpoint);
    let zmtp_signature = [0xFF, 0, 0, 0, 0, 0, 0, 0, 1, 0x7F, 3, 0];
    for round in 0..12 {
        let Ok(mut stream) = TcpStream::connect(addr) else {
            panic!("cannot connect to {addr}");
        };
        let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
        let noise = rng.bytes(64 * 1024);
        // Write errors are expected: the peer may hang up on the noise.
        let _ = match round % 3 {
            0 => stream.write_all(&noise),
            1 => stream
                .write_all(&zmtp_signature)
                .and_then(|()| stream.write_all(&noise)),
            _ => stream.write_all(&zmtp_signature[..5]),
        };
    }
}

fn zmq_socket(kind: zmq::SocketType, endpoint: &str) -> zmq::Socket {
    let socket = lhcluster::context().socket(kind).unwrap();
    socket.set_linger(0).unwrap();
    // A daemon that stops reading fails the test instead of hanging it.
    socket.set_sndtimeo(10_000).unwrap();
    // PUB-like sockets (XPUB, XSUB) drop what is over the high-water mark
    // instead of waiting: no mark, so all the garbage is sent.
    socket.set_sndhwm(0).unwrap();
    socket.connect(endpoint).unwrap();
    socket
}

/// Which bound socket a [`Hostile`] peer talks to, and so what it sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// A ROUTER speaking the request protocol (broker frontend or backend,
    /// proxy bind), from a DEALER that never reads the ERRORs it earns.
    Router,
    /// A notify broker's backend (XSUB), from an XPUB.
    Publishers,
    /// A notify broker's frontend (XPUB), from an XSUB: messages that are
    /// neither a subscription nor an unsubscription (first byte not 0 or
    /// 1), all invalid.
    Subscribers,
}

/// A peer that sends framed garbage in rounds, staying connected between
/// them, so that well-behaved traffic can be checked while the daemon
/// still has garbage to chew on.
pub(crate) struct Hostile {
    socket: zmq::Socket,
    target: Target,
    rng: Rng,
    pub(crate) sent: Sent,
}

impl Hostile {
    pub(crate) fn connect(target: Target, endpoint: &str, seed: u64) -> Hostile {
        let kind = match target {
            Target::Router => zmq::DEALER,
            Target::Publishers => zmq::XPUB,
            Target::Subscribers => zmq::XSUB,
        };
        let socket = zmq_socket(kind, endpoint);
        if target == Target::Publishers {
            // A publisher's messages before the broker's subscription
            // arrives are dropped: wait for it.
            socket.set_rcvtimeo(10_000).unwrap();
            socket
                .recv_bytes(0)
                .expect("the notify broker subscribes to its publishers");
        }
        Hostile {
            socket,
            target,
            rng: Rng::new(seed),
            sent: Sent::default(),
        }
    }

    /// Sends `count` more messages.
    pub(crate) fn send(&mut self, count: u64) {
        for _ in 0..count {
            let i = self.sent.total;
            let (frames, invalid) = match self.target {
                Target::Router => protocol_garbage(i, &mut self.rng),
                Target::Publishers => notification_garbage(i, &mut self.rng),
                Target::Subscribers => subscriber_garbage(&mut self.rng),
            };
            self.socket
                .send_multipart(frames, 0)
                .expect("the daemon keeps reading its socket");
            self.sent.total += 1;
            self.sent.invalid += u64::from(invalid);
        }
    }
}

fn encoded(message: Message) -> Vec<Vec<u8>> {
    message.into_frames().iter().map(|f| f.to_vec()).collect()
}

/// A frame no protobuf decoder takes: a run of varint continuation bytes.
fn undecodable(rng: &mut Rng) -> Vec<u8> {
    vec![0xFF; 11 + rng.below(32) as usize]
}

fn random_frames(rng: &mut Rng) -> Vec<Vec<u8>> {
    let n = 1 + rng.below(4) as usize;
    (0..n)
        .map(|_| {
            let max = if rng.below(8) == 0 { 8192 } else { 64 };
            rng.bytes(max)
        })
        .collect()
}

/// The `i`-th message for a ROUTER, and whether it is invalid by
/// construction.
fn protocol_garbage(i: u64, rng: &mut Rng) -> (Vec<Vec<u8>>, bool) {
    match i % 5 {
        // An empty header: protocol version 0.0.
        0 => (vec![Vec::new()], true),
        1 => (vec![undecodable(rng)], true),
        // Valid, but a kind no daemon's bound socket takes.
        2 => (encoded(Message::Shutdown), true),
        // A lone payload both inline and as a frame (§3.3 step 5).
        3 => {
            let mut frames = encoded(Message::Request(Request {
                request_type: 1 + rng.below(1000) as u32,
                request_id: rng.next(),
                flags: lhcluster::Flags::empty(),
                route: Vec::new(),
                reply_to: None,
                deadline_ms: 0,
                payload: vec![lhcluster::Frame::from(&b"inline"[..])],
            }));
            frames.push(b"and a frame".to_vec());
            (frames, true)
        }
        _ => (random_frames(rng), false),
    }
}

/// The `i`-th message for a notify broker's backend.
fn notification_garbage(i: u64, rng: &mut Rng) -> (Vec<Vec<u8>>, bool) {
    let topic = b"garbage".to_vec();
    match i % 4 {
        // A topic without a header.
        0 => (vec![topic], true),
        1 => (vec![topic, undecodable(rng)], true),
        // A valid header of the wrong kind.
        2 => {
            let mut frames = vec![topic];
            frames.extend(encoded(Message::Shutdown));
            (frames, true)
        }
        _ => (random_frames(rng), false),
    }
}

/// A message for a notify broker's frontend.
fn subscriber_garbage(rng: &mut Rng) -> (Vec<Vec<u8>>, bool) {
    let mut frame = rng.bytes(256);
    match frame.first_mut() {
        Some(first) => *first = 2 + (*first % 254),
        None => frame.push(0x42),
    }
    (vec![frame], true)
}
