//! The end of a run: heal, drain the network, let every node sync in
//! rounds until all agree (bounded), then check convergence, quiescence and
//! that no write was lost, and hash the final state.

use std::collections::HashMap;

use sync_core::{Entity, EntityKey, ParkedChange, Store, StoreTxn, Value};

use super::checks::{Traces, ViolationKind};
use super::stores::SimStores;
use super::workload::{FIELD_MERGED, REFUSED_TITLE};
use super::world::{Fnv, World};
use crate::fixtures::{MEMO, hub_id, memo_user, node_id};
use crate::net::synced_entities;

/// Convergence must be reached within this many rounds after healing and
/// draining (a round: every node, in turn, runs one sync session to
/// completion). Two suffice: in round one every node's changes reach the
/// hub (conflicts resolve there, or on the node within the same session),
/// in round two every node receives everything.
pub const MAX_ROUNDS: u32 = 2;

/// The most exchanges (hub answers) allowed from the end of the faults to
/// convergence, draining the packets still in flight included:
/// `nodes × (2 × MAX_ROUNDS + 4 + 2 × ⌈entities / batch⌉)`.
pub fn exchange_bound(nodes: u64, entities: u64, batch: u64) -> u64 {
    nodes * (2 * u64::from(MAX_ROUNDS) + 4 + 2 * entities.div_ceil(batch.max(1)))
}

/// Most actions a phase may take before it counts as not quiescing.
const MAX_ACTIONS: u64 = 2_000_000;

impl<B: SimStores> World<B> {
    /// Runs the fault phase, heals, converges and checks everything.
    pub(super) fn finish(&mut self) {
        let drained = self.run(MAX_ACTIONS);
        if !self.healed {
            self.heal();
        }
        if !(drained && self.run(MAX_ACTIONS)) {
            self.violation(
                ViolationKind::NotQuiescent,
                "the network never drained".into(),
            );
            return;
        }
        if self.fatal {
            return;
        }
        let before = self.exchanges;
        let mut rounds = 0;
        while let Some(problem) = self.unsettled() {
            if rounds == MAX_ROUNDS {
                let kind = if problem.starts_with("diverged") {
                    ViolationKind::Divergence
                } else {
                    ViolationKind::NotQuiescent
                };
                self.violation(kind, format!("after {rounds} rounds: {problem}"));
                break;
            }
            rounds += 1;
            for i in 0..self.nodes.len() {
                self.sync(i, false);
                if !self.run(MAX_ACTIONS) {
                    self.violation(
                        ViolationKind::Liveness,
                        format!("node {i}'s session never ended"),
                    );
                    return;
                }
            }
        }
        self.stats.rounds_to_converge = rounds;
        self.stats.exchanges_to_converge = self.exchanges - before;
        self.stats.exchanges_after_heal = self.exchanges - self.exchanges_at_heal;
        self.stats.batch = self
            .hub
            .engine()
            .map_or(0, |e| e.config().batch_entities as u64);
        let registry = self.registry.clone();
        self.stats.entities =
            synced_entities(&registry, self.hub.store()).map_or(0, |e| e.len() as u64);
        let bound = exchange_bound(
            self.nodes.len() as u64,
            self.stats.entities,
            self.stats.batch,
        );
        if self.stats.exchanges_after_heal > bound {
            let used = self.stats.exchanges_after_heal;
            self.violation(
                ViolationKind::Liveness,
                format!("{used} exchanges from the end of the faults to convergence, over the bound of {bound}"),
            );
        }
        self.check_lost_writes();
    }

    fn violation(&mut self, kind: ViolationKind, detail: String) {
        let at = self.sched.now();
        self.checks.violation(kind, at, detail);
    }

    /// What still keeps the system from being settled: a participant down,
    /// a session running, a change pending or a child parked anywhere, or
    /// a node whose entities differ from the hub's.
    fn unsettled(&mut self) -> Option<String> {
        for who in self.everyone() {
            if !self.actor(who).is_up() {
                return Some(format!("{who} is down"));
            }
        }
        let registry = self.registry.clone();
        let hub_state = synced_entities(&registry, self.hub.store()).ok()?;
        let hub_parked = self.hub.peek(|txn| txn.parked());
        if let Some(p) = self.first_parked(hub_parked) {
            return Some(format!(
                "{} parked on the hub waiting for {}",
                p.entity.key, p.waiting_for
            ));
        }
        for i in 0..self.nodes.len() {
            let engine = self.nodes[i].engine()?;
            if engine.is_syncing(hub_id()) {
                return Some(format!("node {i} is still syncing"));
            }
            let pending = engine.pending_count(hub_id()).ok()?;
            if pending > 0 {
                return Some(format!(
                    "node {i} has {pending} changes pending for the hub"
                ));
            }
            let parked = engine.parked().ok()?;
            if let Some(p) = self.first_parked(parked) {
                return Some(format!(
                    "{} parked on node {i} waiting for {}",
                    p.entity.key, p.waiting_for
                ));
            }
            let owed = self.hub.engine()?.pending_count(node_id(i)).ok()?;
            if owed > 0 {
                return Some(format!("the hub has {owed} changes pending for node {i}"));
            }
            let state = synced_entities(&registry, self.nodes[i].store()).ok()?;
            let (expected, held) = if self.config.scopes {
                let user = memo_user(i);
                (in_scope(&hub_state, Some(&user)), in_scope(&state, None))
            } else {
                (hub_state.clone(), state)
            };
            if held != expected {
                return Some(format!(
                    "diverged: {}",
                    first_difference(i, &expected, &held)
                ));
            }
        }
        None
    }

    /// The first parked child whose parent can still arrive: a parent
    /// whose every write was lost to a restore before the hub had it is gone
    /// for good, and its children rightly wait forever.
    fn first_parked(&mut self, parked: Vec<ParkedChange>) -> Option<ParkedChange> {
        let (orphans, waiting): (Vec<_>, Vec<_>) = parked
            .into_iter()
            .partition(|p| self.checks.lost_to_restore(&p.waiting_for));
        self.stats.orphans = self.stats.orphans.max(orphans.len() as u64);
        waiting.into_iter().next()
    }

    fn check_lost_writes(&mut self) {
        let registry = self.registry.clone();
        let mut traces = Traces::default();
        for (store, who) in self.everyone().into_iter().enumerate() {
            self.actor(who)
                .peek(|txn| traces.collect_from(store, &registry, txn));
        }
        let at = self.sched.now();
        self.checks.lost_writes(&traces, at);
        self.checks.false_conflicts(&traces, at);
        self.checks.same_resolutions(&traces, at);
        let hub_state = synced_entities(&registry, self.hub.store()).unwrap_or_default();
        let refused = Value::from(REFUSED_TITLE);
        self.checks
            .field_edits(&FIELD_MERGED, &hub_state, &refused, at);
        self.check_rejections();
        self.check_orphans(&hub_state);
    }

    /// No live child under a deleted parent at the hub (the nodes hold the
    /// same, checked by convergence).
    fn check_orphans(&mut self, hub_state: &[Entity]) {
        let by_key: HashMap<&EntityKey, &Entity> = hub_state.iter().map(|e| (&e.key, e)).collect();
        let mut found = Vec::new();
        for child in hub_state.iter().filter(|e| !e.is_deleted) {
            let Some(ty) = self.registry.get(&child.key.entity_type) else {
                continue;
            };
            for (field, target) in ty.references() {
                let Some(id) = child.fields.get(field).and_then(Value::as_uuid) else {
                    continue;
                };
                let parent = EntityKey::new(target, id);
                if let Some(p) = by_key
                    .get(&parent)
                    .filter(|p| p.is_deleted && p.key != child.key)
                {
                    found.push(format!(
                        "{} (origin {}) is live under {} deleted by {}",
                        child.key, child.origin, parent, p.origin
                    ));
                }
            }
        }
        for detail in found {
            self.violation(ViolationKind::LiveOrphan, detail);
        }
    }

    /// Every refused change's writer was told: after quiescence no notice
    /// waits at the hub, and the writer holds the hub's version (checked by
    /// convergence) with the refused one listed.
    fn check_rejections(&mut self) {
        let rejected = self.hub.peek(|txn| txn.rejected());
        let undelivered: Vec<String> = rejected
            .iter()
            .filter(|r| r.notify.is_some())
            .map(|r| {
                format!(
                    "the notice that the hub refused {} never reached {}",
                    r.entity.key, r.peer
                )
            })
            .collect();
        for detail in undelivered {
            self.violation(ViolationKind::NotQuiescent, detail);
        }
        self.stats.rejected = rejected.len() as u64;
    }

    /// A hash of every participant's entities and peer counters.
    pub(super) fn state_hash(&mut self) -> u64 {
        let mut hash = Fnv::default();
        let registry = self.registry.clone();
        for who in self.everyone() {
            let store = self.actor(who).store();
            if let Ok(state) = synced_entities(&registry, store) {
                for entity in state {
                    hash.write(&entity.content_digest());
                }
            }
            if let Ok(peers) = store.begin().and_then(|txn| txn.peers()) {
                for peer in peers {
                    hash.write_u64(peer.sent_packet_no);
                    hash.write_u64(peer.received_packet_no);
                    hash.write_u64(peer.acked_seq);
                }
            }
        }
        hash.0
    }
}

/// What a node of `user` must hold of `state` in a scoped run (`None`:
/// what a node holds): every entity of the unscoped types, and the live
/// memos (of `user`). Memo tombstones are left out: a node that never
/// held a memo has no use for its deletion.
fn in_scope(state: &[Entity], user: Option<&str>) -> Vec<Entity> {
    state
        .iter()
        .filter(|e| {
            e.key.entity_type != MEMO
                || (!e.is_deleted
                    && user
                        .is_none_or(|u| e.fields.get("owner").and_then(Value::as_text) == Some(u)))
        })
        .cloned()
        .collect()
}

/// Names the first entity where `node`'s state differs from the hub's.
fn first_difference(node: usize, hub: &[sync_core::Entity], other: &[sync_core::Entity]) -> String {
    for (h, n) in hub.iter().zip(other) {
        if h != n {
            let mut text = format!("node {node} holds {n:?} where the hub holds {h:?}");
            if text.len() > 1_500 {
                let mut cut = 1_500;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                text.truncate(cut);
                text.push_str("...");
            }
            return text;
        }
    }
    format!(
        "node {node} holds {} entities, the hub {}",
        other.len(),
        hub.len()
    )
}
