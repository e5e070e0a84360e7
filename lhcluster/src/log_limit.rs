//! Rate-limited warnings about bad input (malformed or unexpected messages,
//! refused subscriptions): whoever can connect must not be able to fill a
//! disk with log lines.
//!
//! Per peer, the first [`BURST`] events are logged in full by the caller;
//! after that the limiter counts them and writes one summary line per
//! [`INTERVAL`] (how many, and the last reason) for as long as they keep
//! coming. A peer quiet for a whole interval is forgotten, so its next bad
//! message is logged in full again. The roles' counters are kept by the
//! roles and stay exact; only the lines are limited.
//!
//! Its own memory is bounded: at most [`MAX_PEERS`] peers are tracked (an
//! attacker can make up any number of routing ids), the rest share one
//! "others" bucket, and a reason is kept only up to [`MAX_REASON`] bytes.
//! Sans-IO like the role cores: `now` is passed in, the summaries are due on
//! a later event or on [`LogLimiter::on_tick`], which the role calls from
//! its tick so that a flood that stops still gets its summary.

use std::collections::HashMap;
use std::fmt::{self, Write};
use std::time::{Duration, Instant};

use tracing::warn;

/// Events per peer logged in full before summaries take over.
pub(crate) const BURST: u32 = 5;
/// At most one summary line per peer per interval.
pub(crate) const INTERVAL: Duration = Duration::from_secs(10);
/// Peers tracked one by one; the others share one bucket.
pub(crate) const MAX_PEERS: usize = 64;
/// Longest reason kept for a summary (bytes; cut at a character boundary).
pub(crate) const MAX_REASON: usize = 256;

/// One peer's (or the others') bad input since it was first seen or last
/// quiet.
#[derive(Debug)]
struct Window {
    /// Events logged in full so far (up to the burst).
    logged: u32,
    /// Events not logged since the last summary.
    suppressed: u64,
    /// The last suppressed event's reason.
    last_reason: String,
    /// Start of the current summary interval.
    since: Instant,
    last_seen: Instant,
}

impl Window {
    fn new(now: Instant) -> Self {
        Self {
            logged: 0,
            suppressed: 0,
            last_reason: String::new(),
            since: now,
            last_seen: now,
        }
    }

    fn summary_due(&self, now: Instant, interval: Duration) -> bool {
        self.suppressed > 0 && now >= self.since + interval
    }

    fn quiet(&self, now: Instant, interval: Duration) -> bool {
        self.suppressed == 0 && now >= self.last_seen + interval
    }
}

/// A summary of suppressed events, as logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Summary {
    /// The peer (hex of its id), or `others`.
    pub(crate) peer: String,
    pub(crate) suppressed: u64,
    pub(crate) last_reason: String,
}

/// Decides which bad-input warnings are written; see the module docs.
#[derive(Debug)]
pub(crate) struct LogLimiter {
    /// What is being limited, the summary line's message (for example
    /// "malformed messages").
    what: &'static str,
    burst: u32,
    interval: Duration,
    max_peers: usize,
    peers: HashMap<Box<[u8]>, Window>,
    others: Option<Window>,
    /// Summaries written so far (for tests and the curious).
    summaries: u64,
}

impl LogLimiter {
    /// A limiter with the project's fixed burst, interval and peer cap.
    pub(crate) fn new(what: &'static str) -> Self {
        Self::with_limits(what, BURST, INTERVAL, MAX_PEERS)
    }

    pub(crate) fn with_limits(
        what: &'static str,
        burst: u32,
        interval: Duration,
        max_peers: usize,
    ) -> Self {
        Self {
            what,
            burst,
            interval,
            max_peers,
            peers: HashMap::new(),
            others: None,
            summaries: 0,
        }
    }

    /// A bad event from `peer` (its routing id, or empty for a role with a
    /// single peer): `true` when the caller should log it in full. When
    /// `false` it is counted, with `reason`, for the next summary. A summary
    /// that is due for this peer is written first.
    pub(crate) fn admit(&mut self, now: Instant, peer: &[u8], reason: &dyn fmt::Display) -> bool {
        let (burst, interval, what) = (self.burst, self.interval, self.what);
        if !self.peers.contains_key(peer) && self.peers.len() < self.max_peers {
            self.peers.insert(peer.into(), Window::new(now));
        }
        let (window, label) = match self.peers.get_mut(peer) {
            Some(w) => (w, Label::Peer(peer)),
            None => (
                self.others.get_or_insert_with(|| Window::new(now)),
                Label::Others,
            ),
        };
        if window.quiet(now, interval) {
            *window = Window::new(now);
        }
        let summary = summarize(window, now, interval, label);
        window.last_seen = now;
        let admit = if window.logged < burst {
            window.logged += 1;
            // Summaries are counted from the end of the burst.
            window.since = now;
            true
        } else {
            window.suppressed += 1;
            window.last_reason.clear();
            let _ = write!(window.last_reason, "{reason}");
            truncate(&mut window.last_reason, MAX_REASON);
            false
        };
        if let Some(summary) = summary {
            self.emit(what, &summary);
        }
        admit
    }

    /// Writes the summaries that are due and forgets peers quiet for a whole
    /// interval. Call from the role's tick.
    pub(crate) fn on_tick(&mut self, now: Instant) {
        if self.peers.is_empty() && self.others.is_none() {
            return;
        }
        let (interval, what) = (self.interval, self.what);
        let mut due = Vec::new();
        self.peers.retain(|peer, w| {
            due.extend(summarize(w, now, interval, Label::Peer(peer)));
            !w.quiet(now, interval)
        });
        if let Some(w) = &mut self.others {
            due.extend(summarize(w, now, interval, Label::Others));
            if w.quiet(now, interval) {
                self.others = None;
            }
        }
        for summary in due {
            self.emit(what, &summary);
        }
    }

    /// When [`on_tick`](Self::on_tick) has a summary to write, if ever.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.peers
            .values()
            .chain(&self.others)
            .filter(|w| w.suppressed > 0)
            .map(|w| w.since + self.interval)
            .min()
    }

    /// Summaries written so far.
    #[cfg(test)]
    pub(crate) fn summaries(&self) -> u64 {
        self.summaries
    }

    fn emit(&mut self, what: &'static str, s: &Summary) {
        self.summaries += 1;
        warn!(
            peer = %s.peer,
            suppressed = s.suppressed,
            last = %s.last_reason,
            interval = ?self.interval,
            "{what}: more not logged one by one"
        );
    }
}

#[derive(Clone, Copy)]
enum Label<'a> {
    Peer(&'a [u8]),
    Others,
}

/// The summary due for a window, if any; the window starts a new interval.
fn summarize(
    w: &mut Window,
    now: Instant,
    interval: Duration,
    label: Label<'_>,
) -> Option<Summary> {
    if !w.summary_due(now, interval) {
        return None;
    }
    let summary = Summary {
        peer: match label {
            Label::Peer([]) => "-".to_owned(),
            Label::Peer(peer) => peer.iter().map(|b| format!("{b:02x}")).collect(),
            Label::Others => "others".to_owned(),
        },
        suppressed: w.suppressed,
        last_reason: std::mem::take(&mut w.last_reason),
    };
    w.suppressed = 0;
    w.since = now;
    Some(summary)
}

fn truncate(text: &mut String, max: usize) {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn limiter() -> LogLimiter {
        LogLimiter::with_limits("bad input", 3, 10 * S, 2)
    }

    fn admitted(l: &mut LogLimiter, now: Instant, peer: &[u8], n: usize) -> usize {
        (0..n).filter(|_| l.admit(now, peer, &"reason")).count()
    }

    #[test]
    fn a_burst_in_full_then_one_summary_per_interval() {
        let t0 = Instant::now();
        let mut l = limiter();
        assert_eq!(admitted(&mut l, t0, b"a", 1000), 3);
        assert_eq!(l.summaries(), 0);
        assert_eq!(l.next_due(), Some(t0 + 10 * S));
        // Still flooding: nothing more before the interval is over.
        assert_eq!(admitted(&mut l, t0 + 9 * S, b"a", 1000), 0);
        l.on_tick(t0 + 9 * S);
        assert_eq!(l.summaries(), 0);
        // The next event after the interval brings the summary.
        assert_eq!(admitted(&mut l, t0 + 10 * S, b"a", 1000), 0);
        assert_eq!(l.summaries(), 1);
        // And the tick brings the next one when the flood stops.
        l.on_tick(t0 + 19 * S);
        assert_eq!(l.summaries(), 1);
        l.on_tick(t0 + 20 * S);
        assert_eq!(l.summaries(), 2);
        assert_eq!(l.next_due(), None);
    }

    #[test]
    fn a_summary_says_how_many_and_the_last_reason() {
        let t0 = Instant::now();
        let mut l = limiter();
        for i in 0..10 {
            l.admit(t0, b"\x01\xff", &format!("reason {i}"));
        }
        let w = l.peers.get_mut(&b"\x01\xff"[..]).unwrap();
        let s = summarize(w, t0 + 10 * S, 10 * S, Label::Peer(b"\x01\xff")).unwrap();
        assert_eq!(
            s,
            Summary {
                peer: "01ff".into(),
                suppressed: 7,
                last_reason: "reason 9".into()
            }
        );
    }

    #[test]
    fn a_peer_quiet_for_an_interval_gets_a_fresh_burst() {
        let t0 = Instant::now();
        let mut l = limiter();
        assert_eq!(admitted(&mut l, t0, b"a", 3), 3);
        // Quiet: forgotten on the tick, or on its next event.
        l.on_tick(t0 + 10 * S);
        assert!(l.peers.is_empty());
        assert_eq!(admitted(&mut l, t0 + 10 * S, b"a", 10), 3);
        assert_eq!(admitted(&mut l, t0 + 20 * S, b"a", 10), 0, "flooding");
        l.on_tick(t0 + 20 * S);
        l.on_tick(t0 + 30 * S);
        assert_eq!(admitted(&mut l, t0 + 30 * S, b"a", 10), 3);
    }

    #[test]
    fn peers_are_limited_apart_and_the_extra_ones_share_a_bucket() {
        let t0 = Instant::now();
        let mut l = limiter();
        assert_eq!(admitted(&mut l, t0, b"a", 10), 3);
        assert_eq!(admitted(&mut l, t0, b"b", 10), 3);
        // Beyond two peers: one bucket for all the others, however many.
        let others: usize = (0..1000u32)
            .map(|i| admitted(&mut l, t0, &i.to_be_bytes(), 1))
            .sum();
        assert_eq!(others, 3);
        assert_eq!(l.peers.len(), 2);
        l.on_tick(t0 + 10 * S);
        assert_eq!(l.summaries(), 3, "a, b, and the others");
    }

    #[test]
    fn reasons_are_kept_short() {
        let t0 = Instant::now();
        let mut l = LogLimiter::with_limits("x", 0, S, 1);
        let long = "é".repeat(MAX_REASON);
        assert!(!l.admit(t0, b"", &long));
        let w = &l.peers[&b""[..]];
        assert!(w.last_reason.len() <= MAX_REASON);
        assert!(long.starts_with(&w.last_reason));
    }
}
