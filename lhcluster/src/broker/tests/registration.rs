//! Re-registration (`READY` again) and `DISCONNECT`: draining workers,
//! forgotten clients, origins that survive a reconnect.

use super::*;

#[test]
fn ready_again_keeps_in_flight_requests_and_updates_the_registration() {
    let mut h = Harness::with_request_running(2);
    h.request_dispatched(CA, W1, 7, 2);
    h.request(CA, 7, 3, Flags::empty(), &[]);
    h.request(CA, 8, 1, Flags::empty(), &[]);
    h.request_held(CA, 7, 4, Flags::empty());

    // Capacity 3 and one more type: exactly one free credit (3 - 2).
    h.ready(W1, &[7, 8, 8], 3);
    h.expect_welcome(Side::Backend, W1);
    let d = h.expect_dispatch_to(W1);
    assert_eq!((d.request_type, d.request_id, d.attempt), (8, 1, 1));
    let s = h.quiet_stats();
    assert_eq!(
        (s.workers, s.workers_registered, s.in_flight, s.pending),
        (1, 1, 3, 2)
    );
    assert_eq!(h.type_stats(8), ts(1, 1, 0, 0, 1, 1));
    assert_eq!(h.type_stats(7).workers, 1);

    // The old in-flight requests complete normally.
    h.result(W1, 7, 1, Status::Ok, &[b"one"]);
    let r = h.expect_status(CA, 7, 1, Status::Ok);
    assert_eq!(frames(&r.payload), owned(&[b"one"]));
    h.expect_dispatch_alone(W1, 7, 3, 1);
    assert_eq!(h.stats().unknown_results, 0);

    // Capacity down to 1 with 3 in flight: no work until below 1.
    h.ready(W1, &[7, 8], 1);
    h.expect_welcome(Side::Backend, W1);
    h.expect_nothing();
    h.result_answered(W1, CA, 7, 2);
    h.result_answered_alone(W1, CA, 8, 1);
    h.result_answered(W1, CA, 7, 3);
    h.expect_dispatch_alone(W1, 7, 4, 1);
}

#[test]
fn disconnect_with_work_in_flight_drains_the_worker() {
    let mut h = Harness::with_request_running(2);
    h.request_dispatched_with(CA, W1, (7, 2), Flags::RETRY_ON_DEATH, &[]);
    h.worker_sends(W1, Message::Disconnect { route: Vec::new() });
    h.expect_nothing();
    assert_eq!(h.stats().workers, 1);
    // No new work for it, even once it has a free credit again.
    h.request_held(CA, 7, 3, Flags::empty());
    h.result(W1, 7, 1, Status::Ok, &[b"r1"]);
    h.expect_status_alone(CA, 7, 1, Status::Ok);
    assert_eq!(h.stats().workers, 1);
    h.result(W1, 7, 2, Status::Failed, &[]);
    h.expect_status_alone(CA, 7, 2, Status::Failed);
    let s = h.stats();
    assert_eq!(
        (s.workers, s.worker_deaths, s.requests_worker_death),
        (0, 0, 0)
    );
    assert_eq!((s.pending, s.in_flight), (1, 0));
    // Gone: a heartbeat gets REREGISTER.
    h.worker_heartbeat(W1);
    h.expect_reregister(Side::Backend, W1);
    // Another worker picks up the queued request.
    h.connect_worker(W2, &[7], 1);
    h.expect_dispatch_alone(W2, 7, 3, 1);
}

#[test]
fn a_draining_worker_with_free_credit_gets_no_new_work() {
    let mut h = Harness::with_request_running(3);
    h.worker_sends(W1, Message::Disconnect { route: Vec::new() });
    h.request_held(CA, 7, 2, Flags::empty());
    assert_eq!(h.stats().pending, 1);
    // The draining worker still counts as serving the type for FAIL_FAST:
    // the request queues instead of getting NO_WORKERS.
    h.request_held(CA, 7, 3, Flags::FAIL_FAST);
    assert_eq!(h.stats().pending, 2);
    h.connect_worker(W2, &[7], 1);
    h.expect_dispatch(W2, 7, 2, 1);
    h.result_answered_alone(W1, CA, 7, 1);
    // W1 is gone; W2 carries on with the queue.
    assert_eq!(h.stats().workers, 1);
    h.result_answered(W2, CA, 7, 2);
    h.expect_dispatch_alone(W2, 7, 3, 1);
}

#[test]
fn a_draining_worker_that_goes_silent_dies() {
    let mut h = Harness::with_request_running(1);
    h.worker_sends(W1, Message::Disconnect { route: Vec::new() });
    h.expect_nothing();
    kill_by_silence(&mut h, W1, &[], &[CA]);
    h.expect_status_alone(CA, 7, 1, Status::WorkerDeath);
    assert_eq!(h.stats().workers, 0);
}

#[test]
fn ready_after_disconnect_cancels_draining() {
    let mut h = Harness::with_request_running(2);
    h.worker_sends(W1, Message::Disconnect { route: Vec::new() });
    h.request_held(CA, 7, 2, Flags::empty());
    h.ready(W1, &[7], 2);
    h.expect_welcome(Side::Backend, W1);
    h.expect_dispatch(W1, 7, 2, 1);
    h.result_answered_alone(W1, CA, 7, 1);
    assert_eq!(h.stats().workers, 1);
}

#[test]
fn disconnect_from_an_idle_worker_removes_it_at_once() {
    let mut h = Harness::with_client_and_worker(1).and_worker_2(1);
    h.worker_sends(W1, Message::Disconnect { route: Vec::new() });
    let s = h.quiet_stats();
    assert_eq!((s.workers, s.worker_deaths), (1, 0));
    assert_eq!(h.type_stats(7).workers, 1);
    h.request_dispatched(CA, W2, 7, 1);
    h.expect_nothing();
}

#[test]
fn client_disconnect_forgets_it_and_its_name() {
    let mut h = Harness::new();
    h.connect_named(CA, "alice");
    h.connect(CB);
    h.connect_worker(W1, &[7], 1);
    h.request_dispatched(CA, W1, 7, 1);
    h.client_sends(CA, Message::Disconnect { route: Vec::new() });
    h.expect_nothing();
    assert_eq!(h.stats().clients, 1);
    h.request_reply_to(CB, (7, 2), Flags::empty(), "alice");
    h.expect_status(CB, 7, 2, Status::UnknownReplyTo);
    // The admitted request is not cancelled; its response is still
    // addressed to the routing id (the ROUTER delivers it if the client
    // comes back, or refuses it and the driver counts it undeliverable).
    h.result_answered(W1, CA, 7, 1);
}

#[test]
fn response_reaches_a_client_that_reconnected_with_the_same_routing_id() {
    let mut h = Harness::with_client();
    h.request(CA, 7, 1, Flags::empty(), &[]);
    h.client_sends(CA, Message::Disconnect { route: Vec::new() });
    h.connect(CA);
    h.connect_worker(W1, &[7], 1);
    h.expect_dispatch(W1, 7, 1, 1);
    h.result(W1, 7, 1, Status::Ok, &[b"late"]);
    let r = h.expect_status(CA, 7, 1, Status::Ok);
    assert_eq!(frames(&r.payload), owned(&[b"late"]));
    assert_eq!(h.stats().undeliverable, 0);
}

#[test]
fn resend_after_the_client_was_forgotten_is_still_the_same_origin() {
    let mut h = Harness::with_client();
    h.request(CA, 7, 1, Flags::empty(), &[]);
    h.tick_at(3001);
    let _ = h.take();
    assert_eq!(h.stats().clients, 0);
    h.request(CA, 7, 1, Flags::empty(), &[]);
    h.expect_reregister(Side::Frontend, CA);
    h.expect_nothing();
    assert_eq!(h.stats().requests_rejected, 0);
}
