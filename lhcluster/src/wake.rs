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
    ///
    /// Order matters: consume the pending bytes first, then disarm. The
    /// other way round, a ring between the two would write a byte that the
    /// drain then eats while `armed` stays set, and every later ring would
    /// be skipped: a lost wake-up.
    pub(crate) fn reset(&self) {
        let mut buf = [0u8; 64];
        while let Ok(n) = (&self.rx).read(&mut buf) {
            if n < buf.len() {
                break;
            }
        }
        self.bell.armed.store(false, Ordering::Release);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn readable(listener: &Listener, timeout_ms: i64) -> bool {
        let mut items = [zmq::PollItem::from_fd(listener.fd(), zmq::POLLIN)];
        zmq::poll(&mut items, timeout_ms).unwrap();
        items[0].is_readable()
    }

    #[test]
    fn a_ring_after_reset_always_wakes_the_listener() {
        let (bell, listener) = pair().unwrap();
        for _ in 0..1000 {
            bell.ring();
            assert!(readable(&listener, 1000));
            listener.reset();
            assert!(!readable(&listener, 0), "nothing pending after reset");
        }
    }

    #[test]
    fn rings_racing_with_resets_are_never_lost() {
        let (bell, listener) = pair().unwrap();
        let (tx, rx) = crossbeam_channel::unbounded::<u32>();
        let ringer = std::thread::spawn(move || {
            for i in 0..20_000 {
                tx.send(i).unwrap();
                bell.ring();
            }
        });
        let mut received = 0;
        while received < 20_000 {
            // Every pending command is announced by a readable listener.
            assert!(readable(&listener, 5000), "lost wake-up after {received}");
            listener.reset();
            while rx.try_recv().is_ok() {
                received += 1;
            }
        }
        ringer.join().unwrap();
    }
}
