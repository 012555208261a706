//! The store's own tables (all named `_sync_*`) and their migrations.
//!
//! The internal schema is versioned in `_sync_meta` (key `schema_version`),
//! not in `PRAGMA user_version`, which belongs to the application whose
//! database this is. The migration runs on every open: it creates the tables in
//! an empty database and upgrades older versions step by step, in one
//! transaction. A database written by a newer version of this crate is
//! refused rather than guessed at.
//!
//! How the tables mirror the spec's data model:
//!
//! | spec | here |
//! |---|---|
//! | `sync_nodes` | `_sync_local` (this node) and `_sync_nodes` (peers, with their counters), `_sync_in_flight` (unacknowledged packets), `_sync_sent_digests` (recent packets' digests); view `sync_nodes` |
//! | `sync_changes` | `_sync_changes`: one row per entity with the sequence of its latest change and where it came from; view `sync_changes` answers per node |
//! | `object_version_history` | `_sync_versions` |
//! | audit of resolutions | `_sync_audit` |
//! | open manual conflicts | `_sync_conflicts` |
//! | parked children | `_sync_parked` (and `_sync_blocked`: versions whose row waits for a UNIQUE value to be freed) |
//! | security events | `_sync_security` |
//! | rejected changes (quarantine) | `_sync_rejected` |
//!
//! Plus `_sync_types` (registered entity types and tracked tables, with the
//! columns last mapped),
//! `_sync_capture` (the trigger-fed log of changed keys, folded into
//! `_sync_changes` by the store) and `_sync_applying` (set while the store
//! itself writes a tracked table).

use rusqlite::{Connection, OptionalExtension};

use crate::error::OpenError;

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = 5;

/// Version 2: `_sync_types.columns`, the data columns of a tracked table as
/// last mapped (a JSON array of names), so that a column added since is
/// noticed and the values in it are sent; `_sync_blocked`, the entities
/// whose row could not be written yet because another row held one of its
/// UNIQUE values (their versions are kept whole in `_sync_changes`).
const V2: &str = "
ALTER TABLE _sync_types ADD COLUMN columns TEXT;
CREATE TABLE _sync_blocked(
    type_id INTEGER NOT NULL,
    uuid BLOB NOT NULL,
    PRIMARY KEY (type_id, uuid)
) WITHOUT ROWID;
";

/// Version 1: every internal table.
const V1: &str = r#"
CREATE TABLE IF NOT EXISTS _sync_meta(
    key TEXT PRIMARY KEY,
    value ANY
) WITHOUT ROWID;

CREATE TABLE _sync_local(
    slot INTEGER PRIMARY KEY CHECK (slot = 1),
    id BLOB NOT NULL,
    code TEXT NOT NULL,
    name TEXT NOT NULL,
    role TEXT NOT NULL
);

CREATE TABLE _sync_nodes(
    id BLOB PRIMARY KEY,
    code TEXT NOT NULL,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    revoked INTEGER NOT NULL,
    sent_packet_no INTEGER NOT NULL,
    received_packet_no INTEGER NOT NULL,
    received_digest BLOB NOT NULL,
    peer_ack_high INTEGER NOT NULL,
    acked_seq INTEGER NOT NULL,
    resend_own_upto INTEGER NOT NULL,
    resync_requested INTEGER NOT NULL,
    gap_packet_no INTEGER,
    gap_digest BLOB,
    gap_announced_in INTEGER,
    last_sync_in INTEGER,
    last_sync_out INTEGER,
    schema_version TEXT
) WITHOUT ROWID;

CREATE TABLE _sync_in_flight(
    node_id BLOB NOT NULL,
    position INTEGER NOT NULL,
    packet_no INTEGER NOT NULL,
    upto_seq INTEGER NOT NULL,
    digest BLOB NOT NULL,
    resync INTEGER NOT NULL,
    PRIMARY KEY (node_id, position)
) WITHOUT ROWID;

CREATE TABLE _sync_sent_digests(
    node_id BLOB NOT NULL,
    position INTEGER NOT NULL,
    packet_no INTEGER NOT NULL,
    digest BLOB NOT NULL,
    PRIMARY KEY (node_id, position)
) WITHOUT ROWID;

CREATE TABLE _sync_types(
    type_id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    table_name TEXT UNIQUE,
    options BLOB
);

CREATE TABLE _sync_changes(
    type_id INTEGER NOT NULL,
    uuid BLOB NOT NULL,
    seq INTEGER NOT NULL,
    created_seq INTEGER NOT NULL,
    source BLOB,
    origin BLOB,
    deleted INTEGER NOT NULL DEFAULT 0,
    deleted_at INTEGER,
    stored_at INTEGER,
    doc BLOB,
    base BLOB,
    PRIMARY KEY (type_id, uuid)
) WITHOUT ROWID;
CREATE UNIQUE INDEX _sync_changes_seq ON _sync_changes(seq);

CREATE TABLE _sync_capture(
    id INTEGER PRIMARY KEY,
    type_id INTEGER NOT NULL,
    key TEXT NOT NULL
        CONSTRAINT "the sync key must be a UUID such as 0190c2a1-5d3e-7a4b-8c9d-0123456789ab"
        CHECK (length(key) = 36),
    deleted INTEGER NOT NULL,
    deleted_at INTEGER
);

CREATE TABLE _sync_applying(flag INTEGER PRIMARY KEY);

CREATE TABLE _sync_versions(
    position INTEGER PRIMARY KEY,
    id BLOB NOT NULL,
    entity_type TEXT NOT NULL,
    entity_uuid BLOB NOT NULL,
    source_node_id BLOB NOT NULL,
    arrival_time INTEGER NOT NULL,
    serialized_data BLOB NOT NULL,
    conflict_resolution TEXT NOT NULL
);
CREATE INDEX _sync_versions_entity ON _sync_versions(entity_type, entity_uuid, position);

CREATE TABLE _sync_audit(
    position INTEGER PRIMARY KEY,
    id BLOB NOT NULL,
    at INTEGER NOT NULL,
    entity_type TEXT NOT NULL,
    entity_uuid BLOB NOT NULL,
    peer BLOB NOT NULL,
    strategy TEXT NOT NULL,
    winner TEXT NOT NULL,
    local_origin BLOB NOT NULL,
    local_updated_at INTEGER NOT NULL,
    incoming_origin BLOB NOT NULL,
    incoming_updated_at INTEGER NOT NULL,
    detail TEXT NOT NULL
);

CREATE TABLE _sync_conflicts(
    position INTEGER PRIMARY KEY,
    id BLOB NOT NULL,
    entity_type TEXT NOT NULL,
    entity_uuid BLOB NOT NULL,
    current BLOB NOT NULL,
    incoming BLOB NOT NULL,
    from_node BLOB NOT NULL,
    arrived_at INTEGER NOT NULL
);

CREATE TABLE _sync_parked(
    entity_type TEXT NOT NULL,
    entity_uuid BLOB NOT NULL,
    entity BLOB NOT NULL,
    from_node BLOB NOT NULL,
    waiting_type TEXT NOT NULL,
    waiting_uuid BLOB NOT NULL,
    arrived_at INTEGER NOT NULL,
    PRIMARY KEY (entity_type, entity_uuid)
) WITHOUT ROWID;
CREATE INDEX _sync_parked_parent ON _sync_parked(waiting_type, waiting_uuid);

CREATE INDEX _sync_conflicts_id ON _sync_conflicts(id);

CREATE TABLE _sync_security(
    position INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    peer BLOB,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL
);

CREATE VIEW sync_nodes AS
    SELECT id, code, name, role, 1 AS is_local, NULL AS last_sync_in, NULL AS last_sync_out,
           NULL AS received_packet_no, NULL AS sent_packet_no
    FROM _sync_local
    UNION ALL
    SELECT id, code, name, role, 0, last_sync_in, last_sync_out, received_packet_no, sent_packet_no
    FROM _sync_nodes;

CREATE VIEW sync_changes AS
    SELECT c.seq AS id,
           n.id AS node_id,
           t.name AS entity_type,
           c.uuid AS entity_uuid,
           CASE WHEN c.deleted THEN 'DELETE'
                WHEN c.created_seq > n.acked_seq THEN 'INSERT'
                ELSE 'UPDATE' END AS operation,
           (SELECT min(f.packet_no) FROM _sync_in_flight f
             WHERE f.node_id = n.id AND f.upto_seq >= c.seq) AS packet_no
    FROM _sync_nodes n
    JOIN _sync_changes c
      ON c.seq > n.acked_seq
     AND (c.source IS NULL OR c.source <> n.id OR c.seq <= n.resend_own_upto)
    JOIN _sync_types t ON t.type_id = c.type_id
    WHERE NOT n.revoked;
"#;

/// Version 3: every registry row keeps its version's clock (see
/// `registry::Meta::clock`); the `base` column of version 1 is no longer
/// read. Rows from before have none: they include only their own write.
/// The local node's writer id is kept too (NULL: its node id), and audit
/// records name the exact versions that met (NULL in older records).
const V3: &str = "ALTER TABLE _sync_changes ADD COLUMN clock BLOB;
ALTER TABLE _sync_local ADD COLUMN writer BLOB;
ALTER TABLE _sync_audit ADD COLUMN local_digest BLOB;
ALTER TABLE _sync_audit ADD COLUMN incoming_digest BLOB;";

/// Version 4: `_sync_rejected`, versions this store refused or a peer
/// refused (the quarantine), kept whole with the reason.
const V4: &str = "CREATE TABLE _sync_rejected(
    position INTEGER PRIMARY KEY,
    id BLOB NOT NULL UNIQUE,
    entity BLOB NOT NULL,
    peer BLOB NOT NULL,
    by TEXT NOT NULL,
    reason TEXT NOT NULL,
    at INTEGER NOT NULL,
    notify BLOB,
    notified_in INTEGER
);";

/// Version 5: `_sync_field_stamps`, for row-backed types merged per field
/// (`ConflictStrategy::FieldMerge`): per field of the version last stored,
/// a digest of its value and the write that last changed it. A plain-SQL
/// write is stamped against it when the row is read (see `stamps.rs`).
const V5: &str = "CREATE TABLE _sync_field_stamps(
    type_id INTEGER NOT NULL,
    uuid BLOB NOT NULL,
    fields BLOB NOT NULL,
    PRIMARY KEY (type_id, uuid)
) WITHOUT ROWID;";

/// Creates or upgrades the internal tables. Runs in its own transaction.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), OpenError> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(OpenError::sqlite("starting the schema migration"))?;
    let found = current_version(&tx)?;
    if found > SCHEMA_VERSION {
        return Err(OpenError::NewerSchema {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    if found < 1 {
        tx.execute_batch(V1).map_err(OpenError::sqlite(
            "creating the sync tables (schema version 1)",
        ))?;
    }
    if found < 2 {
        tx.execute_batch(V2).map_err(OpenError::sqlite(
            "upgrading the sync tables to schema version 2",
        ))?;
    }
    if found < 3 {
        tx.execute_batch(V3).map_err(OpenError::sqlite(
            "adding version clocks to the change registry (schema version 3)",
        ))?;
    }
    if found < 4 {
        tx.execute_batch(V4).map_err(OpenError::sqlite(
            "adding the rejected-change quarantine (schema version 4)",
        ))?;
    }
    if found < 5 {
        tx.execute_batch(V5).map_err(OpenError::sqlite(
            "adding per-field stamps (schema version 5)",
        ))?;
    }
    // Later versions add `if found < 6 { ... }` steps here, in order.
    tx.execute(
        "INSERT INTO _sync_meta(key, value) VALUES ('schema_version', ?1)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [SCHEMA_VERSION],
    )
    .map_err(OpenError::sqlite("recording the schema version"))?;
    // A flag left by a crashed writer cannot survive (it is never committed),
    // but clear it anyway so capture can never stay switched off.
    tx.execute("DELETE FROM _sync_applying", [])
        .map_err(OpenError::sqlite("clearing the apply flag"))?;
    tx.commit()
        .map_err(OpenError::sqlite("committing the schema migration"))
}

/// The internal schema version recorded in the database (0 when none).
pub(crate) fn current_version(conn: &Connection) -> Result<i64, OpenError> {
    let has_meta: bool = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = '_sync_meta')",
            [],
            |r| r.get(0),
        )
        .map_err(OpenError::sqlite("reading the schema"))?;
    if !has_meta {
        return Ok(0);
    }
    let version: Option<i64> = conn
        .query_row(
            "SELECT value FROM _sync_meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(OpenError::sqlite("reading the schema version"))?;
    Ok(version.unwrap_or(0))
}
