//! Apply rate: a packet of new entities applied by the engine into a SQLite
//! node (one transaction, foreign keys on, triggers in place), beside a
//! plain SQLite upsert of the same rows into an identical untracked table.
//!
//! Groups: `apply/packet_1000` with cases `engine_sqlite`, `engine_memory`
//! (the engine alone, for scale) and `plain_upsert`.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use sync_core::{
    Engine, EngineConfig, EntityRegistry, NodeId, NodeInfo, Record, Role, Timestamp, Uuid, Value,
};
use sync_store_memory::MemoryStore;
use sync_store_sqlite::{NOW_MICROS_SQL, SqliteOptions, SqliteStore, TrackOptions, UUID_V7_SQL};

const N: usize = 1_000;
const SCHEMA: &str = "CREATE TABLE daily_report(id INTEGER PRIMARY KEY, date TEXT, brigade TEXT, hours INTEGER, qty REAL);";

fn hub_info() -> NodeInfo {
    NodeInfo::new(NodeId(Uuid::from_u128(1)), "HUB", "Hub", Role::Hub)
}

fn node_info() -> NodeInfo {
    NodeInfo::new(NodeId(Uuid::from_u128(2)), "NODE", "Node", Role::Node)
}

fn fresh_node(dir: &std::path::Path, i: usize) -> (SqliteStore, EntityRegistry) {
    let mut store = SqliteStore::open(dir.join(format!("node-{i}.db")), SqliteOptions::default())
        .expect("open");
    store.connection().execute_batch(SCHEMA).expect("schema");
    let ty = store
        .track_table(
            "daily_report",
            TrackOptions::new().entity_type_name("DailyReport"),
        )
        .expect("track");
    (store, EntityRegistry::new().with(ty))
}

/// A packet from the hub carrying `N` new reports, and the rows it holds.
fn packet(registry: &EntityRegistry) -> (bytes::Bytes, Vec<(Uuid, Record)>) {
    let mut hub = Engine::new(
        MemoryStore::new(),
        registry.clone(),
        EngineConfig::default().seed(1),
        hub_info(),
    )
    .expect("hub");
    hub.register_peer(node_info()).expect("peer");
    let now = Timestamp::from_secs(1_765_535_400);
    let mut rows = Vec::new();
    for i in 0..N {
        let fields = Record::from([
            ("date".to_owned(), Value::from("2025-12-12")),
            ("brigade".to_owned(), Value::from("B-7")),
            ("hours".to_owned(), Value::Int(i as i64 % 12)),
            ("qty".to_owned(), Value::Float(i as f64 * 0.5)),
        ]);
        let id = hub
            .insert("DailyReport", fields.clone(), now)
            .expect("insert");
        rows.push((id, fields));
    }
    let transmit = hub.build_packet(node_info().id, now).expect("packet");
    (transmit.bytes, rows)
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, registry) = fresh_node(dir.path(), 0);
    let (bytes, rows) = packet(&registry);
    let mut group = c.benchmark_group("apply/packet_1000");
    group.throughput(Throughput::Elements(N as u64));
    group.sample_size(10);
    let mut i = 0;
    group.bench_function("engine_sqlite", |b| {
        b.iter_batched(
            || {
                i += 1;
                let (store, registry) = fresh_node(dir.path(), i);
                let mut node = Engine::new(
                    store,
                    registry,
                    EngineConfig::default().seed(2),
                    node_info(),
                )
                .expect("node");
                node.register_peer(hub_info()).expect("peer");
                node
            },
            |mut node| {
                let incoming = node
                    .handle_incoming(&bytes, Timestamp::from_secs(1_765_535_401))
                    .expect("apply");
                assert_eq!(incoming.applied, N);
                node
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("engine_memory", |b| {
        b.iter_batched(
            || {
                let mut node = Engine::new(
                    MemoryStore::new(),
                    registry.clone(),
                    EngineConfig::default().seed(2),
                    node_info(),
                )
                .expect("node");
                node.register_peer(hub_info()).expect("peer");
                node
            },
            |mut node| {
                let incoming = node
                    .handle_incoming(&bytes, Timestamp::from_secs(1_765_535_401))
                    .expect("apply");
                assert_eq!(incoming.applied, N);
                node
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("plain_upsert", |b| {
        b.iter_batched(
            || {
                i += 1;
                let store = SqliteStore::open(dir.path().join(format!("plain-{i}.db")), SqliteOptions::default())
                    .expect("open");
                store
                    .connection()
                    .execute_batch(&format!(
                        "CREATE TABLE daily_report(id INTEGER PRIMARY KEY, date TEXT, brigade TEXT, hours INTEGER, qty REAL,
                             sync_uuid TEXT COLLATE NOCASE DEFAULT {UUID_V7_SQL},
                             updated_at INTEGER DEFAULT {NOW_MICROS_SQL}, is_deleted INTEGER NOT NULL DEFAULT 0);
                         CREATE UNIQUE INDEX plain_key ON daily_report(sync_uuid);"
                    ))
                    .expect("schema");
                store
            },
            |store| {
                let conn = store.connection();
                let tx = conn.unchecked_transaction().expect("begin");
                {
                    let mut stmt = tx
                        .prepare_cached(
                            "INSERT INTO daily_report(sync_uuid, date, brigade, hours, qty, updated_at, is_deleted)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0)
                             ON CONFLICT(sync_uuid) DO UPDATE SET date = excluded.date, brigade = excluded.brigade,
                                 hours = excluded.hours, qty = excluded.qty, updated_at = excluded.updated_at",
                        )
                        .expect("prepare");
                    for (id, fields) in &rows {
                        let text = |k: &str| fields[k].as_text().map(str::to_owned);
                        let qty = match fields["qty"] {
                            Value::Float(x) => x,
                            _ => 0.0,
                        };
                        stmt.execute((
                            id.to_string(),
                            text("date"),
                            text("brigade"),
                            fields["hours"].as_int(),
                            qty,
                            1_765_535_400_000_000i64,
                        ))
                        .expect("upsert");
                    }
                }
                tx.commit().expect("commit");
                store
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
