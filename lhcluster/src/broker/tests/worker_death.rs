//! A worker's death: its requests answered `WORKER_DEATH` or retried
//! (`RETRY_ON_DEATH`, `max_tries`).

use super::*;

#[test]
fn worker_death_answers_two_way_requests_with_worker_death() {
    let mut h = Harness::with_request_running(3);
    h.request_dispatched_with(CA, W1, (7, 2), Flags::ONE_WAY, &[]);
    h.request_dispatched_with(CA, W1, (7, 3), Flags::ONE_WAY | Flags::NOTIFY_ON_DEATH, &[]);
    h.request(CA, 8, 1, Flags::empty(), &[]); // queued, unaffected
    h.expect_nothing();
    kill_by_silence(&mut h, W1, &[], &[CA]);
    let mut got: Vec<(u64, Status)> = h
        .take()
        .into_iter()
        .map(|o| match o {
            (Side::Frontend, p, Message::Response(r)) if p == CA => {
                assert!(r.payload.is_empty());
                (r.request_id, r.status)
            }
            other => panic!("unexpected {}", show(&other)),
        })
        .collect();
    got.sort_by_key(|g| g.0);
    assert_eq!(
        got,
        vec![(1, Status::WorkerDeath), (3, Status::WorkerDeath)]
    );
    let s = h.stats();
    assert_eq!(s.worker_deaths, 1);
    assert_eq!(s.requests_worker_death, 2);
    assert_eq!(s.requests_dropped_on_death, 1);
    assert_eq!((s.pending, s.in_flight), (1, 0));
    // All three keys are released.
    h.connect_worker(W2, &[7], 3);
    for id in 1..=3 {
        h.request_dispatched(CA, W2, 7, id);
    }
    h.expect_nothing();
}

#[test]
fn worker_death_with_retry_redispatches_to_another_worker() {
    let mut h = Harness::with_client_and_worker(1);
    let flags = Flags::RETRY_ON_DEATH | Flags::RECEIPT_ON_SEND;
    let d = h.request_dispatched_with(CA, W1, (7, 1), flags, &[b"frame-1", b"", b"frame-3"]);
    assert_eq!(d.flags, flags);
    h.expect_receipt_sent(CA, 7, 1);
    h.connect_worker(W2, &[7], 1);
    h.expect_nothing();
    kill_by_silence(&mut h, W1, &[W2], &[CA]);
    let d = h.expect_dispatch(W2, 7, 1, 2);
    assert_eq!(d.flags, flags);
    assert_eq!(frames(&d.payload), owned(&[b"frame-1", b"", b"frame-3"]));
    // No second RECEIPT_SENT, no response.
    let s = h.quiet_stats();
    assert_eq!(
        (s.requests_retried, s.requests_dispatched, s.worker_deaths),
        (1, 2, 1)
    );
    assert_eq!(h.type_stats(7), ts(1, 2, 0, 0, 1, 1));

    // The dead worker's late result (after re-registering) is not a completion.
    h.connect_worker(W1, &[8], 1);
    h.result(W1, 7, 1, Status::Ok, &[b"late"]);
    h.expect_nothing();
    assert_eq!(h.stats().unknown_results, 1);

    h.result(W2, 7, 1, Status::Ok, &[b"done"]);
    let r = h.expect_status(CA, 7, 1, Status::Ok);
    assert_eq!(frames(&r.payload), owned(&[b"done"]));
    h.expect_nothing();
}

#[test]
fn a_second_death_exhausts_max_tries() {
    let mut h = Harness::with_a_retry_running(&[b"p"]);
    h.retried_on_w2();
    h.expect_nothing();
    h.connect_worker(W3, &[7], 1);
    kill_by_silence(&mut h, W2, &[W3], &[CA]);
    // max_tries = 2: no third dispatch.
    h.expect_status(CA, 7, 1, Status::WorkerDeath);
    let s = h.quiet_stats();
    assert_eq!(
        (s.requests_retried, s.requests_worker_death, s.worker_deaths),
        (1, 1, 2)
    );
    assert_eq!((s.pending, s.in_flight), (0, 0));
}

#[test]
fn max_tries_is_configurable() {
    let mut h = Harness::with_a_retry_running_on(|c| c.max_tries = 3, Flags::ONE_WAY, &[b"p"]);
    h.retried_on_w2();
    h.connect_worker(W3, &[7], 1);
    kill_by_silence(&mut h, W2, &[W3], &[CA]);
    let d = h.expect_dispatch(W3, 7, 1, 3);
    assert_eq!(frames(&d.payload), owned(&[b"p"]));
    h.connect_worker(W1, &[7], 1);
    kill_by_silence(&mut h, W3, &[W1], &[CA]);
    // One-way without NOTIFY_ON_DEATH: dropped silently.
    let s = h.quiet_stats();
    assert_eq!((s.requests_retried, s.requests_dropped_on_death), (2, 1));
}

#[test]
fn retry_with_max_tries_one_is_a_plain_death() {
    let mut h = Harness::with_a_retry_running_on(|c| c.max_tries = 1, Flags::empty(), &[]);
    h.connect_worker(W2, &[7], 1);
    kill_by_silence(&mut h, W1, &[W2], &[CA]);
    h.expect_status(CA, 7, 1, Status::WorkerDeath);
    h.expect_nothing();
    assert_eq!(h.stats().requests_retried, 0);
}

#[test]
fn a_retried_request_goes_to_the_head_of_its_queue() {
    let mut h =
        Harness::with_a_retry_running_on(|c| c.max_pending_per_type = 2, Flags::empty(), &[]);
    h.request(CA, 7, 2, Flags::empty(), &[]);
    h.request(CA, 7, 3, Flags::empty(), &[]);
    h.expect_nothing();
    kill_by_silence(&mut h, W1, &[], &[CA]);
    h.expect_nothing();
    // Queue bounds do not apply to a retry.
    let s = h.stats();
    assert_eq!((s.pending, s.in_flight), (3, 0));
    h.connect_worker(W2, &[7], 3);
    h.expect_dispatch(W2, 7, 1, 2);
    h.expect_dispatch(W2, 7, 2, 1);
    h.expect_dispatch(W2, 7, 3, 1);
    h.expect_nothing();
}

#[test]
fn worker_death_goes_to_the_reply_to_destination() {
    let mut h = Harness::new();
    h.connect(CA);
    h.connect_named(CB, "bob");
    h.connect_worker(W1, &[7], 1);
    h.client_sends(
        CA,
        Message::Request(Request {
            reply_to: Some("bob".into()),
            ..req(7, 1, Flags::empty(), &[])
        }),
    );
    h.expect_dispatch(W1, 7, 1, 1);
    kill_by_silence(&mut h, W1, &[], &[CA, CB]);
    h.expect_status(CB, 7, 1, Status::WorkerDeath);
    h.expect_nothing();
}
