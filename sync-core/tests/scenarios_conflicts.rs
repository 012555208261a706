//! Scenario tests of conflict detection and every resolution strategy:
//! server-wins (the default), last-writer-wins with its deterministic
//! tie-break and skewed clocks, keep-both, manual resolution, and custom
//! resolvers (including merges); the audit record and the object version
//! history each resolution leaves behind.

mod common;

use std::sync::Arc;

use common::*;
use sync_core::{
    ConflictContext, ConflictSide, ConflictStrategy, Decision, Entity, EntityKey, EntityRegistry,
    EntityType, Event, FieldKind, ManualChoice, Record, Resolver, SyncError, Timestamp, Value,
};

/// A hub and `n` nodes that all hold report `R` (written by the hub and
/// synced everywhere). Returns the net and R's key.
fn shared_report(n: usize, registry: EntityRegistry) -> (Net, EntityKey) {
    let mut net = Net::new(n, registry);
    let id = net
        .hub
        .insert("DailyReport", report("2025-12-12", 1), t(0))
        .unwrap();
    net.sync_all(t(1)).unwrap();
    drain(&mut net.hub);
    (net, report_key(id))
}

fn hours(engine: &mut MemEngine, key: &EntityKey) -> Value {
    engine.get(key).unwrap().unwrap().fields["hours"].clone()
}

fn conflict_events(engine: &mut MemEngine) -> Vec<sync_core::ConflictEvent> {
    drain(engine)
        .into_iter()
        .filter_map(|e| match e {
            Event::Conflict(c) => Some(c),
            _ => None,
        })
        .collect()
}

/// The current version of `key` on `engine`, after a conflict between the
/// two `written` versions: its clock includes both (every node learns the
/// conflict was settled), and it is returned with the winner's own clock so
/// that it compares equal to the winner as written.
fn resolved(engine: &mut MemEngine, key: &EntityKey, written: &[Entity; 2]) -> Entity {
    let current = engine.get(key).unwrap().unwrap();
    for version in written {
        assert!(
            current.clock.includes(&version.clock),
            "the outcome includes both versions: {current:?}"
        );
    }
    let winner = written
        .iter()
        .find(|w| w.same_content(&current))
        .expect("the outcome is one of the two versions");
    Entity {
        clock: winner.clock.clone(),
        ..current
    }
}

/// Node 0 and node 1 edit `key` concurrently (hours 9 at `at0`, 10 at
/// `at1`); they sync in `order`, then everyone syncs. Returns the versions
/// they wrote.
fn concurrent_edits(
    net: &mut Net,
    key: &EntityKey,
    (at0, at1): (Timestamp, Timestamp),
    order: [usize; 2],
) -> [Entity; 2] {
    net.nodes[0]
        .put(key.clone(), report("2025-12-12", 9), at0)
        .unwrap();
    net.nodes[1]
        .put(key.clone(), report("2025-12-12", 10), at1)
        .unwrap();
    let written = [
        net.nodes[0].get(key).unwrap().unwrap(),
        net.nodes[1].get(key).unwrap().unwrap(),
    ];
    net.sync(order[0], t(100)).unwrap();
    net.sync(order[1], t(101)).unwrap();
    net.sync_all(t(102)).unwrap();
    assert!(net.converged());
    assert!(net.quiet());
    written
}

#[test]
fn server_wins_is_the_default_and_keeps_the_hub_version_everywhere() {
    let registry = EntityRegistry::new().with(
        EntityType::new("DailyReport")
            .field("date", FieldKind::Text)
            .field("brigade", FieldKind::Text)
            .field("hours", FieldKind::Int),
    );
    let (mut net, key) = shared_report(2, registry);
    let written = concurrent_edits(&mut net, &key, (t(10), t(20)), [0, 1]);

    // Node 0 reached the hub first: its version is the hub's when node 1's
    // (later by the clock) arrives, and the hub's version stands.
    for engine in std::iter::once(&mut net.hub).chain(net.nodes.iter_mut()) {
        assert_eq!(hours(engine, &key), Value::Int(9));
    }
    let audit = net.hub.audit_log().unwrap();
    assert_eq!(audit.len(), 1);
    let a = &audit[0];
    assert_eq!(
        (a.strategy.as_str(), a.winner, a.peer, a.at),
        ("server-wins", ConflictSide::Local, node_id(1), t(101))
    );
    assert_eq!(
        (a.local_origin, a.incoming_origin),
        (node_id(0), node_id(1))
    );
    assert_eq!(
        (a.local_updated_at, a.incoming_updated_at),
        (written[0].updated_at, written[1].updated_at)
    );
    assert!(net.nodes[1].audit_log().unwrap().is_empty());

    let versions = net.hub.versions(&key).unwrap();
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0].data, written[1], "the loser is kept whole");
    assert_eq!(versions[0].source_node, node_id(1));
    assert_eq!(versions[0].arrival_time, t(101));
    assert!(versions[0].resolution.contains("server-wins"));
}

#[test]
fn server_wins_the_hubs_own_edit_beats_a_later_node_edit() {
    let (mut net, key) = shared_report(1, registry(ConflictStrategy::ServerWins));
    net.hub
        .put(key.clone(), report("2025-12-12", 7), t(10))
        .unwrap();
    net.nodes[0]
        .put(key.clone(), report("2025-12-12", 9), t(20))
        .unwrap();
    let node_version = net.nodes[0].get(&key).unwrap().unwrap();
    net.sync_all(t(30)).unwrap();
    assert_eq!(hours(&mut net.hub, &key), Value::Int(7));
    assert_eq!(hours(&mut net.nodes[0], &key), Value::Int(7));
    let versions = net.hub.versions(&key).unwrap();
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0].data, node_version);
    assert!(net.quiet());
}

#[test]
fn server_wins_on_the_node_when_the_hub_version_arrives_first() {
    let (mut net, key) = shared_report(1, registry(ConflictStrategy::ServerWins));
    net.hub
        .put(key.clone(), report("2025-12-12", 7), t(10))
        .unwrap();
    let node = &mut net.nodes[0];
    node.start_sync(hub_id()).unwrap();
    let request = node.poll_transmit(t(11)).unwrap().unwrap();
    // The node edits while its packet is on the way.
    node.put(key.clone(), report("2025-12-12", 9), t(12))
        .unwrap();
    let mine = node.get(&key).unwrap().unwrap();
    let reply = net.hub.respond(&request.bytes, t(13)).unwrap();
    let incoming = net.nodes[0].handle_incoming(&reply, t(14)).unwrap();
    assert_eq!(incoming.conflicts, 1);
    let events = conflict_events(&mut net.nodes[0]);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].winner, ConflictSide::Incoming);
    assert_eq!(hours(&mut net.nodes[0], &key), Value::Int(7));
    let versions = net.nodes[0].versions(&key).unwrap();
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0].data, mine);
    // The node's own version arrived here when it was written.
    assert_eq!(
        (versions[0].source_node, versions[0].arrival_time),
        (node_id(0), t(12))
    );
    assert_eq!(Some(versions[0].id), events[0].version_record);
    net.sync_all(t(20)).unwrap();
    assert!(net.converged());
    assert_eq!(hours(&mut net.hub, &key), Value::Int(7));
}

#[test]
fn delete_against_update_keeps_the_losing_update_in_history() {
    let (mut net, key) = shared_report(2, registry(ConflictStrategy::ServerWins));
    net.nodes[0].delete(key.clone(), t(10)).unwrap();
    net.nodes[1]
        .put(key.clone(), report("2025-12-12", 10), t(11))
        .unwrap();
    let update = net.nodes[1].get(&key).unwrap().unwrap();
    net.sync(0, t(20)).unwrap();
    net.sync(1, t(21)).unwrap();
    net.sync_all(t(22)).unwrap();
    assert!(net.converged());
    for engine in std::iter::once(&mut net.hub).chain(net.nodes.iter_mut()) {
        assert!(engine.get(&key).unwrap().unwrap().is_deleted);
    }
    assert_eq!(net.hub.versions(&key).unwrap()[0].data, update);
}

fn lww() -> EntityRegistry {
    registry(ConflictStrategy::LastWriterWins)
}

#[test]
fn last_writer_wins_picks_the_later_timestamp_in_either_sync_order() {
    for order in [[0, 1], [1, 0]] {
        let (mut net, key) = shared_report(2, lww());
        let written = concurrent_edits(&mut net, &key, (t(20), t(10)), order);
        for engine in std::iter::once(&mut net.hub).chain(net.nodes.iter_mut()) {
            assert_eq!(
                resolved(engine, &key, &written),
                written[0],
                "order {order:?}"
            );
        }
        let audit = net.hub.audit_log().unwrap();
        assert_eq!(audit.len(), 1, "order {order:?}");
        assert_eq!(audit[0].strategy, "last-writer-wins");
        let versions = net.hub.versions(&key).unwrap();
        assert_eq!(versions.len(), 1);
        assert_eq!(versions[0].data, written[1]);
    }
}

#[test]
fn last_writer_wins_breaks_equal_timestamps_by_writer_id() {
    for order in [[0, 1], [1, 0]] {
        let (mut net, key) = shared_report(2, lww());
        let written = concurrent_edits(&mut net, &key, (t(10), t(10)), order);
        assert_eq!(written[0].updated_at, written[1].updated_at);
        // node 1 has the larger id
        assert!(node_id(1) > node_id(0));
        for engine in std::iter::once(&mut net.hub).chain(net.nodes.iter_mut()) {
            assert_eq!(
                resolved(engine, &key, &written),
                written[1],
                "order {order:?}"
            );
        }
    }
}

#[test]
fn last_writer_wins_follows_the_writers_clocks_even_when_skewed() {
    // Node 0's clock runs an hour behind: its edit, made last in real time,
    // carries the earlier timestamp and loses; every node agrees.
    let skew = 3_600;
    let (mut net, key) = shared_report(2, lww());
    let written = concurrent_edits(&mut net, &key, (t(30 - skew), t(20)), [1, 0]);
    for engine in std::iter::once(&mut net.hub).chain(net.nodes.iter_mut()) {
        assert_eq!(resolved(engine, &key, &written), written[1]);
    }
}

#[test]
fn a_local_edit_never_sorts_before_the_version_it_replaces() {
    // The hub wrote at t(1000); node 0's clock is far behind. Its edit still
    // gets a later timestamp than the version it edited.
    let mut net = Net::new(2, lww());
    let id = net
        .hub
        .insert("DailyReport", report("2025-12-12", 1), t(1_000))
        .unwrap();
    let key = report_key(id);
    net.sync_all(t(1_000)).unwrap();
    net.nodes[0]
        .put(key.clone(), report("2025-12-12", 9), t(0))
        .unwrap();
    let edited = net.nodes[0].get(&key).unwrap().unwrap();
    assert!(edited.updated_at > t(1_000));
    net.sync_all(t(1_001)).unwrap();
    assert_eq!(hours(&mut net.hub, &key), Value::Int(9));
    assert!(net.converged());
}

#[test]
fn keep_both_stores_the_loser_as_a_copy_that_reaches_every_node() {
    let (mut net, key) = shared_report(3, registry(ConflictStrategy::KeepBoth));
    let written = concurrent_edits(&mut net, &key, (t(10), t(20)), [0, 1]);
    let events = conflict_events(&mut net.hub);
    assert_eq!(events.len(), 1);
    let copy_id = events[0].copy.expect("keep-both names its copy");
    assert_ne!(copy_id, key.id);
    let copy_key = report_key(copy_id);
    for engine in std::iter::once(&mut net.hub).chain(net.nodes.iter_mut()) {
        assert_eq!(engine.get(&key).unwrap().unwrap().fields, written[0].fields);
        let copy = engine.get(&copy_key).unwrap().expect("copy on every node");
        assert_eq!(copy.fields, written[1].fields);
        assert!(!copy.is_deleted);
    }
    assert_eq!(net.hub.audit_log().unwrap()[0].strategy, "keep-both");
    assert_eq!(net.hub.versions(&key).unwrap()[0].data, written[1]);
}

fn manual_conflict() -> (Net, EntityKey, [Entity; 2], sync_core::Uuid) {
    let (mut net, key) = shared_report(2, registry(ConflictStrategy::Manual));
    let written = concurrent_edits(&mut net, &key, (t(10), t(20)), [0, 1]);
    let open = net.hub.open_conflicts().unwrap();
    assert_eq!(open.len(), 1);
    let conflict = &open[0];
    assert_eq!(conflict.key, key);
    assert_eq!(conflict.current, written[0], "the current version stays");
    assert_eq!(conflict.incoming, written[1]);
    assert_eq!((conflict.from, conflict.arrived_at), (node_id(1), t(101)));
    let events = conflict_events(&mut net.hub);
    assert_eq!(events[0].open_conflict, Some(conflict.id));
    for engine in std::iter::once(&mut net.hub).chain(net.nodes.iter_mut()) {
        assert_eq!(
            hours(engine, &key),
            Value::Int(9),
            "undecided: current stays"
        );
    }
    let id = conflict.id;
    (net, key, written, id)
}

#[test]
fn manual_take_incoming_propagates_to_every_node() {
    let (mut net, key, written, id) = manual_conflict();
    net.hub
        .resolve_conflict(id, ManualChoice::TakeIncoming, t(200))
        .unwrap();
    assert!(net.hub.open_conflicts().unwrap().is_empty());
    net.sync_all(t(201)).unwrap();
    assert!(net.converged());
    for engine in std::iter::once(&mut net.hub).chain(net.nodes.iter_mut()) {
        let decided = engine.get(&key).unwrap().unwrap();
        assert_eq!(decided.fields, written[1].fields);
        assert!(decided.updated_at > written[1].updated_at);
    }
    let audit = net.hub.audit_log().unwrap();
    assert_eq!(audit.len(), 2, "detection and decision are both audited");
    assert_eq!(
        (audit[1].strategy.as_str(), audit[1].winner, audit[1].at),
        ("manual", ConflictSide::Incoming, t(200))
    );
    assert!(matches!(
        net.hub.resolve_conflict(id, ManualChoice::KeepCurrent, t(202)),
        Err(SyncError::ConflictNotFound(x)) if x == id
    ));
}

#[test]
fn manual_keep_current_and_merge_propagate() {
    let (mut net, key, written, id) = manual_conflict();
    net.hub
        .resolve_conflict(id, ManualChoice::KeepCurrent, t(200))
        .unwrap();
    net.sync_all(t(201)).unwrap();
    assert!(net.converged());
    assert_eq!(
        net.nodes[1].get(&key).unwrap().unwrap().fields,
        written[0].fields
    );

    let (mut net, key, _, id) = manual_conflict();
    let merged = report("2025-12-12", 19);
    net.hub
        .resolve_conflict(id, ManualChoice::Merge(merged.clone()), t(200))
        .unwrap();
    net.sync_all(t(201)).unwrap();
    assert!(net.converged());
    for engine in std::iter::once(&mut net.hub).chain(net.nodes.iter_mut()) {
        assert_eq!(engine.get(&key).unwrap().unwrap().fields, merged);
    }
    assert_eq!(net.hub.audit_log().unwrap()[1].winner, ConflictSide::Merged);
}

/// Merges by taking the larger hours and the later date: deterministic and
/// symmetric, as the `Resolver` contract asks.
struct MaxHours;

impl Resolver for MaxHours {
    fn name(&self) -> &str {
        "max-hours"
    }
    fn resolve(&self, ctx: &ConflictContext<'_>) -> Decision {
        let pick = |f: &str| {
            let a = ctx.local.fields.get(f).cloned().unwrap_or_default();
            let b = ctx.incoming.fields.get(f).cloned().unwrap_or_default();
            match (&a, &b) {
                (Value::Int(x), Value::Int(y)) => Value::Int(*x.max(y)),
                (Value::Text(x), Value::Text(y)) => Value::Text(x.max(y).clone()),
                _ => a,
            }
        };
        let mut merged = Record::new();
        for f in ["date", "brigade", "hours"] {
            merged.insert(f.to_owned(), pick(f));
        }
        Decision::Merge(merged)
    }
}

/// Always takes the version that arrived.
struct IncomingWins;

impl Resolver for IncomingWins {
    fn name(&self) -> &str {
        "incoming-wins"
    }
    fn resolve(&self, _: &ConflictContext<'_>) -> Decision {
        Decision::TakeIncoming
    }
}

#[test]
fn custom_resolver_merge_reaches_every_node_and_keeps_both_inputs() {
    let strategy = ConflictStrategy::Custom(Arc::new(MaxHours));
    let (mut net, key) = shared_report(2, registry(strategy));
    net.nodes[0]
        .put(key.clone(), report("2025-12-20", 9), t(10))
        .unwrap();
    net.nodes[1]
        .put(key.clone(), report("2025-12-12", 12), t(11))
        .unwrap();
    let written = [
        net.nodes[0].get(&key).unwrap().unwrap(),
        net.nodes[1].get(&key).unwrap().unwrap(),
    ];
    net.sync(0, t(20)).unwrap();
    net.sync(1, t(21)).unwrap();
    net.sync_all(t(22)).unwrap();
    assert!(net.converged());
    assert!(net.quiet());
    let expected = report("2025-12-20", 12);
    for engine in std::iter::once(&mut net.hub).chain(net.nodes.iter_mut()) {
        assert_eq!(engine.get(&key).unwrap().unwrap().fields, expected);
    }
    let audit = net.hub.audit_log().unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(
        (audit[0].strategy.as_str(), audit[0].winner),
        ("custom:max-hours", ConflictSide::Merged)
    );
    let kept: Vec<_> = net
        .hub
        .versions(&key)
        .unwrap()
        .into_iter()
        .map(|v| v.data)
        .collect();
    assert_eq!(kept, written.to_vec(), "both inputs of a merge are kept");
}

#[test]
fn custom_resolver_can_take_the_incoming_version() {
    let registry = EntityRegistry::new().with(
        EntityType::new("DailyReport")
            .field("date", FieldKind::Text)
            .field("brigade", FieldKind::Text)
            .field("hours", FieldKind::Int)
            .resolver(Arc::new(IncomingWins)),
    );
    let (mut net, key) = shared_report(2, registry);
    let written = concurrent_edits(&mut net, &key, (t(20), t(10)), [0, 1]);
    for engine in std::iter::once(&mut net.hub).chain(net.nodes.iter_mut()) {
        assert_eq!(resolved(engine, &key, &written), written[1]);
    }
    let audit = net.hub.audit_log().unwrap();
    assert_eq!(
        (audit[0].strategy.as_str(), audit[0].winner),
        ("custom:incoming-wins", ConflictSide::Incoming)
    );
    assert_eq!(net.hub.versions(&key).unwrap()[0].data, written[0]);
}

#[test]
fn every_resolution_writes_one_audit_record() {
    let mut net = Net::new(3, registry(ConflictStrategy::ServerWins));
    let ids: Vec<_> = (0..4)
        .map(|i| {
            net.hub
                .insert("DailyReport", report("2025-12-12", i), t(0))
                .unwrap()
        })
        .collect();
    net.sync_all(t(1)).unwrap();
    drain(&mut net.hub);
    for (k, id) in ids.iter().enumerate() {
        for i in 0..3 {
            if (k + i) % 2 == 0 || k == 3 {
                net.nodes[i]
                    .put(
                        report_key(*id),
                        report("2025-12-12", (10 * i + k) as i64),
                        t(10),
                    )
                    .unwrap();
            }
        }
    }
    net.sync_all(t(20)).unwrap();
    assert!(net.converged());
    let events = conflict_events(&mut net.hub);
    let audit = net.hub.audit_log().unwrap();
    assert_eq!(audit.len(), events.len());
    // entity 0: nodes 0, 2; entity 1: node 1 alone; entity 2: nodes 0, 2;
    // entity 3: nodes 0, 1, 2. Each writer after the first conflicts.
    assert_eq!(audit.len(), 4);
    for (record, event) in audit.iter().zip(&events) {
        assert_eq!(
            (&record.key, record.peer, record.winner),
            (&event.key, event.peer, event.winner)
        );
    }
}

#[test]
fn without_versioning_a_conflict_is_still_audited() {
    let registry = EntityRegistry::new().with(
        EntityType::new("DailyReport")
            .field("date", FieldKind::Text)
            .field("brigade", FieldKind::Text)
            .field("hours", FieldKind::Int)
            .versioning(false),
    );
    let (mut net, key) = shared_report(2, registry);
    concurrent_edits(&mut net, &key, (t(10), t(20)), [0, 1]);
    assert!(net.hub.versions(&key).unwrap().is_empty());
    assert_eq!(net.hub.audit_log().unwrap().len(), 1);
    assert_eq!(conflict_events(&mut net.hub)[0].version_record, None);
}

#[test]
fn a_losing_local_version_records_when_it_arrived() {
    let (mut net, key) = shared_report(2, lww());
    net.nodes[0]
        .put(key.clone(), report("2025-12-12", 9), t(10))
        .unwrap();
    net.nodes[1]
        .put(key.clone(), report("2025-12-12", 10), t(20))
        .unwrap();
    let first = net.nodes[0].get(&key).unwrap().unwrap();
    net.sync(0, t(100)).unwrap(); // node 0's version arrives at the hub
    net.sync(1, t(200)).unwrap(); // node 1's later version wins
    let versions = net.hub.versions(&key).unwrap();
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0].data, first);
    assert_eq!(versions[0].arrival_time, t(100), "it arrived at t(100)");
}
