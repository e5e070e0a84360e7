//! Endpoint strings (`tcp://`, `ipc://`, `inproc://`).

use crate::error::ConfigError;

const SCHEMES: [&str; 3] = ["tcp://", "ipc://", "inproc://"];

/// Checks that an endpoint uses a supported transport and names something.
pub(crate) fn validate(endpoint: &str) -> Result<(), ConfigError> {
    match SCHEMES.iter().find(|s| endpoint.starts_with(*s)) {
        Some(scheme) if endpoint.len() > scheme.len() => Ok(()),
        Some(_) => Err(ConfigError::invalid(
            "endpoint",
            format!("{endpoint:?} names no address"),
        )),
        None => Err(ConfigError::invalid(
            "endpoint",
            format!("{endpoint:?} must start with tcp://, ipc:// or inproc://"),
        )),
    }
}

/// Checks the endpoint of config field `field`: set, and valid.
pub(crate) fn require(field: &'static str, endpoint: &str) -> Result<(), ConfigError> {
    if endpoint.is_empty() {
        return Err(ConfigError::invalid(field, "must name an endpoint"));
    }
    validate(endpoint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_three_transports_only() {
        for (endpoint, valid) in [
            ("tcp://127.0.0.1:5555", true),
            ("ipc:///tmp/x.sock", true),
            ("inproc://broker", true),
            ("inproc://", false),
            ("udp://1.2.3.4:5", false),
            ("broker", false),
        ] {
            assert_eq!(validate(endpoint).is_ok(), valid, "{endpoint}");
        }
    }
}
