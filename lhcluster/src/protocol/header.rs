//! The header frame's protobuf encoding, on the hot path.
//!
//! `prost`'s generated code for `Header` (proto/lhcluster.proto) is the
//! reference codec, and stays the fallback. Its generic decoder costs about
//! 1 100 instructions for a typical 10-to-30-byte header, and its encoder
//! about as many, four of each per request and more through a proxy. The
//! functions here do the same work in one straight pass over the bytes:
//!
//! - [`decode`] handles what every lhcluster peer writes: known fields with
//!   their proto3 wire types, in any order, repeated or not (the last value
//!   wins, repeated fields accumulate), `request_types` packed. Anything else
//!   (an unknown field, a group, an unpacked `request_types`, invalid UTF-8,
//!   a malformed varint, a truncated field) returns `None`: the caller then
//!   decodes with `prost`, which skips unknown fields and reports errors.
//!   It lends the inline payload instead of copying it into a `Vec`.
//! - [`encode`] writes exactly the bytes `prost` writes (fields in number
//!   order, proto3 defaults omitted).
//!
//! The tests below hold both to `prost`: same bytes out, same header in.
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
pub(super) type DecodedHeader<'a> = (pb::Header, InlinePayload<'a>);

/// Decodes a header the fast way; `None` when the fast path does not apply
/// (decode with `prost` instead).
pub(super) fn decode(mut buf: &[u8]) -> Option<DecodedHeader<'_>> {
    let mut h = pb::Header::default();
    let mut inline = None;
    while !buf.is_empty() {
        let key = varint(&mut buf)?;
        match (key >> 3, key & 7) {
            (1, 0) => h.major = varint(&mut buf)? as u32,
            (2, 0) => h.minor = varint(&mut buf)? as u32,
            (3, 0) => h.kind = varint(&mut buf)? as i32,
            (4, 0) => h.flags = varint(&mut buf)?,
            (5, 0) => h.request_type = varint(&mut buf)? as u32,
            (6, 0) => h.request_id = varint(&mut buf)?,
            (7, 0) => h.status = varint(&mut buf)? as i32,
            (8, 0) => h.heartbeat_ms = varint(&mut buf)? as u32,
            (9, 0) => h.capacity = varint(&mut buf)? as u32,
            (10, 2) => packed(&mut buf, &mut h.request_types)?,
            (11, 2) => h.route = delimited(&mut buf)?.to_vec(),
            (12, 2) => h.reply_to = text(&mut buf)?,
            (13, 2) => h.name = text(&mut buf)?,
            (14, 2) => h.error = text(&mut buf)?,
            (15, 0) => h.attempt = varint(&mut buf)? as u32,
            (16, 0) => h.notify_id = varint(&mut buf)?,
            (17, 2) => inline = Some(Cow::Borrowed(delimited(&mut buf)?)),
            (18, 0) => h.dispatch_tag = varint(&mut buf)?,
            (19, 0) => h.broker_id = varint(&mut buf)?,
            (20, 0) => h.hops = varint(&mut buf)? as u32,
            (21, 2) => h.reply_route = delimited(&mut buf)?.to_vec(),
            (22, 2) => packed(&mut buf, &mut h.type_capacity)?,
            (23, 2) => packed(&mut buf, &mut h.type_free)?,
            (24, 2) => packed(&mut buf, &mut h.type_pending)?,
            (25, 0) => h.deadline_ms = varint(&mut buf)? as u32,
            (26, 2) => {
                let mut values = delimited(&mut buf)?;
                while !values.is_empty() {
                    h.members.push(varint(&mut values)?);
                }
            }
            (27, 2) => h.type_names.push(text(&mut buf)?),
            (28, 0) => h.max_message_size = varint(&mut buf)?,
            _ => return None,
        }
    }
    Some((h, inline))
}

/// Encodes `h` into `buf` (appending), byte for byte as `prost` would.
pub(super) fn encode(h: &pb::Header, buf: &mut Vec<u8>) {
    uint(buf, 1, h.major.into());
    uint(buf, 2, h.minor.into());
    int32(buf, 3, h.kind);
    uint(buf, 4, h.flags);
    uint(buf, 5, h.request_type.into());
    uint(buf, 6, h.request_id);
    int32(buf, 7, h.status);
    uint(buf, 8, h.heartbeat_ms.into());
    uint(buf, 9, h.capacity.into());
    packed_field(buf, 10, &h.request_types);
    bytes(buf, 11, &h.route);
    bytes(buf, 12, h.reply_to.as_bytes());
    bytes(buf, 13, h.name.as_bytes());
    bytes(buf, 14, h.error.as_bytes());
    uint(buf, 15, h.attempt.into());
    uint(buf, 16, h.notify_id);
    if let Some(payload) = &h.inline_payload {
        delimited_field(buf, 17, payload);
    }
    uint(buf, 18, h.dispatch_tag);
    uint(buf, 19, h.broker_id);
    uint(buf, 20, h.hops.into());
    bytes(buf, 21, &h.reply_route);
    packed_field(buf, 22, &h.type_capacity);
    packed_field(buf, 23, &h.type_free);
    packed_field(buf, 24, &h.type_pending);
    uint(buf, 25, h.deadline_ms.into());
    if !h.members.is_empty() {
        key(buf, 26, 2);
        let len: usize = h.members.iter().map(|&v| varint_len(v)).sum();
        put_varint(buf, len as u64);
        for &v in &h.members {
            put_varint(buf, v);
        }
    }
    // A repeated string: every entry written, an empty one too (it keeps
    // the list parallel to `request_types`).
    for name in &h.type_names {
        delimited_field(buf, 27, name.as_bytes());
    }
    uint(buf, 28, h.max_message_size);
}

/// A packed `repeated uint32` field (absent when empty, as proto3 writes it).
fn packed_field(buf: &mut Vec<u8>, field: u32, values: &[u32]) {
    if values.is_empty() {
        return;
    }
    key(buf, field, 2);
    let len: usize = values.iter().map(|&v| varint_len(v.into())).sum();
    put_varint(buf, len as u64);
    for &v in values {
        put_varint(buf, v.into());
    }
}

/// Appends the values of a packed `repeated uint32` field (each varint's low
/// 32 bits, as for any `uint32`).
fn packed(buf: &mut &[u8], into: &mut Vec<u32>) -> Option<()> {
    let mut values = delimited(buf)?;
    while !values.is_empty() {
        into.push(varint(&mut values)? as u32);
    }
    Some(())
}

/// Appends field `field` as a length-delimited value (present even when
/// empty, as an `optional bytes` field is).
pub(super) fn delimited_field(buf: &mut Vec<u8>, field: u32, value: &[u8]) {
    key(buf, field, 2);
    put_varint(buf, value.len() as u64);
    buf.extend_from_slice(value);
}

// ----- decoding helpers ----------------------------------------------------

/// A base-128 varint, as `prost` reads it: at most 10 bytes, the tenth at
/// most 1 (anything else is `prost`'s "invalid varint").
fn varint(buf: &mut &[u8]) -> Option<u64> {
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

fn text(buf: &mut &[u8]) -> Option<String> {
    std::str::from_utf8(delimited(buf)?).ok().map(str::to_owned)
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

/// An unsigned scalar field, omitted when 0 (proto3).
fn uint(buf: &mut Vec<u8>, field: u32, value: u64) {
    if value != 0 {
        key(buf, field, 0);
        put_varint(buf, value);
    }
}

/// An `int32`/enum field: a negative value is sign-extended to 10 bytes.
fn int32(buf: &mut Vec<u8>, field: u32, value: i32) {
    uint(buf, field, i64::from(value) as u64);
}

/// A `bytes`/`string` field, omitted when empty (proto3).
fn bytes(buf: &mut Vec<u8>, field: u32, value: &[u8]) {
    if !value.is_empty() {
        delimited_field(buf, field, value);
    }
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
            let mut buf = vec![0xee];
            encode(&h, &mut buf);
            prop_assert_eq!(&buf[1..], &prost_bytes(&h)[..]);
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
