//! Deadlines (docs/deadlines.md): a request queued past its deadline is
//! ended `EXPIRED` and never dispatched; a dispatch carries the time left.

use super::*;

/// A REQUEST from `client` with `deadline_ms` left.
fn request_within(h: &mut Harness, client: &[u8], id: u64, flags: Flags, deadline_ms: u32) {
    let mut r = req(7, id, flags, &[b"job"]);
    r.deadline_ms = deadline_ms;
    h.client_sends(client, Message::Request(r));
}

#[test]
fn a_queued_request_expires_at_its_deadline_and_never_runs() {
    let mut h = Harness::with_client();
    request_within(&mut h, CA, 1, Flags::empty(), 500);
    h.expect_nothing();
    // The next tick comes at the deadline, not a heartbeat later.
    assert_eq!(h.core.next_tick(), h.t0 + Duration::from_millis(500));
    h.client_heartbeat(CA);
    h.tick_at(500);
    let r = h.expect_status(CA, 7, 1, Status::Expired);
    assert!(r.error.unwrap_or_default().contains("deadline"));
    assert_eq!(h.stats().requests_expired, 1);
    assert_eq!(h.stats().pending, 0);
    // A worker that comes later gets nothing: the key is free again.
    h.connect_worker(W1, &[7], 1);
    h.expect_nothing();
    h.request_dispatched(CA, W1, 7, 1);
}

#[test]
fn a_request_taken_from_the_queue_late_expires_instead_of_running() {
    let mut h = Harness::with_client();
    request_within(&mut h, CA, 1, Flags::empty(), 100);
    request_within(&mut h, CA, 2, Flags::empty(), 0);
    // No tick ran since the deadline: the worker's arrival is the check.
    h.at(150);
    h.ready(W1, &[7], 1);
    h.expect_welcome(Side::Backend, W1);
    h.expect_status(CA, 7, 1, Status::Expired);
    h.expect_dispatch(W1, 7, 2, 1);
}

#[test]
fn a_dispatch_carries_the_time_left() {
    let mut h = Harness::with_client();
    request_within(&mut h, CA, 1, Flags::empty(), 2000);
    h.at(300);
    h.connect_worker(W1, &[7], 1);
    let d = h.expect_dispatch(W1, 7, 1, 1);
    assert_eq!(d.deadline_ms, 1700);
    // Without a deadline, none is sent.
    h.result_answered(W1, CA, 7, 1);
    h.request(CA, 7, 2, Flags::empty(), &[]);
    assert_eq!(h.expect_dispatch(W1, 7, 2, 1).deadline_ms, 0);
}

#[test]
fn a_one_way_request_past_its_deadline_is_dropped_and_counted() {
    let mut h = Harness::with_client();
    request_within(&mut h, CA, 1, Flags::ONE_WAY, 100);
    h.client_heartbeat(CA);
    h.tick_at(100);
    h.expect_nothing();
    assert_eq!(h.stats().requests_expired, 1);
}

#[test]
fn a_request_in_flight_is_not_expired_by_the_broker() {
    let mut h = Harness::with_client_and_worker(1);
    request_within(&mut h, CA, 1, Flags::empty(), 100);
    h.expect_dispatch(W1, 7, 1, 1);
    h.worker_heartbeat(W1);
    h.client_heartbeat(CA);
    h.tick_at(200);
    h.expect_nothing();
    // Its worker got it in time: its result is the outcome.
    h.result_answered(W1, CA, 7, 1);
}

#[test]
fn a_retry_past_the_deadline_expires_instead() {
    let mut h = Harness::with_client_and_worker(1);
    h.connect_worker(W2, &[8], 1);
    request_within(&mut h, CA, 1, Flags::RETRY_ON_DEATH, 1000);
    h.expect_dispatch(W1, 7, 1, 1);
    // W1 dies after the deadline: the retry is not dispatched.
    kill_by_silence(&mut h, W1, &[W2], &[CA]);
    let out = h.take();
    assert!(
        out.iter()
            .any(|o| matches!(&o.2, Message::Response(r) if r.status == Status::Expired)),
        "{out:?}"
    );
    assert_eq!(h.stats().requests_expired, 1);
}

#[test]
fn a_takeover_brings_its_own_deadline() {
    let mut h = Harness::with_two_clients();
    request_within(&mut h, CA, 1, Flags::ALLOW_REDIRECT, 100);
    // CB takes it over without a deadline: it no longer expires.
    h.request(CB, 7, 1, Flags::empty(), &[]);
    h.expect_status(CA, 7, 1, Status::Redirected);
    h.client_heartbeat(CA);
    h.client_heartbeat(CB);
    h.tick_at(200);
    h.expect_nothing();
    h.connect_worker(W1, &[7], 1);
    h.expect_dispatch(W1, 7, 1, 1);
}
