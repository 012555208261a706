//! # sync-store-sqlite
//!
//! A [`Store`] on SQLite (bundled: nothing to install) that syncs the
//! application's own tables. Register a table with
//! [`SqliteStore::track_table`] and keep writing plain SQL: triggers register
//! every insert, update and delete, and the engine sends the rows to the hub.
//!
//! ```
//! use sync_core::{Engine, EngineConfig, EntityKey, EntityRegistry, NodeId, NodeInfo, Role, Timestamp, Uuid};
//! use sync_store_memory::MemoryStore;
//! use sync_store_sqlite::{SqliteOptions, SqliteStore, TrackOptions};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let path = dir.path().join("app.db");
//! // An existing application database with its own table and rows.
//! let app = rusqlite::Connection::open(&path)?;
//! app.execute_batch(
//!     "CREATE TABLE daily_report(id INTEGER PRIMARY KEY, date TEXT NOT NULL, hours INTEGER);
//!      INSERT INTO daily_report(date, hours) VALUES ('2025-12-11', 7);",
//! )?;
//! drop(app);
//!
//! // Track it: sync_uuid, updated_at and is_deleted are added, existing rows
//! // get UUIDv7 keys, triggers capture every write from now on.
//! let mut store = SqliteStore::open(&path, SqliteOptions::default())?;
//! let report_type = store.track_table(
//!     "daily_report",
//!     TrackOptions::new().entity_type_name("DailyReport"),
//! )?;
//! let registry = EntityRegistry::new().with(report_type);
//!
//! let hub_info = NodeInfo::new(NodeId(Uuid::from_u128(1)), "HUB", "Hub", Role::Hub);
//! let node_info = NodeInfo::new(NodeId(Uuid::from_u128(2)), "DESKTOP-1", "Desktop", Role::Node);
//! let mut hub = Engine::new(MemoryStore::new(), registry.clone(), EngineConfig::default().seed(1), hub_info.clone())?;
//! let mut node = Engine::new(store, registry, EngineConfig::default().seed(2), node_info.clone())?;
//! hub.register_peer(node_info)?;
//! node.register_peer(hub_info.clone())?;
//!
//! // The application keeps writing plain SQL.
//! node.store().connection().execute(
//!     "INSERT INTO daily_report(date, hours) VALUES ('2025-12-12', 8)", [])?;
//! node.store().connection().execute(
//!     "UPDATE daily_report SET hours = 6 WHERE date = '2025-12-11'", [])?;
//!
//! // Sync with the hub.
//! let now = Timestamp::from_secs(1_765_535_400);
//! node.start_sync(hub_info.id)?;
//! while let Some(packet) = node.poll_transmit(now)? {
//!     let reply = hub.respond(&packet.bytes, now)?;
//!     node.handle_incoming(&reply, now)?;
//! }
//! let key: String = node.store().connection().query_row(
//!     "SELECT sync_uuid FROM daily_report WHERE date = '2025-12-12'", [], |r| r.get(0))?;
//! let on_hub = hub.get(&EntityKey::new("DailyReport", key.parse()?))?.expect("synced");
//! assert_eq!(on_hub.fields["hours"], sync_core::Value::Int(8));
//! assert_eq!(hub.store().entity_count(), 2);
//! # Ok(())
//! # }
//! ```
//!
//! # How it works
//!
//! - **Sync state** lives in the store's own tables, all named `_sync_*`
//!   (see [`schema`] for how they mirror the spec's data model). They are
//!   versioned in `_sync_meta` and migrated on open; `PRAGMA user_version`
//!   stays the application's.
//! - **Tracking** ([`SqliteStore::track_table`]) adds a sync key column
//!   (`sync_uuid`, text, separate from the primary key), `updated_at`
//!   (microseconds since the UNIX epoch) and `is_deleted` when missing, gives
//!   existing rows UUIDv7 keys, and installs triggers that log only the
//!   changed row's key. Rows are read when a packet is built, so repeated
//!   writes to one row send its latest state once. A hard `DELETE` becomes a
//!   tombstone that travels and removes the row on every node. See
//!   [what is captured](#what-sql-is-captured-and-how) below and
//!   [`tracking`] for the triggers.
//! - **Entity types**: by default derived from the table's columns (rules in
//!   [`table`]), named after the table or as
//!   [`TrackOptions::entity_type_name`] says; foreign keys to other tracked
//!   tables become references, sent as the parent's sync UUID and written
//!   back as the parent's local key. A caller may supply its own type with
//!   [`TrackOptions::with_entity_type`]. Register the returned type in the
//!   engine's registry. Entity types without a table are stored whole in the
//!   sync tables.
//! - **Applying** a packet is one SQLite transaction (`BEGIN IMMEDIATE` ...
//!   `COMMIT`, `ROLLBACK` when the transaction is dropped), with
//!   `foreign_keys = ON`; the store's own writes are never re-captured as
//!   local changes. A version whose parent row does not exist here (the
//!   parent is only a tombstone) is kept whole in the sync tables, not in the
//!   table; a later version whose parent row exists is written normally.
//! - **Durability**: WAL mode; `synchronous = FULL` by default (the hub must
//!   keep it: it acknowledges right after commit), `NORMAL` as an option for
//!   nodes ([`Durability`]). After a write fails in a way that leaves the
//!   database in doubt (I/O error, full disk...), the store refuses further
//!   writes with [`StoreError::Poisoned`]; reopen it to recover.
//! - **Connections**: the store holds one connection; reach it with
//!   [`SqliteStore::connection`] for the application's SQL, or open others:
//!   triggers use only built-in SQL functions (SQLite 3.42 or newer), so
//!   every connection's writes are captured. Do not hold a transaction open
//!   on the store's connection while calling the engine.
//!
//! # What SQL is captured, and how
//!
//! Nothing is asked of the application's connections: no pragma, no
//! function, no extension. The triggers live in the database's schema, so
//! they fire for the store's connection, a second `rusqlite::Connection`,
//! another process and the `sqlite3` shell alike.
//!
//! | the application writes | captured by | what travels |
//! |---|---|---|
//! | `INSERT`, `INSERT OR IGNORE`, `INSERT ... ON CONFLICT DO NOTHING` | `AFTER INSERT` trigger `ins`: logs the new row's key | the row |
//! | `UPDATE`, the `DO UPDATE` of an UPSERT | `AFTER UPDATE` trigger `upd`: logs the key, moves `updated_at` forward if the statement did not | the row |
//! | `UPDATE ... SET is_deleted = 1` | `upd` | a soft tombstone with the row's values: every node keeps the row with `is_deleted = 1` |
//! | `DELETE` | `AFTER DELETE` trigger `del`: logs the key and the time | a removal tombstone (see [`REMOVED_FIELD`]): every node removes the row |
//! | `INSERT OR REPLACE`, `REPLACE`, a `REPLACE` conflict clause in the schema | `BEFORE INSERT` trigger `pre`: logs, as a check, the key of every row sharing the rowid, primary key or a UNIQUE value with the new row (SQLite fires no delete trigger for the row it replaces unless `recursive_triggers` is on); when the log is folded a checked row that is gone becomes a removal, one still there is dropped (so `INSERT OR IGNORE` and UPSERT change nothing by it) | a removal tombstone for the replaced row, then the new row |
//! | `UPDATE OR REPLACE` | `BEFORE UPDATE OF` the primary key and UNIQUE columns, trigger `preupd` (not started by updates of other columns) | as `REPLACE` |
//! | foreign-key actions (`ON DELETE CASCADE`, `SET NULL`, `SET DEFAULT`, `ON UPDATE CASCADE`) | SQLite runs the child table's own triggers for them | the children's tombstones or rows |
//! | `ALTER TABLE ... ADD COLUMN` (with or without `DEFAULT`) | no trigger fires: the store notices the schema change at its next transaction, on open and in `track_table`, and registers every row holding a value in the new column | those rows, with the new field |
//!
//! A logged key whose row is gone when it is read (replaced, deleted, or
//! removed while its triggers were dropped) reads as a removal tombstone and
//! is sent as a deletion; it is never reported as corruption.
//!
//! Not captured: writes made while the triggers are dropped, except that a
//! row found gone reads (and, if it has changes pending, is sent) as a
//! deletion; unique indexes on expressions (a `REPLACE` conflict on one
//! removes a row unseen until it is read); a UNIQUE index created after
//! `track_table` until `track_table` runs again.
//!
//! # What a receiving node's tables hold
//!
//! After sync every tracked table holds the same rows with the same values
//! on every node, sync-only columns (`updated_at`) and local row ids aside:
//!
//! - a live version inserts or updates its row; fields the table has no
//!   column for are kept in the sync tables (`_sync_changes.doc`), read
//!   with the row, and sent on with this node's own edits of it;
//! - a live version whose UNIQUE value another row here still holds (each
//!   row travels as its latest state, so the row letting go of the value
//!   may come later in the packet) is kept whole in the sync tables, and
//!   its row is written as soon as the value is free, before the packet's
//!   commit (see `_sync_blocked` in [`schema`]). Two rows that swapped
//!   values through a third one wait, kept whole, until a later version of
//!   either arrives;
//! - a soft tombstone sets `is_deleted = 1` and the values it carries;
//! - a removal tombstone deletes the row (so its UNIQUE values can be used
//!   again), keeping the tombstone in `_sync_changes`. Foreign-key cascades
//!   that this deletion sets off here are registered as this node's own
//!   changes, so every node hears of them. If a foreign key without a
//!   cascade still holds the row (children added here while the parent was
//!   deleted elsewhere), the row is soft-deleted instead. Deferred foreign
//!   keys (`DEFERRABLE INITIALLY DEFERRED`) are not checked before the
//!   deletion: a violation fails the whole packet at commit.
//! - Before a peer's removal of a row is applied, the live rows of tracked
//!   tables that an `ON DELETE CASCADE` foreign key will remove with it are
//!   kept whole in the version history (resolution `cascade-deleted`, up to
//!   eight levels of children), and linked under the parent as deleted with
//!   it (see [`sync_core::cascade`]).
//! - Cascades follow causality: when a parent's deletion loses a conflict to
//!   a concurrent update, the children deleted with it come back with their
//!   last values, on every node. That covers the children the writer's own
//!   cascade removed (their deletions travel with the parent's) and those a
//!   receiver's cascade removed (linked above). The node that resolves the
//!   conflict writes them back as its own new versions, so the rows
//!   reappear everywhere as ordinary inserts. Children the writer deleted
//!   on purpose before the parent, in the same packet, come back too: delete
//!   them again once the conflict is settled.
//!
//! # Changing a schema across a fleet
//!
//! Adding a column (the common case) needs no coordination:
//!
//! 1. Run `ALTER TABLE t ADD COLUMN c ...` (nullable or with a `DEFAULT`) on
//!    any node, from any connection, in any order; the hub may go first or
//!    last. Nodes with the column write the field to it; nodes without it
//!    keep it in their sync tables and send it on with their edits, so it is
//!    never overwritten with NULL.
//! 2. Nothing else is needed for the values to sync: the store notices the
//!    column (at its next transaction, on open, in `track_table`) and sends
//!    every row holding a value in it, so values written before then, and a
//!    `DEFAULT` that filled existing rows, reach the other nodes. Values it
//!    kept beside its rows for want of the column are written into it
//!    (where the column is NULL), so plain SQL reads them.
//! 3. If the table is tracked with a caller-supplied entity type
//!    ([`TrackOptions::with_entity_type`]), a column it does not declare
//!    stays local: declare the field and call `track_table` again.
//! 4. At the next restart, build the engine's registry from
//!    [`SqliteStore::registry`] so the field is declared there too (for
//!    writes through the Rust API, strategies and per-field merge), and
//!    raise the minor schema version
//!    ([`sync_core::EngineConfig::schema_version`]).
//!
//! Dropping, renaming or retyping a column is a breaking change: raise the
//! major schema version, raise the hub's minimum
//! ([`sync_core::EngineConfig::min_peer_schema`]) so that outdated nodes are
//! told to upgrade, and migrate every node's table the same way before it
//! syncs again. Values for a dropped column that other nodes still send are
//! kept in the sync tables, never lost. After adding a UNIQUE index to a
//! tracked table, call `track_table` again so `REPLACE` captures it.
//!
//! # Migrations distributed by the hub
//!
//! Rather than running the scripts by hand on every node, let the hub hold
//! them ([`sync_core::EngineConfig::migration`]; see [`sync_core::migration`]):
//! a node behind the hub's schema receives them before any entity change,
//! and [`apply_migrations`] runs each in one transaction
//! ([`SqliteStore::apply_migration`]: the script, the tracked tables
//! re-tracked, the version recorded), registers the migrated types in the
//! engine and tells it, or records the failure, which the hub then sees.
//! Open the engine with [`SqliteStore::schema_version`] so its packets name
//! the version after a restart.

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

use sync_core::store_blob as blob;
mod blocked;
mod cascade;
mod columns;
mod error;
mod migrate;
mod nodes;
mod options;
mod records;
mod registry;
mod rows;
pub mod schema;
mod sql;
mod stamps;
pub mod table;
pub mod tracking;
mod txn;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::{Connection, OpenFlags};
use sync_core::{EntityRegistry, EntityType, Store, StoreError};

pub use error::{OpenError, TrackError};
pub use migrate::{MigrationError, MigrationReport, apply_migrations};
pub use options::{
    DEFAULT_IS_DELETED_COLUMN, DEFAULT_KEY_COLUMN, DEFAULT_UPDATED_AT_COLUMN, Durability,
    SqliteOptions, TrackOptions,
};
pub use tracking::{NOW_MICROS_SQL, UUID_V7_SQL};
pub use txn::SqliteTxn;

/// The field a tombstone carries, set to `true`, when its row was removed
/// with SQL (`DELETE`, `REPLACE`, a foreign-key cascade) rather than
/// soft-deleted (`is_deleted = 1`). It travels inside the entity's record
/// like any field a peer's schema lacks, so every store keeps it; a SQLite
/// store receiving such a tombstone removes the row too, where one without
/// it only sets `is_deleted`. Other stores need not know it.
pub const REMOVED_FIELD: &str = sync_core::entity::REMOVED_FIELD;

use crate::table::TrackedTable;
use crate::tracking::{Peers, Remembered};

/// A [`Store`] in one SQLite database file. See the crate docs.
pub struct SqliteStore {
    conn: Connection,
    path: Option<PathBuf>,
    options: SqliteOptions,
    poisoned: Option<String>,
    types: Types,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("options", &self.options)
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

/// A registered entity type: its id in the sync tables and its table, if
/// tracked.
#[derive(Clone, Debug)]
pub(crate) struct TypeEntry {
    pub id: i64,
    pub name: String,
    pub table: Option<Arc<TrackedTable>>,
}

/// The registered types, cached; reloaded after a transaction that may have
/// registered one was rolled back.
#[derive(Default)]
pub(crate) struct Types {
    by_name: BTreeMap<String, TypeEntry>,
    by_id: HashMap<i64, String>,
    pub stale: bool,
    /// `PRAGMA schema_version` when the types were mapped: any schema
    /// change since (an `ALTER TABLE` from any connection) maps them again.
    cookie: i64,
}

impl Types {
    pub fn by_name(&self, name: &str) -> Option<TypeEntry> {
        self.by_name.get(name).cloned()
    }

    pub fn by_id(&self, id: i64) -> Result<TypeEntry, StoreError> {
        self.by_id
            .get(&id)
            .and_then(|name| self.by_name.get(name))
            .cloned()
            .ok_or_else(|| StoreError::Corrupt {
                detail: format!("_sync_changes names entity type id {id}, which _sync_types lacks"),
            })
    }

    /// Every tracked table as the capture-log fold needs it.
    pub fn logged(&self) -> Vec<registry::Logged<'_>> {
        self.by_name
            .values()
            .filter_map(|e| {
                e.table
                    .as_ref()
                    .map(|t| (e.id, t.table.as_str(), t.key.as_str()))
            })
            .collect()
    }

    /// Every tracked table with its type.
    pub fn tables(&self) -> impl Iterator<Item = (TypeEntry, Arc<TrackedTable>)> + '_ {
        self.by_name
            .values()
            .filter_map(|e| e.table.clone().map(|t| (e.clone(), t)))
    }

    fn insert(&mut self, entry: TypeEntry) {
        self.by_id.insert(entry.id, entry.name.clone());
        self.by_name.insert(entry.name.clone(), entry);
    }
}

impl SqliteStore {
    /// Opens (or creates) the database at `path`: WAL mode, foreign keys on,
    /// the sync tables created or migrated, tracked tables mapped again.
    pub fn open(path: impl AsRef<Path>, options: SqliteOptions) -> Result<Self, OpenError> {
        let path = path.as_ref().to_path_buf();
        let conn = Self::connect(&path, &options)?;
        Self::assemble(conn, Some(path), options)
    }

    /// A store in memory (for tests: nothing survives the handle, and there
    /// is no WAL).
    pub fn open_in_memory(options: SqliteOptions) -> Result<Self, OpenError> {
        let conn = Connection::open_in_memory()
            .map_err(OpenError::sqlite("opening an in-memory database"))?;
        configure(&conn, &options, false)?;
        Self::assemble(conn, None, options)
    }

    fn connect(path: &Path, options: &SqliteOptions) -> Result<Connection, OpenError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)
            .map_err(OpenError::sqlite("opening the database file"))?;
        configure(&conn, options, true)?;
        Ok(conn)
    }

    fn assemble(
        mut conn: Connection,
        path: Option<PathBuf>,
        options: SqliteOptions,
    ) -> Result<Self, OpenError> {
        schema::migrate(&mut conn)?;
        let mut store = SqliteStore {
            conn,
            path,
            options,
            poisoned: None,
            types: Types::default(),
        };
        store.load_types()?;
        Ok(store)
    }

    /// The store's connection, for the application's own SQL. Writes to
    /// tracked tables are captured.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The database file, if not in memory.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The options it was opened with.
    pub fn options(&self) -> &SqliteOptions {
        &self.options
    }

    /// Why the store refuses writes, if it does.
    pub fn poisoned(&self) -> Option<&str> {
        self.poisoned.as_deref()
    }

    /// Tracks `table`: adds the sync columns it lacks, gives existing rows
    /// sync keys (they become changes to send), and installs the capture
    /// triggers. Idempotent: call it again after altering the table so new
    /// columns sync. Returns the entity type to register in the engine's
    /// registry. Nothing changes when it fails.
    pub fn track_table(
        &mut self,
        table: &str,
        options: TrackOptions,
    ) -> Result<EntityType, TrackError> {
        self.check_poison()?;
        if tracking::reserved(table) {
            return Err(TrackError::Reserved {
                table: table.to_owned(),
            });
        }
        let type_name = options
            .entity_type_name
            .clone()
            .or_else(|| options.entity_type.as_ref().map(|t| t.name().to_owned()))
            .unwrap_or_else(|| table.to_owned());
        if let Some(t) = &options.entity_type {
            if t.name() != type_name {
                return Err(TrackError::TypeMismatch {
                    entity_type: t.name().to_owned(),
                    table: table.to_owned(),
                    reason: format!("TrackOptions names the type {type_name}; use one name"),
                });
            }
        }
        let remembered = Remembered::from_options(&options);
        let mut tracked = self.tracked_tables();
        tracked.insert(
            table.to_owned(),
            (type_name.clone(), remembered.key.clone()),
        );
        let edited = {
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(TrackError::sqlite(table, "starting a transaction"))?;
            let (_, edited) =
                tracking::install(&tx, table, &type_name, &remembered, self.path.is_some())?;
            // Map it before committing, so a table that cannot be mapped is
            // not left half tracked.
            tracking::describe(
                &tx,
                &type_name,
                table,
                &remembered,
                Some(&options),
                &Peers { tracked: &tracked },
            )?;
            tx.commit()
                .map_err(TrackError::sqlite(table, "committing"))?;
            edited
        };
        if edited {
            self.reconnect()?;
        }
        self.load_types_with(Some((table, &options)))?;
        self.types
            .by_name(&type_name)
            .and_then(|t| t.table)
            .map(|t| t.entity_type.clone())
            .ok_or_else(|| TrackError::NoSuchTable {
                table: table.to_owned(),
            })
    }

    /// The entity type of a tracked table, by type name.
    pub fn entity_type(&self, name: &str) -> Option<EntityType> {
        self.types
            .by_name(name)?
            .table
            .map(|t| t.entity_type.clone())
    }

    /// A registry with the entity types of every tracked table.
    pub fn registry(&self) -> EntityRegistry {
        let mut registry = EntityRegistry::new();
        for entry in self.types.by_name.values() {
            if let Some(table) = &entry.table {
                registry.register(table.entity_type.clone());
            }
        }
        registry
    }

    /// Tracked tables: table name to (type name, key column).
    fn tracked_tables(&self) -> BTreeMap<String, (String, String)> {
        self.types
            .by_name
            .values()
            .filter_map(|e| e.table.as_ref())
            .map(|t| (t.table.clone(), (t.type_name.clone(), t.key.clone())))
            .collect()
    }

    fn reconnect(&mut self) -> Result<(), TrackError> {
        if let Some(path) = &self.path {
            let conn = Self::connect(path, &self.options).map_err(|e| {
                TrackError::Store(StoreError::backend(
                    "reopening the database after tracking a table",
                    e,
                ))
            })?;
            self.conn = conn;
        }
        Ok(())
    }

    fn load_types(&mut self) -> Result<(), OpenError> {
        self.load_types_with(None).map_err(OpenError::from)
    }

    /// Reloads the registered types, mapping every tracked table again (the
    /// one being tracked with the caller's options).
    fn load_types_with(
        &mut self,
        current: Option<(&str, &TrackOptions)>,
    ) -> Result<(), TrackError> {
        let previous: HashMap<String, EntityType> = self
            .types
            .by_name
            .values()
            .filter_map(|e| e.table.as_ref())
            .map(|t| (t.table.clone(), t.entity_type.clone()))
            .collect();
        let cookie = schema_cookie(&self.conn)?;
        let rows: Vec<(i64, String, Option<String>, Option<String>)> = {
            let mut stmt = self.conn.prepare(
                "SELECT type_id, name, table_name, options FROM _sync_types ORDER BY type_id",
            )?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                .collect::<Result<_, _>>()?
        };
        let known_columns = columns::known(&self.conn)?;
        let tracked: BTreeMap<String, (String, String)> = rows
            .iter()
            .filter_map(|(_, name, table, options)| {
                let remembered = Remembered::from_json(options.as_deref()?)?;
                Some((table.clone()?, (name.clone(), remembered.key)))
            })
            .collect();
        let mut types = Types {
            cookie,
            ..Types::default()
        };
        let mut noticed = Vec::new();
        for (id, name, table, options) in rows {
            let table = match (table, options) {
                (Some(table), Some(options)) => {
                    let remembered = Remembered::from_json(&options).ok_or_else(|| {
                        TrackError::TypeMismatch {
                            entity_type: name.clone(),
                            table: table.clone(),
                            reason:
                                "its registration in _sync_types is damaged; track the table again"
                                    .into(),
                        }
                    })?;
                    let track_options = current.filter(|(t, _)| *t == table).map(|(_, o)| o);
                    let mut mapped = tracking::describe(
                        &self.conn,
                        &name,
                        &table,
                        &remembered,
                        track_options,
                        &Peers { tracked: &tracked },
                    )?;
                    // Keep a caller-supplied type across reloads; a derived
                    // one keeps its strategy (a resolver is not stored) and
                    // versioning but takes the fields mapped now: a column
                    // may have become a reference since (its parent table
                    // was tracked after it, as with records that reference
                    // each other).
                    if track_options.is_none() {
                        if let Some(t) = previous.get(&table) {
                            mapped.entity_type = match remembered.kinds.is_empty() {
                                true => mapped
                                    .entity_type
                                    .clone()
                                    .strategy(t.conflict_strategy().clone())
                                    .versioning(t.versioning_enabled()),
                                false => t.clone(),
                            };
                        }
                    }
                    if let Some(change) =
                        columns::Change::between(id, known_columns.get(&id), &mapped)
                    {
                        noticed.push(change);
                    }
                    Some(Arc::new(mapped))
                }
                _ => None,
            };
            types.insert(TypeEntry { id, name, table });
        }
        if !noticed.is_empty() {
            self.check_poison()?;
            columns::record(&mut self.conn, &noticed)?;
        }
        self.types = types;
        Ok(())
    }

    /// Reloads the type cache if a rolled-back transaction may have left it
    /// out of date, or the schema changed since it was mapped (a column
    /// added by any connection is read, and sent, from then on).
    pub(crate) fn refresh_types(&mut self) -> Result<(), StoreError> {
        let cookie = schema_cookie(&self.conn)
            .map_err(|e| StoreError::backend("reading the schema version", e))?;
        if self.types.stale || cookie != self.types.cookie {
            self.load_types_with(None).map_err(|e| match e {
                TrackError::Store(e) => e,
                other => StoreError::Corrupt {
                    detail: other.to_string(),
                },
            })?;
        }
        Ok(())
    }

    /// The type named `name`, registering it (without a table) if new.
    pub(crate) fn type_for_write(&mut self, name: &str) -> Result<TypeEntry, StoreError> {
        if let Some(entry) = self.types.by_name(name) {
            return Ok(entry);
        }
        let inserted = self
            .conn
            .prepare_cached("INSERT INTO _sync_types(name) VALUES (?1)")
            .and_then(|mut s| s.execute([name]));
        if let Err(e) = inserted {
            return Err(self.failed("registering a new entity type", e));
        }
        let entry = TypeEntry {
            id: self.conn.last_insert_rowid(),
            name: name.to_owned(),
            table: None,
        };
        self.types.insert(entry.clone());
        Ok(entry)
    }

    pub(crate) fn check_poison(&self) -> Result<(), StoreError> {
        match &self.poisoned {
            Some(reason) => Err(StoreError::Poisoned {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    pub(crate) fn poison(&mut self, reason: String) {
        self.poisoned.get_or_insert(reason);
    }

    /// Converts a failed write, poisoning the store when the database is in
    /// doubt.
    pub(crate) fn failed(&mut self, context: &str, e: rusqlite::Error) -> StoreError {
        if error::poisons(&e) {
            self.poison(format!("{context} failed: {e}"));
        }
        StoreError::backend(context.to_owned(), e)
    }

    pub(crate) fn poison_if_backend(&mut self, e: &StoreError) {
        if let StoreError::Backend { source, context } = e {
            if let Some(sqlite) = source.downcast_ref::<rusqlite::Error>() {
                if error::poisons(sqlite) {
                    self.poison(format!("{context} failed: {sqlite}"));
                }
            }
        }
    }
}

fn schema_cookie(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA schema_version", [], |r| r.get(0))
}

fn configure(conn: &Connection, options: &SqliteOptions, wal: bool) -> Result<(), OpenError> {
    conn.busy_timeout(options.busy_timeout)
        .map_err(OpenError::sqlite("setting the busy timeout"))?;
    conn.set_prepared_statement_cache_capacity(options.statement_cache);
    if wal {
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(OpenError::sqlite("switching to WAL mode"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(OpenError::NoWal { mode });
        }
    }
    let synchronous = match options.durability {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
    };
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {synchronous}; PRAGMA foreign_keys = ON;"
    ))
    .map_err(OpenError::sqlite("setting synchronous and foreign_keys"))
}

impl Store for SqliteStore {
    type Txn<'a> = SqliteTxn<'a>;

    fn begin(&mut self) -> Result<Self::Txn<'_>, StoreError> {
        SqliteTxn::begin(self)
    }
}
