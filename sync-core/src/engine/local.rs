//! Local writes: every write of a synced entity registers its change in the
//! same transaction (O(1) in the number of peers).

use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::{Ctx, Engine, apply};
use crate::clock::{Stamp, VersionVector};
use crate::conflict::fields as field_stamps;
use crate::conflict::{AuditRecord, ConflictSide};
use crate::entity::{Entity, EntityKey, FieldStamps};
use crate::entity_registry::EntityType;
use crate::error::{SyncError, WriteError};
use crate::ids::{NodeId, Timestamp};
use crate::serde_bridge;
use crate::store::{Store, StoreTxn};
use crate::value::Record;

/// One local write.
#[derive(Clone, Debug, PartialEq)]
pub enum LocalWrite {
    /// Create or replace an entity's fields.
    Put {
        /// Type and sync key.
        key: EntityKey,
        /// All field values (missing fields are absent, i.e. null).
        fields: Record,
    },
    /// Soft-delete an entity: a tombstone that travels.
    Delete {
        /// Type and sync key.
        key: EntityKey,
    },
}

/// A person's decision on an open manual conflict.
#[derive(Clone, Debug, PartialEq)]
pub enum ManualChoice {
    /// Keep the version that stayed current.
    KeepCurrent,
    /// Take the competing version.
    TakeIncoming,
    /// Store these merged fields.
    Merge(Record),
}

impl<S: Store> Engine<S> {
    /// A new UUIDv7 sync key: time-ordered (fast to index), with random bits
    /// from the engine's seeded generator.
    pub fn new_id(&mut self, now: Timestamp) -> Uuid {
        let mut random = [0u8; 10];
        self.rng.fill(&mut random);
        let millis = u64::try_from(now.as_millis()).unwrap_or(0);
        uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid()
    }

    /// Creates an entity of `entity_type` under a new UUIDv7 key.
    pub fn insert(
        &mut self,
        entity_type: &str,
        fields: Record,
        now: Timestamp,
    ) -> Result<Uuid, SyncError> {
        let id = self.new_id(now);
        self.put(EntityKey::new(entity_type, id), fields, now)?;
        Ok(id)
    }

    /// Creates or replaces an entity.
    pub fn put(&mut self, key: EntityKey, fields: Record, now: Timestamp) -> Result<(), SyncError> {
        self.write_batch(vec![LocalWrite::Put { key, fields }], now)
    }

    /// Soft-deletes an entity.
    pub fn delete(&mut self, key: EntityKey, now: Timestamp) -> Result<(), SyncError> {
        self.write_batch(vec![LocalWrite::Delete { key }], now)
    }

    /// Creates an entity from a typed struct (serde bridge).
    pub fn insert_typed<T: Serialize>(
        &mut self,
        entity_type: &str,
        value: &T,
        now: Timestamp,
    ) -> Result<Uuid, SyncError> {
        let fields = serde_bridge::to_record(self.registry.require(entity_type)?, value)?;
        self.insert(entity_type, fields, now)
    }

    /// Creates or replaces an entity from a typed struct (serde bridge).
    pub fn put_typed<T: Serialize>(
        &mut self,
        key: EntityKey,
        value: &T,
        now: Timestamp,
    ) -> Result<(), SyncError> {
        let fields = serde_bridge::to_record(self.registry.require(&key.entity_type)?, value)?;
        self.put(key, fields, now)
    }

    /// Reads an entity into a typed struct (serde bridge). Tombstones read as
    /// `None`.
    pub fn get_typed<T: DeserializeOwned>(
        &mut self,
        key: &EntityKey,
    ) -> Result<Option<T>, SyncError> {
        let Some(entity) = self.get(key)? else {
            return Ok(None);
        };
        if entity.is_deleted {
            return Ok(None);
        }
        let ty = self.registry.require(&key.entity_type)?;
        Ok(Some(serde_bridge::from_record(ty, &entity.fields)?))
    }

    /// Applies several writes in one transaction: all or none. References
    /// must name existing parents (or parents written earlier in the batch).
    pub fn write_batch(
        &mut self,
        writes: Vec<LocalWrite>,
        now: Timestamp,
    ) -> Result<(), SyncError> {
        let moving = self.prepare_writer(now);
        let (store, mut ctx) = self.parts(now);
        let mut txn = store.begin()?;
        if moving {
            txn.set_local_node(ctx.local)?;
        }
        for write in writes {
            local_write(&mut txn, &mut ctx, write, now)?;
        }
        super::cascade::finish(&mut txn, &mut ctx)?;
        txn.commit()?;
        let events = ctx.events;
        self.emit_all(events);
        self.writer_moved |= moving;
        Ok(())
    }

    /// Before the first local write of a session on an existing store:
    /// picks the session's writer id ([`crate::NodeInfo::writer`]) from the
    /// node id, the previous writer id, the seed and `now`, so a session on
    /// a restored copy of the store never reuses the writer id of a session
    /// that wrote the lost versions. Returns whether it moved (the caller
    /// records it in the write's transaction).
    pub(crate) fn prepare_writer(&mut self, now: Timestamp) -> bool {
        if self.writer_moved {
            return false;
        }
        let salt = self.config.seed ^ (now.as_micros() as u64).rotate_left(23);
        self.local.writer = self.local.next_writer(salt);
        true
    }

    /// Resolves an open manual conflict. The decision is written as a new
    /// local version, so it reaches every node.
    pub fn resolve_conflict(
        &mut self,
        id: Uuid,
        choice: ManualChoice,
        now: Timestamp,
    ) -> Result<(), SyncError> {
        let moving = self.prepare_writer(now);
        let (store, mut ctx) = self.parts(now);
        let mut txn = store.begin()?;
        if moving {
            txn.set_local_node(ctx.local)?;
        }
        let conflict = txn
            .take_open_conflict(id)?
            .ok_or(SyncError::ConflictNotFound(id))?;
        let (winner, base) = match &choice {
            ManualChoice::KeepCurrent => (ConflictSide::Local, &conflict.current),
            ManualChoice::TakeIncoming => (ConflictSide::Incoming, &conflict.incoming),
            ManualChoice::Merge(_) => (ConflictSide::Merged, &conflict.current),
        };
        let fields = match choice {
            ManualChoice::Merge(fields) => fields,
            _ => base.fields.clone(),
        };
        let current = txn.entity(&conflict.key)?;
        let floor = current.as_ref().map_or(base.updated_at, |c| {
            c.entity.updated_at.max(base.updated_at)
        });
        let floor = [&conflict.current, &conflict.incoming]
            .into_iter()
            .chain(current.as_ref().map(|c| &c.entity))
            .filter_map(|e| e.clock.latest())
            .fold(floor, Timestamp::max);
        let ty = ctx.registry.require(&conflict.key.entity_type)?;
        // The decision includes both versions of the conflict and whatever
        // is current now: it supersedes all of them, everywhere.
        let mut clock = conflict.current.clock.merged(&conflict.incoming.clock);
        if let Some(current) = &current {
            clock = clock.merged(&current.entity.clock);
        }
        let updated_at = now.max(floor.add_micros(1));
        let mut decided = Entity {
            key: conflict.key.clone(),
            updated_at,
            is_deleted: base.is_deleted,
            origin: ctx.local.id,
            fields,
            clock: VersionVector::new(),
            field_stamps: FieldStamps::new(),
        };
        clock.observe(ctx.local.writer, own_stamp(ty, &decided));
        decided.clock = clock;
        // The decision is a write on top of the current version.
        let previous = current.as_ref().map(|c| &c.entity);
        field_stamps::stamp_write(ty, previous, &mut decided);
        txn.put_entity(&decided, ctx.local.id, now)?;
        super::cascade::touched(&mut ctx, &decided.key);
        super::cascade::finish(&mut txn, &mut ctx)?;
        let audit = AuditRecord {
            id: Ctx::record_id(
                "manual-resolution",
                &conflict.key,
                now,
                &[&conflict.current, &conflict.incoming],
            ),
            at: now,
            key: conflict.key.clone(),
            peer: conflict.from,
            strategy: "manual".into(),
            winner,
            local_origin: conflict.current.origin,
            local_updated_at: conflict.current.updated_at,
            incoming_origin: conflict.incoming.origin,
            incoming_updated_at: conflict.incoming.updated_at,
            digests: [
                ty.sync_digest(&conflict.current),
                ty.sync_digest(&conflict.incoming),
            ],
            detail: format!("resolved by a person: {winner:?} version chosen"),
        };
        txn.add_audit(&audit)?;
        txn.commit()?;
        let events = ctx.events;
        self.emit_all(events);
        self.writer_moved |= moving;
        Ok(())
    }
}

pub(crate) fn local_write<T: StoreTxn>(
    txn: &mut T,
    ctx: &mut Ctx<'_>,
    write: LocalWrite,
    now: Timestamp,
) -> Result<(), SyncError> {
    let (key, existing, fields, is_deleted) = match write {
        LocalWrite::Put { key, mut fields } => {
            // Absent and null are the same: top-level nulls are not stored.
            fields.retain(|_, value| !value.is_null());
            let ty = ctx.registry.require(&key.entity_type)?;
            ty.validate(&fields)?;
            check_parents(txn, ctx, &key, &fields)?;
            let existing = txn.entity(&key)?;
            (key, existing, fields, false)
        }
        LocalWrite::Delete { key } => {
            ctx.registry.require(&key.entity_type)?;
            let existing = txn
                .entity(&key)?
                .ok_or_else(|| WriteError::NotFound(key.clone()))?;
            let fields = existing.entity.fields.clone();
            (key, Some(existing), fields, true)
        }
    };
    let updated_at = existing.as_ref().map_or(now, |e| after(&e.entity, now));
    let mut entity = Entity {
        key,
        updated_at,
        is_deleted,
        origin: ctx.local.id,
        fields,
        clock: VersionVector::new(),
        field_stamps: FieldStamps::new(),
    };
    let previous = existing.map(|e| e.entity);
    let ty = ctx.registry.require(&entity.key.entity_type)?;
    stamp_as_write(ty, ctx.local.writer, previous.as_ref(), &mut entity);
    txn.put_entity(&entity, ctx.local.id, now)?;
    super::cascade::touched(ctx, &entity.key);
    apply::release_parked(txn, ctx, &entity.key, now)
}

/// Stamps `entity` as a write by `writer` replacing `previous`: its clock
/// follows every write the replaced version includes plus this one, and
/// per field the write that last changed it (types merged per field).
pub(crate) fn stamp_as_write(
    ty: &EntityType,
    writer: NodeId,
    previous: Option<&Entity>,
    entity: &mut Entity,
) {
    let mut clock = previous.map(|e| e.clock.clone()).unwrap_or_default();
    clock.observe(writer, own_stamp(ty, entity));
    entity.clock = clock;
    field_stamps::stamp_write(ty, previous, entity);
}

/// The stamp of a local write in its own clock.
pub(crate) fn own_stamp(ty: &EntityType, entity: &Entity) -> Stamp {
    Stamp {
        at: entity.updated_at,
        tag: ty.write_tag(entity),
    }
}

/// The time of a local write replacing `previous`: `now`, or just after
/// every write `previous` includes if this node's clock is behind them (a
/// hybrid logical clock per entity). So a version written after seeing
/// another always orders after it, and this node's entry in the clock
/// always moves forward, even after its clock stepped back.
pub(crate) fn after(previous: &Entity, now: Timestamp) -> Timestamp {
    let seen = previous
        .clock
        .latest()
        .map_or(previous.updated_at, |t| t.max(previous.updated_at));
    now.max(seen.add_micros(1))
}

fn check_parents<T: StoreTxn>(
    txn: &T,
    ctx: &Ctx<'_>,
    key: &EntityKey,
    fields: &Record,
) -> Result<(), SyncError> {
    let Some(ty) = ctx.registry.get(&key.entity_type) else {
        return Ok(());
    };
    for (field, target) in ty.references() {
        let Some(parent_id) = fields.get(field).and_then(|v| v.as_uuid()) else {
            continue;
        };
        let parent = EntityKey::new(target, parent_id);
        if txn.entity(&parent)?.is_none() {
            return Err(WriteError::MissingParent {
                child: key.clone(),
                field: field.to_owned(),
                parent,
            }
            .into());
        }
    }
    Ok(())
}
