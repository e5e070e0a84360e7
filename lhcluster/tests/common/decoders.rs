//! Frames fed to the decoders that take them apart one by one, shared by
//! the codec property tests (`lhcluster/tests/codec_proptest.rs`) and the
//! fuzz target (`fuzz/fuzz_targets/decode.rs`), which both include this
//! file.

use lhcluster::protocol::{Frame, decode_parts, parse_topic, peek_kind, peek_request_ref};

/// Feeds `parts` to [`decode_parts`] (the first part as the header, the
/// others as its payload) and every part to the peeks ([`peek_request_ref`],
/// [`peek_kind`], [`parse_topic`]). What they give is dropped: none of them
/// may panic, whatever the bytes.
pub(crate) fn decode_parts_and_peek<P: AsRef<[u8]>>(parts: &[P]) {
    if let Some((header, rest)) = parts.split_first() {
        let rest = rest.iter().map(|p| Frame::from(p.as_ref())).collect();
        let _ = decode_parts(header.as_ref(), rest);
    }
    for part in parts {
        let part = part.as_ref();
        let _ = peek_request_ref(part);
        let _ = peek_kind(part);
        let _ = parse_topic(part);
    }
}
