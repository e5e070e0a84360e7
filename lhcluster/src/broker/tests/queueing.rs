//! Queueing while no worker is free, least-recently-used worker choice,
//! round-robin over a worker's types, and capacity (credits).

use super::*;

#[test]
fn requests_queue_without_worker_and_are_dispatched_fifo_on_ready() {
    let mut h = Harness::with_two_clients();
    // Ids in non-sorted order: the queue is FIFO, not by id.
    h.request(CA, 7, 30, Flags::empty(), &[b"first"]);
    h.request(CB, 7, 10, Flags::empty(), &[b"second"]);
    h.request(CA, 7, 20, Flags::empty(), &[b"third"]);
    let s = h.quiet_stats();
    assert_eq!((s.pending, s.in_flight, s.requests_dispatched), (3, 0, 0));
    assert_eq!(h.type_stats(7), ts(3, 0, 0, 3, 0, 0));

    h.ready(W1, &[7], 3);
    h.expect_welcome(Side::Backend, W1);
    assert_eq!(
        frames(&h.expect_dispatch(W1, 7, 30, 1).payload),
        owned(&[b"first"])
    );
    assert_eq!(
        frames(&h.expect_dispatch(W1, 7, 10, 1).payload),
        owned(&[b"second"])
    );
    assert_eq!(
        frames(&h.expect_dispatch(W1, 7, 20, 1).payload),
        owned(&[b"third"])
    );
    let s = h.quiet_stats();
    assert_eq!((s.pending, s.in_flight), (0, 3));
    assert_eq!(h.type_stats(7), ts(3, 3, 0, 0, 3, 1));

    h.result(W1, 7, 10, Status::Ok, &[b"r10"]);
    h.expect_status(CB, 7, 10, Status::Ok);
    h.result(W1, 7, 30, Status::Ok, &[b"r30"]);
    h.expect_status(CA, 7, 30, Status::Ok);
    h.result(W1, 7, 20, Status::Ok, &[b"r20"]);
    h.expect_status_alone(CA, 7, 20, Status::Ok);
}

#[test]
fn queued_requests_of_other_types_are_not_given_to_a_worker() {
    let mut h = Harness::with_client();
    h.request(CA, 8, 1, Flags::empty(), &[]);
    h.connect_worker(W1, &[7], 1);
    h.expect_nothing();
    h.request_dispatched(CA, W1, 7, 1);
    h.expect_nothing();
    assert_eq!(h.stats().pending, 1);
    assert_eq!(h.type_stats(8).pending, 1);
}

#[test]
fn capacity_one_worker_gets_queued_work_one_result_at_a_time() {
    let mut h = Harness::with_client();
    for id in 1..=3 {
        h.request(CA, 7, id, Flags::empty(), &[]);
    }
    h.connect_worker(W1, &[7], 1);
    h.dispatch_answered(W1, CA, 7, 1);
    h.dispatch_answered(W1, CA, 7, 2);
    h.expect_dispatch_alone(W1, 7, 3, 1);
}

#[test]
fn least_recently_used_worker_gets_the_next_request() {
    let mut h = Harness::with_client_and_worker(1).and_worker_2(1);
    h.connect_worker(W3, &[7], 1);
    // Registration order first.
    h.request_dispatched(CA, W1, 7, 1);
    h.request_dispatched(CA, W2, 7, 2);
    h.request_dispatched(CA, W3, 7, 3);
    // Complete in the order 2, 3, 1: that is the new LRU order.
    h.result_answered(W2, CA, 7, 2);
    h.result_answered(W3, CA, 7, 3);
    h.result_answered_alone(W1, CA, 7, 1);
    for (id, w) in [(4, W2), (5, W3), (6, W1)] {
        h.request_dispatched(CA, w, 7, id);
    }
    h.expect_nothing();
}

#[test]
fn lru_skips_workers_that_do_not_serve_the_type() {
    let mut h = Harness::with_client();
    h.connect_worker(W1, &[8], 1);
    h.connect_worker(W2, &[7], 1);
    h.connect_worker(W3, &[7, 8], 1);
    h.request_dispatched(CA, W2, 7, 1);
    h.request_dispatched(CA, W3, 7, 2);
    h.request_held(CA, 7, 3, Flags::empty());
    assert_eq!(h.stats().pending, 1);
}

#[test]
fn capacity_two_worker_spreads_between_lru_workers() {
    // A worker with free credits goes to the back of the LRU order after
    // each dispatch, so two capacity-2 workers alternate.
    let mut h = Harness::with_client_and_worker(2).and_worker_2(2);
    for (id, w) in [(1, W1), (2, W2), (3, W1), (4, W2)] {
        h.request_dispatched(CA, w, 7, id);
    }
    h.request_held(CA, 7, 5, Flags::empty());
}

#[test]
fn a_worker_serving_several_types_is_served_round_robin() {
    let mut h = Harness::with_client();
    for t in [1, 2, 3] {
        for i in 0..3 {
            h.request(CA, t, u64::from(t) * 100 + i, Flags::empty(), &[]);
        }
    }
    h.expect_nothing();
    assert_eq!(h.stats().pending, 9);
    h.connect_worker(W1, &[3, 1, 2], 1);
    let mut served = Vec::new();
    for _ in 0..9 {
        let d = h.expect_dispatch_to(W1);
        h.expect_nothing();
        served.push((d.request_type, d.request_id));
        h.result(W1, d.request_type, d.request_id, Status::Ok, &[]);
        h.expect_status(CA, d.request_type, d.request_id, Status::Ok);
    }
    assert_eq!(
        served,
        vec![
            (1, 100),
            (2, 200),
            (3, 300),
            (1, 101),
            (2, 201),
            (3, 301),
            (1, 102),
            (2, 202),
            (3, 302)
        ]
    );
    h.expect_nothing();
    assert_eq!(h.stats().pending, 0);
}

#[test]
fn round_robin_continues_after_the_type_taken_last() {
    let mut h = Harness::with_client();
    h.connect_worker(W1, &[1, 2, 3], 1);
    // Direct dispatch of a type 2 request moves the cursor to 2.
    h.request_dispatched(CA, W1, 2, 1);
    h.request(CA, 1, 1, Flags::empty(), &[]);
    h.request(CA, 3, 1, Flags::empty(), &[]);
    h.request_held(CA, 2, 2, Flags::empty());
    h.result_answered(W1, CA, 2, 1);
    h.expect_dispatch(W1, 3, 1, 1);
    h.result_answered(W1, CA, 3, 1);
    h.expect_dispatch(W1, 1, 1, 1);
    h.result_answered(W1, CA, 1, 1);
    h.expect_dispatch_alone(W1, 2, 2, 1);
}

#[test]
fn a_worker_never_has_more_than_its_capacity_in_flight() {
    let mut h = Harness::with_request_running(2);
    h.request_dispatched(CA, W1, 7, 2);
    h.request(CA, 7, 3, Flags::empty(), &[b"third"]);
    let s = h.quiet_stats();
    assert_eq!((s.pending, s.in_flight), (1, 2));
    assert_eq!(h.type_stats(7), ts(3, 2, 0, 1, 2, 1));

    h.result_answered(W1, CA, 7, 2);
    h.expect_dispatch_of(W1, (7, 3), 1, &[b"third"]);
    let s = h.quiet_stats();
    assert_eq!((s.pending, s.in_flight), (0, 2));
}

#[test]
fn results_not_assigned_to_the_worker_give_no_credit() {
    let mut h = Harness::with_client_and_worker(2).and_worker_2(1);
    h.request_dispatched(CA, W1, 7, 1);
    h.request_dispatched(CA, W2, 7, 2);
    h.request_dispatched(CA, W1, 7, 3);
    // Everyone is full now.
    h.request(CA, 7, 4, Flags::empty(), &[]);
    h.request_held(CA, 7, 5, Flags::empty());

    // Unknown (type, id).
    h.result(W1, 7, 999, Status::Ok, &[]);
    h.expect_nothing();
    // Assigned to another worker.
    h.result(W1, 7, 2, Status::Ok, &[b"forged"]);
    h.expect_nothing();
    // A type the worker does not even serve.
    h.result(W1, 9, 1, Status::Ok, &[]);
    let s = h.quiet_stats();
    assert_eq!(s.unknown_results, 3);
    assert_eq!(s.requests_completed, 0);
    assert_eq!((s.pending, s.in_flight), (2, 3));

    // W2's request is still in flight on W2 and completes normally.
    h.result(W2, 7, 2, Status::Ok, &[b"real"]);
    let r = h.expect_status(CA, 7, 2, Status::Ok);
    assert_eq!(frames(&r.payload), owned(&[b"real"]));
    h.expect_dispatch_alone(W2, 7, 4, 1);

    // A duplicate result is not a second completion either.
    h.result_answered(W1, CA, 7, 1);
    h.expect_dispatch(W1, 7, 5, 1);
    h.result(W1, 7, 1, Status::Ok, &[]);
    h.expect_nothing();
    h.request_held(CA, 7, 6, Flags::empty());
    let s = h.stats();
    assert_eq!(s.unknown_results, 4);
    assert_eq!((s.pending, s.in_flight, s.requests_completed), (1, 3, 2));
}
