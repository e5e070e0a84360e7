//! How the role configurations read from files (the `serde` feature): the
//! field formats that serde has no built-in notion of.
//!
//! Every config derives `Deserialize` with `deny_unknown_fields` (a typo is
//! an error, not a silently ignored setting) and takes its missing fields
//! from its `new` defaults; endpoints that a file leaves out stay empty, and
//! `validate()` refuses them like any other value no role can run with.
//!
//! A config imports this module as `de`, so that a field's attribute says
//! its format on one line:
//! `#[cfg_attr(feature = "serde", serde(deserialize_with = "de::duration"))]`.

use std::fmt;
use std::time::Duration;

use serde::Deserializer;
use serde::de::{self, SeqAccess, Visitor};

/// Parses a duration as the CLI flags write it too: humantime (`"100ms"`,
/// `"5s"`, `"1m30s"`), or a bare number of seconds (`"5"`).
fn parse_duration(text: &str) -> Result<Duration, String> {
    if let Ok(secs) = text.trim().parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(text).map_err(|e| format!("invalid duration {text:?}: {e}"))
}

/// Reads a duration, or `"off"` when `optional` (then `None`).
struct DurationVisitor {
    optional: bool,
}

impl<'de> Visitor<'de> for DurationVisitor {
    type Value = Option<Duration>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as \"100ms\", \"5s\" or \"1m30s\"")?;
        if self.optional {
            f.write_str(", or \"off\"")?;
        }
        Ok(())
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        if self.optional && text == "off" {
            return Ok(None);
        }
        parse_duration(text).map(Some).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, secs: u64) -> Result<Self::Value, E> {
        Ok(Some(Duration::from_secs(secs)))
    }

    fn visit_i64<E: de::Error>(self, secs: i64) -> Result<Self::Value, E> {
        u64::try_from(secs)
            .map(|s| Some(Duration::from_secs(s)))
            .map_err(|_| E::invalid_value(de::Unexpected::Signed(secs), &self))
    }
}

/// A duration: `"100ms"`, `"5s"`, `"1m30s"`, or a number of seconds.
pub(crate) fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    d.deserialize_any(DurationVisitor { optional: false })?
        .ok_or_else(|| de::Error::custom("a duration is required here"))
}

/// An optional duration: as [`duration`], or `"off"` for `None`.
pub(crate) fn optional_duration<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Duration>, D::Error> {
    d.deserialize_any(DurationVisitor { optional: true })
}

/// A list of endpoints, or one endpoint on its own (`broker = "tcp://…"`,
/// as the CLI's files have always written it).
pub(crate) fn endpoints<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    struct Endpoints;

    impl<'de> Visitor<'de> for Endpoints {
        type Value = Vec<String>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an endpoint or a list of endpoints")
        }

        fn visit_str<E: de::Error>(self, endpoint: &str) -> Result<Self::Value, E> {
            Ok(vec![endpoint.to_owned()])
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut all = Vec::new();
            while let Some(endpoint) = seq.next_element::<String>()? {
                all.push(endpoint);
            }
            Ok(all)
        }
    }

    d.deserialize_any(Endpoints)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::BrokerConfig;
    use crate::client::ClientConfig;
    use crate::client_proxy::ClientProxyConfig;
    use crate::notify::{NotifyBrokerConfig, NotifyPublisherConfig, NotifySubscriberConfig};
    use crate::worker::WorkerConfig;

    fn json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn durations_read_units_bare_seconds_and_off() {
        for (text, read) in [
            ("250ms", Some(Duration::from_millis(250))),
            ("1m30s", Some(Duration::from_secs(90))),
            ("5", Some(Duration::from_secs(5))),
            ("soon", None),
        ] {
            assert_eq!(parse_duration(text).ok(), read, "{text}");
        }
        let c: ClientConfig =
            json(r#"{"brokers": "tcp://b:1", "heartbeat": 2, "request_timeout": "off"}"#).unwrap();
        assert_eq!(c.heartbeat, Duration::from_secs(2));
        assert_eq!(c.request_timeout, None);
        assert!(json::<ClientConfig>(r#"{"heartbeat": "off"}"#).is_err());
        assert!(json::<ClientConfig>(r#"{"heartbeat": -1}"#).is_err());
    }

    #[test]
    fn missing_fields_take_the_defaults_of_new() {
        let b: BrokerConfig = json(r#"{"frontend": "tcp://*:1", "backend": "tcp://*:2"}"#).unwrap();
        let d = BrokerConfig::new("tcp://*:1", "tcp://*:2");
        assert_eq!(
            (b.heartbeat, b.max_pending_total, b.hwm, b.shutdown_timeout),
            (d.heartbeat, d.max_pending_total, d.hwm, d.shutdown_timeout)
        );
        // A missing endpoint is left empty for validate() to refuse.
        let b: BrokerConfig = json(r#"{"frontend": "tcp://*:1"}"#).unwrap();
        let e = b.validate().unwrap_err();
        assert_eq!(e.field, "backend");
    }

    #[test]
    fn unknown_keys_are_refused_on_every_config() {
        let typo = r#"{"heartbeet": "1s"}"#;
        assert!(
            json::<BrokerConfig>(typo)
                .unwrap_err()
                .contains("heartbeet")
        );
        assert!(json::<ClientConfig>(typo).is_err());
        assert!(json::<ClientProxyConfig>(typo).is_err());
        assert!(json::<WorkerConfig>(typo).is_err());
        assert!(json::<NotifyBrokerConfig>(typo).is_err());
        assert!(json::<NotifyPublisherConfig>(typo).is_err());
        assert!(json::<NotifySubscriberConfig>(typo).is_err());
    }

    #[test]
    fn the_cli_s_older_key_names_still_read() {
        let b: BrokerConfig = json(r#"{"max_pending": 7, "stats_interval": "30s"}"#).unwrap();
        assert_eq!(b.max_pending_total, 7);
        assert_eq!(b.stats_log_interval, Some(Duration::from_secs(30)));
        let p: ClientProxyConfig =
            json(r#"{"broker": "tcp://b:1", "resend": "1s", "stats_interval": "5s"}"#).unwrap();
        assert_eq!(p.brokers, ["tcp://b:1"]);
        assert_eq!(p.resend_initial, Duration::from_secs(1));
        assert_eq!(p.stats_log_interval, Some(Duration::from_secs(5)));
        let w: WorkerConfig = json(r#"{"broker": "tcp://b:2", "capacity": 3}"#).unwrap();
        assert_eq!(
            (w.brokers.as_slice(), w.capacity),
            (&["tcp://b:2".to_owned()][..], 3)
        );
        let w: WorkerConfig = json(r#"{"brokers": ["tcp://b:2", "tcp://b:3"]}"#).unwrap();
        assert_eq!(w.brokers.len(), 2);
        // The notification roles' `endpoint` became the list `endpoints`.
        let p: NotifyPublisherConfig = json(r#"{"endpoint": "tcp://n:1"}"#).unwrap();
        assert_eq!(p.endpoints, ["tcp://n:1"]);
        let s: NotifySubscriberConfig =
            json(r#"{"endpoints": ["tcp://n:1", "tcp://n:2"]}"#).unwrap();
        assert_eq!(s.endpoints, ["tcp://n:1", "tcp://n:2"]);
    }
}
