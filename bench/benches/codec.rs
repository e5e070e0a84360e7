//! Protocol v1 codec cost: header encode, header decode, and both, for a
//! REQUEST with a small (64 B) and a large (64 KiB) payload frame.
//!
//! A lone payload frame of at most 1 KiB (here the 64 B one) is copied into
//! the header frame (`inline_payload`) when encoded, and out of it into a
//! new frame when decoded; larger frames (the 64 KiB one) are moved, never
//! copied. Building the payload `zmq::Message` (an allocation and, for
//! 64 KiB, a copy) is done in the untimed setup of `iter_batched`, and
//! outputs are dropped outside the timed section, so only codec work is
//! measured.
//!
//! Run: `cargo bench -p lhcluster-bench --bench codec -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use lhcluster::protocol::{Encoded, Flags, Frame, Message, Request, decode, decode_parts};

const SIZES: [(&str, usize); 2] = [("64B", 64), ("64KiB", 64 * 1024)];

/// A representative two-way request, as a proxy would forward it.
fn request(payload: Frame) -> Message {
    Message::Request(Request {
        request_type: 7,
        request_id: 1_234_567_890,
        flags: Flags::RECEIPT_ON_SEND | Flags::RETRY_ON_DEATH | Flags::ALLOW_REDIRECT,
        route: b"\x00\x6b\x8b\x45\x67".to_vec(),
        reply_to: None,
        deadline_ms: 0,
        payload: vec![payload],
    })
}

fn payload_frame(bytes: &[u8]) -> Frame {
    Frame::from(bytes)
}

fn bench_codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    for (label, size) in SIZES {
        let bytes = vec![0xa5_u8; size];

        // Encode: header into a reused buffer, payload frames moved out.
        let mut header = Vec::with_capacity(64);
        group.bench_function(BenchmarkId::new("encode", label), |b| {
            b.iter_batched(
                || request(payload_frame(&bytes)),
                |message| {
                    let encoded: Encoded = message.encode(&mut header);
                    black_box(&header);
                    encoded
                },
                BatchSize::SmallInput,
            );
        });

        // Decode: header bytes + payload frames (moved in), as encoded.
        let mut encoded_header = Vec::new();
        let framed = !request(payload_frame(&bytes))
            .encode(&mut encoded_header)
            .payload
            .is_empty();
        group.bench_function(BenchmarkId::new("decode", label), |b| {
            b.iter_batched(
                || {
                    if framed {
                        vec![payload_frame(&bytes)]
                    } else {
                        Vec::new()
                    }
                },
                |payload| decode_parts(black_box(&encoded_header), payload).unwrap(),
                BatchSize::SmallInput,
            );
        });

        // Round trip: encode into the reused buffer, then decode from it.
        group.bench_function(BenchmarkId::new("roundtrip", label), |b| {
            b.iter_batched(
                || request(payload_frame(&bytes)),
                |message| {
                    let Encoded { payload, .. } = message.encode(&mut header);
                    decode_parts(black_box(&header), payload).unwrap()
                },
                BatchSize::SmallInput,
            );
        });

        // Round trip through complete frame lists (`into_frames` allocates
        // a zmq::Message for the header), as a socket would see them.
        group.bench_function(BenchmarkId::new("roundtrip_frames", label), |b| {
            b.iter_batched(
                || request(payload_frame(&bytes)),
                |message| decode(black_box(message.into_frames())).unwrap(),
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

criterion_group!(benches, bench_codec);
criterion_main!(benches);
