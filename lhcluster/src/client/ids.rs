//! The request ids a client picks itself: counting from a random start,
//! and, in a cluster, only ids its broker owns, so that the request needs
//! no hop to another broker (docs/clustering.md §9). The broker's VIEW
//! says who it and its members are; without one (a lone broker, or an
//! older one), any id will do.

use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::protocol::{RequestId, RequestType};

/// How many ids to try for one its broker owns before taking any: with N
/// members one in N is owned, so 64 tries all but never run out.
const TRIES: usize = 64;

#[derive(Debug)]
pub(crate) struct IdSource {
    next: AtomicU64,
    /// The broker's id and the ids of its cluster's other members.
    view: RwLock<Option<(u64, Vec<u64>)>>,
}

impl IdSource {
    pub(crate) fn new() -> Self {
        Self {
            next: AtomicU64::new(crate::peer::random_u64()),
            view: RwLock::new(None),
        }
    }

    /// A fresh id, whoever owns it.
    pub(crate) fn next(&self) -> RequestId {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// A fresh id for a request of type `t`, owned by the client's broker
    /// when it is in a cluster.
    pub(crate) fn next_for(&self, t: RequestType) -> RequestId {
        let view = self.view.read().ok();
        let Some((broker, members)) = view.as_deref().and_then(Option::as_ref) else {
            return self.next();
        };
        if members.is_empty() {
            return self.next();
        }
        let mut id = self.next();
        for _ in 1..TRIES {
            let all = members.iter().copied().chain([*broker]);
            if crate::ownership::owner(all, t, id) == Some(*broker) {
                break;
            }
            id = self.next();
        }
        id
    }

    /// The broker's VIEW (or `None`: the broker was left).
    pub(crate) fn set_view(&self, view: Option<(u64, Vec<u64>)>) {
        if let Ok(mut v) = self.view.write() {
            *v = view;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_a_cluster_ids_are_ones_the_broker_owns() {
        let ids = IdSource::new();
        let plain: Vec<_> = (0..3).map(|_| ids.next_for(7)).collect();
        assert_eq!(plain[1], plain[0] + 1, "alone: counting");
        ids.set_view(Some((11, vec![22, 33])));
        for _ in 0..200 {
            let id = ids.next_for(7);
            assert_eq!(crate::ownership::owner([11, 22, 33], 7, id), Some(11));
        }
        ids.set_view(None);
        let a = ids.next_for(7);
        assert_eq!(ids.next_for(7), a + 1);
    }
}
