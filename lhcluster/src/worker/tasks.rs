//! Async handlers (feature `tokio`): each request of a type served by
//! [`WorkerBuilder::handle_async`](super::WorkerBuilder::handle_async) runs
//! as a task on a tokio runtime, at most `capacity` at once, and reports
//! back to the driver as the pool's threads do (a [`Done`] on the same
//! channel, then the doorbell).
//!
//! The driver thread stays a plain thread that never awaits anything: a
//! slow or stuck future delays only its own result, never a heartbeat.

use std::collections::VecDeque;

use foldhash::HashMap;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use crossbeam_channel::Sender;
use lhcluster_types::Request;
use tokio::runtime::Handle;
use tokio::sync::Semaphore;
use tracing::Instrument;

use super::handler::{HandlerError, Job, RequestContext};
use super::pool::Done;
use super::typed::IntoHandlerResult;
use crate::protocol::{Payload, RequestType};
use crate::wake::Doorbell;

/// An async closure or function serving requests of type `R`:
/// `Fn(R, RequestContext) -> impl Future<Output = Out>`, where `Out` is the
/// response or a `Result` of it, as for a blocking
/// [`HandlerFn`](super::HandlerFn) (the same rules say which is a failure).
///
/// The context comes by value, so that an `async move` block can keep it
/// across its awaits. The future must be `Send + 'static`: it runs as a
/// task of the runtime. Implemented for every such closure and function;
/// like `HandlerFn`, it exists so that
/// [`WorkerBuilder::handle_async`](super::WorkerBuilder::handle_async)
/// infers the closure's argument types.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an async handler for `{R}`",
    label = "expected `Fn({R}, RequestContext) -> impl Future<Output = Response or Result<Response, E>> + Send + 'static`"
)]
pub trait AsyncHandlerFn<R: Request>:
    Fn(R, RequestContext) -> <Self as AsyncHandlerFn<R>>::Future + Send + Sync + 'static
{
    /// The future the closure returns.
    type Future: Future<Output = <Self as AsyncHandlerFn<R>>::Output> + Send + 'static;
    /// What the future resolves to: `R::Response` or `Result<R::Response, E>`.
    type Output: IntoHandlerResult<R::Response>;
}

impl<R, F, Fut> AsyncHandlerFn<R> for F
where
    R: Request,
    F: Fn(R, RequestContext) -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: IntoHandlerResult<R::Response>,
{
    type Future = Fut;
    type Output = Fut::Output;
}

type Outcome = Result<Payload, HandlerError>;
type BoxFuture = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// An async handler on payload frames: what the task runs.
pub(crate) trait AsyncRawHandler: Send + Sync + 'static {
    fn call(&self, payload: Payload, context: RequestContext) -> BoxFuture;
}

pub(crate) type AsyncHandlers = HashMap<RequestType, Arc<dyn AsyncRawHandler>>;

/// A typed async handler as a raw one: decode (in the task, not on the
/// driver thread), run, encode, with the blocking path's errors.
pub(crate) struct AsyncTyped<R, H> {
    handler: Arc<H>,
    _request: PhantomData<fn(R)>,
}

impl<R, H> AsyncTyped<R, H> {
    pub(crate) fn new(handler: H) -> Self {
        Self {
            handler: Arc::new(handler),
            _request: PhantomData,
        }
    }
}

impl<R, H> AsyncRawHandler for AsyncTyped<R, H>
where
    R: Request + 'static,
    H: AsyncHandlerFn<R>,
{
    fn call(&self, payload: Payload, context: RequestContext) -> BoxFuture {
        let handler = self.handler.clone();
        Box::pin(async move {
            let request: R = super::typed::decode_request(&payload)?;
            let response = handler(request, context).await.into_handler_result()?;
            super::typed::encode_response::<R>(&response)
        })
    }
}

/// Spawns the async handlers' tasks.
pub(crate) struct Tasks {
    runtime: Handle,
    handlers: Arc<AsyncHandlers>,
    /// `capacity` permits: the bound holds even when the broker hands out
    /// more (after a failover, the old broker's requests still run), as the
    /// pool's thread count bounds blocking handlers.
    permits: Arc<Semaphore>,
    done: Sender<Done>,
    bell: Arc<Doorbell>,
    /// The jobs of spawned tasks, in the order they came, each taken by
    /// its task once it has a permit, or by a graceful stop before that
    /// ([`Tasks::take_queued`]): whoever takes it first has it.
    queued: Mutex<Queued>,
}

/// The slots of tasks that may not have started, and the length at which
/// the started ones are looked for behind the first.
#[derive(Default)]
struct Queued {
    slots: VecDeque<Slot>,
    prune_at: usize,
}

/// A spawned task's job, until it starts.
type Slot = Arc<Mutex<Option<Job>>>;

fn take(slot: &Slot) -> Option<Job> {
    slot.lock().unwrap_or_else(|p| p.into_inner()).take()
}

fn is_taken(slot: &Slot) -> bool {
    slot.lock().unwrap_or_else(|p| p.into_inner()).is_none()
}

impl Tasks {
    pub(crate) fn new(
        runtime: Handle,
        handlers: AsyncHandlers,
        capacity: u32,
        done: Sender<Done>,
        bell: Arc<Doorbell>,
    ) -> Self {
        Self {
            runtime,
            handlers: Arc::new(handlers),
            permits: Arc::new(Semaphore::new(capacity as usize)),
            done,
            bell,
            queued: Mutex::new(Queued::default()),
        }
    }

    /// Takes the jobs whose task has not started (waiting for a permit), in
    /// the order they came: a graceful stop gives them back to the broker,
    /// and their tasks, finding nothing, end without running a handler.
    pub(crate) fn take_queued(&self) -> Vec<Job> {
        let mut queued = self.queued.lock().unwrap_or_else(|p| p.into_inner());
        let slots = std::mem::take(&mut queued.slots);
        drop(queued);
        slots.iter().filter_map(take).collect()
    }

    pub(crate) fn serves(&self, request_type: RequestType) -> bool {
        self.handlers.contains_key(&request_type)
    }

    /// Runs `job` as a task; its [`Done`] reaches the driver when it ends.
    pub(crate) fn spawn(&self, job: Job) {
        let Some(handler) = self.handlers.get(&job.dispatch.request_type).cloned() else {
            return;
        };
        let (permits, done, bell) = (self.permits.clone(), self.done.clone(), self.bell.clone());
        let key = (job.dispatch.request_type, job.dispatch.request_id);
        let span = tracing::debug_span!("request", request_type = key.0, request_id = key.1);
        // Read on arrival: the wait for a permit counts against it.
        let deadline =
            crate::deadline::from_wire_ms(std::time::Instant::now(), job.dispatch.deadline_ms);
        let slot: Slot = Arc::new(Mutex::new(Some(job)));
        self.keep(slot.clone());
        let task = async move {
            // Never closed, so this only waits for a free permit.
            let _permit = permits.acquire_owned().await;
            // Taken by a graceful stop meanwhile: given back, not run.
            let Some(Job {
                dispatch: job,
                cancel,
            }) = take(&slot)
            else {
                return;
            };
            let context = RequestContext {
                request_type: job.request_type,
                request_id: job.request_id,
                flags: job.flags,
                attempt: job.attempt,
                deadline,
                cancel,
            };
            // The closure runs here, the code before its first await
            // included: a panic there is caught as one in the future.
            let outcome =
                match catch_unwind(AssertUnwindSafe(|| handler.call(job.payload, context))) {
                    Ok(future) => CatchUnwind(future).await,
                    Err(panic) => Err(panic),
                };
            let (outcome, panicked) = match outcome {
                Ok(outcome) => (outcome, false),
                Err(panic) => {
                    let text = crate::role::panic_message(&*panic);
                    tracing::warn!(panic = %text, "handler panicked");
                    let error = HandlerError::failed(format!("handler panicked: {text}"));
                    (Err(error), true)
                }
            };
            // A stopped worker no longer reads: the result is dropped.
            if done
                .send(Done {
                    key,
                    outcome,
                    panicked,
                })
                .is_ok()
            {
                bell.ring();
            }
        };
        drop(self.runtime.spawn(task.instrument(span)));
    }

    /// Keeps a new task's slot, forgetting those of tasks that started: at
    /// the front (tasks mostly start in order), and behind it whenever the
    /// list has doubled since, so that it stays about as long as what
    /// waits, at a constant cost per task.
    fn keep(&self, slot: Slot) {
        let mut queued = self.queued.lock().unwrap_or_else(|p| p.into_inner());
        let q = &mut *queued;
        while q.slots.front().is_some_and(is_taken) {
            q.slots.pop_front();
        }
        if q.slots.len() >= q.prune_at {
            q.slots.retain(|s| !is_taken(s));
            q.prune_at = (2 * q.slots.len()).max(64);
        }
        q.slots.push_back(slot);
    }
}

/// Polls a future, a panic in `poll` becoming `Err` with its payload.
struct CatchUnwind(BoxFuture);

impl Future for CatchUnwind {
    type Output = Result<Outcome, Box<dyn std::any::Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let future = self.0.as_mut();
        match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(outcome)) => Poll::Ready(Ok(outcome)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

/// The runtime async handlers run on: the one given, else the one `start`
/// is called in.
pub(crate) fn runtime(given: Option<Handle>) -> Result<Handle, crate::error::ConfigError> {
    given.or_else(|| Handle::try_current().ok()).ok_or_else(|| {
        crate::error::ConfigError::invalid(
            "runtime",
            "async handlers need a tokio runtime: call `start` inside one (in an async fn, \
             or after `Runtime::enter`), or give one with `WorkerBuilder::runtime`",
        )
    })
}
