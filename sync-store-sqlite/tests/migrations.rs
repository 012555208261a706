//! Schema migrations distributed by the hub, applied by SQLite nodes: a node
//! behind the hub's schema gets the migrations before any entity change,
//! applies each in one transaction with its tables re-tracked, then syncs at
//! the new version; a migration that fails on one node blocks only that
//! node, with its error at the hub, until a fixed script arrives.

mod common;

use common::*;
use sync_core::{Engine, EngineConfig, EntityKey, Event, Migration, SchemaVersion, Uuid, Value};
use sync_store_sqlite::{SqliteOptions, SqliteStore, apply_migrations};

const V1_0: SchemaVersion = SchemaVersion::new(1, 0, 0);
const V1_1: SchemaVersion = SchemaVersion::new(1, 1, 0);

fn add_note() -> Migration {
    Migration::sqlite(
        V1_1,
        "ALTER TABLE daily_report ADD COLUMN note TEXT;",
        "daily reports get a note",
    )
}

/// A SQLite hub at 1.1.0 (its own database migrated by the same script)
/// that accepts nodes from `minimum` on and distributes `migration`.
fn hub_at_1_1(minimum: SchemaVersion, migration: Migration) -> Engine<SqliteStore> {
    let (mut store, _) = memory_sqlite();
    assert!(store.apply_migration(&migration).unwrap());
    let registry = store.registry();
    let config = EngineConfig::default()
        .seed(1)
        .schema_version(V1_1)
        .min_peer_schema(minimum)
        .migration(migration);
    Engine::new(store, registry, config, hub_info()).unwrap()
}

/// A SQLite node at 1.0.0 with the app schema tracked.
fn node_at_1_0(i: usize) -> Engine<SqliteStore> {
    let (store, registry) = memory_sqlite();
    engine(store, registry, node_info(i), 100 + i as u64)
}

fn report_key(id: Uuid) -> EntityKey {
    EntityKey::new("DailyReport", id)
}

fn reports(engine: &Engine<SqliteStore>) -> i64 {
    engine
        .store()
        .connection()
        .query_row("SELECT count(*) FROM daily_report", [], |r| r.get(0))
        .unwrap()
}

fn columns(engine: &Engine<SqliteStore>, table: &str) -> Vec<String> {
    let conn = engine.store().connection();
    let mut stmt = conn
        .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn hub_note(hub: &mut Engine<SqliteStore>) -> Uuid {
    let conn = hub.store().connection();
    conn.execute(
        "INSERT INTO daily_report(date, brigade, hours, note) VALUES ('2025-12-01', 'HQ', 1, 'from the hub')",
        [],
    )
    .unwrap();
    key_of(hub.store(), "daily_report", conn.last_insert_rowid())
}

#[test]
fn a_node_behind_the_hub_migrates_before_any_change_then_syncs() {
    let mut hub = hub_at_1_1(V1_1, add_note());
    let mut node = node_at_1_0(0);
    connect(&mut hub, &mut [&mut node]);
    let from_hub = hub_note(&mut hub);
    let mine = sql_report(node.store(), "2025-12-12", 8);

    // Too old for the hub's minimum: not refused, but its packet waits and
    // the reply carries the migration; no entity change either way.
    sync(&mut node, &mut hub, t(1)).unwrap();
    let events = drain(&mut node);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::MigrationsReceived { versions } if versions == &[V1_1])),
        "{events:?}"
    );
    assert_eq!(node.pending_migrations().unwrap(), vec![add_note()]);
    assert!(node.migration_status().unwrap().blocked());
    assert_eq!(
        reports(&node),
        1,
        "nothing from the hub before the migration"
    );
    assert!(hub.get(&report_key(mine)).unwrap().is_none());

    let report = apply_migrations(&mut node, t(2)).unwrap();
    assert_eq!(report.applied, vec![V1_1]);
    assert_eq!(report.failed, None);
    assert_eq!(node.schema_version(), V1_1);
    assert_eq!(node.store().schema_version().unwrap(), Some(V1_1));
    assert!(columns(&node, "daily_report").contains(&"note".to_owned()));
    assert!(node.pending_migrations().unwrap().is_empty());
    assert!(
        drain(&mut node)
            .iter()
            .any(|e| matches!(e, Event::MigrationApplied { version } if *version == V1_1))
    );

    // At the new version both ways flow, the new column included.
    sync(&mut node, &mut hub, t(3)).unwrap();
    assert!(hub.get(&report_key(mine)).unwrap().is_some());
    let note: Option<String> = node
        .store()
        .connection()
        .query_row(
            "SELECT note FROM daily_report WHERE sync_uuid = ?1",
            [from_hub.to_string()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(note.as_deref(), Some("from the hub"));
    node.store()
        .connection()
        .execute(
            "UPDATE daily_report SET note = 'noted on the node' WHERE sync_uuid = ?1",
            [mine.to_string()],
        )
        .unwrap();
    sync(&mut node, &mut hub, t(4)).unwrap();
    let at_hub = hub.get(&report_key(mine)).unwrap().unwrap();
    assert_eq!(
        at_hub.fields["note"],
        Value::Text("noted on the node".into())
    );
    let mut nodes = [node];
    settle(&mut nodes, &mut hub, t(5));
    assert_eq!(state(&mut nodes[0]), state(&mut hub));
}

#[test]
fn a_node_at_the_minimum_keeps_sending_while_it_waits_for_its_migration() {
    let mut hub = hub_at_1_1(V1_0, add_note());
    let mut node = node_at_1_0(0);
    connect(&mut hub, &mut [&mut node]);
    hub_note(&mut hub);
    let mine = sql_report(node.store(), "2025-12-12", 8);
    sync(&mut node, &mut hub, t(1)).unwrap();
    // Its changes at 1.0.0 are accepted ...
    assert!(hub.get(&report_key(mine)).unwrap().is_some());
    // ... but it receives the migration, and no entity change, first.
    assert_eq!(reports(&node), 1);
    assert_eq!(node.pending_migrations().unwrap().len(), 1);
    let later = sql_report(node.store(), "2025-12-13", 6);
    sync(&mut node, &mut hub, t(2)).unwrap();
    assert!(hub.get(&report_key(later)).unwrap().is_some());
    assert_eq!(reports(&node), 2);

    apply_migrations(&mut node, t(3)).unwrap();
    sync(&mut node, &mut hub, t(4)).unwrap();
    assert_eq!(reports(&node), 3, "the hub's report arrives once migrated");
    let mut nodes = [node];
    settle(&mut nodes, &mut hub, t(5));
    assert_eq!(state(&mut nodes[0]), state(&mut hub));
}

/// The migration creates a table that syncs from then on; a node whose
/// database already has a table of that name fails it.
fn add_tags(script: &str) -> Migration {
    Migration::sqlite(V1_1, script, "tags").track("tag")
}

#[test]
fn a_migration_that_fails_on_one_node_blocks_it_until_a_fixed_script_arrives() {
    let broken = add_tags("CREATE TABLE tag(id INTEGER PRIMARY KEY, name TEXT NOT NULL);");
    let mut hub = hub_at_1_1(V1_1, broken);
    let mut n0 = node_at_1_0(0);
    let mut n1 = node_at_1_0(1);
    n1.store()
        .connection()
        .execute_batch("CREATE TABLE tag(id INTEGER PRIMARY KEY, name TEXT);")
        .unwrap();
    connect(&mut hub, &mut [&mut n0, &mut n1]);
    hub.store()
        .connection()
        .execute("INSERT INTO tag(name) VALUES ('urgent')", [])
        .unwrap();

    // Node 0 migrates and receives the new table's rows.
    sync(&mut n0, &mut hub, t(1)).unwrap();
    assert_eq!(apply_migrations(&mut n0, t(2)).unwrap().applied, vec![V1_1]);
    sync(&mut n0, &mut hub, t(3)).unwrap();
    let tags: i64 = n0
        .store()
        .connection()
        .query_row("SELECT count(*) FROM tag WHERE name = 'urgent'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(tags, 1);

    // Node 1 fails it: nothing of the script stays, the node stays at
    // 1.0.0, and the hub learns why.
    sync(&mut n1, &mut hub, t(4)).unwrap();
    let report = apply_migrations(&mut n1, t(5)).unwrap();
    assert!(report.applied.is_empty());
    let failure = report.failed.expect("the migration fails on node 1");
    assert_eq!(failure.version, V1_1);
    assert!(failure.message.contains("already exists"), "{failure:?}");
    assert!(failure.message.contains("tag"), "{failure:?}");
    assert_eq!(n1.schema_version(), V1_0);
    assert_eq!(n1.store().schema_version().unwrap(), None);
    let status = n1.migration_status().unwrap();
    assert_eq!(status.failure.as_ref(), Some(&failure));
    assert!(status.blocked());
    drain(&mut hub);
    sync(&mut n1, &mut hub, t(6)).unwrap();
    let events = drain(&mut hub);
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::NodeMigrationFailed { peer, failure: f } if *peer == n1.local_node().id && f == &failure
        )),
        "{events:?}"
    );
    assert_eq!(
        hub.migration_failures().unwrap(),
        vec![(n1.local_node().id, failure.clone())]
    );
    assert_eq!(reports(&n1), 0, "a blocked node receives no entity change");

    // The hub ships a fixed script for the same version.
    let fixed =
        add_tags("CREATE TABLE IF NOT EXISTS tag(id INTEGER PRIMARY KEY, name TEXT NOT NULL);");
    let registry = hub.registry().clone();
    let config = hub.config().clone().migration(fixed.clone());
    let mut hub = Engine::open(hub.into_store(), registry, config).unwrap();
    sync(&mut n1, &mut hub, t(7)).unwrap();
    assert_eq!(n1.pending_migrations().unwrap(), vec![fixed]);
    assert_eq!(apply_migrations(&mut n1, t(8)).unwrap().applied, vec![V1_1]);
    assert_eq!(n1.migration_status().unwrap().failure, None);
    sync(&mut n1, &mut hub, t(9)).unwrap();
    assert!(hub.migration_failures().unwrap().is_empty());
    let mut nodes = [n0, n1];
    settle(&mut nodes, &mut hub, t(10));
    let hub_state = state(&mut hub);
    for node in &mut nodes {
        assert_eq!(state(node), hub_state);
    }
    assert!(hub_state.iter().any(|(k, _, _)| k.entity_type == "tag"));
}

#[test]
fn a_failed_script_leaves_nothing_behind() {
    let mut node = node_at_1_0(0);
    node.register_peer(hub_info()).unwrap();
    let half = Migration::sqlite(
        V1_1,
        "ALTER TABLE daily_report ADD COLUMN note TEXT; CREATE TABLE daily_report(x);",
        "half of it fails",
    );
    let err = node.store_mut().apply_migration(&half).unwrap_err();
    assert!(err.to_string().contains("1.1.0"), "{err}");
    assert!(!columns(&node, "daily_report").contains(&"note".to_owned()));
    assert_eq!(node.store().schema_version().unwrap(), None);
    // The store still works and still captures writes.
    let key = sql_report(node.store(), "2025-12-12", 8);
    assert!(node.get(&report_key(key)).unwrap().is_some());
    assert_eq!(node.pending_count(hub_id()).unwrap(), 1);
}

#[test]
fn a_reopened_node_knows_its_schema_and_a_repeated_migration_is_harmless() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.db");
    let mut hub = hub_at_1_1(V1_1, add_note());
    let (store, registry) = file_sqlite(&path);
    let mut node = engine(store, registry, node_info(0), 100);
    connect(&mut hub, &mut [&mut node]);
    hub_note(&mut hub);
    sync(&mut node, &mut hub, t(1)).unwrap();
    apply_migrations(&mut node, t(2)).unwrap();
    drop(node);

    // Reopened as the README says: the store's version goes to the engine.
    let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    let at = store.schema_version().unwrap().unwrap_or(V1_0);
    assert_eq!(at, V1_1);
    let registry = store.registry();
    let config = EngineConfig::default().seed(100).schema_version(at);
    let mut node = Engine::open(store, registry.clone(), config).unwrap();
    sync(&mut node, &mut hub, t(3)).unwrap();
    assert!(node.pending_migrations().unwrap().is_empty());
    assert_eq!(reports(&node), 1);
    drop(node);

    // Opened with the old version by mistake: the hub sends the migration
    // again, which the store knows it has, and the node moves on.
    let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    let config = EngineConfig::default().seed(100).schema_version(V1_0);
    let mut node = Engine::open(store, registry, config).unwrap();
    sync(&mut node, &mut hub, t(4)).unwrap();
    assert_eq!(
        apply_migrations(&mut node, t(5)).unwrap().applied,
        vec![V1_1]
    );
    assert_eq!(node.schema_version(), V1_1);
    sync(&mut node, &mut hub, t(6)).unwrap();
    let mut nodes = [node];
    settle(&mut nodes, &mut hub, t(7));
    assert_eq!(state(&mut nodes[0]), state(&mut hub));
}
