//! Encoding and (total) decoding of protocol v1 messages.

use std::borrow::Cow;

use prost::Message as _;

use super::header::{self, InlinePayload};
use super::pb;
use super::types::*;
use super::{MAX_TYPE_NAME_LEN, PROTOCOL_MAJOR, PROTOCOL_MINOR};

/// A lone payload frame of at most this many bytes travels inside the
/// header frame (`inline_payload`, docs/protocol.md §2) instead of after it.
///
/// Each frame costs every hop a fixed amount of work (libzmq's per-frame
/// bookkeeping in the sending thread, its I/O threads and the receiving
/// thread), worth about a kilobyte of copying; larger payloads are moved as
/// frames, never copied.
pub const INLINE_PAYLOAD_MAX: usize = 1024;

/// The frames of an encoded message besides its header.
#[derive(Debug)]
pub struct Encoded {
    /// Topic frame (notifications only); it goes before the header frame.
    pub topic: Option<Vec<u8>>,
    /// Payload frames; they go after the header frame. Empty when the
    /// payload went into the header (a lone frame of at most
    /// [`INLINE_PAYLOAD_MAX`] bytes).
    pub payload: Payload,
}

impl Message {
    /// Encodes the header into `header` (which is cleared first) and returns
    /// the other frames, moved out of `self`. A lone payload frame of at most
    /// [`INLINE_PAYLOAD_MAX`] bytes is copied into the header instead.
    pub fn encode(self, header: &mut Vec<u8>) -> Encoded {
        let start = |header, kind: pb::Kind| {
            header::Writer::start(header, PROTOCOL_MAJOR, PROTOCOL_MINOR, kind as i32)
        };
        let mut topic = None;
        let payload = match self {
            Message::Hello(hello) => {
                let mut w = start(header, pb::Kind::Hello);
                w.heartbeat_ms(hello.heartbeat_ms);
                w.route(&hello.route);
                w.name(hello.name.as_deref().unwrap_or_default());
                Payload::new()
            }
            Message::Welcome {
                heartbeat_ms,
                max_message_size,
            } => {
                let mut w = start(header, pb::Kind::Welcome);
                w.heartbeat_ms(heartbeat_ms);
                w.max_message_size(max_message_size);
                Payload::new()
            }
            Message::Request(r) => {
                let mut w = start(header, pb::Kind::Request);
                w.flags(r.flags.bits());
                w.request_type(r.request_type);
                w.request_id(r.request_id);
                w.route(&r.route);
                w.reply_to(r.reply_to.as_deref().unwrap_or_default());
                w.deadline_ms(r.deadline_ms);
                r.payload
            }
            Message::Dispatch(d) => {
                write_dispatch(start(header, pb::Kind::Dispatch), &d, 0);
                d.payload
            }
            Message::Result(r) => {
                let w = start(header, pb::Kind::Result);
                let key = (r.request_type, r.request_id);
                write_answer(
                    w,
                    key,
                    r.status,
                    r.error.as_deref(),
                    (r.attempt, r.dispatch_tag),
                );
                r.payload
            }
            Message::Response(r) => {
                let mut w = start(header, pb::Kind::Response);
                w.request_type(r.request_type);
                w.request_id(r.request_id);
                w.status(status_to_pb(r.status) as i32);
                w.route(&r.route);
                w.error(r.error.as_deref().unwrap_or_default());
                r.payload
            }
            Message::ReceiptSent(r) => {
                write_ref(start(header, pb::Kind::ReceiptSent), &r);
                Payload::new()
            }
            Message::ReceiptReceived(r) => {
                write_ref(start(header, pb::Kind::ReceiptReceived), &r);
                Payload::new()
            }
            Message::Ready(r) => {
                let mut w = start(header, pb::Kind::Ready);
                w.heartbeat_ms(r.heartbeat_ms);
                w.capacity(r.capacity);
                w.request_types(r.request_types.iter().copied());
                w.name(r.name.as_deref().unwrap_or_default());
                w.type_names(r.type_names.iter().map(String::as_str));
                Payload::new()
            }
            Message::Heartbeat { heartbeat_ms } => {
                start(header, pb::Kind::Heartbeat).heartbeat_ms(heartbeat_ms);
                Payload::new()
            }
            Message::Disconnect { route } => {
                start(header, pb::Kind::Disconnect).route(&route);
                Payload::new()
            }
            Message::Shutdown => {
                start(header, pb::Kind::Shutdown);
                Payload::new()
            }
            Message::Reregister => {
                start(header, pb::Kind::Reregister);
                Payload::new()
            }
            Message::Error(e) => {
                let mut w = start(header, pb::Kind::Error);
                if let Some(r) = &e.request {
                    w.request_type(r.request_type);
                    w.request_id(r.request_id);
                }
                if let Some(status) = e.status {
                    w.status(status_to_pb(status) as i32);
                }
                if let Some(r) = &e.request {
                    w.route(&r.route);
                }
                w.error(&e.error);
                Payload::new()
            }
            Message::StatsQuery => {
                start(header, pb::Kind::StatsQuery);
                Payload::new()
            }
            Message::StatsReply { payload } => {
                start(header, pb::Kind::StatsReply);
                payload
            }
            Message::PeerHello(hello) => {
                let mut w = start(header, pb::Kind::PeerHello);
                w.heartbeat_ms(hello.heartbeat_ms);
                w.name(hello.name.as_deref().unwrap_or_default());
                w.broker_id(hello.broker_id);
                Payload::new()
            }
            Message::PeerWelcome {
                broker_id,
                heartbeat_ms,
            } => {
                let mut w = start(header, pb::Kind::PeerWelcome);
                w.heartbeat_ms(heartbeat_ms);
                w.broker_id(broker_id);
                Payload::new()
            }
            Message::Serves(table) => {
                let mut w = start(header, pb::Kind::Serves);
                w.request_types(table.iter().map(|t| t.request_type));
                w.type_capacity(table.iter().map(|t| t.capacity));
                w.type_free(table.iter().map(|t| t.free));
                w.type_pending(table.iter().map(|t| t.pending));
                // Names for every type or for none: the list stays parallel.
                if table.iter().any(|t| t.name.is_some()) {
                    w.type_names(table.iter().map(|t| t.name.as_deref().unwrap_or_default()));
                }
                Payload::new()
            }
            Message::Forward(f) => {
                let r = f.request;
                let mut w = start(header, pb::Kind::Forward);
                w.flags(r.flags.bits());
                w.request_type(r.request_type);
                w.request_id(r.request_id);
                w.route(&r.route);
                w.hops(f.hops);
                w.reply_route(f.reply_route.as_deref().unwrap_or_default());
                w.deadline_ms(r.deadline_ms);
                r.payload
            }
            Message::Execute(e) => {
                write_dispatch(start(header, pb::Kind::Execute), &e.dispatch, e.hops);
                e.dispatch.payload
            }
            Message::Executed(e) => {
                let r = e.response;
                let w = start(header, pb::Kind::Executed);
                let key = (r.request_type, r.request_id);
                write_answer(
                    w,
                    key,
                    r.status,
                    r.error.as_deref(),
                    (e.attempt, e.dispatch_tag),
                );
                r.payload
            }
            Message::View { broker_id, members } => {
                let mut w = start(header, pb::Kind::View);
                w.broker_id(broker_id);
                w.members(&members);
                Payload::new()
            }
            Message::Cancel(c) => {
                let mut w = start(header, pb::Kind::Cancel);
                w.request_type(c.request_type);
                w.request_id(c.request_id);
                w.route(&c.route);
                w.dispatch_tag(c.dispatch_tag);
                Payload::new()
            }
            Message::Notification(n) => {
                start(header, pb::Kind::Notification).notify_id(n.notify_id.unwrap_or(0));
                topic = Some(topic_frame(&n.topic));
                n.payload
            }
        };
        let payload = inline_lone_frame(payload, header);
        Encoded { topic, payload }
    }

    /// Encodes into the complete list of frames, in wire order. (The roles
    /// encode into a reused header buffer, [`Message::encode`]: this is for
    /// tests, benches and the fuzz target.)
    #[cfg(any(test, feature = "unstable-internals"))]
    pub fn into_frames(self) -> Vec<Frame> {
        let mut header = Vec::new();
        let Encoded { topic, payload } = self.encode(&mut header);
        let mut frames = Vec::with_capacity(2 + payload.len());
        if let Some(topic) = topic {
            frames.push(Frame::from(topic));
        }
        frames.push(Frame::from(header));
        frames.extend(payload);
        frames
    }
}

/// Appends a lone small payload frame to the encoded header as its
/// `inline_payload` field; returns what still goes as frames.
fn inline_lone_frame(payload: Payload, header: &mut Vec<u8>) -> Payload {
    if let [frame] = payload.as_slice() {
        // One look at the frame: each goes through libzmq.
        let bytes: &[u8] = frame;
        if bytes.len() <= INLINE_PAYLOAD_MAX {
            header::append_inline_payload(header, bytes);
            return Payload::new();
        }
    }
    payload
}

/// The payload of a decoded header and the frames that followed it: the
/// inline payload as one frame, else the frames.
fn take_payload(
    inline: InlinePayload<'_>,
    frames: Payload,
    kind: &'static str,
) -> Result<Payload, DecodeError> {
    match inline {
        None => Ok(frames),
        Some(_) if !frames.is_empty() => Err(inline_with_frames(kind)),
        Some(bytes) => Ok(vec![Frame::from(&bytes[..])]),
    }
}

/// A header carrying its payload inline, followed by payload frames.
fn inline_with_frames(kind: &'static str) -> DecodeError {
    DecodeError::InvalidField {
        kind,
        field: "inline_payload",
        reason: "payload frames follow a header that carries the payload inline",
    }
}

/// The topic frame of a notification: the UTF-8 topic followed by one NUL
/// byte, so that a ZeroMQ prefix subscription to the same bytes matches this
/// topic exactly and nothing longer.
pub fn topic_frame(topic: &str) -> Vec<u8> {
    let mut frame = Vec::with_capacity(topic.len() + 1);
    frame.extend_from_slice(topic.as_bytes());
    frame.push(0);
    frame
}

/// The fields of a DISPATCH, or of the EXECUTE that carries one (with its
/// `hops`; 0 for a DISPATCH, which has none).
fn write_dispatch(mut w: header::Writer<'_>, d: &Dispatch, hops: u32) {
    w.flags(d.flags.bits());
    w.request_type(d.request_type);
    w.request_id(d.request_id);
    w.attempt(d.attempt);
    w.dispatch_tag(d.dispatch_tag);
    w.hops(hops);
    w.deadline_ms(d.deadline_ms);
}

/// The fields of a RESULT, or of the EXECUTED that carries one back: the
/// outcome of the dispatch `(attempt, dispatch_tag)` answers.
fn write_answer(
    mut w: header::Writer<'_>,
    (request_type, request_id): (RequestType, RequestId),
    status: Status,
    error: Option<&str>,
    (attempt, dispatch_tag): (u32, u64),
) {
    w.request_type(request_type);
    w.request_id(request_id);
    w.status(status_to_pb(status) as i32);
    w.error(error.unwrap_or_default());
    w.attempt(attempt);
    w.dispatch_tag(dispatch_tag);
}

/// The fields of a message that names a request and nothing else.
fn write_ref(mut w: header::Writer<'_>, r: &RequestRef) {
    w.request_type(r.request_type);
    w.request_id(r.request_id);
    w.route(&r.route);
}

fn status_to_pb(s: Status) -> pb::Status {
    match s {
        Status::Ok => pb::Status::Ok,
        Status::Failed => pb::Status::Failed,
        Status::BadRequest => pb::Status::BadRequest,
        Status::Rejected => pb::Status::Rejected,
        Status::WorkerDeath => pb::Status::WorkerDeath,
        Status::Redirected => pb::Status::Redirected,
        Status::Overloaded => pb::Status::Overloaded,
        Status::NoWorkers => pb::Status::NoWorkers,
        Status::UnknownReplyTo => pb::Status::UnknownReplyTo,
        Status::Expired => pb::Status::Expired,
        Status::Forbidden => pb::Status::Forbidden,
        Status::Returned => pb::Status::Returned,
    }
}

fn status_from_pb(kind: &'static str, value: i32) -> Result<Status, DecodeError> {
    let status = match pb::Status::try_from(value) {
        Ok(pb::Status::Ok) => Status::Ok,
        Ok(pb::Status::Failed) => Status::Failed,
        Ok(pb::Status::BadRequest) => Status::BadRequest,
        Ok(pb::Status::Rejected) => Status::Rejected,
        Ok(pb::Status::WorkerDeath) => Status::WorkerDeath,
        Ok(pb::Status::Redirected) => Status::Redirected,
        Ok(pb::Status::Overloaded) => Status::Overloaded,
        Ok(pb::Status::NoWorkers) => Status::NoWorkers,
        Ok(pb::Status::UnknownReplyTo) => Status::UnknownReplyTo,
        Ok(pb::Status::Expired) => Status::Expired,
        Ok(pb::Status::Forbidden) => Status::Forbidden,
        Ok(pb::Status::Returned) => Status::Returned,
        Ok(pb::Status::Unspecified) | Err(_) => {
            return Err(DecodeError::InvalidStatus { kind, value });
        }
    };
    Ok(status)
}

/// The status of a RESPONSE or an EXECUTED: an outcome. RETURNED, a
/// worker's RESULT only (protocol 1.8), is refused there as unknown: a
/// requester must never take it for the end of its request.
fn outcome_from_pb(kind: &'static str, value: i32) -> Result<Status, DecodeError> {
    match status_from_pb(kind, value)? {
        Status::Returned => Err(DecodeError::InvalidStatus { kind, value }),
        status => Ok(status),
    }
}

/// Decodes a message from its complete list of frames (no routing identity).
/// Notifications have their own entry point, [`decode_notification`].
/// (The roles decode header and payload apart, [`decode_parts`]: this is
/// for tests, benches and the fuzz target.)
#[cfg(any(test, feature = "unstable-internals"))]
pub fn decode(mut frames: Vec<Frame>) -> Result<Message, DecodeError> {
    if frames.is_empty() {
        return Err(DecodeError::NoHeader);
    }
    let header = frames.remove(0);
    decode_parts(&header, frames)
}

/// Decodes a notification from `[topic | header | payload…]`.
pub fn decode_notification(mut frames: Vec<Frame>) -> Result<Message, DecodeError> {
    let payload = if frames.len() > 2 {
        frames.split_off(2)
    } else {
        Payload::new()
    };
    let (topic, h, inline) = notification_head(&frames)?;
    Ok(Message::Notification(RawNotification {
        topic,
        notify_id: (h.notify_id != 0).then_some(h.notify_id),
        payload: take_payload(inline, payload, "NOTIFICATION")?,
    }))
}

/// Validates a notification `[topic | header | payload…]` as
/// [`decode_notification`] would, without copying or taking apart any frame
/// (for a broker that forwards it verbatim); returns its topic.
pub(crate) fn check_notification(frames: &[Frame]) -> Result<String, DecodeError> {
    let (topic, _, inline) = notification_head(frames)?;
    if inline.is_some() && frames.len() > 2 {
        return Err(inline_with_frames("NOTIFICATION"));
    }
    Ok(topic)
}

/// The topic and header of `[topic | header | …]`, the header checked to be
/// a NOTIFICATION.
fn notification_head(
    frames: &[Frame],
) -> Result<(String, pb::Header, InlinePayload<'_>), DecodeError> {
    let topic = frames
        .first()
        .ok_or(DecodeError::InvalidTopic("no topic frame"))?;
    let topic = parse_topic(topic)?;
    let header = frames.get(1).ok_or(DecodeError::NoHeader)?;
    let mut h = pb::Header::default();
    let inline = decode_header(header, &mut h)?;
    match kind_of(&h)? {
        pb::Kind::Notification => Ok((topic, h, inline)),
        _ => Err(DecodeError::UnexpectedKind(kind_name(h.kind))),
    }
}

/// Parses the topic frame written by [`topic_frame`].
pub fn parse_topic(frame: &[u8]) -> Result<String, DecodeError> {
    let Some((&0, text)) = frame.split_last() else {
        return Err(DecodeError::InvalidTopic("missing NUL terminator"));
    };
    if text.is_empty() {
        return Err(DecodeError::InvalidTopic("empty topic"));
    }
    if text.contains(&0) {
        return Err(DecodeError::InvalidTopic("NUL inside topic"));
    }
    std::str::from_utf8(text)
        .map(str::to_owned)
        .map_err(|_| DecodeError::InvalidTopic("topic is not UTF-8"))
}

/// Identifies the request a (possibly invalid) header talks about, so that a
/// receiver can address an error reply about it. `None` when the header does
/// not parse or names no request type.
pub fn peek_request_ref(header: &[u8]) -> Option<RequestRef> {
    let h = pb::Header::decode(header).ok()?;
    (h.request_type != 0).then_some(RequestRef {
        request_type: h.request_type,
        request_id: h.request_id,
        route: h.route,
    })
}

/// The minor version a (possibly invalid) header says its sender speaks
/// (0 when absent, or when the header does not parse).
pub(crate) fn peek_minor(header: &[u8]) -> u32 {
    pb::Header::decode(header).map_or(0, |h| h.minor)
}

/// The dispatch a (possibly invalid) RESULT header says it answers: its
/// `attempt` and `dispatch_tag`, each 0 when absent or when the header does
/// not parse (to tell a stale one, §8.3).
pub(crate) fn peek_answered(header: &[u8]) -> (u32, u64) {
    pb::Header::decode(header).map_or((0, 0), |h| (h.attempt, h.dispatch_tag))
}

/// The kind name a (possibly invalid) header claims, e.g. `"RESULT"`.
pub fn peek_kind(header: &[u8]) -> Option<&'static str> {
    let h = pb::Header::decode(header).ok()?;
    pb::Kind::try_from(h.kind).ok().map(|k| k.as_str_name())
}

/// Decodes a header frame: the fast path for the usual encodings, `prost`
/// for anything else (and for the error of a malformed one).
/// Into `h`, a default `Header` (see [`header::decode_into`]).
fn decode_header<'a>(
    bytes: &'a [u8],
    h: &mut pb::Header,
) -> Result<InlinePayload<'a>, DecodeError> {
    let inline = match header::decode_into(bytes, h) {
        Some(inline) => inline,
        None => {
            *h = pb::Header::decode(bytes)?;
            h.inline_payload.take().map(Cow::Owned)
        }
    };
    if h.major != PROTOCOL_MAJOR {
        return Err(DecodeError::UnsupportedVersion {
            major: h.major,
            minor: h.minor,
        });
    }
    Ok(inline)
}

fn kind_of(h: &pb::Header) -> Result<pb::Kind, DecodeError> {
    match pb::Kind::try_from(h.kind) {
        Ok(pb::Kind::Unspecified) => Err(DecodeError::UnexpectedKind("KIND_UNSPECIFIED")),
        Ok(kind) => Ok(kind),
        Err(_) => Err(DecodeError::UnknownKind(h.kind)),
    }
}

fn kind_name(kind: i32) -> &'static str {
    pb::Kind::try_from(kind).map_or("UNKNOWN", |k| k.as_str_name())
}

/// The most broker-to-broker hops a request may take: entry → owner →
/// executor (docs/clustering.md §2).
pub const MAX_HOPS: u32 = 2;

/// A FORWARD or EXECUTE's `hops`: from 1 to `most`. A FORWARD is always
/// the first hop (entry → owner: an owner never forwards again), so it may
/// only carry 1; an EXECUTE is the first or the second (MAX_HOPS).
fn check_hops(kind: &'static str, hops: u32, most: u32) -> Result<(), DecodeError> {
    let reason = if most < MAX_HOPS {
        "a FORWARD is the first hop (1)"
    } else {
        "hop limit (2) exceeded"
    };
    match hops {
        0 => Err(DecodeError::MissingField {
            kind,
            field: "hops",
        }),
        h if h <= most => Ok(()),
        _ => Err(DecodeError::InvalidField {
            kind,
            field: "hops",
            reason,
        }),
    }
}

/// A SERVES header's table: four parallel lists, one entry per type.
fn serves_table(kind: &'static str, h: &pb::Header) -> Result<Vec<TypeServed>, DecodeError> {
    let n = h.request_types.len();
    let invalid = |field, reason| DecodeError::InvalidField {
        kind,
        field,
        reason,
    };
    if h.type_capacity.len() != n {
        return Err(invalid("type_capacity", "one entry per request type"));
    }
    // The informative lists may be left out altogether.
    for (field, list) in [
        ("type_free", &h.type_free),
        ("type_pending", &h.type_pending),
    ] {
        if !list.is_empty() && list.len() != n {
            return Err(invalid(field, "one entry per request type"));
        }
    }
    if h.request_types.contains(&0) {
        return Err(invalid("request_types", "request type 0 is reserved"));
    }
    // One entry per type: a type listed twice would have two capacities.
    let mut types = h.request_types.clone();
    types.sort_unstable();
    if types.windows(2).any(|w| w[0] == w[1]) {
        return Err(invalid("request_types", "a type is listed twice"));
    }
    if h.type_capacity.contains(&0) {
        return Err(invalid("type_capacity", "a served type has capacity"));
    }
    check_type_names(kind, h)?;
    Ok((0..n)
        .map(|i| TypeServed {
            request_type: h.request_types[i],
            capacity: h.type_capacity[i],
            free: h.type_free.get(i).copied().unwrap_or(0),
            pending: h.type_pending.get(i).copied().unwrap_or(0),
            name: h.type_names.get(i).filter(|n| !n.is_empty()).cloned(),
        })
        .collect())
}

/// A READY's or a SERVES's `type_names` (since 1.6): absent, or one per request type,
/// each at most [`MAX_TYPE_NAME_LEN`] bytes.
fn check_type_names(kind: &'static str, h: &pb::Header) -> Result<(), DecodeError> {
    let invalid = |reason| DecodeError::InvalidField {
        kind,
        field: "type_names",
        reason,
    };
    if !h.type_names.is_empty() && h.type_names.len() != h.request_types.len() {
        return Err(invalid("one entry per request type"));
    }
    if h.type_names.iter().any(|n| n.len() > MAX_TYPE_NAME_LEN) {
        return Err(invalid("a name is longer than 128 bytes"));
    }
    Ok(())
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// Decodes a message from its header frame and the frames after it.
pub fn decode_parts(header: &[u8], payload: Payload) -> Result<Message, DecodeError> {
    let mut h = pb::Header::default();
    let inline = decode_header(header, &mut h)?;
    let kind = kind_of(&h)?;
    let name = kind.as_str_name();
    let payload = take_payload(inline, payload, name)?;
    let require = |ok: bool, field: &'static str| -> Result<(), DecodeError> {
        if ok {
            Ok(())
        } else {
            Err(DecodeError::MissingField { kind: name, field })
        }
    };
    let no_payload = |payload: &Payload| -> Result<(), DecodeError> {
        if payload.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::UnexpectedPayload {
                kind: name,
                frames: payload.len(),
            })
        }
    };
    let request_ref = |h: pb::Header| -> Result<RequestRef, DecodeError> {
        require(h.request_type != 0, "request_type")?;
        Ok(RequestRef {
            request_type: h.request_type,
            request_id: h.request_id,
            route: h.route,
        })
    };
    // The fields of a DISPATCH, which an EXECUTE carries too.
    let dispatch = |h: &pb::Header, payload: Payload| -> Result<Dispatch, DecodeError> {
        require(h.request_type != 0, "request_type")?;
        require(h.attempt != 0, "attempt")?;
        Ok(Dispatch {
            request_type: h.request_type,
            request_id: h.request_id,
            flags: Flags::from_bits_retain(h.flags),
            attempt: h.attempt,
            // Optional in a DISPATCH: absent (0) from a broker that does
            // not tag (an EXECUTE requires it).
            dispatch_tag: h.dispatch_tag,
            deadline_ms: h.deadline_ms,
            payload,
        })
    };
    let message = match kind {
        pb::Kind::Unspecified => return Err(DecodeError::UnexpectedKind(name)),
        pb::Kind::Hello => {
            no_payload(&payload)?;
            require(h.heartbeat_ms != 0, "heartbeat_ms")?;
            Message::Hello(Hello {
                heartbeat_ms: h.heartbeat_ms,
                name: non_empty(h.name),
                route: h.route,
            })
        }
        pb::Kind::Welcome => {
            no_payload(&payload)?;
            require(h.heartbeat_ms != 0, "heartbeat_ms")?;
            Message::Welcome {
                heartbeat_ms: h.heartbeat_ms,
                max_message_size: h.max_message_size,
            }
        }
        pb::Kind::Request => {
            require(h.request_type != 0, "request_type")?;
            Message::Request(Request {
                request_type: h.request_type,
                request_id: h.request_id,
                flags: Flags::from_bits_retain(h.flags),
                route: h.route,
                reply_to: non_empty(h.reply_to),
                deadline_ms: h.deadline_ms,
                payload,
            })
        }
        pb::Kind::Dispatch => Message::Dispatch(dispatch(&h, payload)?),
        pb::Kind::Result => {
            require(h.request_type != 0, "request_type")?;
            let status = status_from_pb(name, h.status)?;
            if !status.is_worker_status() {
                return Err(DecodeError::InvalidStatus {
                    kind: name,
                    value: h.status,
                });
            }
            Message::Result(WorkResult {
                request_type: h.request_type,
                request_id: h.request_id,
                // Optional: absent (0) from a 1.0 worker.
                attempt: h.attempt,
                // Optional: absent (0) from a worker that predates it, or
                // answering an untagged DISPATCH.
                dispatch_tag: h.dispatch_tag,
                status,
                error: non_empty(h.error),
                payload,
            })
        }
        pb::Kind::Response => {
            require(h.request_type != 0, "request_type")?;
            let status = outcome_from_pb(name, h.status)?;
            Message::Response(Response {
                request_type: h.request_type,
                request_id: h.request_id,
                status,
                error: non_empty(h.error),
                route: h.route,
                payload,
            })
        }
        pb::Kind::ReceiptSent => {
            no_payload(&payload)?;
            Message::ReceiptSent(request_ref(h)?)
        }
        pb::Kind::ReceiptReceived => {
            no_payload(&payload)?;
            Message::ReceiptReceived(request_ref(h)?)
        }
        pb::Kind::Ready => {
            no_payload(&payload)?;
            require(h.heartbeat_ms != 0, "heartbeat_ms")?;
            require(h.capacity != 0, "capacity")?;
            require(!h.request_types.is_empty(), "request_types")?;
            if h.request_types.contains(&0) {
                return Err(DecodeError::InvalidField {
                    kind: name,
                    field: "request_types",
                    reason: "request type 0 is reserved",
                });
            }
            check_type_names(name, &h)?;
            Message::Ready(Ready {
                heartbeat_ms: h.heartbeat_ms,
                capacity: h.capacity,
                request_types: h.request_types,
                type_names: h.type_names,
                name: non_empty(h.name),
            })
        }
        pb::Kind::Heartbeat => {
            no_payload(&payload)?;
            Message::Heartbeat {
                heartbeat_ms: h.heartbeat_ms,
            }
        }
        pb::Kind::Disconnect => {
            no_payload(&payload)?;
            Message::Disconnect { route: h.route }
        }
        pb::Kind::Shutdown => {
            no_payload(&payload)?;
            Message::Shutdown
        }
        pb::Kind::Reregister => {
            no_payload(&payload)?;
            Message::Reregister
        }
        pb::Kind::Error => {
            no_payload(&payload)?;
            let request = (h.request_type != 0).then_some(RequestRef {
                request_type: h.request_type,
                request_id: h.request_id,
                route: h.route,
            });
            // Only FORBIDDEN means something on an ERROR (since 1.4); any
            // other status, known or not, is ignored, as a field the kind
            // does not use.
            let status = (h.status == pb::Status::Forbidden as i32).then_some(Status::Forbidden);
            Message::Error(ErrorReply {
                error: h.error,
                request,
                status,
            })
        }
        pb::Kind::StatsQuery => {
            no_payload(&payload)?;
            Message::StatsQuery
        }
        pb::Kind::StatsReply => Message::StatsReply { payload },
        pb::Kind::View => {
            no_payload(&payload)?;
            require(h.broker_id != 0, "broker_id")?;
            Message::View {
                broker_id: h.broker_id,
                members: h.members,
            }
        }
        pb::Kind::PeerHello => {
            no_payload(&payload)?;
            require(h.broker_id != 0, "broker_id")?;
            require(h.heartbeat_ms != 0, "heartbeat_ms")?;
            Message::PeerHello(PeerHello {
                broker_id: h.broker_id,
                heartbeat_ms: h.heartbeat_ms,
                name: non_empty(h.name),
            })
        }
        pb::Kind::PeerWelcome => {
            no_payload(&payload)?;
            require(h.broker_id != 0, "broker_id")?;
            require(h.heartbeat_ms != 0, "heartbeat_ms")?;
            Message::PeerWelcome {
                broker_id: h.broker_id,
                heartbeat_ms: h.heartbeat_ms,
            }
        }
        pb::Kind::Serves => {
            no_payload(&payload)?;
            Message::Serves(serves_table(name, &h)?)
        }
        pb::Kind::Forward => {
            require(h.request_type != 0, "request_type")?;
            // The client at the entry broker: what the owner's answers are
            // addressed to (an empty route on a route means "about an
            // EXECUTE you sent", protocol.md §18).
            require(!h.route.is_empty(), "route")?;
            check_hops(name, h.hops, 1)?;
            Message::Forward(Forward {
                request: Request {
                    request_type: h.request_type,
                    request_id: h.request_id,
                    flags: Flags::from_bits_retain(h.flags),
                    route: h.route,
                    reply_to: None,
                    deadline_ms: h.deadline_ms,
                    payload,
                },
                hops: h.hops,
                reply_route: (!h.reply_route.is_empty()).then_some(h.reply_route),
            })
        }
        pb::Kind::Execute => {
            let dispatch = dispatch(&h, payload)?;
            require(h.dispatch_tag != 0, "dispatch_tag")?;
            check_hops(name, h.hops, MAX_HOPS)?;
            Message::Execute(Execute {
                dispatch,
                hops: h.hops,
            })
        }
        pb::Kind::Executed => {
            require(h.request_type != 0, "request_type")?;
            require(h.dispatch_tag != 0, "dispatch_tag")?;
            let status = outcome_from_pb(name, h.status)?;
            Message::Executed(Executed {
                response: Response {
                    request_type: h.request_type,
                    request_id: h.request_id,
                    status,
                    error: non_empty(h.error),
                    route: Route::new(),
                    payload,
                },
                attempt: h.attempt,
                dispatch_tag: h.dispatch_tag,
            })
        }
        pb::Kind::Cancel => {
            no_payload(&payload)?;
            require(h.request_type != 0, "request_type")?;
            Message::Cancel(Cancel {
                request_type: h.request_type,
                request_id: h.request_id,
                route: h.route,
                // Optional: set towards a worker or an executor only.
                dispatch_tag: h.dispatch_tag,
            })
        }
        // A notification is only valid behind its topic frame.
        pb::Kind::Notification => return Err(DecodeError::UnexpectedKind(name)),
    };
    Ok(message)
}
