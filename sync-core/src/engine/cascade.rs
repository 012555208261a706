//! Children deleted with their parent come back when the parent's deletion
//! loses.
//!
//! A node that deletes a parent usually deletes its children with it (a
//! foreign-key `ON DELETE CASCADE`, or the application doing the same by
//! hand), and all of those deletions travel. If another node edited the
//! parent concurrently and the edit wins the conflict, the parent lives on;
//! its children must too, or they would vanish with no record. The rule,
//! applied wherever the conflict is resolved (in practice the hub):
//!
//! - A child's deletion that arrives over a live version of it, from the
//!   same writer that deleted the parent it referenced, is a deletion *with
//!   the parent*. Its last live version is kept as a link under the parent
//!   (in the store's metadata, see [`link_key`]).
//! - When a deletion of that parent loses a conflict to a live version, the
//!   children deleted with it by the same writer, and still deleted, are
//!   written back with the values they had, as this node's own new versions
//!   (a descendant of the deletion everywhere, so every node takes them
//!   plainly), and [`crate::Event::Restored`] reports each.
//!
//! **Orphans.** The hub never keeps a live entity under a deleted parent.
//! A child added or edited on one node while another node deleted its
//! parent (the two reach the hub in either order), a child whose parent
//! the hub's own application deletes, or a keep-both copy made under a
//! deleted parent is an *orphan*. At the end of the transaction that
//! stores either version (so a deleter's own deletions of the children,
//! which travel beside the parent's, are taken first), the hub:
//!
//! - deletes the orphan as its own write (a descendant of the child's live
//!   version, so every node, the child's writer included, takes it
//!   plainly), and its own live children in turn;
//! - keeps the child's live version in the version history (resolution
//!   `orphaned: …`) and links it under the parent as above, so it comes
//!   back if the parent's deletion later loses a conflict;
//! - reports [`crate::Event::Orphaned`] with the live version and the
//!   deletion.
//!
//! This is `ON DELETE CASCADE` settled at the one place that sees both
//! writes: nothing is dropped without a record, and every node ends with
//! the same state. An application that wants the child kept re-creates the
//! parent (or points the child at another one) and writes the child again
//! from its version history.
//!
//! A store that removes children itself while applying a parent's removal
//! (the SQLite store's own cascade) records the same links, so those
//! children come back too. A child deleted by the same writer in the same
//! session as its parent but on purpose, before it, is restored as well:
//! delete it again once the parent's conflict is settled.

use std::collections::BTreeMap;

use super::Ctx;
use crate::clock::VersionVector;
use crate::conflict::VersionRecord;
use crate::entity::{Entity, EntityKey, FieldStamps, REMOVED_FIELD};
use crate::error::{StoreError, SyncError};
use crate::events::Event;
use crate::ids::NodeId;
use crate::store::StoreTxn;
use crate::store_blob;

/// The prefix of every cascade link in a store's metadata.
const PREFIX: &str = "cascade/";

/// The metadata key of the link from `parent` to `child`, a child deleted
/// with it. Stores that cascade deletions themselves record links under
/// this key with [`encode_link`].
pub fn link_key(parent: &EntityKey, child: &EntityKey) -> String {
    format!(
        "{}{}/{}",
        parent_prefix(parent),
        child.entity_type,
        child.id
    )
}

fn parent_prefix(parent: &EntityKey) -> String {
    format!("{PREFIX}{}/{}/", parent.entity_type, parent.id)
}

/// The value of a cascade link: the node whose deletion of the parent took
/// the child with it, and the child's last live version.
pub fn encode_link(deleted_by: NodeId, child: &Entity) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(256);
    bytes.extend_from_slice(deleted_by.0.as_bytes());
    bytes.extend(store_blob::encode_entity(child));
    bytes
}

/// Reads a link written by [`encode_link`].
pub fn decode_link(bytes: &[u8]) -> Result<(NodeId, Entity), StoreError> {
    if bytes.len() < 16 {
        return Err(StoreError::Corrupt {
            detail: "a cascade link is shorter than its node id".into(),
        });
    }
    let (id, blob) = bytes.split_at(16);
    let mut raw = [0u8; 16];
    raw.copy_from_slice(id);
    Ok((
        NodeId(uuid::Uuid::from_bytes(raw)),
        store_blob::decode_entity(blob)?,
    ))
}

/// What one packet's application learned about deletions with parents.
#[derive(Default)]
pub(crate) struct Cascades {
    /// Children deleted over a live version: the parent each referenced,
    /// the child's last live version and the writer of its deletion.
    deleted: Vec<(EntityKey, Entity, NodeId)>,
    /// Parents whose deletion lost a conflict to a live version, with the
    /// writer of the losing deletion.
    revived: BTreeMap<EntityKey, NodeId>,
    /// At the hub: entities that got a new version, checked for orphans
    /// once the packet is in.
    touched: Vec<EntityKey>,
}

/// Notes that an incoming deletion `tombstone` is about to replace the live
/// `live` version of an entity: if it references parents, it may be a
/// deletion with one of them.
pub(crate) fn child_deleted(ctx: &mut Ctx<'_>, live: &Entity, tombstone: &Entity) {
    if live.is_deleted || !tombstone.is_deleted {
        return;
    }
    let Some(ty) = ctx.registry.get(&live.key.entity_type) else {
        return;
    };
    for (field, target) in ty.references() {
        let Some(parent_id) = live.fields.get(field).and_then(|v| v.as_uuid()) else {
            continue;
        };
        let parent = EntityKey::new(target, parent_id);
        if parent != live.key {
            ctx.cascades
                .deleted
                .push((parent, live.clone(), tombstone.origin));
        }
    }
}

/// Notes that a deletion of `parent` written by `deleted_by` lost a
/// conflict: the parent is live.
pub(crate) fn parent_revived(ctx: &mut Ctx<'_>, parent: EntityKey, deleted_by: NodeId) {
    ctx.cascades.revived.insert(parent, deleted_by);
}

/// At the end of a packet: restores the children of every revived parent
/// (those deleted in this packet and those linked earlier, and their own
/// children in turn), and links the children whose parent stays deleted by
/// the writer that deleted them.
pub(crate) fn finish<T: StoreTxn>(txn: &mut T, ctx: &mut Ctx<'_>) -> Result<(), SyncError> {
    let Cascades {
        deleted,
        revived,
        touched,
    } = std::mem::take(&mut ctx.cascades);
    let mut by_parent: BTreeMap<EntityKey, Vec<(Entity, NodeId)>> = BTreeMap::new();
    for (parent, child, deleted_by) in deleted {
        by_parent
            .entry(parent)
            .or_default()
            .push((child, deleted_by));
    }
    // Each restore turns a tombstone live, so the queue runs dry.
    let mut queue: Vec<(EntityKey, NodeId)> = revived.into_iter().collect();
    while let Some((parent, loser)) = queue.pop() {
        let mut children = by_parent.remove(&parent).unwrap_or_default();
        for (key, bytes) in txn.meta_with_prefix(&parent_prefix(&parent))? {
            txn.put_meta(&key, None)?;
            let (deleted_by, child) = decode_link(&bytes)?;
            children.push((child, deleted_by));
        }
        for (child, deleted_by) in children {
            let key = child.key.clone();
            if deleted_by == loser && restore(txn, ctx, &parent, child)? {
                queue.push((key, loser));
            }
        }
    }
    for (parent, children) in by_parent {
        let parent_deleted_by = txn
            .entity(&parent)?
            .filter(|p| p.entity.is_deleted)
            .map(|p| p.entity.origin);
        for (child, deleted_by) in children {
            if parent_deleted_by == Some(deleted_by) {
                let key = link_key(&parent, &child.key);
                txn.put_meta(&key, Some(&encode_link(deleted_by, &child)))?;
            }
        }
    }
    // Restored children are checked too: a child of two parents may come
    // back under one that is still deleted.
    let mut touched = touched;
    touched.append(&mut ctx.cascades.touched);
    settle_orphans(txn, ctx, touched)
}

/// Writes `live` back as this node's new version of a child that is still
/// deleted, descending from its tombstone; returns whether it did.
fn restore<T: StoreTxn>(
    txn: &mut T,
    ctx: &mut Ctx<'_>,
    parent: &EntityKey,
    live: Entity,
) -> Result<bool, SyncError> {
    let Some(current) = txn.entity(&live.key)? else {
        return Ok(false);
    };
    if !current.entity.is_deleted || ctx.quarantine.contains_key(&live.key) {
        // Written again since (re-created, or restored already), or the
        // store refused the restored version in an earlier attempt at this
        // packet: the child stays deleted rather than block the packet.
        return Ok(false);
    }
    let ty = ctx.registry.require(&live.key.entity_type)?;
    let mut restored_fields = live.fields;
    restored_fields.remove(REMOVED_FIELD);
    let mut restored = Entity {
        key: live.key,
        updated_at: super::local::after(&current.entity, ctx.now),
        is_deleted: false,
        origin: ctx.local.id,
        fields: restored_fields,
        clock: VersionVector::new(),
        field_stamps: FieldStamps::new(),
    };
    super::local::stamp_as_write(ty, ctx.local.writer, Some(&current.entity), &mut restored);
    if ty.versioning_enabled() {
        // The deletion it undoes stays on record.
        txn.add_version(&VersionRecord {
            id: Ctx::record_id(
                "cascade-restore",
                &current.entity.key,
                ctx.now,
                &[&current.entity],
            ),
            key: current.entity.key.clone(),
            source_node: current.entity.origin,
            arrival_time: current.stored_at,
            data: current.entity.clone(),
            resolution: format!(
                "cascade-restored: deleted with its parent {parent}, whose deletion lost to an edit"
            ),
        })?;
    }
    txn.put_entity(&restored, ctx.local.id, ctx.now)?;
    touched(ctx, &restored.key);
    ctx.events.push(Event::Restored {
        key: restored.key,
        parent: parent.clone(),
    });
    Ok(true)
}

/// Notes, at the hub, that `key` got a new version in this packet: the end
/// of the packet checks it for orphans (see the module docs).
/// Types that neither reference nor are referenced cannot make orphans and
/// are not noted (no read at the end of the packet for them).
pub(crate) fn touched(ctx: &mut Ctx<'_>, key: &EntityKey) {
    if ctx.is_hub() && in_a_reference(ctx, &key.entity_type) {
        ctx.cascades.touched.push(key.clone());
    }
}

/// Whether `entity_type` has a reference field or is the target of one.
fn in_a_reference(ctx: &Ctx<'_>, entity_type: &str) -> bool {
    let registry = ctx.registry;
    registry
        .get(entity_type)
        .is_some_and(|ty| ty.references().next().is_some())
        || registry
            .types()
            .any(|ty| ty.references().any(|(_, target)| target == entity_type))
}

/// At the end of a packet, at the hub: settles the orphans that the
/// packet's versions make. A live child whose parent is deleted here is
/// deleted; a deleted parent's live children here are deleted, and their
/// own children in turn. Run once the whole packet is in, so that a
/// deleter's own deletions of the children, which travel beside the
/// parent's, are seen first.
fn settle_orphans<T: StoreTxn>(
    txn: &mut T,
    ctx: &mut Ctx<'_>,
    touched: Vec<EntityKey>,
) -> Result<(), SyncError> {
    let mut deleted_parents: Vec<Entity> = Vec::new();
    for key in touched {
        let Some(stored) = txn.entity(&key)? else {
            continue;
        };
        let entity = stored.entity;
        if entity.is_deleted {
            deleted_parents.push(entity);
            continue;
        }
        if let Some(parent) = deleted_parent_of(txn, ctx, &entity)? {
            if let Some(tombstone) = orphan(txn, ctx, &parent, entity)? {
                deleted_parents.push(tombstone);
            }
        }
    }
    // Each orphan turns a live child deleted, so the queue runs dry.
    while let Some(parent) = deleted_parents.pop() {
        for child in live_children(txn, ctx, &parent.key)? {
            if let Some(tombstone) = orphan(txn, ctx, &parent, child)? {
                deleted_parents.push(tombstone);
            }
        }
    }
    Ok(())
}

/// The first parent of `entity` that is deleted in this store.
fn deleted_parent_of<T: StoreTxn>(
    txn: &T,
    ctx: &Ctx<'_>,
    entity: &Entity,
) -> Result<Option<Entity>, SyncError> {
    let Some(ty) = ctx.registry.get(&entity.key.entity_type) else {
        return Ok(None);
    };
    for (field, target) in ty.references() {
        let Some(parent_id) = entity.fields.get(field).and_then(|v| v.as_uuid()) else {
            continue;
        };
        let parent_key = EntityKey::new(target, parent_id);
        if parent_key == entity.key {
            continue;
        }
        if let Some(parent) = txn.entity(&parent_key)?.filter(|p| p.entity.is_deleted) {
            return Ok(Some(parent.entity));
        }
    }
    Ok(None)
}

/// The live entities that reference `parent` through any reference field
/// of any type, looked up through the store ([`StoreTxn::referencing`]).
fn live_children<T: StoreTxn>(
    txn: &T,
    ctx: &Ctx<'_>,
    parent: &EntityKey,
) -> Result<Vec<Entity>, SyncError> {
    // By key: a child that names the parent in two fields is one child.
    let mut found = BTreeMap::new();
    for ty in ctx.registry.types() {
        for (field, _) in ty
            .references()
            .filter(|(_, target)| *target == parent.entity_type)
        {
            for child in txn.referencing(ty.name(), field, parent.id)? {
                let child = child.entity;
                if !child.is_deleted && child.key != *parent {
                    found.insert(child.key.clone(), child);
                }
            }
        }
    }
    Ok(found.into_values().collect())
}

/// Deletes the live `child` of the deleted `parent` as this node's write
/// and returns the deletion, or `None` when the child is no orphan.
fn orphan<T: StoreTxn>(
    txn: &mut T,
    ctx: &mut Ctx<'_>,
    parent: &Entity,
    child: Entity,
) -> Result<Option<Entity>, SyncError> {
    if ctx.quarantine.contains_key(&child.key) {
        // The store refused this child's deletion in an earlier attempt at
        // this packet: it stays as it is rather than block the packet.
        return Ok(None);
    }
    let ty = ctx.registry.require(&child.key.entity_type)?;
    let mut tombstone = Entity {
        key: child.key.clone(),
        updated_at: super::local::after(&child, ctx.now),
        is_deleted: true,
        origin: ctx.local.id,
        fields: child.fields.clone(),
        clock: VersionVector::new(),
        field_stamps: FieldStamps::new(),
    };
    super::local::stamp_as_write(ty, ctx.local.writer, Some(&child), &mut tombstone);
    if ty.versioning_enabled() {
        txn.add_version(&VersionRecord {
            id: Ctx::record_id("orphan", &child.key, ctx.now, &[&child]),
            key: child.key.clone(),
            source_node: child.origin,
            arrival_time: ctx.now,
            data: child.clone(),
            resolution: format!(
                "orphaned: written concurrently with the deletion of its parent {}; deleted by the hub, and restored if that deletion loses",
                parent.key
            ),
        })?;
    }
    txn.put_meta(
        &link_key(&parent.key, &child.key),
        Some(&encode_link(parent.origin, &child)),
    )?;
    txn.put_entity(&tombstone, ctx.local.id, ctx.now)?;
    ctx.events.push(Event::Orphaned {
        key: child.key.clone(),
        parent: parent.key.clone(),
        live: Box::new(child),
        deletion: Box::new(tombstone.clone()),
    });
    Ok(Some(tombstone))
}
