//! `lhcluster bench --brokers N`: an in-process cluster of N brokers
//! (docs/clustering.md), where its clients and workers connect
//! (`--placement`), the ids a client names itself (`--own-ids`), and how
//! many broker-to-broker hops the requests of a run took.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::ValueEnum;
use lhcluster::{Broker, BrokerConfig, BrokerStats, RequestId};
use serde::Serialize;

use super::transport::Transport;

/// Where the clients and the workers of a cluster connect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Placement {
    /// Clients on the first broker, workers on the last: every request
    /// crosses between brokers.
    Split,
    /// Clients and workers on the first broker. Ids the clients pick are
    /// owned by that broker, so nothing leaves it; with `--own-ids`, those
    /// another broker owns go to it and back.
    Same,
    /// Client i on broker i mod N, worker j on broker j mod N.
    Spread,
}

impl Placement {
    /// The broker (index) client `i` of a cluster of `n` connects to.
    pub fn client_broker(self, i: usize, n: usize) -> usize {
        match self {
            Placement::Split | Placement::Same => 0,
            Placement::Spread => i % n.max(1),
        }
    }

    /// The broker (index) worker `j` of a cluster of `n` connects to.
    pub fn worker_broker(self, j: usize, n: usize) -> usize {
        match self {
            Placement::Split => n.max(1) - 1,
            Placement::Same => 0,
            Placement::Spread => j % n.max(1),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Placement::Split => "split",
            Placement::Same => "same",
            Placement::Spread => "spread",
        }
    }
}

/// Starts `n` brokers, each dialling the cluster endpoints of those before
/// it (a full mesh: routes work whichever side dials), and waits until
/// every one has a route up to every other. `n` = 1 is a plain broker,
/// outside any cluster, as before `--brokers` existed.
pub fn start(
    transport: Transport,
    n: usize,
    deadline: Instant,
    configure: impl Fn(&mut BrokerConfig),
) -> anyhow::Result<Vec<Broker>> {
    let mut brokers: Vec<Broker> = Vec::with_capacity(n);
    for i in 0..n.max(1) {
        let mut config = BrokerConfig::new(
            transport.bind_endpoint("front"),
            transport.bind_endpoint("back"),
        );
        configure(&mut config);
        if n > 1 {
            config.cluster_bind = Some(transport.bind_endpoint("cluster"));
            config.cluster_peers = brokers
                .iter()
                .filter_map(|b| b.cluster_endpoint().map(str::to_owned))
                .collect();
            config.name = Some(format!("bench-{i}"));
        }
        brokers.push(Broker::start(config).context("starting a broker")?);
    }
    if n > 1 {
        wait_until(deadline, "the brokers to form a full mesh", || {
            Ok(brokers.iter().try_fold(true, |all, b| {
                let stats = b.stats()?;
                let up = stats
                    .cluster
                    .map_or(0, |c| c.peers.iter().filter(|p| p.state == "up").count());
                Ok::<_, lhcluster::Error>(all && up == n - 1)
            })?)
        })?;
    }
    Ok(brokers)
}

/// Waits until every broker of the cluster knows, for every other broker
/// with workers, that it serves each of `types` with its workers' whole
/// capacity (`capacity[b]` for broker b): before that, the first requests
/// would queue at their owner or fail over to the wrong broker.
pub fn wait_served(
    brokers: &[Broker],
    capacity: &[u32],
    types: u32,
    deadline: Instant,
) -> anyhow::Result<()> {
    if brokers.len() < 2 {
        return Ok(());
    }
    let ids = ids(brokers)?;
    wait_until(
        deadline,
        "every broker to learn what the others serve",
        || {
            for b in brokers {
                let cluster = b.stats()?.cluster.unwrap_or_default();
                for (o, &id) in ids.iter().enumerate() {
                    if capacity[o] == 0 || format!("{id:016x}") == cluster.id {
                        continue;
                    }
                    let Some(peer) = cluster
                        .peers
                        .iter()
                        .find(|p| p.id.as_deref() == Some(&format!("{id:016x}")))
                    else {
                        return Ok(false);
                    };
                    let all = (1..=types).all(|t| {
                        peer.serves
                            .get(&t)
                            .is_some_and(|s| s.capacity == capacity[o])
                    });
                    if !all {
                        return Ok(false);
                    }
                }
            }
            Ok(true)
        },
    )
}

/// The cluster ids of `brokers` (read from their stats), in order.
fn ids(brokers: &[Broker]) -> anyhow::Result<Vec<u64>> {
    brokers
        .iter()
        .map(|b| {
            let id = b
                .stats()?
                .cluster
                .context("the broker is not clustered")?
                .id;
            u64::from_str_radix(&id, 16).with_context(|| format!("broker id {id:?}"))
        })
        .collect()
}

fn wait_until(
    deadline: Instant,
    what: &str,
    mut ready: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    while !ready()? {
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// The request ids one client sends: picked by its client (`None`: ids
/// its broker owns, docs/clustering.md §9), or, with `--own-ids`, named by
/// the benchmark from a range of the client's own (so that clients never
/// send the same key), whichever broker owns them.
#[derive(Clone, Debug)]
pub struct Keys {
    next: Option<RequestId>,
}

impl Keys {
    /// Ids picked by the client.
    pub fn picked() -> Self {
        Self { next: None }
    }

    /// Ids counting up from a range of client `idx`'s own.
    pub fn own_range(idx: usize) -> Self {
        Self {
            next: Some((idx as u64 + 1) << 40),
        }
    }

    /// The id of the next request, if the benchmark names it.
    pub fn next_id(&mut self) -> Option<RequestId> {
        let id = self.next.as_mut()?;
        *id += 1;
        Some(*id)
    }
}

/// How many broker-to-broker hops the requests of a run took, over every
/// request the clients sent (warm-up and drain included).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Hops {
    /// Requests an entry broker forwarded to their owner, per request.
    pub forwarded_per_req: f64,
    /// Requests an owner gave another broker to run, per request.
    pub executed_per_req: f64,
}

impl Hops {
    /// The hops of a run: the difference between its brokers' stats at its
    /// start (after the clients' warm-up requests) and at its end.
    pub fn between(start: &[BrokerStats], end: &[BrokerStats]) -> Self {
        let (f0, e0, c0) = Self::counts(start);
        let (f1, e1, c1) = Self::counts(end);
        let from_clients = c1.saturating_sub(c0).max(1) as f64;
        Self {
            forwarded_per_req: f1.saturating_sub(f0) as f64 / from_clients,
            executed_per_req: e1.saturating_sub(e0) as f64 / from_clients,
        }
    }

    /// Requests forwarded, executed elsewhere, and received from clients,
    /// over all the brokers.
    fn counts(stats: &[BrokerStats]) -> (u64, u64, u64) {
        let (mut forwarded, mut executed, mut from_clients) = (0_u64, 0_u64, 0_u64);
        for s in stats {
            let c = s.cluster.clone().unwrap_or_default();
            forwarded += c.forwarded_out;
            executed += c.executed_out;
            // A forwarded or executed request is counted as received again
            // where it arrives.
            from_clients += s
                .requests_received
                .saturating_sub(c.forwarded_in + c.executed_in);
        }
        (forwarded, executed, from_clients)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placements_put_clients_and_workers_where_they_say() {
        assert_eq!(Placement::Split.client_broker(3, 2), 0);
        assert_eq!(Placement::Split.worker_broker(3, 2), 1);
        assert_eq!(Placement::Same.worker_broker(1, 3), 0);
        assert_eq!(Placement::Spread.client_broker(4, 3), 1);
        assert_eq!(Placement::Spread.worker_broker(2, 3), 2);
        // One broker: everything on it.
        for p in [Placement::Split, Placement::Same, Placement::Spread] {
            assert_eq!((p.client_broker(5, 1), p.worker_broker(5, 1)), (0, 0));
        }
    }

    #[test]
    fn own_ranges_are_distinct_per_client_and_picked_ids_are_left_to_the_client() {
        let (mut a, mut b) = (Keys::own_range(0), Keys::own_range(1));
        let mut seen = std::collections::HashSet::new();
        for _ in 0..100 {
            assert!(seen.insert(a.next_id().unwrap()));
            assert!(seen.insert(b.next_id().unwrap()));
        }
        assert_eq!(Keys::picked().next_id(), None);
    }
}
