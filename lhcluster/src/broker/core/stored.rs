//! How the broker holds a request's payload while it is queued (or kept
//! for a retry): as received, or copied out compactly when the queue is
//! long.

use crate::protocol::{Frame, Payload};

/// Frames at most this long are copied out of libzmq's receive buffers when
/// a request is queued behind many others (see [`Stored::compact`]).
const COMPACT_MAX: usize = 8 * 1024;

/// Requests queued (in total) before new ones are stored compactly.
pub(super) const COMPACT_AFTER: usize = 1024;

/// A request's payload while the broker holds it.
///
/// libzmq receives small messages (up to its 8 KiB batch) by reference into
/// a shared receive buffer, with bookkeeping for each message it could hold:
/// a frame kept for long pins about 18 KiB per 8 KiB of traffic. A long
/// queue therefore stores its small frames copied out (one allocation of
/// the frame's size), and a lone frame as plain bytes. Short queues (the
/// common case under load) and large frames keep the frames as received:
/// nothing is copied on the way through.
#[derive(Debug, Default)]
pub(super) enum Stored {
    /// Nothing held (in flight without a retry copy).
    #[default]
    Nothing,
    /// Frames as received (or copied out, frame by frame).
    Frames(Payload),
    /// A single frame's bytes.
    Bytes(Box<[u8]>),
}

impl Stored {
    /// Holds `payload`, compacting it when the queue is long.
    pub(super) fn new(payload: Payload, compact: bool) -> Self {
        if !compact {
            return Stored::Frames(payload);
        }
        match <[Frame; 1]>::try_from(payload) {
            Ok([frame]) if frame.len() <= COMPACT_MAX => Stored::Bytes(Box::from(&frame[..])),
            Ok([frame]) => Stored::Frames(vec![frame]),
            Err(frames) => Stored::Frames(
                frames
                    .into_iter()
                    .map(|f| {
                        if f.len() <= COMPACT_MAX {
                            Frame::from(&f[..])
                        } else {
                            f
                        }
                    })
                    .collect(),
            ),
        }
    }

    /// A copy (for `RETRY_ON_DEATH`, which needs the request again if the
    /// worker dies).
    pub(super) fn copy_of(payload: &Payload) -> Self {
        match payload.as_slice() {
            [frame] => Stored::Bytes(Box::from(&frame[..])),
            frames => Stored::Frames(frames.iter().map(|f| Frame::from(&f[..])).collect()),
        }
    }

    /// Payload bytes held (what `max_pending_bytes` counts).
    pub(super) fn len(&self) -> usize {
        match self {
            Stored::Nothing => 0,
            Stored::Frames(frames) => frames.iter().map(|f| f.len()).sum(),
            Stored::Bytes(bytes) => bytes.len(),
        }
    }

    pub(super) fn is_held(&self) -> bool {
        !matches!(self, Stored::Nothing)
    }

    /// The payload, for sending; leaves nothing held.
    pub(super) fn take(&mut self) -> Payload {
        match std::mem::take(self) {
            Stored::Nothing => Payload::new(),
            Stored::Frames(frames) => frames,
            // Handed to libzmq without a copy.
            Stored::Bytes(bytes) => vec![Frame::from(bytes)],
        }
    }
}
