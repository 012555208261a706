//! Hub and nodes syncing through the real engine with SQLite at both ends:
//! conflicts, a child arriving before its parent, a parent that exists only
//! as a tombstone, and durability settings.

mod common;

use common::*;
use sync_core::{ConflictStrategy, Engine, EngineConfig, EntityKey, Store, StoreTxn, Value};
use sync_store_sqlite::{Durability, SqliteOptions, SqliteStore, TrackOptions};

fn sqlite_engine(i: Option<usize>) -> Engine<SqliteStore> {
    let (store, registry) = memory_sqlite();
    match i {
        None => engine(store, registry, hub_info(), 1),
        Some(i) => engine(store, registry, node_info(i), 100 + i as u64),
    }
}

#[test]
fn sqlite_hub_and_nodes_converge_through_a_conflict() {
    let mut hub = sqlite_engine(None);
    let mut n0 = sqlite_engine(Some(0));
    let mut n1 = sqlite_engine(Some(1));
    connect(&mut hub, &mut [&mut n0, &mut n1]);
    let r = sql_report(n0.store(), "2025-12-12", 8);
    sql_line(n0.store(), r, "dig", 2.0);
    sync(&mut n0, &mut hub, t(1)).unwrap();
    sync(&mut n1, &mut hub, t(2)).unwrap();
    // Concurrent edits of the same row on both nodes.
    for (node, hours) in [(&n0, 9), (&n1, 10)] {
        node.store()
            .connection()
            .execute(
                "UPDATE daily_report SET hours = ?1 WHERE sync_uuid = ?2",
                (hours, r.to_string()),
            )
            .unwrap();
    }
    sync(&mut n0, &mut hub, t(3)).unwrap();
    sync(&mut n1, &mut hub, t(4)).unwrap();
    let mut nodes = [n0, n1];
    settle(&mut nodes, &mut hub, t(5));
    let hub_state = state(&mut hub);
    for node in &mut nodes {
        assert_eq!(state(node), hub_state);
        let hours: i64 = node
            .store()
            .connection()
            .query_row("SELECT hours FROM daily_report", [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            hours, 9,
            "server-wins: the version the hub had first stands"
        );
        references_hold(node).unwrap();
    }
    assert_eq!(hub.audit_log().unwrap().len(), 1);
    let lost = hub.versions(&EntityKey::new("DailyReport", r)).unwrap();
    assert_eq!(
        lost[0].data.fields["hours"],
        Value::Int(10),
        "the losing version is kept"
    );
    assert!(integrity_ok(hub.store()));
}

#[test]
fn last_writer_wins_converges_on_sqlite() {
    let mut store = SqliteStore::open_in_memory(SqliteOptions::default()).unwrap();
    store.connection().execute_batch(APP_SCHEMA).unwrap();
    store
        .track_table(
            "daily_report",
            TrackOptions::new()
                .entity_type_name("DailyReport")
                .strategy(ConflictStrategy::LastWriterWins),
        )
        .unwrap();
    let registry = store.registry();
    let mut hub = memory_hub(registry.clone());
    let mut node = engine(store, registry, node_info(0), 5);
    connect(&mut hub, &mut [&mut node]);
    let r = sql_report(node.store(), "d", 1);
    sync(&mut node, &mut hub, t(1)).unwrap();
    let key = EntityKey::new("DailyReport", r);
    hub.put(key.clone(), report_fields("d", 2), t(0)).unwrap(); // older clock
    node.store()
        .connection()
        .execute("UPDATE daily_report SET hours = 3", [])
        .unwrap();
    sync(&mut node, &mut hub, t(2)).unwrap();
    sync(&mut node, &mut hub, t(3)).unwrap();
    assert_eq!(state(&mut node), state(&mut hub));
    assert_eq!(
        hub.get(&key).unwrap().unwrap().fields["hours"],
        Value::Int(3)
    );
}

/// A node restored from a backup lacks a parent the hub believes it has:
/// the hub sends only the child, which waits (parked) until the resync
/// brings the parent; foreign keys hold throughout.
#[test]
fn a_child_arriving_before_its_parent_waits_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.db");
    let (store, registry) = file_sqlite(&path);
    let mut hub = memory_hub(registry.clone());
    let mut node = engine(store, registry.clone(), node_info(0), 3);
    connect(&mut hub, &mut [&mut node]);
    sync(&mut node, &mut hub, t(1)).unwrap();
    let backup = dir.path().join("backup.db");
    node.store()
        .connection()
        .execute("VACUUM INTO ?1", [backup.to_string_lossy()])
        .unwrap();
    let r = hub
        .insert("DailyReport", report_fields("d", 1), t(2))
        .unwrap();
    sync(&mut node, &mut hub, t(3)).unwrap();
    hub.insert("DailyReportLine", line_fields(r, "dig", 1.0), t(4))
        .unwrap();
    drop(node);
    let store = SqliteStore::open(&backup, SqliteOptions::default()).unwrap();
    let mut node = Engine::open(store, registry, EngineConfig::default().seed(4)).unwrap();
    let mut parked_seen = 0;
    node.start_sync(hub_id()).unwrap();
    while let Some(packet) = node.poll_transmit(t(5)).unwrap() {
        let reply = hub.respond(&packet.bytes, t(5)).unwrap();
        if let Ok(incoming) = node.handle_incoming(&reply, t(5)) {
            parked_seen += incoming.parked;
        }
        assert_eq!(foreign_key_violations(node.store()), 0);
    }
    settle(std::slice::from_mut(&mut node), &mut hub, t(6));
    assert!(parked_seen > 0, "the child was parked");
    assert!(node.parked().unwrap().is_empty());
    assert_eq!(state(&mut node), state(&mut hub));
    references_hold(&mut node).unwrap();
}

/// A child added on one node to a parent another node hard-deleted is kept
/// in the sync tables there (its parent row is gone), never written with a
/// dangling foreign key.
#[test]
fn a_child_of_a_hard_deleted_parent_is_kept_but_not_written() {
    let mut hub = sqlite_engine(None);
    let mut n0 = sqlite_engine(Some(0));
    let mut n1 = sqlite_engine(Some(1));
    connect(&mut hub, &mut [&mut n0, &mut n1]);
    let r = sql_report(n0.store(), "d", 1);
    sync(&mut n0, &mut hub, t(1)).unwrap();
    sync(&mut n1, &mut hub, t(2)).unwrap();
    n0.store()
        .connection()
        .execute("DELETE FROM daily_report", [])
        .unwrap();
    let line = sql_line(n1.store(), r, "late", 1.0);
    sync(&mut n1, &mut hub, t(3)).unwrap();
    sync(&mut n0, &mut hub, t(4)).unwrap();
    let mut nodes = [n0, n1];
    settle(&mut nodes, &mut hub, t(5));
    let hub_state = state(&mut hub);
    for node in &mut nodes {
        assert_eq!(state(node), hub_state);
        references_hold(node).unwrap();
    }
    let line_rows: i64 = nodes[0]
        .store()
        .connection()
        .query_row("SELECT count(*) FROM daily_report_line", [], |r| r.get(0))
        .unwrap();
    assert_eq!(line_rows, 0, "no row without its parent row");
    let txn = nodes[0].store_mut().begin().unwrap();
    assert!(
        txn.entity(&EntityKey::new("DailyReportLine", line))
            .unwrap()
            .is_some()
    );
}

#[test]
fn durability_is_full_by_default_and_normal_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let level = |store: &SqliteStore| -> i64 {
        store
            .connection()
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap()
    };
    let mode = |store: &SqliteStore| -> String {
        store
            .connection()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap()
    };
    let hub = SqliteStore::open(dir.path().join("hub.db"), SqliteOptions::default()).unwrap();
    assert_eq!(level(&hub), 2, "FULL");
    assert_eq!(mode(&hub), "wal");
    let node = SqliteStore::open(
        dir.path().join("node.db"),
        SqliteOptions::default().durability(Durability::Normal),
    )
    .unwrap();
    assert_eq!(level(&node), 1, "NORMAL");
    let fk: i64 = node
        .connection()
        .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
        .unwrap();
    assert_eq!(fk, 1);
}
