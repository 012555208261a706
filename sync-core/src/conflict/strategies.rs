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

/// What the engine will do about one conflict.
#[derive(Debug)]
pub(crate) struct Plan {
    /// The winning side.
    pub winner: ConflictSide,
    /// The merged version (when `winner` is `Merged`).
    pub merged: Option<Entity>,
    /// Keep the loser as a copy under a derived id (keep-both).
    pub keep_copy: bool,
    /// Queue for a person (manual, on the hub).
    pub open_manual: bool,
    /// Leave it to the hub (manual, on a node): nothing changes here.
    pub defer: bool,
}

/// Applies a strategy to one conflict.
pub(crate) fn plan(strategy: &ConflictStrategy, ctx: &ConflictContext<'_>) -> Plan {
    let hub_side = if ctx.local_is_hub {
        ConflictSide::Local
    } else {
        ConflictSide::Incoming
    };
    let simple = |winner| Plan {
        winner,
        merged: None,
        keep_copy: false,
        open_manual: false,
        defer: false,
    };
    match strategy {
        ConflictStrategy::ServerWins => simple(hub_side),
        ConflictStrategy::LastWriterWins => simple(last_writer(ctx.local, ctx.incoming)),
        ConflictStrategy::KeepBoth => Plan {
            keep_copy: true,
            ..simple(hub_side)
        },
        ConflictStrategy::Manual => Plan {
            open_manual: ctx.local_is_hub,
            defer: !ctx.local_is_hub,
            ..simple(ConflictSide::Local)
        },
        ConflictStrategy::Custom(resolver) => match resolver.resolve(ctx) {
            Decision::KeepLocal => simple(ConflictSide::Local),
            Decision::TakeIncoming => simple(ConflictSide::Incoming),
            Decision::Merge(fields) => Plan {
                merged: Some(merged_version(ctx.local, ctx.incoming, fields)),
                ..simple(ConflictSide::Merged)
            },
        },
    }
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
fn merged_version(local: &Entity, incoming: &Entity, fields: Record) -> Entity {
    Entity {
        key: local.key.clone(),
        updated_at: local.updated_at.max(incoming.updated_at),
        is_deleted: local.is_deleted && incoming.is_deleted,
        origin: local.origin.max(incoming.origin),
        fields,
        clock: local.clock.merged(&incoming.clock),
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
