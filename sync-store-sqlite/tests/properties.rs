//! Property tests driving the real engine over SQLite stores: referential
//! integrity (Property 3), parent/child relationships under every order of
//! arrival the engine allows (Property 15), and the change queue under every
//! queue operation (Property 37). Foreign keys are enforced throughout.

mod common;

use std::path::{Path, PathBuf};

use common::Rng;
use common::*;
use proptest::prelude::*;
use sync_core::{
    Engine, EngineConfig, EntityKey, EntityRegistry, PendingQuery, Store, StoreTxn, Timestamp, Uuid,
};
use sync_store_sqlite::{SqliteOptions, SqliteStore};

type Node = Engine<SqliteStore>;

/// An application action or a network event.
#[derive(Clone, Debug)]
enum Op {
    Report { node: u8, hours: u8 },
    Line { node: u8, report: u8, qty: u8 },
    Edit { node: u8, report: u8, hours: u8 },
    Move { node: u8, line: u8, report: u8 },
    DeleteLine { node: u8, line: u8 },
    SoftDeleteReport { node: u8, report: u8 },
    HardDeleteReport { node: u8, report: u8 },
    HubReport { hours: u8 },
    HubLine { report: u8 },
    Sync { node: u8, faults: u8 },
    Backup { node: u8 },
    Restore { node: u8 },
}

fn app_op(nodes: u8) -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..nodes, any::<u8>()).prop_map(|(node, hours)| Op::Report { node, hours }),
        4 => (0..nodes, any::<u8>(), any::<u8>()).prop_map(|(node, report, qty)| Op::Line { node, report, qty }),
        2 => (0..nodes, any::<u8>(), any::<u8>()).prop_map(|(node, report, hours)| Op::Edit { node, report, hours }),
        2 => (0..nodes, any::<u8>(), any::<u8>()).prop_map(|(node, line, report)| Op::Move { node, line, report }),
        1 => (0..nodes, any::<u8>()).prop_map(|(node, line)| Op::DeleteLine { node, line }),
        1 => (0..nodes, any::<u8>()).prop_map(|(node, report)| Op::SoftDeleteReport { node, report }),
        1 => (0..nodes, any::<u8>()).prop_map(|(node, report)| Op::HardDeleteReport { node, report }),
        1 => any::<u8>().prop_map(|hours| Op::HubReport { hours }),
        1 => any::<u8>().prop_map(|report| Op::HubLine { report }),
        4 => (0..nodes, 0u8..40).prop_map(|(node, faults)| Op::Sync { node, faults }),
    ]
}

fn restore_op(nodes: u8) -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => app_op(nodes),
        1 => (0..nodes).prop_map(|node| Op::Backup { node }),
        1 => (0..nodes).prop_map(|node| Op::Restore { node }),
    ]
}

/// The `k`-th (modulo) live row of `table` on a node, as (rowid, sync key).
fn pick(store: &SqliteStore, table: &str, k: u8) -> Option<(i64, String)> {
    let conn = store.connection();
    let count: i64 = conn
        .query_row(
            &format!("SELECT count(*) FROM {table} WHERE is_deleted = 0"),
            [],
            |r| r.get(0),
        )
        .ok()?;
    if count == 0 {
        return None;
    }
    conn.query_row(
        &format!(
            "SELECT id, sync_uuid FROM {table} WHERE is_deleted = 0 ORDER BY id LIMIT 1 OFFSET ?1"
        ),
        [i64::from(k) % count],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .ok()
}

/// Plain SQL on a node, as an application would write it.
fn app_write(store: &SqliteStore, op: &Op) {
    let conn = store.connection();
    match *op {
        Op::Report { hours, .. } => {
            conn.execute(
                "INSERT INTO daily_report(date, brigade, hours) VALUES ('2025-12-12', 'B-7', ?1)",
                [i64::from(hours)],
            )
            .unwrap();
        }
        Op::Line { report, qty, .. } => {
            if let Some((id, _)) = pick(store, "daily_report", report) {
                conn.execute(
                    "INSERT INTO daily_report_line(report_id, text, qty) VALUES (?1, 'work', ?2)",
                    (id, f64::from(qty) / 4.0),
                )
                .unwrap();
            }
        }
        Op::Edit { report, hours, .. } => {
            if let Some((id, _)) = pick(store, "daily_report", report) {
                conn.execute(
                    "UPDATE daily_report SET hours = ?1 WHERE id = ?2",
                    (i64::from(hours), id),
                )
                .unwrap();
            }
        }
        Op::Move { line, report, .. } => {
            if let (Some((l, _)), Some((r, _))) = (
                pick(store, "daily_report_line", line),
                pick(store, "daily_report", report),
            ) {
                conn.execute(
                    "UPDATE daily_report_line SET report_id = ?1 WHERE id = ?2",
                    (r, l),
                )
                .unwrap();
            }
        }
        Op::DeleteLine { line, .. } => {
            if let Some((l, _)) = pick(store, "daily_report_line", line) {
                conn.execute("DELETE FROM daily_report_line WHERE id = ?1", [l])
                    .unwrap();
            }
        }
        Op::SoftDeleteReport { report, .. } => {
            if let Some((id, _)) = pick(store, "daily_report", report) {
                // The application deletes the report's lines with it.
                conn.execute_batch(&format!(
                    "BEGIN;
                     UPDATE daily_report_line SET is_deleted = 1
                         WHERE report_id = {id} AND is_deleted = 0;
                     UPDATE daily_report SET is_deleted = 1 WHERE id = {id};
                     COMMIT;"
                ))
                .unwrap();
            }
        }
        Op::HardDeleteReport { report, .. } => {
            if let Some((id, _)) = pick(store, "daily_report", report) {
                // With foreign keys on, SQLite refuses while lines reference
                // it, as it would for the application.
                let _ = conn.execute("DELETE FROM daily_report WHERE id = ?1", [id]);
            }
        }
        _ => unreachable!("not an application write"),
    }
}

/// A live report on the hub, chosen by `k`.
fn hub_report<H: Store>(hub: &mut Engine<H>, k: u8) -> Option<Uuid> {
    let txn = hub.store_mut().begin().ok()?;
    let live: Vec<Uuid> = txn
        .entities("DailyReport", None, usize::MAX)
        .ok()?
        .into_iter()
        .filter(|s| !s.entity.is_deleted)
        .map(|s| s.entity.key.id)
        .collect();
    live.get(usize::from(k) % live.len().max(1)).copied()
}

struct World<H: Store> {
    dir: tempfile::TempDir,
    registry: EntityRegistry,
    hub: Engine<H>,
    nodes: Vec<Node>,
    backups: Vec<Option<PathBuf>>,
    now: Timestamp,
    rng: Rng,
    restores: usize,
}

impl<H: Store> World<H> {
    fn new(hub_store: H, nodes: usize, seed: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (_, registry) = memory_sqlite();
        let mut hub = engine(hub_store, registry.clone(), hub_info(), 1);
        let mut engines = Vec::new();
        for i in 0..nodes {
            let (store, _) = memory_sqlite();
            let mut node = engine(store, registry.clone(), node_info(i), 100 + i as u64);
            connect(&mut hub, &mut [&mut node]);
            engines.push(node);
        }
        World {
            dir,
            registry,
            hub,
            nodes: engines,
            backups: vec![None; nodes],
            now: t(0),
            rng: Rng(seed | 1),
            restores: 0,
        }
    }

    fn step(&mut self, op: &Op) {
        self.now = self.now.add_millis(10);
        match *op {
            Op::Report { node, .. }
            | Op::Line { node, .. }
            | Op::Edit { node, .. }
            | Op::Move { node, .. }
            | Op::DeleteLine { node, .. }
            | Op::SoftDeleteReport { node, .. }
            | Op::HardDeleteReport { node, .. } => {
                app_write(self.nodes[usize::from(node)].store(), op)
            }
            Op::HubReport { hours } => {
                self.hub
                    .insert(
                        "DailyReport",
                        report_fields("2025-12-13", i64::from(hours)),
                        self.now,
                    )
                    .unwrap();
            }
            Op::HubLine { report } => {
                if let Some(r) = hub_report(&mut self.hub, report) {
                    self.hub
                        .insert("DailyReportLine", line_fields(r, "hub", 1.0), self.now)
                        .unwrap();
                }
            }
            Op::Sync { node, faults } => {
                let n = &mut self.nodes[usize::from(node)];
                sync_faulty(
                    n,
                    &mut self.hub,
                    &mut self.now,
                    &mut self.rng,
                    u64::from(faults),
                )
                .unwrap();
            }
            Op::Backup { node } => self.backup(usize::from(node)),
            Op::Restore { node } => self.restore(usize::from(node)),
        }
    }

    fn backup(&mut self, i: usize) {
        let path = self
            .dir
            .path()
            .join(format!("backup-{i}-{}.db", self.rng.next()));
        self.nodes[i]
            .store()
            .connection()
            .execute("VACUUM INTO ?1", [path.to_string_lossy()])
            .unwrap();
        self.backups[i] = Some(path);
    }

    fn restore(&mut self, i: usize) {
        let Some(backup) = self.backups[i].clone() else {
            return;
        };
        let copy = self
            .dir
            .path()
            .join(format!("restored-{i}-{}.db", self.rng.next()));
        std::fs::copy(&backup, &copy).unwrap();
        let store = open_file(&copy);
        let config = EngineConfig::default().seed(500 + self.restores as u64);
        self.restores += 1;
        self.nodes[i] = Engine::open(store, self.registry.clone(), config).unwrap();
    }

    /// Fails when an engine holds a live line whose report is deleted and
    /// no engine reported a conflict on that line.
    fn no_live_line_of_a_deleted_report(&mut self) -> Result<(), TestCaseError> {
        let mut conflicted = std::collections::BTreeSet::new();
        let mut events = drain(&mut self.hub);
        for node in &mut self.nodes {
            events.extend(drain(node));
        }
        for e in events {
            if let sync_core::Event::Conflict(c) = e {
                conflicted.insert(c.key);
            }
        }
        let mut found = Vec::new();
        found.extend(live_children_of_deleted(&mut self.hub));
        for node in &mut self.nodes {
            found.extend(live_children_of_deleted(node));
        }
        found.retain(|k| !conflicted.contains(k));
        prop_assert!(
            found.is_empty(),
            "live lines of deleted reports: {:?}",
            found
        );
        Ok(())
    }

    fn check_converged(&mut self) -> Result<(), TestCaseError> {
        settle(
            &mut self.nodes,
            &mut self.hub,
            self.now.add_millis(1_000_000),
        );
        let hub_state = state(&mut self.hub);
        for (i, node) in self.nodes.iter_mut().enumerate() {
            prop_assert_eq!(&state(node), &hub_state, "node {} differs from the hub", i);
            prop_assert_eq!(node.pending_count(hub_id()).unwrap(), 0);
            prop_assert!(
                node.parked().unwrap().is_empty(),
                "node {} still has parked children",
                i
            );
            prop_assert!(integrity_ok(node.store()));
            if let Err(e) = references_hold(node) {
                return Err(TestCaseError::fail(format!("node {i}: {e}")));
            }
        }
        Ok(())
    }
}

fn open_file(path: &Path) -> SqliteStore {
    SqliteStore::open(
        path,
        SqliteOptions::default().durability(sync_store_sqlite::Durability::Normal),
    )
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]

    // Feature: sync-system, Property 3: Data integrity preservation
    #[test]
    fn data_integrity_is_preserved(ops in proptest::collection::vec(app_op(2), 1..30), seed in any::<u64>()) {
        let (hub_store, _) = memory_sqlite();
        let mut world = World::new(hub_store, 2, seed);
        for op in &ops {
            world.step(op);
        }
        world.check_converged()?;
        if let Err(e) = references_hold(&mut world.hub) {
            return Err(TestCaseError::fail(format!("hub: {e}")));
        }
    }

    // Feature: sync-system, Property 3: Data integrity preservation
    #[test]
    fn no_live_line_names_a_deleted_report(ops in proptest::collection::vec(app_op(2), 1..30), seed in any::<u64>()) {
        let (hub_store, _) = memory_sqlite();
        let mut world = World::new(hub_store, 2, seed);
        for op in &ops {
            world.step(op);
        }
        world.check_converged()?;
        // A deleted report counts as absent: no live line names one, unless
        // the line itself won a conflict (its strategy decided).
        world.no_live_line_of_a_deleted_report()?;
    }

    // Feature: sync-system, Property 15: Hierarchical data support
    #[test]
    fn parent_child_relationships_survive_every_arrival_order(
        ops in proptest::collection::vec(restore_op(2), 1..30),
        seed in any::<u64>(),
    ) {
        let mut world = World::new(sync_store_memory::MemoryStore::new(), 2, seed);
        for op in &ops {
            world.step(op);
        }
        world.check_converged()?;
    }

    // Feature: sync-system, Property 37: Queue integrity maintenance
    #[test]
    fn the_change_queue_keeps_its_integrity(ops in proptest::collection::vec(queue_op(), 1..40), seed in any::<u64>()) {
        queue_case(&ops, seed)?;
    }
}

/// Operations on one node's change queue.
#[derive(Clone, Debug)]
enum QueueOp {
    App(Op),
    EngineWrite {
        report: u8,
        hours: u8,
    },
    EngineDelete {
        report: u8,
    },
    /// A transaction that writes and is dropped (a crash before commit).
    Abandon {
        hours: u8,
    },
    /// Build packets that are all lost.
    Lose,
    Sync {
        faults: u8,
    },
    Reopen,
}

fn queue_op() -> impl Strategy<Value = QueueOp> {
    prop_oneof![
        6 => app_op(1).prop_filter("application writes only", |op| !matches!(op, Op::Sync { .. } | Op::HubReport { .. } | Op::HubLine { .. })).prop_map(QueueOp::App),
        2 => (any::<u8>(), any::<u8>()).prop_map(|(report, hours)| QueueOp::EngineWrite { report, hours }),
        1 => any::<u8>().prop_map(|report| QueueOp::EngineDelete { report }),
        1 => any::<u8>().prop_map(|hours| QueueOp::Abandon { hours }),
        1 => Just(QueueOp::Lose),
        3 => (0u8..50).prop_map(|faults| QueueOp::Sync { faults }),
        1 => Just(QueueOp::Reopen),
    ]
}

fn queue_case(ops: &[QueueOp], seed: u64) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.db");
    let mut store = open_file(&path);
    let registry = track_app(&mut store);
    let mut hub = memory_hub(registry.clone());
    let mut node = engine(store, registry.clone(), node_info(0), 9);
    connect(&mut hub, &mut [&mut node]);
    let mut rng = Rng(seed | 1);
    let mut now = t(0);
    // Keys written locally and not yet known to be acknowledged.
    let mut dirty: std::collections::BTreeSet<Uuid> = Default::default();
    for op in ops {
        now = now.add_millis(10);
        let before = changed_keys(&node);
        match op {
            QueueOp::App(op) => app_write(node.store(), op),
            QueueOp::EngineWrite { report, hours } => {
                if let Some((_, key)) = pick(node.store(), "daily_report", *report) {
                    let key = EntityKey::new("DailyReport", key.parse().unwrap());
                    node.put(key, report_fields("2025-12-14", i64::from(*hours)), now)
                        .unwrap();
                }
            }
            QueueOp::EngineDelete { report } => {
                if let Some((_, key)) = pick(node.store(), "daily_report", *report) {
                    node.delete(EntityKey::new("DailyReport", key.parse().unwrap()), now)
                        .unwrap();
                }
            }
            QueueOp::Abandon { hours } => {
                let mut txn = node.store_mut().begin().unwrap();
                let e = sync_core::Entity::new_version(
                    EntityKey::new("DailyReport", Uuid::from_u128(u128::from(*hours) + 1)),
                    now,
                    false,
                    node_id(0),
                    report_fields("never", 1),
                );
                txn.put_entity(&e, node_id(0), Timestamp::from_secs(5))
                    .unwrap();
                drop(txn);
            }
            QueueOp::Lose => {
                node.start_sync(hub_id()).unwrap();
                let _ = node.poll_transmit(now).unwrap();
            }
            QueueOp::Sync { faults } => {
                let done = sync_faulty(&mut node, &mut hub, &mut now, &mut rng, u64::from(*faults))
                    .unwrap();
                if done && node.pending_count(hub_id()).unwrap() == 0 {
                    dirty.clear();
                }
            }
            QueueOp::Reopen => {
                let store = node.into_store();
                drop(store);
                node = Engine::open(
                    open_file(&path),
                    registry.clone(),
                    EngineConfig::default().seed(9),
                )
                .unwrap();
            }
        }
        let after = changed_keys(&node);
        // A local write that the hub's own version replaced is settled.
        dirty.retain(|k| after.contains_key(k));
        dirty.extend(
            after
                .iter()
                .filter(|(k, seq)| before.get(k) != Some(seq))
                .map(|(k, _)| *k),
        );
        check_queue(&mut node, &dirty)?;
    }
    settle(
        std::slice::from_mut(&mut node),
        &mut hub,
        now.add_millis(1_000_000),
    );
    prop_assert_eq!(state(&mut node), state(&mut hub));
    prop_assert_eq!(node.pending_count(hub_id()).unwrap(), 0);
    prop_assert!(integrity_ok(node.store()));
    Ok(())
}

/// Sequence of every registered entity whose current version was not
/// received from the hub (the hub's own writes, such as its deletion of an
/// orphaned line, are no local write), by key.
fn changed_keys(node: &Node) -> std::collections::BTreeMap<Uuid, i64> {
    let conn = node.store().connection();
    let mut stmt = conn
        .prepare("SELECT uuid, seq FROM _sync_changes WHERE source IS NOT ?1")
        .unwrap();
    stmt.query_map([hub_id().as_bytes()], |r| {
        let bytes: Vec<u8> = r.get(0)?;
        Ok((Uuid::from_slice(&bytes).unwrap(), r.get::<_, i64>(1)?))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

/// The queue's invariants: ascending unique sequences, one entry per entity,
/// counts that agree, the `sync_changes` view agreeing, and every locally
/// written entity still owed to the hub until a sync drained the queue.
fn check_queue(
    node: &mut Node,
    dirty: &std::collections::BTreeSet<Uuid>,
) -> Result<(), TestCaseError> {
    let peer = node.peer(hub_id()).unwrap();
    let txn = node.store_mut().begin().unwrap();
    let query = PendingQuery::for_peer(&peer, usize::MAX);
    let pending = txn.pending(&query).unwrap();
    let count = txn.count_pending(&query).unwrap();
    let last = txn.last_seq().unwrap();
    drop(txn);
    prop_assert_eq!(pending.len() as u64, count);
    prop_assert!(
        pending.windows(2).all(|w| w[0].seq < w[1].seq),
        "sequences ascend"
    );
    prop_assert!(pending.iter().all(|s| s.seq <= last));
    let keys: std::collections::BTreeSet<_> =
        pending.iter().map(|s| s.entity.key.clone()).collect();
    prop_assert_eq!(keys.len(), pending.len(), "one entry per entity");
    let view: i64 = node
        .store()
        .connection()
        .query_row(
            "SELECT count(*) FROM sync_changes WHERE node_id = ?1",
            [hub_id().as_bytes()],
            |r| r.get(0),
        )
        .unwrap();
    prop_assert_eq!(view as u64, count, "the sync_changes view agrees");
    let pending_ids: std::collections::BTreeSet<Uuid> =
        pending.iter().map(|s| s.entity.key.id).collect();
    for key in dirty {
        prop_assert!(
            pending_ids.contains(key),
            "{} was written locally but is not pending",
            key
        );
    }
    prop_assert!(
        pending
            .iter()
            .all(|s| !s.entity.fields.contains_key("local_note"))
    );
    Ok(())
}
