//! Cost of change capture: the same plain SQL write to a tracked table and
//! to an untracked table of identical shape (same columns, defaults and
//! key index). Budget: tracked at most 1.5x plain.
//!
//! Commits use `synchronous = NORMAL` so the fsync of each commit, the same
//! for both tables, does not hide the capture cost.
//!
//! Groups: `capture/insert` (new rows, keys from the column default),
//! `capture/update` (the application sets `updated_at`) and
//! `capture/update_unstamped` (it does not: the trigger stamps the time).

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use rusqlite::Connection;
use sync_store_sqlite::{
    Durability, NOW_MICROS_SQL, SqliteOptions, SqliteStore, TrackOptions, UUID_V7_SQL,
};

const BATCH: i64 = 1_000;
const ROWS: i64 = 10_000;

fn setup() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = SqliteStore::open(
        dir.path().join("bench.db"),
        SqliteOptions::default().durability(Durability::Normal),
    )
    .expect("open");
    store
        .connection()
        .execute_batch(&format!(
            "CREATE TABLE tracked(id INTEGER PRIMARY KEY, date TEXT, brigade TEXT, hours INTEGER, qty REAL);
             CREATE TABLE plain(id INTEGER PRIMARY KEY, date TEXT, brigade TEXT, hours INTEGER, qty REAL,
                 sync_uuid TEXT COLLATE NOCASE DEFAULT {UUID_V7_SQL},
                 updated_at INTEGER DEFAULT {NOW_MICROS_SQL},
                 is_deleted INTEGER NOT NULL DEFAULT 0);
             CREATE UNIQUE INDEX plain_key ON plain(sync_uuid);"
        ))
        .expect("schema");
    store
        .track_table("tracked", TrackOptions::new())
        .expect("track");
    for table in ["tracked", "plain"] {
        insert_batch(store.connection(), table, ROWS);
    }
    (dir, store)
}

fn insert_batch(conn: &Connection, table: &str, n: i64) {
    let tx = conn.unchecked_transaction().expect("begin");
    {
        let mut stmt = tx
            .prepare_cached(&format!(
                "INSERT INTO {table}(date, brigade, hours, qty) VALUES (?1, 'B-7', ?2, ?3)"
            ))
            .expect("prepare");
        for i in 0..n {
            stmt.execute(("2025-12-12", i % 12, i as f64 * 0.5))
                .expect("insert");
        }
    }
    tx.commit().expect("commit");
}

fn update_batch(conn: &Connection, table: &str, start: i64, stamped: bool) {
    let tx = conn.unchecked_transaction().expect("begin");
    {
        let sql = if stamped {
            format!(
                "UPDATE {table} SET hours = hours + 1, updated_at = updated_at + 1000 WHERE id = ?1"
            )
        } else {
            format!("UPDATE {table} SET hours = hours + 1 WHERE id = ?1")
        };
        let mut stmt = tx.prepare_cached(&sql).expect("prepare");
        for i in 0..BATCH {
            stmt.execute([(start + i) % ROWS + 1]).expect("update");
        }
    }
    tx.commit().expect("commit");
}

fn bench(c: &mut Criterion) {
    let (_dir, store) = setup();
    let conn = store.connection();
    let mut group = c.benchmark_group("capture/insert");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(20);
    for table in ["plain", "tracked"] {
        group.bench_function(table, |b| b.iter(|| insert_batch(conn, table, BATCH)));
    }
    group.finish();
    for (name, stamped) in [
        ("capture/update", true),
        ("capture/update_unstamped", false),
    ] {
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Elements(BATCH as u64));
        group.sample_size(20);
        for table in ["plain", "tracked"] {
            let mut start = 0;
            group.bench_function(table, |b| {
                b.iter_batched(
                    || {
                        start += BATCH;
                        start
                    },
                    |s| update_batch(conn, table, s, stamped),
                    BatchSize::SmallInput,
                )
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
