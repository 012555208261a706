//! Schema migrations distributed by the hub.
//!
//! The hub holds versioned migrations ([`crate::EngineConfig::migration`]).
//! A node whose schema is older than the hub's newest migration receives the
//! pending ones, oldest first, in a packet that carries no entity changes
//! ([`crate::Event::MigrationsReceived`]); the hub sends no entity change to
//! it until its packets name the new version. A node the hub would refuse
//! outright (older than the hub's minimum) is not refused when migrations
//! lead it past the minimum: its packet waits, unapplied, and the reply
//! carries the migrations.
//!
//! The engine does no IO, so it does not run the scripts: the store's
//! driver does ([`crate::Engine::pending_migrations`], then
//! [`crate::Engine::migration_applied`] or
//! [`crate::Engine::migration_failed`]); `sync-store-sqlite`'s
//! `apply_migrations` runs each script in one transaction with the tables
//! re-tracked. A failure is reported to the hub with every packet
//! ([`crate::Event::NodeMigrationFailed`] there, and
//! [`crate::Engine::migration_failures`]) and blocks the node's entity
//! changes from the hub until a retry succeeds, for example once the hub
//! ships a fixed script for the same version.
//!
//! Migrations stay within the hub's major version: entity changes from a
//! node still on an older minor version keep flowing both ways once it is
//! at the hub's minimum, with unknown fields kept.
//!
//! ```
//! use sync_core::{EngineConfig, Migration, SchemaVersion};
//!
//! let v1_1 = SchemaVersion::new(1, 1, 0);
//! let hub_config = EngineConfig::default()
//!     .schema_version(v1_1)
//!     .min_peer_schema(v1_1)
//!     .migration(Migration::sqlite(
//!         v1_1,
//!         "ALTER TABLE daily_report ADD COLUMN note TEXT",
//!         "daily reports get a note",
//!     ));
//! assert_eq!(hub_config.migrations_after(SchemaVersion::new(1, 0, 0)).len(), 1);
//! assert!(hub_config.migrations_after(v1_1).is_empty());
//! ```

use crate::schema_version::SchemaVersion;

/// One migration: the schema version it brings a node to, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Migration {
    /// The node's schema version once it is applied.
    pub version: SchemaVersion,
    /// The SQL script for SQLite nodes, run in one transaction.
    pub sqlite_sql: String,
    /// For a person: what it changes.
    pub description: String,
    /// Tables the script creates that sync from then on (tables already
    /// tracked are re-tracked anyway, so new columns sync).
    pub track_tables: Vec<String>,
}

impl Migration {
    /// A migration to `version` by a SQLite script.
    pub fn sqlite(
        version: SchemaVersion,
        sql: impl Into<String>,
        description: impl Into<String>,
    ) -> Self {
        Migration {
            version,
            sqlite_sql: sql.into(),
            description: description.into(),
            track_tables: Vec::new(),
        }
    }

    /// Also tracks `table` (one the script creates) once applied.
    pub fn track(mut self, table: impl Into<String>) -> Self {
        self.track_tables.push(table.into());
        self
    }
}

/// A migration a node could not apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrationFailure {
    /// The version the failed migration brings.
    pub version: SchemaVersion,
    /// The store's error, for a person.
    pub message: String,
}

impl std::fmt::Display for MigrationFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the migration to schema {} failed: {}; fix the cause (or ship a fixed script \
             for {} at the hub), then apply the pending migrations again",
            self.version, self.message, self.version
        )
    }
}

/// Where a node stands with the hub's migrations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MigrationStatus {
    /// Received from the hub and not applied yet, oldest first. While any is
    /// pending the hub sends no entity change to this node.
    pub pending: Vec<Migration>,
    /// The last attempt's failure, until a migration succeeds.
    pub failure: Option<MigrationFailure>,
}

impl MigrationStatus {
    /// Whether the node waits for a migration before it receives changes.
    pub fn blocked(&self) -> bool {
        !self.pending.is_empty()
    }
}

/// Meta key of the migrations a node received and has not applied.
pub(crate) const PENDING_KEY: &str = "migration/pending";
/// Meta key of a node's last failed migration.
pub(crate) const FAILURE_KEY: &str = "migration/failure";
/// Meta key prefix, at the hub, of each node's reported failure.
pub(crate) const NODE_FAILURE_PREFIX: &str = "migration/node-failure/";
/// Meta key of the schema version a store was migrated to. A store's
/// driver writes it in the migration's own transaction
/// (`sync-store-sqlite` does); [`crate::Engine::migration_applied`] writes
/// it too.
pub const SCHEMA_META_KEY: &str = "migration/schema";

pub(crate) mod wire {
    //! Protobuf forms, for the packet body and for the meta values.

    use prost::Message;
    use sync_proto::v1 as pb;

    use super::{Migration, MigrationFailure};

    pub fn migration_to_pb(m: &Migration) -> pb::Migration {
        pb::Migration {
            schema_version: m.version.to_string(),
            sqlite_sql: m.sqlite_sql.clone(),
            description: m.description.clone(),
            track_tables: m.track_tables.clone(),
        }
    }

    pub fn migration_from_pb(m: pb::Migration) -> Option<Migration> {
        Some(Migration {
            version: m.schema_version.parse().ok()?,
            sqlite_sql: m.sqlite_sql,
            description: m.description,
            track_tables: m.track_tables,
        })
    }

    pub fn failure_to_pb(f: &MigrationFailure) -> pb::MigrationFailure {
        pb::MigrationFailure {
            schema_version: f.version.to_string(),
            message: f.message.clone(),
        }
    }

    pub fn failure_from_pb(f: pb::MigrationFailure) -> Option<MigrationFailure> {
        Some(MigrationFailure {
            version: f.schema_version.parse().ok()?,
            message: f.message,
        })
    }

    /// A list of migrations as a meta value: a packet body holding only them.
    pub fn encode_list(list: &[Migration]) -> Vec<u8> {
        pb::PacketBody {
            migrations: list.iter().map(migration_to_pb).collect(),
            ..Default::default()
        }
        .encode_to_vec()
    }

    /// Reads a meta value written by [`encode_list`]; entries that do not
    /// parse are dropped (the hub sends them again).
    pub fn decode_list(bytes: &[u8]) -> Vec<Migration> {
        pb::PacketBody::decode(bytes)
            .map(|b| {
                b.migrations
                    .into_iter()
                    .filter_map(migration_from_pb)
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn encode_failure(f: &MigrationFailure) -> Vec<u8> {
        failure_to_pb(f).encode_to_vec()
    }

    pub fn decode_failure(bytes: &[u8]) -> Option<MigrationFailure> {
        pb::MigrationFailure::decode(bytes)
            .ok()
            .and_then(failure_from_pb)
    }
}
