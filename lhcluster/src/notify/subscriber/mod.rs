//! The NotifySubscriber: a driver thread that owns the SUB socket, and a
//! handler thread that runs the application's handler in order.

mod driver;
mod handler;
#[cfg(feature = "stream")]
mod stream;
mod watch;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use tracing::{error, info};

use super::config::NotifySubscriberConfig;
use super::stats::NotifySubscriberStats;
use super::subscriptions::{Prober, SubscriptionSet};
use crate::curve::SocketCurve;
use crate::error::{Error, zmq_err};
use crate::io::set_option;
use crate::log_limit::LogLimiter;
use crate::protocol::RawNotification;
use crate::role::{RoleHandle, WaitFlag};
use crate::stats_log::StatsLog;
use driver::Driver;
use handler::run_handler;
pub use handler::{NotifyHandler, NotifyOutcome};
#[cfg(feature = "stream")]
pub use stream::NotifyStream;
use watch::BrokerWatch;

/// An unanswered probe is replaced by a new one after this long.
const PROBE_RETRY: Duration = Duration::from_millis(250);

/// A running notification subscriber. Cheap to clone and usable from any
/// thread; it stops when [`NotifySubscriber::stop`] is called, when its
/// handler returns [`NotifyOutcome::Stop`], or when the last clone is
/// dropped. (A handler that holds a clone keeps it alive until one of the
/// first two.)
///
/// # Guarantees
///
/// - When [`connect`](Self::connect), [`subscribe`](Self::subscribe) or
///   [`subscribe_prefix`](Self::subscribe_prefix) returns `Ok`, the
///   subscriptions are in force at the broker (or the direct publisher): a
///   notification published after that is delivered (unless a high-water
///   mark overflows or the connection breaks). This needs a
///   [`confirm_timeout`](NotifySubscriberConfig::confirm_timeout).
/// - After [`unsubscribe`](Self::unsubscribe) (or the handler's
///   [`NotifyOutcome::Unsubscribe`]), no further notification on that
///   topic reaches the handler, even one already queued.
/// - Exact subscriptions match the whole topic only.
/// - After a broker restart, ZeroMQ reconnects and this subscriber's
///   subscriptions (all of them, added at runtime too) are sent again.
/// - Given several notify brokers, it uses one at a time and moves to the
///   next when its own has been silent for `liveness` × `heartbeat` (it
///   probes a quiet one), subscribing there again; notifications published
///   meanwhile are lost (docs/notifications.md, "Several notify
///   brokers").
#[derive(Clone, Debug)]
pub struct NotifySubscriber {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    role: RoleHandle<Command>,
    shared: Arc<Shared>,
    handler_thread: Mutex<Option<JoinHandle<()>>>,
    handler_thread_id: ThreadId,
    /// Disconnected when the handler thread ends.
    handler_finished: Receiver<()>,
    /// For the queue length in stats.
    queue: Receiver<RawNotification>,
    endpoint: String,
    confirm_timeout: Option<Duration>,
    shutdown_timeout: Duration,
}

#[derive(Debug)]
enum Command {
    /// Apply the subscription set to the socket; with a waiter, confirm.
    Sync(Option<(Instant, Sender<()>)>),
    Stop,
}

#[derive(Debug, Default)]
struct Shared {
    subscriptions: Mutex<SubscriptionSet>,
    /// Set by `stop` and by a handler's `Stop`: handle nothing more.
    stopping: AtomicBool,
    /// Set when the driver thread has ended.
    stopped: WaitFlag,
    received: AtomicU64,
    handled: AtomicU64,
    dropped_queue_full: AtomicU64,
    filtered: AtomicU64,
    malformed: AtomicU64,
    handler_panics: AtomicU64,
    /// Shared with a typed router's dispatch, which counts what it cannot
    /// decode.
    decode_errors: Arc<AtomicU64>,
    probes_sent: AtomicU64,
    failovers: AtomicU64,
    /// Where the notifications of streamed topics go.
    #[cfg(feature = "stream")]
    streams: stream::Streams,
}

impl Shared {
    fn subscriptions(&self) -> MutexGuard<'_, SubscriptionSet> {
        self.subscriptions.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Marks the subscriber stopped when dropped: held by the driver thread, so
/// that `wait_stopped` returns however the driver ends (a panic included).
struct StoppedOnDrop(Arc<Shared>);

impl Drop for StoppedOnDrop {
    fn drop(&mut self) {
        self.0.stopped.set(true);
        // After the flag: a stream made meanwhile is either closed here or
        // sees the flag (`NotifySubscriber::stream` checks it last).
        #[cfg(feature = "stream")]
        self.0.streams.close_all();
    }
}

#[cfg(test)]
crate::role::inject_panic!(NotifySubscriber, inner.role);

impl NotifySubscriber {
    /// Connects to a NotifyBroker frontend (or a publisher's bound
    /// endpoint), subscribes to the configured topics and prefixes, and
    /// starts running `handler`. With a
    /// [`confirm_timeout`](NotifySubscriberConfig::confirm_timeout), returns
    /// only once the subscriptions are in force there, and fails with
    /// [`Error::Connect`] if they are not by then.
    pub fn connect(
        config: NotifySubscriberConfig,
        handler: impl NotifyHandler,
    ) -> Result<NotifySubscriber, Error> {
        Self::connect_counting(config, handler, Arc::default())
    }

    /// [`connect`](Self::connect), with `decode_errors` as the counter of
    /// [`NotifySubscriberStats::decode_errors`] (a typed router holds a
    /// clone and counts what it cannot decode).
    pub(crate) fn connect_counting(
        config: NotifySubscriberConfig,
        handler: impl NotifyHandler,
        decode_errors: Arc<AtomicU64>,
    ) -> Result<NotifySubscriber, Error> {
        config.validate()?;
        let socket = crate::context()
            .socket(zmq::SUB)
            .map_err(zmq_err("creating a SUB socket"))?;
        set_option!(socket, set_rcvhwm(config.hwm), "ZMQ_RCVHWM")?;
        set_option!(socket, set_linger(0), "ZMQ_LINGER")?;
        super::set_heartbeats(&socket, config.heartbeat, config.liveness)?;
        let curve = SocketCurve::client(
            config.curve_server_key.as_ref(),
            config.curve_secret_key.as_ref(),
        )?;
        crate::curve::apply(curve.as_ref(), &socket)?;
        // One at a time: the watch moves the socket to the next (a
        // subscriber connected to several would get each notification
        // from each of them).
        super::connect(
            &socket,
            &config.endpoints[0],
            config.reconnect_min,
            config.reconnect_max,
        )?;

        let shared = Arc::new(Shared {
            decode_errors,
            ..Shared::default()
        });
        {
            let mut subscriptions = shared.subscriptions();
            subscriptions.exact.extend(config.topics.iter().cloned());
            subscriptions
                .prefixes
                .extend(config.prefixes.iter().cloned());
        }
        let (queue_tx, queue_rx) = crossbeam_channel::bounded(config.queue_capacity);
        let (tx, bell, inbox) = crate::role::channel()?;

        let (finished_tx, handler_finished) = crossbeam_channel::bounded::<()>(0);
        let handler_thread = {
            let (queue, shared, commands, bell) =
                (queue_rx.clone(), shared.clone(), tx.sender(), bell.clone());
            std::thread::Builder::new()
                .name("lhcluster-notify-handler".to_owned())
                .spawn(move || {
                    let _finished = finished_tx;
                    run_handler(Box::new(handler), &queue, &shared, &commands, &bell);
                })
                .map_err(Error::Spawn)?
        };
        let handler_thread_id = handler_thread.thread().id();

        let endpoint = config.endpoints[0].clone();
        let probe_id = crate::peer::random_u64().to_le_bytes();
        let watch = BrokerWatch::new(
            config.endpoints.clone(),
            probe_id,
            config.heartbeat,
            config.liveness,
            Instant::now(),
        );
        let driver_shared = shared.clone();
        let stats_log_interval = config.stats_log_interval;
        info!(%endpoint, "notify subscriber started");
        let role = RoleHandle::spawn(
            "lhcluster-notify-subscriber",
            tx,
            bell,
            || Command::Stop,
            config.shutdown_timeout,
            move || {
                // Marks the subscriber stopped when the driver ends, also by
                // a panic (the role catches it once this has run).
                let _stopped = StoppedOnDrop(driver_shared.clone());
                let mut driver = Driver {
                    socket,
                    inbox,
                    shared: driver_shared,
                    queue: queue_tx,
                    applied: BTreeSet::new(),
                    prober: Prober::new(probe_id, PROBE_RETRY),
                    watch,
                    changes: Vec::new(),
                    dropping: false,
                    stats_log: StatsLog::new(stats_log_interval, Instant::now()),
                    bad_input: LogLimiter::new("malformed notifications"),
                };
                driver.run();
                // The socket closes before `wait_stopped` returns.
                drop(driver);
            },
        );
        let role = match role {
            Ok(role) => role,
            Err(e) => {
                // The handler thread ends with its queue's last sender.
                shared.stopping.store(true, Ordering::Release);
                return Err(e);
            }
        };
        let subscriber = NotifySubscriber {
            inner: Arc::new(Inner {
                role,
                shared,
                handler_thread: Mutex::new(Some(handler_thread)),
                handler_thread_id,
                handler_finished,
                queue: queue_rx,
                endpoint,
                confirm_timeout: config.confirm_timeout,
                shutdown_timeout: config.shutdown_timeout,
            }),
        };
        if let Err(e) = subscriber.sync() {
            let _ = subscriber.stop();
            return Err(e);
        }
        Ok(subscriber)
    }

    /// Subscribes to `topic` exactly (`orders` does not receive
    /// `orders-archive`). The topic is any UTF-8 text without NUL, not
    /// empty. Returns once the subscription is in force upstream (see the
    /// type's guarantees); on [`Error::Connect`] (not confirmed in time)
    /// the subscription stays registered and takes effect when the
    /// connection comes up.
    pub fn subscribe(&self, topic: &str) -> Result<(), Error> {
        super::validate_topic(topic)?;
        self.check_running()?;
        self.inner
            .shared
            .subscriptions()
            .exact
            .insert(topic.to_owned());
        self.sync()
    }

    /// Subscribes to every topic starting with `prefix` (the empty prefix
    /// receives everything). Confirmed like [`subscribe`](Self::subscribe).
    pub fn subscribe_prefix(&self, prefix: &str) -> Result<(), Error> {
        super::validate_prefix(prefix)?;
        self.check_running()?;
        self.inner
            .shared
            .subscriptions()
            .prefixes
            .insert(prefix.to_owned());
        self.sync()
    }

    /// Removes the exact subscription to `topic` (a no-op if there is
    /// none). When it returns, no further notification on `topic` reaches
    /// the handler unless a prefix subscription covers it.
    pub fn unsubscribe(&self, topic: &str) -> Result<(), Error> {
        super::validate_topic(topic)?;
        self.check_running()?;
        self.inner.shared.subscriptions().exact.remove(topic);
        self.send(Command::Sync(None))
    }

    /// Removes the prefix subscription `prefix` (a no-op if there is none).
    pub fn unsubscribe_prefix(&self, prefix: &str) -> Result<(), Error> {
        super::validate_prefix(prefix)?;
        self.check_running()?;
        self.inner.shared.subscriptions().prefixes.remove(prefix);
        self.send(Command::Sync(None))
    }

    /// The exact subscriptions now, sorted.
    pub fn topics(&self) -> Vec<String> {
        let subscriptions = self.inner.shared.subscriptions();
        subscriptions.exact.iter().cloned().collect()
    }

    /// The prefix subscriptions now, sorted.
    pub fn prefixes(&self) -> Vec<String> {
        let subscriptions = self.inner.shared.subscriptions();
        subscriptions.prefixes.iter().cloned().collect()
    }

    /// The endpoint configured first (with several, the one used now may
    /// be another: see [`NotifySubscriberStats::failovers`]).
    pub fn endpoint(&self) -> &str {
        &self.inner.endpoint
    }

    /// A snapshot of the subscriber's statistics. Never fails, after `stop`
    /// too (the counters are shared with the driver thread); a `Result` like
    /// every role's `stats`, most of which ask their driver thread.
    pub fn stats(&self) -> Result<NotifySubscriberStats, Error> {
        let s = &self.inner.shared;
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let (topics, prefixes) = {
            let subscriptions = s.subscriptions();
            (subscriptions.exact.len(), subscriptions.prefixes.len())
        };
        Ok(NotifySubscriberStats {
            received: load(&s.received),
            handled: load(&s.handled),
            dropped_queue_full: load(&s.dropped_queue_full),
            filtered: load(&s.filtered),
            malformed: load(&s.malformed),
            handler_panics: load(&s.handler_panics),
            decode_errors: load(&s.decode_errors),
            probes_sent: load(&s.probes_sent),
            failovers: load(&s.failovers),
            queued: self.inner.queue.len() as u64,
            topics: topics as u64,
            prefixes: prefixes as u64,
        })
    }

    /// Whether the subscriber has stopped (by [`stop`](Self::stop) or its
    /// handler's [`NotifyOutcome::Stop`]).
    pub fn is_stopped(&self) -> bool {
        self.inner.shared.stopped.get()
    }

    /// Blocks until the subscriber has stopped, up to `timeout`; returns
    /// whether it has.
    pub fn wait_stopped(&self, timeout: Duration) -> bool {
        self.inner.shared.stopped.wait(timeout)
    }

    /// Stops: no further notification is handled (queued ones are
    /// dropped), the socket is closed, and the call waits for the driver
    /// thread and for a running handler to return (each up to the
    /// shutdown timeout; not for the handler when called from it).
    /// Idempotent.
    pub fn stop(&self) -> Result<(), Error> {
        self.inner.shutdown()
    }

    fn check_running(&self) -> Result<(), Error> {
        if self.inner.shared.stopping.load(Ordering::Acquire) || self.is_stopped() {
            return Err(Error::Stopped);
        }
        Ok(())
    }

    fn send(&self, command: Command) -> Result<(), Error> {
        self.inner.role.send(command).map_err(|_| Error::Stopped)
    }

    /// Applies the subscription set and, with a confirm timeout, waits
    /// until the broker confirms it.
    fn sync(&self) -> Result<(), Error> {
        let Some(timeout) = self.inner.confirm_timeout else {
            return self.send(Command::Sync(None));
        };
        let (tx, rx) = crossbeam_channel::bounded(1);
        let deadline = crate::deadline::later(Instant::now(), timeout);
        self.send(Command::Sync(Some((deadline, tx))))?;
        match rx.recv_timeout(timeout) {
            Ok(()) => Ok(()),
            // The driver forgets a waiter at its deadline, which may come
            // a moment before ours.
            Err(RecvTimeoutError::Disconnected) if self.check_running().is_err() => {
                Err(Error::Stopped)
            }
            Err(_) => Err(super::not_connected(&self.inner.endpoint)),
        }
    }
}

impl Inner {
    fn shutdown(&self) -> Result<(), Error> {
        self.shared.stopping.store(true, Ordering::Release);
        self.role.stop(Command::Stop)?;
        if std::thread::current().id() == self.handler_thread_id {
            // Called from the handler: it returns to a loop that ends.
            return Ok(());
        }
        let thread = self
            .handler_thread
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(thread) = thread {
            match self.handler_finished.recv_timeout(self.shutdown_timeout) {
                Err(RecvTimeoutError::Timeout) => {
                    error!("notification handler did not return within the shutdown timeout");
                }
                _ => {
                    let _ = thread.join();
                }
            }
        }
        Ok(())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}
