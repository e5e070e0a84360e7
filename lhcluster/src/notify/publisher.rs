//! The NotifyPublisher: a bounded publish queue in front of a driver thread
//! that owns the socket.
//!
//! Why a driver thread rather than a socket behind a mutex: the socket must
//! also be *read* all the time, whether or not anyone publishes, to learn
//! when the broker is ready (its subscribe-all arrives) or gone, and to
//! answer direct subscribers' probes promptly. A thread that owns the socket
//! does both, and `publish` stays a non-blocking push into a queue that any
//! number of threads can share without contending on the socket.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use tracing::{info, warn};

use super::config::NotifyPublisherConfig;
use super::stats::NotifyPublisherStats;
use super::{FromSubscriber, READ_BATCH};
use crate::curve::SocketCurve;
use crate::error::{ConfigError, Error, zmq_err};
use crate::io::set_option;
use crate::log_limit::LogLimiter;
use crate::protocol::{Message, Payload, RawNotification};
use crate::role::{DriverInbox, RoleHandle, WaitFlag};
use crate::stats_log::StatsLog;
use crate::wake::Doorbell;

/// Why [`NotifyPublisher::publish`] did not take a notification.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The topic is empty or contains a NUL character.
    #[error(transparent)]
    InvalidTopic(#[from] ConfigError),
    /// The publish queue is full (the publisher is producing faster than the
    /// socket drains): the notification was dropped and counted in
    /// [`NotifyPublisherStats::dropped_queue_full`].
    #[error("the publish queue is full: notification dropped")]
    QueueFull,
    /// The publisher has stopped.
    #[error("the publisher has stopped")]
    Stopped,
}

/// A running notification publisher. Cheap to clone and usable from any
/// thread; it stops when [`NotifyPublisher::stop`] is called or the last
/// clone is dropped.
///
/// # Never blocking
///
/// [`publish`](Self::publish) validates the topic and pushes the
/// notification into a bounded queue
/// ([`queue_capacity`](NotifyPublisherConfig::queue_capacity)); it never
/// waits. A full queue drops the notification, counts it and returns
/// [`PublishError::QueueFull`]. The driver thread moves notifications from
/// the queue to the socket, which holds up to
/// [`hwm`](NotifyPublisherConfig::hwm) per connection; beyond that ZeroMQ
/// drops for the slow peer (PUB semantics), which no one can count.
///
/// # What is guaranteed
///
/// - [`connect`](Self::connect) returns once the broker has subscribed to
///   everything at this publisher (bounded by
///   [`connect_timeout`](NotifyPublisherConfig::connect_timeout)), so the
///   first notification published after it reaches the broker.
/// - While the broker is away (restart, network), notifications are
///   dropped and counted in `dropped_disconnected`; the publisher
///   reconnects by itself and [`wait_connected`](Self::wait_connected)
///   tells when it is back. Notifications in flight when a broker dies
///   are lost.
/// - Given several notify brokers, it is connected to all of them, and is
///   connected (ready) while any one is: each notification goes to every
///   broker ready at that moment; one that is away misses it, without a
///   count (docs/notifications.md, "Several notify brokers").
/// - Notifications from one publisher reach each subscriber in publish
///   order (or not at all).
#[derive(Clone, Debug)]
pub struct NotifyPublisher {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    role: RoleHandle<Command>,
    queue: Sender<RawNotification>,
    bell: Arc<Doorbell>,
    shared: Arc<Shared>,
    endpoint: String,
}

#[derive(Debug)]
enum Command {
    Stop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Connect,
    Bind,
}

/// State the handles read without asking the driver.
#[derive(Debug, Default)]
struct Shared {
    published: AtomicU64,
    dropped_queue_full: AtomicU64,
    dropped_disconnected: AtomicU64,
    probes_answered: AtomicU64,
    connections: AtomicU64,
    connected: Arc<WaitFlag>,
}

impl Shared {
    fn is_connected(&self) -> bool {
        self.connected.get()
    }

    /// Only the driver changes it (after `start`): a new connection is
    /// counted before a waiter can see it.
    fn set_connected(&self, connected: bool) {
        if connected && !self.connected.get() {
            self.connections.fetch_add(1, Ordering::Relaxed);
        }
        self.connected.set(connected);
    }

    fn snapshot(&self) -> NotifyPublisherStats {
        NotifyPublisherStats {
            published: self.published.load(Ordering::Relaxed),
            dropped_queue_full: self.dropped_queue_full.load(Ordering::Relaxed),
            dropped_disconnected: self.dropped_disconnected.load(Ordering::Relaxed),
            probes_answered: self.probes_answered.load(Ordering::Relaxed),
            connections: self.connections.load(Ordering::Relaxed),
            connected: self.is_connected(),
        }
    }
}

#[cfg(test)]
crate::role::inject_panic!(NotifyPublisher, inner.role);

impl NotifyPublisher {
    /// Connects to every NotifyBroker backend of
    /// [`endpoints`](NotifyPublisherConfig::endpoints) and waits (up to
    /// [`connect_timeout`](NotifyPublisherConfig::connect_timeout)) until
    /// one broker is ready to take notifications; fails with
    /// [`Error::Connect`] if none is by then.
    pub fn connect(config: NotifyPublisherConfig) -> Result<NotifyPublisher, Error> {
        let timeout = config.connect_timeout;
        let publisher = Self::start(config, Mode::Connect)?;
        if let Some(timeout) = timeout {
            if !publisher.wait_connected(timeout) {
                let _ = publisher.stop();
                return Err(super::not_connected(&publisher.inner.endpoint));
            }
        }
        Ok(publisher)
    }

    /// Binds [`endpoints`](NotifyPublisherConfig::endpoints) for subscribers
    /// that connect directly, without a broker. A subscriber's
    /// subscription is in force here when its `subscribe` returns, as with
    /// a broker.
    pub fn bind(config: NotifyPublisherConfig) -> Result<NotifyPublisher, Error> {
        Self::start(config, Mode::Bind)
    }

    fn start(config: NotifyPublisherConfig, mode: Mode) -> Result<NotifyPublisher, Error> {
        config.validate()?;
        // An XPUB rather than a PUB: same wire behaviour, but subscriptions
        // reach us, which tells when the broker is ready and lets us answer
        // probes.
        let socket = crate::context()
            .socket(zmq::XPUB)
            .map_err(zmq_err("creating an XPUB socket"))?;
        set_option!(socket, set_xpub_verbose(true), "ZMQ_XPUB_VERBOSE")?;
        set_option!(socket, set_sndhwm(config.hwm), "ZMQ_SNDHWM")?;
        let linger = i32::try_from(config.linger.as_millis()).unwrap_or(i32::MAX);
        set_option!(socket, set_linger(linger), "ZMQ_LINGER")?;
        super::set_heartbeats(&socket, config.heartbeat, config.liveness)?;
        let curve = match mode {
            Mode::Bind => SocketCurve::server(config.curve_secret_key.as_ref()),
            Mode::Connect => SocketCurve::client(
                config.curve_server_key.as_ref(),
                config.curve_secret_key.as_ref(),
            )?,
        };
        crate::curve::apply(curve.as_ref(), &socket)?;
        let shared = Arc::new(Shared::default());
        let (endpoint, bound) = match mode {
            Mode::Connect => {
                // No queueing towards a broker that is not there: the
                // connection (and the broker's subscribe-all with it) is
                // dropped when the broker goes, so we know we are
                // disconnected, and a reconnection is a fresh start.
                set_option!(socket, set_immediate(true), "ZMQ_IMMEDIATE")?;
                // Every broker at once: each gets every notification (the
                // XPUB sends to each connection that subscribed to all),
                // so a subscriber of any one of them misses none.
                for endpoint in &config.endpoints {
                    super::connect(
                        &socket,
                        endpoint,
                        config.reconnect_min,
                        config.reconnect_max,
                    )?;
                }
                (config.endpoints[0].clone(), Vec::new())
            }
            Mode::Bind => {
                crate::io::set_max_message_size(&socket, config.max_message_size)?;
                let mut bound = Vec::with_capacity(config.endpoints.len());
                for endpoint in &config.endpoints {
                    crate::io::bind(&socket, endpoint)?;
                    bound.push(super::bound_endpoint(&socket, endpoint));
                }
                // Direct subscribers filter here; nothing to wait for.
                shared.set_connected(true);
                (super::connectable(&bound[0]), bound)
            }
        };
        let (queue_tx, queue_rx) = crossbeam_channel::bounded(config.queue_capacity);
        let (tx, bell, inbox) = crate::role::channel()?;
        info!(%endpoint, ?mode, "notify publisher started");
        let driver_shared = shared.clone();
        let stats_log_interval = config.stats_log_interval;
        let role = RoleHandle::spawn(
            "lhcluster-notify-publisher",
            tx,
            bell.clone(),
            || Command::Stop,
            config.shutdown_timeout,
            move || {
                // Declared first, dropped last: `wait_connected` answers
                // `false` once the driver has ended, by a stop or a panic.
                let _ended = driver_shared.connected.end_on_drop();
                let mut driver = Driver {
                    socket,
                    mode,
                    bound,
                    inbox,
                    queue: queue_rx,
                    shared: driver_shared,
                    header_buf: Vec::with_capacity(32),
                    stats_log: StatsLog::new(stats_log_interval, Instant::now()),
                    bad_subscriptions: LogLimiter::new("malformed messages from subscribers"),
                };
                driver.run();
            },
        )?;
        Ok(NotifyPublisher {
            inner: Arc::new(Inner {
                role,
                queue: queue_tx,
                bell,
                shared,
                endpoint,
            }),
        })
    }

    /// Publishes a notification on `topic` (any UTF-8 text without NUL,
    /// not empty). Never blocks; see the type's documentation for what
    /// happens under load.
    pub fn publish(&self, topic: &str, payload: Payload) -> Result<(), PublishError> {
        self.push(topic, None, payload)
    }

    /// Publishes a notification with a publisher-chosen id, delivered to
    /// subscribers as [`RawNotification::notify_id`]. Id 0 means "no id" on
    /// the wire (it is delivered as `None`).
    pub fn publish_with_id(
        &self,
        topic: &str,
        notify_id: u64,
        payload: Payload,
    ) -> Result<(), PublishError> {
        self.push(topic, Some(notify_id), payload)
    }

    fn push(
        &self,
        topic: &str,
        notify_id: Option<u64>,
        payload: Payload,
    ) -> Result<(), PublishError> {
        super::validate_topic(topic)?;
        let notification = RawNotification {
            topic: topic.to_owned(),
            notify_id: notify_id.filter(|&id| id != 0),
            payload,
        };
        match self.inner.queue.try_send(notification) {
            Ok(()) => {
                self.inner.bell.ring();
                Ok(())
            }
            Err(TrySendError::Full(_)) => {
                self.inner
                    .shared
                    .dropped_queue_full
                    .fetch_add(1, Ordering::Relaxed);
                // Make sure the driver is draining.
                self.inner.bell.ring();
                Err(PublishError::QueueFull)
            }
            Err(TrySendError::Disconnected(_)) => Err(PublishError::Stopped),
        }
    }

    /// Blocks until the broker is ready to take notifications, up to
    /// `timeout`; returns whether it is. Always `true` in bind mode while
    /// the publisher runs; `false` at once after it stopped (or its driver
    /// thread ended by a bug).
    pub fn wait_connected(&self, timeout: Duration) -> bool {
        self.inner.shared.connected.wait(timeout)
    }

    /// Whether the broker is ready to take notifications now (always `true`
    /// in bind mode while the publisher runs; `false` once it stopped).
    pub fn is_connected(&self) -> bool {
        self.inner.shared.is_connected()
    }

    /// The endpoint: the (first) broker backend connected to, or the
    /// (first) endpoint bound (a `tcp://…:0` port resolved) for direct
    /// subscribers.
    pub fn endpoint(&self) -> &str {
        &self.inner.endpoint
    }

    /// A snapshot of the publisher's statistics. Never fails, after `stop`
    /// too (the counters are shared with the driver thread); a `Result` like
    /// every role's `stats`, most of which ask their driver thread.
    pub fn stats(&self) -> Result<NotifyPublisherStats, Error> {
        Ok(self.inner.shared.snapshot())
    }

    /// Sends what is already queued, closes the socket (notifications
    /// handed to it may still go out for up to
    /// [`linger`](NotifyPublisherConfig::linger)) and waits for the driver
    /// thread. Later `publish` calls fail with [`PublishError::Stopped`].
    /// Idempotent.
    pub fn stop(&self) -> Result<(), Error> {
        self.inner.role.stop(Command::Stop)
    }
}

struct Driver {
    socket: zmq::Socket,
    mode: Mode,
    /// The endpoints as bound (bind mode), for `unbind`.
    bound: Vec<String>,
    inbox: DriverInbox<Command>,
    queue: Receiver<RawNotification>,
    shared: Arc<Shared>,
    header_buf: Vec<u8>,
    stats_log: StatsLog,
    /// Limits the warnings about bad messages from direct subscribers
    /// (bind mode): whoever can connect must not fill a disk.
    bad_subscriptions: LogLimiter,
}

impl Driver {
    fn run(&mut self) {
        loop {
            // More queued than one batch: look at the socket, then go on.
            let until = if self.queue.is_empty() {
                crate::io::earliest([self.stats_log.next(), self.bad_subscriptions.next_due()])
            } else {
                Some(Instant::now())
            };
            let sockets = [Some(&self.socket), None];
            let Some(ready) =
                super::driver_wait!(&self.inbox.listener, sockets, until, "notify publisher")
            else {
                return;
            };
            if ready.sockets[0] {
                self.read_subscriptions();
            }
            // The doorbell only cuts the wait short: the command channel and
            // the queue are looked at on every pass.
            if self.stop_requested(ready.doorbell) {
                while self.publish_batch() {}
                for bound in &self.bound {
                    let _ = self.socket.unbind(bound);
                }
                info!(stats = %self.shared.snapshot(), "notify publisher stopped");
                return;
            }
            self.publish_batch();
            let now = Instant::now();
            self.bad_subscriptions.on_tick(now);
            if self.stats_log.due(now) {
                info!(stats = %self.shared.snapshot(), "notify publisher stats");
            }
        }
    }

    fn stop_requested(&self, rung: bool) -> bool {
        let mut stop = false;
        for command in self.inbox.pending(rung) {
            match command {
                Command::Stop => stop = true,
            }
        }
        stop
    }

    /// Moves up to one batch from the queue to the socket; `true` if it
    /// moved any.
    fn publish_batch(&mut self) -> bool {
        let mut moved = false;
        // Only this thread changes the connection state.
        let connected = self.mode == Mode::Bind || self.shared.is_connected();
        for _ in 0..READ_BATCH * 4 {
            let Ok(notification) = self.queue.try_recv() else {
                break;
            };
            moved = true;
            if !connected {
                self.shared
                    .dropped_disconnected
                    .fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let msg = Message::Notification(notification);
            match crate::io::send(&self.socket, None, msg, &mut self.header_buf) {
                Ok(()) => {
                    self.shared.published.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    warn!(error = %e, "cannot publish a notification");
                    self.shared
                        .dropped_disconnected
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        moved
    }

    /// Subscription messages: the broker's subscribe-all (connect mode) and
    /// direct subscribers' probes (bind mode).
    fn read_subscriptions(&mut self) {
        super::read_subscribers(
            &self.socket,
            "receive of subscriptions failed",
            &mut self.bad_subscriptions,
            |m| match m {
                FromSubscriber::ProbeAnswered => {
                    self.shared.probes_answered.fetch_add(1, Ordering::Relaxed);
                }
                FromSubscriber::Subscribe([]) if self.mode == Mode::Connect => {
                    if !self.shared.is_connected() {
                        info!("notify broker ready");
                    }
                    self.shared.set_connected(true);
                }
                FromSubscriber::Unsubscribe([]) if self.mode == Mode::Connect => {
                    warn!("notify broker gone: dropping notifications until it is back");
                    self.shared.set_connected(false);
                }
                FromSubscriber::Subscribe(_)
                | FromSubscriber::Unsubscribe(_)
                | FromSubscriber::Malformed => {}
            },
        );
    }
}
