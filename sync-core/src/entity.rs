//! Entities: the records that sync, and the metadata a store keeps beside them.

use std::collections::BTreeMap;
use std::fmt;

use uuid::Uuid;

use crate::clock::{Dot, Stamp, VersionVector};
use crate::ids::{NodeId, Timestamp};
use crate::value::{Record, record_canonical_bytes};

/// The field a tombstone carries, set to `true`, when the entity was
/// removed outright (a SQL `DELETE`, `REPLACE`, a foreign-key cascade, an
/// entity its hub refused) rather than soft-deleted. It travels inside the
/// entity's record like any field a peer's schema lacks; a store with rows
/// (SQLite) removes the row for it, where a plain tombstone only marks the
/// row deleted. Other stores need not know it.
pub const REMOVED_FIELD: &str = "_sync_removed";

/// Identifies one entity: its registered type name and its UUID sync key.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct EntityKey {
    /// Registered type name, e.g. `DailyReport`.
    pub entity_type: String,
    /// The UUID sync key (separate from any database primary key).
    pub id: Uuid,
}

impl EntityKey {
    /// A key for `entity_type` and `id`.
    pub fn new(entity_type: impl Into<String>, id: Uuid) -> Self {
        EntityKey {
            entity_type: entity_type.into(),
            id,
        }
    }
}

impl fmt::Display for EntityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.entity_type, self.id)
    }
}

/// One version of an entity, as it travels between nodes.
#[derive(Clone, Debug, PartialEq)]
pub struct Entity {
    /// Type and sync key.
    pub key: EntityKey,
    /// When this version was written, by the writer's clock (UTC).
    pub updated_at: Timestamp,
    /// Soft-delete flag: deletions travel as tombstones.
    pub is_deleted: bool,
    /// The node that wrote this version.
    pub origin: NodeId,
    /// Field values (excluded fields never leave their node).
    pub fields: Record,
    /// The writes this version includes (see [`crate::clock`]): what tells a
    /// late copy of an older version from a concurrent edit.
    pub clock: VersionVector,
    /// Per field, the write that last changed it, for the fields whose last
    /// change is not this version's own write (see [`FieldStamps`]).
    pub field_stamps: FieldStamps,
}

/// Per field, the dot of the write that last changed it: what lets
/// [`crate::ConflictStrategy::FieldMerge`] tell which side of two concurrent
/// versions changed a field. Only fields whose last change is *not* the
/// version's own write are listed (see [`crate::EntityType::field_dot`]), so
/// a version that wrote every field, a version of a type merged otherwise
/// (the engine keeps no stamps for those) and a version from a peer older
/// than field stamps all carry none: every field then counts as changed by
/// the version's own write. A name may be listed for a field with no value
/// (it was cleared).
pub type FieldStamps = BTreeMap<String, Dot>;

impl Entity {
    /// Whether two versions hold the same content: fields, deletion flag,
    /// timestamp, writer and causal history (field stamps included).
    pub fn same_version(&self, other: &Entity) -> bool {
        self.same_content(other)
            && self.clock == other.clock
            && self.field_stamps == other.field_stamps
    }

    /// Whether two versions hold the same content, whatever their histories:
    /// fields, deletion flag, timestamp and writer.
    pub fn same_content(&self, other: &Entity) -> bool {
        self.key == other.key
            && self.updated_at == other.updated_at
            && self.is_deleted == other.is_deleted
            && self.origin == other.origin
            && self.fields == other.fields
    }

    /// A first local write's version: its clock holds only this write.
    pub fn new_version(
        key: EntityKey,
        updated_at: Timestamp,
        is_deleted: bool,
        origin: NodeId,
        fields: Record,
    ) -> Entity {
        Entity {
            key,
            updated_at,
            is_deleted,
            origin,
            fields,
            clock: VersionVector::new(),
            field_stamps: FieldStamps::new(),
        }
        .with_own_write()
    }

    /// This version with its own write added to its clock: the writer's
    /// entry set to `updated_at`, tagged with [`Entity::write_tag`].
    pub fn with_own_write(mut self) -> Entity {
        let tag = self.write_tag();
        self.clock.observe(
            self.origin,
            Stamp {
                at: self.updated_at,
                tag,
            },
        );
        self
    }

    /// The content tag of this version as a write: the first 4 bytes of
    /// [`Entity::content_digest`]. See [`crate::clock::Stamp`].
    pub fn write_tag(&self) -> u32 {
        tag_of(&self.content_digest())
    }

    /// SHA-256 over a canonical encoding of this version's content (its
    /// clock aside): equal versions give equal digests on every node.
    pub fn content_digest(&self) -> [u8; 32] {
        let mut bytes = Vec::with_capacity(64);
        bytes.extend(self.key.entity_type.as_bytes());
        bytes.push(0);
        bytes.extend(self.key.id.as_bytes());
        bytes.extend(self.updated_at.as_micros().to_be_bytes());
        bytes.push(u8::from(self.is_deleted));
        bytes.extend(self.origin.as_bytes());
        record_canonical_bytes(&self.fields, &mut bytes);
        let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        out
    }
}

/// The first 4 bytes of a digest, as a write's content tag.
pub(crate) fn tag_of(digest: &[u8; 32]) -> u32 {
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// Kind of change, as named on the wire and in the `sync_changes` view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    /// The entity is new to the recipient.
    Insert,
    /// The entity existed at the recipient.
    Update,
    /// The entity was deleted (a tombstone).
    Delete,
}

/// An entity as a store keeps it: the latest version plus change-registry
/// metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEntity {
    /// The current version.
    pub entity: Entity,
    /// Local change sequence of the latest change (strictly increasing per
    /// store; the change registry's cursor).
    pub seq: u64,
    /// Local change sequence at which the entity was first stored; a peer
    /// that has acknowledged less than this has never seen the entity.
    pub created_seq: u64,
    /// The node this version arrived from (this node for local writes). A
    /// change is never sent back to the node it came from.
    pub source: NodeId,
    /// When this version was stored here (the `now` of the local write or of
    /// the packet that brought it): its arrival time.
    pub stored_at: Timestamp,
}

impl StoredEntity {
    /// The operation this change is for a peer that acknowledged everything up
    /// to `acked_seq`.
    pub fn operation_for(&self, acked_seq: u64) -> Operation {
        if self.entity.is_deleted {
            Operation::Delete
        } else if self.created_seq > acked_seq {
            Operation::Insert
        } else {
            Operation::Update
        }
    }
}
