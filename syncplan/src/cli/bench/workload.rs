//! The bench's rows and tables: the application table a node tracks, the
//! untracked table of the same shape the ceiling and the plain writes use,
//! and the engines on them.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;
use syncplan::sqlite::{NOW_MICROS_SQL, UUID_V7_SQL};
use syncplan::{
    Engine, EngineConfig, EntityRegistry, NodeId, NodeInfo, Role, SqliteOptions, SqliteStore,
    TrackOptions, Uuid,
};

use super::{Progress, timed};
use crate::cli::failure::{Context, Result};

/// The application's table, as a node and the hub create it.
const APP_SCHEMA: &str = "CREATE TABLE daily_report(
    id INTEGER PRIMARY KEY,
    date TEXT NOT NULL,
    brigade TEXT NOT NULL,
    hours INTEGER NOT NULL,
    qty REAL NOT NULL)";

/// Rows per transaction when the application writes (one transaction per
/// chunk, as an application importing data would).
pub const WRITE_CHUNK: usize = 10_000;

/// The hub's node info.
pub fn hub_info() -> NodeInfo {
    NodeInfo::new(NodeId(Uuid::from_u128(1)), "HUB", "Hub", Role::Hub)
}

/// Node `i`'s node info.
pub fn node_info(i: u128) -> NodeInfo {
    NodeInfo::new(
        NodeId(Uuid::from_u128(100 + i)),
        format!("NODE-{i}"),
        "Bench node",
        Role::Node,
    )
}

/// The values of row `i`: date, brigade, hours, quantity.
pub fn row(i: usize) -> (String, String, i64, f64) {
    (
        format!("2025-12-{:02}", i % 28 + 1),
        format!("B-{}", i % 97),
        (i % 12) as i64,
        i as f64 * 0.25,
    )
}

/// A time-ordered sync key for row `i` of the ceiling.
fn ceiling_key(i: usize) -> String {
    Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0000 | i as u128).to_string()
}

/// The untracked table of the same shape as a tracked one: the sync
/// columns with the same defaults, and the same unique key index.
fn plain_schema() -> String {
    format!(
        "CREATE TABLE daily_report(
             id INTEGER PRIMARY KEY, date TEXT NOT NULL, brigade TEXT NOT NULL,
             hours INTEGER NOT NULL, qty REAL NOT NULL,
             sync_uuid TEXT COLLATE NOCASE DEFAULT {UUID_V7_SQL},
             updated_at INTEGER DEFAULT {NOW_MICROS_SQL},
             is_deleted INTEGER NOT NULL DEFAULT 0);
         CREATE UNIQUE INDEX daily_report_key ON daily_report(sync_uuid);"
    )
}

/// A database with the store's settings (WAL, `synchronous = FULL`) but no
/// store: what a plain SQLite application would run.
fn plain_db(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path).context("creating a plain SQLite database")?;
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")
        .context("setting up the plain database")?;
    conn.execute_batch(&plain_schema())
        .context("creating the plain table")?;
    Ok(conn)
}

/// The ceiling: a plain upsert of `n` rows (keys given, as a sync would
/// carry them) in one transaction through one prepared statement.
pub fn ceiling(dir: &Path, n: usize, progress: &Progress) -> Result<Duration> {
    progress.phase("ceiling (plain upsert)", None);
    let conn = plain_db(&dir.join("ceiling.db"))?;
    let ((), took) = timed(|| {
        let tx = conn
            .unchecked_transaction()
            .context("starting the upsert")?;
        {
            let mut stmt = tx
                .prepare(
                    "INSERT INTO daily_report(sync_uuid, date, brigade, hours, qty, updated_at, is_deleted)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0)
                     ON CONFLICT(sync_uuid) DO UPDATE SET date = excluded.date,
                         brigade = excluded.brigade, hours = excluded.hours, qty = excluded.qty,
                         updated_at = excluded.updated_at, is_deleted = excluded.is_deleted",
                )
                .context("preparing the upsert")?;
            for i in 0..n {
                let (date, brigade, hours, qty) = row(i);
                stmt.execute(rusqlite::params![
                    ceiling_key(i),
                    date,
                    brigade,
                    hours,
                    qty,
                    1_765_535_400_000_000i64 + i as i64
                ])
                .context("upserting a row")?;
                if i % WRITE_CHUNK == 0 {
                    progress.inc(WRITE_CHUNK as u64);
                }
            }
        }
        tx.commit().context("committing the upsert")
    })?;
    Ok(took)
}

/// Plain writes to the untracked table, to compare capture with.
pub struct PlainWrites {
    /// `n` inserts, in chunks of [`WRITE_CHUNK`] per transaction.
    pub insert: Duration,
    /// `n` updates of one column by primary key, the same chunks.
    pub update: Duration,
}

/// Inserts then updates `n` rows of an untracked table.
pub fn plain_writes(dir: &Path, n: usize, progress: &Progress) -> Result<PlainWrites> {
    progress.phase("plain insert", None);
    let conn = plain_db(&dir.join("plain.db"))?;
    let insert = insert_rows(&conn, n, progress)?;
    progress.phase("plain update", None);
    let update = update_rows(&conn, n, progress)?;
    Ok(PlainWrites { insert, update })
}

/// The application's inserts: `n` rows, [`WRITE_CHUNK`] per transaction,
/// one prepared statement.
pub fn insert_rows(conn: &Connection, n: usize, progress: &Progress) -> Result<Duration> {
    chunked(conn, n, progress, |conn, range| {
        let mut stmt = conn
            .prepare_cached(
                "INSERT INTO daily_report(date, brigade, hours, qty) VALUES (?1, ?2, ?3, ?4)",
            )
            .context("preparing the insert")?;
        for i in range {
            let (date, brigade, hours, qty) = row(i);
            stmt.execute(rusqlite::params![date, brigade, hours, qty])
                .context("inserting a row")?;
        }
        Ok(())
    })
}

/// The application's updates: one column of each of `n` rows, by primary
/// key, `updated_at` left to syncplan.
pub fn update_rows(conn: &Connection, n: usize, progress: &Progress) -> Result<Duration> {
    chunked(conn, n, progress, |conn, range| {
        let mut stmt = conn
            .prepare_cached("UPDATE daily_report SET hours = hours + 1 WHERE id = ?1")
            .context("preparing the update")?;
        for i in range {
            stmt.execute([i as i64 + 1]).context("updating a row")?;
        }
        Ok(())
    })
}

fn chunked(
    conn: &Connection,
    n: usize,
    progress: &Progress,
    mut body: impl FnMut(&Connection, std::ops::Range<usize>) -> Result<()>,
) -> Result<Duration> {
    let ((), took) = timed(|| {
        for start in (0..n).step_by(WRITE_CHUNK) {
            let end = (start + WRITE_CHUNK).min(n);
            let tx = conn.unchecked_transaction().context("starting a write")?;
            body(&tx, start..end)?;
            tx.commit().context("committing a write")?;
            progress.inc((end - start) as u64);
        }
        Ok(())
    })?;
    Ok(took)
}

/// A SQLite store at `path` with the application's table, tracked
/// (`synchronous = FULL`, the default), and the registry for it.
pub fn tracked_store(path: &Path) -> Result<(SqliteStore, EntityRegistry)> {
    let mut store = SqliteStore::open(path, SqliteOptions::default())
        .with_context(|| format!("opening {}", path.display()))?;
    store
        .connection()
        .execute_batch(APP_SCHEMA)
        .context("creating the application table")?;
    let ty = store
        .track_table(
            "daily_report",
            TrackOptions::new().entity_type_name("DailyReport"),
        )
        .context("tracking the application table")?;
    Ok((store, EntityRegistry::new().with(ty)))
}

/// An engine on a fresh tracked store, with `peers` registered.
pub fn engine(
    path: &Path,
    info: NodeInfo,
    seed: u64,
    peers: &[NodeInfo],
) -> Result<Engine<SqliteStore>> {
    let (store, registry) = tracked_store(path)?;
    let mut engine = Engine::new(store, registry, EngineConfig::default().seed(seed), info)
        .context("starting an engine")?;
    for peer in peers {
        engine
            .register_peer(peer.clone())
            .context("registering a peer")?;
    }
    Ok(engine)
}
