//! Authorization per request type (docs/security.md): a worker's key may
//! register only its listed types, a client's may send only its own; a
//! reload holds connected peers to the new lists.

use super::*;
use crate::curve::{KeyList, PublicKey, SecretKey};
use crate::protocol::{PROTOCOL_MINOR, Ready};

const THUMBNAILS: u32 = 11;
const PAYMENTS: u32 = 22;

fn key() -> PublicKey {
    SecretKey::generate().unwrap().public_key()
}

fn list(entries: &[(PublicKey, &[&str])]) -> KeyList {
    let mut list = KeyList::default();
    for (key, types) in entries {
        list.allow(*key, types.iter()).unwrap();
    }
    list
}

impl Harness {
    fn worker_sends_keyed(&mut self, worker: &[u8], key: Option<PublicKey>, msg: Message) {
        let (header, payload) = encode(msg);
        let now = self.now();
        self.core
            .on_backend(now, worker, &header, payload, move || key);
    }

    fn ready_keyed(&mut self, worker: &[u8], key: PublicKey, types: &[u32]) {
        let ready = Message::Ready(Ready {
            heartbeat_ms: HB,
            capacity: 1,
            request_types: types.to_vec(),
            type_names: Vec::new(),
            name: None,
        });
        self.worker_sends_keyed(worker, Some(key), ready);
    }

    /// A REQUEST with `key`, its header claiming protocol minor `minor`.
    fn request_keyed(
        &mut self,
        client: &[u8],
        key: Option<PublicKey>,
        t: u32,
        id: u64,
        minor: u32,
    ) {
        let (mut header, payload) = encode(Message::Request(req(t, id, Flags::empty(), &[b"x"])));
        // `08 01 10 MINOR`: major 1, then the minor this crate sends.
        assert_eq!(header[..4], [0x08, 0x01, 0x10, PROTOCOL_MINOR as u8]);
        header[3] = minor as u8;
        let now = self.now();
        self.core
            .on_frontend(now, client, &header, payload, move || key);
    }

    fn expect_forbidden_error(&mut self, side: Side, peer: &[u8]) -> ErrorReply {
        let e = self.expect_error(side, peer);
        assert_eq!(e.status, Some(Status::Forbidden), "{e:?}");
        assert!(e.error.starts_with("forbidden: key "), "{}", e.error);
        e
    }
}

/// The `thumbnails` worker key registers `thumbnails`; stolen, it cannot
/// take `payments`, nor `payments` alongside `thumbnails`.
#[test]
fn a_worker_key_registers_only_its_types() {
    let (thumbs, any) = (key(), key());
    let workers = list(&[(thumbs, &["11"]), (any, &[])]);
    let mut h = Harness::with_config(|c| c.curve_worker_keys = Some(workers));
    assert!(h.core.wants_keys(Side::Backend));
    h.ready_keyed(W1, thumbs, &[THUMBNAILS]);
    h.expect_welcome(Side::Backend, W1);
    for types in [&[PAYMENTS][..], &[THUMBNAILS, PAYMENTS]] {
        h.ready_keyed(W2, thumbs, types);
        let e = h.expect_forbidden_error(Side::Backend, W2);
        assert!(e.error.ends_with("request type(s) 22"), "{}", e.error);
        h.expect_nothing();
    }
    // A key without types registers anything.
    h.ready_keyed(W3, any, &[PAYMENTS, 99]);
    h.expect_welcome(Side::Backend, W3);
    let stats = h.core.stats();
    assert_eq!((stats.workers, stats.workers_forbidden), (2, 2));
    assert_eq!(stats.types[&PAYMENTS].workers, 1, "W3 only");
    // A payments request goes to W3, never to the thumbnails worker.
    h.connect(CA);
    h.request_dispatched_with(CA, W3, (PAYMENTS, 1), Flags::empty(), &[b"card"]);
}

/// A registered worker that sends a READY its key may not make loses its
/// registration: its work in flight is handled as on its death.
#[test]
fn a_refused_ready_removes_the_registration() {
    let thumbs = key();
    let workers = list(&[(thumbs, &["11"])]);
    let mut h = Harness::with_config(|c| c.curve_worker_keys = Some(workers));
    h.ready_keyed(W1, thumbs, &[THUMBNAILS]);
    h.expect_welcome(Side::Backend, W1);
    h.connect(CA);
    h.request_dispatched(CA, W1, THUMBNAILS, 1);
    h.ready_keyed(W1, thumbs, &[THUMBNAILS, PAYMENTS]);
    let mut kinds: Vec<String> = h.take().iter().map(show).collect();
    kinds.sort();
    assert_eq!(kinds.len(), 2, "{kinds:?}");
    assert!(kinds.iter().any(|k| k.contains("Error(")), "{kinds:?}");
    assert!(kinds.iter().any(|k| k.contains("WorkerDeath")), "{kinds:?}");
    assert_eq!(h.core.stats().workers, 0);
}

/// A message without a key came over inproc (no handshake): not checked.
#[test]
fn without_a_key_nothing_is_checked() {
    let workers = list(&[(key(), &["11"])]);
    let mut h = Harness::with_config(|c| c.curve_worker_keys = Some(workers));
    h.worker_sends_keyed(
        W1,
        None,
        Message::Ready(Ready {
            heartbeat_ms: HB,
            capacity: 1,
            request_types: vec![PAYMENTS],
            type_names: Vec::new(),
            name: None,
        }),
    );
    h.expect_welcome(Side::Backend, W1);
}

/// A client key limited to type 7 gets FORBIDDEN for `payments`: a
/// RESPONSE from minor 4, an ERROR naming the request before (an older
/// client would refuse the status). Nothing is queued or dispatched.
#[test]
fn a_client_key_sends_only_its_types() {
    let (limited, any) = (key(), key());
    let clients = list(&[(limited, &["7"]), (any, &[])]);
    let mut h = Harness::with_config(|c| c.curve_client_keys = Some(clients)).and_worker(1);
    assert!(h.core.wants_keys(Side::Frontend));
    h.connect(CA);
    h.request_keyed(CA, Some(limited), PAYMENTS, 1, 4);
    let r = h.expect_status(CA, PAYMENTS, 1, Status::Forbidden);
    assert!(r.error.unwrap().contains("may not send request type 22"));
    h.request_keyed(CA, Some(limited), PAYMENTS, 2, 3);
    let e = h.expect_forbidden_error(Side::Frontend, CA);
    let named = e.request.expect("names the request");
    assert_eq!((named.request_type, named.request_id), (PAYMENTS, 2));
    h.expect_nothing();
    // Its own type, and any type for the other key, go through.
    h.request_keyed(CA, Some(limited), 7, 3, 4);
    h.expect_dispatch(W1, 7, 3, 1);
    h.connect(CB);
    h.request_keyed(CB, Some(any), PAYMENTS, 4, 4);
    h.expect_nothing();
    let stats = h.core.stats();
    assert_eq!(stats.requests_forbidden, 2);
    assert_eq!(stats.requests_received, 4);
    assert_eq!(stats.pending, 1, "the payments request of the any key");
    assert_eq!(
        stats.types[&PAYMENTS].received, 1,
        "refusals are not counted"
    );
}

/// Without type restrictions in the client list, no key is read: a list
/// that only authenticates costs nothing per request.
#[test]
fn a_list_without_types_reads_no_request_key() {
    let clients = list(&[(key(), &[])]);
    let mut h = Harness::with_config(|c| c.curve_client_keys = Some(clients));
    assert!(!h.core.wants_keys(Side::Frontend));
    h.connect(CA);
    let (header, payload) = encode(Message::Request(req(7, 1, Flags::empty(), &[])));
    let now = h.now();
    h.core
        .on_frontend(now, CA, &header, payload, || -> Option<PublicKey> {
            panic!("the key was read")
        });
}

/// A reload: a connected client whose key left the list gets FORBIDDEN;
/// a registered worker whose key may no longer register its types is
/// removed and told, and its next READY is refused.
#[test]
fn a_reload_holds_connected_peers_to_the_new_lists() {
    let (client, worker, other) = (key(), key(), key());
    let mut h = Harness::with_config(|c| {
        c.curve_client_keys = Some(list(&[(client, &[])]));
        c.curve_worker_keys = Some(list(&[(worker, &[])]));
    });
    h.ready_keyed(W1, worker, &[7]);
    h.expect_welcome(Side::Backend, W1);
    h.connect(CA);
    let now = h.now();
    h.core.set_key_lists(
        now,
        Some(list(&[(other, &[])])),
        Some(list(&[(worker, &["8"])])),
    );
    h.expect_forbidden_error(Side::Backend, W1);
    h.expect_nothing();
    assert!(h.core.wants_keys(Side::Frontend));
    h.request_keyed(CA, Some(client), 7, 1, 4);
    h.expect_status(CA, 7, 1, Status::Forbidden);
    h.ready_keyed(W1, worker, &[7]);
    h.expect_forbidden_error(Side::Backend, W1);
    h.ready_keyed(W1, worker, &[8]);
    h.expect_welcome(Side::Backend, W1);
    let stats = h.core.stats();
    assert_eq!((stats.workers_forbidden, stats.requests_forbidden), (2, 1));
}
