//! The quarantine of refused changes: recording a version the store refused,
//! telling its sender (notices in outgoing bodies, until acknowledged),
//! taking in a peer's notices (a node puts the hub's version back), and the
//! API to list, retry and discard rejected changes. See [`crate::rejected`].

use std::collections::BTreeSet;

use uuid::Uuid;

use super::apply::{self, ApplyStats};
use super::{Ctx, Engine, local};
use crate::conflict::VersionRecord;
use crate::entity::{Entity, EntityKey, REMOVED_FIELD};
use crate::error::{StoreError, SyncError, WriteError};
use crate::events::Event;
use crate::ids::{NodeId, Timestamp};
use crate::node_registry::PeerState;
use crate::packet::Change;
use crate::rejected::{RejectedBy, RejectedChange, Rejection};
use crate::scope::NodeScope;
use crate::store::{Store, StoreTxn};
use crate::value::{Record, Value};

/// Keeps `entity` from `from`, refused by this store for `reason`, as a
/// rejected change to be reported to `from`.
pub(crate) fn reject_incoming<T: StoreTxn>(
    txn: &mut T,
    ctx: &mut Ctx<'_>,
    from: NodeId,
    entity: Entity,
    reason: String,
    stats: &mut ApplyStats,
) -> Result<(), SyncError> {
    let id = Ctx::record_id("rejected", &entity.key, ctx.now, &[&entity]);
    // The hub always answers with a version: where it has none, a local
    // removal stands for the refused entity, so the writer puts back exactly
    // what every node holds.
    if ctx.is_hub() && txn.entity(&entity.key)?.is_none() {
        txn.put_entity(&removal_of(&entity, ctx.local.id), from, ctx.now)?;
    }
    let record = RejectedChange {
        id,
        entity,
        peer: from,
        by: RejectedBy::Here,
        reason,
        at: ctx.now,
        notify: Some(from),
        notified_in: None,
    };
    txn.put_rejected(&record)?;
    stats.rejected += 1;
    ctx.events.push(rejected_event(&record));
    Ok(())
}

pub(crate) fn rejected_event(record: &RejectedChange) -> Event {
    Event::ChangeRejected {
        peer: record.peer,
        key: record.entity.key.clone(),
        by: record.by,
        reason: record.reason.clone(),
    }
}

/// The notices owed to `peer`, for a packet numbered `packet_no`: each
/// rejected change not yet acknowledged. The hub adds its own current
/// version of each such entity (in `extra`, unless the batch holds it) so
/// the node can put it back. Marks each notice with the first packet that
/// carried it.
pub(crate) fn notices_for<T: StoreTxn>(
    txn: &mut T,
    ctx: &Ctx<'_>,
    peer: &PeerState,
    packet_no: u64,
    batch: &[Change],
) -> Result<(Vec<Rejection>, Vec<Change>), SyncError> {
    let mut notices = Vec::new();
    let mut extra = Vec::new();
    let in_batch: BTreeSet<&EntityKey> = batch.iter().map(|c| &c.entity.key).collect();
    let mut scope = None;
    for mut record in txn.rejected()? {
        if record.notify != Some(peer.id()) {
            continue;
        }
        let key = record.entity.key.clone();
        let mut hub_has_none = false;
        if ctx.is_hub() {
            let scope = match &mut scope {
                Some(scope) => &*scope,
                None => scope.insert(NodeScope::load(txn, peer.id())?),
            };
            let held = txn.entity(&key)?;
            // A version outside the node's scope is never shown to it: as
            // far as the node can tell, the hub holds none.
            let held = match held {
                Some(h) if !scope.admits(txn, ctx.registry, &h.entity)? => None,
                held => held,
            };
            match held {
                None => hub_has_none = true,
                Some(current) if !in_batch.contains(&key) => extra.push(Change {
                    operation: current.operation_for(peer.acked_seq),
                    entity: current.entity,
                }),
                Some(_) => {}
            }
        }
        notices.push(Rejection {
            id: record.id,
            version_digest: ctx.registry.sync_digest_of(&record.entity),
            key,
            reason: record.reason.clone(),
            hub_has_none,
        });
        if record.notified_in.is_none() {
            record.notified_in = Some(packet_no);
            txn.put_rejected(&record)?;
        }
    }
    Ok((notices, extra))
}

/// Notices to `peer` carried by a packet it has now acknowledged are
/// delivered.
pub(crate) fn delivered<T: StoreTxn>(
    txn: &mut T,
    peer: NodeId,
    ack_packet_no: u64,
) -> Result<(), SyncError> {
    for mut record in txn.rejected()? {
        let carried = record.notified_in.is_some_and(|n| n <= ack_packet_no);
        if record.notify == Some(peer) && carried {
            record.notify = None;
            txn.put_rejected(&record)?;
        }
    }
    Ok(())
}

/// Takes in a peer's notices. Returns the entities whose version from the
/// hub, in this packet, replaces the refused local one.
pub(crate) fn take_notices<T: StoreTxn>(
    txn: &mut T,
    ctx: &mut Ctx<'_>,
    from: NodeId,
    notices: Vec<Rejection>,
) -> Result<BTreeSet<EntityKey>, SyncError> {
    let mut put_back = BTreeSet::new();
    if notices.is_empty() {
        return Ok(put_back);
    }
    let known: BTreeSet<Uuid> = txn.rejected()?.iter().map(|r| r.id).collect();
    for notice in notices {
        if known.contains(&notice.id) {
            continue;
        }
        let Some(current) = txn.entity(&notice.key)? else {
            continue;
        };
        let still_ours = ctx.registry.sync_digest_of(&current.entity) == notice.version_digest;
        if !ctx.is_hub() && still_ours {
            if notice.hub_has_none {
                remove_locally(txn, ctx, from, &current.entity)?;
            } else {
                put_back.insert(notice.key.clone());
            }
        }
        let record = RejectedChange {
            id: notice.id,
            entity: current.entity,
            peer: from,
            by: RejectedBy::Peer,
            reason: notice.reason,
            at: ctx.now,
            notify: None,
            notified_in: None,
        };
        txn.put_rejected(&record)?;
        ctx.events.push(rejected_event(&record));
    }
    Ok(put_back)
}

/// The hub holds no version of an entity it refused: this node removes its
/// own (locally, from `hub`, so it is not sent back), under an empty history
/// so that any later version of it applies.
pub(crate) fn remove_locally<T: StoreTxn>(
    txn: &mut T,
    ctx: &Ctx<'_>,
    hub: NodeId,
    refused: &Entity,
) -> Result<(), SyncError> {
    txn.put_entity(&removal_of(refused, hub), hub, ctx.now)?;
    Ok(())
}

/// The removal that stands for a refused entity the hub never held: the
/// same on the hub and on the writer, under the refused version's history,
/// so that every later version of the entity (a retry, a fix written on
/// top) descends from it.
fn removal_of(refused: &Entity, hub: NodeId) -> Entity {
    Entity {
        key: refused.key.clone(),
        updated_at: refused.updated_at,
        is_deleted: true,
        origin: hub,
        fields: Record::from([(REMOVED_FIELD.to_owned(), Value::Bool(true))]),
        clock: refused.clock.clone(),
        field_stamps: crate::entity::FieldStamps::new(),
    }
}

/// Puts the hub's version back in place of a refused local one, as is.
pub(crate) fn put_back<T: StoreTxn>(
    txn: &mut T,
    ctx: &Ctx<'_>,
    hub: NodeId,
    version: &Entity,
) -> Result<(), SyncError> {
    txn.put_entity(version, hub, ctx.now)?;
    Ok(())
}

impl<S: Store> Engine<S> {
    /// Rejected changes, oldest first: versions this store refused and
    /// versions of this node that a peer refused (see [`crate::rejected`]).
    pub fn rejected(&mut self) -> Result<Vec<RejectedChange>, SyncError> {
        Ok(self.store.begin()?.rejected()?)
    }

    /// Tries a rejected change again, once its cause is fixed. A version this
    /// store refused is applied now (at the hub it then reaches every node,
    /// its writer included); one a peer refused is written again as a local
    /// change and sent. Refused again, it stays listed and the store's
    /// reason is returned.
    pub fn retry_rejected(&mut self, id: Uuid, now: Timestamp) -> Result<(), SyncError> {
        let moving = self.prepare_writer(now);
        let (store, mut ctx) = self.parts(now);
        let mut txn = store.begin()?;
        let record = txn
            .take_rejected(id)?
            .ok_or(WriteError::NoSuchRejected(id))?;
        if moving {
            txn.set_local_node(ctx.local)?;
        }
        match record.by {
            // At the hub the refused content is written as the hub's own
            // version, after everything it holds of the entity: it reaches
            // every node, the writer included (which put its copy away).
            RejectedBy::Here if ctx.is_hub() => {
                local::local_write(&mut txn, &mut ctx, rewrite(record.entity), now)?;
            }
            // At a node the hub's version is applied now, as it arrived.
            RejectedBy::Here => {
                let peer = txn
                    .peer(record.peer)?
                    .ok_or(SyncError::UnknownPeer(record.peer))?;
                let mut stats = ApplyStats::default();
                apply::apply_change(&mut txn, &mut ctx, &peer, record.entity, now, &mut stats)?;
            }
            RejectedBy::Peer => {
                local::local_write(&mut txn, &mut ctx, rewrite(record.entity), now)?;
            }
        }
        super::cascade::finish(&mut txn, &mut ctx)?;
        txn.commit()?;
        let events = ctx.events;
        self.emit_all(events);
        self.writer_moved |= moving;
        Ok(())
    }

    /// Gives up on a rejected change. The version moves to the entity's
    /// version history (resolution `rejected: …, discarded`), never lost.
    pub fn discard_rejected(&mut self, id: Uuid, now: Timestamp) -> Result<(), SyncError> {
        let mut txn = self.store.begin()?;
        let record = txn
            .take_rejected(id)?
            .ok_or(WriteError::NoSuchRejected(id))?;
        let entity = record.entity;
        txn.add_version(&VersionRecord {
            id: Ctx::record_id("rejected-discarded", &entity.key, now, &[&entity]),
            key: entity.key.clone(),
            source_node: entity.origin,
            arrival_time: record.at,
            resolution: format!("rejected: {}; discarded", record.reason),
            data: entity,
        })?;
        txn.commit()?;
        Ok(())
    }
}

/// A refused version written again as a local write of its content.
fn rewrite(entity: Entity) -> local::LocalWrite {
    match entity.is_deleted {
        true => local::LocalWrite::Delete { key: entity.key },
        false => local::LocalWrite::Put {
            key: entity.key,
            fields: entity.fields,
        },
    }
}

/// Whether `error` is the store refusing one version.
pub(crate) fn refused(error: &SyncError) -> Option<(&EntityKey, &str)> {
    match error {
        SyncError::Store(StoreError::Refused { key, reason }) => Some((key, reason)),
        _ => None,
    }
}
