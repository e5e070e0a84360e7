//! The worker's driver thread: owns the DEALER socket, feeds the state
//! machine, submits requests to the handler pool (or, for async handlers,
//! spawns them on their runtime) and sends their results.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use tracing::{info, warn};

use super::config::WorkerConfig;
use super::core::{Action, WorkerCore};
use super::handler::Job;
use super::pool::{self, Costs, Done, Handlers, Pool};
use super::relay::{self, InlineRuns, Relay, Watch};
use super::stats::WorkerStats;
#[cfg(feature = "tokio")]
use super::tasks::{AsyncHandlers, Tasks};
use crate::error::Error;
use crate::link::{self, Link};
use crate::protocol::RequestType;
use crate::role::{DriverInbox, RoleHandle};
use crate::stats_log::StatsLog;

/// After a graceful stop, the worker goes on reading until nothing has
/// arrived for this long (and nothing runs): dispatches the broker sent
/// before it read our DISCONNECT are still on their way, and are given
/// back (a broker of 1.8 or later) or run, rather than left for the broker
/// to give up on when it declares us dead.
const STOP_QUIET: Duration = Duration::from_millis(100);

#[derive(Debug)]
pub(crate) enum Command {
    Stats(Sender<WorkerStats>),
    /// Graceful: let running handlers finish, then say goodbye.
    Stop,
    /// Crash-like: close at once without a word to the broker.
    Abort,
}

/// What a worker serves, as `start` hands it over.
pub(super) struct Served {
    /// Blocking handlers, run on the pool (or inline).
    pub(super) handlers: Handlers,
    /// Async handlers and the runtime they run on.
    #[cfg(feature = "tokio")]
    pub(super) tasks: Option<(tokio::runtime::Handle, AsyncHandlers)>,
    /// The names of the types that have one (sent in READY).
    pub(super) names: std::collections::HashMap<RequestType, String>,
}

pub(super) fn spawn(config: WorkerConfig, served: Served) -> Result<RoleHandle<Command>, Error> {
    #[cfg_attr(not(feature = "tokio"), allow(unused_mut))]
    let mut types: Vec<RequestType> = served.handlers.keys().copied().collect();
    #[cfg(feature = "tokio")]
    if let Some((_, handlers)) = &served.tasks {
        types.extend(handlers.keys().copied());
    }
    let mut names = served.names;
    let types: Vec<(RequestType, Option<String>)> =
        types.into_iter().map(|t| (t, names.remove(&t))).collect();
    let (tx, bell, inbox) = crate::role::channel()?;
    let (done_tx, done) = crossbeam_channel::unbounded::<Done>();
    let handlers = Arc::new(served.handlers);
    let watch = Arc::new(Watch::default());
    // No threads for a worker whose handlers are all async.
    let (run, inline_runs) = if config.inline || handlers.is_empty() {
        (Run::Inline(handlers), None)
    } else {
        let costs = Arc::new(Costs::new(handlers.keys()));
        let pool = Pool::start(
            config.capacity,
            handlers.clone(),
            costs.clone(),
            &done_tx,
            bell.clone(),
        )
        .map_err(Error::Spawn)?;
        let runs = InlineRuns {
            slot: pool.inline_slot(),
            handlers,
            costs: costs.clone(),
            done: done_tx.clone(),
            bell: bell.clone(),
        };
        (Run::Pool { pool, costs }, Some(runs))
    };
    let executor = Executor {
        run,
        #[cfg(feature = "tokio")]
        tasks: served.tasks.map(|(runtime, handlers)| {
            Tasks::new(runtime, handlers, config.capacity, done_tx, bell.clone())
        }),
        done,
        inline_jobs: VecDeque::new(),
        watch: watch.clone(),
    };
    let shutdown_timeout = config.shutdown_timeout;
    // Made here, not in the thread: a key that cannot be made is an error
    // of the start.
    let link = Link::new(config.hwm).with_curve(
        config.curve_server_key.as_ref(),
        config.curve_secret_key.as_ref(),
    )?;
    let driver = Driver {
        core: WorkerCore::named(&config, types, Instant::now()),
        link,
        inbox,
        executor,
        shutdown_timeout,
        stats_log: StatsLog::new(config.stats_log_interval, Instant::now()),
        stop_deadline: None,
        busy: false,
        last_read: Instant::now(),
    };
    let relay = Arc::new(Relay::new(driver, inline_runs, watch));
    RoleHandle::spawn(
        "lhcluster-worker",
        tx,
        bell,
        || Command::Stop,
        // The driver itself bounds the drain by `shutdown_timeout`.
        shutdown_timeout.saturating_add(Duration::from_secs(1)),
        move || relay::start(&relay),
    )
}

/// Where handlers run; what runs elsewhere reports back on `done`.
pub(super) struct Executor {
    run: Run,
    /// Async handlers' requests, as tasks of a tokio runtime.
    #[cfg(feature = "tokio")]
    tasks: Option<Tasks>,
    /// Results from the pool and the tasks.
    done: Receiver<Done>,
    /// Requests of fast types, in order, for the socket's thread to run
    /// itself (see `relay.rs`).
    inline_jobs: VecDeque<Job>,
    /// Whether a thread watches over those runs.
    watch: Arc<Watch>,
}

/// Where blocking handlers run.
enum Run {
    /// On a pool of `capacity` threads, except those of fast types, which
    /// the socket's thread runs while a pool thread watches over it.
    Pool { pool: Pool, costs: Arc<Costs> },
    /// On the driver thread, as each request arrives.
    Inline(Arc<Handlers>),
}

impl Executor {
    /// The jobs not started yet: queued on the pool, waiting for the
    /// socket's thread (fast types), or async ones waiting for a permit;
    /// each queue in the order its jobs came (the pool's first: a job
    /// for the pool sends those waiting for the socket's thread ahead of
    /// it, so these are always the newest). Taken for good: none of them
    /// will run. Inline, nothing
    /// waits here (a dispatch runs when it is read).
    fn take_queued(&mut self) -> Vec<Job> {
        let mut jobs = match &self.run {
            Run::Pool { pool, .. } => pool.take_queued(),
            Run::Inline(_) => Vec::new(),
        };
        jobs.extend(self.inline_jobs.drain(..));
        #[cfg(feature = "tokio")]
        if let Some(tasks) = &self.tasks {
            jobs.extend(tasks.take_queued());
        }
        jobs
    }

    fn close(&mut self) {
        if let Run::Pool { pool, .. } = &mut self.run {
            pool.close();
        }
    }

    /// Carries out the core's actions: the session's on the link, the runs
    /// here.
    fn apply(&mut self, link: &mut Link, core: &mut WorkerCore) {
        link::drain(core, |core, action| match action {
            Action::Link(action) => link.apply(action, core),
            Action::Run(job) => self.run(core, job),
        });
    }

    /// The next request the socket's thread is to run itself.
    pub(super) fn next_inline(&mut self) -> Option<Job> {
        self.inline_jobs.pop_front()
    }

    /// Hands a request to the pool after all.
    pub(super) fn submit(&self, job: Job) {
        if let Run::Pool { pool, .. } = &self.run {
            pool.submit(job);
        }
    }

    fn run(&mut self, core: &mut WorkerCore, job: Job) {
        #[cfg(feature = "tokio")]
        if let Some(tasks) = self
            .tasks
            .as_ref()
            .filter(|t| t.serves(job.dispatch.request_type))
        {
            return tasks.spawn(job);
        }
        match &self.run {
            Run::Pool { pool, costs } => {
                // Run on the socket's thread only with a watcher ready to
                // take the socket over should the handler run long.
                if costs.is_fast(job.dispatch.request_type) && self.watch.present() {
                    self.inline_jobs.push_back(job);
                } else {
                    // Those waiting for this thread came first: they go
                    // ahead, so that requests start in the order they came
                    // (what waits for this thread is always the newest).
                    for earlier in self.inline_jobs.drain(..) {
                        pool.submit(earlier);
                    }
                    pool.submit(job);
                }
            }
            Run::Inline(handlers) => {
                // The result's actions are handled by the next turn of
                // the drain.
                let done = pool::run(handlers, job);
                core.on_done(Instant::now(), done.key, done.outcome, done.panicked);
            }
        }
    }
}

pub(super) struct Driver {
    core: WorkerCore,
    link: Link,
    inbox: DriverInbox<Command>,
    pub(super) executor: Executor,
    shutdown_timeout: Duration,
    stats_log: StatsLog,
    /// Set by a graceful stop: the drain ends by then.
    stop_deadline: Option<Instant>,
    /// Whether the last pass found work (see `Link::wait`).
    busy: bool,
    /// When a message last arrived (or the stop began): see STOP_QUIET.
    last_read: Instant,
}

/// Whether the worker goes on after a pass of its driver.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Pass {
    Continue,
    Ended,
}

impl Driver {
    /// One pass: waits for the socket, the commands or a timer, and handles
    /// what it finds. Requests to run on this thread are left in the
    /// executor's `inline_jobs` for the caller.
    pub(super) fn pass(&mut self) -> Pass {
        self.apply_actions();
        let now = Instant::now();
        let quiet_at = self.last_read + STOP_QUIET;
        if let Some(deadline) = self.stop_deadline {
            if (self.core.running() == 0 && now >= quiet_at) || now >= deadline {
                if self.core.running() > 0 {
                    warn!(
                        running = self.core.running(),
                        "stopping with handlers still running"
                    );
                }
                self.finish();
                return Pass::Ended;
            }
        }
        let mut wake_at = self.stats_log.wake_at(self.core.next_tick(now));
        if let Some(deadline) = self.stop_deadline {
            wake_at = wake_at.min(deadline);
            if quiet_at > now {
                wake_at = wake_at.min(quiet_at);
            }
        }
        let Some(ready) = self
            .link
            .wait(&self.inbox.listener, self.busy, wake_at, "worker")
        else {
            return Pass::Ended;
        };
        let mut work = 0;
        if ready.sockets[0] {
            // Each message's actions at once: a dispatch starts running
            // while the rest of the batch is read.
            let executor = &mut self.executor;
            let read = self
                .link
                .read(&mut self.core, |link, core| executor.apply(link, core));
            if read > 0 {
                self.last_read = Instant::now();
            }
            work += read;
        }
        for command in self.inbox.pending(ready.doorbell) {
            work += 1;
            match command {
                Command::Stats(reply) => {
                    let _ = reply.send(self.core.stats());
                }
                Command::Stop => {
                    if self.stop_deadline.is_none() {
                        info!("worker stopping");
                        self.core.on_stop(Instant::now());
                        // After the DISCONNECT (queued first): the requests
                        // that have not started go back to the broker, to
                        // run elsewhere at once.
                        if self.core.hands_back() {
                            for job in self.executor.take_queued() {
                                self.core.hand_back(Instant::now(), job);
                            }
                        }
                        self.last_read = Instant::now();
                        self.stop_deadline = Some(crate::deadline::later(
                            Instant::now(),
                            self.shutdown_timeout,
                        ));
                    }
                }
                Command::Abort => {
                    self.link.close();
                    self.executor.close();
                    return Pass::Ended;
                }
            }
        }
        let now = Instant::now();
        while let Ok(done) = self.executor.done.try_recv() {
            work += 1;
            self.core
                .on_done(now, done.key, done.outcome, done.panicked);
        }
        // Cheap and idempotent: it only acts on what is due.
        let now = Instant::now();
        self.core.on_tick(now);
        if self.stats_log.due(now) {
            info!(stats = ?self.core.stats(), "worker stats");
        }
        self.busy = work > 0;
        Pass::Continue
    }

    /// A run on this thread ended at `now` with `done`: sends its result
    /// (and heartbeats that fell due) before the next run.
    pub(super) fn after_inline_run(&mut self, now: Instant, done: Done) {
        self.core
            .on_done(now, done.key, done.outcome, done.panicked);
        self.core.on_tick(now);
        self.apply_actions();
        self.busy = true;
    }

    pub(super) fn count_takeover(&mut self) {
        self.core.count_takeover();
    }

    fn finish(&mut self) {
        self.apply_actions();
        self.executor.close();
        info!("worker stopped");
    }

    fn apply_actions(&mut self) {
        self.executor.apply(&mut self.link, &mut self.core);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::protocol::{Dispatch, Flags, Payload, RequestId};
    use crate::worker::handler::{Cancellation, HandlerError, RawHandler, RequestContext};

    fn job(request_type: RequestType, request_id: RequestId) -> Job {
        Job {
            dispatch: Dispatch {
                request_type,
                request_id,
                flags: Flags::default(),
                attempt: 1,
                dispatch_tag: request_id + 1,
                deadline_ms: 0,
                payload: Payload::new(),
            },
            cancel: Cancellation::default(),
        }
    }

    /// At capacity 1 (and prefetch), a request of a type that goes to the
    /// pool sends those waiting for the socket's thread ahead of it, so
    /// that they all start in the order they came, whatever type each is.
    #[test]
    fn fast_and_pool_types_start_in_the_order_they_came() {
        let order = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new(Mutex::new(()));
        let handler: Arc<dyn RawHandler> = {
            let (order, gate) = (order.clone(), gate.clone());
            Arc::new(
                move |payload: Payload, ctx: &RequestContext| -> Result<Payload, HandlerError> {
                    order.lock().unwrap().push(ctx.request_id);
                    if ctx.request_id == 0 {
                        drop(gate.lock().unwrap());
                    }
                    Ok(payload)
                },
            )
        };
        // Type 1 timed fast; type 2 not timed yet (the pool's).
        let handlers: Arc<Handlers> =
            Arc::new([(1, handler.clone()), (2, handler)].into_iter().collect());
        let costs = Arc::new(Costs::new(handlers.keys()));
        costs.record(1, Duration::from_micros(1), true);
        let watch = Arc::new(Watch::default());
        watch.set_present(true);
        let (done_tx, done) = crossbeam_channel::unbounded();
        let (bell, _listener) = crate::wake::pair().unwrap();
        let pool = Pool::start(1, handlers, costs.clone(), &done_tx, bell.clone()).unwrap();
        let mut executor = Executor {
            run: Run::Pool { pool, costs },
            #[cfg(feature = "tokio")]
            tasks: None,
            done,
            inline_jobs: VecDeque::new(),
            watch,
        };
        let config = WorkerConfig::new("tcp://127.0.0.1:1");
        let mut core = WorkerCore::new(&config, vec![1, 2], Instant::now());

        let closed = gate.lock().unwrap();
        executor.run(&mut core, job(2, 0));
        let started = |n: usize| {
            let deadline = Instant::now() + Duration::from_secs(10);
            while order.lock().unwrap().len() < n && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            order.lock().unwrap().clone()
        };
        assert_eq!(started(1), [0], "the pool's one thread runs request 0");
        executor.run(&mut core, job(1, 1));
        assert_eq!(
            executor.inline_jobs.len(),
            1,
            "request 1 waits for the socket's thread"
        );
        executor.run(&mut core, job(2, 2));
        assert!(
            executor.inline_jobs.is_empty(),
            "request 1 went to the pool first"
        );
        drop(closed);
        assert_eq!(started(3), [0, 1, 2]);
    }
}
