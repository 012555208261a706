//! Causality: the version vector every version of an entity carries.
//!
//! A [`VersionVector`] holds, for each node that ever wrote an entity, the
//! time (and a content tag, see [`Stamp`]) of that node's latest write which
//! the version includes. A node's
//! writes to one entity get strictly increasing times (a write is stamped at
//! least one microsecond after the version it replaces), so the times work as
//! that node's counter for the entity, and they survive a store restored from
//! an older backup: the restored node's next write is still later than the
//! writes its peers saw before the restore, where a sequence number would
//! start over.
//!
//! Comparing two vectors tells a receiver whether an incoming version
//! descends from its own (apply it), is an ancestor of it (old news, a late
//! copy), or is concurrent with it: only then is there a conflict. The vector
//! is bounded by the number of nodes that wrote the entity, not by the number
//! of nodes.
//!
//! ```
//! use sync_core::clock::{Causality, Stamp, VersionVector};
//! use sync_core::{NodeId, Timestamp, Uuid};
//!
//! let b = NodeId(Uuid::from_u128(2));
//! let c = NodeId(Uuid::from_u128(3));
//! let v1 = VersionVector::single(b, Timestamp::from_micros(10));
//! let mut v2 = v1.clone();
//! v2.observe(c, Stamp::at(Timestamp::from_micros(20))); // C edits V1
//! assert_eq!(v1.compare(&v2), Causality::Ancestor); // a late V1 is old news
//! let v3 = VersionVector::single(c, Timestamp::from_micros(15));
//! assert_eq!(v1.compare(&v3), Causality::Concurrent); // a real conflict
//! ```

use std::cmp::Ordering;

use crate::ids::{NodeId, Timestamp};

/// How one version relates to another (see [`VersionVector::compare`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Causality {
    /// Both include exactly the same writes.
    Equal,
    /// `self` is an ancestor: everything it includes, the other includes too,
    /// and more.
    Ancestor,
    /// `self` descends from the other: it includes every write the other
    /// does, and more.
    Descendant,
    /// Each includes a write the other does not: a conflict.
    Concurrent,
}

/// One writer's latest included write: its time, and a tag of its content.
///
/// The tag tells two different writes stamped with the same time apart: a
/// node restored from an older backup whose clock is also behind can stamp
/// a new write with the time of a write it lost in the restore. Same time
/// and different tags are two writes neither of which includes the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Stamp {
    /// When the write was made (the writer's hybrid logical clock).
    pub at: Timestamp,
    /// A tag of the write's content ([`crate::Entity::write_tag`]); 0 from
    /// peers older than tags.
    pub tag: u32,
}

impl Stamp {
    /// A stamp without a content tag.
    pub fn at(at: Timestamp) -> Stamp {
        Stamp { at, tag: 0 }
    }

    /// Whether a version whose entry is `self` includes the write `other`.
    pub fn includes(&self, other: &Stamp) -> bool {
        self.at > other.at || self == other
    }
}

/// One write: the writer and its stamp (a "dot" of a dotted version
/// vector). Per-field merge ([`crate::ConflictStrategy::FieldMerge`]) keeps,
/// for each field, the dot of the write that last changed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Dot {
    /// The writer id of the node that made the write.
    pub node: NodeId,
    /// Its stamp.
    pub stamp: Stamp,
}

/// Per writer, the stamp of its latest write that a version includes.
/// Sorted by node id, one entry per node, so equal vectors have equal bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct VersionVector {
    entries: Vec<(NodeId, Stamp)>,
}

impl VersionVector {
    /// The empty vector (no writes).
    pub fn new() -> Self {
        VersionVector::default()
    }

    /// The vector of a first write by `node` at `at` (no content tag).
    pub fn single(node: NodeId, at: Timestamp) -> Self {
        VersionVector {
            entries: vec![(node, Stamp::at(at))],
        }
    }

    /// Builds a vector from entries in any order, without content tags; of
    /// repeated nodes the latest time is kept.
    pub fn from_entries(entries: impl IntoIterator<Item = (NodeId, Timestamp)>) -> Self {
        Self::from_stamps(entries.into_iter().map(|(n, at)| (n, Stamp::at(at))))
    }

    /// Builds a vector from stamped entries in any order; of repeated nodes
    /// the greatest stamp is kept.
    pub fn from_stamps(entries: impl IntoIterator<Item = (NodeId, Stamp)>) -> Self {
        let mut clock = VersionVector::new();
        for (node, stamp) in entries {
            clock.observe(node, stamp);
        }
        clock
    }

    /// The stamp of `node`'s latest included write, if it wrote at all.
    pub fn get(&self, node: NodeId) -> Option<Stamp> {
        self.entries
            .binary_search_by_key(&node, |(n, _)| *n)
            .ok()
            .map(|i| self.entries[i].1)
    }

    /// Includes `node`'s write `stamp` (keeps a greater stamp already
    /// present: a later time, or the same time with a greater tag, so that
    /// every node merging the same vectors gets the same result).
    pub fn observe(&mut self, node: NodeId, stamp: Stamp) {
        match self.entries.binary_search_by_key(&node, |(n, _)| *n) {
            Ok(i) => self.entries[i].1 = self.entries[i].1.max(stamp),
            Err(i) => self.entries.insert(i, (node, stamp)),
        }
    }

    /// The vector including every write of `self` and of `other`.
    pub fn merged(&self, other: &VersionVector) -> VersionVector {
        let mut out = self.clone();
        for &(node, stamp) in &other.entries {
            out.observe(node, stamp);
        }
        out
    }

    /// How `self` relates to `other`.
    pub fn compare(&self, other: &VersionVector) -> Causality {
        let (mut self_ahead, mut other_ahead) = (false, false);
        let (mut a, mut b) = (
            self.entries.iter().peekable(),
            other.entries.iter().peekable(),
        );
        loop {
            match (a.peek(), b.peek()) {
                (None, None) => break,
                (Some(_), None) => {
                    self_ahead = true;
                    break;
                }
                (None, Some(_)) => {
                    other_ahead = true;
                    break;
                }
                (Some((na, sa)), Some((nb, sb))) => match na.cmp(nb) {
                    Ordering::Less => {
                        self_ahead = true;
                        a.next();
                    }
                    Ordering::Greater => {
                        other_ahead = true;
                        b.next();
                    }
                    Ordering::Equal => {
                        self_ahead |= !sb.includes(sa);
                        other_ahead |= !sa.includes(sb);
                        a.next();
                        b.next();
                    }
                },
            }
        }
        match (self_ahead, other_ahead) {
            (false, false) => Causality::Equal,
            (true, false) => Causality::Descendant,
            (false, true) => Causality::Ancestor,
            (true, true) => Causality::Concurrent,
        }
    }

    /// Whether `self` includes the write `dot`.
    pub fn includes_dot(&self, dot: &Dot) -> bool {
        self.get(dot.node)
            .is_some_and(|seen| seen.includes(&dot.stamp))
    }

    /// Whether `self` includes every write `other` does.
    pub fn includes(&self, other: &VersionVector) -> bool {
        matches!(
            self.compare(other),
            Causality::Equal | Causality::Descendant
        )
    }

    /// The entries, ascending by node id.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (NodeId, Stamp)> + '_ {
        self.entries.iter().copied()
    }

    /// Number of writers.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no write is included.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The latest time of any included write.
    pub fn latest(&self) -> Option<Timestamp> {
        self.entries.iter().map(|(_, s)| s.at).max()
    }

    /// A canonical byte encoding (28 bytes per entry: node id, time as
    /// big-endian i64, tag as big-endian u32), for stores and digests.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * ENTRY_BYTES);
        for (node, stamp) in &self.entries {
            out.extend(node.as_bytes());
            out.extend(stamp.at.as_micros().to_be_bytes());
            out.extend(stamp.tag.to_be_bytes());
        }
        out
    }

    /// Decodes [`VersionVector::to_bytes`]; `None` if the length is not a
    /// multiple of 28.
    pub fn from_bytes(bytes: &[u8]) -> Option<VersionVector> {
        if bytes.len() % ENTRY_BYTES != 0 {
            return None;
        }
        let mut clock = VersionVector::new();
        for chunk in bytes.chunks_exact(ENTRY_BYTES) {
            let node = NodeId(uuid::Uuid::from_slice(&chunk[..16]).ok()?);
            let at = i64::from_be_bytes(chunk[16..24].try_into().ok()?);
            let tag = u32::from_be_bytes(chunk[24..28].try_into().ok()?);
            clock.observe(
                node,
                Stamp {
                    at: Timestamp::from_micros(at),
                    tag,
                },
            );
        }
        Some(clock)
    }
}

const ENTRY_BYTES: usize = 28;

#[cfg(test)]
mod tests {
    use super::*;

    fn n(i: u128) -> NodeId {
        NodeId(uuid::Uuid::from_u128(i))
    }

    fn t(micros: i64) -> Timestamp {
        Timestamp::from_micros(micros)
    }

    #[test]
    fn compare_covers_every_relation() {
        let a = VersionVector::from_entries([(n(1), t(5)), (n(2), t(7))]);
        let b = VersionVector::from_entries([(n(1), t(5)), (n(2), t(9))]);
        let c = VersionVector::from_entries([(n(1), t(6)), (n(2), t(7))]);
        let d = VersionVector::from_entries([(n(3), t(1))]);
        assert_eq!(a.compare(&a), Causality::Equal);
        assert_eq!(a.compare(&b), Causality::Ancestor);
        assert_eq!(b.compare(&a), Causality::Descendant);
        assert_eq!(b.compare(&c), Causality::Concurrent);
        assert_eq!(a.compare(&d), Causality::Concurrent);
        assert_eq!(VersionVector::new().compare(&d), Causality::Ancestor);
        assert_eq!(b.merged(&c).compare(&b), Causality::Descendant);
    }

    #[test]
    fn same_time_different_tags_are_concurrent() {
        let stamp = |tag| Stamp { at: t(5), tag };
        let a = VersionVector::from_stamps([(n(1), stamp(1))]);
        let b = VersionVector::from_stamps([(n(1), stamp(2))]);
        let later = VersionVector::from_stamps([(n(1), Stamp { at: t(6), tag: 0 })]);
        assert_eq!(a.compare(&b), Causality::Concurrent);
        assert_eq!(a.compare(&a.clone()), Causality::Equal);
        assert_eq!(later.compare(&a), Causality::Descendant);
        assert_eq!(a.merged(&b), b.merged(&a), "merging is symmetric");
    }

    #[test]
    fn bytes_round_trip_and_refuse_bad_lengths() {
        let a = VersionVector::from_entries([(n(2), t(-3)), (n(1), t(5))]);
        assert_eq!(VersionVector::from_bytes(&a.to_bytes()), Some(a));
        assert_eq!(VersionVector::from_bytes(&[0; 23]), None);
        assert_eq!(VersionVector::from_bytes(&[]), Some(VersionVector::new()));
    }
}
