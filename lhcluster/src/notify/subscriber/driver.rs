//! The subscriber's driver thread: owns the SUB socket, applies the
//! subscription set, probes for confirmation and queues notifications for
//! the handler thread.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crossbeam_channel::{Sender, TrySendError};
use tracing::{error, info, warn};

use super::watch::{BrokerWatch, Move};
use super::{Command, Shared};
use crate::log_limit::LogLimiter;
use crate::notify::subscriptions::{FilterChange, Prober, reconcile};
use crate::notify::{READ_BATCH, driver_wait};
use crate::protocol::{Message, RawNotification, decode_notification};
use crate::role::DriverInbox;
use crate::stats_log::StatsLog;

pub(super) struct Driver {
    pub(super) socket: zmq::Socket,
    pub(super) inbox: DriverInbox<Command>,
    pub(super) shared: Arc<Shared>,
    pub(super) queue: Sender<RawNotification>,
    /// Filters set on the socket now (probes aside).
    pub(super) applied: BTreeSet<Vec<u8>>,
    pub(super) prober: Prober,
    /// Which notify broker is used, and when to leave it.
    pub(super) watch: BrokerWatch,
    pub(super) changes: Vec<FilterChange>,
    /// Whether the last notification was dropped (to warn once per burst).
    pub(super) dropping: bool,
    pub(super) stats_log: StatsLog,
    /// Limits the warnings about malformed notifications (the count stays
    /// exact).
    pub(super) bad_input: LogLimiter,
}

impl Driver {
    pub(super) fn run(&mut self) {
        loop {
            let wake_at = crate::io::earliest([
                self.prober.next_tick(),
                self.watch.next_tick(),
                self.stats_log.next(),
                self.bad_input.next_due(),
            ]);
            let sockets = [Some(&self.socket), None];
            let Some(ready) =
                driver_wait!(&self.inbox.listener, sockets, wake_at, "notify subscriber")
            else {
                return;
            };
            if ready.sockets[0] {
                self.read();
            }
            if self.handle_commands(ready.doorbell) {
                info!("notify subscriber stopped");
                return;
            }
            let now = Instant::now();
            self.bad_input.on_tick(now);
            let probes = self.prober.on_tick(now, &mut self.changes);
            self.count_probes(probes);
            if let Some(to) = self.watch.on_tick(now, &mut self.changes) {
                self.move_to(now, to);
            }
            self.apply_changes();
            if self.stats_log.due(now) {
                info!(
                    received = self.shared.received.load(Ordering::Relaxed),
                    dropped = self.shared.dropped_queue_full.load(Ordering::Relaxed),
                    malformed = self.shared.malformed.load(Ordering::Relaxed),
                    handled = self.shared.handled.load(Ordering::Relaxed),
                    "notify subscriber stats"
                );
            }
        }
    }

    /// Handles queued commands (on every pass: an empty channel costs an
    /// atomic load, the doorbell only cuts the wait short); `true` when
    /// asked to stop.
    fn handle_commands(&mut self, rung: bool) -> bool {
        let mut sync = false;
        let mut waiters = Vec::new();
        let mut stop = false;
        for command in self.inbox.pending(rung) {
            match command {
                Command::Sync(waiter) => {
                    sync = true;
                    waiters.extend(waiter);
                }
                Command::Stop => stop = true,
            }
        }
        if stop {
            return true;
        }
        if sync {
            let desired = self.shared.subscriptions().filters();
            reconcile(&mut self.applied, desired, &mut self.changes);
            // The probe goes after the filter changes it confirms.
            let probes = self
                .prober
                .request(Instant::now(), waiters, &mut self.changes);
            self.count_probes(probes);
            self.apply_changes();
        }
        false
    }

    fn count_probes(&self, probes: usize) {
        self.shared
            .probes_sent
            .fetch_add(probes as u64, Ordering::Relaxed);
    }

    fn apply_changes(&mut self) {
        for change in self.changes.drain(..) {
            let result = match &change {
                FilterChange::Subscribe(filter) => self.socket.set_subscribe(filter),
                FilterChange::Unsubscribe(filter) => self.socket.set_unsubscribe(filter),
            };
            if let Err(e) = result {
                warn!(error = %e, ?change, "cannot change a subscription");
            }
        }
    }

    /// Leaves a silent notify broker for the next: the socket's
    /// subscriptions go with it (ZeroMQ sends them all on the new
    /// connection), and waiting confirmations are asked of the new broker.
    fn move_to(&mut self, now: Instant, to: Move) {
        // The withdrawn liveness probe, on the old connection.
        self.apply_changes();
        if let Err(e) = self.socket.disconnect(&to.from) {
            warn!(error = %e, broker = %to.from, "cannot disconnect from the notify broker");
        }
        if let Err(e) = self.socket.connect(&to.to) {
            // Left unconnected: the watch moves on again in its turn.
            error!(error = %e, broker = %to.to, "cannot connect to the notify broker");
        }
        info!(
            broker = %to.to,
            from = %to.from,
            "moving to notify broker {} after its silence",
            to.to
        );
        self.shared.failovers.fetch_add(1, Ordering::Relaxed);
        let probes = self.prober.renew(now, &mut self.changes);
        self.count_probes(probes);
    }

    fn read(&mut self) {
        let now = Instant::now();
        for _ in 0..READ_BATCH {
            let Some(frames) = crate::notify::recv_next(&self.socket, "receive failed") else {
                break;
            };
            // Anything at all is a sign of life of the broker.
            if self.watch.on_message(now, &frames[0], &mut self.changes) {
                self.apply_changes();
                continue;
            }
            if crate::notify::is_probe(&frames[0]) {
                // A probe answer, ours or (with a catch-all prefix) another
                // subscriber's.
                self.prober.on_answer(&frames[0], &mut self.changes);
                self.apply_changes();
                continue;
            }
            match decode_notification(frames) {
                Ok(Message::Notification(notification)) => {
                    self.shared.received.fetch_add(1, Ordering::Relaxed);
                    self.deliver(notification);
                }
                Ok(other) => {
                    // decode_notification only returns notifications.
                    self.shared.malformed.fetch_add(1, Ordering::Relaxed);
                    let reason = format_args!("unexpected {}", other.kind_name());
                    if self.bad_input.admit(Instant::now(), &[], &reason) {
                        warn!(kind = other.kind_name(), "unexpected message dropped");
                    }
                }
                Err(error) => {
                    self.shared.malformed.fetch_add(1, Ordering::Relaxed);
                    if self.bad_input.admit(Instant::now(), &[], &error) {
                        warn!(%error, "malformed notification dropped");
                    }
                }
            }
        }
    }

    fn deliver(&mut self, notification: RawNotification) {
        // A streamed topic's notifications are its streams', each buffered
        // up to the handler queue's capacity.
        #[cfg(feature = "stream")]
        let notification = {
            let capacity = self.queue.capacity().unwrap_or(usize::MAX);
            match self.shared.streams.offer(notification, capacity) {
                Ok(None) => return self.dropping = false,
                Ok(Some(topic)) => return self.dropped(&topic, "stream buffer"),
                Err(notification) => notification,
            }
        };
        match self.queue.try_send(notification) {
            Ok(()) => self.dropping = false,
            Err(TrySendError::Full(n)) => self.dropped(&n.topic, "handler queue"),
            // The handler thread is gone (it asked to stop).
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Counts a notification dropped for want of room, and warns once per
    /// burst.
    fn dropped(&mut self, topic: &str, whose: &str) {
        self.shared
            .dropped_queue_full
            .fetch_add(1, Ordering::Relaxed);
        if !self.dropping {
            warn!(%topic, "{whose} full: dropping notifications");
            self.dropping = true;
        }
    }
}
