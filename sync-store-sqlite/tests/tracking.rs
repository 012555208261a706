//! Tracking user tables: sync columns, backfill, capture triggers for plain
//! SQL, coalescing, tombstones, no re-capture of applied changes, excluded
//! columns, foreign keys, and tables added later.

mod common;

use common::*;
use sync_core::{
    EntityKey, EntityType, FieldKind, PendingQuery, Store, StoreTxn, StoredEntity, Timestamp, Uuid,
    Value,
};
use sync_store_sqlite::{SqliteOptions, SqliteStore, TrackError, TrackOptions};

fn pending_all(store: &mut SqliteStore) -> Vec<StoredEntity> {
    let txn = store.begin().unwrap();
    txn.pending(&PendingQuery {
        peer: hub_id(),
        after_seq: 0,
        resend_own_upto: 0,
        limit: usize::MAX,
    })
    .unwrap()
}

#[test]
fn tracking_adds_columns_and_backfills_existing_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    let app = rusqlite::Connection::open(&path).unwrap();
    app.execute_batch(APP_SCHEMA).unwrap();
    app.execute_batch(
        "INSERT INTO daily_report(date, hours) VALUES ('2025-01-01', 1), ('2025-01-02', 2);",
    )
    .unwrap();
    drop(app);
    let mut store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    let ty = store
        .track_table(
            "daily_report",
            TrackOptions::new().entity_type_name("DailyReport"),
        )
        .unwrap();
    assert_eq!(ty.name(), "DailyReport");
    assert_eq!(ty.field_def("hours").unwrap().kind, FieldKind::Int);
    assert!(ty.field_def("id").is_none(), "the local row id never syncs");
    let sql: String = store
        .connection()
        .query_row(
            "SELECT sql FROM sqlite_schema WHERE name = 'daily_report'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        sql.contains("sync_uuid") && sql.contains("DEFAULT"),
        "{sql}"
    );
    let keys: Vec<String> = store
        .connection()
        .prepare("SELECT sync_uuid FROM daily_report ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(keys.len(), 2);
    for key in &keys {
        assert_eq!(key.parse::<Uuid>().unwrap().get_version_num(), 7, "{key}");
    }
    let pending = pending_all(&mut store);
    assert_eq!(pending.len(), 2, "existing rows are changes to send");
    assert_eq!(pending[0].entity.fields["date"], Value::from("2025-01-01"));
    // Tracking again changes nothing.
    store
        .track_table(
            "daily_report",
            TrackOptions::new().entity_type_name("DailyReport"),
        )
        .unwrap();
    assert_eq!(pending_all(&mut store).len(), 2);
}

#[test]
fn plain_sql_writes_are_captured_and_coalesced() {
    let (mut store, _) = memory_sqlite();
    let a = sql_report(&store, "2025-12-12", 8);
    let b = sql_report(&store, "2025-12-13", 4);
    for hours in 1..=5 {
        store
            .connection()
            .execute(
                "UPDATE daily_report SET hours = ?1 WHERE sync_uuid = ?2",
                (hours, a.to_string()),
            )
            .unwrap();
    }
    let pending = pending_all(&mut store);
    let keys: Vec<Uuid> = pending.iter().map(|s| s.entity.key.id).collect();
    assert_eq!(keys, vec![b, a], "one entry per row, latest write last");
    assert_eq!(pending[1].entity.fields["hours"], Value::Int(5));
    assert!(pending[0].seq < pending[1].seq);
    assert_eq!(pending[1].created_seq, 1);
    assert!(
        pending.iter().all(|s| s.source == sync_core::NodeId::NIL),
        "local before a node id is set"
    );
}

#[test]
fn updates_move_updated_at_forward() {
    let (mut store, _) = memory_sqlite();
    let a = sql_report(&store, "2025-12-12", 8);
    let key = EntityKey::new("DailyReport", a);
    let before = store
        .begin()
        .unwrap()
        .entity(&key)
        .unwrap()
        .unwrap()
        .entity
        .updated_at;
    // The application sets updated_at back in time: it still moves forward.
    store
        .connection()
        .execute(
            "UPDATE daily_report SET hours = 9, updated_at = 5 WHERE sync_uuid = ?1",
            [a.to_string()],
        )
        .unwrap();
    let after = store
        .begin()
        .unwrap()
        .entity(&key)
        .unwrap()
        .unwrap()
        .entity
        .updated_at;
    assert!(after > before, "{after:?} > {before:?}");
    store
        .connection()
        .execute(
            "UPDATE daily_report SET hours = 10 WHERE sync_uuid = ?1",
            [a.to_string()],
        )
        .unwrap();
    let again = store
        .begin()
        .unwrap()
        .entity(&key)
        .unwrap()
        .unwrap()
        .entity
        .updated_at;
    assert!(again > after);
}

#[test]
fn a_hard_delete_becomes_a_tombstone() {
    let (mut store, _) = memory_sqlite();
    let a = sql_report(&store, "2025-12-12", 8);
    store
        .connection()
        .execute(
            "DELETE FROM daily_report WHERE sync_uuid = ?1",
            [a.to_string()],
        )
        .unwrap();
    let pending = pending_all(&mut store);
    assert_eq!(pending.len(), 1);
    assert!(pending[0].entity.is_deleted);
    assert_eq!(pending[0].entity.key.id, a);
    // A soft delete is an ordinary update of the flag.
    let b = sql_report(&store, "2025-12-13", 1);
    store
        .connection()
        .execute(
            "UPDATE daily_report SET is_deleted = 1 WHERE sync_uuid = ?1",
            [b.to_string()],
        )
        .unwrap();
    let soft = store
        .begin()
        .unwrap()
        .entity(&EntityKey::new("DailyReport", b))
        .unwrap()
        .unwrap();
    assert!(soft.entity.is_deleted);
    assert_eq!(soft.entity.fields["hours"], Value::Int(1));
}

#[test]
fn other_connections_are_captured_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    let (mut store, _) = file_sqlite(&path);
    let other = rusqlite::Connection::open(&path).unwrap();
    other
        .execute(
            "INSERT INTO daily_report(date, hours) VALUES ('2025-12-14', 3)",
            [],
        )
        .unwrap();
    other
        .execute(
            "INSERT INTO daily_report(date, sync_uuid, updated_at) VALUES ('x', NULL, NULL)",
            [],
        )
        .unwrap();
    let pending = pending_all(&mut store);
    assert_eq!(pending.len(), 2);
    assert!(
        pending
            .iter()
            .all(|p| p.entity.updated_at > Timestamp::EPOCH)
    );
}

#[test]
fn the_sync_key_cannot_be_changed() {
    let (store, _) = memory_sqlite();
    let a = sql_report(&store, "2025-12-12", 8);
    let err = store
        .connection()
        .execute(
            "UPDATE daily_report SET sync_uuid = ?1 WHERE sync_uuid = ?2",
            (Uuid::from_u128(5).to_string(), a.to_string()),
        )
        .unwrap_err();
    assert!(err.to_string().contains("cannot be changed"), "{err}");
    let bad = store
        .connection()
        .execute(
            "INSERT INTO daily_report(date, sync_uuid) VALUES ('x', 'not a uuid')",
            [],
        )
        .unwrap_err();
    assert!(bad.to_string().contains("must be a UUID"), "{bad}");
}

#[test]
fn applied_changes_are_not_captured_again() {
    let (node_store, registry) = memory_sqlite();
    let mut hub = memory_hub(registry.clone());
    let mut node = engine(node_store, registry, node_info(0), 7);
    connect(&mut hub, &mut [&mut node]);
    let r = hub
        .insert("DailyReport", report_fields("2025-12-12", 8), t(0))
        .unwrap();
    hub.insert("DailyReportLine", line_fields(r, "dig", 2.5), t(1))
        .unwrap();
    sync(&mut node, &mut hub, t(2)).unwrap();
    let rows: i64 = node
        .store()
        .connection()
        .query_row(
            "SELECT count(*) FROM daily_report_line l JOIN daily_report r ON r.id = l.report_id",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(rows, 1, "the line row references the report row");
    assert_eq!(
        node.pending_count(hub_id()).unwrap(),
        0,
        "nothing to send back"
    );
    let stored = node
        .store_mut()
        .begin()
        .unwrap()
        .entity(&EntityKey::new("DailyReport", r))
        .unwrap()
        .unwrap();
    assert_eq!(stored.source, hub_id());
    assert_eq!(stored.entity.origin, hub_id());
}

#[test]
fn excluded_columns_never_leave_the_node() {
    let (node_store, registry) = memory_sqlite();
    let mut hub = memory_hub(registry.clone());
    let mut node = engine(node_store, registry, node_info(0), 7);
    connect(&mut hub, &mut [&mut node]);
    node.store()
        .connection()
        .execute(
            "INSERT INTO daily_report(date, hours, local_note) VALUES ('d', 1, 'secret')",
            [],
        )
        .unwrap();
    let key = key_of(node.store(), "daily_report", 1);
    sync(&mut node, &mut hub, t(1)).unwrap();
    let on_hub = hub
        .get(&EntityKey::new("DailyReport", key))
        .unwrap()
        .unwrap();
    assert!(!on_hub.fields.contains_key("local_note"));
    // A hub update keeps the node's local value.
    let mut fields = on_hub.fields.clone();
    fields.insert("hours".into(), Value::Int(2));
    hub.put(EntityKey::new("DailyReport", key), fields, t(2))
        .unwrap();
    sync(&mut node, &mut hub, t(3)).unwrap();
    let (hours, note): (i64, String) = node
        .store()
        .connection()
        .query_row("SELECT hours, local_note FROM daily_report", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((hours, note.as_str()), (2, "secret"));
}

#[test]
fn a_table_added_later_syncs_by_registration_alone() {
    let (mut node_store, _) = memory_sqlite();
    node_store
        .connection()
        .execute_batch("CREATE TABLE brigade(id INTEGER PRIMARY KEY, name TEXT, size INTEGER); INSERT INTO brigade(name, size) VALUES ('B-7', 5);")
        .unwrap();
    node_store
        .track_table("brigade", TrackOptions::new().entity_type_name("Brigade"))
        .unwrap();
    let registry = node_store.registry();
    assert!(registry.get("Brigade").is_some());
    let mut hub = memory_hub(registry.clone());
    let mut node = engine(node_store, registry, node_info(0), 7);
    connect(&mut hub, &mut [&mut node]);
    sync(&mut node, &mut hub, t(1)).unwrap();
    let txn_entities = {
        let txn = hub.store_mut().begin().unwrap();
        let v = txn.entities("Brigade", None, 10).unwrap();
        txn.commit().unwrap();
        v
    };
    assert_eq!(txn_entities.len(), 1);
    assert_eq!(txn_entities[0].entity.fields["name"], Value::from("B-7"));
}

#[test]
fn a_caller_supplied_type_maps_columns_by_its_kinds() {
    let mut store = SqliteStore::open_in_memory(SqliteOptions::default()).unwrap();
    store
        .connection()
        .execute_batch(
            "CREATE TABLE event(id INTEGER PRIMARY KEY, at INTEGER, code TEXT, secret TEXT)",
        )
        .unwrap();
    let ty = EntityType::new("Event")
        .field("at", FieldKind::Timestamp)
        .field("code", FieldKind::Uuid);
    let got = store
        .track_table("event", TrackOptions::new().with_entity_type(ty))
        .unwrap();
    assert_eq!(got.name(), "Event");
    let code = Uuid::from_u128(42);
    store
        .connection()
        .execute(
            "INSERT INTO event(at, code, secret) VALUES (123, ?1, 'x')",
            [code.to_string()],
        )
        .unwrap();
    let pending = pending_all(&mut store);
    assert_eq!(
        pending[0].entity.fields["at"],
        Value::Timestamp(Timestamp::from_micros(123))
    );
    assert_eq!(pending[0].entity.fields["code"], Value::Uuid(code));
    assert!(
        !pending[0].entity.fields.contains_key("secret"),
        "undeclared columns stay local"
    );
    let bad = store
        .track_table(
            "event",
            TrackOptions::new()
                .with_entity_type(EntityType::new("Event").field("nope", FieldKind::Int)),
        )
        .unwrap_err();
    assert!(matches!(bad, TrackError::TypeMismatch { .. }), "{bad}");
}

#[test]
fn tracking_refuses_what_it_cannot_do() {
    let mut store = SqliteStore::open_in_memory(SqliteOptions::default()).unwrap();
    assert!(matches!(
        store.track_table("nope", TrackOptions::new()),
        Err(TrackError::NoSuchTable { .. })
    ));
    assert!(matches!(
        store.track_table("_sync_changes", TrackOptions::new()),
        Err(TrackError::Reserved { .. })
    ));
    store
        .connection()
        .execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, updated_at TEXT)")
        .unwrap();
    let err = store.track_table("t", TrackOptions::new()).unwrap_err();
    assert!(matches!(err, TrackError::BadColumn { .. }), "{err}");
    assert!(err.to_string().contains("TrackOptions"), "{err}");
    // Nothing was changed by the failed attempt.
    let cols: i64 = store
        .connection()
        .query_row("SELECT count(*) FROM pragma_table_info('t')", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(cols, 2);
    // Naming another column works.
    store
        .track_table("t", TrackOptions::new().updated_at_column("changed_at"))
        .unwrap();
}

#[test]
fn reopening_maps_tracked_tables_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    let (store, registry) = file_sqlite(&path);
    let a = sql_report(&store, "2025-12-12", 8);
    sql_line(&store, a, "dig", 1.5);
    drop(store);
    let mut store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    let line = store.registry().get("DailyReportLine").unwrap().clone();
    assert_eq!(
        line.field_def("report_id").unwrap().kind,
        FieldKind::Reference {
            target: "DailyReport".into()
        }
    );
    assert_eq!(
        format!("{:?}", store.registry().get("DailyReport")),
        format!("{:?}", registry.get("DailyReport"))
    );
    let pending = pending_all(&mut store);
    assert_eq!(pending[1].entity.fields["report_id"], Value::Uuid(a));
}

#[test]
fn without_rowid_tables_and_untyped_columns_sync_too() {
    let (mut node_store, _) = memory_sqlite();
    node_store
        .connection()
        .execute_batch(
            "CREATE TABLE setting(name TEXT PRIMARY KEY, value, note TEXT) WITHOUT ROWID;
             INSERT INTO setting(name, value) VALUES ('threshold', 7), ('label', 'north');",
        )
        .unwrap();
    let ty = node_store
        .track_table("setting", TrackOptions::new().entity_type_name("Setting"))
        .unwrap();
    assert_eq!(
        ty.field_def("name").unwrap().kind,
        FieldKind::Text,
        "a text key syncs as a field"
    );
    assert!(
        ty.field_def("value").is_none(),
        "an untyped column travels as stored, undeclared"
    );
    // An insert without a key gets one from the trigger (no default here).
    node_store
        .connection()
        .execute("INSERT INTO setting(name, value) VALUES ('ratio', 0.5)", [])
        .unwrap();
    node_store
        .connection()
        .execute("UPDATE setting SET value = 8 WHERE name = 'threshold'", [])
        .unwrap();
    let registry = node_store.registry();
    let mut hub = memory_hub(registry.clone());
    let mut node = engine(node_store, registry, node_info(0), 7);
    connect(&mut hub, &mut [&mut node]);
    sync(&mut node, &mut hub, t(1)).unwrap();
    let txn = hub.store_mut().begin().unwrap();
    let mut values: Vec<(Value, Value)> = txn
        .entities("Setting", None, 10)
        .unwrap()
        .into_iter()
        .map(|s| {
            (
                s.entity.fields["name"].clone(),
                s.entity.fields["value"].clone(),
            )
        })
        .collect();
    values.sort_by_key(|(name, _)| format!("{name:?}"));
    assert_eq!(
        values,
        vec![
            (Value::from("label"), Value::from("north")),
            (Value::from("ratio"), Value::Float(0.5)),
            (Value::from("threshold"), Value::Int(8)),
        ]
    );
}
