//! The change registry, `_sync_changes`: one row per entity with the local
//! sequence of its latest change, the sequence at which it was first stored,
//! the node it came from and the node that wrote it.
//!
//! Local writes to tracked tables reach it in two steps. The triggers append
//! only the changed row's sync key to `_sync_capture` (the cheapest write
//! SQLite can do: an append to a rowid table). At the start of every store
//! transaction, [`fold`] moves that log into the registry in capture order:
//! each key gets the next sequence, repeated writes to one row coalesce into
//! one entry with the latest sequence, and the source is this node (stored as
//! NULL). The engine therefore always sees every committed local write, with
//! sequences that are strictly increasing and O(1) to register whatever the
//! number of peers.

use rusqlite::{Connection, OptionalExtension, params};
use sync_core::{NodeId, PendingQuery, StoreError, Uuid};

use crate::sql::{bound, n, opt_node_at, read_error, u64_at, uuid_at};
use crate::table::quote;

/// One registry row.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Meta {
    /// Sequence of the latest change.
    pub seq: u64,
    /// Sequence at which the entity was first stored.
    pub created_seq: u64,
    /// Where the latest version came from (`None`: this node).
    pub source: Option<NodeId>,
    /// Who wrote it (`None`: this node).
    pub origin: Option<NodeId>,
    /// It is a tombstone.
    pub deleted: bool,
    /// For a row deleted with SQL `DELETE`: when (microseconds).
    pub deleted_at: Option<i64>,
    /// When the version was stored here (microseconds; `None` for a captured
    /// local write: the version's own `updated_at`, the time of the write).
    pub stored_at: Option<i64>,
    /// The stored document (see [`Doc`]), if any.
    pub doc: Option<Vec<u8>>,
    /// The version's clock ([`sync_core::VersionVector::to_bytes`]), as the
    /// engine stored it. A write captured from SQL (`origin` NULL) keeps the
    /// clock of the version it replaced: its own entry, this node's at the
    /// row's `updated_at`, is added when the row is read, so plain-SQL edits
    /// carry their history like the engine's own. `None` on rows from before
    /// clocks: they include only their own write.
    pub clock: Option<Vec<u8>>,
}

/// A registry row with its key.
pub(crate) struct Entry {
    /// Internal type id.
    pub type_id: i64,
    /// The sync key.
    pub id: Uuid,
    /// The row.
    pub meta: Meta,
}

const COLUMNS: &str =
    "type_id, uuid, seq, created_seq, source, origin, deleted, deleted_at, stored_at, doc, clock";

fn entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<Entry> {
    Ok(Entry {
        type_id: r.get(0)?,
        id: uuid_at(r, 1)?,
        meta: Meta {
            seq: u64_at(r, 2)?,
            created_seq: u64_at(r, 3)?,
            source: opt_node_at(r, 4)?,
            origin: opt_node_at(r, 5)?,
            deleted: r.get(6)?,
            deleted_at: r.get(7)?,
            stored_at: r.get(8)?,
            doc: r.get(9)?,
            clock: r.get(10)?,
        },
    })
}

/// A tracked table as the fold needs it: type id, table and key column.
pub(crate) type Logged<'a> = (i64, &'a str, &'a str);

/// Settles the "check" entries (`deleted = 2`) the `REPLACE` triggers
/// logged: a row still there was not replaced (the entry is dropped), a
/// row gone was removed (the entry becomes a deletion).
fn settle_checks(conn: &Connection, tables: &[Logged<'_>]) -> rusqlite::Result<()> {
    let any: bool = conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM _sync_capture WHERE deleted = 2)")?
        .query_row([], |r| r.get(0))?;
    if !any {
        return Ok(());
    }
    for (type_id, table, key) in tables {
        conn.prepare_cached(&format!(
            "DELETE FROM _sync_capture WHERE deleted = 2 AND type_id = ?1
               AND EXISTS (SELECT 1 FROM {t} WHERE {k} = _sync_capture.key)",
            t = quote(table),
            k = quote(key),
        ))?
        .execute([type_id])?;
    }
    conn.prepare_cached("UPDATE _sync_capture SET deleted = 1 WHERE deleted = 2")?
        .execute([])
        .map(drop)
}

/// Moves the capture log into the registry (see the module docs). Returns
/// whether there was anything to fold.
pub(crate) fn fold(conn: &Connection, tables: &[Logged<'_>]) -> rusqlite::Result<bool> {
    let first: Option<i64> = conn
        .prepare_cached("SELECT min(id) FROM _sync_capture")?
        .query_row([], |r| r.get(0))?;
    let Some(first) = first else {
        return Ok(false);
    };
    settle_checks(conn, tables)?;
    let base = last_seq_raw(conn)? - first + 1;
    conn.prepare_cached(
        "INSERT INTO _sync_changes(type_id, uuid, seq, created_seq, source, origin, deleted,
             deleted_at, doc)
         SELECT type_id, unhex(replace(key, '-', '')), ?1 + id, ?1 + id, NULL, NULL, deleted,
             deleted_at, NULL
         FROM _sync_capture WHERE true ORDER BY id
         ON CONFLICT(type_id, uuid) DO UPDATE SET
             seq = excluded.seq, source = NULL, origin = NULL, deleted = excluded.deleted,
             deleted_at = excluded.deleted_at, stored_at = NULL,
             doc = CASE WHEN substr(doc, 1, 1) = x'01' THEN doc END",
    )?
    .execute([base])?;
    conn.prepare_cached("DELETE FROM _sync_capture")?
        .execute([])?;
    Ok(true)
}

/// Sorts out what the triggers logged while the store itself wrote tracked
/// tables, before commit. The store's own writes (entities registered in
/// this transaction, above sequence `start`) are registered already, with
/// their real source: their echoes are dropped. Everything else is a side
/// effect in the application's schema (a foreign key cascade set off by a
/// deletion from a peer, a `REPLACE` conflict clause, the application's own
/// triggers) and is folded in as a local change, so every node hears of it;
/// so is the hard deletion of a row that this transaction wrote live (a
/// cascade from a later deletion in the same packet).
pub(crate) fn settle_echoes(
    conn: &Connection,
    start: u64,
    tables: &[Logged<'_>],
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "DELETE FROM _sync_capture WHERE EXISTS (
             SELECT 1 FROM _sync_changes r
             WHERE r.type_id = _sync_capture.type_id
               AND r.uuid = unhex(replace(_sync_capture.key, '-', ''))
               AND r.seq > ?1
               AND (_sync_capture.deleted_at IS NULL OR r.deleted))",
    )?
    .execute([bound(start)])?;
    fold(conn, tables).map(drop)
}

/// Marks a registry row whose table row is gone as deleted; one without a
/// captured deletion gets a deletion time (now, and after the version it
/// replaces), so that it reads, and travels, as a tombstone. Returns that
/// time.
pub(crate) fn heal_missing_row(conn: &Connection, type_id: i64, id: Uuid) -> rusqlite::Result<i64> {
    conn.prepare_cached(&format!(
        "UPDATE _sync_changes SET deleted = 1,
             deleted_at = coalesce(deleted_at, max({now}, coalesce(stored_at, 0) + 1))
         WHERE type_id = ?1 AND uuid = ?2 AND (deleted_at IS NULL OR NOT deleted)",
        now = crate::tracking::NOW_MICROS_SQL
    ))?
    .execute(params![type_id, id.as_bytes()])?;
    conn.prepare_cached(
        "SELECT coalesce(deleted_at, 0) FROM _sync_changes WHERE type_id = ?1 AND uuid = ?2",
    )?
    .query_row(params![type_id, id.as_bytes()], |r| r.get(0))
}

fn last_seq_raw(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT coalesce(max(seq), 0) FROM _sync_changes")?
        .query_row([], |r| r.get(0))
}

/// The highest sequence assigned so far.
pub(crate) fn last_seq(conn: &Connection) -> Result<u64, StoreError> {
    last_seq_raw(conn)
        .map(|v| v as u64)
        .map_err(read_error("reading the last change sequence"))
}

/// The registry row of one entity.
pub(crate) fn get(conn: &Connection, type_id: i64, id: Uuid) -> Result<Option<Meta>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM _sync_changes WHERE type_id = ?1 AND uuid = ?2");
    conn.prepare_cached(&sql)
        .and_then(|mut s| {
            s.query_row(params![type_id, id.as_bytes()], entry)
                .optional()
        })
        .map(|e| e.map(|e| e.meta))
        .map_err(read_error("reading the change registry"))
}

/// Writes one registry row.
pub(crate) fn put(conn: &Connection, type_id: i64, id: Uuid, meta: &Meta) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO _sync_changes(type_id, uuid, seq, created_seq, source, origin,
             deleted, deleted_at, stored_at, doc, clock)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        type_id,
        id.as_bytes(),
        n(meta.seq),
        n(meta.created_seq),
        meta.source.map(|s| s.as_bytes().to_vec()),
        meta.origin.map(|s| s.as_bytes().to_vec()),
        meta.deleted,
        meta.deleted_at,
        meta.stored_at,
        meta.doc,
        meta.clock
    ])
    .map(drop)
}

const PENDING_WHERE: &str = "seq > ?1 AND (coalesce(source, ?4) <> ?2 OR seq <= ?3)";

/// Registry rows matching `query`, ascending by sequence, at most its limit.
/// `local` stands for the NULL source (this node).
pub(crate) fn pending(
    conn: &Connection,
    query: &PendingQuery,
    local: NodeId,
) -> Result<Vec<Entry>, StoreError> {
    let sql =
        format!("SELECT {COLUMNS} FROM _sync_changes WHERE {PENDING_WHERE} ORDER BY seq LIMIT ?5");
    let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
    conn.prepare_cached(&sql)
        .and_then(|mut s| {
            s.query_map(
                params![
                    bound(query.after_seq),
                    query.peer.as_bytes(),
                    bound(query.resend_own_upto),
                    local.as_bytes(),
                    limit
                ],
                entry,
            )?
            .collect::<Result<Vec<_>, _>>()
        })
        .map_err(read_error("reading pending changes"))
}

/// How many registry rows match `query`, ignoring its limit.
pub(crate) fn count_pending(
    conn: &Connection,
    query: &PendingQuery,
    local: NodeId,
) -> Result<u64, StoreError> {
    let sql = format!("SELECT count(*) FROM _sync_changes WHERE {PENDING_WHERE}");
    conn.prepare_cached(&sql)
        .and_then(|mut s| {
            s.query_row(
                params![
                    bound(query.after_seq),
                    query.peer.as_bytes(),
                    bound(query.resend_own_upto),
                    local.as_bytes()
                ],
                |r| r.get::<_, i64>(0),
            )
        })
        .map(|c| c as u64)
        .map_err(read_error("counting pending changes"))
}

/// How many registry rows match `query` with a sequence of at most
/// `upto_seq`: a range of the sequence index, so the cost follows the rows in
/// the range, not the registry.
pub(crate) fn count_pending_upto(
    conn: &Connection,
    query: &PendingQuery,
    local: NodeId,
    upto_seq: u64,
) -> Result<u64, StoreError> {
    if upto_seq <= query.after_seq {
        return Ok(0);
    }
    let sql = format!("SELECT count(*) FROM _sync_changes WHERE {PENDING_WHERE} AND seq <= ?5");
    conn.prepare_cached(&sql)
        .and_then(|mut s| {
            s.query_row(
                params![
                    bound(query.after_seq),
                    query.peer.as_bytes(),
                    bound(query.resend_own_upto),
                    local.as_bytes(),
                    bound(upto_seq)
                ],
                |r| r.get::<_, i64>(0),
            )
        })
        .map(|c| c as u64)
        .map_err(read_error("counting pending changes"))
}

/// Registry rows of one type with ids above `after`, ascending by id.
pub(crate) fn by_type(
    conn: &Connection,
    type_id: i64,
    after: Option<Uuid>,
    limit: usize,
) -> Result<Vec<Entry>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM _sync_changes WHERE type_id = ?1 AND uuid > ?2 ORDER BY uuid LIMIT ?3"
    );
    let after: Vec<u8> = after.map_or_else(Vec::new, |a| a.as_bytes().to_vec());
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    conn.prepare_cached(&sql)
        .and_then(|mut s| {
            s.query_map(params![type_id, after, limit], entry)?
                .collect()
        })
        .map_err(read_error("listing entities"))
}
