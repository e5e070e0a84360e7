//! A client that stops reading its responses (docs/bounds.md): the broker
//! holds at most its per-peer byte bound for it, serves another client
//! meanwhile, and cuts it with SHUTDOWN after `slow_consumer_timeout`. (The
//! refusal of its requests while it is over its limit is tested on the
//! broker core, and by the chaos target.)

use std::time::Duration;

use lhcluster::protocol::{self, Hello, Message, Request};
use lhcluster::{Flags, Frame};
use lhcluster_tests::*;

const LIMIT: Duration = Duration::from_secs(60);
/// Requests the slow client sends, and their size: 16 MiB of responses,
/// well beyond what the kernel's socket buffers and the pipe take.
const REQUESTS: u64 = 1000;
const BODY: usize = 16 * 1024;
/// The broker's per-peer outbox bound in this test.
const PER_PEER: usize = 1 << 20;

fn send(socket: &zmq::Socket, msg: Message) {
    let mut header = Vec::new();
    let encoded = msg.encode(&mut header);
    let mut frames: Vec<Vec<u8>> = vec![header];
    frames.extend(encoded.payload.iter().map(|f| f.to_vec()));
    socket.send_multipart(frames, 0).expect("send");
}

#[test]
fn a_slow_consumer_is_bounded_and_cut_while_others_are_served() {
    time_limit(LIMIT, || {
        let broker = broker_with(Transport::Tcp, |c| {
            c.max_outbox_bytes_per_peer = PER_PEER;
            c.peer_sndhwm = 8;
            c.slow_consumer_timeout = Duration::from_millis(500);
        });
        let _worker = echo_worker(&broker, &[1]);
        let fast = client(&broker);

        // A raw client that greets (with an interval long enough that
        // liveness is not what ends it), sends, and does not read.
        let slow = raw_dealer(broker.frontend());
        slow.set_rcvhwm(1).expect("rcvhwm");
        slow.set_rcvbuf(4096).expect("rcvbuf");
        send(
            &slow,
            Message::Hello(Hello {
                heartbeat_ms: 60_000,
                name: None,
                route: Vec::new(),
            }),
        );
        let body = vec![b's'; BODY];
        for id in 1..=REQUESTS {
            send(
                &slow,
                Message::Request(Request {
                    request_type: 1,
                    request_id: id,
                    flags: Flags::empty(),
                    route: Vec::new(),
                    reply_to: None,
                    deadline_ms: 0,
                    payload: vec![Frame::from(&body[..])],
                }),
            );
        }

        // The other client is served meanwhile, every request.
        for i in 0..50u64 {
            let reply = fast
                .send(
                    1,
                    1_000_000 + i,
                    Flags::empty(),
                    vec![Frame::from(&b"fast"[..])],
                )
                .unwrap()
                .wait()
                .expect("the fast client is served");
            assert_eq!(text(&reply.payload), "fast");
        }

        // Over its limit for 500 ms, the slow one is cut; what was held for
        // it never went beyond the bound.
        let mut held_max = 0;
        let cut = eventually(Duration::from_secs(20), || {
            let s = broker.stats().unwrap();
            held_max = held_max.max(s.outbox_bytes);
            s.slow_consumers >= 1
        });
        let s = broker.stats().unwrap();
        assert!(cut, "never cut: {s:?}");
        assert!(held_max <= PER_PEER as u64, "held {held_max}");
        assert!(s.outcomes_dropped_slow > 0, "{s:?}");
        assert_eq!(s.requests_received, REQUESTS + 50);
        assert_eq!(
            s.requests_completed + s.requests_overloaded + s.requests_dropped_slow,
            REQUESTS + 50,
            "every request ended once: {s:?}"
        );

        // Reading at last, it finds the SHUTDOWN after what its pipe held.
        let mut shutdown = false;
        while let Ok(frames) = slow.recv_multipart(0) {
            let frames = frames.into_iter().map(Frame::from).collect();
            if matches!(protocol::decode(frames), Ok(Message::Shutdown)) {
                shutdown = true;
                break;
            }
        }
        assert!(shutdown, "no SHUTDOWN for the slow consumer");
    });
}
