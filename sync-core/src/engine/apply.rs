//! Applying one incoming change: parent check (park orphans), conflict
//! detection and resolution, and release of children waiting for it.

use super::Ctx;
use crate::conflict::{
    self, AuditRecord, ConflictContext, ConflictSide, OpenConflict, VersionRecord,
};
use crate::entity::{Entity, EntityKey, StoredEntity};
use crate::entity_registry::EntityType;
use crate::error::SyncError;
use crate::events::{AppliedChange, ChangeKind, ConflictEvent, Event};
use crate::ids::{NodeId, Timestamp};
use crate::node_registry::PeerState;
use crate::store::{ParkedChange, StoreTxn};

/// Counts for one applied packet.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ApplyStats {
    pub applied: usize,
    pub conflicts: usize,
    pub parked: usize,
}

/// Applies `incoming` from `peer` inside `txn`.
pub(crate) fn apply_change<T: StoreTxn>(
    txn: &mut T,
    ctx: &mut Ctx<'_>,
    peer: &PeerState,
    incoming: Entity,
    now: Timestamp,
    stats: &mut ApplyStats,
) -> Result<(), SyncError> {
    let registry = ctx.registry;
    let ty = registry.require(&incoming.key.entity_type)?;
    if let Some(parent) = missing_parent(txn, ty, &incoming)? {
        txn.park(&ParkedChange {
            entity: incoming,
            from: peer.id(),
            waiting_for: parent,
            arrived_at: now,
        })?;
        stats.parked += 1;
        return Ok(());
    }
    txn.unpark(&incoming.key)?;
    let local = txn.entity(&incoming.key)?;
    let incoming = keep_local_excluded(ty, incoming, local.as_ref());
    let key = incoming.key.clone();
    match local {
        None => store_incoming(txn, ctx, peer.id(), incoming, ChangeKind::Created, stats)?,
        Some(l) if l.entity.same_version(&incoming) => {}
        Some(l)
            if peer.is_pending(l.seq, l.source)
                && (l.base.is_some_and(|base| base == ty.sync_digest(&incoming))
                    || (l.source == ctx.local.id && incoming.origin == ctx.local.id)) =>
        {
            // The version our still-unacknowledged edits are based on,
            // delivered again late (a reply to a duplicated or retried
            // request), or an older write of our own sent back to us (a
            // conflict winner the peer registered again): old news, not a
            // concurrent edit. Once the peer has acknowledged our edit, the
            // same version is its decision.
        }
        Some(l) if peer.is_pending(l.seq, l.source) => {
            stats.conflicts += 1;
            resolve(txn, ctx, ty, peer.id(), l, incoming, stats)?;
        }
        Some(_) => {
            let kind = if incoming.is_deleted {
                ChangeKind::Deleted
            } else {
                ChangeKind::Updated
            };
            store_incoming(txn, ctx, peer.id(), incoming, kind, stats)?;
        }
    }
    release_parked(txn, ctx, &key, now)
}

/// Applies the children that were waiting for `parent`, now that it exists.
pub(crate) fn release_parked<T: StoreTxn>(
    txn: &mut T,
    ctx: &mut Ctx<'_>,
    parent: &EntityKey,
    now: Timestamp,
) -> Result<(), SyncError> {
    let waiting = txn.take_parked(parent)?;
    for child in waiting {
        let Some(peer) = txn.peer(child.from)? else {
            // The sender was removed since; its parked change stays recorded
            // in the version history rather than being applied blindly.
            continue;
        };
        let mut stats = ApplyStats::default();
        apply_change(txn, ctx, &peer, child.entity, now, &mut stats)?;
    }
    Ok(())
}

/// The base of a local write replacing `existing`: the last version that came
/// from a peer (see [`StoredEntity::base`]).
pub(crate) fn local_base(
    ty: &EntityType,
    existing: Option<&StoredEntity>,
    local: NodeId,
) -> Option<[u8; 32]> {
    match existing {
        Some(e) if e.source == local => e.base,
        Some(e) => Some(ty.sync_digest(&e.entity)),
        None => None,
    }
}

/// The first referenced parent that does not exist here.
fn missing_parent<T: StoreTxn>(
    txn: &T,
    ty: &EntityType,
    entity: &Entity,
) -> Result<Option<EntityKey>, SyncError> {
    for (field, target) in ty.references() {
        let Some(parent_id) = entity.fields.get(field).and_then(|v| v.as_uuid()) else {
            continue;
        };
        let parent = EntityKey::new(target, parent_id);
        if parent != entity.key && txn.entity(&parent)?.is_none() {
            return Ok(Some(parent));
        }
    }
    Ok(None)
}

/// Excluded fields never travel; an incoming version keeps the local values.
fn keep_local_excluded(
    ty: &EntityType,
    mut incoming: Entity,
    local: Option<&StoredEntity>,
) -> Entity {
    for def in ty.fields().iter().filter(|f| f.excluded) {
        incoming.fields.remove(&def.name);
        if let Some(value) = local.and_then(|l| l.entity.fields.get(&def.name)) {
            incoming.fields.insert(def.name.clone(), value.clone());
        }
    }
    incoming
}

fn store_incoming<T: StoreTxn>(
    txn: &mut T,
    ctx: &mut Ctx<'_>,
    from: NodeId,
    entity: Entity,
    kind: ChangeKind,
    stats: &mut ApplyStats,
) -> Result<(), SyncError> {
    txn.put_entity(&entity, from, ctx.now)?;
    stats.applied += 1;
    if ctx.config.applied_events {
        ctx.events.push(Event::Applied(AppliedChange {
            peer: from,
            kind: if entity.is_deleted {
                ChangeKind::Deleted
            } else {
                kind
            },
            entity,
        }));
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn resolve<T: StoreTxn>(
    txn: &mut T,
    ctx: &mut Ctx<'_>,
    ty: &EntityType,
    from: NodeId,
    stored: StoredEntity,
    incoming: Entity,
    stats: &mut ApplyStats,
) -> Result<(), SyncError> {
    let now = ctx.now;
    let local_arrived = stored.stored_at;
    let restamp_base = local_base(ty, Some(&stored), ctx.local.id);
    let local = stored.entity;
    let strategy = ty.conflict_strategy();
    let plan = conflict::plan(
        strategy,
        &ConflictContext {
            local: &local,
            incoming: &incoming,
            from,
            local_is_hub: ctx.is_hub(),
        },
    );
    let strategy_name = strategy.name();
    let audit = AuditRecord {
        id: Ctx::record_id("audit", &local.key, now, &[&local, &incoming]),
        at: now,
        key: local.key.clone(),
        peer: from,
        strategy: strategy_name.clone(),
        winner: plan.winner,
        local_origin: local.origin,
        local_updated_at: local.updated_at,
        incoming_origin: incoming.origin,
        incoming_updated_at: incoming.updated_at,
        detail: describe(&plan, ctx.is_hub()),
    };
    let mut open_conflict = None;
    if plan.open_manual {
        let conflict = OpenConflict {
            id: Ctx::record_id("open-conflict", &local.key, now, &[&local, &incoming]),
            key: local.key.clone(),
            current: local.clone(),
            incoming: incoming.clone(),
            from,
            arrived_at: now,
        };
        txn.put_open_conflict(&conflict)?;
        open_conflict = Some(conflict.id);
    }
    let losers = match plan.winner {
        ConflictSide::Local => {
            // The sender still holds the losing version and may have sent it
            // again in packets already on the way, acknowledging less than
            // this verdict. Registering the winner again keeps it pending for
            // the sender until it acknowledges a packet built after this
            // verdict, so every copy of the loser sent before then is judged
            // the same way, and the sender is told the outcome even if it had
            // acknowledged the winner before. It is registered as this
            // node's own: the sender may be where the winner came from and
            // have lost it since (restored from an older copy), so it must
            // not be held back as an echo.
            txn.put_version(&local, ctx.local.id, local_arrived, restamp_base)?;
            vec![(incoming, now)]
        }
        ConflictSide::Incoming => {
            store_incoming(txn, ctx, from, incoming, ChangeKind::Updated, stats)?;
            vec![(local, local_arrived)]
        }
        ConflictSide::Merged => {
            // `plan` always sets `merged` for a merged winner; fall back to
            // the local version if a future strategy forgets.
            let merged = plan.merged.clone().unwrap_or_else(|| local.clone());
            let base = Some(ty.sync_digest(&incoming));
            txn.put_version(&merged, ctx.local.id, now, base)?;
            vec![(local, local_arrived), (incoming, now)]
        }
    };
    let mut version_record = None;
    if ty.versioning_enabled() {
        for (loser, arrival_time) in &losers {
            let record = VersionRecord {
                id: Ctx::record_id("version", &loser.key, now, &[loser]),
                key: loser.key.clone(),
                source_node: loser.origin,
                arrival_time: *arrival_time,
                data: loser.clone(),
                resolution: format!("{strategy_name}: {}", audit.detail),
            };
            txn.add_version(&record)?;
            version_record.get_or_insert(record.id);
        }
    }
    let mut copy = None;
    if plan.keep_copy {
        copy = Some(keep_copy(txn, ctx, &losers[0].0)?);
    }
    txn.add_audit(&audit)?;
    ctx.events.push(Event::Conflict(ConflictEvent {
        key: audit.key,
        peer: from,
        strategy: strategy_name,
        winner: plan.winner,
        version_record,
        copy,
        open_conflict,
    }));
    Ok(())
}

/// Keep-both: stores the loser as a new entity under an id derived from its
/// content (so every node derives the same one).
fn keep_copy<T: StoreTxn>(
    txn: &mut T,
    ctx: &mut Ctx<'_>,
    loser: &Entity,
) -> Result<uuid::Uuid, SyncError> {
    let id = conflict::keep_both_copy_id(loser);
    let key = EntityKey::new(loser.key.entity_type.clone(), id);
    if txn.entity(&key)?.is_none() {
        let copy = Entity {
            key,
            ..loser.clone()
        };
        txn.put_entity(&copy, ctx.local.id, ctx.now)?;
    }
    Ok(id)
}

fn describe(plan: &conflict::Plan, is_hub: bool) -> String {
    let (local, incoming) = if is_hub {
        ("hub", "node")
    } else {
        ("node", "hub")
    };
    let mut text = match plan.winner {
        ConflictSide::Local => format!("{local} version kept, {incoming} version lost"),
        ConflictSide::Incoming => format!("{incoming} version taken, {local} version lost"),
        ConflictSide::Merged => "versions merged".to_owned(),
    };
    if plan.keep_copy {
        text.push_str("; loser kept as a copy under a new id");
    }
    if plan.open_manual {
        text.push_str("; queued for a person to decide");
    }
    text
}
