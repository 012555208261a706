//! What is SQLite-specific in these tests: an application schema with a
//! parent/child pair of tables, SQLite stores that track it, and plain-SQL
//! helpers. The rest (identities, records, a hub and nodes syncing
//! in-process, the lossy exchange) is the shared harness of
//! `sync-conformance`, re-exported here.

#![allow(dead_code, unused_imports)]

use std::path::Path;

use sync_core::{Engine, EntityKey, EntityRegistry, Store, StoreTxn, Uuid, Value};
use sync_store_memory::MemoryStore;
use sync_store_sqlite::{SqliteOptions, SqliteStore, TrackOptions};

pub use sync_conformance::fixtures::{
    hub_id, hub_info, line as line_fields, node_id, node_info, report as report_fields, t,
};
pub use sync_conformance::integrity::live_children_of_deleted;
pub use sync_conformance::net::lossy::{Faults, XorShift as Rng, sync_lossy as sync_faulty};
pub use sync_conformance::net::{connect, drain, engine, session as sync, settle, state};

/// The application's own tables, before syncplan touches them.
pub const APP_SCHEMA: &str = "
    CREATE TABLE daily_report(
        id INTEGER PRIMARY KEY,
        date TEXT NOT NULL,
        brigade TEXT,
        hours INTEGER,
        local_note TEXT
    );
    CREATE TABLE daily_report_line(
        id INTEGER PRIMARY KEY,
        report_id INTEGER NOT NULL REFERENCES daily_report(id),
        text TEXT,
        qty REAL
    );";

/// Creates the app schema in `store` and tracks both tables.
pub fn track_app(store: &mut SqliteStore) -> EntityRegistry {
    store
        .connection()
        .execute_batch(APP_SCHEMA)
        .expect("app schema");
    store
        .track_table(
            "daily_report",
            TrackOptions::new()
                .entity_type_name("DailyReport")
                .exclude("local_note"),
        )
        .expect("track daily_report");
    store
        .track_table(
            "daily_report_line",
            TrackOptions::new().entity_type_name("DailyReportLine"),
        )
        .expect("track daily_report_line");
    store.registry()
}

/// A fresh in-memory SQLite store with the app schema tracked.
pub fn memory_sqlite() -> (SqliteStore, EntityRegistry) {
    let mut store = SqliteStore::open_in_memory(SqliteOptions::default()).expect("open");
    let registry = track_app(&mut store);
    (store, registry)
}

/// A fresh SQLite file store with the app schema tracked.
pub fn file_sqlite(path: &Path) -> (SqliteStore, EntityRegistry) {
    let mut store = SqliteStore::open(path, SqliteOptions::default()).expect("open");
    let registry = track_app(&mut store);
    (store, registry)
}

/// Inserts a report with plain SQL; returns its sync key.
pub fn sql_report(store: &SqliteStore, date: &str, hours: i64) -> Uuid {
    let conn = store.connection();
    conn.execute(
        "INSERT INTO daily_report(date, brigade, hours) VALUES (?1, 'B-7', ?2)",
        (date, hours),
    )
    .expect("insert report");
    let id = conn.last_insert_rowid();
    key_of(store, "daily_report", id)
}

/// Inserts a line under the report with sync key `report` using plain SQL.
pub fn sql_line(store: &SqliteStore, report: Uuid, text: &str, qty: f64) -> Uuid {
    let conn = store.connection();
    conn.execute(
        "INSERT INTO daily_report_line(report_id, text, qty)
         VALUES ((SELECT id FROM daily_report WHERE sync_uuid = ?1), ?2, ?3)",
        (report.to_string(), text, qty),
    )
    .expect("insert line");
    let id = conn.last_insert_rowid();
    key_of(store, "daily_report_line", id)
}

/// The sync key of the row `rowid` of `table`.
pub fn key_of(store: &SqliteStore, table: &str, rowid: i64) -> Uuid {
    let key: String = store
        .connection()
        .query_row(
            &format!("SELECT sync_uuid FROM {table} WHERE id = ?1"),
            [rowid],
            |r| r.get(0),
        )
        .expect("key");
    key.parse().expect("uuid")
}

/// A hub on a memory store (seeded 1).
pub fn memory_hub(registry: EntityRegistry) -> Engine<MemoryStore> {
    engine(MemoryStore::new(), registry, hub_info(), 1)
}

/// Rows violating foreign keys in a SQLite store (must stay empty).
pub fn foreign_key_violations(store: &SqliteStore) -> i64 {
    store
        .connection()
        .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
            r.get(0)
        })
        .expect("foreign_key_check")
}

/// Whether SQLite's integrity check passes.
pub fn integrity_ok(store: &SqliteStore) -> bool {
    let result: String = store
        .connection()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    result == "ok"
}

/// Every reference of every line entity resolves to a report entity, and
/// every line row references the report row with that sync key.
pub fn references_hold(engine: &mut Engine<SqliteStore>) -> Result<(), String> {
    let txn = engine.store_mut().begin().map_err(|e| e.to_string())?;
    let lines = txn
        .entities("DailyReportLine", None, usize::MAX)
        .map_err(|e| e.to_string())?;
    for line in &lines {
        let Some(Value::Uuid(parent)) = line.entity.fields.get("report_id") else {
            if line.entity.is_deleted {
                continue; // a hard-deleted line's tombstone carries no values
            }
            return Err(format!("line {} has no report", line.entity.key));
        };
        if txn
            .entity(&EntityKey::new("DailyReport", *parent))
            .map_err(|e| e.to_string())?
            .is_none()
        {
            return Err(format!(
                "line {} references missing report {parent}",
                line.entity.key
            ));
        }
    }
    drop(txn);
    let conn = engine.store().connection();
    let bad: i64 = conn
        .query_row(
            "SELECT count(*) FROM daily_report_line l
             JOIN _sync_changes c ON c.uuid = unhex(replace(l.sync_uuid, '-', ''))
             WHERE c.doc IS NULL AND NOT EXISTS (SELECT 1 FROM daily_report r WHERE r.id = l.report_id)",
            [],
            |r| r.get(0),
        )
        .map_err(|e| e.to_string())?;
    if bad > 0 {
        return Err(format!("{bad} line rows reference missing report rows"));
    }
    if foreign_key_violations(engine.store()) > 0 {
        return Err("PRAGMA foreign_key_check reports violations".into());
    }
    Ok(())
}
