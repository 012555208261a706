//! Per-field stamps of row-backed types merged per field
//! ([`sync_core::ConflictStrategy::FieldMerge`]).
//!
//! A version the store stores (the engine's local write, an incoming
//! version, a merge) carries its field stamps; the row cannot hold them, so
//! `_sync_field_stamps` keeps, per field, a digest of the value of the last
//! version recorded and the write that last changed it (its [`Dot`]). A
//! plain-SQL `UPDATE` leaves that record as it was (the triggers only log
//! the key). When the row is read as a version, every field whose value
//! still has the recorded digest keeps the recorded dot, and every field
//! whose value differs counts as changed by the captured write itself (this
//! node's entry at the row's `updated_at`, see `txn::clock_of`); that
//! version is then recorded in place of the old one. So two nodes that
//! `UPDATE` different columns of one row offline produce versions that merge
//! column by column, and a column one write changed keeps that write's dot
//! through later writes of other columns. Writes made between two reads of
//! the row are one write, as the change registry coalesces them.

use rusqlite::{Connection, OptionalExtension, params};
use sync_core::conflict::fields;
use sync_core::{Dot, Entity, EntityType, FieldStamps, StoreError, Uuid};

use crate::blob::{self, Baseline};

/// Records what `entity` (just stored) holds of each field.
pub(crate) fn save(
    conn: &Connection,
    type_id: i64,
    ty: &EntityType,
    entity: &Entity,
) -> rusqlite::Result<()> {
    put(conn, type_id, entity.key.id, &baseline_of(ty, entity))
}

/// Per field of `entity`: the digest of its value and its dot.
fn baseline_of(ty: &EntityType, entity: &Entity) -> Baseline {
    let own = fields::own_dot(ty, entity);
    fields::stamped_field_names(ty, entity)
        .into_iter()
        .map(|name| {
            let digest = fields::value_digest(entity.fields.get(&name));
            let dot = entity.field_stamps.get(&name).copied().or(own);
            (name, digest, dot)
        })
        .collect()
}

fn put(conn: &Connection, type_id: i64, id: Uuid, baseline: &Baseline) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO _sync_field_stamps(type_id, uuid, fields) VALUES (?1, ?2, ?3)
         ON CONFLICT(type_id, uuid) DO UPDATE SET fields = excluded.fields",
    )?
    .execute(params![
        type_id,
        id.as_bytes().as_slice(),
        blob::encode_baseline(baseline)
    ])
    .map(drop)
}

fn load(conn: &Connection, type_id: i64, id: Uuid) -> Result<Option<Baseline>, StoreError> {
    let bytes: Option<Vec<u8>> = conn
        .prepare_cached("SELECT fields FROM _sync_field_stamps WHERE type_id = ?1 AND uuid = ?2")
        .and_then(|mut s| {
            s.query_row(params![type_id, id.as_bytes().as_slice()], |r| r.get(0))
                .optional()
        })
        .map_err(|e| StoreError::backend("reading field stamps", e))?;
    bytes.as_deref().map(blob::decode_baseline).transpose()
}

/// The field stamps of the row-backed version `entity` (its clock already
/// complete). `captured`: the row was last written with SQL, so fields are
/// compared with the recorded digests, and the captured version is then
/// recorded in their place (so the next plain-SQL write is compared with
/// it, not with an older version; the record is kept like the fold of the
/// capture log, even by a transaction that writes nothing else). Otherwise
/// the version is the one the store stored and keeps its recorded dots.
pub(crate) fn of_row(
    conn: &Connection,
    type_id: i64,
    ty: &EntityType,
    entity: &Entity,
    captured: bool,
) -> Result<FieldStamps, StoreError> {
    if entity.is_deleted || !fields::keeps_stamps(ty) {
        return Ok(FieldStamps::new());
    }
    let baseline = load(conn, type_id, entity.key.id)?;
    let own = fields::own_dot(ty, entity);
    let kept = |dot: Option<Dot>| dot.filter(|d| Some(*d) != own);
    // No record: a row first written with SQL, every field its own write's.
    let stamps: FieldStamps = baseline
        .iter()
        .flatten()
        .filter(|(name, digest, _)| {
            !captured || *digest == fields::value_digest(entity.fields.get(name))
        })
        .filter_map(|(name, _, dot)| kept(*dot).map(|dot| (name.clone(), dot)))
        .collect();
    if captured {
        let stamped = Entity {
            field_stamps: stamps.clone(),
            ..entity.clone()
        };
        let now = baseline_of(ty, &stamped);
        if baseline.as_ref() != Some(&now) {
            put(conn, type_id, entity.key.id, &now)
                .map_err(|e| StoreError::backend("recording field stamps", e))?;
        }
    }
    Ok(stamps)
}
