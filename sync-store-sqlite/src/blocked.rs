//! Versions whose row could not be written (whole) yet: another row held
//! one of its UNIQUE (or primary-key) values, or a referenced parent had no
//! row yet (records that reference each other: the reference is written
//! NULL and filled in here, or a row whose reference cannot be NULL waits
//! for its parent's). Several writes to one row travel as
//! its latest state only, so a packet may bring a row's new value before
//! the row that held it lets go: the store keeps such a version whole in
//! `_sync_changes` (reads see it) and notes it in `_sync_blocked`; before
//! every commit that applied changes it writes the noted rows again, until
//! nothing more moves. A version that the transaction wrote and that is
//! still blocked then (the same UNIQUE value created on two nodes; two rows
//! that swapped values through a third, intermediate one) is refused
//! ([`sync_core::StoreError::Refused`]): the engine keeps it as a rejected
//! change and applies the rest without it.

use rusqlite::{Connection, params};
use sync_core::{StoreError, Uuid};

use crate::Types;
use crate::registry;
use crate::rows::{self, Written};
use crate::sql::uuid_at;
use crate::txn::{Doc, decode_doc, encode_doc};

/// Notes that the row of `id` waits for a UNIQUE value.
pub(crate) fn note(conn: &Connection, type_id: i64, id: Uuid) -> rusqlite::Result<()> {
    conn.prepare_cached("INSERT OR IGNORE INTO _sync_blocked(type_id, uuid) VALUES (?1, ?2)")?
        .execute(params![type_id, id.as_bytes()])
        .map(drop)
}

/// Writes the noted rows again, round after round while any succeeds.
pub(crate) fn retry(conn: &Connection, types: &Types) -> Result<(), StoreError> {
    loop {
        let noted = noted(conn)?;
        if noted.is_empty() {
            return Ok(());
        }
        let mut moved = false;
        for (type_id, id) in noted {
            moved |= retry_one(conn, types, type_id, id)?;
        }
        if !moved {
            return Ok(());
        }
    }
}

/// Whether the row of `id` still waits for a UNIQUE value.
pub(crate) fn is_noted(conn: &Connection, type_id: i64, id: Uuid) -> Result<bool, StoreError> {
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM _sync_blocked WHERE type_id = ?1 AND uuid = ?2)",
    )
    .and_then(|mut s| s.query_row(params![type_id, id.as_bytes()], |r| r.get(0)))
    .map_err(|e| StoreError::backend("reading rows waiting for a UNIQUE value", e))
}

fn noted(conn: &Connection) -> Result<Vec<(i64, Uuid)>, StoreError> {
    conn.prepare_cached("SELECT type_id, uuid FROM _sync_blocked ORDER BY type_id, uuid")
        .and_then(|mut s| {
            s.query_map([], |r| Ok((r.get(0)?, uuid_at(r, 1)?)))?
                .collect()
        })
        .map_err(|e| StoreError::backend("reading rows waiting for a UNIQUE value", e))
}

/// Tries one noted row; whether it is settled (written, or no longer a
/// version waiting for its row).
fn retry_one(conn: &Connection, types: &Types, type_id: i64, id: Uuid) -> Result<bool, StoreError> {
    let backend = |e| StoreError::backend("writing a row that waited for a UNIQUE value", e);
    let waiting = match (registry::get(conn, type_id, id)?, types.by_id(type_id)) {
        (Some(meta), Ok(ty)) => match (meta.doc.as_deref().map(decode_doc), ty.table) {
            (Some(Ok(Doc::Whole(entity))), Some(table)) if !entity.is_deleted => {
                Some((entity, table))
            }
            _ => None,
        },
        _ => None,
    };
    let written = match waiting {
        None => None,
        Some((entity, table)) => match rows::write_live(conn, &table, &entity, true)? {
            Written::Blocked { .. } | Written::Deferred => return Ok(false),
            // Kept whole, as any version whose parent has no row here.
            Written::ParentRowMissing => None,
            Written::Row { extras } => Some(extras),
        },
    };
    if let Some(extras) = written {
        let doc = (!extras.is_empty()).then(|| encode_doc(&Doc::Extras(extras)));
        conn.prepare_cached("UPDATE _sync_changes SET doc = ?3 WHERE type_id = ?1 AND uuid = ?2")
            .and_then(|mut s| s.execute(params![type_id, id.as_bytes(), doc]))
            .map_err(backend)?;
    }
    conn.prepare_cached("DELETE FROM _sync_blocked WHERE type_id = ?1 AND uuid = ?2")
        .and_then(|mut s| s.execute(params![type_id, id.as_bytes()]))
        .map_err(backend)?;
    Ok(true)
}
