//! The handle ↔ driver plumbing every role shares: a command channel, a
//! doorbell to wake the driver, and the driver thread to join on stop.
//!
//! A driver that panics (a bug) stops its role rather than its process: the
//! panic is caught and logged here, and by then unwinding has dropped the
//! driver's state, which resolves whatever callers wait on (a client's
//! outstanding requests end with `RequestError::Internal`, a stats request
//! or a command with `Error::Stopped`).

use std::sync::atomic::{AtomicBool, Ordering, fence};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, bounded};
use tracing::error;

use crate::error::Error;
use crate::wake::{self, Doorbell, Listener};

/// Capacity of a role's command channel: senders block (back-pressure) when
/// the driver falls this far behind.
pub(crate) const COMMAND_CAPACITY: usize = 65_536;

/// The handle side of a role.
#[derive(Debug)]
pub(crate) struct RoleHandle<C: Send + 'static> {
    commands: Sender<C>,
    /// The channel's other end, kept so that a command sent as the driver
    /// ends is dropped here rather than left queued (see [`Self::send`]).
    queued: Receiver<C>,
    /// Set when the driver has returned (or unwound), before its thread
    /// drops what is still queued.
    ended: Arc<AtomicBool>,
    bell: Arc<Doorbell>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Disconnected when the driver thread ends.
    finished: Receiver<()>,
    stop_command: fn() -> C,
    shutdown_timeout: Duration,
}

/// The driver side of a role.
#[derive(Debug)]
pub(crate) struct DriverInbox<C> {
    pub(crate) commands: Receiver<C>,
    pub(crate) listener: Listener,
    /// The role's doorbell, which names it for [`RoleHandle::inject_panic`].
    #[cfg(test)]
    bell: Arc<Doorbell>,
}

impl<C> DriverInbox<C> {
    /// The commands waiting, drained on every pass of a driver (an empty
    /// channel costs an atomic load; the doorbell only cuts its wait
    /// short). `rung`: the doorbell woke the driver, and is re-armed first.
    pub(crate) fn pending(&self, rung: bool) -> crossbeam_channel::TryIter<'_, C> {
        if rung {
            self.listener.reset();
        }
        #[cfg(test)]
        injected::take(&self.bell);
        self.commands.try_iter()
    }
}

impl<C> Drop for DriverInbox<C> {
    /// Drops the commands still queued when the driver ends (by a stop, or
    /// unwinding from a panic, when a client's request slot resolves with
    /// `Internal`). The channel would keep them until the last handle goes,
    /// and with them what they carry: a request's response slot (its drop
    /// resolves the handle) or the reply channel of a stats request (its
    /// drop answers `Stopped`). A command sent after this drain is dropped
    /// by the driver thread or by its sender (see [`RoleHandle::send`]).
    fn drop(&mut self) {
        drain(&self.commands);
    }
}

/// A panic on demand inside a running driver, for the tests of what callers
/// see when a driver panics: the handle names its driver by their shared
/// doorbell, and the driver panics at its next look at its commands.
#[cfg(test)]
mod injected {
    use std::sync::{Arc, Mutex};

    use crate::wake::Doorbell;

    /// Doorbells (by address) whose drivers are to panic. A doorbell lives
    /// as long as its driver's inbox, so an address is not reused meanwhile.
    static DOOMED: Mutex<Vec<usize>> = Mutex::new(Vec::new());

    fn key(bell: &Arc<Doorbell>) -> usize {
        Arc::as_ptr(bell) as usize
    }

    pub(super) fn request(bell: &Arc<Doorbell>) {
        DOOMED
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(key(bell));
        bell.ring();
    }

    pub(super) fn take(bell: &Arc<Doorbell>) {
        let mut doomed = DOOMED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = doomed.iter().position(|&k| k == key(bell)) {
            doomed.swap_remove(i);
            drop(doomed);
            panic!("a panic injected by a test");
        }
    }
}

/// Gives a role's public handle an `inject_panic` for the tests: it makes
/// the driver thread panic, as a bug would, and waits for it to end (see
/// [`RoleHandle::inject_panic`]). `inject_panic!(Type, path.to.role)`, the
/// path from the handle to its `RoleHandle`.
#[cfg(test)]
macro_rules! inject_panic {
    ($handle:ty, $($role:ident).+) => {
        impl $handle {
            /// Makes the driver thread panic and waits for it to end.
            pub(crate) fn inject_panic(&self) {
                self.$($role).+.inject_panic();
            }
        }
    };
}
#[cfg(test)]
pub(crate) use inject_panic;

/// The handle's ends of a new role's plumbing, plus the driver's end.
pub(crate) type Plumbing<C> = (Commands<C>, Arc<Doorbell>, DriverInbox<C>);

/// The handle's end of a role's command channel, for [`RoleHandle::spawn`].
#[derive(Debug)]
pub(crate) struct Commands<C> {
    sender: Sender<C>,
    receiver: Receiver<C>,
}

impl<C> Commands<C> {
    /// A sender of commands for another thread of the role (it bypasses
    /// the handle: what it sends once the driver has ended stays queued).
    pub(crate) fn sender(&self) -> Sender<C> {
        self.sender.clone()
    }
}

/// Drops every command queued (what each carries resolves its waiter).
fn drain<C>(commands: &Receiver<C>) {
    for command in commands.try_iter() {
        drop(command);
    }
}

pub(crate) fn channel<C: Send + 'static>() -> Result<Plumbing<C>, Error> {
    let (tx, rx) = bounded(COMMAND_CAPACITY);
    let (bell, listener) = wake::pair().map_err(Error::Spawn)?;
    Ok((
        Commands {
            sender: tx,
            receiver: rx.clone(),
        },
        bell.clone(),
        DriverInbox {
            commands: rx,
            listener,
            #[cfg(test)]
            bell,
        },
    ))
}

impl<C: Send + 'static> RoleHandle<C> {
    /// Spawns the driver thread running `run`. Should `run` panic, the
    /// panic is logged (error level, with the role's name) and the role
    /// ends as if stopped: everything `run` owned has been dropped by then,
    /// so commands answer `Stopped` and nothing waits on it forever.
    pub(crate) fn spawn(
        name: &str,
        commands: Commands<C>,
        bell: Arc<Doorbell>,
        stop_command: fn() -> C,
        shutdown_timeout: Duration,
        run: impl FnOnce() + Send + 'static,
    ) -> Result<Self, Error> {
        let (finished_tx, finished) = bounded::<()>(0);
        let ended = Arc::new(AtomicBool::new(false));
        let (driver_ended, queued) = (ended.clone(), commands.receiver.clone());
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let _finished = finished_tx;
                // Unwind safety: a panic drops everything `run` owned, and
                // the caller's side only shares state behind poison-tolerant
                // locks and channels, each left whole by the drops.
                if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
                    error!(
                        role = %std::thread::current().name().unwrap_or("driver"),
                        panic = panic_message(&*panic),
                        "the driver thread panicked (a bug): the role has stopped"
                    );
                }
                // The driver dropped what was queued as it ended; a command
                // sent since is dropped now, or by its sender if it comes
                // after this drain (`send` looks at `ended` after sending:
                // the fences order the flag and the queue between the two
                // threads, so one of them sees the command).
                driver_ended.store(true, Ordering::SeqCst);
                fence(Ordering::SeqCst);
                drain(&queued);
            })
            .map_err(Error::Spawn)?;
        Ok(Self {
            commands: commands.sender,
            queued: commands.receiver,
            ended,
            bell,
            thread: Mutex::new(Some(thread)),
            finished,
            stop_command,
            shutdown_timeout,
        })
    }

    /// Sends a command to the driver; gives it back if the driver is gone.
    /// A command that meets the driver's end on its way is dropped (which
    /// resolves its waiter: a request's slot with `Stopped`, a reply
    /// channel with `Error::Stopped`), never left queued.
    pub(crate) fn send(&self, command: C) -> Result<(), C> {
        if self.ended.load(Ordering::SeqCst) {
            return Err(command);
        }
        self.commands.send(command).map_err(|e| e.into_inner())?;
        self.bell.ring();
        // The driver ended meanwhile, and its thread may have drained the
        // channel before this command was in it (see `spawn`).
        fence(Ordering::SeqCst);
        if self.ended.load(Ordering::SeqCst) {
            drain(&self.queued);
        }
        Ok(())
    }

    /// Whether commands wait in the channel for the driver.
    pub(crate) fn has_queued(&self) -> bool {
        !self.commands.is_empty()
    }

    /// Sends a command carrying a reply channel and waits for the answer.
    pub(crate) fn request<R>(&self, make: impl FnOnce(Sender<R>) -> C) -> Result<R, Error> {
        let (tx, rx) = bounded(1);
        self.send(make(tx)).map_err(|_| Error::Stopped)?;
        rx.recv().map_err(|_| Error::Stopped)
    }

    /// Makes the driver panic at its next look at its commands, and waits
    /// for its thread to end.
    #[cfg(test)]
    pub(crate) fn inject_panic(&self) {
        injected::request(&self.bell);
        let _ = self.finished.recv();
    }

    /// Asks the driver to stop and joins it (bounded by the shutdown timeout).
    pub(crate) fn stop(&self, command: C) -> Result<(), Error> {
        let _ = self.send(command);
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = thread {
            match self.finished.recv_timeout(self.shutdown_timeout) {
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    tracing::error!("driver thread did not stop within the shutdown timeout");
                }
                _ => {
                    let _ = thread.join();
                }
            }
        }
        Ok(())
    }
}

/// A yes/no state that a driver sets and handles read or wait for: a
/// client's session, a publisher's broker, a subscriber's end.
///
/// A flag that tells whether the driver *has* something (a session, a
/// broker) is also [ended](Self::end) when the driver ends, however it
/// ends (see [`WaitFlag::end_on_drop`]): from then on it reads `false` and
/// waiters return `false` at once, rather than waiting for a change no
/// driver is left to make.
#[derive(Debug, Default)]
pub(crate) struct WaitFlag {
    state: Mutex<FlagState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct FlagState {
    value: bool,
    /// The driver that sets it has ended: nothing will change it again.
    ended: bool,
}

impl FlagState {
    fn get(&self) -> bool {
        self.value && !self.ended
    }
}

impl WaitFlag {
    fn state(&self) -> std::sync::MutexGuard<'_, FlagState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether it is set (never, once ended).
    pub(crate) fn get(&self) -> bool {
        self.state().get()
    }

    /// Sets it, waking the waiters if it changed.
    pub(crate) fn set(&self, value: bool) {
        let mut state = self.state();
        if state.value != value {
            state.value = value;
            self.changed.notify_all();
        }
    }

    /// Marks it ended: it reads `false` from now on, and every waiter
    /// returns `false`.
    pub(crate) fn end(&self) {
        let mut state = self.state();
        if !state.ended {
            state.ended = true;
            self.changed.notify_all();
        }
    }

    /// A guard that [ends](Self::end) it when dropped: held by the driver
    /// thread's closure, so that the flag ends however the driver does (a
    /// stop, or the unwinding of a panic).
    pub(crate) fn end_on_drop(self: &Arc<Self>) -> EndOnDrop {
        EndOnDrop(self.clone())
    }

    /// Waits for it to be set, up to `timeout` (measured, not added to the
    /// clock: `Duration::MAX` waits as long as it takes); whether it is.
    /// Returns `false` at once when it has ended.
    pub(crate) fn wait(&self, timeout: Duration) -> bool {
        let state = self.state();
        let (state, _) = self
            .changed
            .wait_timeout_while(state, timeout, |s| !s.value && !s.ended)
            .unwrap_or_else(|p| p.into_inner());
        state.get()
    }
}

/// Ends a [`WaitFlag`] when dropped (see [`WaitFlag::end_on_drop`]).
#[derive(Debug)]
#[must_use = "the flag ends when the guard is dropped"]
pub(crate) struct EndOnDrop(Arc<WaitFlag>);

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// The text a panic was raised with, if it was text.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("non-string panic payload")
}

impl<C: Send + 'static> Drop for RoleHandle<C> {
    fn drop(&mut self) {
        let _ = self.stop((self.stop_command)());
    }
}

/// The commands of a broker's driver, the request broker's and the notify
/// broker's: its stats; new CURVE key lists for the sockets it binds, the
/// frontend and the backend (`None`: keep that side's), answered when in
/// force; stop.
#[derive(Debug)]
pub(crate) enum BrokerCommand<Stats> {
    Stats(Sender<Stats>),
    ReloadKeys {
        frontend: Option<crate::curve::KeyList>,
        backend: Option<crate::curve::KeyList>,
        done: Sender<Result<(), Error>>,
    },
    Stop,
}

/// What callers see when a driver panics, for every role: handles and
/// waiters resolve, commands answer `Stopped`, `stop` returns. Each test
/// makes its role's driver panic with [`RoleHandle::inject_panic`].
#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use crate::client::{Client, ClientConfig, RequestError};
    use crate::notify::{
        NotifyBroker, NotifyBrokerConfig, NotifyOutcome, NotifyPublisher, NotifyPublisherConfig,
        NotifySubscriber, NotifySubscriberConfig, PublishError,
    };
    use crate::{
        Broker, BrokerConfig, ClientProxy, ClientProxyConfig, Error, Worker, WorkerConfig,
    };

    fn inproc(name: &str) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        format!("inproc://role-panic-{name}-{n}")
    }

    fn broker() -> Broker {
        Broker::start(BrokerConfig::new(inproc("front"), inproc("back"))).unwrap()
    }

    fn client(endpoint: &str) -> Client {
        let client = Client::connect(ClientConfig::new(endpoint)).unwrap();
        assert!(client.wait_connected(Duration::from_secs(10)));
        client
    }

    /// After the panic the role is as good as stopped.
    fn stopped<T: std::fmt::Debug>(stats: Result<T, Error>, stop: Result<(), Error>) {
        assert!(matches!(stats, Err(Error::Stopped)), "{stats:?}");
        assert!(stop.is_ok(), "stop returns: {stop:?}");
    }

    /// Makes the driver of `role` (a started role's handle) panic, then
    /// checks that the role is as good as [`stopped`].
    macro_rules! panics_into_stopped {
        ($role:expr) => {{
            let role = &$role;
            role.inject_panic();
            stopped(role.stats(), role.stop());
        }};
    }

    #[test]
    fn client_handles_resolve_with_internal() {
        let broker = broker();
        let client = client(broker.frontend());
        // No worker serves type 9: the requests wait at the broker.
        let handles: Vec<_> = (0..3u64)
            .map(|i| client.request(9).id(i).send().unwrap())
            .collect();
        let mut receipt = client
            .request(9)
            .id(3)
            .flags(crate::Flags::RECEIPT_ON_RECEIVE)
            .send()
            .unwrap();
        client.inject_panic();
        for handle in handles {
            assert_eq!(handle.wait(), Err(RequestError::Internal));
        }
        assert_eq!(receipt.try_take(), Some(Err(RequestError::Internal)));
        assert!(matches!(client.request(9).send(), Err(Error::Stopped)));
        stopped(client.stats(), client.stop());
    }

    /// A caller sends on the client's socket itself (client/driver.rs): a
    /// panic there (a bug) leaves the state machine half changed, and the
    /// client stops as if its driver had panicked.
    #[test]
    fn a_panic_while_a_caller_sends_stops_the_client() {
        let broker = broker();
        let client = client(broker.frontend());
        let handles: Vec<_> = (0..3u64)
            .map(|i| client.request(9).id(i).send().unwrap())
            .collect();
        client.inject_submit_panic();
        let sender = client.clone();
        let sent = std::thread::spawn(move || sender.request(9).id(3).send().map(drop));
        // The injected panic, on this sender's thread (or the driver's, if
        // the request went through the channel: the same end).
        let _ = sent.join();
        for handle in handles {
            let outcome = handle.wait_timeout(Duration::from_secs(10));
            assert_eq!(outcome, Err(RequestError::Internal));
        }
        let ended = || matches!(client.request(9).send(), Err(Error::Stopped));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !ended() {
            assert!(std::time::Instant::now() < deadline, "the client goes on");
            std::thread::sleep(Duration::from_millis(5));
        }
        stopped(client.stats(), client.stop());
    }

    /// A command sent after the driver dropped its inbox, while its thread
    /// is still ending, is dropped (resolving its waiter) though the handle
    /// lives on; once the driver has ended, a command is given back.
    #[test]
    fn a_command_sent_as_the_driver_ends_is_dropped_not_left_queued() {
        #[derive(Debug)]
        enum Command {
            Reply(#[allow(dead_code)] crossbeam_channel::Sender<()>),
            Stop,
        }
        let (commands, bell, inbox) = super::channel::<Command>().unwrap();
        let (inbox_gone_tx, inbox_gone) = crossbeam_channel::bounded(0);
        let (go_on_tx, go_on) = crossbeam_channel::bounded::<()>(0);
        let role = super::RoleHandle::spawn(
            "lhcluster-test-role",
            commands,
            bell,
            || Command::Stop,
            Duration::from_secs(10),
            move || {
                drop(inbox);
                inbox_gone_tx.send(()).unwrap();
                // Still ending when the command comes.
                let _ = go_on.recv();
            },
        )
        .unwrap();
        inbox_gone.recv().unwrap();
        let (reply_tx, reply) = crossbeam_channel::bounded(1);
        assert!(role.send(Command::Reply(reply_tx)).is_ok());
        drop(go_on_tx);
        assert_eq!(
            reply.recv_timeout(Duration::from_secs(10)),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected),
            "dropped by the ending driver thread, not kept by the handle"
        );
        assert!(role.send(Command::Stop).is_err());
    }

    /// Both brokers, the request one and the notify one.
    #[test]
    fn brokers_answer_stopped() {
        panics_into_stopped!(broker());
        panics_into_stopped!(notify_broker());
    }

    #[test]
    fn worker_answers_stopped() {
        let broker = broker();
        let worker = Worker::builder(WorkerConfig::new(broker.backend()))
            .handle_raw(1, |payload, _: &crate::worker::RequestContext| Ok(payload))
            .start()
            .unwrap();
        panics_into_stopped!(worker);
        assert!(worker.abort().is_ok());
    }

    #[test]
    fn client_proxy_answers_stopped() {
        let broker = broker();
        let proxy =
            ClientProxy::start(ClientProxyConfig::new(inproc("proxy"), broker.frontend())).unwrap();
        panics_into_stopped!(proxy);
    }

    /// `wait` (a `wait_connected(Duration::MAX)`) answers `false`, within
    /// seconds rather than never.
    fn waits_end_false(wait: impl FnOnce() -> bool + Send + 'static) {
        let (tx, rx) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            let _ = tx.send(wait());
        });
        let answer = rx.recv_timeout(Duration::from_secs(10));
        assert_eq!(answer, Ok(false), "the waiter resolves, with `false`");
    }

    /// A client of an endpoint no one binds: it never has a session.
    fn lonely_client() -> Client {
        Client::connect(ClientConfig::new(inproc("nobody"))).unwrap()
    }

    #[test]
    fn client_wait_connected_is_false_after_stop() {
        let broker = broker();
        for client in [client(broker.frontend()), lonely_client()] {
            client.stop().unwrap();
            let waiter = client.clone();
            waits_end_false(move || waiter.wait_connected(Duration::MAX));
        }
    }

    #[test]
    fn client_wait_connected_is_false_after_a_panic() {
        let broker = broker();
        for client in [client(broker.frontend()), lonely_client()] {
            let waiter = client.clone();
            let (started_tx, started) = crossbeam_channel::bounded(0);
            let lonely = !client.wait_connected(Duration::ZERO);
            // A waiter already waiting when the driver dies is woken too.
            let waiting = std::thread::spawn(move || {
                started_tx.send(()).unwrap();
                waiter.wait_connected(Duration::MAX)
            });
            started.recv().unwrap();
            client.inject_panic();
            if lonely {
                assert!(!waiting.join().unwrap(), "no session, none to come");
            } else {
                waiting.join().unwrap();
            }
            let waiter = client.clone();
            waits_end_false(move || waiter.wait_connected(Duration::MAX));
        }
    }

    fn notify_broker() -> NotifyBroker {
        NotifyBroker::start(NotifyBrokerConfig::new(inproc("nfront"), inproc("nback"))).unwrap()
    }

    #[test]
    fn publisher_refuses_to_publish() {
        let broker = notify_broker();
        let publisher =
            NotifyPublisher::connect(NotifyPublisherConfig::new(broker.backend())).unwrap();
        publisher.inject_panic();
        let published = publisher.publish("t", Vec::new());
        assert!(
            matches!(published, Err(PublishError::Stopped)),
            "{published:?}"
        );
        assert!(publisher.stats().is_ok(), "counters are shared, not asked");
        assert!(publisher.stop().is_ok());
    }

    /// A publisher of a broker no one binds, which does not wait for it.
    fn lonely_publisher() -> NotifyPublisher {
        let mut config = NotifyPublisherConfig::new(inproc("nobody"));
        config.connect_timeout = None;
        NotifyPublisher::connect(config).unwrap()
    }

    #[test]
    fn publisher_is_not_connected_after_stop_or_a_panic() {
        let broker = notify_broker();
        for panic in [false, true] {
            let connected =
                NotifyPublisher::connect(NotifyPublisherConfig::new(broker.backend())).unwrap();
            assert!(connected.is_connected());
            for publisher in [connected, lonely_publisher()] {
                if panic {
                    publisher.inject_panic();
                } else {
                    publisher.stop().unwrap();
                }
                assert!(!publisher.is_connected());
                assert!(!publisher.stats().unwrap().connected);
                let waiter = publisher.clone();
                waits_end_false(move || waiter.wait_connected(Duration::MAX));
            }
        }
    }

    #[test]
    fn subscriber_is_stopped_and_refuses_changes() {
        let broker = notify_broker();
        let subscriber =
            NotifySubscriber::connect(NotifySubscriberConfig::new(broker.frontend()), |_| {
                NotifyOutcome::Continue
            })
            .unwrap();
        subscriber.inject_panic();
        assert!(
            subscriber.wait_stopped(Duration::MAX),
            "the driver's end is seen"
        );
        assert!(matches!(subscriber.subscribe("t"), Err(Error::Stopped)));
        assert!(subscriber.stop().is_ok());
    }
}
