//! The async driver applies the hub's schema migrations: with
//! `NodeBuilder::apply_migrations`, one `Node::sync` of a SQLite node behind
//! the hub's schema migrates it and syncs on at the new version; a failing
//! script ends the session with the failure in the report.

use syncplan::{
    Engine, EngineConfig, LocalHub, Migration, Node, NodeId, NodeInfo, Role, SchemaVersion,
    SqliteOptions, SqliteStore, TrackOptions, Uuid,
};

const V1_0: SchemaVersion = SchemaVersion::new(1, 0, 0);
const V1_1: SchemaVersion = SchemaVersion::new(1, 1, 0);

fn hub_info() -> NodeInfo {
    NodeInfo::new(NodeId(Uuid::from_u128(1)), "HUB", "Hub", Role::Hub)
}

fn node_info() -> NodeInfo {
    NodeInfo::new(
        NodeId(Uuid::from_u128(2)),
        "DESKTOP-1",
        "Desktop",
        Role::Node,
    )
}

fn app_db() -> SqliteStore {
    let mut store = SqliteStore::open_in_memory(SqliteOptions::default()).unwrap();
    store
        .connection()
        .execute_batch("CREATE TABLE task(id INTEGER PRIMARY KEY, title TEXT);")
        .unwrap();
    store.track_table("task", TrackOptions::new()).unwrap();
    store
}

fn hub(migration: Migration) -> LocalHub<SqliteStore> {
    let mut store = app_db();
    store.apply_migration(&migration).unwrap();
    store
        .connection()
        .execute("INSERT INTO task(title, note) VALUES ('paint', 'blue')", [])
        .unwrap();
    let registry = store.registry();
    let config = EngineConfig::default()
        .seed(1)
        .schema_version(V1_1)
        .min_peer_schema(V1_1)
        .migration(migration);
    let mut hub = Engine::new(store, registry, config, hub_info()).unwrap();
    hub.register_peer(node_info()).unwrap();
    LocalHub::new(hub)
}

fn node(hub: &LocalHub<SqliteStore>, store: SqliteStore) -> Node<SqliteStore> {
    let registry = store.registry();
    let config = EngineConfig::default().seed(2).schema_version(V1_0);
    let mut engine = Engine::new(store, registry, config, node_info()).unwrap();
    engine.register_peer(hub_info()).unwrap();
    Node::builder(engine, hub_info().id, hub.transport(node_info().id))
        .apply_migrations()
        .build()
}

/// The single value `sql` selects from the node's database.
async fn one_value<T: rusqlite::types::FromSql + Send + 'static>(
    node: &Node<SqliteStore>,
    sql: &'static str,
) -> T {
    node.with_engine(move |e| {
        e.store()
            .connection()
            .query_row(sql, [], |r| r.get(0))
            .unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn one_sync_migrates_a_node_behind_the_hub_and_syncs_on() {
    let add_note = Migration::sqlite(V1_1, "ALTER TABLE task ADD COLUMN note TEXT;", "notes");
    let hub = hub(add_note);
    let node = node(&hub, app_db());
    let report = node.sync().await.unwrap();
    assert!(report.complete, "{report:?}");
    assert_eq!(report.migrations, vec![V1_1]);
    assert_eq!(report.migration_failure, None);
    let note: String = one_value(&node, "SELECT note FROM task").await;
    assert_eq!(note, "blue");
    assert_eq!(
        node.with_engine(|e| e.schema_version()).await.unwrap(),
        V1_1
    );
}

#[tokio::test]
async fn a_failing_migration_ends_the_session_with_its_failure() {
    let broken = Migration::sqlite(V1_1, "ALTER TABLE task ADD COLUMN title TEXT;", "clash");
    let hub = hub(Migration::sqlite(
        V1_1,
        "ALTER TABLE task ADD COLUMN note TEXT;",
        "notes",
    ));
    // The hub's migration is fine; this node's copy of the database clashes
    // with the script the hub sends next.
    let hub_engine = hub.into_engine().unwrap();
    let config = hub_engine.config().clone().migration(broken);
    let registry = hub_engine.registry().clone();
    let hub = LocalHub::new(Engine::open(hub_engine.into_store(), registry, config).unwrap());
    let node = node(&hub, app_db());
    let report = node.sync().await.unwrap();
    assert!(report.migrations.is_empty());
    let failure = report.migration_failure.expect("the script fails");
    assert!(failure.message.contains("duplicate column"), "{failure:?}");
    let status = node
        .with_engine(|e| e.migration_status().unwrap())
        .await
        .unwrap();
    assert!(status.blocked());
    let rows: i64 = one_value(&node, "SELECT count(*) FROM task").await;
    assert_eq!(rows, 0, "nothing from the hub while blocked");
    // The next session tells the hub.
    node.sync().await.unwrap();
    let failures = hub
        .with_engine(|e| e.migration_failures().unwrap())
        .await
        .unwrap();
    assert_eq!(failures.len(), 1);
}
