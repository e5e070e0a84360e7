//! Moving whole protocol messages between ZeroMQ sockets and the codec.

use crate::curve::SocketCurve;
use crate::error::{Error, zmq_err};
use crate::outbox::{OVERHEAD, Queued, Refused};
use crate::protocol::{Encoded, Frame, Message, Payload};

/// Sets one option of a ZeroMQ socket, `socket.setter(value)`, naming the
/// option (`"ZMQ_…"`) in the error: `set_option!(socket, set_linger(0),
/// "ZMQ_LINGER")?`.
macro_rules! set_option {
    ($socket:expr, $setter:ident($value:expr), $option:literal) => {
        $socket
            .$setter($value)
            .map_err($crate::error::zmq_err(concat!("setting ", $option)))
    };
}
pub(crate) use set_option;

/// One multipart message as received.
#[derive(Debug)]
pub(crate) struct Incoming {
    /// The routing id (ROUTER sockets only).
    pub(crate) identity: Option<Frame>,
    /// The header frame, if the message has one.
    pub(crate) header: Option<Frame>,
    /// The frames after the header.
    pub(crate) payload: Payload,
    /// The message's size, when over the reader's limits: its frames were
    /// dropped, and so must the message be ([`try_recv_limited`]).
    pub(crate) oversized: Option<Oversized>,
}

/// How large a message over a reader's limits was (after the routing id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Oversized {
    /// Its frames.
    pub(crate) frames: usize,
    /// Its bytes, header included.
    pub(crate) bytes: usize,
}

/// The one text every role logs and counts an oversized message by.
impl std::fmt::Display for Oversized {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "a message of {} frames and {} bytes, over max_message_frames or \
             max_message_size: dropped",
            self.frames, self.bytes
        )
    }
}

/// What a reader keeps of a message: at most this many frames, and this
/// many bytes in all (header and payload frames).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) frames: usize,
    pub(crate) bytes: usize,
}

impl Limits {
    /// No limit.
    pub(crate) const NONE: Limits = Limits {
        frames: usize::MAX,
        bytes: usize::MAX,
    };
}

/// Most messages read from one socket in one go, so that a flood on one
/// socket cannot starve the other sockets, the commands or the ticks, and
/// the actions queued meanwhile stay few.
pub(crate) const READ_BATCH: usize = 256;

/// The next waiting message: `None` when nothing waits, or when receiving
/// failed (logged; the caller's batch ends, and its next poll tries again).
pub(crate) fn recv_next(socket: &zmq::Socket, routed: bool) -> Option<Incoming> {
    try_recv(socket, routed).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "receive failed");
        None
    })
}

/// Receives one whole multipart message without blocking; `Ok(None)` when
/// nothing is waiting.
pub(crate) fn try_recv(socket: &zmq::Socket, routed: bool) -> zmq::Result<Option<Incoming>> {
    try_recv_limited(socket, routed, Limits::NONE)
}

/// [`recv_next`] within `limits` (after the routing id): a larger message
/// is still read whole (libzmq delivers it whole), but only measured
/// (`oversized`), so that a peer cannot make the role hold or pass on more
/// frames or bytes than that.
pub(crate) fn recv_next_limited(
    socket: &zmq::Socket,
    routed: bool,
    limits: Limits,
) -> Option<Incoming> {
    try_recv_limited(socket, routed, limits).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "receive failed");
        None
    })
}

/// [`try_recv`] within `limits` (see [`recv_next_limited`]).
pub(crate) fn try_recv_limited(
    socket: &zmq::Socket,
    routed: bool,
    limits: Limits,
) -> zmq::Result<Option<Incoming>> {
    let Some(first) = recv_first(socket)? else {
        return Ok(None);
    };
    let mut more = first.get_more();
    let (identity, header) = if routed {
        let header = if more {
            let h = socket.recv_msg(0)?;
            more = h.get_more();
            Some(h)
        } else {
            None
        };
        (Some(first), header)
    } else {
        (None, Some(first))
    };
    let mut payload = Payload::new();
    // The header counts as one frame.
    let mut size = Oversized {
        frames: 1,
        bytes: header.as_ref().map_or(0, |h| h.len()),
    };
    while more {
        let frame = socket.recv_msg(0)?;
        more = frame.get_more();
        size.frames += 1;
        size.bytes = size.bytes.saturating_add(frame.len());
        if size.frames <= limits.frames && size.bytes <= limits.bytes {
            payload.push(frame);
        }
    }
    let oversized = (size.frames > limits.frames || size.bytes > limits.bytes).then_some(size);
    if oversized.is_some() {
        payload.clear();
    }
    Ok(Some(Incoming {
        identity,
        header,
        payload,
        oversized,
    }))
}

/// The first frame of the next message, without blocking; `Ok(None)` when
/// nothing is waiting.
pub(crate) fn recv_first(socket: &zmq::Socket) -> zmq::Result<Option<Frame>> {
    match socket.recv_msg(zmq::DONTWAIT) {
        Ok(m) => Ok(Some(m)),
        Err(zmq::Error::EAGAIN) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The rest of a message whose last frame received said `more`, appended
/// to `frames` (ZeroMQ delivers a message whole: no waiting).
pub(crate) fn recv_rest(
    socket: &zmq::Socket,
    mut more: bool,
    frames: &mut Vec<Frame>,
) -> zmq::Result<()> {
    while more {
        let frame = socket.recv_msg(0)?;
        more = frame.get_more();
        frames.push(frame);
    }
    Ok(())
}

/// Sends one message, prefixed by `identity` on a ROUTER socket, without
/// blocking. `header_buf` is reused between calls to avoid an allocation.
pub(crate) fn send(
    socket: &zmq::Socket,
    identity: Option<&[u8]>,
    msg: Message,
    header_buf: &mut Vec<u8>,
) -> zmq::Result<()> {
    let Encoded { topic, payload } = msg.encode(header_buf);
    if let Some(identity) = identity {
        socket.send(identity, zmq::SNDMORE | zmq::DONTWAIT)?;
    }
    send_frames(socket, topic.as_deref(), header_buf, payload)
}

/// The frames after the routing id (or the whole message on a DEALER).
fn send_frames(
    socket: &zmq::Socket,
    topic: Option<&[u8]>,
    header: &[u8],
    payload: Payload,
) -> zmq::Result<()> {
    if let Some(topic) = topic {
        socket.send(topic, zmq::SNDMORE | zmq::DONTWAIT)?;
    }
    let last = payload.len();
    let flag = |more: bool| if more { zmq::SNDMORE } else { 0 };
    socket.send(header, flag(last > 0) | zmq::DONTWAIT)?;
    for (i, frame) in payload.into_iter().enumerate() {
        // Only the first frame can fail with EAGAIN: the rest of a started
        // multipart message is always queued.
        socket.send(frame, flag(i + 1 < last))?;
    }
    Ok(())
}

/// A message encoded for a peer of a ROUTER, kept whole while the peer's
/// pipe is full (in an [`Outbox`](crate::outbox::Outbox)).
#[derive(Debug)]
pub(crate) struct Parts {
    header: Vec<u8>,
    topic: Option<Vec<u8>>,
    payload: Payload,
    outcome: bool,
}

impl Queued for Parts {
    fn bytes(&self) -> usize {
        let frames: usize = self.payload.iter().map(|f| f.len()).sum();
        self.header.len() + self.topic.as_ref().map_or(0, Vec::len) + frames + OVERHEAD
    }

    fn is_outcome(&self) -> bool {
        self.outcome
    }
}

/// Sends one message to a ROUTER's peer without blocking; when its pipe is
/// full, the message comes back encoded ([`Refused::Full`]), to be kept and
/// sent later with [`send_parts`]. Any other refusal means the peer is
/// gone (`EHOSTUNREACH` with `ROUTER_MANDATORY`).
pub(crate) fn send_routed(
    socket: &zmq::Socket,
    peer: &[u8],
    msg: Message,
    header_buf: &mut Vec<u8>,
) -> Result<(), Refused<Parts>> {
    let outcome = is_outcome(&msg);
    let Encoded { topic, payload } = msg.encode(header_buf);
    match socket.send(peer, zmq::SNDMORE | zmq::DONTWAIT) {
        Ok(()) => {}
        Err(zmq::Error::EAGAIN) => {
            // The slow path only: the header leaves the reused buffer.
            return Err(Refused::Full(Parts {
                header: header_buf.clone(),
                topic,
                payload,
                outcome,
            }));
        }
        Err(e) => return Err(gone(&e)),
    }
    send_frames(socket, topic.as_deref(), header_buf, payload).map_err(|e| gone(&e))
}

/// A message encoded whole, to go behind a peer's backlog.
pub(crate) fn encode_parts(msg: Message, header_buf: &mut Vec<u8>) -> Parts {
    let outcome = is_outcome(&msg);
    let Encoded { topic, payload } = msg.encode(header_buf);
    Parts {
        header: header_buf.clone(),
        topic,
        payload,
        outcome,
    }
}

/// A response or a receipt: what a client waits for.
fn is_outcome(msg: &Message) -> bool {
    matches!(
        msg,
        Message::Response(_) | Message::ReceiptSent(_) | Message::ReceiptReceived(_)
    )
}

/// Sends a message [`send_routed`] gave back.
pub(crate) fn send_parts(
    socket: &zmq::Socket,
    peer: &[u8],
    parts: Parts,
) -> Result<(), Refused<Parts>> {
    match socket.send(peer, zmq::SNDMORE | zmq::DONTWAIT) {
        Ok(()) => {}
        Err(zmq::Error::EAGAIN) => return Err(Refused::Full(parts)),
        Err(e) => return Err(gone(&e)),
    }
    let Parts {
        header,
        topic,
        payload,
        ..
    } = parts;
    send_frames(socket, topic.as_deref(), &header, payload).map_err(|e| gone(&e))
}

fn gone<T>(e: &zmq::Error) -> Refused<T> {
    tracing::debug!(error = %e, "message undeliverable");
    Refused::Gone
}

/// A DEALER with our stable routing id, high-water mark `hwm` and CURVE
/// side `curve` (the role's config), connected to `endpoint`.
pub(crate) fn dealer(
    endpoint: &str,
    routing_id: &[u8],
    hwm: i32,
    curve: Option<&SocketCurve>,
) -> Result<zmq::Socket, Error> {
    dealer_monitored(endpoint, routing_id, hwm, curve, None)
}

/// [`dealer`], with the socket's `events` published on the `inproc://`
/// endpoint `monitor` (a PAIR connected to it reads them) from before its
/// connect, so that none is missed.
pub(crate) fn dealer_monitored(
    endpoint: &str,
    routing_id: &[u8],
    hwm: i32,
    curve: Option<&SocketCurve>,
    monitor: Option<(&str, i32)>,
) -> Result<zmq::Socket, Error> {
    let socket = new_socket(zmq::DEALER, "creating a DEALER socket", 200, hwm)?;
    if let Some((monitor, events)) = monitor {
        socket
            .monitor(monitor, events)
            .map_err(zmq_err("monitoring a socket"))?;
    }
    set_option!(socket, set_identity(routing_id), "ZMQ_ROUTING_ID")?;
    set_option!(socket, set_reconnect_ivl(50), "ZMQ_RECONNECT_IVL")?;
    set_option!(socket, set_reconnect_ivl_max(1000), "ZMQ_RECONNECT_IVL_MAX")?;
    crate::curve::apply(curve, &socket)?;
    socket.connect(endpoint).map_err(|source| Error::Connect {
        endpoint: endpoint.to_owned(),
        source,
    })?;
    Ok(socket)
}

/// A socket of the shared context with high-water marks `hwm`, per peer
/// (a ROUTER refuses messages beyond it, counted as undeliverable; it
/// never drops them silently), and `linger_ms` (how long queued messages
/// may still leave after it is closed).
fn new_socket(
    kind: zmq::SocketType,
    creating: &'static str,
    linger_ms: i32,
    hwm: i32,
) -> Result<zmq::Socket, Error> {
    let socket = crate::context().socket(kind).map_err(zmq_err(creating))?;
    set_option!(socket, set_sndhwm(hwm), "ZMQ_SNDHWM")?;
    set_option!(socket, set_rcvhwm(hwm), "ZMQ_RCVHWM")?;
    set_option!(socket, set_linger(linger_ms), "ZMQ_LINGER")?;
    Ok(socket)
}

/// Sets `ZMQ_MAXMSGSIZE` on a socket about to bind: a peer that sends a
/// frame larger than `bytes` (plus [`FRAMING_ROOM`]) has its connection cut
/// by libzmq (docs/security.md, "Limits on input").
pub(crate) fn set_max_message_size(socket: &zmq::Socket, bytes: usize) -> Result<(), Error> {
    let wire = bytes.saturating_add(FRAMING_ROOM);
    set_option!(
        socket,
        set_maxmsgsize(i64::try_from(wire).unwrap_or(i64::MAX)),
        "ZMQ_MAXMSGSIZE"
    )
}

/// libzmq checks a frame's size as it comes off the wire, and under CURVE
/// a frame there is its plaintext plus 33 bytes (`"\x07MESSAGE"`, the
/// nonce, a flags byte and the MAC). The socket's limit leaves this much
/// room, so that a message within `max_message_size`, which the role's own
/// check counts in plaintext, is never cut.
const FRAMING_ROOM: usize = 64;

/// A bound ROUTER as the broker and the proxy use it, with high-water mark
/// `hwm` inbound, `sndhwm` outbound, CURVE side `curve` and largest frame
/// `max_message_size` (the role's config): what does not fit in a peer's
/// small outbound pipe waits in the role's outbox, which counts bytes
/// (docs/bounds.md §2).
pub(crate) fn router(
    endpoint: &str,
    (hwm, sndhwm): (i32, i32),
    curve: Option<&SocketCurve>,
    max_message_size: usize,
) -> Result<zmq::Socket, Error> {
    let socket = new_socket(zmq::ROUTER, "creating a ROUTER socket", 1000, hwm)?;
    set_max_message_size(&socket, max_message_size)?;
    set_option!(socket, set_sndhwm(sndhwm), "ZMQ_SNDHWM")?;
    // A peer that reconnects with the same routing id takes its place.
    set_option!(socket, set_router_handover(true), "ZMQ_ROUTER_HANDOVER")?;
    // Report unroutable messages instead of dropping them silently.
    set_option!(socket, set_router_mandatory(true), "ZMQ_ROUTER_MANDATORY")?;
    crate::curve::apply(curve, &socket)?;
    bind(&socket, endpoint)?;
    Ok(socket)
}

/// A bound PUB socket (the broker's watch tap): it only sends, so a
/// subscriber's frames are held to 8 KiB (a subscription is a topic
/// prefix; the limit also applies to the CURVE handshake, whose INITIATE
/// is some 300 bytes), and its queue per subscriber to `hwm` messages,
/// past which a slow subscriber misses events rather than holding memory.
pub(crate) fn publisher(
    endpoint: &str,
    hwm: i32,
    curve: Option<&SocketCurve>,
) -> Result<zmq::Socket, Error> {
    let socket = new_socket(zmq::PUB, "creating a PUB socket", 0, hwm)?;
    set_max_message_size(&socket, 8 * 1024)?;
    crate::curve::apply(curve, &socket)?;
    bind(&socket, endpoint)?;
    Ok(socket)
}

/// Binds `socket` to `endpoint`, the error naming the endpoint.
pub(crate) fn bind(socket: &zmq::Socket, endpoint: &str) -> Result<(), Error> {
    socket.bind(endpoint).map_err(|source| Error::Bind {
        endpoint: endpoint.to_owned(),
        source,
    })
}

/// The endpoint a bound socket actually listens on: one to connect to
/// (`tcp://…:0` resolved, a wildcard address shown as 127.0.0.1), and the
/// exact string libzmq reports, which `unbind` needs.
pub(crate) fn bound_endpoints(socket: &zmq::Socket, configured: &str) -> (String, String) {
    match socket.get_last_endpoint() {
        Ok(Ok(ep)) if !ep.is_empty() => (ep.replace("0.0.0.0", "127.0.0.1"), ep),
        _ => (configured.to_owned(), configured.to_owned()),
    }
}

/// A `zmq::poll` timeout for `left`, in milliseconds rounded up: rounded
/// down, the last millisecond before a deadline would be a string of
/// zero-timeout polls (a busy loop).
pub(crate) fn poll_timeout_ms(left: std::time::Duration) -> i64 {
    i64::try_from(left.as_nanos().div_ceil(1_000_000)).unwrap_or(i64::MAX)
}

/// The earliest of a driver's wake-up times (`None`: nothing to wake up
/// for), the `until` of [`wait`].
pub(crate) fn earliest(
    wake_ups: impl IntoIterator<Item = Option<std::time::Instant>>,
) -> Option<std::time::Instant> {
    wake_ups.into_iter().flatten().min()
}

/// What [`wait`] found readable.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Ready {
    /// The doorbell rang (commands, or finished work, are waiting).
    pub(crate) doorbell: bool,
    /// Each socket passed in, in order (`false` for an absent one).
    pub(crate) sockets: [bool; 2],
}

/// Sleeps until the doorbell or `fd` (a socket's signalling descriptor,
/// see [`crate::link::Link::input_fd`]) is readable, or `until`, without
/// touching any socket; returns whether the doorbell rang.
pub(crate) fn wait_fds(
    doorbell: &crate::wake::Listener,
    fd: Option<std::os::fd::RawFd>,
    until: std::time::Instant,
) -> zmq::Result<bool> {
    let timeout = poll_timeout_ms(until.saturating_duration_since(std::time::Instant::now()));
    let mut items: smallvec::SmallVec<[zmq::PollItem<'_>; 2]> = smallvec::SmallVec::new();
    items.push(zmq::PollItem::from_fd(doorbell.fd(), zmq::POLLIN));
    items.extend(fd.map(|fd| zmq::PollItem::from_fd(fd, zmq::POLLIN)));
    match zmq::poll(&mut items, timeout) {
        Ok(_) => Ok(items[0].is_readable()),
        Err(zmq::Error::EINTR) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Sleeps in `zmq::poll` until the doorbell (if any) or one of (up to two)
/// sockets is readable, or `until` passes (`None`: no deadline). An
/// interrupted poll (EINTR) is a plain wake-up; any other error is
/// returned, and ends the driver.
pub(crate) fn wait(
    doorbell: Option<&crate::wake::Listener>,
    sockets: [Option<&zmq::Socket>; 2],
    until: Option<std::time::Instant>,
) -> zmq::Result<Ready> {
    let timeout = until.map_or(-1, |until| {
        poll_timeout_ms(until.saturating_duration_since(std::time::Instant::now()))
    });
    // On the stack: this runs once per wake-up of every driver.
    let mut items: smallvec::SmallVec<[zmq::PollItem<'_>; 3]> = smallvec::SmallVec::new();
    if let Some(doorbell) = doorbell {
        items.push(zmq::PollItem::from_fd(doorbell.fd(), zmq::POLLIN));
    }
    items.extend(
        sockets
            .iter()
            .flatten()
            .map(|s| s.as_poll_item(zmq::POLLIN)),
    );
    match zmq::poll(&mut items, timeout) {
        Ok(_) => {}
        Err(zmq::Error::EINTR) => return Ok(Ready::default()),
        Err(e) => return Err(e),
    }
    let mut next = 0;
    let mut ready = Ready::default();
    if doorbell.is_some() {
        ready.doorbell = items[0].is_readable();
        next = 1;
    }
    for (i, socket) in sockets.iter().enumerate() {
        if socket.is_some() {
            ready.sockets[i] = items[next].is_readable();
            next += 1;
        }
    }
    Ok(ready)
}
