//! Heartbeats and liveness: when the broker heartbeats a peer, which
//! messages count as a sign of life, and when a silent peer is dropped.

use super::*;

#[test]
fn broker_heartbeats_a_silent_worker_after_its_own_interval() {
    let mut h = Harness::new().and_worker(1);
    h.tick_at(999);
    h.expect_nothing();
    h.tick_at(1000);
    h.expect_heartbeat(Side::Backend, W1);
    h.expect_nothing();
    h.worker_heartbeat(W1);
    h.tick_at(1999);
    h.expect_nothing();
    h.tick_at(2000);
    h.expect_heartbeat(Side::Backend, W1);
    let s = h.quiet_stats();
    assert_eq!((s.heartbeats_sent, s.heartbeats_received), (2, 1));
}

#[test]
fn no_heartbeat_to_a_worker_while_dispatches_flow() {
    let mut h = Harness::with_client_and_worker(10);
    for (i, at) in [600_u64, 1400, 2200, 3000].into_iter().enumerate() {
        h.at(at);
        h.worker_heartbeat(W1);
        h.client_heartbeat(CA);
        h.request(CA, 7, i as u64, Flags::empty(), &[]);
        h.expect_dispatch(W1, 7, i as u64, 1);
        h.tick_at(at + 399);
        // Only the client (which received nothing) is heartbeated.
        for o in h.take() {
            assert!(
                o.0 == Side::Frontend && matches!(o.2, Message::Heartbeat { .. }),
                "{}",
                show(&o)
            );
        }
    }
    h.tick_at(3999);
    assert!(
        h.take().iter().all(|o| o.0 == Side::Frontend),
        "the worker got something at 3999"
    );
    h.tick_at(4000);
    h.expect_heartbeat(Side::Backend, W1);
}

#[test]
fn broker_heartbeats_a_silent_client_after_its_own_interval() {
    let mut h = Harness::with_client();
    h.tick_at(999);
    h.expect_nothing();
    h.tick_at(1000);
    h.expect_heartbeat(Side::Frontend, CA);
    h.expect_nothing();
}

#[test]
fn no_heartbeat_to_a_client_while_responses_flow() {
    let mut h = Harness::with_client_and_worker(1);
    h.at(100);
    h.request_dispatched(CA, W1, 7, 1);
    h.at(900);
    h.result_answered(W1, CA, 7, 1);
    h.tick_at(1000);
    // The worker got a DISPATCH at 100, the client a RESPONSE at 900.
    h.expect_nothing();
    h.tick_at(1899);
    h.expect_heartbeat(Side::Backend, W1);
    h.expect_nothing();
    h.tick_at(1900);
    h.expect_heartbeat(Side::Frontend, CA);
}

#[test]
fn a_silent_worker_is_declared_dead_after_liveness_times_its_interval() {
    let mut h = Harness::with_client();
    h.ready_hb(W1, &[7], 1, 500);
    h.expect_welcome(Side::Backend, W1);
    h.request_dispatched(CA, W1, 7, 1);
    h.at(1000);
    h.client_heartbeat(CA);
    // liveness 3 x 500 ms: alive at exactly 1500, dead just after.
    h.tick_at(1500);
    assert!(
        h.take()
            .iter()
            .all(|o| matches!(o.2, Message::Heartbeat { .. })),
        "nothing but heartbeats at the bound"
    );
    assert_eq!((h.stats().workers, h.stats().worker_deaths), (1, 0));
    h.tick_at(1501);
    h.expect_status_alone(CA, 7, 1, Status::WorkerDeath);
    let s = h.stats();
    assert_eq!(
        (s.workers, s.worker_deaths, s.requests_worker_death),
        (0, 1, 1)
    );
    assert_eq!(s.in_flight, 0);
    assert!(s.types.is_empty());
    // It is unknown now.
    h.worker_heartbeat(W1);
    h.expect_reregister(Side::Backend, W1);
}

#[test]
fn a_result_from_a_worker_refreshes_its_liveness() {
    let mut h = Harness::new().and_worker(1);
    h.connect(CA);
    h.at(2000);
    h.client_heartbeat(CA);
    h.request_dispatched(CA, W1, 7, 1);
    h.at(2900);
    h.result_answered(W1, CA, 7, 1);
    h.at(4500);
    h.client_heartbeat(CA);
    h.tick_at(5900);
    let _ = h.take();
    assert_eq!(h.stats().workers, 1, "heard at 2900: alive until 5900");
    h.tick_at(5901);
    let _ = h.take();
    assert_eq!(h.stats().workers, 0);
}

/// What a peer sends that is not a sign of life (protocol.md §7.2): a header
/// that does not parse, a wrong major version, an ERROR, and a valid message
/// of a kind the socket does not take. `other_kind` is that last one.
fn no_sign_of_life(other_kind: Message) -> Vec<(Vec<u8>, Payload)> {
    vec![
        (vec![0xFF, 0xFF], Payload::new()),
        (
            with_major(Message::Heartbeat { heartbeat_ms: 0 }, 2),
            Payload::new(),
        ),
        encode(Message::Error(ErrorReply {
            error: "cannot read that".into(),
            request: None,
            status: None,
        })),
        encode(other_kind),
    ]
}

#[test]
fn only_valid_messages_the_backend_takes_keep_a_worker_alive() {
    let mut h = Harness::new().and_worker(1);
    h.connect(CA);
    h.request_dispatched(CA, W1, 7, 1);
    // From 1000 ms on, W1 sends only what is no sign of life: it was last
    // heard at 0 (READY), so it is dead after 3 x 1000 ms all the same.
    let welcome = Message::Welcome {
        heartbeat_ms: HB,
        max_message_size: 0,
    };
    for (i, (header, body)) in no_sign_of_life(welcome).into_iter().enumerate() {
        h.at(1000 + 500 * i as u64);
        h.backend_raw(W1, &header, body);
    }
    h.client_heartbeat(CA);
    let answers = h.take();
    assert_eq!(answers.len(), 3, "the ERROR is not answered");
    assert!(answers.iter().all(|o| matches!(o.2, Message::Error(_))));
    h.tick_at(3000);
    let _ = h.take();
    assert_eq!(h.stats().workers, 1);
    h.tick_at(3001);
    h.expect_status(CA, 7, 1, Status::WorkerDeath);
    assert_eq!(h.stats().worker_deaths, 1);
}

#[test]
fn only_valid_messages_the_frontend_takes_keep_a_client_alive() {
    let mut h = Harness::with_client();
    let ready = Message::Ready(Ready {
        heartbeat_ms: HB,
        capacity: 1,
        request_types: vec![7],
        type_names: Vec::new(),
        name: None,
    });
    let mut inputs = no_sign_of_life(ready);
    // STATS_QUERY is outside any session (§4), and a REQUEST whose payload
    // is both inline and in a frame is malformed.
    inputs.push(encode(Message::StatsQuery));
    let (header, _) = encode(Message::Request(req(7, 1, Flags::empty(), &[b"a"])));
    inputs.push((header, payload(&[b"b"])));
    for (i, (header, body)) in inputs.into_iter().enumerate() {
        h.at(1000 + 300 * i as u64);
        h.frontend_raw(CA, &header, body);
    }
    let _ = h.take();
    h.tick_at(3000);
    let _ = h.take();
    assert_eq!(h.stats().clients, 1);
    h.tick_at(3001);
    let _ = h.take();
    let s = h.stats();
    assert_eq!((s.clients, s.client_deaths), (0, 1));
}

#[test]
fn a_worker_heartbeat_can_announce_a_new_interval() {
    let mut h = Harness::new().and_worker(1);
    h.worker_sends(W1, Message::Heartbeat { heartbeat_ms: 100 });
    h.tick_at(300);
    let _ = h.take();
    assert_eq!(h.stats().workers, 1);
    h.tick_at(301);
    let _ = h.take();
    assert_eq!((h.stats().workers, h.stats().worker_deaths), (0, 1));
}

#[test]
fn next_tick_follows_the_shortest_interval() {
    let mut h = Harness::new();
    assert_eq!(h.core.next_tick(), h.t0 + Duration::from_millis(500));
    h.ready_hb(W1, &[7], 1, 200);
    h.tick_at(10);
    assert_eq!(h.core.next_tick(), h.t0 + Duration::from_millis(110));
}

#[test]
fn a_silent_client_is_forgotten_after_liveness_times_its_interval() {
    let mut h = Harness::new();
    h.hello_every(CA, Some("alice"), 200);
    h.expect_welcome(Side::Frontend, CA);
    h.connect(CB);
    h.tick_at(600);
    h.expect_nothing();
    assert_eq!(h.stats().clients, 2);
    h.tick_at(601);
    let s = h.quiet_stats();
    assert_eq!((s.clients, s.client_deaths), (1, 1));
    // Its name is released.
    h.request_reply_to(CB, (7, 1), Flags::empty(), "alice");
    h.expect_status(CB, 7, 1, Status::UnknownReplyTo);
    // And it is unknown: a heartbeat asks it to greet again.
    h.client_heartbeat(CA);
    h.expect_reregister(Side::Frontend, CA);
}

#[test]
fn a_client_heartbeat_can_announce_a_new_interval() {
    let mut h = Harness::with_client();
    h.client_sends(CA, Message::Heartbeat { heartbeat_ms: 5000 });
    h.tick_at(14_000);
    let _ = h.take();
    assert_eq!(h.stats().clients, 1);
    h.client_heartbeat(CA);
    h.tick_at(29_000);
    let _ = h.take();
    assert_eq!(h.stats().clients, 1);
    h.tick_at(29_001);
    let _ = h.take();
    assert_eq!(h.stats().clients, 0);
}

#[test]
fn a_heartbeat_too_long_for_the_clock_means_never_not_a_panic() {
    // `Duration::MAX` is how a user says "never"; `now + heartbeat` would
    // overflow the clock and panic the driver thread.
    let mut h = Harness::with_config(|c| c.heartbeat = Duration::MAX);
    h.tick_at(3_600_000);
    h.expect_nothing();
}
