//! The client's driver thread: owns the DEALER socket and feeds the state
//! machine with broker messages, caller requests and ticks.

use std::sync::Arc;
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

pub(super) fn spawn(
    config: ClientConfig,
    events: Sender<ClientEvent>,
    readiness: Arc<Readiness>,
    ids: Arc<super::ids::IdSource>,
) -> Result<RoleHandle<Command>, Error> {
    let (tx, bell, inbox) = crate::role::channel()?;
    let shutdown_timeout = config.shutdown_timeout;
    // Made here, not in the thread: a key that cannot be made is an error
    // of the start.
    let link = Link::new(config.hwm).with_curve(
        config.curve_server_key.as_ref(),
        config.curve_secret_key.as_ref(),
    )?;
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
                core: ClientCore::new(&config, Some(events), Instant::now()).with_ids(ids),
                link,
                inbox,
                readiness,
                stats_log: StatsLog::new(config.stats_log_interval, Instant::now()),
            };
            driver.run();
        },
    )
}

struct Driver {
    core: ClientCore,
    link: Link,
    inbox: DriverInbox<Command>,
    readiness: Arc<Readiness>,
    stats_log: StatsLog,
}

impl Driver {
    fn run(&mut self) {
        // Whether the last pass found work (see `Link::wait`).
        let mut busy = false;
        loop {
            self.link.flush(&mut self.core);
            self.readiness.set(self.core.is_ready());
            let until = self.stats_log.wake_at(self.core.next_tick(Instant::now()));
            let Some(ready) = self.link.wait(&self.inbox.listener, busy, until, "client") else {
                return;
            };
            let mut work = 0;
            if ready.sockets[0] {
                work += self.link.read(&mut self.core, |_, _| {});
            }
            for command in self.inbox.pending(ready.doorbell) {
                work += 1;
                match command {
                    Command::Submit(submit) => {
                        self.core.on_submit(Instant::now(), submit);
                        // Send in batches while the caller keeps submitting.
                        if self.core.actions().len() >= io::READ_BATCH {
                            self.link.flush(&mut self.core);
                        }
                    }
                    Command::Cancel(key, shared) => {
                        self.core.on_cancel(Instant::now(), key, &shared);
                    }
                    Command::Stats(reply) => {
                        let _ = reply.send(self.core.stats());
                    }
                    Command::Stop => {
                        self.core.on_stop(Instant::now());
                        self.link.flush(&mut self.core);
                        self.readiness.set(false);
                        info!("client stopped");
                        return;
                    }
                }
            }
            let now = Instant::now();
            self.core.on_tick(now);
            if self.stats_log.due(now) {
                info!(stats = ?self.core.stats(), "client stats");
            }
            busy = work > 0;
        }
    }
}
