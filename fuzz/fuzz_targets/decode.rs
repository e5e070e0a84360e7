//! Fuzzes the protocol v1 decoders: any sequence of frames must give a
//! message or a `DecodeError`, never a panic (or an abort, a leak, an
//! out-of-memory or a timeout).
//!
//! Input layout: the first byte is the frame count (modulo 8); each frame
//! but the last is a one-byte length followed by that many bytes (fewer if
//! the input ends first); the last frame is the rest of the input, so that
//! one frame (the header, usually) can be of any size.

#![no_main]

use lhcluster::protocol::{Frame, decode, decode_notification};
use libfuzzer_sys::fuzz_target;

// The decoders that take the frames apart one by one, as the codec's
// property tests feed them too.
#[path = "../../lhcluster/tests/common/decoders.rs"]
mod decoders;

fn split_frames(data: &[u8]) -> Vec<&[u8]> {
    let Some((&count, mut rest)) = data.split_first() else {
        return Vec::new();
    };
    let count = usize::from(count % 8);
    let mut frames = Vec::with_capacity(count);
    for i in 0..count {
        if i + 1 == count {
            frames.push(rest);
            break;
        }
        let Some((&len, tail)) = rest.split_first() else {
            frames.push(rest);
            rest = &[];
            continue;
        };
        let len = usize::from(len).min(tail.len());
        let (frame, tail) = tail.split_at(len);
        frames.push(frame);
        rest = tail;
    }
    frames
}

fn to_frames(parts: &[&[u8]]) -> Vec<Frame> {
    parts.iter().map(|p| Frame::from(*p)).collect()
}

fuzz_target!(|data: &[u8]| {
    let parts = split_frames(data);

    if let Ok(message) = decode(to_frames(&parts)) {
        // What decodes must encode and decode again.
        let kind = message.kind_name();
        let again = decode(message.into_frames());
        assert!(again.is_ok(), "{kind}: re-decode failed: {again:?}");
    }
    if let Ok(message) = decode_notification(to_frames(&parts)) {
        let again = decode_notification(message.into_frames());
        assert!(again.is_ok(), "NOTIFICATION: re-decode failed: {again:?}");
    }
    decoders::decode_parts_and_peek(&parts);
});
