//! What a resolution leaves behind.

use uuid::Uuid;

use crate::entity::{Entity, EntityKey};
use crate::ids::{NodeId, Timestamp};

/// Which version won a conflict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConflictSide {
    /// The version already in the receiving store.
    Local,
    /// The version that arrived from the peer.
    Incoming,
    /// A merge of both (custom resolvers).
    Merged,
}

/// One audit entry per resolved conflict.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditRecord {
    /// Record id.
    pub id: Uuid,
    /// When the conflict was resolved (receiver's clock).
    pub at: Timestamp,
    /// The entity.
    pub key: EntityKey,
    /// The peer the incoming version came from.
    pub peer: NodeId,
    /// Strategy name, e.g. `server-wins`.
    pub strategy: String,
    /// Which version won.
    pub winner: ConflictSide,
    /// Writer and timestamp of the local version.
    pub local_origin: NodeId,
    /// `updated_at` of the local version.
    pub local_updated_at: Timestamp,
    /// Writer of the incoming version.
    pub incoming_origin: NodeId,
    /// `updated_at` of the incoming version.
    pub incoming_updated_at: Timestamp,
    /// Which exact versions met: [`crate::EntityType::sync_digest`] of the
    /// local and of the incoming version (a merge can share its writer and
    /// time with one of its inputs; its digest tells them apart).
    pub digests: [[u8; 32]; 2],
    /// What happened, in words.
    pub detail: String,
}

/// A losing (or parked) version kept whole: the object version history.
#[derive(Clone, Debug, PartialEq)]
pub struct VersionRecord {
    /// Record id.
    pub id: Uuid,
    /// The entity this is a version of.
    pub key: EntityKey,
    /// The node that wrote this version.
    pub source_node: NodeId,
    /// When it arrived here (receiver's clock).
    pub arrival_time: Timestamp,
    /// The complete version, every field included.
    pub data: Entity,
    /// How the conflict was resolved, e.g. `server-wins: hub version kept`.
    pub resolution: String,
}

/// A conflict left for a person to decide (manual strategy).
#[derive(Clone, Debug, PartialEq)]
pub struct OpenConflict {
    /// Conflict id, for [`crate::Engine::resolve_conflict`].
    pub id: Uuid,
    /// The entity.
    pub key: EntityKey,
    /// The version that stays current until someone decides.
    pub current: Entity,
    /// The competing version that arrived.
    pub incoming: Entity,
    /// The peer it came from.
    pub from: NodeId,
    /// When it arrived.
    pub arrived_at: Timestamp,
}
