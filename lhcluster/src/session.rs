//! A connecting peer's session with the broker, shared by the worker, the
//! client and the client proxy state machines: connect → greet (HELLO or
//! READY, repeated every own interval until WELCOME) → ready; the broker's
//! liveness from the moment we connect; reconnect with capped exponential
//! backoff when it goes silent or says it is shutting down.
//!
//! A role may be given several brokers ([`Rotation`]): it has a session with
//! one at a time, and each time it gives one up (silent, SHUTDOWN, no
//! WELCOME within the liveness bound, or the connect failed) the next
//! attempt goes to the next broker of the list, wrapping round. One session
//! at a time keeps what a role promises a broker (a worker's capacity) a
//! promise to one broker only; see docs/guide.md, "Several brokers".
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

    /// A worker's READY: `types` with their names, if any (the list of
    /// names is left out when none has one, as a 1.5 worker sends it).
    pub(crate) fn ready(
        capacity: u32,
        types: Vec<(RequestType, Option<String>)>,
        name: Option<String>,
    ) -> Self {
        let named = types.iter().any(|(_, n)| n.is_some());
        let (request_types, names): (Vec<_>, Vec<_>) = types.into_iter().unzip();
        let type_names = if named {
            names.into_iter().map(Option::unwrap_or_default).collect()
        } else {
            Vec::new()
        };
        Greeting::Ready(Ready {
            heartbeat_ms: 0,
            capacity,
            request_types,
            type_names,
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

/// The brokers a role may use, in the order it tries them, and the one it
/// uses now. A fresh role starts with the first: a predictable choice
/// (spread load by giving processes their lists in different orders).
#[derive(Debug)]
pub(crate) struct Rotation {
    endpoints: Vec<String>,
    current: usize,
    /// Moves to another endpoint so far: what was done for one broker
    /// belongs to the generation it was done in.
    generation: u64,
}

impl Rotation {
    /// `endpoints` in the order they are tried (a validated config has at
    /// least one; with none, every connect fails and is retried).
    pub(crate) fn new(endpoints: Vec<String>) -> Self {
        Self {
            endpoints,
            current: 0,
            generation: 0,
        }
    }

    /// The endpoint to connect to now.
    pub(crate) fn current(&self) -> &str {
        self.endpoints.get(self.current).map_or("", String::as_str)
    }

    /// How many times the role moved to another broker.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Gives the current broker up for the next one; `false` when there is
    /// no other (a single broker is simply reconnected to).
    fn advance(&mut self) -> bool {
        if self.endpoints.len() < 2 {
            return false;
        }
        self.current = (self.current + 1) % self.endpoints.len();
        self.generation += 1;
        true
    }
}

/// Why the session gave a broker up, as the move line says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GaveUp {
    /// A session that had its WELCOME went silent.
    Silent,
    /// Connected, but no WELCOME (nor anything else) within the liveness
    /// bound: most likely nothing listens there.
    NeverWelcomed,
    Shutdown,
    ConnectFailed,
}

impl GaveUp {
    fn describe(self) -> &'static str {
        match self {
            GaveUp::Silent => "missed heartbeats",
            GaveUp::NeverWelcomed => "no WELCOME within the liveness bound",
            GaveUp::Shutdown => "SHUTDOWN",
            GaveUp::ConnectFailed => "a failed connect",
        }
    }
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
    /// Moves to another broker of the list.
    pub(crate) failovers: u64,
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
        $stats.failovers = counts.failovers;
    }};
}
pub(crate) use report_counts;

#[derive(Debug)]
pub(crate) struct BrokerSession {
    state: State,
    brokers: Rotation,
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
    /// The largest message the broker accepts, from its WELCOME (protocol
    /// 1.7; `None` before it, or from an older broker).
    broker_max_message_size: Option<usize>,
    /// The protocol minor version of the broker's last WELCOME (0 before
    /// one): a role sends a kind only to a broker that knows it.
    broker_minor: u32,
}

impl BrokerSession {
    /// Disconnected, due to connect at once to the first of `brokers`: the
    /// role queues the first [`LinkAction::Connect`] itself. Until a
    /// WELCOME announces the broker's interval, our own stands in for it.
    pub(crate) fn new(
        now: Instant,
        timing: Timing,
        brokers: Vec<String>,
        greeting: Greeting,
    ) -> Self {
        Self {
            state: State::Disconnected { retry_at: now },
            brokers: Rotation::new(brokers),
            broker: Liveness::new(now, timing.heartbeat),
            backoff: Backoff::new(timing.reconnect_min, timing.reconnect_max),
            heartbeat: timing.heartbeat,
            liveness: timing.liveness,
            greeting: greeting.with_interval(timing.heartbeat),
            stopped: false,
            counts: SessionCounts::default(),
            broker_max_message_size: None,
            bad_input: LogLimiter::new("malformed messages from the broker"),
            broker_errors: LogLimiter::new("errors reported by the broker"),
            broker_minor: 0,
        }
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.state == State::Ready
    }

    /// Has a socket (greeting or ready).
    pub(crate) fn is_connected(&self) -> bool {
        !matches!(self.state, State::Disconnected { .. })
    }

    /// The protocol minor version the broker's last WELCOME said it speaks.
    pub(crate) fn broker_minor(&self) -> u32 {
        self.broker_minor
    }

    pub(crate) fn counts(&self) -> SessionCounts {
        self.counts
    }

    /// The broker to connect to (now, or at the next connect).
    pub(crate) fn endpoint(&self) -> &str {
        self.brokers.current()
    }

    /// Changes each time the session moves to another broker: work done
    /// for the broker of one generation is never reported to another.
    pub(crate) fn generation(&self) -> u64 {
        self.brokers.generation()
    }

    /// The largest message the broker said it accepts (header and payload
    /// frames together), once its WELCOME has said so: a larger one would
    /// be dropped by the broker, or cut the connection (docs/security.md,
    /// "Limits on input"), so the role ends it locally instead.
    pub(crate) fn broker_max_message_size(&self) -> Option<usize> {
        self.broker_max_message_size
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
        // Whoever answers on this connection says its own limit and
        // version.
        self.broker_max_message_size = None;
        self.broker_minor = 0;
        self.state = State::Greeting;
        self.greet(now, out);
    }

    /// The socket could not be created or connected: try again later (the
    /// next broker, if there are several).
    pub(crate) fn connect_failed(&mut self, now: Instant) {
        self.move_on(GaveUp::ConnectFailed);
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
            Message::Welcome {
                heartbeat_ms,
                max_message_size,
            } => {
                self.broker_minor = protocol::peek_minor(header);
                self.broker.peer_interval = interval_from_ms(heartbeat_ms);
                self.broker_max_message_size = (max_message_size != 0)
                    .then(|| usize::try_from(max_message_size).unwrap_or(usize::MAX));
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
                self.counts.shutdowns += 1;
                self.lose(now, GaveUp::Shutdown, out);
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
            status: None,
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
                self.counts.deaths += 1;
                let why = if self.state == State::Ready {
                    GaveUp::Silent
                } else {
                    GaveUp::NeverWelcomed
                };
                self.lose(now, why, out);
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

    /// The broker is gone: close, and reconnect (to the next broker, if
    /// there are several) after the next backoff delay.
    fn lose<A: From<LinkAction>>(&mut self, now: Instant, why: GaveUp, out: &mut Vec<A>) {
        out.push(LinkAction::Close.into());
        if !self.move_on(why) {
            match why {
                GaveUp::Shutdown => info!("the broker is shutting down: reconnecting later"),
                // Never had a session: nothing was lost, and nothing
                // missed a heartbeat; say what is true.
                GaveUp::NeverWelcomed | GaveUp::ConnectFailed => warn!(
                    broker = self.brokers.current(),
                    reason = why.describe(),
                    "not connected to the broker at {}: retrying",
                    self.brokers.current()
                ),
                GaveUp::Silent => warn!(
                    reason = why.describe(),
                    "the broker missed its heartbeats: reconnecting"
                ),
            }
        }
        self.disconnect(now);
    }

    /// Leaves the current broker for the next of the list, logging the
    /// move; `false` with a single broker (it is reconnected to).
    fn move_on(&mut self, why: GaveUp) -> bool {
        if self.stopped {
            return false;
        }
        let from = self.brokers.current().to_owned();
        if !self.brokers.advance() {
            return false;
        }
        self.counts.failovers += 1;
        // The next broker's interval is unknown until its WELCOME: ours
        // stands in for it, as at the first connect.
        self.broker.peer_interval = self.heartbeat;
        let to = self.brokers.current();
        info!(
            broker = to,
            from = %from,
            reason = why.describe(),
            "moving to broker {to} after {}",
            why.describe()
        );
        true
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
        BrokerSession::new(
            t0,
            timing,
            vec!["tcp://b1:1".to_owned()],
            Greeting::hello(None),
        )
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
        let welcome = Message::Welcome {
            heartbeat_ms: 500,
            max_message_size: 0,
        };
        let (inbound, out) = feed(&mut s, t0 + ms(120), welcome);
        assert!(matches!(inbound, Inbound::Welcome { newly: true }));
        assert!(out.is_empty());
        let welcome = Message::Welcome {
            heartbeat_ms: 500,
            max_message_size: 0,
        };
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
    fn the_brokers_limit_is_learnt_from_its_welcome_and_forgotten_at_a_new_connection() {
        let t0 = Instant::now();
        let mut s = session(t0);
        connected(&mut s, t0);
        assert_eq!(s.broker_max_message_size(), None);
        let welcome = Message::Welcome {
            heartbeat_ms: 500,
            max_message_size: 4096,
        };
        feed(&mut s, t0, welcome);
        assert_eq!(s.broker_max_message_size(), Some(4096));
        // Whoever answers the next connection says its own (a broker older
        // than 1.7 says none).
        assert_eq!(s.broker_minor(), crate::protocol::PROTOCOL_MINOR);
        connected(&mut s, t0 + ms(10));
        assert_eq!(s.broker_max_message_size(), None);
        assert_eq!(s.broker_minor(), 0, "nor its version");
        let welcome = Message::Welcome {
            heartbeat_ms: 500,
            max_message_size: 0,
        };
        feed(&mut s, t0 + ms(20), welcome);
        assert_eq!(s.broker_max_message_size(), None);
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
        let mut s = BrokerSession::new(
            t0,
            timing,
            vec!["tcp://b1:1".to_owned()],
            Greeting::hello(None),
        );
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
        feed(
            &mut s,
            t0 + ms(30),
            Message::Welcome {
                heartbeat_ms: 100,
                max_message_size: 0,
            },
        );
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
        feed(
            &mut s,
            t0,
            Message::Welcome {
                heartbeat_ms: 100,
                max_message_size: 0,
            },
        );
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

    fn sessions_over(t0: Instant, brokers: &[&str]) -> BrokerSession {
        let timing = Timing {
            heartbeat: ms(100),
            liveness: 3,
            reconnect_min: ms(10),
            reconnect_max: ms(40),
        };
        let brokers = brokers.iter().map(|b| (*b).to_owned()).collect();
        BrokerSession::new(t0, timing, brokers, Greeting::hello(None))
    }

    #[test]
    fn every_way_of_losing_a_broker_moves_to_the_next_one_wrapping_round() {
        let t0 = Instant::now();
        let mut s = sessions_over(t0, &["b1", "b2", "b3"]);
        assert_eq!(
            (s.endpoint(), s.generation()),
            ("b1", 0),
            "the first starts"
        );
        // b1 never answers: given up at the liveness bound (3 × our own
        // 100 ms, as no WELCOME announced another), and b2 is next.
        connected(&mut s, t0);
        assert_eq!(tick(&mut s, t0 + ms(300)).0, None);
        assert_eq!(
            tick(&mut s, t0 + ms(301)),
            (Some(Lost::Silent), vec!["CLOSE".to_owned()])
        );
        assert_eq!((s.endpoint(), s.generation()), ("b2", 1));
        // The move waits the backoff like any reconnect.
        assert_eq!(tick(&mut s, t0 + ms(310)).1, Vec::<String>::new());
        assert_eq!(tick(&mut s, t0 + ms(311)).1, ["CONNECT"]);
        // b2 cannot even be connected to: b3.
        s.connect_failed(t0 + ms(311));
        assert_eq!((s.endpoint(), s.generation()), ("b3", 2));
        // b3 welcomes, then shuts down: back to b1.
        connected(&mut s, t0 + ms(340));
        feed(
            &mut s,
            t0 + ms(340),
            Message::Welcome {
                heartbeat_ms: 100,
                max_message_size: 0,
            },
        );
        let (inbound, out) = feed(&mut s, t0 + ms(350), Message::Shutdown);
        assert!(matches!(inbound, Inbound::Lost(Lost::Shutdown)));
        assert_eq!(out, ["CLOSE"]);
        assert_eq!((s.endpoint(), s.generation()), ("b1", 3));
        // b1 is back: welcomed, and silent later: b2 again.
        assert_eq!(tick(&mut s, t0 + ms(360)).1, ["CONNECT"]);
        connected(&mut s, t0 + ms(360));
        feed(
            &mut s,
            t0 + ms(360),
            Message::Welcome {
                heartbeat_ms: 100,
                max_message_size: 0,
            },
        );
        assert!(s.is_ready());
        assert_eq!(tick(&mut s, t0 + ms(661)).0, Some(Lost::Silent));
        assert_eq!(s.endpoint(), "b2");
        let counts = s.counts();
        assert_eq!(
            (counts.failovers, counts.deaths, counts.shutdowns),
            (4, 2, 1)
        );
    }

    #[test]
    fn a_single_broker_is_reconnected_to_as_before() {
        let t0 = Instant::now();
        let mut s = sessions_over(t0, &["b1"]);
        connected(&mut s, t0);
        feed(
            &mut s,
            t0,
            Message::Welcome {
                heartbeat_ms: 500,
                max_message_size: 0,
            },
        );
        feed(&mut s, t0 + ms(10), Message::Shutdown);
        s.connect_failed(t0 + ms(20));
        assert_eq!((s.endpoint(), s.generation()), ("b1", 0));
        assert_eq!(s.counts().failovers, 0);
        // Its interval is remembered across the reconnect (§7.2): dead
        // after 3 × 500 ms, not 3 × our 100.
        connected(&mut s, t0 + ms(100));
        assert_eq!(tick(&mut s, t0 + ms(1600)).0, None);
        assert_eq!(tick(&mut s, t0 + ms(1601)).0, Some(Lost::Silent));
    }

    #[test]
    fn the_next_broker_is_watched_with_our_interval_until_its_welcome() {
        let t0 = Instant::now();
        let mut s = sessions_over(t0, &["b1", "b2"]);
        connected(&mut s, t0);
        // b1 announced a slow interval, then shut down.
        feed(
            &mut s,
            t0,
            Message::Welcome {
                heartbeat_ms: 10_000,
                max_message_size: 0,
            },
        );
        feed(&mut s, t0 + ms(10), Message::Shutdown);
        assert_eq!(s.endpoint(), "b2");
        // b2 says nothing: given up after 3 × our own 100 ms, not 3 × 10 s.
        connected(&mut s, t0 + ms(20));
        assert_eq!(tick(&mut s, t0 + ms(321)).0, Some(Lost::Silent));
        assert_eq!(s.endpoint(), "b1");
    }

    #[test]
    fn a_stopped_session_does_not_move() {
        let t0 = Instant::now();
        let mut s = sessions_over(t0, &["b1", "b2"]);
        connected(&mut s, t0);
        let mut out: Vec<LinkAction> = Vec::new();
        s.stop(t0, &mut out);
        feed(&mut s, t0 + ms(10), Message::Shutdown);
        assert_eq!((s.endpoint(), s.counts().failovers), ("b1", 0));
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
