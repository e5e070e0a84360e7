//! What the unit tests of the connecting roles' state machines share: a
//! core driven by hand with a fake clock (`t0 + n ms`), fed broker messages
//! encoded by the real codec, its queued actions drained after each input;
//! and the checks of the broker session that every role runs the same way
//! (each role's test of a session behaviour calls them, then checks what is
//! its own).

use std::time::{Duration, Instant};

use crate::link::Connecting;
use crate::protocol::{
    Dispatch, ErrorReply, Execute, Executed, Flags, Forward, Frame, Message, Payload, PeerHello,
    Request, RequestId, RequestType, Response, Status, TypeServed,
};
use crate::session::{LinkAction, SessionCounts};

/// A role's own heartbeat interval in its tests (ms).
pub(crate) const HB: u64 = 100;
/// The broker's interval, announced in WELCOME (ms).
pub(crate) const BROKER_HB: u32 = 200;
/// Broker death after `LIVENESS × BROKER_HB` = 600 ms of silence.
pub(crate) const LIVENESS: u32 = 3;
/// Reconnects after 100, 200, 400, 400… ms.
pub(crate) const RECONNECT_MIN: u64 = 100;
pub(crate) const RECONNECT_MAX: u64 = 400;

/// Every status but `OK`: each ends a request as refused or failed.
pub(crate) const NOT_OK: [Status; 10] = [
    Status::Failed,
    Status::BadRequest,
    Status::Rejected,
    Status::WorkerDeath,
    Status::Redirected,
    Status::Overloaded,
    Status::NoWorkers,
    Status::UnknownReplyTo,
    Status::Expired,
    Status::Forbidden,
];

pub(crate) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub(crate) fn payload(frames: &[&[u8]]) -> Payload {
    frames.iter().map(|f| Frame::from(*f)).collect()
}

pub(crate) fn bytes(p: &Payload) -> Vec<Vec<u8>> {
    p.iter().map(|f| f.to_vec()).collect()
}

/// A RESPONSE to `route` (empty: to the client itself).
pub(crate) fn response(
    route: &[u8],
    request_type: RequestType,
    request_id: RequestId,
    status: Status,
    error: Option<&str>,
    frames: &[&[u8]],
) -> Message {
    Message::Response(Response {
        request_type,
        request_id,
        status,
        error: error.map(str::to_owned),
        route: route.to_vec(),
        payload: payload(frames),
    })
}

/// One valid message of each broker-to-broker kind (protocol 1.2): only a
/// broker's cluster endpoint takes them, so every other socket answers them
/// as unexpected (protocol.md §12). The ones about a request name 7/1.
pub(crate) fn cluster_messages() -> Vec<Message> {
    let request = Request {
        request_type: 7,
        request_id: 1,
        flags: Flags::empty(),
        route: vec![1, 0xAA],
        reply_to: None,
        deadline_ms: 0,
        payload: payload(&[b"x"]),
    };
    let dispatch = Dispatch {
        request_type: 7,
        request_id: 1,
        flags: Flags::empty(),
        attempt: 1,
        dispatch_tag: 9,
        deadline_ms: 0,
        payload: payload(&[b"x"]),
    };
    vec![
        Message::PeerHello(PeerHello {
            broker_id: 1,
            heartbeat_ms: 100,
            name: None,
        }),
        Message::PeerWelcome {
            broker_id: 2,
            heartbeat_ms: 100,
        },
        Message::Serves(vec![TypeServed {
            request_type: 7,
            capacity: 1,
            free: 1,
            pending: 0,
            name: None,
        }]),
        Message::Forward(Forward {
            request,
            hops: 1,
            reply_route: None,
        }),
        Message::Execute(Execute { dispatch, hops: 2 }),
        Message::Executed(Executed {
            response: Response {
                request_type: 7,
                request_id: 1,
                status: Status::Ok,
                error: None,
                route: Vec::new(),
                payload: Payload::new(),
            },
            attempt: 1,
            dispatch_tag: 9,
        }),
    ]
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

/// A role's action, as its tests name it.
pub(crate) trait ActionKind {
    /// A short name, to assert on sequences.
    fn kind(&self) -> String;
    /// The message it sends to the broker, if it is one.
    fn sent(&self) -> Option<&Message>;
}

impl ActionKind for LinkAction {
    fn kind(&self) -> String {
        link_kind(self)
    }

    fn sent(&self) -> Option<&Message> {
        match self {
            LinkAction::Send(m) => Some(m),
            _ => None,
        }
    }
}

/// One short name per action, to assert on sequences.
pub(crate) fn kinds<A: ActionKind>(actions: &[A]) -> Vec<String> {
    actions.iter().map(ActionKind::kind).collect()
}

pub(crate) fn has<A: ActionKind>(actions: &[A], kind: &str) -> bool {
    actions.iter().any(|a| a.kind() == kind)
}

/// The messages among `actions` sent to the broker, in order.
pub(crate) fn sent<A: ActionKind>(actions: &[A]) -> impl Iterator<Item = &Message> {
    actions.iter().filter_map(ActionKind::sent)
}

/// The one ERROR that `actions` is, sent to the broker.
pub(crate) fn only_error<A: ActionKind>(actions: &[A]) -> &ErrorReply {
    match actions {
        [a] => match a.sent() {
            Some(Message::Error(e)) => e,
            _ => panic!("expected ERROR, got {:?}", kinds(actions)),
        },
        _ => panic!("expected one ERROR, got {:?}", kinds(actions)),
    }
}

/// What the shared session checks need of a role's core beyond
/// [`Connecting`].
pub(crate) trait SessionRole: Connecting<Action: ActionKind> {
    /// The kind of the greeting it sends on connecting (`HELLO`, `READY`).
    const GREETING: &'static str;
    fn tick_at(&mut self, now: Instant);
    fn next_tick_at(&self, now: Instant) -> Instant;
    fn stop_at(&mut self, now: Instant);
    /// WELCOMEd, as the role's stats say (connected, registered).
    fn is_up(&self) -> bool;
}

/// Implements [`SessionRole`] for a role's core, whose `on_tick`,
/// `next_tick`, `on_stop` and `stats` are named alike in every role:
/// `$greeting` is the kind of its greeting, `$up` the field of its stats
/// that says it is WELCOMEd.
macro_rules! session_role {
    ($core:ty, $greeting:literal, $up:ident) => {
        impl $crate::testing::SessionRole for $core {
            const GREETING: &'static str = $greeting;

            fn tick_at(&mut self, now: ::std::time::Instant) {
                self.on_tick(now);
            }

            fn next_tick_at(&self, now: ::std::time::Instant) -> ::std::time::Instant {
                self.next_tick(now)
            }

            fn stop_at(&mut self, now: ::std::time::Instant) {
                self.on_stop(now);
            }

            fn is_up(&self) -> bool {
                self.stats().$up
            }
        }
    };
}
pub(crate) use session_role;

/// A core, its fake clock, and what else a role's tests keep (`extra`);
/// each role's tests add their own methods to their instance.
#[derive(Debug)]
pub(crate) struct Driven<C, X = ()> {
    pub(crate) core: C,
    pub(crate) t0: Instant,
    pub(crate) extra: X,
}

impl<C: SessionRole, X> Driven<C, X> {
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

    /// The driver connected the socket at `n`: the greeting it sends is
    /// checked and drained.
    pub(crate) fn connected(&mut self, n: u64) {
        assert_eq!(kinds(&self.connect_at(n)), [C::GREETING]);
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

    /// The broker's WELCOME (interval `BROKER_HB`) at `n` ms.
    pub(crate) fn welcome(&mut self, n: u64) -> Vec<C::Action> {
        self.feed(
            n,
            Message::Welcome {
                heartbeat_ms: BROKER_HB,
                max_message_size: 0,
            },
        )
    }

    pub(crate) fn tick(&mut self, n: u64) -> Vec<C::Action> {
        let now = self.at(n);
        self.core.tick_at(now);
        self.drain()
    }

    pub(crate) fn next_tick(&self, n: u64) -> Instant {
        self.core.next_tick_at(self.at(n))
    }

    /// The role stops at `n`: what it says on the way out.
    pub(crate) fn stop(&mut self, n: u64) -> Vec<C::Action> {
        let now = self.at(n);
        self.core.stop_at(now);
        self.drain()
    }

    pub(crate) fn is_up(&self) -> bool {
        self.core.is_up()
    }

    /// The session's counts, which the role reports in its stats.
    pub(crate) fn counts(&mut self) -> SessionCounts {
        self.core.parts().0.counts()
    }

    /// A fresh core asks to connect at once, and is not up yet.
    pub(crate) fn expect_connect_first(&mut self) {
        assert_eq!(kinds(&self.drain()), ["CONNECT"]);
        assert!(!self.is_up());
    }

    /// A fresh core connects at 0 and greets; no WELCOME yet.
    pub(crate) fn greeting(mut self) -> Self {
        self.expect_connect_first();
        self.connected(0);
        self
    }

    /// A fresh core connects at 0 and is WELCOMEd at 0, with every action
    /// drained.
    pub(crate) fn welcomed(self) -> Self {
        let mut h = self.greeting();
        assert!(h.welcome(0).is_empty());
        assert!(h.is_up());
        h
    }

    // ------------------------------------------------------------ session checks

    /// A fresh core: a WELCOME before the socket is connected is ignored.
    pub(crate) fn check_welcome_before_connecting_is_ignored(&mut self) {
        self.drain();
        assert!(self.welcome(0).is_empty());
        assert!(!self.is_up());
    }

    /// A fresh core connects at 0: the greeting is repeated every own
    /// interval (it is not a heartbeat) until the WELCOME at `welcome_at`;
    /// then silence is filled with HEARTBEATs announcing the own interval.
    pub(crate) fn check_greeting_repeats_until_welcome(&mut self, welcome_at: u64) {
        self.expect_connect_first();
        self.connected(0);
        for (quiet, greeting) in [(50, 100), (150, 200)] {
            assert!(self.tick(quiet).is_empty());
            assert!(self.tick(greeting - 1).is_empty());
            assert_eq!(kinds(&self.tick(greeting)), [C::GREETING]);
        }
        let greeting_is_no_heartbeat = self.counts().heartbeats_sent;
        assert_eq!(
            greeting_is_no_heartbeat,
            0,
            "{} is not a heartbeat",
            C::GREETING
        );
        self.welcome(welcome_at);
        assert!(self.is_up());
        assert!(self.tick(299).is_empty());
        let actions = self.tick(300);
        assert!(
            matches!(
                actions.as_slice(),
                [a] if matches!(a.sent(), Some(Message::Heartbeat { heartbeat_ms }) if u64::from(*heartbeat_ms) == HB)
            ),
            "expected one HEARTBEAT announcing the own interval, got {:?}",
            kinds(&actions)
        );
        assert_eq!(self.counts().heartbeats_sent, 1);
    }

    /// Hearing from the broker at `heard_at` does not count as sending to
    /// it: the HEARTBEAT stays due at `due_at`. Two were sent, one heard.
    pub(crate) fn check_hearing_from_the_broker_does_not_delay_the_heartbeat(
        &mut self,
        heard_at: u64,
        due_at: u64,
    ) {
        let heartbeat = Message::Heartbeat { heartbeat_ms: 0 };
        assert!(self.feed(heard_at, heartbeat).is_empty());
        assert!(self.tick(due_at - 1).is_empty());
        assert_eq!(kinds(&self.tick(due_at)), ["HEARTBEAT"]);
        let counts = self.counts();
        assert_eq!(counts.heartbeats_sent, 2);
        assert_eq!(counts.heartbeats_received, 1);
    }

    /// A WELCOMEd core last hears the broker at 100: 600 ms (3 × 200) of
    /// silence is still alive (`while_alive` checks the rest at 700); 601
    /// is dead.
    pub(crate) fn check_silent_broker_dies_at_701(&mut self, while_alive: impl FnOnce(&mut Self)) {
        self.feed(100, Message::Heartbeat { heartbeat_ms: 0 });
        assert!(!has(&self.tick(700), "CLOSE"));
        while_alive(self);
        assert_eq!(kinds(&self.tick(701)), ["CLOSE"]);
        assert_eq!(self.counts().deaths, 1);
        assert!(!self.is_up());
    }

    /// Closed at `closed_at`: reconnects after `RECONNECT_MIN`, not before,
    /// and is WELCOMEd again 9 ms later.
    pub(crate) fn check_reconnects_after_the_minimum_backoff(&mut self, closed_at: u64) {
        let due = closed_at + RECONNECT_MIN;
        assert_eq!(self.next_tick(closed_at), self.at(due));
        assert!(self.tick(due - 1).is_empty());
        assert_eq!(kinds(&self.tick(due)), ["CONNECT"]);
        let reconnects = self.counts().reconnects;
        assert_eq!(reconnects, 1);
        self.connected(due);
        self.welcome(due + 9);
        assert!(self.is_up());
    }

    /// Bytes that are no header at all, at `n`: answered with an ERROR
    /// about no request, naming the decoder that refused them.
    pub(crate) fn check_garbage_is_answered_with_an_error(&mut self, n: u64) {
        let actions = self.feed_raw(n, b"\xff\xff\xff", Payload::new());
        let e = only_error(&actions);
        assert_eq!(e.request, None);
        assert!(e.error.contains("protobuf"), "{:?}", e.error);
    }

    /// Each broker-to-broker kind from the broker, at `n`: a kind no
    /// connecting role takes, answered with an ERROR without request fields
    /// and counted malformed (protocol.md §12, §18).
    pub(crate) fn check_cluster_kinds_are_unexpected(&mut self, n: u64) {
        let before = self.counts().malformed;
        let messages = cluster_messages();
        let count = messages.len() as u64;
        for msg in messages {
            let name = msg.kind_name();
            let actions = self.feed(n, msg);
            let e = only_error(&actions);
            assert_eq!(e.error, format!("unexpected {name} from the broker"));
            assert_eq!(e.request, None, "{name}");
        }
        assert_eq!(self.counts().malformed, before + count);
    }

    /// A WELCOMEd core: the broker now announces 500 ms, so it is dead
    /// after 1500 ms of silence, not 600.
    pub(crate) fn check_broker_interval_change_moves_the_death_deadline(&mut self) {
        self.feed(100, Message::Heartbeat { heartbeat_ms: 500 });
        assert!(!has(&self.tick(1600), "CLOSE"));
        assert_eq!(kinds(&self.tick(1601)), ["CLOSE"]);
    }

    /// A WELCOMEd core loses the broker at 601 and fails to connect again
    /// three times: the delays are 100, 200, 400 and 400 ms (the cap); it
    /// connects at 1701 and is WELCOMEd at 1710.
    pub(crate) fn check_backoff_doubles_up_to_the_cap(&mut self) {
        assert_eq!(kinds(&self.tick(601)), ["CLOSE"]);
        let mut closed = 601;
        for delay in [100, 200, 400] {
            assert!(self.tick(closed + delay - 1).is_empty());
            assert_eq!(kinds(&self.tick(closed + delay)), ["CONNECT"]);
            closed += delay;
            self.connect_failed(closed);
        }
        assert_eq!(self.next_tick(1301), self.at(1701), "capped at 400 ms");
        assert!(self.tick(1700).is_empty());
        assert_eq!(kinds(&self.tick(1701)), ["CONNECT"]);
        self.connected(1701);
        self.welcome(1710);
    }

    /// Stopped at `stopped_at` while disconnected since `closed_at`:
    /// nothing is said, and the reconnect due then never comes.
    pub(crate) fn check_stop_while_disconnected_never_reconnects(
        &mut self,
        closed_at: u64,
        stopped_at: u64,
    ) {
        assert!(self.stop(stopped_at).is_empty());
        assert!(self.tick(closed_at + RECONNECT_MIN).is_empty());
        assert!(self.tick(10_000).is_empty());
        assert_eq!(self.counts().reconnects, 0);
    }
}
