//! Fast handlers on the socket's thread, and a second thread that takes the
//! socket over when one runs long.
//!
//! Handing a request to a pool thread and its result back costs two
//! wake-ups, which on a busy machine cost more CPU than a handler of a few
//! microseconds. So the thread that reads the socket (the *leader*) runs
//! the requests of fast types itself (the types whose handlers have lately
//! taken at most [`FAST_HANDLER`](super::pool::FAST_HANDLER) on average,
//! as timed in [`Costs`](super::pool::Costs)), in one of the pool's
//! `capacity` places. The others still go to the pool.
//!
//! A fast handler may still block: a lock, a slow call, a bug. While it
//! runs, nobody reads the socket or sends heartbeats, so a second thread,
//! the *watcher*, looks every [`WATCH_TICK`]: if the same run is still going,
//! it takes the driver (its lock is free while the leader runs a handler)
//! and leads from then on; the type's requests then go to the pool for
//! its next 64 runs (doubled at each further takeover of the type, up to
//! 65 536), and until its runs there are fast again. The old leader finishes
//! its handler, finds the driver taken, sends its result the pool's way
//! (the channel and the doorbell) and becomes the watcher. The two threads
//! only ever swap: one leads, the other watches or finishes a handler, and
//! requests run on the leader only while a watcher is ready.
//!
//! The watcher's look costs a wake-up every [`WATCH_TICK`] while requests
//! flow; when no handler has run on the leader since its last look it
//! sleeps twice as long each time, up to [`MAX_NAP`], and the next run
//! wakes it.
//!
//! A worker without a pool (inline handlers, or only async ones) has no
//! watcher: its one thread leads throughout.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::thread::Thread;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use tracing::{debug, error, warn};

use super::driver::{Driver, Pass};
use super::pool::{self, Costs, Done, Handlers, InlineSlot};
use crate::protocol::RequestType;
use crate::wake::Doorbell;

/// How long a run on the leader may go on before the watcher takes the
/// socket over: between one and two ticks. Far below any heartbeat
/// interval, and long against a fast handler (20 µs).
pub(crate) const WATCH_TICK: Duration = Duration::from_millis(2);

/// The longest the watcher sleeps while no handler runs on the leader.
const MAX_NAP: Duration = Duration::from_millis(128);

/// What the leader needs to run requests itself, outside the driver's
/// lock.
pub(super) struct InlineRuns {
    pub(super) slot: InlineSlot,
    pub(super) handlers: Arc<Handlers>,
    pub(super) costs: Arc<Costs>,
    /// The pool's way back to the driver, for a result whose thread lost
    /// the socket meanwhile.
    pub(super) done: Sender<Done>,
    pub(super) bell: Arc<Doorbell>,
}

/// What the watcher sees of the leader's runs, without a lock.
#[derive(Debug)]
pub(super) struct Watch {
    /// Bumped when a run on the leader starts and when it ends: odd while
    /// one runs.
    seq: AtomicU64,
    /// The type of the run going on.
    request_type: AtomicU32,
    /// When it began, in nanoseconds since `epoch`.
    began: AtomicU64,
    epoch: Instant,
    /// A watcher is ready (else the leader sends every request to the pool).
    present: AtomicBool,
    /// The watcher sleeps longer than a tick: the next run wakes it.
    napping: AtomicBool,
    /// The watcher's thread, to wake it.
    thread: Mutex<Option<Thread>>,
}

impl Default for Watch {
    fn default() -> Self {
        Self {
            seq: AtomicU64::new(0),
            request_type: AtomicU32::new(0),
            began: AtomicU64::new(0),
            epoch: Instant::now(),
            present: AtomicBool::new(false),
            napping: AtomicBool::new(false),
            thread: Mutex::new(None),
        }
    }
}

impl Watch {
    pub(super) fn present(&self) -> bool {
        self.present.load(Ordering::SeqCst)
    }

    /// As if a watcher were there (or not), for the executor's tests.
    #[cfg(test)]
    pub(super) fn set_present(&self, present: bool) {
        self.present.store(present, Ordering::SeqCst);
    }

    fn nanos(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// How long the run going on has run.
    fn running_for(&self) -> Duration {
        Duration::from_nanos(
            self.nanos()
                .saturating_sub(self.began.load(Ordering::Relaxed)),
        )
    }

    /// A run of `request_type` begins, at `started` (the run's own clock
    /// read, which also times it).
    fn begin(&self, request_type: RequestType, started: Instant) {
        self.request_type.store(request_type, Ordering::Relaxed);
        let began = started.saturating_duration_since(self.epoch).as_nanos();
        self.began
            .store(u64::try_from(began).unwrap_or(u64::MAX), Ordering::Relaxed);
        // SeqCst here and in the watcher's nap (a store of `napping`, then
        // a load of `seq`): with weaker orderings each side may miss the
        // other's write, and the watcher would sleep a whole nap.
        self.seq.fetch_add(1, Ordering::SeqCst);
        if self.napping.swap(false, Ordering::SeqCst) {
            self.wake();
        }
    }

    fn end(&self) {
        self.seq.fetch_add(1, Ordering::SeqCst);
    }

    fn wake(&self) {
        if let Some(thread) = self
            .thread
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            thread.unpark();
        }
    }
}

/// The worker's driver and the two threads that take turns with it.
pub(super) struct Relay {
    driver: Mutex<Option<Driver>>,
    /// `None`: no pool, so no runs on the leader and no watcher.
    runs: Option<InlineRuns>,
    watch: Arc<Watch>,
    /// The driver has ended (stopped, aborted or panicked).
    ended: AtomicBool,
    /// Dropped at the end, for the role's thread waiting on it.
    end_signal: Mutex<Option<Sender<()>>>,
}

type Guard<'a> = MutexGuard<'a, Option<Driver>>;

/// How a turn as leader ended.
enum Led {
    /// The worker has ended.
    Ended,
    /// The watcher took the socket over during a run on this thread.
    TakenOver,
}

impl Relay {
    pub(super) fn new(driver: Driver, runs: Option<InlineRuns>, watch: Arc<Watch>) -> Self {
        Self {
            driver: Mutex::new(Some(driver)),
            runs,
            watch,
            ended: AtomicBool::new(false),
            end_signal: Mutex::new(None),
        }
    }

    /// The driver, unless the worker has ended (or its leader panicked
    /// holding it).
    fn lock(&self) -> Option<Guard<'_>> {
        self.driver.lock().ok().filter(|g| g.is_some())
    }

    /// Marks the worker ended, drops the driver (its socket, its inbox,
    /// and with them what callers wait on) and wakes the watcher.
    fn end(&self) {
        self.ended.store(true, Ordering::Release);
        let mut guard = self.driver.lock().unwrap_or_else(|p| p.into_inner());
        *guard = None;
        drop(guard);
        self.watch.wake();
        self.end_signal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
    }
}

/// Runs the worker; returns when it has ended. Without a pool, on this
/// thread. With one, on two threads started here that take turns (see the
/// module's doc): this thread, the role's, only waits for the end, so
/// that a stop never waits for a handler that outlives the shutdown
/// timeout on one of them (nor does it for the pool's).
pub(super) fn start(relay: &Arc<Relay>) {
    if relay.runs.is_none() {
        return take_turns(relay, true);
    }
    let (end_tx, ended) = crossbeam_channel::bounded::<()>(0);
    *relay.end_signal.lock().unwrap_or_else(|p| p.into_inner()) = Some(end_tx);
    let spawn = |lead_first: bool| {
        let relay = relay.clone();
        std::thread::Builder::new()
            .name("lhcluster-worker".to_owned())
            .spawn(move || {
                let run = std::panic::AssertUnwindSafe(|| take_turns(&relay, lead_first));
                if let Err(panic) = std::panic::catch_unwind(run) {
                    error!(
                        panic = crate::role::panic_message(&*panic),
                        "the worker's driver panicked (a bug): the worker has stopped"
                    );
                }
            })
    };
    if let Err(e) = spawn(false) {
        // Without a watcher every request goes to the pool.
        warn!(error = %e, "cannot start the worker's watcher thread");
    }
    if let Err(e) = spawn(true) {
        warn!(error = %e, "cannot start the worker's socket thread: it runs on the role's");
        return take_turns(relay, true);
    }
    // Disconnected by `Relay::end`.
    let _ = ended.recv();
}

/// Ends the worker if this thread unwinds from a panic while leading.
struct EndOnUnwind<'a>(&'a Relay);

impl Drop for EndOnUnwind<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.end();
        }
    }
}

/// Leads while this thread holds the driver, watches otherwise.
fn take_turns(relay: &Relay, lead_first: bool) {
    let _end_on_unwind = EndOnUnwind(relay);
    let mut guard = if lead_first { relay.lock() } else { None };
    loop {
        if let Some(held) = guard.take() {
            match lead(relay, held) {
                Led::Ended => {
                    relay.end();
                    return;
                }
                Led::TakenOver => {}
            }
        }
        if relay.runs.is_none() {
            return;
        }
        match watch(relay) {
            Some(held) => guard = Some(held),
            None => return,
        }
    }
}

/// The leader's loop: passes of the driver, and between them the requests
/// to run here, each outside the lock.
fn lead<'a>(relay: &'a Relay, mut guard: Guard<'a>) -> Led {
    loop {
        let Some(driver) = guard.as_mut() else {
            return Led::Ended;
        };
        let Some(job) = driver.executor.next_inline() else {
            if driver.pass() == Pass::Ended {
                // Dropped under the lock, so that a thread coming back from
                // a handler finds no driver to lead (see `Relay::end`).
                *guard = None;
                return Led::Ended;
            }
            continue;
        };
        let Some(runs) = relay.runs.as_ref() else {
            driver.executor.submit(job);
            continue;
        };
        // The watcher may have gone to lead elsewhere, and the pool's
        // places may all be taken meanwhile (by a type that is slow).
        if !(relay.watch.present() && runs.slot.take()) {
            driver.executor.submit(job);
            continue;
        }
        let request_type = job.dispatch.request_type;
        let started = Instant::now();
        relay.watch.begin(request_type, started);
        drop(guard);
        let done = pool::run(&runs.handlers, job);
        // One clock read for the run's time and its result's.
        let finished = Instant::now();
        runs.costs.record(
            request_type,
            finished.saturating_duration_since(started),
            false,
        );
        runs.slot.give_back();
        relay.watch.end();
        guard = match relay.driver.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::WouldBlock) => {
                // The watcher leads now: the result goes its way.
                if runs.done.send(done).is_ok() {
                    runs.bell.ring();
                }
                return Led::TakenOver;
            }
            Err(TryLockError::Poisoned(_)) => return Led::Ended,
        };
        if let Some(driver) = guard.as_mut() {
            driver.after_inline_run(finished, done);
        }
    }
}

/// The watcher's loop: returns the driver when it takes the socket over,
/// `None` when the worker has ended.
fn watch(relay: &Relay) -> Option<Guard<'_>> {
    let watch = &*relay.watch;
    *watch.thread.lock().unwrap_or_else(|p| p.into_inner()) = Some(std::thread::current());
    let mut nap = WATCH_TICK;
    let mut last = watch.seq.load(Ordering::SeqCst);
    let taken = loop {
        // Every turn, not only on the way in: the thread this one took
        // over from may have stored `false` after us (see below), and the
        // leader must not be left without runs on its thread for good.
        watch.present.store(true, Ordering::SeqCst);
        if relay.ended.load(Ordering::Acquire) {
            break None;
        }
        if nap > WATCH_TICK {
            watch.napping.store(true, Ordering::SeqCst);
            // A run that began before the flag was set did not wake us.
            if watch.seq.load(Ordering::SeqCst) != last {
                nap = WATCH_TICK;
            }
        }
        std::thread::park_timeout(nap);
        watch.napping.store(false, Ordering::SeqCst);
        let seq = watch.seq.load(Ordering::SeqCst);
        // The same run as a tick ago, and on for a tick at least (a wake-up
        // may come early): take the socket over.
        if seq % 2 == 1 && seq == last && watch.running_for() >= WATCH_TICK {
            // No longer watching once the lock is ours: the leader must not
            // start a run on its thread meanwhile.
            watch.present.store(false, Ordering::SeqCst);
            match relay.driver.try_lock() {
                Ok(mut guard) => {
                    let Some(driver) = guard.as_mut() else {
                        break None;
                    };
                    if watch.seq.load(Ordering::SeqCst) == seq {
                        let request_type = watch.request_type.load(Ordering::Relaxed);
                        let so_far = watch.running_for();
                        let strikes = relay
                            .runs
                            .as_ref()
                            .map_or(0, |runs| runs.costs.taken_over(request_type, so_far));
                        driver.count_takeover();
                        // Once per type at warn: the counter tells the rest.
                        if strikes == 1 {
                            warn!(
                                request_type,
                                "a handler that was fast runs long on the worker's socket \
                                 thread: another thread takes the socket over, and the type's \
                                 requests go to the pool for a while (counted in \
                                 socket_takeovers)"
                            );
                        } else {
                            debug!(request_type, strikes, "socket taken over again");
                        }
                    }
                    break Some(guard);
                }
                // The run has just ended and its thread leads again.
                Err(TryLockError::WouldBlock) => watch.present.store(true, Ordering::SeqCst),
                Err(TryLockError::Poisoned(_)) => break None,
            }
        }
        nap = if seq == last && seq % 2 == 0 {
            (nap * 2).min(MAX_NAP)
        } else {
            WATCH_TICK
        };
        last = seq;
    };
    watch.present.store(false, Ordering::SeqCst);
    taken
}
