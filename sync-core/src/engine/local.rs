//! Local writes: every write of a synced entity registers its change in the
//! same transaction (O(1) in the number of peers).

use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::{Ctx, Engine, apply};
use crate::conflict::{AuditRecord, ConflictSide};
use crate::entity::{Entity, EntityKey};
use crate::error::{SyncError, WriteError};
use crate::ids::Timestamp;
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
        let (store, mut ctx) = self.parts(now);
        let mut txn = store.begin()?;
        for write in writes {
            local_write(&mut txn, &mut ctx, write, now)?;
        }
        txn.commit()?;
        let events = ctx.events;
        self.events.extend(events);
        Ok(())
    }

    /// Resolves an open manual conflict. The decision is written as a new
    /// local version, so it reaches every node.
    pub fn resolve_conflict(
        &mut self,
        id: Uuid,
        choice: ManualChoice,
        now: Timestamp,
    ) -> Result<(), SyncError> {
        let (store, ctx) = self.parts(now);
        let mut txn = store.begin()?;
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
        let ty = ctx.registry.require(&conflict.key.entity_type)?;
        let based_on = apply::local_base(ty, current.as_ref(), ctx.local.id);
        let decided = Entity {
            key: conflict.key.clone(),
            updated_at: now.max(floor.add_micros(1)),
            is_deleted: base.is_deleted,
            origin: ctx.local.id,
            fields,
        };
        txn.put_version(&decided, ctx.local.id, now, based_on)?;
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
            detail: format!("resolved by a person: {winner:?} version chosen"),
        };
        txn.add_audit(&audit)?;
        txn.commit()?;
        let events = ctx.events;
        self.events.extend(events);
        Ok(())
    }
}

fn local_write<T: StoreTxn>(
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
    // A later local write must sort after the previous version even if this
    // node's clock stepped back.
    let updated_at = existing
        .as_ref()
        .map_or(now, |e| now.max(e.entity.updated_at.add_micros(1)));
    let entity = Entity {
        key,
        updated_at,
        is_deleted,
        origin: ctx.local.id,
        fields,
    };
    let ty = ctx.registry.require(&entity.key.entity_type)?;
    let base = apply::local_base(ty, existing.as_ref(), ctx.local.id);
    txn.put_version(&entity, ctx.local.id, now, base)?;
    apply::release_parked(txn, ctx, &entity.key, now)
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
