//! The NotifyBroker: an XSUB backend for publishers, an XPUB frontend for
//! subscribers, and a driver thread that validates and forwards.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tracing::{info, warn};

use super::config::NotifyBrokerConfig;
use super::stats::{NotifyBrokerStats, TopicStats};
use super::{FromSubscriber, READ_BATCH};
use crate::curve::{KeyList, PublicKey, ZapDomain};
use crate::error::{Error, zmq_err};
use crate::io::set_option;
use crate::log_limit::LogLimiter;
use crate::protocol::{DecodeError, Frame};
use crate::role::{DriverInbox, RoleHandle};
use crate::stats_log::StatsLog;

/// A running NotifyBroker. Cheap to clone; every clone controls the same
/// broker. It stops when [`NotifyBroker::stop`] is called or the last clone
/// is dropped.
///
/// Publishers connect to the [`backend`](Self::backend) (XSUB), subscribers
/// to the [`frontend`](Self::frontend) (XPUB). The broker subscribes to
/// every notification at every publisher and filters towards subscribers,
/// validating each notification on the way: a malformed one is counted,
/// logged at warn and dropped. It answers subscribers' probes, which is how
/// a subscriber knows its subscription is in force (`docs/notifications.md`).
#[derive(Clone, Debug)]
pub struct NotifyBroker {
    role: Arc<RoleHandle<Command>>,
    frontend: String,
    backend: String,
}

#[cfg(test)]
crate::role::inject_panic!(NotifyBroker, role);

impl NotifyBroker {
    /// Binds both sockets and starts the driver thread. Bind errors (address
    /// in use, bad endpoint) are reported here.
    pub fn start(config: NotifyBrokerConfig) -> Result<NotifyBroker, Error> {
        config.validate()?;
        let ctx = crate::context();
        let frontend = ctx
            .socket(zmq::XPUB)
            .map_err(zmq_err("creating an XPUB socket"))?;
        // Every subscribe message reaches us, not only the first per
        // subscription: counted, and each probe is answered.
        set_option!(frontend, set_xpub_verbose(true), "ZMQ_XPUB_VERBOSE")?;
        set_option!(frontend, set_sndhwm(config.peer_sndhwm), "ZMQ_SNDHWM")?;
        let backend = ctx
            .socket(zmq::XSUB)
            .map_err(zmq_err("creating an XSUB socket"))?;
        set_option!(backend, set_rcvhwm(config.hwm), "ZMQ_RCVHWM")?;
        crate::curve::warn_if_clear(
            "notify broker",
            config.curve_secret_key.is_some(),
            &[&config.frontend, &config.backend],
        );
        // The allow lists of each side, while the broker runs.
        let auth_failures = Arc::new(AtomicU64::new(0));
        let mut zaps: [Option<ZapDomain>; 2] = [None, None];
        for ((socket, what, list), slot) in [
            (
                &frontend,
                "notify broker frontend",
                &config.curve_subscriber_keys,
            ),
            (
                &backend,
                "notify broker backend",
                &config.curve_publisher_keys,
            ),
        ]
        .into_iter()
        .zip(&mut zaps)
        {
            let (side, zap) = crate::curve::server_side(
                config.curve_secret_key.as_ref(),
                what,
                list.as_ref(),
                &auth_failures,
            )?;
            *slot = zap;
            crate::curve::apply(side.as_ref(), socket)?;
            crate::io::set_max_message_size(socket, config.max_message_size)?;
        }
        for socket in [&frontend, &backend] {
            super::set_heartbeats(socket, config.heartbeat, config.liveness)?;
            set_option!(socket, set_linger(1000), "ZMQ_LINGER")?;
        }
        // Subscribe to everything at every publisher, present and future
        // (XSUB replays its subscriptions to each new connection), so that
        // a publisher never waits for a subscription to travel upstream.
        backend
            .send(&[1u8][..], 0)
            .map_err(zmq_err("subscribing the backend to everything"))?;
        for (socket, endpoint) in [(&frontend, &config.frontend), (&backend, &config.backend)] {
            crate::io::bind(socket, endpoint)?;
        }
        let frontend_bound = super::bound_endpoint(&frontend, &config.frontend);
        let backend_bound = super::bound_endpoint(&backend, &config.backend);
        let (frontend_ep, backend_ep) = (
            super::connectable(&frontend_bound),
            super::connectable(&backend_bound),
        );
        let (tx, bell, inbox) = crate::role::channel()?;
        info!(frontend = %frontend_ep, backend = %backend_ep, "notify broker started");
        let role = RoleHandle::spawn(
            "lhcluster-notify-broker",
            tx,
            bell,
            || Command::Stop,
            config.shutdown_timeout,
            move || {
                let mut driver = Driver {
                    frontend,
                    backend,
                    frontend_ep: frontend_bound,
                    backend_ep: backend_bound,
                    inbox,
                    stats: NotifyBrokerStats::default(),
                    topics: HashMap::new(),
                    active: HashSet::new(),
                    max_tracked_topics: config.max_tracked_topics,
                    stats_log: StatsLog::new(config.stats_log_interval, Instant::now()),
                    bad_notifications: LogLimiter::new("malformed notifications"),
                    bad_subscriptions: LogLimiter::new("malformed messages from subscribers"),
                    max_frames: config.max_message_frames,
                    max_bytes: config.max_message_size,
                    auth_failures,
                    zaps,
                    publishers_reloaded: None,
                    forbidden_log: LogLimiter::with_limits(
                        "notifications refused after a key reload",
                        1,
                        crate::log_limit::INTERVAL,
                        crate::log_limit::MAX_PEERS,
                    ),
                };
                driver.run();
            },
        )?;
        Ok(NotifyBroker {
            role: Arc::new(role),
            frontend: frontend_ep,
            backend: backend_ep,
        })
    }

    /// The frontend endpoint actually bound, for subscribers (a
    /// `tcp://…:0` port resolved).
    pub fn frontend(&self) -> &str {
        &self.frontend
    }

    /// The backend endpoint actually bound, for publishers.
    pub fn backend(&self) -> &str {
        &self.backend
    }

    /// A snapshot of the broker's statistics.
    pub fn stats(&self) -> Result<NotifyBrokerStats, Error> {
        self.role.request(Command::Stats)
    }

    /// Puts new key lists in force (docs/security.md, "Reloading keys"):
    /// `subscribers` replaces `curve_subscriber_keys`, `publishers`
    /// replaces `curve_publisher_keys`; `None` keeps that list. What a side
    /// had no list for at start cannot get one (an error; restart the
    /// broker).
    ///
    /// New CURVE handshakes are judged by the new lists; connections
    /// already made are kept. A connected publisher is held to the new
    /// list: from now on each notification's key is checked, and one whose
    /// key is no longer listed is dropped and counted in
    /// `notifications_forbidden`. A connected subscriber whose key is no
    /// longer listed keeps what it has until it disconnects (libzmq applies
    /// subscriptions itself and cannot close one connection of the
    /// frontend); its next connection is refused. Returns once the lists
    /// are in force. `lhcluster notify-broker` calls it on SIGHUP.
    pub fn reload_keys(
        &self,
        subscribers: Option<KeyList>,
        publishers: Option<KeyList>,
    ) -> Result<(), Error> {
        self.role.request(|done| Command::ReloadKeys {
            frontend: subscribers,
            backend: publishers,
            done,
        })?
    }

    /// Forwards a last batch of the notifications publishers already sent,
    /// unbinds both endpoints (so that a new broker can bind them), closes
    /// the sockets and waits for the driver thread (up to the configured
    /// shutdown timeout). Idempotent.
    pub fn stop(&self) -> Result<(), Error> {
        self.role.stop(Command::Stop)
    }
}

/// The driver's commands: the frontend's keys are the subscribers', the
/// backend's the publishers'.
type Command = crate::role::BrokerCommand<NotifyBrokerStats>;

struct Driver {
    frontend: zmq::Socket,
    backend: zmq::Socket,
    frontend_ep: String,
    backend_ep: String,
    inbox: DriverInbox<Command>,
    stats: NotifyBrokerStats,
    /// Forwarded per topic, for up to `max_tracked_topics` topics.
    topics: HashMap<String, u64>,
    /// Subscription filters that at least one subscriber holds.
    active: HashSet<Vec<u8>>,
    max_tracked_topics: usize,
    stats_log: StatsLog,
    /// Limit the warnings about bad input from publishers and from
    /// subscribers (the counters stay exact).
    bad_notifications: LogLimiter,
    bad_subscriptions: LogLimiter,
    /// The most frames a notification may have.
    max_frames: usize,
    /// The most bytes a notification may have in all.
    max_bytes: usize,
    /// Refused CURVE handshakes, counted by the ZAP handler.
    auth_failures: Arc<AtomicU64>,
    /// The allow lists of the frontend and the backend, while the broker
    /// runs.
    zaps: [Option<ZapDomain>; 2],
    /// The publisher list of the last reload: from then on each
    /// notification's key is checked against it, as connections made
    /// under an older list stay open. `None` before any reload.
    publishers_reloaded: Option<KeyList>,
    /// Warnings about notifications refused after a reload, once per key
    /// and then a summary.
    forbidden_log: LogLimiter,
}

impl Driver {
    fn run(&mut self) {
        loop {
            let sockets = [Some(&self.frontend), Some(&self.backend)];
            let wake_at = crate::io::earliest([
                self.stats_log.next(),
                self.bad_notifications.next_due(),
                self.bad_subscriptions.next_due(),
                self.forbidden_log.next_due(),
            ]);
            let Some(ready) =
                super::driver_wait!(&self.inbox.listener, sockets, wake_at, "notify broker")
            else {
                return;
            };
            let [front_ready, back_ready] = ready.sockets;
            // Subscriptions first: a subscription and a notification that
            // arrive together are applied in that order.
            if front_ready {
                self.read_frontend();
            }
            if back_ready {
                self.read_backend();
            }
            if self.handle_commands(ready.doorbell) {
                // Forward what publishers already sent us, then release the
                // endpoints so a new broker can bind them.
                self.read_backend();
                for (socket, endpoint) in [
                    (&self.frontend, &self.frontend_ep),
                    (&self.backend, &self.backend_ep),
                ] {
                    let _ = socket.unbind(endpoint);
                }
                info!(stats = %self.snapshot(), "notify broker stopped");
                return;
            }
            let now = Instant::now();
            self.bad_notifications.on_tick(now);
            self.bad_subscriptions.on_tick(now);
            self.forbidden_log.on_tick(now);
            if self.stats_log.due(now) {
                info!(stats = %self.snapshot(), "notify broker stats");
            }
        }
    }

    /// Subscriptions, unsubscriptions and probes from subscribers.
    fn read_frontend(&mut self) {
        super::read_subscribers(
            &self.frontend,
            "receive from subscribers failed",
            &mut self.bad_subscriptions,
            |m| match m {
                FromSubscriber::Subscribe(filter) => {
                    self.stats.subscribes += 1;
                    self.active.insert(filter.to_vec());
                }
                FromSubscriber::Unsubscribe(filter) => {
                    self.stats.unsubscribes += 1;
                    self.active.remove(filter);
                }
                FromSubscriber::ProbeAnswered => self.stats.probes_answered += 1,
                FromSubscriber::Malformed => self.stats.malformed_subscriptions += 1,
            },
        );
    }

    /// Notifications from publishers: validated, then forwarded verbatim.
    fn read_backend(&mut self) {
        for _ in 0..READ_BATCH {
            let Some(mut frames) =
                super::recv_next(&self.backend, "receive from publishers failed")
            else {
                break;
            };
            if self.forbidden(&mut frames[0]) {
                continue;
            }
            let bytes: usize = frames.iter().map(|f| f.len()).sum();
            if frames.len() > self.max_frames || bytes > self.max_bytes {
                self.stats.malformed += 1;
                let error = crate::io::Oversized {
                    frames: frames.len(),
                    bytes,
                }
                .to_string();
                if self.bad_notifications.admit(Instant::now(), &[], &error) {
                    warn!(%error, "oversized notification dropped");
                }
                continue;
            }
            match validate(&frames) {
                Ok(topic) => {
                    if let Err(e) = super::send_all(&self.frontend, frames) {
                        warn!(error = %e, %topic, "cannot forward a notification");
                        continue;
                    }
                    self.stats.forwarded += 1;
                    self.count_topic(topic);
                }
                Err(error) => {
                    self.stats.malformed += 1;
                    if self.bad_notifications.admit(Instant::now(), &[], &error) {
                        warn!(%error, frames = frames.len(), "malformed notification dropped");
                    }
                }
            }
        }
    }

    /// Whether a notification comes from a publisher whose key a reload
    /// took off the list (then counted and logged). libzmq attaches the
    /// key our ZAP handler approved to every message of the connection
    /// (`User-Id`); a message without one came over inproc:// (no
    /// handshake) and is not checked.
    fn forbidden(&mut self, first: &mut Frame) -> bool {
        let Some(list) = &self.publishers_reloaded else {
            return false;
        };
        let Some(key) = first
            .gets("User-Id")
            .and_then(|user| PublicKey::from_z85(user).ok())
        else {
            return false;
        };
        if list.contains(&key) {
            return false;
        }
        self.stats.notifications_forbidden += 1;
        let now = Instant::now();
        self.forbidden_log.on_tick(now);
        let reason = format!("key {key} is no longer allowed to publish");
        if self.forbidden_log.admit(now, key.as_bytes(), &reason) {
            warn!(%key, "refused a notification: its publisher's key was removed (docs/security.md)");
        }
        true
    }

    fn count_topic(&mut self, topic: String) {
        if let Some(n) = self.topics.get_mut(&topic) {
            *n += 1;
        } else if self.topics.len() < self.max_tracked_topics {
            self.topics.insert(topic, 1);
        } else {
            self.stats.untracked_forwarded += 1;
        }
    }

    /// Handles queued commands (on every pass: an empty channel costs an
    /// atomic load, the doorbell only cuts the wait short); `true` when
    /// asked to stop.
    fn handle_commands(&mut self, rung: bool) -> bool {
        for command in self.inbox.pending(rung) {
            match command {
                Command::Stats(reply) => {
                    let _ = reply.send(self.snapshot());
                }
                Command::ReloadKeys {
                    frontend: subscribers,
                    backend: publishers,
                    done,
                } => {
                    let result = reload(
                        &self.zaps,
                        &mut self.publishers_reloaded,
                        subscribers,
                        publishers,
                    );
                    let _ = done.send(result);
                }
                Command::Stop => return true,
            }
        }
        false
    }

    fn snapshot(&self) -> NotifyBrokerStats {
        let mut stats = self.stats.clone();
        stats.active_subscriptions = self.active.len() as u64;
        stats.auth_failures = self.auth_failures.load(Ordering::Relaxed);
        stats.topics = self
            .topics
            .iter()
            .map(|(topic, &forwarded)| (topic.clone(), TopicStats { forwarded }))
            .collect();
        stats
    }
}

/// Puts new lists in force for the handshakes to come (`None`: keep that
/// side's), and the publisher list for connected publishers
/// (`publishers_reloaded`).
fn reload(
    zaps: &[Option<ZapDomain>; 2],
    publishers_reloaded: &mut Option<KeyList>,
    subscribers: Option<KeyList>,
    publishers: Option<KeyList>,
) -> Result<(), Error> {
    let lists = [
        ("curve_subscriber_keys", subscribers),
        ("curve_publisher_keys", publishers),
    ];
    for ((field, list), zap) in lists.iter().zip(zaps) {
        if list.is_some() && zap.is_none() {
            return Err(Error::Config(crate::ConfigError::invalid(
                field,
                "cannot be reloaded into a notify broker started without it (restart it)",
            )));
        }
    }
    let [(_, subscribers), (_, publishers)] = lists;
    if let (Some(list), Some(zap)) = (subscribers, &zaps[0]) {
        zap.replace(list);
    }
    if let (Some(list), Some(zap)) = (publishers, &zaps[1]) {
        zap.replace(list.clone());
        *publishers_reloaded = Some(list);
    }
    Ok(())
}

/// Validates a notification (topic frame, header, version, kind) without
/// touching its payload, and returns its topic.
pub(crate) fn validate(frames: &[Frame]) -> Result<String, DecodeError> {
    // Checked in place: the frames are forwarded verbatim, unknown header
    // fields included.
    crate::protocol::check_notification(frames)
}

#[cfg(test)]
mod validate_tests {
    use super::*;
    use crate::protocol::{Message, RawNotification};

    fn notification(payload: Vec<&[u8]>) -> Vec<Frame> {
        Message::Notification(RawNotification {
            topic: "t".into(),
            notify_id: None,
            payload: payload.into_iter().map(Frame::from).collect(),
        })
        .into_frames()
    }

    #[test]
    fn accepts_inline_and_framed_payloads_and_refuses_both_at_once() {
        assert_eq!(validate(&notification(vec![b"small"])).unwrap(), "t");
        assert_eq!(validate(&notification(vec![b"a", b"b"])).unwrap(), "t");
        assert_eq!(validate(&notification(vec![])).unwrap(), "t");
        let mut both = notification(vec![b"inline"]);
        assert_eq!(both.len(), 2, "the lone small frame went inline");
        both.push(Frame::from(&b"extra"[..]));
        assert!(matches!(
            validate(&both),
            Err(DecodeError::InvalidField {
                field: "inline_payload",
                ..
            })
        ));
    }
}
