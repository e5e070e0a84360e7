//! Typed notifications: publish a [`Notification`] value, and route
//! received notifications to typed handlers by topic.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::{debug, warn};

use lhcluster_types::{Notification, PayloadError};

use super::{
    NotifyHandler, NotifyOutcome, NotifyPublisher, NotifySubscriber, NotifySubscriberConfig,
    PublishError,
};
use crate::error::{ConfigError, Error};
use crate::payload;
use crate::protocol::RawNotification;

/// Why [`NotifyPublisher::publish_typed`] did not take a notification.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TypedPublishError {
    /// The notification could not be encoded; nothing was published.
    #[error("cannot encode the notification: {0}")]
    Encode(#[source] PayloadError),
    /// The publisher refused it (see [`PublishError`]).
    #[error(transparent)]
    Publish(#[from] PublishError),
}

impl NotifyPublisher {
    /// Publishes a typed notification on its topic
    /// ([`Notification::TOPIC`]), as one MessagePack payload frame. Never
    /// blocks, like [`publish`](Self::publish).
    pub fn publish_typed<N: Notification>(
        &self,
        notification: &N,
    ) -> Result<(), TypedPublishError> {
        let payload = payload::encode(notification).map_err(TypedPublishError::Encode)?;
        Ok(self.publish(N::TOPIC, payload)?)
    }

    /// Like [`publish_typed`](Self::publish_typed), with a publisher-chosen
    /// id (see [`publish_with_id`](Self::publish_with_id)).
    pub fn publish_typed_with_id<N: Notification>(
        &self,
        notification: &N,
        notify_id: u64,
    ) -> Result<(), TypedPublishError> {
        let payload = payload::encode(notification).map_err(TypedPublishError::Encode)?;
        Ok(self.publish_with_id(N::TOPIC, notify_id, payload)?)
    }
}

/// A [`NotifyRouter`] with one typed handler: `on::<N>(handler)` is
/// `NotifyRouter::new().on::<N>(handler)`.
pub fn on<N: Notification + 'static>(
    handler: impl FnMut(N) -> NotifyOutcome + Send + 'static,
) -> NotifyRouter {
    NotifyRouter::new().on::<N>(handler)
}

/// Decodes a notification and runs its typed handler.
type Route = Box<dyn FnMut(&RawNotification) -> Result<NotifyOutcome, PayloadError> + Send>;
type ErrorHandler = Box<dyn FnMut(&RawNotification, &PayloadError) -> NotifyOutcome + Send>;

/// Typed notification handlers by topic, and the subscriber that runs
/// them: `NotifyRouter::new().on::<A>(..).on::<B>(..).connect(config)`.
///
/// [`connect`](Self::connect) subscribes to the topic of every type given
/// to [`on`](Self::on) (besides the topics and prefixes in the config) and
/// starts a [`NotifySubscriber`] whose handler decodes each notification
/// into its topic's type and calls that type's handler, one notification at
/// a time, in the order received.
///
/// ```
/// use std::time::Duration;
/// use lhcluster::notify::*;
/// use lhcluster::typed::NotifyRouter;
///
/// #[derive(serde::Serialize, serde::Deserialize, lhcluster::Notification)]
/// #[notification(name = "prices.changed")]
/// struct PriceChanged {
///     sku: String,
///     cents: u64,
/// }
///
/// let broker = NotifyBroker::start(NotifyBrokerConfig::new(
///     "inproc://router-doc-front",
///     "inproc://router-doc-back",
/// ))?;
/// let (tx, rx) = std::sync::mpsc::channel();
/// let subscriber = NotifyRouter::new()
///     .on::<PriceChanged>(move |n| {
///         let _ = tx.send(n.cents);
///         NotifyOutcome::Continue
///     })
///     .connect(NotifySubscriberConfig::new(broker.frontend()))?;
/// let publisher = NotifyPublisher::connect(NotifyPublisherConfig::new(broker.backend()))?;
/// publisher.publish_typed(&PriceChanged { sku: "tea".into(), cents: 350 })?;
/// assert_eq!(rx.recv_timeout(Duration::from_secs(5))?, 350);
/// # subscriber.stop()?; publisher.stop()?; broker.stop()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// A notification that does not decode as its topic's type is counted in
/// the subscriber's stats
/// ([`decode_errors`](super::NotifySubscriberStats::decode_errors)) and goes
/// to the [`on_decode_error`](Self::on_decode_error) handler (by default:
/// logged at warn, skipped). One whose topic has no typed handler (it came through
/// a prefix subscription, or a raw `subscribe`) goes to the
/// [`fallback`](Self::fallback) handler (by default: skipped).
pub struct NotifyRouter {
    routes: HashMap<&'static str, Route>,
    /// Topics given to `on` twice (an error at `connect`).
    duplicates: Vec<&'static str>,
    on_decode_error: ErrorHandler,
    fallback: Option<Box<dyn NotifyHandler>>,
}

impl fmt::Debug for NotifyRouter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NotifyRouter")
            .field("topics", &self.topics())
            .field("fallback", &self.fallback.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for NotifyRouter {
    fn default() -> Self {
        Self::new()
    }
}

impl NotifyRouter {
    /// A router with no handlers.
    pub fn new() -> Self {
        NotifyRouter {
            routes: HashMap::new(),
            duplicates: Vec::new(),
            on_decode_error: Box::new(|n: &RawNotification, e: &PayloadError| {
                warn!(topic = %n.topic, error = %e, "notification does not decode: skipped");
                NotifyOutcome::Continue
            }),
            fallback: None,
        }
    }

    /// Handles notifications of type `N` (topic [`N::TOPIC`](Notification::TOPIC))
    /// with `handler`. One handler per topic: a second one for the same
    /// topic makes [`connect`](Self::connect) fail.
    pub fn on<N: Notification + 'static>(
        mut self,
        mut handler: impl FnMut(N) -> NotifyOutcome + Send + 'static,
    ) -> Self {
        let route: Route = Box::new(move |raw: &RawNotification| {
            payload::decode::<N>(&raw.payload).map(&mut handler)
        });
        if self.routes.insert(N::TOPIC, route).is_some() {
            self.duplicates.push(N::TOPIC);
        }
        self
    }

    /// What to do with a notification that does not decode as its topic's
    /// type (a publisher with an incompatible version of it). The default
    /// logs it at warn and carries on.
    pub fn on_decode_error(
        mut self,
        handler: impl FnMut(&RawNotification, &PayloadError) -> NotifyOutcome + Send + 'static,
    ) -> Self {
        self.on_decode_error = Box::new(handler);
        self
    }

    /// Handles notifications whose topic has no typed handler (received
    /// through a prefix subscription, or a topic subscribed to by name).
    /// The default skips them.
    pub fn fallback(mut self, handler: impl NotifyHandler) -> Self {
        self.fallback = Some(Box::new(handler));
        self
    }

    /// The topics with a typed handler, sorted.
    pub fn topics(&self) -> Vec<&'static str> {
        let mut topics: Vec<_> = self.routes.keys().copied().collect();
        topics.sort_unstable();
        topics
    }

    /// Subscribes to every routed topic (besides those in `config`) and
    /// starts the subscriber, as [`NotifySubscriber::connect`] does. Fails
    /// with a [`ConfigError`] if two handlers were given for one topic.
    pub fn connect(self, mut config: NotifySubscriberConfig) -> Result<NotifySubscriber, Error> {
        if let Some(topic) = self.duplicates.first() {
            return Err(ConfigError::invalid(
                "handlers",
                format!("two handlers for notification topic {topic:?}"),
            )
            .into());
        }
        for topic in self.topics() {
            if !config.topics.iter().any(|t| t == topic) {
                config.topics.push(topic.to_owned());
            }
        }
        let decode_errors = Arc::new(AtomicU64::new(0));
        let dispatch = Dispatch {
            router: self,
            decode_errors: decode_errors.clone(),
        };
        NotifySubscriber::connect_counting(config, dispatch, decode_errors)
    }
}

/// The router as the subscriber's handler.
struct Dispatch {
    router: NotifyRouter,
    /// The subscriber's `decode_errors` counter.
    decode_errors: Arc<AtomicU64>,
}

impl NotifyHandler for Dispatch {
    fn handle(&mut self, notification: RawNotification) -> NotifyOutcome {
        let router = &mut self.router;
        let Some(route) = router.routes.get_mut(notification.topic.as_str()) else {
            return match &mut router.fallback {
                Some(fallback) => fallback.handle(notification),
                None => {
                    debug!(topic = %notification.topic, "no typed handler for this topic: skipped");
                    NotifyOutcome::Continue
                }
            };
        };
        match route(&notification) {
            Ok(outcome) => outcome,
            Err(e) => {
                self.decode_errors.fetch_add(1, Ordering::Relaxed);
                (router.on_decode_error)(&notification, &e)
            }
        }
    }
}
