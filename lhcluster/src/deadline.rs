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

/// A request's time left as the wire's `deadline_ms` (protocol 1.3): at
/// least 1 (0 means "no deadline"), and a duration beyond `u32::MAX` ms
/// (about 49 days) is no deadline either.
pub(crate) fn wire_ms(left: Duration) -> u32 {
    match u32::try_from(left.as_millis()) {
        Ok(ms) => ms.max(1),
        Err(_) => 0,
    }
}

/// The wire's `deadline_ms` read against this clock: `None` for 0.
pub(crate) fn from_wire_ms(now: Instant, ms: u32) -> Option<Instant> {
    (ms != 0).then(|| later(now, Duration::from_millis(u64::from(ms))))
}

/// The time left until `deadline` as `deadline_ms`, at least 1 ms (a
/// deadline that has just passed is enforced by whoever checks it next).
pub(crate) fn wire_ms_until(now: Instant, deadline: Option<Instant>) -> u32 {
    deadline.map_or(0, |d| wire_ms(d.saturating_duration_since(now)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_deadlines_are_relative_milliseconds() {
        let now = Instant::now();
        assert_eq!(wire_ms(Duration::from_millis(1500)), 1500);
        assert_eq!(wire_ms(Duration::ZERO), 1, "0 would mean no deadline");
        assert_eq!(wire_ms(Duration::MAX), 0, "too far: no deadline");
        assert_eq!(from_wire_ms(now, 0), None);
        assert_eq!(from_wire_ms(now, 20), Some(now + Duration::from_millis(20)));
        let at = now + Duration::from_millis(250);
        assert_eq!(wire_ms_until(now, Some(at)), 250);
        assert_eq!(wire_ms_until(at + Duration::from_secs(1), Some(at)), 1);
        assert_eq!(wire_ms_until(now, None), 0);
    }

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
