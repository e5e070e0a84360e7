//! A subscriber's bookkeeping, without sockets or clocks: the subscription
//! set (what the application asked for), the ZeroMQ filters it maps to, and
//! the probes that confirm the filters are in force upstream.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::protocol::topic_frame;

/// The exact and prefix subscriptions of one subscriber.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SubscriptionSet {
    pub(crate) exact: BTreeSet<String>,
    pub(crate) prefixes: BTreeSet<String>,
}

impl SubscriptionSet {
    /// Whether a notification on `topic` is wanted.
    pub(crate) fn matches(&self, topic: &str) -> bool {
        self.exact.contains(topic) || self.matching_prefixes(topic).next().is_some()
    }

    /// The prefix subscriptions `topic` starts with (at most one lookup per
    /// character of the topic, however many prefixes there are).
    fn matching_prefixes<'a>(&'a self, topic: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        let ends = topic.char_indices().map(|(i, _)| i).chain([topic.len()]);
        ends.map(move |end| &topic[..end])
            .filter(move |prefix| self.prefixes.contains(*prefix))
    }

    /// Removes every subscription through which `topic` is received (its
    /// exact subscription and the prefixes it starts with); returns whether
    /// any was removed.
    pub(crate) fn remove_matching(&mut self, topic: &str) -> bool {
        let prefixes: Vec<String> = self.matching_prefixes(topic).map(str::to_owned).collect();
        let mut removed = self.exact.remove(topic);
        for prefix in prefixes {
            removed |= self.prefixes.remove(&prefix);
        }
        removed
    }

    /// The ZeroMQ subscription filters: the topic frame (topic + NUL) for an
    /// exact subscription, the bare bytes for a prefix.
    pub(crate) fn filters(&self) -> BTreeSet<Vec<u8>> {
        self.exact
            .iter()
            .map(|t| topic_frame(t))
            .chain(self.prefixes.iter().map(|p| p.as_bytes().to_vec()))
            .collect()
    }
}

/// A change to apply to the socket's filters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum FilterChange {
    Subscribe(Vec<u8>),
    Unsubscribe(Vec<u8>),
}

/// The changes that turn the `applied` filters into `desired`; `applied` is
/// updated as if they were made.
pub(crate) fn reconcile(
    applied: &mut BTreeSet<Vec<u8>>,
    desired: BTreeSet<Vec<u8>>,
    out: &mut Vec<FilterChange>,
) {
    for gone in applied.difference(&desired) {
        out.push(FilterChange::Unsubscribe(gone.clone()));
    }
    for new in desired.difference(applied) {
        out.push(FilterChange::Subscribe(new.clone()));
    }
    *applied = desired;
}

/// Probe subscription bytes: `00 'p'`, 8 id bytes, 8-byte big-endian
/// sequence number. No topic frame can match them (topics never start with
/// NUL), so a probe never receives a notification.
const PROBE_LEN: usize = 18;

/// Someone waiting for the confirmation of the filters applied before a
/// probe.
#[derive(Debug)]
struct Waiter {
    seq: u64,
    deadline: Instant,
    reply: Sender<()>,
}

/// Confirms, with probes, that the subscriptions applied so far are in force
/// at the peer.
///
/// A probe is a subscription to private bytes that the peer (broker or
/// direct publisher) answers with a one-frame message carrying the same
/// bytes. A peer handles each connection's subscription messages in order,
/// so the answer to probe *n* proves every filter change made before probe
/// *n* is in force there; it confirms every waiter of probes up to *n*.
#[derive(Debug)]
pub(crate) struct Prober {
    id: [u8; 8],
    next_seq: u64,
    /// Probe subscriptions set on the socket now, oldest first, with the
    /// time each was sent.
    outstanding: Vec<(u64, Instant)>,
    waiters: Vec<Waiter>,
    /// A probe unanswered for this long is replaced by a new one (the
    /// answer may have been dropped at a full queue).
    retry: Duration,
}

impl Prober {
    pub(crate) fn new(id: [u8; 8], retry: Duration) -> Self {
        Self {
            id,
            next_seq: 1,
            outstanding: Vec::new(),
            waiters: Vec::new(),
            retry,
        }
    }

    fn bytes(&self, seq: u64) -> Vec<u8> {
        let mut b = Vec::with_capacity(PROBE_LEN);
        b.extend_from_slice(&[0, b'p']);
        b.extend_from_slice(&self.id);
        b.extend_from_slice(&seq.to_be_bytes());
        b
    }

    /// Sends a new probe, superseding the outstanding ones.
    fn probe(&mut self, now: Instant, out: &mut Vec<FilterChange>) -> u64 {
        for (seq, _) in std::mem::take(&mut self.outstanding) {
            out.push(FilterChange::Unsubscribe(self.bytes(seq)));
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        out.push(FilterChange::Subscribe(self.bytes(seq)));
        self.outstanding.push((seq, now));
        seq
    }

    /// Asks for confirmation of every filter change made so far; `reply`
    /// gets `()` when it is confirmed. Call after applying the changes.
    pub(crate) fn request(
        &mut self,
        now: Instant,
        replies: Vec<(Instant, Sender<()>)>,
        out: &mut Vec<FilterChange>,
    ) -> usize {
        if replies.is_empty() {
            return 0;
        }
        let seq = self.probe(now, out);
        self.waiters
            .extend(replies.into_iter().map(|(deadline, reply)| Waiter {
                seq,
                deadline,
                reply,
            }));
        1
    }

    /// The connection was moved to another peer: what the outstanding
    /// probes would confirm is not known to be in force there (ZeroMQ
    /// replays the subscriptions in its own order, a probe maybe first),
    /// so every waiter waits for a fresh probe, sent after the replay.
    /// Returns the number of probes sent.
    pub(crate) fn renew(&mut self, now: Instant, out: &mut Vec<FilterChange>) -> usize {
        if self.waiters.is_empty() {
            return 0;
        }
        let seq = self.probe(now, out);
        for waiter in &mut self.waiters {
            waiter.seq = seq;
        }
        1
    }

    /// Handles a message whose first frame starts with NUL (a probe answer,
    /// ours or another subscriber's); returns whether it was ours.
    pub(crate) fn on_answer(&mut self, frame: &[u8], out: &mut Vec<FilterChange>) -> bool {
        if frame.len() != PROBE_LEN || frame[..2] != [0, b'p'] || frame[2..10] != self.id {
            return false;
        }
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&frame[10..]);
        let seq = u64::from_be_bytes(seq);
        self.waiters.retain(|w| {
            if w.seq <= seq {
                let _ = w.reply.try_send(());
                false
            } else {
                true
            }
        });
        let (done, live): (Vec<_>, Vec<_>) = self.outstanding.iter().partition(|(s, _)| *s <= seq);
        self.outstanding = live;
        for (s, _) in done {
            out.push(FilterChange::Unsubscribe(self.bytes(s)));
        }
        true
    }

    /// Forgets waiters past their deadline (they have given up), and sends a
    /// fresh probe if the last one is unanswered for too long. Returns the
    /// number of probes sent.
    pub(crate) fn on_tick(&mut self, now: Instant, out: &mut Vec<FilterChange>) -> usize {
        self.waiters.retain(|w| w.deadline > now);
        if self.waiters.is_empty() {
            for (seq, _) in std::mem::take(&mut self.outstanding) {
                out.push(FilterChange::Unsubscribe(self.bytes(seq)));
            }
            return 0;
        }
        match self.outstanding.last() {
            Some(&(_, sent)) if now < sent + self.retry => 0,
            _ => {
                self.probe(now, out);
                1
            }
        }
    }

    /// When [`on_tick`](Self::on_tick) has something to do.
    pub(crate) fn next_tick(&self) -> Option<Instant> {
        let first_deadline = self.waiters.iter().map(|w| w.deadline).min()?;
        let retry = self
            .outstanding
            .last()
            .map_or(first_deadline, |&(_, sent)| sent + self.retry);
        Some(first_deadline.min(retry))
    }
}
