//! Latency histograms per request type: queue wait (arrival → first
//! dispatch), service time (dispatch → result) and end to end (arrival →
//! the result's outcome), as the broker sees them.
//!
//! Each is a fixed array of counters over log-scale buckets (powers of two
//! of a microsecond, [`BOUNDS_US`]), not a general-purpose histogram: a
//! sample is a clock subtraction, a leading-zeros count and two additions,
//! and a type costs [`TypeLatency`]'s ~600 bytes, allocated on its first
//! sample (10 000 busy types: about 6 MB). The price is precision: a
//! quantile is known to within its bucket, a factor of two.

use std::time::Duration;

use crate::broker::stats::{LatencyHistogram, TypeStats};

pub(crate) use crate::broker::stats::LATENCY_BOUNDS_US as BOUNDS_US;

/// Buckets: one per bound, and the last for everything above.
const BUCKETS: usize = BOUNDS_US.len() + 1;

/// The bucket of a duration of `us` microseconds: the first whose bound
/// is at least `us` (bounds are 2^(i+4) µs).
fn bucket_of(us: u64) -> usize {
    if us <= BOUNDS_US[0] {
        return 0;
    }
    // ceil(log2(us)) - 4, capped at the overflow bucket.
    let bits = 64 - (us - 1).leading_zeros() as usize;
    (bits - 4).min(BUCKETS - 1)
}

/// `d` in whole microseconds. Not `as_micros`, whose `u128` division
/// costs more than the rest of a sample together.
fn micros(d: Duration) -> u64 {
    (d.as_secs().saturating_mul(1_000_000)).saturating_add(u64::from(d.subsec_micros()))
}

/// One histogram's counters.
#[derive(Clone, Debug)]
struct Buckets {
    counts: [u64; BUCKETS],
    sum_us: u64,
}

impl Default for Buckets {
    fn default() -> Self {
        Self {
            counts: [0; BUCKETS],
            sum_us: 0,
        }
    }
}

impl Buckets {
    fn record(&mut self, d: Duration) {
        let us = micros(d);
        self.counts[bucket_of(us)] += 1;
        self.sum_us = self.sum_us.saturating_add(us);
    }

    fn snapshot(&self) -> LatencyHistogram {
        // Trailing empty buckets are left out (a reader pads with zeros):
        // most types never see the slow end, and the JSON stays short.
        let used = self
            .counts
            .iter()
            .rposition(|&c| c != 0)
            .map_or(0, |i| i + 1);
        LatencyHistogram {
            counts: self.counts[..used].to_vec(),
            count: self.counts.iter().sum(),
            sum_us: self.sum_us,
        }
    }
}

/// The three histograms of one request type.
#[derive(Clone, Debug, Default)]
pub(super) struct TypeLatency {
    queue_wait: Buckets,
    service: Buckets,
    end_to_end: Buckets,
}

impl TypeLatency {
    /// A first dispatch, `wait` after the request arrived.
    pub(super) fn dispatched(&mut self, wait: Duration) {
        self.queue_wait.record(wait);
    }

    /// A result `end_to_end` after the request's arrival, which was (last)
    /// dispatched `queued` after its arrival.
    pub(super) fn completed(&mut self, end_to_end: Duration, queued: Duration) {
        self.service.record(end_to_end.saturating_sub(queued));
        self.end_to_end.record(end_to_end);
    }

    /// Puts the histograms into a type's stats.
    pub(super) fn fill(&self, ts: &mut TypeStats) {
        ts.queue_wait = self.queue_wait.snapshot();
        ts.service = self.service.snapshot();
        ts.end_to_end = self.end_to_end.snapshot();
    }
}

/// When a request was last dispatched, kept in 4 bytes beside its arrival
/// time: `since` its arrival in microseconds (saturating at about 71
/// minutes, far beyond the last bucket).
pub(super) fn offset_us(since: Duration) -> u32 {
    u32::try_from(micros(since)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_powers_of_two_of_a_microsecond() {
        assert_eq!(BOUNDS_US[0], 16);
        assert_eq!(BOUNDS_US[BOUNDS_US.len() - 1], 1 << 25);
        for (i, &bound) in BOUNDS_US.iter().enumerate() {
            assert_eq!(bucket_of(bound), i, "{bound} µs is in its own bucket");
            assert_eq!(
                bucket_of(bound + 1),
                i + 1,
                "{} µs is in the next",
                bound + 1
            );
        }
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn a_snapshot_counts_sums_and_trims() {
        let mut b = Buckets::default();
        b.record(Duration::from_micros(10));
        b.record(Duration::from_micros(100));
        b.record(Duration::from_micros(100));
        let s = b.snapshot();
        assert_eq!((s.count, s.sum_us), (3, 210));
        // 10 µs in [0, 16], 100 µs in (64, 128]: four buckets, the rest trimmed.
        assert_eq!(s.counts, [1, 0, 0, 2]);
        assert!(Buckets::default().snapshot().counts.is_empty());
    }
}
