//! The derives with the `lhcluster` crate renamed in `Cargo.toml`
//! (`renamed_lhcluster = { package = "lhcluster", ... }`): here
//! `::lhcluster` does not resolve at all, so this compiles only because
//! `crate = "..."` redirects the generated code.

use renamed_lhcluster::{Notification, Request};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Request)]
#[request_type(crate = "renamed_lhcluster", name = "renamed.ping", response = u8)]
struct Ping {
    #[request_id]
    id: u64,
}

#[derive(Serialize, Deserialize, Request)]
#[request_type(crate = "::renamed_lhcluster", one_way)]
enum Signal {
    Up,
}

/// Through a re-export of the crate's private module, by a relative path.
mod facade {
    pub(crate) use renamed_lhcluster::__private;
}

#[derive(Serialize, Deserialize, Request)]
#[request_type(crate = "crate::facade", id = 5)]
struct ThroughFacade;

#[derive(Serialize, Deserialize, Notification)]
#[notification(crate = "renamed_lhcluster", name = "renamed.event")]
struct Event;

#[test]
fn crate_attribute_follows_a_renamed_crate() {
    assert_eq!(Ping::NAME, "renamed.ping");
    assert_eq!(
        Ping::REQUEST_TYPE,
        renamed_lhcluster::request_type_id("renamed.ping")
    );
    assert_eq!(Ping { id: 4 }.request_id(), Some(4));
    let _: <Ping as Request>::Response = 1_u8;
    const { assert!(Signal::ONE_WAY) };
    assert_eq!(Signal::Up.request_id(), None);
    assert_eq!(ThroughFacade::REQUEST_TYPE, 5);
    assert_eq!(Event::TOPIC, "renamed.event");
}
