//! Property tests of the protocol v1 codec.
//!
//! 1. Every valid [`Message`] survives `into_frames` → `decode` (or
//!    `decode_notification`) unchanged, field by field and payload byte by
//!    payload byte.
//! 2. The decoders are total: arbitrary frames, and valid encodings with
//!    flipped, truncated or appended bytes, give a value or a
//!    [`DecodeError`], never a panic.
//! 3. The protobuf rules of protocol.md §3.1 hold for every message: an
//!    unknown field of any wire type is skipped, and a uint32 field written
//!    wider than 32 bits keeps its low 32 bits, on the fast path and on the
//!    `prost` fallback alike.

use lhcluster::protocol::{
    Cancel, DecodeError, Dispatch, ErrorReply, Execute, Executed, Flags, Forward, Frame, Hello,
    MAX_HOPS, Message, PeerHello, RawNotification, Ready, Request, RequestRef, Response, Status,
    TypeServed, WorkResult, decode, decode_notification, decode_parts, parse_topic,
};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::Index;

#[path = "common/decoders.rs"]
mod decoders;

// ---------------------------------------------------------------------------
// Comparable representation of a message
// ---------------------------------------------------------------------------

/// A [`Message`] with its payload frames as plain bytes, so that two
/// messages can be compared with `==` and printed on failure.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Repr {
    Hello(Hello),
    Welcome {
        heartbeat_ms: u32,
        max_message_size: u64,
    },
    Request {
        request_type: u32,
        request_id: u64,
        flags: u64,
        route: Vec<u8>,
        reply_to: Option<String>,
        deadline_ms: u32,
        payload: Vec<Vec<u8>>,
    },
    Dispatch {
        request_type: u32,
        request_id: u64,
        flags: u64,
        attempt: u32,
        dispatch_tag: u64,
        deadline_ms: u32,
        payload: Vec<Vec<u8>>,
    },
    Result {
        request_type: u32,
        request_id: u64,
        attempt: u32,
        dispatch_tag: u64,
        status: Status,
        error: Option<String>,
        payload: Vec<Vec<u8>>,
    },
    Response {
        request_type: u32,
        request_id: u64,
        status: Status,
        error: Option<String>,
        route: Vec<u8>,
        payload: Vec<Vec<u8>>,
    },
    ReceiptSent(RequestRef),
    ReceiptReceived(RequestRef),
    Ready(Ready),
    Heartbeat {
        heartbeat_ms: u32,
    },
    Disconnect {
        route: Vec<u8>,
    },
    Shutdown,
    Reregister,
    Error(ErrorReply),
    Notification {
        topic: String,
        notify_id: Option<u64>,
        payload: Vec<Vec<u8>>,
    },
    StatsQuery,
    StatsReply {
        payload: Vec<Vec<u8>>,
    },
    PeerHello(PeerHello),
    PeerWelcome {
        broker_id: u64,
        heartbeat_ms: u32,
    },
    Serves(Vec<TypeServed>),
    View {
        broker_id: u64,
        members: Vec<u64>,
    },
    /// `request` is a [`Repr::Request`].
    Forward {
        request: Box<Repr>,
        hops: u32,
        reply_route: Option<Vec<u8>>,
    },
    /// `dispatch` is a [`Repr::Dispatch`].
    Execute {
        dispatch: Box<Repr>,
        hops: u32,
    },
    /// `response` is a [`Repr::Response`].
    Executed {
        response: Box<Repr>,
        attempt: u32,
        dispatch_tag: u64,
    },
    Cancel(Cancel),
}

fn bytes_of(frames: &[Frame]) -> Vec<Vec<u8>> {
    frames.iter().map(|f| f.to_vec()).collect()
}

fn request_repr(r: &Request) -> Repr {
    Repr::Request {
        request_type: r.request_type,
        request_id: r.request_id,
        flags: r.flags.bits(),
        route: r.route.clone(),
        reply_to: r.reply_to.clone(),
        deadline_ms: r.deadline_ms,
        payload: bytes_of(&r.payload),
    }
}

fn dispatch_repr(d: &Dispatch) -> Repr {
    Repr::Dispatch {
        request_type: d.request_type,
        request_id: d.request_id,
        flags: d.flags.bits(),
        attempt: d.attempt,
        dispatch_tag: d.dispatch_tag,
        deadline_ms: d.deadline_ms,
        payload: bytes_of(&d.payload),
    }
}

fn response_repr(r: &Response) -> Repr {
    Repr::Response {
        request_type: r.request_type,
        request_id: r.request_id,
        status: r.status,
        error: r.error.clone(),
        route: r.route.clone(),
        payload: bytes_of(&r.payload),
    }
}

fn repr(message: &Message) -> Repr {
    match message {
        Message::Hello(h) => Repr::Hello(h.clone()),
        Message::Welcome {
            heartbeat_ms,
            max_message_size,
        } => Repr::Welcome {
            max_message_size: *max_message_size,
            heartbeat_ms: *heartbeat_ms,
        },
        Message::Request(r) => request_repr(r),
        Message::Dispatch(d) => dispatch_repr(d),
        Message::Result(r) => Repr::Result {
            request_type: r.request_type,
            request_id: r.request_id,
            attempt: r.attempt,
            dispatch_tag: r.dispatch_tag,
            status: r.status,
            error: r.error.clone(),
            payload: bytes_of(&r.payload),
        },
        Message::Response(r) => response_repr(r),
        Message::ReceiptSent(r) => Repr::ReceiptSent(r.clone()),
        Message::ReceiptReceived(r) => Repr::ReceiptReceived(r.clone()),
        Message::Ready(r) => Repr::Ready(r.clone()),
        Message::Heartbeat { heartbeat_ms } => Repr::Heartbeat {
            heartbeat_ms: *heartbeat_ms,
        },
        Message::Disconnect { route } => Repr::Disconnect {
            route: route.clone(),
        },
        Message::Shutdown => Repr::Shutdown,
        Message::Reregister => Repr::Reregister,
        Message::Error(e) => Repr::Error(e.clone()),
        Message::Notification(n) => Repr::Notification {
            topic: n.topic.clone(),
            notify_id: n.notify_id,
            payload: bytes_of(&n.payload),
        },
        Message::StatsQuery => Repr::StatsQuery,
        Message::StatsReply { payload } => Repr::StatsReply {
            payload: bytes_of(payload),
        },
        Message::PeerHello(h) => Repr::PeerHello(h.clone()),
        Message::PeerWelcome {
            broker_id,
            heartbeat_ms,
        } => Repr::PeerWelcome {
            broker_id: *broker_id,
            heartbeat_ms: *heartbeat_ms,
        },
        Message::Serves(table) => Repr::Serves(table.clone()),
        Message::View { broker_id, members } => Repr::View {
            broker_id: *broker_id,
            members: members.clone(),
        },
        Message::Forward(f) => Repr::Forward {
            request: Box::new(request_repr(&f.request)),
            hops: f.hops,
            reply_route: f.reply_route.clone(),
        },
        Message::Execute(e) => Repr::Execute {
            dispatch: Box::new(dispatch_repr(&e.dispatch)),
            hops: e.hops,
        },
        Message::Executed(e) => Repr::Executed {
            response: Box::new(response_repr(&e.response)),
            attempt: e.attempt,
            dispatch_tag: e.dispatch_tag,
        },
        Message::Cancel(c) => Repr::Cancel(c.clone()),
        other => panic!("Message variant unknown to this test: {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Strategies for valid messages
// ---------------------------------------------------------------------------

fn payload() -> impl Strategy<Value = Vec<Frame>> {
    vec(vec(any::<u8>(), 0..=300), 0..=4)
        .prop_map(|frames| frames.into_iter().map(Frame::from).collect())
}

/// Request types are non-zero (0 is reserved).
fn request_type() -> impl Strategy<Value = u32> {
    prop_oneof![1..=16u32, 1..=u32::MAX]
}

/// 0: no tag (a broker or worker that predates it); small, a 48-bit
/// counter as the reference broker's, or any 64-bit value.
fn dispatch_tag() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0u64), 1..=5u64, 1..(1u64 << 48), any::<u64>()]
}

fn request_id() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0u64), 0..=1000u64, any::<u64>()]
}

/// Any bit set, known bits or not.
fn flags() -> impl Strategy<Value = Flags> {
    prop_oneof![
        (0..=0xffu64).prop_map(Flags::from_bits_retain),
        any::<u64>().prop_map(Flags::from_bits_retain),
    ]
}

fn route() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![Just(Vec::new()), vec(any::<u8>(), 1..=32)]
}

/// Optional texts are `None` rather than empty (the wire cannot tell them apart).
fn opt_text() -> impl Strategy<Value = Option<String>> {
    option::of(any::<String>().prop_filter("non-empty", |s| !s.is_empty()))
}

fn heartbeat_ms() -> impl Strategy<Value = u32> {
    prop_oneof![1..=60_000u32, 1..=u32::MAX]
}

fn worker_status() -> impl Strategy<Value = Status> {
    prop_oneof![
        Just(Status::Ok),
        Just(Status::Failed),
        Just(Status::BadRequest)
    ]
}

fn any_status() -> impl Strategy<Value = Status> {
    prop_oneof![
        worker_status(),
        Just(Status::Rejected),
        Just(Status::WorkerDeath),
        Just(Status::Redirected),
        Just(Status::Overloaded),
        Just(Status::NoWorkers),
        Just(Status::UnknownReplyTo),
        Just(Status::Expired),
    ]
}

fn request_ref() -> impl Strategy<Value = RequestRef> {
    (request_type(), request_id(), route()).prop_map(|(request_type, request_id, route)| {
        RequestRef {
            request_type,
            request_id,
            route,
        }
    })
}

/// A notification topic: non-empty UTF-8 without NUL.
fn topic() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9./_-]{0,30}",
        any::<String>().prop_map(|s| s.replace('\0', "")),
    ]
    .prop_filter("non-empty", |s| !s.is_empty())
}

/// A valid notification.
fn notification() -> impl Strategy<Value = Message> {
    (topic(), option::of(1..=u64::MAX), payload()).prop_map(|(topic, notify_id, payload)| {
        Message::Notification(RawNotification {
            topic,
            notify_id,
            payload,
        })
    })
}

/// Every variant of [`Message`], with arbitrary valid field values.
fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        Just(()).prop_map(|()| Message::StatsQuery),
        payload().prop_map(|payload| Message::StatsReply { payload }),
        (heartbeat_ms(), opt_text(), route()).prop_map(|(heartbeat_ms, name, route)| {
            Message::Hello(Hello {
                heartbeat_ms,
                name,
                route,
            })
        }),
        (heartbeat_ms(), any::<u64>()).prop_map(|(heartbeat_ms, max_message_size)| {
            Message::Welcome {
                heartbeat_ms,
                max_message_size,
            }
        }),
        request(route(), opt_text()).prop_map(Message::Request),
        dispatch(dispatch_tag()).prop_map(Message::Dispatch),
        (
            request_type(),
            request_id(),
            // 0: a 1.0 worker's RESULT, without attempt.
            prop_oneof![Just(0u32), 1..=5u32, 1..=u32::MAX],
            dispatch_tag(),
            worker_status(),
            opt_text(),
            payload()
        )
            .prop_map(
                |(request_type, request_id, attempt, dispatch_tag, status, error, payload)| {
                    Message::Result(WorkResult {
                        request_type,
                        request_id,
                        attempt,
                        dispatch_tag,
                        status,
                        error,
                        payload,
                    })
                }
            ),
        response(route()).prop_map(Message::Response),
        request_ref().prop_map(Message::ReceiptSent),
        request_ref().prop_map(Message::ReceiptReceived),
        (
            heartbeat_ms(),
            1..=1024u32,
            vec(request_type(), 1..=8),
            opt_text(),
            any::<bool>(),
        )
            .prop_map(|(heartbeat_ms, capacity, request_types, name, named)| {
                // Names (1.6): none, or one per type (some of them empty).
                let type_names = if named {
                    (request_types.iter())
                        .map(|t| {
                            if t % 3 == 0 {
                                String::new()
                            } else {
                                format!("type.{t}")
                            }
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                Message::Ready(Ready {
                    heartbeat_ms,
                    capacity,
                    request_types,
                    type_names,
                    name,
                })
            }),
        prop_oneof![Just(0u32), heartbeat_ms()]
            .prop_map(|heartbeat_ms| Message::Heartbeat { heartbeat_ms }),
        route().prop_map(|route| Message::Disconnect { route }),
        Just(()).prop_map(|()| Message::Shutdown),
        Just(()).prop_map(|()| Message::Reregister),
        (request_type(), request_id(), route(), dispatch_tag()).prop_map(
            |(request_type, request_id, route, dispatch_tag)| {
                Message::Cancel(Cancel {
                    request_type,
                    request_id,
                    route,
                    dispatch_tag,
                })
            }
        ),
        (
            any::<String>(),
            option::of(request_ref()),
            // The one status an ERROR carries (1.4).
            option::of(Just(Status::Forbidden)),
        )
            .prop_map(|(error, request, status)| Message::Error(ErrorReply {
                error,
                request,
                status
            })),
        notification(),
        cluster_message(),
    ]
}

fn request(
    route: impl Strategy<Value = Vec<u8>>,
    reply_to: impl Strategy<Value = Option<String>>,
) -> impl Strategy<Value = Request> {
    (
        request_type(),
        request_id(),
        flags(),
        route,
        reply_to,
        (prop_oneof![Just(0u32), 1..=u32::MAX], payload()),
    )
        .prop_map(
            |(request_type, request_id, flags, route, reply_to, (deadline_ms, payload))| Request {
                request_type,
                request_id,
                flags,
                route,
                reply_to,
                deadline_ms,
                payload,
            },
        )
}

fn dispatch(dispatch_tag: impl Strategy<Value = u64>) -> impl Strategy<Value = Dispatch> {
    (
        request_type(),
        request_id(),
        flags(),
        prop_oneof![1..=5u32, 1..=u32::MAX],
        dispatch_tag,
        (prop_oneof![Just(0u32), 1..=u32::MAX], payload()),
    )
        .prop_map(
            |(request_type, request_id, flags, attempt, dispatch_tag, (deadline_ms, payload))| {
                Dispatch {
                    request_type,
                    request_id,
                    flags,
                    attempt,
                    dispatch_tag,
                    deadline_ms,
                    payload,
                }
            },
        )
}

fn response(route: impl Strategy<Value = Vec<u8>>) -> impl Strategy<Value = Response> {
    (
        request_type(),
        request_id(),
        any_status(),
        opt_text(),
        route,
        payload(),
    )
        .prop_map(
            |(request_type, request_id, status, error, route, payload)| Response {
                request_type,
                request_id,
                status,
                error,
                route,
                payload,
            },
        )
}

/// A broker id: never 0.
fn broker_id() -> impl Strategy<Value = u64> {
    prop_oneof![1..=5u64, 1..=u64::MAX]
}

/// A SERVES table: each type once, with a non-zero capacity.
fn serves_table() -> impl Strategy<Value = Vec<TypeServed>> {
    vec(
        (
            request_type(),
            1..=u32::MAX,
            any::<u32>(),
            any::<u32>(),
            // Named, unnamed, or some of each (written as "" on the wire).
            option::of("[a-z][a-z.]{0,19}"),
        ),
        0..=6,
    )
    .prop_map(|entries| {
        let mut table: Vec<TypeServed> = Vec::new();
        for (request_type, capacity, free, pending, name) in entries {
            if table.iter().all(|t| t.request_type != request_type) {
                table.push(TypeServed {
                    request_type,
                    capacity,
                    free,
                    pending,
                    name,
                });
            }
        }
        table
    })
}

/// The broker-to-broker kinds of 1.2, valid as the codec requires them.
fn cluster_message() -> impl Strategy<Value = Message> {
    let client_route = vec(any::<u8>(), 1..=40);
    prop_oneof![
        (broker_id(), heartbeat_ms(), opt_text()).prop_map(|(broker_id, heartbeat_ms, name)| {
            Message::PeerHello(PeerHello {
                broker_id,
                heartbeat_ms,
                name,
            })
        }),
        (broker_id(), heartbeat_ms()).prop_map(|(broker_id, heartbeat_ms)| {
            Message::PeerWelcome {
                broker_id,
                heartbeat_ms,
            }
        }),
        serves_table().prop_map(Message::Serves),
        (broker_id(), vec(any::<u64>(), 0..=5))
            .prop_map(|(broker_id, members)| Message::View { broker_id, members }),
        (
            // Always routed; its reply_to is resolved into reply_route.
            request(client_route.clone(), Just(None)),
            option::of(client_route),
        )
            .prop_map(|(request, reply_route)| {
                Message::Forward(Forward {
                    request,
                    hops: 1,
                    reply_route,
                })
            }),
        (dispatch(1..=u64::MAX), 1..=MAX_HOPS)
            .prop_map(|(dispatch, hops)| Message::Execute(Execute { dispatch, hops })),
        (response(Just(Vec::new())), any::<u32>(), 1..=u64::MAX).prop_map(
            |(response, attempt, dispatch_tag)| {
                Message::Executed(Executed {
                    response,
                    attempt,
                    dispatch_tag,
                })
            }
        ),
    ]
}

// ---------------------------------------------------------------------------
// Strategies for arbitrary and corrupted frames
// ---------------------------------------------------------------------------

/// One change to a list of frames.
#[derive(Clone, Debug)]
enum Mutation {
    /// XOR one byte of one frame with a non-zero mask.
    Flip { frame: Index, byte: Index, mask: u8 },
    /// Cut one frame at some length.
    Truncate { frame: Index, at: Index },
    /// Append bytes to one frame.
    Append { frame: Index, bytes: Vec<u8> },
    /// Remove one frame.
    DropFrame { frame: Index },
    /// Insert a frame before another one (or at the end).
    InsertFrame { at: Index, bytes: Vec<u8> },
    /// Swap two frames.
    Swap { a: Index, b: Index },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<Index>(), any::<Index>(), 1..=255u8)
            .prop_map(|(frame, byte, mask)| Mutation::Flip { frame, byte, mask }),
        2 => (any::<Index>(), any::<Index>())
            .prop_map(|(frame, at)| Mutation::Truncate { frame, at }),
        2 => (any::<Index>(), vec(any::<u8>(), 1..=16))
            .prop_map(|(frame, bytes)| Mutation::Append { frame, bytes }),
        1 => any::<Index>().prop_map(|frame| Mutation::DropFrame { frame }),
        1 => (any::<Index>(), vec(any::<u8>(), 0..=16))
            .prop_map(|(at, bytes)| Mutation::InsertFrame { at, bytes }),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::Swap { a, b }),
    ]
}

fn apply(frames: &mut Vec<Vec<u8>>, mutation: &Mutation) {
    let n = frames.len();
    match mutation {
        Mutation::Flip { frame, byte, mask } if n > 0 => {
            let f = &mut frames[frame.index(n)];
            if !f.is_empty() {
                let i = byte.index(f.len());
                f[i] ^= mask;
            }
        }
        Mutation::Truncate { frame, at } if n > 0 => {
            let f = &mut frames[frame.index(n)];
            let len = at.index(f.len() + 1);
            f.truncate(len);
        }
        Mutation::Append { frame, bytes } if n > 0 => {
            frames[frame.index(n)].extend_from_slice(bytes);
        }
        Mutation::DropFrame { frame } if n > 0 => {
            frames.remove(frame.index(n));
        }
        Mutation::InsertFrame { at, bytes } => frames.insert(at.index(n + 1), bytes.clone()),
        Mutation::Swap { a, b } if n > 0 => frames.swap(a.index(n), b.index(n)),
        _ => {}
    }
}

/// The frames of a valid message, changed by a few mutations.
fn mutated_encoding() -> impl Strategy<Value = Vec<Vec<u8>>> {
    (
        prop_oneof![3 => message(), 1 => notification()],
        vec(mutation(), 1..=3),
    )
        .prop_map(|(message, mutations)| {
            let mut frames = bytes_of(&message.into_frames());
            for m in &mutations {
                apply(&mut frames, m);
            }
            frames
        })
}

/// Frames that are mostly, but not only, invalid.
fn any_frames() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop_oneof![
        1 => vec(vec(any::<u8>(), 0..=64), 0..=6),
        1 => vec(vec(any::<u8>(), 0..=300), 0..=6),
        4 => mutated_encoding(),
    ]
}

fn to_frames(bytes: &[Vec<u8>]) -> Vec<Frame> {
    bytes.iter().map(|b| Frame::from(&b[..])).collect()
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

fn decode_any(frames: Vec<Frame>, notification: bool) -> Result<Message, DecodeError> {
    if notification {
        decode_notification(frames)
    } else {
        decode(frames)
    }
}

proptest! {
    /// `into_frames` then `decode` / `decode_notification` is the identity.
    #[test]
    fn round_trip_is_identity(message in message()) {
        let expected = repr(&message);
        let is_notification = matches!(message, Message::Notification(_));
        let frames = message.into_frames();
        let decoded = decode_any(frames, is_notification);
        prop_assert!(decoded.is_ok(), "decode failed: {:?} for {:?}", decoded, expected);
        prop_assert_eq!(repr(&decoded.unwrap()), expected);
    }

    /// The same for the broker-to-broker kinds alone (one arm of
    /// [`message`], so rarer there).
    #[test]
    fn cluster_round_trip_is_identity(message in cluster_message()) {
        let expected = repr(&message);
        let decoded = decode(message.into_frames());
        prop_assert!(decoded.is_ok(), "decode failed: {:?} for {:?}", decoded, expected);
        prop_assert_eq!(repr(&decoded.unwrap()), expected);
    }

    /// `encode` into a reused buffer + `decode_parts` is the identity too,
    /// and writes the same header bytes as `into_frames`.
    #[test]
    fn encode_and_decode_parts_agree_with_into_frames(
        first in message(),
        second in message(),
    ) {
        let mut header = Vec::new();
        // A first message leaves bytes in the buffer; `encode` clears it.
        let _ = first.encode(&mut header);
        let expected = repr(&second);
        let is_notification = matches!(second, Message::Notification(_));
        let frames_header = {
            // Rebuild the same message from its representation to compare headers.
            let frames = message_from(&expected).into_frames();
            frames[usize::from(is_notification)].to_vec()
        };
        let encoded = second.encode(&mut header);
        prop_assert_eq!(&header, &frames_header);
        prop_assert_eq!(encoded.topic.is_some(), is_notification);
        if is_notification {
            let topic = parse_topic(encoded.topic.as_deref().unwrap_or_default());
            prop_assert!(topic.is_ok());
            let mut frames = vec![Frame::from(encoded.topic.unwrap()), Frame::from(&header[..])];
            frames.extend(encoded.payload);
            let decoded = decode_notification(frames);
            prop_assert!(decoded.is_ok(), "decode failed: {:?}", decoded);
            prop_assert_eq!(repr(&decoded.unwrap()), expected);
        } else {
            let decoded = decode_parts(&header, encoded.payload);
            prop_assert!(decoded.is_ok(), "decode failed: {:?}", decoded);
            prop_assert_eq!(repr(&decoded.unwrap()), expected);
        }
    }
}

proptest! {
    // Cheap cases, and mostly invalid ones: run more of them.
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// The decoders never panic, whatever the frames.
    #[test]
    fn decoders_never_panic(frames in any_frames()) {
        let _ = decode(to_frames(&frames));
        let _ = decode_notification(to_frames(&frames));
        decoders::decode_parts_and_peek(&frames);
    }

    /// Whatever decodes re-encodes to something that decodes to the same
    /// message: decoding normalises (drops unknown fields, absent optional
    /// texts, the minor version), and normal forms are fixed points.
    #[test]
    fn decoded_messages_re_encode_to_themselves(frames in any_frames()) {
        for notification in [false, true] {
            if let Ok(message) = decode_any(to_frames(&frames), notification) {
                let expected = repr(&message);
                let again = decode_any(message.into_frames(), notification);
                prop_assert!(again.is_ok(), "re-decode failed: {:?} for {:?}", again, expected);
                prop_assert_eq!(repr(&again.unwrap()), expected);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Protobuf rules (protocol.md §3.1)
// ---------------------------------------------------------------------------

fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
    out
}

/// A well-formed header field this version does not know (number 29 to
/// 2^29 - 1), of any wire type: varint, fixed64, length-delimited, a group
/// of varint fields, fixed32.
fn unknown_field() -> impl Strategy<Value = Vec<u8>> {
    let number = prop_oneof![29u64..40, 29u64..(1 << 29)];
    let value = prop_oneof![
        any::<u64>().prop_map(|v| (0u64, varint(v))),
        any::<[u8; 8]>().prop_map(|b| (1, b.to_vec())),
        vec(any::<u8>(), 0..16).prop_map(|b| (2, [varint(b.len() as u64), b].concat())),
        vec((1u64..20, any::<u64>()), 0..3).prop_map(|fields| {
            let inner = fields
                .iter()
                .flat_map(|&(n, v)| [varint(n << 3), varint(v)].concat());
            (3, inner.collect())
        }),
        any::<[u8; 4]>().prop_map(|b| (5, b.to_vec())),
    ];
    (number, value).prop_map(|(number, (wire_type, body))| {
        let mut field = varint(number << 3 | wire_type);
        field.extend(body);
        if wire_type == 3 {
            field.extend(varint(number << 3 | 4));
        }
        field
    })
}

proptest! {
    /// An unknown field of any wire type, before or after the known ones,
    /// changes nothing (and sends the header to the `prost` fallback).
    #[test]
    fn unknown_fields_of_any_wire_type_are_skipped(
        message in message(),
        field in unknown_field(),
        first in any::<bool>(),
    ) {
        let expected = repr(&message);
        let is_notification = matches!(message, Message::Notification(_));
        let mut frames = bytes_of(&message.into_frames());
        let header = &mut frames[usize::from(is_notification)];
        if first {
            header.splice(0..0, field);
        } else {
            header.extend(field);
        }
        let decoded = decode_any(to_frames(&frames), is_notification);
        prop_assert!(decoded.is_ok(), "decode failed: {:?} for {:?}", decoded, expected);
        prop_assert_eq!(repr(&decoded.unwrap()), expected);
    }

    /// A uint32 field written as any 64-bit varint reads as its low 32 bits,
    /// with or without an unknown field (fast path or `prost`).
    #[test]
    fn wide_uint32_fields_keep_their_low_32_bits(value in any::<u64>(), unknown in any::<bool>()) {
        let mut header = vec![0x08, 0x01, 0x18, 0x0a, 0x40];
        header.extend(varint(value));
        if unknown {
            header.extend([0x98, 0x06, 0x00]);
        }
        let decoded = decode_parts(&header, vec![]);
        prop_assert!(
            matches!(decoded, Ok(Message::Heartbeat { heartbeat_ms }) if heartbeat_ms == value as u32),
            "{:?}", decoded
        );
    }
}

/// Builds a [`Message`] back from its representation.
fn message_from(r: &Repr) -> Message {
    let frames = |p: &[Vec<u8>]| -> Vec<Frame> { to_frames(p) };
    match r.clone() {
        Repr::Hello(h) => Message::Hello(h),
        Repr::Welcome {
            heartbeat_ms,
            max_message_size,
        } => Message::Welcome {
            heartbeat_ms,
            max_message_size,
        },
        Repr::Request {
            request_type,
            request_id,
            flags,
            route,
            reply_to,
            deadline_ms,
            payload,
        } => Message::Request(Request {
            request_type,
            request_id,
            flags: Flags::from_bits_retain(flags),
            route,
            reply_to,
            deadline_ms,
            payload: frames(&payload),
        }),
        Repr::Dispatch {
            request_type,
            request_id,
            flags,
            attempt,
            dispatch_tag,
            deadline_ms,
            payload,
        } => Message::Dispatch(Dispatch {
            request_type,
            request_id,
            flags: Flags::from_bits_retain(flags),
            attempt,
            dispatch_tag,
            deadline_ms,
            payload: frames(&payload),
        }),
        Repr::Result {
            request_type,
            request_id,
            attempt,
            dispatch_tag,
            status,
            error,
            payload,
        } => Message::Result(WorkResult {
            request_type,
            request_id,
            attempt,
            dispatch_tag,
            status,
            error,
            payload: frames(&payload),
        }),
        Repr::Response {
            request_type,
            request_id,
            status,
            error,
            route,
            payload,
        } => Message::Response(Response {
            request_type,
            request_id,
            status,
            error,
            route,
            payload: frames(&payload),
        }),
        Repr::ReceiptSent(r) => Message::ReceiptSent(r),
        Repr::ReceiptReceived(r) => Message::ReceiptReceived(r),
        Repr::Ready(r) => Message::Ready(r),
        Repr::Heartbeat { heartbeat_ms } => Message::Heartbeat { heartbeat_ms },
        Repr::Disconnect { route } => Message::Disconnect { route },
        Repr::Shutdown => Message::Shutdown,
        Repr::Reregister => Message::Reregister,
        Repr::Cancel(c) => Message::Cancel(c),
        Repr::Error(e) => Message::Error(e),
        Repr::Notification {
            topic,
            notify_id,
            payload,
        } => Message::Notification(RawNotification {
            topic,
            notify_id,
            payload: frames(&payload),
        }),
        Repr::StatsQuery => Message::StatsQuery,
        Repr::StatsReply { payload } => Message::StatsReply {
            payload: frames(&payload),
        },
        Repr::PeerHello(h) => Message::PeerHello(h),
        Repr::PeerWelcome {
            broker_id,
            heartbeat_ms,
        } => Message::PeerWelcome {
            broker_id,
            heartbeat_ms,
        },
        Repr::Serves(table) => Message::Serves(table),
        Repr::View { broker_id, members } => Message::View { broker_id, members },
        Repr::Forward {
            request,
            hops,
            reply_route,
        } => {
            let Message::Request(request) = message_from(&request) else {
                unreachable!("a FORWARD's request is a REQUEST")
            };
            Message::Forward(Forward {
                request,
                hops,
                reply_route,
            })
        }
        Repr::Execute { dispatch, hops } => {
            let Message::Dispatch(dispatch) = message_from(&dispatch) else {
                unreachable!("an EXECUTE's dispatch is a DISPATCH")
            };
            Message::Execute(Execute { dispatch, hops })
        }
        Repr::Executed {
            response,
            attempt,
            dispatch_tag,
        } => {
            let Message::Response(response) = message_from(&response) else {
                unreachable!("an EXECUTED's response is a RESPONSE")
            };
            Message::Executed(Executed {
                response,
                attempt,
                dispatch_tag,
            })
        }
    }
}

#[test]
fn repr_round_trips_through_message_from() {
    // Guard for the helpers above: Repr -> Message -> Repr is the identity.
    let r = Repr::Request {
        request_type: 1,
        request_id: 2,
        flags: 3,
        route: vec![4],
        reply_to: Some("five".into()),
        deadline_ms: 8,
        payload: vec![vec![6], vec![]],
    };
    assert_eq!(repr(&message_from(&r)), r);
    let f = Repr::Forward {
        request: Box::new(r),
        hops: 1,
        reply_route: Some(vec![7]),
    };
    assert_eq!(repr(&message_from(&f)), f);
}
