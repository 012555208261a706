//! Conflict strategies and the custom resolver trait.

use std::fmt;
use std::sync::Arc;

use uuid::Uuid;

use crate::conflict::ConflictSide;
use crate::entity::Entity;
use crate::ids::NodeId;
use crate::value::Record;

/// How conflicts on an entity type are resolved.
#[derive(Clone, Default)]
pub enum ConflictStrategy {
    /// The hub's version stands, on the hub and on the node (default).
    #[default]
    ServerWins,
    /// The version with the later UTC `updated_at` wins; ties are broken by
    /// writer node id, then content digest, so every node picks the same one.
    LastWriterWins,
    /// The hub's version stands and the other is kept as a new entity under a
    /// UUID derived from its content (the same on every node).
    KeepBoth,
    /// Both kept: the hub's version stays current (on every node) and the
    /// other waits in the hub's open conflict queue, and in its version
    /// history, until a person resolves it there
    /// ([`crate::Engine::resolve_conflict`]).
    Manual,
    /// A custom resolver decides.
    Custom(Arc<dyn Resolver>),
    /// Per-field merge: concurrent edits of different fields both survive;
    /// a field both versions changed, and a deletion against an edit, are
    /// decided by `fallback`. Every version carries, per field, the write
    /// that last changed it ([`crate::entity::FieldStamps`]), so the merge
    /// knows which side changed what (see [`crate::conflict::fields`]). Both
    /// versions go to the version history, as for any merge.
    FieldMerge {
        /// Decides the fields both sides changed.
        fallback: FieldFallback,
    },
}

/// What decides a field that both concurrent versions changed, under
/// [`ConflictStrategy::FieldMerge`] (and a deletion against an edit, which
/// it decides whole).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FieldFallback {
    /// The hub's value stands.
    #[default]
    ServerWins,
    /// The value of the version that ranks later by
    /// [`ConflictStrategy::LastWriterWins`]'s order.
    LastWriterWins,
}

impl FieldFallback {
    /// Short name for audit records.
    pub fn name(self) -> &'static str {
        match self {
            FieldFallback::ServerWins => "server-wins",
            FieldFallback::LastWriterWins => "last-writer-wins",
        }
    }
}

impl ConflictStrategy {
    /// Short name for audit records.
    pub fn name(&self) -> String {
        match self {
            ConflictStrategy::ServerWins => "server-wins".into(),
            ConflictStrategy::LastWriterWins => "last-writer-wins".into(),
            ConflictStrategy::KeepBoth => "keep-both".into(),
            ConflictStrategy::Manual => "manual".into(),
            ConflictStrategy::Custom(r) => format!("custom:{}", r.name()),
            ConflictStrategy::FieldMerge { fallback } => {
                format!("field-merge:{}", fallback.name())
            }
        }
    }
}

impl fmt::Debug for ConflictStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// What a resolver sees.
#[derive(Debug)]
pub struct ConflictContext<'a> {
    /// The version in the receiving store.
    pub local: &'a Entity,
    /// The version that arrived.
    pub incoming: &'a Entity,
    /// The peer it came from.
    pub from: NodeId,
    /// Whether the receiver is the hub.
    pub local_is_hub: bool,
}

/// A resolver's verdict.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Keep the receiver's version.
    KeepLocal,
    /// Take the incoming version.
    TakeIncoming,
    /// Store these fields as a merged version (it syncs to every node).
    Merge(Record),
}

/// A custom conflict resolver, set per entity type.
///
/// For convergence a resolver must be deterministic and symmetric: given the
/// same two versions, it must reach the same result on the hub and on the
/// node, whichever one is "local".
pub trait Resolver: Send + Sync {
    /// Name shown in audit records.
    fn name(&self) -> &str;
    /// Decides one conflict.
    fn resolve(&self, ctx: &ConflictContext<'_>) -> Decision;
}

/// Later `updated_at` wins; then the larger writer id; then the larger content
/// digest. A total order, so both sides agree. Only concurrent versions are
/// ranked: a version written after seeing another descends from it and wins
/// whatever the clocks say.
pub(crate) fn last_writer(local: &Entity, incoming: &Entity) -> ConflictSide {
    let rank = |e: &Entity| (e.updated_at, e.origin, e.content_digest());
    if rank(incoming) > rank(local) {
        ConflictSide::Incoming
    } else {
        ConflictSide::Local
    }
}

/// A merged version that is identical whichever side computes it: the later
/// timestamp and the larger writer id of the two, and both histories.
///
/// A merge that comes out with one side's content (a resolver that unites
/// fields one side already holds) is that side's version, with both
/// histories: it keeps that write's timestamp and writer, so a version
/// written on that write is recognised as knowing it and follows it plainly
/// rather than conflicting with the merge. When both sides hold the same
/// content the last-writer rank picks which one stands.
pub(crate) fn merged_version(local: &Entity, incoming: &Entity, fields: Record) -> Entity {
    let is_deleted = local.is_deleted && incoming.is_deleted;
    let same = |side: &Entity| side.is_deleted == is_deleted && side.fields == fields;
    let standing = match (same(local), same(incoming)) {
        (true, true) => match last_writer(local, incoming) {
            ConflictSide::Incoming => Some(incoming),
            _ => Some(local),
        },
        (true, false) => Some(local),
        (false, true) => Some(incoming),
        (false, false) => None,
    };
    if let Some(side) = standing {
        return Entity {
            clock: local.clock.merged(&incoming.clock),
            field_stamps: crate::entity::FieldStamps::new(),
            ..side.clone()
        };
    }
    Entity {
        key: local.key.clone(),
        updated_at: local.updated_at.max(incoming.updated_at),
        is_deleted: local.is_deleted && incoming.is_deleted,
        origin: local.origin.max(incoming.origin),
        fields,
        clock: local.clock.merged(&incoming.clock),
        field_stamps: crate::entity::FieldStamps::new(),
    }
}

/// The id under which keep-both stores a losing version: derived from the
/// version's content, so every node that keeps the same loser picks the same
/// id and the copies converge.
pub(crate) fn keep_both_copy_id(loser: &Entity) -> Uuid {
    let mut input = b"syncplan keep-both copy\0".to_vec();
    input.extend(loser.content_digest());
    let digest = ring::digest::digest(&ring::digest::SHA256, &input);
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest.as_ref()[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}
