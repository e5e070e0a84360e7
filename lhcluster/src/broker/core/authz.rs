//! Authorization per request type (docs/security.md): which types a
//! worker's CURVE key may register (`curve_worker_keys`) and a client's may
//! send (`curve_client_keys`). The ZAP handler already let only listed keys
//! connect; this is the second gate, on what a connected peer asks for.
//!
//! The driver hands the core each message's key lazily (libzmq attaches the
//! key the ZAP handler approved to every message of the connection as its
//! `User-Id` property): a READY's key is always read when the backend has a
//! list, a REQUEST's only when the frontend's list restricts some key to
//! some types, or after a reload (when a connection made under the old list
//! may hold a key the new one no longer allows). A message without a key
//! came over `inproc://` (no handshake, the same process): it is not
//! checked.

use std::time::Instant;

use tracing::warn;

use super::{BrokerCore, Dest, ReqKey, Side, peer_id};
use crate::curve::{KeyList, PublicKey};
use crate::log_limit::LogLimiter;
use crate::protocol::{self, ErrorReply, Message, RequestType, Status};
use crate::slab::Key;

/// The key lists of a broker, as far as types go.
#[derive(Debug)]
pub(super) struct Authz {
    /// The frontend's list, `None` without one.
    clients: Option<KeyList>,
    /// The backend's list, `None` without one.
    workers: Option<KeyList>,
    /// Whether each REQUEST's key is read and checked.
    check_requests: bool,
    /// Warnings about refusals, once per key and then a summary.
    log: LogLimiter,
}

impl Authz {
    pub(super) fn new(clients: Option<KeyList>, workers: Option<KeyList>) -> Self {
        let check_requests = clients.as_ref().is_some_and(KeyList::restricts_types);
        Self {
            clients,
            workers,
            check_requests,
            log: LogLimiter::with_limits(
                "refused request types",
                1,
                crate::log_limit::INTERVAL,
                crate::log_limit::MAX_PEERS,
            ),
        }
    }

    /// Whether a READY's key must be read.
    pub(super) fn checks_workers(&self) -> bool {
        self.workers.is_some()
    }

    /// Whether a REQUEST's key must be read.
    pub(super) fn checks_requests(&self) -> bool {
        self.check_requests
    }

    /// The types of `types` that `key` may not register (empty: all
    /// allowed). Without a key (inproc) or a list, everything is allowed.
    fn refused_worker_types(
        &self,
        key: Option<&PublicKey>,
        types: &[RequestType],
    ) -> Vec<RequestType> {
        match (&self.workers, key) {
            (Some(list), Some(key)) => types
                .iter()
                .copied()
                .filter(|&t| !list.allows(key, t))
                .collect(),
            _ => Vec::new(),
        }
    }

    fn client_allows(&self, key: Option<&PublicKey>, t: RequestType) -> bool {
        match (&self.clients, key) {
            (Some(list), Some(key)) => list.allows(key, t),
            _ => true,
        }
    }
}

/// `key` for messages: its Z85 text, or "no key".
fn shown(key: Option<&PublicKey>) -> String {
    key.map_or_else(|| "(no key)".to_owned(), PublicKey::to_z85)
}

fn list(types: &[RequestType]) -> String {
    types
        .iter()
        .map(RequestType::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl BrokerCore {
    /// Whether the worker's READY for `types`, sent with `key`, may
    /// register; if not, the worker is told (an ERROR with status
    /// FORBIDDEN), counted, and any registration it had is removed (its
    /// work in flight is retried or reported as on its death).
    pub(super) fn authorize_ready(
        &mut self,
        now: Instant,
        peer: &[u8],
        key: Option<PublicKey>,
        types: &[RequestType],
    ) -> bool {
        let refused = self.authz.refused_worker_types(key.as_ref(), types);
        if refused.is_empty() {
            return true;
        }
        let error = format!(
            "forbidden: key {} may not register request type(s) {}",
            shown(key.as_ref()),
            list(&refused)
        );
        self.forbid_worker(now, peer, key.as_ref(), error);
        false
    }

    fn forbid_worker(&mut self, now: Instant, peer: &[u8], key: Option<&PublicKey>, error: String) {
        self.stats.workers_forbidden += 1;
        self.authz.log.on_tick(now);
        let log_key = key.map_or(&[][..], |k| k.as_bytes());
        if self.authz.log.admit(now, log_key, &error) {
            warn!(%error, "refused a worker's registration (docs/security.md)");
        }
        if let Some(wk) = self.worker_ids.get(peer).copied() {
            self.remove_worker(now, wk);
            self.send_serves_if_changed(true);
        }
        let reply = Message::Error(ErrorReply {
            error,
            request: None,
            status: Some(Status::Forbidden),
        });
        self.send(Side::Backend, peer_id(peer), reply);
    }

    /// Whether a REQUEST of type `t` with `key` may be admitted; if not,
    /// its origin is told (RESPONSE FORBIDDEN to a client of minor 4 and
    /// up, which `header` says, else an ERROR naming the request) and it is
    /// counted. Called only when [`Authz::checks_requests`].
    pub(super) fn authorize_request(
        &mut self,
        header: &[u8],
        key: Option<PublicKey>,
        origin: &Dest,
        req: ReqKey,
    ) -> bool {
        if self.authz.client_allows(key.as_ref(), req.0) {
            return true;
        }
        self.stats.requests_forbidden += 1;
        let error = format!(
            "forbidden: key {} may not send request type {}",
            shown(key.as_ref()),
            req.0
        );
        let now = self.now;
        self.authz.log.on_tick(now);
        let log_key = key.as_ref().map_or(&[][..], |k| k.as_bytes());
        if self.authz.log.admit(now, log_key, &error) {
            warn!(%error, "refused a request (docs/security.md)");
        }
        if protocol::peek_minor(header) >= protocol::FORBIDDEN_MINOR {
            self.respond(origin, req, Status::Forbidden, Some(error));
        } else {
            // An older client would refuse an unknown status: an ERROR
            // naming the request ends it there too (protocol.md §3.2).
            let reply = Message::Error(ErrorReply::forbidden_request(
                req,
                origin.route.clone(),
                error,
            ));
            self.send_tracked(now, Side::Frontend, peer_id(&origin.peer), reply);
        }
        false
    }

    /// New key lists (a reload): `None` keeps a side's list. From now on
    /// every REQUEST's key is checked, and registered workers whose key
    /// the new list no longer allows all their types are removed and told.
    pub(crate) fn set_key_lists(
        &mut self,
        now: Instant,
        clients: Option<KeyList>,
        workers: Option<KeyList>,
    ) {
        self.now = now;
        if let Some(clients) = clients {
            self.authz.clients = Some(clients);
            self.authz.check_requests = true;
        }
        let Some(workers) = workers else {
            return;
        };
        self.authz.workers = Some(workers);
        let revoked: Vec<(Key, Option<PublicKey>, Vec<RequestType>)> = self
            .workers
            .iter()
            .filter(|(_, w)| w.is_local() && w.key.is_some())
            .filter_map(|(k, w)| {
                let refused = self.authz.refused_worker_types(w.key.as_ref(), &w.types);
                (!refused.is_empty()).then_some((k, w.key, refused))
            })
            .collect();
        for (wk, key, refused) in revoked {
            let Some(peer) = self.workers.get(wk).map(|w| peer_id(&w.id)) else {
                continue;
            };
            let error = format!(
                "forbidden: key {} may no longer register request type(s) {}",
                shown(key.as_ref()),
                list(&refused)
            );
            self.forbid_worker(now, &peer, key.as_ref(), error);
        }
    }
}
