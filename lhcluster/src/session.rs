//! A connecting peer's session with the broker, shared by the worker, the
//! client and the client proxy state machines: connect → greet (HELLO or
//! READY, repeated every own interval until WELCOME) → ready; the broker's
//! liveness from the moment we connect; reconnect with capped exponential
//! backoff when it goes silent or says it is shutting down.
//!
//! The session decides *when*; each role decides *what* (its greeting, its
//! counters, what a lost broker means for its outstanding work).

use std::time::{Duration, Instant};

use crate::peer::{Backoff, Liveness, interval_from_ms};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No socket; connect again at the given time.
    Disconnected { retry_at: Instant },
    /// Connected, greeting sent, no WELCOME yet.
    Greeting,
    /// WELCOME received.
    Ready,
}

/// What is due at a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    /// Nothing.
    Nothing,
    /// Time to create a socket and connect.
    Connect,
    /// The broker missed its heartbeats: the role gives it up (and calls
    /// [`BrokerSession::lose`]).
    Lost,
    /// Greet again: the greeting (or its WELCOME) may have been lost.
    Greet,
    /// Send a heartbeat: we have been silent for one of our intervals.
    Heartbeat,
}

#[derive(Debug)]
pub(crate) struct BrokerSession {
    state: State,
    broker: Liveness,
    backoff: Backoff,
    heartbeat: Duration,
    liveness: u32,
}

impl BrokerSession {
    /// Disconnected, due to connect at once. Until a WELCOME announces the
    /// broker's interval, our own stands in for it.
    pub(crate) fn new(
        now: Instant,
        heartbeat: Duration,
        liveness: u32,
        reconnect_min: Duration,
        reconnect_max: Duration,
    ) -> Self {
        Self {
            state: State::Disconnected { retry_at: now },
            broker: Liveness::new(now, heartbeat),
            backoff: Backoff::new(reconnect_min, reconnect_max),
            heartbeat,
            liveness,
        }
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.state == State::Ready
    }

    /// Has a socket (greeting or ready).
    pub(crate) fn is_connected(&self) -> bool {
        !matches!(self.state, State::Disconnected { .. })
    }

    /// A fresh socket is connected; the role sends its greeting.
    pub(crate) fn connected(&mut self, now: Instant) {
        self.broker = Liveness::new(now, self.broker.peer_interval);
        self.state = State::Greeting;
    }

    /// The socket could not be created or connected: try again later.
    pub(crate) fn connect_failed(&mut self, now: Instant) {
        self.lose(now);
    }

    /// The broker is gone (silent or shutting down): reconnect after the
    /// next backoff delay.
    pub(crate) fn lose(&mut self, now: Instant) {
        self.state = State::Disconnected {
            retry_at: now + self.backoff.next_delay(),
        };
    }

    /// The broker does not know us (REREGISTER): greet again.
    pub(crate) fn regreet(&mut self) {
        if self.is_connected() {
            self.state = State::Greeting;
        }
    }

    /// A WELCOME; `true` when it makes the session ready (it was not).
    pub(crate) fn welcome(&mut self, heartbeat_ms: u32) -> bool {
        self.broker.peer_interval = interval_from_ms(heartbeat_ms);
        let newly = self.state != State::Ready;
        self.state = State::Ready;
        self.backoff.reset();
        newly
    }

    /// A HEARTBEAT that may announce a new interval (0 = unchanged).
    pub(crate) fn broker_interval(&mut self, heartbeat_ms: u32) {
        if heartbeat_ms != 0 {
            self.broker.peer_interval = interval_from_ms(heartbeat_ms);
        }
    }

    /// Any message from the broker is a sign of life.
    pub(crate) fn heard(&mut self, now: Instant) {
        self.broker.last_heard = now;
    }

    /// We sent the broker something: no heartbeat due for a while.
    pub(crate) fn sent(&mut self, now: Instant) {
        self.broker.last_sent = now;
    }

    /// What is due now. A `stopped` role does not reconnect.
    pub(crate) fn due(&self, now: Instant, stopped: bool) -> Due {
        match self.state {
            State::Disconnected { retry_at } => {
                if now >= retry_at && !stopped {
                    Due::Connect
                } else {
                    Due::Nothing
                }
            }
            _ if self.broker.is_dead(now, self.liveness) => Due::Lost,
            _ if !self.broker.heartbeat_due(now, self.heartbeat) => Due::Nothing,
            State::Greeting => Due::Greet,
            State::Ready => Due::Heartbeat,
        }
    }

    /// When something may next be due (besides the role's own timers).
    pub(crate) fn next_tick(&self, now: Instant) -> Instant {
        match self.state {
            State::Disconnected { retry_at } => retry_at,
            _ => {
                now + (self.heartbeat.min(self.broker.peer_interval) / 2)
                    .max(Duration::from_millis(1))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn greet_until_welcome_then_heartbeat_on_silence() {
        let t0 = Instant::now();
        let mut s = BrokerSession::new(t0, ms(100), 3, ms(10), ms(40));
        assert_eq!(s.due(t0, false), Due::Connect);
        s.connected(t0);
        s.sent(t0);
        assert_eq!(s.due(t0 + ms(99), false), Due::Nothing);
        assert_eq!(s.due(t0 + ms(100), false), Due::Greet);
        s.heard(t0 + ms(120));
        assert!(s.welcome(500));
        assert!(!s.welcome(500), "only the first WELCOME makes it ready");
        s.sent(t0 + ms(150));
        assert_eq!(s.due(t0 + ms(250), false), Due::Heartbeat);
        // Silent broker: dead after 3 × its announced 500 ms.
        assert_eq!(s.due(t0 + ms(1620), false), Due::Heartbeat);
        assert_eq!(s.due(t0 + ms(1621), false), Due::Lost);
    }

    #[test]
    fn reconnects_after_a_backoff_that_doubles_and_resets() {
        let t0 = Instant::now();
        let mut s = BrokerSession::new(t0, ms(100), 3, ms(10), ms(40));
        s.connected(t0);
        s.lose(t0);
        assert_eq!(s.due(t0 + ms(9), false), Due::Nothing);
        assert_eq!(s.due(t0 + ms(10), false), Due::Connect);
        assert_eq!(
            s.due(t0 + ms(10), true),
            Due::Nothing,
            "a stopped role stays down"
        );
        s.connect_failed(t0 + ms(10));
        assert_eq!(s.next_tick(t0 + ms(10)), t0 + ms(30));
        s.connected(t0 + ms(30));
        s.welcome(100);
        s.lose(t0 + ms(40));
        assert_eq!(
            s.next_tick(t0 + ms(40)),
            t0 + ms(50),
            "WELCOME reset the backoff"
        );
    }
}
