//! What the unit tests of the connecting roles' state machines share: a
//! core driven by hand with a fake clock (`t0 + n ms`), fed broker messages
//! encoded by the real codec, its queued actions drained after each input.

use std::time::{Duration, Instant};

use crate::link::Connecting;
use crate::protocol::{Frame, Message, Payload};
use crate::session::LinkAction;

pub(crate) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub(crate) fn payload(frames: &[&[u8]]) -> Payload {
    frames.iter().map(|f| Frame::from(*f)).collect()
}

pub(crate) fn bytes(p: &Payload) -> Vec<Vec<u8>> {
    p.iter().map(|f| f.to_vec()).collect()
}

/// `msg` as the wire has it: header bytes and payload frames.
pub(crate) fn encode(msg: Message) -> (Vec<u8>, Payload) {
    let mut header = Vec::new();
    let encoded = msg.encode(&mut header);
    (header, encoded.payload)
}

/// A short name for a link action, to assert on sequences: a message's
/// kind, `CLOSE` or `CONNECT`.
pub(crate) fn link_kind(action: &LinkAction) -> String {
    match action {
        LinkAction::Send(m) => m.kind_name().to_owned(),
        LinkAction::Close => "CLOSE".to_owned(),
        LinkAction::Connect => "CONNECT".to_owned(),
    }
}

/// A role's periodic input.
pub(crate) trait Ticks {
    fn tick_at(&mut self, now: Instant);
}

/// A core, its fake clock, and what else a role's tests keep (`extra`);
/// each role's tests add their own methods to their instance.
#[derive(Debug)]
pub(crate) struct Driven<C, X = ()> {
    pub(crate) core: C,
    pub(crate) t0: Instant,
    pub(crate) extra: X,
}

impl<C: Connecting + Ticks, X> Driven<C, X> {
    pub(crate) fn start(core: C, t0: Instant, extra: X) -> Self {
        Self { core, t0, extra }
    }

    pub(crate) fn at(&self, n: u64) -> Instant {
        self.t0 + ms(n)
    }

    pub(crate) fn drain(&mut self) -> Vec<C::Action> {
        std::mem::take(self.core.parts().1)
    }

    /// The driver connected the socket at `n`: the greeting is queued.
    pub(crate) fn connect_at(&mut self, n: u64) -> Vec<C::Action> {
        let now = self.at(n);
        self.core.on_connected(now);
        self.drain()
    }

    /// The driver could not connect at `n`.
    pub(crate) fn connect_failed(&mut self, n: u64) {
        let now = self.at(n);
        self.core.on_connect_failed(now);
    }

    /// Feeds raw broker input at `n` ms.
    pub(crate) fn feed_raw(&mut self, n: u64, header: &[u8], payload: Payload) -> Vec<C::Action> {
        let now = self.at(n);
        self.core.on_broker(now, header, payload);
        self.drain()
    }

    /// Feeds a broker message (encoded by the real codec) at `n` ms.
    pub(crate) fn feed(&mut self, n: u64, msg: Message) -> Vec<C::Action> {
        let (header, payload) = encode(msg);
        self.feed_raw(n, &header, payload)
    }

    pub(crate) fn tick(&mut self, n: u64) -> Vec<C::Action> {
        let now = self.at(n);
        self.core.tick_at(now);
        self.drain()
    }
}
