//! Wire protocol v1: multipart frames ⇄ typed [`Message`]s.
//!
//! Every message is one Protobuf header frame (`proto/lhcluster.proto`)
//! followed by opaque payload frames; a notification is preceded by a topic
//! frame. The codec is pure and total: any input gives a [`Message`] or a
//! [`DecodeError`], never a panic, and payload frames are moved, never copied
//! or inspected. `docs/protocol.md` is the normative description.
//!
//! **Not a stable API.** The roles use this module internally; it is
//! public only with the `unstable-internals` feature, for this workspace's
//! tests, benchmarks, fuzz target and CLI, and may change in any release.
//! What applications need of it is re-exported by name at the crate root
//! ([`Flags`], [`Frame`], [`Payload`], [`RequestId`], [`RequestType`],
//! [`Status`]) and in `client` ([`ReceiptKind`]).
// Without the feature the module is private and its items serve the crate
// only; they stay `pub` so that the feature exposes them as they are.
#![cfg_attr(not(feature = "unstable-internals"), allow(unreachable_pub))]

#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
mod pb;

mod codec;
mod header;
mod types;

pub use codec::MAX_HOPS;
pub(crate) use codec::check_notification;
pub use codec::{
    Encoded, decode_notification, decode_parts, peek_kind, peek_request_ref, topic_frame,
};
pub(crate) use codec::{peek_answered, peek_minor};
// Only tests, benchmarks and the fuzz target use these.
#[cfg(any(test, feature = "unstable-internals"))]
pub use codec::{INLINE_PAYLOAD_MAX, decode, parse_topic};
pub use types::{
    Cancel, DecodeError, Dispatch, ErrorReply, Execute, Executed, Flags, Forward, Frame, Hello,
    Message, Payload, PeerHello, RawNotification, Ready, ReceiptKind, Request, RequestId,
    RequestRef, RequestType, Response, Route, Status, TypeServed, WorkResult,
};

/// The protocol major version this crate speaks. A header with any other
/// major version is refused with [`DecodeError::UnsupportedVersion`].
pub const PROTOCOL_MAJOR: u32 = 1;
/// The protocol minor version this crate sends (informative only). Minor 1
/// added the `attempt` and `dispatch_tag` of a RESULT, minor 2 the
/// broker-to-broker kinds of a cluster, minor 3 a request's `deadline_ms`
/// and the status EXPIRED, minor 4 the status FORBIDDEN, minor 5 the kind
/// CANCEL, minor 6 the `type_names` of a READY, minor 7 the
/// `max_message_size` of a WELCOME, minor 8 the RESULT status RETURNED
/// (docs/protocol.md §17, §18).
pub const PROTOCOL_MINOR: u32 = 8;

/// The longest request type name a READY may carry, in bytes (protocol
/// 1.6): a longer one makes the READY malformed. Names are for stats, logs
/// and error texts, where an unbounded one would cost without telling more.
pub const MAX_TYPE_NAME_LEN: usize = 128;

/// Room for the header of a REQUEST or a RESULT besides its strings and
/// payload (its numeric fields take at most 60 bytes): what a sender adds to
/// the payload's size to check a message against a peer's
/// `max_message_size` (WELCOME, since 1.7) before sending it.
pub(crate) const HEADER_ROOM: usize = 64;

/// The size a REQUEST or RESULT with this payload and strings is checked
/// at against a peer's `max_message_size`: never less than its encoding.
pub(crate) fn checked_size(payload: &Payload, strings: usize) -> usize {
    payload.iter().map(|f| f.len()).sum::<usize>() + strings + HEADER_ROOM
}

/// The protocol minor version from which a peer takes CANCEL: a role sends
/// it only to a peer whose last header said at least this
/// (docs/protocol.md §3.2, §8.6).
pub(crate) const CANCEL_MINOR: u32 = 5;

/// The protocol minor version from which a broker takes the RESULT status
/// RETURNED: a draining worker gives its prefetched, unstarted dispatches
/// back only to a broker whose WELCOME said at least this
/// (docs/protocol.md §3.2, §9).
pub(crate) const RETURNED_MINOR: u32 = 8;

/// The protocol minor version from which a client takes the status
/// FORBIDDEN in a RESPONSE (older ones get an ERROR naming the request,
/// docs/protocol.md §3.2).
pub(crate) const FORBIDDEN_MINOR: u32 = 4;
