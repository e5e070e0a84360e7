//! Derived code is clean under strict lints: any warning from generated
//! code fails this test's compilation (and `cargo clippy`).
#![deny(
    warnings,
    missing_docs,
    unused,
    unused_qualifications,
    unreachable_pub,
    missing_debug_implementations,
    rust_2018_idioms,
    clippy::all,
    clippy::pedantic
)]

use lhcluster::{Notification, Request};
use serde::{Deserialize, Serialize};

/// A documented request with every option.
#[derive(Debug, Serialize, Deserialize, Request)]
#[request_type(name = "lints.create", response = Created)]
pub struct Create {
    /// The natural id.
    #[request_id]
    pub id: OrderNo,
    /// Payload.
    pub item: String,
}

/// A request id newtype.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct OrderNo(pub u64);

impl From<OrderNo> for u64 {
    fn from(n: OrderNo) -> u64 {
        n.0
    }
}

/// The response.
#[derive(Debug, Serialize, Deserialize)]
pub struct Created {
    /// Whether it worked.
    pub ok: bool,
}

/// A one-way enum request with an explicit id.
#[derive(Debug, Serialize, Deserialize, Request)]
#[request_type(id = 10, one_way)]
pub enum Signal {
    /// Up.
    Up,
    /// Down.
    Down,
}

/// A unit request (default name, `()` response).
#[derive(Debug, Serialize, Deserialize, Request)]
pub struct Ping;

/// A tuple request whose id is its first field.
#[derive(Debug, Serialize, Deserialize, Request)]
pub struct Lookup(#[request_id] pub u16, pub String);

/// A notification.
#[derive(Debug, Serialize, Deserialize, Notification)]
#[notification(name = "lints.event")]
pub struct Event {
    /// Value.
    pub n: u32,
}

#[test]
fn strict_lints_pass() {
    let create = Create {
        id: OrderNo(3),
        item: String::new(),
    };
    assert_eq!(create.request_id(), Some(3));
    assert_eq!(Lookup(8, String::new()).request_id(), Some(8));
    assert_eq!(Signal::REQUEST_TYPE, 10);
    assert_eq!(Ping::NAME, "Ping");
    assert_eq!(Event::TOPIC, "lints.event");
    assert_eq!(Signal::Down.request_id(), None);
    assert!(matches!(Signal::Up, Signal::Up));
}
