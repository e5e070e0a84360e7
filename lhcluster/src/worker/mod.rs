//! The worker: registers request types with a broker and runs their
//! handlers on a pool of `capacity` threads (async handlers, with the
//! `tokio` feature: as tasks of a tokio runtime, `capacity` at once).
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
mod relay;
mod stats;
#[cfg(feature = "tokio")]
mod tasks;
#[cfg(test)]
mod tests;
mod typed;

use std::sync::Arc;

pub use config::WorkerConfig;
pub use handler::{HandlerError, RawHandler, RequestContext, WhenCancelled};
pub use stats::WorkerStats;
#[cfg(feature = "tokio")]
pub use tasks::AsyncHandlerFn;
pub use typed::{Handler, HandlerFn, IntoHandlerResult};

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
    #[cfg(feature = "tokio")]
    async_handlers: tasks::AsyncHandlers,
    #[cfg(feature = "tokio")]
    runtime: Option<tokio::runtime::Handle>,
    /// The names of the types that have one: sent to the broker, which
    /// shows them in its stats, logs and error texts.
    names: std::collections::HashMap<RequestType, String>,
    errors: Vec<ConfigError>,
}

impl std::fmt::Debug for WorkerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerBuilder")
            .field("config", &self.config)
            .field("types", &self.types())
            .finish_non_exhaustive()
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

    /// Serves `request_type` with a raw handler, as
    /// [`handle_raw`](Self::handle_raw) does, and gives the broker its
    /// `name` (usually the one its id is made from,
    /// [`request_type_id`](crate::request_type_id)), which the broker's
    /// stats, metrics, logs and error texts then show beside the id. A name
    /// longer than [`MAX_TYPE_NAME_LEN`](crate::MAX_TYPE_NAME_LEN) bytes
    /// makes [`start`](Self::start) fail. Typed handlers send their
    /// [`Request::NAME`] by themselves.
    pub fn handle_raw_named(
        mut self,
        request_type: RequestType,
        name: impl Into<String>,
        handler: impl RawHandler,
    ) -> Self {
        if self.check_new(request_type) {
            self.handlers.insert(request_type, Arc::new(handler));
            self.add_name(request_type, name.into());
        }
        self
    }

    /// Keeps the name of a type just added (empty: none).
    fn add_name(&mut self, request_type: RequestType, name: String) {
        if name.len() > crate::MAX_TYPE_NAME_LEN {
            self.errors.push(ConfigError::invalid(
                "handlers",
                format!(
                    "the name of request type {request_type} is longer than {} bytes",
                    crate::MAX_TYPE_NAME_LEN
                ),
            ));
        } else if !name.is_empty() {
            self.names.insert(request_type, name);
        }
    }

    /// Serves the typed request `R` (at `R::REQUEST_TYPE`) with a closure
    /// or function `Fn(R, &RequestContext)` returning the response, or a
    /// `Result` of it for a handler that can fail (see [`HandlerFn`]). Its
    /// argument types need no annotation. The payload is decoded into `R`
    /// (`BAD_REQUEST` with the decode error if it does not decode), the
    /// handler runs on the worker's pool, and its response is encoded back
    /// (an error becomes `FAILED` with the error's text, or the status of a
    /// [`HandlerError`]). Registering one request type twice, typed or raw,
    /// makes [`start`](Self::start) fail.
    ///
    /// ```no_run
    /// use lhcluster::worker::{Worker, WorkerConfig};
    ///
    /// #[derive(serde::Serialize, serde::Deserialize, lhcluster::Request)]
    /// #[request_type(name = "text.upper", response = String)]
    /// struct Upper {
    ///     text: String,
    /// }
    ///
    /// let worker = Worker::builder(WorkerConfig::new("tcp://127.0.0.1:5556"))
    ///     .handle::<Upper>(|req, _ctx| req.text.to_uppercase())
    ///     .start()?;
    /// # Ok::<(), lhcluster::Error>(())
    /// ```
    pub fn handle<R: Request + 'static>(self, handler: impl HandlerFn<R>) -> Self {
        self.handle_with::<R>(handler)
    }

    /// Serves the typed request `R` with a type implementing [`Handler`]
    /// (one that carries state, or is named), as [`handle`](Self::handle)
    /// does with a closure.
    pub fn handle_with<R: Request + 'static>(self, handler: impl Handler<R>) -> Self {
        self.handle_raw_named(R::REQUEST_TYPE, R::NAME, typed::Typed::<R, _>::new(handler))
    }

    /// Serves the typed request `R` with an async closure or function
    /// (feature `tokio`): `Fn(R, RequestContext) -> impl Future` resolving
    /// to the response, or a `Result` of it, as for [`handle`](Self::handle)
    /// (see [`AsyncHandlerFn`]). The context comes by value, for an `async
    /// move` block to keep.
    ///
    /// Each request runs as a task on a tokio runtime: the one given to
    /// [`runtime`](Self::runtime), else the one [`start`](Self::start) is
    /// called in (`start` fails with a [`ConfigError`] when there is
    /// neither). At most [`capacity`](WorkerConfig::capacity) run at once;
    /// more wait for a permit. The worker's own thread never awaits them,
    /// so a slow future keeps no heartbeat from being answered; a panic
    /// becomes `FAILED`, as in a blocking handler. Blocking and async
    /// handlers can serve different types of one worker.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use lhcluster::worker::{Worker, WorkerConfig};
    ///
    /// #[derive(serde::Serialize, serde::Deserialize, lhcluster::Request)]
    /// #[request_type(name = "text.slow-upper", response = String)]
    /// struct SlowUpper {
    ///     text: String,
    /// }
    ///
    /// # async fn run() -> Result<(), lhcluster::Error> {
    /// let worker = Worker::builder(WorkerConfig::new("tcp://127.0.0.1:5556"))
    ///     .handle_async::<SlowUpper>(|req, ctx| async move {
    ///         tokio::time::sleep(Duration::from_millis(10 * u64::from(ctx.attempt))).await;
    ///         req.text.to_uppercase()
    ///     })
    ///     .start()?; // in the runtime: its handle is taken
    /// # worker.stop() }
    /// ```
    #[cfg(feature = "tokio")]
    pub fn handle_async<R: Request + 'static>(mut self, handler: impl AsyncHandlerFn<R>) -> Self {
        if self.check_new(R::REQUEST_TYPE) {
            self.async_handlers.insert(
                R::REQUEST_TYPE,
                Arc::new(tasks::AsyncTyped::<R, _>::new(handler)),
            );
            self.add_name(R::REQUEST_TYPE, R::NAME.to_owned());
        }
        self
    }

    /// The tokio runtime that async handlers run on (feature `tokio`). By
    /// default it is the runtime [`start`](Self::start) is called in.
    #[cfg(feature = "tokio")]
    pub fn runtime(mut self, runtime: tokio::runtime::Handle) -> Self {
        self.runtime = Some(runtime);
        self
    }

    pub(crate) fn add(&mut self, request_type: RequestType, handler: Arc<dyn RawHandler>) {
        if self.check_new(request_type) {
            self.handlers.insert(request_type, handler);
        }
    }

    /// Whether `request_type` may be registered (else the error is kept
    /// for `start`).
    fn check_new(&mut self, request_type: RequestType) -> bool {
        let error = if request_type == 0 {
            "request type 0 is reserved".to_owned()
        } else if self.types().contains(&request_type) {
            format!("two handlers for request type {request_type}")
        } else {
            return true;
        };
        self.errors.push(ConfigError::invalid("handlers", error));
        false
    }

    /// The request types served so far, blocking and async.
    fn types(&self) -> Vec<RequestType> {
        #[cfg_attr(not(feature = "tokio"), allow(unused_mut))]
        let mut types: Vec<RequestType> = self.handlers.keys().copied().collect();
        #[cfg(feature = "tokio")]
        types.extend(self.async_handlers.keys().copied());
        types
    }

    /// Validates the configuration and handlers, and starts the worker. It
    /// connects and registers in the background (and again after a broker
    /// restart). With async handlers, it also fails when no tokio runtime
    /// was given and none is current.
    pub fn start(self) -> Result<Worker, Error> {
        self.config.validate()?;
        if let Some(e) = self.errors.first() {
            return Err(e.clone().into());
        }
        if self.types().is_empty() {
            return Err(
                ConfigError::invalid("handlers", "a worker needs at least one handler").into(),
            );
        }
        let served = driver::Served {
            #[cfg(feature = "tokio")]
            tasks: if self.async_handlers.is_empty() {
                None
            } else {
                Some((tasks::runtime(self.runtime)?, self.async_handlers))
            },
            handlers: self.handlers,
            names: self.names,
        };
        let role = driver::spawn(self.config, served)?;
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
            handlers: pool::Handlers::default(),
            #[cfg(feature = "tokio")]
            async_handlers: tasks::AsyncHandlers::default(),
            #[cfg(feature = "tokio")]
            runtime: None,
            names: std::collections::HashMap::new(),
            errors: Vec::new(),
        }
    }

    /// A snapshot of the worker's statistics.
    pub fn stats(&self) -> Result<WorkerStats, Error> {
        self.role.request(driver::Command::Stats)
    }

    /// Graceful stop: asks the broker for no more work, lets running
    /// handlers finish (up to the shutdown timeout; it waits until nothing
    /// has arrived for 100 ms), sends their results, and closes.
    /// Idempotent. What the broker had sent that has not started here
    /// (prefetched requests, and dispatches still on their way) goes back
    /// to a broker of protocol 1.8 or later, which gives it to another
    /// worker at once (`requests_returned`); an older broker's runs here,
    /// within the same timeout.
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
