//! Latency histograms per type (issue 16 item 7): queue wait, service and
//! end-to-end times on the fake clock.

use std::time::Duration;

use super::*;

/// The bucket a duration in ms falls in (bounds: 2^(i+4) µs).
fn bucket_ms(ms: u64) -> usize {
    crate::broker::LATENCY_BOUNDS_US
        .iter()
        .position(|&b| ms * 1000 <= b)
        .unwrap_or(22)
}

#[test]
fn a_queued_request_has_its_wait_service_and_end_to_end_times() {
    let mut h = Harness::with_client();
    // Queued at 0 ms (no worker), dispatched at 5 ms when one comes,
    // answered at 25 ms.
    h.request(CA, 7, 1, Flags::empty(), &[]);
    h.at(5);
    h.connect_worker(W1, &[7], 1);
    h.expect_dispatch_alone(W1, 7, 1, 1);
    h.at(25);
    h.result_answered_alone(W1, CA, 7, 1);
    let s = h.type_stats_full(7);
    let one_in = |hist: &crate::broker::LatencyHistogram, ms: u64| {
        assert_eq!(hist.count, 1);
        assert_eq!(hist.sum_us, ms * 1000);
        assert_eq!(hist.counts.len(), bucket_ms(ms) + 1, "{hist:?}");
        assert_eq!(hist.counts[bucket_ms(ms)], 1);
    };
    one_in(&s.queue_wait, 5);
    one_in(&s.service, 20);
    one_in(&s.end_to_end, 25);
    let p50 = s.end_to_end.quantile(0.5).unwrap();
    assert!(p50 > Duration::from_millis(16) && p50 <= Duration::from_micros(32_768));
}

/// Type 7's histograms hold one sample each, of these sums (µs).
fn one_sample_each(h: &Harness, queue_wait: u64, service: u64, end_to_end: u64) {
    let s = h.type_stats_full(7);
    let sample = |hist: &crate::broker::LatencyHistogram| (hist.count, hist.sum_us);
    assert_eq!(
        [
            sample(&s.queue_wait),
            sample(&s.service),
            sample(&s.end_to_end)
        ],
        [(1, queue_wait), (1, service), (1, end_to_end)]
    );
}

#[test]
fn a_retry_counts_its_first_wait_and_its_last_dispatch() {
    let mut h = Harness::with_client_and_worker(1);
    h.at(10);
    h.request(CA, 7, 1, Flags::RETRY_ON_DEATH, &[]);
    h.expect_dispatch_alone(W1, 7, 1, 1);
    // W1 dies silently; W2 gets the retry at 4100 ms, answers at 4103 ms.
    h.connect_worker(W2, &[7], 1);
    h.at(3500);
    h.worker_heartbeat(W2);
    h.tick_at(4100);
    let out = h.take();
    assert!(
        out.iter()
            .any(|o| matches!(&o.2, Message::Dispatch(d) if d.attempt == 2)),
        "{:?}",
        out.iter().map(show).collect::<Vec<_>>()
    );
    h.at(4103);
    h.result(W2, 7, 1, Status::Ok, &[]);
    h.expect_status(CA, 7, 1, Status::Ok);
    // One queue wait (0: a free worker), one service time: the retry's.
    one_sample_each(&h, 0, 3_000, 4_093_000);
}

#[test]
fn a_returned_request_counts_its_first_wait_once() {
    let mut h = Harness::with_client_and_worker(1);
    h.at(10);
    h.request(CA, 7, 1, Flags::empty(), &[b"job"]);
    h.expect_dispatch_alone(W1, 7, 1, 1);
    // W1 stops before running it and gives it back (protocol 1.8); W2,
    // there at 30 ms, gets it with the same attempt and answers at 32 ms.
    h.worker_sends(W1, Message::Disconnect { route: Vec::new() });
    h.result(W1, 7, 1, Status::Returned, &[b"job"]);
    h.at(30);
    h.connect_worker(W2, &[7], 1);
    h.expect_dispatch_alone(W2, 7, 1, 1);
    h.at(32);
    h.result_answered_alone(W2, CA, 7, 1);
    // One queue wait, the first dispatch's (0: W1 was free), not a second
    // for the dispatch after the return; one service time, the last
    // dispatch's (2 ms).
    one_sample_each(&h, 0, 2_000, 22_000);
}

#[test]
fn a_type_without_traffic_has_empty_histograms() {
    let h = Harness::with_client_and_worker(1);
    let s = h.type_stats_full(7);
    assert_eq!(s.queue_wait, Default::default());
    assert_eq!(s.end_to_end, Default::default());
    // And the JSON of the stats keeps an empty one short.
    let json = serde_json::to_value(h.stats()).unwrap();
    assert_eq!(
        json["types"]["7"]["service"]["counts"],
        serde_json::json!([])
    );
}
