//! Re-send timers of the proxy's buffer.
//!
//! Every buffered request has one: a deadline `now + interval`, where the
//! interval starts at `resend_initial` and doubles up to `resend_max`. So
//! the intervals take a handful of values, and since `now` never goes back,
//! the deadlines armed with one interval come in order. One FIFO queue per
//! interval therefore keeps all timers sorted at O(1) per arm and per
//! expiry, where a binary heap paid O(log n) per expiry over a heap as large
//! as the request rate times `resend_initial` (about 140 000 entries at
//! 70 000 requests/s).
//!
//! Timers are never cancelled: a request confirmed before its deadline
//! leaves a stale timer, which the owner recognises and skips when it
//! expires (its entry is gone, or has a later deadline).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub(super) struct ResendTimers<K> {
    /// One queue per interval, each sorted by deadline. Few (the number of
    /// doublings from `resend_initial` to `resend_max`, plus one).
    queues: Vec<(Duration, VecDeque<(Instant, K)>)>,
}

impl<K> ResendTimers<K> {
    pub(super) fn new() -> Self {
        Self { queues: Vec::new() }
    }

    /// Arms a timer for `key` at `now + interval`; returns the deadline.
    /// `now` must not be earlier than that of a previous call.
    pub(super) fn arm(&mut self, now: Instant, interval: Duration, key: K) -> Instant {
        // The intervals are configured: any duration, far ones capped.
        let at = crate::deadline::later(now, interval);
        let queue = match self.queues.iter_mut().position(|(i, _)| *i == interval) {
            Some(q) => &mut self.queues[q].1,
            None => {
                self.queues.push((interval, VecDeque::new()));
                &mut self.queues.last_mut().expect("just pushed").1
            }
        };
        debug_assert!(queue.back().is_none_or(|(last, _)| *last <= at));
        queue.push_back((at, key));
        at
    }

    /// The earliest deadline, stale or not.
    pub(super) fn next(&self) -> Option<Instant> {
        self.queues
            .iter()
            .filter_map(|(_, q)| q.front().map(|(at, _)| *at))
            .min()
    }

    /// Removes and returns the earliest timer due at `now`, if any.
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<(Instant, K)> {
        let (_, queue) = self
            .queues
            .iter_mut()
            .filter(|(_, q)| q.front().is_some_and(|(at, _)| *at <= now))
            .min_by_key(|(_, q)| q.front().map(|(at, _)| *at))?;
        queue.pop_front()
    }

    /// Drops every timer (when nothing is buffered, all are stale).
    pub(super) fn clear(&mut self) {
        for (_, queue) in &mut self.queues {
            queue.clear();
        }
    }

    /// Timers armed, stale ones included.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.queues.iter().map(|(_, q)| q.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn expire_in_deadline_order_across_intervals() {
        let t0 = Instant::now();
        let mut timers = ResendTimers::new();
        assert_eq!(timers.next(), None);
        timers.arm(t0, 100 * MS, "a"); // 100
        timers.arm(t0 + 10 * MS, 40 * MS, "b"); // 50
        timers.arm(t0 + 20 * MS, 100 * MS, "c"); // 120
        timers.arm(t0 + 30 * MS, 40 * MS, "d"); // 70
        timers.arm(t0 + 30 * MS, 400 * MS, "e"); // 430
        assert_eq!(timers.len(), 5);
        assert_eq!(timers.next(), Some(t0 + 50 * MS));
        assert_eq!(timers.pop_due(t0 + 49 * MS), None);
        let mut order = Vec::new();
        while let Some((at, key)) = timers.pop_due(t0 + 200 * MS) {
            order.push((at - t0, key));
        }
        assert_eq!(
            order,
            vec![
                (50 * MS, "b"),
                (70 * MS, "d"),
                (100 * MS, "a"),
                (120 * MS, "c")
            ]
        );
        assert_eq!(timers.next(), Some(t0 + 430 * MS));
        timers.clear();
        assert_eq!(timers.next(), None);
        assert_eq!(timers.len(), 0);
    }

    #[test]
    fn a_far_interval_is_armed_without_overflow_and_never_due() {
        let t0 = Instant::now();
        let mut timers = ResendTimers::new();
        let at = timers.arm(t0, Duration::MAX, 1u32);
        assert!(at > t0 + Duration::from_secs(3600 * 24 * 365));
        timers.arm(t0 + MS, Duration::MAX, 2u32);
        assert_eq!(timers.pop_due(t0 + Duration::from_secs(3600)), None);
        assert_eq!(timers.len(), 2);
    }

    #[test]
    fn a_due_timer_is_returned_once() {
        let t0 = Instant::now();
        let mut timers = ResendTimers::new();
        let at = timers.arm(t0, MS, 7u32);
        assert_eq!(at, t0 + MS);
        assert_eq!(timers.pop_due(t0 + MS), Some((at, 7)));
        assert_eq!(timers.pop_due(t0 + 10 * MS), None);
    }
}
