//! The load generator of the chaos tests: the library's own client, with a
//! window of requests in flight, recording every outcome.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use lhcluster::client::{Client, ClientConfig, ClientEvent, Outcome, RequestError};
use lhcluster::{RequestId, ResponseHandle};

use super::LIMIT;

/// A client with fast heartbeats and the given request timeout, connected
/// (its session established) to `endpoint`.
pub(crate) fn client(endpoint: &str, request_timeout: Duration) -> Client {
    // 2 s of silence before the client gives its broker up: on a loaded
    // 2-core machine a daemon can stall for longer than the default three
    // intervals (300 ms), and a client that gives up fails every request it
    // has outstanding. No scenario relies on the client noticing a death.
    client_of(&[endpoint.to_owned()], 20, request_timeout)
}

/// A client of the brokers at `brokers`, in that order, with heartbeats
/// every 100 ms (it gives a broker up after `liveness` of them in silence)
/// and the given request timeout, connected (its session established) to
/// the first.
pub(crate) fn client_of(brokers: &[String], liveness: u32, request_timeout: Duration) -> Client {
    let mut config = ClientConfig::new(brokers[0].as_str());
    config.brokers = brokers.to_vec();
    config.heartbeat = Duration::from_millis(100);
    config.liveness = liveness;
    config.request_timeout = Some(request_timeout);
    let client = Client::connect(config).unwrap();
    assert!(
        client.wait_connected(LIMIT),
        "no session with {} within {LIMIT:?}",
        brokers[0]
    );
    client
}

/// A short name for an outcome, for tallies: `ok`, a status name, or the
/// error kind.
pub(crate) fn label(outcome: &Outcome) -> String {
    match outcome {
        Ok(_) => "ok".into(),
        Err(RequestError::Status { status, .. }) => status.as_str().into(),
        Err(RequestError::Timeout(_)) => "timeout".into(),
        Err(RequestError::Disconnected(_)) => "disconnected".into(),
        Err(RequestError::Stopped) => "stopped".into(),
        Err(RequestError::Protocol(_)) => "protocol".into(),
        Err(other) => format!("{other:?}"),
    }
}

/// The requests in flight, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Window {
    handles: VecDeque<ResponseHandle>,
}

impl Window {
    pub(crate) fn len(&self) -> usize {
        self.handles.len()
    }

    /// Ids of the requests whose outcome has not arrived yet.
    pub(crate) fn unanswered(&self) -> Vec<RequestId> {
        self.handles
            .iter()
            .filter(|h| !h.is_done())
            .map(|h| h.request_id())
            .collect()
    }
}

/// Sends `count` requests, at most `window` at a time: `send(i)` sends the
/// `i`-th; `answered(window, id, outcome)` sees each outcome as it is
/// taken (oldest request first), with the requests still in flight.
/// Returns the tally of outcomes by [`label`]. Each wait is bounded by
/// [`LIMIT`]: a request that never ends fails the test.
pub(crate) fn drive(
    count: usize,
    window: usize,
    mut send: impl FnMut(usize) -> ResponseHandle,
    mut answered: impl FnMut(&Window, RequestId, Outcome),
) -> BTreeMap<String, u64> {
    let mut tally = BTreeMap::new();
    let mut w = Window::default();
    let mut sent = 0;
    while sent < count || w.len() > 0 {
        while sent < count && w.len() < window {
            w.handles.push_back(send(sent));
            sent += 1;
        }
        let handle = w.handles.pop_front().unwrap();
        let id = handle.request_id();
        let outcome = handle.wait_timeout(LIMIT);
        if let Err(RequestError::Timeout(t)) = &outcome {
            assert_ne!(*t, LIMIT, "request {id} hung: no outcome within {LIMIT:?}");
        }
        *tally.entry(label(&outcome)).or_insert(0) += 1;
        answered(&w, id, outcome);
    }
    tally
}

/// The requests of `client` that had a second outcome: one that arrives
/// after its handle resolved goes to the events as a `Response`.
pub(crate) fn late_outcomes(client: &Client) -> Vec<RequestId> {
    client
        .events()
        .try_iter()
        .filter_map(|e| match e {
            ClientEvent::Response { request_id, .. } => Some(request_id),
            _ => None,
        })
        .collect()
}

/// Asserts that no request of `client` had a second outcome.
pub(crate) fn assert_no_second_outcome(client: &Client) {
    let late = late_outcomes(client);
    assert!(
        late.is_empty(),
        "outcomes after the handle resolved: {late:?}"
    );
}
