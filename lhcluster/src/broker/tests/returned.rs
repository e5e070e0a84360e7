//! RETURNED (protocol 1.8, issue 17): a draining worker gives back a
//! dispatch it has not started. The request goes back to the head of its
//! type's queue with the payload the RESULT carries, the credit comes back,
//! no attempt is used and the requester is told nothing; a RETURNED that
//! does not answer the current dispatch is dropped and counted.

use super::*;
use crate::protocol::Cancel;

fn disconnect(h: &mut Harness, worker: &[u8]) {
    h.worker_sends(worker, Message::Disconnect { route: Vec::new() });
}

/// `worker` gives back its current dispatch of `(t, id)` with `body`.
fn returned(h: &mut Harness, worker: &[u8], t: u32, id: u64, body: &[&[u8]]) {
    h.result(worker, t, id, Status::Returned, body);
}

/// W1 (capacity 3: one running, two prefetched) holds 7/1, 7/2, 7/3; 7/4
/// is queued; W1 says DISCONNECT.
fn draining_with_three() -> Harness {
    let mut h = Harness::with_client_and_worker(3);
    for id in 1..=3 {
        h.request_dispatched_with(
            CA,
            W1,
            (7, id),
            Flags::empty(),
            &[format!("job{id}").as_bytes()],
        );
    }
    h.request_held(CA, 7, 4, Flags::empty());
    disconnect(&mut h, W1);
    h.expect_nothing();
    h
}

#[test]
fn returned_requests_go_back_to_the_head_of_the_queue_in_their_order() {
    let mut h = draining_with_three();
    // 7/1 runs; 7/2 and 7/3 come back, in order: ahead of 7/4.
    returned(&mut h, W1, 7, 2, &[b"job2"]);
    returned(&mut h, W1, 7, 3, &[b"job3"]);
    let s = h.quiet_stats();
    assert_eq!(s.requests_returned, 2);
    assert_eq!((s.pending, s.in_flight, s.workers), (3, 1, 1));
    assert_eq!(s.requests_completed, 0, "a returned request is no outcome");
    // W2 (capacity 2) takes them first, with the payload and the attempt
    // they had: 1, not a retry.
    h.connect_worker(W2, &[7], 2);
    h.expect_dispatch_of(W2, (7, 2), 1, &[b"job2"]);
    h.expect_dispatch_of(W2, (7, 3), 1, &[b"job3"]);
    h.expect_nothing();
    // W1's running request still ends as usual, and W1 then goes.
    h.result_answered_alone(W1, CA, 7, 1);
    assert_eq!(h.stats().workers, 1);
    h.result_answered(W2, CA, 7, 2);
    h.expect_dispatch_alone(W2, 7, 4, 1);
    h.result_relayed(W2, CA, (7, 3), &[b"r3"]);
    let s = h.stats();
    assert_eq!((s.requests_retried, s.requests_worker_death), (0, 0));
    assert_eq!(s.requests_dispatched, 6, "7/1-7/4 once, 7/2 and 7/3 again");
}

#[test]
fn a_returned_request_goes_at_once_to_a_free_worker() {
    let mut h = Harness::with_client_and_worker(2).and_worker_2(1);
    // Least recently used first: W1, W2, then W1 again.
    h.request_dispatched_with(CA, W1, (7, 1), Flags::empty(), &[b"a"]);
    h.request_dispatched_with(CA, W2, (7, 2), Flags::empty(), &[b"b"]);
    h.request_dispatched_with(CA, W1, (7, 3), Flags::empty(), &[b"c"]);
    // W2 finishes: free, nothing queued.
    h.result_relayed(W2, CA, (7, 2), &[]);
    disconnect(&mut h, W1);
    returned(&mut h, W1, 7, 3, &[b"c"]);
    h.expect_dispatch_of(W2, (7, 3), 1, &[b"c"]);
    h.expect_nothing();
    assert_eq!(h.stats().requests_returned, 1);
}

#[test]
fn credits_stay_exact_and_the_draining_worker_goes_after_its_last_returned() {
    let mut h = draining_with_three();
    h.result_answered_alone(W1, CA, 7, 1);
    returned(&mut h, W1, 7, 2, &[b"job2"]);
    assert_eq!(h.stats().workers, 1, "7/3 is still W1's");
    assert_eq!(h.stats().in_flight, 1);
    returned(&mut h, W1, 7, 3, &[b"job3"]);
    let s = h.quiet_stats();
    assert_eq!((s.workers, s.worker_deaths, s.in_flight), (0, 0, 0));
    assert_eq!(s.pending, 3);
    assert_eq!(h.type_stats(7), ts(4, 3, 1, 3, 0, 0));
    // Gone: a heartbeat gets REREGISTER.
    h.worker_heartbeat(W1);
    h.expect_reregister(Side::Backend, W1);
    // A worker of capacity 1 gets them one at a time, in order: its
    // credits were not disturbed.
    h.connect_worker(W2, &[7], 1);
    h.expect_dispatch_of(W2, (7, 2), 1, &[b"job2"]);
    h.expect_nothing();
    h.result_answered(W2, CA, 7, 2);
    h.expect_dispatch_of(W2, (7, 3), 1, &[b"job3"]);
    h.expect_nothing();
    h.result_answered(W2, CA, 7, 3);
    h.expect_dispatch_alone(W2, 7, 4, 1);
}

#[test]
fn a_returned_retry_keeps_its_attempt_and_its_tries() {
    let mut h = Harness::with_client_and_worker(2);
    h.request_dispatched_with(CA, W1, (7, 1), Flags::RETRY_ON_DEATH, &[b"job"]);
    disconnect(&mut h, W1);
    returned(&mut h, W1, 7, 1, &[b"job"]);
    assert_eq!(h.stats().workers, 0);
    h.connect_worker(W2, &[7], 1);
    // Attempt 1 again: the return used no try (max_tries 2)...
    let d = h.expect_dispatch(W2, 7, 1, 1);
    assert_eq!(frames(&d.payload), owned(&[b"job"]));
    // ... so a death of W2 still retries it, as attempt 2.
    kill_by_silence(&mut h, W2, &[], &[CA]);
    h.connect_worker(W3, &[7], 1);
    h.expect_dispatch_of(W3, (7, 1), 2, &[b"job"]);
    h.result_relayed(W3, CA, (7, 1), &[b"done"]);
    let s = h.stats();
    assert_eq!((s.requests_returned, s.requests_retried), (1, 1));
}

#[test]
fn a_returned_request_without_retry_on_death_is_dispatched_again() {
    // Without RETRY_ON_DEATH the broker kept no copy: the payload is the
    // one RETURNED carries.
    let mut h = Harness::with_client_and_worker(1);
    h.request_dispatched_with(CA, W1, (7, 1), Flags::RECEIPT_ON_SEND, &[b"job"]);
    h.expect_receipt_sent(CA, 7, 1);
    assert_eq!(h.stats().pending_bytes, 0);
    disconnect(&mut h, W1);
    returned(&mut h, W1, 7, 1, &[b"job"]);
    assert_eq!(h.stats().pending_bytes, 3, "held again while queued");
    h.connect_worker(W2, &[7], 1);
    // No second RECEIPT_SENT: the requester had it.
    h.expect_dispatch_of(W2, (7, 1), 1, &[b"job"]);
    h.expect_nothing();
    assert_eq!(h.stats().pending_bytes, 0);
}

#[test]
fn a_stale_or_unknown_returned_is_dropped_and_counted() {
    let mut h = Harness::with_client_and_worker(2);
    let d = h.request_dispatched_with(CA, W1, (7, 1), Flags::empty(), &[b"job"]);
    disconnect(&mut h, W1);
    // Another tag: stale; nothing changes.
    h.result_tagged(
        W1,
        7,
        1,
        (1, d.dispatch_tag.wrapping_add(1)),
        Status::Returned,
        &[b"job"],
    );
    // A request W1 was never given: unknown.
    h.result_tagged(W1, 7, 9, (1, 1), Status::Returned, &[]);
    let s = h.quiet_stats();
    assert_eq!((s.stale_results, s.unknown_results), (1, 1));
    assert_eq!((s.requests_returned, s.pending, s.in_flight), (0, 0, 1));
    assert_eq!(s.workers, 1);
    // The current one still answers.
    h.result_relayed(W1, CA, (7, 1), &[b"r"]);
    assert_eq!(h.stats().workers, 0);
    // A RETURNED once the request has ended is unknown too.
    returned(&mut h, W1, 7, 1, &[b"job"]);
    h.expect_reregister(Side::Backend, W1);
}

#[test]
fn a_cancelled_request_that_comes_back_ends_there() {
    let mut h = Harness::with_client_and_worker(1);
    h.request_dispatched_with(CA, W1, (7, 1), Flags::RETRY_ON_DEATH, &[b"job"]);
    h.client_sends(
        CA,
        Message::Cancel(Cancel {
            request_type: 7,
            request_id: 1,
            route: Vec::new(),
            dispatch_tag: 0,
        }),
    );
    let _ = h.expect_kind(Side::Backend, W1, "CANCEL");
    disconnect(&mut h, W1);
    returned(&mut h, W1, 7, 1, &[b"job"]);
    let s = h.quiet_stats();
    assert_eq!((s.requests_returned, s.pending, s.in_flight), (1, 0, 0));
    assert_eq!(s.workers, 0);
    // Never run again, and the key is free.
    h.connect_worker(W2, &[7], 1);
    h.expect_nothing();
    h.request_dispatched(CA, W2, 7, 1);
}

#[test]
fn a_returned_request_past_its_deadline_expires_instead() {
    let mut h = Harness::with_client_and_worker(1);
    h.client_sends(
        CA,
        Message::Request(Request {
            deadline_ms: 100,
            ..req(7, 1, Flags::empty(), &[b"job"])
        }),
    );
    h.expect_dispatch(W1, 7, 1, 1);
    disconnect(&mut h, W1);
    h.at(200);
    returned(&mut h, W1, 7, 1, &[b"job"]);
    h.connect_worker(W2, &[7], 1);
    h.expect_status_alone(CA, 7, 1, Status::Expired);
}

#[test]
fn a_returned_from_a_worker_that_is_not_draining_is_taken() {
    // Only a draining worker sends it, but a broker takes one all the
    // same (the worker keeps serving): another free worker first.
    let mut h = Harness::with_client_and_worker(1).and_worker_2(1);
    h.request_dispatched_with(CA, W1, (7, 1), Flags::empty(), &[b"a"]);
    returned(&mut h, W1, 7, 1, &[b"a"]);
    h.expect_dispatch_of(W2, (7, 1), 1, &[b"a"]);
    h.expect_nothing();
    assert_eq!(h.stats().workers, 2);
    h.request_dispatched(CA, W1, 7, 2);
}
