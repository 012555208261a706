//! Applying one incoming change: parent check (park orphans), the causal
//! verdict from the two versions' clocks ([`Verdict`]: old news, descendant,
//! concurrent), resolution of real conflicts by the type's strategy, and
//! release of children waiting for it.

use super::Ctx;
use crate::clock::{Causality, VersionVector};
use crate::conflict::{
    self, AuditRecord, ConflictContext, ConflictSide, ConflictStrategy, Decision, FieldFallback,
    OpenConflict, Resolver, VersionRecord, fields,
};
use crate::entity::{Entity, EntityKey, StoredEntity};
use crate::entity_registry::EntityType;
use crate::error::{StoreError, SyncError};
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
    pub rejected: usize,
}

/// How an incoming version relates to the one held here, and so what to do
/// with it.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// An ancestor of the version held, or the same version: a late copy
    /// (a reply to a retried request, a resend after a restore). Nothing
    /// changes, nothing is recorded.
    OldNews,
    /// It descends from the version held: it includes every write this node
    /// has seen of the entity. Store it.
    Descendant,
    /// The histories are concurrent, but the version held was written
    /// knowing the incoming one's content (its writer's entry is at or past
    /// that write): only the incoming history is news. The held content
    /// stays, with both histories.
    KnowsIncoming,
    /// The histories are concurrent, but the incoming version was written
    /// knowing the held content: it replaces it, with both histories.
    KnownByIncoming,
    /// Same history, different content (two nodes computed one resolution
    /// differently): settled by the deterministic last-writer rank, with no
    /// record, so every node ends with the same content.
    TieBreak,
    /// Both deleted concurrently: no conflict, the tombstones are merged.
    BothDeleted,
    /// Concurrent edits: the type's strategy decides.
    Conflict,
}

fn judge(ty: &EntityType, local: &Entity, incoming: &Entity) -> Verdict {
    match incoming.clock.compare(&local.clock) {
        Causality::Ancestor => Verdict::OldNews,
        Causality::Equal if incoming.same_content(local) => Verdict::OldNews,
        Causality::Equal => Verdict::TieBreak,
        Causality::Descendant => Verdict::Descendant,
        Causality::Concurrent if knows(ty, local, incoming) => Verdict::KnowsIncoming,
        Causality::Concurrent if knows(ty, incoming, local) => Verdict::KnownByIncoming,
        Causality::Concurrent if local.is_deleted && incoming.is_deleted => Verdict::BothDeleted,
        Causality::Concurrent => Verdict::Conflict,
    }
}

/// Whether `later` was written knowing `earlier`'s content: `earlier` is
/// a write (its clock holds an entry stamped with its time and its content's
/// tag, so it is no merge) and `later`'s history holds that writer's entry
/// at or past it. A writer's writes to one entity follow each other, so its
/// write at that time or later was made knowing this one. This is what lets
/// a resolution's wider history travel without turning edits made on the
/// winner into conflicts with it.
fn knows(ty: &EntityType, later: &Entity, earlier: &Entity) -> bool {
    let tag = ty.write_tag(earlier);
    let Some((writer, own)) = earlier
        .clock
        .iter()
        .find(|(_, s)| s.at == earlier.updated_at && s.tag == tag)
    else {
        return false;
    };
    later
        .clock
        .get(writer)
        .is_some_and(|seen| seen.includes(&own))
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
    apply_checked(txn, ctx, peer, incoming, now, stats, true)
}

/// Applies the parked changes from `peer` that have waited longer than
/// [`crate::EngineConfig::max_park_ms`], without their parents.
pub(crate) fn expire_parked<T: StoreTxn>(
    txn: &mut T,
    ctx: &mut Ctx<'_>,
    peer: &PeerState,
    now: Timestamp,
    stats: &mut ApplyStats,
) -> Result<(), SyncError> {
    let max = ctx.config.max_park_ms;
    let expired: Vec<ParkedChange> = txn
        .parked()?
        .into_iter()
        .filter(|p| p.from == peer.id())
        .filter(|p| now.as_micros().saturating_sub(p.arrived_at.as_micros()) / 1_000 > max)
        .collect();
    for parked in expired {
        ctx.events.push(Event::ParkExpired {
            key: parked.entity.key.clone(),
            waiting_for: parked.waiting_for.clone(),
        });
        deferred(ctx, |ctx| {
            apply_checked(txn, ctx, peer, parked.entity, now, stats, false)
        })?;
    }
    Ok(())
}

/// Runs `apply` for a change applied after the packet that brought it (a
/// parked change released or expired).
///
/// At the hub such a version is stored as the hub's own to send, so that it
/// reaches its sender too: the sender may have been restored from an older
/// copy of its store since, and the copy it sent is then gone from it. The
/// hub's re-initialization of the pair resends only what the hub held at
/// that moment. A sender that still holds the version sees it again as old
/// news, a no-op.
fn deferred<R>(ctx: &mut Ctx<'_>, apply: impl FnOnce(&mut Ctx<'_>) -> R) -> R {
    let outer = std::mem::replace(&mut ctx.deferred, true);
    let result = apply(ctx);
    ctx.deferred = outer;
    result
}

/// Stores a version on behalf of the incoming change being applied: a
/// refusal names that change (what the quarantine keeps), and the write is
/// remembered so that a refusal at commit can be traced back to it.
fn put<T: StoreTxn>(
    txn: &mut T,
    ctx: &mut Ctx<'_>,
    entity: &Entity,
    source: NodeId,
    stored_at: Timestamp,
) -> Result<u64, SyncError> {
    let change = ctx.applying.last().cloned();
    if let Some(change) = &change {
        ctx.written.insert(entity.key.clone(), change.clone());
    }
    txn.put_entity(entity, source, stored_at)
        .map_err(|e| match (e, change) {
            (StoreError::Refused { reason, .. }, Some(change)) => StoreError::Refused {
                key: change,
                reason,
            }
            .into(),
            (e, _) => e.into(),
        })
}

fn apply_checked<T: StoreTxn>(
    txn: &mut T,
    ctx: &mut Ctx<'_>,
    peer: &PeerState,
    incoming: Entity,
    now: Timestamp,
    stats: &mut ApplyStats,
    check_parents: bool,
) -> Result<(), SyncError> {
    ctx.applying.push(incoming.key.clone());
    let result = apply_one(txn, ctx, peer, incoming, now, stats, check_parents);
    ctx.applying.pop();
    result
}

fn apply_one<T: StoreTxn>(
    txn: &mut T,
    ctx: &mut Ctx<'_>,
    peer: &PeerState,
    incoming: Entity,
    now: Timestamp,
    stats: &mut ApplyStats,
    check_parents: bool,
) -> Result<(), SyncError> {
    let registry = ctx.registry;
    let ty = registry.require(&incoming.key.entity_type)?;
    if let Some(reason) = ctx.quarantine.get(&incoming.key).cloned() {
        txn.unpark(&incoming.key)?;
        return super::quarantine::reject_incoming(txn, ctx, peer.id(), incoming, reason, stats);
    }
    let missing = match check_parents {
        true => missing_parent(txn, ty, &incoming)?,
        false => None,
    };
    if let Some(parent) = missing {
        // A change parked before keeps the time it first arrived.
        let arrived_at = txn
            .parked_change(&incoming.key)?
            .map_or(now, |p| p.arrived_at);
        ctx.events.push(Event::Parked {
            peer: peer.id(),
            key: incoming.key.clone(),
            waiting_for: parent.clone(),
        });
        txn.park(&ParkedChange {
            entity: incoming,
            from: peer.id(),
            waiting_for: parent,
            arrived_at,
        })?;
        stats.parked += 1;
        return Ok(());
    }
    txn.unpark(&incoming.key)?;
    if let Some(reason) = super::scopes::refuse_incoming(txn, ctx, peer, &incoming)? {
        return super::quarantine::reject_incoming(txn, ctx, peer.id(), incoming, reason, stats);
    }
    let local = txn.entity(&incoming.key)?;
    let incoming = keep_local_excluded(ty, incoming, local.as_ref());
    let key = incoming.key.clone();
    let from = peer.id();
    match local {
        None => store_incoming(txn, ctx, from, incoming, ChangeKind::Created, stats)?,
        Some(l) => match judge(ty, &l.entity, &incoming) {
            Verdict::OldNews => {}
            Verdict::Descendant => {
                super::cascade::child_deleted(ctx, &l.entity, &incoming);
                // A tombstone is reported as a deletion by `applied`.
                store_incoming(txn, ctx, from, incoming, ChangeKind::Updated, stats)?;
            }
            Verdict::KnowsIncoming => {
                let both = conflict_of(ty, from, l, incoming);
                store_outcome(txn, ctx, &both, ConflictSide::Local, None, stats)?;
            }
            Verdict::KnownByIncoming => {
                super::cascade::child_deleted(ctx, &l.entity, &incoming);
                let both = l.entity.clock.merged(&incoming.clock);
                take_with_both_histories(txn, ctx, from, both, incoming, stats)?;
            }
            Verdict::TieBreak | Verdict::BothDeleted => {
                let winner = conflict::last_writer(&l.entity, &incoming);
                let both = conflict_of(ty, from, l, incoming);
                store_outcome(txn, ctx, &both, winner, None, stats)?;
            }
            Verdict::Conflict if already_queued(txn, &incoming)? => {}
            Verdict::Conflict => {
                // A deletion against an edit: if the edit wins, children
                // deleted with the entity come back with it.
                let deleted_by = match (l.entity.is_deleted, incoming.is_deleted) {
                    (true, false) => Some(l.entity.origin),
                    (false, true) => Some(incoming.origin),
                    _ => None,
                };
                resolve(txn, ctx, conflict_of(ty, from, l, incoming), stats)?;
                if let Some(deleted_by) = deleted_by {
                    if txn.entity(&key)?.is_some_and(|e| !e.entity.is_deleted) {
                        super::cascade::parent_revived(ctx, key.clone(), deleted_by);
                    }
                }
            }
        },
    }
    super::cascade::touched(ctx, &key);
    release_parked(txn, ctx, &key, now)
}

fn conflict_of(
    ty: &EntityType,
    from: NodeId,
    stored: StoredEntity,
    incoming: Entity,
) -> Conflict<'_> {
    Conflict {
        ty,
        from,
        stored,
        incoming,
    }
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
        deferred(ctx, |ctx| {
            apply_change(txn, ctx, &peer, child.entity, now, &mut stats)
        })?;
    }
    Ok(())
}

/// The first referenced parent that does not exist here.
///
/// A parent that is parked here waiting (through its own parents) for this
/// very entity does not count as missing: records that reference each other
/// (department.manager and employee.department) would otherwise wait for
/// each other forever. The change applies, and its release applies the
/// parked parent after it; a store that enforces references fills them in
/// once both rows exist (see the SQLite store).
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
        if parent == entity.key || txn.entity(&parent)?.is_some() {
            continue;
        }
        if !waits_for(txn, &parent, &entity.key)? {
            return Ok(Some(parent));
        }
    }
    Ok(None)
}

/// Whether `parent` is parked waiting, directly or through a chain of
/// parked parents, for `child`: the two close a reference cycle.
fn waits_for<T: StoreTxn>(
    txn: &T,
    parent: &EntityKey,
    child: &EntityKey,
) -> Result<bool, SyncError> {
    let mut at = parent.clone();
    // A chain of parked changes cannot be longer than the types' depth in
    // practice; the bound only guards against a damaged store.
    for _ in 0..64 {
        let Some(parked) = txn.parked_change(&at)? else {
            return Ok(false);
        };
        if &parked.waiting_for == child {
            return Ok(true);
        }
        at = parked.waiting_for;
    }
    Ok(false)
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
    // A deferred version at the hub is the hub's to send, its sender
    // included (see `deferred`).
    let source = match ctx.deferred && ctx.is_hub() {
        true => ctx.local.id,
        false => from,
    };
    put(txn, ctx, &entity, source, ctx.now)?;
    applied(ctx, from, entity, kind, stats);
    Ok(())
}

/// Takes the incoming content under `both` histories, as this node's own
/// version: it reaches every peer, the sender included, which so learns the
/// wider history too.
fn take_with_both_histories<T: StoreTxn>(
    txn: &mut T,
    ctx: &mut Ctx<'_>,
    from: NodeId,
    both: VersionVector,
    incoming: Entity,
    stats: &mut ApplyStats,
) -> Result<(), SyncError> {
    let taken = Entity {
        clock: both,
        ..incoming
    };
    put(txn, ctx, &taken, ctx.local.id, ctx.now)?;
    applied(ctx, from, taken, ChangeKind::Updated, stats);
    Ok(())
}

/// Counts a change from `from` as applied and emits its event.
fn applied(
    ctx: &mut Ctx<'_>,
    from: NodeId,
    entity: Entity,
    kind: ChangeKind,
    stats: &mut ApplyStats,
) {
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
}

/// One conflict being resolved: the version held here, the concurrent one
/// that arrived, its type and the peer it came from.
struct Conflict<'a> {
    ty: &'a EntityType,
    from: NodeId,
    stored: StoredEntity,
    incoming: Entity,
}

impl Conflict<'_> {
    fn local(&self) -> &Entity {
        &self.stored.entity
    }
}

/// What a strategy decided about one conflict, for the records every
/// resolution leaves (see [`record`]).
struct Settled {
    winner: ConflictSide,
    /// The audit and history text; by default from the winner (see
    /// [`describe`]).
    detail: String,
    /// Keep-both: the first loser is kept as a copy under a derived id.
    keep_copy: bool,
    /// Manual, on the hub: the open conflict queued.
    open_conflict: Option<uuid::Uuid>,
}

/// Resolves a conflict between the version held here and a concurrent
/// incoming one by the type's strategy: each strategy stores its outcome
/// ([`store_outcome`]), then [`record`] keeps every loser in the version
/// history and writes the audit record and the event.
fn resolve<T: StoreTxn>(
    txn: &mut T,
    ctx: &mut Ctx<'_>,
    conflict: Conflict<'_>,
    stats: &mut ApplyStats,
) -> Result<(), SyncError> {
    let ty = conflict.ty;
    match ty.conflict_strategy() {
        ConflictStrategy::ServerWins => server_wins(txn, ctx, conflict, stats),
        ConflictStrategy::LastWriterWins => last_writer_wins(txn, ctx, conflict, stats),
        ConflictStrategy::KeepBoth => keep_both(txn, ctx, conflict, stats),
        ConflictStrategy::Manual => manual(txn, ctx, conflict, stats),
        ConflictStrategy::Custom(resolver) => custom(txn, ctx, conflict, resolver.as_ref(), stats),
        ConflictStrategy::FieldMerge { fallback } => {
            field_merge(txn, ctx, conflict, *fallback, stats)
        }
    }
}

/// The side holding the hub's version.
fn hub_side(ctx: &Ctx<'_>) -> ConflictSide {
    match ctx.is_hub() {
        true => ConflictSide::Local,
        false => ConflictSide::Incoming,
    }
}

/// Server-wins: the hub's version stands.
fn server_wins<T: StoreTxn>(
    txn: &mut T,
    ctx: &mut Ctx<'_>,
    conflict: Conflict<'_>,
    stats: &mut ApplyStats,
) -> Result<(), SyncError> {
    let settled = settle(txn, ctx, &conflict, hub_side(ctx), None, stats)?;
    record(txn, ctx, &conflict, settled)
}

/// Last-writer-wins: the version that ranks later by
/// [`conflict::last_writer`] stands, the same one on every node.
fn last_writer_wins<T: StoreTxn>(
    txn: &mut T,
    ctx: &mut Ctx<'_>,
    conflict: Conflict<'_>,
    stats: &mut ApplyStats,
) -> Result<(), SyncError> {
    let winner = conflict::last_writer(conflict.local(), &conflict.incoming);
    let settled = settle(txn, ctx, &conflict, winner, None, stats)?;
    record(txn, ctx, &conflict, settled)
}

/// Keep-both: the hub's version stands and the other is kept as a copy.
fn keep_both<T: StoreTxn>(
    txn: &mut T,
    ctx: &mut Ctx<'_>,
    conflict: Conflict<'_>,
    stats: &mut ApplyStats,
) -> Result<(), SyncError> {
    let mut settled = settle(txn, ctx, &conflict, hub_side(ctx), None, stats)?;
    settled.keep_copy = true;
    settled
        .detail
        .push_str("; loser kept as a copy under a new id");
    record(txn, ctx, &conflict, settled)
}

/// Manual: decided at the hub, where the hub's version stays current and
/// the incoming one waits in the open conflict queue. A node keeps its
/// version, which reaches the hub (or has), and the hub's outcome comes
/// back with both histories.
fn manual<T: StoreTxn>(
    txn: &mut T,
    ctx: &mut Ctx<'_>,
    conflict: Conflict<'_>,
    stats: &mut ApplyStats,
) -> Result<(), SyncError> {
    if !ctx.is_hub() {
        return Ok(());
    }
    let mut settled = settle(txn, ctx, &conflict, ConflictSide::Local, None, stats)?;
    settled.open_conflict = open_manual(
        txn,
        ctx,
        conflict.from,
        conflict.local(),
        &conflict.incoming,
    )?;
    settled.detail.push_str("; queued for a person to decide");
    record(txn, ctx, &conflict, settled)
}

/// Custom: the type's resolver decides.
fn custom<T: StoreTxn>(
    txn: &mut T,
    ctx: &mut Ctx<'_>,
    conflict: Conflict<'_>,
    resolver: &dyn Resolver,
    stats: &mut ApplyStats,
) -> Result<(), SyncError> {
    let decision = resolver.resolve(&ConflictContext {
        local: conflict.local(),
        incoming: &conflict.incoming,
        from: conflict.from,
        local_is_hub: ctx.is_hub(),
    });
    let (winner, merged) = match decision {
        Decision::KeepLocal => (ConflictSide::Local, None),
        Decision::TakeIncoming => (ConflictSide::Incoming, None),
        Decision::Merge(fields) => {
            let merged = conflict::merged_version(conflict.local(), &conflict.incoming, fields);
            (ConflictSide::Merged, Some(merged))
        }
    };
    let settled = settle(txn, ctx, &conflict, winner, merged, stats)?;
    record(txn, ctx, &conflict, settled)
}

/// Per-field merge: fields changed on one side only are taken from it, a
/// field both changed (and a deletion against an edit, whole) is decided by
/// `fallback`. Both versions go to the version history.
fn field_merge<T: StoreTxn>(
    txn: &mut T,
    ctx: &mut Ctx<'_>,
    conflict: Conflict<'_>,
    fallback: FieldFallback,
    stats: &mut ApplyStats,
) -> Result<(), SyncError> {
    let (local, incoming) = (conflict.local(), &conflict.incoming);
    let side = fields::fallback_side(fallback, local, incoming, ctx.is_hub());
    if local.is_deleted || incoming.is_deleted {
        let mut settled = settle(txn, ctx, &conflict, side, None, stats)?;
        settled.detail.push_str(&format!(
            "; a deletion against an edit is decided whole by {}",
            fallback.name()
        ));
        return record(txn, ctx, &conflict, settled);
    }
    let merge = fields::merge_fields(conflict.ty, local, incoming, side);
    let detail = describe_merge(&merge, ctx.is_hub(), fallback);
    let merged = Some(merge.entity);
    let mut settled = settle(txn, ctx, &conflict, ConflictSide::Merged, merged, stats)?;
    settled.detail = detail;
    record(txn, ctx, &conflict, settled)
}

/// The audit text of a per-field merge: which fields came from where.
fn describe_merge(merge: &fields::FieldMerge, is_hub: bool, fallback: FieldFallback) -> String {
    let (local, incoming) = sides(is_hub);
    let mut text = "fields merged".to_owned();
    if !merge.from_incoming.is_empty() {
        text.push_str(&format!(
            "; from the {incoming} version: {}",
            merge.from_incoming.join(", ")
        ));
    }
    if !merge.clashes.is_empty() {
        let kept = match merge.clash_winner {
            ConflictSide::Incoming => incoming,
            _ => local,
        };
        text.push_str(&format!(
            "; changed on both sides, {kept} value kept by {}: {}",
            fallback.name(),
            merge.clashes.join(", ")
        ));
    }
    text
}

/// Counts the conflict and stores the winner's content (see
/// [`store_outcome`]); the records follow in [`record`].
fn settle<T: StoreTxn>(
    txn: &mut T,
    ctx: &mut Ctx<'_>,
    conflict: &Conflict<'_>,
    winner: ConflictSide,
    merged: Option<Entity>,
    stats: &mut ApplyStats,
) -> Result<Settled, SyncError> {
    stats.conflicts += 1;
    store_outcome(txn, ctx, conflict, winner, merged, stats)?;
    Ok(Settled {
        winner,
        detail: describe(winner, ctx.is_hub()),
        keep_copy: false,
        open_conflict: None,
    })
}

/// The records of a resolved conflict: every losing version whole in the
/// version history (both, for a merge), the keep-both copy, the audit
/// record and the conflict event.
fn record<T: StoreTxn>(
    txn: &mut T,
    ctx: &mut Ctx<'_>,
    conflict: &Conflict<'_>,
    settled: Settled,
) -> Result<(), SyncError> {
    let (local, incoming) = (conflict.local(), &conflict.incoming);
    let local_arrived = conflict.stored.stored_at;
    let losers = match settled.winner {
        ConflictSide::Local => vec![(incoming.clone(), ctx.now)],
        ConflictSide::Incoming => vec![(local.clone(), local_arrived)],
        ConflictSide::Merged => vec![(local.clone(), local_arrived), (incoming.clone(), ctx.now)],
    };
    let resolution = Resolution {
        strategy: conflict.ty.conflict_strategy().name(),
        digests: [
            conflict.ty.sync_digest(local),
            conflict.ty.sync_digest(incoming),
        ],
        detail: settled.detail,
        from: conflict.from,
        local,
        incoming,
        winner: settled.winner,
    };
    let version_record = keep_losers(txn, ctx, conflict.ty, &resolution, &losers)?;
    let copy = match losers.first() {
        Some((loser, _)) if settled.keep_copy => Some(keep_copy(txn, ctx, loser)?),
        _ => None,
    };
    let audit = resolution.audit(ctx.now);
    txn.add_audit(&audit)?;
    ctx.events.push(Event::Conflict(ConflictEvent {
        key: audit.key,
        peer: conflict.from,
        strategy: audit.strategy,
        winner: settled.winner,
        version_record,
        copy,
        open_conflict: settled.open_conflict,
    }));
    Ok(())
}

/// One resolved conflict, for its records.
struct Resolution<'a> {
    strategy: String,
    digests: [[u8; 32]; 2],
    detail: String,
    from: NodeId,
    local: &'a Entity,
    incoming: &'a Entity,
    winner: ConflictSide,
}

impl Resolution<'_> {
    fn audit(&self, now: Timestamp) -> AuditRecord {
        AuditRecord {
            id: Ctx::record_id("audit", &self.local.key, now, &[self.local, self.incoming]),
            at: now,
            key: self.local.key.clone(),
            peer: self.from,
            strategy: self.strategy.clone(),
            winner: self.winner,
            local_origin: self.local.origin,
            local_updated_at: self.local.updated_at,
            incoming_origin: self.incoming.origin,
            incoming_updated_at: self.incoming.updated_at,
            digests: self.digests,
            detail: self.detail.clone(),
        }
    }
}

/// Stores the outcome of two concurrent versions: the winner's content under
/// a clock that includes both histories, so a copy of either version that
/// arrives later is old news.
///
/// - The local version won (or a merge): stored as this node's own, so it
///   reaches every peer, the sender included, which then sees it descends
///   from its version.
/// - The incoming version won, on the hub: stored with both histories as
///   the hub's own, so it reaches every node, the sender included: nodes
///   holding the hub's earlier version take it plainly, and the sender's
///   next edits include the loser too (else they would look concurrent with
///   the hub's copy of the resolution).
/// - The incoming (the hub's) version won, on a node: stored exactly as the
///   hub sent it. The node's losing write stays out of its history: the hub
///   never took it, and its next edits must not look concurrent with the
///   hub's copy. When the loser does reach the hub, the hub resolves the
///   same way and sends the version with both histories.
fn store_outcome<T: StoreTxn>(
    txn: &mut T,
    ctx: &mut Ctx<'_>,
    conflict: &Conflict<'_>,
    winner: ConflictSide,
    merged: Option<Entity>,
    stats: &mut ApplyStats,
) -> Result<(), SyncError> {
    let (stored, incoming, from) = (&conflict.stored, &conflict.incoming, conflict.from);
    let both = stored.entity.clock.merged(&incoming.clock);
    match winner {
        ConflictSide::Local => {
            let kept = Entity {
                clock: both,
                ..stored.entity.clone()
            };
            put(txn, ctx, &kept, ctx.local.id, stored.stored_at)?;
        }
        ConflictSide::Incoming if ctx.is_hub() => {
            take_with_both_histories(txn, ctx, from, both, incoming.clone(), stats)?;
        }
        ConflictSide::Incoming => {
            store_incoming(txn, ctx, from, incoming.clone(), ChangeKind::Updated, stats)?;
        }
        ConflictSide::Merged => {
            // Every strategy that merges passes the merged version; fall
            // back to the local version if a future one forgets.
            let merged = merged.unwrap_or_else(|| stored.entity.clone());
            let merged = Entity {
                clock: both,
                ..merged
            };
            put(txn, ctx, &merged, ctx.local.id, ctx.now)?;
        }
    }
    Ok(())
}

/// Manual, on the hub: the hub's version stays current everywhere until a
/// person decides; the incoming one waits in the open conflict queue (and
/// the version history), where it replaces any queued version it descends
/// from (see [`already_queued`] for the reverse).
fn open_manual<T: StoreTxn>(
    txn: &mut T,
    ctx: &mut Ctx<'_>,
    from: NodeId,
    local: &Entity,
    incoming: &Entity,
) -> Result<Option<uuid::Uuid>, SyncError> {
    let queued = txn.open_conflicts_for(&local.key)?;
    for older in queued
        .iter()
        .filter(|c| incoming.clock.includes(&c.incoming.clock))
    {
        txn.take_open_conflict(older.id)?;
    }
    let conflict = OpenConflict {
        id: Ctx::record_id("open-conflict", &local.key, ctx.now, &[local, incoming]),
        key: local.key.clone(),
        current: local.clone(),
        incoming: incoming.clone(),
        from,
        arrived_at: ctx.now,
    };
    txn.put_open_conflict(&conflict)?;
    Ok(Some(conflict.id))
}

/// Whether an open manual conflict already holds `incoming` or a version
/// that descends from it: a late copy, not a new conflict.
fn already_queued<T: StoreTxn>(txn: &T, incoming: &Entity) -> Result<bool, SyncError> {
    Ok(txn
        .open_conflicts_for(&incoming.key)?
        .iter()
        .any(|c| c.incoming.clock.includes(&incoming.clock)))
}

/// Keeps each losing version whole in the object version history (when the
/// type has versioning on); returns the first record's id.
fn keep_losers<T: StoreTxn>(
    txn: &mut T,
    ctx: &Ctx<'_>,
    ty: &EntityType,
    resolution: &Resolution<'_>,
    losers: &[(Entity, Timestamp)],
) -> Result<Option<uuid::Uuid>, SyncError> {
    if !ty.versioning_enabled() {
        return Ok(None);
    }
    let mut first = None;
    for (loser, arrival_time) in losers {
        let record = VersionRecord {
            id: Ctx::record_id("version", &loser.key, ctx.now, &[loser]),
            key: loser.key.clone(),
            source_node: loser.origin,
            arrival_time: *arrival_time,
            data: loser.clone(),
            resolution: format!("{}: {}", resolution.strategy, resolution.detail),
        };
        txn.add_version(&record)?;
        first.get_or_insert(record.id);
    }
    Ok(first)
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
        put(txn, ctx, &copy, ctx.local.id, ctx.now)?;
        super::cascade::touched(ctx, &copy.key);
    }
    Ok(id)
}

/// The names of the local and the incoming side, as the audit says them.
fn sides(is_hub: bool) -> (&'static str, &'static str) {
    match is_hub {
        true => ("hub", "node"),
        false => ("node", "hub"),
    }
}

/// The audit text of an outcome; strategies append what else they did.
fn describe(winner: ConflictSide, is_hub: bool) -> String {
    let (local, incoming) = sides(is_hub);
    match winner {
        ConflictSide::Local => format!("{local} version kept, {incoming} version lost"),
        ConflictSide::Incoming => format!("{incoming} version taken, {local} version lost"),
        ConflictSide::Merged => "versions merged".to_owned(),
    }
}
