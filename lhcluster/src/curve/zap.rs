//! ZAP (ZeroMQ RFC 27): the handler libzmq asks, during each CURVE
//! handshake on a bound socket, whether the client's public key may connect.
//!
//! libzmq asks whoever is bound at `inproc://zeromq.zap.01` in the socket's
//! context, one handler per context. All roles of a process share one
//! context (`crate::context()`), so there is one handler for the process: a
//! thread with a REP socket, started by the first role that registers an
//! allow list. Each registered socket gets its own ZAP domain (set on the
//! socket before it binds), under which its list and its refusal counter
//! are found. A domain not registered here (a CURVE server without a list)
//! is answered "200": allowed, as without a handler.
//!
//! The thread ends when the context is terminated (its receive fails with
//! `ETERM`), so it never holds `terminate_context` up.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use super::{KeyList, PublicKey};
use crate::error::{Error, zmq_err};
use crate::log_limit::LogLimiter;

const ENDPOINT: &str = "inproc://zeromq.zap.01";

/// One registered socket: who may connect, and the refusals so far.
struct Domain {
    /// Which socket, for the log ("broker frontend").
    what: &'static str,
    keys: KeyList,
    failures: Arc<AtomicU64>,
}

#[derive(Default)]
struct Registry {
    domains: HashMap<String, Domain>,
    next: u64,
}

fn registry() -> &'static Mutex<Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(Mutex::default)
}

/// A socket's place in the handler: its ZAP domain while it lives. Dropped
/// with the role, it takes the list out.
#[derive(Debug)]
pub(crate) struct ZapDomain {
    domain: String,
}

impl ZapDomain {
    /// The domain to set on the socket (`ZMQ_ZAP_DOMAIN`) before it binds.
    pub(crate) fn name(&self) -> &str {
        &self.domain
    }

    /// Lets only `keys` connect from the next handshake on (a reload).
    /// Connections already made stay: ZAP is asked only during a
    /// handshake.
    pub(crate) fn replace(&self, keys: KeyList) {
        let mut registry = registry().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = registry.domains.get_mut(&self.domain) {
            entry.keys = keys;
        }
    }
}

impl Drop for ZapDomain {
    fn drop(&mut self) {
        if let Ok(mut registry) = registry().lock() {
            registry.domains.remove(&self.domain);
        }
    }
}

/// Lets only `keys` connect to the socket that takes the returned domain;
/// each refusal adds one to `failures`. Starts the handler on first use.
pub(crate) fn register(
    what: &'static str,
    keys: KeyList,
    failures: Arc<AtomicU64>,
) -> Result<ZapDomain, Error> {
    start_handler()?;
    let mut registry = registry().lock().unwrap_or_else(|e| e.into_inner());
    registry.next += 1;
    let domain = format!("lhcluster-{}", registry.next);
    registry.domains.insert(
        domain.clone(),
        Domain {
            what,
            keys,
            failures,
        },
    );
    Ok(ZapDomain { domain })
}

/// The CURVE side of a bound socket: the role's server key (`None`
/// without one: in clear) and, when the socket has an allow list, the ZAP
/// domain that enforces it (`what` names the socket in the log; refusals
/// add to `failures`). The list holds while the returned domain lives.
pub(crate) fn server_side(
    secret: Option<&super::SecretKey>,
    what: &'static str,
    list: Option<&KeyList>,
    failures: &Arc<AtomicU64>,
) -> Result<(Option<super::SocketCurve>, Option<ZapDomain>), Error> {
    let zap = list
        .map(|list| register(what, list.clone(), failures.clone()))
        .transpose()?;
    let curve = super::SocketCurve::server(secret).map(|curve| match &zap {
        Some(domain) => curve.with_zap(domain),
        None => curve,
    });
    Ok((curve, zap))
}

/// Binds the handler's socket here (so a failure is the caller's error),
/// then serves it on its own thread. Once per process.
fn start_handler() -> Result<(), Error> {
    static STARTED: Mutex<bool> = Mutex::new(false);
    let mut started = STARTED.lock().unwrap_or_else(|e| e.into_inner());
    if *started {
        return Ok(());
    }
    let socket = crate::context()
        .socket(zmq::REP)
        .map_err(zmq_err("creating the ZAP handler's socket"))?;
    socket.bind(ENDPOINT).map_err(|source| Error::Bind {
        endpoint: ENDPOINT.to_owned(),
        source,
    })?;
    std::thread::Builder::new()
        .name("lhcluster-zap".to_owned())
        .spawn(move || serve(socket))
        .map_err(Error::Spawn)?;
    *started = true;
    Ok(())
}

fn serve(socket: zmq::Socket) {
    // Refusals are logged once per key, then summarised per interval.
    let mut limiter = LogLimiter::with_limits(
        "refused CURVE keys",
        1,
        crate::log_limit::INTERVAL,
        crate::log_limit::MAX_PEERS,
    );
    loop {
        let request = match socket.recv_multipart(0) {
            Ok(frames) => frames,
            Err(zmq::Error::ETERM) => return,
            Err(e) => {
                tracing::warn!(error = %e, "ZAP handler: receive failed");
                continue;
            }
        };
        let now = Instant::now();
        limiter.on_tick(now);
        let reply = answer(&request, now, &mut limiter);
        match socket.send_multipart(reply, 0) {
            Ok(()) => {}
            Err(zmq::Error::ETERM) => return,
            Err(e) => tracing::warn!(error = %e, "ZAP handler: reply failed"),
        }
    }
}

/// The reply to one request: version, request id, status code, status
/// text, user id, metadata (RFC 27).
fn answer(request: &[Vec<u8>], now: Instant, limiter: &mut LogLimiter) -> Vec<Vec<u8>> {
    let request_id = request.get(1).cloned().unwrap_or_default();
    let reply = |code: &str, text: &str, user: Vec<u8>| {
        vec![
            b"1.0".to_vec(),
            request_id.clone(),
            code.as_bytes().to_vec(),
            text.as_bytes().to_vec(),
            user,
            Vec::new(),
        ]
    };
    if request.len() < 6 || request[0] != b"1.0" {
        return reply("500", "malformed ZAP request", Vec::new());
    }
    let domain = String::from_utf8_lossy(&request[2]);
    let registry = registry().lock().unwrap_or_else(|e| e.into_inner());
    let Some(entry) = registry.domains.get(domain.as_ref()) else {
        // Not a socket with a list: allowed, as without a handler.
        return reply("200", "OK", Vec::new());
    };
    let key = match (request[5].as_slice(), request.get(6)) {
        (b"CURVE", Some(key)) if key.len() == 32 => {
            let mut bytes = [0u8; 32];
            bytes.copy_from_slice(key);
            PublicKey::from_bytes(bytes)
        }
        _ => {
            entry.failures.fetch_add(1, Ordering::Relaxed);
            return reply("400", "CURVE required", Vec::new());
        }
    };
    if entry.keys.contains(&key) {
        return reply("200", "OK", key.to_z85().into_bytes());
    }
    entry.failures.fetch_add(1, Ordering::Relaxed);
    let address = String::from_utf8_lossy(&request[3]);
    let reason = format!("key {key} not listed (from {address})");
    if limiter.admit(now, key.as_bytes(), &reason) {
        tracing::warn!(socket = entry.what, key = %key, %address, "refused a CURVE key that is not listed");
    }
    reply("400", "key not allowed", Vec::new())
}
