//! The handle ↔ driver plumbing every role shares: a command channel, a
//! doorbell to wake the driver, and the driver thread to join on stop.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, bounded};

use crate::error::Error;
use crate::wake::{self, Doorbell, Listener};

/// Capacity of a role's command channel: senders block (back-pressure) when
/// the driver falls this far behind.
pub(crate) const COMMAND_CAPACITY: usize = 65_536;

/// The handle side of a role.
#[derive(Debug)]
pub(crate) struct RoleHandle<C: Send + 'static> {
    commands: Sender<C>,
    bell: Arc<Doorbell>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Disconnected when the driver thread ends.
    finished: Receiver<()>,
    stop_command: fn() -> C,
    shutdown_timeout: Duration,
}

/// The driver side of a role.
#[derive(Debug)]
pub(crate) struct DriverInbox<C> {
    pub(crate) commands: Receiver<C>,
    pub(crate) listener: Listener,
}

impl<C> DriverInbox<C> {
    /// The commands waiting, drained on every pass of a driver (an empty
    /// channel costs an atomic load; the doorbell only cuts its wait
    /// short). `rung`: the doorbell woke the driver, and is re-armed first.
    pub(crate) fn pending(&self, rung: bool) -> crossbeam_channel::TryIter<'_, C> {
        if rung {
            self.listener.reset();
        }
        self.commands.try_iter()
    }
}

/// The handle's ends of a new role's plumbing, plus the driver's end.
pub(crate) type Plumbing<C> = (Sender<C>, Arc<Doorbell>, DriverInbox<C>);

pub(crate) fn channel<C: Send + 'static>() -> Result<Plumbing<C>, Error> {
    let (tx, rx) = bounded(COMMAND_CAPACITY);
    let (bell, listener) = wake::pair().map_err(Error::Spawn)?;
    Ok((
        tx,
        bell,
        DriverInbox {
            commands: rx,
            listener,
        },
    ))
}

impl<C: Send + 'static> RoleHandle<C> {
    /// Spawns the driver thread running `run`.
    pub(crate) fn spawn(
        name: &str,
        commands: Sender<C>,
        bell: Arc<Doorbell>,
        stop_command: fn() -> C,
        shutdown_timeout: Duration,
        run: impl FnOnce() + Send + 'static,
    ) -> Result<Self, Error> {
        let (finished_tx, finished) = bounded::<()>(0);
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let _finished = finished_tx;
                run();
            })
            .map_err(Error::Spawn)?;
        Ok(Self {
            commands,
            bell,
            thread: Mutex::new(Some(thread)),
            finished,
            stop_command,
            shutdown_timeout,
        })
    }

    /// Sends a command to the driver; gives it back if the driver is gone.
    pub(crate) fn send(&self, command: C) -> Result<(), C> {
        self.commands.send(command).map_err(|e| e.into_inner())?;
        self.bell.ring();
        Ok(())
    }

    /// Sends a command carrying a reply channel and waits for the answer.
    pub(crate) fn request<R>(&self, make: impl FnOnce(Sender<R>) -> C) -> Result<R, Error> {
        let (tx, rx) = bounded(1);
        self.send(make(tx)).map_err(|_| Error::Stopped)?;
        rx.recv().map_err(|_| Error::Stopped)
    }

    /// Asks the driver to stop and joins it (bounded by the shutdown timeout).
    pub(crate) fn stop(&self, command: C) -> Result<(), Error> {
        let _ = self.send(command);
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = thread {
            match self.finished.recv_timeout(self.shutdown_timeout) {
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    tracing::error!("driver thread did not stop within the shutdown timeout");
                }
                _ => {
                    let _ = thread.join();
                }
            }
        }
        Ok(())
    }
}

impl<C: Send + 'static> Drop for RoleHandle<C> {
    fn drop(&mut self) {
        let _ = self.stop((self.stop_command)());
    }
}
