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
    /// A socket could not bind its endpoint (in use, bad address…).
    #[error("cannot bind {endpoint}: {source}")]
    Bind {
        /// The endpoint.
        endpoint: String,
        /// The ZeroMQ error.
        source: zmq::Error,
    },
    /// A socket could not connect to its endpoint.
    #[error("cannot connect to {endpoint}: {source}")]
    Connect {
        /// The endpoint.
        endpoint: String,
        /// The ZeroMQ error.
        source: zmq::Error,
    },
    /// Another ZeroMQ failure.
    #[error("{context}: {source}")]
    Zmq {
        /// What was being done.
        context: &'static str,
        /// The ZeroMQ error.
        source: zmq::Error,
    },
    /// The role's driver thread could not be spawned.
    #[error("cannot spawn the driver thread: {0}")]
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

pub(crate) fn zmq_err(context: &'static str) -> impl FnOnce(zmq::Error) -> Error {
    move |source| Error::Zmq { context, source }
}
