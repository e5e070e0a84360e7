//! Deadlines from durations a user chose (a request timeout, a heartbeat, a
//! reconnect delay, a shutdown timeout). `Instant + Duration` panics when the
//! sum is past what the clock can hold, and `Duration::MAX` is the natural
//! way to say "forever": on a driver thread that panic would stop the role.
//! So every such sum goes through here: a deadline too far to represent is
//! no deadline.

use std::time::{Duration, Instant};

/// Far enough to never come in practice, near enough to add to any clock
/// reading on every platform Rust supports (about 100 years).
const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `now + after`, or `None` ("never") when the clock cannot represent it.
pub(crate) fn deadline(now: Instant, after: Duration) -> Option<Instant> {
    now.checked_add(after)
}

/// `now + after` for timers that need an instant (a tick, a retry), with
/// `after` capped at about 100 years: a timer that far away never fires in
/// practice, and the sum cannot overflow.
pub(crate) fn later(now: Instant, after: Duration) -> Instant {
    // `now + FAR` fits on every supported clock; were it not to, firing
    // at once (a spare tick) beats a panic.
    now.checked_add(after.min(FAR)).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_past_the_clock_is_none() {
        let now = Instant::now();
        let second = Duration::from_secs(1);
        assert_eq!(deadline(now, second), Some(now + second));
        assert_eq!(deadline(now, Duration::MAX), None);
    }

    #[test]
    fn later_caps_far_timers() {
        let now = Instant::now();
        let second = Duration::from_secs(1);
        assert_eq!(later(now, second), now + second);
        assert_eq!(later(now, Duration::MAX), now + FAR);
        assert!(later(now, Duration::MAX) > now + second);
    }
}
