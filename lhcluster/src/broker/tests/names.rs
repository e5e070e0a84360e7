//! Request type names (protocol 1.6): kept from READY, shown in the stats
//! and in error texts; the id routes, and a worker without names is served
//! as before.

use super::*;

/// A READY naming its types.
fn named_ready(types: &[u32], names: &[&str]) -> Message {
    Message::Ready(Ready {
        heartbeat_ms: HB,
        capacity: 1,
        request_types: types.to_vec(),
        type_names: names.iter().map(|&n| n.to_owned()).collect(),
        name: None,
    })
}

#[test]
fn names_from_ready_show_in_the_stats_beside_the_ids() {
    let mut h = Harness::with_client();
    // Given unsorted: each name stays with its own type.
    h.worker_sends(
        W1,
        named_ready(&[9, 7, 8], &["orders.ship", "orders.create", ""]),
    );
    h.expect_welcome(Side::Backend, W1);
    assert_eq!(h.type_stats(7).name.as_deref(), Some("orders.create"));
    assert_eq!(h.type_stats(9).name.as_deref(), Some("orders.ship"));
    assert_eq!(h.type_stats(8).name, None, "an empty name is no name");
    // The JSON of STATS_REPLY carries them; an unnamed type has no field.
    let json = serde_json::to_value(h.stats()).unwrap();
    assert_eq!(json["types"]["7"]["name"], "orders.create");
    assert!(json["types"]["8"].get("name").is_none(), "{json}");
    // And the requests of a named type are served as any.
    h.request_dispatched(CA, W1, 7, 1);
    h.result_answered_alone(W1, CA, 7, 1);
}

#[test]
fn a_worker_without_names_is_served_as_before() {
    // A READY of minor 4 (no `type_names`): registered, dispatched to.
    let mut h = Harness::with_request_running(1);
    h.result_answered_alone(W1, CA, 7, 1);
    assert_eq!(h.type_stats(7).name, None);
    // A named worker then names the type for both.
    h.worker_sends(W2, named_ready(&[7], &["orders.create"]));
    h.expect_welcome(Side::Backend, W2);
    assert_eq!(h.type_stats(7).name.as_deref(), Some("orders.create"));
    assert_eq!(h.type_stats(7).workers, 2);
}

#[test]
fn the_first_name_of_an_id_stays_and_a_conflict_is_counted() {
    let mut h = Harness::with_client();
    h.worker_sends(W1, named_ready(&[7], &["orders.create"]));
    h.expect_welcome(Side::Backend, W1);
    // Another worker calls the same id otherwise: registered all the same
    // (the id routes), its name ignored.
    h.worker_sends(W2, named_ready(&[7], &["billing.charge"]));
    h.expect_welcome(Side::Backend, W2);
    h.worker_sends(W3, named_ready(&[7], &["billing.charge"]));
    h.expect_welcome(Side::Backend, W3);
    let s = h.stats();
    assert_eq!(s.type_name_conflicts, 2);
    assert_eq!(s.types[&7].name.as_deref(), Some("orders.create"));
    assert_eq!(s.types[&7].workers, 3);
}

#[test]
fn the_no_workers_text_names_the_type() {
    let mut h = Harness::with_client();
    h.worker_sends(W1, named_ready(&[7], &["orders.create"]));
    h.expect_welcome(Side::Backend, W1);
    // The worker goes: the type is idle and forgotten, its name is not.
    h.worker_sends(W1, Message::Disconnect { route: Vec::new() });
    h.expect_nothing();
    assert!(!h.stats().types.contains_key(&7));
    h.request(CA, 7, 1, Flags::FAIL_FAST, &[]);
    let r = h.expect_status(CA, 7, 1, Status::NoWorkers);
    assert_eq!(
        r.error.as_deref(),
        Some("no worker serves request type orders.create (7)")
    );
    // A type never named is shown by its id.
    h.request(CA, 8, 1, Flags::FAIL_FAST, &[]);
    let r = h.expect_status(CA, 8, 1, Status::NoWorkers);
    assert_eq!(r.error.as_deref(), Some("no worker serves request type 8"));
}

#[test]
fn malformed_names_refuse_the_ready() {
    let mut h = Harness::with_client();
    // One name for two types.
    h.worker_sends(W1, named_ready(&[7, 8], &["a"]));
    let e = h.expect_error(Side::Backend, W1);
    assert!(e.error.contains("type_names"), "{}", e.error);
    // A name over 128 bytes.
    let long = "x".repeat(129);
    h.worker_sends(W1, named_ready(&[7], &[&long]));
    let e = h.expect_error(Side::Backend, W1);
    assert!(e.error.contains("128 bytes"), "{}", e.error);
    let s = h.quiet_stats();
    assert_eq!((s.workers, s.malformed_backend), (0, 2));
}
