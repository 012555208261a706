//! Engine-level cases on the store under test: a hub and nodes syncing,
//! every conflict strategy, crashes (a dropped uncommitted transaction, a
//! failure at every store operation of an apply or a session), restarts.

use sync_core::{
    ConflictSide, ConflictStrategy, Engine, EngineConfig, EntityKey, Event, LocalWrite,
    ManualChoice, Record, Store, StoreErrorKind, StoreTxn, SyncError, Uuid, Value, WriteError,
};

use crate::crash::CrashingStore;
use crate::fixtures::{
    LINE, NOTE_FIELD_MERGE, NOTE_FIELD_MERGE_LWW, NOTE_KEEP_BOTH, NOTE_LAST_WRITER_WINS,
    NOTE_MANUAL, NOTE_MERGE, NOTE_SERVER_WINS, REPORT, hub_id, node_id, record, registry, t,
};
use crate::net::{Net, drain, session, synced_state};

fn report_fields(hours: i64) -> Record {
    record([
        ("date", "2025-12-12".into()),
        ("brigade", "B-7".into()),
        ("hours", Value::Int(hours)),
        ("local_note", "never leaves this node".into()),
    ])
}

fn note(title: &str) -> Record {
    record([("title", title.into()), ("rev", title.into())])
}

fn net<S: Store>(n: usize, make: impl Fn() -> S) -> Net<S> {
    Net::with_stores(n, registry(ConflictStrategy::ServerWins), make, |c| c)
}

/// Node 0 writes an entity, everyone syncs, then nodes 1 and 2 edit it
/// concurrently and sync in that order. Returns the net and the key.
fn concurrent_edit<S: Store>(make: impl Fn() -> S, ty: &str) -> (Net<S>, EntityKey) {
    let mut net = net(3, make);
    let id = net.nodes[0].insert(ty, note("base"), t(0)).expect("insert");
    let key = EntityKey::new(ty, id);
    net.sync_all(t(1)).expect("sync");
    net.nodes[1]
        .put(key.clone(), note("one"), t(10))
        .expect("put");
    net.nodes[2]
        .put(key.clone(), note("two"), t(11))
        .expect("put");
    net.sync(1, t(20)).expect("sync");
    net.sync(2, t(21)).expect("sync");
    net.sync_all(t(30)).expect("sync");
    assert!(net.converged(), "{ty}: nodes did not converge");
    (net, key)
}

fn title<S: Store>(engine: &mut Engine<S>, key: &EntityKey) -> Value {
    let entity = engine.get(key).expect("get").expect("present");
    entity.fields.get("title").cloned().unwrap_or(Value::Null)
}

/// Three nodes write reports, lines and notes offline; after syncing, every
/// node holds the hub's entities and nothing is pending anywhere.
pub fn engine_hub_and_nodes_converge<S: Store>(make: impl Fn() -> S) {
    let mut net = net(3, make);
    for (i, node) in net.nodes.iter_mut().enumerate() {
        let report = node
            .insert(REPORT, report_fields(i as i64), t(i as i64))
            .expect("insert report");
        for n in 0..3 {
            let line = record([
                ("report_id", Value::Uuid(report)),
                ("text", format!("line {n}").into()),
                ("qty", Value::Float(n as f64)),
            ]);
            node.insert(LINE, line, t(10 + n)).expect("insert line");
        }
        node.insert(NOTE_SERVER_WINS, note(&format!("n{i}")), t(20))
            .expect("insert note");
    }
    net.sync_all(t(100)).expect("sync");
    assert!(net.converged());
    assert_eq!(synced_state(&mut net.hub).expect("state").len(), 15);
    for (i, node) in net.nodes.iter_mut().enumerate() {
        assert_eq!(node.pending_count(hub_id()).expect("pending"), 0);
        assert_eq!(net.hub.pending_count(node_id(i)).expect("pending"), 0);
        assert!(node.parked().expect("parked").is_empty());
    }
    assert!(net.hub.parked().expect("parked").is_empty());
}

/// Packet numbers and acknowledgements as the store keeps them: one number
/// per packet each way, everything acknowledged at the end, and the same
/// peer states after reopening the stores.
pub fn engine_packet_numbers_and_acks_persist<S: Store>(make: impl Fn() -> S) {
    // One packet per message, so each message is one number.
    let mut net = Net::with_stores(1, registry(ConflictStrategy::ServerWins), make, |c| {
        c.batch(3, 1 << 20).pipeline(1)
    });
    for n in 0..10 {
        net.nodes[0]
            .insert(NOTE_SERVER_WINS, note(&format!("n{n}")), t(n))
            .expect("insert");
    }
    net.nodes[0].start_sync(hub_id()).expect("start");
    let mut sent = 0;
    while let Some(packet) = net.nodes[0].poll_transmit(t(20)).expect("poll") {
        sent += 1;
        assert_eq!(packet.packet_no, sent);
        let reply = net.hub.respond(&packet.bytes, t(20)).expect("respond");
        let incoming = net.nodes[0]
            .handle_incoming(&reply, t(20))
            .expect("incoming");
        assert_eq!(incoming.packet_no, sent, "the hub numbers its replies too");
        assert!(!incoming.duplicate);
        let node_view = net.nodes[0].peer(hub_id()).expect("peer");
        let hub_view = net.hub.peer(node_id(0)).expect("peer");
        assert_eq!(node_view.sent_packet_no, sent);
        assert_eq!(hub_view.received_packet_no, sent);
        assert_eq!(node_view.received_packet_no, hub_view.sent_packet_no);
        assert!(node_view.in_flight.iter().all(|f| f.packet_no > sent));
    }
    assert!(
        sent >= 4,
        "ten changes in batches of three take four packets"
    );
    assert_eq!(net.nodes[0].pending_count(hub_id()).expect("pending"), 0);
    let node_before = net.nodes[0].peer(hub_id()).expect("peer");
    let hub_before = net.hub.peer(node_id(0)).expect("peer");
    let config = net.hub.config().clone();
    let reg = net.hub.registry().clone();
    let node = Engine::open(
        net.nodes.remove(0).into_store(),
        reg.clone(),
        config.clone(),
    )
    .expect("reopen node");
    let hub = Engine::open(net.hub.into_store(), reg, config).expect("reopen hub");
    let (mut node, mut hub) = (node, hub);
    assert_eq!(node.peer(hub_id()).expect("peer"), node_before);
    assert_eq!(hub.peer(node_id(0)).expect("peer"), hub_before);
    session(&mut node, &mut hub, t(30)).expect("sync after reopen");
    assert_eq!(
        node.peer(hub_id()).expect("peer").sent_packet_no,
        node_before.sent_packet_no + 1
    );
}

/// The same packet delivered twice is applied once: the second delivery is
/// a duplicate and changes no entity.
pub fn engine_duplicate_packet_changes_nothing<S: Store>(make: impl Fn() -> S) {
    let mut net = net(1, make);
    net.nodes[0]
        .insert(NOTE_SERVER_WINS, note("once"), t(0))
        .expect("insert");
    net.nodes[0].start_sync(hub_id()).expect("start");
    let packet = net.nodes[0]
        .poll_transmit(t(1))
        .expect("poll")
        .expect("packet");
    let first = net.hub.handle_incoming(&packet.bytes, t(1)).expect("first");
    assert!(!first.duplicate);
    assert_eq!(first.applied, 1);
    let state = synced_state(&mut net.hub).expect("state");
    let peer = net.hub.peer(node_id(0)).expect("peer");
    let again = net.hub.handle_incoming(&packet.bytes, t(2)).expect("again");
    assert!(again.duplicate);
    assert_eq!(again.applied, 0);
    assert_eq!(synced_state(&mut net.hub).expect("state"), state);
    assert_eq!(net.hub.peer(node_id(0)).expect("peer"), peer);
    let reply = net.hub.build_packet(node_id(0), t(3)).expect("reply").bytes;
    assert!(
        !net.nodes[0]
            .handle_incoming(&reply, t(3))
            .expect("reply")
            .duplicate
    );
    assert!(
        net.nodes[0]
            .handle_incoming(&reply, t(3))
            .expect("again")
            .duplicate
    );
}

/// With one change per packet and the parent changed after its child, the
/// child may travel first: the hub never applies it without its parent (it
/// parks it), and once the parent arrives the child is applied and nothing
/// stays parked.
pub fn engine_parents_travel_before_children<S: Store>(make: impl Fn() -> S) {
    let mut net = Net::with_stores(2, registry(ConflictStrategy::ServerWins), make, |c| {
        c.batch(1, 1 << 20)
    });
    let report = net.nodes[0]
        .insert(REPORT, report_fields(1), t(0))
        .expect("insert");
    let line = record([("report_id", Value::Uuid(report)), ("text", "dig".into())]);
    let line = net.nodes[0].insert(LINE, line, t(1)).expect("insert");
    net.nodes[0]
        .put(EntityKey::new(REPORT, report), report_fields(2), t(2))
        .expect("update");
    net.nodes[0].start_sync(hub_id()).expect("start");
    while let Some(packet) = net.nodes[0].poll_transmit(t(3)).expect("poll") {
        let reply = net.hub.respond(&packet.bytes, t(3)).expect("respond");
        let state = synced_state(&mut net.hub).expect("state");
        for child in state.iter().filter(|e| e.key.entity_type == LINE) {
            let parent = child.fields["report_id"].as_uuid().expect("a reference");
            assert!(
                state
                    .iter()
                    .any(|e| e.key == EntityKey::new(REPORT, parent)),
                "the hub applied a child without its parent"
            );
        }
        net.nodes[0].handle_incoming(&reply, t(3)).expect("reply");
    }
    assert!(net.hub.parked().expect("parked").is_empty());
    net.sync_all(t(4)).expect("sync");
    assert!(net.converged());
    assert!(
        net.nodes[1]
            .get(&EntityKey::new(LINE, line))
            .expect("get")
            .is_some()
    );
    assert!(net.nodes[1].parked().expect("parked").is_empty());
}

/// Issue 10, item 4, on every store: node 0 deletes a report with its lines
/// while node 1 edits the report. When the edit wins (server-wins: it
/// reached the hub first; last-writer-wins: it is later and reaches the hub
/// after the deletion), the lines deleted with the report come back with
/// it, on every node, with the values they had; a line node 0 deleted on
/// its own while the report stood stays deleted.
pub fn engine_children_deleted_with_a_losing_parent_come_back<S: Store>(make: impl Fn() -> S) {
    for edit_first in [true, false] {
        let strategy = match edit_first {
            true => ConflictStrategy::ServerWins,
            false => ConflictStrategy::LastWriterWins,
        };
        let mut net = Net::with_stores(2, registry(strategy), &make, |c| c);
        let report = EntityKey::new(
            REPORT,
            net.nodes[0]
                .insert(REPORT, report_fields(1), t(0))
                .expect("insert"),
        );
        let line =
            |text: &str| record([("report_id", Value::Uuid(report.id)), ("text", text.into())]);
        let mut lines = Vec::new();
        for text in ["dig", "fill", "gone"] {
            let id = net.nodes[0].insert(LINE, line(text), t(1)).expect("line");
            lines.push(EntityKey::new(LINE, id));
        }
        net.sync_all(t(2)).expect("sync");
        // A deletion of its own, synced while the report still stands.
        net.nodes[0].delete(lines[2].clone(), t(3)).expect("delete");
        net.sync_all(t(4)).expect("sync");

        let edit = |net: &mut Net<S>, at| {
            net.nodes[1]
                .put(report.clone(), report_fields(9), t(at))
                .expect("edit")
        };
        if edit_first {
            edit(&mut net, 10);
            net.sync(1, t(11)).expect("sync");
        }
        net.nodes[0]
            .write_batch(
                vec![
                    LocalWrite::Delete {
                        key: lines[0].clone(),
                    },
                    LocalWrite::Delete {
                        key: lines[1].clone(),
                    },
                    LocalWrite::Delete {
                        key: report.clone(),
                    },
                ],
                t(12),
            )
            .expect("delete with lines");
        net.sync(0, t(13)).expect("sync");
        if !edit_first {
            edit(&mut net, 20);
            net.sync(1, t(21)).expect("sync");
        }
        drain(&mut net.hub);
        net.sync_all(t(30)).expect("sync");
        net.sync_all(t(31)).expect("sync");
        assert!(net.converged(), "edit first: {edit_first}");
        for engine in std::iter::once(&mut net.hub).chain(net.nodes.iter_mut()) {
            let kept = engine.get(&report).expect("get").expect("report");
            assert!(!kept.is_deleted, "the edit won (edit first: {edit_first})");
            assert_eq!(kept.fields["hours"], Value::Int(9));
            for (key, text) in lines[..2].iter().zip(["dig", "fill"]) {
                let back = engine.get(key).expect("get").expect("line");
                assert!(
                    !back.is_deleted,
                    "{key} came back (edit first: {edit_first})"
                );
                assert_eq!(back.fields["text"], Value::from(text));
            }
            let gone = engine.get(&lines[2]).expect("get").expect("tombstone");
            assert!(gone.is_deleted, "a deletion of its own stays");
        }
        assert!(
            net.nodes
                .iter_mut()
                .all(|n| n.pending_count(hub_id()).expect("count") == 0)
        );
    }
}

/// A line added on node 0 while node 1 deletes its report (either reaching
/// the hub first) is an orphan: the hub deletes it as its own write, keeps
/// the line in its version history and reports [`Event::Orphaned`]; the
/// nodes take the deletion. Node 2 edited the report before it saw the
/// deletion, later (last-writer-wins): when that edit arrives and wins, the
/// report lives again and the orphaned line comes back with it, everywhere.
pub fn engine_orphaned_child_is_deleted_and_comes_back_with_its_parent<S: Store>(
    make: impl Fn() -> S,
) {
    for deletion_first in [true, false] {
        let case = format!("deletion first: {deletion_first}");
        let registry = registry(ConflictStrategy::LastWriterWins);
        let mut net = Net::with_stores(3, registry, &make, |c| c);
        let report = EntityKey::new(
            REPORT,
            net.hub
                .insert(REPORT, report_fields(1), t(0))
                .expect("insert"),
        );
        net.sync_all(t(1)).expect("sync");
        drain(&mut net.hub);
        net.nodes[1].delete(report.clone(), t(10)).expect("delete");
        let fields = record([
            ("report_id", Value::Uuid(report.id)),
            ("text", "dig".into()),
        ]);
        let line = EntityKey::new(
            LINE,
            net.nodes[0].insert(LINE, fields, t(11)).expect("line"),
        );
        net.nodes[2]
            .put(report.clone(), report_fields(9), t(15))
            .expect("edit");
        let order = if deletion_first { [1, 0] } else { [0, 1] };
        for i in order {
            net.sync(i, t(20)).expect("sync");
        }
        let orphaned: Vec<Event> = drain(&mut net.hub)
            .into_iter()
            .filter(|e| matches!(e, Event::Orphaned { .. }))
            .collect();
        let [
            Event::Orphaned {
                key,
                parent,
                live,
                deletion,
            },
        ] = &orphaned[..]
        else {
            panic!("{case}: one orphan expected, got {orphaned:?}");
        };
        assert_eq!((key, parent), (&line, &report), "{case}");
        assert!(!live.is_deleted && deletion.is_deleted, "{case}");
        assert_eq!(deletion.origin, hub_id(), "{case}: the hub's own write");
        let kept = net.hub.versions(&line).expect("versions");
        assert_eq!(kept.len(), 1, "{case}: {kept:?}");
        assert!(kept[0].resolution.starts_with("orphaned"), "{case}");
        assert_eq!(kept[0].data.fields["text"], Value::from("dig"), "{case}");
        for i in [0, 1] {
            net.sync(i, t(25)).expect("sync");
        }
        for engine in std::iter::once(&mut net.hub).chain(net.nodes.iter_mut().take(2)) {
            let held = engine.get(&line).expect("get").expect("line");
            assert!(
                held.is_deleted,
                "{case}: no live line under a deleted report"
            );
        }

        net.sync(2, t(30)).expect("sync");
        let restored = drain(&mut net.hub)
            .into_iter()
            .filter(|e| matches!(e, Event::Restored { key, .. } if *key == line))
            .count();
        assert_eq!(restored, 1, "{case}: the line comes back with its report");
        net.sync_all(t(40)).expect("sync");
        net.sync_all(t(41)).expect("sync");
        assert!(net.converged(), "{case}");
        for engine in std::iter::once(&mut net.hub).chain(net.nodes.iter_mut()) {
            let kept = engine.get(&report).expect("get").expect("report");
            assert!(!kept.is_deleted, "{case}: the later edit won");
            let back = engine.get(&line).expect("get").expect("line");
            assert!(!back.is_deleted, "{case}: the line is back");
            assert_eq!(back.fields["text"], Value::from("dig"), "{case}");
        }
    }
}

/// Server-wins: the hub's version stands everywhere; the loser is in the
/// hub's version history and the audit log.
pub fn engine_server_wins<S: Store>(make: impl Fn() -> S) {
    let (mut net, key) = concurrent_edit(make, NOTE_SERVER_WINS);
    assert_eq!(title(&mut net.hub, &key), Value::from("one"));
    let versions = net.hub.versions(&key).expect("versions");
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0].data.fields["title"], Value::from("two"));
    assert_eq!(versions[0].source_node, node_id(2));
    let audit = net.hub.audit_log().expect("audit");
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].strategy, "server-wins");
    assert_eq!(audit[0].winner, ConflictSide::Local);
}

/// Last-writer-wins by UTC `updated_at`, whatever the sync order and clock
/// skew: the node whose clock says later wins, on every node.
pub fn engine_last_writer_wins_with_skewed_clocks<S: Store>(make: impl Fn() -> S) {
    let mut net = net(2, make);
    let id = net.nodes[0]
        .insert(NOTE_LAST_WRITER_WINS, note("base"), t(0))
        .expect("insert");
    let key = EntityKey::new(NOTE_LAST_WRITER_WINS, id);
    net.sync_all(t(1)).expect("sync");
    // Node 0's clock runs an hour fast; node 1 writes later in real time
    // and syncs first, but its timestamp is earlier.
    net.nodes[0]
        .put(key.clone(), note("fast clock"), t(3_600))
        .expect("put");
    net.nodes[1]
        .put(key.clone(), note("slow clock"), t(20))
        .expect("put");
    net.sync(1, t(30)).expect("sync");
    net.sync(0, t(31)).expect("sync");
    net.sync_all(t(40)).expect("sync");
    assert!(net.converged());
    assert_eq!(title(&mut net.hub, &key), Value::from("fast clock"));
    let audit = net.hub.audit_log().expect("audit");
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].winner, ConflictSide::Incoming);
}

/// Keep-both: the hub's version stands and the loser lives on as a copy
/// under a new id, on every node.
pub fn engine_keep_both_keeps_loser_copy<S: Store>(make: impl Fn() -> S) {
    let (mut net, key) = concurrent_edit(make, NOTE_KEEP_BOTH);
    assert_eq!(title(&mut net.hub, &key), Value::from("one"));
    let conflict = drain(&mut net.hub)
        .into_iter()
        .find_map(|e| match e {
            Event::Conflict(c) => Some(c),
            _ => None,
        })
        .expect("a conflict event");
    let copy = EntityKey::new(NOTE_KEEP_BOTH, conflict.copy.expect("a copy"));
    assert_ne!(copy, key);
    for node in &mut net.nodes {
        assert_eq!(title(node, &copy), Value::from("two"));
    }
}

/// Manual: the current version stays, the other waits in the hub's queue;
/// a person's decision syncs to every node and empties the queue.
pub fn engine_manual_queues_and_resolves<S: Store>(make: impl Fn() -> S) {
    let (mut net, key) = concurrent_edit(make, NOTE_MANUAL);
    assert_eq!(title(&mut net.hub, &key), Value::from("one"));
    let open = net.hub.open_conflicts().expect("open");
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].incoming.fields["title"], Value::from("two"));
    net.hub
        .resolve_conflict(open[0].id, ManualChoice::TakeIncoming, t(50))
        .expect("resolve");
    assert!(net.hub.open_conflicts().expect("open").is_empty());
    assert!(matches!(
        net.hub
            .resolve_conflict(open[0].id, ManualChoice::KeepCurrent, t(51)),
        Err(SyncError::ConflictNotFound(_))
    ));
    net.sync_all(t(60)).expect("sync");
    assert!(net.converged());
    for node in &mut net.nodes {
        assert_eq!(title(node, &key), Value::from("two"));
    }
}

/// A custom resolver's merge is stored and synced everywhere.
pub fn engine_custom_resolver_merges<S: Store>(make: impl Fn() -> S) {
    let (mut net, key) = concurrent_edit(make, NOTE_MERGE);
    let merged = net.hub.get(&key).expect("get").expect("present");
    assert_eq!(merged.fields["body"], Value::from("merged one + two"));
    assert_eq!(net.hub.versions(&key).expect("versions").len(), 2);
    for node in &mut net.nodes {
        assert_eq!(node.get(&key).expect("get"), Some(merged.clone()));
    }
}

/// Per-field merge, on both fallbacks: nodes 1 and 2 edit different fields
/// of one note concurrently (and both edit `rev`); after syncing every node
/// holds both edits, `rev` is decided by the fallback (the hub's value, or
/// the later writer's), both versions are in the hub's version history and
/// one audit record names the strategy. A second round of concurrent edits
/// of different fields, on top of the merge, merges again.
pub fn engine_field_merge_keeps_both_fields<S: Store>(make: impl Fn() -> S) {
    for (ty, rev) in [(NOTE_FIELD_MERGE, "r1"), (NOTE_FIELD_MERGE_LWW, "r2")] {
        let mut net = net(3, &make);
        let base = record([
            ("title", "base".into()),
            ("body", "base".into()),
            ("rev", "base".into()),
            ("n", Value::Int(1)),
        ]);
        let id = net.nodes[0].insert(ty, base.clone(), t(0)).expect("insert");
        let key = EntityKey::new(ty, id);
        net.sync_all(t(1)).expect("sync");
        let mut one = base.clone();
        one.insert("title".into(), "one".into());
        one.insert("rev".into(), "r1".into());
        let mut two = base.clone();
        two.insert("body".into(), "two".into());
        two.insert("n".into(), Value::Int(2));
        two.insert("rev".into(), "r2".into());
        net.nodes[1].put(key.clone(), one, t(10)).expect("put");
        net.nodes[2].put(key.clone(), two, t(11)).expect("put");
        net.sync(1, t(20)).expect("sync");
        net.sync(2, t(21)).expect("sync");
        net.sync_all(t(30)).expect("sync");
        assert!(net.converged(), "{ty}: nodes did not converge");
        let merged = net.hub.get(&key).expect("get").expect("present");
        let field = |name: &str| merged.fields.get(name).cloned();
        assert_eq!(field("title"), Some("one".into()), "{ty}");
        assert_eq!(field("body"), Some("two".into()), "{ty}");
        assert_eq!(field("n"), Some(Value::Int(2)), "{ty}");
        assert_eq!(field("rev"), Some(rev.into()), "{ty}: the fallback decides");
        let versions = net.hub.versions(&key).expect("versions");
        assert_eq!(versions.len(), 2, "{ty}: both versions kept");
        let audit = net.hub.audit_log().expect("audit");
        assert_eq!(audit.len(), 1, "{ty}: one conflict");
        assert!(audit[0].strategy.starts_with("field-merge:"), "{ty}");
        assert_eq!(audit[0].winner, ConflictSide::Merged);
        assert!(audit[0].detail.contains("rev"), "{}", audit[0].detail);
        for node in &mut net.nodes {
            let held = node.get(&key).expect("get").expect("present");
            assert!(held.same_version(&merged), "{ty}: {held:?} != {merged:?}");
        }
        // Again, on top of the merge: only different fields change.
        let mut again = merged.fields.clone();
        again.insert("title".into(), "one again".into());
        net.nodes[1].put(key.clone(), again, t(40)).expect("put");
        let mut again = merged.fields.clone();
        again.insert("n".into(), Value::Int(3));
        net.nodes[0].put(key.clone(), again, t(41)).expect("put");
        net.sync(0, t(50)).expect("sync");
        net.sync(1, t(51)).expect("sync");
        net.sync_all(t(60)).expect("sync");
        assert!(net.converged(), "{ty}: nodes did not converge again");
        let merged = net.hub.get(&key).expect("get").expect("present");
        assert_eq!(merged.fields["title"], Value::from("one again"), "{ty}");
        assert_eq!(merged.fields["n"], Value::Int(3), "{ty}");
        assert_eq!(merged.fields["body"], Value::from("two"), "{ty}");
        assert_eq!(merged.fields["rev"], Value::from(rev), "{ty}");
        assert_eq!(net.hub.audit_log().expect("audit").len(), 2, "{ty}");
    }
}

/// A batch whose second write is refused writes nothing at all.
pub fn engine_failed_batch_writes_nothing<S: Store>(make: impl Fn() -> S) {
    let mut net = net(1, make);
    let node = &mut net.nodes[0];
    let good = EntityKey::new(NOTE_SERVER_WINS, Uuid::from_u128(1));
    let orphan = EntityKey::new(LINE, Uuid::from_u128(2));
    let result = node.write_batch(
        vec![
            LocalWrite::Put {
                key: good.clone(),
                fields: note("good"),
            },
            LocalWrite::Put {
                key: orphan,
                fields: record([("report_id", Value::Uuid(Uuid::from_u128(3)))]),
            },
        ],
        t(0),
    );
    assert!(matches!(
        result,
        Err(SyncError::Write(WriteError::MissingParent { .. }))
    ));
    assert_eq!(node.get(&good).expect("get"), None);
    assert_eq!(node.pending_count(hub_id()).expect("pending"), 0);
    assert!(synced_state(node).expect("state").is_empty());
}

/// A crash is a dropped uncommitted transaction: after reopening, the
/// committed writes are there, the uncommitted ones are not, and sync
/// carries exactly the committed ones.
pub fn engine_crash_dropping_txn_loses_only_uncommitted<S: Store>(make: impl Fn() -> S) {
    let mut net = net(1, make);
    let kept = net.nodes[0]
        .insert(NOTE_SERVER_WINS, note("committed"), t(0))
        .expect("insert");
    let config = net.nodes[0].config().clone();
    let reg = net.nodes[0].registry().clone();
    let mut store = net.nodes.remove(0).into_store();
    {
        let mut txn = store.begin().expect("begin");
        let mut lost = sync_core::Entity::new_version(
            EntityKey::new(NOTE_SERVER_WINS, Uuid::from_u128(99)),
            t(1),
            false,
            node_id(0),
            note("uncommitted"),
        );
        txn.put_entity(&lost, node_id(0), t(1)).expect("put_entity");
        lost.key.id = kept;
        txn.put_entity(&lost, node_id(0), t(1)).expect("put_entity");
        let mut peer = txn.peer(hub_id()).expect("peer").expect("registered");
        peer.sent_packet_no = 50;
        txn.put_peer(&peer).expect("put_peer");
        // The process dies here: the transaction is dropped uncommitted.
    }
    let mut node = Engine::open(store, reg, config).expect("reopen");
    assert_eq!(node.peer(hub_id()).expect("peer").sent_packet_no, 0);
    session(&mut node, &mut net.hub, t(10)).expect("sync");
    let hub_state = synced_state(&mut net.hub).expect("state");
    assert_eq!(hub_state.len(), 1);
    assert_eq!(hub_state[0].fields["title"], Value::from("committed"));
}

/// The hub crashes at every store operation of applying a packet and
/// answering it, in turn: after each crash and restart the packet is either
/// wholly applied or not at all, and delivering it again converges with
/// every change applied once.
pub fn engine_crash_at_every_point_of_apply<S: Store>(make: impl Fn() -> S) {
    for crash_at in 0.. {
        let mut hub = crashing_hub(&make);
        let mut node = writer_node(&make);
        node.start_sync(hub_id()).expect("start");
        let packet = node.poll_transmit(t(10)).expect("poll").expect("packet");
        hub.store_mut().crash_after(crash_at);
        let result = hub.respond(&packet.bytes, t(10));
        if !hub.store().crashed() {
            let reply = result.expect("no crash, no error");
            node.handle_incoming(&reply, t(10)).expect("reply");
            assert!(crash_at > 10, "the apply touches the store");
            return;
        }
        let error = result.expect_err("a crash is an error");
        assert!(matches!(&error, SyncError::Store(e) if e.kind() == StoreErrorKind::Backend));
        let mut hub = restart(hub);
        let received = hub.peer(node_id(0)).expect("peer").received_packet_no;
        let count = synced_state(&mut hub).expect("state").len();
        assert!(
            (received, count) == (0, 0) || (received, count) == (1, 4),
            "crash at {crash_at}: half applied ({received}, {count})"
        );
        let reply = hub.respond(&packet.bytes, t(11)).expect("respond again");
        node.handle_incoming(&reply, t(11)).expect("reply");
        session(&mut node, &mut hub, t(12)).expect("sync");
        assert_eq!(synced_state(&mut hub).expect("state").len(), 4);
        assert_eq!(synced_state(&mut node).expect("state").len(), 4);
        assert_eq!(node.pending_count(hub_id()).expect("pending"), 0);
    }
}

/// A node crashes at every store operation of a whole sync session, in
/// turn (building packets, applying replies, processing acks): after a
/// restart and a clean session, hub and node agree and nothing is pending.
pub fn engine_crash_at_every_point_of_build<S: Store>(make: impl Fn() -> S) {
    for crash_at in 0.. {
        let mut hub = Engine::new(
            make(),
            registry(ConflictStrategy::ServerWins),
            EngineConfig::default().seed(1),
            crate::fixtures::hub_info(),
        )
        .expect("hub");
        hub.register_peer(crate::fixtures::node_info(0))
            .expect("register");
        hub.insert(NOTE_SERVER_WINS, note("from hub"), t(0))
            .expect("insert");
        let mut node = crashing_writer_node(&make);
        node.store_mut().crash_after(crash_at);
        let result = session(&mut node, &mut hub, t(10));
        if !node.store().crashed() {
            result.expect("no crash, no error");
            assert!(crash_at > 10, "a session touches the store");
            return;
        }
        assert!(result.is_err(), "crash at {crash_at} was not reported");
        let mut node = restart(node);
        session(&mut node, &mut hub, t(20)).expect("sync after restart");
        session(&mut node, &mut hub, t(21)).expect("second sync");
        let hub_state = synced_state(&mut hub).expect("state");
        assert_eq!(hub_state.len(), 5, "crash at {crash_at}");
        assert_eq!(synced_state(&mut node).expect("state"), hub_state);
        assert_eq!(node.pending_count(hub_id()).expect("pending"), 0);
        assert_eq!(hub.pending_count(node_id(0)).expect("pending"), 0);
    }
}

/// Engines rebuilt from their stores in the middle of a multi-packet
/// session finish it.
pub fn engine_restart_resumes_sync<S: Store>(make: impl Fn() -> S) {
    let mut net = Net::with_stores(1, registry(ConflictStrategy::ServerWins), make, |c| {
        c.batch(2, 1 << 20)
    });
    for n in 0..7 {
        net.nodes[0]
            .insert(NOTE_SERVER_WINS, note(&format!("n{n}")), t(n))
            .expect("insert");
        net.hub
            .insert(NOTE_SERVER_WINS, note(&format!("h{n}")), t(n))
            .expect("insert");
    }
    net.nodes[0].start_sync(hub_id()).expect("start");
    let packet = net.nodes[0]
        .poll_transmit(t(10))
        .expect("poll")
        .expect("packet");
    let reply = net.hub.respond(&packet.bytes, t(10)).expect("respond");
    net.nodes[0].handle_incoming(&reply, t(10)).expect("reply");
    let config = net.hub.config().clone();
    let reg = net.hub.registry().clone();
    let mut node = Engine::open(
        net.nodes.remove(0).into_store(),
        reg.clone(),
        config.clone(),
    )
    .expect("reopen node");
    let mut hub = Engine::open(net.hub.into_store(), reg, config).expect("reopen hub");
    session(&mut node, &mut hub, t(20)).expect("sync");
    session(&mut node, &mut hub, t(21)).expect("sync");
    assert_eq!(synced_state(&mut hub).expect("state").len(), 14);
    assert_eq!(
        synced_state(&mut node).expect("state"),
        synced_state(&mut hub).expect("state")
    );
}

/// An entity with 8 MiB of bytes and 4 MiB of text syncs whole.
pub fn engine_large_entity_syncs<S: Store>(make: impl Fn() -> S) {
    let mut net = net(2, make);
    let text: String = "large ✓ ".chars().cycle().take(4 << 20).collect();
    let fields = record([
        ("title", "large".into()),
        ("data", Value::Bytes(super::values::noise(8 << 20, 3))),
        ("body", Value::Text(text)),
    ]);
    let id = net.nodes[0]
        .insert(NOTE_SERVER_WINS, fields.clone(), t(0))
        .expect("insert");
    net.sync_all(t(1)).expect("sync");
    let key = EntityKey::new(NOTE_SERVER_WINS, id);
    let mut synced = net.nodes[1].get(&key).expect("get").expect("synced").fields;
    synced.retain(|_, v| !v.is_null());
    assert!(synced == fields, "the large entity changed on the way");
}

fn crashing_hub<S: Store>(make: &impl Fn() -> S) -> Engine<CrashingStore<S>> {
    let mut hub = Engine::new(
        CrashingStore::new(make()),
        registry(ConflictStrategy::ServerWins),
        EngineConfig::default().seed(1),
        crate::fixtures::hub_info(),
    )
    .expect("hub");
    hub.register_peer(crate::fixtures::node_info(0))
        .expect("register");
    hub
}

/// Writes a report with two lines and a note (four entities).
fn write_four<S: Store>(node: &mut Engine<S>) {
    let report = node.insert(REPORT, report_fields(8), t(0)).expect("insert");
    for n in 0..2 {
        let line = record([
            ("report_id", Value::Uuid(report)),
            ("qty", Value::Float(1.5)),
        ]);
        node.insert(LINE, line, t(1 + n)).expect("insert");
    }
    node.insert(NOTE_SERVER_WINS, note("node"), t(3))
        .expect("insert");
}

fn writer_node<S: Store>(make: &impl Fn() -> S) -> Engine<S> {
    let mut node = Engine::new(
        make(),
        registry(ConflictStrategy::ServerWins),
        EngineConfig::default().seed(100),
        crate::fixtures::node_info(0),
    )
    .expect("node");
    node.register_peer(crate::fixtures::hub_info())
        .expect("register");
    write_four(&mut node);
    node
}

fn crashing_writer_node<S: Store>(make: &impl Fn() -> S) -> Engine<CrashingStore<S>> {
    let mut node = Engine::new(
        CrashingStore::new(make()),
        registry(ConflictStrategy::ServerWins),
        EngineConfig::default().seed(100),
        crate::fixtures::node_info(0),
    )
    .expect("node");
    node.register_peer(crate::fixtures::hub_info())
        .expect("register");
    write_four(&mut node);
    node
}

/// Restarts a crashed engine: what its store committed, a fresh engine.
fn restart<S: Store>(engine: Engine<CrashingStore<S>>) -> Engine<CrashingStore<S>> {
    let config = engine.config().clone();
    let reg = engine.registry().clone();
    let store = CrashingStore::new(engine.into_store().into_inner());
    Engine::open(store, reg, config).expect("reopen")
}

/// The hub's schema refuses notes titled `refused` (as a UNIQUE or NOT NULL
/// constraint would).
fn refuse_refused(entity: &sync_core::Entity) -> Option<String> {
    (entity.fields.get("title") == Some(&Value::from("refused")))
        .then(|| "table note refuses title = 'refused'".to_owned())
}

/// Issue 9, item 5: a version the hub's store refuses does not abort the
/// packet. It becomes one rejected change with the store's reason, the rest
/// applies and is acknowledged, the writer learns why and puts the hub's
/// state back (here: none), nothing is sent again, and the hub can retry it
/// (refused again: the reason comes back) or discard it to the history.
pub fn engine_refused_change_is_quarantined<S: Store>(make: impl Fn() -> S) {
    let mut net = Net::with_stores(
        2,
        registry(ConflictStrategy::ServerWins),
        || CrashingStore::new(make()),
        |c| c,
    );
    net.hub.store_mut().refuse_when(refuse_refused);
    let kept = net.nodes[0]
        .insert(NOTE_SERVER_WINS, note("kept"), t(1))
        .expect("insert");
    let refused = net.nodes[0]
        .insert(NOTE_SERVER_WINS, note("refused"), t(2))
        .expect("insert");
    let also = net.nodes[0]
        .insert(NOTE_SERVER_WINS, note("also kept"), t(3))
        .expect("insert");
    net.sync_all(t(10)).expect("sync");
    net.sync_all(t(20)).expect("sync");
    let refused_key = EntityKey::new(NOTE_SERVER_WINS, refused);
    for id in [kept, also] {
        let key = EntityKey::new(NOTE_SERVER_WINS, id);
        assert!(net.hub.get(&key).expect("get").is_some());
        assert!(net.nodes[1].get(&key).expect("get").is_some());
    }
    // The hub holds a removal standing for the refused entity.
    let at_hub_now = net.hub.get(&refused_key).expect("get");
    assert!(
        at_hub_now.as_ref().is_some_and(|e| e.is_deleted),
        "{at_hub_now:?}"
    );
    let at_hub = net.hub.rejected().expect("rejected");
    assert_eq!(at_hub.len(), 1, "{at_hub:?}");
    assert_eq!(at_hub[0].entity.key, refused_key);
    assert_eq!(at_hub[0].by, sync_core::RejectedBy::Here);
    assert!(at_hub[0].reason.contains("refuses"), "{}", at_hub[0].reason);
    assert_eq!(at_hub[0].notify, None, "the writer acknowledged the notice");
    let at_writer = net.nodes[0].rejected().expect("rejected");
    assert_eq!(at_writer.len(), 1, "{at_writer:?}");
    assert_eq!(at_writer[0].id, at_hub[0].id);
    assert_eq!(at_writer[0].by, sync_core::RejectedBy::Peer);
    assert_eq!(
        at_writer[0].entity.fields.get("title"),
        Some(&Value::from("refused"))
    );
    // The writer put the hub's state back: the removal.
    let back = net.nodes[0].get(&refused_key).expect("get");
    assert_eq!(back, at_hub_now);
    assert!(net.converged(), "every node agrees with the hub");
    assert_eq!(net.nodes[0].pending_count(hub_id()).expect("pending"), 0);
    let id = at_hub[0].id;
    let again = net
        .hub
        .retry_rejected(id, t(30))
        .expect_err("still refused");
    assert!(
        matches!(&again, SyncError::Store(e) if e.kind() == StoreErrorKind::Refused),
        "{again}"
    );
    assert_eq!(net.hub.rejected().expect("rejected").len(), 1);
    net.hub.discard_rejected(id, t(31)).expect("discard");
    assert!(net.hub.rejected().expect("rejected").is_empty());
    let history = net.hub.versions(&refused_key).expect("history");
    assert!(
        history.iter().any(|v| v.resolution.contains("discarded")),
        "{history:?}"
    );
}

/// A node whose store refuses a version of the hub keeps it as a rejected
/// change, applies the rest, and tells the hub, which keeps its version; a
/// retry once the cause is gone applies it.
pub fn engine_node_refusal_is_reported_to_the_hub<S: Store>(make: impl Fn() -> S) {
    let mut net = Net::with_stores(
        2,
        registry(ConflictStrategy::ServerWins),
        || CrashingStore::new(make()),
        |c| c,
    );
    net.nodes[1].store_mut().refuse_when(refuse_refused);
    let refused = net.nodes[0]
        .insert(NOTE_SERVER_WINS, note("refused"), t(1))
        .expect("insert");
    let kept = net.nodes[0]
        .insert(NOTE_SERVER_WINS, note("kept"), t(2))
        .expect("insert");
    net.sync_all(t(10)).expect("sync");
    net.sync_all(t(20)).expect("sync");
    let refused_key = EntityKey::new(NOTE_SERVER_WINS, refused);
    assert!(net.hub.get(&refused_key).expect("get").is_some());
    assert!(net.nodes[1].get(&refused_key).expect("get").is_none());
    let kept_key = EntityKey::new(NOTE_SERVER_WINS, kept);
    assert!(net.nodes[1].get(&kept_key).expect("get").is_some());
    let here = net.nodes[1].rejected().expect("rejected");
    assert_eq!(here.len(), 1, "{here:?}");
    assert_eq!(here[0].by, sync_core::RejectedBy::Here);
    let told = net.hub.rejected().expect("rejected");
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0].by, sync_core::RejectedBy::Peer);
    assert_eq!(told[0].peer, node_id(1));
    assert!(
        net.hub.get(&refused_key).expect("get").is_some(),
        "the hub keeps its version"
    );
    // Later changes still flow to the refusing node.
    net.nodes[0]
        .put(kept_key.clone(), note("kept, edited"), t(30))
        .expect("put");
    net.sync_all(t(40)).expect("sync");
    assert_eq!(
        title(&mut net.nodes[1], &kept_key),
        Value::from("kept, edited")
    );
    // The cause is gone (the constraint relaxed): the retry applies it.
    net.nodes[1].store_mut().refuse_when(|_| None);
    net.nodes[1]
        .retry_rejected(here[0].id, t(50))
        .expect("retry");
    assert!(net.nodes[1].get(&refused_key).expect("get").is_some());
    assert!(net.nodes[1].rejected().expect("rejected").is_empty());
}

/// Issue 9, item 4: a change waiting for its parent is visible (the API and
/// an event), and one that waited longer than `max_park_ms` is applied
/// without its parent at its sender's next packet, with an event: nothing
/// waits forever unseen.
pub fn engine_parked_change_is_visible_and_expires<S: Store>(make: impl Fn() -> S) {
    // One change per packet and one packet per message: the line arrives
    // in a message of its own.
    let mut net = Net::with_stores(1, registry(ConflictStrategy::ServerWins), make, |c| {
        c.batch(1, usize::MAX).pipeline(1).max_park_ms(60_000)
    });
    let report = net.nodes[0]
        .insert(REPORT, report_fields(1), t(1))
        .expect("report");
    let line = net.nodes[0]
        .insert(
            LINE,
            record([
                ("report_id", Value::Uuid(report)),
                ("text", "first".into()),
                ("qty", Value::Float(1.0)),
            ]),
            t(2),
        )
        .expect("line");
    // The report is edited after its line: the line travels first.
    net.nodes[0]
        .put(EntityKey::new(REPORT, report), report_fields(2), t(3))
        .expect("edit");
    net.nodes[0].start_sync(hub_id()).expect("start");
    let first = net.nodes[0]
        .poll_transmit(t(4))
        .expect("poll")
        .expect("a packet");
    let reply = net.hub.respond(&first.bytes, t(4)).expect("respond");
    let line_key = EntityKey::new(LINE, line);
    let parked = net.hub.parked().expect("parked");
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert_eq!(parked[0].entity.key, line_key);
    assert!(
        drain(&mut net.hub)
            .iter()
            .any(|e| matches!(e, Event::Parked { key, .. } if *key == line_key)),
        "a Parked event"
    );
    net.nodes[0].handle_incoming(&reply, t(4)).expect("reply");
    net.sync(0, t(5)).expect("sync");
    assert!(
        net.hub.parked().expect("parked").is_empty(),
        "released by its parent"
    );
    assert!(net.hub.get(&line_key).expect("get").is_some());

    // A change whose parent never comes: parked long ago at the hub.
    let orphan_key = EntityKey::new(LINE, Uuid::from_u128(0x0A0A));
    let missing = EntityKey::new(REPORT, Uuid::from_u128(0x0B0B));
    let orphan = sync_core::Entity::new_version(
        orphan_key.clone(),
        t(6),
        false,
        node_id(0),
        record([
            ("report_id", Value::Uuid(missing.id)),
            ("text", "orphan".into()),
            ("qty", Value::Float(2.0)),
        ]),
    );
    {
        let mut txn = net.hub.store_mut().begin().expect("begin");
        txn.park(&sync_core::ParkedChange {
            entity: orphan,
            from: node_id(0),
            waiting_for: missing.clone(),
            arrived_at: t(6),
        })
        .expect("park");
        txn.commit().expect("commit");
    }
    // Before the bound, it still waits.
    net.sync(0, t(30)).expect("sync");
    assert_eq!(net.hub.parked().expect("parked").len(), 1);
    drain(&mut net.hub);
    // After it, the sender's next packet applies it without its parent.
    net.sync(0, t(6 + 61)).expect("sync");
    assert!(net.hub.parked().expect("parked").is_empty());
    assert!(net.hub.get(&orphan_key).expect("get").is_some());
    assert!(
        drain(&mut net.hub).iter().any(
            |e| matches!(e, Event::ParkExpired { key, waiting_for } if *key == orphan_key && *waiting_for == missing)
        ),
        "a ParkExpired event"
    );
}

/// Issue 13 (selected exports) on the engine: a packet built for a
/// selection carries only the selected changes; the others stay pending and
/// travel in the next full packet, and nothing is lost or sent twice as a
/// new change.
pub fn engine_selected_packet_leaves_the_rest_pending<S: Store>(make: impl Fn() -> S) {
    let mut net = net(1, make);
    let report = net.nodes[0]
        .insert(REPORT, report_fields(1), t(1))
        .expect("report");
    let early = net.nodes[0]
        .insert(NOTE_SERVER_WINS, note("early"), t(2))
        .expect("note");
    let late = net.nodes[0]
        .insert(NOTE_SERVER_WINS, note("late"), t(8))
        .expect("note");
    assert_eq!(net.nodes[0].pending_count(hub_id()).expect("count"), 3);

    let notes_since = sync_core::Selection::all()
        .with_types([NOTE_SERVER_WINS])
        .since(t(5));
    let packet = net.nodes[0]
        .build_packet_with(hub_id(), t(10), &notes_since)
        .expect("build");
    assert_eq!(packet.entity_count, 1, "only the late note is selected");
    let reply = net.hub.respond(&packet.bytes, t(10)).expect("respond");
    net.nodes[0].handle_incoming(&reply, t(10)).expect("reply");
    assert!(
        net.hub
            .get(&EntityKey::new(NOTE_SERVER_WINS, late))
            .expect("get")
            .is_some()
    );
    for absent in [
        EntityKey::new(REPORT, report),
        EntityKey::new(NOTE_SERVER_WINS, early),
    ] {
        assert!(net.hub.get(&absent).expect("get").is_none(), "{absent:?}");
    }
    assert_eq!(
        net.nodes[0].pending_count(hub_id()).expect("count"),
        3,
        "the acknowledgement covers only what came before the first skipped change"
    );

    net.sync(0, t(20)).expect("sync");
    assert!(net.converged());
    assert_eq!(net.nodes[0].pending_count(hub_id()).expect("count"), 0);
    assert_eq!(synced_state(&mut net.hub).expect("state").len(), 3);
    assert!(
        net.hub.audit_log().expect("audit").is_empty(),
        "no conflict"
    );
}

/// Issue 9, item 7: a long catch-up in small batches reports a progress
/// total on every packet that counts down to zero, and the total of the
/// first packet is the whole backlog (the count kept up to date between
/// packets agrees with a full count).
pub fn engine_catch_up_progress_counts_down<S: Store>(make: impl Fn() -> S) {
    let mut net = Net::with_stores(1, registry(ConflictStrategy::ServerWins), make, |c| {
        c.batch(7, usize::MAX)
    });
    for i in 0..50 {
        net.hub
            .insert(NOTE_SERVER_WINS, note(&format!("n{i}")), t(i))
            .expect("insert");
    }
    drain(&mut net.nodes[0]);
    net.sync(0, t(100)).expect("sync");
    let remaining: Vec<u64> = drain(&mut net.nodes[0])
        .into_iter()
        .filter_map(|e| match e {
            Event::Progress(p) if p.received > 0 => Some(p.remaining_to_receive),
            _ => None,
        })
        .collect();
    assert_eq!(remaining.first(), Some(&43), "{remaining:?}");
    assert_eq!(remaining.last(), Some(&0), "{remaining:?}");
    assert!(
        remaining.windows(2).all(|w| w[0] >= w[1]),
        "{remaining:?} counts down"
    );
    assert!(net.converged());
    assert_eq!(synced_state(&mut net.nodes[0]).expect("state").len(), 50);
}

/// Issue 9, item 7: an exchange with nothing to apply and nothing to send
/// costs the hub one write transaction (the request's bookkeeping and the
/// reply's are committed together), however many exchanges came before.
pub fn engine_idle_exchange_commits_once_at_the_hub<S: Store>(make: impl Fn() -> S) {
    let mut hub = crashing_hub(&make);
    let mut node = writer_node(&make);
    // A first session carries the node's changes; the rest are idle.
    for round in 0..80i64 {
        node.start_sync(hub_id()).expect("start");
        let now = t(10 + round);
        while let Some(packet) = node.poll_transmit(now).expect("poll") {
            let before = hub.store().commits();
            let reply = hub.respond(&packet.bytes, now).expect("respond");
            let commits = hub.store().commits() - before;
            if round > 0 {
                assert!(
                    commits <= 1,
                    "round {round}: an idle exchange committed {commits} transactions at the hub"
                );
            }
            node.handle_incoming(&reply, now).expect("reply");
        }
    }
    assert_eq!(node.pending_count(hub_id()).expect("count"), 0);
    assert_eq!(synced_state(&mut hub).expect("state").len(), 4);
}
