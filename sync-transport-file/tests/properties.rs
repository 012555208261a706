//! Properties 35, 36 and 37 of the spec for file exchange, 100 cases each.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::*;
use proptest::prelude::*;
use sync_conformance::fixtures::{NOTE_SERVER_WINS, hub_id, record};
use sync_core::packet::Change;
use sync_core::{EntityKey, Uuid, Value};
use sync_transport_file::{ExportOptions, answer, export, import, open_files};

/// A write at node 0 to one of a few notes.
#[derive(Clone, Debug)]
enum Write {
    /// Creates or updates note `k` with `n` and `size` bytes of data.
    Put { k: u8, n: i64, size: usize },
    /// Deletes note `k` (when it exists).
    Delete { k: u8 },
}

fn arb_write() -> impl Strategy<Value = Write> {
    prop_oneof![
        4 => (0u8..12, any::<i64>(), 0usize..3_000).prop_map(|(k, n, size)| Write::Put { k, n, size }),
        1 => (0u8..12).prop_map(|k| Write::Delete { k }),
    ]
}

fn note_key(k: u8) -> EntityKey {
    EntityKey::new(NOTE_SERVER_WINS, Uuid::from_u128(0x5000 + u128::from(k)))
}

fn apply_write(engine: &mut Mem, write: &Write, now: sync_core::Timestamp) {
    match write {
        Write::Put { k, n, size } => {
            let data = sync_conformance::store_suite::values::noise(*size, *n as u64);
            let fields = record([
                ("title", format!("note {k}").into()),
                ("n", Value::Int(*n)),
                ("data", Value::Bytes(data)),
            ]);
            engine.put(note_key(*k), fields, now).expect("put");
        }
        Write::Delete { k } => {
            let live = engine
                .get(&note_key(*k))
                .expect("get")
                .is_some_and(|e| !e.is_deleted);
            if live {
                engine.delete(note_key(*k), now).expect("delete");
            }
        }
    }
}

/// The changes a set of files carries, read back at the hub.
fn changes_in(w: &mut World, files: &[PathBuf]) -> Vec<Change> {
    let opened = open_files(&mut w.hub, files).expect("the export opens");
    assert_eq!(opened.len(), 1);
    sync_conformance::wire::body(&opened[0].envelope)
}

fn part_size(choice: u8) -> ExportOptions {
    ExportOptions::default().max_file_bytes(match choice {
        0 => 2_048,
        1 => 9_000,
        _ => 64 << 20,
    })
}

// Feature: sync-system, Property 35: File export completeness
proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]
    #[test]
    fn an_export_holds_every_pending_change(
        before in prop::collection::vec(arb_write(), 0..8),
        acknowledged in any::<bool>(),
        after in prop::collection::vec(arb_write(), 1..12),
        parts in 0u8..3,
    ) {
        let mut w = World::new(1);
        let stick = tempfile::tempdir().expect("dir");
        for (i, write) in before.iter().enumerate() {
            apply_write(&mut w.nodes[0], write, t(i as i64));
        }
        if acknowledged {
            // Some changes were delivered and acknowledged already: they
            // are no longer pending and must not be needed again.
            let first = w.node_export(0, stick.path(), t(20));
            let answers = answer(&mut w.hub, &first.files, stick.path(), &ExportOptions::default(), t(21)).expect("answer");
            import(&mut w.nodes[0], &answers[0].reply_files, t(22)).expect("reply");
        }
        for (i, write) in after.iter().enumerate() {
            apply_write(&mut w.nodes[0], write, t(30 + i as i64));
        }
        let pending = w.nodes[0].sync_changes(hub_id(), usize::MAX).expect("pending");
        let out = tempfile::tempdir().expect("dir");
        let exported = export(&mut w.nodes[0], hub_id(), out.path(), &part_size(parts), t(50)).expect("export");
        prop_assert_eq!(exported.header.entity_count as usize, pending.len());
        prop_assert!(!exported.more);

        let carried: BTreeMap<EntityKey, Change> = changes_in(&mut w, &exported.files)
            .into_iter()
            .map(|c| (c.entity.key.clone(), c))
            .collect();
        prop_assert_eq!(carried.len(), pending.len());
        for change in &pending {
            let key = EntityKey::new(change.entity_type.clone(), change.entity_uuid);
            let stored = w.nodes[0].get(&key).expect("get").expect("a pending entity exists");
            let in_file = carried.get(&key);
            prop_assert!(in_file.is_some(), "{} is missing from the file", key);
            let in_file = in_file.expect("checked");
            prop_assert_eq!(in_file.operation, change.operation);
            prop_assert_eq!(&in_file.entity, &stored);
        }
    }
}

// Feature: sync-system, Property 36: File import correctness
proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]
    #[test]
    fn importing_a_valid_file_applies_every_change_in_it(
        shared in prop::collection::vec(arb_write(), 0..6),
        writes in prop::collection::vec(arb_write(), 1..12),
        parts in 0u8..3,
        order in any::<u64>(),
    ) {
        let mut w = World::new(1);
        let stick = tempfile::tempdir().expect("dir");
        // A history both sides hold.
        for (i, write) in shared.iter().enumerate() {
            apply_write(&mut w.nodes[0], write, t(i as i64));
        }
        let first = w.node_export(0, stick.path(), t(10));
        let answers = answer(&mut w.hub, &first.files, stick.path(), &ExportOptions::default(), t(11)).expect("answer");
        import(&mut w.nodes[0], &answers[0].reply_files, t(12)).expect("reply");
        // New writes, exported (in parts) and imported in a shuffled order.
        for (i, write) in writes.iter().enumerate() {
            apply_write(&mut w.nodes[0], write, t(20 + i as i64));
        }
        let out = tempfile::tempdir().expect("dir");
        let exported = export(&mut w.nodes[0], hub_id(), out.path(), &part_size(parts), t(40)).expect("export");
        let changes = changes_in(&mut w, &exported.files);
        let mut files = exported.files.clone();
        let n = files.len();
        files.rotate_left((order as usize) % n);
        if order % 2 == 1 {
            files.reverse();
        }
        let imported = import(&mut w.hub, &files, t(41)).expect("a valid file imports");
        prop_assert_eq!(imported.len(), 1);
        prop_assert!(!imported[0].duplicate);
        prop_assert_eq!(imported[0].applied, changes.len());
        for change in &changes {
            let key = &change.entity.key;
            prop_assert_eq!(w.hub.get(key).expect("get"), w.nodes[0].get(key).expect("get"));
        }
        prop_assert_eq!(w.hub.peer(node_id(0)).expect("peer").received_packet_no, exported.header.packet_no);
        // Importing it again changes nothing.
        let before = snapshot(&mut w.hub);
        prop_assert!(import(&mut w.hub, &files, t(42)).expect("again")[0].duplicate);
        prop_assert_eq!(snapshot(&mut w.hub), before);
    }
}

/// One operation on the file queue between node 0 and the hub.
#[derive(Clone, Debug)]
enum FileOp {
    Write(Write),
    /// Node 0 exports a file (it goes on the stick).
    Export,
    /// The hub answers file `i` from the stick.
    Deliver(usize),
    /// A copy of file `i` with byte `at` flipped reaches the hub.
    Tamper(usize, usize),
    /// A copy of file `i` cut to `keep` parts of a thousand reaches the hub.
    Truncate(usize, u16),
    /// Node 0 imports reply `i`.
    DeliverReply(usize),
    /// A copy of reply `i` with byte `at` flipped reaches node 0.
    TamperReply(usize, usize),
}

fn arb_file_op() -> impl Strategy<Value = FileOp> {
    prop_oneof![
        3 => arb_write().prop_map(FileOp::Write),
        2 => Just(FileOp::Export),
        2 => any::<usize>().prop_map(FileOp::Deliver),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(i, at)| FileOp::Tamper(i, at)),
        1 => (any::<usize>(), 0u16..1000).prop_map(|(i, keep)| FileOp::Truncate(i, keep)),
        2 => any::<usize>().prop_map(FileOp::DeliverReply),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(i, at)| FileOp::TamperReply(i, at)),
    ]
}

/// The node's files and the hub's replies, as carried around.
#[derive(Default)]
struct Stick {
    exports: Vec<Vec<PathBuf>>,
    replies: Vec<Vec<PathBuf>>,
}

fn pick<T>(items: &[T], i: usize) -> Option<&T> {
    (!items.is_empty()).then(|| &items[i % items.len()])
}

/// `files` with the first one replaced by a damaged copy.
fn damaged(
    files: &[PathBuf],
    dir: &std::path::Path,
    edit: impl FnOnce(&mut Vec<u8>),
) -> Vec<PathBuf> {
    let copy = edited_copy(&files[0], dir, edit);
    let mut out = vec![copy];
    out.extend(files[1..].iter().cloned());
    out
}

fn play(
    w: &mut World,
    stick: &mut Stick,
    dirs: &(tempfile::TempDir, tempfile::TempDir),
    op: &FileOp,
    now: sync_core::Timestamp,
) -> Result<(), TestCaseError> {
    let options = ExportOptions::default().max_file_bytes(4_096);
    match op {
        FileOp::Write(write) => apply_write(&mut w.nodes[0], write, now),
        FileOp::Export => {
            let exported =
                export(&mut w.nodes[0], hub_id(), dirs.0.path(), &options, now).expect("export");
            stick.exports.push(exported.files);
        }
        FileOp::Deliver(i) => {
            if let Some(files) = pick(&stick.exports, *i).cloned() {
                let answers = answer(&mut w.hub, &files, dirs.0.path(), &options, now)
                    .expect("a good file is answered");
                prop_assert!(answers[0].refusal.is_none());
                stick.replies.push(answers[0].reply_files.clone());
            }
        }
        FileOp::Tamper(i, at) | FileOp::TamperReply(i, at) => {
            let list = if matches!(op, FileOp::Tamper(..)) {
                &stick.exports
            } else {
                &stick.replies
            };
            if let Some(files) = pick(list, *i).cloned() {
                let bad = damaged(&files, dirs.1.path(), |b| {
                    let at = at % b.len();
                    b[at] ^= 0x5a;
                });
                let target = if matches!(op, FileOp::Tamper(..)) {
                    &mut w.hub
                } else {
                    &mut w.nodes[0]
                };
                refused_without_change(target, &bad, now)?;
            }
        }
        FileOp::Truncate(i, keep) => {
            if let Some(files) = pick(&stick.exports, *i).cloned() {
                let bad = damaged(&files, dirs.1.path(), |b| {
                    let keep = b.len() * usize::from(*keep) / 1000;
                    b.truncate(keep);
                });
                refused_without_change(&mut w.hub, &bad, now)?;
            }
        }
        FileOp::DeliverReply(i) => {
            if let Some(files) = pick(&stick.replies, *i).cloned() {
                import(&mut w.nodes[0], &files, now).expect("a good reply imports");
            }
        }
    }
    Ok(())
}

fn refused_without_change(
    engine: &mut Mem,
    files: &[PathBuf],
    now: sync_core::Timestamp,
) -> Result<(), TestCaseError> {
    let before = snapshot(engine);
    let result = import(engine, files, now);
    prop_assert!(result.is_err(), "a damaged file was accepted");
    prop_assert_eq!(snapshot(engine), before);
    Ok(())
}

/// Node 0's own data is intact, and every change of it is either pending
/// for the hub or held by the hub in the same version.
fn check_queue(w: &mut World) -> Result<(), TestCaseError> {
    let pending: Vec<EntityKey> = w.nodes[0]
        .sync_changes(hub_id(), usize::MAX)
        .expect("pending")
        .into_iter()
        .map(|c| EntityKey::new(c.entity_type, c.entity_uuid))
        .collect();
    for k in 0..12 {
        let key = note_key(k);
        let Some(local) = w.nodes[0].get(&key).expect("get") else {
            continue;
        };
        if !pending.contains(&key) {
            prop_assert_eq!(
                w.hub.get(&key).expect("get"),
                Some(local),
                "{} is neither pending nor at the hub",
                key
            );
        }
    }
    Ok(())
}

// Feature: sync-system, Property 37: Queue integrity maintenance
proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]
    #[test]
    fn the_file_queue_keeps_every_change_under_any_exchange(
        ops in prop::collection::vec(arb_file_op(), 1..30),
    ) {
        let mut w = World::new(1);
        let dirs = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
        let mut stick = Stick::default();
        for (i, op) in ops.iter().enumerate() {
            play(&mut w, &mut stick, &dirs, op, t(i as i64))?;
            check_queue(&mut w)?;
        }
        // Then clean rounds empty the queue and both sides agree.
        for round in 0..5 {
            if w.nodes[0].pending_count(hub_id()).expect("pending") == 0 {
                break;
            }
            let now = t(1_000 + round);
            play(&mut w, &mut stick, &dirs, &FileOp::Export, now)?;
            let last = stick.exports.len() - 1;
            play(&mut w, &mut stick, &dirs, &FileOp::Deliver(last), now)?;
            let last = stick.replies.len() - 1;
            play(&mut w, &mut stick, &dirs, &FileOp::DeliverReply(last), now)?;
            check_queue(&mut w)?;
        }
        prop_assert_eq!(w.nodes[0].pending_count(hub_id()).expect("pending"), 0);
        for k in 0..12 {
            let key = note_key(k);
            prop_assert_eq!(w.hub.get(&key).expect("get"), w.nodes[0].get(&key).expect("get"));
        }
    }
}
