//! Wire protocol v1: multipart frames ⇄ typed [`Message`]s.
//!
//! Every message is one Protobuf header frame (`proto/lhcluster.proto`)
//! followed by opaque payload frames; a notification is preceded by a topic
//! frame. The codec is pure and total: any input gives a [`Message`] or a
//! [`DecodeError`], never a panic, and payload frames are moved, never copied
//! or inspected. `docs/protocol.md` is the normative description.
//!
//! This module is `#[doc(hidden)]`: roles use it internally, and it is public
//! only so that tests, benchmarks and fuzz targets can reach it.

#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
mod pb;

mod codec;
mod header;
mod types;

pub(crate) use codec::check_notification;
pub(crate) use codec::peek_attempt;
pub use codec::{
    Encoded, INLINE_PAYLOAD_MAX, decode, decode_notification, decode_parts, parse_topic, peek_kind,
    peek_request_ref, topic_frame,
};
pub use types::*;

/// The protocol major version this crate speaks. A header with any other
/// major version is refused with [`DecodeError::UnsupportedVersion`].
pub const PROTOCOL_MAJOR: u32 = 1;
/// The protocol minor version this crate sends (informative only). Minor 1
/// added the `attempt` of a RESULT (docs/protocol.md §17).
pub const PROTOCOL_MINOR: u32 = 1;
