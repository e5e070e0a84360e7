//! The worker's driver thread: owns the DEALER socket, feeds the state
//! machine, submits requests to the handler pool and sends their results.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use tracing::{error, info, warn};

use super::config::WorkerConfig;
use super::core::{Action, WorkerCore};
use super::pool::{self, Done, Handlers, Pool};
use super::stats::WorkerStats;
use crate::error::Error;
use crate::io;
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

pub(super) fn spawn(
    config: WorkerConfig,
    handlers: Handlers,
) -> Result<RoleHandle<Command>, Error> {
    let types: Vec<RequestType> = handlers.keys().copied().collect();
    let (tx, bell, inbox) = crate::role::channel()?;
    let handlers = Arc::new(handlers);
    let executor = if config.inline {
        Executor::Inline(handlers)
    } else {
        let (pool, done) =
            Pool::start(config.capacity, handlers, bell.clone()).map_err(Error::Spawn)?;
        Executor::Pool { pool, done }
    };
    let routing_id = crate::peer::random_routing_id();
    let shutdown_timeout = config.shutdown_timeout;
    RoleHandle::spawn(
        "lhcluster-worker",
        tx,
        bell,
        || Command::Stop,
        // The driver itself bounds the drain by `shutdown_timeout`.
        shutdown_timeout + Duration::from_secs(1),
        move || {
            let mut driver = Driver {
                core: WorkerCore::new(&config, types, Instant::now()),
                endpoint: config.brokers[0].clone(),
                hwm: config.hwm,
                routing_id,
                socket: None,
                inbox,
                executor,
                header_buf: Vec::with_capacity(64),
                shutdown_timeout,
                stats_log: StatsLog::new(config.stats_log_interval, Instant::now()),
            };
            driver.run();
        },
    )
}

/// Where handlers run.
enum Executor {
    /// On a pool of `capacity` threads; results come back on `done`.
    Pool { pool: Pool, done: Receiver<Done> },
    /// On the driver thread, as each request arrives.
    Inline(Arc<Handlers>),
}

impl Executor {
    fn close(&mut self) {
        if let Executor::Pool { pool, .. } = self {
            pool.close();
        }
    }
}

struct Driver {
    core: WorkerCore,
    endpoint: String,
    hwm: i32,
    routing_id: [u8; 16],
    socket: Option<zmq::Socket>,
    inbox: DriverInbox<Command>,
    executor: Executor,
    header_buf: Vec<u8>,
    shutdown_timeout: Duration,
    stats_log: StatsLog,
}

impl Driver {
    fn run(&mut self) {
        let mut stop_deadline: Option<Instant> = None;
        // Whether the last pass found work. While work flows, the socket is
        // read again at once instead of polled: a poll costs several
        // syscalls in libzmq, and a read that finds nothing costs one.
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
            let (socket_ready, commands_ready) = if busy {
                (true, false)
            } else {
                match io::wait(
                    Some(&self.inbox.listener),
                    [self.socket.as_ref(), None],
                    Some(wake_at),
                ) {
                    Ok(ready) => (ready.sockets[0], ready.doorbell),
                    Err(e) => {
                        error!(error = %e, "worker poll failed: stopping");
                        return;
                    }
                }
            };
            let mut work = 0;
            if socket_ready {
                let read = self.read();
                if read > 0 {
                    last_read = Instant::now();
                }
                work += read;
            }
            // Commands are drained on every pass (an empty channel costs an
            // atomic load), the doorbell only cuts the wait short.
            {
                if commands_ready {
                    self.inbox.listener.reset();
                }
                while let Ok(command) = self.inbox.commands.try_recv() {
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
                                stop_deadline = Some(Instant::now() + self.shutdown_timeout);
                            }
                        }
                        Command::Abort => {
                            if let Some(socket) = self.socket.take() {
                                let _ = socket.set_linger(0);
                            }
                            self.executor.close();
                            return;
                        }
                    }
                }
                if let Executor::Pool { done, .. } = &self.executor {
                    while let Ok(done) = done.try_recv() {
                        work += 1;
                        self.core
                            .on_done(Instant::now(), done.key, done.outcome, done.panicked);
                    }
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

    /// Reads a batch of messages; returns how many.
    fn read(&mut self) -> usize {
        let mut read = 0;
        for _ in 0..256 {
            let Some(socket) = &self.socket else { break };
            match io::try_recv(socket, false) {
                Ok(Some(m)) => {
                    read += 1;
                    let header = m.header.as_deref().unwrap_or(&[]);
                    self.core.on_message(Instant::now(), header, m.payload);
                }
                Ok(None) => break,
                Err(e) => {
                    warn!(error = %e, "receive failed");
                    break;
                }
            }
            self.apply_actions();
        }
        read
    }

    fn apply_actions(&mut self) {
        // Handling an action can queue more (a connect queues the
        // greeting): loop until none is left.
        loop {
            let mut actions = std::mem::take(self.core.actions());
            if actions.is_empty() {
                *self.core.actions() = actions;
                return;
            }
            for action in actions.drain(..) {
                match action {
                    Action::Send(msg) => {
                        if let Some(socket) = &self.socket {
                            if let Err(e) = io::send(socket, None, msg, &mut self.header_buf) {
                                warn!(error = %e, "cannot send to the broker");
                            }
                        }
                    }
                    Action::Run(dispatch) => match &self.executor {
                        Executor::Pool { pool, .. } => pool.submit(dispatch),
                        Executor::Inline(handlers) => {
                            // The result's actions are handled by the next
                            // turn of the enclosing loop.
                            let done = pool::run(handlers, dispatch);
                            self.core.on_done(
                                Instant::now(),
                                done.key,
                                done.outcome,
                                done.panicked,
                            );
                        }
                    },
                    Action::Close => {
                        if let Some(socket) = self.socket.take() {
                            let _ = socket.set_linger(0);
                        }
                    }
                    Action::Connect => match self.connect() {
                        Ok(socket) => {
                            self.socket = Some(socket);
                            self.core.on_connected(Instant::now());
                        }
                        Err(e) => {
                            error!(error = %e, "cannot connect to the broker");
                            self.core.on_connect_failed(Instant::now());
                        }
                    },
                }
            }
            if self.core.actions().is_empty() {
                // Keep the allocation for next time.
                *self.core.actions() = actions;
            }
        }
    }

    fn connect(&self) -> Result<zmq::Socket, Error> {
        io::dealer(&self.endpoint, &self.routing_id, self.hwm)
    }
}
