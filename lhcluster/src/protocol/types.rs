//! The typed messages of protocol v1 and their building blocks.

use std::fmt;

/// One ZeroMQ frame ([`zmq::Message`], re-exported as `lhcluster::zmq`).
/// Payload frames are carried as owned frames so that they move from socket
/// to socket without a copy.
pub type Frame = zmq::Message;

/// The application-defined frames of a request, response or notification.
pub type Payload = Vec<Frame>;

/// The request type id and request id: defined beside the typed layer's
/// traits (crate `lhcluster-types`, which has no ZeroMQ), the same types.
pub use lhcluster_types::{RequestId, RequestType};

/// A delivery receipt: what a `RECEIPT_SENT` or `RECEIPT_RECEIVED` message
/// reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReceiptKind {
    /// The broker handed the request to a worker (`RECEIPT_ON_SEND`).
    Sent,
    /// The worker accepted the request (`RECEIPT_ON_RECEIVE`).
    Received,
}

bitflags::bitflags! {
    /// Per-request delivery flags (header field `flags`).
    ///
    /// Unknown bits are kept when decoding and ignored by this version.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct Flags: u64 {
        /// One-way request: no response is routed back to the client.
        const ONE_WAY = 1 << 0;
        /// The worker reports (through the broker) when it accepted the request.
        const RECEIPT_ON_RECEIVE = 1 << 1;
        /// The broker reports when it handed the request to a worker (once).
        const RECEIPT_ON_SEND = 1 << 2;
        /// If the worker dies, the client gets `WORKER_DEATH`.
        const NOTIFY_ON_DEATH = 1 << 3;
        /// If the worker dies, the broker re-dispatches the request (bounded tries).
        const RETRY_ON_DEATH = 1 << 4;
        /// A later request with the same (type, id) may take over the response.
        const ALLOW_REDIRECT = 1 << 5;
        /// When taken over, this requester gets `REDIRECTED`.
        const NOTIFY_ON_REDIRECT = 1 << 6;
        /// Answer `NO_WORKERS` at once when no worker serves the type.
        const FAIL_FAST = 1 << 7;
        // Keep unknown bits: a newer peer may set flags this version ignores.
        const _ = !0;
    }
}

impl Flags {
    /// Whether a response is routed back for this request.
    pub fn is_two_way(self) -> bool {
        !self.contains(Flags::ONE_WAY)
    }
}

/// The outcome carried by `RESULT` (worker statuses) and `RESPONSE` (any).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Status {
    /// The handler succeeded; the payload is its response.
    Ok,
    /// The handler returned an error or panicked.
    Failed,
    /// The request could not be decoded or is invalid.
    BadRequest,
    /// (type, id) is already pending or in progress.
    Rejected,
    /// The worker running the request died and no retry is left.
    WorkerDeath,
    /// Another requester took over the response.
    Redirected,
    /// A queue bound is reached.
    Overloaded,
    /// Fail-fast: no worker serves the request type.
    NoWorkers,
    /// The named reply-to client is not connected to the broker.
    UnknownReplyTo,
    /// The request's deadline passed before a worker took it: it was not
    /// run (protocol 1.3).
    Expired,
    /// The sender's CURVE key may not use this request type: a request
    /// refused by the broker's `curve_client_keys`, or (on an `ERROR`) a
    /// worker registration refused by its `curve_worker_keys`
    /// (docs/security.md; protocol 1.4).
    Forbidden,
    /// Not an outcome: a draining worker gives back, in a `RESULT`, a
    /// request it was dispatched and has not started (a prefetched one),
    /// and never will; the broker dispatches it again, to another worker
    /// (protocol 1.8). Never in a `RESPONSE`.
    Returned,
}

impl Status {
    /// Statuses a worker may report in `RESULT`: the outcomes `Ok`,
    /// `Failed` and `BadRequest`, and (protocol 1.8) `Returned`, which is
    /// none.
    pub fn is_worker_status(self) -> bool {
        matches!(
            self,
            Status::Ok | Status::Failed | Status::BadRequest | Status::Returned
        )
    }

    /// Stable lower-case name, as used in logs and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Failed => "failed",
            Status::BadRequest => "bad_request",
            Status::Rejected => "rejected",
            Status::WorkerDeath => "worker_death",
            Status::Redirected => "redirected",
            Status::Overloaded => "overloaded",
            Status::NoWorkers => "no_workers",
            Status::UnknownReplyTo => "unknown_reply_to",
            Status::Expired => "expired",
            Status::Forbidden => "forbidden",
            Status::Returned => "returned",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Opaque return route a proxy adds to what it forwards (the client's
/// identity at the proxy). Empty for a client talking to the broker directly.
pub type Route = Vec<u8>;

/// A client's request, as sent to a broker frontend (or a proxy).
#[derive(Debug)]
pub struct Request {
    /// Kind of work.
    pub request_type: RequestType,
    /// Dedupe key within the type.
    pub request_id: RequestId,
    /// Delivery flags.
    pub flags: Flags,
    /// Return route added by a proxy; empty from a direct client.
    pub route: Route,
    /// Another client that receives the response instead of the sender.
    pub reply_to: Option<String>,
    /// The time left for the request when it was sent, in ms (protocol
    /// 1.3); 0 for no deadline. The broker never dispatches it later.
    pub deadline_ms: u32,
    /// Application frames.
    pub payload: Payload,
}

/// A request handed by the broker to a worker.
#[derive(Debug)]
pub struct Dispatch {
    /// Kind of work.
    pub request_type: RequestType,
    /// Dedupe key within the type.
    pub request_id: RequestId,
    /// Delivery flags of the request.
    pub flags: Flags,
    /// 1-based attempt number (greater than 1 after a retry on worker death).
    pub attempt: u32,
    /// The broker's tag of this dispatch (protocol 1.1), unique among the
    /// dispatches of the broker's lifetime; a worker echoes it in
    /// [`WorkResult::dispatch_tag`]. 0 (absent) from a broker that does not
    /// tag its dispatches.
    pub dispatch_tag: u64,
    /// The time left for the request when it was dispatched, in ms
    /// (protocol 1.3); 0 for no deadline.
    pub deadline_ms: u32,
    /// Application frames.
    pub payload: Payload,
}

/// A worker's outcome for a dispatched request.
#[derive(Debug)]
pub struct WorkResult {
    /// Kind of work.
    pub request_type: RequestType,
    /// Dedupe key within the type.
    pub request_id: RequestId,
    /// The [`Dispatch::attempt`] this result answers (protocol 1.1), so that
    /// a broker can tell a late result of an earlier attempt from the
    /// current one; 0 from a 1.0 worker, which does not send it.
    pub attempt: u32,
    /// The [`Dispatch::dispatch_tag`] this result answers (protocol 1.1):
    /// it names the dispatch exactly, even when a new request with the same
    /// (type, id) is dispatched to the same worker at the same attempt. 0
    /// (absent) when the dispatch had none, or from a worker that does not
    /// send it; the broker then judges by `attempt`.
    pub dispatch_tag: u64,
    /// `Ok`, `Failed` or `BadRequest`; or (protocol 1.8) `Returned`: the
    /// dispatch given back unstarted, with its payload.
    pub status: Status,
    /// Error text for `Failed` / `BadRequest`.
    pub error: Option<String>,
    /// Response frames.
    pub payload: Payload,
}

/// The single terminal outcome of a two-way request, sent by the broker.
#[derive(Debug)]
pub struct Response {
    /// Kind of work.
    pub request_type: RequestType,
    /// Dedupe key within the type.
    pub request_id: RequestId,
    /// Worker or broker status.
    pub status: Status,
    /// Error text, if any.
    pub error: Option<String>,
    /// Return route (echoed from the request).
    pub route: Route,
    /// Response frames (empty for broker statuses).
    pub payload: Payload,
}

/// Identifies a request in receipts and errors.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct RequestRef {
    /// Kind of work.
    pub request_type: RequestType,
    /// Dedupe key within the type.
    pub request_id: RequestId,
    /// Return route (echoed from the request).
    pub route: Route,
}

/// A worker's registration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ready {
    /// Interval at which the worker sends heartbeats, in ms (> 0).
    pub heartbeat_ms: u32,
    /// How many requests the worker runs at once (> 0).
    pub capacity: u32,
    /// Request types served (non-empty, no `0`).
    pub request_types: Vec<RequestType>,
    /// Their names (protocol 1.6), for stats, logs and error texts: empty,
    /// or one per entry of `request_types`, `""` for a type without a name;
    /// each at most [`MAX_TYPE_NAME_LEN`](super::MAX_TYPE_NAME_LEN) bytes.
    pub type_names: Vec<String>,
    /// Optional stable name, for logs and stats.
    pub name: Option<String>,
}

/// A client's (or proxy's) greeting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// Interval at which the client sends heartbeats, in ms (> 0).
    pub heartbeat_ms: u32,
    /// Optional stable name, the target of explicit reply-to.
    pub name: Option<String>,
    /// Set by a proxy greeting on behalf of one of its clients.
    pub route: Route,
}

/// A protocol error report about a message that could not be processed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorReply {
    /// What went wrong.
    pub error: String,
    /// The request concerned, when it could be identified.
    pub request: Option<RequestRef>,
    /// Why, when the sender says (protocol 1.4): only
    /// [`Status::Forbidden`], a message refused because the sender's key
    /// may not do it. Receivers read any other value as none.
    pub status: Option<Status>,
}

impl ErrorReply {
    /// The ERROR that ends a request refused FORBIDDEN at a requester older
    /// than 1.4, which would refuse the status in a RESPONSE (protocol.md
    /// §3.2): it names the request (with the route it came by), and
    /// carries the status for those that read it.
    pub(crate) fn forbidden_request(
        (request_type, request_id): (RequestType, RequestId),
        route: Vec<u8>,
        error: String,
    ) -> Self {
        Self {
            error,
            request: Some(RequestRef {
                request_type,
                request_id,
                route,
            }),
            status: Some(Status::Forbidden),
        }
    }
}

/// A notification, as published and as delivered: its topic, the
/// publisher's optional id and the payload frames as they travel ("raw", as
/// opposed to a typed [`Notification`](crate::Notification) value decoded
/// from them).
#[derive(Debug)]
pub struct RawNotification {
    /// Notification type (topic). Any UTF-8 text without NUL characters.
    pub topic: String,
    /// Optional publisher-chosen id.
    pub notify_id: Option<u64>,
    /// Application frames.
    pub payload: Payload,
}

/// A broker's greeting to another broker of its cluster (protocol 1.2),
/// sent on a route's DEALER until [`Message::PeerWelcome`] answers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerHello {
    /// The sender's broker id: random, non-zero, drawn at start.
    pub broker_id: u64,
    /// Interval at which the sender heartbeats the route, in ms (> 0).
    pub heartbeat_ms: u32,
    /// The sender's name, for logs and stats.
    pub name: Option<String>,
}

/// What one request type is served with at a broker (an entry of
/// [`Message::Serves`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeServed {
    /// The request type.
    pub request_type: RequestType,
    /// Total capacity of the broker's live workers serving the type (> 0).
    pub capacity: u32,
    /// How many of those slots are free (informative).
    pub free: u32,
    /// How many requests of the type the broker has queued (informative).
    pub pending: u32,
    /// The type's name, when the sender knows it (protocol 1.6; for
    /// stats, logs and error texts only). A sender may leave names out of
    /// a SERVES that only updates the informative counts; a receiver keeps
    /// the names it learned.
    pub name: Option<String>,
}

/// A request forwarded by the broker a client sent it to (the entry
/// broker) to the request's owner (protocol 1.2, docs/clustering.md).
#[derive(Debug)]
pub struct Forward {
    /// The request; its `route` (required, non-empty) encodes the client at
    /// the entry broker, and its `reply_to` is unset (resolved into
    /// `reply_route`).
    pub request: Request,
    /// Broker-to-broker hops so far, this one included: always 1 (a
    /// receiver refuses anything else).
    pub hops: u32,
    /// The encoded route of the client named by the original `reply_to`,
    /// at the entry broker.
    pub reply_route: Option<Route>,
}

/// A request an owner broker gives another broker to run on one of its
/// workers (protocol 1.2).
#[derive(Debug)]
pub struct Execute {
    /// As a DISPATCH to a worker: type, id, flags, attempt, tag, payload.
    pub dispatch: Dispatch,
    /// Broker-to-broker hops so far, this one included (1 or 2).
    pub hops: u32,
}

/// An executor broker's outcome for an [`Execute`] (protocol 1.2).
#[derive(Debug)]
pub struct Executed {
    /// The outcome, any status; `route` is empty.
    pub response: Response,
    /// The `attempt` of the EXECUTE it answers.
    pub attempt: u32,
    /// The `dispatch_tag` of the EXECUTE it answers.
    pub dispatch_tag: u64,
}

/// A caller taking its request back (protocol 1.5, docs/deadlines.md):
/// client or proxy → broker, broker → broker, broker → worker. Never
/// answered, and no payload.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cancel {
    /// Kind of work.
    pub request_type: RequestType,
    /// Dedupe key within the type.
    pub request_id: RequestId,
    /// From a proxy: the client's route; entry → owner broker: the client
    /// encoded as for a FORWARD. Empty otherwise.
    pub route: Route,
    /// Broker → worker, owner → executor: the tag of the DISPATCH (or
    /// EXECUTE) it cancels. 0 otherwise.
    pub dispatch_tag: u64,
}

/// Every message of protocol v1.
#[derive(Debug)]
#[non_exhaustive]
pub enum Message {
    /// Client/proxy → broker: greeting.
    Hello(Hello),
    /// Broker → client/proxy/worker: greeting answer with the broker's heartbeat interval.
    Welcome {
        /// The broker's heartbeat interval in ms.
        heartbeat_ms: u32,
        /// The largest message (header and payload frames, in bytes) the
        /// sender accepts from this peer; 0 = not said (a peer older than
        /// 1.7). Since 1.7.
        max_message_size: u64,
    },
    /// Client/proxy → broker: a request.
    Request(Request),
    /// Broker → worker: a request to run.
    Dispatch(Dispatch),
    /// Worker → broker: a request's outcome.
    Result(WorkResult),
    /// Broker → client/proxy: a two-way request's terminal outcome.
    Response(Response),
    /// Broker → client/proxy: the request was handed to a worker.
    ReceiptSent(RequestRef),
    /// Worker → broker → client/proxy: the worker accepted the request.
    ReceiptReceived(RequestRef),
    /// Worker → broker: registration.
    Ready(Ready),
    /// Any peer: liveness; `heartbeat_ms` is the sender's interval, or 0 for "unchanged".
    Heartbeat {
        /// The sender's heartbeat interval in ms, 0 if unchanged.
        heartbeat_ms: u32,
    },
    /// Worker/client → broker: orderly goodbye. A proxy sets `route` to say
    /// goodbye for one of its clients.
    Disconnect {
        /// Set by a proxy on behalf of one of its clients.
        route: Route,
    },
    /// Broker → peers: the broker is stopping.
    Shutdown,
    /// Broker → peer: unknown peer, register again.
    Reregister,
    /// Any → peer: the received message could not be processed.
    Error(ErrorReply),
    /// Publisher → notify broker → subscriber.
    Notification(RawNotification),
    /// Operator tool → broker: asks for statistics.
    StatsQuery,
    /// Broker → operator tool: statistics, one JSON payload frame.
    StatsReply {
        /// The JSON document (see `docs/protocol.md`).
        payload: Payload,
    },
    /// Broker → broker: route greeting (1.2).
    PeerHello(PeerHello),
    /// Broker → broker: answer to [`Message::PeerHello`] (1.2).
    PeerWelcome {
        /// The answering broker's id.
        broker_id: u64,
        /// The answering broker's heartbeat interval in ms.
        heartbeat_ms: u32,
    },
    /// Broker → broker: the request types the sender has live workers for
    /// (1.2); the whole table, replacing the previous one.
    Serves(Vec<TypeServed>),
    /// Entry broker → owner broker: a client's request (1.2).
    Forward(Forward),
    /// Owner broker → executor broker: run this on one of your workers (1.2).
    Execute(Execute),
    /// Executor broker → owner broker: the outcome of an EXECUTE (1.2).
    Executed(Executed),
    /// Broker → client or proxy (1.3): the broker's cluster view, so that a
    /// client choosing request ids can choose ones its broker owns.
    View {
        /// The sending broker's id.
        broker_id: u64,
        /// The ids of the other members of its view.
        members: Vec<u64>,
    },
    /// The caller takes its request back (1.5): client or proxy → broker,
    /// broker → broker, broker → worker.
    Cancel(Cancel),
}

impl Message {
    /// The header kind name, for logs and errors.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Message::Hello(_) => "HELLO",
            Message::Welcome { .. } => "WELCOME",
            Message::Request(_) => "REQUEST",
            Message::Dispatch(_) => "DISPATCH",
            Message::Result(_) => "RESULT",
            Message::Response(_) => "RESPONSE",
            Message::ReceiptSent(_) => "RECEIPT_SENT",
            Message::ReceiptReceived(_) => "RECEIPT_RECEIVED",
            Message::Ready(_) => "READY",
            Message::Heartbeat { .. } => "HEARTBEAT",
            Message::Disconnect { .. } => "DISCONNECT",
            Message::Shutdown => "SHUTDOWN",
            Message::Reregister => "REREGISTER",
            Message::Error(_) => "ERROR",
            Message::Notification(_) => "NOTIFICATION",
            Message::StatsQuery => "STATS_QUERY",
            Message::StatsReply { .. } => "STATS_REPLY",
            Message::PeerHello(_) => "PEER_HELLO",
            Message::PeerWelcome { .. } => "PEER_WELCOME",
            Message::Serves(_) => "SERVES",
            Message::Forward(_) => "FORWARD",
            Message::Execute(_) => "EXECUTE",
            Message::Executed(_) => "EXECUTED",
            Message::View { .. } => "VIEW",
            Message::Cancel(_) => "CANCEL",
        }
    }
}

/// Why a sequence of frames is not a valid protocol v1 message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The message has no frames at all (or no header frame after the topic).
    #[error("message has no header frame")]
    NoHeader,
    /// The header frame is not a valid Protobuf `Header`.
    #[error("header frame is not a valid protobuf Header: {0}")]
    Header(#[from] prost::DecodeError),
    /// The header's major version is not the one this crate speaks.
    #[error("unsupported protocol version {major}.{minor} (this peer speaks 1.x)")]
    UnsupportedVersion {
        /// Major version received (0 when absent).
        major: u32,
        /// Minor version received.
        minor: u32,
    },
    /// The header's kind is not a known kind.
    #[error("unknown message kind {0}")]
    UnknownKind(i32),
    /// The kind is known but never valid on the wire here (e.g. unspecified).
    #[error("message kind {0} is not valid in this position")]
    UnexpectedKind(&'static str),
    /// The header's status is not a known status, or not valid for the kind.
    #[error("{kind}: invalid status value {value}")]
    InvalidStatus {
        /// Message kind.
        kind: &'static str,
        /// Status value received.
        value: i32,
    },
    /// A field the kind requires is absent or zero.
    #[error("{kind}: missing or zero field `{field}`")]
    MissingField {
        /// Message kind.
        kind: &'static str,
        /// Field name.
        field: &'static str,
    },
    /// A field has a value the protocol does not allow.
    #[error("{kind}: invalid field `{field}`: {reason}")]
    InvalidField {
        /// Message kind.
        kind: &'static str,
        /// Field name.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The kind carries no payload, yet payload frames follow the header.
    #[error("{kind}: unexpected {frames} payload frame(s)")]
    UnexpectedPayload {
        /// Message kind.
        kind: &'static str,
        /// Number of extra frames.
        frames: usize,
    },
    /// The topic frame of a notification is invalid.
    #[error("invalid notification topic frame: {0}")]
    InvalidTopic(&'static str),
}
