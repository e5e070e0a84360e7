//! The periodic stats line of every role (`stats_log_interval`): when the
//! next one is due, for a driver loop to fold into its wait. The driver
//! logs the line itself, with its own stats type and message.

use std::time::{Duration, Instant};

/// When the next stats line is due; never, with no interval.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StatsLog {
    interval: Option<Duration>,
    next: Option<Instant>,
}

impl StatsLog {
    /// The first line one interval after `now`.
    pub(crate) fn new(interval: Option<Duration>, now: Instant) -> Self {
        Self {
            interval,
            next: interval.and_then(|d| now.checked_add(d)),
        }
    }

    /// When the next line is due (`None`: never).
    pub(crate) fn next(&self) -> Option<Instant> {
        self.next
    }

    /// `wake_at`, or the next line's time if that comes first.
    pub(crate) fn wake_at(&self, wake_at: Instant) -> Instant {
        self.next.map_or(wake_at, |next| next.min(wake_at))
    }

    /// Whether a line is due at `now`; if so, the next one is scheduled one
    /// interval later (a late line does not bring on a burst of others).
    pub(crate) fn due(&mut self, now: Instant) -> bool {
        match self.next {
            Some(at) if now >= at => {
                self.next = self.interval.and_then(|d| now.checked_add(d));
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_once_per_interval_from_the_last_line() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut log = StatsLog::new(Some(s), t0);
        assert!(!log.due(t0));
        assert_eq!(log.next(), Some(t0 + s));
        assert_eq!(log.wake_at(t0 + 5 * s), t0 + s);
        assert_eq!(log.wake_at(t0), t0);
        // Late by 2.5 intervals: one line, the next an interval later.
        assert!(log.due(t0 + s * 7 / 2));
        assert!(!log.due(t0 + s * 4));
        assert!(log.due(t0 + s * 9 / 2));
    }

    #[test]
    fn without_an_interval_it_is_never_due() {
        let t0 = Instant::now();
        let mut log = StatsLog::new(None, t0);
        assert!(!log.due(t0 + Duration::from_secs(3600)));
        assert_eq!(log.wake_at(t0), t0);
        assert_eq!(log.next(), None);
    }
}
