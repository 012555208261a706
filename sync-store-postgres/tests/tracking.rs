//! `track_table`: rows that another application writes with plain SQL, on
//! a connection of its own, reach the nodes; the nodes' versions land in the
//! table as plain rows.

mod common;

use sync_conformance::fixtures::{hub_info, node_info};
use sync_conformance::net::session;
use sync_core::{
    ConflictStrategy, Engine, EngineConfig, EntityKey, EntityRegistry, EntityType, FieldKind,
    Record, Timestamp, Uuid, Value,
};
use sync_store_memory::MemoryStore;

const REPORT: &str = "DailyReport";

fn now() -> Timestamp {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_micros();
    Timestamp::from_micros(i64::try_from(micros).expect("in range"))
}

fn report_of(node: &mut Engine<MemoryStore>, date: &str) -> Option<sync_core::Entity> {
    let txn = sync_core::Store::begin(node.store_mut()).expect("begin");
    let all = sync_core::StoreTxn::entities(&txn, REPORT, None, 100).expect("entities");
    all.into_iter()
        .map(|s| s.entity)
        .find(|e| e.fields.get("date") == Some(&Value::Text(date.into())))
}

#[test]
fn plain_sql_rows_reach_the_nodes_and_node_changes_land_as_rows() {
    let mut store = common::fresh();
    let schema = store.schema().to_owned();
    let table = format!("{schema}.daily_report");
    store
        .client()
        .batch_execute(&format!(
            "CREATE TABLE {table}(id serial PRIMARY KEY, date text NOT NULL, hours integer);
             INSERT INTO {table}(date, hours) VALUES ('2025-12-11', 7);"
        ))
        .expect("the application's table");
    store.track_table("daily_report", REPORT).expect("track");
    let registry = EntityRegistry::new().with(
        EntityType::new(REPORT)
            .field("date", FieldKind::Text)
            .field("hours", FieldKind::Int)
            .strategy(ConflictStrategy::LastWriterWins),
    );
    let mut hub = Engine::new(
        store,
        registry.clone(),
        EngineConfig::default().seed(1),
        hub_info(),
    )
    .expect("hub");
    hub.register_peer(node_info(0)).expect("register the node");
    let mut node = Engine::new(
        MemoryStore::new(),
        registry,
        EngineConfig::default().seed(2),
        node_info(0),
    )
    .expect("node");
    node.register_peer(hub_info()).expect("register the hub");

    // Another application, its own connection, plain SQL.
    let mut app = postgres::Client::connect(&common::url(), postgres::NoTls).expect("connect");
    app.batch_execute(&format!(
        "INSERT INTO {table}(date, hours) VALUES ('2025-12-12', 8);
         UPDATE {table} SET hours = 6 WHERE date = '2025-12-11';"
    ))
    .expect("the application writes");
    session(&mut node, &mut hub, now()).expect("sync");
    let first = report_of(&mut node, "2025-12-11").expect("the row written before tracking");
    assert_eq!(first.fields["hours"], Value::Int(6));
    let second = report_of(&mut node, "2025-12-12").expect("the row inserted by the application");
    assert_eq!(second.fields["hours"], Value::Int(8));
    assert!(
        !first.fields.contains_key("id"),
        "the local row id does not travel"
    );

    // The node's changes: a new report and an edit.
    let new_key = EntityKey::new(REPORT, Uuid::from_u128(0xabc));
    let mut fields = Record::new();
    fields.insert("date".into(), Value::Text("2025-12-13".into()));
    fields.insert("hours".into(), Value::Int(5));
    node.put(new_key.clone(), fields, now()).expect("write");
    let mut edit = second.fields.clone();
    edit.insert("hours".into(), Value::Int(9));
    node.put(second.key.clone(), edit, now()).expect("edit");
    session(&mut node, &mut hub, now()).expect("sync");
    let rows: Vec<(String, Option<i32>, Uuid)> = app
        .query(
            &format!("SELECT date, hours, sync_uuid FROM {table} ORDER BY date"),
            &[],
        )
        .expect("read the table")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        rows,
        vec![
            ("2025-12-11".to_owned(), Some(6), first.key.id),
            ("2025-12-12".to_owned(), Some(9), second.key.id),
            ("2025-12-13".to_owned(), Some(5), new_key.id),
        ]
    );

    // The hub did not capture the node's rows as writes of its own.
    let pending = hub.pending_count(node_info(0).id).expect("pending");
    assert_eq!(pending, 0, "nothing to send back to the node");

    // A DELETE by the application removes the row on the node too.
    app.execute(
        &format!("DELETE FROM {table} WHERE date = '2025-12-13'"),
        &[],
    )
    .expect("delete");
    session(&mut node, &mut hub, now()).expect("sync");
    let removed = node.get(&new_key).expect("read").expect("a tombstone");
    assert!(removed.is_deleted);
}
