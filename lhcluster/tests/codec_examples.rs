//! Byte-level examples of protocol v1 (`proto/lhcluster.proto`).
//!
//! For every message kind: a concrete message, its exact header bytes and
//! frame layout, and the fields read back by the decoder. Then malformed
//! variants of every kind with the exact [`DecodeError`] they produce.
//!
//! Malformed headers are built by hand with a tiny Protobuf writer ([`Pb`])
//! rather than through the crate's private generated code, so these examples
//! also pin the wire format itself: field numbers, wire types and the
//! encoding of enums.

use lhcluster::protocol::{
    Cancel, DecodeError, Dispatch, ErrorReply, Execute, Executed, Flags, Forward, Frame, Hello,
    MAX_HOPS, Message, PROTOCOL_MAJOR, PROTOCOL_MINOR, PeerHello, RawNotification, Ready, Request,
    RequestRef, Response, Status, TypeServed, WorkResult, decode, decode_notification,
    decode_parts, parse_topic, peek_kind, peek_request_ref, topic_frame,
};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// The content of `$message` if it is a `$variant`; a panic otherwise.
macro_rules! variant {
    ($message:expr, $variant:path) => {
        match $message {
            $variant(inner) => inner,
            other => panic!("not a {}: {other:?}", stringify!($variant)),
        }
    };
}

/// Header field numbers of `proto/lhcluster.proto`.
mod field {
    pub(crate) const MAJOR: u32 = 1;
    pub(crate) const MINOR: u32 = 2;
    pub(crate) const KIND: u32 = 3;
    pub(crate) const FLAGS: u32 = 4;
    pub(crate) const REQUEST_TYPE: u32 = 5;
    pub(crate) const REQUEST_ID: u32 = 6;
    pub(crate) const STATUS: u32 = 7;
    pub(crate) const HEARTBEAT_MS: u32 = 8;
    pub(crate) const CAPACITY: u32 = 9;
    pub(crate) const REQUEST_TYPES: u32 = 10;
    pub(crate) const ROUTE: u32 = 11;
    pub(crate) const REPLY_TO: u32 = 12;
    pub(crate) const NAME: u32 = 13;
    pub(crate) const ERROR: u32 = 14;
    pub(crate) const ATTEMPT: u32 = 15;
    pub(crate) const NOTIFY_ID: u32 = 16;
    pub(crate) const INLINE_PAYLOAD: u32 = 17;
    pub(crate) const DISPATCH_TAG: u32 = 18;
    pub(crate) const BROKER_ID: u32 = 19;
    pub(crate) const HOPS: u32 = 20;
    pub(crate) const REPLY_ROUTE: u32 = 21;
    pub(crate) const TYPE_CAPACITY: u32 = 22;
    pub(crate) const TYPE_FREE: u32 = 23;
    pub(crate) const TYPE_PENDING: u32 = 24;
    pub(crate) const DEADLINE_MS: u32 = 25;
    pub(crate) const TYPE_NAMES: u32 = 27;
}

/// Declares the `Kind` values: a `kind::NAME` constant for each, and
/// [`kind_name`], the name the schema gives each.
macro_rules! kinds {
    ($($name:ident = $value:literal,)+) => {
        mod kind {
            $(pub(crate) const $name: i32 = $value;)+
        }

        /// The schema's name of kind `k`, as the decoder gives it.
        fn kind_name(k: i32) -> &'static str {
            match k {
                $($value => stringify!($name),)+
                _ => panic!("kind {k} is not in the schema"),
            }
        }
    };
}

// `Kind` enum values of `proto/lhcluster.proto`.
kinds! {
    UNSPECIFIED = 0,
    HELLO = 1,
    WELCOME = 2,
    REQUEST = 3,
    DISPATCH = 4,
    RESULT = 5,
    RESPONSE = 6,
    RECEIPT_SENT = 7,
    RECEIPT_RECEIVED = 8,
    READY = 9,
    HEARTBEAT = 10,
    DISCONNECT = 11,
    SHUTDOWN = 12,
    REREGISTER = 13,
    ERROR = 14,
    NOTIFICATION = 15,
    PEER_HELLO = 18,
    PEER_WELCOME = 19,
    SERVES = 20,
    FORWARD = 21,
    EXECUTE = 22,
    EXECUTED = 23,
}

/// A minimal Protobuf writer for hand-made (possibly invalid) headers.
#[derive(Debug, Default, Clone)]
struct Pb(Vec<u8>);

impl Pb {
    /// An empty message (no field at all).
    fn empty() -> Self {
        Pb::default()
    }

    /// A header with `major = 1` and the given kind, like the encoder writes.
    fn header(kind: i32) -> Self {
        Pb::empty()
            .uint(field::MAJOR, u64::from(PROTOCOL_MAJOR))
            .int32(field::KIND, kind)
    }

    fn put_varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn key(&mut self, field: u32, wire_type: u8) {
        self.put_varint(u64::from(field) << 3 | u64::from(wire_type));
    }

    /// A varint field (uint32 / uint64).
    fn uint(mut self, field: u32, v: u64) -> Self {
        self.key(field, 0);
        self.put_varint(v);
        self
    }

    /// An enum / int32 field: negative values are sign-extended to 64 bits.
    fn int32(self, field: u32, v: i32) -> Self {
        self.uint(field, i64::from(v) as u64)
    }

    /// A length-delimited field (bytes / string / packed repeated).
    fn bytes(mut self, field: u32, v: &[u8]) -> Self {
        self.key(field, 2);
        self.put_varint(v.len() as u64);
        self.0.extend_from_slice(v);
        self
    }

    /// A packed repeated varint field.
    fn packed(self, field: u32, values: &[u64]) -> Self {
        let mut inner = Pb::empty();
        for &v in values {
            inner.put_varint(v);
        }
        self.bytes(field, &inner.0)
    }

    /// Raw bytes appended as they are.
    fn raw(mut self, bytes: &[u8]) -> Self {
        self.0.extend_from_slice(bytes);
        self
    }

    fn build(self) -> Vec<u8> {
        self.0
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses hex text, ignoring spaces (used to group header fields).
fn unhex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    assert!(
        digits.len() % 2 == 0,
        "odd number of hex digits in {text:?}"
    );
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

fn frame(bytes: &[u8]) -> Frame {
    Frame::from(bytes)
}

fn frames(parts: &[&[u8]]) -> Vec<Frame> {
    parts.iter().map(|p| frame(p)).collect()
}

fn bytes_of(frames: &[Frame]) -> Vec<Vec<u8>> {
    frames.iter().map(|f| f.to_vec()).collect()
}

fn payload(parts: &[&[u8]]) -> Vec<Frame> {
    frames(parts)
}

/// Decodes `[header | payload…]` given as byte slices.
fn decode_bytes(header: &[u8], payload: &[&[u8]]) -> Result<Message, DecodeError> {
    let mut all = vec![frame(header)];
    all.extend(frames(payload));
    decode(all)
}

fn decode_err(header: &[u8], payload: &[&[u8]]) -> DecodeError {
    match decode_bytes(header, payload) {
        Ok(m) => panic!("expected a decode error, got {m:?}"),
        Err(e) => e,
    }
}

fn notification_err(parts: &[&[u8]]) -> DecodeError {
    match decode_notification(frames(parts)) {
        Ok(m) => panic!("expected a decode error, got {m:?}"),
        Err(e) => e,
    }
}

/// Encodes the message built by `make` both ways (`encode` into a dirty,
/// reused buffer, and `into_frames`), checks the header bytes and the frame
/// layout `[header | payload…]`, and returns the frames.
fn check_encoding(
    make: impl Fn() -> Message,
    header_hex: &str,
    expected_payload: &[&[u8]],
) -> Vec<Frame> {
    let expected_header = unhex(header_hex);
    let expected_payload: Vec<Vec<u8>> = expected_payload.iter().map(|p| p.to_vec()).collect();

    let mut buf = b"stale bytes from a previous message".to_vec();
    let encoded = make().encode(&mut buf);
    assert_eq!(hex(&buf), hex(&expected_header), "header bytes");
    assert_eq!(encoded.topic, None, "only notifications have a topic frame");
    assert_eq!(bytes_of(&encoded.payload), expected_payload, "payload");

    let frames = make().into_frames();
    let mut expected = vec![expected_header];
    expected.extend(expected_payload);
    assert_eq!(bytes_of(&frames), expected, "frame layout");
    frames
}

fn missing(kind: &'static str, field: &'static str) -> DecodeError {
    DecodeError::MissingField { kind, field }
}

fn invalid_status(kind: &'static str, value: i32) -> DecodeError {
    DecodeError::InvalidStatus { kind, value }
}

fn unexpected_payload(kind: &'static str, frames: usize) -> DecodeError {
    DecodeError::UnexpectedPayload { kind, frames }
}

fn assert_prost_error(result: Result<Message, DecodeError>) {
    match result {
        Err(DecodeError::Header(_)) => {}
        other => panic!("expected DecodeError::Header, got {other:?}"),
    }
}

#[test]
fn hand_written_headers_match_the_encoder() {
    // Sanity check of the helper: the same fields give the same bytes (the
    // encoder writes its minor version after the major).
    let ours = Pb::empty()
        .uint(field::MAJOR, u64::from(PROTOCOL_MAJOR))
        .uint(field::MINOR, u64::from(PROTOCOL_MINOR))
        .int32(field::KIND, kind::REQUEST)
        .uint(field::FLAGS, 0x81)
        .uint(field::REQUEST_TYPE, 7)
        .uint(field::REQUEST_ID, 300)
        .bytes(field::ROUTE, b"r1")
        .bytes(field::REPLY_TO, b"bob")
        .build();
    let mut theirs = Vec::new();
    let _ = Message::Request(Request {
        request_type: 7,
        request_id: 300,
        flags: Flags::ONE_WAY | Flags::FAIL_FAST,
        route: b"r1".to_vec(),
        reply_to: Some("bob".into()),
        deadline_ms: 0,
        payload: vec![],
    })
    .encode(&mut theirs);
    assert_eq!(hex(&ours), hex(&theirs));
    assert_eq!(
        hex(&Pb::header(-1).build()),
        "0801 18ffffffffffffffffff01".replace(' ', "")
    );
}

// ---------------------------------------------------------------------------
// One example per kind: exact bytes, then decoded fields
// ---------------------------------------------------------------------------

#[test]
fn hello() {
    let make = || {
        Message::Hello(Hello {
            heartbeat_ms: 1000,
            name: Some("client-a".into()),
            route: vec![0x00, 0x01],
        })
    };
    // major=1 | minor=8 | kind=HELLO | heartbeat_ms=1000 | route=00 01 | name="client-a"
    let frames = check_encoding(
        make,
        "0801 1008 1801 40e807 5a020001 6a08636c69656e742d61",
        &[],
    );
    let h = variant!(decode(frames).unwrap(), Message::Hello);
    assert_eq!(
        h,
        Hello {
            heartbeat_ms: 1000,
            name: Some("client-a".into()),
            route: vec![0x00, 0x01],
        }
    );

    // Minimal HELLO: no name, no route.
    let make = || {
        Message::Hello(Hello {
            heartbeat_ms: 1,
            name: None,
            route: vec![],
        })
    };
    let frames = check_encoding(make, "0801 1008 1801 4001", &[]);
    let h = variant!(decode(frames).unwrap(), Message::Hello);
    assert_eq!(h.name, None, "an empty name decodes as None");
    assert!(h.route.is_empty());
}

#[test]
fn welcome() {
    let frames = check_encoding(
        || Message::Welcome {
            heartbeat_ms: 2500,
            max_message_size: 16 << 20,
        },
        // field 28, max_message_size: tag (28 << 3) | 0 = 224 = `e0 01`,
        // 16 MiB = 2^24 = varint `80 80 80 08`.
        "0801 1008 1802 40c413 e001 80808008",
        &[],
    );
    let Message::Welcome {
        heartbeat_ms,
        max_message_size,
    } = decode(frames).unwrap()
    else {
        panic!("not a WELCOME")
    };
    assert_eq!((heartbeat_ms, max_message_size), (2500, 16 << 20));
}

#[test]
fn welcome_from_a_broker_older_than_1_7_says_no_limit() {
    // A 1.6 broker's WELCOME (protocol.md §14): no field 28, read as 0,
    // "not said".
    let Message::Welcome {
        max_message_size, ..
    } = decode_bytes(&unhex("0801 1006 1802 40c413"), &[]).unwrap()
    else {
        panic!("not a WELCOME")
    };
    assert_eq!(max_message_size, 0);
}

#[test]
fn request() {
    let make = || {
        Message::Request(Request {
            request_type: 7,
            request_id: 300,
            flags: Flags::ONE_WAY | Flags::FAIL_FAST,
            route: b"r1".to_vec(),
            reply_to: Some("bob".into()),
            deadline_ms: 0,
            payload: payload(&[b"hello", b""]),
        })
    };
    // major=1 | minor=8 | kind=REQUEST | flags=0x81 | request_type=7 | request_id=300 | route="r1" | reply_to="bob"
    let frames = check_encoding(
        make,
        "0801 1008 1803 208101 2807 30ac02 5a027231 6203626f62",
        &[b"hello", b""],
    );
    let r = variant!(decode(frames).unwrap(), Message::Request);
    assert_eq!(r.request_type, 7);
    assert_eq!(r.request_id, 300);
    assert_eq!(r.flags, Flags::ONE_WAY | Flags::FAIL_FAST);
    assert!(!r.flags.is_two_way());
    assert_eq!(r.route, b"r1");
    assert_eq!(r.reply_to.as_deref(), Some("bob"));
    assert_eq!(bytes_of(&r.payload), vec![b"hello".to_vec(), vec![]]);

    // Minimal REQUEST: id 0, no flags, no payload frame at all.
    let make = || {
        Message::Request(Request {
            request_type: 1,
            request_id: 0,
            flags: Flags::empty(),
            route: vec![],
            reply_to: None,
            deadline_ms: 0,
            payload: vec![],
        })
    };
    let frames = check_encoding(make, "0801 1008 1803 2801", &[]);
    let r = variant!(decode(frames).unwrap(), Message::Request);
    assert_eq!((r.request_type, r.request_id), (1, 0));
    assert!(r.flags.is_empty() && r.flags.is_two_way());
    assert_eq!(r.reply_to, None);
    assert!(r.payload.is_empty() && r.route.is_empty());
}

#[test]
fn request_keeps_unknown_flag_bits_and_ignores_unknown_fields() {
    let header = Pb::header(kind::REQUEST)
        .uint(field::FLAGS, 1 << 40 | 1 << 63 | 0b1)
        .uint(field::REQUEST_TYPE, u64::from(u32::MAX))
        .uint(field::REQUEST_ID, u64::MAX)
        .uint(field::MINOR, 7)
        // A field this version does not know (a newer minor version may add it).
        .uint(99, 12345)
        .bytes(100, b"future")
        .build();
    let r = variant!(decode_bytes(&header, &[b"p"]).unwrap(), Message::Request);
    assert_eq!(r.flags.bits(), 1 << 40 | 1 << 63 | 0b1);
    assert!(r.flags.contains(Flags::ONE_WAY));
    assert_eq!(r.request_type, u32::MAX);
    assert_eq!(r.request_id, u64::MAX);
    // Unknown bits survive a re-encode (the lone payload frame goes inline).
    let mut again = Vec::new();
    let _ = Message::Request(r).encode(&mut again);
    assert_eq!(
        hex(&again),
        "0801 1008 1803 208180808080a080808001 28ffffffff0f 30ffffffffffffffffff01 8a010170"
            .replace(' ', "")
    );
}

#[test]
fn dispatch() {
    let make = || {
        Message::Dispatch(Dispatch {
            request_type: 7,
            request_id: 1,
            flags: Flags::RETRY_ON_DEATH,
            attempt: 2,
            dispatch_tag: 1000,
            deadline_ms: 0,
            payload: payload(&[b"x"]),
        })
    };
    // major=1 | minor=8 | kind=DISPATCH | flags=0x10 | request_type=7 | request_id=1 | attempt=2
    // | dispatch_tag=1000 (field 18: a two-byte key, 90 01)
    // | inline_payload="x" (a lone small payload frame travels in the header, appended last)
    let frames = check_encoding(
        make,
        "0801 1008 1804 2010 2807 3001 7802 9001e807 8a010178",
        &[],
    );
    let d = variant!(decode(frames).unwrap(), Message::Dispatch);
    assert_eq!(d.request_type, 7);
    assert_eq!(d.request_id, 1);
    assert_eq!(d.flags, Flags::RETRY_ON_DEATH);
    assert_eq!(d.attempt, 2);
    assert_eq!(d.dispatch_tag, 1000);
    assert_eq!(bytes_of(&d.payload), vec![b"x".to_vec()]);

    // Without a tag (a broker that predates it): valid, read as 0.
    let untagged = Pb::header(kind::DISPATCH)
        .uint(field::REQUEST_TYPE, 7)
        .uint(field::ATTEMPT, 1)
        .build();
    let d = variant!(decode_bytes(&untagged, &[]).unwrap(), Message::Dispatch);
    assert_eq!((d.attempt, d.dispatch_tag), (1, 0));
    // The whole uint64 range, as a 10-byte varint at the top.
    let top = Pb::header(kind::DISPATCH)
        .uint(field::REQUEST_TYPE, 7)
        .uint(field::ATTEMPT, 1)
        .uint(field::DISPATCH_TAG, u64::MAX)
        .build();
    assert_eq!(hex(&top[top.len() - 12..]), "9001ffffffffffffffffff01");
    let d = variant!(decode_bytes(&top, &[]).unwrap(), Message::Dispatch);
    assert_eq!(d.dispatch_tag, u64::MAX);
    // A known field: with another wire type the header does not parse.
    let wrong_wire_type = Pb::header(kind::DISPATCH)
        .uint(field::REQUEST_TYPE, 7)
        .uint(field::ATTEMPT, 1)
        .bytes(field::DISPATCH_TAG, b"\x01")
        .build();
    assert_prost_error(decode_bytes(&wrong_wire_type, &[]));
}

#[test]
fn result() {
    let make = || {
        Message::Result(WorkResult {
            request_type: 7,
            request_id: 1,
            attempt: 2,
            dispatch_tag: 1000,
            status: Status::Failed,
            error: Some("boom".into()),
            payload: payload(&[b"partial"]),
        })
    };
    // major=1 | minor=8 | kind=RESULT | request_type=7 | request_id=1 | status=FAILED
    // | error="boom" | attempt=2 | dispatch_tag=1000 | inline_payload="partial"
    let frames = check_encoding(
        make,
        "0801 1008 1805 2807 3001 3802 7204626f6f6d 7802 9001e807 8a0107 7061727469616c",
        &[],
    );
    let r = variant!(decode(frames).unwrap(), Message::Result);
    assert_eq!(r.request_type, 7);
    assert_eq!(r.request_id, 1);
    assert_eq!(r.status, Status::Failed);
    assert_eq!(r.error.as_deref(), Some("boom"));
    assert_eq!((r.attempt, r.dispatch_tag), (2, 1000));
    assert_eq!(bytes_of(&r.payload), vec![b"partial".to_vec()]);

    // Every worker status is accepted (RETURNED since 1.8).
    for (value, status) in [
        (1, Status::Ok),
        (2, Status::Failed),
        (3, Status::BadRequest),
        (12, Status::Returned),
    ] {
        let header = Pb::header(kind::RESULT)
            .uint(field::REQUEST_TYPE, 7)
            .int32(field::STATUS, value)
            .build();
        let r = variant!(decode_bytes(&header, &[]).unwrap(), Message::Result);
        assert_eq!(r.status, status);
        assert!(r.status.is_worker_status());
        assert_eq!(r.error, None);
    }
}

#[test]
fn response() {
    let make = || {
        Message::Response(Response {
            request_type: 7,
            request_id: 1 << 32,
            status: Status::Ok,
            error: None,
            route: b"rt".to_vec(),
            payload: payload(&[b"a", b"b", b"c"]),
        })
    };
    // major=1 | minor=8 | kind=RESPONSE | request_type=7 | request_id=2^32 | status=OK | route="rt"
    let frames = check_encoding(
        make,
        "0801 1008 1806 2807 308080808010 3801 5a027274",
        &[b"a", b"b", b"c"],
    );
    let r = variant!(decode(frames).unwrap(), Message::Response);
    assert_eq!(r.request_type, 7);
    assert_eq!(r.request_id, 1 << 32);
    assert_eq!(r.status, Status::Ok);
    assert_eq!(r.error, None);
    assert_eq!(r.route, b"rt");
    assert_eq!(
        bytes_of(&r.payload),
        vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]
    );

    // A broker status with an error text.
    let make = || {
        Message::Response(Response {
            request_type: 3,
            request_id: 9,
            status: Status::UnknownReplyTo,
            error: Some("no bob".into()),
            route: vec![],
            payload: vec![],
        })
    };
    let frames = check_encoding(make, "0801 1008 1806 2803 3009 3809 72066e6f20626f62", &[]);
    let r = variant!(decode(frames).unwrap(), Message::Response);
    assert_eq!(r.status, Status::UnknownReplyTo);
    assert_eq!(r.error.as_deref(), Some("no bob"));

    // Every status, worker or broker, is accepted in a RESPONSE.
    let all = [
        (1, Status::Ok),
        (2, Status::Failed),
        (3, Status::BadRequest),
        (4, Status::Rejected),
        (5, Status::WorkerDeath),
        (6, Status::Redirected),
        (7, Status::Overloaded),
        (8, Status::NoWorkers),
        (9, Status::UnknownReplyTo),
        (10, Status::Expired),
    ];
    for (value, status) in all {
        let header = Pb::header(kind::RESPONSE)
            .uint(field::REQUEST_TYPE, 7)
            .int32(field::STATUS, value)
            .build();
        let r = variant!(decode_bytes(&header, &[]).unwrap(), Message::Response);
        assert_eq!(r.status, status, "status value {value}");
        // Encoding gives the same status number back (with the minor
        // version the encoder writes, which `Pb::header` leaves out).
        let mut again = Vec::new();
        let _ = Message::Response(r).encode(&mut again);
        let mut expected = header[..2].to_vec();
        expected.extend([0x10, PROTOCOL_MINOR as u8]);
        expected.extend(&header[2..]);
        assert_eq!(hex(&again), hex(&expected));
    }
}

#[test]
fn receipt_sent() {
    let make = || {
        Message::ReceiptSent(RequestRef {
            request_type: 7,
            request_id: 42,
            route: vec![],
        })
    };
    let frames = check_encoding(make, "0801 1008 1807 2807 302a", &[]);
    let r = variant!(decode(frames).unwrap(), Message::ReceiptSent);
    assert_eq!(
        r,
        RequestRef {
            request_type: 7,
            request_id: 42,
            route: vec![],
        }
    );
}

#[test]
fn receipt_received() {
    let make = || {
        Message::ReceiptReceived(RequestRef {
            request_type: 7,
            request_id: 42,
            route: vec![0xff],
        })
    };
    let frames = check_encoding(make, "0801 1008 1808 2807 302a 5a01ff", &[]);
    let r = variant!(decode(frames).unwrap(), Message::ReceiptReceived);
    assert_eq!(
        r,
        RequestRef {
            request_type: 7,
            request_id: 42,
            route: vec![0xff],
        }
    );
}

#[test]
fn ready() {
    let make = || {
        Message::Ready(Ready {
            heartbeat_ms: 500,
            capacity: 4,
            request_types: vec![1, 7, 300],
            type_names: Vec::new(),
            name: Some("w1".into()),
        })
    };
    // major=1 | minor=8 | kind=READY | heartbeat_ms=500 | capacity=4 | request_types=[1,7,300] (packed) | name="w1"
    let frames = check_encoding(
        make,
        "0801 1008 1809 40f403 4804 5204 01 07 ac02 6a027731",
        &[],
    );
    let r = variant!(decode(frames).unwrap(), Message::Ready);
    assert_eq!(
        r,
        Ready {
            heartbeat_ms: 500,
            capacity: 4,
            request_types: vec![1, 7, 300],
            type_names: Vec::new(),
            name: Some("w1".into()),
        }
    );

    // A sender that does not pack the repeated field is understood too.
    let unpacked = Pb::header(kind::READY)
        .uint(field::HEARTBEAT_MS, 500)
        .uint(field::CAPACITY, 4)
        .uint(field::REQUEST_TYPES, 1)
        .uint(field::REQUEST_TYPES, 7)
        .uint(field::REQUEST_TYPES, 300)
        .build();
    let r = variant!(decode_bytes(&unpacked, &[]).unwrap(), Message::Ready);
    assert_eq!(r.request_types, vec![1, 7, 300]);
    assert_eq!(r.name, None);
}

/// Protocol 1.6: a READY names its types in `type_names` (field 27, a
/// repeated string parallel to `request_types`, `""` for a type without a
/// name, every entry written).
#[test]
fn ready_with_type_names() {
    let make = || {
        Message::Ready(Ready {
            heartbeat_ms: 500,
            capacity: 4,
            request_types: vec![1, 7],
            type_names: vec!["a.b".into(), String::new()],
            name: None,
        })
    };
    // major=1 | minor=8 | kind=READY | heartbeat_ms=500 | capacity=4 | request_types=[1,7] | type_names=["a.b", ""]
    let frames = check_encoding(
        make,
        "0801 1008 1809 40f403 4804 5202 01 07 da0103 612e62 da0100",
        &[],
    );
    let r = variant!(decode(frames).unwrap(), Message::Ready);
    assert_eq!(r.type_names, ["a.b", ""]);

    // A READY of an older minor (no names) is understood: no names.
    let older = Pb::header(kind::READY)
        .uint(field::MINOR, 4)
        .uint(field::HEARTBEAT_MS, 500)
        .uint(field::CAPACITY, 4)
        .uint(field::REQUEST_TYPES, 7)
        .build();
    let r = variant!(decode_bytes(&older, &[]).unwrap(), Message::Ready);
    assert!(r.type_names.is_empty());

    // Names that do not pair with the types, or are too long, make the
    // READY malformed.
    for (names, reason) in [
        (vec!["a"], "one entry per request type"),
        (vec!["a", "b", "c"], "one entry per request type"),
        (vec!["a", &*"x".repeat(129)], "longer than 128 bytes"),
    ] {
        let mut h = Pb::header(kind::READY)
            .uint(field::HEARTBEAT_MS, 500)
            .uint(field::CAPACITY, 4)
            .uint(field::REQUEST_TYPES, 1)
            .uint(field::REQUEST_TYPES, 7);
        for name in names {
            h = h.bytes(field::TYPE_NAMES, name.as_bytes());
        }
        let e = decode_bytes(&h.build(), &[]).unwrap_err();
        assert!(e.to_string().contains(reason), "{e}");
        assert!(e.to_string().contains("type_names"), "{e}");
    }
    // Exactly 128 bytes is fine.
    let h = Pb::header(kind::READY)
        .uint(field::HEARTBEAT_MS, 500)
        .uint(field::CAPACITY, 4)
        .uint(field::REQUEST_TYPES, 1)
        .bytes(field::TYPE_NAMES, "y".repeat(128).as_bytes());
    assert!(decode_bytes(&h.build(), &[]).is_ok());
}

#[test]
fn heartbeat() {
    let frames = check_encoding(
        || Message::Heartbeat { heartbeat_ms: 1000 },
        "0801 1008 180a 40e807",
        &[],
    );
    let Message::Heartbeat { heartbeat_ms } = decode(frames).unwrap() else {
        panic!("not a HEARTBEAT")
    };
    assert_eq!(heartbeat_ms, 1000);

    // 0 means "unchanged" and is valid here (unlike HELLO / WELCOME / READY).
    let frames = check_encoding(
        || Message::Heartbeat { heartbeat_ms: 0 },
        "0801 1008 180a",
        &[],
    );
    let Message::Heartbeat { heartbeat_ms } = decode(frames).unwrap() else {
        panic!("not a HEARTBEAT")
    };
    assert_eq!(heartbeat_ms, 0);
}

#[test]
fn disconnect() {
    let frames = check_encoding(
        || Message::Disconnect { route: vec![] },
        "0801 1008 180b",
        &[],
    );
    let Message::Disconnect { route } = decode(frames).unwrap() else {
        panic!("not a DISCONNECT")
    };
    assert!(route.is_empty());

    let frames = check_encoding(
        || Message::Disconnect {
            route: b"p".to_vec(),
        },
        "0801 1008 180b 5a0170",
        &[],
    );
    let Message::Disconnect { route } = decode(frames).unwrap() else {
        panic!("not a DISCONNECT")
    };
    assert_eq!(route, b"p");
}

#[test]
fn shutdown() {
    let frames = check_encoding(|| Message::Shutdown, "0801 1008 180c", &[]);
    assert!(matches!(decode(frames).unwrap(), Message::Shutdown));
}

#[test]
fn reregister() {
    let frames = check_encoding(|| Message::Reregister, "0801 1008 180d", &[]);
    assert!(matches!(decode(frames).unwrap(), Message::Reregister));
}

#[test]
fn error() {
    let make = || {
        Message::Error(ErrorReply {
            error: "bad".into(),
            request: Some(RequestRef {
                request_type: 7,
                request_id: 3,
                route: vec![],
            }),
            status: None,
        })
    };
    // major=1 | minor=8 | kind=ERROR | request_type=7 | request_id=3 | error="bad"
    let frames = check_encoding(make, "0801 1008 180e 2807 3003 7203626164", &[]);
    let e = variant!(decode(frames).unwrap(), Message::Error);
    assert_eq!(
        e,
        ErrorReply {
            error: "bad".into(),
            request: Some(RequestRef {
                request_type: 7,
                request_id: 3,
                route: vec![],
            }),
            status: None,
        }
    );

    // About no particular request.
    let make = || {
        Message::Error(ErrorReply {
            error: "who?".into(),
            request: None,
            status: None,
        })
    };
    let frames = check_encoding(make, "0801 1008 180e 720477686f3f", &[]);
    let e = variant!(decode(frames).unwrap(), Message::Error);
    assert_eq!(e.error, "who?");
    assert_eq!(e.request, None);

    // Empty error text: still an ERROR (the text is not required).
    let e = variant!(
        decode_bytes(&unhex("0801 180e"), &[]).unwrap(),
        Message::Error
    );
    assert_eq!(e.error, "");
    assert_eq!(e.request, None);

    // Without a request type there is no request reference: id and route
    // alone are dropped.
    let header = Pb::header(kind::ERROR)
        .uint(field::REQUEST_ID, 5)
        .bytes(field::ROUTE, b"r")
        .bytes(field::ERROR, b"x")
        .build();
    let e = variant!(decode_bytes(&header, &[]).unwrap(), Message::Error);
    assert_eq!(e.request, None);
}

#[test]
fn notification() {
    let make = || {
        Message::Notification(RawNotification {
            topic: "orders.new".into(),
            notify_id: Some(99),
            payload: payload(&[b"{}"]),
        })
    };
    // The topic frame is the topic plus one NUL byte.
    assert_eq!(topic_frame("orders.new"), b"orders.new\0");

    let mut buf = vec![1, 2, 3];
    let encoded = make().encode(&mut buf);
    // major=1 | minor=8 | kind=NOTIFICATION | notify_id=99 (field 16: two-byte key)
    // | inline_payload="{}" (field 17: two-byte key)
    assert_eq!(hex(&buf), "08011008180f800163 8a01027b7d".replace(' ', ""));
    assert_eq!(encoded.topic.as_deref(), Some(&b"orders.new\0"[..]));
    assert!(encoded.payload.is_empty(), "the lone frame went inline");

    let frames = make().into_frames();
    assert_eq!(
        bytes_of(&frames),
        vec![
            b"orders.new\0".to_vec(),
            unhex("0801 1008 180f 800163 8a01027b7d")
        ],
        "[topic | header]"
    );
    let n = variant!(decode_notification(frames).unwrap(), Message::Notification);
    assert_eq!(n.topic, "orders.new");
    assert_eq!(n.notify_id, Some(99));
    assert_eq!(bytes_of(&n.payload), vec![b"{}".to_vec()]);

    // Two payload frames stay frames: [topic | header | payload…].
    let frames = Message::Notification(RawNotification {
        topic: "orders.new".into(),
        notify_id: None,
        payload: payload(&[b"{}", b""]),
    })
    .into_frames();
    assert_eq!(
        bytes_of(&frames),
        vec![
            b"orders.new\0".to_vec(),
            unhex("0801 1008 180f"),
            b"{}".to_vec(),
            vec![]
        ]
    );
    let n = variant!(decode_notification(frames).unwrap(), Message::Notification);
    assert_eq!(bytes_of(&n.payload), vec![b"{}".to_vec(), vec![]]);

    // No id, no payload, a non-ASCII topic.
    let make = || {
        Message::Notification(RawNotification {
            topic: "prix/é".into(),
            notify_id: None,
            payload: vec![],
        })
    };
    let frames = make().into_frames();
    assert_eq!(
        bytes_of(&frames),
        vec![b"prix/\xc3\xa9\0".to_vec(), unhex("0801 1008 180f")]
    );
    let n = variant!(decode_notification(frames).unwrap(), Message::Notification);
    assert_eq!(n.topic, "prix/é");
    assert_eq!(n.notify_id, None);
    assert!(n.payload.is_empty());
}

#[test]
fn inline_payload() {
    use lhcluster::protocol::INLINE_PAYLOAD_MAX;
    let request = |frames: &[&[u8]]| {
        Message::Request(Request {
            request_type: 7,
            request_id: 1,
            flags: Flags::empty(),
            route: vec![],
            reply_to: None,
            deadline_ms: 0,
            payload: payload(frames),
        })
    };
    let layout = |m: Message| {
        let frames = m.into_frames();
        (frames.len(), frames.iter().map(|f| f.len()).sum::<usize>())
    };
    // A lone frame up to the limit goes inline: one frame on the wire, the
    // header growing by the field key (2 bytes), its length and the bytes.
    let at_limit = vec![1u8; INLINE_PAYLOAD_MAX];
    // (The header alone is 10 bytes: major, minor, kind, type, id.)
    assert_eq!(layout(request(&[&at_limit])), (1, 10 + 2 + 2 + 1024));
    // One byte more, or two frames, or none: frames as they are.
    let over = vec![1u8; INLINE_PAYLOAD_MAX + 1];
    assert_eq!(layout(request(&[&over])), (2, 10 + 1025));
    assert_eq!(layout(request(&[b"a", b"b"])), (3, 10 + 2));
    assert_eq!(layout(request(&[])), (1, 10));
    // An empty lone frame is inline too, and decodes back as one empty frame.
    let frames = request(&[b""]).into_frames();
    assert_eq!(
        bytes_of(&frames),
        vec![unhex("0801 1008 1803 2807 3001 8a0100")]
    );
    let r = variant!(decode(frames).unwrap(), Message::Request);
    assert_eq!(bytes_of(&r.payload), vec![Vec::<u8>::new()]);
    // Round trips, both forms.
    for frames in [&[&at_limit[..]][..], &[&over[..]], &[b"a", b"b"], &[]] {
        let r = variant!(
            decode(request(frames).into_frames()).unwrap(),
            Message::Request
        );
        let expected: Vec<Vec<u8>> = frames.iter().map(|f| f.to_vec()).collect();
        assert_eq!(bytes_of(&r.payload), expected);
    }

    // Hand-written: inline payload and frames together are refused.
    let header = Pb::header(kind::RESPONSE)
        .uint(field::REQUEST_TYPE, 7)
        .int32(field::STATUS, 1)
        .bytes(field::INLINE_PAYLOAD, b"in")
        .build();
    let r = variant!(decode_bytes(&header, &[]).unwrap(), Message::Response);
    assert_eq!(bytes_of(&r.payload), vec![b"in".to_vec()]);
    assert_eq!(
        decode_err(&header, &[b"out"]),
        DecodeError::InvalidField {
            kind: "RESPONSE",
            field: "inline_payload",
            reason: "payload frames follow a header that carries the payload inline",
        }
    );
    // On a kind without payload it is an unexpected payload frame.
    let header = Pb::header(kind::HEARTBEAT)
        .bytes(field::INLINE_PAYLOAD, b"")
        .build();
    assert_eq!(decode_err(&header, &[]), unexpected_payload("HEARTBEAT", 1));
    // Behind a topic as well.
    let header = Pb::header(kind::NOTIFICATION)
        .bytes(field::INLINE_PAYLOAD, b"n")
        .build();
    assert!(matches!(
        notification_err(&[b"t\0", &header, b"more"]),
        DecodeError::InvalidField {
            kind: "NOTIFICATION",
            field: "inline_payload",
            ..
        }
    ));
}

#[test]
fn decode_parts_takes_the_header_apart_from_the_payload() {
    let header = unhex("0801 1803 2807 3001");
    let r = variant!(
        decode_parts(&header, payload(&[b"a", b"bc"])).unwrap(),
        Message::Request
    );
    assert_eq!((r.request_type, r.request_id), (7, 1));
    assert_eq!(bytes_of(&r.payload), vec![b"a".to_vec(), b"bc".to_vec()]);
}

/// The worked examples of `docs/protocol.md` §14, byte for byte.
#[test]
fn protocol_md_worked_examples() {
    let req = |request_type, request_id, flags: u64| {
        Message::Request(Request {
            request_type,
            request_id,
            flags: Flags::from_bits_retain(flags),
            route: vec![],
            reply_to: None,
            deadline_ms: 0,
            payload: vec![],
        })
    };
    let rr = |request_type, request_id| RequestRef {
        request_type,
        request_id,
        route: vec![],
    };
    let examples: Vec<(Message, &str)> = vec![
        (
            Message::Hello(Hello {
                heartbeat_ms: 1000,
                name: Some("billing".into()),
                route: vec![],
            }),
            "08 01 10 08 18 01 40 E8 07 6A 07 62 69 6C 6C 69 6E 67",
        ),
        (
            Message::Welcome {
                heartbeat_ms: 2500,
                max_message_size: 16 << 20,
            },
            "08 01 10 08 18 02 40 C4 13 E0 01 80 80 80 08",
        ),
        (req(42, 300, 0x14), "08 01 10 08 18 03 20 14 28 2A 30 AC 02"),
        (req(42, 0, 0), "08 01 10 08 18 03 28 2A"),
        (
            Message::Dispatch(Dispatch {
                attempt: 2,
                payload: vec![],
                ..example_dispatch()
            }),
            "08 01 10 08 18 04 20 14 28 2A 30 AC 02 78 02 90 01 E8 07",
        ),
        (
            Message::Result(WorkResult {
                attempt: 2,
                status: Status::Failed,
                error: Some("boom".into()),
                payload: vec![],
                ..example_result()
            }),
            "08 01 10 08 18 05 28 2A 30 AC 02 38 02 72 04 62 6F 6F 6D 78 02 90 01 E8 07",
        ),
        (
            Message::Result(WorkResult {
                status: Status::Returned,
                payload: vec![(&b"hi"[..]).into()],
                ..example_result()
            }),
            "08 01 10 08 18 05 28 2A 30 AC 02 38 0C 78 01 90 01 E8 07 8A 01 02 68 69",
        ),
        (
            Message::Response(Response {
                request_type: 42,
                request_id: 300,
                status: Status::Ok,
                error: None,
                route: vec![],
                payload: vec![],
            }),
            "08 01 10 08 18 06 28 2A 30 AC 02 38 01",
        ),
        (
            Message::ReceiptSent(rr(42, 300)),
            "08 01 10 08 18 07 28 2A 30 AC 02",
        ),
        (
            Message::Ready(Ready {
                heartbeat_ms: 1000,
                capacity: 4,
                request_types: vec![42, 300],
                type_names: Vec::new(),
                name: Some("w1".into()),
            }),
            "08 01 10 08 18 09 40 E8 07 48 04 52 03 2A AC 02 6A 02 77 31",
        ),
        (
            Message::Ready(Ready {
                heartbeat_ms: 1000,
                capacity: 4,
                request_types: vec![42, 300],
                type_names: vec!["orders.create".into(), String::new()],
                name: None,
            }),
            "08 01 10 08 18 09 40 E8 07 48 04 52 03 2A AC 02 \
             DA 01 0D 6F 72 64 65 72 73 2E 63 72 65 61 74 65 DA 01 00",
        ),
        (Message::Heartbeat { heartbeat_ms: 0 }, "08 01 10 08 18 0A"),
        (
            Message::Heartbeat { heartbeat_ms: 500 },
            "08 01 10 08 18 0A 40 F4 03",
        ),
        (Message::Shutdown, "08 01 10 08 18 0C"),
        (
            Message::Request(Request {
                request_type: 42,
                request_id: 7,
                flags: Flags::ALLOW_REDIRECT | Flags::NOTIFY_ON_REDIRECT,
                route: unhex("8F 3A 11 C0 5E 7D 2B 94 6A 01 F4 C3 D2 E1 B0 A9"),
                reply_to: Some("audit".into()),
                deadline_ms: 0,
                payload: vec![],
            }),
            "08 01 10 08 18 03 20 60 28 2A 30 07
             5A 10 8F 3A 11 C0 5E 7D 2B 94 6A 01 F4 C3 D2 E1 B0 A9
             62 05 61 75 64 69 74",
        ),
        (
            Message::Response(Response {
                request_type: 42,
                request_id: 7,
                status: Status::Rejected,
                error: None,
                route: unhex("8F 3A 11 C0 5E 7D 2B 94 6A 01 F4 C3 D2 E1 B0 A9"),
                payload: vec![],
            }),
            "08 01 10 08 18 06 28 2A 30 07 38 04 5A 10 8F 3A 11 C0 5E 7D 2B 94 6A 01 F4 C3 D2 E1 B0 A9",
        ),
    ];
    for (message, expected) in examples {
        let name = message.kind_name();
        let expected = unhex(expected);
        let mut header = Vec::new();
        let _ = message.encode(&mut header);
        assert_eq!(hex(&header), hex(&expected), "{name}");
        assert!(decode_bytes(&expected, &[]).is_ok(), "{name}");
    }

    // The complete exchange: a payload "hi" travels inline, a 2 KiB one as
    // a frame after the header.
    let request = |payload| {
        Message::Request(Request {
            payload,
            ..example_request()
        })
    };
    assert_eq!(
        bytes_of(&request(payload(&[b"hi"])).into_frames()),
        vec![unhex(
            "08 01 10 08 18 03 20 14 28 2A 30 AC 02 8A 01 02 68 69"
        )]
    );
    let big = vec![0x5a; 2048];
    assert_eq!(
        bytes_of(&request(payload(&[&big])).into_frames()),
        vec![unhex("08 01 10 08 18 03 20 14 28 2A 30 AC 02"), big.clone()]
    );
    let dispatch = Message::Dispatch(example_dispatch());
    assert_eq!(
        bytes_of(&dispatch.into_frames()),
        vec![unhex(
            "08 01 10 08 18 04 20 14 28 2A 30 AC 02 78 01 90 01 E8 07 8A 01 02 68 69"
        )]
    );
    let result = Message::Result(example_result());
    assert_eq!(
        bytes_of(&result.into_frames()),
        vec![unhex(
            "08 01 10 08 18 05 28 2A 30 AC 02 38 01 78 01 90 01 E8 07 8A 01 02 6F 6B"
        )]
    );

    // A RESULT without `dispatch_tag` from a 1.1 worker (minor 1: older
    // minors are accepted), one that predates the tag or answers an untagged
    // DISPATCH: read as tag 0, judged by its attempt.
    let Message::Result(r) =
        decode_bytes(&unhex("08 01 10 01 18 05 28 2A 30 AC 02 38 01 78 01"), &[]).unwrap()
    else {
        panic!("not a RESULT")
    };
    assert_eq!((r.attempt, r.dispatch_tag), (1, 0));

    // A 1.0 worker's RESULT carries no attempt (nor minor): read as attempt 0.
    let Message::Result(r) = decode_bytes(&unhex("08 01 18 05 28 2A 30 AC 02 38 01"), &[]).unwrap()
    else {
        panic!("not a RESULT")
    };
    assert_eq!(
        (r.request_type, r.request_id, r.attempt, r.dispatch_tag),
        (42, 300, 0, 0)
    );

    // A notification on topic `orders` with id 5 and payload "p".
    let frames = Message::Notification(RawNotification {
        topic: "orders".into(),
        notify_id: Some(5),
        payload: payload(&[b"p"]),
    })
    .into_frames();
    assert_eq!(
        bytes_of(&frames),
        vec![
            unhex("6F 72 64 65 72 73 00"),
            unhex("08 01 10 08 18 0F 80 01 05 8A 01 01 70"),
        ]
    );

    // Refused headers: major 2, no major, empty frame.
    assert_eq!(
        decode_err(&unhex("08 02 18 03 28 2A"), &[]),
        DecodeError::UnsupportedVersion { major: 2, minor: 0 }
    );
    assert_eq!(
        decode_err(&unhex("18 03 28 2A"), &[]),
        DecodeError::UnsupportedVersion { major: 0, minor: 0 }
    );
    assert_eq!(
        decode_err(b"", &[]),
        DecodeError::UnsupportedVersion { major: 0, minor: 0 }
    );
    // ... and the broker's ERROR about the first one.
    let text = DecodeError::UnsupportedVersion { major: 2, minor: 0 }.to_string();
    assert_eq!(text.len(), 55);
    let mut header = Vec::new();
    let _ = Message::Error(ErrorReply {
        error: text.clone(),
        request: None,
        status: None,
    })
    .encode(&mut header);
    let mut expected = unhex("08 01 10 08 18 0E 72 37");
    expected.extend_from_slice(text.as_bytes());
    assert_eq!(hex(&header), hex(&expected));

    // A REQUEST{type 42, id 7} carrying "a" inline, followed by a frame "b":
    // refused, and answered with an ERROR naming it (never a RESPONSE).
    let error = decode_err(&unhex("08 01 10 08 18 03 28 2A 30 07 8A 01 01 61"), &[b"b"]);
    let text = error.to_string();
    assert_eq!(
        text,
        "REQUEST: invalid field `inline_payload`: payload frames follow a header that \
         carries the payload inline"
    );
    assert_eq!(text.len(), 0x67);
    let _ = Message::Error(ErrorReply {
        error: text.clone(),
        request: Some(rr(42, 7)),
        status: None,
    })
    .encode(&mut header);
    let mut expected = unhex("08 01 10 08 18 0E 28 2A 30 07 72 67");
    expected.extend_from_slice(text.as_bytes());
    assert_eq!(hex(&header), hex(&expected));
}

/// Receivers accept fields in any order and repeated scalars (last wins),
/// as protobuf requires (`docs/protocol.md` §3.1).
#[test]
fn field_order_and_repeated_scalars() {
    let header = Pb::empty()
        .uint(field::REQUEST_ID, 1)
        .bytes(field::REPLY_TO, b"bob")
        .uint(field::REQUEST_TYPE, 99)
        .int32(field::KIND, kind::REQUEST)
        .uint(field::REQUEST_TYPE, 42)
        .uint(field::MAJOR, 1)
        .uint(field::REQUEST_ID, 300)
        .build();
    let r = variant!(decode_bytes(&header, &[]).unwrap(), Message::Request);
    assert_eq!((r.request_type, r.request_id), (42, 300));
    assert_eq!(r.reply_to.as_deref(), Some("bob"));
    // A later major field overrides an earlier one, both ways.
    let header = Pb::header(kind::SHUTDOWN).uint(field::MAJOR, 2).build();
    assert_eq!(
        decode_err(&header, &[]),
        DecodeError::UnsupportedVersion { major: 2, minor: 0 }
    );
    let header = Pb::empty()
        .uint(field::MAJOR, 2)
        .int32(field::KIND, kind::SHUTDOWN)
        .uint(field::MAJOR, 1)
        .build();
    assert!(matches!(decode_bytes(&header, &[]), Ok(Message::Shutdown)));
    // Packed and unpacked request_types mixed in one header are concatenated.
    let header = Pb::header(kind::READY)
        .uint(field::HEARTBEAT_MS, 1)
        .uint(field::CAPACITY, 1)
        .packed(field::REQUEST_TYPES, &[1, 2])
        .uint(field::REQUEST_TYPES, 3)
        .build();
    let r = variant!(decode_bytes(&header, &[]).unwrap(), Message::Ready);
    assert_eq!(r.request_types, vec![1, 2, 3]);
}

// ---------------------------------------------------------------------------
// Malformed variants, kind by kind
// ---------------------------------------------------------------------------

#[test]
fn hello_malformed() {
    let no_heartbeat = Pb::header(kind::HELLO).bytes(field::NAME, b"c").build();
    assert_eq!(
        decode_err(&no_heartbeat, &[]),
        missing("HELLO", "heartbeat_ms")
    );
    let explicit_zero = Pb::header(kind::HELLO).uint(field::HEARTBEAT_MS, 0).build();
    assert_eq!(
        decode_err(&explicit_zero, &[]),
        missing("HELLO", "heartbeat_ms")
    );
    let ok = Pb::header(kind::HELLO)
        .uint(field::HEARTBEAT_MS, 10)
        .build();
    assert_eq!(decode_err(&ok, &[b"x"]), unexpected_payload("HELLO", 1));
    // Invalid UTF-8 in a string field is a Protobuf error.
    let bad_name = Pb::header(kind::HELLO)
        .uint(field::HEARTBEAT_MS, 10)
        .bytes(field::NAME, b"\xff\xfe")
        .build();
    assert_prost_error(decode_bytes(&bad_name, &[]));
}

#[test]
fn welcome_malformed() {
    assert_eq!(
        decode_err(&Pb::header(kind::WELCOME).build(), &[]),
        missing("WELCOME", "heartbeat_ms")
    );
    let ok = Pb::header(kind::WELCOME)
        .uint(field::HEARTBEAT_MS, 10)
        .build();
    assert_eq!(
        decode_err(&ok, &[b"", b""]),
        unexpected_payload("WELCOME", 2)
    );
}

#[test]
fn request_malformed() {
    let no_type = Pb::header(kind::REQUEST).uint(field::REQUEST_ID, 5).build();
    assert_eq!(
        decode_err(&no_type, &[b"p"]),
        missing("REQUEST", "request_type")
    );
    let zero_type = Pb::header(kind::REQUEST)
        .uint(field::REQUEST_TYPE, 0)
        .uint(field::REQUEST_ID, 5)
        .build();
    assert_eq!(
        decode_err(&zero_type, &[]),
        missing("REQUEST", "request_type")
    );
    // request_type is a uint32: a value beyond 32 bits is truncated by
    // Protobuf, so 2^32 reads as 0 and is refused.
    let wide_type = Pb::header(kind::REQUEST)
        .uint(field::REQUEST_TYPE, 1 << 32)
        .build();
    assert_eq!(
        decode_err(&wide_type, &[]),
        missing("REQUEST", "request_type")
    );
    let bad_reply_to = Pb::header(kind::REQUEST)
        .uint(field::REQUEST_TYPE, 1)
        .bytes(field::REPLY_TO, b"\xc3")
        .build();
    assert_prost_error(decode_bytes(&bad_reply_to, &[]));
}

#[test]
fn dispatch_malformed() {
    let no_type = Pb::header(kind::DISPATCH).uint(field::ATTEMPT, 1).build();
    assert_eq!(
        decode_err(&no_type, &[]),
        missing("DISPATCH", "request_type")
    );
    let no_attempt = Pb::header(kind::DISPATCH)
        .uint(field::REQUEST_TYPE, 7)
        .uint(field::REQUEST_ID, 1)
        .build();
    assert_eq!(
        decode_err(&no_attempt, &[b"p"]),
        missing("DISPATCH", "attempt")
    );
}

#[test]
fn result_malformed() {
    let no_type = Pb::header(kind::RESULT).int32(field::STATUS, 1).build();
    assert_eq!(decode_err(&no_type, &[]), missing("RESULT", "request_type"));

    let with_status = |status: i32| {
        Pb::header(kind::RESULT)
            .uint(field::REQUEST_TYPE, 7)
            .int32(field::STATUS, status)
            .build()
    };
    // STATUS_UNSPECIFIED (explicit, or absent).
    assert_eq!(
        decode_err(&with_status(0), &[]),
        invalid_status("RESULT", 0)
    );
    let absent = Pb::header(kind::RESULT)
        .uint(field::REQUEST_TYPE, 7)
        .build();
    assert_eq!(decode_err(&absent, &[]), invalid_status("RESULT", 0));
    // Broker statuses (EXPIRED, 10, included) are not a worker's to report.
    for value in 4..=10 {
        assert_eq!(
            decode_err(&with_status(value), &[b"p"]),
            invalid_status("RESULT", value),
            "status {value}"
        );
    }
    // Unknown statuses.
    for value in [11, 99, -1, i32::MAX, i32::MIN] {
        assert_eq!(
            decode_err(&with_status(value), &[]),
            invalid_status("RESULT", value),
            "status {value}"
        );
    }
}

#[test]
fn response_malformed() {
    let no_type = Pb::header(kind::RESPONSE).int32(field::STATUS, 1).build();
    assert_eq!(
        decode_err(&no_type, &[]),
        missing("RESPONSE", "request_type")
    );
    for value in [0, 12, 1000, -5] {
        let header = Pb::header(kind::RESPONSE)
            .uint(field::REQUEST_TYPE, 7)
            .int32(field::STATUS, value)
            .build();
        assert_eq!(
            decode_err(&header, &[]),
            invalid_status("RESPONSE", value),
            "status {value}"
        );
    }
}

#[test]
fn receipts_malformed() {
    for k in [kind::RECEIPT_SENT, kind::RECEIPT_RECEIVED] {
        let name = kind_name(k);
        let no_type = Pb::header(k).uint(field::REQUEST_ID, 42).build();
        assert_eq!(decode_err(&no_type, &[]), missing(name, "request_type"));
        let ok = Pb::header(k).uint(field::REQUEST_TYPE, 7).build();
        assert_eq!(decode_err(&ok, &[b"p"]), unexpected_payload(name, 1));
    }
}

#[test]
fn ready_malformed() {
    let ready = |heartbeat_ms: u64, capacity: u64, types: &[u64]| {
        let mut pb = Pb::header(kind::READY)
            .uint(field::HEARTBEAT_MS, heartbeat_ms)
            .uint(field::CAPACITY, capacity);
        if !types.is_empty() {
            pb = pb.packed(field::REQUEST_TYPES, types);
        }
        pb.build()
    };
    assert!(decode_bytes(&ready(500, 4, &[1]), &[]).is_ok());
    assert_eq!(
        decode_err(&ready(0, 4, &[1]), &[]),
        missing("READY", "heartbeat_ms")
    );
    assert_eq!(
        decode_err(&ready(500, 0, &[1]), &[]),
        missing("READY", "capacity")
    );
    assert_eq!(
        decode_err(&ready(500, 4, &[]), &[]),
        missing("READY", "request_types")
    );
    // An empty packed field is an empty list too.
    let empty_packed = Pb::header(kind::READY)
        .uint(field::HEARTBEAT_MS, 500)
        .uint(field::CAPACITY, 4)
        .bytes(field::REQUEST_TYPES, b"")
        .build();
    assert_eq!(
        decode_err(&empty_packed, &[]),
        missing("READY", "request_types")
    );
    let reserved = DecodeError::InvalidField {
        kind: "READY",
        field: "request_types",
        reason: "request type 0 is reserved",
    };
    assert_eq!(decode_err(&ready(500, 4, &[0]), &[]), reserved);
    assert_eq!(decode_err(&ready(500, 4, &[3, 0, 5]), &[]), reserved);
    assert_eq!(
        decode_err(&ready(500, 4, &[1]), &[b"p", b"q", b"r"]),
        unexpected_payload("READY", 3)
    );
    // A packed field whose length runs past the end of the header.
    let truncated = Pb::header(kind::READY)
        .uint(field::HEARTBEAT_MS, 500)
        .uint(field::CAPACITY, 4)
        .raw(&[0x52, 0x05, 0x01])
        .build();
    assert_prost_error(decode_bytes(&truncated, &[]));
}

#[test]
fn heartbeat_malformed() {
    let header = Pb::header(kind::HEARTBEAT).build();
    assert_eq!(
        decode_err(&header, &[b""]),
        unexpected_payload("HEARTBEAT", 1)
    );
}

#[test]
fn payload_free_kinds_refuse_payload() {
    for k in [
        kind::DISCONNECT,
        kind::SHUTDOWN,
        kind::REREGISTER,
        kind::ERROR,
    ] {
        let name = kind_name(k);
        let header = Pb::header(k).build();
        assert!(decode_bytes(&header, &[]).is_ok(), "{name} without payload");
        assert_eq!(
            decode_err(&header, &[b"x"]),
            unexpected_payload(name, 1),
            "{name}"
        );
        assert_eq!(
            decode_err(&header, &[b"", b"", b"", b""]),
            unexpected_payload(name, 4),
            "{name}"
        );
    }
}

#[test]
fn notification_header_is_refused_by_decode() {
    let header = Pb::header(kind::NOTIFICATION)
        .uint(field::NOTIFY_ID, 1)
        .build();
    assert_eq!(
        decode_err(&header, &[]),
        DecodeError::UnexpectedKind("NOTIFICATION")
    );
    assert_eq!(
        decode_parts(&header, payload(&[b"p"])).unwrap_err(),
        DecodeError::UnexpectedKind("NOTIFICATION")
    );
    // The frames of a real notification are not a valid `decode` input
    // either: the topic frame is not a header.
    let frames = Message::Notification(RawNotification {
        topic: "t".into(),
        notify_id: None,
        payload: vec![],
    })
    .into_frames();
    assert!(decode(frames).is_err());
}

// ---------------------------------------------------------------------------
// Protobuf corner cases (protocol.md §3.1)
// ---------------------------------------------------------------------------
//
// Keys of the unknown fields used below: field 99 is `99 << 3 = 792`, varint
// `98 06` plus the wire type (`98 06` varint, `99 06` fixed64, `9a 06`
// length-delimited, `9b 06` start group, `9c 06` end group, `9d 06` fixed32);
// field 100 is `a0 06` plus the wire type.

/// HEARTBEAT{heartbeat_ms 500}, split after its major so that a field can
/// go before, between or after its fields.
const HEARTBEAT_500: [&str; 2] = ["08 01", "18 0a 40 f4 03"];

fn heartbeat_500_with(field: &str) -> [Vec<u8>; 3] {
    let [head, tail] = HEARTBEAT_500;
    [
        unhex(&format!("{field} {head} {tail}")),
        unhex(&format!("{head} {field} {tail}")),
        unhex(&format!("{head} {tail} {field}")),
    ]
}

#[test]
fn unknown_fields_of_every_wire_type_are_skipped() {
    let unknown = [
        ("varint", "98 06 96 01"),
        ("fixed64", "99 06 01 02 03 04 05 06 07 08"),
        ("length-delimited", "9a 06 03 61 62 63"),
        // A group: its fields (here a varint and a length-delimited one) up
        // to the end-group key of the same field number.
        ("group", "9b 06 08 01 9c 06"),
        ("longer group", "9b 06 08 01 12 01 78 9c 06"),
        ("nested groups", "9b 06 a3 06 a4 06 9c 06"),
        ("fixed32", "9d 06 01 02 03 04"),
        // The highest field number, 2^29 - 1.
        ("field 536870911", "f8 ff ff ff 0f 00"),
    ];
    for (what, field) in unknown {
        for header in heartbeat_500_with(field) {
            assert!(
                matches!(
                    decode_bytes(&header, &[]),
                    Ok(Message::Heartbeat { heartbeat_ms: 500 })
                ),
                "{what}: {}",
                hex(&header)
            );
        }
    }
}

#[test]
fn malformed_protobuf_structure_is_refused() {
    let broken = [
        ("an end group without its start", "9c 06"),
        ("a group that never ends", "9b 06 08 01"),
        ("a group closed by another field's end", "9b 06 a4 06"),
        ("wire type 6", "9e 06 00"),
        ("wire type 7", "9f 06 00"),
        ("a fixed64 cut short", "99 06 01 02 03"),
        ("a fixed32 cut short", "9d 06 01"),
        ("field number 0", "00 00"),
        ("a key wider than 32 bits", "80 80 80 80 10 00"),
        (
            "a varint of 11 bytes",
            "98 06 80 80 80 80 80 80 80 80 80 80 01",
        ),
        (
            "a 10-byte varint over 64 bits",
            "98 06 80 80 80 80 80 80 80 80 80 02",
        ),
    ];
    for (what, field) in broken {
        // At the end of the header only: anywhere else the bytes after it
        // would be read as part of it.
        let header = heartbeat_500_with(field)[2].clone();
        assert!(
            matches!(decode_bytes(&header, &[]), Err(DecodeError::Header(_))),
            "{what}: {}",
            hex(&header)
        );
    }
}

#[test]
fn a_known_field_with_another_wire_type_is_refused() {
    // Not skipped as an unknown field would be: the header does not parse.
    let cases = [
        ("major as length-delimited", "0a 01 01 18 0a 40 f4 03"),
        ("kind as fixed32", "08 01 1d 0a 00 00 00"),
        (
            "heartbeat_ms as fixed64",
            "08 01 18 0a 41 f4 01 00 00 00 00 00 00",
        ),
        ("route as varint", "08 01 18 0a 58 01"),
        ("name as fixed32", "08 01 18 0a 6d 61 62 63 64"),
        ("inline_payload as varint", "08 01 18 03 28 2a 88 01 05"),
        (
            "request_types as fixed32",
            "08 01 18 09 40 e8 07 48 04 55 2a 00 00 00",
        ),
    ];
    for (what, header) in cases {
        assert_prost_error(decode_bytes(&unhex(header), &[]));
        assert_eq!(peek_kind(&unhex(header)), None, "{what}");
    }
    // The one field with two wire types: request_types, packed (2) or not (0).
    let unpacked = unhex("08 01 18 09 40 e8 07 48 04 50 2a 50 ac 02");
    let r = variant!(decode_bytes(&unpacked, &[]).unwrap(), Message::Ready);
    assert_eq!(r.request_types, vec![42, 300]);
}

#[test]
fn integers_wider_than_their_field_keep_their_low_bits() {
    // uint32 fields take the low 32 bits of a wider varint, as protobuf
    // does: major 2^32 + 1 is major 1, heartbeat_ms 2^32 + 500 is 500.
    let header = unhex("08 81 80 80 80 10 18 0a 40 f4 83 80 80 10");
    assert!(matches!(
        decode_bytes(&header, &[]),
        Ok(Message::Heartbeat { heartbeat_ms: 500 })
    ));
    // request_type 2^32 is request type 0: missing.
    let header = unhex("08 01 18 03 28 80 80 80 80 10");
    assert_eq!(decode_err(&header, &[]), missing("REQUEST", "request_type"));
    // Enums (kind, status) take the low 32 bits as a signed int32: kind
    // 2^32 + 12 is SHUTDOWN, kind 2^31 is i32::MIN (unknown), and -1 is
    // written in 10 bytes.
    let header = unhex("08 01 18 8c 80 80 80 10");
    assert!(matches!(decode_bytes(&header, &[]), Ok(Message::Shutdown)));
    let header = unhex("08 01 18 80 80 80 80 08");
    assert_eq!(decode_err(&header, &[]), DecodeError::UnknownKind(i32::MIN));
    let header = unhex("08 01 18 ff ff ff ff ff ff ff ff ff 01");
    assert_eq!(decode_err(&header, &[]), DecodeError::UnknownKind(-1));
    // A RESPONSE with status 2^32 + 1 is OK.
    let header = unhex("08 01 18 06 28 2a 38 81 80 80 80 10");
    let r = variant!(decode_bytes(&header, &[]).unwrap(), Message::Response);
    assert_eq!(r.status, Status::Ok);
    // uint64 fields keep all 64 bits (10 bytes, the last one 01).
    let header = unhex("08 01 18 03 28 2a 30 ff ff ff ff ff ff ff ff ff 01");
    let r = variant!(decode_bytes(&header, &[]).unwrap(), Message::Request);
    assert_eq!(r.request_id, u64::MAX);
    // Redundant continuation bytes are accepted: 81 80 00 is 1.
    let header = unhex("08 81 80 00 18 0c");
    assert!(matches!(decode_bytes(&header, &[]), Ok(Message::Shutdown)));
}

// ---------------------------------------------------------------------------
// Malformed headers, whatever the kind
// ---------------------------------------------------------------------------

#[test]
fn unknown_kind_numbers() {
    for k in [26, 1000, i32::MAX, -1, i32::MIN] {
        let header = Pb::header(k).uint(field::REQUEST_TYPE, 7).build();
        assert_eq!(
            decode_err(&header, &[]),
            DecodeError::UnknownKind(k),
            "kind {k}"
        );
        // Same answer behind a valid topic frame.
        assert_eq!(
            notification_err(&[b"t\0", &header]),
            DecodeError::UnknownKind(k),
            "kind {k}"
        );
    }
}

#[test]
fn kind_unspecified() {
    // Kind absent (the Protobuf default), then explicitly 0.
    let absent = Pb::empty()
        .uint(field::MAJOR, 1)
        .uint(field::HEARTBEAT_MS, 5)
        .build();
    let explicit = Pb::header(kind::UNSPECIFIED).build();
    for header in [absent, explicit] {
        assert_eq!(
            decode_err(&header, &[]),
            DecodeError::UnexpectedKind("KIND_UNSPECIFIED")
        );
        assert_eq!(
            notification_err(&[b"t\0", &header]),
            DecodeError::UnexpectedKind("KIND_UNSPECIFIED")
        );
    }
}

#[test]
fn unsupported_major_versions() {
    // Major 0: the field is absent (an empty header is exactly that).
    let v0 = Pb::empty().int32(field::KIND, kind::SHUTDOWN).build();
    assert_eq!(
        decode_err(&v0, &[]),
        DecodeError::UnsupportedVersion { major: 0, minor: 0 }
    );
    let v0_explicit = Pb::empty()
        .uint(field::MAJOR, 0)
        .uint(field::MINOR, 3)
        .int32(field::KIND, kind::SHUTDOWN)
        .build();
    assert_eq!(
        decode_err(&v0_explicit, &[]),
        DecodeError::UnsupportedVersion { major: 0, minor: 3 }
    );
    // Major 2.
    let v2 = Pb::empty()
        .uint(field::MAJOR, 2)
        .uint(field::MINOR, 5)
        .int32(field::KIND, kind::SHUTDOWN)
        .build();
    let err = decode_err(&v2, &[]);
    assert_eq!(err, DecodeError::UnsupportedVersion { major: 2, minor: 5 });
    assert_eq!(
        err.to_string(),
        "unsupported protocol version 2.5 (this peer speaks 1.x)"
    );
    // The version is checked before anything else in the header, so a newer
    // peer using kinds or fields unknown here gets the version error.
    let v2_new_kind = Pb::empty()
        .uint(field::MAJOR, 2)
        .int32(field::KIND, 77)
        .build();
    assert_eq!(
        decode_err(&v2_new_kind, &[b"p"]),
        DecodeError::UnsupportedVersion { major: 2, minor: 0 }
    );
    // Same rule behind a topic frame.
    assert_eq!(
        notification_err(&[b"t\0", &v2]),
        DecodeError::UnsupportedVersion { major: 2, minor: 5 }
    );
    // Same rule for decode_parts.
    assert_eq!(
        decode_parts(&v0, vec![]).unwrap_err(),
        DecodeError::UnsupportedVersion { major: 0, minor: 0 }
    );
    // And a big major number.
    let huge = Pb::empty().uint(field::MAJOR, u64::from(u32::MAX)).build();
    assert_eq!(
        decode_err(&huge, &[]),
        DecodeError::UnsupportedVersion {
            major: u32::MAX,
            minor: 0
        }
    );
}

#[test]
fn garbage_headers_are_protobuf_errors() {
    let cases: &[&[u8]] = &[
        // A varint that never ends.
        &[0xff, 0xff, 0xff, 0xff],
        // Field 1 as a length-delimited field whose length is missing.
        &[0x0a],
        // Field 1 (uint32) with the wrong wire type (length-delimited).
        &[0x0a, 0x01, 0x01],
        // Wire type 7 does not exist.
        &[0x0f, 0x00],
        // Field number 0 is invalid.
        &[0x00, 0x01],
        // A valid header followed by a truncated field.
        &unhex("0801 180c 28"),
        // A length-delimited unknown field running past the end.
        &unhex("0801 180c a20610"),
        // Plain text.
        b"hello world",
    ];
    for &header in cases {
        assert_prost_error(decode_bytes(header, &[]));
        assert_prost_error(decode_parts(header, vec![]));
        // Behind a valid topic frame.
        assert_prost_error(decode_notification(frames(&[b"t\0", header])));
        assert_eq!(peek_request_ref(header), None, "{}", hex(header));
    }
    let err = decode_err(&[0xff], &[]);
    assert!(
        err.to_string()
            .starts_with("header frame is not a valid protobuf Header"),
        "{err}"
    );
}

#[test]
fn no_frames_and_empty_header() {
    assert_eq!(decode(vec![]).unwrap_err(), DecodeError::NoHeader);
    // An empty header frame is a valid (all-default) Protobuf message, so it
    // reads as major version 0.
    assert_eq!(
        decode(frames(&[b""])).unwrap_err(),
        DecodeError::UnsupportedVersion { major: 0, minor: 0 }
    );
    assert_eq!(
        decode(frames(&[b"", b"payload"])).unwrap_err(),
        DecodeError::UnsupportedVersion { major: 0, minor: 0 }
    );
    assert_eq!(
        decode_parts(b"", vec![]).unwrap_err(),
        DecodeError::UnsupportedVersion { major: 0, minor: 0 }
    );
    assert_eq!(
        notification_err(&[b"t\0", b""]),
        DecodeError::UnsupportedVersion { major: 0, minor: 0 }
    );
    assert_eq!(peek_request_ref(b""), None);
}

// ---------------------------------------------------------------------------
// Notification topic frames
// ---------------------------------------------------------------------------

#[test]
fn notification_topic_malformed() {
    let header = unhex("0801 180f");
    let cases: &[(&[u8], &str)] = &[
        (b"orders", "missing NUL terminator"),
        (b"", "missing NUL terminator"),
        (b"orders\0x", "missing NUL terminator"),
        (b"\0", "empty topic"),
        (b"ord\0ers\0", "NUL inside topic"),
        (b"\0\0", "NUL inside topic"),
        (b"\xff\xfe\0", "topic is not UTF-8"),
        (b"caf\xc3\0", "topic is not UTF-8"),
    ];
    for &(topic, reason) in cases {
        assert_eq!(
            parse_topic(topic).unwrap_err(),
            DecodeError::InvalidTopic(reason),
            "{}",
            hex(topic)
        );
        assert_eq!(
            notification_err(&[topic, &header]),
            DecodeError::InvalidTopic(reason),
            "{}",
            hex(topic)
        );
        // The topic is checked before the header.
        assert_eq!(
            notification_err(&[topic, b"\xff"]),
            DecodeError::InvalidTopic(reason),
            "{}",
            hex(topic)
        );
    }
    assert_eq!(parse_topic(b"a.b\0").unwrap(), "a.b");
}

#[test]
fn notification_frames_missing() {
    assert_eq!(
        decode_notification(vec![]).unwrap_err(),
        DecodeError::InvalidTopic("no topic frame")
    );
    // A topic frame but no header frame.
    assert_eq!(notification_err(&[b"orders\0"]), DecodeError::NoHeader);
}

#[test]
fn non_notification_header_behind_a_topic() {
    let cases = [
        (unhex("0801 1803 2807"), "REQUEST"),
        (unhex("0801 180c"), "SHUTDOWN"),
        (unhex("0801 180a"), "HEARTBEAT"),
        (unhex("0801 1801 4001"), "HELLO"),
    ];
    for (header, name) in cases {
        assert_eq!(
            notification_err(&[b"orders\0", &header, b"p"]),
            DecodeError::UnexpectedKind(name)
        );
    }
}

// ---------------------------------------------------------------------------
// peek_request_ref
// ---------------------------------------------------------------------------

#[test]
fn peek_request_ref_on_valid_headers() {
    let header = unhex("0801 1803 208101 2807 30ac02 5a027231 6203626f62");
    assert_eq!(
        peek_request_ref(&header),
        Some(RequestRef {
            request_type: 7,
            request_id: 300,
            route: b"r1".to_vec(),
        })
    );
    // Kinds that name no request type.
    assert_eq!(peek_request_ref(&unhex("0801 1801 4001")), None);
    assert_eq!(peek_request_ref(&unhex("0801 180c")), None);
    // READY has request *types*, not a request.
    assert_eq!(
        peek_request_ref(&unhex("0801 1809 40f403 4804 5204 01 07 ac02")),
        None
    );
}

#[test]
fn peek_request_ref_on_headers_that_fail_validation() {
    let expected = |request_type, request_id, route: &[u8]| {
        Some(RequestRef {
            request_type,
            request_id,
            route: route.to_vec(),
        })
    };
    // RESULT with a broker status: decode refuses it, peek still names the
    // request so that the broker can address an ERROR about it.
    let result = Pb::header(kind::RESULT)
        .uint(field::REQUEST_TYPE, 7)
        .uint(field::REQUEST_ID, 11)
        .int32(field::STATUS, 4)
        .build();
    assert!(matches!(
        decode_bytes(&result, &[]),
        Err(DecodeError::InvalidStatus { .. })
    ));
    assert_eq!(peek_request_ref(&result), expected(7, 11, b""));

    // DISPATCH without attempt.
    let dispatch = Pb::header(kind::DISPATCH)
        .uint(field::REQUEST_TYPE, 3)
        .uint(field::REQUEST_ID, 4)
        .build();
    assert!(matches!(
        decode_bytes(&dispatch, &[]),
        Err(DecodeError::MissingField { .. })
    ));
    assert_eq!(peek_request_ref(&dispatch), expected(3, 4, b""));

    // RECEIPT_SENT with a payload frame.
    let receipt = Pb::header(kind::RECEIPT_SENT)
        .uint(field::REQUEST_TYPE, 2)
        .bytes(field::ROUTE, b"via")
        .build();
    assert!(matches!(
        decode_bytes(&receipt, &[b"p"]),
        Err(DecodeError::UnexpectedPayload { .. })
    ));
    assert_eq!(peek_request_ref(&receipt), expected(2, 0, b"via"));

    // Unknown kind, KIND_UNSPECIFIED, unsupported version: still peeked.
    let unknown_kind = Pb::header(99).uint(field::REQUEST_TYPE, 5).build();
    assert_eq!(decode_err(&unknown_kind, &[]), DecodeError::UnknownKind(99));
    assert_eq!(peek_request_ref(&unknown_kind), expected(5, 0, b""));
    let unspecified = Pb::empty()
        .uint(field::MAJOR, 1)
        .uint(field::REQUEST_TYPE, 5)
        .uint(field::REQUEST_ID, 6)
        .build();
    assert_eq!(peek_request_ref(&unspecified), expected(5, 6, b""));
    let v2 = Pb::empty()
        .uint(field::MAJOR, 2)
        .int32(field::KIND, kind::REQUEST)
        .uint(field::REQUEST_TYPE, 8)
        .build();
    assert!(matches!(
        decode_bytes(&v2, &[]),
        Err(DecodeError::UnsupportedVersion { .. })
    ));
    assert_eq!(peek_request_ref(&v2), expected(8, 0, b""));

    // A REQUEST header without request type: nothing to peek.
    let no_type = Pb::header(kind::REQUEST).uint(field::REQUEST_ID, 9).build();
    assert_eq!(peek_request_ref(&no_type), None);
    // A header that is not Protobuf: nothing to peek.
    assert_eq!(peek_request_ref(b"\xff\xff"), None);
}

// ---------------------------------------------------------------------------
// peek_kind
// ---------------------------------------------------------------------------

#[test]
fn peek_kind_names_what_a_header_claims() {
    assert_eq!(peek_kind(&unhex("0801 1803 2807")), Some("REQUEST"));
    assert_eq!(peek_kind(&unhex("0801 180f 800105")), Some("NOTIFICATION"));
    // Headers that fail validation still name their kind.
    let result = Pb::header(kind::RESULT)
        .uint(field::REQUEST_TYPE, 7)
        .int32(field::STATUS, 4)
        .build();
    assert_eq!(peek_kind(&result), Some("RESULT"));
    let v2 = Pb::empty()
        .uint(field::MAJOR, 2)
        .int32(field::KIND, kind::READY)
        .build();
    assert_eq!(peek_kind(&v2), Some("READY"));
    // No kind (an empty header included) reads as KIND_UNSPECIFIED.
    assert_eq!(peek_kind(b""), Some("KIND_UNSPECIFIED"));
    // Unknown kinds and non-Protobuf bytes name nothing.
    assert_eq!(peek_kind(&Pb::header(99).build()), None);
    assert_eq!(peek_kind(&Pb::header(-1).build()), None);
    assert_eq!(peek_kind(b"\xff\xff"), None);
}

#[test]
fn stats_query_and_reply() {
    let frames = Message::StatsQuery.into_frames();
    assert_eq!(frames.len(), 1);
    // major 1, minor 3, kind 16
    assert_eq!(&frames[0][..], &[0x08, 0x01, 0x10, 0x08, 0x18, 0x10]);
    assert!(matches!(decode(frames), Ok(Message::StatsQuery)));
    let reply = Message::StatsReply {
        payload: vec![(&b"{\"pending\":1}"[..]).into()],
    };
    let frames = reply.into_frames();
    // major 1, minor 3, kind 17, the JSON inline (field 17, 13 bytes)
    assert_eq!(frames.len(), 1);
    assert_eq!(
        &frames[0][..9],
        &[0x08, 0x01, 0x10, 0x08, 0x18, 0x11, 0x8a, 0x01, 13]
    );
    assert_eq!(&frames[0][9..], b"{\"pending\":1}");
    match decode(frames) {
        Ok(Message::StatsReply { payload }) => assert_eq!(&payload[0][..], b"{\"pending\":1}"),
        other => panic!("{other:?}"),
    }
    // A query carries no payload.
    let mut frames = Message::StatsQuery.into_frames();
    frames.push((&b"x"[..]).into());
    assert!(matches!(
        decode(frames),
        Err(DecodeError::UnexpectedPayload {
            kind: "STATS_QUERY",
            frames: 1
        })
    ));
}

// ---------------------------------------------------------------------------
// Broker to broker (protocol 1.2, docs/protocol.md §18)
// ---------------------------------------------------------------------------

/// The 16-byte routing id of the client in the examples of protocol.md.
const CLIENT_ID: &str = "8F 3A 11 C0 5E 7D 2B 94 6A 01 F4 C3 D2 E1 B0 A9";

/// A client's route on a cluster link (protocol.md §18.5): `[n][routing id:
/// n bytes][the client's own route]`, here a direct client (no route).
fn client_route() -> Vec<u8> {
    let id = unhex(CLIENT_ID);
    let mut route = vec![id.len() as u8];
    route.extend(id);
    route
}

fn invalid(kind: &'static str, field: &'static str, reason: &'static str) -> DecodeError {
    DecodeError::InvalidField {
        kind,
        field,
        reason,
    }
}

/// The examples of protocol.md §18.9, shared by the tests of each kind.
fn example_peer_hello() -> Message {
    Message::PeerHello(PeerHello {
        broker_id: 1,
        heartbeat_ms: 1000,
        name: Some("b1".into()),
    })
}

fn example_peer_welcome() -> Message {
    Message::PeerWelcome {
        broker_id: 2,
        heartbeat_ms: 1000,
    }
}

fn example_serves_table() -> Vec<TypeServed> {
    vec![
        TypeServed {
            request_type: 42,
            capacity: 4,
            free: 1,
            pending: 0,
            name: None,
        },
        TypeServed {
            request_type: 300,
            capacity: 2,
            free: 0,
            pending: 5,
            name: None,
        },
    ]
}

/// The REQUEST of §14's exchange: 42/300, flags 0x14 (`RECEIPT_ON_SEND |
/// RETRY_ON_DEATH`), payload "hi".
fn example_request() -> Request {
    Request {
        request_type: 42,
        request_id: 300,
        flags: Flags::RECEIPT_ON_SEND | Flags::RETRY_ON_DEATH,
        route: vec![],
        reply_to: None,
        deadline_ms: 0,
        payload: payload(&[b"hi"]),
    }
}

/// Its DISPATCH: attempt 1, tag 1000.
fn example_dispatch() -> Dispatch {
    Dispatch {
        request_type: 42,
        request_id: 300,
        flags: Flags::RECEIPT_ON_SEND | Flags::RETRY_ON_DEATH,
        attempt: 1,
        dispatch_tag: 1000,
        deadline_ms: 0,
        payload: payload(&[b"hi"]),
    }
}

/// The worker's RESULT for that dispatch: OK, payload "ok".
fn example_result() -> WorkResult {
    WorkResult {
        request_type: 42,
        request_id: 300,
        attempt: 1,
        dispatch_tag: 1000,
        status: Status::Ok,
        error: None,
        payload: payload(&[b"ok"]),
    }
}

/// §14's REQUEST, forwarded by its entry broker.
fn example_forward() -> Message {
    Message::Forward(Forward {
        request: Request {
            route: client_route(),
            ..example_request()
        },
        hops: 1,
        reply_route: None,
    })
}

/// The same request, given by its owner to an executor (second hop).
fn example_execute() -> Message {
    Message::Execute(Execute {
        dispatch: example_dispatch(),
        hops: 2,
    })
}

/// The executor's outcome for it: OK, payload "ok".
fn example_executed() -> Message {
    Message::Executed(Executed {
        response: Response {
            request_type: 42,
            request_id: 300,
            status: Status::Ok,
            error: None,
            route: Vec::new(),
            payload: payload(&[b"ok"]),
        },
        attempt: 1,
        dispatch_tag: 1000,
    })
}

#[test]
fn peer_hello() {
    let make = example_peer_hello;
    // major=1 | minor=8 | kind=PEER_HELLO (18) | heartbeat_ms=1000 | name="b1"
    // | broker_id=1 (field 19: a two-byte key, 98 01)
    let frames = check_encoding(make, "0801 1008 1812 40e807 6a026231 980101", &[]);
    let h = variant!(decode(frames).unwrap(), Message::PeerHello);
    assert_eq!(
        h,
        PeerHello {
            broker_id: 1,
            heartbeat_ms: 1000,
            name: Some("b1".into()),
        }
    );
    // A broker id takes all 64 bits; the name is optional.
    let make = || {
        Message::PeerHello(PeerHello {
            broker_id: u64::MAX,
            heartbeat_ms: 1,
            name: None,
        })
    };
    let frames = check_encoding(make, "0801 1008 1812 4001 9801ffffffffffffffffff01", &[]);
    let h = variant!(decode(frames).unwrap(), Message::PeerHello);
    assert_eq!((h.broker_id, h.name), (u64::MAX, None));
}

#[test]
fn peer_welcome() {
    // major=1 | minor=8 | kind=PEER_WELCOME (19) | heartbeat_ms=1000 | broker_id=2
    let frames = check_encoding(example_peer_welcome, "0801 1008 1813 40e807 980102", &[]);
    let Message::PeerWelcome {
        broker_id,
        heartbeat_ms,
    } = decode(frames).unwrap()
    else {
        panic!("not a PEER_WELCOME")
    };
    assert_eq!((broker_id, heartbeat_ms), (2, 1000));
}

#[test]
fn serves() {
    let table = example_serves_table();
    // major=1 | minor=8 | kind=SERVES (20) | request_types=[42,300] (packed)
    // | type_capacity=[4,2] (B2 01) | type_free=[1,0] (BA 01)
    // | type_pending=[0,5] (C2 01): four parallel lists
    let frames = check_encoding(
        || Message::Serves(table.clone()),
        "0801 1008 1814 5203 2a ac02 b2010204 02 ba010201 00 c2010200 05",
        &[],
    );
    let t = variant!(decode(frames).unwrap(), Message::Serves);
    assert_eq!(t, table);

    // With names (1.6): `type_names` after the four lists, one per type,
    // "" for one without a name; read back as `None`.
    let mut named = example_serves_table();
    named[0].name = Some("a.b".to_owned());
    let frames = check_encoding(
        || Message::Serves(named.clone()),
        "0801 1008 1814 5203 2a ac02 b2010204 02 ba010201 00 c2010200 05 da0103 612e62 da0100",
        &[],
    );
    let t = variant!(decode(frames).unwrap(), Message::Serves);
    assert_eq!(t, named);

    // The empty table (the sender serves nothing) is a SERVES of its own.
    let frames = check_encoding(|| Message::Serves(Vec::new()), "0801 1008 1814", &[]);
    assert!(matches!(decode(frames), Ok(Message::Serves(t)) if t.is_empty()));

    // The informative lists may be left out: read as 0.
    let header = Pb::header(kind::SERVES)
        .packed(field::REQUEST_TYPES, &[42, 300])
        .packed(field::TYPE_CAPACITY, &[4, 2])
        .build();
    let t = variant!(decode_bytes(&header, &[]).unwrap(), Message::Serves);
    assert_eq!(
        t.iter()
            .map(|e| (e.request_type, e.capacity, e.free, e.pending))
            .collect::<Vec<_>>(),
        [(42, 4, 0, 0), (300, 2, 0, 0)]
    );
    // Like request_types, the lists may come unpacked (wire type 0), or
    // split in several fields: their values accumulate.
    let header = Pb::header(kind::SERVES)
        .uint(field::REQUEST_TYPES, 42)
        .uint(field::TYPE_CAPACITY, 4)
        .uint(field::TYPE_FREE, 3)
        .uint(field::REQUEST_TYPES, 300)
        .packed(field::TYPE_CAPACITY, &[2])
        .uint(field::TYPE_FREE, 1)
        .uint(field::TYPE_PENDING, 7)
        .uint(field::TYPE_PENDING, 8)
        .build();
    let t = variant!(decode_bytes(&header, &[]).unwrap(), Message::Serves);
    assert_eq!(
        t.iter()
            .map(|e| (e.request_type, e.capacity, e.free, e.pending))
            .collect::<Vec<_>>(),
        [(42, 4, 3, 7), (300, 2, 1, 8)]
    );
}

#[test]
fn forward() {
    let make = example_forward;
    // major=1 | minor=8 | kind=FORWARD (21) | flags=0x14 | request_type=42
    // | request_id=300 | route=[16][client id] | hops=1 (A0 01)
    // | inline_payload="hi"
    let frames = check_encoding(
        make,
        &format!("0801 1008 1815 2014 282a 30ac02 5a11 10 {CLIENT_ID} a00101 8a01026869"),
        &[],
    );
    let f = variant!(decode(frames).unwrap(), Message::Forward);
    let r = &f.request;
    assert_eq!(
        (r.request_type, r.request_id, r.flags),
        (42, 300, Flags::from_bits_retain(0x14))
    );
    assert_eq!(r.route, client_route());
    assert_eq!(r.reply_to, None);
    assert_eq!(bytes_of(&r.payload), vec![b"hi".to_vec()]);
    assert_eq!((f.hops, f.reply_route), (1, None));

    // With the route of the client named by reply_to, and a payload of two
    // frames (after the header). A reply_to name on a FORWARD is a field the
    // kind does not use: ignored.
    let header = Pb::header(kind::FORWARD)
        .uint(field::REQUEST_TYPE, 7)
        .bytes(field::ROUTE, &[1, 0xAA])
        .bytes(field::REPLY_TO, b"audit")
        .uint(field::HOPS, 1)
        .bytes(field::REPLY_ROUTE, &[1, 0xBB, b'r'])
        .build();
    let f = variant!(
        decode_bytes(&header, &[b"a", b""]).unwrap(),
        Message::Forward
    );
    assert_eq!(f.request.reply_to, None);
    assert_eq!(f.reply_route, Some(vec![1, 0xBB, b'r']));
    assert_eq!(
        bytes_of(&f.request.payload),
        vec![b"a".to_vec(), Vec::new()]
    );
    let frames = Message::Forward(f).into_frames();
    assert_eq!(
        hex(&frames[0]),
        hex(&unhex("0801 1008 1815 2807 5a0201aa a00101 aa010301bb72"))
    );
    assert_eq!(frames.len(), 3);
}

#[test]
fn execute() {
    let make = example_execute;
    // major=1 | minor=8 | kind=EXECUTE (22) | flags=0x14 | request_type=42
    // | request_id=300 | attempt=1 | dispatch_tag=1000 | hops=2
    // | inline_payload="hi"
    let frames = check_encoding(
        make,
        "0801 1008 1816 2014 282a 30ac02 7801 9001e807 a00102 8a01026869",
        &[],
    );
    let e = variant!(decode(frames).unwrap(), Message::Execute);
    let d = &e.dispatch;
    assert_eq!(
        (d.request_type, d.request_id, d.flags.bits()),
        (42, 300, 0x14)
    );
    assert_eq!((d.attempt, d.dispatch_tag, e.hops), (1, 1000, 2));
    assert_eq!(bytes_of(&d.payload), vec![b"hi".to_vec()]);
}

#[test]
fn executed() {
    let make = example_executed;
    // major=1 | minor=8 | kind=EXECUTED (23) | request_type=42 | request_id=300
    // | status=OK | attempt=1 | dispatch_tag=1000 | inline_payload="ok"
    let frames = check_encoding(
        make,
        "0801 1008 1817 282a 30ac02 3801 7801 9001e807 8a01026f6b",
        &[],
    );
    let e = variant!(decode(frames).unwrap(), Message::Executed);
    let r = &e.response;
    assert_eq!(
        (r.request_type, r.request_id, r.status),
        (42, 300, Status::Ok)
    );
    assert_eq!((e.attempt, e.dispatch_tag), (1, 1000));
    assert_eq!(bytes_of(&r.payload), vec![b"ok".to_vec()]);

    // Any status (the executor's own refusals included); a route is a field
    // the kind does not use: neither sent nor read.
    let header = Pb::header(kind::EXECUTED)
        .uint(field::REQUEST_TYPE, 7)
        .int32(field::STATUS, 8)
        .bytes(field::ERROR, b"no workers")
        .bytes(field::ROUTE, b"ignored")
        .uint(field::DISPATCH_TAG, 5)
        .build();
    let e = variant!(decode_bytes(&header, &[]).unwrap(), Message::Executed);
    assert_eq!(e.response.status, Status::NoWorkers);
    assert_eq!(e.response.error.as_deref(), Some("no workers"));
    assert!(e.response.route.is_empty());
    assert_eq!((e.attempt, e.dispatch_tag), (0, 5), "attempt is optional");
}

#[test]
fn peer_greetings_malformed() {
    for k in [kind::PEER_HELLO, kind::PEER_WELCOME] {
        let name = kind_name(k);
        let no_id = Pb::header(k).uint(field::HEARTBEAT_MS, 10).build();
        assert_eq!(decode_err(&no_id, &[]), missing(name, "broker_id"));
        let zero_id = Pb::header(k)
            .uint(field::HEARTBEAT_MS, 10)
            .uint(field::BROKER_ID, 0)
            .build();
        assert_eq!(decode_err(&zero_id, &[]), missing(name, "broker_id"));
        let no_interval = Pb::header(k).uint(field::BROKER_ID, 1).build();
        assert_eq!(decode_err(&no_interval, &[]), missing(name, "heartbeat_ms"));
        let ok = Pb::header(k)
            .uint(field::HEARTBEAT_MS, 10)
            .uint(field::BROKER_ID, 1)
            .build();
        assert!(decode_bytes(&ok, &[]).is_ok(), "{name}");
        assert_eq!(decode_err(&ok, &[b"x"]), unexpected_payload(name, 1));
        // broker_id is a varint field: length-delimited, it does not parse.
        let wrong = Pb::header(k)
            .uint(field::HEARTBEAT_MS, 10)
            .bytes(field::BROKER_ID, &[1])
            .build();
        assert_prost_error(decode_bytes(&wrong, &[]));
    }
}

#[test]
fn serves_malformed() {
    let serves = |types: &[u64], capacity: &[u64], free: &[u64], pending: &[u64]| {
        let mut pb = Pb::header(kind::SERVES).packed(field::REQUEST_TYPES, types);
        for (f, list) in [
            (field::TYPE_CAPACITY, capacity),
            (field::TYPE_FREE, free),
            (field::TYPE_PENDING, pending),
        ] {
            if !list.is_empty() {
                pb = pb.packed(f, list);
            }
        }
        pb.build()
    };
    let per_type = "one entry per request type";
    let cases: [(Vec<u8>, DecodeError); 8] = [
        // The capacity list is not informative: it must match.
        (
            serves(&[42, 300], &[4], &[], &[]),
            invalid("SERVES", "type_capacity", per_type),
        ),
        (
            serves(&[42], &[], &[], &[]),
            invalid("SERVES", "type_capacity", per_type),
        ),
        (
            serves(&[], &[4], &[], &[]),
            invalid("SERVES", "type_capacity", per_type),
        ),
        // An informative list is either absent or complete.
        (
            serves(&[42, 300], &[4, 2], &[1], &[]),
            invalid("SERVES", "type_free", per_type),
        ),
        (
            serves(&[42], &[4], &[1], &[0, 0]),
            invalid("SERVES", "type_pending", per_type),
        ),
        (
            serves(&[42, 0], &[4, 2], &[], &[]),
            invalid("SERVES", "request_types", "request type 0 is reserved"),
        ),
        (
            serves(&[42, 300, 42], &[4, 2, 1], &[], &[]),
            invalid("SERVES", "request_types", "a type is listed twice"),
        ),
        (
            serves(&[42, 300], &[4, 0], &[], &[]),
            invalid("SERVES", "type_capacity", "a served type has capacity"),
        ),
    ];
    for (header, expected) in cases {
        assert_eq!(decode_err(&header, &[]), expected, "{}", hex(&header));
    }
    let ok = serves(&[42], &[4], &[], &[]);
    assert_eq!(decode_err(&ok, &[b""]), unexpected_payload("SERVES", 1));
}

#[test]
fn forward_malformed() {
    let forward = |request_type: u64, route: &[u8], hops: u64| {
        Pb::header(kind::FORWARD)
            .uint(field::REQUEST_TYPE, request_type)
            .bytes(field::ROUTE, route)
            .uint(field::HOPS, hops)
            .build()
    };
    let route = client_route();
    assert!(decode_bytes(&forward(42, &route, 1), &[b"p"]).is_ok());
    assert_eq!(
        decode_err(&forward(0, &route, 1), &[]),
        missing("FORWARD", "request_type")
    );
    assert_eq!(
        decode_err(&forward(42, &[], 1), &[]),
        missing("FORWARD", "route")
    );
    assert_eq!(
        decode_err(&forward(42, &route, 0), &[]),
        missing("FORWARD", "hops")
    );
    // A FORWARD is always the first hop: an owner never forwards again.
    for hops in [2, u64::from(MAX_HOPS) + 1, 1 << 32 | 2] {
        assert_eq!(
            decode_err(&forward(42, &route, hops), &[]),
            invalid("FORWARD", "hops", "a FORWARD is the first hop (1)"),
            "hops {hops}"
        );
    }
    // hops is a uint32: 2^32 + 1 is 1.
    assert!(decode_bytes(&forward(42, &route, 1 << 32 | 1), &[]).is_ok());
    // The refusal names the request, for the ERROR that answers it.
    assert_eq!(
        peek_request_ref(&forward(42, &route, 3)),
        Some(RequestRef {
            request_type: 42,
            request_id: 0,
            route,
        })
    );
}

#[test]
fn execute_malformed() {
    let execute = |request_type: u64, attempt: u64, tag: u64, hops: u64| {
        Pb::header(kind::EXECUTE)
            .uint(field::REQUEST_TYPE, request_type)
            .uint(field::ATTEMPT, attempt)
            .uint(field::DISPATCH_TAG, tag)
            .uint(field::HOPS, hops)
            .build()
    };
    for hops in 1..=MAX_HOPS {
        assert!(decode_bytes(&execute(42, 1, 9, hops.into()), &[]).is_ok());
    }
    let cases = [
        (execute(0, 1, 9, 1), missing("EXECUTE", "request_type")),
        (execute(42, 0, 9, 1), missing("EXECUTE", "attempt")),
        (execute(42, 1, 0, 1), missing("EXECUTE", "dispatch_tag")),
        (execute(42, 1, 9, 0), missing("EXECUTE", "hops")),
        (
            execute(42, 1, 9, 3),
            invalid("EXECUTE", "hops", "hop limit (2) exceeded"),
        ),
        (
            execute(42, 1, 9, u64::from(u32::MAX)),
            invalid("EXECUTE", "hops", "hop limit (2) exceeded"),
        ),
    ];
    for (header, expected) in cases {
        assert_eq!(decode_err(&header, &[b"p"]), expected, "{}", hex(&header));
    }
}

#[test]
fn executed_malformed() {
    let executed = |request_type: u64, status: i32, tag: u64| {
        Pb::header(kind::EXECUTED)
            .uint(field::REQUEST_TYPE, request_type)
            .int32(field::STATUS, status)
            .uint(field::ATTEMPT, 1)
            .uint(field::DISPATCH_TAG, tag)
            .build()
    };
    for status in 1..=9 {
        assert!(
            decode_bytes(&executed(42, status, 9), &[]).is_ok(),
            "{status}"
        );
    }
    assert_eq!(
        decode_err(&executed(0, 1, 9), &[]),
        missing("EXECUTED", "request_type")
    );
    assert_eq!(
        decode_err(&executed(42, 1, 0), &[]),
        missing("EXECUTED", "dispatch_tag")
    );
    for status in [0, 12, -1] {
        assert_eq!(
            decode_err(&executed(42, status, 9), &[]),
            invalid_status("EXECUTED", status)
        );
    }
}

/// The cluster kinds are known kinds of 1.2, valid only on a cluster
/// endpoint: the codec takes them anywhere, each role refuses what its
/// socket does not take (protocol.md §12). Behind a topic frame they are
/// refused like any other kind.
#[test]
fn cluster_kinds_are_known_and_named() {
    for k in [
        kind::PEER_HELLO,
        kind::PEER_WELCOME,
        kind::SERVES,
        kind::FORWARD,
        kind::EXECUTE,
        kind::EXECUTED,
    ] {
        let name = kind_name(k);
        let header = Pb::header(k).build();
        assert_eq!(peek_kind(&header), Some(name));
        assert_eq!(
            notification_err(&[b"t\0", &header]),
            DecodeError::UnexpectedKind(name)
        );
    }
}

/// The byte examples of `docs/protocol.md` §18.9, byte for byte.
#[test]
fn protocol_md_cluster_examples() {
    let route = client_route();
    let examples: Vec<(Message, String)> = vec![
        (
            example_peer_hello(),
            "08 01 10 08 18 12 40 E8 07 6A 02 62 31 98 01 01".into(),
        ),
        (
            example_peer_welcome(),
            "08 01 10 08 18 13 40 E8 07 98 01 02".into(),
        ),
        (
            Message::Serves(example_serves_table()),
            "08 01 10 08 18 14 52 03 2A AC 02 B2 01 02 04 02 BA 01 02 01 00 C2 01 02 00 05".into(),
        ),
        (Message::Serves(Vec::new()), "08 01 10 08 18 14".into()),
        (
            example_forward(),
            format!(
                "08 01 10 08 18 15 20 14 28 2A 30 AC 02 5A 11 10 {CLIENT_ID} A0 01 01 8A 01 02 68 69"
            ),
        ),
        (
            example_execute(),
            "08 01 10 08 18 16 20 14 28 2A 30 AC 02 78 01 90 01 E8 07 A0 01 02 8A 01 02 68 69"
                .into(),
        ),
        (
            Message::ReceiptSent(RequestRef {
                request_type: 42,
                request_id: 300,
                route: Vec::new(),
            }),
            "08 01 10 08 18 07 28 2A 30 AC 02".into(),
        ),
        (
            Message::ReceiptSent(RequestRef {
                request_type: 42,
                request_id: 300,
                route: route.clone(),
            }),
            format!("08 01 10 08 18 07 28 2A 30 AC 02 5A 11 10 {CLIENT_ID}"),
        ),
        (
            example_executed(),
            "08 01 10 08 18 17 28 2A 30 AC 02 38 01 78 01 90 01 E8 07 8A 01 02 6F 6B".into(),
        ),
        (
            Message::Response(Response {
                request_type: 42,
                request_id: 300,
                status: Status::Ok,
                error: None,
                route,
                payload: payload(&[b"ok"]),
            }),
            format!("08 01 10 08 18 06 28 2A 30 AC 02 38 01 5A 11 10 {CLIENT_ID} 8A 01 02 6F 6B"),
        ),
    ];
    check_one_frame_examples(examples);
}

/// Each message of `examples` encodes to one frame (its payload inline),
/// the bytes given in hex, which decode.
fn check_one_frame_examples(examples: Vec<(Message, String)>) {
    for (message, expected) in examples {
        let name = message.kind_name();
        let expected = unhex(&expected);
        let frames = message.into_frames();
        assert_eq!(frames.len(), 1, "{name}: one frame, the payload inline");
        assert_eq!(hex(&frames[0]), hex(&expected), "{name}");
        assert!(decode_bytes(&expected, &[]).is_ok(), "{name}");
    }
}

// ---------------------------------------------------------------------------
// Deadlines (protocol 1.3): field 25 `deadline_ms` and status EXPIRED (10)
// ---------------------------------------------------------------------------

/// `deadline_ms` (field 25: key `(25 << 3) | 0` = 200, varint `C8 01`) on
/// each kind that carries it, REQUEST, DISPATCH, FORWARD and EXECUTE: written
/// after the other fields, before an inline payload, and read back.
#[test]
fn deadline_ms_on_every_kind_that_carries_it() {
    // REQUEST{7/1, deadline 5000 = varint 88 27, payload "x" inline}.
    let make = || {
        Message::Request(Request {
            request_type: 7,
            request_id: 1,
            flags: Flags::empty(),
            route: vec![],
            reply_to: None,
            deadline_ms: 5000,
            payload: payload(&[b"x"]),
        })
    };
    let frames = check_encoding(make, "0801 1008 1803 2807 3001 c8018827 8a010178", &[]);
    let r = variant!(decode(frames).unwrap(), Message::Request);
    assert_eq!(r.deadline_ms, 5000);
    assert_eq!(bytes_of(&r.payload), vec![b"x".to_vec()]);

    // DISPATCH{7/1, attempt 1, tag 1000, deadline 3800 = varint D8 1D}.
    let make = || {
        Message::Dispatch(Dispatch {
            request_type: 7,
            request_id: 1,
            flags: Flags::empty(),
            attempt: 1,
            dispatch_tag: 1000,
            deadline_ms: 3800,
            payload: vec![],
        })
    };
    let frames = check_encoding(make, "0801 1008 1804 2807 3001 7801 9001e807 c801d81d", &[]);
    let d = variant!(decode(frames).unwrap(), Message::Dispatch);
    assert_eq!((d.attempt, d.dispatch_tag, d.deadline_ms), (1, 1000, 3800));

    // FORWARD and EXECUTE of §18.9, with the time left.
    let forward = || {
        let mut f = variant!(example_forward(), Message::Forward);
        f.request.deadline_ms = 5000;
        Message::Forward(f)
    };
    let frames = check_encoding(
        forward,
        &format!("0801 1008 1815 2014 282a 30ac02 5a11 10 {CLIENT_ID} a00101 c8018827 8a01026869"),
        &[],
    );
    let f = variant!(decode(frames).unwrap(), Message::Forward);
    assert_eq!((f.request.deadline_ms, f.hops), (5000, 1));
    let execute = || {
        let mut e = variant!(example_execute(), Message::Execute);
        e.dispatch.deadline_ms = 3800;
        Message::Execute(e)
    };
    let frames = check_encoding(
        execute,
        "0801 1008 1816 2014 282a 30ac02 7801 9001e807 a00102 c801d81d 8a01026869",
        &[],
    );
    let e = variant!(decode(frames).unwrap(), Message::Execute);
    assert_eq!((e.dispatch.deadline_ms, e.hops), (3800, 2));

    // The whole uint32 range: u32::MAX ms (about 49.7 days) is 5 bytes.
    let make = || {
        Message::Request(Request {
            request_type: 7,
            request_id: 0,
            flags: Flags::empty(),
            route: vec![],
            reply_to: None,
            deadline_ms: u32::MAX,
            payload: vec![],
        })
    };
    let frames = check_encoding(make, "0801 1008 1803 2807 c801ffffffff0f", &[]);
    let r = variant!(decode(frames).unwrap(), Message::Request);
    assert_eq!(r.deadline_ms, u32::MAX);
}

/// What a 1.2 peer (or older) sends has no field 25: it reads as
/// `deadline_ms` 0, no deadline, on every kind that may carry one, and the
/// message is otherwise the same.
#[test]
fn a_header_without_deadline_ms_reads_as_no_deadline() {
    let client_route = format!("5A 11 10 {CLIENT_ID}");
    let headers = [
        // A 1.2 client's REQUEST (minor 2), a 1.1 one's (minor 1), a 1.0
        // one's (no minor).
        "08 01 10 02 18 03 20 14 28 2A 30 AC 02 8A 01 02 68 69".to_owned(),
        "08 01 10 01 18 03 20 14 28 2A 30 AC 02 8A 01 02 68 69".to_owned(),
        "08 01 18 03 20 14 28 2A 30 AC 02 8A 01 02 68 69".to_owned(),
        // A 1.2 broker's DISPATCH, FORWARD and EXECUTE.
        "08 01 10 02 18 04 20 14 28 2A 30 AC 02 78 01 90 01 E8 07 8A 01 02 68 69".to_owned(),
        format!("08 01 10 02 18 15 20 14 28 2A 30 AC 02 {client_route} A0 01 01 8A 01 02 68 69"),
        "08 01 10 02 18 16 20 14 28 2A 30 AC 02 78 01 90 01 E8 07 A0 01 02 8A 01 02 68 69"
            .to_owned(),
    ];
    for header in headers {
        let message =
            decode_bytes(&unhex(&header), &[]).unwrap_or_else(|e| panic!("{header}: {e}"));
        let deadline_ms = match &message {
            Message::Request(r) => r.deadline_ms,
            Message::Dispatch(d) => d.deadline_ms,
            Message::Forward(f) => f.request.deadline_ms,
            Message::Execute(e) => e.dispatch.deadline_ms,
            other => panic!("{header}: unexpected {other:?}"),
        };
        assert_eq!(deadline_ms, 0, "{header}");
        // Re-encoded at 1.3, it still carries no field 25 (0 is omitted):
        // only the minor byte differs.
        let mut again = Vec::new();
        let _ = message.encode(&mut again);
        assert!(!hex(&again).contains("c801"), "{header}");
        assert_eq!(&again[..4], &[0x08, 0x01, 0x10, 0x08], "{header}");
    }
    // An explicit 0 is the same as absent.
    let explicit = Pb::header(kind::REQUEST)
        .uint(field::REQUEST_TYPE, 7)
        .uint(field::DEADLINE_MS, 0)
        .build();
    let r = variant!(decode_bytes(&explicit, &[]).unwrap(), Message::Request);
    assert_eq!(r.deadline_ms, 0);
}

/// Field 25 follows §3.1's rules: a varint whose low 32 bits count, the last
/// of repeated values wins, another wire type does not parse, and on a kind
/// that does not use it it is ignored.
#[test]
fn deadline_ms_follows_the_field_rules() {
    let request = |deadline: Pb| {
        Pb::header(kind::REQUEST)
            .uint(field::REQUEST_TYPE, 7)
            .raw(&deadline.build())
            .build()
    };
    let read = |header: &[u8]| match decode_bytes(header, &[]) {
        Ok(Message::Request(r)) => r.deadline_ms,
        other => panic!("not a REQUEST: {other:?}"),
    };
    // 2^32 + 5: the low 32 bits, 5.
    assert_eq!(
        read(&request(
            Pb::empty().uint(field::DEADLINE_MS, (1 << 32) + 5)
        )),
        5
    );
    // Repeated: the last value wins.
    let twice = Pb::empty()
        .uint(field::DEADLINE_MS, 9000)
        .uint(field::DEADLINE_MS, 250);
    assert_eq!(read(&request(twice)), 250);
    // Length-delimited: a known field with another wire type.
    assert_prost_error(decode_bytes(
        &request(Pb::empty().bytes(field::DEADLINE_MS, b"\x05")),
        &[],
    ));
    // On RESULT, RESPONSE or HEARTBEAT it is not used: ignored, and not
    // written back.
    let ignored = [
        Pb::header(kind::RESULT)
            .uint(field::REQUEST_TYPE, 7)
            .int32(field::STATUS, 1)
            .uint(field::DEADLINE_MS, 100)
            .build(),
        Pb::header(kind::RESPONSE)
            .uint(field::REQUEST_TYPE, 7)
            .int32(field::STATUS, 10)
            .uint(field::DEADLINE_MS, 100)
            .build(),
        Pb::header(kind::HEARTBEAT)
            .uint(field::DEADLINE_MS, 100)
            .build(),
    ];
    for header in ignored {
        let message = decode_bytes(&header, &[]).unwrap();
        let mut again = Vec::new();
        let _ = message.encode(&mut again);
        assert!(!hex(&again).contains("c801"), "{}", hex(&header));
    }
}

/// EXPIRED (10): a broker (or proxy) status, valid in a RESPONSE and an
/// EXECUTED, never in a worker's RESULT.
#[test]
fn expired_is_a_broker_status() {
    let make = || {
        Message::Response(Response {
            request_type: 42,
            request_id: 300,
            status: Status::Expired,
            error: None,
            route: vec![],
            payload: vec![],
        })
    };
    let frames = check_encoding(make, "0801 1008 1806 282a 30ac02 380a", &[]);
    let r = variant!(decode(frames).unwrap(), Message::Response);
    assert_eq!(r.status, Status::Expired);
    assert_eq!(Status::Expired.as_str(), "expired");

    let executed = || {
        let mut e = variant!(example_executed(), Message::Executed);
        e.response.status = Status::Expired;
        e.response.payload = vec![];
        Message::Executed(e)
    };
    let frames = check_encoding(
        executed,
        "0801 1008 1817 282a 30ac02 380a 7801 9001e807",
        &[],
    );
    let e = variant!(decode(frames).unwrap(), Message::Executed);
    assert_eq!(e.response.status, Status::Expired);

    let result = Pb::header(kind::RESULT)
        .uint(field::REQUEST_TYPE, 42)
        .int32(field::STATUS, 10)
        .build();
    assert_eq!(decode_err(&result, &[]), invalid_status("RESULT", 10));
}

/// FORBIDDEN (11, since 1.4): a broker status in a RESPONSE, never a
/// worker's; on an ERROR the one status that means something (a refused
/// READY, or a refused REQUEST to a client older than 1.4), any other
/// read as none. The bytes are protocol.md §14's.
#[test]
fn forbidden_is_a_broker_status_and_an_error_status() {
    let make = || {
        Message::Response(Response {
            request_type: 42,
            request_id: 300,
            status: Status::Forbidden,
            error: None,
            route: vec![],
            payload: vec![],
        })
    };
    let frames = check_encoding(make, "0801 1008 1806 282a 30ac02 380b", &[]);
    let r = variant!(decode(frames).unwrap(), Message::Response);
    assert_eq!(
        (r.status, r.status.as_str()),
        (Status::Forbidden, "forbidden")
    );

    let refusal = || {
        Message::Error(ErrorReply {
            error: "no".into(),
            request: None,
            status: Some(Status::Forbidden),
        })
    };
    // kind ERROR (14 = 0E) · status FORBIDDEN `38 0B` · error "no" `72 02 6E 6F`.
    let frames = check_encoding(refusal, "0801 1008 180e 380b 72026e6f", &[]);
    let e = variant!(decode(frames).unwrap(), Message::Error);
    assert_eq!(
        (e.status, e.error.as_str()),
        (Some(Status::Forbidden), "no")
    );

    // The same naming the request it refuses, for a requester older than
    // 1.4: `28 2A` type 42 · `30 AC 02` id 300 before the status.
    let named = || {
        Message::Error(ErrorReply {
            error: "no".into(),
            request: Some(RequestRef {
                request_type: 42,
                request_id: 300,
                route: vec![],
            }),
            status: Some(Status::Forbidden),
        })
    };
    check_encoding(named, "0801 1008 180e 282a 30ac02 380b 72026e6f", &[]);

    for other in [1, 5, 12, -1] {
        let header = Pb::header(kind::ERROR)
            .int32(field::STATUS, other)
            .bytes(field::ERROR, b"x")
            .build();
        let Ok(Message::Error(e)) = decode_parts(&header, vec![]) else {
            panic!("an ERROR with status {other} decodes")
        };
        assert_eq!(e.status, None, "status {other}");
    }

    let result = Pb::header(kind::RESULT)
        .uint(field::REQUEST_TYPE, 42)
        .int32(field::STATUS, 11)
        .build();
    assert_eq!(decode_err(&result, &[]), invalid_status("RESULT", 11));
}

/// The deadline examples of `docs/protocol.md` §14, byte for byte.
#[test]
fn protocol_md_deadline_examples() {
    let request = |payload| {
        Message::Request(Request {
            deadline_ms: 5000,
            payload,
            ..example_request()
        })
    };
    let dispatch = Message::Dispatch(Dispatch {
        deadline_ms: 3800,
        ..example_dispatch()
    });
    let expired = |error: Option<&str>| {
        Message::Response(Response {
            request_type: 42,
            request_id: 300,
            status: Status::Expired,
            error: error.map(str::to_owned),
            route: vec![],
            payload: vec![],
        })
    };
    let broker_text = "the request's deadline passed before a worker took it";
    let proxy_text = "the request's deadline passed while the proxy held it";
    let examples: Vec<(Message, String)> =
        vec![
        (
            request(vec![]),
            "08 01 10 08 18 03 20 14 28 2A 30 AC 02 C8 01 88 27".to_owned(),
        ),
        (
            request(payload(&[b"hi"])),
            "08 01 10 08 18 03 20 14 28 2A 30 AC 02 C8 01 88 27 8A 01 02 68 69".to_owned(),
        ),
        (
            dispatch,
            "08 01 10 08 18 04 20 14 28 2A 30 AC 02 78 01 90 01 E8 07 C8 01 D8 1D 8A 01 02 68 69"
                .to_owned(),
        ),
        (
            expired(None),
            "08 01 10 08 18 06 28 2A 30 AC 02 38 0A".to_owned(),
        ),
        (
            expired(Some(broker_text)),
            format!("08 01 10 08 18 06 28 2A 30 AC 02 38 0A 72 35 {}", hex(broker_text.as_bytes())),
        ),
        (
            expired(Some(proxy_text)),
            format!("08 01 10 08 18 06 28 2A 30 AC 02 38 0A 72 35 {}", hex(proxy_text.as_bytes())),
        ),
    ];
    assert_eq!((broker_text.len(), proxy_text.len()), (53, 53));
    check_one_frame_examples(examples);
}

/// The fuzz target's dictionary (fuzz/decode.dict) names the key of every
/// header field, in each wire type the field takes, and every kind: a field
/// or kind added to the schema must be added there too.
#[test]
fn fuzz_dictionary_covers_every_field_and_kind() {
    // Read at run time, as tests/generated_protocol.rs reads proto/: the
    // file is outside the crate.
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/decode.dict");
    let dict = std::fs::read_to_string(&path).expect("fuzz/decode.dict");
    let escaped =
        |bytes: &[u8]| -> String { bytes.iter().map(|b| format!("\\x{b:02X}")).collect() };
    let key = |field: u32, wire_type: u8| {
        let mut pb = Pb::empty();
        pb.key(field, wire_type);
        format!("=\"{}\"", escaped(&pb.0))
    };
    let repeated = [
        field::REQUEST_TYPES,
        field::TYPE_CAPACITY,
        field::TYPE_FREE,
        field::TYPE_PENDING,
    ];
    let length_delimited = [field::ROUTE, field::REPLY_TO, field::NAME, field::ERROR]
        .into_iter()
        .chain([field::INLINE_PAYLOAD, field::REPLY_ROUTE])
        .chain(repeated);
    let length_delimited: Vec<u32> = length_delimited.collect();
    for f in field::MAJOR..=field::DEADLINE_MS {
        let wire_type = if length_delimited.contains(&f) { 2 } else { 0 };
        assert!(dict.contains(&key(f, wire_type)), "field {f}");
        if repeated.contains(&f) {
            assert!(dict.contains(&key(f, 0)), "field {f}, unpacked");
        }
    }
    for k in kind::HELLO..=kind::EXECUTED {
        let value = Pb::header(k).build();
        let kind_bytes = &value[2..];
        assert!(
            dict.contains(&format!("=\"{}\"", escaped(kind_bytes))),
            "kind {k}"
        );
    }
}

/// VIEW (1.3, protocol.md §18.10): the broker's id and the other members'.
#[test]
fn view() {
    let frames = Message::View {
        broker_id: 1,
        members: vec![2, 3],
    }
    .into_frames();
    assert_eq!(frames.len(), 1);
    assert_eq!(
        &frames[0][..],
        &[
            0x08, 0x01, 0x10, 0x08, 0x18, 0x18, 0x98, 0x01, 0x01, 0xD2, 0x01, 0x02, 0x02, 0x03
        ]
    );
    let Ok(Message::View { broker_id, members }) = decode(frames) else {
        panic!("a VIEW");
    };
    assert_eq!((broker_id, members), (1, vec![2, 3]));
    // A broker id is required; no payload.
    let header = [0x08, 0x01, 0x10, 0x08, 0x18, 0x18];
    assert!(matches!(
        decode_err(&header, &[]),
        DecodeError::MissingField {
            field: "broker_id",
            ..
        }
    ));
}

/// CANCEL (protocol 1.5), as docs/protocol.md §8.6, §14 and §18.9 show it: from a
/// client, from a proxy (with the client's route), from an entry broker to
/// the owner (the encoded client), and to a worker or executor (the tag of
/// the dispatch it cancels).
#[test]
fn protocol_md_cancel_examples() {
    let id16 = unhex("8F 3A 11 C0 5E 7D 2B 94 6A 01 F4 C3 D2 E1 B0 A9");
    let mut encoded = vec![0x10];
    encoded.extend_from_slice(&id16);
    let cancel = |route: Vec<u8>, dispatch_tag| {
        Message::Cancel(Cancel {
            request_type: 42,
            request_id: 300,
            route,
            dispatch_tag,
        })
    };
    let examples = [
        (
            cancel(vec![], 0),
            "08 01 10 08 18 19 28 2A 30 AC 02".to_owned(),
        ),
        (
            cancel(vec![], 1000),
            "08 01 10 08 18 19 28 2A 30 AC 02 90 01 E8 07".to_owned(),
        ),
        (
            cancel(id16.clone(), 0),
            format!("08 01 10 08 18 19 28 2A 30 AC 02 5A 10 {}", spaced(&id16)),
        ),
        (
            cancel(encoded.clone(), 0),
            format!(
                "08 01 10 08 18 19 28 2A 30 AC 02 5A 11 {}",
                spaced(&encoded)
            ),
        ),
    ];
    for (message, expected) in examples {
        let expected = unhex(&expected);
        let frames = message.into_frames();
        assert_eq!(bytes_of(&frames), vec![expected.clone()]);
        let Ok(Message::Cancel(c)) = decode_bytes(&expected, &[]) else {
            panic!("not a CANCEL: {}", hex(&expected));
        };
        assert_eq!((c.request_type, c.request_id), (42, 300));
    }
    // Refused: no request type; any payload, inline or as a frame.
    assert!(matches!(
        decode_err(&unhex("08 01 10 08 18 19 30 AC 02"), &[]),
        DecodeError::MissingField {
            field: "request_type",
            ..
        }
    ));
    assert!(matches!(
        decode_err(&unhex("08 01 10 08 18 19 28 2A"), &[b"x"]),
        DecodeError::UnexpectedPayload { frames: 1, .. }
    ));
    assert!(matches!(
        decode_err(&unhex("08 01 10 08 18 19 28 2A 8A 01 00"), &[]),
        DecodeError::UnexpectedPayload { frames: 1, .. }
    ));
}

/// Bytes as the documents write them: upper-case hex, space-separated.
fn spaced(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// RETURNED (status 12, protocol 1.8) is a worker's, in a RESULT only:
/// never an outcome, so a RESPONSE or an EXECUTED carrying it is refused as
/// an invalid status, as an unknown one is. The bytes are protocol.md §14's.
#[test]
fn returned_is_a_result_status_only() {
    let make = || {
        Message::Result(WorkResult {
            status: Status::Returned,
            payload: payload(&[b"req", b"frames"]),
            ..example_result()
        })
    };
    // kind RESULT · status RETURNED `38 0C` · attempt 1 · tag 1000, and the
    // dispatch's payload frames after the header.
    let frames = check_encoding(
        make,
        "0801 1008 1805 282a 30ac02 380c 7801 9001e807",
        &[b"req", b"frames"],
    );
    let r = variant!(decode(frames).unwrap(), Message::Result);
    assert_eq!(
        (r.status, r.status.as_str()),
        (Status::Returned, "returned")
    );
    assert_eq!((r.attempt, r.dispatch_tag), (1, 1000));
    assert_eq!(
        bytes_of(&r.payload),
        vec![b"req".to_vec(), b"frames".to_vec()]
    );

    for k in [kind::RESPONSE, kind::EXECUTED] {
        let name = kind_name(k);
        let header = Pb::header(k)
            .uint(field::REQUEST_TYPE, 42)
            .uint(field::DISPATCH_TAG, 1000)
            .int32(field::STATUS, 12)
            .build();
        assert_eq!(decode_err(&header, &[]), invalid_status(name, 12), "{name}");
    }
    // The next number is unknown everywhere.
    let header = Pb::header(kind::RESULT)
        .uint(field::REQUEST_TYPE, 42)
        .int32(field::STATUS, 13)
        .build();
    assert_eq!(decode_err(&header, &[]), invalid_status("RESULT", 13));
}
