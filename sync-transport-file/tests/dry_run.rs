//! The dry run predicts the import: for random concurrent histories at a
//! node and the hub (every conflict strategy), what the preview reports is
//! what the import then does, and the preview changes nothing.

mod common;

use std::collections::BTreeSet;

use common::*;
use proptest::prelude::*;
use sync_conformance::fixtures::{
    NOTE_KEEP_BOTH, NOTE_LAST_WRITER_WINS, NOTE_MANUAL, NOTE_SERVER_WINS, record,
};
use sync_core::{ChangeKind, EntityKey, Event, Uuid, Value};
use sync_transport_file::{ExportOptions, answer, dry_run, import};

const TYPES: [&str; 4] = [
    NOTE_SERVER_WINS,
    NOTE_LAST_WRITER_WINS,
    NOTE_KEEP_BOTH,
    NOTE_MANUAL,
];

#[derive(Clone, Debug)]
enum Op {
    NodePut(u8, i64),
    HubPut(u8, i64),
    NodeDelete(u8),
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..16, any::<i64>()).prop_map(|(k, n)| Op::NodePut(k, n)),
        2 => (0u8..16, any::<i64>()).prop_map(|(k, n)| Op::HubPut(k, n)),
        1 => (0u8..16).prop_map(Op::NodeDelete),
    ]
}

fn key(k: u8) -> EntityKey {
    EntityKey::new(
        TYPES[usize::from(k) % TYPES.len()],
        Uuid::from_u128(0x7000 + u128::from(k)),
    )
}

fn put(engine: &mut Mem, k: u8, n: i64, now: sync_core::Timestamp) {
    let fields = record([("title", format!("{k}").into()), ("n", Value::Int(n))]);
    engine.put(key(k), fields, now).expect("put");
}

#[derive(Debug, Default, PartialEq)]
struct Effects {
    inserts: BTreeSet<EntityKey>,
    updates: BTreeSet<EntityKey>,
    deletes: BTreeSet<EntityKey>,
    conflicts: BTreeSet<EntityKey>,
    /// Conflicts left for a person (manual, at the hub).
    for_a_person: BTreeSet<EntityKey>,
}

/// What the real import did, from its events, sorted the preview's way.
fn effects_of(events: Vec<Event>) -> Effects {
    let mut effects = Effects::default();
    let mut applied = Vec::new();
    for event in events {
        match event {
            Event::Applied(change) => applied.push((change.kind, change.entity.key)),
            Event::Conflict(conflict) => {
                if conflict.open_conflict.is_some() {
                    effects.for_a_person.insert(conflict.key.clone());
                }
                effects.conflicts.insert(conflict.key);
            }
            _ => {}
        }
    }
    for (kind, key) in applied {
        if effects.conflicts.contains(&key) {
            continue;
        }
        match kind {
            ChangeKind::Created => effects.inserts.insert(key),
            ChangeKind::Updated => effects.updates.insert(key),
            ChangeKind::Deleted => effects.deletes.insert(key),
        };
    }
    effects
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    #[test]
    fn the_preview_is_what_the_import_does(
        shared in prop::collection::vec(arb_op(), 0..10),
        concurrent in prop::collection::vec(arb_op(), 1..16),
    ) {
        let mut w = World::new(1);
        let stick = tempfile::tempdir().expect("dir");
        let options = ExportOptions::default();
        let mut now = 0;
        let mut play = |w: &mut World, op: &Op| {
            now += 1;
            match op {
                Op::NodePut(k, n) => put(&mut w.nodes[0], *k, *n, t(now)),
                Op::HubPut(k, n) => put(&mut w.hub, *k, *n, t(now)),
                Op::NodeDelete(k) => {
                    if w.nodes[0].get(&key(*k)).expect("get").is_some_and(|e| !e.is_deleted) {
                        w.nodes[0].delete(key(*k), t(now)).expect("delete");
                    }
                }
            }
        };
        // A shared history, exchanged both ways.
        for op in &shared {
            play(&mut w, op);
        }
        for _ in 0..2 {
            let out = w.node_export(0, stick.path(), t(100));
            let answers = answer(&mut w.hub, &out.files, stick.path(), &options, t(100)).expect("answer");
            import(&mut w.nodes[0], &answers[0].reply_files, t(100)).expect("reply");
        }
        // Concurrent edits on both sides, then the node's file.
        for op in &concurrent {
            play(&mut w, op);
        }
        let exported = w.node_export(0, stick.path(), t(200));
        while w.hub.poll_event().is_some() {}

        let before = snapshot(&mut w.hub);
        let preview = dry_run(&mut w.hub, &exported.files, t(201)).expect("dry run").remove(0);
        prop_assert_eq!(snapshot(&mut w.hub), before);
        prop_assert!(w.hub.poll_event().is_none(), "a dry run emits no events");
        prop_assert!(preview.refusal.is_none());

        let imported = import(&mut w.hub, &exported.files, t(201)).expect("import");
        let mut events = Vec::new();
        while let Some(event) = w.hub.poll_event() {
            events.push(event);
        }
        let done = effects_of(events);
        let predicted = Effects {
            inserts: preview.inserts.iter().cloned().collect(),
            updates: preview.updates.iter().cloned().collect(),
            deletes: preview.deletes.iter().cloned().collect(),
            conflicts: preview.conflicts.iter().map(|c| c.key.clone()).collect(),
            for_a_person: preview
                .conflicts
                .iter()
                .filter(|c| c.needs_person)
                .map(|c| c.key.clone())
                .collect(),
        };
        let predicted_for_a_person = predicted.for_a_person.clone();
        prop_assert_eq!(predicted, done);
        prop_assert_eq!(preview.conflicts.len(), imported[0].conflicts);
        prop_assert_eq!(preview.parked, imported[0].parked);
        // Each conflict left for a person is in the queue; it may have
        // replaced a queued version of the same key that it descends from, so
        // the queue need not grow by as many.
        let queued: BTreeSet<EntityKey> =
            w.hub.open_conflicts().expect("open").into_iter().map(|c| c.key).collect();
        prop_assert!(predicted_for_a_person.is_subset(&queued));
        prop_assert_eq!(w.hub.peer(node_id(0)).expect("peer").received_packet_no, exported.header.packet_no);
    }
}

/// A hub whose store refuses notes titled "refused": the preview names the
/// change the import quarantines, and the import does quarantine it.
#[test]
fn the_preview_names_a_change_the_store_would_refuse() {
    use sync_conformance::crash::CrashingStore;
    use sync_conformance::fixtures::{hub_info, node_info, registry};
    use sync_core::rejected::RejectedBy;
    use sync_core::{ConflictStrategy, Engine, EngineConfig};

    let mut store = CrashingStore::new(sync_store_memory::MemoryStore::new());
    store.refuse_when(|e| {
        (e.fields.get("title") == Some(&Value::from("refused"))).then(|| "UNIQUE title".into())
    });
    let mut hub = Engine::new(
        store,
        sync_conformance::fixtures::registry(sync_core::ConflictStrategy::ServerWins),
        EngineConfig::default().seed(1),
        hub_info(),
    )
    .unwrap();
    hub.register_peer(node_info(0)).unwrap();
    let key = sync_transport_file::create_pair_key(&mut hub, node_id(0)).unwrap();
    let mut node = Engine::new(
        sync_store_memory::MemoryStore::new(),
        registry(ConflictStrategy::ServerWins),
        EngineConfig::default().seed(100),
        node_info(0),
    )
    .unwrap();
    node.register_peer(hub_info()).unwrap();
    sync_transport_file::install_pair_key(&mut node, sync_conformance::fixtures::hub_id(), &key)
        .unwrap();
    let refused = insert_note(&mut node, "refused", t(0));
    let accepted = insert_note(&mut node, "accepted", t(0));
    let stick = tempfile::tempdir().unwrap();
    let exported = sync_transport_file::export(
        &mut node,
        sync_conformance::fixtures::hub_id(),
        stick.path(),
        &ExportOptions::default(),
        t(1),
    )
    .unwrap();

    let preview = dry_run(&mut hub, &exported.files, t(2)).unwrap().remove(0);
    assert!(
        hub.rejected().unwrap().is_empty(),
        "the preview quarantined"
    );
    assert_eq!(hub.store().inner().entity_count(), 0);
    assert_eq!(preview.rejected.len(), 1);
    assert_eq!(
        preview.rejected[0].key,
        EntityKey::new(NOTE_SERVER_WINS, refused)
    );
    assert_eq!(preview.rejected[0].by, RejectedBy::Here);
    assert!(preview.rejected[0].reason.contains("UNIQUE title"));
    assert_eq!(
        preview.inserts,
        vec![EntityKey::new(NOTE_SERVER_WINS, accepted)]
    );

    let imported = import(&mut hub, &exported.files, t(2)).unwrap().remove(0);
    assert_eq!((imported.applied, imported.rejected), (1, 1));
    assert_eq!(hub.rejected().unwrap().len(), 1);
}
