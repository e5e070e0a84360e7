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
//! A caller that blocks on its handle ([`Engine::lead`]: `wait`,
//! `wait_timeout`, `wait_for`, a `Waiter`) reads the socket itself while it waits, as
//! the one *leader*: it sleeps in `poll` on the socket's descriptor and its
//! own doorbell, and reads what comes, its own response and anyone else's
//! (it completes their handles and runs their wakers, as the driver
//! would). Its response then wakes it directly, not the driver first and
//! the driver it. Meanwhile the driver sleeps without the descriptor (both
//! would wake on it), and makes a pass (reads, timers) every
//! [`LEADER_GRACE`]; when it finds no leader, it watches the socket again.
//!
//! So that no response a request waits for waits for that grace (only
//! what comes while no request is outstanding may: a heartbeat, a goodbye,
//! a response sent here as another client's `reply_to`, a late outcome):
//! - a leader that leaves with any request outstanding rings the driver;
//! - a request sent while nobody watches the socket (no leader, the driver
//!   blind) marks its handle: unless a blocking wait then leads, the
//!   handle's first other use (a poll as a future, `is_done`, `try_take`,
//!   `receipts`, `wait_receipt`, a wait that cannot lead, its drop) kicks
//!   the driver ([`Engine::kick`]), which is rung if nobody watches yet;
//! - the driver rings the leader's doorbell after a pass that completed the
//!   leader's request (a timeout, a stop) or replaced the socket, and as it
//!   ends; a caller whose send may have taken the descriptor's signal rings
//!   it too.
//!
//! The driver alone opens and closes the socket (the descriptor stays the
//! socket's): a read that calls for it (the broker went away) is left to
//! the driver, rung, and callers send through the channel until it has. A
//! leader that finds more to read while the driver waits for the lock
//! leaves it to the driver. A panic on a leader's thread (a bug, or a waker
//! that panicked) unwinds out of its `wait`, and the client stops as for a
//! panic while sending (below).
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
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, TryLockError};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use tracing::info;

use super::config::ClientConfig;
use super::core::{ClientCore, Submit};
use super::response::Shared;
use super::stats::ClientStats;
use super::{ClientEvent, Readiness};
use crate::error::Error;
use crate::io;
use crate::link::Link;
use crate::role::{DriverInbox, RoleHandle};
use crate::session::LinkAction;
use crate::stats_log::StatsLog;
use crate::wake::{Doorbell, Listener};

/// How long the driver sleeps without the socket's descriptor while a
/// caller leads, before it looks whether one still does. Bounds how late a
/// message the broker sends unasked is read when the leader has gone.
#[cfg(not(test))]
const LEADER_GRACE: Duration = Duration::from_millis(10);
/// Long in unit tests: nothing but messages the broker sends unasked may
/// wait for it (`lead_tests.rs`).
#[cfg(test)]
const LEADER_GRACE: Duration = Duration::from_secs(120);

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
#[derive(Debug)]
pub(crate) struct Engine {
    parts: Mutex<Option<Parts>>,
    /// The driver is waiting for the lock: callers queue their requests
    /// rather than take it first (a caller sending in a tight loop could
    /// otherwise win it again and again, with responses left unread).
    driver_waiting: AtomicBool,
    /// Wakes the leader: its request may be done, or input may be waiting
    /// that the descriptor no longer signals.
    leader_bell: Arc<Doorbell>,
    /// The leader's end (only the leader polls and resets it).
    leader_listener: Listener,
    /// The driver's doorbell (set as it starts).
    driver_bell: OnceLock<Arc<Doorbell>>,
}

#[derive(Debug)]
struct Parts {
    core: ClientCore,
    link: Link,
    /// Set while the driver sleeps: until when.
    asleep_until: Option<Instant>,
    /// The driver sleeps with the socket's descriptor in its poll.
    driver_watches: bool,
    /// The caller that reads the socket while it waits: its request's state.
    leader: Option<Arc<Shared>>,
}

impl Parts {
    /// Whether the driver sleeps without watching the socket.
    fn driver_blind(&self) -> bool {
        self.asleep_until.is_some() && !self.driver_watches
    }
}

/// What became of a request a caller tried to send itself.
pub(crate) enum Direct {
    /// `unwatched`: nobody watches the socket for its response (the driver
    /// sleeps without the descriptor, no caller leads): unless the caller
    /// leads (blocks on the handle), the handle kicks the driver.
    Sent { unwatched: bool },
    /// The client has stopped.
    Stopped,
    /// For the driver, through the command channel.
    Queue(Submit),
}

impl Engine {
    pub(crate) fn new() -> Result<Self, Error> {
        let (leader_bell, leader_listener) = crate::wake::pair().map_err(Error::Spawn)?;
        Ok(Self {
            parts: Mutex::new(None),
            driver_waiting: AtomicBool::new(false),
            leader_bell,
            leader_listener,
            driver_bell: OnceLock::new(),
        })
    }

    fn ring_driver(&self) {
        if let Some(bell) = self.driver_bell.get() {
            bell.ring();
        }
    }

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

    /// Takes the parts out and drops them: the driver has ended. (Dropping
    /// them completes every request still outstanding; the leader is rung
    /// to find that out.)
    fn end(&self) {
        let parts = self.lock().take();
        drop(parts);
        self.leader_bell.ring();
    }

    /// Sends `submit` on the caller's thread. `queued`: the command channel
    /// holds commands, which this request must not overtake.
    pub(crate) fn submit(&self, submit: Submit, queued: bool) -> Direct {
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
        // A reconnect queued by a leader's read is the driver's to carry out.
        if parts.link.socket().is_none() || parts.core.actions().iter().any(is_for_driver) {
            return Direct::Queue(submit);
        }
        let now = Instant::now();
        parts.core.on_submit(now, submit);
        parts.link.flush(&mut parts.core);
        // (A driver not asleep makes another pass anyway.) The send may
        // have taken the descriptor's signal for waiting input; a deadline
        // before the driver's wake-up is this request's timeout.
        // Input waiting is the leader's to read, if a caller leads.
        let input = parts.link.input_waiting();
        let wake_leader = input && parts.leader.is_some();
        let wake_driver = parts.asleep_until.is_some_and(|until| {
            (input && parts.leader.is_none()) || parts.core.next_tick(now) < until
        });
        let unwatched = !wake_driver && parts.leader.is_none() && parts.driver_blind();
        drop(guard);
        if wake_leader {
            self.leader_bell.ring();
        }
        if wake_driver {
            self.ring_driver();
        }
        Direct::Sent { unwatched }
    }

    /// Makes sure someone reads the socket: rings the driver if it sleeps
    /// without the descriptor and no caller leads (or if that cannot be
    /// told at once: a spare pass costs little).
    pub(crate) fn kick(&self) {
        let unwatched = match self.parts.try_lock() {
            Ok(guard) => guard
                .as_ref()
                .is_some_and(|parts| parts.leader.is_none() && parts.driver_blind()),
            Err(_) => true,
        };
        if unwatched {
            self.ring_driver();
        }
    }

    /// Reads the socket on the caller's thread while it waits for the
    /// request whose state is `shared`, until that request is done or
    /// `until` passes, as the leader (see the module's doc). Returns
    /// `false` at once, having read nothing, when it cannot lead: another
    /// caller leads, the lock is taken or the driver waits for it, the
    /// socket is reconnecting, the client has stopped or a thread panicked
    /// under the lock. Either way the caller then waits on the handle as
    /// usual, for whatever time is left: the outcome comes all the same.
    pub(crate) fn lead(&self, shared: &Arc<Shared>, until: Option<Instant>) -> bool {
        {
            if self.driver_waiting.load(Ordering::Acquire) {
                return false;
            }
            let Ok(mut guard) = self.parts.try_lock() else {
                return false;
            };
            let Some(parts) = guard.as_mut() else {
                return false;
            };
            // (A reconnect queued for the driver: the socket is going.)
            if parts.leader.is_some()
                || parts.link.socket().is_none()
                || parts.core.actions().iter().any(is_for_driver)
            {
                return false;
            }
            parts.leader = Some(shared.clone());
            if parts.asleep_until.is_some() && parts.driver_watches {
                // Asleep on the descriptor, it would wake with the leader:
                // it sleeps again without it (while the request travels).
                self.ring_driver();
            }
        }
        loop {
            // Poisoned: the driver ends the client (and this request).
            let Ok(mut guard) = self.parts.lock() else {
                return true;
            };
            let Some(parts) = guard.as_mut() else {
                return true;
            };
            // Before the look at the request: a ring after it wakes the poll.
            self.leader_listener.reset();
            let was_ready = parts.core.is_ready();
            let read = parts.link.read(&mut parts.core, |_, _| {});
            // Answers (a greeting again, say) go now; closing or opening
            // the socket, and telling the client's readiness, are the
            // driver's.
            let for_driver = parts.core.is_ready() != was_ready
                || parts.core.actions().iter().any(is_for_driver);
            if for_driver {
                if parts.asleep_until.is_some() {
                    self.ring_driver();
                }
            } else {
                parts.link.flush(&mut parts.core);
            }
            let fd = match parts.link.input_fd() {
                Ok(Some(fd)) if !for_driver => fd,
                _ => {
                    self.resign(parts);
                    return true;
                }
            };
            if shared.is_done() || until.is_some_and(|until| Instant::now() >= until) {
                self.resign(parts);
                return true;
            }
            // Last use of the socket before the poll: it re-arms the
            // descriptor. More to read goes on at once, unless the driver
            // waits for the lock: it reads it then (and rings if that ends
            // this request).
            let more = read >= io::READ_BATCH || parts.link.input_waiting();
            if more && !self.driver_waiting.load(Ordering::Acquire) {
                continue;
            }
            drop(guard);
            let far = Instant::now() + Duration::from_secs(3600);
            if io::wait_fds(&self.leader_listener, Some(fd), until.unwrap_or(far)).is_err() {
                // The outcome comes through the driver.
                if let Some(parts) = self.lock().as_mut() {
                    self.resign(parts);
                }
                return true;
            }
        }
    }

    /// The leader leaves. The driver, if it sleeps blind to the socket,
    /// watches it again at once if any request is outstanding (the
    /// leader's own, after a timed wait), else within [`LEADER_GRACE`].
    fn resign(&self, parts: &mut Parts) {
        parts.leader = None;
        if parts.driver_blind() && parts.core.has_outstanding() {
            self.ring_driver();
        }
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
    let _ = engine.driver_bell.set(bell.clone());
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
        driver_watches: false,
        leader: None,
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

impl super::response::SocketReader for Engine {
    fn lead(&self, shared: &Arc<Shared>, until: Option<Instant>) -> bool {
        Engine::lead(self, shared, until)
    }

    fn kick(&self) {
        Engine::kick(self);
    }
}

/// An action of the state machine that only the driver carries out:
/// closing or opening the socket.
fn is_for_driver(action: &LinkAction) -> bool {
    !matches!(action, LinkAction::Send(_))
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
                            "a thread panicked while using the client's socket (a bug, or \
                             a waker that panicked): the client has stopped"
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
                let leader_fd = parts.leader.is_some().then(|| parts.link.input_fd().ok());
                let next = self.pass(parts, rung);
                // The leader, in its poll, is woken if this pass ended its
                // request (a timeout, a stop) or replaced the socket.
                if let Some(leader) = &parts.leader
                    && (leader.is_done() || leader_fd != Some(parts.link.input_fd().ok()))
                {
                    engine.leader_bell.ring();
                }
                next
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
        parts.driver_watches = false;
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
        let now = Instant::now();
        let until = self.stats_log.wake_at(parts.core.next_tick(now));
        if parts.leader.is_some() {
            // The leader watches the socket.
            let until = until.min(now + LEADER_GRACE);
            parts.asleep_until = Some(until);
            return Next::Sleep(Ok(None), until);
        }
        parts.asleep_until = Some(until);
        parts.driver_watches = true;
        Next::Sleep(parts.link.input_fd(), until)
    }
}
