//! Per-field merge on tracked tables: plain-SQL `UPDATE`s of different
//! columns of one row on two nodes both survive, on every node, with
//! SQLite at the hub and at the nodes; the same column changed on both
//! falls back to the type's fallback, and both versions stay in history.

mod common;

use common::*;
use sync_core::{
    ConflictSide, ConflictStrategy, Engine, EntityKey, FieldFallback, Store, StoreTxn, Value,
};
use sync_store_sqlite::{SqliteOptions, SqliteStore, TrackOptions};

fn merged_sqlite(info: sync_core::NodeInfo, seed: u64) -> Engine<SqliteStore> {
    let mut store = SqliteStore::open_in_memory(SqliteOptions::default()).expect("open");
    store
        .connection()
        .execute_batch(APP_SCHEMA)
        .expect("schema");
    store
        .track_table(
            "daily_report",
            TrackOptions::new()
                .entity_type_name("DailyReport")
                .exclude("local_note")
                .strategy(ConflictStrategy::FieldMerge {
                    fallback: FieldFallback::ServerWins,
                }),
        )
        .expect("track");
    let registry = store.registry();
    engine(store, registry, info, seed)
}

fn sql(engine: &Engine<SqliteStore>, statement: &str) {
    engine
        .store()
        .connection()
        .execute(statement, [])
        .expect("plain SQL");
}

fn row(engine: &Engine<SqliteStore>) -> (String, i64, Option<String>) {
    engine
        .store()
        .connection()
        .query_row(
            "SELECT brigade, hours, local_note FROM daily_report",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("row")
}

/// Every report as it syncs (the local-only column left out).
fn reports(engine: &mut Engine<SqliteStore>) -> Vec<(EntityKey, bool, sync_core::Record)> {
    let txn = engine.store_mut().begin().expect("begin");
    txn.entities("DailyReport", None, usize::MAX)
        .expect("entities")
        .into_iter()
        .map(|s| {
            let mut fields = s.entity.fields;
            fields.remove("local_note");
            (s.entity.key, s.entity.is_deleted, fields)
        })
        .collect()
}

#[test]
fn plain_sql_updates_of_different_columns_on_two_nodes_both_survive() {
    let mut hub = merged_sqlite(hub_info(), 1);
    let mut n0 = merged_sqlite(node_info(0), 100);
    let mut n1 = merged_sqlite(node_info(1), 101);
    connect(&mut hub, &mut [&mut n0, &mut n1]);
    let r = sql_report(n0.store(), "2025-12-12", 8);
    let key = EntityKey::new("DailyReport", r);
    sync(&mut n0, &mut hub, t(1)).expect("sync");
    sync(&mut n1, &mut hub, t(2)).expect("sync");
    assert_eq!(row(&n1), ("B-7".into(), 8, None));

    // Offline, each node changes a different column with plain SQL (and
    // node 1 its local-only column, which never travels).
    sql(&n0, "UPDATE daily_report SET hours = 9");
    sql(
        &n1,
        "UPDATE daily_report SET brigade = 'B-9', local_note = 'mine'",
    );
    sync(&mut n0, &mut hub, t(3)).expect("sync");
    sync(&mut n1, &mut hub, t(4)).expect("sync");
    let mut nodes = [n0, n1];
    settle(&mut nodes, &mut hub, t(5));
    assert_eq!(row(&hub), ("B-9".into(), 9, None), "both edits at the hub");
    assert_eq!(row(&nodes[0]), ("B-9".into(), 9, None));
    assert_eq!(row(&nodes[1]), ("B-9".into(), 9, Some("mine".into())));
    let hub_state = reports(&mut hub);
    for node in &mut nodes {
        assert_eq!(reports(node), hub_state);
    }
    let audit = hub.audit_log().expect("audit");
    assert_eq!(audit.len(), 1, "one concurrent pair: {audit:?}");
    assert_eq!(audit[0].winner, ConflictSide::Merged);
    assert_eq!(audit[0].strategy, "field-merge:server-wins");
    assert!(audit[0].detail.contains("brigade"), "{}", audit[0].detail);
    assert_eq!(hub.versions(&key).expect("versions").len(), 2);

    // The same column on both: the hub's value (node 0 synced first), and
    // node 1's value is kept in the version history. A different column
    // changed beside it on node 1 still survives.
    let [n0, n1] = &mut nodes;
    sql(n0, "UPDATE daily_report SET hours = 10");
    sql(n1, "UPDATE daily_report SET hours = 11, brigade = 'B-10'");
    sync(n0, &mut hub, t(6)).expect("sync");
    sync(n1, &mut hub, t(7)).expect("sync");
    settle(&mut nodes, &mut hub, t(8));
    assert_eq!(row(&hub), ("B-10".into(), 10, None));
    for node in &mut nodes {
        assert_eq!(row(node).0, "B-10");
        assert_eq!(row(node).1, 10, "server-wins for the column both changed");
    }
    let lost = hub.versions(&key).expect("versions");
    assert!(
        lost.iter()
            .any(|v| v.data.fields.get("hours") == Some(&Value::Int(11))),
        "the losing value is in the version history: {lost:?}"
    );
    assert_eq!(hub.audit_log().expect("audit").len(), 2);
    for node in &mut nodes {
        assert_eq!(reports(node), reports(&mut hub));
        assert!(integrity_ok(node.store()));
    }
}

/// A node whose SQL write and the hub's engine write touch different
/// columns: the node merges when the hub's version reaches it first, and
/// the hub, receiving the node's write, arrives at the same version.
#[test]
fn a_node_and_the_hub_merge_the_same_way() {
    let mut hub = merged_sqlite(hub_info(), 1);
    let mut n0 = merged_sqlite(node_info(0), 100);
    connect(&mut hub, &mut [&mut n0]);
    let r = sql_report(n0.store(), "2025-12-12", 8);
    let key = EntityKey::new("DailyReport", r);
    sync(&mut n0, &mut hub, t(1)).expect("sync");
    let mut fields = hub.get(&key).expect("get").expect("present").fields;
    fields.insert("date".into(), Value::from("2025-12-13"));
    hub.put(key.clone(), fields, t(2)).expect("hub write");
    sql(&n0, "UPDATE daily_report SET hours = 12");
    settle(std::slice::from_mut(&mut n0), &mut hub, t(3));
    let date: String = n0
        .store()
        .connection()
        .query_row("SELECT date FROM daily_report", [], |r| r.get(0))
        .expect("date");
    assert_eq!(date, "2025-12-13");
    assert_eq!(row(&n0).1, 12);
    assert_eq!(reports(&mut n0), reports(&mut hub));
    let held = hub.get(&key).expect("get").expect("present");
    assert_eq!(held.fields["hours"], Value::Int(12));
    assert_eq!(held.fields["date"], Value::from("2025-12-13"));
}
