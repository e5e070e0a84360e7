//! lhcluster under load: a broker (in-process, or external) or an
//! in-process cluster of brokers, optionally a client proxy, W echo workers
//! of capacity C, optional idle workers, and K clients, each driven by one
//! thread.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use lhcluster::client::{Client, ClientConfig, LocalClient, RequestBuilder};
use lhcluster::client_proxy::{ClientProxy, ClientProxyConfig};
use lhcluster::curve::{PublicKey, SecretKey};
use lhcluster::worker::{HandlerError, RequestContext, Worker, WorkerConfig};
use lhcluster::{Broker, BrokerStats, Flags, Frame, Payload, RequestType, ResponseHandle};

use super::cluster::{self, Hops, Keys, Placement};
use super::load::{self, Control, DRAIN_TIMEOUT, LoadSpec, RunResult};
use super::transport::{self, Transport};

/// How the lhcluster side of a run is set up.
#[derive(Clone, Debug)]
pub struct Setup {
    pub transport: Transport,
    /// An external broker's (frontend, backend); `None` starts one here.
    pub external: Option<(String, String)>,
    pub proxy: bool,
    pub workers: usize,
    pub capacity: u32,
    /// Requests each worker takes beyond its capacity.
    pub prefetch: u32,
    /// Handlers on the workers' I/O threads (`WorkerConfig::inline`).
    pub inline: bool,
    /// Each client thread drives a `LocalClient` itself instead of using a
    /// `Client` and its driver thread.
    pub local_client: bool,
    /// Request types each worker registers (1..=types); requests cycle.
    pub types: u32,
    /// Registered workers that serve other types and never get work.
    pub idle_workers: usize,
    pub flags: Flags,
    /// Brokers of the in-process cluster (1: a single broker, no cluster).
    pub brokers: usize,
    /// Where clients and workers connect in a cluster.
    pub placement: Placement,
    /// Clients name their own ids instead of letting the client pick them.
    pub own_ids: bool,
    /// CURVE on every socket: a key pair made for the run, shared by the
    /// brokers (a cluster's members share one) and the proxy; workers and
    /// clients make their own.
    pub curve: bool,
}

impl Setup {
    /// One-way without a receipt: the handle resolves at once, so the
    /// window is enforced by the workers acknowledging arrivals.
    fn gated(&self) -> bool {
        self.flags.contains(Flags::ONE_WAY)
            && !self
                .flags
                .intersects(Flags::RECEIPT_ON_SEND | Flags::RECEIPT_ON_RECEIVE)
    }

    pub fn label(&self) -> String {
        let mut label = "lhcluster".to_owned();
        if self.brokers > 1 {
            label.push_str(&format!("-{}-{}", self.brokers, self.placement.name()));
            if self.own_ids {
                label.push_str("-own-ids");
            }
        }
        if self.proxy {
            label.push_str("+proxy");
        }
        if self.curve {
            label.push_str("+curve");
        }
        label
    }

    /// The run's server key pair, with `--curve`.
    fn server_key(&self) -> anyhow::Result<Option<SecretKey>> {
        Ok(match self.curve {
            true => Some(SecretKey::generate()?),
            false => None,
        })
    }
}

const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// The running roles of one measured interval.
struct Cluster {
    /// The in-process brokers (none with an external broker).
    brokers: Vec<Broker>,
    proxy: Option<ClientProxy>,
    workers: Vec<Worker>,
    idle: Option<IdleWorkers>,
    clients: Vec<Client>,
    /// Where each client connects (the proxy or a broker's frontend).
    client_endpoints: Vec<String>,
    /// The keys each client sends.
    keys: Vec<Keys>,
    endpoints: Vec<String>,
    /// The servers' public key, with `--curve`.
    server_key: Option<PublicKey>,
    /// The brokers' stats before the measured load (after the warm-ups).
    warmed_up: Vec<BrokerStats>,
}

impl Cluster {
    fn start(setup: &Setup, clients: usize, control: &Arc<Control>) -> anyhow::Result<Self> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut endpoints = Vec::new();
        let secret = setup.server_key()?;
        let server_key = secret.as_ref().map(SecretKey::public_key);
        let (brokers, frontends, backends) = match &setup.external {
            Some((front, back)) => (Vec::new(), vec![front.clone()], vec![back.clone()]),
            None => {
                let brokers = cluster::start(setup.transport, setup.brokers, deadline, |c| {
                    c.max_pending_per_type = 1_000_000;
                    c.curve_secret_key.clone_from(&secret);
                })?;
                let frontends: Vec<String> =
                    brokers.iter().map(|b| b.frontend().to_owned()).collect();
                let backends: Vec<String> =
                    brokers.iter().map(|b| b.backend().to_owned()).collect();
                endpoints.extend(frontends.iter().chain(&backends).cloned());
                (brokers, frontends, backends)
            }
        };
        let n = frontends.len();
        let proxy = if setup.proxy {
            let bind = setup.transport.bind_endpoint("proxy");
            let mut config = ClientProxyConfig::new(bind, frontends[0].clone());
            config.curve_secret_key.clone_from(&secret);
            config.curve_server_key = server_key;
            let proxy = ClientProxy::start(config).context("starting the proxy")?;
            endpoints.push(proxy.endpoint().to_owned());
            Some(proxy)
        } else {
            None
        };
        let mut workers = Vec::new();
        let mut capacity = vec![0_u32; n];
        for i in 0..setup.workers {
            let b = setup.placement.worker_broker(i, n);
            let mut config = WorkerConfig::new(backends[b].clone());
            config.capacity = setup.capacity;
            config.prefetch = setup.prefetch;
            // What the brokers see: credits, what runs and what waits.
            capacity[b] += config.credits();
            config.inline = setup.inline;
            config.name = Some(format!("bench-{i}"));
            config.curve_server_key = server_key;
            let mut builder = Worker::builder(config);
            let handler = handler(setup.gated(), control.clone());
            for t in 1..=setup.types {
                builder = builder.handle_raw(t, handler.clone());
            }
            workers.push(builder.start().context("starting a worker")?);
        }
        // Idle workers go where the first worker is.
        let idle_broker = setup.placement.worker_broker(0, n);
        let idle = (setup.idle_workers > 0)
            .then(|| {
                IdleWorkers::start(
                    &backends[idle_broker],
                    setup.idle_workers,
                    setup.transport,
                    server_key.as_ref(),
                )
            })
            .transpose()?;
        for w in &workers {
            while !w.stats()?.registered {
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "workers did not register within {READY_TIMEOUT:?}"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        for (b, broker) in brokers.iter().enumerate() {
            let idle = if b == idle_broker {
                setup.idle_workers
            } else {
                0
            };
            let expected = (capacity[b] / (setup.capacity + setup.prefetch)) as u64 + idle as u64;
            while broker.stats()?.workers < expected {
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "idle workers did not register within {READY_TIMEOUT:?}"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        if brokers.is_empty() && idle.is_some() {
            std::thread::sleep(Duration::from_millis(500));
        }
        cluster::wait_served(&brokers, &capacity, setup.types, deadline)?;
        let client_endpoints: Vec<String> = (0..clients)
            .map(|i| match &proxy {
                Some(p) => p.endpoint().to_owned(),
                None => frontends[setup.placement.client_broker(i, n)].clone(),
            })
            .collect();
        let keys = (0..clients)
            .map(|i| match setup.own_ids {
                true => Keys::own_range(i),
                false => Keys::picked(),
            })
            .collect();
        let mut started = Vec::new();
        // Local clients are made by their own threads, in `run`.
        let shared_clients = if setup.local_client { 0 } else { clients };
        for client_endpoint in client_endpoints.iter().take(shared_clients) {
            let client = Client::connect(client_config(client_endpoint, server_key.as_ref()))?;
            anyhow::ensure!(
                client.wait_connected(READY_TIMEOUT),
                "client did not connect to {client_endpoint} within {READY_TIMEOUT:?}"
            );
            if brokers.len() > 1 {
                // A broker sends its VIEW right after its WELCOME; a request
                // sent between the two picks an id the broker may not own.
                // Any answer comes after the VIEW on the same connection.
                let warm_up = client.request(1).timeout(READY_TIMEOUT).send()?.wait();
                warm_up.context("the client's warm-up request")?;
            }
            started.push(client);
        }
        let warmed_up = stats_of(&brokers)?;
        Ok(Self {
            warmed_up,
            brokers,
            proxy,
            workers,
            idle,
            clients: started,
            client_endpoints,
            keys,
            endpoints,
            server_key,
        })
    }

    /// The broker-to-broker hops of the run since the warm-up (a cluster
    /// only).
    fn hops(&self) -> anyhow::Result<Option<Hops>> {
        if self.brokers.len() < 2 {
            return Ok(None);
        }
        Ok(Some(Hops::between(
            &self.warmed_up,
            &stats_of(&self.brokers)?,
        )))
    }

    fn stop(self) {
        for c in &self.clients {
            let _ = c.stop();
        }
        for w in &self.workers {
            let _ = w.stop();
        }
        drop(self.idle);
        if let Some(p) = &self.proxy {
            let _ = p.stop();
        }
        for b in &self.brokers {
            let _ = b.stop();
        }
        for ep in &self.endpoints {
            transport::cleanup(ep);
        }
    }
}

/// The stats of each broker now.
fn stats_of(brokers: &[Broker]) -> anyhow::Result<Vec<BrokerStats>> {
    Ok(brokers
        .iter()
        .map(Broker::stats)
        .collect::<Result<_, _>>()?)
}

type Handler = Arc<dyn Fn(Payload) -> Payload + Send + Sync>;

/// The echo handler; for gated one-way runs, it records the one-way latency
/// from the payload's timestamp and opens the sender's window.
fn handler(
    gated: bool,
    control: Arc<Control>,
) -> impl Fn(Payload, &RequestContext) -> Result<Payload, HandlerError> + Clone + Send + Sync + 'static
{
    let f: Handler = if gated {
        Arc::new(move |payload: Payload| {
            if let Some((latency, idx)) = payload.first().and_then(|f| control.read_stamp(f)) {
                control.record(idx, latency);
                control.release(idx);
            }
            Payload::new()
        })
    } else {
        Arc::new(|payload| payload)
    };
    move |payload: Payload, _ctx: &RequestContext| Ok(f(payload))
}

/// Runs one measured interval.
pub fn run(setup: &Setup, spec: &LoadSpec) -> anyhow::Result<RunResult> {
    let control = Control::new(spec.clients);
    let cluster = Cluster::start(setup, spec.clients, &control)?;
    let result = load::run(&setup.label(), spec, control, |idx, control| {
        let shared = cluster.clients.get(idx).cloned();
        let endpoint = cluster.client_endpoints[idx].clone();
        let server_key = cluster.server_key;
        let mut keys = cluster.keys[idx].clone();
        let (setup, spec) = (setup.clone(), spec.clone());
        std::thread::Builder::new()
            .name("bench-client".to_owned())
            .spawn(move || {
                let mut client = match shared {
                    Some(client) => BenchClient::Shared(client),
                    None => match connect_local(&endpoint, server_key.as_ref()) {
                        Ok(local) => BenchClient::Local(Box::new(local)),
                        Err(e) => {
                            tracing::error!(error = %e, "local client");
                            control.error(idx);
                            return;
                        }
                    },
                };
                match &client {
                    BenchClient::Shared(shared) if setup.gated() => {
                        one_way_loop(shared, &control, idx, &setup, &spec, &mut keys);
                    }
                    BenchClient::Shared(shared) if spec.window <= 1 => {
                        blocking_loop(shared, &control, idx, &setup, &spec, &mut keys);
                    }
                    _ => handle_loop(&mut client, &control, idx, &setup, &spec, &mut keys),
                }
            })
    });
    let hops = cluster.hops();
    cluster.stop();
    let mut result = result?;
    result.cluster = hops?;
    Ok(result)
}

/// A client thread's client: a shared `Client` (this thread sends, its
/// driver thread reads and wakes this one) or a `LocalClient` (this thread
/// does it all).
enum BenchClient {
    Shared(Client),
    Local(Box<LocalClient>),
}

impl BenchClient {
    /// A request of `request_type`, with the next of `keys`' ids if they
    /// choose them.
    fn request(&mut self, request_type: RequestType, keys: &mut Keys) -> RequestBuilder<'_> {
        let builder = match self {
            BenchClient::Shared(c) => c.request(request_type),
            BenchClient::Local(c) => c.request(request_type),
        };
        with_key(builder, keys)
    }

    /// Waits for completions: sleeps until the driver thread wakes this
    /// one, or drives the local client's socket.
    fn idle(&mut self, timeout: Duration) {
        match self {
            BenchClient::Shared(_) => std::thread::park_timeout(timeout),
            BenchClient::Local(c) => {
                if let Err(e) = c.poll(timeout) {
                    tracing::warn!(error = %e, "local client poll failed");
                }
            }
        }
    }
}

fn with_key<'a>(builder: RequestBuilder<'a>, keys: &mut Keys) -> RequestBuilder<'a> {
    match keys.next_id() {
        Some(id) => builder.id(id),
        None => builder,
    }
}

/// A client's config for `endpoint`, with CURVE towards `server` if given
/// (its own key pair made by the client).
fn client_config(endpoint: &str, server: Option<&PublicKey>) -> ClientConfig {
    let mut config = ClientConfig::new(endpoint);
    config.curve_server_key = server.copied();
    config
}

fn connect_local(endpoint: &str, server: Option<&PublicKey>) -> anyhow::Result<LocalClient> {
    let mut client = LocalClient::connect(client_config(endpoint, server))?;
    let deadline = Instant::now() + READY_TIMEOUT;
    while !client.is_connected() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "local client did not connect to {endpoint} within {READY_TIMEOUT:?}"
        );
        client.poll(Duration::from_millis(10))?;
    }
    Ok(client)
}

fn request_type(seq: u64, types: u32) -> RequestType {
    1 + (seq % u64::from(types.max(1))) as RequestType
}

/// Slots whose handle resolved, for the client thread (which parks while
/// there is none: an unpark costs a syscall only when it sleeps).
struct Completions {
    ready: Mutex<Vec<usize>>,
    thread: Thread,
}

/// Tells the client thread which slot's handle resolved.
struct SlotWaker {
    slot: usize,
    completions: Arc<Completions>,
}

impl Wake for SlotWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.completions
            .ready
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(self.slot);
        self.completions.thread.unpark();
    }
}

/// Keeps `window` requests in flight through response handles (polled as
/// futures, so completions are seen in any order, at once).
fn handle_loop(
    client: &mut BenchClient,
    control: &Control,
    idx: usize,
    setup: &Setup,
    spec: &LoadSpec,
    keys: &mut Keys,
) {
    let window = spec.window.max(1);
    let completions = Arc::new(Completions {
        ready: Mutex::new(Vec::with_capacity(window)),
        thread: std::thread::current(),
    });
    let wakers: Vec<Waker> = (0..window)
        .map(|slot| {
            Waker::from(Arc::new(SlotWaker {
                slot,
                completions: completions.clone(),
            }))
        })
        .collect();
    let mut slots: Vec<Option<(ResponseHandle, Instant)>> = (0..window).map(|_| None).collect();
    let mut ready = Vec::with_capacity(window);
    let mut in_flight = 0_usize;
    let mut buf = vec![0xa5_u8; spec.size];
    let mut seq = 0_u64;
    let mut start = |client: &mut BenchClient,
                     slot: usize,
                     slots: &mut Vec<Option<(ResponseHandle, Instant)>>,
                     ready: &mut Vec<usize>,
                     in_flight: &mut usize| {
        control.stamp_payload(&mut buf, idx);
        let t = request_type(seq, setup.types);
        seq += 1;
        let sent = Instant::now();
        match client
            .request(t, keys)
            .flags(setup.flags)
            .payload(vec![Frame::from(&buf[..])])
            .send()
        {
            Ok(handle) => {
                slots[slot] = Some((handle, sent));
                *in_flight += 1;
                // Poll once now: registers the waker (or finds it done).
                ready.push(slot);
            }
            Err(_) => control.error(idx),
        }
    };
    for slot in 0..window {
        if !control.sending() {
            break;
        }
        start(client, slot, &mut slots, &mut ready, &mut in_flight);
    }
    let mut deadline = None;
    loop {
        let slot = match ready.pop() {
            Some(slot) => slot,
            None => {
                if !control.sending() {
                    if in_flight == 0 {
                        return;
                    }
                    let at = *deadline.get_or_insert_with(|| Instant::now() + DRAIN_TIMEOUT);
                    if Instant::now() >= at {
                        return;
                    }
                }
                std::mem::swap(
                    &mut ready,
                    &mut completions.ready.lock().unwrap_or_else(|p| p.into_inner()),
                );
                if ready.is_empty() {
                    client.idle(Duration::from_millis(100));
                }
                continue;
            }
        };
        let Some((handle, sent)) = slots[slot].as_mut() else {
            continue;
        };
        let sent = *sent;
        let mut cx = Context::from_waker(&wakers[slot]);
        let Poll::Ready(outcome) = Pin::new(handle).poll(&mut cx) else {
            continue;
        };
        slots[slot] = None;
        in_flight -= 1;
        record(control, idx, sent, &outcome);
        if control.sending() {
            start(client, slot, &mut slots, &mut ready, &mut in_flight);
        }
    }
}

/// One request in flight, as a blocking caller keeps it: send, then wait
/// on the handle (which reads the client's socket meanwhile).
fn blocking_loop(
    client: &Client,
    control: &Control,
    idx: usize,
    setup: &Setup,
    spec: &LoadSpec,
    keys: &mut Keys,
) {
    let mut buf = vec![0xa5_u8; spec.size];
    let mut seq = 0_u64;
    while control.sending() {
        control.stamp_payload(&mut buf, idx);
        let t = request_type(seq, setup.types);
        seq += 1;
        let sent = Instant::now();
        let outcome = with_key(client.request(t), keys)
            .flags(setup.flags)
            .payload(vec![Frame::from(&buf[..])])
            .send()
            .map(|handle| handle.wait_timeout(DRAIN_TIMEOUT));
        match outcome {
            Ok(outcome) => record(control, idx, sent, &outcome),
            Err(_) => {
                control.error(idx);
                return;
            }
        }
    }
}

/// Counts a two-way request's outcome: its latency since `sent`, or an
/// error.
fn record(control: &Control, idx: usize, sent: Instant, outcome: &lhcluster::client::Outcome) {
    match outcome {
        Ok(_) => {
            let latency = u64::try_from(sent.elapsed().as_nanos()).unwrap_or(u64::MAX);
            control.record(idx, latency);
        }
        Err(e) => {
            tracing::debug!(error = %e, "request failed");
            control.error(idx);
        }
    }
}

/// One-way without receipts: send while fewer than `window` requests have
/// not reached a worker yet.
fn one_way_loop(
    client: &Client,
    control: &Control,
    idx: usize,
    setup: &Setup,
    spec: &LoadSpec,
    keys: &mut Keys,
) {
    let mut buf = vec![0xa5_u8; spec.size];
    let mut seq = 0_u64;
    while control.acquire(idx, spec.window.max(1)) {
        control.stamp_payload(&mut buf, idx);
        let t = request_type(seq, setup.types);
        seq += 1;
        let sent = with_key(client.request(t), keys)
            .flags(setup.flags)
            .payload(vec![Frame::from(&buf[..])])
            .send();
        match sent {
            Ok(handle) => drop(handle),
            Err(_) => {
                control.error(idx);
                control.release(idx);
            }
        }
    }
    control.drain_one_way(idx);
}

/// Registered workers that never get work: raw DEALERs that say READY for
/// a type of their own (`1_000_000 + i`) and keep heartbeating.
struct IdleWorkers {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl IdleWorkers {
    const FIRST_TYPE: RequestType = 1_000_000;

    fn start(
        backend: &str,
        n: usize,
        transport: Transport,
        server: Option<&PublicKey>,
    ) -> anyhow::Result<Self> {
        use lhcluster::protocol::{Message, Ready};
        // inproc only connects within one context; elsewhere use our own
        // (a context holds at most 1023 sockets).
        let own = (transport != Transport::Inproc).then(zmq::Context::new);
        let ctx = own.clone().unwrap_or_else(|| lhcluster::context().clone());
        let mut sockets = Vec::with_capacity(n);
        let mut header = Vec::new();
        for i in 0..n {
            let s = ctx.socket(zmq::DEALER)?;
            s.set_identity(format!("bench-idle-{i:06}").as_bytes())?;
            s.set_linger(0)?;
            if let Some(server) = server {
                let own = zmq::CurveKeyPair::new()?;
                s.set_curve_serverkey(server.as_bytes())?;
                s.set_curve_publickey(&own.public_key)?;
                s.set_curve_secretkey(&own.secret_key)?;
            }
            s.connect(backend)?;
            let _ = Message::Ready(Ready {
                heartbeat_ms: 1000,
                capacity: 1,
                request_types: vec![Self::FIRST_TYPE + i as RequestType],
                type_names: Vec::new(),
                name: None,
            })
            .encode(&mut header);
            s.send(&header[..], 0)?;
            sockets.push(s);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let stop_thread = stop.clone();
        let thread = std::thread::Builder::new()
            .name("bench-idle-workers".to_owned())
            .spawn(move || {
                let mut header = Vec::new();
                let _ = Message::Heartbeat { heartbeat_ms: 1000 }.encode(&mut header);
                // Like a real idle worker, wake only to heartbeat (well
                // within the broker's 3 s liveness bound) and to drain what
                // the broker sent meanwhile (its heartbeats): polling the
                // 1 000 sockets more often would charge this harness's own
                // CPU to the system under test.
                while !stop_thread.load(Ordering::Relaxed) {
                    for s in &sockets {
                        while s.recv_msg(zmq::DONTWAIT).is_ok() {}
                        let _ = s.send(&header[..], zmq::DONTWAIT);
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
                drop(sockets);
                drop(own);
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for IdleWorkers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
