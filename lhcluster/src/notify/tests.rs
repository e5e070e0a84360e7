//! Unit tests of the socket-free parts: topic rules, subscription sets,
//! filter reconciliation, probes, and notification validation.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::subscriptions::{FilterChange, Prober, SubscriptionSet, reconcile};
use super::*;
use crate::protocol::{Message, RawNotification as N};

fn set(exact: &[&str], prefixes: &[&str]) -> SubscriptionSet {
    SubscriptionSet {
        exact: exact.iter().map(|s| (*s).to_owned()).collect(),
        prefixes: prefixes.iter().map(|s| (*s).to_owned()).collect(),
    }
}

#[test]
fn topics_are_non_empty_utf8_without_nul() {
    for (topic, valid) in [
        ("orders", true),
        ("with spaces and ünïcødé 🚀", true),
        ("", false),
        ("a\0b", false),
    ] {
        assert_eq!(validate_topic(topic).is_ok(), valid, "topic {topic:?}");
    }
    assert!(validate_prefix("").is_ok());
    assert!(validate_prefix("x\0").is_err());
}

#[test]
fn exact_subscriptions_match_the_whole_topic_only() {
    let s = set(&["orders"], &[]);
    assert!(s.matches("orders"));
    assert!(!s.matches("orders-archive"));
    assert!(!s.matches("order"));
    let filters = s.filters();
    assert_eq!(filters, BTreeSet::from([b"orders\0".to_vec()]));
}

#[test]
fn prefix_subscriptions_match_by_characters() {
    let s = set(&[], &["ord", "日本"]);
    assert!(s.matches("orders"));
    assert!(s.matches("ord"));
    assert!(!s.matches("or"));
    assert!(s.matches("日本語"));
    assert!(!s.matches("日"));
    assert!(set(&[], &[""]).matches("anything"));
    assert_eq!(
        s.filters(),
        BTreeSet::from([b"ord".to_vec(), "日本".as_bytes().to_vec()])
    );
}

#[test]
fn unsubscribe_outcome_removes_every_subscription_that_delivered_the_topic() {
    let mut s = set(&["orders", "other"], &["ord", "x", ""]);
    assert!(s.remove_matching("orders"));
    assert_eq!(s, set(&["other"], &["x"]));
    assert!(!s.remove_matching("orders"));
}

#[test]
fn reconcile_subscribes_and_unsubscribes_the_difference() {
    let mut applied = BTreeSet::from([b"a\0".to_vec(), b"b\0".to_vec()]);
    let desired = BTreeSet::from([b"b\0".to_vec(), b"c".to_vec()]);
    let mut out = Vec::new();
    reconcile(&mut applied, desired.clone(), &mut out);
    assert_eq!(
        out,
        vec![
            FilterChange::Unsubscribe(b"a\0".to_vec()),
            FilterChange::Subscribe(b"c".to_vec()),
        ]
    );
    assert_eq!(applied, desired);
    out.clear();
    reconcile(&mut applied, desired, &mut out);
    assert!(out.is_empty(), "nothing changes twice: no refcount drift");
}

fn probe_bytes(change: &FilterChange) -> Vec<u8> {
    match change {
        FilterChange::Subscribe(b) => b.clone(),
        other => panic!("expected a probe subscription, got {other:?}"),
    }
}

#[test]
fn a_probe_answer_confirms_its_waiters_and_earlier_ones() {
    let t0 = Instant::now();
    let mut p = Prober::new(*b"12345678", Duration::from_millis(250));
    let mut out = Vec::new();
    let (tx1, rx1) = crossbeam_channel::bounded(1);
    assert_eq!(
        p.request(t0, vec![(t0 + Duration::from_secs(5), tx1)], &mut out),
        1
    );
    let first = probe_bytes(&out[0]);
    assert_eq!(first.len(), 18);
    assert!(is_probe(&first));
    out.clear();
    let (tx2, rx2) = crossbeam_channel::bounded(1);
    p.request(t0, vec![(t0 + Duration::from_secs(5), tx2)], &mut out);
    // The new probe supersedes the first.
    assert_eq!(out[0], FilterChange::Unsubscribe(first.clone()));
    let second = probe_bytes(&out[1]);
    out.clear();

    // Another subscriber's probe is not ours.
    let mut foreign = second.clone();
    foreign[2] ^= 1;
    assert!(!p.on_answer(&foreign, &mut out));
    assert!(rx1.try_recv().is_err());

    // A late answer to the first confirms only the first waiter.
    assert!(p.on_answer(&first, &mut out));
    assert!(rx1.try_recv().is_ok());
    assert!(rx2.try_recv().is_err());
    assert!(p.on_answer(&second, &mut out));
    assert!(rx2.try_recv().is_ok());
    assert_eq!(out, vec![FilterChange::Unsubscribe(second)]);
    assert_eq!(p.next_tick(), None);
}

#[test]
fn an_unanswered_probe_is_retried_until_the_waiters_give_up() {
    let t0 = Instant::now();
    let retry = Duration::from_millis(250);
    let mut p = Prober::new([7; 8], retry);
    let mut out = Vec::new();
    let (tx, rx) = crossbeam_channel::bounded(1);
    p.request(t0, vec![(t0 + Duration::from_secs(1), tx)], &mut out);
    let first = probe_bytes(&out[0]);
    out.clear();
    assert_eq!(p.next_tick(), Some(t0 + retry));
    assert_eq!(p.on_tick(t0 + Duration::from_millis(100), &mut out), 0);
    assert!(out.is_empty());
    assert_eq!(p.on_tick(t0 + retry, &mut out), 1);
    assert_eq!(out[0], FilterChange::Unsubscribe(first));
    let second = probe_bytes(&out[1]);
    out.clear();
    // The waiter gives up: the outstanding probe is withdrawn.
    assert_eq!(p.on_tick(t0 + Duration::from_secs(2), &mut out), 0);
    assert_eq!(out, vec![FilterChange::Unsubscribe(second)]);
    assert_eq!(p.next_tick(), None);
    assert!(rx.try_recv().is_err());
}

#[test]
fn upstream_messages_are_classified() {
    assert_eq!(upstream(b"\x01orders\0"), Upstream::Subscribe(b"orders\0"));
    assert_eq!(
        upstream(b"\x00orders\0"),
        Upstream::Unsubscribe(b"orders\0")
    );
    assert_eq!(upstream(b"\x01"), Upstream::Subscribe(b""));
    assert_eq!(upstream(b""), Upstream::Invalid);
    assert_eq!(upstream(b"\x02x"), Upstream::Invalid);
}

fn encode(n: N) -> Vec<crate::protocol::Frame> {
    Message::Notification(n).into_frames()
}

#[test]
fn the_broker_validates_without_touching_the_payload() {
    let frames = encode(N {
        topic: "a b ü".to_owned(),
        notify_id: Some(3),
        payload: vec![b"x".as_slice().into(), b"".as_slice().into()],
    });
    assert_eq!(frames.len(), 4);
    assert_eq!(broker::validate(&frames).unwrap(), "a b ü");

    let mut bad_topic = encode(N {
        topic: "t".to_owned(),
        notify_id: None,
        payload: Vec::new(),
    });
    bad_topic[0] = b"t".as_slice().into(); // no NUL terminator
    assert!(broker::validate(&bad_topic).is_err());
    assert!(broker::validate(&[b"t\0".as_slice().into()]).is_err());
    assert!(broker::validate(&[b"t\0".as_slice().into(), b"\xff\xff".as_slice().into()]).is_err());
    let request = Message::Heartbeat { heartbeat_ms: 1 }.into_frames();
    let mut wrong_kind = vec![b"t\0".as_slice().into()];
    wrong_kind.extend(request);
    assert!(broker::validate(&wrong_kind).is_err());
}

#[test]
fn ignored_subscriptions_warn_through_the_limiter() {
    let t0 = Instant::now();
    let mut limiter = crate::log_limit::LogLimiter::new("malformed messages from subscribers");
    for len in 65..85 {
        Ignored::LongProbe { len }.warn(&mut limiter, t0);
    }
    Ignored::NotASubscription { frames: 2 }.warn(&mut limiter, t0);
    assert_eq!(limiter.summaries(), 0, "the burst is logged in full");
    limiter.on_tick(t0 + crate::log_limit::INTERVAL);
    assert_eq!(
        limiter.summaries(),
        1,
        "the other 16 are one summary line, not 16 warnings"
    );
}

/// A direct-mode publisher answers probes up to the longest a broker
/// answers, ignores longer ones (a warning through its limiter) and goes
/// on answering.
#[test]
fn a_direct_publisher_ignores_too_long_probes_and_answers_the_rest() {
    let publisher =
        NotifyPublisher::bind(NotifyPublisherConfig::new("inproc://notify-long-probe")).unwrap();
    let xsub = crate::context().socket(zmq::XSUB).unwrap();
    xsub.set_rcvtimeo(10_000).unwrap();
    xsub.connect(publisher.endpoint()).unwrap();
    let subscribe = |filter: &[u8]| [&[1u8][..], filter].concat();
    let long = [vec![0u8], vec![b'x'; MAX_PROBE_LEN]].concat();
    let short = [&[0u8][..], b"probe-1"].concat();
    xsub.send(subscribe(&long), 0).unwrap();
    xsub.send(&[7u8, 7][..], 0).unwrap();
    xsub.send(subscribe(&short), 0).unwrap();
    assert_eq!(
        xsub.recv_bytes(0).unwrap(),
        short,
        "the short probe is answered, and first"
    );
    // The driver counts the answer after sending it: wait for the count.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while publisher.stats().unwrap().probes_answered == 0 && std::time::Instant::now() < deadline {
        std::thread::yield_now();
    }
    assert_eq!(publisher.stats().unwrap().probes_answered, 1);
    publisher.stop().unwrap();
}
