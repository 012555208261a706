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
    let Cascades { deleted, revived } = std::mem::take(&mut ctx.cascades);
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
    Ok(())
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
    ctx.events.push(Event::Restored {
        key: restored.key,
        parent: parent.clone(),
    });
    Ok(true)
}
