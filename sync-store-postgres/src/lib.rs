//! # sync-store-postgres
//!
//! A [`Store`] on PostgreSQL for the hub, built so that several hub processes
//! can serve nodes from one database at once: any node may reach any process
//! (behind a round-robin load balancer), and what one process commits the
//! others see.
//!
//! ```no_run
//! use sync_core::{Engine, EngineConfig, EntityRegistry, NodeId, NodeInfo, Role, Uuid};
//! use sync_store_postgres::{PgOptions, PgStore};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Every hub process connects to the same database and schema; the first
//! // one creates (or migrates) the sync tables.
//! let store = PgStore::connect(
//!     "host=db.internal user=syncplan dbname=syncplan",
//!     PgOptions::new().schema("syncplan"),
//! )?;
//! let hub = NodeInfo::new(NodeId(Uuid::from_u128(1)), "HUB", "Hub", Role::Hub);
//! let engine = Engine::new(store, EntityRegistry::new(), EngineConfig::default(), hub)?;
//! # drop(engine);
//! # Ok(())
//! # }
//! ```
//!
//! # How it works
//!
//! - **Tables.** The sync state lives in the `_sync_*` tables of one schema
//!   ([`PgOptions::schema`], `syncplan` by default), versioned and migrated on
//!   connect ([`schema`]). Each [`PgStore`] holds one connection; a process
//!   that serves nodes in parallel opens one store (one engine) per worker.
//! - **Transactions.** [`Store::begin`] opens a `READ COMMITTED` transaction;
//!   [`StoreTxn::commit`](sync_core::StoreTxn::commit) commits it and
//!   dropping it rolls it back. Commits are as durable as the server makes
//!   them (keep `synchronous_commit = on` for a hub: it acknowledges packets
//!   right after commit).
//! - **The change sequence is safe under concurrent writers.** Sequences come
//!   from one counter row (`_sync_counter`), incremented by the first change
//!   of a transaction and row-locked from then until commit. A second writer
//!   waits for the lock, so sequences become visible in exactly the order
//!   they were assigned: a reader that sees change `n` sees every change
//!   below `n`, and never skips one that commits later (the hazard of
//!   `SEQUENCE`s under MVCC, where 7 can commit after 8 was read). Writers
//!   are serialised from their first change to their commit; reading,
//!   decoding and building packets run in parallel.
//! - **A packet covers only what it was built from.** `READ COMMITTED`
//!   gives each statement its own snapshot, so a transaction that reads
//!   the pending changes and then the last sequence could report a change
//!   that another process committed in between, which the packet would then
//!   acknowledge without carrying. Until it takes the counter lock, a
//!   transaction reads the counter once, before its first read of the
//!   change registry, and its registry reads and
//!   [`StoreTxn::last_seq`](sync_core::StoreTxn::last_seq) stop there.
//! - **One node's exchanges are serialised.** Reading a peer's state
//!   ([`StoreTxn::peer`](sync_core::StoreTxn::peer)) takes its row lock
//!   (`SELECT ... FOR UPDATE`) until the transaction ends. The engine reads
//!   the sender's state first when it answers a packet, so two processes that
//!   receive packets from the same node take turns, and numbering,
//!   acknowledgement and restore detection behave as with one hub.
//! - **No lost update between processes.** A transaction that read an entity
//!   and then writes it checks, under the counter lock, that no other
//!   transaction changed it in between; if one did, the write fails with a
//!   [`StoreError::Backend`] naming the entity, the exchange is not
//!   acknowledged and the node's retry is answered from the new state.
//!   PostgreSQL's own deadlock detection ends the rare transaction that
//!   locks a second peer's state (a parked child from another node) while
//!   another waits for the counter; it fails the same way.
//! - **Crashes.** A hub process killed mid-exchange leaves an open
//!   transaction that the server rolls back when the connection drops;
//!   nothing it did not commit was acknowledged.
//! - **Entities** are kept whole (the binary encoding of the SQLite store)
//!   beside the columns that queries use: the change registry's `pending`
//!   query is one index range scan on `seq`.
//! - **The server's own tables.** [`PgStore::track_table`] installs a
//!   trigger on a table of the server's, so that rows other applications
//!   write with plain SQL (any connection, any client) are sent to the
//!   nodes, and the nodes' versions land in it as plain rows. How, and what
//!   maps to what: the notes of the `tracking` module, below.
//!
//! # Tracked tables
//!
//! - Tracking adds `sync_uuid uuid` (unique, filled for existing rows),
//!   `updated_at bigint` (microseconds) and `is_deleted boolean` when
//!   missing, registers the table in `_sync_tracked`, and installs an
//!   `AFTER INSERT OR UPDATE OR DELETE ... FOR EACH ROW` trigger that logs
//!   the row's key and the time in `_sync_capture`. Rows already there are
//!   logged once.
//! - Before every store transaction the store folds the log, in a
//!   transaction of its own (hub processes fold each logged write once
//!   between them): each logged key becomes a change of this hub, the row as it is then with every data column a
//!   field, and a deleted row a removal tombstone carrying
//!   [`REMOVED_FIELD`](sync_core::entity::REMOVED_FIELD). The clock is the
//!   replaced version's with this hub's entry raised to the write's time
//!   (the server's clock).
//! - A version the engine stores for a tracked type is written to the row
//!   (`INSERT ... ON CONFLICT (sync_uuid) DO UPDATE`; a removal deletes it)
//!   with capture switched off for that transaction (`syncplan.applying`),
//!   so it is not captured back. A constraint that refuses the row refuses
//!   the version ([`StoreError::Refused`]). Fields without a column stay in
//!   the version kept in `_sync_changes`.
//! - Data columns are the table's columns other than those three, generated
//!   columns and a primary key that fills itself (`serial`, identity: a
//!   local row id, which does not travel). Each maps to a typed field:
//!   booleans, integers, floats, `bytea` as bytes, `timestamptz` and
//!   `timestamp` as timestamps (microseconds), `uuid` as a UUID, and any
//!   other type (`numeric`, `text`, `date`, `jsonb`...) as its exact text
//!   form, cast back to the column's type when written (the table in the
//!   `tracking` module's notes; [`PgStore::track_table`] returns the
//!   entity type).
//! - A single-column foreign key to another tracked table is a reference:
//!   it travels as the parent row's `sync_uuid` and is written back as the
//!   parent's key here. The engine applies a parent before its children, so
//!   rows land in foreign-key order. A version whose parent has no row here
//!   (only a tombstone) is kept in the sync tables and its row is not
//!   written. A removal that a foreign key without a cascade refuses (rows
//!   here still refer to it) soft-deletes the row instead; the rows that an
//!   `ON DELETE CASCADE` or `SET NULL` changes because of a node's removal
//!   are captured and sent to the nodes as this hub's own writes.
//! - A row the table refuses (a constraint, a value its column cannot
//!   hold) refuses the version, inside a savepoint: the rest of the packet
//!   applies. Not handled: a table in another schema than the store's.
//!
//! [`cluster`] starts a throwaway PostgreSQL server for tests.

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

use sync_core::store_blob as blob;
pub mod cluster;
mod error;
mod rows;
pub mod schema;
mod tracking;
mod txn;

use std::collections::HashMap;

use postgres::{Client, NoTls, Statement};
use sync_core::{EntityType, Store, StoreError, StoreTxn};

pub use error::OpenError;

pub use txn::PgTxn;

/// How to open a [`PgStore`].
#[derive(Clone, Debug)]
pub struct PgOptions {
    schema: String,
    temporary: bool,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            schema: "syncplan".to_owned(),
            temporary: false,
        }
    }
}

impl PgOptions {
    /// The defaults: schema `syncplan`, kept when the store closes.
    pub fn new() -> Self {
        Self::default()
    }

    /// The schema holding the sync tables (created when missing): lower-case
    /// letters, digits and `_`. Every hub process of one deployment uses the
    /// same one.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// Drop the schema, with everything in it, when the store is dropped (for
    /// tests and simulations; never for a hub's data).
    pub fn temporary(mut self, temporary: bool) -> Self {
        self.temporary = temporary;
        self
    }
}

/// A store in one schema of a PostgreSQL database, over one connection.
pub struct PgStore {
    client: Conn,
    url: String,
    schema: String,
    temporary: bool,
    /// Prepared statements by their SQL (statements outlive transactions).
    statements: HashMap<&'static str, Statement>,
    /// The tracked tables (see [`PgStore::track_table`]).
    tracked: Vec<tracking::Tracked>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("schema", &self.schema)
            .field("temporary", &self.temporary)
            .finish_non_exhaustive()
    }
}

/// Whether `name` is a schema name this crate accepts (so it never needs
/// quoting).
fn valid_schema(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 63
}

impl PgStore {
    /// Connects to the database at `url` (a libpq-style connection string,
    /// `host=... user=... dbname=...`, or a `postgresql://` URL; no TLS: run
    /// the hub next to its database or through a secured network), creates
    /// or migrates the sync tables in the options' schema, and keeps the
    /// connection.
    pub fn connect(url: &str, options: PgOptions) -> Result<PgStore, OpenError> {
        if !valid_schema(&options.schema) {
            return Err(OpenError::BadSchemaName {
                schema: options.schema,
            });
        }
        let mut client =
            Client::connect(url, NoTls).map_err(OpenError::pg("connecting to the server"))?;
        migrate(&mut client, &options.schema)?;
        client
            .batch_execute(&format!("SET search_path TO {}", options.schema))
            .map_err(OpenError::pg("selecting the store's schema"))?;
        let mut store = PgStore {
            client: Conn(Some(client)),
            url: url.to_owned(),
            schema: options.schema,
            temporary: options.temporary,
            statements: HashMap::new(),
            tracked: Vec::new(),
        };
        store.load_tracked()?;
        Ok(store)
    }

    /// Reads the tracked tables and maps their data columns.
    fn load_tracked(&mut self) -> Result<(), OpenError> {
        let tables = self
            .client
            .query(
                "SELECT entity_type, table_name FROM _sync_tracked ORDER BY entity_type",
                &[],
            )
            .map_err(OpenError::pg("reading the tracked tables"))?;
        let mut tracked = Vec::with_capacity(tables.len());
        for table in &tables {
            let entity_type: String = table.get(0);
            let name: String = table.get(1);
            let qualified = format!("{}.{name}", self.schema);
            // Data columns: not the three sync columns, not generated, not a
            // primary key column that fills itself (a local row id).
            let columns = self
                .client
                .query(
                    "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod),
                         CASE WHEN ty.typtype = 'd' THEN bt.typname ELSE ty.typname END::text,
                         (SELECT tr.entity_type || chr(31) || pc.relname || chr(31) || pa.attname
                          FROM pg_constraint c
                          JOIN pg_class pc ON pc.oid = c.confrelid
                          JOIN pg_namespace pn ON pn.oid = pc.relnamespace
                          JOIN pg_attribute pa ON pa.attrelid = c.confrelid
                                              AND pa.attnum = c.confkey[1]
                          JOIN _sync_tracked tr ON tr.table_name = pc.relname::text
                          WHERE c.contype = 'f' AND c.conrelid = a.attrelid
                            AND c.conkey = ARRAY[a.attnum]
                            AND pn.nspname = current_schema()
                          LIMIT 1)
                     FROM pg_attribute a
                     JOIN pg_type ty ON ty.oid = a.atttypid
                     LEFT JOIN pg_type bt ON bt.oid = ty.typbasetype
                     WHERE a.attrelid = to_regclass($1)
                       AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
                       AND a.attname NOT IN ('sync_uuid', 'updated_at', 'is_deleted')
                       AND NOT ((a.atthasdef OR a.attidentity <> '')
                                AND EXISTS (SELECT 1 FROM pg_index i
                                            WHERE i.indrelid = a.attrelid AND i.indisprimary
                                              AND a.attnum = ANY(i.indkey)))
                     ORDER BY a.attnum",
                    &[&qualified],
                )
                .map_err(OpenError::pg("reading a tracked table's columns"))?;
            let columns = columns
                .iter()
                .map(|row| {
                    let reference: Option<String> = row.get(3);
                    let kind = match reference.as_deref().map(|r| r.split('\u{1f}')) {
                        Some(mut parts) => match (parts.next(), parts.next(), parts.next()) {
                            (Some(target), Some(parent), Some(column)) => {
                                tracking::ColumnKind::Reference {
                                    target: target.to_owned(),
                                    parent_table: format!("{}.{parent}", self.schema),
                                    parent_column: column.to_owned(),
                                }
                            }
                            _ => tracking::ColumnKind::of_type(row.get(2)),
                        },
                        None => tracking::ColumnKind::of_type(row.get(2)),
                    };
                    tracking::Column {
                        name: row.get(0),
                        sql_type: row.get(1),
                        kind,
                    }
                })
                .collect();
            tracked.push(tracking::Tracked {
                entity_type,
                table: qualified,
                columns,
            });
        }
        self.tracked = tracked;
        Ok(())
    }

    /// Tracks `table`, a table of the server's own in the store's schema,
    /// as entity type `entity_type`: rows that any application writes with
    /// plain SQL, from any connection, are sent to the nodes, and the nodes'
    /// versions land in it as plain rows (see the `tracking` notes in the
    /// crate docs). Adds `sync_uuid`, `updated_at` and `is_deleted` when
    /// missing; rows already there are sent once. Register `entity_type`
    /// in the engine's registry: the returned type has a field per data
    /// column, typed after the column (see the `tracking` notes; a foreign
    /// key to a table tracked before this one is a reference). Calling it
    /// again (after adding a column, or tracking a parent) picks the changes
    /// up.
    pub fn track_table(&mut self, table: &str, entity_type: &str) -> Result<EntityType, OpenError> {
        if !valid_schema(table) {
            return Err(OpenError::NoSuchTable {
                table: table.to_owned(),
                schema: self.schema.clone(),
            });
        }
        let schema = self.schema.clone();
        let mut txn = self
            .client
            .transaction()
            .map_err(OpenError::pg("starting to track a table"))?;
        let exists = txn
            .query_one(
                "SELECT to_regclass($1) IS NOT NULL",
                &[&format!("{schema}.{table}")],
            )
            .map_err(OpenError::pg("looking for the table"))?
            .get::<_, bool>(0);
        if !exists {
            return Err(OpenError::NoSuchTable {
                table: table.to_owned(),
                schema,
            });
        }
        let q = format!("{schema}.{table}");
        txn.batch_execute(&format!(
            "ALTER TABLE {q} ADD COLUMN IF NOT EXISTS sync_uuid uuid NOT NULL DEFAULT gen_random_uuid();
             CREATE UNIQUE INDEX IF NOT EXISTS {table}_sync_uuid ON {q}(sync_uuid);
             ALTER TABLE {q} ADD COLUMN IF NOT EXISTS updated_at bigint;
             ALTER TABLE {q} ADD COLUMN IF NOT EXISTS is_deleted boolean NOT NULL DEFAULT false;
             {function}
             DROP TRIGGER IF EXISTS _sync_capture ON {q};
             CREATE TRIGGER _sync_capture AFTER INSERT OR UPDATE OR DELETE ON {q}
                 FOR EACH ROW EXECUTE FUNCTION {schema}._sync_capture_row('{ty}');",
            function = tracking::capture_function(&schema),
            ty = entity_type.replace('\'', "''"),
        ))
        .map_err(OpenError::pg("installing the capture trigger"))?;
        let new = txn
            .execute(
                "INSERT INTO _sync_tracked(entity_type, table_name) VALUES ($1, $2)
                 ON CONFLICT (entity_type) DO NOTHING",
                &[&entity_type, &table],
            )
            .map_err(OpenError::pg("registering the table"))?;
        if new == 1 {
            txn.execute(
                &format!(
                    "INSERT INTO _sync_capture(entity_type, id, deleted, at)
                     SELECT $1, sync_uuid, false,
                            (extract(epoch FROM clock_timestamp()) * 1000000)::bigint
                     FROM {q}"
                ),
                &[&entity_type],
            )
            .map_err(OpenError::pg("logging the rows already there"))?;
        }
        txn.commit()
            .map_err(OpenError::pg("committing the tracking"))?;
        self.load_tracked()?;
        self.tracked_type(entity_type)
            .ok_or_else(|| OpenError::NoSuchTable {
                table: table.to_owned(),
                schema: self.schema.clone(),
            })
    }

    /// The entity type of a tracked table as its columns describe it now
    /// (`None`: no table is tracked as `entity_type`).
    pub fn tracked_type(&self, entity_type: &str) -> Option<EntityType> {
        self.tracked
            .iter()
            .find(|t| t.entity_type == entity_type)
            .map(tracking::Tracked::entity_type)
    }

    /// The schema holding this store's tables.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The connection, for the application's own SQL. Do not leave a
    /// transaction open on it while calling the engine.
    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    /// Copies every committed row of this store into a new schema `target`,
    /// which then holds a store of its own (open it with
    /// [`PgStore::connect`] and [`PgOptions::schema`]): a consistent backup
    /// inside the database.
    pub fn copy_to(&mut self, target: &str) -> Result<(), OpenError> {
        if !valid_schema(target) {
            return Err(OpenError::BadSchemaName {
                schema: target.to_owned(),
            });
        }
        let exists = self
            .client
            .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&target])
            .map_err(OpenError::pg("looking for the target schema"))?;
        if exists.is_some() {
            return Err(OpenError::SchemaExists {
                schema: target.to_owned(),
            });
        }
        migrate(&mut self.client, target)?;
        let source = self.schema.clone();
        copy_schema(&mut self.client, &source, target)
    }

    /// Opens a second store on the same database and schema (a new
    /// connection): what another hub process, or another worker, holds.
    pub fn reconnect(&self) -> Result<PgStore, OpenError> {
        PgStore::connect(
            &self.url,
            PgOptions::new()
                .schema(self.schema.clone())
                .temporary(false),
        )
    }
}

/// Replaces everything the store in schema `to` holds with a copy of the
/// committed rows of the store in schema `from` (both must hold stores of
/// this version, and no transaction may be open on `to`), in one
/// `REPEATABLE READ` transaction on `client`: a backup, or a restore from
/// one, without leaving the database.
pub fn copy_schema(client: &mut Client, from: &str, to: &str) -> Result<(), OpenError> {
    for schema in [from, to] {
        if !valid_schema(schema) {
            return Err(OpenError::BadSchemaName {
                schema: schema.to_owned(),
            });
        }
    }
    let mut txn = client
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .start()
        .map_err(OpenError::pg("starting the copy"))?;
    let mut sql = String::new();
    for table in schema::TABLES {
        sql.push_str(&format!(
            "DELETE FROM {to}.{table}; INSERT INTO {to}.{table} SELECT * FROM {from}.{table};"
        ));
    }
    for (table, column) in schema::SERIALS {
        sql.push_str(&format!(
            "SELECT setval(pg_get_serial_sequence('{to}.{table}', '{column}'),
                coalesce((SELECT max({column}) FROM {to}.{table}), 0) + 1, false);"
        ));
    }
    txn.batch_execute(&sql)
        .map_err(OpenError::pg("copying the sync tables"))?;
    txn.commit().map_err(OpenError::pg("committing the copy"))
}

/// Creates or migrates the sync tables in `schema`, once, whoever else
/// connects at the same time.
fn migrate(client: &mut Client, schema: &str) -> Result<(), OpenError> {
    // The common case, a schema already up to date, without DDL or locks.
    let current = client
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL",
            &[&format!("{schema}._sync_schema")],
        )
        .map_err(OpenError::pg("looking for the sync tables"))?
        .get::<_, bool>(0);
    if current {
        let found: Option<i32> = client
            .query_opt(
                &format!("SELECT version FROM {schema}._sync_schema WHERE slot = 1"),
                &[],
            )
            .map_err(OpenError::pg("reading the schema version"))?
            .map(|row| row.get(0));
        if found == Some(schema::SCHEMA_VERSION) {
            return Ok(());
        }
    }
    let mut txn = client
        .transaction()
        .map_err(OpenError::pg("starting the migration"))?;
    txn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('syncplan migration ' || $1, 0))",
        &[&schema],
    )
    .map_err(OpenError::pg("waiting for other processes' migration"))?;
    txn.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         CREATE TABLE IF NOT EXISTS {schema}._sync_schema(
             slot integer PRIMARY KEY CHECK (slot = 1), version integer NOT NULL);"
    ))
    .map_err(OpenError::pg("creating the schema"))?;
    let found: i32 = txn
        .query_opt(
            &format!("SELECT version FROM {schema}._sync_schema WHERE slot = 1"),
            &[],
        )
        .map_err(OpenError::pg("reading the schema version"))?
        .map_or(0, |row| row.get(0));
    if found > schema::SCHEMA_VERSION {
        return Err(OpenError::NewerSchema {
            schema: schema.to_owned(),
            found,
            supported: schema::SCHEMA_VERSION,
        });
    }
    if found < schema::SCHEMA_VERSION {
        txn.batch_execute(&format!("SET LOCAL search_path TO {schema}"))
            .map_err(OpenError::pg("selecting the schema"))?;
        for step in &schema::MIGRATIONS[found as usize..] {
            txn.batch_execute(step)
                .map_err(OpenError::pg("migrating the sync tables"))?;
        }
        txn.execute(
            &format!(
                "INSERT INTO {schema}._sync_schema(slot, version) VALUES (1, $1)
                 ON CONFLICT (slot) DO UPDATE SET version = EXCLUDED.version"
            ),
            &[&schema::SCHEMA_VERSION],
        )
        .map_err(OpenError::pg("recording the schema version"))?;
    }
    txn.commit()
        .map_err(OpenError::pg("committing the migration"))
}

/// The store's connection. It is `None` only while the store is dropped.
struct Conn(Option<Client>);

impl std::ops::Deref for Conn {
    type Target = Client;

    fn deref(&self) -> &Client {
        match &self.0 {
            Some(client) => client,
            None => unreachable!("the connection is taken only when the store is dropped"),
        }
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Client {
        match &mut self.0 {
            Some(client) => client,
            None => unreachable!("the connection is taken only when the store is dropped"),
        }
    }
}

impl Drop for PgStore {
    /// Closes the connection (dropping a temporary store's schema first) on
    /// a thread of its own, joined before `drop` returns: the blocking
    /// client runs a runtime of its own, which may neither run nor be
    /// dropped on a thread of an async runtime (a tokio worker), where a
    /// hub's engine often ends.
    fn drop(&mut self) {
        let Some(mut client) = self.client.0.take() else {
            return;
        };
        let drop_schema = self
            .temporary
            .then(|| format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema));
        let close = move || {
            if let Some(sql) = drop_schema
                && !client.is_closed()
            {
                // Best effort: a failure leaves a schema behind, nothing worse.
                let _ = client.batch_execute(&sql);
            }
            drop(client);
        };
        // A thread that cannot start drops the connection here, with
        // the closure (an async worker then panics, as without this).
        if let Ok(thread) = std::thread::Builder::new()
            .name("syncplan-pg-close".into())
            .spawn(close)
        {
            let _ = thread.join();
        }
    }
}

impl Store for PgStore {
    type Txn<'a> = PgTxn<'a>;

    fn begin(&mut self) -> Result<PgTxn<'_>, StoreError> {
        if self.client.is_closed() {
            return Err(StoreError::Poisoned {
                reason: "the connection to PostgreSQL is closed; connect the store again".into(),
            });
        }
        if !self.tracked.is_empty() {
            // The captured writes become changes in a transaction of their
            // own, committed before the engine's begins: the engine's then
            // takes the peer's lock before the counter's, as without
            // tracked tables.
            let txn = self
                .client
                .transaction()
                .map_err(|e| StoreError::backend("starting to fold captured writes", e))?;
            let mut fold = PgTxn::new(txn, &mut self.statements, &self.tracked);
            fold.fold_captured()?;
            fold.commit()?;
        }
        let txn = self
            .client
            .transaction()
            .map_err(|e| StoreError::backend("starting a transaction", e))?;
        Ok(PgTxn::new(txn, &mut self.statements, &self.tracked))
    }
}
