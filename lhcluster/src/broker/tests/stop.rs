//! `on_stop`: `SHUTDOWN` to every peer.

use std::collections::BTreeSet;

use super::*;

#[test]
fn on_stop_sends_shutdown_to_every_worker_and_client() {
    let mut h = Harness::with_client();
    h.connect(PROXY);
    h.request(CB, 7, 1, Flags::empty(), &[]); // unknown: registered by its request
    h.expect_reregister(Side::Frontend, CB);
    h.connect_worker(W1, &[7], 1);
    h.expect_dispatch(W1, 7, 1, 1);
    h.connect_worker(W2, &[8], 1);
    h.core.on_stop();
    let got: BTreeSet<(bool, Vec<u8>)> = h
        .take()
        .into_iter()
        .map(|o| match o {
            (side, peer, Message::Shutdown) => (side == Side::Backend, peer),
            other => panic!("unexpected {}", show(&other)),
        })
        .collect();
    let want: BTreeSet<(bool, Vec<u8>)> = [
        (false, CA.to_vec()),
        (false, CB.to_vec()),
        (false, PROXY.to_vec()),
        (true, W1.to_vec()),
        (true, W2.to_vec()),
    ]
    .into_iter()
    .collect();
    assert_eq!(got, want);
}

#[test]
fn on_stop_with_no_peers_sends_nothing() {
    let mut h = Harness::new();
    h.core.on_stop();
    h.expect_nothing();
}
