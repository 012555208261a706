//! Shared test helpers: an application schema with a parent/child pair of
//! tables, SQLite node stores that track it, and a hub (memory or SQLite)
//! syncing with them in-process through the real engine.

#![allow(dead_code)]

use std::path::Path;

use sync_core::{
    Engine, EngineConfig, Entity, EntityKey, EntityRegistry, NodeInfo, Record, Store, StoreTxn,
    SyncError, Timestamp, Uuid, Value,
};
use sync_store_memory::MemoryStore;
use sync_store_sqlite::{SqliteOptions, SqliteStore, TrackOptions};

/// The fixture identities and clock every suite uses, and one sync session
/// over a perfect network (`sync`). Not every test uses each.
#[allow(unused_imports)]
pub use sync_conformance::fixtures::{hub_id, hub_info, node_id, node_info, t};
pub use sync_conformance::harness::session as sync;

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

pub fn report_fields(date: &str, hours: i64) -> Record {
    Record::from([
        ("date".to_owned(), Value::from(date)),
        ("brigade".to_owned(), Value::from("B-7")),
        ("hours".to_owned(), Value::Int(hours)),
    ])
}

pub fn line_fields(report: Uuid, text: &str, qty: f64) -> Record {
    Record::from([
        ("report_id".to_owned(), Value::Uuid(report)),
        ("text".to_owned(), Value::from(text)),
        ("qty".to_owned(), Value::Float(qty)),
    ])
}

/// Every entity of the app's two types, with excluded fields removed, in
/// key order: what convergence compares.
pub fn state<S: Store>(engine: &mut Engine<S>) -> Vec<(EntityKey, bool, Record)> {
    let mut out = Vec::new();
    for ty in ["DailyReport", "DailyReportLine"] {
        let txn = engine.store_mut().begin().expect("begin");
        for s in txn.entities(ty, None, usize::MAX).expect("entities") {
            let Entity {
                key,
                is_deleted,
                mut fields,
                ..
            } = s.entity;
            fields.remove("local_note");
            out.push((key, is_deleted, fields));
        }
    }
    out
}

pub fn memory_hub(registry: EntityRegistry) -> Engine<MemoryStore> {
    Engine::new(
        MemoryStore::new(),
        registry,
        EngineConfig::default().seed(1),
        hub_info(),
    )
    .expect("hub")
}

pub fn engine<S: Store>(
    store: S,
    registry: EntityRegistry,
    info: NodeInfo,
    seed: u64,
) -> Engine<S> {
    Engine::new(store, registry, EngineConfig::default().seed(seed), info).expect("engine")
}

/// Registers `nodes` with `hub` and the hub with each node.
pub fn connect<H: Store, N: Store>(hub: &mut Engine<H>, nodes: &mut [&mut Engine<N>]) {
    for node in nodes.iter_mut() {
        hub.register_peer(node.local_node().clone())
            .expect("register node");
        node.register_peer(hub_info()).expect("register hub");
    }
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

pub fn integrity_ok(store: &SqliteStore) -> bool {
    let result: String = store
        .connection()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    result == "ok"
}

/// Faults for one exchange, decided by the caller's generator.
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    pub drop_request: bool,
    pub drop_reply: bool,
    pub duplicate_request: bool,
    pub duplicate_reply: bool,
}

/// A tiny deterministic generator for test scenarios.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn faults(&mut self, percent: u64) -> Faults {
        Faults {
            drop_request: self.chance(percent),
            drop_reply: self.chance(percent),
            duplicate_request: self.chance(percent),
            duplicate_reply: self.chance(percent),
        }
    }
}

/// One sync session over a faulty network: lost packets are retried after
/// the retry deadline. Returns whether the session completed.
pub fn sync_faulty<A: Store, B: Store>(
    node: &mut Engine<A>,
    hub: &mut Engine<B>,
    now: &mut Timestamp,
    rng: &mut Rng,
    percent: u64,
) -> Result<bool, SyncError> {
    node.start_sync(hub_id())?;
    for _ in 0..200 {
        let Some(packet) = node.poll_transmit(*now)? else {
            if !node.is_syncing(hub_id()) {
                return Ok(true);
            }
            *now = node.poll_timeout().unwrap_or(*now).add_millis(1);
            node.handle_timeout(*now);
            continue;
        };
        let f = rng.faults(percent);
        if f.drop_request {
            continue;
        }
        let reply = hub.respond(&packet.bytes, *now)?;
        if f.duplicate_request {
            let _ = hub.respond(&packet.bytes, *now)?;
        }
        if f.drop_reply {
            continue;
        }
        ignore_refusal(node.handle_incoming(&reply, *now))?;
        if f.duplicate_reply {
            ignore_refusal(node.handle_incoming(&reply, *now))?;
        }
    }
    Ok(false)
}

/// A refused packet (the peer sent an error envelope) is not a test failure
/// in a faulty network; store failures are.
fn ignore_refusal<T>(result: Result<T, SyncError>) -> Result<(), SyncError> {
    match result {
        Ok(_) | Err(SyncError::Rejected { .. }) | Err(SyncError::Peer(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Syncs until nothing moves: every node twice around, perfect network.
pub fn settle<A: Store, B: Store>(nodes: &mut [Engine<A>], hub: &mut Engine<B>, now: Timestamp) {
    for _ in 0..3 {
        for node in nodes.iter_mut() {
            sync(node, hub, now).expect("sync");
        }
    }
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
