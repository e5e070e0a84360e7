//! Hygiene of the derives: their output names nothing from the caller's
//! scope (it compiles under `#[no_implicit_prelude]`, next to items that
//! shadow common names), and `crate = "..."` points it at another path to
//! the `lhcluster` crate.

/// No prelude, and local items named like what generated code might use.
#[no_implicit_prelude]
mod no_prelude {
    #[derive(::serde::Serialize, ::serde::Deserialize, ::lhcluster::Request)]
    #[request_type(name = "hygiene.ping", response = Pong)]
    pub(crate) struct Ping {
        #[request_id]
        pub(crate) id: u32,
    }

    #[derive(::serde::Serialize, ::serde::Deserialize)]
    pub(crate) struct Pong;

    #[derive(::serde::Serialize, ::serde::Deserialize, ::lhcluster::Request)]
    #[request_type(one_way, id = 77)]
    pub(crate) enum Signal {
        Up,
        Down(u8),
    }

    #[derive(::serde::Serialize, ::serde::Deserialize, ::lhcluster::Notification)]
    #[notification(name = "hygiene.event")]
    pub(crate) struct Event {
        pub(crate) n: u32,
    }

    // Shadows.
    #[allow(dead_code)]
    pub(crate) struct Option;
    #[allow(dead_code)]
    pub(crate) struct Some;
    #[allow(dead_code)]
    pub(crate) trait Request {}
    #[allow(dead_code)]
    pub(crate) trait Notification {}
    #[allow(dead_code)]
    pub(crate) mod __private {}
    #[allow(dead_code)]
    pub(crate) mod lhcluster {}
}

/// The crate through a re-export of its private module, by a relative
/// path (`lhcluster-types/tests/renamed_crate.rs` tests the derive pointed
/// at another crate name, where `::lhcluster` does not resolve).
mod facade {
    pub(crate) mod reexport {
        pub(crate) use ::lhcluster::__private;
    }

    #[derive(::serde::Serialize, ::serde::Deserialize, ::lhcluster::Request)]
    #[request_type(crate = "crate::facade::reexport", name = "hygiene.facade")]
    pub(crate) struct ThroughFacade;

    #[derive(::serde::Serialize, ::serde::Deserialize, ::lhcluster::Notification)]
    #[notification(crate = "self::reexport")]
    pub(crate) struct FacadeEvent;
}

fn id_of<R: lhcluster::Request>(request: &R) -> Option<u64> {
    request.request_id()
}

#[test]
fn generated_code_ignores_the_callers_scope() {
    use lhcluster::{Notification, Request};
    use no_prelude::{Event, Ping, Signal};

    assert_eq!(Ping::NAME, "hygiene.ping");
    assert_eq!(
        Ping::REQUEST_TYPE,
        lhcluster::request_type_id("hygiene.ping")
    );
    assert_eq!(id_of(&Ping { id: 5 }), Some(5));
    assert_eq!(Signal::NAME, "Signal");
    assert_eq!(Signal::REQUEST_TYPE, 77);
    const { assert!(Signal::ONE_WAY) };
    assert_eq!(id_of(&Signal::Down(1)), None);
    assert_eq!(Event::TOPIC, "hygiene.event");
}

#[test]
fn crate_attribute_is_followed() {
    use facade::{FacadeEvent, ThroughFacade};
    use lhcluster::{Notification, Request};

    assert_eq!(ThroughFacade::NAME, "hygiene.facade");
    assert_eq!(FacadeEvent::TOPIC, "FacadeEvent");
}
