//! Finding the rows an `ON DELETE CASCADE` foreign key will remove with a
//! parent row, so that their last versions can be kept in the version
//! history before a peer's removal of the parent is applied.

use rusqlite::Connection;
use sync_core::{Entity, StoreError, Uuid};

use crate::rows::key_text;
use crate::table::{ForeignKey, TrackedTable, quote};

/// `SELECT` of the sync keys of `child`'s rows whose `column` references the
/// parent row with sync key `?1`.
pub(crate) fn children_sql(child: &TrackedTable, column: &str, fk: &ForeignKey) -> String {
    format!(
        "SELECT c.{ck} FROM {child} c WHERE c.{col} =
             (SELECT p.{pc} FROM {parent} p WHERE p.{pk} = ?1) AND c.{ck} IS NOT NULL",
        ck = quote(&child.key),
        child = quote(&child.table),
        col = quote(column),
        pc = quote(&fk.parent_column),
        parent = quote(&fk.parent_table),
        pk = quote(&fk.parent_key),
    )
}

/// The sync keys [`children_sql`] finds for the parent `parent`.
pub(crate) fn child_keys(
    conn: &Connection,
    sql: &str,
    parent: Uuid,
) -> Result<Vec<Uuid>, StoreError> {
    let texts: Vec<String> = conn
        .prepare_cached(sql)
        .and_then(|mut s| {
            s.query_map([key_text(parent)], |r| r.get(0))?
                .collect::<Result<_, _>>()
        })
        .map_err(|e| StoreError::backend("finding the rows a cascade will remove", e))?;
    texts
        .iter()
        .map(|t| {
            Uuid::parse_str(t).map_err(|_| StoreError::Corrupt {
                detail: format!("a row holds the sync key {t:?}, which is not a UUID"),
            })
        })
        .collect()
}

/// A version-history record id that is the same on every node for the same
/// version.
pub(crate) fn record_id(version: &Entity) -> Uuid {
    let digest = version.content_digest();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid_v8(bytes)
}

fn uuid_v8(mut bytes: [u8; 16]) -> Uuid {
    bytes[6] = (bytes[6] & 0x0f) | 0x80;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    Uuid::from_bytes(bytes)
}
