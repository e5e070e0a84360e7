//! The derives pointed at this crate under its own name, as in a crate of
//! shared request types that depends on `lhcluster-types` (and the derive)
//! without `lhcluster`: here `::lhcluster` does not resolve at all, so this
//! compiles only because `crate = "..."` redirects the generated code.

use lhcluster_derive::{Notification, Request};
use lhcluster_types::{Notification as _, Request as _};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Request)]
#[request_type(crate = "lhcluster_types", name = "renamed.ping", response = u8)]
struct Ping {
    #[request_id]
    id: u64,
}

#[derive(Serialize, Deserialize, Request)]
#[request_type(crate = "::lhcluster_types", one_way)]
enum Signal {
    Up,
}

/// Through a re-export of the crate's private module, by a relative path.
mod facade {
    pub(crate) use lhcluster_types::__private;
}

#[derive(Serialize, Deserialize, Request)]
#[request_type(crate = "crate::facade", id = 5)]
struct ThroughFacade;

#[derive(Serialize, Deserialize, Notification)]
#[notification(crate = "lhcluster_types", name = "renamed.event")]
struct Event;

#[test]
fn crate_attribute_follows_a_renamed_crate() {
    assert_eq!(Ping::NAME, "renamed.ping");
    assert_eq!(
        Ping::REQUEST_TYPE,
        lhcluster_types::request_type_id("renamed.ping")
    );
    assert_eq!(Ping { id: 4 }.request_id(), Some(4));
    let _: <Ping as lhcluster_types::Request>::Response = 1_u8;
    const { assert!(Signal::ONE_WAY) };
    assert_eq!(Signal::Up.request_id(), None);
    assert_eq!(ThroughFacade::REQUEST_TYPE, 5);
    assert_eq!(Event::TOPIC, "renamed.event");
}
