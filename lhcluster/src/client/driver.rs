//! The client's driver thread, and the state machine and socket it shares
//! with the callers that send.
//!
//! A request is sent by the thread that makes it: it takes the engine's
//! lock, hands the request to the state machine and the socket, and goes.
//! The driver thread is woken by what the broker sends, by its timers, by
//! commands (cancels, stats, stop, and requests that go through the channel,
//! below) and by a caller's ring (below), but not by every request: a
//! wake-up per request cost more than the send itself. To sleep without
//! holding the lock, the driver waits in `poll` on the socket's signalling
//! descriptor rather than on the socket, which callers may be using
//! meanwhile. That descriptor only signals input that comes after the
//! socket was last seen without input ([`Link::input_waiting`]), and a send
//! may take its signal: so a caller, after sending, rings the sleeping
//! driver if input is waiting, or if its request's deadline comes before
//! the driver's wake-up.
//!
//! A caller only sends: it never reads, so it never runs the wakers of
//! other requests, and the driver alone opens and closes the socket (the
//! descriptor the driver sleeps on stays the socket's).
//!
//! A request goes through the command channel instead when the channel is
//! not empty (so that it does not overtake one sent before it), when the
//! lock is taken or the driver is waiting for it (the driver sends it with
//! its batch, and is never kept waiting by callers; a waker, which the
//! driver runs under the lock, sends this way too, so it never waits for
//! itself), when the client has no socket (it is reconnecting), or when a
//! thread panicked under the lock (a bug: the driver then ends, and the
//! request with it, `Stopped`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::Instant;

use crossbeam_channel::Sender;
use tracing::info;

use super::config::ClientConfig;
use super::core::{ClientCore, Submit};
use super::stats::ClientStats;
use super::{ClientEvent, Readiness};
use crate::error::Error;
use crate::io;
use crate::link::Link;
use crate::role::{DriverInbox, RoleHandle};
use crate::stats_log::StatsLog;

#[derive(Debug)]
pub(crate) enum Command {
    Submit(Submit),
    /// A handle cancelled its request.
    Cancel(super::core::ReqKey, Arc<super::response::Shared>),
    Stats(Sender<ClientStats>),
    Stop,
}

/// The state machine and the socket: the driver's while it runs, and taken
/// out (dropped, which ends every request still outstanding) when it ends.
#[derive(Debug, Default)]
pub(crate) struct Engine {
    parts: Mutex<Option<Parts>>,
    /// The driver is waiting for the lock: callers queue their requests
    /// rather than take it first (a caller sending in a tight loop could
    /// otherwise win it again and again, with responses left unread).
    driver_waiting: AtomicBool,
}

#[derive(Debug)]
struct Parts {
    core: ClientCore,
    link: Link,
    /// Set while the driver sleeps: until when.
    asleep_until: Option<Instant>,
}

/// What became of a request a caller tried to send itself.
pub(crate) enum Direct {
    Sent,
    /// The client has stopped.
    Stopped,
    /// For the driver, through the command channel.
    Queue(Submit),
}

impl Engine {
    /// The parts, for the driver's start and end (whatever a panic left).
    fn lock(&self) -> MutexGuard<'_, Option<Parts>> {
        self.parts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes the next request's submit panic, as a bug in the state
    /// machine would, on whichever thread sends it.
    #[cfg(test)]
    pub(crate) fn panic_at_submit(&self) {
        if let Some(parts) = self.lock().as_mut() {
            parts.core.panic_at_submit = true;
        }
    }

    /// Takes the parts out and drops them: the driver has ended.
    fn end(&self) {
        let parts = self.lock().take();
        drop(parts);
    }

    /// Sends `submit` on the caller's thread. `queued`: the command channel
    /// holds commands, which this request must not overtake.
    pub(crate) fn submit(&self, submit: Submit, queued: bool, ring: impl FnOnce()) -> Direct {
        if queued || self.driver_waiting.load(Ordering::Acquire) {
            return Direct::Queue(submit);
        }
        // A driver at work (reading a burst of responses, say) sends what
        // is queued meanwhile in its next batch: no caller waits for it.
        // Poisoned, the state may be half changed: the driver ends.
        let mut guard = match self.parts.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::WouldBlock | TryLockError::Poisoned(_)) => {
                return Direct::Queue(submit);
            }
        };
        let Some(parts) = guard.as_mut() else {
            return Direct::Stopped;
        };
        if parts.link.socket().is_none() {
            return Direct::Queue(submit);
        }
        let now = Instant::now();
        parts.core.on_submit(now, submit);
        parts.link.flush(&mut parts.core);
        // (A driver not asleep makes another pass anyway.) The send may
        // have taken the descriptor's signal for waiting input; a deadline
        // before the driver's wake-up is this request's timeout.
        let wake_driver = parts
            .asleep_until
            .is_some_and(|until| parts.link.input_waiting() || parts.core.next_tick(now) < until);
        drop(guard);
        if wake_driver {
            ring();
        }
        Direct::Sent
    }
}

pub(super) fn spawn(
    config: ClientConfig,
    events: Sender<ClientEvent>,
    readiness: Arc<Readiness>,
    ids: Arc<super::ids::IdSource>,
    engine: Arc<Engine>,
) -> Result<RoleHandle<Command>, Error> {
    let (tx, bell, inbox) = crate::role::channel()?;
    let shutdown_timeout = config.shutdown_timeout;
    // Made here, not in the thread: a key that cannot be made is an error
    // of the start.
    let link = Link::new(config.hwm).with_curve(
        config.curve_server_key.as_ref(),
        config.curve_secret_key.as_ref(),
    )?;
    *engine.lock() = Some(Parts {
        core: ClientCore::new(&config, Some(events), Instant::now()).with_ids(ids),
        link,
        asleep_until: None,
    });
    RoleHandle::spawn(
        "lhcluster-client",
        tx,
        bell,
        || Command::Stop,
        shutdown_timeout,
        move || {
            // Declared first, dropped last: `wait_connected` answers `false`
            // once the driver has ended, by a stop or a panic.
            let _ended = readiness.end_on_drop();
            let mut driver = Driver {
                inbox,
                readiness,
                stats_log: StatsLog::new(config.stats_log_interval, Instant::now()),
            };
            // Dropped first when unwinding: no caller sends on the parts of
            // a driver that is gone.
            let _taken = TakeOnDrop(engine.clone());
            driver.run(&engine);
        },
    )
}

/// Takes the parts out of the engine as the driver ends, however it ends:
/// the requests still outstanding end (with `Internal` while unwinding),
/// and callers find the client stopped.
struct TakeOnDrop(Arc<Engine>);

impl Drop for TakeOnDrop {
    fn drop(&mut self) {
        self.0.end();
    }
}

struct Driver {
    inbox: DriverInbox<Command>,
    readiness: Arc<Readiness>,
    stats_log: StatsLog,
}

/// What the driver does after a pass.
enum Next {
    /// Another pass at once: input is waiting.
    Again,
    /// Sleep until the socket's descriptor (if there is a socket) or the
    /// doorbell signals, or `until`.
    Sleep(zmq::Result<Option<std::os::fd::RawFd>>, Instant),
    Stop,
}

impl Driver {
    fn run(&mut self, engine: &Engine) {
        let mut rung = false;
        loop {
            let next = {
                engine.driver_waiting.store(true, Ordering::Release);
                let locked = engine.parts.lock();
                engine.driver_waiting.store(false, Ordering::Release);
                let mut guard = match locked {
                    Ok(guard) => guard,
                    Err(poisoned) => {
                        tracing::error!(
                            "a thread panicked while sending on the client's socket (a bug): \
                             the client has stopped"
                        );
                        // As when the driver itself panics: whether the
                        // requests ran is unknown.
                        if let Some(parts) = poisoned.into_inner().as_mut() {
                            parts.core.fail_all(&super::RequestError::Internal);
                        }
                        break;
                    }
                };
                let parts = guard
                    .as_mut()
                    .expect("the driver's parts are taken only as it ends");
                self.pass(parts, rung)
            };
            rung = match next {
                Next::Again => false,
                Next::Stop => break,
                Next::Sleep(fd, until) => {
                    match fd.and_then(|fd| io::wait_fds(&self.inbox.listener, fd, until)) {
                        Ok(doorbell) => doorbell,
                        Err(e) => {
                            tracing::error!(error = %e, "client poll failed: stopping");
                            break;
                        }
                    }
                }
            };
        }
        // Before any caller can send on a socket nobody reads.
        engine.end();
    }

    /// Reads what came, carries out the commands and the timers, and says
    /// whether to sleep.
    fn pass(&mut self, parts: &mut Parts, rung: bool) -> Next {
        parts.asleep_until = None;
        // The first pass opens the socket (the new state machine's first
        // action) before it takes the requests queued meanwhile.
        parts.link.flush(&mut parts.core);
        let read = parts.link.read(&mut parts.core, |_, _| {});
        for command in self.inbox.pending(rung) {
            match command {
                Command::Submit(submit) => {
                    parts.core.on_submit(Instant::now(), submit);
                    // Send in batches while callers keep queueing.
                    if parts.core.actions().len() >= io::READ_BATCH {
                        parts.link.flush(&mut parts.core);
                    }
                }
                Command::Cancel(key, shared) => {
                    parts.core.on_cancel(Instant::now(), key, &shared);
                }
                Command::Stats(reply) => {
                    let _ = reply.send(parts.core.stats());
                }
                Command::Stop => {
                    parts.core.on_stop(Instant::now());
                    parts.link.flush(&mut parts.core);
                    self.readiness.set(false);
                    info!("client stopped");
                    return Next::Stop;
                }
            }
        }
        let now = Instant::now();
        parts.core.on_tick(now);
        if self.stats_log.due(now) {
            info!(stats = ?parts.core.stats(), "client stats");
        }
        parts.link.flush(&mut parts.core);
        self.readiness.set(parts.core.is_ready());
        // Last: the descriptor signals only input that comes after this.
        // (A command sent meanwhile rings the doorbell, re-armed above.)
        if read >= io::READ_BATCH || parts.link.input_waiting() {
            return Next::Again;
        }
        let until = self.stats_log.wake_at(parts.core.next_tick(Instant::now()));
        parts.asleep_until = Some(until);
        Next::Sleep(parts.link.input_fd(), until)
    }
}
