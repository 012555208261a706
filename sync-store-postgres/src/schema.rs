//! The store's own tables (all named `_sync_*`, in the store's schema) and
//! their migrations.
//!
//! The schema version is kept in `_sync_schema`. Every
//! [`PgStore::connect`](crate::PgStore::connect) runs the migration: in one
//! transaction, under a transaction-scoped advisory lock on the schema's
//! name, so that several hub processes starting at once migrate it exactly
//! once. A schema written by a newer version of this crate is refused.
//!
//! | spec | here |
//! |---|---|
//! | `sync_nodes` | `_sync_local` (this hub) and `_sync_nodes` (peers, with their counters; the unacknowledged packets and recent digests as fixed-size binary columns) |
//! | `sync_changes` | `_sync_changes`: one row per entity with the sequence of its latest change, where it came from, and the version whole |
//! | change sequence | `_sync_counter`: one row, the last sequence assigned; its row lock is held from a transaction's first change to its commit (see the crate docs) |
//! | `object_version_history` | `_sync_versions` |
//! | audit of resolutions | `_sync_audit` |
//! | open manual conflicts | `_sync_conflicts` |
//! | parked children | `_sync_parked` |
//! | security events | `_sync_security` |
//! | rejected changes | `_sync_rejected` |
//! | drivers' metadata | `_sync_kv` |
//! | tracked tables, captured writes | `_sync_tracked`, `_sync_capture` (version 2) |
//!
//! Times are microseconds since the UNIX epoch (`bigint`), sequences and
//! packet numbers are `bigint` holding the `u64` bit for bit, ids are
//! `uuid`, and entities kept whole use the binary encoding of the `blob`
//! module (`bytea`). Keys that are listed in order use the `"C"` collation so
//! that the order is the bytes' order on every server.

/// The schema version this build writes.
pub const SCHEMA_VERSION: i32 = 2;

/// Version 1: every table.
pub(crate) const V1: &str = r#"
CREATE TABLE _sync_counter(
    slot integer PRIMARY KEY CHECK (slot = 1),
    last_seq bigint NOT NULL
);
INSERT INTO _sync_counter(slot, last_seq) VALUES (1, 0);

CREATE TABLE _sync_local(
    slot integer PRIMARY KEY CHECK (slot = 1),
    id uuid NOT NULL,
    code text NOT NULL,
    name text NOT NULL,
    role text NOT NULL,
    writer uuid NOT NULL
);

CREATE TABLE _sync_nodes(
    id uuid PRIMARY KEY,
    code text NOT NULL,
    name text NOT NULL,
    role text NOT NULL,
    writer uuid NOT NULL,
    revoked boolean NOT NULL,
    sent_packet_no bigint NOT NULL,
    received_packet_no bigint NOT NULL,
    received_digest bytea NOT NULL,
    peer_ack_high bigint NOT NULL,
    acked_seq bigint NOT NULL,
    resend_own_upto bigint NOT NULL,
    in_flight bytea NOT NULL,
    sent_digests bytea NOT NULL,
    gap_packet_no bigint,
    gap_digest bytea,
    gap_announced_in bigint,
    resync_requested boolean NOT NULL,
    last_sync_in bigint,
    last_sync_out bigint,
    schema_version text
);

CREATE TABLE _sync_changes(
    entity_type text COLLATE "C" NOT NULL,
    id uuid NOT NULL,
    seq bigint NOT NULL,
    created_seq bigint NOT NULL,
    source uuid NOT NULL,
    stored_at bigint NOT NULL,
    is_deleted boolean NOT NULL,
    updated_at bigint NOT NULL,
    version bytea NOT NULL,
    PRIMARY KEY (entity_type, id)
);
CREATE UNIQUE INDEX _sync_changes_seq ON _sync_changes(seq);

CREATE TABLE _sync_versions(
    position bigserial PRIMARY KEY,
    id uuid NOT NULL,
    entity_type text COLLATE "C" NOT NULL,
    entity_id uuid NOT NULL,
    source_node uuid NOT NULL,
    arrival_time bigint NOT NULL,
    data bytea NOT NULL,
    resolution text NOT NULL
);
CREATE INDEX _sync_versions_entity ON _sync_versions(entity_type, entity_id, position);

CREATE TABLE _sync_audit(
    position bigserial PRIMARY KEY,
    id uuid NOT NULL,
    at bigint NOT NULL,
    entity_type text NOT NULL,
    entity_id uuid NOT NULL,
    peer uuid NOT NULL,
    strategy text NOT NULL,
    winner text NOT NULL,
    local_origin uuid NOT NULL,
    local_updated_at bigint NOT NULL,
    incoming_origin uuid NOT NULL,
    incoming_updated_at bigint NOT NULL,
    local_digest bytea NOT NULL,
    incoming_digest bytea NOT NULL,
    detail text NOT NULL
);

CREATE TABLE _sync_conflicts(
    position bigserial PRIMARY KEY,
    id uuid NOT NULL UNIQUE,
    entity_type text COLLATE "C" NOT NULL,
    entity_id uuid NOT NULL,
    current bytea NOT NULL,
    incoming bytea NOT NULL,
    from_node uuid NOT NULL,
    arrived_at bigint NOT NULL
);
CREATE INDEX _sync_conflicts_entity ON _sync_conflicts(entity_type, entity_id, position);

CREATE TABLE _sync_parked(
    entity_type text COLLATE "C" NOT NULL,
    entity_id uuid NOT NULL,
    entity bytea NOT NULL,
    from_node uuid NOT NULL,
    waiting_type text COLLATE "C" NOT NULL,
    waiting_id uuid NOT NULL,
    arrived_at bigint NOT NULL,
    PRIMARY KEY (entity_type, entity_id)
);
CREATE INDEX _sync_parked_parent ON _sync_parked(waiting_type, waiting_id);

CREATE TABLE _sync_security(
    position bigserial PRIMARY KEY,
    at bigint NOT NULL,
    peer uuid,
    kind text NOT NULL,
    detail text NOT NULL
);

CREATE TABLE _sync_rejected(
    position bigserial PRIMARY KEY,
    id uuid NOT NULL UNIQUE,
    entity bytea NOT NULL,
    peer uuid NOT NULL,
    rejected_by text NOT NULL,
    reason text NOT NULL,
    at bigint NOT NULL,
    notify uuid,
    notified_in bigint
);

CREATE TABLE _sync_kv(
    key text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL
);
"#;

/// Version 2: tracked tables of the server's own (`_sync_tracked`) and the
/// log their triggers write (`_sync_capture`), see [`crate::PgStore::track_table`].
pub(crate) const V2: &str = r#"
CREATE TABLE _sync_tracked(
    entity_type text COLLATE "C" PRIMARY KEY,
    table_name text NOT NULL UNIQUE
);

CREATE TABLE _sync_capture(
    position bigserial PRIMARY KEY,
    entity_type text COLLATE "C" NOT NULL,
    id uuid NOT NULL,
    deleted boolean NOT NULL,
    at bigint NOT NULL
);
"#;

/// Every table a backup copies, in an order that respects nothing but
/// itself (the tables have no foreign keys between them).
pub(crate) const TABLES: &[&str] = &[
    "_sync_counter",
    "_sync_local",
    "_sync_nodes",
    "_sync_changes",
    "_sync_versions",
    "_sync_audit",
    "_sync_conflicts",
    "_sync_parked",
    "_sync_security",
    "_sync_rejected",
    "_sync_kv",
    "_sync_tracked",
    "_sync_capture",
];

/// The migrations in order: index `i` takes a schema from version `i` to
/// `i + 1`.
pub(crate) const MIGRATIONS: &[&str] = &[V1, V2];

/// The `bigserial` columns whose sequences a copy moves past the copied rows.
pub(crate) const SERIALS: &[(&str, &str)] = &[
    ("_sync_versions", "position"),
    ("_sync_audit", "position"),
    ("_sync_conflicts", "position"),
    ("_sync_security", "position"),
    ("_sync_rejected", "position"),
    ("_sync_capture", "position"),
];
