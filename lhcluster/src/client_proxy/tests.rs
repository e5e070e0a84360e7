//! Unit tests of the client proxy state machine (fake clock, no sockets).
//!
//! Every test drives a [`ProxyCore`] by hand: client and broker messages are
//! encoded with the real codec and fed as header bytes + payload frames,
//! time is `t0 + n ms`, and the queued [`Action`]s are drained and matched.
//! The last section is a seeded randomized run against a small broker model.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use super::config::ClientProxyConfig;
use super::core::{Action, ProxyCore};
use super::stats::ClientProxyStats;
use crate::protocol::{
    ErrorReply, Flags, Hello, Message, Payload, Request, RequestId, RequestRef, RequestType,
    Response, Status,
};
use crate::session::LinkAction;
use crate::testing::{
    ActionKind, BROKER_HB, Driven, HB, LIVENESS, NOT_OK, RECONNECT_MAX, RECONNECT_MIN, bytes,
    cluster_messages, encode, has, kinds, link_kind, ms, payload, response, sent, session_role,
};

/// The clients' interval, announced in HELLO (ms): 3 s of silence at most.
const CLIENT_HB: u32 = 1000;
/// Re-sends at +100, then +200, then every +400 ms.
const RESEND_INITIAL: u64 = 100;
const RESEND_MAX: u64 = 400;

/// Client routing ids at the proxy.
const A: &[u8] = b"a";
const B: &[u8] = b"b";
const C: &[u8] = b"c";

fn config() -> ClientProxyConfig {
    let mut c = ClientProxyConfig::new("tcp://127.0.0.1:5550", "tcp://127.0.0.1:5555");
    c.heartbeat = ms(HB);
    c.liveness = LIVENESS;
    c.resend_initial = ms(RESEND_INITIAL);
    c.resend_max = ms(RESEND_MAX);
    c.reconnect_min = ms(RECONNECT_MIN);
    c.reconnect_max = ms(RECONNECT_MAX);
    c
}

fn label(peer: &[u8]) -> String {
    String::from_utf8_lossy(peer).into_owned()
}

impl ActionKind for Action {
    /// `a>WELCOME` is a message to client `a`, `B>REQUEST` one to the
    /// broker.
    fn kind(&self) -> String {
        match self {
            Action::ToClient(p, m) => format!("{}>{}", label(p), m.kind_name()),
            Action::Link(LinkAction::Send(m)) => format!("B>{}", m.kind_name()),
            Action::Link(a) => link_kind(a),
        }
    }

    fn sent(&self) -> Option<&Message> {
        match self {
            Action::Link(a) => a.sent(),
            Action::ToClient(..) => None,
        }
    }
}

fn sorted_kinds(actions: &[Action]) -> Vec<String> {
    let mut k = kinds(actions);
    k.sort();
    k
}

/// The kinds of an action list without the heartbeats.
fn no_heartbeats(actions: &[Action]) -> Vec<String> {
    kinds(actions)
        .into_iter()
        .filter(|k| !k.ends_with(">HEARTBEAT"))
        .collect()
}

fn requests(actions: &[Action]) -> Vec<&Request> {
    sent(actions)
        .filter_map(|m| match m {
            Message::Request(r) => Some(r),
            _ => None,
        })
        .collect()
}

fn only_request(actions: &[Action]) -> &Request {
    match actions {
        [Action::Link(LinkAction::Send(Message::Request(r)))] => r,
        other => panic!("expected one REQUEST to the broker, got {:?}", kinds(other)),
    }
}

fn only_to_broker(actions: &[Action]) -> &Message {
    match actions {
        [Action::Link(LinkAction::Send(m))] => m,
        other => panic!("expected one message to the broker, got {:?}", kinds(other)),
    }
}

fn only_for<'a>(actions: &'a [Action], peer: &[u8]) -> &'a Message {
    match actions {
        [Action::ToClient(p, m)] if p.as_slice() == peer => m,
        other => panic!(
            "expected one message for {}, got {:?}",
            label(peer),
            kinds(other)
        ),
    }
}

fn only_response<'a>(actions: &'a [Action], peer: &[u8]) -> &'a Response {
    match only_for(actions, peer) {
        Message::Response(r) => r,
        other => panic!("expected a RESPONSE, got {}", other.kind_name()),
    }
}

fn request_msg(
    key: (RequestType, RequestId),
    flags: Flags,
    reply_to: Option<&str>,
    frames: &[&[u8]],
) -> Message {
    Message::Request(Request {
        request_type: key.0,
        request_id: key.1,
        flags,
        route: Vec::new(),
        reply_to: reply_to.map(str::to_owned),
        deadline_ms: 0,
        payload: payload(frames),
    })
}

fn rref(route: &[u8], request_type: RequestType, request_id: RequestId) -> RequestRef {
    RequestRef {
        request_type,
        request_id,
        route: route.to_vec(),
    }
}

fn welcome() -> Message {
    Message::Welcome {
        heartbeat_ms: BROKER_HB,
        max_message_size: 0,
    }
}

fn heartbeat() -> Message {
    Message::Heartbeat { heartbeat_ms: 0 }
}

fn hello(name: Option<&str>, heartbeat_ms: u32) -> Message {
    Message::Hello(Hello {
        heartbeat_ms,
        name: name.map(str::to_owned),
        route: Vec::new(),
    })
}

/// The header of `msg` with another protocol major version.
fn with_major(msg: Message, major: u8) -> Vec<u8> {
    let (mut header, _) = encode(msg);
    assert_eq!(&header[..2], &[0x08, 0x01]);
    header[1] = major;
    header
}

session_role!(ProxyCore, "B>HELLO", connected);

/// A proxy core driven by hand, and its configured heartbeat interval (ms);
/// [`Driven::feed`] is input from the broker.
type Harness = Driven<ProxyCore, u64>;

impl Harness {
    /// A fresh proxy, nothing drained yet.
    fn with(config: &ClientProxyConfig) -> Self {
        let t0 = Instant::now();
        let hb = config.heartbeat.as_millis() as u64;
        Self::start(ProxyCore::new(config, t0), t0, hb)
    }

    fn new() -> Self {
        Self::with(&config())
    }

    /// Connected at 0 and WELCOMEd (broker interval `BROKER_HB`) at 0, with
    /// every action drained.
    fn ready_with(config: &ClientProxyConfig) -> Self {
        let mut h = Self::with(config);
        assert_eq!(kinds(&h.drain()), ["CONNECT"]);
        h.greeted_broker(0);
        assert!(h.welcome(0).is_empty());
        assert!(h.stats().connected);
        h
    }

    fn ready() -> Self {
        Self::ready_with(&config())
    }

    /// Client `a` greeted at 0.
    fn with_a(mut self) -> Self {
        self.greet(0, A, None);
        self
    }

    fn stats(&self) -> ClientProxyStats {
        self.core.stats()
    }

    /// The driver connected the broker socket at `n`: the proxy's own HELLO
    /// is checked and drained.
    fn greeted_broker(&mut self, n: u64) {
        let actions = self.connect_at(n);
        match actions.as_slice() {
            [Action::Link(LinkAction::Send(Message::Hello(hello)))] => {
                assert!(hello.route.is_empty(), "the proxy's own HELLO has no route");
                assert_eq!(hello.name, None);
                assert_eq!(u64::from(hello.heartbeat_ms), self.extra);
            }
            other => panic!("expected the proxy's HELLO, got {:?}", kinds(other)),
        }
    }

    fn client_raw(&mut self, n: u64, peer: &[u8], header: &[u8], payload: Payload) -> Vec<Action> {
        let now = self.at(n);
        self.core.on_client(now, peer, header, payload);
        self.drain()
    }

    /// Feeds a message from client `peer` (encoded by the real codec).
    fn client(&mut self, n: u64, peer: &[u8], msg: Message) -> Vec<Action> {
        let (header, payload) = encode(msg);
        self.client_raw(n, peer, &header, payload)
    }

    /// Client `peer` greets the proxy (interval `CLIENT_HB`); the WELCOME it
    /// gets is checked, and the actions returned.
    fn greet(&mut self, n: u64, peer: &[u8], name: Option<&str>) -> Vec<Action> {
        let actions = self.client(n, peer, hello(name, CLIENT_HB));
        match actions.first() {
            Some(Action::ToClient(p, Message::Welcome { heartbeat_ms, .. }))
                if p.as_slice() == peer =>
            {
                assert_eq!(u64::from(*heartbeat_ms), self.extra);
            }
            _ => panic!("expected a WELCOME first, got {:?}", kinds(&actions)),
        }
        actions
    }

    /// Client `peer` sends a request without reply-to.
    fn send(
        &mut self,
        n: u64,
        peer: &[u8],
        key: (RequestType, RequestId),
        flags: Flags,
        frames: &[&[u8]],
    ) -> Vec<Action> {
        self.client(n, peer, request_msg(key, flags, None, frames))
    }

    /// A broker HEARTBEAT at `n` (keeps the session alive), then a tick.
    fn tick_alive(&mut self, n: u64) -> Vec<Action> {
        assert!(self.feed(n, heartbeat()).is_empty());
        self.tick(n)
    }

    /// Ticks every millisecond of `from..=to` (the broker kept alive) and
    /// returns the times at which requests went to the broker.
    fn resend_times(&mut self, from: u64, to: u64) -> Vec<u64> {
        let mut times = Vec::new();
        for n in from..=to {
            let actions = self.tick_alive(n);
            for _ in requests(&actions) {
                times.push(n);
            }
        }
        times
    }
}

fn assert_forwarded(
    r: &Request,
    peer: &[u8],
    key: (RequestType, RequestId),
    flags: Flags,
    frames: &[&[u8]],
) {
    assert_eq!(r.route, peer, "route = the client's id at the proxy");
    assert_eq!((r.request_type, r.request_id), key);
    assert_eq!(r.flags, flags);
    assert_eq!(r.reply_to, None);
    let expected: Vec<Vec<u8>> = frames.iter().map(|f| f.to_vec()).collect();
    assert_eq!(bytes(&r.payload), expected);
}

// ---------------------------------------------------------------- broker session

#[test]
fn start_connects_greets_the_broker_and_is_connected_on_welcome() {
    let mut h = Harness::new();
    h.expect_connect_first();
    h.greeted_broker(0);
    assert!(!h.stats().connected, "not before WELCOME");
    assert!(h.welcome(10).is_empty());
    let s = h.stats();
    assert!(s.connected);
    assert_eq!((s.broker_losses, s.buffered, s.clients), (0, 0, 0));
}

#[test]
fn hello_is_repeated_while_greeting_then_heartbeats_once_connected() {
    let mut h = Harness::new();
    h.drain();
    h.greeted_broker(0);
    assert!(h.tick(99).is_empty());
    assert_eq!(kinds(&h.tick(100)), ["B>HELLO"]);
    assert!(h.welcome(150).is_empty());
    assert!(h.tick(199).is_empty());
    let actions = h.tick(200);
    assert!(matches!(
        only_to_broker(&actions),
        Message::Heartbeat { heartbeat_ms } if u64::from(*heartbeat_ms) == HB
    ));
    // Only when it has sent nothing else for its own interval.
    h.greet(210, A, None);
    let actions = h.send(250, A, (1, 1), Flags::ONE_WAY, &[]);
    assert_eq!(only_request(&actions).route, A);
    assert!(!has(&h.tick_alive(349), "B>HEARTBEAT"));
    assert!(has(&h.tick_alive(350), "B>HEARTBEAT"));
}

#[test]
fn a_failed_connect_is_retried_with_doubling_backoff() {
    let mut h = Harness::new();
    assert_eq!(kinds(&h.drain()), ["CONNECT"]);
    h.connect_failed(0);
    assert!(h.tick(99).is_empty());
    assert_eq!(kinds(&h.tick(100)), ["CONNECT"]);
    h.connect_failed(100);
    assert!(h.tick(299).is_empty());
    assert_eq!(kinds(&h.tick(300)), ["CONNECT"]);
    h.greeted_broker(300);
    assert!(h.welcome(300).is_empty());
    assert!(h.stats().connected);
}

#[test]
fn next_tick_is_the_nearest_of_heartbeat_reconnect_and_resend() {
    let mut c = config();
    c.heartbeat = ms(1000);
    c.resend_initial = ms(300);
    let mut h = Harness::ready_with(&c);
    assert!(
        h.feed(
            0,
            Message::Welcome {
                heartbeat_ms: 2000,
                max_message_size: 0
            }
        )
        .is_empty()
    );
    // Half the shorter of the two intervals.
    assert_eq!(h.next_tick(0), h.at(500));
    h.greet(0, A, None);
    h.send(0, A, (1, 1), Flags::empty(), &[]);
    assert_eq!(h.next_tick(0), h.at(300), "the re-send timer");
    assert_eq!(kinds(&h.feed(10, Message::Shutdown)), ["CLOSE"]);
    assert_eq!(h.next_tick(10), h.at(110), "the reconnect");
}

#[test]
fn broker_shutdown_closes_reconnects_after_backoff_and_keeps_the_buffer() {
    let mut h = Harness::ready().with_a();
    h.send(0, A, (1, 1), Flags::empty(), &[b"x"]);
    assert_eq!(kinds(&h.feed(10, Message::Shutdown)), ["CLOSE"]);
    let s = h.stats();
    assert!(!s.connected);
    assert_eq!((s.broker_losses, s.buffered, s.buffered_bytes), (1, 1, 1));
    // Reconnect after reconnect_min, not before.
    assert!(!has(&h.tick(109), "CONNECT"));
    assert_eq!(no_heartbeats(&h.tick(110)), ["CONNECT"]);
    // Lost again before WELCOME: the delay doubles.
    h.greeted_broker(110);
    assert_eq!(kinds(&h.feed(120, Message::Shutdown)), ["CLOSE"]);
    assert!(!has(&h.tick(319), "CONNECT"));
    assert_eq!(no_heartbeats(&h.tick(320)), ["CONNECT"]);
    h.greeted_broker(320);
    assert_eq!(kinds(&h.welcome(330)), ["B>REQUEST"]);
    // A WELCOME resets the backoff.
    assert_eq!(kinds(&h.feed(340, Message::Shutdown)), ["CLOSE"]);
    assert!(!has(&h.tick(439), "CONNECT"));
    assert_eq!(no_heartbeats(&h.tick(440)), ["CONNECT"]);
    assert_eq!(h.stats().broker_losses, 3);
    assert_eq!(h.stats().buffered, 1);
}

#[test]
fn broker_silence_beyond_liveness_closes_and_reconnects_keeping_the_buffer() {
    let mut h = Harness::ready().with_a();
    h.send(0, A, (1, 1), Flags::empty(), &[b"x"]);
    // 3 × 200 ms without a word from the broker.
    for n in (50..=600).step_by(50) {
        let actions = h.tick(n);
        assert!(!has(&actions, "CLOSE"), "at {n}: {:?}", kinds(&actions));
    }
    assert_eq!(no_heartbeats(&h.tick(601)), ["CLOSE"]);
    let s = h.stats();
    assert!(!s.connected);
    assert_eq!((s.broker_losses, s.buffered), (1, 1));
    assert_eq!(no_heartbeats(&h.tick(701)), ["CONNECT"]);
    h.greeted_broker(701);
    let actions = h.welcome(710);
    assert_forwarded(only_request(&actions), A, (1, 1), Flags::empty(), &[b"x"]);
}

#[test]
fn broker_messages_while_disconnected_are_ignored() {
    let mut h = Harness::ready().with_a();
    h.send(0, A, (1, 1), Flags::empty(), &[]);
    assert_eq!(kinds(&h.feed(10, Message::Shutdown)), ["CLOSE"]);
    // Late frames from the old socket change nothing.
    assert!(
        h.feed(20, response(A, 1, 1, Status::Ok, None, &[]))
            .is_empty()
    );
    assert!(h.welcome(20).is_empty());
    let s = h.stats();
    assert_eq!((s.buffered, s.responses_forwarded), (1, 0));
    assert!(!s.connected);
}

// ---------------------------------------------------------------- client greeting

#[test]
fn client_hello_is_welcomed_with_the_proxy_interval() {
    let mut h = Harness::ready();
    let actions = h.greet(0, A, None);
    assert_eq!(
        kinds(&actions),
        ["a>WELCOME"],
        "an unnamed client stays local"
    );
    assert_eq!(h.stats().clients, 1);
    // A second HELLO is welcomed again, still one client.
    assert_eq!(kinds(&h.greet(10, A, None)), ["a>WELCOME"]);
    assert_eq!(h.stats().clients, 1);
}

#[test]
fn clients_are_told_the_smaller_limit_and_a_request_over_the_brokers_is_answered() {
    let mut config = config();
    config.max_message_size = 4096;
    let mut h = Harness::with(&config);
    h.drain();
    h.greeted_broker(0);
    // Taken while the broker's limit is unknown: buffered.
    h.greet(0, B, None);
    let early = vec![0u8; 900];
    let actions = h.client(0, B, request_msg((7, 9), Flags::empty(), None, &[&early]));
    assert!(actions.is_empty(), "{:?}", kinds(&actions));
    // The broker accepts 1 000 bytes; the route the proxy adds takes 258.
    // The buffered request is over it: answered, not sent.
    let welcome = Message::Welcome {
        heartbeat_ms: BROKER_HB,
        max_message_size: 1000,
    };
    let actions = h.feed(0, welcome);
    match only_for(&actions, B) {
        Message::Error(ErrorReply {
            request: Some(r), ..
        }) => assert_eq!((r.request_type, r.request_id), (7, 9)),
        other => panic!("expected an ERROR, got {}", other.kind_name()),
    }
    assert!(requests(&actions).is_empty());
    assert_eq!(h.stats().oversized, 1);
    let actions = h.greet(1, A, None);
    match actions.first() {
        Some(Action::ToClient(
            _,
            Message::Welcome {
                max_message_size, ..
            },
        )) => assert_eq!(*max_message_size, 1000 - 258),
        _ => panic!("a WELCOME first"),
    }
    // Within the proxy's own 4 096 bytes, over what the broker takes.
    let big = vec![0u8; 900];
    let actions = h.client(2, A, request_msg((7, 1), Flags::empty(), None, &[&big]));
    match only_for(&actions, A) {
        Message::Error(ErrorReply {
            error,
            request: Some(r),
            ..
        }) => {
            assert_eq!((r.request_type, r.request_id), (7, 1));
            assert!(error.contains("max_message_size of 742"), "{error}");
        }
        other => panic!("expected an ERROR, got {}", other.kind_name()),
    }
    assert_eq!(h.stats().oversized, 2);
    assert_eq!(h.stats().requests_forwarded, 0);
    // A request within it is forwarded as usual.
    let actions = h.client(3, A, request_msg((7, 2), Flags::empty(), None, &[b"ok"]));
    assert_eq!(only_request(&actions).request_id, 2);
}

#[test]
fn a_named_client_is_announced_with_its_route_and_again_after_a_new_session() {
    let mut h = Harness::ready();
    let actions = h.greet(0, A, Some("alice"));
    assert_eq!(kinds(&actions), ["a>WELCOME", "B>HELLO"]);
    let Action::Link(LinkAction::Send(Message::Hello(hello))) = &actions[1] else {
        unreachable!()
    };
    assert_eq!(hello.name.as_deref(), Some("alice"));
    assert_eq!(hello.route, A);
    assert_ne!(hello.heartbeat_ms, 0, "the codec requires an interval");
    // A new broker session: the proxy's own HELLO, then alice's again.
    assert_eq!(kinds(&h.feed(10, Message::Shutdown)), ["CLOSE"]);
    assert!(has(&h.tick(110), "CONNECT"));
    h.greeted_broker(110);
    let actions = h.welcome(120);
    match only_to_broker(&actions) {
        Message::Hello(hello) => {
            assert_eq!(hello.name.as_deref(), Some("alice"));
            assert_eq!(hello.route, A);
        }
        other => panic!("expected a routed HELLO, got {}", other.kind_name()),
    }
}

#[test]
fn a_named_client_greeting_while_disconnected_is_announced_at_welcome() {
    let mut h = Harness::new();
    h.drain();
    assert_eq!(kinds(&h.greet(0, A, Some("alice"))), ["a>WELCOME"]);
    h.greeted_broker(10);
    // Greeting is not a session yet.
    assert_eq!(kinds(&h.greet(20, B, Some("bob"))), ["b>WELCOME"]);
    let actions = h.welcome(30);
    let mut names: Vec<(String, Vec<u8>)> = actions
        .iter()
        .map(|a| match a {
            Action::Link(LinkAction::Send(Message::Hello(h))) => {
                (h.name.clone().unwrap(), h.route.clone())
            }
            _ => panic!("expected routed HELLOs, got {:?}", kinds(&actions)),
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            ("alice".to_owned(), A.to_vec()),
            ("bob".to_owned(), B.to_vec())
        ]
    );
}

#[test]
fn a_request_from_an_unknown_client_is_served_and_answered_reregister() {
    let mut h = Harness::ready();
    let actions = h.send(0, A, (1, 7), Flags::empty(), &[b"x"]);
    assert_eq!(kinds(&actions), ["a>REREGISTER", "B>REQUEST"]);
    let s = h.stats();
    assert_eq!((s.clients, s.buffered), (1, 1));
    // Its HEARTBEAT too.
    assert_eq!(kinds(&h.client(10, B, heartbeat())), ["b>REREGISTER"]);
}

// ---------------------------------------------------------------- requests

#[test]
fn a_two_way_request_is_forwarded_with_the_client_route_and_buffered() {
    let mut h = Harness::ready().with_a();
    let actions = h.send(5, A, (1, 7), Flags::empty(), &[b"x", b"", b"yz"]);
    assert_forwarded(
        only_request(&actions),
        A,
        (1, 7),
        Flags::empty(),
        &[b"x", b"", b"yz"],
    );
    let s = h.stats();
    assert_eq!(
        (
            s.requests_received,
            s.requests_forwarded,
            s.buffered,
            s.buffered_bytes
        ),
        (1, 1, 1, 3)
    );
}

#[test]
fn receipt_flagged_requests_are_buffered_and_fire_and_forget_is_not() {
    let mut h = Harness::ready().with_a();
    let cases = [
        (Flags::RECEIPT_ON_SEND, true),
        (Flags::RECEIPT_ON_RECEIVE | Flags::NOTIFY_ON_DEATH, true),
        (Flags::ONE_WAY | Flags::RECEIPT_ON_SEND, true),
        (Flags::ONE_WAY | Flags::RECEIPT_ON_RECEIVE, true),
        (Flags::ONE_WAY, false),
        (
            Flags::ONE_WAY | Flags::NOTIFY_ON_DEATH | Flags::RETRY_ON_DEATH,
            false,
        ),
    ];
    for (id, (flags, kept)) in cases.into_iter().enumerate() {
        let id = id as u64;
        let before = h.stats().buffered;
        let actions = h.send(1, A, (1, id), flags, &[b"12"]);
        assert_forwarded(only_request(&actions), A, (1, id), flags, &[b"12"]);
        assert_eq!(h.stats().buffered, before + u64::from(kept), "{flags:?}");
    }
    let s = h.stats();
    assert_eq!((s.buffered, s.buffered_bytes), (4, 8));
    assert_eq!(s.requests_forwarded, 6);
    // Fire-and-forget requests are never re-sent.
    let mut resent = Vec::new();
    for n in 2..=101 {
        for r in requests(&h.tick_alive(n)) {
            resent.push(r.request_id);
        }
    }
    resent.sort_unstable();
    assert_eq!(resent, [0, 1, 2, 3]);
}

#[test]
fn reply_to_is_forwarded_unchanged() {
    let mut h = Harness::ready().with_a();
    let msg = request_msg((1, 7), Flags::RECEIPT_ON_SEND, Some("bob"), &[b"x"]);
    let actions = h.client(1, A, msg);
    let r = only_request(&actions);
    assert_eq!(r.reply_to.as_deref(), Some("bob"));
    assert_eq!(r.route, A);
}

#[test]
fn a_client_resending_a_buffered_request_gets_a_resend_not_a_second_entry() {
    let mut h = Harness::ready().with_a();
    h.send(0, A, (1, 7), Flags::empty(), &[b"xyz"]);
    let actions = h.send(50, A, (1, 7), Flags::empty(), &[b"xyz"]);
    assert_forwarded(only_request(&actions), A, (1, 7), Flags::empty(), &[b"xyz"]);
    let s = h.stats();
    assert_eq!(
        (s.requests_received, s.requests_forwarded, s.requests_resent),
        (2, 1, 1)
    );
    assert_eq!((s.buffered, s.buffered_bytes), (1, 3));
    // The same (type, id) from another client is another entry.
    h.greet(60, B, None);
    assert_eq!(
        requests(&h.send(60, B, (1, 7), Flags::empty(), &[b"q"])).len(),
        1
    );
    assert_eq!((h.stats().buffered, h.stats().buffered_bytes), (2, 4));
}

// ---------------------------------------------------------------- responses

#[test]
fn a_response_goes_to_its_client_with_the_route_cleared_and_ends_the_entry() {
    let mut h = Harness::ready().with_a();
    h.greet(0, B, None);
    h.send(0, A, (1, 1), Flags::empty(), &[b"aa"]);
    h.send(0, B, (1, 2), Flags::empty(), &[b"bbb"]);
    // Same (type, id) from both clients: the route tells them apart.
    h.send(0, B, (1, 1), Flags::empty(), &[b"b"]);
    assert_eq!((h.stats().buffered, h.stats().buffered_bytes), (3, 6));

    let actions = h.feed(10, response(A, 1, 1, Status::Ok, None, &[b"r1", b""]));
    let r = only_response(&actions, A);
    assert!(r.route.is_empty(), "the route is cleared for the client");
    assert_eq!((r.request_type, r.request_id, r.status), (1, 1, Status::Ok));
    assert_eq!(bytes(&r.payload), [b"r1".to_vec(), Vec::new()]);
    assert_eq!((h.stats().buffered, h.stats().buffered_bytes), (2, 4));

    let actions = h.feed(11, response(B, 1, 2, Status::Ok, None, &[]));
    only_response(&actions, B);
    let actions = h.feed(12, response(B, 1, 1, Status::Ok, None, &[]));
    only_response(&actions, B);
    let s = h.stats();
    assert_eq!((s.buffered, s.buffered_bytes), (0, 0));
    assert_eq!(s.responses_forwarded, 3);
    // Nothing is re-sent afterwards.
    assert!(h.resend_times(13, 1000).is_empty());
}

#[test]
fn every_response_status_ends_the_entry_and_reaches_the_client() {
    let mut h = Harness::ready().with_a();
    for (id, status) in [Status::Ok].into_iter().chain(NOT_OK).enumerate() {
        h.send(0, A, (3, id as u64), Flags::empty(), &[b"p"]);
        let msg = response(A, 3, id as u64, status, Some(&format!("text {id}")), &[]);
        let actions = h.feed(1, msg);
        let r = only_response(&actions, A);
        assert_eq!(r.status, status);
        assert_eq!(r.error.as_deref(), Some(format!("text {id}").as_str()));
        assert_eq!(h.stats().buffered, 0, "{status}");
    }
}

#[test]
fn a_response_for_a_gone_client_is_counted_unroutable() {
    let mut h = Harness::ready();
    assert!(
        h.feed(0, response(b"zz", 1, 1, Status::Ok, None, &[]))
            .is_empty()
    );
    assert!(
        h.feed(0, Message::ReceiptSent(rref(b"zz", 1, 1)))
            .is_empty()
    );
    assert_eq!(h.stats().unroutable, 2);
}

// ---------------------------------------------------------------- receipts

#[test]
fn receipts_are_forwarded_and_a_two_way_entry_stays_until_its_response() {
    let mut h = Harness::ready().with_a();
    let flags = Flags::RECEIPT_ON_SEND | Flags::RECEIPT_ON_RECEIVE;
    h.send(0, A, (1, 7), flags, &[b"x"]);
    let actions = h.feed(10, Message::ReceiptSent(rref(A, 1, 7)));
    match only_for(&actions, A) {
        Message::ReceiptSent(r) => assert_eq!(*r, rref(&[], 1, 7), "route cleared"),
        other => panic!("expected RECEIPT_SENT, got {}", other.kind_name()),
    }
    assert_eq!(h.stats().buffered, 1);
    let actions = h.feed(20, Message::ReceiptReceived(rref(A, 1, 7)));
    match only_for(&actions, A) {
        Message::ReceiptReceived(r) => assert_eq!(*r, rref(&[], 1, 7)),
        other => panic!("expected RECEIPT_RECEIVED, got {}", other.kind_name()),
    }
    assert_eq!(h.stats().buffered, 1, "two-way: only the response ends it");
    h.feed(30, response(A, 1, 7, Status::Ok, None, &[]));
    let s = h.stats();
    assert_eq!((s.buffered, s.receipts_forwarded), (0, 2));
}

#[test]
fn a_one_way_receipt_on_receive_entry_ends_only_at_receipt_received() {
    let mut h = Harness::ready().with_a();
    let flags = Flags::ONE_WAY | Flags::RECEIPT_ON_SEND | Flags::RECEIPT_ON_RECEIVE;
    h.send(0, A, (1, 7), flags, &[b"x"]);
    assert_eq!(
        kinds(&h.feed(10, Message::ReceiptSent(rref(A, 1, 7)))),
        ["a>RECEIPT_SENT"]
    );
    assert_eq!(h.stats().buffered, 1, "RECEIPT_SENT alone does not end it");
    // Still re-sent on its timer.
    assert_eq!(h.resend_times(11, 100), [100]);
    assert_eq!(
        kinds(&h.feed(150, Message::ReceiptReceived(rref(A, 1, 7)))),
        ["a>RECEIPT_RECEIVED"]
    );
    assert_eq!((h.stats().buffered, h.stats().buffered_bytes), (0, 0));
    assert!(h.resend_times(151, 1000).is_empty());
}

#[test]
fn a_one_way_receipt_on_send_entry_ends_at_receipt_sent() {
    let mut h = Harness::ready().with_a();
    h.send(
        0,
        A,
        (1, 7),
        Flags::ONE_WAY | Flags::RECEIPT_ON_SEND,
        &[b"x"],
    );
    assert_eq!(
        kinds(&h.feed(10, Message::ReceiptSent(rref(A, 1, 7)))),
        ["a>RECEIPT_SENT"]
    );
    assert_eq!(h.stats().buffered, 0);
    // A repeated receipt (answer to a re-send) still reaches the client.
    assert_eq!(
        kinds(&h.feed(20, Message::ReceiptSent(rref(A, 1, 7)))),
        ["a>RECEIPT_SENT"]
    );
    assert!(h.resend_times(21, 1000).is_empty());
}

#[test]
fn a_reply_to_request_is_confirmed_like_a_one_way_request() {
    let mut h = Harness::ready().with_a();
    h.greet(0, B, Some("bob"));
    // a asks for the response to go to bob, and for RECEIPT_ON_RECEIVE (the
    // client resolves such a request at that receipt).
    let msg = request_msg((1, 7), Flags::RECEIPT_ON_RECEIVE, Some("bob"), &[b"x"]);
    assert_eq!(requests(&h.client(1, A, msg)).len(), 1);
    let actions = h.feed(10, Message::ReceiptReceived(rref(A, 1, 7)));
    assert_eq!(kinds(&actions), ["a>RECEIPT_RECEIVED"]);
    let actions = h.feed(20, response(B, 1, 7, Status::Ok, None, &[b"for bob"]));
    assert_eq!(only_response(&actions, B).status, Status::Ok);
    // The broker is done with it: a re-send now would run it again.
    assert_eq!(
        h.stats().buffered,
        0,
        "the origin's entry must be confirmed"
    );
    assert!(h.resend_times(21, 3000).is_empty());
}

// ---------------------------------------------------------------- re-send timers

#[test]
fn resend_timer_starts_at_resend_initial_then_doubles_up_to_resend_max() {
    let mut h = Harness::ready().with_a();
    let flags = Flags::RECEIPT_ON_SEND;
    h.send(0, A, (1, 7), flags, &[b"p"]);
    // +100, +200, +400 (capped), +400, +400: never earlier.
    let mut seen = Vec::new();
    for n in 1..=1600 {
        let actions = h.tick_alive(n);
        for r in requests(&actions) {
            assert_forwarded(r, A, (1, 7), flags, &[b"p"]);
            seen.push(n);
        }
    }
    assert_eq!(seen, [100, 300, 700, 1100, 1500]);
    let s = h.stats();
    assert_eq!((s.requests_forwarded, s.requests_resent), (1, 5));
}

#[test]
fn each_request_has_its_own_timer() {
    let mut h = Harness::ready().with_a();
    h.send(0, A, (1, 1), Flags::empty(), &[]);
    h.send(30, A, (1, 2), Flags::empty(), &[]);
    let mut seen = Vec::new();
    for n in 31..=330 {
        for r in requests(&h.tick_alive(n)) {
            seen.push((n, r.request_id));
        }
    }
    assert_eq!(seen, [(100, 1), (130, 2), (300, 1), (330, 2)]);
}

#[test]
fn no_resend_while_disconnected_then_everything_once_after_welcome() {
    let mut h = Harness::ready().with_a();
    h.greet(0, B, None);
    h.send(0, A, (1, 1), Flags::empty(), &[b"one"]);
    let one_way = Flags::ONE_WAY | Flags::RECEIPT_ON_RECEIVE;
    h.send(0, B, (2, 2), one_way, &[b"two"]);
    assert_eq!(kinds(&h.feed(50, Message::Shutdown)), ["CLOSE"]);
    for n in 51..=149 {
        let actions = h.tick(n);
        assert!(
            no_heartbeats(&actions).is_empty(),
            "at {n}: {:?}",
            kinds(&actions)
        );
    }
    assert_eq!(no_heartbeats(&h.tick(150)), ["CONNECT"]);
    h.greeted_broker(150);
    // Greeting is not a session: nothing is re-sent (HELLO is repeated).
    let resent: Vec<u64> = (151..=399)
        .filter(|&n| !requests(&h.tick_alive(n)).is_empty())
        .collect();
    assert!(resent.is_empty(), "re-sent at {resent:?}");
    let actions = h.welcome(400);
    let mut sent: Vec<(Vec<u8>, RequestId, Vec<Vec<u8>>)> = requests(&actions)
        .into_iter()
        .map(|r| (r.route.clone(), r.request_id, bytes(&r.payload)))
        .collect();
    sent.sort();
    assert_eq!(
        sent,
        [
            (A.to_vec(), 1, vec![b"one".to_vec()]),
            (B.to_vec(), 2, vec![b"two".to_vec()])
        ]
    );
    assert_eq!(actions.len(), 2);
    assert_eq!(h.stats().requests_resent, 2);
    // The new session's re-send re-armed the timers with backoff.
    assert_eq!(h.resend_times(401, 600), [600, 600]);
}

#[test]
fn requests_received_while_disconnected_are_buffered_and_sent_after_welcome() {
    let mut h = Harness::new();
    h.drain();
    h.greet(0, A, None);
    assert!(h.send(0, A, (1, 1), Flags::empty(), &[b"2w"]).is_empty());
    assert!(
        h.send(
            0,
            A,
            (1, 2),
            Flags::ONE_WAY | Flags::RECEIPT_ON_SEND,
            &[b"r"]
        )
        .is_empty()
    );
    assert!(h.send(0, A, (1, 3), Flags::ONE_WAY, &[b"ff"]).is_empty());
    h.greeted_broker(10);
    // Greeting: still buffered.
    assert!(h.send(20, A, (1, 4), Flags::ONE_WAY, &[b"f4"]).is_empty());
    let s = h.stats();
    assert_eq!(
        (s.buffered, s.buffered_bytes, s.requests_forwarded),
        (4, 7, 0)
    );
    let actions = h.welcome(30);
    let mut ids: Vec<RequestId> = requests(&actions).iter().map(|r| r.request_id).collect();
    ids.sort_unstable();
    assert_eq!(ids, [1, 2, 3, 4]);
    assert_eq!(actions.len(), 4);
    // The fire-and-forget ones are done once sent.
    assert_eq!((h.stats().buffered, h.stats().buffered_bytes), (2, 3));
    let mut later: Vec<RequestId> = Vec::new();
    for n in 31..=300 {
        later.extend(requests(&h.tick_alive(n)).iter().map(|r| r.request_id));
    }
    later.sort_unstable();
    assert_eq!(
        later,
        [1, 2],
        "only the confirmed-level requests are re-sent"
    );
}

#[test]
fn reregister_greets_again_and_resends_everything_after_welcome() {
    let mut h = Harness::ready();
    h.greet(0, A, Some("alice"));
    h.send(0, A, (1, 1), Flags::empty(), &[b"x"]);
    let actions = h.feed(10, Message::Reregister);
    let Message::Hello(hello) = only_to_broker(&actions) else {
        panic!("expected HELLO, got {:?}", kinds(&actions));
    };
    assert!(
        hello.route.is_empty() && hello.name.is_none(),
        "the proxy's own"
    );
    assert!(!h.stats().connected);
    assert_eq!(h.stats().broker_losses, 0, "the socket is kept");
    // Not re-sent while greeting, though its timer falls due.
    for n in 11..=150 {
        assert!(requests(&h.tick_alive(n)).is_empty());
    }
    let actions = h.welcome(160);
    assert_eq!(kinds(&actions), ["B>HELLO", "B>REQUEST"]);
    let Action::Link(LinkAction::Send(Message::Hello(hello))) = &actions[0] else {
        unreachable!()
    };
    assert_eq!(
        (hello.name.as_deref(), hello.route.as_slice()),
        (Some("alice"), A)
    );
    assert_forwarded(requests(&actions)[0], A, (1, 1), Flags::empty(), &[b"x"]);
    assert!(h.stats().connected);
}

// ---------------------------------------------------------------- bounds

#[test]
fn max_buffered_answers_overloaded_and_forwards_nothing() {
    let mut c = config();
    c.max_buffered = 2;
    let mut h = Harness::ready_with(&c).with_a();
    h.send(0, A, (1, 1), Flags::empty(), &[b"abc"]);
    let one_way = Flags::ONE_WAY | Flags::RECEIPT_ON_SEND;
    h.send(0, A, (1, 2), one_way, &[b"abc"]);
    let actions = h.send(1, A, (1, 3), Flags::empty(), &[b"abc"]);
    let r = only_response(&actions, A);
    assert_eq!(
        (r.request_type, r.request_id, r.status),
        (1, 3, Status::Overloaded)
    );
    assert!(r.route.is_empty() && r.payload.is_empty());
    assert!(r.error.is_some());
    let s = h.stats();
    assert_eq!(
        (s.buffered, s.buffered_bytes, s.requests_overloaded),
        (2, 6, 1)
    );
    assert_eq!(s.requests_forwarded, 2);
    // A re-send of a buffered request is not refused.
    assert_eq!(
        requests(&h.send(2, A, (1, 1), Flags::empty(), &[b"abc"])).len(),
        1
    );
    // Room again once one is confirmed.
    h.feed(3, response(A, 1, 1, Status::Ok, None, &[]));
    assert_eq!(
        requests(&h.send(4, A, (1, 3), Flags::empty(), &[b"abc"])).len(),
        1
    );
    assert_eq!(h.stats().buffered, 2);
}

#[test]
fn max_buffered_bytes_answers_overloaded() {
    let mut c = config();
    c.max_buffered_bytes = 10;
    let mut h = Harness::ready_with(&c).with_a();
    assert_eq!(
        requests(&h.send(0, A, (1, 1), Flags::empty(), &[b"123", b"456"])).len(),
        1
    );
    let actions = h.send(0, A, (1, 2), Flags::empty(), &[b"12345"]);
    assert_eq!(only_response(&actions, A).status, Status::Overloaded);
    // Exactly at the bound is fine.
    assert_eq!(
        requests(&h.send(0, A, (1, 3), Flags::empty(), &[b"1234"])).len(),
        1
    );
    let s = h.stats();
    assert_eq!(
        (s.buffered, s.buffered_bytes, s.requests_overloaded),
        (2, 10, 1)
    );
    // Also while disconnected.
    assert_eq!(kinds(&h.feed(1, Message::Shutdown)), ["CLOSE"]);
    let actions = h.send(2, A, (1, 4), Flags::empty(), &[b"1"]);
    assert_eq!(only_response(&actions, A).status, Status::Overloaded);
}

// ---------------------------------------------------------------- clients leaving

#[test]
fn a_silent_client_has_its_entries_dropped_after_its_liveness() {
    let mut h = Harness::ready();
    // 100 ms clients: dead after 300 ms of silence.
    h.client(0, A, hello(Some("alice"), 100));
    h.client(0, B, hello(None, 100));
    h.client(0, C, hello(None, 100));
    h.drain();
    h.send(0, A, (1, 1), Flags::empty(), &[b"aa"]);
    h.send(0, B, (1, 2), Flags::empty(), &[b"b"]);
    h.send(
        0,
        C,
        (1, 3),
        Flags::ONE_WAY | Flags::RECEIPT_ON_RECEIVE,
        &[b"ccc"],
    );
    for n in [100, 200, 300] {
        assert!(h.client(n, B, heartbeat()).is_empty());
        let actions = h.tick_alive(n);
        assert!(!has(&actions, "B>DISCONNECT"), "at {n}");
    }
    assert_eq!(h.stats().client_deaths, 0);
    let actions = h.tick_alive(301);
    let disconnects: Vec<&Message> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Link(LinkAction::Send(m @ Message::Disconnect { .. })) => Some(m),
            _ => None,
        })
        .collect();
    assert!(
        matches!(disconnects.as_slice(), [Message::Disconnect { route }] if route == A),
        "a goodbye for the named client only: {:?}",
        kinds(&actions)
    );
    let s = h.stats();
    assert_eq!(s.client_deaths, 2);
    assert_eq!((s.clients, s.buffered, s.buffered_bytes), (1, 1, 1));
    // Their entries are not re-sent; a late response is unroutable.
    let mut ids = Vec::new();
    for n in 302..=800 {
        if n % 100 == 0 {
            h.client(n, B, heartbeat());
        }
        ids.extend(requests(&h.tick_alive(n)).iter().map(|r| r.request_id));
    }
    assert!(ids.iter().all(|&id| id == 2), "{ids:?}");
    assert!(
        h.feed(801, response(A, 1, 1, Status::Ok, None, &[]))
            .is_empty()
    );
    assert_eq!(h.stats().unroutable, 1);
}

#[test]
fn a_client_heartbeat_can_announce_a_longer_interval() {
    let mut h = Harness::ready();
    h.client(0, A, hello(None, 100));
    h.client(200, A, Message::Heartbeat { heartbeat_ms: 1000 });
    h.drain();
    h.tick(3200);
    assert_eq!(h.stats().client_deaths, 0);
    h.tick(3201);
    assert_eq!(h.stats().client_deaths, 1);
}

#[test]
fn client_disconnect_drops_its_entries_and_says_goodbye_for_named_clients() {
    let mut h = Harness::ready();
    h.greet(0, A, Some("alice"));
    h.greet(0, B, None);
    h.send(0, A, (1, 1), Flags::empty(), &[b"aa"]);
    h.send(0, B, (1, 2), Flags::RECEIPT_ON_SEND, &[b"b"]);
    let actions = h.client(10, A, Message::Disconnect { route: Vec::new() });
    assert!(
        matches!(only_to_broker(&actions), Message::Disconnect { route } if route == A),
        "{:?}",
        kinds(&actions)
    );
    assert_eq!((h.stats().buffered, h.stats().buffered_bytes), (1, 1));
    assert!(
        h.client(20, B, Message::Disconnect { route: Vec::new() })
            .is_empty()
    );
    let s = h.stats();
    assert_eq!((s.clients, s.buffered, s.buffered_bytes), (0, 0, 0));
    assert_eq!(s.client_deaths, 0, "a goodbye is not a death");
    assert!(h.resend_times(21, 500).is_empty());
}

#[test]
fn a_named_client_leaving_while_disconnected_sends_no_goodbye() {
    let mut h = Harness::ready();
    h.greet(0, A, Some("alice"));
    assert_eq!(kinds(&h.feed(10, Message::Shutdown)), ["CLOSE"]);
    assert!(
        h.client(20, A, Message::Disconnect { route: Vec::new() })
            .is_empty()
    );
    // Nor is it announced in the next session.
    h.tick(110);
    h.greeted_broker(110);
    assert!(h.welcome(120).is_empty());
}

// ---------------------------------------------------------------- errors and malformed input

#[test]
fn a_broker_error_naming_a_request_is_forwarded_and_ends_the_entry() {
    let mut h = Harness::ready().with_a();
    h.send(0, A, (1, 7), Flags::empty(), &[b"x"]);
    h.send(0, A, (1, 8), Flags::empty(), &[b"y"]);
    // Without a request: about the proxy itself, nothing to forward.
    let general = Message::Error(ErrorReply {
        error: "general".into(),
        request: None,
        status: None,
    });
    assert!(h.feed(5, general).is_empty());
    assert_eq!(h.stats().buffered, 2);
    let about = Message::Error(ErrorReply {
        error: "bad".into(),
        request: Some(rref(A, 1, 7)),
        status: None,
    });
    let actions = h.feed(10, about);
    match only_for(&actions, A) {
        Message::Error(e) => {
            assert_eq!(e.error, "bad");
            assert_eq!(e.request, Some(rref(&[], 1, 7)), "route cleared");
        }
        other => panic!("expected ERROR, got {}", other.kind_name()),
    }
    assert_eq!((h.stats().buffered, h.stats().buffered_bytes), (1, 1));
    assert_eq!(h.stats().malformed_broker, 0);
}

#[test]
fn an_oversized_client_message_is_counted_and_answered_with_an_error_naming_it() {
    let mut h = Harness::ready().with_a();
    let (header, _) = encode(request_msg((5, 9), Flags::empty(), None, &[]));
    let size = crate::io::Oversized {
        frames: 2000,
        bytes: 100,
    };
    h.core.on_oversized(A, size, &header);
    let actions = h.drain();
    match only_for(&actions, A) {
        Message::Error(e) => {
            assert!(e.error.contains("max_message_frames"), "{}", e.error);
            assert_eq!(e.request, Some(rref(&[], 5, 9)));
        }
        other => panic!("expected ERROR, got {}", other.kind_name()),
    }
    let s = h.stats();
    assert_eq!((s.oversized, s.buffered, s.requests_received), (1, 0, 0));
}

#[test]
fn malformed_client_input_is_counted_answered_with_error_and_isolated() {
    let mut h = Harness::ready().with_a();
    h.greet(0, B, None);
    h.send(0, A, (1, 1), Flags::empty(), &[b"x"]);
    // Not a header at all.
    let actions = h.client_raw(1, A, &[0xff, 0xff, 0xff], Payload::new());
    match only_for(&actions, A) {
        Message::Error(e) => assert_eq!(e.request, None),
        other => panic!("expected ERROR, got {}", other.kind_name()),
    }
    // Another major version, naming a request: the ERROR names it.
    let header = with_major(request_msg((5, 9), Flags::empty(), None, &[]), 2);
    let actions = h.client_raw(2, A, &header, payload(&[b"p"]));
    match only_for(&actions, A) {
        Message::Error(e) => {
            assert!(e.error.contains("version"), "{}", e.error);
            assert_eq!(e.request, Some(rref(&[], 5, 9)));
        }
        other => panic!("expected ERROR, got {}", other.kind_name()),
    }
    // A kind a client must not send.
    let actions = h.client(3, A, response(&[], 1, 1, Status::Ok, None, &[]));
    match only_for(&actions, A) {
        Message::Error(e) => {
            assert!(e.error.contains("RESPONSE"), "{}", e.error);
            assert_eq!(e.request, Some(rref(&[], 1, 1)));
        }
        other => panic!("expected ERROR, got {}", other.kind_name()),
    }
    // A stranger gets its ERROR too, without being registered.
    assert_eq!(
        kinds(&h.client_raw(4, b"zz", &[0xff], Payload::new())),
        ["zz>ERROR"]
    );
    let s = h.stats();
    assert_eq!((s.malformed_clients, s.clients), (4, 2));
    // Nothing else changed: a's entry is kept, b is served.
    assert_eq!((s.buffered, s.requests_received), (1, 1));
    assert_eq!(
        requests(&h.send(5, B, (1, 2), Flags::empty(), &[])).len(),
        1
    );
    assert_eq!(
        kinds(&h.feed(6, response(A, 1, 1, Status::Ok, None, &[]))),
        ["a>RESPONSE"]
    );
}

/// The broker-to-broker kinds (1.2) are for a broker's cluster endpoint:
/// on either side of a proxy they are unexpected, answered with ERROR
/// (naming the request, route cleared, when the header names one).
#[test]
fn cluster_kinds_are_unexpected_on_both_sides() {
    let mut h = Harness::ready().with_a();
    h.check_cluster_kinds_are_unexpected(1);
    assert_eq!(h.stats().malformed_broker, 6);
    for msg in cluster_messages() {
        let name = msg.kind_name();
        let names_request = matches!(
            msg,
            Message::Forward(_) | Message::Execute(_) | Message::Executed(_)
        );
        let actions = h.client(2, A, msg);
        match only_for(&actions, A) {
            Message::Error(e) => {
                assert_eq!(e.error, format!("unexpected {name} on the proxy"));
                let named = names_request.then(|| rref(&[], 7, 1));
                assert_eq!(e.request, named, "{name}");
            }
            other => panic!("expected ERROR, got {}", other.kind_name()),
        }
    }
    let s = h.stats();
    assert_eq!((s.malformed_clients, s.requests_received), (6, 0));
    assert!(s.connected);
}

#[test]
fn malformed_broker_input_is_counted_answered_with_error_and_isolated() {
    let mut h = Harness::ready().with_a();
    h.send(0, A, (1, 1), Flags::empty(), &[b"x"]);
    let actions = h.feed_raw(1, &[0xff, 0xff], Payload::new());
    match only_to_broker(&actions) {
        Message::Error(e) => assert_eq!(e.request, None),
        other => panic!("expected ERROR, got {}", other.kind_name()),
    }
    // A kind the broker must not send to a client.
    let unexpected = request_msg((1, 1), Flags::empty(), None, &[]);
    let actions = h.feed(2, unexpected);
    match only_to_broker(&actions) {
        Message::Error(e) => assert!(e.error.contains("REQUEST"), "{}", e.error),
        other => panic!("expected ERROR, got {}", other.kind_name()),
    }
    // A RESPONSE of another major version is not taken as the outcome.
    let header = with_major(response(A, 1, 1, Status::Ok, None, &[]), 3);
    assert_eq!(kinds(&h.feed_raw(3, &header, Payload::new())), ["B>ERROR"]);
    let s = h.stats();
    assert_eq!((s.malformed_broker, s.buffered), (3, 1));
    assert!(s.connected, "malformed input changes no session state");
    assert_eq!(
        kinds(&h.feed(4, response(A, 1, 1, Status::Ok, None, &[]))),
        ["a>RESPONSE"]
    );
    assert_eq!(h.stats().buffered, 0);
}

#[test]
fn an_error_is_never_answered_with_an_error() {
    let mut h = Harness::ready().with_a();
    let error = || {
        Message::Error(ErrorReply {
            error: "yours".into(),
            request: Some(rref(&[], 1, 1)),
            status: None,
        })
    };
    // Valid ERRORs: logged only.
    assert!(h.client(1, A, error()).is_empty());
    let (header, _) = encode(error());
    // Malformed ERRORs (a payload frame where none is allowed): counted only.
    assert!(h.client_raw(2, A, &header, payload(&[b"junk"])).is_empty());
    assert!(h.feed_raw(3, &header, payload(&[b"junk"])).is_empty());
    // An ERROR of another major version, likewise.
    let header = with_major(error(), 2);
    assert!(h.client_raw(4, A, &header, Payload::new()).is_empty());
    assert!(h.feed_raw(5, &header, Payload::new()).is_empty());
    let s = h.stats();
    assert_eq!((s.malformed_clients, s.malformed_broker), (2, 2));
}

// ---------------------------------------------------------------- stop

#[test]
fn stop_says_shutdown_to_clients_and_disconnect_to_the_broker() {
    let mut h = Harness::ready().with_a();
    h.greet(0, B, Some("bob"));
    h.send(0, A, (1, 1), Flags::empty(), &[]);
    let actions = h.stop(10);
    assert_eq!(
        sorted_kinds(&actions),
        ["B>DISCONNECT", "a>SHUTDOWN", "b>SHUTDOWN"]
    );
    assert!(
        actions.iter().any(
            |a| matches!(a, Action::Link(LinkAction::Send(Message::Disconnect { route })) if route.is_empty())
        )
    );
}

#[test]
fn stop_while_disconnected_tells_clients_only_and_never_reconnects() {
    let mut h = Harness::new();
    assert_eq!(kinds(&h.drain()), ["CONNECT"]);
    h.connect_failed(0);
    h.greet(0, A, None);
    assert_eq!(kinds(&h.stop(10)), ["a>SHUTDOWN"]);
    for n in [100, 500, 5000] {
        assert!(!has(&h.tick(n), "CONNECT"));
    }
}

// ---------------------------------------------------------------- heartbeats

#[test]
fn idle_clients_get_heartbeats_and_busy_ones_do_not() {
    let mut h = Harness::ready().with_a();
    h.greet(0, B, None);
    h.send(0, B, (1, 1), Flags::empty(), &[]);
    // Something for b at 60: b is not idle until 160.
    h.feed(60, response(B, 1, 1, Status::Ok, None, &[]));
    assert!(h.tick_alive(99).is_empty());
    let actions = h.tick_alive(100);
    assert_eq!(sorted_kinds(&actions), ["B>HEARTBEAT", "a>HEARTBEAT"]);
    for a in &actions {
        if let Action::ToClient(_, Message::Heartbeat { heartbeat_ms }) = a {
            assert_eq!(u64::from(*heartbeat_ms), HB);
        }
    }
    assert!(h.tick_alive(159).is_empty());
    assert_eq!(kinds(&h.tick_alive(160)), ["b>HEARTBEAT"]);
    assert_eq!(
        sorted_kinds(&h.tick_alive(200)),
        ["B>HEARTBEAT", "a>HEARTBEAT"]
    );
}

// ---------------------------------------------------------------- randomized

/// A tiny xorshift64 generator: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }
}

type Key = (Vec<u8>, RequestType, RequestId);

/// What the model expects the proxy to hold for one buffered request.
#[derive(Debug)]
struct Expected {
    flags: Flags,
    frames: Vec<Vec<u8>>,
}

impl Expected {
    fn bytes(&self) -> usize {
        self.frames.iter().map(Vec::len).sum()
    }
}

fn fire_and_forget(flags: Flags) -> bool {
    !flags.is_two_way() && !flags.intersects(Flags::RECEIPT_ON_SEND | Flags::RECEIPT_ON_RECEIVE)
}

/// The receipt that ends a one-way request, if any.
fn final_receipt(flags: Flags) -> Option<&'static str> {
    if flags.is_two_way() {
        None
    } else if flags.contains(Flags::RECEIPT_ON_RECEIVE) {
        Some("RECEIPT_RECEIVED")
    } else if flags.contains(Flags::RECEIPT_ON_SEND) {
        Some("RECEIPT_SENT")
    } else {
        None
    }
}

const SIM_MAX_BUFFERED: usize = 6;
const SIM_MAX_BYTES: usize = 40;
const SIM_CLIENTS: [&[u8]; 3] = [A, B, C];

/// The proxy between three clients and a model broker that learns the
/// requests the proxy sends, forgets them when it restarts, and answers
/// them in any order.
struct Sim {
    h: Harness,
    rng: Rng,
    now: u64,
    /// The driver has a broker socket.
    socket: bool,
    /// The proxy's own HELLO awaits a WELCOME.
    greeting: bool,
    /// What the model broker knows, by origin route.
    known: BTreeMap<Key, Flags>,
    /// What the proxy should be holding.
    buffer: BTreeMap<Key, Expected>,
    /// Two-way requests accepted by the proxy, not yet answered.
    awaiting: BTreeSet<Key>,
    overloaded: u64,
    answered: u64,
    next_id: RequestId,
}

impl Sim {
    fn new(seed: u64) -> Self {
        let mut c = config();
        c.max_buffered = SIM_MAX_BUFFERED;
        c.max_buffered_bytes = SIM_MAX_BYTES;
        let mut h = Harness::with(&c);
        let first = h.drain();
        // Clients that never go silent for long enough to die.
        for peer in SIM_CLIENTS {
            h.client(0, peer, hello(None, 1_000_000));
        }
        h.drain();
        let mut sim = Self {
            h,
            rng: Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1),
            now: 0,
            socket: false,
            greeting: false,
            known: BTreeMap::new(),
            buffer: BTreeMap::new(),
            awaiting: BTreeSet::new(),
            overloaded: 0,
            answered: 0,
            next_id: 0,
        };
        sim.process(first);
        sim
    }

    fn flags(&mut self) -> Flags {
        let choices = [
            Flags::empty(),
            Flags::RECEIPT_ON_SEND | Flags::RECEIPT_ON_RECEIVE,
            Flags::RETRY_ON_DEATH,
            Flags::ONE_WAY,
            Flags::ONE_WAY | Flags::RECEIPT_ON_SEND,
            Flags::ONE_WAY | Flags::RECEIPT_ON_RECEIVE,
            Flags::ONE_WAY | Flags::RECEIPT_ON_SEND | Flags::RECEIPT_ON_RECEIVE,
        ];
        choices[self.rng.below(choices.len() as u64) as usize]
    }

    fn buffered_bytes(&self) -> usize {
        self.buffer.values().map(Expected::bytes).sum()
    }

    /// Applies what the proxy asked for, checking each action against the
    /// model.
    fn process(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Link(LinkAction::Connect) => {
                    assert!(!self.socket, "CONNECT with a socket");
                    self.socket = true;
                    let more = self.h.connect_at(self.now);
                    self.process(more);
                }
                Action::Link(LinkAction::Close) => {
                    assert!(self.socket, "CLOSE without a socket");
                    self.socket = false;
                    self.greeting = false;
                }
                Action::Link(LinkAction::Send(Message::Hello(hello))) => {
                    assert!(hello.route.is_empty(), "no named clients here");
                    self.greeting = true;
                }
                Action::Link(LinkAction::Send(Message::Heartbeat { .. })) => {}
                Action::Link(LinkAction::Send(Message::Request(r))) => {
                    assert!(self.socket);
                    let key: Key = (r.route.clone(), r.request_type, r.request_id);
                    let expected = self
                        .buffer
                        .get(&key)
                        .unwrap_or_else(|| panic!("forwarded {key:?}, which is not buffered"));
                    assert_eq!(r.flags, expected.flags, "{key:?}");
                    assert_eq!(bytes(&r.payload), expected.frames, "{key:?}");
                    if fire_and_forget(r.flags) {
                        self.buffer.remove(&key);
                    } else {
                        self.known.entry(key).or_insert(r.flags);
                    }
                }
                Action::ToClient(peer, Message::Response(r)) => {
                    assert!(r.route.is_empty());
                    let key: Key = (peer.to_vec(), r.request_type, r.request_id);
                    assert!(
                        self.awaiting.remove(&key),
                        "a RESPONSE for {key:?}, which awaits none (a second one?)"
                    );
                    assert!(self.buffer.remove(&key).is_some(), "{key:?}");
                    self.answered += 1;
                }
                Action::ToClient(peer, Message::ReceiptSent(r)) => {
                    self.on_receipt(&peer, &r, "RECEIPT_SENT");
                }
                Action::ToClient(peer, Message::ReceiptReceived(r)) => {
                    self.on_receipt(&peer, &r, "RECEIPT_RECEIVED");
                }
                Action::ToClient(_, Message::Heartbeat { .. }) => {}
                other => panic!("unexpected action {:?}", kinds(&[other])),
            }
        }
        self.check();
    }

    /// A receipt forwarded to a client ends a one-way entry at its level.
    fn on_receipt(&mut self, peer: &[u8], r: &RequestRef, kind: &str) {
        assert!(r.route.is_empty());
        let key: Key = (peer.to_vec(), r.request_type, r.request_id);
        if self
            .buffer
            .get(&key)
            .is_some_and(|e| final_receipt(e.flags) == Some(kind))
        {
            self.buffer.remove(&key);
        }
    }

    fn check(&self) {
        let s = self.h.stats();
        assert_eq!(s.buffered, self.buffer.len() as u64, "{:?}", self.buffer);
        assert_eq!(s.buffered_bytes, self.buffered_bytes() as u64);
        assert!(s.buffered as usize <= SIM_MAX_BUFFERED);
        assert!(s.buffered_bytes as usize <= SIM_MAX_BYTES);
        assert_eq!(
            (s.requests_overloaded, s.responses_forwarded),
            (self.overloaded, self.answered)
        );
    }

    fn client_request(&mut self) {
        let peer = SIM_CLIENTS[self.rng.below(3) as usize];
        let mine: Vec<Key> = self
            .buffer
            .keys()
            .filter(|k| k.0 == peer)
            .cloned()
            .collect();
        // Now and then the same request again (what a raw client may do).
        let (t, id) = if !mine.is_empty() && self.rng.percent(10) {
            let k = &mine[self.rng.below(mine.len() as u64) as usize];
            (k.1, k.2)
        } else {
            self.next_id += 1;
            (1 + self.rng.below(2) as RequestType, self.next_id)
        };
        let flags = self.flags();
        let frames: Vec<Vec<u8>> = (0..self.rng.below(3))
            .map(|i| vec![i as u8; self.rng.below(10) as usize])
            .collect();
        let key: Key = (peer.to_vec(), t, id);
        let size: usize = frames.iter().map(Vec::len).sum();
        let duplicate = self.buffer.contains_key(&key);
        let over = !duplicate
            && (self.buffer.len() >= SIM_MAX_BUFFERED
                || self.buffered_bytes() + size > SIM_MAX_BYTES);
        let ready = self.h.stats().connected;
        let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        let actions = self.h.send(self.now, peer, (t, id), flags, &refs);
        if over {
            self.overloaded += 1;
            assert_eq!(only_response(&actions, peer).status, Status::Overloaded);
            return self.check();
        }
        let sent = requests(&actions).len();
        if duplicate {
            assert_eq!(sent, usize::from(ready), "a re-send only in session");
        } else {
            assert_eq!(sent, usize::from(ready), "forwarded only in session");
            if flags.is_two_way() {
                self.awaiting.insert(key.clone());
            }
            self.buffer.insert(key.clone(), Expected { flags, frames });
        }
        self.process(actions);
        if ready && fire_and_forget(flags) && !duplicate {
            assert!(!self.buffer.contains_key(&key), "fire-and-forget kept");
        }
    }

    fn pick_known(&mut self) -> Option<Key> {
        if self.known.is_empty() {
            return None;
        }
        let n = self.rng.below(self.known.len() as u64) as usize;
        self.known.keys().nth(n).cloned()
    }

    /// The model broker ends one request it knows: the outcome for a
    /// two-way one, the final receipt for a one-way one.
    fn answer(&mut self, key: Key) {
        let flags = self.known.remove(&key).expect("known");
        let msg = if flags.is_two_way() {
            let statuses = [
                Status::Ok,
                Status::Failed,
                Status::WorkerDeath,
                Status::Overloaded,
            ];
            let status = statuses[self.rng.below(statuses.len() as u64) as usize];
            response(&key.0, key.1, key.2, status, None, &[b"out"])
        } else if final_receipt(flags) == Some("RECEIPT_RECEIVED") {
            Message::ReceiptReceived(rref(&key.0, key.1, key.2))
        } else {
            Message::ReceiptSent(rref(&key.0, key.1, key.2))
        };
        let actions = self.h.feed(self.now, msg);
        self.process(actions);
    }

    /// The model broker sends a receipt the request asked for, if any,
    /// without ending it.
    fn receipt(&mut self, key: &Key) {
        let flags = self.known[key];
        let r = rref(&key.0, key.1, key.2);
        let msg = if flags.contains(Flags::RECEIPT_ON_SEND) {
            Message::ReceiptSent(r)
        } else if flags.contains(Flags::RECEIPT_ON_RECEIVE) {
            Message::ReceiptReceived(r)
        } else {
            return;
        };
        if final_receipt(flags) == Some(msg.kind_name()) {
            self.known.remove(key);
        }
        let actions = self.h.feed(self.now, msg);
        self.process(actions);
    }

    fn step(&mut self) {
        self.now += self.rng.below(30);
        let roll = self.rng.below(100);
        match roll {
            0..=29 => self.client_request(),
            30..=44 if self.socket => {
                if let Some(key) = self.pick_known() {
                    self.answer(key);
                }
            }
            45..=54 if self.socket => {
                if let Some(key) = self.pick_known() {
                    self.receipt(&key);
                }
            }
            55..=69 => {
                let actions = self.h.tick(self.now);
                self.process(actions);
            }
            70..=84 if self.socket => {
                let actions = self.h.feed(self.now, heartbeat());
                self.process(actions);
            }
            85..=92 if self.socket && self.greeting => {
                self.greeting = false;
                let actions = self.h.feed(self.now, welcome());
                self.process(actions);
            }
            93..=94 if self.socket => {
                // The broker stops (and comes back empty).
                self.known.clear();
                let actions = self.h.feed(self.now, Message::Shutdown);
                assert!(has(&actions, "CLOSE"));
                self.process(actions);
            }
            95..=96 if self.socket => {
                // The broker restarted behind the same socket.
                self.known.clear();
                let actions = self.h.feed(self.now, Message::Reregister);
                self.process(actions);
            }
            _ => {}
        }
    }

    /// No more failures: the broker answers everything until the proxy's
    /// buffer is empty.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            if self.buffer.is_empty() && self.awaiting.is_empty() {
                break;
            }
            self.now += 20;
            if self.socket {
                let actions = self.h.feed(self.now, heartbeat());
                self.process(actions);
                if self.greeting {
                    self.greeting = false;
                    let actions = self.h.feed(self.now, welcome());
                    self.process(actions);
                }
                while let Some(key) = self.known.keys().next().cloned() {
                    self.answer(key);
                }
            }
            let actions = self.h.tick(self.now);
            self.process(actions);
        }
        assert!(
            self.awaiting.is_empty(),
            "never answered: {:?}",
            self.awaiting
        );
        assert!(self.buffer.is_empty(), "never confirmed: {:?}", self.buffer);
        let s = self.h.stats();
        assert_eq!((s.buffered, s.buffered_bytes), (0, 0));
    }
}

#[test]
fn randomized_requests_losses_and_answers_keep_the_buffer_exact() {
    let mut totals = (0, 0, 0);
    for seed in 1..=40 {
        let mut sim = Sim::new(seed);
        for _ in 0..1500 {
            sim.step();
        }
        sim.settle();
        let s = sim.h.stats();
        totals.0 += sim.answered;
        totals.1 += s.broker_losses;
        totals.2 += s.requests_resent;
    }
    // The runs did exercise what they claim to.
    let (answered, losses, resent) = totals;
    assert!(answered > 1000, "{answered} responses");
    assert!(losses > 40, "{losses} broker losses");
    assert!(resent > 1000, "{resent} re-sends");
}

// ----- clients that do not read (docs/bounds.md §3) ---------------------

#[test]
fn a_client_over_its_outbox_limit_is_refused_and_a_cut_one_is_shut_down() {
    use crate::outbox::PeerEvent;
    let mut h = Harness::ready().with_a();
    h.greet(0, B, None);
    h.send(1, A, (1, 1), Flags::empty(), &[b"held"]);
    assert_eq!(h.stats().buffered, 1);
    let now = h.at(2);
    h.core.on_peer_event(now, A, PeerEvent::OverLimit);
    assert!(h.drain().is_empty());
    // Over its limit: refused by the proxy, nothing forwarded.
    let actions = h.send(3, A, (1, 2), Flags::empty(), &[b"x"]);
    let r = only_response(&actions, A);
    assert_eq!((r.request_id, r.status), (2, Status::Overloaded));
    // Another client is served meanwhile.
    let actions = h.send(3, B, (1, 3), Flags::empty(), &[b"y"]);
    only_request(&actions);
    let s = h.stats();
    assert_eq!((s.refused_slow, s.requests_overloaded), (1, 1));
    // Cut: SHUTDOWN, and its buffered request dropped as on its death.
    let now = h.at(4);
    h.core.on_peer_event(now, A, PeerEvent::Cut);
    let actions = h.drain();
    assert!(matches!(only_for(&actions, A), Message::Shutdown));
    let s = h.stats();
    assert_eq!((s.slow_consumers, s.buffered, s.clients), (1, 1, 1));
    // Caught up (or come back), it is served again.
    let now = h.at(5);
    h.core.on_peer_event(now, A, PeerEvent::CaughtUp);
    h.greet(6, A, None);
    let actions = h.send(7, A, (1, 4), Flags::empty(), &[b"z"]);
    only_request(&actions);
}

/// FORBIDDEN (1.4) from the broker reaches a client that greeted with
/// minor 4 as it is, and a client older than 1.4 (or one that has not
/// greeted) as an ERROR naming the request, which ends it there too.
#[test]
fn forbidden_goes_to_older_clients_as_an_error_naming_the_request() {
    let mut h = Harness::ready().with_a();
    // B greets as a 1.3 client: `08 01 10 03`.
    let (mut header, payload) = encode(hello(None, CLIENT_HB));
    assert_eq!(header[..3], [0x08, 0x01, 0x10]);
    header[3] = 3;
    h.client_raw(0, B, &header, payload);
    h.send(1, A, (1, 7), Flags::empty(), &[b"x"]);
    h.send(1, B, (1, 8), Flags::empty(), &[b"y"]);
    let forbidden = |route: &[u8], id| {
        Message::Response(Response {
            request_type: 1,
            request_id: id,
            status: Status::Forbidden,
            error: Some("forbidden: key K may not send request type 1".into()),
            route: route.to_vec(),
            payload: Payload::new(),
        })
    };
    match only_for(&h.feed(5, forbidden(A, 7)), A) {
        Message::Response(r) => assert_eq!((r.status, r.request_id), (Status::Forbidden, 7)),
        other => panic!("expected RESPONSE, got {}", other.kind_name()),
    }
    match only_for(&h.feed(6, forbidden(B, 8)), B) {
        Message::Error(e) => {
            assert_eq!(e.status, Some(Status::Forbidden));
            assert_eq!(e.request, Some(rref(&[], 1, 8)));
            assert!(e.error.starts_with("forbidden: key K"), "{}", e.error);
        }
        other => panic!("expected ERROR, got {}", other.kind_name()),
    }
    assert_eq!(h.stats().buffered, 0, "both ended");
}

// ---------------------------------------------------------------- cancel

fn cancel_msg(key: (RequestType, RequestId)) -> Message {
    Message::Cancel(crate::protocol::Cancel {
        request_type: key.0,
        request_id: key.1,
        route: Vec::new(),
        dispatch_tag: 0,
    })
}

/// A client's CANCEL ends the buffering of its request (never re-sent) and
/// goes to the broker with the client's route.
#[test]
fn a_cancel_ends_the_buffering_and_goes_on_with_the_clients_route() {
    let mut h = Harness::ready().with_a();
    h.send(5, A, (1, 7), Flags::empty(), &[b"x"]);
    assert_eq!(h.stats().buffered, 1);
    let actions = h.client(6, A, cancel_msg((1, 7)));
    let [Action::Link(LinkAction::Send(Message::Cancel(c)))] = actions.as_slice() else {
        panic!("expected CANCEL to the broker, got {:?}", kinds(&actions));
    };
    assert_eq!((c.request_type, c.request_id), (1, 7));
    assert_eq!(c.route, A, "route = the client's id at the proxy");
    let s = h.stats();
    assert_eq!(
        (s.buffered, s.buffered_bytes, s.requests_cancelled),
        (0, 0, 1)
    );
    // Never re-sent.
    assert!(h.resend_times(7, 40_000).is_empty());
}

/// Through a broker older than 1.5 (its WELCOME says minor 4) the CANCEL
/// is not passed on (it would be refused), but the buffering ends.
#[test]
fn a_cancel_is_not_passed_to_a_broker_older_than_1_5() {
    let mut h = Harness::with(&config());
    assert_eq!(kinds(&h.drain()), ["CONNECT"]);
    h.greeted_broker(0);
    let (mut header, _) = encode(Message::Welcome {
        heartbeat_ms: crate::testing::BROKER_HB,
        max_message_size: 0,
    });
    header[3] = 4;
    assert!(h.feed_raw(0, &header, Payload::new()).is_empty());
    let mut h = h.with_a();
    h.send(5, A, (1, 7), Flags::empty(), &[b"x"]);
    assert!(h.client(6, A, cancel_msg((1, 7))).is_empty());
    assert_eq!(h.stats().buffered, 0);
}

/// Without a session, the CANCEL of a buffered request waits for the
/// next WELCOME (the broker may hold what an earlier session sent).
#[test]
fn a_cancel_without_a_session_goes_at_the_next_welcome() {
    let mut h = Harness::with(&config());
    assert_eq!(kinds(&h.drain()), ["CONNECT"]);
    h.greeted_broker(0);
    let mut h = h.with_a();
    // Buffered while greeting (not sent yet), then cancelled.
    h.send(5, A, (1, 7), Flags::empty(), &[b"x"]);
    assert!(h.client(6, A, cancel_msg((1, 7))).is_empty());
    assert_eq!(h.stats().buffered, 0);
    // A CANCEL for something never buffered here waits for nothing.
    assert!(h.client(7, A, cancel_msg((1, 8))).is_empty());
    let actions = h.welcome(8);
    assert_eq!(
        kinds(&actions),
        ["B>CANCEL"],
        "the CANCEL of 1/7 only, and no re-send of it"
    );
}
