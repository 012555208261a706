//! Property tests of conflicts: detection, server-wins, last-writer-wins,
//! the audit log, and the object version history (preservation, source
//! node, arrival time, complete fields). Each case lets a random set of
//! writers (the hub and up to three nodes) edit one entity concurrently at
//! random (possibly equal, possibly skewed) clock readings, with random
//! field values of every kind, then lets the nodes sync in a random order.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::strategies::{all_kinds_type, arb_all_kinds_record};
use common::*;
use proptest::prelude::*;
use sync_core::{
    ConflictContext, ConflictEvent, ConflictSide, ConflictStrategy, Decision, Entity, EntityKey,
    EntityRegistry, Event, FieldFallback, ManualChoice, NodeId, Record, Resolver, Timestamp,
};

const NODES: usize = 3;

/// Takes, field by field, the value of the version with the larger content
/// digest (falling back to the other's): deterministic and symmetric.
struct DigestMerge;

impl Resolver for DigestMerge {
    fn name(&self) -> &str {
        "digest-merge"
    }
    fn resolve(&self, ctx: &ConflictContext<'_>) -> Decision {
        let (first, second) = if ctx.local.content_digest() > ctx.incoming.content_digest() {
            (ctx.local, ctx.incoming)
        } else {
            (ctx.incoming, ctx.local)
        };
        let mut merged = second.fields.clone();
        merged.extend(first.fields.clone());
        Decision::Merge(merged)
    }
}

/// Always takes the incoming version.
struct TakeIncoming;

impl Resolver for TakeIncoming {
    fn name(&self) -> &str {
        "take-incoming"
    }
    fn resolve(&self, _: &ConflictContext<'_>) -> Decision {
        Decision::TakeIncoming
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    ServerWins,
    LastWriterWins,
    KeepBoth,
    Manual,
    Merge,
    Incoming,
    FieldMerge,
}

fn strategy(kind: Kind) -> ConflictStrategy {
    match kind {
        Kind::ServerWins => ConflictStrategy::ServerWins,
        Kind::LastWriterWins => ConflictStrategy::LastWriterWins,
        Kind::KeepBoth => ConflictStrategy::KeepBoth,
        Kind::Manual => ConflictStrategy::Manual,
        Kind::Merge => ConflictStrategy::Custom(Arc::new(DigestMerge)),
        Kind::Incoming => ConflictStrategy::Custom(Arc::new(TakeIncoming)),
        Kind::FieldMerge => ConflictStrategy::FieldMerge {
            fallback: FieldFallback::LastWriterWins,
        },
    }
}

fn arb_kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::ServerWins),
        Just(Kind::LastWriterWins),
        Just(Kind::KeepBoth),
        Just(Kind::Manual),
        Just(Kind::Merge),
        Just(Kind::Incoming),
    ]
}

/// Every strategy but per-field merge (see
/// `merge_conflicts_follow_causality_over_a_faulty_link`).
fn arb_kind_but_merge() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::ServerWins),
        Just(Kind::LastWriterWins),
        Just(Kind::KeepBoth),
        Just(Kind::Manual),
        Just(Kind::Incoming),
    ]
}

/// One concurrent edit: writer 0 is the hub, `i + 1` is node `i`; `clock`
/// is the writer's clock reading in seconds (small range: ties are common,
/// and a reading before the base version models a clock running behind).
#[derive(Clone, Debug)]
struct Edit {
    writer: usize,
    clock: i64,
    fields: Record,
}

fn arb_edits() -> impl Strategy<Value = Vec<Edit>> {
    prop::sample::subsequence((0..=NODES).collect::<Vec<_>>(), 1..=NODES + 1).prop_flat_map(
        |writers| {
            let edits: Vec<_> = writers
                .into_iter()
                .map(|writer| {
                    (-3i64..6, arb_all_kinds_record()).prop_map(move |(clock, fields)| Edit {
                        writer,
                        clock,
                        fields,
                    })
                })
                .collect();
            edits
        },
    )
}

fn arb_order() -> impl Strategy<Value = Vec<usize>> {
    Just((0..NODES).collect::<Vec<_>>()).prop_shuffle()
}

/// What a conflict run left behind.
struct Outcome {
    net: Net,
    key: EntityKey,
    /// (writer, the version it wrote).
    written: Vec<(usize, Entity)>,
    /// When each node synced (and its packet reached the hub).
    synced_at: [Timestamp; NODES],
    /// The hub's conflict events, in order.
    events: Vec<ConflictEvent>,
}

impl Outcome {
    fn version_of(&self, writer: usize) -> Option<&Entity> {
        self.written
            .iter()
            .find(|(w, _)| *w == writer)
            .map(|(_, e)| e)
    }

    /// Node writers in the order they reached the hub.
    fn node_writers_in_sync_order(&self, order: &[usize]) -> Vec<usize> {
        order
            .iter()
            .filter(|i| self.version_of(**i + 1).is_some())
            .copied()
            .collect()
    }

    fn hub_wrote(&self) -> bool {
        self.version_of(0).is_some()
    }
}

fn writer_id(writer: usize) -> NodeId {
    if writer == 0 {
        hub_id()
    } else {
        node_id(writer - 1)
    }
}

/// A hub and the nodes, all holding one empty `Doc` the hub created.
fn doc_net(kind: Kind) -> (Net, EntityKey) {
    let registry = EntityRegistry::new().with(all_kinds_type("Doc").strategy(strategy(kind)));
    let mut net = Net::new(NODES, registry);
    let id = net.hub.insert("Doc", Record::new(), t(0)).unwrap();
    let key = EntityKey::new("Doc", id);
    net.sync_all(t(1)).unwrap();
    drain(&mut net.hub);
    (net, key)
}

fn run_conflict(kind: Kind, edits: &[Edit], order: &[usize]) -> Outcome {
    let (mut net, key) = doc_net(kind);
    let mut written = Vec::new();
    for edit in edits {
        let engine = ops::engine(&mut net, edit.writer);
        engine
            .put(key.clone(), edit.fields.clone(), t(edit.clock))
            .unwrap();
        written.push((edit.writer, engine.get(&key).unwrap().unwrap()));
    }
    let mut synced_at = [t(0); NODES];
    for (pos, &i) in order.iter().enumerate() {
        synced_at[i] = t(100 + pos as i64);
        net.sync(i, synced_at[i]).unwrap();
    }
    net.sync_all(t(200)).unwrap();
    let events = drain(&mut net.hub)
        .into_iter()
        .filter_map(|e| match e {
            Event::Conflict(c) => Some(c),
            _ => None,
        })
        .collect();
    Outcome {
        net,
        key,
        written,
        synced_at,
        events,
    }
}

/// How many conflicts the hub sees: every node writer conflicts with the
/// hub's version unless it is the first to arrive and the hub did not write.
fn expected_conflicts(out: &Outcome, order: &[usize]) -> usize {
    let writers = out.node_writers_in_sync_order(order).len();
    if out.hub_wrote() {
        writers
    } else {
        writers.saturating_sub(1)
    }
}

/// The final version on every engine, which must all agree.
fn final_version(out: &mut Outcome) -> Entity {
    assert!(out.net.converged());
    assert!(out.net.quiet());
    let on_hub = out.net.hub.get(&out.key).unwrap().unwrap();
    for node in &mut out.net.nodes {
        assert_eq!(node.get(&out.key).unwrap().unwrap(), on_hub);
    }
    on_hub
}

// Feature: sync-system, Property 9: Conflict detection
proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]
    #[test]
    fn concurrent_edits_are_detected_as_conflicts(
        kind in arb_kind(),
        edits in arb_edits(),
        order in arb_order(),
    ) {
        let mut out = run_conflict(kind, &edits, &order);
        prop_assert_eq!(out.events.len(), expected_conflicts(&out, &order));
        let arrivals: Vec<NodeId> = out.node_writers_in_sync_order(&order)
            .into_iter()
            .skip(usize::from(!out.hub_wrote()))
            .map(node_id)
            .collect();
        let peers: Vec<NodeId> = out.events.iter().map(|e| e.peer).collect();
        prop_assert_eq!(peers, arrivals);
        prop_assert!(out.events.iter().all(|e| e.key == out.key));
        for node in out.net.nodes.iter_mut() {
            prop_assert!(node.audit_log().unwrap().is_empty(), "detected at the hub");
        }
    }
}

/// One step of a causality run on the entity: a writer (0 is the hub,
/// `i + 1` is node `i`) edits or deletes it, or node `i` syncs over the
/// faulty link playing these faults.
#[derive(Clone, Debug)]
enum Act {
    Edit(usize, Record),
    Delete(usize),
    Sync(usize, Vec<Fault>),
}

fn arb_acts() -> impl Strategy<Value = Vec<Act>> {
    let act = prop_oneof![
        3 => (0..=NODES, arb_all_kinds_record()).prop_map(|(w, f)| Act::Edit(w, f)),
        2 => (0..=NODES).prop_map(Act::Delete),
        3 => (0..NODES, prop::collection::vec(ops::arb_fault(), 0..6)).prop_map(|(i, f)| Act::Sync(i, f)),
    ];
    prop::collection::vec(act, 1..16)
}

/// Who had seen which writes when: the test's own model of causality.
/// Each write gets a number; an engine's version of the entity includes
/// the writes its holder had seen (`seen`) and carries the content of one
/// of them (`head`). A node's version reaches the hub when the node syncs
/// after writing. It conflicts with the hub's version exactly when neither
/// was written knowing the other: neither includes the other's content
/// write (a version made by resolving a conflict carries the winner's
/// content and the loser is settled, so an edit on top of the winner is no
/// new conflict), unless both are deletions. After a sync both sides hold
/// every write either had seen.
struct Causality {
    /// Per engine (0 the hub, `i + 1` node `i`): its version.
    versions: Vec<Version>,
    /// Per node: whether it wrote since its last sync.
    dirty: Vec<bool>,
    /// Writes so far (the next write's number).
    writes: usize,
    /// The conflicts the hub must detect, as the peer that sent each.
    conflicts: Vec<NodeId>,
    /// The versions that are merges (no write of their own content).
    merges: BTreeSet<usize>,
}

#[derive(Clone, Debug)]
struct Version {
    seen: BTreeSet<usize>,
    head: usize,
    deleted: bool,
}

impl Causality {
    /// Every engine holds the hub's first version (write 0).
    fn new() -> Self {
        let first = Version {
            seen: BTreeSet::from([0]),
            head: 0,
            deleted: false,
        };
        Causality {
            versions: vec![first; NODES + 1],
            dirty: vec![false; NODES],
            writes: 1,
            conflicts: Vec::new(),
            merges: BTreeSet::new(),
        }
    }

    fn write(&mut self, writer: usize, delete: bool) {
        let v = &mut self.versions[writer];
        v.seen.insert(self.writes);
        v.head = self.writes;
        v.deleted = delete;
        self.writes += 1;
        if writer > 0 {
            self.dirty[writer - 1] = true;
        }
    }

    /// Node `i` is about to sync: whether the hub must see a conflict in
    /// its version.
    fn conflict_expected(&mut self, i: usize) -> bool {
        if !self.dirty[i] {
            return false;
        }
        let (hub, node) = (&self.versions[0], &self.versions[i + 1]);
        let knows = |a: &Version, b: &Version| a.seen.contains(&b.head);
        let concurrent = !knows(hub, node) && !knows(node, hub);
        let conflict = concurrent && !(hub.deleted && node.deleted);
        if conflict {
            self.conflicts.push(node_id(i));
        }
        conflict
    }

    /// Node `i` synced. `winner`: who won the conflict the hub saw, and
    /// `from_node`: whether the hub's version now carries the node's
    /// content (both the strategy's outcome, read from the engine).
    fn synced(&mut self, i: usize, winner: Option<ConflictSide>, from_node: bool, deleted: bool) {
        if self.dirty[i] {
            let node = self.versions[i + 1].clone();
            let hub = &mut self.versions[0];
            hub.seen.extend(node.seen.iter().copied());
            match winner {
                Some(ConflictSide::Merged) => {
                    hub.seen.insert(self.writes);
                    hub.head = self.writes;
                    self.merges.insert(self.writes);
                    self.writes += 1;
                }
                Some(ConflictSide::Incoming) => hub.head = node.head,
                Some(ConflictSide::Local) => {}
                None if from_node => hub.head = node.head,
                None => {}
            }
            hub.deleted = deleted;
        }
        self.versions[i + 1] = self.versions[0].clone();
        self.dirty[i] = false;
    }
}

/// Plays `acts` on a fresh net over one faulty link, then syncs every node
/// twice around on a perfect network; the model follows every step.
/// Returns the conflicts the hub reported.
fn run_causality(kind: Kind, acts: &[Act]) -> (Net, EntityKey, Causality, Vec<ConflictEvent>) {
    let (mut net, key) = doc_net(kind);
    let mut model = Causality::new();
    let mut events = Vec::new();
    let mut link = Link::new([]);
    let mut now = t(10);
    let mut sync =
        |net: &mut Net, model: &mut Causality, i: usize, link: &mut Link, now: Timestamp| {
            model.conflict_expected(i);
            let content = |e: &Entity| (e.is_deleted, e.fields.clone());
            let node_before = content(&net.nodes[i].get(&key).unwrap().unwrap());
            let hub_before = content(&net.hub.get(&key).unwrap().unwrap());
            let end = net.sync_faulty(i, now, link).unwrap();
            let seen: Vec<ConflictEvent> = conflicts(drain(&mut net.hub));
            let hub = net.hub.get(&key).unwrap().unwrap();
            let winner = seen.iter().find(|e| e.key == key).map(|e| e.winner);
            // A merge whose content is one side's stands for that side's
            // write (with both histories): the engine lets versions written
            // on that write follow it without a conflict.
            let winner = match winner {
                Some(ConflictSide::Merged) if content(&hub) == node_before => {
                    Some(ConflictSide::Incoming)
                }
                Some(ConflictSide::Merged)
                    if content(&hub) == hub_before
                        && !model.merges.contains(&model.versions[0].head) =>
                {
                    Some(ConflictSide::Local)
                }
                other => other,
            };
            model.synced(i, winner, hub.origin == node_id(i), hub.is_deleted);
            events.extend(seen);
            end
        };
    for act in acts {
        now = now.add_millis(1_000);
        match act {
            Act::Edit(w, fields) => {
                // Every edit's content is its own: equal content written
                // twice is no disagreement to resolve.
                let mut fields = fields.clone();
                fields.insert("s".into(), format!("write {}", model.writes).into());
                ops::engine(&mut net, *w)
                    .put(key.clone(), fields, now)
                    .unwrap();
                model.write(*w, false);
            }
            Act::Delete(w) => {
                ops::engine(&mut net, *w).delete(key.clone(), now).unwrap();
                model.write(*w, true);
            }
            Act::Sync(i, faults) => {
                link.push(faults.iter().copied());
                now = sync(&mut net, &mut model, *i, &mut link, now);
            }
        }
    }
    let mut perfect = Link::perfect();
    now = now.add_millis(1_000);
    for i in (0..NODES).chain(0..NODES) {
        now = sync(&mut net, &mut model, i, &mut perfect, now);
    }
    (net, key, model, events)
}

fn conflicts(events: Vec<Event>) -> Vec<ConflictEvent> {
    events
        .into_iter()
        .filter_map(|e| match e {
            Event::Conflict(c) => Some(c),
            _ => None,
        })
        .collect()
}

// Feature: sync-system, Property 9: Conflict detection
proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn conflicts_follow_causality_over_a_faulty_link(kind in arb_kind_but_merge(), acts in arb_acts()) {
        check_causality(kind, &acts)?;
    }
}

// Feature: sync-system, Property 9: Conflict detection
proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn merge_conflicts_follow_causality_over_a_faulty_link(acts in arb_acts()) {
        check_causality(Kind::Merge, &acts)?;
    }
}

/// The body of the Property 9 causality tests.
fn check_causality(kind: Kind, acts: &[Act]) -> Result<(), TestCaseError> {
    {
        let (mut net, key, model, events) = run_causality(kind, acts);
        let peers: Vec<NodeId> = events.iter().map(|e| e.peer).collect();
        prop_assert_eq!(
            &peers,
            &model.conflicts,
            "conflicts the hub detected, by sender"
        );
        prop_assert!(events.iter().all(|e| e.key == key));
        prop_assert_eq!(net.hub.audit_log().unwrap().len(), model.conflicts.len());
        for node in net.nodes.iter_mut() {
            prop_assert!(node.audit_log().unwrap().is_empty(), "detected at the hub");
        }
        if model.conflicts.is_empty() {
            // Concurrent deletions and causally ordered edits leave no trace.
            prop_assert!(
                net.hub.versions(&key).unwrap().is_empty(),
                "no history entry"
            );
            for node in net.nodes.iter_mut() {
                prop_assert!(node.versions(&key).unwrap().is_empty());
            }
        }
        prop_assert!(net.converged());
        prop_assert!(net.quiet());
    }
    Ok(())
}

// Feature: sync-system, Property 10: Server-wins conflict resolution
proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]
    #[test]
    fn by_default_the_server_version_is_preserved(
        edits in arb_edits(),
        order in arb_order(),
    ) {
        let mut out = run_conflict(Kind::ServerWins, &edits, &order);
        let hub_version = if out.hub_wrote() {
            out.version_of(0).cloned()
        } else {
            out.node_writers_in_sync_order(&order).first().and_then(|i| out.version_of(i + 1)).cloned()
        };
        let expected = hub_version.expect("someone wrote");
        prop_assert!(final_version(&mut out).same_content(&expected));
        prop_assert!(out.events.iter().all(|e| e.winner == ConflictSide::Local));
        // Every other version is kept in the hub's history.
        let kept: Vec<Entity> = out.net.hub.versions(&out.key).unwrap().into_iter().map(|v| v.data).collect();
        for (_, version) in out.written.iter().filter(|(_, v)| !v.same_content(&expected)) {
            prop_assert!(kept.iter().any(|k| k.same_content(version)), "{:?} lost", version.origin);
        }
    }
}

// Feature: sync-system, Property 11: Timestamp-based resolution
proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]
    #[test]
    fn last_writer_wins_selects_the_most_recent_utc_timestamp(
        edits in arb_edits(),
        order in arb_order(),
    ) {
        let mut out = run_conflict(Kind::LastWriterWins, &edits, &order);
        // The model: the latest UTC timestamp wins. Versions that share it
        // may end either way (the tie-break is the implementation's), but
        // the outcome is one of them, on every node alike.
        let latest = out.written.iter().map(|(_, v)| v.updated_at).max().unwrap();
        let candidates: Vec<Entity> = out
            .written
            .iter()
            .map(|(_, v)| v.clone())
            .filter(|v| v.updated_at == latest)
            .collect();
        let last = final_version(&mut out);
        prop_assert!(
            candidates.iter().any(|c| last.same_content(c)),
            "{:?} is none of the latest {:?}", last, candidates
        );
        prop_assert!(out.net.converged(), "every node holds the same outcome");
        for (_, version) in &out.written {
            prop_assert!(last.clock.includes(&version.clock), "the outcome includes every version");
        }
    }
}

// Feature: sync-system, Property 12: Conflict resolution audit logging
proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]
    #[test]
    fn every_resolution_leaves_an_audit_record(
        kind in arb_kind(),
        edits in arb_edits(),
        order in arb_order(),
        choices in prop::collection::vec(0usize..3, NODES + 1),
    ) {
        let mut out = run_conflict(kind, &edits, &order);
        let audit = out.net.hub.audit_log().unwrap();
        prop_assert_eq!(audit.len(), out.events.len());
        for (record, event) in audit.iter().zip(&out.events) {
            prop_assert_eq!(&record.key, &event.key);
            prop_assert_eq!((record.peer, record.winner), (event.peer, event.winner));
            prop_assert_eq!(&record.strategy, &strategy(kind).name());
            let peer = (0..NODES).find(|i| node_id(*i) == record.peer).unwrap();
            let incoming = out.version_of(peer + 1).unwrap();
            prop_assert_eq!((record.incoming_origin, record.incoming_updated_at), (incoming.origin, incoming.updated_at));
            prop_assert_eq!(record.at, out.synced_at[peer]);
            prop_assert!(!record.detail.is_empty());
        }
        // A person's decision on a manual conflict is audited too.
        let open = out.net.hub.open_conflicts().unwrap();
        prop_assert_eq!(open.len(), if kind == Kind::Manual { out.events.len() } else { 0 });
        for (conflict, choice) in open.iter().zip(&choices) {
            let choice = match choice {
                0 => ManualChoice::KeepCurrent,
                1 => ManualChoice::TakeIncoming,
                _ => ManualChoice::Merge(conflict.incoming.fields.clone()),
            };
            out.net.hub.resolve_conflict(conflict.id, choice, t(300)).unwrap();
        }
        let audit_after = out.net.hub.audit_log().unwrap();
        prop_assert_eq!(audit_after.len(), audit.len() + open.len());
        prop_assert!(audit_after[audit.len()..].iter().all(|a| a.strategy == "manual" && a.at == t(300)));
        prop_assert!(out.net.hub.open_conflicts().unwrap().is_empty());
        out.net.sync_all(t(301)).unwrap();
        final_version(&mut out);
    }
}

/// Whether the network still holds `version` somewhere a person can find
/// it: as the current version, in the hub's history, in an open conflict,
/// or as a keep-both copy.
fn kept_somewhere(out: &mut Outcome, version: &Entity) -> bool {
    let hub = &mut out.net.hub;
    let mut kept = vec![hub.get(&out.key).unwrap().unwrap()];
    kept.extend(hub.versions(&out.key).unwrap().into_iter().map(|v| v.data));
    for conflict in hub.open_conflicts().unwrap() {
        kept.extend([conflict.incoming, conflict.current]);
    }
    let copies: Vec<Entity> = out
        .events
        .iter()
        .filter_map(|e| e.copy)
        .filter_map(|id| hub.get(&EntityKey::new("Doc", id)).unwrap())
        .collect();
    kept.into_iter().any(|v| v.same_content(version))
        || copies.iter().any(|c| c.fields == version.fields)
}

// Feature: sync-system, Property 31: Version history preservation
proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]
    #[test]
    fn conflicting_versions_are_preserved_in_the_version_history(
        kind in arb_kind(),
        edits in arb_edits(),
        order in arb_order(),
    ) {
        let mut out = run_conflict(kind, &edits, &order);
        let history = out.net.hub.versions(&out.key).unwrap();
        for event in &out.events {
            let id = event.version_record.expect("versioning is on: the loser is recorded");
            prop_assert!(history.iter().any(|v| v.id == id));
        }
        let losers_per_conflict = if kind == Kind::Merge { 2 } else { 1 };
        prop_assert_eq!(history.len(), out.events.len() * losers_per_conflict);
        for (_, version) in out.written.clone() {
            prop_assert!(kept_somewhere(&mut out, &version), "a version of {:?} was lost", version.origin);
        }
    }
}

// Feature: sync-system, Property 32: Source node recording
proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]
    #[test]
    fn every_stored_version_names_its_source_node(
        kind in arb_kind(),
        edits in arb_edits(),
        order in arb_order(),
    ) {
        let mut out = run_conflict(kind, &edits, &order);
        for record in out.net.hub.versions(&out.key).unwrap() {
            prop_assert_eq!(record.source_node, record.data.origin);
            let writer = (0..=NODES).find(|w| writer_id(*w) == record.source_node);
            let data = record.data.clone();
            let known = writer.and_then(|w| out.version_of(w)).is_some_and(|v| v.same_content(&data));
            // A merged version may lose a later conflict; it names its writer too.
            let merged = kind == Kind::Merge && out.written.iter().all(|(_, v)| !v.same_content(&data));
            prop_assert!(known || merged, "{:?} is not what {:?} wrote", record.data, record.source_node);
        }
    }
}

// Feature: sync-system, Property 33: Arrival timestamp recording
proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]
    #[test]
    fn every_stored_version_records_its_arrival_time(
        kind in arb_kind(),
        edits in arb_edits(),
        order in arb_order(),
    ) {
        let mut out = run_conflict(kind, &edits, &order);
        let audit = out.net.hub.audit_log().unwrap();
        for record in out.net.hub.versions(&out.key).unwrap() {
            let data = &record.data;
            let as_incoming = audit.iter().find(|a| {
                a.key == record.key
                    && a.at == record.arrival_time
                    && (a.incoming_origin, a.incoming_updated_at) == (data.origin, data.updated_at)
            });
            if let Some(resolved) = as_incoming {
                // The version that arrived: recorded when its packet arrived.
                let peer = (0..NODES).find(|i| node_id(*i) == resolved.peer).unwrap();
                prop_assert_eq!(record.arrival_time, out.synced_at[peer]);
                continue;
            }
            // The version that was here: recorded when it had arrived, which
            // is no later than the resolution; a node's version arrived when
            // that node synced.
            // A merge may keep one side's content, origin and time under a
            // new clock, so several resolutions can name the same local
            // version: one of them came after its arrival.
            let resolutions: Vec<_> = audit.iter().filter(|a| {
                a.key == record.key && (a.local_origin, a.local_updated_at) == (data.origin, data.updated_at)
            }).collect();
            prop_assert!(!resolutions.is_empty(), "{:?} matches no resolution", record);
            prop_assert!(
                resolutions.iter().any(|a| record.arrival_time <= a.at),
                "{:?} arrived after every resolution that names it", record
            );
            if kind == Kind::Merge {
                // Written here, arrived with a sync, or made by an earlier merge.
                let hub_writes = edits.iter().filter(|e| e.writer == 0).map(|e| t(e.clock));
                let known = out.synced_at.iter().copied().chain(hub_writes).chain(audit.iter().map(|a| a.at));
                prop_assert!(known.into_iter().any(|at| at == record.arrival_time), "{:?} arrived at no known time", record);
            } else if let Some(writer) = (0..NODES).find(|i| node_id(*i) == data.origin) {
                prop_assert_eq!(record.arrival_time, out.synced_at[writer]);
            }
        }
    }
}

// Feature: sync-system, Property 34: Complete field serialization
proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]
    #[test]
    fn a_stored_conflicting_version_keeps_every_field_value(
        kind in prop_oneof![
            Just(Kind::ServerWins),
            Just(Kind::LastWriterWins),
            Just(Kind::KeepBoth),
            Just(Kind::Manual),
            Just(Kind::Merge),
            Just(Kind::Incoming),
            Just(Kind::FieldMerge),
        ],
        edits in arb_edits(),
        order in arb_order(),
    ) {
        let mut out = run_conflict(kind, &edits, &order);
        let history = out.net.hub.versions(&out.key).unwrap();
        let current = out.net.hub.get(&out.key).unwrap().unwrap();
        for (writer, version) in &out.written {
            if version.same_content(&current) {
                continue;
            }
            // A merge's own version is in the history too (a later merge
            // lost it), under the writer id and time of one of its sides:
            // the writer's version is the record of its writer with its
            // content, every field of every kind.
            let record = history
                .iter()
                .find(|r| r.source_node == writer_id(*writer) && r.data.same_content(version));
            prop_assert!(
                record.is_some(),
                "no stored version of writer {} with every field: {:?} in {:?}",
                writer,
                version,
                history
            );
        }
    }
}
