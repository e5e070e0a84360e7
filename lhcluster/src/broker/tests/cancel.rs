//! Cancel (protocol 1.5, docs/deadlines.md): the requester takes a request
//! back. Queued: it ends unrun, nothing is sent. In flight: its worker is
//! told (CANCEL with the dispatch's tag), and its result only gives the
//! credit back. Anyone else's CANCEL is ignored.

use super::*;
use crate::protocol::Cancel;

fn cancel_msg(t: u32, id: u64, route: &[u8]) -> Message {
    Message::Cancel(Cancel {
        request_type: t,
        request_id: id,
        route: route.to_vec(),
        dispatch_tag: 0,
    })
}

/// `client` cancels `(t, id)`.
fn cancel(h: &mut Harness, client: &[u8], t: u32, id: u64) {
    h.client_sends(client, cancel_msg(t, id, &[]));
}

/// The next output must be a CANCEL to `worker` for `(t, id)`; returns
/// its tag.
fn expect_cancel(h: &mut Harness, worker: &[u8], t: u32, id: u64) -> u64 {
    match h.expect_kind(Side::Backend, worker, "CANCEL") {
        Message::Cancel(c) => {
            assert_eq!((c.request_type, c.request_id), (t, id));
            assert!(c.route.is_empty());
            c.dispatch_tag
        }
        _ => unreachable!("a CANCEL"),
    }
}

/// A READY whose header says minor `minor` (an older worker).
fn ready_with_minor(h: &mut Harness, worker: &[u8], types: &[u32], capacity: u32, minor: u8) {
    let (mut header, _) = encode(Message::Ready(Ready {
        heartbeat_ms: HB,
        capacity,
        request_types: types.to_vec(),
        type_names: Vec::new(),
        name: None,
    }));
    assert_eq!(&header[..3], &[0x08, 0x01, 0x10]);
    header[3] = minor;
    h.backend_raw(worker, &header, Payload::new());
    h.expect_welcome(Side::Backend, worker);
}

#[test]
fn a_queued_request_cancelled_never_runs_and_frees_its_key() {
    let mut h = Harness::with_client();
    h.request_held(CA, 7, 1, Flags::empty());
    h.request_held(CA, 7, 2, Flags::empty());
    cancel(&mut h, CA, 7, 1);
    // Nothing is sent: the caller ended the request when it cancelled.
    let s = h.quiet_stats();
    assert_eq!(
        (s.requests_cancelled, s.pending, s.cancels_ignored),
        (1, 1, 0)
    );
    // A worker gets the other one only.
    h.connect_worker(W1, &[7], 2);
    h.expect_dispatch_alone(W1, 7, 2, 1);
    // The key is free: the same (type, id) is a new request.
    h.request_dispatched(CA, W1, 7, 1);
    h.result_answered_alone(W1, CA, 7, 1);
}

#[test]
fn a_running_request_cancelled_tells_its_worker_and_drops_the_result() {
    let mut h = Harness::with_client_and_worker(1);
    let d = h.request_dispatched_with(CA, W1, (7, 1), Flags::RECEIPT_ON_SEND, &[b"job"]);
    h.expect_receipt_sent(CA, 7, 1);
    h.request_held(CA, 7, 2, Flags::empty());
    cancel(&mut h, CA, 7, 1);
    let tag = expect_cancel(&mut h, W1, 7, 1);
    assert_eq!(tag, d.dispatch_tag, "the CANCEL names the dispatch");
    h.expect_nothing();
    assert_eq!(h.stats().requests_cancelled, 1);
    // While the worker still runs it, its key stays taken: a new request
    // under it is refused (its caller may ask again later).
    h.request(CA, 7, 1, Flags::empty(), &[]);
    let r = h.expect_status(CA, 7, 1, Status::Rejected);
    assert!(r.error.unwrap_or_default().contains("cancelled"));
    // Its result gives the credit back and goes nowhere: the queued
    // request is dispatched, and no RESPONSE for 7/1 goes out.
    h.result(W1, 7, 1, Status::Failed, &[]);
    h.expect_dispatch_alone(W1, 7, 2, 1);
    h.result_answered_alone(W1, CA, 7, 2);
    assert_eq!(h.stats().in_flight, 0);
    // Now the key is free.
    h.request_dispatched(CA, W1, 7, 1);
}

#[test]
fn a_cancel_sent_twice_cancels_once() {
    let mut h = Harness::with_request_running(1);
    cancel(&mut h, CA, 7, 1);
    expect_cancel(&mut h, W1, 7, 1);
    cancel(&mut h, CA, 7, 1);
    let s = h.quiet_stats();
    assert_eq!((s.requests_cancelled, s.cancels_ignored), (1, 0));
}

#[test]
fn another_clients_cancel_is_ignored_and_counted() {
    let mut h = Harness::with_two_clients().and_worker(1);
    h.request_dispatched(CA, W1, 7, 1);
    h.request_held(CA, 7, 2, Flags::empty());
    cancel(&mut h, CB, 7, 1);
    cancel(&mut h, CB, 7, 2);
    // No CANCEL to the worker, nothing to anyone.
    let s = h.quiet_stats();
    assert_eq!((s.requests_cancelled, s.cancels_ignored), (0, 2));
    // Both still end for their requester.
    h.result(W1, 7, 1, Status::Ok, &[]);
    h.expect_status(CA, 7, 1, Status::Ok);
    h.dispatch_answered(W1, CA, 7, 2);
}

#[test]
fn a_cancel_for_a_request_that_ended_is_counted_and_changes_nothing() {
    let mut h = Harness::with_request_running(1);
    h.result_answered(W1, CA, 7, 1);
    // The outcome and the CANCEL crossed.
    cancel(&mut h, CA, 7, 1);
    let s = h.quiet_stats();
    assert_eq!((s.requests_cancelled, s.cancels_ignored), (0, 1));
    h.request_dispatched(CA, W1, 7, 2);
}

#[test]
fn a_request_queued_again_by_a_retry_is_cancelled_out_of_the_queue() {
    let mut h = Harness::with_a_retry_running(&[b"job"]);
    h.connect_worker(W2, &[8], 1);
    // W1 dies: the request waits at the head of the queue for a retry.
    kill_by_silence(&mut h, W1, &[W2], &[CA]);
    h.expect_nothing();
    assert_eq!((h.stats().requests_retried, h.stats().pending), (1, 1));
    cancel(&mut h, CA, 7, 1);
    h.expect_nothing();
    assert_eq!(h.stats().pending, 0);
    // No retry ever runs it.
    h.connect_worker(W3, &[7], 1);
    h.expect_nothing();
}

#[test]
fn a_running_request_cancelled_is_not_retried_nor_answered_when_its_worker_dies() {
    let mut h = Harness::with_client_and_worker(1).and_worker_2(1);
    let flags = Flags::RETRY_ON_DEATH | Flags::NOTIFY_ON_DEATH;
    h.request_dispatched_with(CA, W1, (7, 1), flags, &[b"job"]);
    cancel(&mut h, CA, 7, 1);
    expect_cancel(&mut h, W1, 7, 1);
    assert_eq!(h.stats().pending_bytes, 0, "the retry copy is let go");
    // W1 dies before its result: no retry on W2, no WORKER_DEATH to CA.
    kill_by_silence(&mut h, W1, &[W2], &[CA]);
    let s = h.quiet_stats();
    assert_eq!((s.requests_retried, s.requests_worker_death), (0, 0));
    assert_eq!(s.in_flight, 0);
    // The key is free.
    h.request_dispatched(CA, W2, 7, 1);
}

#[test]
fn after_a_takeover_only_the_new_requester_may_cancel() {
    let mut h = Harness::with_two_clients();
    h.request_held(CA, 7, 1, Flags::ALLOW_REDIRECT);
    h.request(CB, 7, 1, Flags::empty(), &[]);
    h.expect_status(CA, 7, 1, Status::Redirected);
    // CA no longer owns it: its CANCEL is ignored.
    cancel(&mut h, CA, 7, 1);
    h.expect_nothing();
    assert_eq!(h.stats().cancels_ignored, 1);
    // CB does: taken out of the queue.
    cancel(&mut h, CB, 7, 1);
    h.expect_nothing();
    assert_eq!((h.stats().requests_cancelled, h.stats().pending), (1, 0));
    h.connect_worker(W1, &[7], 1);
    h.expect_nothing();
}

#[test]
fn a_request_taken_over_in_flight_is_cancelled_by_its_new_requester() {
    let mut h = Harness::with_two_clients().and_worker(1);
    h.request_dispatched_with(CA, W1, (7, 1), Flags::ALLOW_REDIRECT, &[]);
    h.request(CB, 7, 1, Flags::empty(), &[]);
    h.expect_status(CA, 7, 1, Status::Redirected);
    cancel(&mut h, CA, 7, 1);
    h.expect_nothing();
    cancel(&mut h, CB, 7, 1);
    expect_cancel(&mut h, W1, 7, 1);
    h.result(W1, 7, 1, Status::Ok, &[]);
    h.expect_nothing();
}

#[test]
fn a_worker_older_than_1_5_is_not_sent_cancel_and_its_result_is_dropped() {
    let mut h = Harness::with_client();
    ready_with_minor(&mut h, W1, &[7], 1, 4);
    h.request_dispatched(CA, W1, 7, 1);
    h.request_held(CA, 7, 2, Flags::empty());
    cancel(&mut h, CA, 7, 1);
    // A 1.4 worker would refuse kind 25: it is not told, and runs the
    // request to its end.
    h.expect_nothing();
    assert_eq!(h.stats().requests_cancelled, 1);
    h.result(W1, 7, 1, Status::Ok, &[]);
    h.expect_dispatch_alone(W1, 7, 2, 1);
}

#[test]
fn a_proxys_cancel_names_its_client_by_route() {
    let mut h = Harness::new().and_client(PROXY).and_worker(1);
    let proxied = |route: &[u8]| Request {
        route: route.to_vec(),
        ..req(7, 1, Flags::empty(), &[])
    };
    h.client_sends(PROXY, Message::Request(proxied(b"c1")));
    h.expect_dispatch(W1, 7, 1, 1);
    // Another client behind the same proxy: not its request.
    h.client_sends(PROXY, cancel_msg(7, 1, b"c2"));
    h.expect_nothing();
    assert_eq!(h.stats().cancels_ignored, 1);
    h.client_sends(PROXY, cancel_msg(7, 1, b"c1"));
    expect_cancel(&mut h, W1, 7, 1);
    assert_eq!(h.stats().requests_cancelled, 1);
}

#[test]
fn a_malformed_or_misplaced_cancel_is_refused_and_disturbs_nothing() {
    let mut h = Harness::with_request_running(1);
    // A CANCEL with a payload frame: ERROR naming the request.
    let (header, _) = encode(cancel_msg(7, 1, &[]));
    let e = h.frontend_refused(CA, &header, payload(&[b"x"]));
    assert_eq!(
        e.request.map(|r| (r.request_type, r.request_id)),
        Some((7, 1))
    );
    // Without a request type: ERROR.
    let header = unhex_header("08 01 10 05 18 19 30 01");
    h.frontend_refused(CA, &header, Payload::new());
    // From a worker, on the backend: a kind the backend does not take.
    h.worker_sends(W1, cancel_msg(7, 1, &[]));
    h.expect_error(Side::Backend, W1);
    let s = h.stats();
    assert_eq!((s.malformed_frontend, s.malformed_backend), (2, 1));
    assert_eq!((s.requests_cancelled, s.cancels_ignored), (0, 0));
    // The request was not cancelled: its result is its outcome.
    h.result_answered_alone(W1, CA, 7, 1);
}

#[test]
fn a_one_way_request_is_cancelled_too() {
    let mut h = Harness::with_client_and_worker(1);
    let flags = Flags::ONE_WAY | Flags::NOTIFY_ON_DEATH;
    h.request_dispatched_with(CA, W1, (7, 1), flags, &[]);
    cancel(&mut h, CA, 7, 1);
    expect_cancel(&mut h, W1, 7, 1);
    h.result(W1, 7, 1, Status::Ok, &[]);
    h.expect_nothing();
    assert_eq!(h.stats().requests_completed, 1);
}

fn unhex_header(text: &str) -> Vec<u8> {
    text.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}
