//! The worker's driver thread: owns the DEALER socket, feeds the state
//! machine, submits requests to the handler pool (or, for async handlers,
//! spawns them on their runtime) and sends their results.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use tracing::{info, warn};

use super::config::WorkerConfig;
use super::core::{Action, WorkerCore};
use super::handler::Job;
use super::pool::{self, Done, Handlers, Pool};
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
/// before it read our DISCONNECT are still on their way, and are run rather
/// than left for the broker to give up on when it declares us dead.
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
    // No threads for a worker whose handlers are all async.
    let run = if config.inline || handlers.is_empty() {
        Run::Inline(handlers)
    } else {
        Run::Pool(
            Pool::start(config.capacity, handlers, &done_tx, bell.clone()).map_err(Error::Spawn)?,
        )
    };
    let executor = Executor {
        run,
        #[cfg(feature = "tokio")]
        tasks: served.tasks.map(|(runtime, handlers)| {
            Tasks::new(runtime, handlers, config.capacity, done_tx, bell.clone())
        }),
        done,
    };
    let shutdown_timeout = config.shutdown_timeout;
    // Made here, not in the thread: a key that cannot be made is an error
    // of the start.
    let link = Link::new(config.hwm).with_curve(
        config.curve_server_key.as_ref(),
        config.curve_secret_key.as_ref(),
    )?;
    RoleHandle::spawn(
        "lhcluster-worker",
        tx,
        bell,
        || Command::Stop,
        // The driver itself bounds the drain by `shutdown_timeout`.
        shutdown_timeout.saturating_add(Duration::from_secs(1)),
        move || {
            let mut driver = Driver {
                core: WorkerCore::named(&config, types, Instant::now()),
                link,
                inbox,
                executor,
                shutdown_timeout,
                stats_log: StatsLog::new(config.stats_log_interval, Instant::now()),
            };
            driver.run();
        },
    )
}

/// Where handlers run; what runs elsewhere reports back on `done`.
struct Executor {
    run: Run,
    /// Async handlers' requests, as tasks of a tokio runtime.
    #[cfg(feature = "tokio")]
    tasks: Option<Tasks>,
    /// Results from the pool and the tasks.
    done: Receiver<Done>,
}

/// Where blocking handlers run.
enum Run {
    /// On a pool of `capacity` threads.
    Pool(Pool),
    /// On the driver thread, as each request arrives.
    Inline(Arc<Handlers>),
}

impl Executor {
    fn close(&mut self) {
        if let Run::Pool(pool) = &mut self.run {
            pool.close();
        }
    }

    /// Carries out the core's actions: the session's on the link, the runs
    /// here.
    fn apply(&self, link: &mut Link, core: &mut WorkerCore) {
        link::drain(core, |core, action| match action {
            Action::Link(action) => link.apply(action, core),
            Action::Run(job) => self.run(core, job),
        });
    }

    fn run(&self, core: &mut WorkerCore, job: Job) {
        #[cfg(feature = "tokio")]
        if let Some(tasks) = self
            .tasks
            .as_ref()
            .filter(|t| t.serves(job.dispatch.request_type))
        {
            return tasks.spawn(job);
        }
        match &self.run {
            Run::Pool(pool) => pool.submit(job),
            Run::Inline(handlers) => {
                // The result's actions are handled by the next turn of
                // the drain.
                let done = pool::run(handlers, job);
                core.on_done(Instant::now(), done.key, done.outcome, done.panicked);
            }
        }
    }
}

struct Driver {
    core: WorkerCore,
    link: Link,
    inbox: DriverInbox<Command>,
    executor: Executor,
    shutdown_timeout: Duration,
    stats_log: StatsLog,
}

impl Driver {
    fn run(&mut self) {
        let mut stop_deadline: Option<Instant> = None;
        // Whether the last pass found work (see `Link::wait`).
        let mut busy = false;
        // When a message last arrived (or the stop began): see STOP_QUIET.
        let mut last_read = Instant::now();
        loop {
            self.apply_actions();
            let now = Instant::now();
            let quiet_at = last_read + STOP_QUIET;
            if let Some(deadline) = stop_deadline {
                if (self.core.running() == 0 && now >= quiet_at) || now >= deadline {
                    if self.core.running() > 0 {
                        warn!(
                            running = self.core.running(),
                            "stopping with handlers still running"
                        );
                    }
                    break;
                }
            }
            let mut wake_at = self.stats_log.wake_at(self.core.next_tick(now));
            if let Some(deadline) = stop_deadline {
                wake_at = wake_at.min(deadline);
                if quiet_at > now {
                    wake_at = wake_at.min(quiet_at);
                }
            }
            let Some(ready) = self
                .link
                .wait(&self.inbox.listener, busy, wake_at, "worker")
            else {
                return;
            };
            let mut work = 0;
            if ready.sockets[0] {
                // Each message's actions at once: a dispatch starts
                // running while the rest of the batch is read.
                let executor = &self.executor;
                let read = self
                    .link
                    .read(&mut self.core, |link, core| executor.apply(link, core));
                if read > 0 {
                    last_read = Instant::now();
                }
                work += read;
            }
            {
                for command in self.inbox.pending(ready.doorbell) {
                    work += 1;
                    match command {
                        Command::Stats(reply) => {
                            let _ = reply.send(self.core.stats());
                        }
                        Command::Stop => {
                            if stop_deadline.is_none() {
                                info!("worker stopping");
                                self.core.on_stop(Instant::now());
                                last_read = Instant::now();
                                stop_deadline = Some(crate::deadline::later(
                                    Instant::now(),
                                    self.shutdown_timeout,
                                ));
                            }
                        }
                        Command::Abort => {
                            self.link.close();
                            self.executor.close();
                            return;
                        }
                    }
                }
                while let Ok(done) = self.executor.done.try_recv() {
                    work += 1;
                    self.core
                        .on_done(Instant::now(), done.key, done.outcome, done.panicked);
                }
            }
            // Cheap and idempotent: it only acts on what is due.
            let now = Instant::now();
            self.core.on_tick(now);
            if self.stats_log.due(now) {
                info!(stats = ?self.core.stats(), "worker stats");
            }
            busy = work > 0;
        }
        self.apply_actions();
        self.executor.close();
        info!("worker stopped");
    }

    fn apply_actions(&mut self) {
        self.executor.apply(&mut self.link, &mut self.core);
    }
}
