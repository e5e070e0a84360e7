//! Peer identities and the liveness bookkeeping every role shares.

use std::time::{Duration, Instant};

use smallvec::SmallVec;

/// A ZeroMQ routing id, as seen by a ROUTER socket. Our peers use 16-byte
/// ids and libzmq generates 5-byte ones, so this stays inline (no allocation
/// per message).
pub(crate) type PeerId = SmallVec<[u8; 16]>;

/// When a peer was last heard from and last written to, and how often it
/// promised to speak.
///
/// The negotiated rule (docs/protocol.md, "Heartbeats"): each side sends a
/// heartbeat when it has sent nothing else for one of its own intervals, and
/// declares the other side dead after `liveness` of the *other side's*
/// intervals without hearing anything.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Liveness {
    /// The peer's announced heartbeat interval.
    pub(crate) peer_interval: Duration,
    pub(crate) last_heard: Instant,
    pub(crate) last_sent: Instant,
}

impl Liveness {
    pub(crate) fn new(now: Instant, peer_interval: Duration) -> Self {
        Self {
            peer_interval,
            last_heard: now,
            last_sent: now,
        }
    }

    /// Whether the peer missed `liveness` of its own intervals.
    pub(crate) fn is_dead(&self, now: Instant, liveness: u32) -> bool {
        now.saturating_duration_since(self.last_heard) > self.peer_interval * liveness
    }

    /// Whether we owe the peer a heartbeat, given our own interval.
    pub(crate) fn heartbeat_due(&self, now: Instant, own_interval: Duration) -> bool {
        now.saturating_duration_since(self.last_sent) >= own_interval
    }
}

/// Converts a wire interval (ms) into a duration, never zero.
pub(crate) fn interval_from_ms(ms: u32) -> Duration {
    Duration::from_millis(u64::from(ms.max(1)))
}

/// Converts a duration into a wire interval (ms), at least 1.
pub(crate) fn interval_to_ms(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX).max(1)
}
