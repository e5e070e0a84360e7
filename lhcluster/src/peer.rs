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
        // Saturating: the interval may be a configured one (any duration).
        now.saturating_duration_since(self.last_heard) > self.peer_interval.saturating_mul(liveness)
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

/// Capped exponential backoff between reconnect attempts.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            current: min,
        }
    }

    /// The delay before the next attempt; each call doubles the following one.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = self.current;
        self.current = self.current.saturating_mul(2).min(self.max);
        delay
    }

    /// A session was established: start again from the minimum.
    pub(crate) fn reset(&mut self) {
        self.current = self.min;
    }
}

/// A fresh random routing id: peers keep it across reconnects, so the
/// broker recognises them.
pub(crate) fn random_routing_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    // Without OS randomness, fall back to time, pid and a counter: the id
    // only has to be unique among the broker's peers.
    if getrandom::fill(&mut id).is_err() {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let count = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mixed = nanos ^ (u128::from(std::process::id()) << 64) ^ u128::from(count) << 96;
        id.copy_from_slice(&mixed.to_le_bytes());
    }
    // A leading zero byte is reserved by libzmq for generated ids.
    id[0] |= 0x80;
    id
}

/// A random starting point for request ids assigned by a client.
pub(crate) fn random_u64() -> u64 {
    let id = random_routing_id();
    u64::from_le_bytes(id[8..16].try_into().unwrap_or([1; 8]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_counts_missed_peer_intervals() {
        let t0 = Instant::now();
        let live = Liveness::new(t0, Duration::from_millis(100));
        assert!(!live.is_dead(t0 + Duration::from_millis(300), 3));
        assert!(live.is_dead(t0 + Duration::from_millis(301), 3));
        assert!(!live.heartbeat_due(t0 + Duration::from_millis(49), Duration::from_millis(50)));
        assert!(live.heartbeat_due(t0 + Duration::from_millis(50), Duration::from_millis(50)));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(10), Duration::from_millis(35));
        let delays: Vec<_> = (0..4).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, [10, 20, 35, 35]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(10));
    }

    #[test]
    fn far_intervals_saturate_instead_of_overflowing() {
        let t0 = Instant::now();
        let live = Liveness::new(t0, Duration::MAX);
        assert!(!live.is_dead(t0 + Duration::from_secs(3600), u32::MAX));
        let mut b = Backoff::new(Duration::MAX / 2 + Duration::from_secs(1), Duration::MAX);
        b.next_delay();
        assert_eq!(b.next_delay(), Duration::MAX);
        assert_eq!(b.next_delay(), Duration::MAX);
    }

    #[test]
    fn routing_ids_are_distinct_and_not_libzmq_style() {
        let a = random_routing_id();
        let b = random_routing_id();
        assert_ne!(a, b);
        assert_ne!(a[0], 0);
    }
}
