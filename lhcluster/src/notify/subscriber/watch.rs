//! Which notify broker a subscriber with several uses, and when it gives
//! that one up for the next: sans-IO, the clock passed in.
//!
//! A SUB socket has no session with its broker (nothing like the request
//! roles' WELCOME and HEARTBEAT), and ZeroMQ's own heartbeats only drop and
//! silently re-establish a connection to the same endpoint. So the watch
//! asks the broker itself: whenever nothing has come from it for one
//! `heartbeat`, it subscribes to a fresh *liveness probe* (protocol.md
//! §11.3), which every notify broker and bound publisher answers. Anything
//! that arrives (a notification, any probe answer) is a sign of life; after
//! `liveness` × `heartbeat` without one, the broker is gone and the
//! subscriber moves to the next endpoint of its list, round robin. With a
//! single endpoint nothing is watched: ZeroMQ reconnects to it by itself,
//! as it always did.

use std::time::{Duration, Instant};

use crate::notify::subscriptions::FilterChange;

/// Liveness probe bytes: `00 'h'`, 8 subscriber id bytes, 8-byte big-endian
/// sequence number (a confirmation probe has `'p'` instead of `'h'`).
const LIVENESS_PROBE_LEN: usize = 18;

/// A move to another endpoint: disconnect `from`, connect `to`.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Move {
    pub(super) from: String,
    pub(super) to: String,
}

#[derive(Debug)]
pub(super) struct BrokerWatch {
    endpoints: Vec<String>,
    current: usize,
    id: [u8; 8],
    heartbeat: Duration,
    /// Silence beyond this (`liveness` × `heartbeat`) means gone.
    dead_after: Duration,
    /// Last sign of life from the current broker (or the move to it).
    last_heard: Instant,
    /// The liveness probe subscribed now, with when it was sent.
    probe: Option<(u64, Instant)>,
    next_seq: u64,
}

impl BrokerWatch {
    /// Watches the first of `endpoints` from `now`.
    pub(super) fn new(
        endpoints: Vec<String>,
        id: [u8; 8],
        heartbeat: Duration,
        liveness: u32,
        now: Instant,
    ) -> Self {
        Self {
            endpoints,
            current: 0,
            id,
            heartbeat,
            dead_after: heartbeat.saturating_mul(liveness),
            last_heard: now,
            probe: None,
            next_seq: 1,
        }
    }

    /// The endpoint connected to now.
    pub(super) fn current(&self) -> &str {
        self.endpoints.get(self.current).map_or("", String::as_str)
    }

    /// Whether there is anywhere to move to (else nothing is watched).
    fn watching(&self) -> bool {
        self.endpoints.len() > 1
    }

    fn bytes(&self, seq: u64) -> Vec<u8> {
        let mut b = Vec::with_capacity(LIVENESS_PROBE_LEN);
        b.extend_from_slice(&[0, b'h']);
        b.extend_from_slice(&self.id);
        b.extend_from_slice(&seq.to_be_bytes());
        b
    }

    /// Something arrived from the broker, whose first frame is `first`;
    /// returns whether it was the answer to our liveness probe (nothing
    /// more to do with it).
    pub(super) fn on_message(
        &mut self,
        now: Instant,
        first: &[u8],
        out: &mut Vec<FilterChange>,
    ) -> bool {
        self.last_heard = now;
        let Some((seq, _)) = self.probe else {
            return false;
        };
        if first != self.bytes(seq).as_slice() {
            return false;
        }
        self.probe = None;
        out.push(FilterChange::Unsubscribe(self.bytes(seq)));
        true
    }

    /// Probes a quiet broker, and gives up a silent one: then the caller
    /// moves the socket as the returned [`Move`] says.
    pub(super) fn on_tick(&mut self, now: Instant, out: &mut Vec<FilterChange>) -> Option<Move> {
        if !self.watching() {
            return None;
        }
        let quiet = now.saturating_duration_since(self.last_heard);
        if quiet > self.dead_after {
            self.drop_probe(out);
            let from = self.current().to_owned();
            self.current = (self.current + 1) % self.endpoints.len();
            // The next broker gets the same grace as this one had.
            self.last_heard = now;
            return Some(Move {
                from,
                to: self.current().to_owned(),
            });
        }
        let probe_due = self
            .probe
            .is_none_or(|(_, sent)| now.saturating_duration_since(sent) >= self.heartbeat);
        if quiet >= self.heartbeat && probe_due {
            // A fresh one each time: an answer to an older one may have
            // been dropped at a full queue.
            self.drop_probe(out);
            let seq = self.next_seq;
            self.next_seq += 1;
            out.push(FilterChange::Subscribe(self.bytes(seq)));
            self.probe = Some((seq, now));
        }
        None
    }

    fn drop_probe(&mut self, out: &mut Vec<FilterChange>) {
        if let Some((seq, _)) = self.probe.take() {
            out.push(FilterChange::Unsubscribe(self.bytes(seq)));
        }
    }

    /// When [`on_tick`](Self::on_tick) has something to do.
    pub(super) fn next_tick(&self) -> Option<Instant> {
        if !self.watching() {
            return None;
        }
        let dead =
            crate::deadline::later(self.last_heard, self.dead_after) + Duration::from_millis(1);
        let probe = match self.probe {
            Some((_, sent)) => crate::deadline::later(sent, self.heartbeat),
            None => crate::deadline::later(self.last_heard, self.heartbeat),
        };
        Some(dead.min(probe))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn watch(t0: Instant, endpoints: &[&str]) -> BrokerWatch {
        let endpoints = endpoints.iter().map(|e| (*e).to_owned()).collect();
        BrokerWatch::new(endpoints, [7; 8], ms(100), 3, t0)
    }

    fn subscribed(out: &[FilterChange]) -> Vec<Vec<u8>> {
        out.iter()
            .filter_map(|c| match c {
                FilterChange::Subscribe(b) => Some(b.clone()),
                FilterChange::Unsubscribe(_) => None,
            })
            .collect()
    }

    #[test]
    fn a_single_endpoint_is_not_watched() {
        let t0 = Instant::now();
        let mut w = watch(t0, &["a"]);
        let mut out = Vec::new();
        assert_eq!(w.on_tick(t0 + ms(10_000), &mut out), None);
        assert!(out.is_empty());
        assert_eq!(w.next_tick(), None);
    }

    #[test]
    fn a_quiet_broker_is_probed_and_an_answer_keeps_it() {
        let t0 = Instant::now();
        let mut w = watch(t0, &["a", "b"]);
        let mut out = Vec::new();
        assert_eq!(w.next_tick(), Some(t0 + ms(100)));
        assert_eq!(w.on_tick(t0 + ms(99), &mut out), None);
        assert!(out.is_empty(), "heard from recently enough");
        assert_eq!(w.on_tick(t0 + ms(100), &mut out), None);
        let probe = subscribed(&out);
        assert_eq!(probe.len(), 1);
        assert_eq!(&probe[0][..2], &[0, b'h']);
        out.clear();
        // Another subscriber's probe answer is a sign of life, not ours.
        assert!(!w.on_message(t0 + ms(150), b"\0pxxxx", &mut out));
        assert!(w.on_message(t0 + ms(160), &probe[0], &mut out));
        assert_eq!(out, [FilterChange::Unsubscribe(probe[0].clone())]);
        out.clear();
        // Heard at 160: nothing is due until 260 (probe) and 461 (gone).
        assert_eq!(w.next_tick(), Some(t0 + ms(260)));
        assert_eq!(w.on_tick(t0 + ms(459), &mut out).map(|m| m.to), None);
        assert_eq!(w.current(), "a");
    }

    #[test]
    fn a_silent_broker_is_left_for_the_next_wrapping_round() {
        let t0 = Instant::now();
        let mut w = watch(t0, &["a", "b", "c"]);
        let mut out = Vec::new();
        w.on_tick(t0 + ms(100), &mut out);
        w.on_tick(t0 + ms(200), &mut out);
        assert_eq!(subscribed(&out).len(), 2, "a fresh probe every interval");
        out.clear();
        assert_eq!(w.on_tick(t0 + ms(300), &mut out), None);
        out.clear();
        assert_eq!(w.next_tick(), Some(t0 + ms(301)));
        let moved = w.on_tick(t0 + ms(301), &mut out);
        assert_eq!(
            moved,
            Some(Move {
                from: "a".to_owned(),
                to: "b".to_owned()
            })
        );
        assert!(
            out.iter()
                .all(|c| matches!(c, FilterChange::Unsubscribe(_))),
            "the last probe is withdrawn, nothing new: {out:?}"
        );
        // b gets a full grace period, then c, then a again.
        assert_eq!(w.on_tick(t0 + ms(601), &mut out), None);
        assert_eq!(w.on_tick(t0 + ms(602), &mut out).unwrap().to, "c");
        assert_eq!(w.on_tick(t0 + ms(903), &mut out).unwrap().to, "a");
    }
}
