//! Applying the hub's schema migrations (see [`sync_core::migration`]) to a
//! SQLite node: each script in one transaction with the tracked tables
//! re-tracked and the new schema version recorded, so a crash leaves the
//! database either before the migration or after all of it.

use rusqlite::TransactionBehavior;
use sync_core::migration::SCHEMA_META_KEY;
use sync_core::{
    Engine, Migration, MigrationFailure, SchemaVersion, StoreError, SyncError, Timestamp,
};

use crate::options::TrackOptions;
use crate::tracking::{self, Peers, Remembered};
use crate::{SqliteStore, records};

/// A migration the store could not apply; nothing of it was kept.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MigrationError {
    /// The script failed.
    #[error("the migration to schema {version} ({description}) failed in its SQL: {message}")]
    Script {
        /// The version it brings.
        version: SchemaVersion,
        /// What it changes.
        description: String,
        /// SQLite's error.
        message: String,
    },
    /// A table could not be tracked (again) after the script.
    #[error(
        "after the migration to schema {version}, table {table:?} could not be tracked: {message}"
    )]
    Track {
        /// The version it brings.
        version: SchemaVersion,
        /// The table.
        table: String,
        /// Why.
        message: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What [`apply_migrations`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MigrationReport {
    /// The versions applied, in order.
    pub applied: Vec<SchemaVersion>,
    /// The migration that failed (the ones after it were not tried). The
    /// engine recorded it and reports it to the hub.
    pub failed: Option<MigrationFailure>,
}

impl SqliteStore {
    /// The schema version the last applied migration brought this database
    /// to (`None`: never migrated). Give it to the engine when opening it
    /// ([`sync_core::EngineConfig::schema_version`]).
    pub fn schema_version(&self) -> Result<Option<SchemaVersion>, StoreError> {
        Ok(records::meta(&self.conn, SCHEMA_META_KEY)?
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|text| text.parse().ok()))
    }

    /// Applies `migration` in one transaction: its script, then every
    /// tracked table and the tables it names re-tracked (triggers and sync
    /// columns for its new columns), then its version recorded. Returns
    /// `false` without doing anything when the database is already at that
    /// version or later. Nothing is kept when it fails.
    pub fn apply_migration(&mut self, migration: &Migration) -> Result<bool, MigrationError> {
        self.check_poison()?;
        if self
            .schema_version()?
            .is_some_and(|at| at >= migration.version)
        {
            return Ok(false);
        }
        let version = migration.version;
        let mut tracked = self.tracked_tables();
        let remembered = self.remembered_options()?;
        let edit_defaults = self.path.is_some();
        let mut edited = false;
        {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| StoreError::backend("starting a migration", e))?;
            tx.execute_batch(&migration.sqlite_sql)
                .map_err(|e| MigrationError::Script {
                    version,
                    description: migration.description.clone(),
                    message: e.to_string(),
                })?;
            let track_err = |table: &str| {
                let table = table.to_owned();
                move |e: crate::TrackError| MigrationError::Track {
                    version,
                    table,
                    message: e.to_string(),
                }
            };
            let mut tables: Vec<(String, String, Remembered)> = remembered;
            for table in &migration.track_tables {
                if !tables.iter().any(|(t, _, _)| t == table) {
                    let options = TrackOptions::new();
                    let remembered = Remembered::from_options(&options);
                    tracked.insert(table.clone(), (table.clone(), remembered.key.clone()));
                    tables.push((table.clone(), table.clone(), remembered));
                }
            }
            for (table, type_name, remembered) in &tables {
                let (_, edits) =
                    tracking::install(&tx, table, type_name, remembered, edit_defaults)
                        .map_err(track_err(table))?;
                edited |= edits;
                tracking::describe(
                    &tx,
                    type_name,
                    table,
                    remembered,
                    None,
                    &Peers { tracked: &tracked },
                )
                .map_err(track_err(table))?;
            }
            records::put_meta(&tx, SCHEMA_META_KEY, Some(version.to_string().as_bytes()))
                .map_err(|e| StoreError::backend("recording the schema version", e))?;
            tx.commit()
                .map_err(|e| StoreError::backend("committing a migration", e))?;
        }
        if edited {
            self.reconnect().map_err(|e| match e {
                crate::TrackError::Store(e) => MigrationError::Store(e),
                e => MigrationError::Store(StoreError::backend("reopening", e)),
            })?;
        }
        self.load_types_with(None).map_err(|e| match e {
            crate::TrackError::Store(e) => MigrationError::Store(e),
            e => MigrationError::Track {
                version,
                table: String::new(),
                message: e.to_string(),
            },
        })?;
        Ok(true)
    }

    /// Every tracked table with its type name and remembered options.
    fn remembered_options(&self) -> Result<Vec<(String, String, Remembered)>, StoreError> {
        let read = |e| StoreError::backend("reading the tracked tables", e);
        let mut stmt = self
            .conn
            .prepare(
                "SELECT table_name, name, options FROM _sync_types \
                 WHERE table_name IS NOT NULL AND options IS NOT NULL ORDER BY type_id",
            )
            .map_err(read)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(read)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(read)?;
        Ok(rows
            .into_iter()
            .filter_map(|(table, name, options)| {
                Some((table, name, Remembered::from_json(&options)?))
            })
            .collect())
    }
}

/// Applies the migrations the hub sent to `engine`'s SQLite store, oldest
/// first, each in its own transaction (see [`SqliteStore::apply_migration`]),
/// registers the entity types of the migrated tables in the engine, and
/// tells the engine ([`Engine::migration_applied`]). Stops at the first
/// failure, which the engine records and reports to the hub
/// ([`Engine::migration_failed`]); call it again after a fix. Call it after
/// a sync that brought [`sync_core::Event::MigrationsReceived`], or before
/// every sync: with nothing pending it does nothing.
pub fn apply_migrations(
    engine: &mut Engine<SqliteStore>,
    now: Timestamp,
) -> Result<MigrationReport, SyncError> {
    let mut report = MigrationReport::default();
    for migration in engine.pending_migrations()? {
        match engine.store_mut().apply_migration(&migration) {
            Ok(_) => {
                // The migrated tables' fields, with the strategy and
                // versioning the application registered.
                let types: Vec<_> = engine.store().registry().types().cloned().collect();
                for mapped in types {
                    let entity_type = match engine.registry().get(mapped.name()) {
                        Some(known) => mapped
                            .strategy(known.conflict_strategy().clone())
                            .versioning(known.versioning_enabled()),
                        None => mapped,
                    };
                    engine.register_type(entity_type);
                }
                engine.migration_applied(migration.version, now)?;
                report.applied.push(migration.version);
            }
            Err(MigrationError::Store(e)) => return Err(e.into()),
            Err(e) => {
                engine.migration_failed(migration.version, e.to_string(), now)?;
                report.failed = Some(MigrationFailure {
                    version: migration.version,
                    message: e.to_string(),
                });
                break;
            }
        }
    }
    Ok(report)
}
