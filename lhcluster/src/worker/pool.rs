//! The handler pool: `capacity` threads running handlers off the driver
//! thread. A panic becomes a `FAILED` outcome; the thread keeps serving.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, unbounded};

use super::handler::{HandlerError, RawHandler, RequestContext};
use crate::protocol::{Dispatch, Payload, RequestId, RequestType};
use crate::wake::Doorbell;

/// A finished request, for the driver.
#[derive(Debug)]
pub(crate) struct Done {
    pub(crate) key: (RequestType, RequestId),
    pub(crate) outcome: Result<Payload, HandlerError>,
    pub(crate) panicked: bool,
}

pub(crate) type Handlers = HashMap<RequestType, Arc<dyn RawHandler>>;

#[derive(Debug)]
pub(crate) struct Pool {
    jobs: Option<Sender<Dispatch>>,
    threads: Vec<JoinHandle<()>>,
}

impl Pool {
    pub(crate) fn start(
        size: u32,
        handlers: Arc<Handlers>,
        bell: Arc<Doorbell>,
    ) -> std::io::Result<(Pool, Receiver<Done>)> {
        let (jobs_tx, jobs_rx) = unbounded::<Dispatch>();
        let (done_tx, done_rx) = unbounded::<Done>();
        let mut threads = Vec::new();
        for i in 0..size {
            let jobs = jobs_rx.clone();
            let done = done_tx.clone();
            let handlers = handlers.clone();
            let bell = bell.clone();
            let thread = std::thread::Builder::new()
                .name(format!("lhcluster-handler-{i}"))
                .spawn(move || {
                    for job in jobs {
                        let result = run(&handlers, job);
                        if done.send(result).is_err() {
                            return;
                        }
                        bell.ring();
                    }
                })?;
            threads.push(thread);
        }
        Ok((
            Pool {
                jobs: Some(jobs_tx),
                threads,
            },
            done_rx,
        ))
    }

    pub(crate) fn submit(&self, job: Dispatch) {
        if let Some(jobs) = &self.jobs {
            let _ = jobs.send(job);
        }
    }

    /// Lets the threads finish their current job and exit, without waiting.
    pub(crate) fn close(&mut self) {
        self.jobs = None;
        self.threads.clear();
    }
}

fn run(handlers: &Handlers, job: Dispatch) -> Done {
    let key = (job.request_type, job.request_id);
    let context = RequestContext {
        request_type: job.request_type,
        request_id: job.request_id,
        flags: job.flags,
        attempt: job.attempt,
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
    match catch_unwind(AssertUnwindSafe(|| handler.call(&context, job.payload))) {
        Ok(outcome) => Done {
            key,
            outcome,
            panicked: false,
        },
        Err(panic) => {
            let text = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".to_owned());
            tracing::warn!(panic = %text, "handler panicked");
            Done {
                key,
                outcome: Err(HandlerError::failed(format!("handler panicked: {text}"))),
                panicked: true,
            }
        }
    }
}
