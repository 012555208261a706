//! What conflicts and refusals leave behind: the object version history,
//! the audit log, open manual conflicts, parked children and security
//! events. Entities inside them are kept whole in the binary encoding of
//! [`crate::blob`].

use rusqlite::{Connection, OptionalExtension, params};
use sync_core::{
    AuditRecord, ConflictSide, EntityKey, NodeId, OpenConflict, ParkedChange, RejectedBy,
    RejectedChange, SecurityEvent, SecurityKind, StoreError, Timestamp, Uuid, VersionRecord,
};

use crate::blob::{decode_entity, encode_entity};
use crate::sql::{node_at, opt_node_at, read_error, time_at, uuid_at};

/// Decodes an entity blob read in a row closure.
fn entity_at(
    r: &rusqlite::Row<'_>,
    i: usize,
) -> rusqlite::Result<Result<sync_core::Entity, StoreError>> {
    let bytes: Vec<u8> = r.get(i)?;
    Ok(decode_entity(&bytes))
}

pub(crate) fn add_version(conn: &Connection, v: &VersionRecord) -> rusqlite::Result<()> {
    let VersionRecord {
        id,
        key,
        source_node,
        arrival_time,
        data,
        resolution,
    } = v;
    conn.prepare_cached(
        "INSERT INTO _sync_versions(id, entity_type, entity_uuid, source_node_id, arrival_time,
             serialized_data, conflict_resolution) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        id.as_bytes(),
        key.entity_type,
        key.id.as_bytes(),
        source_node.as_bytes(),
        arrival_time.as_micros(),
        encode_entity(data),
        resolution
    ])
    .map(drop)
}

pub(crate) fn versions(
    conn: &Connection,
    key: &EntityKey,
) -> Result<Vec<VersionRecord>, StoreError> {
    let rows = conn
        .prepare_cached(
            "SELECT id, source_node_id, arrival_time, serialized_data, conflict_resolution
             FROM _sync_versions WHERE entity_type = ?1 AND entity_uuid = ?2 ORDER BY position",
        )
        .and_then(|mut s| {
            s.query_map(params![key.entity_type, key.id.as_bytes()], |r| {
                Ok((
                    uuid_at(r, 0)?,
                    node_at(r, 1)?,
                    time_at(r, 2)?,
                    entity_at(r, 3)?,
                    r.get::<_, String>(4)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()
        })
        .map_err(read_error("reading the version history"))?;
    rows.into_iter()
        .map(|(id, source_node, arrival_time, data, resolution)| {
            Ok(VersionRecord {
                id,
                key: key.clone(),
                source_node,
                arrival_time,
                data: data?,
                resolution,
            })
        })
        .collect()
}

pub(crate) fn add_audit(conn: &Connection, a: &AuditRecord) -> rusqlite::Result<()> {
    let AuditRecord {
        id,
        at,
        key,
        peer,
        strategy,
        winner,
        local_origin,
        local_updated_at,
        incoming_origin,
        incoming_updated_at,
        digests,
        detail,
    } = a;
    conn.prepare_cached(
        "INSERT INTO _sync_audit(id, at, entity_type, entity_uuid, peer, strategy, winner,
             local_origin, local_updated_at, incoming_origin, incoming_updated_at, detail,
             local_digest, incoming_digest)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    )?
    .execute(params![
        id.as_bytes(),
        at.as_micros(),
        key.entity_type,
        key.id.as_bytes(),
        peer.as_bytes(),
        strategy,
        side_name(*winner),
        local_origin.as_bytes(),
        local_updated_at.as_micros(),
        incoming_origin.as_bytes(),
        incoming_updated_at.as_micros(),
        detail,
        digests[0].as_slice(),
        digests[1].as_slice()
    ])
    .map(drop)
}

pub(crate) fn audit_log(
    conn: &Connection,
    offset: usize,
    limit: usize,
) -> Result<Vec<AuditRecord>, StoreError> {
    conn.prepare_cached(
        "SELECT id, at, entity_type, entity_uuid, peer, strategy, winner, local_origin,
             local_updated_at, incoming_origin, incoming_updated_at, detail, local_digest,
             incoming_digest
         FROM _sync_audit ORDER BY position LIMIT ?1 OFFSET ?2",
    )
    .and_then(|mut s| {
        s.query_map(params![clamp(limit), clamp(offset)], |r| {
            Ok(AuditRecord {
                id: uuid_at(r, 0)?,
                at: time_at(r, 1)?,
                key: EntityKey::new(r.get::<_, String>(2)?, uuid_at(r, 3)?),
                peer: node_at(r, 4)?,
                strategy: r.get(5)?,
                winner: side_from(&r.get::<_, String>(6)?),
                local_origin: node_at(r, 7)?,
                local_updated_at: time_at(r, 8)?,
                incoming_origin: node_at(r, 9)?,
                incoming_updated_at: time_at(r, 10)?,
                detail: r.get(11)?,
                digests: [digest_at(r, 12)?, digest_at(r, 13)?],
            })
        })?
        .collect()
    })
    .map_err(read_error("reading the audit log"))
}

/// A 32-byte digest column; NULL (records from before digests) or any other
/// length reads as zeros.
fn digest_at(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<[u8; 32]> {
    let bytes: Option<Vec<u8>> = r.get(i)?;
    Ok(bytes
        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
        .unwrap_or([0; 32]))
}

pub(crate) fn put_open_conflict(conn: &Connection, c: &OpenConflict) -> rusqlite::Result<()> {
    let OpenConflict {
        id,
        key,
        current,
        incoming,
        from,
        arrived_at,
    } = c;
    conn.prepare_cached(
        "INSERT INTO _sync_conflicts(id, entity_type, entity_uuid, current, incoming, from_node,
             arrived_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        id.as_bytes(),
        key.entity_type,
        key.id.as_bytes(),
        encode_entity(current),
        encode_entity(incoming),
        from.as_bytes(),
        arrived_at.as_micros()
    ])
    .map(drop)
}

type ConflictRow = (i64, OpenConflictParts);
type OpenConflictParts = (
    Uuid,
    EntityKey,
    Result<sync_core::Entity, StoreError>,
    Result<sync_core::Entity, StoreError>,
    sync_core::NodeId,
    sync_core::Timestamp,
);

fn conflicts_where(
    conn: &Connection,
    filter: &str,
    id: Option<Uuid>,
) -> Result<Vec<ConflictRow>, StoreError> {
    let sql = format!(
        "SELECT position, id, entity_type, entity_uuid, current, incoming, from_node, arrived_at
         FROM _sync_conflicts {filter} ORDER BY position"
    );
    conn.prepare_cached(&sql)
        .and_then(|mut s| {
            let map = |r: &rusqlite::Row<'_>| {
                Ok((
                    r.get::<_, i64>(0)?,
                    (
                        uuid_at(r, 1)?,
                        EntityKey::new(r.get::<_, String>(2)?, uuid_at(r, 3)?),
                        entity_at(r, 4)?,
                        entity_at(r, 5)?,
                        node_at(r, 6)?,
                        time_at(r, 7)?,
                    ),
                ))
            };
            match id {
                Some(id) => s.query_map([id.as_bytes()], map)?.collect(),
                None => s.query_map([], map)?.collect(),
            }
        })
        .map_err(read_error("reading open conflicts"))
}

fn conflict_from(parts: OpenConflictParts) -> Result<OpenConflict, StoreError> {
    let (id, key, current, incoming, from, arrived_at) = parts;
    Ok(OpenConflict {
        id,
        key,
        current: current?,
        incoming: incoming?,
        from,
        arrived_at,
    })
}

pub(crate) fn open_conflicts(conn: &Connection) -> Result<Vec<OpenConflict>, StoreError> {
    conflicts_where(conn, "", None)?
        .into_iter()
        .map(|(_, parts)| conflict_from(parts))
        .collect()
}

/// The oldest open conflict with this id and its row position.
pub(crate) fn find_open_conflict(
    conn: &Connection,
    id: Uuid,
) -> Result<Option<(i64, OpenConflict)>, StoreError> {
    let Some((position, parts)) = conflicts_where(conn, "WHERE id = ?1", Some(id))?
        .into_iter()
        .next()
    else {
        return Ok(None);
    };
    Ok(Some((position, conflict_from(parts)?)))
}

pub(crate) fn delete_open_conflict(conn: &Connection, position: i64) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM _sync_conflicts WHERE position = ?1")?
        .execute([position])
        .map(drop)
}

pub(crate) fn park(conn: &Connection, p: &ParkedChange) -> rusqlite::Result<()> {
    let ParkedChange {
        entity,
        from,
        waiting_for,
        arrived_at,
    } = p;
    conn.prepare_cached(
        "INSERT OR REPLACE INTO _sync_parked(entity_type, entity_uuid, entity, from_node,
             waiting_type, waiting_uuid, arrived_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        entity.key.entity_type,
        entity.key.id.as_bytes(),
        encode_entity(entity),
        from.as_bytes(),
        waiting_for.entity_type,
        waiting_for.id.as_bytes(),
        arrived_at.as_micros()
    ])
    .map(drop)
}

fn parked_where(
    conn: &Connection,
    filter: &str,
    parent: Option<&EntityKey>,
) -> Result<Vec<ParkedChange>, StoreError> {
    let sql = format!(
        "SELECT entity, from_node, waiting_type, waiting_uuid, arrived_at FROM _sync_parked
         {filter} ORDER BY entity_type, entity_uuid"
    );
    let rows = conn
        .prepare_cached(&sql)
        .and_then(|mut s| {
            let map = |r: &rusqlite::Row<'_>| {
                Ok((
                    entity_at(r, 0)?,
                    node_at(r, 1)?,
                    EntityKey::new(r.get::<_, String>(2)?, uuid_at(r, 3)?),
                    time_at(r, 4)?,
                ))
            };
            match parent {
                Some(p) => s
                    .query_map(params![p.entity_type, p.id.as_bytes()], map)?
                    .collect::<Result<Vec<_>, _>>(),
                None => s.query_map([], map)?.collect::<Result<Vec<_>, _>>(),
            }
        })
        .map_err(read_error("reading parked changes"))?;
    rows.into_iter()
        .map(|(entity, from, waiting_for, arrived_at)| {
            Ok(ParkedChange {
                entity: entity?,
                from,
                waiting_for,
                arrived_at,
            })
        })
        .collect()
}

pub(crate) fn parked(conn: &Connection) -> Result<Vec<ParkedChange>, StoreError> {
    parked_where(conn, "", None)
}

pub(crate) fn parked_change(
    conn: &Connection,
    child: &EntityKey,
) -> Result<Option<ParkedChange>, StoreError> {
    parked_where(
        conn,
        "WHERE entity_type = ?1 AND entity_uuid = ?2",
        Some(child),
    )
    .map(|found| found.into_iter().next())
}

pub(crate) fn parked_for(
    conn: &Connection,
    parent: &EntityKey,
) -> Result<Vec<ParkedChange>, StoreError> {
    parked_where(
        conn,
        "WHERE waiting_type = ?1 AND waiting_uuid = ?2",
        Some(parent),
    )
}

pub(crate) fn delete_parked_for(conn: &Connection, parent: &EntityKey) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM _sync_parked WHERE waiting_type = ?1 AND waiting_uuid = ?2")?
        .execute(params![parent.entity_type, parent.id.as_bytes()])
        .map(drop)
}

/// Removes the change parked for `child`; whether there was one.
pub(crate) fn unpark(conn: &Connection, child: &EntityKey) -> rusqlite::Result<bool> {
    conn.prepare_cached("DELETE FROM _sync_parked WHERE entity_type = ?1 AND entity_uuid = ?2")?
        .execute(params![child.entity_type, child.id.as_bytes()])
        .map(|n| n > 0)
}

/// Whether anything is parked at all (a cheap check before the delete).
pub(crate) fn any_parked(conn: &Connection) -> Result<bool, StoreError> {
    conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM _sync_parked)")
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(read_error("reading parked changes"))
}

pub(crate) fn add_security_event(conn: &Connection, e: &SecurityEvent) -> rusqlite::Result<()> {
    let SecurityEvent {
        at,
        peer,
        kind,
        detail,
    } = e;
    conn.prepare_cached(
        "INSERT INTO _sync_security(at, peer, kind, detail) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![
        at.as_micros(),
        peer.map(|p| p.as_bytes().to_vec()),
        kind_name(*kind),
        detail
    ])
    .map(drop)
}

pub(crate) fn security_events(conn: &Connection) -> Result<Vec<SecurityEvent>, StoreError> {
    conn.prepare_cached("SELECT at, peer, kind, detail FROM _sync_security ORDER BY position")
        .and_then(|mut s| {
            s.query_map([], |r| {
                Ok(SecurityEvent {
                    at: time_at(r, 0)?,
                    peer: opt_node_at(r, 1)?,
                    kind: kind_from(&r.get::<_, String>(2)?),
                    detail: r.get(3)?,
                })
            })?
            .collect()
        })
        .map_err(read_error("reading security events"))
}

fn clamp(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn side_name(side: ConflictSide) -> &'static str {
    match side {
        ConflictSide::Local => "local",
        ConflictSide::Incoming => "incoming",
        ConflictSide::Merged => "merged",
    }
}

fn side_from(text: &str) -> ConflictSide {
    match text {
        "local" => ConflictSide::Local,
        "incoming" => ConflictSide::Incoming,
        _ => ConflictSide::Merged,
    }
}

const KINDS: [(SecurityKind, &str); 8] = [
    (SecurityKind::UnknownSender, "unknown-sender"),
    (SecurityKind::RevokedSender, "revoked-sender"),
    (SecurityKind::WrongRecipient, "wrong-recipient"),
    (SecurityKind::Corrupt, "corrupt"),
    (SecurityKind::SchemaRejected, "schema-rejected"),
    (SecurityKind::RestoreDetected, "restore-detected"),
    (SecurityKind::AuthFailed, "auth-failed"),
    (SecurityKind::ClockAhead, "clock-ahead"),
];

fn kind_name(kind: SecurityKind) -> &'static str {
    KINDS
        .iter()
        .find(|(k, _)| *k == kind)
        .map_or("other", |(_, name)| name)
}

fn kind_from(text: &str) -> SecurityKind {
    KINDS
        .iter()
        .find(|(_, name)| *name == text)
        .map_or(SecurityKind::Corrupt, |(k, _)| *k)
}

/// Driver metadata lives in `_sync_meta` beside the schema version, under
/// keys with this prefix so that no driver key can touch the store's own.
const DRIVER_META: &str = "driver:";

pub(crate) fn meta(conn: &Connection, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
    conn.prepare_cached("SELECT value FROM _sync_meta WHERE key = ?1")
        .and_then(|mut s| {
            s.query_row([format!("{DRIVER_META}{key}")], |r| r.get(0))
                .optional()
        })
        .map_err(read_error("reading driver metadata"))
}

pub(crate) fn put_meta(conn: &Connection, key: &str, value: Option<&[u8]>) -> rusqlite::Result<()> {
    let key = format!("{DRIVER_META}{key}");
    match value {
        Some(value) => conn
            .prepare_cached("INSERT OR REPLACE INTO _sync_meta(key, value) VALUES (?1, ?2)")?
            .execute(params![key, value]),
        None => conn
            .prepare_cached("DELETE FROM _sync_meta WHERE key = ?1")?
            .execute([key]),
    }
    .map(drop)
}

pub(crate) fn meta_with_prefix(
    conn: &Connection,
    prefix: &str,
) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
    let from = format!("{DRIVER_META}{prefix}");
    conn.prepare_cached("SELECT key, value FROM _sync_meta WHERE key >= ?1 ORDER BY key")
        .and_then(|mut s| {
            let mut found = Vec::new();
            let mut rows = s.query([&from])?;
            while let Some(row) = rows.next()? {
                let key: String = row.get(0)?;
                if !key.starts_with(&from) {
                    break;
                }
                found.push((key[DRIVER_META.len()..].to_owned(), row.get(1)?));
            }
            Ok(found)
        })
        .map_err(read_error("reading driver metadata"))
}

pub(crate) fn put_rejected(conn: &Connection, r: &RejectedChange) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO _sync_rejected(id, entity, peer, by, reason, at, notify, notified_in)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT(id) DO UPDATE SET entity = excluded.entity, peer = excluded.peer,
             by = excluded.by, reason = excluded.reason, at = excluded.at,
             notify = excluded.notify, notified_in = excluded.notified_in",
    )?
    .execute(params![
        r.id.as_bytes(),
        encode_entity(&r.entity),
        r.peer.as_bytes(),
        r.by.as_str(),
        r.reason,
        r.at.as_micros(),
        r.notify.map(|n| n.as_bytes().to_vec()),
        r.notified_in.map(clamp_u64),
    ])
    .map(drop)
}

fn clamp_u64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A `_sync_rejected` row before its entity blob is decoded.
type RejectedRow = (
    Uuid,
    Vec<u8>,
    NodeId,
    String,
    String,
    Timestamp,
    Option<NodeId>,
    Option<i64>,
);

pub(crate) fn rejected(conn: &Connection) -> Result<Vec<RejectedChange>, StoreError> {
    let rows: Vec<RejectedRow> = conn
        .prepare_cached(
            "SELECT id, entity, peer, by, reason, at, notify, notified_in
             FROM _sync_rejected ORDER BY position",
        )
        .and_then(|mut s| {
            s.query_map([], |r| {
                Ok((
                    uuid_at(r, 0)?,
                    r.get(1)?,
                    node_at(r, 2)?,
                    r.get(3)?,
                    r.get(4)?,
                    time_at(r, 5)?,
                    opt_node_at(r, 6)?,
                    r.get(7)?,
                ))
            })?
            .collect()
        })
        .map_err(read_error("reading rejected changes"))?;
    rows.into_iter()
        .map(|(id, entity, peer, by, reason, at, notify, notified_in)| {
            Ok(RejectedChange {
                id,
                entity: decode_entity(&entity)?,
                peer,
                by: RejectedBy::parse(&by).ok_or_else(|| StoreError::Corrupt {
                    detail: format!("rejected change {id} names an unknown side {by:?}"),
                })?,
                reason,
                at,
                notify,
                notified_in: notified_in.and_then(|n| u64::try_from(n).ok()),
            })
        })
        .collect()
}

pub(crate) fn delete_rejected(conn: &Connection, id: Uuid) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM _sync_rejected WHERE id = ?1")?
        .execute([id.as_bytes()])
        .map(drop)
}
