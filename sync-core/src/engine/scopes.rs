//! The hub's side of per-node scopes (see [`crate::scope`]): the API that
//! sets rules and attributes, the check of a node's incoming change, and
//! the filter of what a packet for a node may carry.

use super::{Ctx, Engine};
use crate::entity::{Entity, EntityKey, StoredEntity};
use crate::entity_registry::EntityRegistry;
use crate::error::SyncError;
use crate::events::Event;
use crate::ids::NodeId;
use crate::node_registry::PeerState;
use crate::rejected::{RejectedBy, RejectedChange};
use crate::scope::{Holding, MAX_DEPTH, NodeAttributes, NodeScope, ScopeRule, Scopes};
use crate::store::{Store, StoreTxn};

/// The scope of `node`, read once per transaction into `ctx`.
pub(crate) fn scope_of<'c, T: StoreTxn>(
    txn: &T,
    ctx: &'c mut Ctx<'_>,
    node: NodeId,
) -> Result<&'c NodeScope, SyncError> {
    if ctx.scope.as_ref().is_none_or(|(id, _)| *id != node) {
        ctx.scope = Some((node, NodeScope::load(txn, node)?));
    }
    match &ctx.scope {
        Some((_, scope)) => Ok(scope),
        // Set just above.
        None => unreachable!("the scope was loaded above"),
    }
}

/// At the hub: why `incoming` from `peer` is outside that node's scope
/// (its version, or the version the hub holds of the entity), or `None`
/// when the node may write it; the hub then notes that the node holds it.
pub(crate) fn refuse_incoming<T: StoreTxn>(
    txn: &mut T,
    ctx: &mut Ctx<'_>,
    peer: &PeerState,
    incoming: &Entity,
) -> Result<Option<String>, SyncError> {
    if !ctx.is_hub() {
        return Ok(None);
    }
    let registry = ctx.registry;
    let scope = scope_of(txn, ctx, peer.id())?;
    if scope.is_everything() || !scope.governs(registry, &incoming.key.entity_type) {
        return Ok(None);
    }
    if let Some(why) = scope.why_not(txn, registry, incoming)? {
        return Ok(Some(format!("node {}: {why}", peer.info.code)));
    }
    if let Some(held) = txn.entity(&incoming.key)? {
        if let Some(why) = scope.why_not(txn, registry, &held.entity)? {
            return Ok(Some(format!(
                "node {} may not write {}: the hub's version is outside its scope ({why})",
                peer.info.code, incoming.key
            )));
        }
    }
    if Holding::load(txn, peer.id(), &incoming.key)? != Some(Holding::Sent(0)) {
        Holding::save(txn, peer.id(), &incoming.key, Some(Holding::Sent(0)))?;
    }
    Ok(None)
}

/// What a packet for a scoped node does with one pending change.
#[derive(Debug, Default)]
pub(crate) struct Routed {
    /// The change is in the node's scope: it travels.
    pub send: bool,
    /// Children that move into the scope with it (its version moved in):
    /// they travel too, whole.
    pub with: Vec<StoredEntity>,
    /// Entities the node must remove, children before parents: the change
    /// moved its entity out of the node's scope, and with it its children.
    pub evict: Vec<EntityKey>,
    /// Marks to store with the packet (`None` forgets one).
    pub marks: Vec<(EntityKey, Option<Holding>)>,
}

/// At the hub: routes `candidate`, pending for `peer`, under `scope`. A
/// change of an unscoped type, or one whose entity the node holds by a
/// confirmed mark, just travels. A change out of scope travels not at all;
/// if the node may hold the entity (it has a mark), it is evicted with the
/// children the node may hold. A change into scope that the node may not
/// hold yet brings the entity's children in scope along.
pub(crate) fn route<T: StoreTxn>(
    txn: &T,
    registry: &EntityRegistry,
    scope: &NodeScope,
    peer: &PeerState,
    candidate: &StoredEntity,
) -> Result<Routed, SyncError> {
    let key = &candidate.entity.key;
    let mut routed = Routed::default();
    if !scope.governs(registry, &key.entity_type) {
        routed.send = true;
        return Ok(routed);
    }
    let node = peer.id();
    let holding = Holding::load(txn, node, key)?;
    if scope.admits(txn, registry, &candidate.entity)? {
        routed.send = true;
        let confirmed = matches!(holding, Some(Holding::Sent(seq)) if seq <= peer.acked_seq);
        if !confirmed {
            routed
                .marks
                .push((key.clone(), Some(Holding::Sent(candidate.seq))));
            if !candidate.entity.is_deleted {
                moving_in(
                    txn,
                    registry,
                    scope,
                    peer,
                    &candidate.entity,
                    candidate.seq,
                    &mut routed,
                    0,
                )?;
            }
        }
        return Ok(routed);
    }
    // The node may hold the entity when the hub has a mark of it: it is
    // evicted (again). An eviction marked at an earlier sequence is not
    // known to have arrived, even when the node acknowledged past that
    // sequence: the entity changed since, so the packets that covered the
    // old sequence after the change did not carry it (a lost eviction, then
    // an edit, left a node holding another user's row). While everything is
    // being sent again (the pair was re-initialized: the node was restored
    // from a backup, which may hold entities it has since been told to
    // remove; or its scope changed) it may hold what the hub has no mark of,
    // so that is evicted too. A node ignores an eviction of an entity it
    // does not hold.
    let sweep = peer.acked_seq < peer.resend_own_upto;
    if holding.is_some() || sweep {
        moving_out(
            txn,
            registry,
            scope,
            node,
            sweep,
            &candidate.entity,
            candidate.seq,
            &mut routed,
            0,
        )?;
    }
    Ok(routed)
}

/// Children of `parent` (which moves into the node's scope) that are in
/// scope and that the node may not hold: they travel with it, and so do
/// theirs.
#[allow(clippy::too_many_arguments)]
fn moving_in<T: StoreTxn>(
    txn: &T,
    registry: &EntityRegistry,
    scope: &NodeScope,
    peer: &PeerState,
    parent: &Entity,
    seq: u64,
    routed: &mut Routed,
    depth: usize,
) -> Result<(), SyncError> {
    if depth >= MAX_DEPTH {
        return Ok(());
    }
    for (child_type, field) in scope.followers(registry, &parent.key.entity_type) {
        for child in txn.referencing(child_type, field, parent.key.id)? {
            if child.entity.is_deleted || !scope.admits(txn, registry, &child.entity)? {
                continue;
            }
            let holding = Holding::load(txn, peer.id(), &child.entity.key)?;
            if matches!(holding, Some(Holding::Sent(s)) if s <= peer.acked_seq) {
                continue;
            }
            routed
                .marks
                .push((child.entity.key.clone(), Some(Holding::Sent(seq))));
            moving_in(
                txn,
                registry,
                scope,
                peer,
                &child.entity,
                seq,
                routed,
                depth + 1,
            )?;
            routed.with.push(child);
        }
    }
    Ok(())
}

/// `entity` leaves the node's scope: it is evicted, after its children
/// that the node may hold (which leave with it; while `sweep`ing, every
/// child, since the node may hold any).
#[allow(clippy::too_many_arguments)]
fn moving_out<T: StoreTxn>(
    txn: &T,
    registry: &EntityRegistry,
    scope: &NodeScope,
    node: NodeId,
    sweep: bool,
    entity: &Entity,
    seq: u64,
    routed: &mut Routed,
    depth: usize,
) -> Result<(), SyncError> {
    if depth < MAX_DEPTH {
        for (child_type, field) in scope.followers(registry, &entity.key.entity_type) {
            for child in txn.referencing(child_type, field, entity.key.id)? {
                if sweep || Holding::load(txn, node, &child.entity.key)?.is_some() {
                    moving_out(
                        txn,
                        registry,
                        scope,
                        node,
                        sweep,
                        &child.entity,
                        seq,
                        routed,
                        depth + 1,
                    )?;
                }
            }
        }
    }
    routed.evict.push(entity.key.clone());
    routed
        .marks
        .push((entity.key.clone(), Some(Holding::Evicted(seq))));
    Ok(())
}

/// At a node: removes locally each entity the hub evicted (it left this
/// node's scope), without a deletion anywhere else. An edit of it not yet
/// acknowledged by the hub is kept as a rejected change, never dropped.
pub(crate) fn evict<T: StoreTxn>(
    txn: &mut T,
    ctx: &mut Ctx<'_>,
    hub: &PeerState,
    evictions: Vec<EntityKey>,
) -> Result<(), SyncError> {
    if ctx.is_hub() {
        return Ok(());
    }
    for key in evictions {
        let Some(stored) = txn.entity(&key)? else {
            continue;
        };
        if stored.entity.is_deleted && stored.source == hub.id() {
            // Removed already (an eviction sent again).
            continue;
        }
        let unsent = stored.source == ctx.local.id && stored.seq > hub.acked_seq;
        if unsent && !stored.entity.is_deleted {
            let record = RejectedChange {
                id: Ctx::record_id("left-scope", &key, ctx.now, &[&stored.entity]),
                entity: stored.entity.clone(),
                peer: hub.id(),
                by: RejectedBy::Peer,
                reason: format!(
                    "{key} left this node's scope at the hub: this edit was not sent and is kept here; retry it once the entity is in scope again, or discard it"
                ),
                at: ctx.now,
                notify: None,
                notified_in: None,
            };
            txn.put_rejected(&record)?;
            ctx.events.push(super::quarantine::rejected_event(&record));
        }
        super::quarantine::remove_locally(txn, ctx, hub.id(), &stored.entity)?;
        ctx.events.push(Event::LeftScope {
            peer: hub.id(),
            key,
        });
    }
    Ok(())
}

impl<S: Store> Engine<S> {
    /// The hub's scope rules (see [`crate::scope`]).
    pub fn scope_rules(&mut self) -> Result<Scopes, SyncError> {
        self.hub_only("scope rules")?;
        Ok(Scopes::load(&self.store.begin()?)?)
    }

    /// Sets the scope rule of `entity_type` at the hub ([`ScopeRule::All`]
    /// removes it). It takes effect at each node's next exchange: every node
    /// is then sent again everything in its scope (what it already holds is
    /// old news to it), so that a widened scope is filled in.
    pub fn set_scope_rule(&mut self, entity_type: &str, rule: ScopeRule) -> Result<(), SyncError> {
        self.hub_only("scope rules")?;
        self.registry.require(entity_type)?;
        let mut txn = self.store.begin()?;
        let mut scopes = Scopes::load(&txn)?;
        if scopes.rule(entity_type) == Some(&rule) {
            return Ok(());
        }
        scopes.set(entity_type, rule);
        scopes.save(&mut txn)?;
        let last_seq = txn.last_seq()?;
        for mut peer in txn.peers()? {
            resend_in_scope(&mut peer, last_seq);
            txn.put_peer(&peer)?;
        }
        txn.commit()?;
        self.pending_counts.clear();
        Ok(())
    }

    /// The attributes of `node` at the hub.
    pub fn node_attributes(&mut self, node: NodeId) -> Result<NodeAttributes, SyncError> {
        self.hub_only("node attributes")?;
        Ok(NodeAttributes::load(&self.store.begin()?, node)?)
    }

    /// Sets the attributes of `node` at the hub, which
    /// [`ScopeRule::Attribute`] rules compare with. It takes effect at the
    /// node's next exchange, which sends it again everything in its scope.
    pub fn set_node_attributes(
        &mut self,
        node: NodeId,
        attributes: NodeAttributes,
    ) -> Result<(), SyncError> {
        self.hub_only("node attributes")?;
        let mut txn = self.store.begin()?;
        let mut peer = txn.peer(node)?.ok_or(SyncError::UnknownPeer(node))?;
        if NodeAttributes::load(&txn, node)? == attributes {
            return Ok(());
        }
        attributes.save(&mut txn, node)?;
        resend_in_scope(&mut peer, txn.last_seq()?);
        txn.put_peer(&peer)?;
        txn.commit()?;
        self.pending_counts.remove(&node);
        Ok(())
    }

    fn hub_only(&self, what: &'static str) -> Result<(), SyncError> {
        match self.local.role {
            crate::node_registry::Role::Hub => Ok(()),
            _ => Err(SyncError::HubOnly(what)),
        }
    }
}

/// Everything is owed to `peer` again (its own changes included), so that
/// what a changed scope now admits reaches it; packets in flight no longer
/// acknowledge anything.
fn resend_in_scope(peer: &mut PeerState, last_seq: u64) {
    peer.acked_seq = 0;
    peer.resend_own_upto = peer.resend_own_upto.max(last_seq);
    peer.in_flight.clear();
}
