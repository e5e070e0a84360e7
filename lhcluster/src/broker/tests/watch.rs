//! The watch tap (issue 16 item 9): what the core records for the driver
//! to publish, and nothing when it is off.

use super::*;

/// The tap's events so far, as JSON values.
fn tapped(h: &mut Harness) -> Vec<(String, serde_json::Value)> {
    let mut events = Vec::new();
    h.core.drain_watch(|topic, json| {
        events.push((topic.to_owned(), serde_json::from_str(json).unwrap()));
    });
    events
}

fn with_tap() -> Harness {
    Harness::with_config(|c| c.watch = Some("tcp://127.0.0.1:1".into())).and_client(CA)
}

/// [`with_tap`], and `W1` (type 7, capacity 1) running request 7/1, sent
/// with `body`.
fn with_tap_running(body: &[&[u8]]) -> Harness {
    let mut h = with_tap().and_worker(1);
    h.request(CA, 7, 1, Flags::empty(), body);
    h.expect_dispatch_alone(W1, 7, 1, 1);
    h
}

#[test]
fn a_request_and_its_result_are_tapped_with_sizes_and_times() {
    let mut h = with_tap_running(&[b"hello"]);
    h.at(3);
    h.result(W1, 7, 1, Status::Ok, &[b"ok"]);
    h.expect_status(CA, 7, 1, Status::Ok);
    let events = tapped(&mut h);
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0].0, "request");
    assert_eq!(
        (
            events[0].1["type"].as_u64(),
            events[0].1["id"].as_u64(),
            events[0].1["bytes"].as_u64()
        ),
        (Some(7), Some(1), Some(5))
    );
    let outcome = &events[1].1;
    assert_eq!(events[1].0, "outcome");
    assert_eq!(outcome["status"], "ok");
    assert_eq!(outcome["bytes"], 2);
    assert_eq!(outcome["queue_wait_us"], 0);
    assert_eq!(outcome["service_us"], 3000);
    assert_eq!(outcome["end_to_end_us"], 3000);
    // Drained: nothing twice.
    assert!(tapped(&mut h).is_empty());
}

#[test]
fn a_status_the_broker_gives_is_an_outcome_without_times() {
    let mut h = with_tap();
    h.request(CA, 9, 4, Flags::FAIL_FAST, &[]);
    h.expect_status(CA, 9, 4, Status::NoWorkers);
    let events = tapped(&mut h);
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[1].1["status"], "no_workers");
    assert!(events[1].1.get("end_to_end_us").is_none());
}

#[test]
fn without_a_watch_endpoint_nothing_is_recorded() {
    let mut h = Harness::with_request_running(1);
    h.result_answered_alone(W1, CA, 7, 1);
    assert!(tapped(&mut h).is_empty());
}

#[test]
fn a_cancel_is_the_outcome_tapped_and_its_late_result_is_neither_tapped_nor_timed() {
    let mut h = with_tap_running(&[b"run"]);
    h.request(CA, 7, 2, Flags::empty(), &[b"wait"]);
    let cancel = |id| {
        Message::Cancel(crate::protocol::Cancel {
            request_type: 7,
            request_id: id,
            route: Vec::new(),
            dispatch_tag: 0,
        })
    };
    h.client_sends(CA, cancel(2));
    h.client_sends(CA, cancel(1));
    h.expect_kind(Side::Backend, W1, "CANCEL");
    h.at(3);
    h.result(W1, 7, 1, Status::Ok, &[b"late"]);
    let events = tapped(&mut h);
    let outcomes: Vec<_> = events
        .iter()
        .filter(|(topic, _)| topic == "outcome")
        .map(|(_, e)| (e["id"].as_u64(), e["status"].clone(), e["running"].clone()))
        .collect();
    assert_eq!(
        outcomes,
        [
            (Some(2), "cancelled".into(), false.into()),
            (Some(1), "cancelled".into(), true.into())
        ],
        "{events:?}"
    );
    let s = h.type_stats_full(7);
    assert_eq!(s.end_to_end.count, 0, "no outcome was sent: no sample");
}
