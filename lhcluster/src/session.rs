//! A connecting peer's session with the broker, shared by the worker, the
//! client and the client proxy state machines: connect → greet (HELLO or
//! READY, repeated every own interval until WELCOME) → ready; the broker's
//! liveness from the moment we connect; reconnect with capped exponential
//! backoff when it goes silent or says it is shutting down.
//!
//! The session decides *when*; each role decides *what*. The session sends
//! the greeting, heartbeats and answers to malformed input, counts them, and
//! closes and reopens the link; it hands the role only what the role must
//! react to ([`Inbound`], [`Lost`]): a WELCOME, a REREGISTER, a lost broker,
//! and the messages of the role's own trade. What the session asks of the
//! link goes, as a [`LinkAction`], into the role's own action queue, so that
//! it keeps its order with the role's other actions (a receipt before the
//! handler runs); [`crate::link`] carries it out.

use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use crate::log_limit::LogLimiter;
use crate::peer::{Backoff, Liveness, interval_from_ms, interval_to_ms};
use crate::protocol::{self, ErrorReply, Hello, Message, Payload, Ready, RequestType};

/// What the session asks of the link (the DEALER to the broker).
#[derive(Debug)]
pub(crate) enum LinkAction {
    /// Send a message to the broker.
    Send(Message),
    /// Drop the socket (the broker is gone).
    Close,
    /// Create a socket, connect it, then call [`BrokerSession::connected`].
    Connect,
}

/// The greeting a role opens (and re-opens) its session with.
#[derive(Debug)]
pub(crate) enum Greeting {
    /// A client's or a proxy's.
    Hello(Hello),
    /// A worker's.
    Ready(Ready),
}

impl Greeting {
    /// A HELLO (`name`: none for a proxy's own).
    pub(crate) fn hello(name: Option<String>) -> Self {
        Greeting::Hello(Hello {
            heartbeat_ms: 0,
            name,
            route: Vec::new(),
        })
    }

    /// A worker's READY.
    pub(crate) fn ready(
        capacity: u32,
        request_types: Vec<RequestType>,
        name: Option<String>,
    ) -> Self {
        Greeting::Ready(Ready {
            heartbeat_ms: 0,
            capacity,
            request_types,
            name,
        })
    }

    /// Announces our own interval.
    fn with_interval(mut self, heartbeat: Duration) -> Self {
        let heartbeat_ms = interval_to_ms(heartbeat);
        match &mut self {
            Greeting::Hello(hello) => hello.heartbeat_ms = heartbeat_ms,
            Greeting::Ready(ready) => ready.heartbeat_ms = heartbeat_ms,
        }
        self
    }

    fn message(&self) -> Message {
        match self {
            Greeting::Hello(hello) => Message::Hello(hello.clone()),
            Greeting::Ready(ready) => Message::Ready(ready.clone()),
        }
    }
}

/// Why the session gave the broker up (the link is closed; it reconnects
/// after a backoff unless stopped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lost {
    /// It missed its heartbeats.
    Silent,
    /// It said SHUTDOWN.
    Shutdown,
}

/// A message from the broker, once the session has taken its part.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// Nothing for the role: a heartbeat, a malformed message (answered
    /// and counted), or a message arriving while disconnected.
    Handled,
    /// A WELCOME; `newly` when it made the session ready (it was not).
    Welcome { newly: bool },
    /// The broker does not know us: the session greets again, and what the
    /// broker had from us before is lost.
    Reregister,
    /// The broker is gone (SHUTDOWN).
    Lost(Lost),
    /// A message of the role's trade; one the role does not take goes to
    /// [`BrokerSession::unexpected`].
    Message(Message),
}

/// What the session counted; each role reports these in its own stats.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SessionCounts {
    pub(crate) heartbeats_sent: u64,
    pub(crate) heartbeats_received: u64,
    /// Connects after the first.
    pub(crate) reconnects: u64,
    /// Brokers given up for silence.
    pub(crate) deaths: u64,
    /// Brokers that said SHUTDOWN.
    pub(crate) shutdowns: u64,
    /// Malformed or unexpected messages from the broker.
    pub(crate) malformed: u64,
}

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
enum Due {
    /// Nothing.
    Nothing,
    /// Time to create a socket and connect.
    Connect,
    /// The broker missed its heartbeats.
    Lost,
    /// Greet again: the greeting (or its WELCOME) may have been lost.
    Greet,
    /// Send a heartbeat: we have been silent for one of our intervals.
    Heartbeat,
}

/// The session's timing, from a role's configuration (see [`timing!`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    /// Our own heartbeat interval.
    pub(crate) heartbeat: Duration,
    /// Missed broker intervals before it is declared dead.
    pub(crate) liveness: u32,
    pub(crate) reconnect_min: Duration,
    pub(crate) reconnect_max: Duration,
}

/// The [`Timing`] of a role's configuration: the client's, the worker's and
/// the proxy's each have these four fields.
macro_rules! timing {
    ($config:expr) => {
        $crate::session::Timing {
            heartbeat: $config.heartbeat,
            liveness: $config.liveness,
            reconnect_min: $config.reconnect_min,
            reconnect_max: $config.reconnect_max,
        }
    };
}
pub(crate) use timing;

/// Reports a session's counts in a client's or a worker's stats (their
/// fields have the same names).
macro_rules! report_counts {
    ($stats:expr, $session:expr) => {{
        let counts = $session.counts();
        $stats.malformed = counts.malformed;
        $stats.heartbeats_received = counts.heartbeats_received;
        $stats.heartbeats_sent = counts.heartbeats_sent;
        $stats.broker_deaths = counts.deaths;
        $stats.reconnects = counts.reconnects;
    }};
}
pub(crate) use report_counts;

#[derive(Debug)]
pub(crate) struct BrokerSession {
    state: State,
    broker: Liveness,
    backoff: Backoff,
    heartbeat: Duration,
    liveness: u32,
    greeting: Greeting,
    /// A stopped session neither reconnects nor greets on its timer.
    stopped: bool,
    counts: SessionCounts,
    /// Limits the warnings about malformed messages (the count stays
    /// exact): a broken broker must not fill the disk either.
    bad_input: LogLimiter,
    /// Limits the warnings about ERRORs the broker sends: each says that a
    /// message of ours was refused, and a confused role (or broker) could
    /// cause one per message.
    broker_errors: LogLimiter,
}

impl BrokerSession {
    /// Disconnected, due to connect at once: the role queues the first
    /// [`LinkAction::Connect`] itself. Until a WELCOME announces the
    /// broker's interval, our own stands in for it.
    pub(crate) fn new(now: Instant, timing: Timing, greeting: Greeting) -> Self {
        Self {
            state: State::Disconnected { retry_at: now },
            broker: Liveness::new(now, timing.heartbeat),
            backoff: Backoff::new(timing.reconnect_min, timing.reconnect_max),
            heartbeat: timing.heartbeat,
            liveness: timing.liveness,
            greeting: greeting.with_interval(timing.heartbeat),
            stopped: false,
            counts: SessionCounts::default(),
            bad_input: LogLimiter::new("malformed messages from the broker"),
            broker_errors: LogLimiter::new("errors reported by the broker"),
        }
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.state == State::Ready
    }

    /// Has a socket (greeting or ready).
    pub(crate) fn is_connected(&self) -> bool {
        !matches!(self.state, State::Disconnected { .. })
    }

    pub(crate) fn counts(&self) -> SessionCounts {
        self.counts
    }

    /// Sends `msg` to the broker: no heartbeat is due for a while.
    pub(crate) fn send<A: From<LinkAction>>(
        &mut self,
        now: Instant,
        msg: Message,
        out: &mut Vec<A>,
    ) {
        self.broker.last_sent = now;
        out.push(LinkAction::Send(msg).into());
    }

    /// A fresh socket is connected: greet.
    pub(crate) fn connected<A: From<LinkAction>>(&mut self, now: Instant, out: &mut Vec<A>) {
        self.broker = Liveness::new(now, self.broker.peer_interval);
        self.state = State::Greeting;
        self.greet(now, out);
    }

    /// The socket could not be created or connected: try again later.
    pub(crate) fn connect_failed(&mut self, now: Instant) {
        self.disconnect(now);
    }

    /// The role stops: say goodbye (DISCONNECT) if connected, and connect
    /// no more. Also while greeting: the broker reads the greeting first,
    /// so the DISCONNECT that follows it is understood.
    pub(crate) fn stop<A: From<LinkAction>>(&mut self, now: Instant, out: &mut Vec<A>) {
        self.stopped = true;
        if self.is_connected() {
            self.send(now, Message::Disconnect { route: Vec::new() }, out);
        }
    }

    /// A message from the broker: the session's own kinds are handled here
    /// (and a WELCOME, REREGISTER or SHUTDOWN also reported), the rest is
    /// the role's.
    pub(crate) fn on_message<A: From<LinkAction>>(
        &mut self,
        now: Instant,
        header: &[u8],
        payload: Payload,
        out: &mut Vec<A>,
    ) -> Inbound {
        if !self.is_connected() {
            return Inbound::Handled;
        }
        // Any message from the broker is a sign of life.
        self.broker.last_heard = now;
        let msg = match protocol::decode_parts(header, payload) {
            Ok(msg) => msg,
            Err(e) => {
                self.malformed(now, header, e.to_string(), out);
                return Inbound::Handled;
            }
        };
        match msg {
            Message::Welcome { heartbeat_ms } => {
                self.broker.peer_interval = interval_from_ms(heartbeat_ms);
                let newly = self.state != State::Ready;
                self.state = State::Ready;
                self.backoff.reset();
                Inbound::Welcome { newly }
            }
            Message::Heartbeat { heartbeat_ms } => {
                self.counts.heartbeats_received += 1;
                // 0 = unchanged.
                if heartbeat_ms != 0 {
                    self.broker.peer_interval = interval_from_ms(heartbeat_ms);
                }
                Inbound::Handled
            }
            Message::Reregister => {
                debug!("the broker does not know us: greeting again");
                self.state = State::Greeting;
                self.greet(now, out);
                Inbound::Reregister
            }
            Message::Shutdown => {
                info!("the broker is shutting down: reconnecting later");
                self.counts.shutdowns += 1;
                self.lose(now, out);
                Inbound::Lost(Lost::Shutdown)
            }
            other => Inbound::Message(other),
        }
    }

    /// A valid message of a kind the role does not take from the broker.
    pub(crate) fn unexpected<A: From<LinkAction>>(
        &mut self,
        now: Instant,
        msg: &Message,
        out: &mut Vec<A>,
    ) {
        let error = format!("unexpected {} from the broker", msg.kind_name());
        self.malformed(now, &[], error, out);
    }

    /// An ERROR from the broker, logged at warn through the limiter (the
    /// role does what it means for its requests).
    pub(crate) fn broker_error(&mut self, now: Instant, error: &str) {
        if self.broker_errors.admit(now, &[], &error) {
            warn!(%error, "the broker reported an error");
        }
    }

    /// Counts and answers a bad message with an ERROR, but never an ERROR
    /// with an error (two peers could loop).
    fn malformed<A: From<LinkAction>>(
        &mut self,
        now: Instant,
        header: &[u8],
        error: String,
        out: &mut Vec<A>,
    ) {
        self.counts.malformed += 1;
        if self.bad_input.admit(now, &[], &error) {
            warn!(%error, "malformed message from the broker");
        }
        if protocol::peek_kind(header) == Some("ERROR") {
            return;
        }
        let reply = Message::Error(ErrorReply {
            error,
            request: None,
        });
        self.send(now, reply, out);
    }

    /// Does what is due now: connect, greet again, heartbeat, or give up a
    /// silent broker (then reported, for the role to react).
    pub(crate) fn on_tick<A: From<LinkAction>>(
        &mut self,
        now: Instant,
        out: &mut Vec<A>,
    ) -> Option<Lost> {
        self.bad_input.on_tick(now);
        self.broker_errors.on_tick(now);
        match self.due(now) {
            Due::Nothing => {}
            Due::Connect => {
                self.counts.reconnects += 1;
                out.push(LinkAction::Connect.into());
            }
            Due::Lost => {
                warn!("the broker missed its heartbeats: reconnecting");
                self.counts.deaths += 1;
                self.lose(now, out);
                return Some(Lost::Silent);
            }
            Due::Greet => self.greet(now, out),
            Due::Heartbeat => {
                self.counts.heartbeats_sent += 1;
                let heartbeat_ms = interval_to_ms(self.heartbeat);
                self.send(now, Message::Heartbeat { heartbeat_ms }, out);
            }
        }
        None
    }

    fn greet<A: From<LinkAction>>(&mut self, now: Instant, out: &mut Vec<A>) {
        let greeting = self.greeting.message();
        self.send(now, greeting, out);
    }

    /// The broker is gone: close, and reconnect after the next backoff
    /// delay.
    fn lose<A: From<LinkAction>>(&mut self, now: Instant, out: &mut Vec<A>) {
        out.push(LinkAction::Close.into());
        self.disconnect(now);
    }

    fn disconnect(&mut self, now: Instant) {
        self.state = State::Disconnected {
            retry_at: crate::deadline::later(now, self.backoff.next_delay()),
        };
    }

    fn due(&self, now: Instant) -> Due {
        match self.state {
            State::Disconnected { retry_at } => {
                if now >= retry_at && !self.stopped {
                    Due::Connect
                } else {
                    Due::Nothing
                }
            }
            _ if self.broker.is_dead(now, self.liveness) => Due::Lost,
            _ if !self.broker.heartbeat_due(now, self.heartbeat) => Due::Nothing,
            // A stopping role does not ask again.
            State::Greeting if self.stopped => Due::Nothing,
            State::Greeting => Due::Greet,
            State::Ready => Due::Heartbeat,
        }
    }

    /// When something may next be due (besides the role's own timers).
    pub(crate) fn next_tick(&self, now: Instant) -> Instant {
        match self.state {
            State::Disconnected { retry_at } => retry_at,
            _ => {
                // Our heartbeat, and the broker's before its WELCOME, are
                // the configured one: any duration.
                crate::deadline::later(
                    now,
                    (self.heartbeat.min(self.broker.peer_interval) / 2)
                        .max(Duration::from_millis(1)),
                )
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

    fn session(t0: Instant) -> BrokerSession {
        let timing = Timing {
            heartbeat: ms(100),
            liveness: 3,
            reconnect_min: ms(10),
            reconnect_max: ms(40),
        };
        BrokerSession::new(t0, timing, Greeting::hello(None))
    }

    fn feed(s: &mut BrokerSession, now: Instant, msg: Message) -> (Inbound, Vec<String>) {
        let mut header = Vec::new();
        let encoded = msg.encode(&mut header);
        let mut out: Vec<LinkAction> = Vec::new();
        let inbound = s.on_message(now, &header, encoded.payload, &mut out);
        (inbound, kinds(&out))
    }

    fn tick(s: &mut BrokerSession, now: Instant) -> (Option<Lost>, Vec<String>) {
        let mut out: Vec<LinkAction> = Vec::new();
        let lost = s.on_tick(now, &mut out);
        (lost, kinds(&out))
    }

    fn kinds(out: &[LinkAction]) -> Vec<String> {
        out.iter()
            .map(|a| match a {
                LinkAction::Send(m) => m.kind_name().to_owned(),
                LinkAction::Close => "CLOSE".to_owned(),
                LinkAction::Connect => "CONNECT".to_owned(),
            })
            .collect()
    }

    fn connected(s: &mut BrokerSession, now: Instant) {
        let mut out: Vec<LinkAction> = Vec::new();
        s.connected(now, &mut out);
        assert_eq!(kinds(&out), ["HELLO"]);
    }

    #[test]
    fn greet_until_welcome_then_heartbeat_on_silence() {
        let t0 = Instant::now();
        let mut s = session(t0);
        assert_eq!(tick(&mut s, t0), (None, vec!["CONNECT".to_owned()]));
        connected(&mut s, t0);
        assert_eq!(tick(&mut s, t0 + ms(99)), (None, vec![]));
        assert_eq!(tick(&mut s, t0 + ms(100)), (None, vec!["HELLO".to_owned()]));
        let welcome = Message::Welcome { heartbeat_ms: 500 };
        let (inbound, out) = feed(&mut s, t0 + ms(120), welcome);
        assert!(matches!(inbound, Inbound::Welcome { newly: true }));
        assert!(out.is_empty());
        let welcome = Message::Welcome { heartbeat_ms: 500 };
        let (inbound, _) = feed(&mut s, t0 + ms(120), welcome);
        assert!(
            matches!(inbound, Inbound::Welcome { newly: false }),
            "only the first WELCOME makes it ready"
        );
        let mut out: Vec<LinkAction> = Vec::new();
        s.send(
            t0 + ms(150),
            Message::Heartbeat { heartbeat_ms: 1 },
            &mut out,
        );
        assert_eq!(tick(&mut s, t0 + ms(249)), (None, vec![]));
        assert_eq!(
            tick(&mut s, t0 + ms(250)),
            (None, vec!["HEARTBEAT".to_owned()])
        );
        // Silent broker: dead after 3 × its announced 500 ms.
        assert_eq!(tick(&mut s, t0 + ms(1620)).0, None);
        assert_eq!(
            tick(&mut s, t0 + ms(1621)),
            (Some(Lost::Silent), vec!["CLOSE".to_owned()])
        );
        let counts = s.counts();
        assert_eq!((counts.heartbeats_sent, counts.deaths), (2, 1));
    }

    #[test]
    fn far_configured_durations_mean_never_not_a_panic() {
        // A heartbeat or reconnect delay of `Duration::MAX` (the natural
        // "forever") must not overflow the clock in any state.
        let t0 = Instant::now();
        let timing = Timing {
            heartbeat: Duration::MAX,
            liveness: u32::MAX,
            reconnect_min: Duration::MAX,
            reconnect_max: Duration::MAX,
        };
        let mut s = BrokerSession::new(t0, timing, Greeting::hello(None));
        let year = Duration::from_secs(3600 * 24 * 365);
        assert!(s.next_tick(t0) <= t0, "the first connect is due at once");
        connected(&mut s, t0);
        assert!(
            s.next_tick(t0) > t0 + year,
            "greeting: nothing due for long"
        );
        assert_eq!(tick(&mut s, t0 + ms(10)), (None, vec![]));
        let (inbound, out) = feed(&mut s, t0, Message::Shutdown);
        assert!(matches!(inbound, Inbound::Lost(Lost::Shutdown)));
        assert_eq!(out, ["CLOSE"]);
        assert!(s.next_tick(t0) > t0 + year, "the reconnect waits long");
        assert_eq!(tick(&mut s, t0 + ms(10)), (None, vec![]));
    }

    #[test]
    fn reconnects_after_a_backoff_that_doubles_and_resets() {
        let t0 = Instant::now();
        let mut s = session(t0);
        connected(&mut s, t0);
        let (inbound, out) = feed(&mut s, t0, Message::Shutdown);
        assert!(matches!(inbound, Inbound::Lost(Lost::Shutdown)));
        assert_eq!(out, ["CLOSE"]);
        assert_eq!(tick(&mut s, t0 + ms(9)), (None, vec![]));
        assert_eq!(s.next_tick(t0 + ms(9)), t0 + ms(10));
        s.connect_failed(t0 + ms(10));
        assert_eq!(s.next_tick(t0 + ms(10)), t0 + ms(30));
        connected(&mut s, t0 + ms(30));
        feed(&mut s, t0 + ms(30), Message::Welcome { heartbeat_ms: 100 });
        feed(&mut s, t0 + ms(40), Message::Shutdown);
        assert_eq!(
            s.next_tick(t0 + ms(40)),
            t0 + ms(50),
            "WELCOME reset the backoff"
        );
        let mut out: Vec<LinkAction> = Vec::new();
        s.stop(t0 + ms(40), &mut out);
        assert!(out.is_empty(), "no goodbye without a socket");
        assert_eq!(
            tick(&mut s, t0 + ms(50)),
            (None, vec![]),
            "a stopped session stays down"
        );
    }

    #[test]
    fn reregister_greets_again_and_bad_input_is_answered_once() {
        let t0 = Instant::now();
        let mut s = session(t0);
        let (inbound, out) = feed(&mut s, t0, Message::Reregister);
        assert!(
            matches!(inbound, Inbound::Handled) && out.is_empty(),
            "nothing is heard while disconnected"
        );
        connected(&mut s, t0);
        feed(&mut s, t0, Message::Welcome { heartbeat_ms: 100 });
        let (inbound, out) = feed(&mut s, t0, Message::Reregister);
        assert!(matches!(inbound, Inbound::Reregister));
        assert_eq!(out, ["HELLO"]);
        assert!(!s.is_ready());
        let mut out: Vec<LinkAction> = Vec::new();
        let inbound = s.on_message(t0, b"garbage", Payload::new(), &mut out);
        assert!(matches!(inbound, Inbound::Handled));
        assert_eq!(kinds(&out), ["ERROR"]);
        let (inbound, out) = feed(&mut s, t0, Message::Heartbeat { heartbeat_ms: 0 });
        assert!(matches!(inbound, Inbound::Handled) && out.is_empty());
        let (inbound, out) = feed(&mut s, t0, Message::StatsQuery);
        let Inbound::Message(msg) = inbound else {
            panic!("a role's message");
        };
        assert!(out.is_empty());
        let mut out: Vec<LinkAction> = Vec::new();
        s.unexpected(t0, &msg, &mut out);
        assert_eq!(kinds(&out), ["ERROR"]);
        let counts = s.counts();
        assert_eq!((counts.malformed, counts.heartbeats_received), (2, 1));
    }

    #[test]
    fn broker_errors_are_logged_through_the_limiter() {
        let t0 = Instant::now();
        let mut s = session(t0);
        for _ in 0..20 {
            s.broker_error(t0, "refused");
        }
        assert_eq!(
            s.broker_errors.summaries(),
            0,
            "the burst is logged in full"
        );
        tick(&mut s, t0 + crate::log_limit::INTERVAL);
        assert_eq!(
            s.broker_errors.summaries(),
            1,
            "the rest is one summary line, written on the tick"
        );
    }

    #[test]
    fn a_stopped_session_says_goodbye_and_greets_no_more() {
        let t0 = Instant::now();
        let mut s = session(t0);
        connected(&mut s, t0);
        let mut out: Vec<LinkAction> = Vec::new();
        s.stop(t0, &mut out);
        assert_eq!(kinds(&out), ["DISCONNECT"]);
        assert_eq!(tick(&mut s, t0 + ms(200)), (None, vec![]));
    }
}
