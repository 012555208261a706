//! Property tests of the data model and the wire: referential integrity and
//! hierarchies under any arrival order, UUID identity, generic entity types,
//! serialization round trips (packet codec and serde bridge), schema version
//! checks, and gzip compression.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::ops::{self, SharedStep, arb_shared_steps, arb_steps, run, shared_write};
use common::strategies::{all_kinds_type, arb_all_kinds_record, arb_float, arb_value_of};
use common::*;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use sync_core::codec::Limits;
use sync_core::packet::Codec;
use sync_core::serde_bridge;
use sync_core::{
    ConflictStrategy, EntityKey, EntityRegistry, EntityType, ErrorCode, Event, FieldKind,
    Operation, Record, SchemaVersion, SecurityKind, SyncError, Timestamp, Uuid,
};

// Feature: sync-system, Property 3: Data integrity preservation
proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]
    #[test]
    fn no_node_ever_holds_a_child_without_its_parent(steps in arb_steps(3, 1..40)) {
        let mut net = Net::new(3, registry(ConflictStrategy::ServerWins));
        let mut link = Link::perfect();
        link.check = Some(assert_no_dangling);
        let (owned, now) = run(&mut net, &steps, &mut link);
        let mut clean = Link::perfect();
        clean.check = Some(assert_no_dangling);
        for i in (0..3).chain(0..3) {
            net.sync_faulty(i, now, &mut clean).unwrap();
        }
        assert_no_dangling(&mut net.hub);
        for node in &mut net.nodes {
            assert_no_dangling(node);
        }
        // Every line arrived, under the report it was written for.
        for (e, own) in owned.iter().enumerate() {
            for id in &own.lines {
                let written = ops::engine(&mut net, e).get(&line_key(*id)).unwrap();
                prop_assert_eq!(net.hub.get(&line_key(*id)).unwrap(), written);
            }
        }
    }
}

/// The keys some engine reported a conflict on.
fn conflicted(events: &[Event]) -> BTreeSet<EntityKey> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Conflict(c) => Some(c.key.clone()),
            _ => None,
        })
        .collect()
}

// Feature: sync-system, Property 3: Data integrity preservation
proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]
    /// Concurrent edits and deletions of the same reports and lines from the
    /// hub and three nodes, over a faulty link. A deleted report counts as
    /// absent: at the end no live line names a deleted report, unless the
    /// line itself won a conflict (an edit of it against its deletion, which
    /// the type's strategy decides). While running, no engine ever holds a
    /// line whose report it does not hold at all (lines wait, parked).
    #[test]
    fn no_live_child_of_a_deleted_parent_under_conflicts(
        lww in any::<bool>(),
        steps in arb_shared_steps(),
    ) {
        let strategy = if lww { ConflictStrategy::LastWriterWins } else { ConflictStrategy::ServerWins };
        let mut net = Net::new(3, registry(strategy));
        let mut link = Link::new([]);
        link.check = Some(assert_no_dangling);
        let mut now = t(0);
        let mut events = Vec::new();
        for step in &steps {
            now = now.add_millis(1_000);
            match step {
                SharedStep::Write(e, op) => shared_write(ops::engine(&mut net, *e), op, now),
                SharedStep::Sync(i, faults) => {
                    link.push(faults.iter().copied());
                    now = net.sync_faulty(*i, now, &mut link).unwrap();
                }
            }
            for e in 0..4 {
                events.extend(drain(ops::engine(&mut net, e)));
            }
        }
        let mut clean = Link::perfect();
        clean.check = Some(assert_no_dangling);
        for i in (0..3).chain(0..3) {
            now = net.sync_faulty(i, now, &mut clean).unwrap();
        }
        for e in 0..4 {
            events.extend(drain(ops::engine(&mut net, e)));
        }
        prop_assert!(net.converged());
        prop_assert!(net.quiet());
        let won = conflicted(&events);
        for e in 0..4 {
            let engine = ops::engine(&mut net, e);
            assert_no_dangling(engine);
            let unexplained: Vec<EntityKey> = live_children_of_deleted(engine)
                .into_iter()
                .filter(|k| !won.contains(k))
                .collect();
            prop_assert!(unexplained.is_empty(), "engine {}: live lines of deleted reports: {:?}", e, unexplained);
        }
    }
}

/// Projects hold reports, reports hold lines, and a line may also name a
/// material: a three-level hierarchy with a child of two parents.
fn hierarchy() -> EntityRegistry {
    EntityRegistry::new()
        .with(EntityType::new("Project").field("name", FieldKind::Text))
        .with(EntityType::new("Material").field("name", FieldKind::Text))
        .with(
            EntityType::new("DailyReport")
                .reference("project_id", "Project")
                .field("hours", FieldKind::Int),
        )
        .with(
            EntityType::new("DailyReportLine")
                .reference("report_id", "DailyReport")
                .reference("material_id", "Material")
                .field("qty", FieldKind::Float),
        )
}

#[derive(Clone, Debug)]
struct Tree {
    projects: usize,
    materials: usize,
    /// Each report's project (index).
    reports: Vec<usize>,
    /// Each line's report (index) and material (index), if any.
    lines: Vec<(usize, Option<usize>)>,
}

fn arb_tree() -> impl Strategy<Value = Tree> {
    (1usize..3, 0usize..3).prop_flat_map(|(projects, materials)| {
        let reports = prop::collection::vec(0..projects, 1..4);
        (Just(projects), Just(materials), reports).prop_flat_map(
            |(projects, materials, reports)| {
                let material = if materials == 0 {
                    Just(None).boxed()
                } else {
                    prop::option::of(0..materials).boxed()
                };
                let lines = prop::collection::vec((0..reports.len(), material), 0..6);
                (Just(projects), Just(materials), Just(reports), lines).prop_map(
                    |(projects, materials, reports, lines)| Tree {
                        projects,
                        materials,
                        reports,
                        lines,
                    },
                )
            },
        )
    })
}

/// Writes `tree` on a hub and returns the changes it sends, parents first.
fn tree_changes(tree: &Tree) -> Vec<sync_core::packet::Change> {
    let registry = hierarchy();
    changes_from_hub(&registry, |hub| {
        let name = |n: usize| Record::from([("name".to_owned(), format!("n{n}").into())]);
        let projects: Vec<Uuid> = (0..tree.projects)
            .map(|i| hub.insert("Project", name(i), t(0)).unwrap())
            .collect();
        let materials: Vec<Uuid> = (0..tree.materials)
            .map(|i| hub.insert("Material", name(i), t(0)).unwrap())
            .collect();
        let reports: Vec<Uuid> = tree
            .reports
            .iter()
            .map(|p| {
                let fields = Record::from([
                    ("project_id".to_owned(), projects[*p].into()),
                    ("hours".to_owned(), 8.into()),
                ]);
                hub.insert("DailyReport", fields, t(0)).unwrap()
            })
            .collect();
        for (r, m) in &tree.lines {
            let mut fields = Record::from([
                ("report_id".to_owned(), reports[*r].into()),
                ("qty".to_owned(), 1.5.into()),
            ]);
            if let Some(m) = m {
                fields.insert("material_id".to_owned(), materials[*m].into());
            }
            hub.insert("DailyReportLine", fields, t(0)).unwrap();
        }
    })
}

/// The entities among `delivered` whose every ancestor was delivered too.
fn complete(
    delivered: &BTreeMap<EntityKey, sync_core::Entity>,
    registry: &EntityRegistry,
) -> BTreeSet<EntityKey> {
    let mut applied = BTreeSet::new();
    loop {
        let before = applied.len();
        for (key, entity) in delivered {
            let ty = registry.get(&key.entity_type).unwrap();
            let parents_in = ty.references().all(|(field, target)| {
                entity
                    .fields
                    .get(field)
                    .and_then(|v| v.as_uuid())
                    .is_none_or(|id| applied.contains(&EntityKey::new(target, id)))
            });
            if parents_in {
                applied.insert(key.clone());
            }
        }
        if applied.len() == before {
            return applied;
        }
    }
}

// Feature: sync-system, Property 15: Hierarchical data support
proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]
    #[test]
    fn parent_child_relations_survive_any_arrival_order(
        (tree, order, cuts) in arb_tree().prop_flat_map(|tree| {
            let n = tree.projects + tree.materials + tree.reports.len() + tree.lines.len();
            (Just(tree), Just((0..n).collect::<Vec<_>>()).prop_shuffle(), prop::collection::vec(any::<bool>(), n))
        }),
    ) {
        let changes = tree_changes(&tree);
        let registry = hierarchy();
        let mut net = Net::new(1, registry.clone());
        // Arrival order `order`, cut into packets where `cuts` says so.
        let mut packets: Vec<Vec<sync_core::packet::Change>> = vec![Vec::new()];
        for (i, &which) in order.iter().enumerate() {
            if i > 0 && cuts[i] {
                packets.push(Vec::new());
            }
            packets.last_mut().unwrap().push(changes[which].clone());
        }
        let mut delivered = BTreeMap::new();
        for (packet_no, packet) in (1..).zip(&packets) {
            let bytes = forge(hub_id(), node_id(0), packet_no, packet, &registry);
            let node = &mut net.nodes[0];
            node.handle_incoming(&bytes, t(packet_no as i64)).unwrap();
            for change in packet {
                delivered.insert(change.entity.key.clone(), change.entity.clone());
            }
            assert_no_dangling(node);
            let applied = complete(&delivered, &registry);
            let stored: BTreeSet<EntityKey> = node.store().all_entities().map(|s| s.entity.key.clone()).collect();
            prop_assert_eq!(&stored, &applied, "applied exactly what has all its ancestors");
            let parked: BTreeSet<EntityKey> = node.parked().unwrap().into_iter().map(|p| p.entity.key).collect();
            let waiting: BTreeSet<EntityKey> = delivered.keys().filter(|k| !applied.contains(*k)).cloned().collect();
            prop_assert_eq!(parked, waiting, "the rest waits, parked");
        }
        prop_assert!(net.nodes[0].parked().unwrap().is_empty());
        for change in &changes {
            prop_assert_eq!(
                net.nodes[0].get(&change.entity.key).unwrap(),
                Some(change.entity.clone())
            );
        }
    }
}

// Feature: sync-system, Property 13: UUID identification
proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]
    #[test]
    fn every_entity_gets_a_unique_time_ordered_uuid(
        inserts in prop::collection::vec((0usize..4, 0i64..4_000_000_000_000), 1..30),
    ) {
        let mut net = Net::new(3, registry(ConflictStrategy::ServerWins));
        let mut ids = BTreeSet::new();
        for (e, millis) in &inserts {
            let now = Timestamp::from_millis(*millis);
            let id = ops::engine(&mut net, *e).insert("DailyReport", report("2025-12-12", 1), now).unwrap();
            prop_assert!(!id.is_nil());
            prop_assert_eq!(id.get_version_num(), 7, "UUIDv7");
            prop_assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
            let b = id.as_bytes();
            let embedded = u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]]);
            prop_assert_eq!(embedded as i64, *millis, "time-ordered: carries its creation time");
            prop_assert!(ids.insert(id), "unique");
        }
        net.sync_all(t(0)).unwrap();
        for id in &ids {
            for engine in std::iter::once(&mut net.hub).chain(net.nodes.iter_mut()) {
                prop_assert_eq!(engine.get(&report_key(*id)).unwrap().unwrap().key.id, *id);
            }
        }
    }
}

/// A random registered type: a name and declared fields of random kinds.
#[derive(Clone, Debug)]
struct TypeDef {
    name: String,
    fields: Vec<(String, FieldKind)>,
}

fn arb_kind() -> impl Strategy<Value = FieldKind> {
    prop_oneof![
        Just(FieldKind::Bool),
        Just(FieldKind::Int),
        Just(FieldKind::Float),
        Just(FieldKind::Text),
        Just(FieldKind::Bytes),
        Just(FieldKind::Timestamp),
        Just(FieldKind::Uuid),
        Just(FieldKind::List),
        Just(FieldKind::Record),
    ]
}

fn arb_types() -> impl Strategy<Value = Vec<TypeDef>> {
    let fields = prop::collection::btree_map("[a-z][a-z0-9_]{0,7}", arb_kind(), 1..6);
    prop::collection::btree_map("[A-Z][A-Za-z]{0,9}", fields, 1..4).prop_map(|types| {
        types
            .into_iter()
            .map(|(name, fields)| TypeDef {
                name,
                fields: fields.into_iter().collect(),
            })
            .collect()
    })
}

fn arb_record_of(def: &TypeDef) -> BoxedStrategy<Record> {
    let fields: Vec<_> = def
        .fields
        .iter()
        .map(|(name, kind)| {
            let name = name.clone();
            arb_value_of(kind).prop_map(move |v| (name.clone(), v))
        })
        .collect();
    fields.prop_map(|pairs| pairs.into_iter().collect()).boxed()
}

fn arb_types_and_entities() -> impl Strategy<Value = (Vec<TypeDef>, Vec<(usize, usize, Record)>)> {
    arb_types().prop_flat_map(|types| {
        let per_entity = (0..types.len()).prop_flat_map({
            let types = types.clone();
            move |ty| (Just(ty), 0usize..4, arb_record_of(&types[ty]))
        });
        (
            Just(types),
            prop::collection::vec(per_entity.prop_map(|(ty, e, r)| (e, ty, r)), 1..10),
        )
    })
}

// Feature: sync-system, Property 14: Generic entity synchronization
proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]
    #[test]
    fn any_registered_type_syncs_without_type_specific_code(
        (types, entities) in arb_types_and_entities(),
    ) {
        let registry = types.iter().fold(EntityRegistry::new(), |r, def| {
            r.with(def.fields.iter().fold(EntityType::new(def.name.clone()), |ty, (f, k)| ty.field(f.clone(), k.clone())))
        });
        let mut net = Net::new(3, registry);
        let mut written = Vec::new();
        for (e, ty, fields) in &entities {
            let engine = ops::engine(&mut net, *e);
            let id = engine.insert(&types[*ty].name, fields.clone(), t(0)).unwrap();
            written.push(engine.get(&EntityKey::new(types[*ty].name.clone(), id)).unwrap().unwrap());
        }
        net.sync_all(t(1)).unwrap();
        prop_assert!(net.quiet());
        for entity in &written {
            for engine in std::iter::once(&mut net.hub).chain(net.nodes.iter_mut()) {
                let there = engine.get(&entity.key).unwrap();
                prop_assert_eq!(there, Some(entity.clone()));
            }
        }
    }
}

/// A typed struct mapped to an entity through serde: one member of every
/// field kind (timestamps as RFC 3339 text).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Shift {
    title: String,
    hours: i64,
    rate: f64,
    approved: bool,
    signed_at: String,
    worker: Uuid,
    photo: Vec<u8>,
    tags: Vec<String>,
    note: Option<String>,
    meta: Meta,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Meta {
    level: i64,
    label: String,
}

fn shift_type() -> EntityType {
    EntityType::new("Shift")
        .field("title", FieldKind::Text)
        .field("hours", FieldKind::Int)
        .field("rate", FieldKind::Float)
        .field("approved", FieldKind::Bool)
        .field("signed_at", FieldKind::Timestamp)
        .field("worker", FieldKind::Uuid)
        .field("photo", FieldKind::Bytes)
        .field("tags", FieldKind::List)
        .field("note", FieldKind::Text)
        .field("meta", FieldKind::Record)
}

fn arb_shift() -> impl Strategy<Value = Shift> {
    (
        (".{0,10}", any::<i64>(), arb_float(), any::<bool>()),
        (
            0i64..=253_402_300_799_999_999,
            any::<u128>(),
            prop::collection::vec(any::<u8>(), 0..8),
        ),
        (
            prop::collection::vec("[a-z]{0,5}", 0..4),
            prop::option::of(".{0,6}"),
            any::<i64>(),
            ".{0,6}",
        ),
    )
        .prop_map(
            |((title, hours, rate, approved), (at, worker, photo), (tags, note, level, label))| {
                Shift {
                    title,
                    hours,
                    rate,
                    approved,
                    signed_at: Timestamp::from_micros(at).to_string(),
                    worker: Uuid::from_u128(worker),
                    photo,
                    tags,
                    note,
                    meta: Meta { level, label },
                }
            },
        )
}

/// Syncs node 0 and checks that the one change it sends decodes to the
/// node's version of `key`, and that the hub stores exactly that.
fn round_trip(
    net: &mut Net,
    key: &EntityKey,
    op: Operation,
    now: Timestamp,
) -> Result<(), TestCaseError> {
    let original = net.nodes[0].get(key).unwrap().unwrap();
    net.nodes[0].start_sync(hub_id()).unwrap();
    let packet = net.nodes[0].poll_transmit(now).unwrap().unwrap();
    let changes = body(&packet.bytes);
    prop_assert_eq!(changes.len(), 1);
    prop_assert_eq!(changes[0].operation, op);
    prop_assert_eq!(changes[0].entity.clone(), original.clone());
    let mut reply = net.hub.respond(&packet.bytes, now).unwrap();
    loop {
        net.nodes[0].handle_incoming(&reply, now).unwrap();
        let Some(next) = net.nodes[0].poll_transmit(now).unwrap() else {
            break;
        };
        reply = net.hub.respond(&next.bytes, now).unwrap();
    }
    prop_assert_eq!(net.hub.get(key).unwrap(), Some(original));
    Ok(())
}

// Feature: sync-system, Property 16: Serialization round-trip consistency
proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]
    #[test]
    fn an_entity_survives_the_packet_codec_unchanged(
        first in arb_all_kinds_record(),
        second in arb_all_kinds_record(),
        delete in any::<bool>(),
        codec in prop_oneof![Just(Codec::Zstd), Just(Codec::Gzip), Just(Codec::None)],
    ) {
        let registry = EntityRegistry::new().with(all_kinds_type("Doc"));
        let mut net = Net::with_config(1, registry, |c| c.codec(codec));
        let id = net.nodes[0].insert("Doc", first, t(0)).unwrap();
        let key = EntityKey::new("Doc", id);
        round_trip(&mut net, &key, Operation::Insert, t(1))?;
        net.nodes[0].put(key.clone(), second, t(2)).unwrap();
        let op = if delete {
            net.nodes[0].delete(key.clone(), t(3)).unwrap();
            Operation::Delete
        } else {
            Operation::Update
        };
        round_trip(&mut net, &key, op, t(4))?;
    }

    #[test]
    fn a_typed_struct_survives_the_serde_bridge_and_a_sync(shift in arb_shift()) {
        let ty = shift_type();
        let record = serde_bridge::to_record(&ty, &shift).unwrap();
        ty.validate(&record).unwrap();
        let back: Shift = serde_bridge::from_record(&ty, &record).unwrap();
        prop_assert_eq!(&back, &shift);

        let mut net = Net::new(1, EntityRegistry::new().with(ty));
        let id = net.nodes[0].insert_typed("Shift", &shift, t(0)).unwrap();
        net.sync(0, t(1)).unwrap();
        let on_hub: Option<Shift> = net.hub.get_typed(&EntityKey::new("Shift", id)).unwrap();
        prop_assert_eq!(on_hub, Some(shift));
    }
}

// --- schema versions -------------------------------------------------------------

fn arb_version(majors: std::ops::Range<u32>) -> impl Strategy<Value = SchemaVersion> {
    (majors, 0u32..5, 0u32..3).prop_map(|(a, b, c)| SchemaVersion::new(a, b, c))
}

/// A hub at `own` accepting nodes from `minimum`, and one node at `node`.
fn versioned(own: SchemaVersion, minimum: SchemaVersion, node: SchemaVersion) -> Net {
    let hub = hub_config().schema_version(own).min_peer_schema(minimum);
    Net::with_configs(1, registry(ConflictStrategy::ServerWins), hub, move |i| {
        node_config(i).schema_version(node)
    })
}

fn compatible(own: SchemaVersion, minimum: SchemaVersion, node: SchemaVersion) -> bool {
    node.major == own.major && node >= minimum
}

// Feature: sync-system, Property 17: Schema version validation
proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]
    #[test]
    fn every_sync_checks_schema_compatibility(
        own in arb_version(1..3),
        minor_floor in 0u32..5,
        node in arb_version(1..3),
    ) {
        let minimum = SchemaVersion::new(own.major, minor_floor, 0);
        let mut net = versioned(own, minimum, node);
        net.nodes[0].insert("DailyReport", report("2025-12-12", 1), t(0)).unwrap();
        let result = net.sync(0, t(1));
        if compatible(own, minimum, node) {
            prop_assert!(result.is_ok(), "{} accepted by {} (min {}): {:?}", node, own, minimum, result);
            prop_assert_eq!(net.hub.store().entity_count(), 1);
        } else {
            let refused = matches!(result, Err(SyncError::Rejected { code: ErrorCode::SchemaMismatch, .. }));
            prop_assert!(refused, "{} refused by {} (min {}): {:?}", node, own, minimum, result);
            let kinds: Vec<_> = net.hub.security_events().unwrap().into_iter().map(|e| e.kind).collect();
            prop_assert_eq!(kinds, vec![SecurityKind::SchemaRejected]);
        }
    }
}

// Feature: sync-system, Property 18: Version mismatch blocking
proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]
    #[test]
    fn an_outdated_node_is_blocked_every_time(
        own_minor in 1u32..6,
        behind in 1u32..6,
        attempts in 1usize..4,
        hub_writes in 0usize..3,
    ) {
        let own = SchemaVersion::new(1, own_minor, 0);
        let minimum = SchemaVersion::new(1, own_minor, 0);
        let node = SchemaVersion::new(1, own_minor.saturating_sub(behind), 9);
        prop_assume!(node < minimum);
        let mut net = versioned(own, minimum, node);
        net.nodes[0].insert("DailyReport", report("2025-12-12", 1), t(0)).unwrap();
        for i in 0..hub_writes {
            net.hub.insert("DailyReport", report("2025-12-13", i as i64), t(0)).unwrap();
        }
        for attempt in 0..attempts {
            let result = net.sync(0, t(1 + attempt as i64));
            let blocked = matches!(result, Err(SyncError::Rejected { code: ErrorCode::SchemaMismatch, retryable: false, .. }));
            prop_assert!(blocked, "attempt {}: {:?}", attempt, result);
        }
        prop_assert_eq!(net.hub.store().entity_count(), hub_writes, "nothing applied on the hub");
        prop_assert_eq!(net.nodes[0].store().entity_count(), 1, "nothing applied on the node");
        prop_assert_eq!(net.hub.peer(node_id(0)).unwrap().received_packet_no, 0);
        prop_assert_eq!(net.nodes[0].pending_count(hub_id()).unwrap(), 1, "still queued");
    }
}

// Feature: sync-system, Property 19: Version mismatch error messaging
proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]
    #[test]
    fn a_mismatch_message_names_both_versions_and_what_to_do(
        own in arb_version(1..3),
        minor_floor in 0u32..5,
        node in arb_version(1..4),
    ) {
        let minimum = SchemaVersion::new(own.major, minor_floor, 0);
        prop_assume!(!compatible(own, minimum, node));
        let mut net = versioned(own, minimum, node);
        let err = net.sync(0, t(1)).unwrap_err();
        let SyncError::Rejected { message, .. } = err else {
            return Err(TestCaseError::fail(format!("expected a refusal, got {err:?}")));
        };
        let hub_side = if node.major == own.major { minimum } else { own };
        prop_assert!(message.contains(&node.to_string()), "{}", message);
        prop_assert!(message.contains(&hub_side.to_string()), "{}", message);
        prop_assert!(message.contains("upgrade"), "{}", message);
        prop_assert!(message.contains("DESKTOP-0"), "names the node: {}", message);
        let events = drain(&mut net.nodes[0]);
        let told = events.iter().any(|e| matches!(e, Event::Rejected { message: m, .. } if *m == message));
        prop_assert!(told, "{:?}", events);
        let logged = net.hub.security_events().unwrap();
        prop_assert!(logged[0].detail.contains(&node.to_string()));
    }
}

// Feature: sync-system, Property 20: Protocol version inclusion
proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]
    #[test]
    fn every_packet_carries_its_senders_schema_version(
        own in arb_version(1..2),
        nodes in prop::collection::vec(arb_version(1..2), 2),
        writes in prop::collection::vec((0usize..3, ops::arb_op()), 0..12),
    ) {
        let hub = hub_config().schema_version(own);
        let versions = nodes.clone();
        let mut net = Net::with_configs(2, registry(ConflictStrategy::ServerWins), hub, move |i| node_config(i).schema_version(versions[i]));
        let mut owned = vec![ops::Owned::default(); 3];
        for (e, op) in &writes {
            owned[*e].apply(ops::engine(&mut net, *e), op, t(0));
        }
        let mut link = Link::perfect();
        for i in [0, 1, 0] {
            net.sync_faulty(i, t(1), &mut link).unwrap();
        }
        for seen in &link.log {
            let (bytes, expected) = match seen {
                Seen::NodeSent(i, b) => (b, nodes[*i]),
                Seen::HubSent(_, b) => (b, own),
                _ => continue,
            };
            prop_assert_eq!(header(bytes).schema_version, expected.to_string());
            let json = sync_core::json_view::envelope_to_json(bytes, &Limits::default()).unwrap();
            let text = expected.to_string();
            prop_assert_eq!(json["header"]["schema_version"].as_str(), Some(text.as_str()));
        }
        for (i, version) in nodes.iter().enumerate() {
            prop_assert_eq!(net.hub.peer(node_id(i)).unwrap().schema_version, Some(version.to_string()));
            prop_assert_eq!(net.nodes[i].peer(hub_id()).unwrap().schema_version, Some(own.to_string()));
        }
    }
}

// Feature: sync-system, Property 21: Compatible version processing
proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]
    #[test]
    fn compatible_versions_sync_normally(
        own in arb_version(1..2),
        minor_floor in 0u32..3,
        nodes in prop::collection::vec((0u32..5, 0u32..3), 2),
        writes in prop::collection::vec((0usize..3, ops::arb_op()), 1..15),
    ) {
        let minimum = SchemaVersion::new(1, minor_floor, 0);
        let versions: Vec<SchemaVersion> = nodes
            .iter()
            .map(|(minor, patch)| SchemaVersion::new(1, (*minor).max(minor_floor), *patch))
            .collect();
        for v in &versions {
            prop_assert!(compatible(own, minimum, *v));
        }
        let hub = hub_config().schema_version(own).min_peer_schema(minimum);
        let per_node = versions.clone();
        let mut net = Net::with_configs(2, registry(ConflictStrategy::ServerWins), hub, move |i| node_config(i).schema_version(per_node[i]));
        let mut owned = vec![ops::Owned::default(); 3];
        for (e, op) in &writes {
            owned[*e].apply(ops::engine(&mut net, *e), op, t(0));
        }
        net.sync_all(t(1)).unwrap();
        prop_assert!(net.converged());
        prop_assert!(net.quiet());
        prop_assert!(net.hub.security_events().unwrap().is_empty());
    }
}

// Feature: sync-system, Property 22: GZIP compression
proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]
    #[test]
    fn gzip_peers_compress_every_packet_with_gzip(
        records in prop::collection::vec(arb_all_kinds_record(), 1..6),
    ) {
        let registry = EntityRegistry::new().with(all_kinds_type("Doc"));
        let mut net = Net::with_config(1, registry, |c| c.codec(Codec::Gzip));
        for (i, r) in records.iter().enumerate() {
            let engine = if i % 2 == 0 { &mut net.hub } else { &mut net.nodes[0] };
            engine.insert("Doc", r.clone(), t(0)).unwrap();
        }
        let mut link = Link::perfect();
        net.sync_faulty(0, t(1), &mut link).unwrap();
        for seen in &link.log {
            let (Seen::NodeSent(_, bytes) | Seen::HubSent(_, bytes)) = seen else { continue };
            let packet = decode(bytes);
            prop_assert_eq!(packet.header.codec, Codec::Gzip);
            prop_assert_eq!(&packet.body[..2], &[0x1f, 0x8b][..]);
            let raw = sync_core::codec::decompress(Codec::Gzip, &packet.body, packet.header.body_raw_len).unwrap();
            prop_assert_eq!(raw.len() as u64, packet.header.body_raw_len);
        }
        prop_assert!(net.converged());
    }
}
