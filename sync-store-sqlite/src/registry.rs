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

/// Moves the capture log into the registry (see the module docs). Returns
/// whether there was anything to fold.
pub(crate) fn fold(conn: &Connection) -> rusqlite::Result<bool> {
    let first: Option<i64> = conn
        .prepare_cached("SELECT min(id) FROM _sync_capture")?
        .query_row([], |r| r.get(0))?;
    let Some(first) = first else {
        return Ok(false);
    };
    let base = last_seq_raw(conn)? - first + 1;
    conn.prepare_cached(
        "INSERT INTO _sync_changes(type_id, uuid, seq, created_seq, source, origin, deleted,
             deleted_at, doc)
         SELECT type_id, unhex(replace(key, '-', '')), ?1 + id, ?1 + id, NULL, NULL, deleted,
             deleted_at, NULL
         FROM _sync_capture WHERE true ORDER BY id
         ON CONFLICT(type_id, uuid) DO UPDATE SET
             seq = excluded.seq, source = NULL, origin = NULL, deleted = excluded.deleted,
             deleted_at = excluded.deleted_at, stored_at = NULL, doc = NULL",
    )?
    .execute([base])?;
    conn.prepare_cached("DELETE FROM _sync_capture")?
        .execute([])?;
    Ok(true)
}

/// Drops what the store's own writes to tracked tables appended to the
/// capture log (they are registered directly, with their real source).
pub(crate) fn drop_echoes(conn: &Connection) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM _sync_capture")?
        .execute([])
        .map(drop)
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
