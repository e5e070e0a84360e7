//! Cost of the broker state machine per dispatched request: one cycle is a
//! REQUEST in (decoded), a DISPATCH out (encoded), the worker's RESULT in
//! (decoded) and the RESPONSE out (encoded), as the driver would do it,
//! without sockets (`lhcluster::bench_support`).
//!
//! Scenarios: 1 request type and 1 worker; 10 000 request types served by
//! one worker (requests cycle over all of them); 1 000 workers serving the
//! type (least recently used first); 1 000 idle workers registered for
//! other types next to the one worker serving the type.
//!
//! The 64-byte payloads travel as they do on the wire, inside the header
//! frames (`inline_payload`): the pre-encoded REQUEST and RESULT headers
//! carry them, so each cycle decodes them out of the incoming headers and
//! copies them into the outgoing ones.
//!
//! Run: `cargo bench -p lhcluster-bench --bench broker -- --warm-up-time 1 --measurement-time 3`
//!
//! For repeatable instruction counts, run a fixed number of cycles of one
//! scenario under callgrind instead of criterion (the difference between
//! two counts over the difference of cycles is the cost of one cycle):
//!
//! ```sh
//! BROKER_BENCH_CYCLES=100000 BROKER_BENCH_SCENARIO=1_type_1_worker \
//!   valgrind --tool=callgrind target/release/deps/broker-<hash>
//! ```

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, criterion_group};
use lhcluster::bench_support::BrokerBench;
use lhcluster::protocol::{Flags, Frame, Hello, Message, Ready, Request, Status, WorkResult};
use lhcluster::{BrokerConfig, Payload, RequestId, RequestType};

const CLIENT: &[u8] = b"bench-client-000";
/// Distinct request ids cycled through (so the dedupe index sees fresh keys).
const IDS: u64 = 4096;

struct Scenario {
    broker: BrokerBench,
    now: Instant,
    /// Pre-encoded REQUEST and RESULT headers (payload inline), cycled
    /// through. A RESULT lacks only the DISPATCH's tag, which the cycle
    /// appends (fields may come in any order), as a worker echoes it.
    requests: Vec<Vec<u8>>,
    results: Vec<Vec<u8>>,
    next: usize,
    out_header: Vec<u8>,
    /// The RESULT header being sent, reused.
    result_header: Vec<u8>,
    dispatched_to: Vec<u8>,
}

fn encode(msg: Message) -> Vec<u8> {
    let mut header = Vec::new();
    let _ = msg.encode(&mut header);
    header
}

/// Appends header field 18, `dispatch_tag`, as a varint.
fn append_dispatch_tag(header: &mut Vec<u8>, mut tag: u64) {
    header.extend_from_slice(&[0x90, 0x01]);
    while tag >= 0x80 {
        header.push(tag as u8 | 0x80);
        tag >>= 7;
    }
    header.push(tag as u8);
}

fn worker_id(i: usize) -> Vec<u8> {
    format!("bench-worker{i:04}").into_bytes()
}

impl Scenario {
    /// `workers[i]` lists the types worker `i` registers; requests cycle
    /// over `request_types`.
    fn new(workers: &[Vec<RequestType>], request_types: &[RequestType]) -> Self {
        let now = Instant::now();
        let config = BrokerConfig::new("inproc://bench-front", "inproc://bench-back");
        let mut broker = BrokerBench::new(&config, now);
        for (i, types) in workers.iter().enumerate() {
            let ready = encode(Message::Ready(Ready {
                heartbeat_ms: 1000,
                capacity: 1,
                request_types: types.clone(),
                type_names: Vec::new(),
                name: None,
            }));
            broker.backend(now, &worker_id(i), &ready, Payload::new());
        }
        let hello = encode(Message::Hello(Hello {
            heartbeat_ms: 1000,
            name: None,
            route: Vec::new(),
        }));
        broker.frontend(now, CLIENT, &hello, Payload::new());
        broker.drain(|_, _, _| {});
        let count = request_types.len().max(IDS as usize);
        let mut requests = Vec::with_capacity(count);
        let mut results = Vec::with_capacity(count);
        let payload = || vec![Frame::from(&[0xa5_u8; 64][..])];
        for i in 0..count {
            let request_type = request_types[i % request_types.len()];
            let request_id = i as RequestId + 1;
            requests.push(encode(Message::Request(Request {
                request_type,
                request_id,
                flags: Flags::empty(),
                route: Vec::new(),
                reply_to: None,
                deadline_ms: 0,
                payload: payload(),
            })));
            results.push(encode(Message::Result(WorkResult {
                request_type,
                request_id,
                // Every request here runs once: its first dispatch. Its
                // tag is appended when the DISPATCH is known.
                attempt: 1,
                dispatch_tag: 0,
                status: Status::Ok,
                error: None,
                payload: payload(),
            })));
        }
        Self {
            broker,
            now,
            requests,
            results,
            next: 0,
            out_header: Vec::with_capacity(64),
            result_header: Vec::with_capacity(128),
            dispatched_to: Vec::with_capacity(16),
        }
    }

    /// One request through the broker; panics if it is not dispatched and
    /// answered (the scenario would be measuring something else).
    fn cycle(&mut self) {
        let i = self.next;
        self.next = (i + 1) % self.requests.len();
        self.broker
            .frontend(self.now, CLIENT, &self.requests[i], Payload::new());
        let mut dispatch_tag = None;
        let (out_header, dispatched_to) = (&mut self.out_header, &mut self.dispatched_to);
        self.broker.drain(|frontend, peer, msg| {
            let tag = match &msg {
                Message::Dispatch(d) if !frontend => Some(d.dispatch_tag),
                _ => None,
            };
            black_box(msg.encode(out_header));
            if tag.is_some() {
                dispatched_to.clear();
                dispatched_to.extend_from_slice(peer);
                dispatch_tag = tag;
            }
        });
        let dispatch_tag = dispatch_tag.expect("the request is dispatched at once");
        self.result_header.clear();
        self.result_header.extend_from_slice(&self.results[i]);
        append_dispatch_tag(&mut self.result_header, dispatch_tag);
        self.broker.backend(
            self.now,
            &self.dispatched_to,
            &self.result_header,
            Payload::new(),
        );
        let mut responses = 0;
        self.broker.drain(|frontend, _, msg| {
            responses += usize::from(frontend && matches!(msg, Message::Response(_)));
            black_box(msg.encode(out_header));
        });
        assert_eq!(responses, 1, "one response per request");
    }
}

type ScenarioSpec = (&'static str, Vec<Vec<RequestType>>, Vec<RequestType>);

fn scenarios() -> Vec<ScenarioSpec> {
    let ten_k: Vec<RequestType> = (1..=10_000).collect();
    vec![
        ("1_type_1_worker", vec![vec![1]], vec![1]),
        ("10k_types_1_worker", vec![ten_k.clone()], ten_k),
        ("1k_workers_same_type", vec![vec![1]; 1000], vec![1]),
        (
            "1k_idle_workers_other_types",
            (0..=1000u32)
                .map(|i| vec![if i == 1000 { 1 } else { 2 + i }])
                .collect(),
            vec![1],
        ),
    ]
}

fn bench_broker(c: &mut Criterion) {
    let mut group = c.benchmark_group("broker_dispatch_cycle");
    for (name, workers, types) in scenarios() {
        let mut scenario = Scenario::new(&workers, &types);
        group.bench_function(name, |b| b.iter(|| scenario.cycle()));
    }
    group.finish();
}

/// A fixed number of cycles of one scenario, for callgrind.
fn fixed_cycles(cycles: u64, name: &str) {
    let Some((_, workers, types)) = scenarios().into_iter().find(|s| s.0 == name) else {
        panic!("unknown scenario {name:?}");
    };
    let mut scenario = Scenario::new(&workers, &types);
    for _ in 0..cycles {
        scenario.cycle();
    }
}

criterion_group!(benches, bench_broker);

fn main() {
    match std::env::var("BROKER_BENCH_CYCLES") {
        Ok(cycles) => {
            let scenario = std::env::var("BROKER_BENCH_SCENARIO")
                .unwrap_or_else(|_| "1_type_1_worker".to_owned());
            fixed_cycles(cycles.parse().expect("a cycle count"), &scenario);
        }
        Err(_) => {
            benches();
            Criterion::default().configure_from_args().final_summary();
        }
    }
}
