//! Rust errors as the Python exceptions of `lhcluster.errors` (one class
//! per outcome, all under `lhcluster.Error`, each with `status` and `text`).

use lhcluster::client::DisconnectReason;
use lhcluster::notify::PublishError;
use lhcluster::{Error, RequestError, Status};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

static MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

/// An instance of `lhcluster.errors.<class>(text, status)` as a `PyErr`.
pub(crate) fn new(py: Python<'_>, class: &str, text: String, status: Option<&str>) -> PyErr {
    let made = MODULE
        .get_or_try_init(py, || py.import("lhcluster.errors").map(|m| m.unbind()))
        .and_then(|m| m.bind(py).getattr(class))
        .and_then(|cls| cls.call1((text.clone(), status)));
    match made {
        Ok(instance) => PyErr::from_value(instance),
        // The Python half is missing (the extension imported on its own).
        Err(_) => PyRuntimeError::new_err(text),
    }
}

/// The message and its sources, `: `-separated.
pub(crate) fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// A role's error (start, stop, stats, subscribe).
pub(crate) fn lib(py: Python<'_>, e: &Error) -> PyErr {
    let class = match e {
        Error::Config(_) => "ConfigError",
        Error::Bind { .. } | Error::Connect { .. } => "EndpointError",
        Error::Zmq { .. } => "ZmqError",
        Error::Stopped => "Stopped",
        Error::Timeout(_) => "Timeout",
        Error::Protocol(_) => "ProtocolError",
        _ => "Error",
    };
    new(py, class, with_causes(e), None)
}

/// The Python class of an outcome status.
pub(crate) fn status_class(status: Status) -> &'static str {
    match status {
        Status::Failed => "Failed",
        Status::BadRequest => "BadRequest",
        Status::Rejected => "Rejected",
        Status::WorkerDeath => "WorkerDeath",
        Status::Redirected => "Redirected",
        Status::Overloaded => "Overloaded",
        Status::NoWorkers => "NoWorkers",
        Status::UnknownReplyTo => "UnknownReplyTo",
        Status::Expired => "Expired",
        Status::Forbidden => "Forbidden",
        _ => "StatusError",
    }
}

/// How a request ended without a response.
pub(crate) fn request(py: Python<'_>, e: &RequestError) -> PyErr {
    match e {
        RequestError::Status { status, message } => new(
            py,
            status_class(*status),
            message.clone(),
            Some(status.as_str()),
        ),
        RequestError::Timeout(_) => new(py, "Timeout", e.to_string(), None),
        RequestError::Disconnected(reason) => {
            let class = match reason {
                DisconnectReason::NotConnected => "NotConnected",
                _ => "Disconnected",
            };
            new(py, class, with_causes(e), None)
        }
        RequestError::Stopped => new(py, "Stopped", e.to_string(), None),
        RequestError::Protocol(_) => new(py, "ProtocolError", e.to_string(), None),
        RequestError::Internal => new(py, "InternalError", e.to_string(), None),
        RequestError::TooLarge { .. } => new(py, "TooLarge", e.to_string(), None),
        RequestError::Cancelled => new(py, "Cancelled", e.to_string(), None),
        _ => new(py, "Error", e.to_string(), None),
    }
}

/// Why a notification was not published.
pub(crate) fn publish(py: Python<'_>, e: &PublishError) -> PyErr {
    let class = match e {
        PublishError::InvalidTopic(_) => "ConfigError",
        PublishError::QueueFull => "QueueFull",
        PublishError::Stopped => "Stopped",
        _ => "Error",
    };
    new(py, class, with_causes(e), None)
}
