//! Limits on input (docs/security.md): a frame over `max_message_size`
//! gets its sender's connection cut by libzmq, a message over
//! `max_message_frames` frames or `max_message_size` bytes in all is
//! dropped and counted, and in every case the role keeps serving everyone
//! else.

use std::time::Duration;

use lhcluster::client::Client;
use lhcluster::protocol::{Flags, Message, Request};
use lhcluster::{Broker, Payload, RequestError, Worker};
use lhcluster_tests::*;

const LIMIT: Duration = Duration::from_secs(60);
const WAIT: Duration = Duration::from_secs(10);

fn limited_broker() -> Broker {
    broker_with(Transport::Tcp, |c| {
        c.max_message_size = 64 << 10;
        c.max_message_frames = 8;
    })
}

/// The limited broker, with an echo worker of type 1 registered.
fn limited_broker_with_echo() -> (Broker, Worker) {
    let broker = limited_broker();
    let worker = echo_worker(&broker, &[1]);
    expect_workers(&broker, 1, WAIT);
    (broker, worker)
}

/// A request of type 1 as a raw peer sends it: the id `id`, the payload
/// `payload`, nothing else.
fn raw_request(id: u64, payload: Payload) -> Message {
    Message::Request(Request {
        request_type: 1,
        request_id: id,
        flags: Flags::empty(),
        route: vec![],
        reply_to: None,
        deadline_ms: 0,
        payload,
    })
}

/// Sends `message`'s frames on a raw socket, as one multipart message.
fn send_raw(socket: &zmq::Socket, message: Message) {
    let frames = message.into_frames();
    let last = frames.len() - 1;
    for (i, frame) in frames.iter().enumerate() {
        let more = if i < last { zmq::SNDMORE } else { 0 };
        socket.send(frame.to_vec(), more).unwrap();
    }
}

fn echo_ok(client: &Client, id: u64) {
    let reply = client
        .request(1)
        .id(id)
        .payload(vec![b"small".as_slice().into()])
        .send()
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(text(&reply.payload), "small");
}

#[test]
fn an_oversized_frame_cuts_its_sender_only() {
    time_limit(LIMIT, || {
        let (broker, _worker) = limited_broker_with_echo();
        let other = Client::connect(client_config(broker.frontend())).unwrap();
        echo_ok(&other, 1);

        // A sender that ignores the limit the broker's WELCOME states (our
        // client does not send such a request: the next test).
        let sender = raw_dealer(broker.frontend());
        send_raw(&sender, raw_request(3, vec![vec![0x5A; 100 << 10].into()]));
        // Everyone else is served throughout.
        for id in 10..20 {
            echo_ok(&other, id);
        }
        let stats = broker.stats().unwrap();
        assert_eq!(stats.types[&1].received, stats.types[&1].completed);
        assert_eq!(
            stats.types[&1].received, 11,
            "the oversized request never arrived"
        );
        assert_eq!(stats.oversized, 0, "libzmq dropped it, not the broker");
    });
}

#[test]
fn a_client_does_not_send_a_request_over_the_brokers_limit() {
    time_limit(LIMIT, || {
        let (broker, _worker) = limited_broker_with_echo();
        let client = client(&broker);
        let big: Payload = vec![vec![0x5A; 100 << 10].into()];
        let outcome = client.request(1).id(3).payload(big).send().unwrap().wait();
        // At once, from the limit in the broker's WELCOME: not at a timeout.
        match outcome {
            Err(RequestError::TooLarge { size, limit }) => {
                assert_eq!(limit, 64 << 10);
                assert!(size > 100 << 10, "{size}");
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        assert_eq!(client.stats().unwrap().requests_too_large, 1);
        // Its connection was not cut: the next request is served.
        echo_ok(&client, 4);
        assert_eq!(broker.stats().unwrap().types[&1].received, 1);
    });
}

#[test]
fn a_result_over_the_brokers_limit_ends_failed_and_frees_the_worker() {
    time_limit(LIMIT, || {
        let broker = limited_broker();
        let mut config = worker_config(&broker);
        config.capacity = 1;
        // Type 2 answers with more than the broker accepts.
        let worker = lhcluster::Worker::builder(config)
            .handle_raw(1, echo)
            .handle_raw(2, too_large)
            .start()
            .unwrap();
        expect_workers(&broker, 1, WAIT);
        let client = client(&broker);
        let outcome = client.request(2).id(1).send().unwrap().wait();
        // The worker sends FAILED instead of a result that would cut its
        // connection and leave the request (and its only credit) with it.
        match outcome {
            Err(RequestError::Status { status, message }) => {
                assert_eq!(status, lhcluster::Status::Failed);
                assert!(
                    message.contains("over the broker's max_message_size"),
                    "{message}"
                );
            }
            other => panic!("expected FAILED, got {other:?}"),
        }
        assert_eq!(worker.stats().unwrap().results_too_large, 1);
        // Its credit came back: the capacity-1 worker serves the next ones.
        for id in 2..5 {
            echo_ok(&client, id);
        }
    });
}

#[test]
fn a_message_with_too_many_frames_is_dropped_and_counted() {
    time_limit(LIMIT, || {
        let (broker, _worker) = limited_broker_with_echo();
        let other = Client::connect(client_config(broker.frontend())).unwrap();

        let raw = raw_dealer(broker.frontend());
        // 20 frames after the header: over the limit of 8.
        let payload = (0..20).map(|_| b"f".as_slice().into()).collect();
        send_raw(&raw, raw_request(99, payload));
        assert!(eventually(WAIT, || broker.stats().unwrap().oversized == 1));
        // Answered, so that the request ends at its client.
        assert!(
            error_for(&raw, 99)
                .error
                .contains("over max_message_frames")
        );
        // Few frames, each under max_message_size, but more bytes than it
        // in all: dropped and counted the same way.
        let payload = (0..3).map(|_| vec![0x42; 40 << 10].into()).collect();
        send_raw(&raw, raw_request(98, payload));
        assert!(eventually(WAIT, || broker.stats().unwrap().oversized == 2));
        assert!(error_for(&raw, 98).error.contains("max_message_size"));
        for id in 1..10 {
            echo_ok(&other, id);
        }
        let stats = broker.stats().unwrap();
        assert_eq!(
            stats.types[&1].completed, 9,
            "the oversized request never ran"
        );
        assert_eq!(stats.requests_received, 9);
    });
}

/// A handler whose result is larger than the limited broker accepts.
fn too_large(
    _: Payload,
    _: &lhcluster::worker::RequestContext,
) -> Result<Payload, lhcluster::worker::HandlerError> {
    Ok(vec![vec![0x33; 100 << 10].into()])
}

/// The ERROR the broker answers request `id` with, read from `socket`
/// (anything else skipped), within 10 s.
fn error_for(socket: &zmq::Socket, id: u64) -> lhcluster::protocol::ErrorReply {
    socket.set_rcvtimeo(10_000).unwrap();
    loop {
        let frames = socket.recv_multipart(0).expect("an answer within 10 s");
        let frames = frames.into_iter().map(Into::into).collect();
        if let Ok(Message::Error(e)) = lhcluster::protocol::decode(frames)
            && e.request.as_ref().is_some_and(|r| r.request_id == id)
        {
            return e;
        }
    }
}
