//! A thin wrapper around the broker state machine, for the criterion
//! benchmarks (`bench/benches/broker.rs`). Not part of the API: it may
//! change or go away with any release.

use std::time::Instant;

use crate::broker::BrokerConfig;
use crate::broker::core::{BrokerCore, Side};
use crate::protocol::{Message, Payload};

/// The broker's state machine without sockets: feed it frames as the
/// driver would, then drain what it wants sent.
#[derive(Debug)]
pub struct BrokerBench {
    core: BrokerCore,
}

impl BrokerBench {
    /// A state machine configured like a broker started with `config`.
    pub fn new(config: &BrokerConfig, now: Instant) -> Self {
        Self {
            core: BrokerCore::new(config, now),
        }
    }

    /// A message from a client or proxy (routing id, header frame, payload).
    pub fn frontend(&mut self, now: Instant, peer: &[u8], header: &[u8], payload: Payload) {
        self.core.on_frontend(now, peer, header, payload, || None);
    }

    /// A message from a worker.
    pub fn backend(&mut self, now: Instant, peer: &[u8], header: &[u8], payload: Payload) {
        self.core.on_backend(now, peer, header, payload, || None);
    }

    /// Runs the periodic work if it is due.
    pub fn tick(&mut self, now: Instant) {
        if now >= self.core.next_tick() {
            self.core.on_tick(now);
        }
    }

    /// Hands every queued outgoing message to `f` (`true` for the frontend,
    /// then the peer's routing id and the message), in order.
    pub fn drain(&mut self, mut f: impl FnMut(bool, &[u8], Message)) {
        for o in self.core.outbox().drain(..) {
            f(o.side == Side::Frontend, &o.peer, o.msg);
        }
    }

    /// Requests queued (waiting for a worker).
    pub fn pending(&self) -> u64 {
        self.core.stats().pending
    }
}
