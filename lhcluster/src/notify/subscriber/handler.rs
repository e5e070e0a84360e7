//! The subscriber's handler thread: the application's handler, run on each
//! queued notification in order.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::Ordering;

use crossbeam_channel::{Receiver, Sender};
use tracing::{debug, info, warn};

use super::{Command, Shared};
use crate::protocol::RawNotification;
use crate::wake::Doorbell;

/// What a [`NotifyHandler`] wants after handling a notification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotifyOutcome {
    /// Keep going.
    Continue,
    /// Stop receiving this notification's topic: remove the subscriptions
    /// it came through (its exact subscription, and the prefix
    /// subscriptions it starts with). Notifications on it that are already
    /// queued are not handled.
    Unsubscribe,
    /// Stop the subscriber: no further notification is handled.
    Stop,
}

/// Handles the notifications of a [`NotifySubscriber`](super::NotifySubscriber),
/// one at a time and in the order received, on the subscriber's handler
/// thread.
///
/// Closures `FnMut(RawNotification) -> NotifyOutcome` implement it. A handler
/// that panics is counted (`handler_panics`) and the subscriber carries on.
pub trait NotifyHandler: Send + 'static {
    /// Handles one notification.
    fn handle(&mut self, notification: RawNotification) -> NotifyOutcome;
}

impl<F> NotifyHandler for F
where
    F: FnMut(RawNotification) -> NotifyOutcome + Send + 'static,
{
    fn handle(&mut self, notification: RawNotification) -> NotifyOutcome {
        self(notification)
    }
}

/// The handler thread: runs the handler on each queued notification that
/// is still subscribed to.
pub(super) fn run_handler(
    mut handler: Box<dyn NotifyHandler>,
    queue: &Receiver<RawNotification>,
    shared: &Shared,
    commands: &Sender<Command>,
    bell: &Doorbell,
) {
    let command = |c: Command| {
        if commands.send(c).is_ok() {
            bell.ring();
        }
    };
    for notification in queue.iter() {
        if shared.stopping.load(Ordering::Acquire) {
            break;
        }
        if !shared.subscriptions().matches(&notification.topic) {
            shared.filtered.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let topic = notification.topic.clone();
        let span = tracing::debug_span!("notification", %topic);
        let _entered = span.enter();
        let outcome = catch_unwind(AssertUnwindSafe(|| handler.handle(notification)));
        shared.handled.fetch_add(1, Ordering::Relaxed);
        match outcome {
            Ok(NotifyOutcome::Continue) => {}
            Ok(NotifyOutcome::Unsubscribe) => {
                debug!("handler unsubscribed its topic");
                shared.subscriptions().remove_matching(&topic);
                command(Command::Sync(None));
            }
            Ok(NotifyOutcome::Stop) => {
                info!("handler asked to stop the subscriber");
                shared.stopping.store(true, Ordering::Release);
                command(Command::Stop);
                break;
            }
            Err(panic) => {
                shared.handler_panics.fetch_add(1, Ordering::Relaxed);
                let text = crate::role::panic_message(&*panic);
                warn!(panic = %text, "notification handler panicked");
            }
        }
    }
}
