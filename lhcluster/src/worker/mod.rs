//! The worker: registers request types with a broker and runs their
//! handlers on a pool of `capacity` threads.
//!
//! ```no_run
//! use lhcluster::worker::{RequestContext, Worker, WorkerConfig};
//! use lhcluster::Payload;
//!
//! let worker = Worker::builder(WorkerConfig::new("tcp://127.0.0.1:5556"))
//!     .handle_raw(7, |payload: Payload, _ctx: &RequestContext| Ok(payload))
//!     .start()?;
//! // … serve until told to stop …
//! worker.stop()?;
//! # Ok::<(), lhcluster::Error>(())
//! ```

mod config;
pub(crate) mod core;
mod driver;
mod handler;
mod pool;
mod stats;
#[cfg(test)]
mod tests;
mod typed;

use std::sync::Arc;

pub use config::WorkerConfig;
pub use handler::{HandlerError, RawHandler, RequestContext};
pub use stats::WorkerStats;
pub use typed::Handler;

use lhcluster_types::Request;

use crate::error::{ConfigError, Error};
use crate::protocol::RequestType;
use crate::role::RoleHandle;

/// A running worker. Cheap to clone; the worker stops gracefully when
/// [`Worker::stop`] is called or the last clone is dropped.
#[derive(Clone, Debug)]
pub struct Worker {
    role: Arc<RoleHandle<driver::Command>>,
}

/// Collects handlers, then starts a [`Worker`].
#[must_use = "a builder does nothing until `start` is called"]
pub struct WorkerBuilder {
    config: WorkerConfig,
    handlers: pool::Handlers,
    errors: Vec<ConfigError>,
}

impl std::fmt::Debug for WorkerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerBuilder")
            .field("config", &self.config)
            .field("types", &self.handlers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl WorkerBuilder {
    /// Serves `request_type` with a raw handler (payload frames in, payload
    /// frames out). Registering one type twice makes [`start`](Self::start)
    /// fail.
    pub fn handle_raw(mut self, request_type: RequestType, handler: impl RawHandler) -> Self {
        self.add(request_type, Arc::new(handler));
        self
    }

    /// Serves the typed request `R` (at `R::REQUEST_TYPE`) with `handler`:
    /// the payload is decoded into `R` (`BAD_REQUEST` with the decode error
    /// if it does not decode), the handler runs, and its response is
    /// encoded back (its error becomes `FAILED` with the error's text).
    /// Registering one request type twice, typed or raw, makes
    /// [`start`](Self::start) fail.
    ///
    /// ```no_run
    /// use lhcluster::worker::{RequestContext, Worker, WorkerConfig};
    ///
    /// #[derive(serde::Serialize, serde::Deserialize, lhcluster::Request)]
    /// #[request_type(name = "text.upper", response = String)]
    /// struct Upper {
    ///     text: String,
    /// }
    ///
    /// let worker = Worker::builder(WorkerConfig::new("tcp://127.0.0.1:5556"))
    ///     .handle::<Upper>(|req: Upper, _: &RequestContext| {
    ///         Ok::<_, std::convert::Infallible>(req.text.to_uppercase())
    ///     })
    ///     .start()?;
    /// # Ok::<(), lhcluster::Error>(())
    /// ```
    pub fn handle<R: Request + 'static>(mut self, handler: impl Handler<R>) -> Self {
        self.add(
            R::REQUEST_TYPE,
            Arc::new(typed::Typed::<R, _>::new(handler)),
        );
        self
    }

    pub(crate) fn add(&mut self, request_type: RequestType, handler: Arc<dyn RawHandler>) {
        if request_type == 0 {
            self.errors.push(ConfigError::invalid(
                "handlers",
                "request type 0 is reserved",
            ));
        } else if self.handlers.insert(request_type, handler).is_some() {
            self.errors.push(ConfigError::invalid(
                "handlers",
                format!("two handlers for request type {request_type}"),
            ));
        }
    }

    /// Validates the configuration and handlers, and starts the worker. It
    /// connects and registers in the background (and again after a broker
    /// restart).
    pub fn start(self) -> Result<Worker, Error> {
        self.config.validate()?;
        if let Some(e) = self.errors.into_iter().next() {
            return Err(e.into());
        }
        if self.handlers.is_empty() {
            return Err(
                ConfigError::invalid("handlers", "a worker needs at least one handler").into(),
            );
        }
        let role = driver::spawn(self.config, self.handlers)?;
        Ok(Worker {
            role: Arc::new(role),
        })
    }
}

#[cfg(test)]
crate::role::inject_panic!(Worker, role);

impl Worker {
    /// Starts building a worker.
    pub fn builder(config: WorkerConfig) -> WorkerBuilder {
        WorkerBuilder {
            config,
            handlers: pool::Handlers::new(),
            errors: Vec::new(),
        }
    }

    /// A snapshot of the worker's statistics.
    pub fn stats(&self) -> Result<WorkerStats, Error> {
        self.role.request(driver::Command::Stats)
    }

    /// Graceful stop: asks the broker for no more work, lets running
    /// handlers finish and runs what the broker had already sent (up to the
    /// shutdown timeout; it waits until nothing has arrived for 100 ms),
    /// sends their results, and closes. Idempotent.
    pub fn stop(&self) -> Result<(), Error> {
        self.role.stop(driver::Command::Stop)
    }

    /// Crash-like stop: closes at once without telling the broker, as if the
    /// process died. The broker notices through missed heartbeats and
    /// reports or retries the requests that were running here. Meant for
    /// tests and failure drills.
    pub fn abort(&self) -> Result<(), Error> {
        self.role.stop(driver::Command::Abort)
    }
}
