//! Events the embedding application consumes, drained with
//! [`crate::Engine::poll_event`].

use uuid::Uuid;

use crate::conflict::ConflictSide;
use crate::entity::{Entity, EntityKey};
use crate::ids::{NodeId, Timestamp};

/// Something the application may want to react to.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A change from a peer was applied to the local store.
    Applied(AppliedChange),
    /// A conflict was detected and resolved (or queued for a person).
    Conflict(ConflictEvent),
    /// Progress of a sync session with a peer.
    Progress(Progress),
    /// A security-relevant event (also recorded in the store).
    Security(SecurityEvent),
    /// The sync state with a peer was re-initialized after one side was found
    /// restored from an older copy of its store.
    PairReinitialized {
        /// The peer.
        peer: NodeId,
        /// What was detected.
        reason: String,
    },
    /// The peer refused our packet.
    Rejected {
        /// The peer.
        peer: NodeId,
        /// Its explanation.
        message: String,
    },
    /// A change was refused and quarantined (see [`crate::rejected`]): by
    /// this store (a version `peer` sent), or by `peer` (one of ours).
    ChangeRejected {
        /// The peer that sent the version, or that refused it.
        peer: NodeId,
        /// The entity.
        key: crate::entity::EntityKey,
        /// Which side refused it.
        by: crate::rejected::RejectedBy,
        /// The store's reason.
        reason: String,
    },
    /// An entity left this node's scope at the hub (`peer`) and was removed
    /// here, locally only (see [`crate::scope`]).
    LeftScope {
        /// The hub.
        peer: NodeId,
        /// The entity removed.
        key: crate::entity::EntityKey,
    },
    /// A change from `peer` references a parent this node does not hold yet:
    /// it waits ([`crate::Engine::parked`]) until the parent arrives, or
    /// until [`crate::EngineConfig::max_park_ms`] has passed.
    Parked {
        /// The sender.
        peer: NodeId,
        /// The waiting change.
        key: crate::entity::EntityKey,
        /// The parent it waits for.
        waiting_for: crate::entity::EntityKey,
    },
    /// A change waited for its parent longer than
    /// [`crate::EngineConfig::max_park_ms`] and was applied without it.
    ParkExpired {
        /// The change applied.
        key: crate::entity::EntityKey,
        /// The parent that never arrived.
        waiting_for: crate::entity::EntityKey,
    },
    /// A child deleted together with its parent was written back because
    /// the parent's deletion lost a conflict to an edit (see
    /// [`crate::engine::cascade`]). The restored version travels to every
    /// node as this node's own write.
    Restored {
        /// The child written back.
        key: crate::entity::EntityKey,
        /// The parent whose deletion lost.
        parent: crate::entity::EntityKey,
    },
    /// The hub deleted a live child whose parent is deleted: an orphan,
    /// typically written on one node while another deleted the parent (see
    /// [`crate::engine::cascade`]). The child's live version is kept in its
    /// version history and linked to the parent, so it comes back if the
    /// parent's deletion later loses a conflict. The deletion travels to
    /// every node as the hub's own write.
    Orphaned {
        /// The child deleted.
        key: crate::entity::EntityKey,
        /// Its deleted parent.
        parent: crate::entity::EntityKey,
        /// The child's live version that the deletion replaced (also in
        /// its version history when the type keeps one).
        live: Box<crate::entity::Entity>,
        /// The hub's deletion of the child.
        deletion: Box<crate::entity::Entity>,
    },
    /// A sync session finished: nothing pending either way, all acknowledged.
    SyncComplete {
        /// The peer.
        peer: NodeId,
    },
    /// At a node: the hub sent schema migrations this node needs (see
    /// [`crate::migration`]). Apply them ([`crate::Engine::pending_migrations`]);
    /// until then the hub sends no entity change.
    MigrationsReceived {
        /// The versions they bring, oldest first.
        versions: Vec<crate::schema_version::SchemaVersion>,
    },
    /// At a node: a migration was applied; packets name its version.
    MigrationApplied {
        /// The node's schema version now.
        version: crate::schema_version::SchemaVersion,
    },
    /// At a node: a migration could not be applied; the node stays at its
    /// schema and the hub is told.
    MigrationFailed {
        /// Which, and the store's error.
        failure: crate::migration::MigrationFailure,
    },
    /// At the hub: a node reported a migration it could not apply (once per
    /// new report).
    NodeMigrationFailed {
        /// The node.
        peer: NodeId,
        /// Which, and the node's error.
        failure: crate::migration::MigrationFailure,
    },
}

impl Event {
    /// Calls the matching hook for an `Applied` event; other events are
    /// ignored.
    pub fn dispatch(&self, hooks: &mut impl ApplyHooks) {
        if let Event::Applied(change) = self {
            match change.kind {
                ChangeKind::Created => hooks.on_create(&change.entity),
                ChangeKind::Updated => hooks.on_update(&change.entity),
                ChangeKind::Deleted => hooks.on_delete(&change.entity),
            }
        }
    }
}

/// Hooks called per applied remote change (via [`Event::dispatch`]), so an
/// application can refresh views or caches per entity type.
pub trait ApplyHooks {
    /// An entity new to this node arrived.
    fn on_create(&mut self, _entity: &Entity) {}
    /// An existing entity was updated by a peer.
    fn on_update(&mut self, _entity: &Entity) {}
    /// An entity was deleted by a peer (soft delete: the tombstone is kept).
    fn on_delete(&mut self, _entity: &Entity) {}
}

/// Whether an applied change created, updated or deleted the entity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// New here.
    Created,
    /// Existed here.
    Updated,
    /// Now a tombstone.
    Deleted,
}

/// A remote change applied locally.
#[derive(Clone, Debug, PartialEq)]
pub struct AppliedChange {
    /// The peer it came from.
    pub peer: NodeId,
    /// Created, updated or deleted.
    pub kind: ChangeKind,
    /// The version now stored.
    pub entity: Entity,
}

/// A resolved (or queued) conflict.
#[derive(Clone, Debug, PartialEq)]
pub struct ConflictEvent {
    /// The entity.
    pub key: EntityKey,
    /// The peer whose version conflicted.
    pub peer: NodeId,
    /// Strategy name.
    pub strategy: String,
    /// Which version won.
    pub winner: ConflictSide,
    /// Where the losing version was kept (version history record id).
    pub version_record: Option<Uuid>,
    /// The keep-both copy's id.
    pub copy: Option<Uuid>,
    /// The open manual conflict's id.
    pub open_conflict: Option<Uuid>,
}

/// Counts for one sync session with a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// The peer.
    pub peer: NodeId,
    /// Entity changes sent in this session.
    pub sent: u64,
    /// Entity changes received in this session.
    pub received: u64,
    /// Changes this node had pending for the peer when the session started.
    pub total_to_send: u64,
    /// Changes the peer reported pending for us, as of its latest packet.
    pub remaining_to_receive: u64,
}

/// What kind of security event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SecurityKind {
    /// A packet from an unregistered node.
    UnknownSender,
    /// A packet from a revoked node.
    RevokedSender,
    /// A packet addressed elsewhere.
    WrongRecipient,
    /// Damaged or malformed bytes.
    Corrupt,
    /// Refused schema version.
    SchemaRejected,
    /// A peer (or this node) was restored from an older copy of its store.
    RestoreDetected,
    /// Authentication failed.
    AuthFailed,
    /// A peer's clock ran further ahead than the configured maximum offset.
    ClockAhead,
}

/// A security event, kept in the store.
#[derive(Clone, Debug, PartialEq)]
pub struct SecurityEvent {
    /// When (receiver's clock).
    pub at: Timestamp,
    /// The peer involved, if known.
    pub peer: Option<NodeId>,
    /// What kind.
    pub kind: SecurityKind,
    /// Details for a person.
    pub detail: String,
}
