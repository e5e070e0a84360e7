//! Everything the broker sends: refusals of malformed or unexpected
//! messages, responses, receipts, and the outbox itself.

use std::time::Instant;

use tracing::warn;

use super::{BrokerCore, Dest, Outgoing, ReqKey, Side, Via, hex, peer_id};
use crate::peer::PeerId;
use crate::protocol::{
    self, DecodeError, ErrorReply, Message, Payload, RequestRef, Response, Status,
};

impl BrokerCore {
    /// A message that does not decode: answered with an `ERROR` naming the
    /// request when the header does, never with a `RESPONSE` (a malformed
    /// REQUEST was not processed, so it has no outcome; protocol.md §12).
    /// An ERROR is never answered, so two peers cannot loop.
    pub(super) fn malformed(
        &mut self,
        side: Side,
        peer: &[u8],
        header: &[u8],
        error: &DecodeError,
    ) {
        self.reject(side, peer, header, &error.to_string());
    }

    /// A message over the broker's limits (more than `max_message_frames`
    /// frames, or more than `max_message_size` bytes in all): read whole by
    /// libzmq, dropped here, counted (`oversized`) and logged through the
    /// limiter. A client's is answered with an ERROR naming its request
    /// (when its header names one), which ends the request at the client:
    /// every two-way request has an outcome, also one without a timeout. A
    /// RESULT whose `header` names a request assigned to the sending worker
    /// ends that request FAILED and gives the credit back, as for a garbled
    /// result (else the request would stay in flight on a worker that
    /// thinks it answered).
    pub(crate) fn on_oversized(
        &mut self,
        now: Instant,
        side: Side,
        peer: &[u8],
        size: crate::io::Oversized,
        header: &[u8],
    ) {
        self.now = now;
        self.stats.oversized += 1;
        let error = size.to_string();
        if self.bad_input.admit(self.now, peer, &error) {
            warn!(?side, peer = %hex(peer), %error, "oversized message");
        }
        match side {
            Side::Backend => self.fail_garbled_result(now, peer, header, error),
            Side::Frontend => self.answer_error(side, peer, header, error),
            Side::Cluster | Side::Dial(_) => {}
        }
    }

    /// A valid message of a kind this socket does not take.
    pub(super) fn unexpected(&mut self, side: Side, peer: &[u8], header: &[u8], error: &str) {
        self.reject(side, peer, header, error);
    }

    fn reject(&mut self, side: Side, peer: &[u8], header: &[u8], error: &str) {
        match side {
            Side::Frontend => self.stats.malformed_frontend += 1,
            Side::Backend => self.stats.malformed_backend += 1,
            Side::Cluster | Side::Dial(_) => {
                if let Some(k) = self.cluster_counters() {
                    k.malformed += 1;
                }
            }
        }
        if self.bad_input.admit(self.now, peer, &error) {
            warn!(?side, peer = %hex(peer), %error, "malformed message");
        }
        self.answer_error(side, peer, header, error.to_owned());
    }

    /// Answers a message the broker cannot take with an ERROR naming its
    /// request, if its header names one (never an ERROR with an ERROR).
    fn answer_error(&mut self, side: Side, peer: &[u8], header: &[u8], error: String) {
        if protocol::peek_kind(header) == Some("ERROR") {
            return;
        }
        let reply = Message::Error(ErrorReply {
            error,
            request: protocol::peek_request_ref(header),
            status: None,
        });
        self.send(side, peer_id(peer), reply);
    }

    /// A broker status for a request (no payload).
    pub(super) fn respond(
        &mut self,
        dest: &Dest,
        key: ReqKey,
        status: Status,
        error: Option<String>,
    ) {
        self.send_response(dest, key, status, error, Payload::new());
    }

    pub(super) fn send_response(
        &mut self,
        dest: &Dest,
        key: ReqKey,
        status: Status,
        error: Option<String>,
        payload: Payload,
    ) {
        // A worker's status is tapped where its RESULT arrives, with the
        // timings; here, the outcomes the broker gives itself.
        if !status.is_worker_status() {
            if let Some(tap) = self.tap.as_deref_mut() {
                tap.push(super::watch::Event::Outcome {
                    key,
                    status,
                    bytes: super::watch::payload_bytes(&payload),
                    timings: None,
                });
            }
        }
        let msg = match dest.via {
            Via::Owner { attempt, tag, .. } => {
                Self::executed_message(key, attempt, tag, status, error, payload)
            }
            Via::Local | Via::Member(_) => Message::Response(Response {
                request_type: key.0,
                request_id: key.1,
                status,
                error,
                route: dest.route.clone(),
                payload,
            }),
        };
        self.send_to_dest(dest, msg);
    }

    pub(super) fn send_receipt_received(&mut self, dest: &Dest, key: ReqKey) {
        let msg = Message::ReceiptReceived(RequestRef {
            request_type: key.0,
            request_id: key.1,
            route: dest.route.clone(),
        });
        self.send_to_dest(dest, msg);
    }

    pub(super) fn send_receipt_sent(&mut self, dest: &Dest, key: ReqKey) {
        let msg = Message::ReceiptSent(RequestRef {
            request_type: key.0,
            request_id: key.1,
            route: dest.route.clone(),
        });
        self.send_to_dest(dest, msg);
    }

    /// Sends to a requester: a client by routing id (one that is gone is
    /// noticed by the driver, the ROUTER refusing the message, and counted
    /// there), or the broker it is reached through.
    fn send_to_dest(&mut self, dest: &Dest, msg: Message) {
        match dest.via {
            Via::Local => {
                let now = self.now;
                self.send_tracked(now, Side::Frontend, peer_id(&dest.peer), msg);
            }
            Via::Member(member) | Via::Owner { member, .. } => {
                self.send_to_member(member, msg);
            }
        }
    }

    /// Sends and records the time, so heartbeats are only sent on silence.
    pub(super) fn send_tracked(&mut self, now: Instant, side: Side, peer: PeerId, msg: Message) {
        let live = match side {
            Side::Backend => self
                .worker_ids
                .get(&peer)
                .and_then(|&k| self.workers.get_mut(k))
                .map(|w| &mut w.live),
            Side::Frontend => self.clients.find_mut(&peer).map(|c| &mut c.live),
            Side::Cluster | Side::Dial(_) => None,
        };
        if let Some(live) = live {
            live.last_sent = now;
        }
        self.send(side, peer, msg);
    }

    pub(super) fn send(&mut self, side: Side, peer: PeerId, msg: Message) {
        self.out.push(Outgoing { side, peer, msg });
    }
}
