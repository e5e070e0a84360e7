//! The handler pool: `capacity` threads running handlers off the driver
//! thread. A panic becomes a `FAILED` outcome; the thread keeps serving.
//!
//! Waking a thread costs a context switch, which is far more than a cheap
//! handler, so the pool wakes as few as it can without ever leaving a job
//! queued while a thread sleeps: at most one idle thread is kept *searching*
//! (awake, not running a handler). A submitted job wakes a sleeping thread
//! only when no thread is searching; a searcher that takes a job while more
//! are queued wakes the next one before running it. Slow handlers thus
//! still run `capacity` at a time (each new job finds a searcher, or wakes
//! one), while a burst of fast ones is served by the threads already awake.
//! Sleeping threads are woken last-in first-out, so the warmest runs.
//!
//! The thread that reads the socket may also run a fast handler itself (see
//! `relay.rs`): it then holds one of the pool's `capacity` places
//! ([`InlineSlot`]), so that handlers never run more than `capacity` at once.
//! Every run, here or there, is timed into [`Costs`], which tells which
//! types are fast enough for that.

use std::collections::VecDeque;

use foldhash::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use super::handler::{HandlerError, Job, RawHandler, RequestContext};
use crate::protocol::{Payload, RequestId, RequestType};
use crate::wake::Doorbell;

/// A finished request, for the driver.
#[derive(Debug)]
pub(crate) struct Done {
    pub(crate) key: (RequestType, RequestId),
    pub(crate) outcome: Result<Payload, HandlerError>,
    pub(crate) panicked: bool,
}

pub(crate) type Handlers = HashMap<RequestType, Arc<dyn RawHandler>>;

#[derive(Debug, Default)]
struct State {
    jobs: VecDeque<Job>,
    /// Sleeping threads, the most recently idle last.
    idle: Vec<usize>,
    /// Per thread: woken on purpose (and already counted as searching).
    woken: Vec<bool>,
    /// Threads awake and not running a handler.
    searching: usize,
    /// Threads running a handler.
    running: usize,
    /// The socket's thread runs a handler in one of the pool's places.
    inline: bool,
    /// Handlers that may run at once, the inline one included.
    capacity: usize,
    closed: bool,
}

impl State {
    /// A pool thread may start a job: the pool's places are not all taken.
    fn has_room(&self) -> bool {
        self.running + usize::from(self.inline) < self.capacity
    }
}

#[derive(Debug)]
struct Queue {
    state: Mutex<State>,
    /// One per thread, so that a chosen thread is woken.
    conds: Vec<Condvar>,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes one sleeping thread if none is searching; returns the thread
    /// to notify once the lock is released.
    fn want_searcher(s: &mut State) -> Option<usize> {
        if s.searching > 0 {
            return None;
        }
        let i = s.idle.pop()?;
        s.woken[i] = true;
        s.searching += 1;
        Some(i)
    }

    fn notify(&self, i: Option<usize>) {
        if let Some(i) = i {
            self.conds[i].notify_one();
        }
    }

    /// The next job for thread `i`, sleeping while there is none; `None`
    /// when the pool is closed and drained. `finished`: the thread comes
    /// back from a job (else it was already counted as searching).
    fn next(&self, i: usize, finished: bool) -> Option<Job> {
        let mut s = self.lock();
        if finished {
            s.searching += 1;
            s.running -= 1;
        }
        loop {
            let job = if s.has_room() {
                s.jobs.pop_front()
            } else {
                None
            };
            if let Some(job) = job {
                s.searching -= 1;
                s.running += 1;
                let wake = if s.jobs.is_empty() || !s.has_room() {
                    None
                } else {
                    Self::want_searcher(&mut s)
                };
                drop(s);
                self.notify(wake);
                return Some(job);
            }
            if s.closed {
                s.searching -= 1;
                return None;
            }
            s.searching -= 1;
            s.idle.push(i);
            while !s.woken[i] && !s.closed {
                s = self.conds[i].wait(s).unwrap_or_else(|p| p.into_inner());
            }
            if s.woken[i] {
                s.woken[i] = false;
            } else {
                // Closed while asleep: leave the idle list, search once more.
                s.idle.retain(|&t| t != i);
                s.searching += 1;
            }
        }
    }
}

#[derive(Debug)]
pub(crate) struct Pool {
    queue: Arc<Queue>,
}

impl Pool {
    /// Starts `size` threads, each sending a [`Done`] on `done_tx` and
    /// ringing `bell` per finished job.
    pub(crate) fn start(
        size: u32,
        handlers: Arc<Handlers>,
        costs: Arc<Costs>,
        done_tx: &Sender<Done>,
        bell: Arc<Doorbell>,
    ) -> std::io::Result<Pool> {
        let size = size as usize;
        let queue = Arc::new(Queue {
            state: Mutex::new(State {
                woken: vec![false; size],
                // Every thread starts awake, searching.
                searching: size,
                capacity: size,
                ..State::default()
            }),
            conds: (0..size).map(|_| Condvar::new()).collect(),
        });
        let pool = Pool {
            queue: queue.clone(),
        };
        for i in 0..size {
            let thread_queue = queue.clone();
            let done = done_tx.clone();
            let handlers = handlers.clone();
            let bell = bell.clone();
            let costs = costs.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("lhcluster-handler-{i}"))
                .spawn(move || serve(&thread_queue, i, &handlers, &costs, &done, &bell));
            if let Err(e) = spawned {
                // Threads already started exit once they see the pool closed;
                // account for the ones that never will.
                let mut s = queue.lock();
                s.searching -= size - i;
                drop(s);
                pool.close_queue();
                return Err(e);
            }
        }
        Ok(pool)
    }

    pub(crate) fn submit(&self, job: Job) {
        let mut s = self.queue.lock();
        if s.closed {
            return;
        }
        s.jobs.push_back(job);
        let wake = Queue::want_searcher(&mut s);
        drop(s);
        self.queue.notify(wake);
    }

    /// The place the socket's thread takes to run a handler itself.
    pub(crate) fn inline_slot(&self) -> InlineSlot {
        InlineSlot {
            queue: self.queue.clone(),
        }
    }

    /// Takes the jobs no thread has started, in the order they came (a
    /// graceful stop gives them back to the broker). Under the queue's
    /// lock: a thread either took a job before (it runs) or never will.
    pub(crate) fn take_queued(&self) -> Vec<Job> {
        self.queue.lock().jobs.drain(..).collect()
    }

    /// Lets the threads finish the queued jobs and exit, without waiting.
    pub(crate) fn close(&mut self) {
        self.close_queue();
    }

    fn close_queue(&self) {
        self.queue.lock().closed = true;
        for c in &self.queue.conds {
            c.notify_one();
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.close_queue();
    }
}

/// One of the pool's places, for a handler run on the socket's thread.
#[derive(Debug, Clone)]
pub(crate) struct InlineSlot {
    queue: Arc<Queue>,
}

impl InlineSlot {
    /// Takes the place if a pool thread could start a job now and none is
    /// queued (queued jobs came first): `false` means the job goes to the
    /// pool.
    pub(crate) fn take(&self) -> bool {
        let mut s = self.queue.lock();
        if s.closed || s.inline || !s.jobs.is_empty() || !s.has_room() {
            return false;
        }
        s.inline = true;
        true
    }

    /// Gives the place back, waking a thread for a job that waited for it.
    pub(crate) fn give_back(&self) {
        let mut s = self.queue.lock();
        s.inline = false;
        let wake = if s.jobs.is_empty() {
            None
        } else {
            Queue::want_searcher(&mut s)
        };
        drop(s);
        self.queue.notify(wake);
    }
}

/// A handler at most this long on average runs on the socket's thread
/// (when one of the pool's places is free): waking a pool thread and
/// waking the socket's thread back with the result costs about as much
/// CPU on a busy machine, and serialising handlers that short costs little.
pub(crate) const FAST_HANDLER: Duration = Duration::from_micros(20);

/// Not timed yet: the type's first runs are on the pool.
const UNKNOWN: u64 = u64::MAX;

/// Runs a type spends on the pool after its first takeover; doubled at
/// each further one (up to 2^10 times), so that a handler that blocks now
/// and then stalls the socket's thread ever more rarely.
const PENALTY_RUNS: u64 = 64;

/// What each blocking handler has lately taken, read and written without a
/// lock (a lost update only delays the figures by a run).
#[derive(Debug)]
pub(crate) struct Costs(HashMap<RequestType, Cost>);

#[derive(Debug)]
struct Cost {
    /// A moving average of its runs, in nanoseconds (weight 1/8).
    average: AtomicU64,
    /// Takeovers so far.
    strikes: AtomicU64,
    /// Runs still to go on the pool after the last takeover.
    penalty: AtomicU64,
}

impl Costs {
    pub(crate) fn new<'a>(types: impl IntoIterator<Item = &'a RequestType>) -> Self {
        let cost = || Cost {
            average: AtomicU64::new(UNKNOWN),
            strikes: AtomicU64::new(0),
            penalty: AtomicU64::new(0),
        };
        Self(types.into_iter().map(|&t| (t, cost())).collect())
    }

    /// Adds a run that took `took`; one `on_pool` also counts down the
    /// penalty of a type that was taken over (a run on the socket's thread,
    /// the one taken over included, does not).
    pub(crate) fn record(&self, request_type: RequestType, took: Duration, on_pool: bool) {
        let Some(cost) = self.0.get(&request_type) else {
            return;
        };
        let sample = u64::try_from(took.as_nanos()).unwrap_or(UNKNOWN - 1);
        let old = cost.average.load(Ordering::Relaxed);
        let new = if old == UNKNOWN {
            sample
        } else {
            old - old / 8 + sample / 8
        };
        cost.average.store(new, Ordering::Relaxed);
        let penalty = cost.penalty.load(Ordering::Relaxed);
        if on_pool && penalty > 0 {
            cost.penalty.store(penalty - 1, Ordering::Relaxed);
        }
    }

    /// Whether the type's handler is fast enough to run on the socket's
    /// thread.
    pub(crate) fn is_fast(&self, request_type: RequestType) -> bool {
        self.0.get(&request_type).is_some_and(|c| {
            c.penalty.load(Ordering::Relaxed) == 0
                && c.average.load(Ordering::Relaxed) <= FAST_HANDLER.as_nanos() as u64
        })
    }

    /// A run of the type was taken over after `so_far`: the type goes to
    /// the pool for a while. Returns how many takeovers it has had.
    pub(crate) fn taken_over(&self, request_type: RequestType, so_far: Duration) -> u64 {
        let Some(cost) = self.0.get(&request_type) else {
            return 0;
        };
        let so_far = u64::try_from(so_far.as_nanos()).unwrap_or(UNKNOWN - 1);
        cost.average.fetch_max(so_far, Ordering::Relaxed);
        let strikes = cost.strikes.fetch_add(1, Ordering::Relaxed) + 1;
        let penalty = PENALTY_RUNS << (strikes - 1).min(10);
        cost.penalty.store(penalty, Ordering::Relaxed);
        strikes
    }
}

fn serve(
    queue: &Queue,
    i: usize,
    handlers: &Handlers,
    costs: &Costs,
    done: &Sender<Done>,
    bell: &Doorbell,
) {
    let mut finished = false;
    while let Some(job) = queue.next(i, finished) {
        let request_type = job.dispatch.request_type;
        let started = Instant::now();
        let result = run(handlers, job);
        costs.record(request_type, started.elapsed(), true);
        if done.send(result).is_err() {
            return;
        }
        bell.ring();
        finished = true;
    }
}

/// Runs `job`'s handler on this thread, a panic becoming `FAILED`.
pub(crate) fn run(
    handlers: &Handlers,
    Job {
        dispatch: job,
        cancel,
    }: Job,
) -> Done {
    let key = (job.request_type, job.request_id);
    let context = RequestContext {
        request_type: job.request_type,
        request_id: job.request_id,
        flags: job.flags,
        attempt: job.attempt,
        deadline: crate::deadline::from_wire_ms(std::time::Instant::now(), job.deadline_ms),
        cancel,
    };
    let Some(handler) = handlers.get(&job.request_type) else {
        let error =
            HandlerError::bad_request(format!("no handler for request type {}", job.request_type));
        return Done {
            key,
            outcome: Err(error),
            panicked: false,
        };
    };
    let span = tracing::debug_span!("request", request_type = key.0, request_id = key.1);
    let _entered = span.enter();
    match catch_unwind(AssertUnwindSafe(|| handler.call(job.payload, &context))) {
        Ok(outcome) => Done {
            key,
            outcome,
            panicked: false,
        },
        Err(panic) => {
            let text = crate::role::panic_message(&*panic);
            tracing::warn!(panic = %text, "handler panicked");
            Done {
                key,
                outcome: Err(HandlerError::failed(format!("handler panicked: {text}"))),
                panicked: true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_type_is_fast_once_timed_fast_and_sits_out_a_growing_penalty_after_each_takeover() {
        let costs = Costs::new(&[7]);
        assert!(!costs.is_fast(7), "not timed yet: the pool first");
        costs.record(7, Duration::from_micros(3), true);
        assert!(costs.is_fast(7));
        costs.record(7, Duration::from_millis(1), true);
        assert!(!costs.is_fast(7), "an average pulled over 20 µs");
        for _ in 0..40 {
            costs.record(7, Duration::from_micros(3), true);
        }
        assert!(costs.is_fast(7), "fast again");

        for (strike, runs) in [(1, PENALTY_RUNS), (2, 2 * PENALTY_RUNS)] {
            assert_eq!(costs.taken_over(7, Duration::from_millis(2)), strike);
            // The run taken over ends on the socket's thread: not one of
            // the penalty's runs.
            costs.record(7, Duration::from_millis(2), false);
            // The average, at least the run's 2 ms, takes about 35 fast
            // runs to fall under 20 µs: the penalty is what decides here.
            for _ in 0..runs - 1 {
                costs.record(7, Duration::from_micros(3), true);
                assert!(!costs.is_fast(7));
            }
            costs.record(7, Duration::from_micros(3), true);
            assert!(costs.is_fast(7), "after {runs} runs on the pool");
        }
        assert!(!costs.is_fast(8), "a type it does not serve");
    }
}
