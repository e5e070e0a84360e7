//! Request type names (protocol 1.6): workers send the names of the types
//! they register, and the broker shows them beside the ids in its stats,
//! metrics, logs and error texts. Names never route: the id does, and a
//! name that disagrees with the one known for its id is ignored (and said
//! once). They are read only off the per-request path (stats, logs,
//! errors), so a request costs no lookup here.

use std::fmt;

use foldhash::HashMap;
use tracing::warn;

use crate::protocol::RequestType;

/// At most this many names are kept. A name costs at most
/// [`MAX_TYPE_NAME_LEN`](crate::MAX_TYPE_NAME_LEN) bytes and a map entry,
/// so the bound is a few MiB; well above the 10 000 types a broker is
/// sized for. When full, the names of types the broker no longer knows go
/// first.
pub(super) const MAX_TYPE_NAMES: usize = 20_000;

/// The names learned, by type.
#[derive(Debug, Default)]
pub(super) struct TypeNames {
    names: HashMap<RequestType, Known>,
}

#[derive(Debug)]
struct Known {
    name: Box<str>,
    /// A worker gave another name for the id, and that was logged: once
    /// per type is enough to find the mistake.
    conflict_logged: bool,
}

/// What [`TypeNames::learn`] made of a name.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Learned {
    /// New, or the one already known.
    Kept,
    /// Another name is known for the id: this one is ignored.
    Conflict,
    /// The table is full of names of live types: not kept.
    Full,
}

impl TypeNames {
    /// Learns that a worker (`who`, for the log) calls `t` `name`;
    /// `is_live` tells the types the broker still has, whose names stay
    /// when the table is full.
    pub(super) fn learn(
        &mut self,
        t: RequestType,
        name: &str,
        who: &dyn fmt::Debug,
        is_live: impl Fn(RequestType) -> bool,
    ) -> Learned {
        if name.is_empty() {
            return Learned::Kept;
        }
        if let Some(known) = self.names.get_mut(&t) {
            if *known.name == *name {
                return Learned::Kept;
            }
            if !known.conflict_logged {
                known.conflict_logged = true;
                warn!(
                    request_type = t,
                    known = %known.name,
                    given = name,
                    worker = ?who,
                    "a worker names a request type differently from another: the id routes, \
                     the first name stays (said once per type)"
                );
            }
            return Learned::Conflict;
        }
        if self.names.len() >= MAX_TYPE_NAMES {
            self.names.retain(|&t, _| is_live(t));
            if self.names.len() >= MAX_TYPE_NAMES {
                return Learned::Full;
            }
        }
        self.names.insert(
            t,
            Known {
                name: name.into(),
                conflict_logged: false,
            },
        );
        Learned::Kept
    }

    /// The name of `t`, if known.
    pub(super) fn get(&self, t: RequestType) -> Option<&str> {
        self.names.get(&t).map(|k| &*k.name)
    }

    /// `t` as logs and error texts show it: `name (id)`, or the id alone.
    pub(super) fn label(&self, t: RequestType) -> TypeLabel<'_> {
        TypeLabel {
            id: t,
            name: self.get(t),
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.names.len()
    }
}

/// A request type shown as `name (id)`, or `id` when it has no name.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TypeLabel<'a> {
    id: RequestType,
    name: Option<&'a str>,
}

impl fmt::Display for TypeLabel<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name {
            Some(name) => write!(f, "{name} ({})", self.id),
            None => write!(f, "{}", self.id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_name_stays_and_a_conflict_is_reported() {
        let mut names = TypeNames::default();
        assert_eq!(
            names.learn(7, "orders.create", &"w1", |_| true),
            Learned::Kept
        );
        assert_eq!(
            names.learn(7, "orders.create", &"w2", |_| true),
            Learned::Kept
        );
        assert_eq!(
            names.learn(7, "orders.make", &"w3", |_| true),
            Learned::Conflict
        );
        assert_eq!(
            names.learn(7, "orders.other", &"w4", |_| true),
            Learned::Conflict
        );
        assert_eq!(names.get(7), Some("orders.create"));
        assert_eq!(names.label(7).to_string(), "orders.create (7)");
        assert_eq!(names.label(8).to_string(), "8");
        // An empty name says nothing.
        assert_eq!(names.learn(8, "", &"w1", |_| true), Learned::Kept);
        assert_eq!(names.get(8), None);
    }

    #[test]
    fn a_full_table_makes_room_from_types_no_longer_known() {
        let mut names = TypeNames::default();
        for t in 1..=MAX_TYPE_NAMES as u32 {
            names.learn(t, &format!("t{t}"), &"w", |_| true);
        }
        assert_eq!(names.len(), MAX_TYPE_NAMES);
        // Every type still live: no room.
        assert_eq!(names.learn(u32::MAX, "late", &"w", |_| true), Learned::Full);
        assert_eq!(names.get(u32::MAX), None);
        // The odd types gone: their names make room.
        assert_eq!(
            names.learn(u32::MAX, "late", &"w", |t| t % 2 == 0),
            Learned::Kept
        );
        assert_eq!(names.get(u32::MAX), Some("late"));
        assert_eq!(names.get(1), None);
        assert_eq!(names.get(2), Some("t2"));
    }
}
