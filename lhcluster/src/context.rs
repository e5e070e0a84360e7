//! The process-wide ZeroMQ context.

use std::sync::OnceLock;

/// The ZeroMQ context every role of this process uses, so that `inproc://`
/// endpoints connect across roles.
pub fn context() -> &'static zmq::Context {
    static CONTEXT: OnceLock<zmq::Context> = OnceLock::new();
    CONTEXT.get_or_init(zmq::Context::new)
}
