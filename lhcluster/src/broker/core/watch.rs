//! The watch tap (issue 16 item 9): a record of each request and each
//! outcome as they pass the broker, for `lhcluster watch`.
//!
//! Off unless the broker is given a `watch` endpoint; then the core notes
//! small fixed-size events here and the driver publishes them after each
//! batch (docs/operations.md, "watch", has the format). Off, it costs one
//! branch where a request arrives and where an outcome leaves. Events never
//! carry payloads or error texts: sizes, statuses and timings only, so the
//! tap shows traffic without its contents.

use std::fmt::Write as _;
use std::time::Duration;

use super::names::TypeNames;
use crate::protocol::{Flags, Payload, RequestId, RequestType, Status};

/// At most this many events wait for the driver; more are dropped (and
/// counted): a batch of reads is far smaller, so only a driver that
/// cannot keep up loses any, and the broker's memory stays bounded.
const MAX_QUEUED: usize = 65_536;

/// One thing the tap saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// A valid REQUEST arrived on the frontend.
    Request {
        key: (RequestType, RequestId),
        bytes: u64,
        flags: Flags,
    },
    /// A request's outcome: a worker's result, with its timings, or a
    /// status the broker gave.
    Outcome {
        key: (RequestType, RequestId),
        status: Status,
        bytes: u64,
        timings: Option<Timings>,
    },
    /// Its requester took a request back (CANCEL): its outcome, whether it
    /// was queued (it never runs) or running (its result goes to nobody).
    Cancelled {
        key: (RequestType, RequestId),
        running: bool,
    },
}

/// What a worker's result took, in µs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Timings {
    pub(crate) queue_wait: Duration,
    pub(crate) service: Duration,
    pub(crate) end_to_end: Duration,
}

/// The events waiting for the driver.
#[derive(Debug, Default)]
pub(crate) struct Tap {
    events: Vec<Event>,
    dropped: u64,
}

pub(super) fn payload_bytes(payload: &Payload) -> u64 {
    payload.iter().map(|f| f.len() as u64).sum()
}

impl Tap {
    pub(super) fn push(&mut self, event: Event) {
        if self.events.len() < MAX_QUEUED {
            self.events.push(event);
        } else {
            self.dropped += 1;
        }
    }

    /// The events so far, as the JSON texts the tap publishes (names
    /// looked up here, off the request path), oldest first.
    pub(super) fn drain(&mut self, names: &TypeNames, mut publish: impl FnMut(&'static str, &str)) {
        let mut text = String::new();
        for event in self.events.drain(..) {
            text.clear();
            let topic = encode(&event, names, &mut text);
            publish(topic, &text);
        }
    }

    /// Events dropped because the driver did not take them in time.
    pub(super) fn dropped(&self) -> u64 {
        self.dropped
    }
}

/// Writes `event` as one JSON object into `out`; returns its topic.
fn encode(event: &Event, names: &TypeNames, out: &mut String) -> &'static str {
    let (topic, key) = match event {
        Event::Request { key, .. } => ("request", key),
        Event::Outcome { key, .. } | Event::Cancelled { key, .. } => ("outcome", key),
    };
    let name = names
        .get(key.0)
        .map_or(serde_json::Value::Null, |n| n.into());
    let _ = write!(
        out,
        r#"{{"event":"{topic}","type":{},"type_name":{name},"id":{}"#,
        key.0, key.1
    );
    match event {
        Event::Request { bytes, flags, .. } => {
            let _ = write!(
                out,
                r#","bytes":{bytes},"one_way":{},"flags":{}"#,
                !flags.is_two_way(),
                flags.bits()
            );
        }
        Event::Outcome {
            status,
            bytes,
            timings,
            ..
        } => {
            let _ = write!(out, r#","status":"{status}","bytes":{bytes}"#);
            if let Some(t) = timings {
                let us = |d: Duration| d.as_micros();
                let _ = write!(
                    out,
                    r#","queue_wait_us":{},"service_us":{},"end_to_end_us":{}"#,
                    us(t.queue_wait),
                    us(t.service),
                    us(t.end_to_end)
                );
            }
        }
        Event::Cancelled { running, .. } => {
            let _ = write!(
                out,
                r#","status":"cancelled","bytes":0,"running":{running}"#
            );
        }
    }
    out.push('}');
    topic
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_json_objects_without_payloads() {
        let mut names = TypeNames::default();
        names.learn(7, "orders.create", &"w", |_| true);
        let mut tap = Tap::default();
        tap.push(Event::Request {
            key: (7, 42),
            bytes: 64,
            flags: Flags::RECEIPT_ON_SEND,
        });
        tap.push(Event::Outcome {
            key: (7, 42),
            status: Status::Ok,
            bytes: 2,
            timings: Some(Timings {
                queue_wait: Duration::from_micros(10),
                service: Duration::from_micros(300),
                end_to_end: Duration::from_micros(320),
            }),
        });
        tap.push(Event::Outcome {
            key: (8, 1),
            status: Status::NoWorkers,
            bytes: 0,
            timings: None,
        });
        let mut seen = Vec::new();
        tap.drain(&names, |topic, text| {
            let v: serde_json::Value = serde_json::from_str(text).unwrap();
            seen.push((topic, v));
        });
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[0].0, "request");
        assert_eq!(
            seen[0].1,
            serde_json::json!({"event": "request", "type": 7, "type_name": "orders.create",
                "id": 42, "bytes": 64, "one_way": false, "flags": 4})
        );
        assert_eq!(
            seen[1].1,
            serde_json::json!({"event": "outcome", "type": 7, "type_name": "orders.create",
                "id": 42, "status": "ok", "bytes": 2, "queue_wait_us": 10, "service_us": 300,
                "end_to_end_us": 320})
        );
        assert_eq!(seen[2].1["type_name"], serde_json::Value::Null);
        assert_eq!(seen[2].1["status"], "no_workers");
        assert!(seen[2].1.get("service_us").is_none());
    }

    #[test]
    fn a_full_tap_drops_and_counts() {
        let mut tap = Tap::default();
        let event = Event::Outcome {
            key: (1, 1),
            status: Status::Ok,
            bytes: 0,
            timings: None,
        };
        for _ in 0..MAX_QUEUED + 3 {
            tap.push(event);
        }
        assert_eq!(tap.dropped(), 3);
        let mut n = 0;
        tap.drain(&TypeNames::default(), |_, _| n += 1);
        assert_eq!(n, MAX_QUEUED);
    }
}
