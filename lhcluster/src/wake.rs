//! Waking a driver thread that sleeps in `zmq::poll`.
//!
//! Handles push commands into a channel, then ring a doorbell: a byte written
//! to a Unix socket pair whose read end the driver polls next to its ZeroMQ
//! sockets. Writing is thread-safe without a lock (unlike a ZeroMQ socket),
//! and the `armed` flag keeps it to one syscall per burst of commands.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The ringing end, shared by every handle of a role.
#[derive(Debug)]
pub(crate) struct Doorbell {
    tx: UnixStream,
    armed: AtomicBool,
}

impl Doorbell {
    pub(crate) fn ring(&self) {
        if !self.armed.swap(true, Ordering::AcqRel) {
            // A full buffer means a wake-up is pending anyway.
            let _ = (&self.tx).write(&[1]);
        }
    }
}

/// The listening end, owned by the driver.
#[derive(Debug)]
pub(crate) struct Listener {
    rx: UnixStream,
    bell: Arc<Doorbell>,
}

impl Listener {
    pub(crate) fn fd(&self) -> RawFd {
        self.rx.as_raw_fd()
    }

    /// Re-arms the doorbell. Call before draining the command channel, so a
    /// command sent after the drain rings again.
    pub(crate) fn reset(&self) {
        self.bell.armed.store(false, Ordering::Release);
        let mut buf = [0u8; 64];
        while let Ok(n) = (&self.rx).read(&mut buf) {
            if n < buf.len() {
                break;
            }
        }
    }
}

pub(crate) fn pair() -> io::Result<(Arc<Doorbell>, Listener)> {
    let (tx, rx) = UnixStream::pair()?;
    tx.set_nonblocking(true)?;
    rx.set_nonblocking(true)?;
    let bell = Arc::new(Doorbell {
        tx,
        armed: AtomicBool::new(false),
    });
    Ok((bell.clone(), Listener { rx, bell }))
}
