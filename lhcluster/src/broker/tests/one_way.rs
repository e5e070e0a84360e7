//! One-way requests: the result frees capacity and nothing goes back.

use super::*;

#[test]
fn one_way_result_frees_capacity_and_sends_nothing_to_the_client() {
    let mut h = Harness::with_client_and_worker(1);
    let d = h.request_dispatched_with(CA, W1, (7, 1), Flags::ONE_WAY, &[b"fire"]);
    assert_eq!(d.flags, Flags::ONE_WAY);
    h.request_held(CA, 7, 2, Flags::empty());
    h.result(W1, 7, 1, Status::Failed, &[b"ignored"]);
    h.expect_dispatch_alone(W1, 7, 2, 1);
    let s = h.stats();
    assert_eq!((s.requests_completed, s.pending, s.in_flight), (1, 0, 1));
    // The key is released.
    h.result_answered(W1, CA, 7, 2);
    h.request(CA, 7, 1, Flags::ONE_WAY, &[]);
    h.expect_dispatch_alone(W1, 7, 1, 1);
}
