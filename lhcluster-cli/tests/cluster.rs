//! The cluster of docs/clustering.md as an operator runs it: three
//! `lhcluster broker` processes meshed by `--cluster` / `--peer`, on
//! loopback TCP or each on its own "host" (a network namespace), with
//! workers, proxies and clients as separate processes or the library's own
//! client. Every scenario asserts events and counts, never speed: what it
//! measures (times, executions) it prints. What each covers and its
//! figures: docs/reliability.md, "Cluster".

mod support;

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use lhcluster::client::{Client, ClientEvent, Outcome};
use lhcluster::{BrokerStats, ClusterStats, Flags, RequestId, RequestType, ResponseHandle};

use support::exec_log::ExecLog;
use support::load::{client, client_of, drive, label, late_outcomes};
use support::netns::hosts::Hosts;
use support::{
    BIN, LIMIT, Proc, broker_on, ep, free_port, proxy, run, scenario, wait_stats, wait_workers,
    worker,
};

/// The time limit of one scenario.
const SCENARIO_LIMIT: Duration = Duration::from_secs(120);
/// Under `LIMIT`, so that a request that never ends shows as a hang.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(25);
/// The request type the scenarios' workers serve.
const JOB: RequestType = 7;
/// The brokers' names, in the order of their processes.
const NAMES: [&str; 3] = ["a", "b", "c"];

// ------------------------------------------------------------- ownership

/// The SplitMix64 finaliser of protocol.md §18.4.
fn mix(z: u64) -> u64 {
    let z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A member's rendezvous score for a key (protocol.md §18.4).
fn score(member: u64, request_type: RequestType, request_id: RequestId) -> u64 {
    mix(member ^ mix(u64::from(request_type) ^ mix(request_id)))
}

/// The index in `members` (broker ids) of the owner of a key.
fn owner(members: &[u64], request_type: RequestType, request_id: RequestId) -> usize {
    (0..members.len())
        .max_by_key(|&i| (score(members[i], request_type, request_id), members[i]))
        .unwrap()
}

/// For each member, `each` request ids it owns (above `after`), as
/// (owner, id): so that a scenario covers every path a request can take.
fn keys_of_each(
    members: &[u64],
    request_type: RequestType,
    each: usize,
    after: RequestId,
) -> Vec<(usize, RequestId)> {
    let mut found = vec![Vec::new(); members.len()];
    let mut id = after;
    while found.iter().any(|f| f.len() < each) {
        id += 1;
        let o = owner(members, request_type, id);
        if found[o].len() < each {
            found[o].push(id);
        }
    }
    let mut keys: Vec<(usize, RequestId)> = found
        .into_iter()
        .enumerate()
        .flat_map(|(o, ids)| ids.into_iter().map(move |id| (o, id)))
        .collect();
    keys.sort_by_key(|&(_, id)| id);
    keys
}

#[test]
fn ownership_in_these_tests_matches_protocol_md_s_vectors() {
    assert_eq!(mix(0), 0xE220_A839_7B1D_CDAF);
    assert_eq!(score(1, 7, 42), 0x383D_3086_26EF_A9F0);
    assert_eq!(score(2, 7, 42), 0x3DA8_0056_E267_A8E6);
    assert_eq!(owner(&[1, 2], 7, 42), 1);
}

// ----------------------------------------------------------------- stats

/// A broker's statistics (`lhcluster stats --json`), typed.
fn typed(v: &serde_json::Value) -> BrokerStats {
    serde_json::from_value(v.clone()).expect("stats of this version")
}

/// Waits until the broker at `front` satisfies `done`; its statistics.
fn wait_for(front: &str, what: &str, done: impl Fn(&BrokerStats) -> bool) -> BrokerStats {
    typed(&wait_stats(front, what, |v| done(&typed(v))))
}

fn cluster(s: &BrokerStats) -> &ClusterStats {
    s.cluster.as_ref().expect("a clustered broker")
}

/// A broker id as the statistics print it (hex).
fn id_of(hex: &str) -> u64 {
    u64::from_str_radix(hex, 16).expect("a hex broker id")
}

/// The ids of the members the broker has a route up with that pass
/// `keep`, sorted. (By id, not name: a member's name is not always known,
/// see `every_member_s_name_is_known_once_meshed`.)
fn members(s: &BrokerStats, keep: impl Fn(&lhcluster::broker::PeerStats) -> bool) -> Vec<u64> {
    let mut ids: Vec<u64> = cluster(s)
        .peers
        .iter()
        .filter(|p| p.state == "up" && keep(p))
        .filter_map(|p| p.id.as_deref().map(id_of))
        .collect();
    ids.sort_unstable();
    ids
}

/// The members the broker has a route up with.
fn up(s: &BrokerStats) -> Vec<u64> {
    members(s, |_| true)
}

/// The members with a route up that serve `request_type`.
fn serving(s: &BrokerStats, request_type: RequestType) -> Vec<u64> {
    members(s, |p| p.serves.contains_key(&request_type))
}

/// The ids in `ids` but those at the indices `but`, sorted.
fn others(ids: &[u64], but: &[usize]) -> Vec<u64> {
    let mut rest: Vec<u64> = (0..ids.len())
        .filter(|i| !but.contains(i))
        .map(|i| ids[i])
        .collect();
    rest.sort_unstable();
    rest
}

/// Waits until each broker at `fronts` has a route up with every other;
/// their ids, in order.
fn wait_meshed(fronts: &[String]) -> Vec<u64> {
    let ids: Vec<u64> = fronts
        .iter()
        .map(|f| id_of(&cluster(&wait_for(f, "an answer", |_| true)).id))
        .collect();
    for (i, front) in fronts.iter().enumerate() {
        wait_for(front, "a route up with every other broker", |s| {
            up(s) == others(&ids, &[i])
        });
    }
    ids
}

// ------------------------------------------------------------- requests

fn send(client: &Client, request_type: RequestType, id: RequestId, flags: Flags) -> ResponseHandle {
    client
        .request(request_type)
        .id(id)
        .flags(flags)
        .payload_bytes(body(id).as_bytes())
        .send()
        .expect("the client takes the request")
}

/// The payload of request `id`, which an echo answers.
fn body(id: RequestId) -> String {
    format!("r{id}")
}

fn text_of(outcome: &Outcome) -> String {
    let reply = outcome.as_ref().expect("a reply");
    let bytes: Vec<u8> = reply.payload.iter().flat_map(|f| f.to_vec()).collect();
    String::from_utf8(bytes).unwrap()
}

/// Sends each key through `client`, one at a time, and checks its echo;
/// `when` names the step, for the failure's message.
fn served(client: &Client, keys: &[(usize, RequestId)], when: &str) {
    for &(o, id) in keys {
        let outcome = send(client, JOB, id, Flags::empty()).wait_timeout(LIMIT);
        assert!(
            outcome.is_ok(),
            "{when}: request {id} (owned by {}): {outcome:?}",
            NAMES[o]
        );
        assert_eq!(text_of(&outcome), body(id));
    }
}

// --------------------------------------------------- three on loopback

/// One broker of a cluster on loopback.
struct Member {
    front: String,
    back: String,
    process: Option<Proc>,
}

/// Three brokers on loopback, each with `--cluster` and the other two as
/// `--peer`, named after `NAMES`, with 100 ms heartbeats.
struct Mesh {
    members: Vec<Member>,
}

impl Mesh {
    fn start(extra: &[&str]) -> Mesh {
        let clusters: Vec<String> = NAMES.iter().map(|_| ep(free_port())).collect();
        let members = (0..NAMES.len())
            .map(|i| {
                let (front, back) = (ep(free_port()), ep(free_port()));
                let mut args = vec!["--cluster", &clusters[i], "--name", NAMES[i]];
                for (j, peer) in clusters.iter().enumerate() {
                    if j != i {
                        args.extend(["--peer", peer.as_str()]);
                    }
                }
                args.extend_from_slice(extra);
                let process = Some(broker_on(&front, &back, &args));
                Member {
                    front,
                    back,
                    process,
                }
            })
            .collect();
        Mesh { members }
    }

    fn fronts(&self) -> Vec<String> {
        self.members.iter().map(|m| m.front.clone()).collect()
    }

    fn front(&self, i: usize) -> &str {
        &self.members[i % self.members.len()].front
    }

    fn back(&self, i: usize) -> &str {
        &self.members[i % self.members.len()].back
    }

    /// `kill -9` of broker `i`, once it is gone.
    fn kill(&mut self, i: usize) {
        let mut p = self.members[i].process.take().expect("a live broker");
        p.signal("KILL");
        p.wait();
    }
}

// ------------------------------------------------------------- names

/// Every member of a meshed cluster shows its peers' names (`--name`) in
/// its statistics. A route that comes up on this broker's own greeting
/// (the PEER_WELCOME, which carries no name) records the member without
/// one, and the member's own PEER_HELLO, arriving later on the cluster
/// endpoint, finds it known and does not add the name
/// (`on_peer_hello` in broker/core/cluster.rs): whichever greeting lands
/// first decides, so most runs of three brokers miss one name or more.
#[test]
fn every_member_s_name_is_known_once_meshed() {
    scenario(SCENARIO_LIMIT, || {
        let mesh = Mesh::start(&[]);
        let fronts = mesh.fronts();
        let ids = wait_meshed(&fronts);
        for (i, front) in fronts.iter().enumerate() {
            let s = typed(&support::stats(front).unwrap());
            for p in cluster(&s).peers.iter().filter(|p| p.state == "up") {
                let j = ids
                    .iter()
                    .position(|&id| Some(id) == p.id.as_deref().map(id_of));
                let name = j.map(|j| NAMES[j]);
                assert_eq!(p.name.as_deref(), name, "{}'s view of {:?}", NAMES[i], p.id);
            }
        }
    });
}

// ------------------------------------------------- served, deduplicated

#[test]
fn a_worker_on_one_broker_serves_another_s_clients_and_a_duplicate_through_another_broker_is_rejected()
 {
    scenario(SCENARIO_LIMIT, || {
        let mesh = Mesh::start(&[]);
        let fronts = mesh.fronts();
        let ids = wait_meshed(&fronts);
        let job = JOB.to_string();
        let _worker = worker(mesh.back(2), &["--type", &job, "--echo", "--capacity", "2"]);
        wait_workers(mesh.front(2), 1);
        for i in 0..2 {
            let s = wait_for(mesh.front(i), "c's worker announced", |s| {
                serving(s, JOB) == [ids[2]]
            });
            let c = cluster(&s)
                .peers
                .iter()
                .find(|p| p.id.as_deref().map(id_of) == Some(ids[2]));
            assert_eq!(c.unwrap().serves[&JOB].capacity, 2, "{s:?}");
        }

        // Served: a client on a, the worker on c; keys owned by each.
        let keys = keys_of_each(&ids, JOB, 4, 0);
        let on_a = client(mesh.front(0), REQUEST_TIMEOUT);
        served(&on_a, &keys, "a client on a");
        let owned = |o: usize| keys.iter().filter(|k| k.0 == o).count() as u64;
        let (n_a, n_b, n_c) = (owned(0), owned(1), owned(2));
        let after: Vec<BrokerStats> = fronts
            .iter()
            .map(|f| typed(&support::stats(f).unwrap()))
            .collect();
        let (a, b, c) = (cluster(&after[0]), cluster(&after[1]), cluster(&after[2]));
        // clustering.md §2: a forwards the keys others own, and gives c its
        // own to run; b gives c what it owns; c runs everything.
        assert_eq!(
            (a.forwarded_out, a.executed_out, a.relayed),
            (n_b + n_c, n_a, 0),
            "{a:?}"
        );
        assert_eq!((b.forwarded_in, b.executed_out), (n_b, n_b), "{b:?}");
        assert_eq!((c.forwarded_in, c.executed_in), (n_c, n_a + n_b), "{c:?}");
        // Completed where each is owned, and at its executor.
        let completed: Vec<u64> = after.iter().map(|s| s.requests_completed).collect();
        assert_eq!(completed, [n_a, n_b, n_a + n_b + n_c]);

        // Deduplicated: one key per owner, of a type nobody serves yet,
        // sent through a and waiting at its owner; the same keys through b
        // are refused.
        const IDLE: RequestType = 8;
        let keys = keys_of_each(&ids, IDLE, 1, 0);
        let first: Vec<ResponseHandle> = keys
            .iter()
            .map(|&(_, id)| send(&on_a, IDLE, id, Flags::empty()))
            .collect();
        for front in &fronts {
            wait_for(front, "its key of the idle type queued", |s| {
                s.types.get(&IDLE).map(|t| t.pending) == Some(1)
            });
        }
        let on_b = client(mesh.front(1), REQUEST_TIMEOUT);
        for &(o, id) in &keys {
            let again = send(&on_b, IDLE, id, Flags::empty()).wait_timeout(LIMIT);
            assert_eq!(
                label(&again),
                "rejected",
                "({IDLE}, {id}), owned by {}, sent through a then b: {again:?}",
                NAMES[o]
            );
        }
        // The originals were kept: a worker for the type serves them.
        let idle = IDLE.to_string();
        let _late = worker(mesh.back(2), &["--type", &idle, "--echo"]);
        for (h, &(_, id)) in first.into_iter().zip(&keys) {
            let outcome = h.wait_timeout(LIMIT);
            assert_eq!(text_of(&outcome), body(id), "{outcome:?}");
        }
        let rejected: u64 = fronts
            .iter()
            .map(|f| typed(&support::stats(f).unwrap()).requests_rejected)
            .sum();
        assert_eq!(rejected, keys.len() as u64);
        println!(
            "served across: {} requests through a (owners a/b/c: {n_a}/{n_b}/{n_c}) run by c's \
             worker; {} duplicates through b, one per owner, rejected",
            n_a + n_b + n_c,
            keys.len()
        );
    });
}

// ------------------------------------------------ kill -9 under proxies

/// One request of a load client, as the client saw it.
struct Seen {
    sent: Instant,
    answered: Instant,
    label: String,
}

/// What a load thread gives back: its tally of outcomes, what it saw of
/// each request, and its client (for the outcomes that came late).
type Load = (BTreeMap<String, u64>, HashMap<RequestId, Seen>, Client);

/// Runs `count` `RETRY_ON_DEATH` requests through `client` (ids from
/// `first`), `window` at a time, on its own thread; reports on `progress`
/// when a third are answered. Each echo is checked.
fn load(
    client: Client,
    first: RequestId,
    count: usize,
    window: usize,
    progress: mpsc::Sender<()>,
) -> std::thread::JoinHandle<Load> {
    std::thread::spawn(move || {
        let sent = std::cell::RefCell::new(HashMap::new());
        let mut seen = HashMap::new();
        let tally = drive(
            count,
            window,
            |i| {
                let id = first + i as u64;
                sent.borrow_mut().insert(id, Instant::now());
                send(&client, JOB, id, Flags::RETRY_ON_DEATH)
            },
            |_, id, outcome| {
                if outcome.is_ok() {
                    assert_eq!(text_of(&outcome), body(id));
                }
                let s = Seen {
                    sent: sent.borrow()[&id],
                    answered: Instant::now(),
                    label: label(&outcome),
                };
                seen.insert(id, s);
                if seen.len() == count / 3 {
                    let _ = progress.send(());
                }
            },
        );
        (tally, seen, client)
    })
}

#[test]
fn a_broker_killed_under_load_through_proxies_loses_no_request() {
    scenario(SCENARIO_LIMIT, || {
        const PER_CLIENT: usize = 1500;
        const WINDOW: usize = 16;
        const VICTIM: usize = 0;
        // 1 s of silence before anyone gives a peer up: on a loaded 2-core
        // machine a daemon can stall for longer than 3 × 100 ms, and a
        // route lost to a stall is a membership change, which no part of
        // this scenario is about.
        const LIVENESS: &str = "10";
        let log = ExecLog::new("cluster-kill");
        // More tries than a request can need: one death can cost it one.
        let mut mesh = Mesh::start(&["--liveness", LIVENESS, "--max-tries", "5"]);
        let fronts = mesh.fronts();
        let ids = wait_meshed(&fronts);
        let (job, cmd) = (JOB.to_string(), log.echo_command());
        // A worker per broker, each given all three, its own first.
        let _workers: Vec<Proc> = (0..3)
            .map(|i| {
                let (b1, b2) = (mesh.back(i + 1), mesh.back(i + 2));
                let mut args = vec!["--broker", b1, "--broker", b2, "--type", &job];
                args.extend(["--exec", &cmd, "--capacity", "4", "--liveness", LIVENESS]);
                worker(mesh.back(i), &args)
            })
            .collect();
        for (i, front) in fronts.iter().enumerate() {
            wait_for(front, "the two others' workers announced", |s| {
                s.workers == 1 && serving(s, JOB) == others(&ids, &[i])
            });
        }
        // Two proxies given all three brokers: the first enters through
        // the victim, the second through b. The per-request re-send timer
        // is set beyond the test: every re-send is one a new broker
        // session triggers, so every second run is one the kill explains.
        let proxies: Vec<(Proc, String)> = (0..2)
            .map(|i| {
                let (f1, f2) = (mesh.front(i + 1), mesh.front(i + 2));
                let mut args = vec!["--broker", f1, "--broker", f2];
                args.extend(["--resend-initial", "10min", "--liveness", LIVENESS]);
                proxy(mesh.front(i), &args)
            })
            .collect();
        let (progress, under_way) = mpsc::channel();
        let loads: Vec<_> = proxies
            .iter()
            .enumerate()
            .map(|(k, (_, bind))| {
                let c = client(bind, REQUEST_TIMEOUT);
                load(
                    c,
                    1 + (k as u64) * 1_000_000,
                    PER_CLIENT,
                    WINDOW,
                    progress.clone(),
                )
            })
            .collect();
        for _ in &loads {
            under_way.recv_timeout(LIMIT).expect("the load under way");
        }

        // What the entry proxy logged so far is about its first session.
        let entry_proxy = &proxies[0].0;
        entry_proxy.stderr.try_iter().for_each(drop);
        let killed = Instant::now();
        mesh.kill(VICTIM);
        let mut declared = Vec::new();
        for i in [1, 2] {
            wait_for(mesh.front(i), "the killed broker declared down", |s| {
                !up(s).contains(&ids[VICTIM]) && cluster(s).peer_losses >= 1
            });
            declared.push(killed.elapsed());
        }
        entry_proxy.expect_log("re-sending the buffer");
        // Observed after the fact: the window below is, if anything, wider
        // than the real one.
        let resent = Instant::now();
        let failover = killed.elapsed();

        let mut tally = BTreeMap::new();
        let mut seen = HashMap::new();
        let mut late = Vec::new();
        for l in loads {
            let (t, s, c) = l.join().expect("the load thread");
            for (k, n) in t {
                *tally.entry(k).or_insert(0) += n;
            }
            seen.extend(s);
            late.extend(late_outcomes(&c));
        }
        let sent = 2 * PER_CLIENT as u64;
        // Every request sent ended once, with a definite outcome, and with
        // RETRY_ON_DEATH behind proxies none is lost (clustering.md §7, §8).
        assert_eq!(seen.len() as u64, sent);
        assert_eq!(tally, BTreeMap::from([("ok".to_owned(), sent)]), "outcomes");

        // At least once, and more only inside clustering.md §8's window,
        // the requests in flight on the killed broker. Each runs again at
        // most once per role the killed broker had for it: as its executor
        // (its owner retries it elsewhere), as its owner (its entry
        // re-forwards it to the new owner), as its entry (the proxy
        // re-sends it, and an owner that has finished it meanwhile, its
        // answer lost with the entry, runs it anew). A broker that was
        // the entry and the owner is no executor elsewhere, and the entry
        // re-forwards nothing when it is itself gone: so at most three
        // runs, and three only through the killed entry broker (the first
        // proxy's client, ids below a million). A request sent after the
        // entry proxy re-sent its buffer, or answered before the kill,
        // ran once.
        let runs = log.counts();
        let exposed = |s: &Seen| s.sent < resent && s.answered > killed;
        let through_victim = |id: RequestId| id < 1_000_000;
        let mut exposed_count = 0;
        for (id, s) in &seen {
            let n = runs.get(id).copied().unwrap_or(0);
            let most = if through_victim(*id) { 3 } else { 2 };
            assert!(n >= 1, "request {id} answered {} but never ran", s.label);
            assert!(
                n <= most,
                "request {id} ran {n} times after one kill (attempts {:?}); sent {:?} before the \
                 kill, answered {} {:?} after it",
                log.attempts(*id),
                killed.saturating_duration_since(s.sent),
                s.label,
                s.answered.saturating_duration_since(killed)
            );
            assert!(
                n == 1 || exposed(s),
                "request {id} ran {n} times but was not in flight at the kill"
            );
            exposed_count += usize::from(exposed(s));
        }
        let extra = |through: bool| -> u64 {
            runs.iter()
                .filter(|(id, _)| through_victim(**id) == through)
                .map(|(_, n)| n - 1)
                .sum()
        };
        let (extra_victim, extra_other) = (extra(true), extra(false));
        let thrice = runs.values().filter(|&&n| n == 3).count();
        // The window in numbers: at most WINDOW requests of each client in
        // flight at the kill (the first proxy's client gets no answer
        // between the kill and the re-send, so what it sends meanwhile
        // stays within its window; the other client's requests sent after
        // the kill never reached the dead broker's workers), each run at
        // most twice more through the dead entry, once more otherwise.
        let bound = 2 * WINDOW as u64 + WINDOW as u64;
        assert!(
            extra_victim + extra_other <= bound,
            "{extra_victim} + {extra_other} extra runs: more than the {bound} the window allows"
        );
        for id in &late {
            assert!(runs[id] > 1, "a second outcome for {id}, which ran once");
        }
        let after: Vec<BrokerStats> = [1, 2]
            .iter()
            .map(|&i| {
                wait_for(mesh.front(i), "nothing left in flight", |s| {
                    s.pending == 0 && s.in_flight == 0 && cluster(s).relayed == 0
                })
            })
            .collect();
        let (retried, owner_lost): (u64, u64) = after
            .iter()
            .map(|s| (s.requests_retried, cluster(s).owner_lost))
            .fold((0, 0), |(r, o), (r2, o2)| (r + r2, o + o2));
        println!(
            "broker kill: {sent} sent through 2 proxies (window {WINDOW} each), outcomes \
             {tally:?}; broker a killed after a third; b and c declared it down after \
             {:.2} / {:.2} s, the entry proxy re-sent its buffer after {:.2} s; {} executions: \
             {extra_victim} extra runs through the killed entry broker and {extra_other} through \
             the other ({thrice} requests ran three times; {exposed_count} requests exposed, \
             bound {bound}), {} second outcomes; b and c: {retried} retried, {owner_lost} owner \
             lost",
            declared[0].as_secs_f64(),
            declared[1].as_secs_f64(),
            failover.as_secs_f64(),
            runs.values().sum::<u64>(),
            late.len()
        );
    });
}

// ------------------------------------------------- three hosts, one cut

/// A library client of the brokers at `fronts`, in that order, with fast
/// heartbeats: it gives its broker up after 0.5 s of silence.
fn failover_client(fronts: &[String]) -> Client {
    client_of(fronts, 5, REQUEST_TIMEOUT)
}

/// Waits for `event` on `client`'s event channel.
fn expect_event(client: &Client, event: fn(&ClientEvent) -> bool, what: &str) {
    let deadline = Instant::now() + LIMIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match client.events().recv_timeout(left) {
            Ok(e) if event(&e) => return,
            Ok(_) => continue,
            Err(_) => panic!("the client never reported: {what}"),
        }
    }
}

/// Waits until the routes of every broker at `fronts` are all up and
/// have stayed so for `calm` (none lost in between); each broker's
/// `peer_losses` then.
fn wait_settled(fronts: &[String], calm: Duration) -> Vec<u64> {
    let deadline = Instant::now() + LIMIT;
    let mut since = Instant::now();
    let mut last: Option<Vec<u64>> = None;
    loop {
        let now: Option<Vec<u64>> = fronts
            .iter()
            .map(|f| {
                let s = typed(&support::stats(f)?);
                (up(&s).len() == fronts.len() - 1).then(|| cluster(&s).peer_losses)
            })
            .collect();
        match &now {
            Some(losses) if now == last && since.elapsed() >= calm => return losses.clone(),
            Some(_) if now == last => {}
            _ => since = Instant::now(),
        }
        assert!(
            Instant::now() < deadline,
            "the routes never settled: {now:?}"
        );
        last = now;
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What to check once the cut host is plugged back in.
#[derive(Clone, Copy, PartialEq)]
enum AfterHeal {
    /// Every broker has its routes up again.
    Rejoined,
    /// And, as clustering.md §8 says, they stay up (no route lost after
    /// the heal), and requests through the host that was cut off are
    /// served at once.
    StaysUpAndServes,
}

/// Three brokers, each on its own host, with workers on two of them: the
/// third is cut off and plugged back in.
fn cut_and_heal(after_heal: AfterHeal) {
    // Declared first, so dropped last: after the processes on them.
    let hosts = match Hosts::create(NAMES.len()) {
        Ok(hosts) => hosts,
        Err(why) => {
            println!("skipped: the three-host scenario needs network namespaces: {why}");
            return;
        }
    };
    const CUT: usize = 0;
    // Each host has its own ports: the same on every one.
    let at = |i: usize, port: u16| format!("tcp://{}:{port}", hosts.addrs[i]);
    let fronts: Vec<String> = (0..NAMES.len()).map(|i| at(i, 5555)).collect();
    let mut processes = Vec::new();
    for (i, name) in NAMES.iter().enumerate() {
        let mut args = vec![
            "broker",
            "--frontend",
            "tcp://0.0.0.0:5555",
            "--backend",
            "tcp://0.0.0.0:5556",
            "--cluster",
            "tcp://0.0.0.0:5557",
            "--name",
            name,
            "--heartbeat",
            "100ms",
            "--liveness",
            "5",
        ];
        let peers: Vec<String> = (0..NAMES.len())
            .filter(|&j| j != i)
            .map(|j| at(j, 5557))
            .collect();
        for p in &peers {
            args.extend(["--peer", p.as_str()]);
        }
        let broker = Proc::spawn(&mut hosts.command(i, BIN, &args));
        broker.expect_line("broker frontend=");
        processes.push(broker);
    }
    // Workers on the two hosts that stay, each on its own broker.
    let stay: Vec<usize> = (0..NAMES.len()).filter(|&i| i != CUT).collect();
    let job = JOB.to_string();
    for &i in &stay {
        let w = Proc::spawn(&mut hosts.command(
            i,
            BIN,
            &[
                "worker",
                "--broker",
                "tcp://127.0.0.1:5556",
                "--type",
                &job,
                "--echo",
                "--heartbeat",
                "100ms",
            ],
        ));
        w.expect_line("worker serving");
        processes.push(w);
    }
    let ids = wait_meshed(&fronts);
    wait_for(
        &fronts[CUT],
        "the workers of the two others announced",
        |s| serving(s, JOB) == others(&ids, &[CUT]),
    );
    // A client of the host to be cut off, with the others in its list.
    let roaming = failover_client(&fronts);
    served(&roaming, &keys_of_each(&ids, JOB, 2, 0), "before the cut");
    roaming.events().try_iter().for_each(drop);

    let cut = Instant::now();
    hosts.cut(CUT);
    let mut declared = Vec::new();
    // The routes each broker will have lost once the cut is over: the
    // cut-off one both others, each other the cut-off one.
    let mut losses = vec![NAMES.len() as u64 - 1; NAMES.len()];
    for &i in &stay {
        let s = wait_for(&fronts[i], "the cut-off broker declared down", |s| {
            up(s) == others(&ids, &[i, CUT])
        });
        assert!(cluster(&s).peer_losses >= 1, "{s:?}");
        losses[i] = cluster(&s).peer_losses;
        declared.push(cut.elapsed());
    }
    expect_event(
        &roaming,
        |e| matches!(e, ClientEvent::Disconnected),
        "its broker lost",
    );
    expect_event(
        &roaming,
        |e| matches!(e, ClientEvent::Connected),
        "a session elsewhere",
    );
    let failed_over = cut.elapsed();
    assert!(roaming.stats().unwrap().failovers >= 1);
    // The two that stay serve, each key owned by one of them now.
    let two: Vec<u64> = stay.iter().map(|&i| ids[i]).collect();
    served(&roaming, &keys_of_each(&two, JOB, 2, 100), "failed over");
    for &i in &stay {
        let direct = failover_client(std::slice::from_ref(&fronts[i]));
        let keys = keys_of_each(&two, JOB, 2, 200 + 100 * i as u64);
        served(&direct, &keys, "during the cut");
    }

    let heal = Instant::now();
    hosts.heal(CUT);
    let mut rejoined = Vec::new();
    for front in &fronts {
        wait_for(front, "every route up again", |s| {
            up(s).len() == NAMES.len() - 1
        });
        rejoined.push(heal.elapsed());
    }
    let mut figures = format!(
        "three hosts: a cut off; b and c declared it down after {:.2} / {:.2} s, its client \
         served through another broker after {:.2} s; after the heal every route up again \
         within {:.2} s",
        declared[0].as_secs_f64(),
        declared[1].as_secs_f64(),
        failed_over.as_secs_f64(),
        rejoined.iter().max().unwrap().as_secs_f64(),
    );
    if after_heal == AfterHeal::StaysUpAndServes {
        // Requests through it are served again, whoever owns them.
        let forwarded = cluster(&typed(&support::stats(&fronts[CUT]).unwrap())).forwarded_out;
        let through_cut = failover_client(std::slice::from_ref(&fronts[CUT]));
        served(
            &through_cut,
            &keys_of_each(&ids, JOB, 2, 1000),
            "after the heal",
        );
        let after = typed(&support::stats(&fronts[CUT]).unwrap());
        assert!(cluster(&after).forwarded_out > forwarded, "{after:?}");
        let settled = wait_settled(&fronts, Duration::from_secs(1));
        let flaps = settled.iter().sum::<u64>() - losses.iter().sum::<u64>();
        figures += &format!(
            ", settled {:.2} s after the heal, {flaps} routes lost after it; requests through a \
             served",
            heal.elapsed().as_secs_f64()
        );
        assert_eq!(
            settled, losses,
            "routes lost after the heal (peer_losses per broker)"
        );
    }
    println!("{figures}");
    drop(processes);
}

#[test]
fn a_host_cut_off_is_left_its_client_fails_over_and_it_rejoins_after_the_heal() {
    scenario(SCENARIO_LIMIT, || cut_and_heal(AfterHeal::Rejoined));
}

/// The same, held to clustering.md §8 after the heal ("views converge
/// within a heartbeat interval or two"). Today the routes flap after the
/// heal, in most runs for up to a second or two, in some for good (250
/// route losses in 30 s). What the debug log shows: a broker whose route
/// with a member is up on one connection (its cluster endpoint) takes
/// that member's messages on the other (its dial, still greeting) for
/// messages "from a broker without a route" and answers REREGISTER
/// (`member_of` resolves a dial only once its own WELCOME came;
/// protocol.md §18.1 says either connection is accepted); the member,
/// whose route is up, ends it on that REREGISTER (`on_member_message`),
/// greets again, and its messages in flight meet the same fate on the
/// other side. The backlog queued during the cut starts it. Meanwhile
/// requests forwarded through the healed broker end `WORKER_DEATH` ("the
/// broker that held the request left the cluster").
#[test]
fn after_a_heal_the_routes_stay_up_and_serve_at_once() {
    scenario(SCENARIO_LIMIT, || cut_and_heal(AfterHeal::StaysUpAndServes));
}

// ----------------------------------------------------- the example file

#[test]
fn up_runs_the_cluster_of_three_example() {
    scenario(SCENARIO_LIMIT, || {
        let file = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/cluster-of-three.toml"
        );
        let mut text = std::fs::read_to_string(file).unwrap();
        // Same file, on ports free now, so that parallel runs do not collide.
        for port in [5550, 5555, 5556, 5557, 5565, 5566, 5567, 5575, 5576, 5577] {
            text = text.replace(&format!(":{port}"), &format!(":{}", free_port()));
        }
        let path = std::env::temp_dir().join(format!("lhc-cluster-of-three-{}.toml", free_port()));
        std::fs::write(&path, &text).unwrap();
        // Every `key = "value"` line of the file, `*` as loopback.
        let values = |key: &str| -> Vec<String> {
            text.lines()
                .filter(|l| l.trim_start().starts_with(&format!("{key} = ")))
                .filter_map(|l| l.split('"').nth(1))
                .map(|v| v.replace('*', "127.0.0.1"))
                .collect()
        };
        let (fronts, bind) = (values("frontend"), values("bind").remove(0));
        assert_eq!(fronts.len(), 3, "{text}");
        let mut daemon = Proc::start(&["up", path.to_str().unwrap()]);
        daemon.expect_line("cluster up");
        // Read at the start: not needed any longer, even if the test fails.
        let _ = std::fs::remove_file(&path);
        let ids = wait_meshed(&fronts);
        let echo = lhcluster::request_type_id("echo");
        for front in &fronts[..2] {
            wait_for(front, "b3's worker announced", |s| {
                serving(s, echo) == [ids[2]]
            });
        }
        for to in [&bind, &fronts[0]] {
            let (code, out, err) = run(&[
                "request",
                "--to",
                to,
                "--type",
                "echo",
                "--payload",
                "via the cluster",
            ]);
            assert_eq!(code, 0, "{out}\n{err}");
            assert!(out.ends_with("via the cluster"), "{out}");
        }
        let b3 = typed(&support::stats(&fronts[2]).unwrap());
        assert_eq!(b3.requests_completed, 2, "{b3:?}");
        daemon.signal("TERM");
        assert_eq!(daemon.wait().code(), Some(0));
    });
}
