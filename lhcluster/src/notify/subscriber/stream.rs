//! Typed notifications as a [`Stream`] (feature `stream`): while a
//! [`NotifyStream<N>`] exists, the driver thread hands the notifications on
//! `N::TOPIC` to it instead of to the handler thread.
//!
//! The waking is the response handles' (`client/response.rs`): a buffer
//! behind a mutex, with the waker of the last poll that found it empty,
//! woken by the driver thread after a push. No thread blocks, no runtime is
//! needed: any executor polls it.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use futures_core::Stream;
use lhcluster_types::{Notification, PayloadError};

use super::{Command, NotifySubscriber, Shared};
use crate::error::Error;
use crate::payload;
use crate::protocol::RawNotification;

/// The streams of one subscriber, by topic.
#[derive(Debug, Default)]
pub(super) struct Streams {
    /// Whether any stream exists: the driver's check per notification,
    /// without the lock, for the subscribers that have none.
    any: AtomicBool,
    by_topic: Mutex<HashMap<String, Topic>>,
}

#[derive(Debug)]
struct Topic {
    /// The streams' exact subscription was added by the first of them (it
    /// was not subscribed already): the last one removes it.
    owned: bool,
    streams: Vec<Arc<Buffer>>,
}

impl Streams {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Topic>> {
        self.by_topic.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Gives `notification` to the streams of its topic; hands it back when
    /// there are none (it is the handler's). `capacity`: of each stream's
    /// buffer; a full one drops it (`Some(topic)`).
    pub(super) fn offer(
        &self,
        notification: RawNotification,
        capacity: usize,
    ) -> Result<Option<String>, RawNotification> {
        if !self.any.load(Ordering::Acquire) {
            return Err(notification);
        }
        let by_topic = self.lock();
        let Some((name, topic)) = by_topic.get_key_value(notification.topic.as_str()) else {
            return Err(notification);
        };
        let mut dropped = false;
        if let [rest @ .., last] = topic.streams.as_slice() {
            for buffer in rest {
                dropped |= !buffer.push(clone(&notification), capacity);
            }
            dropped |= !last.push(notification, capacity);
        }
        Ok(dropped.then(|| name.clone()))
    }

    /// Ends every stream (the subscriber stopped).
    pub(super) fn close_all(&self) {
        for topic in self.lock().values() {
            for buffer in &topic.streams {
                buffer.close();
            }
        }
    }
}

fn clone(n: &RawNotification) -> RawNotification {
    RawNotification {
        topic: n.topic.clone(),
        notify_id: n.notify_id,
        payload: n
            .payload
            .iter()
            .map(|f| zmq::Message::from(&f[..]))
            .collect(),
    }
}

/// One stream's notifications not yet polled.
#[derive(Debug, Default)]
struct Buffer {
    state: Mutex<BufferState>,
}

#[derive(Debug, Default)]
struct BufferState {
    queue: VecDeque<RawNotification>,
    waker: Option<Waker>,
    closed: bool,
}

impl Buffer {
    fn lock(&self) -> MutexGuard<'_, BufferState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `n` and wakes the poller; `false` if full (dropped).
    fn push(&self, n: RawNotification, capacity: usize) -> bool {
        let mut s = self.lock();
        if s.queue.len() >= capacity {
            return false;
        }
        s.queue.push_back(n);
        let waker = s.waker.take();
        drop(s);
        if let Some(w) = waker {
            w.wake();
        }
        true
    }

    fn close(&self) {
        let mut s = self.lock();
        s.closed = true;
        let waker = s.waker.take();
        drop(s);
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// The notifications of type `N` a [`NotifySubscriber`] receives, as a
/// [`Stream`] of `Result<N, PayloadError>` (an `Err` for a notification
/// that does not decode as `N`); made by
/// [`NotifySubscriber::stream`].
///
/// Polling never blocks and needs no particular runtime. Await items with
/// [`next`](Self::next) (or any `StreamExt`). The stream ends (`None`)
/// when the subscriber stops; it keeps its subscriber running meanwhile
/// (it holds a clone). Up to the subscriber's
/// [`queue_capacity`](crate::NotifySubscriberConfig::queue_capacity)
/// notifications wait for a poll; more are dropped and counted in
/// `dropped_queue_full`, as for a handler.
///
/// Dropping the last stream of a topic removes the topic's exact
/// subscription if the first stream added it.
pub struct NotifyStream<N> {
    subscriber: NotifySubscriber,
    buffer: Arc<Buffer>,
    _notification: PhantomData<fn() -> N>,
}

impl<N: Notification> fmt::Debug for NotifyStream<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NotifyStream")
            .field("topic", &N::TOPIC)
            .field("queued", &self.buffer.lock().queue.len())
            .finish_non_exhaustive()
    }
}

impl<N: Notification> NotifyStream<N> {
    /// The next notification, `None` once the subscriber has stopped.
    pub async fn next(&mut self) -> Option<Result<N, PayloadError>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// The subscriber the stream comes from.
    pub fn subscriber(&self) -> &NotifySubscriber {
        &self.subscriber
    }
}

impl<N: Notification> Stream for NotifyStream<N> {
    type Item = Result<N, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut s = self.buffer.lock();
        if let Some(n) = s.queue.pop_front() {
            drop(s);
            self.subscriber
                .inner
                .shared
                .handled
                .fetch_add(1, Ordering::Relaxed);
            let decoded = payload::decode(&n.payload);
            if decoded.is_err() {
                self.subscriber
                    .inner
                    .shared
                    .decode_errors
                    .fetch_add(1, Ordering::Relaxed);
            }
            return Poll::Ready(Some(decoded));
        }
        if s.closed {
            return Poll::Ready(None);
        }
        s.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl<N> Drop for NotifyStream<N> {
    fn drop(&mut self) {
        let shared: &Shared = &self.subscriber.inner.shared;
        let mut by_topic = shared.streams.lock();
        let Some((name, topic)) = by_topic
            .iter_mut()
            .find(|(_, t)| t.streams.iter().any(|b| Arc::ptr_eq(b, &self.buffer)))
        else {
            return;
        };
        topic.streams.retain(|b| !Arc::ptr_eq(b, &self.buffer));
        if !topic.streams.is_empty() {
            return;
        }
        let (name, owned) = (name.clone(), topic.owned);
        by_topic.remove(&name);
        shared
            .streams
            .any
            .store(!by_topic.is_empty(), Ordering::Release);
        drop(by_topic);
        if owned {
            shared.subscriptions().exact.remove(&name);
            // Not waited for: a drop must not block.
            let _ = self.subscriber.send(Command::Sync(None));
        }
    }
}

impl NotifySubscriber {
    /// The notifications of type `N` (topic
    /// [`N::TOPIC`](Notification::TOPIC)) as a [`NotifyStream`] (feature
    /// `stream`): subscribes to the topic, and from then on its
    /// notifications go to the stream (to each, if several) instead of the
    /// handler.
    ///
    /// Like [`subscribe`](Self::subscribe), it returns once the
    /// subscription is in force upstream, so a notification published
    /// after that is delivered: a round trip to the broker, up to the
    /// [`confirm_timeout`](crate::NotifySubscriberConfig::confirm_timeout)
    /// when it is unreachable ([`Error::Connect`]). Call it before the loop
    /// that awaits the stream.
    ///
    /// ```
    /// use std::time::Duration;
    /// use lhcluster::notify::*;
    ///
    /// #[derive(serde::Serialize, serde::Deserialize, lhcluster::Notification)]
    /// #[notification(name = "orders.shipped")]
    /// struct Shipped {
    ///     order_no: u64,
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let broker = NotifyBroker::start(NotifyBrokerConfig::new(
    ///     "inproc://stream-doc-front",
    ///     "inproc://stream-doc-back",
    /// ))?;
    /// let subscriber = NotifySubscriber::connect_streams(NotifySubscriberConfig::new(broker.frontend()))?;
    /// let mut shipped = subscriber.stream::<Shipped>()?;
    /// let publisher = NotifyPublisher::connect(NotifyPublisherConfig::new(broker.backend()))?;
    /// publisher.publish_typed(&Shipped { order_no: 7 })?;
    /// let n = shipped.next().await.expect("a notification")?;
    /// assert_eq!(n.order_no, 7);
    /// # subscriber.stop()?; publisher.stop()?; broker.stop()?;
    /// # Ok(()) }
    /// ```
    pub fn stream<N: Notification>(&self) -> Result<NotifyStream<N>, Error> {
        crate::notify::validate_topic(N::TOPIC)?;
        self.check_running()?;
        let shared = &self.inner.shared;
        let buffer = Arc::new(Buffer::default());
        {
            // Routed before the subscription is confirmed: whatever arrives
            // after the confirmation finds the stream.
            let already = shared.subscriptions().exact.contains(N::TOPIC);
            let mut by_topic = shared.streams.lock();
            let topic = by_topic.entry(N::TOPIC.to_owned()).or_insert(Topic {
                owned: !already,
                streams: Vec::new(),
            });
            topic.streams.push(buffer.clone());
            shared.streams.any.store(true, Ordering::Release);
        }
        let stream = NotifyStream {
            subscriber: self.clone(),
            buffer,
            _notification: PhantomData,
        };
        // On an error the stream is dropped, which undoes the routing.
        self.subscribe(N::TOPIC)?;
        if self.is_stopped() {
            // Stopped meanwhile: the driver closed the streams it had.
            stream.buffer.close();
        }
        Ok(stream)
    }

    /// Connects a subscriber for [`stream`](Self::stream)s only: what
    /// reaches no stream (a topic or prefix of the config) is skipped.
    pub fn connect_streams(
        config: crate::NotifySubscriberConfig,
    ) -> Result<NotifySubscriber, Error> {
        NotifySubscriber::connect(config, |n: RawNotification| {
            tracing::debug!(topic = %n.topic, "no stream for this topic: skipped");
            crate::NotifyOutcome::Continue
        })
    }
}
