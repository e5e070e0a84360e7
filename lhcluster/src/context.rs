//! The process-wide ZeroMQ context.

use std::sync::OnceLock;

/// The ZeroMQ context every role of this process uses, so that `inproc://`
/// endpoints connect across roles.
pub fn context() -> &'static zmq::Context {
    static CONTEXT: OnceLock<zmq::Context> = OnceLock::new();
    CONTEXT.get_or_init(zmq::Context::new)
}

/// Terminates the process-wide context, letting messages still queued in
/// closed sockets leave first (each socket's linger bounds that), as a
/// program should before it exits: libzmq only flushes them on termination,
/// and a static context is never dropped. Returns whether it finished within
/// `timeout` (a socket still open keeps it waiting; then it gives up).
///
/// Call it last, once every role is stopped: afterwards no socket can be
/// created in this process. The `lhcluster` binary calls it on exit.
pub fn terminate_context(timeout: std::time::Duration) -> bool {
    let mut ctx = context().clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("lhcluster-terminate".to_owned())
        .spawn(move || {
            let _ = ctx.destroy();
            let _ = tx.send(());
        });
    spawned.is_ok() && rx.recv_timeout(timeout).is_ok()
}
