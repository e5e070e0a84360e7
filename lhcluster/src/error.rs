//! Errors shared by every role.

use std::fmt;

/// A configuration value that no role can run with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: `{field}` {reason}")]
pub struct ConfigError {
    /// The offending field.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn invalid(field: &'static str, reason: impl fmt::Display) -> Self {
        Self {
            field,
            reason: reason.to_string(),
        }
    }
}

/// Why a role could not start or a command could not be carried out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A socket could not bind its endpoint (in use, bad address…). Its
    /// message names the endpoint; the reason is its
    /// [`source`](std::error::Error::source) (so that a chain printer, such
    /// as `anyhow`'s `{:#}`, does not print it twice), except a hint for a
    /// host name, which libzmq cannot bind to.
    #[error("cannot bind {endpoint}{}", bind_hint(endpoint, source))]
    Bind {
        /// The endpoint.
        endpoint: String,
        /// The ZeroMQ error.
        source: zmq::Error,
    },
    /// A socket could not connect to its endpoint (the reason is its
    /// source).
    #[error("cannot connect to {endpoint}")]
    Connect {
        /// The endpoint.
        endpoint: String,
        /// The ZeroMQ error.
        source: zmq::Error,
    },
    /// Nothing answered at the endpoint within the connect timeout: no
    /// broker listens there, or it is unreachable (a firewall, a wrong
    /// host). With several endpoints, `endpoint` lists them all.
    #[error("cannot reach the {role} at {endpoint} (no answer within {timeout:?})")]
    Unreachable {
        /// What was expected there: `broker`, `notify broker`.
        role: &'static str,
        /// The endpoint (or endpoints, `, `-separated).
        endpoint: String,
        /// The connect timeout that passed.
        timeout: std::time::Duration,
    },
    /// Another ZeroMQ failure (the reason is its source).
    #[error("{context}")]
    Zmq {
        /// What was being done.
        context: &'static str,
        /// The ZeroMQ error.
        source: zmq::Error,
    },
    /// The role's driver thread could not be spawned.
    #[error("cannot spawn the driver thread")]
    Spawn(#[source] std::io::Error),
    /// The role has stopped; the command was not carried out.
    #[error("the role has stopped")]
    Stopped,
    /// No answer within the given time.
    #[error("no answer within {0:?}")]
    Timeout(std::time::Duration),
    /// The peer answered something this version cannot understand.
    #[error("protocol error: {0}")]
    Protocol(String),
}

impl Error {
    /// The message and its sources, `: `-separated, for a log line (the
    /// message alone leaves the reason to the source).
    pub(crate) fn with_causes(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        text
    }
}

/// libzmq binds a TCP endpoint to an IP address, `*` or an interface
/// name, never to a host name: `tcp://localhost:6555` fails with "No such
/// device", which explains nothing. Say so.
fn bind_hint(endpoint: &str, source: &zmq::Error) -> &'static str {
    let host = endpoint
        .strip_prefix("tcp://")
        .and_then(|rest| rest.rsplit_once(':'))
        .map(|(host, _)| host.trim_start_matches('[').trim_end_matches(']'));
    match host {
        Some(h)
            if *source == zmq::Error::ENODEV
                && h != "*"
                && h.parse::<std::net::IpAddr>().is_err() =>
        {
            " (libzmq binds to an IP address, `*` or an interface name, not to a host name)"
        }
        _ => "",
    }
}

pub(crate) fn zmq_err(context: &'static str) -> impl FnOnce(zmq::Error) -> Error {
    move |source| Error::Zmq { context, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reason is the source, not part of the message: a chain printer
    /// shows it once.
    #[test]
    fn a_bind_error_names_its_reason_once() {
        let e = Error::Bind {
            endpoint: "tcp://127.0.0.1:1".to_owned(),
            source: zmq::Error::EADDRINUSE,
        };
        assert_eq!(e.to_string(), "cannot bind tcp://127.0.0.1:1");
        assert_eq!(
            e.with_causes(),
            "cannot bind tcp://127.0.0.1:1: Address already in use"
        );
    }

    #[test]
    fn binding_a_host_name_says_what_libzmq_binds_to() {
        let e = Error::Bind {
            endpoint: "tcp://localhost:6555".to_owned(),
            source: zmq::Error::ENODEV,
        };
        assert!(e.to_string().contains("not to a host name"), "{e}");
        let ip = Error::Bind {
            endpoint: "tcp://10.0.0.1:6555".to_owned(),
            source: zmq::Error::ENODEV,
        };
        assert_eq!(ip.to_string(), "cannot bind tcp://10.0.0.1:6555");
    }
}
