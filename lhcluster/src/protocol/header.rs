//! The header frame's protobuf encoding, on the hot path.
//!
//! `prost`'s generated code for `Header` (proto/lhcluster.proto) is the
//! reference codec, and stays the fallback. Its generic decoder costs about
//! 1 100 instructions for a typical 10-to-30-byte header, and its encoder
//! about as many, four of each per request and more through a proxy. The
//! functions here do the same work in one straight pass over the bytes:
//!
//! - [`decode_into`] handles what every lhcluster peer writes: known fields with
//!   their proto3 wire types, in any order, repeated or not (the last value
//!   wins, repeated fields accumulate), `request_types` packed. Anything else
//!   (an unknown field, a group, an unpacked `request_types`, invalid UTF-8,
//!   a malformed varint, a truncated field) returns `None`: the caller then
//!   decodes with `prost`, which skips unknown fields and reports errors.
//!   It lends the inline payload instead of copying it into a `Vec`, and
//!   fills the caller's `Header` rather than returning one.
//! - [`Writer`] writes a message's fields without a `Header` in between,
//!   exactly the bytes `prost` writes for that header (fields in number
//!   order, proto3 defaults omitted); [`append_inline_payload`] then adds
//!   the payload last.
//!
//! The tests below hold both to `prost` (the writer through `encode`, which
//! writes every field of a `Header` with it): same bytes out, same header
//! in; each message kind's fields are held to their order by the writer's
//! debug check, which every encode of the codec tests runs through.
//! What the two accept together is the protobuf behaviour docs/protocol.md
//! §3.1 specifies (every wire type, groups, wrong wire types, varint limits,
//! values wider than their field), pinned byte by byte in
//! tests/codec_examples.rs and by property in tests/codec_proptest.rs.

use std::borrow::Cow;

use super::pb;

/// A header's inline payload, borrowed from the frame when the fast path
/// decoded it.
pub(super) type InlinePayload<'a> = Option<Cow<'a, [u8]>>;

/// A decoded header and its inline payload.
#[cfg(test)]
pub(super) type DecodedHeader<'a> = (pb::Header, InlinePayload<'a>);

/// Decodes a header the fast way; `None` when the fast path does not apply
/// (decode with `prost` instead).
#[cfg(test)]
pub(super) fn decode(buf: &[u8]) -> Option<DecodedHeader<'_>> {
    let mut h = pb::Header::default();
    let inline = decode_into(buf, &mut h)?;
    Some((h, inline))
}

/// Decodes a header the fast way into `h` (a default one: fields absent
/// from `buf` are left as they are), returning its inline payload; `None`
/// when the fast path does not apply (decode with `prost` instead; `h` is
/// then partly written). Into the caller's `Header` rather than returning
/// one: the struct is some 400 bytes, and each move of it a copy.
pub(super) fn decode_into<'a>(mut buf: &'a [u8], h: &mut pb::Header) -> Option<InlinePayload<'a>> {
    let mut inline = None;
    while !buf.is_empty() {
        let key = varint(&mut buf)?;
        let field = key >> 3;
        // By wire type first, then by field: one read of the value each, and
        // a dense switch on the field number.
        match key & 7 {
            0 => {
                let v = varint(&mut buf)?;
                match field {
                    1 => h.major = v as u32,
                    2 => h.minor = v as u32,
                    3 => h.kind = v as i32,
                    4 => h.flags = v,
                    5 => h.request_type = v as u32,
                    6 => h.request_id = v,
                    7 => h.status = v as i32,
                    8 => h.heartbeat_ms = v as u32,
                    9 => h.capacity = v as u32,
                    15 => h.attempt = v as u32,
                    16 => h.notify_id = v,
                    18 => h.dispatch_tag = v,
                    19 => h.broker_id = v,
                    20 => h.hops = v as u32,
                    25 => h.deadline_ms = v as u32,
                    28 => h.max_message_size = v,
                    _ => return None,
                }
            }
            2 => {
                let bytes = delimited(&mut buf)?;
                match field {
                    10 => packed(bytes, &mut h.request_types)?,
                    11 => h.route = bytes.to_vec(),
                    12 => h.reply_to = text(bytes)?,
                    13 => h.name = text(bytes)?,
                    14 => h.error = text(bytes)?,
                    17 => inline = Some(Cow::Borrowed(bytes)),
                    21 => h.reply_route = bytes.to_vec(),
                    22 => packed(bytes, &mut h.type_capacity)?,
                    23 => packed(bytes, &mut h.type_free)?,
                    24 => packed(bytes, &mut h.type_pending)?,
                    26 => {
                        let mut values = bytes;
                        while !values.is_empty() {
                            h.members.push(varint(&mut values)?);
                        }
                    }
                    27 => h.type_names.push(text(bytes)?),
                    _ => return None,
                }
            }
            _ => return None,
        }
    }
    Some(inline)
}

/// Writes a header's fields straight from a message, without building a
/// [`pb::Header`] first, byte for byte as `prost` writes that header: each
/// field in number order (checked in debug builds), proto3 defaults (0,
/// empty) omitted. One method per field, named after it: the field numbers
/// of proto/lhcluster.proto are written here only.
pub(super) struct Writer<'a> {
    buf: &'a mut Vec<u8>,
    /// The last field written, to check the order.
    #[cfg(debug_assertions)]
    last: u32,
}

impl<'a> Writer<'a> {
    /// Clears `buf` and writes the fields every header starts with:
    /// `major`, `minor` and `kind`.
    pub(super) fn start(buf: &'a mut Vec<u8>, major: u32, minor: u32, kind: i32) -> Self {
        buf.clear();
        let mut w = Self {
            buf,
            #[cfg(debug_assertions)]
            last: 0,
        };
        w.uint(1, major.into());
        w.uint(2, minor.into());
        w.int32(3, kind);
        w
    }

    pub(super) fn flags(&mut self, v: u64) {
        self.uint(4, v);
    }
    pub(super) fn request_type(&mut self, v: u32) {
        self.uint(5, v.into());
    }
    pub(super) fn request_id(&mut self, v: u64) {
        self.uint(6, v);
    }
    pub(super) fn status(&mut self, v: i32) {
        self.int32(7, v);
    }
    pub(super) fn heartbeat_ms(&mut self, v: u32) {
        self.uint(8, v.into());
    }
    pub(super) fn capacity(&mut self, v: u32) {
        self.uint(9, v.into());
    }
    pub(super) fn request_types(&mut self, v: impl Iterator<Item = u32> + Clone) {
        self.packed(10, v.map(u64::from));
    }
    pub(super) fn route(&mut self, v: &[u8]) {
        self.bytes(11, v);
    }
    pub(super) fn reply_to(&mut self, v: &str) {
        self.bytes(12, v.as_bytes());
    }
    pub(super) fn name(&mut self, v: &str) {
        self.bytes(13, v.as_bytes());
    }
    pub(super) fn error(&mut self, v: &str) {
        self.bytes(14, v.as_bytes());
    }
    pub(super) fn attempt(&mut self, v: u32) {
        self.uint(15, v.into());
    }
    pub(super) fn notify_id(&mut self, v: u64) {
        self.uint(16, v);
    }
    /// `inline_payload`, present even when empty (an `optional bytes`).
    /// (A message's encoder appends it last instead: [`append_inline_payload`].)
    #[cfg(test)]
    pub(super) fn inline_payload(&mut self, v: &[u8]) {
        self.order(17);
        delimited_field(self.buf, INLINE_PAYLOAD, v);
    }
    pub(super) fn dispatch_tag(&mut self, v: u64) {
        self.uint(18, v);
    }
    pub(super) fn broker_id(&mut self, v: u64) {
        self.uint(19, v);
    }
    pub(super) fn hops(&mut self, v: u32) {
        self.uint(20, v.into());
    }
    pub(super) fn reply_route(&mut self, v: &[u8]) {
        self.bytes(21, v);
    }
    pub(super) fn type_capacity(&mut self, v: impl Iterator<Item = u32> + Clone) {
        self.packed(22, v.map(u64::from));
    }
    pub(super) fn type_free(&mut self, v: impl Iterator<Item = u32> + Clone) {
        self.packed(23, v.map(u64::from));
    }
    pub(super) fn type_pending(&mut self, v: impl Iterator<Item = u32> + Clone) {
        self.packed(24, v.map(u64::from));
    }
    pub(super) fn deadline_ms(&mut self, v: u32) {
        self.uint(25, v.into());
    }
    pub(super) fn members(&mut self, v: &[u64]) {
        self.packed(26, v.iter().copied());
    }
    /// A repeated string: every entry written, an empty one too (it keeps
    /// the list parallel to `request_types`).
    pub(super) fn type_names<'s>(&mut self, v: impl Iterator<Item = &'s str>) {
        self.order(27);
        for name in v {
            delimited_field(self.buf, 27, name.as_bytes());
        }
    }
    pub(super) fn max_message_size(&mut self, v: u64) {
        self.uint(28, v);
    }

    /// Fields come in number order, as `prost` writes them (a debug
    /// build's check of the callers).
    #[cfg(debug_assertions)]
    fn order(&mut self, field: u32) {
        debug_assert!(
            field > self.last,
            "header field {field} after {}",
            self.last
        );
        self.last = field;
    }
    #[cfg(not(debug_assertions))]
    #[allow(clippy::unused_self)]
    fn order(&mut self, _field: u32) {}

    /// An unsigned scalar field, omitted when 0 (proto3).
    fn uint(&mut self, field: u32, value: u64) {
        self.order(field);
        if value != 0 {
            key(self.buf, field, 0);
            put_varint(self.buf, value);
        }
    }

    /// An `int32`/enum field: a negative value is sign-extended to 10 bytes.
    fn int32(&mut self, field: u32, value: i32) {
        self.uint(field, i64::from(value) as u64);
    }

    /// A `bytes`/`string` field, omitted when empty (proto3).
    fn bytes(&mut self, field: u32, value: &[u8]) {
        self.order(field);
        if !value.is_empty() {
            delimited_field(self.buf, field, value);
        }
    }

    /// A packed repeated varint field (absent when empty, as proto3 writes
    /// it).
    fn packed(&mut self, field: u32, values: impl Iterator<Item = u64> + Clone) {
        self.order(field);
        let mut values = values.peekable();
        if values.peek().is_none() {
            return;
        }
        let len: usize = values.clone().map(varint_len).sum();
        key(self.buf, field, 2);
        put_varint(self.buf, len as u64);
        for v in values {
            put_varint(self.buf, v);
        }
    }
}

/// Field number of `Header.inline_payload`.
const INLINE_PAYLOAD: u32 = 17;

/// Appends `payload` to an encoded header as its `inline_payload` field.
/// After the fields of higher numbers, which `prost` would write after it:
/// protobuf fields may come in any order, and this way the payload is copied
/// once, from its frame into the header, once the rest is written.
pub(super) fn append_inline_payload(buf: &mut Vec<u8>, payload: &[u8]) {
    delimited_field(buf, INLINE_PAYLOAD, payload);
}

/// Encodes `h` into `buf` (which is cleared first), byte for byte as
/// `prost` would: the reference the tests hold [`Writer`] to.
#[cfg(test)]
pub(super) fn encode(h: &pb::Header, buf: &mut Vec<u8>) {
    let mut w = Writer::start(buf, h.major, h.minor, h.kind);
    w.flags(h.flags);
    w.request_type(h.request_type);
    w.request_id(h.request_id);
    w.status(h.status);
    w.heartbeat_ms(h.heartbeat_ms);
    w.capacity(h.capacity);
    w.request_types(h.request_types.iter().copied());
    w.route(&h.route);
    w.reply_to(&h.reply_to);
    w.name(&h.name);
    w.error(&h.error);
    w.attempt(h.attempt);
    w.notify_id(h.notify_id);
    if let Some(payload) = &h.inline_payload {
        w.inline_payload(payload);
    }
    w.dispatch_tag(h.dispatch_tag);
    w.broker_id(h.broker_id);
    w.hops(h.hops);
    w.reply_route(&h.reply_route);
    w.type_capacity(h.type_capacity.iter().copied());
    w.type_free(h.type_free.iter().copied());
    w.type_pending(h.type_pending.iter().copied());
    w.deadline_ms(h.deadline_ms);
    w.members(&h.members);
    w.type_names(h.type_names.iter().map(String::as_str));
    w.max_message_size(h.max_message_size);
}

/// Appends the values of a packed `repeated uint32` field (each varint's low
/// 32 bits, as for any `uint32`).
fn packed(mut values: &[u8], into: &mut Vec<u32>) -> Option<()> {
    while !values.is_empty() {
        into.push(varint(&mut values)? as u32);
    }
    Some(())
}

/// Appends field `field` as a length-delimited value (present even when
/// empty, as an `optional bytes` field is).
fn delimited_field(buf: &mut Vec<u8>, field: u32, value: &[u8]) {
    key(buf, field, 2);
    put_varint(buf, value.len() as u64);
    buf.extend_from_slice(value);
}

// ----- decoding helpers ----------------------------------------------------

/// A base-128 varint, as `prost` reads it: at most 10 bytes, the tenth at
/// most 1 (anything else is `prost`'s "invalid varint").
///
/// Inlined for the one- and two-byte values that make up most of a header
/// (every key, kinds, flags, small types and ids): a header is read as
/// about twenty varints, and the loop below costs several times these two
/// tests.
#[inline]
fn varint(buf: &mut &[u8]) -> Option<u64> {
    match **buf {
        [b0, ref rest @ ..] if b0 < 0x80 => {
            *buf = rest;
            Some(u64::from(b0))
        }
        [b0, b1, ref rest @ ..] if b1 < 0x80 => {
            *buf = rest;
            Some(u64::from(b0 & 0x7f) | u64::from(b1) << 7)
        }
        _ => varint_long(buf),
    }
}

/// [`varint`] of three bytes or more, or malformed.
#[inline(never)]
fn varint_long(buf: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for (i, &byte) in buf.iter().enumerate().take(10) {
        if i == 9 && byte > 1 {
            return None;
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            *buf = &buf[i + 1..];
            return Some(value);
        }
    }
    None
}

fn delimited<'a>(buf: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = usize::try_from(varint(buf)?).ok()?;
    if len > buf.len() {
        return None;
    }
    let (value, rest) = buf.split_at(len);
    *buf = rest;
    Some(value)
}

fn text(bytes: &[u8]) -> Option<String> {
    std::str::from_utf8(bytes).ok().map(str::to_owned)
}

// ----- encoding helpers ----------------------------------------------------

fn key(buf: &mut Vec<u8>, field: u32, wire_type: u32) {
    put_varint(buf, u64::from(field << 3 | wire_type));
}

fn put_varint(buf: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        buf.push(value as u8 | 0x80);
        value >>= 7;
    }
    buf.push(value as u8);
}

fn varint_len(value: u64) -> usize {
    // 1 byte per started group of 7 bits, at least 1.
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use prost::Message as _;

    use super::*;

    fn prost_bytes(h: &pb::Header) -> Vec<u8> {
        h.encode_to_vec()
    }

    /// What `prost` decodes, with the inline payload split off as ours is.
    fn prost_decode(bytes: &[u8]) -> Option<(pb::Header, Option<Vec<u8>>)> {
        let mut h = pb::Header::decode(bytes).ok()?;
        let inline = h.inline_payload.take();
        Some((h, inline))
    }

    fn ours(bytes: &[u8]) -> Option<(pb::Header, Option<Vec<u8>>)> {
        decode(bytes).map(|(h, inline)| (h, inline.map(Cow::into_owned)))
    }

    fn any_header() -> impl Strategy<Value = pb::Header> {
        let small = prop_oneof![Just(0u64), 1u64..300, any::<u64>()];
        let int = prop_oneof![Just(0i32), 1i32..20, any::<i32>()];
        (
            (
                small.clone(),
                small.clone(),
                int.clone(),
                small.clone(),
                small.clone(),
                small.clone(),
                int,
                small.clone(),
            ),
            (
                small.clone(),
                prop::collection::vec(any::<u32>(), 0..4),
                prop::collection::vec(any::<u8>(), 0..20),
                ".{0,8}",
                ".{0,8}",
                ".{0,8}",
                small.clone(),
                small.clone(),
                prop::option::of(prop::collection::vec(any::<u8>(), 0..40)),
                small.clone(),
            ),
            (
                small.clone(),
                (small.clone(), small.clone(), small),
                prop::collection::vec(any::<u8>(), 0..20),
                prop::collection::vec(any::<u32>(), 0..4),
                prop::collection::vec(any::<u32>(), 0..4),
                prop::collection::vec(any::<u32>(), 0..4),
                prop::collection::vec(".{0,6}", 0..3),
            ),
        )
            .prop_map(
                |(
                    (major, minor, kind, flags, request_type, request_id, status, heartbeat_ms),
                    (
                        capacity,
                        request_types,
                        route,
                        reply_to,
                        name,
                        error,
                        attempt,
                        notify_id,
                        inline_payload,
                        dispatch_tag,
                    ),
                    (
                        broker_id,
                        (hops, deadline_ms, max_message_size),
                        reply_route,
                        type_capacity,
                        type_free,
                        type_pending,
                        type_names,
                    ),
                )| pb::Header {
                    major: major as u32,
                    minor: minor as u32,
                    kind,
                    flags,
                    request_type: request_type as u32,
                    request_id,
                    status,
                    heartbeat_ms: heartbeat_ms as u32,
                    capacity: capacity as u32,
                    request_types,
                    route,
                    reply_to,
                    name,
                    error,
                    attempt: attempt as u32,
                    notify_id,
                    inline_payload,
                    dispatch_tag,
                    broker_id,
                    hops: hops as u32,
                    reply_route,
                    type_capacity,
                    type_free,
                    type_pending,
                    deadline_ms: deadline_ms as u32,
                    members: Vec::new(),
                    type_names,
                    max_message_size,
                },
            )
    }

    proptest! {
        #[test]
        fn encodes_the_bytes_prost_encodes(h in any_header()) {
            // A reused buffer: what it held before is cleared.
            let mut buf = vec![0xee];
            encode(&h, &mut buf);
            prop_assert_eq!(&buf[..], &prost_bytes(&h)[..]);
        }

        #[test]
        fn decodes_what_prost_encodes_as_prost_does(h in any_header()) {
            let bytes = prost_bytes(&h);
            let decoded = ours(&bytes);
            prop_assert!(decoded.is_some(), "the fast path takes every header we write");
            prop_assert_eq!(decoded, prost_decode(&bytes));
        }

        #[test]
        fn what_it_accepts_prost_reads_the_same(
            h in any_header(),
            cut in any::<prop::sample::Index>(),
            flip in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            mode in 0..3u8,
        ) {
            // Damaged headers: truncated, one byte replaced, or garbage
            // appended. Whatever the fast path accepts, prost must accept
            // and read identically; the rest goes to prost.
            let mut bytes = prost_bytes(&h);
            match mode {
                0 => bytes.truncate(cut.index(bytes.len() + 1)),
                1 if !bytes.is_empty() => {
                    let i = flip.index(bytes.len());
                    bytes[i] = byte;
                }
                _ => bytes.push(byte),
            }
            if let Some(fast) = ours(&bytes) {
                prop_assert_eq!(Some(fast), prost_decode(&bytes));
            }
        }

        #[test]
        fn random_bytes_never_disagree(bytes in prop::collection::vec(any::<u8>(), 0..48)) {
            if let Some(fast) = ours(&bytes) {
                prop_assert_eq!(Some(fast), prost_decode(&bytes));
            }
        }
    }

    #[test]
    fn unusual_encodings_fall_back_to_prost() {
        // An unknown field (99, varint), which prost skips.
        let unknown = [0x08, 0x01, 0x98, 0x06, 0x05];
        assert_eq!(decode(&unknown), None);
        assert_eq!(prost_decode(&unknown).unwrap().0.major, 1);
        // request_types unpacked (field 10 as varints), which prost accepts.
        let unpacked = [0x50, 0x2a, 0x50, 0x07];
        assert_eq!(decode(&unpacked), None);
        assert_eq!(prost_decode(&unpacked).unwrap().0.request_types, [42, 7]);
        // Malformed: an 11-byte varint, a length past the end, bad UTF-8.
        for bad in [
            &[
                0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ][..],
            &[0x5a, 0x05, 0x01],
            &[0x6a, 0x01, 0xff],
        ] {
            assert_eq!(decode(bad), None);
            assert_eq!(prost_decode(bad), None);
        }
    }

    #[test]
    fn inline_payload_is_lent_not_copied() {
        let bytes = [0x08, 0x01, 0x18, 0x03, 0x8a, 0x01, 0x02, b'h', b'i'];
        let (h, inline) = decode(&bytes).unwrap();
        assert_eq!((h.major, h.kind), (1, 3));
        assert!(matches!(inline, Some(Cow::Borrowed(b"hi"))));
    }

    #[test]
    fn varint_lengths() {
        for (value, len) in [(0, 1), (127, 1), (128, 2), (16_383, 2), (16_384, 3)] {
            assert_eq!(varint_len(value), len, "{value}");
        }
        assert_eq!(varint_len(u64::MAX), 10);
        let mut buf = Vec::new();
        put_varint(&mut buf, u64::MAX);
        assert_eq!(buf.len(), 10);
        assert_eq!(varint(&mut &buf[..]), Some(u64::MAX));
    }
}
