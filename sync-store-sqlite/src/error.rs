//! Errors of opening a store and tracking tables, and how SQLite failures
//! become [`StoreError`]s (including which ones poison the store).

use rusqlite::ErrorCode;
use sync_core::StoreError;

/// Opening a store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// SQLite refused an operation.
    #[error("could not open the SQLite store while {context}: {source}")]
    Sqlite {
        /// What the store was doing.
        context: String,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The database was written by a newer version of this crate.
    #[error(
        "the database's sync tables have schema version {found}, newer than the {supported} this build knows; upgrade syncplan to open it"
    )]
    NewerSchema {
        /// Version found in the database.
        found: i64,
        /// Newest version this build understands.
        supported: i64,
    },
    /// The database could not be switched to WAL mode.
    #[error(
        "SQLite kept journal mode {mode:?} instead of WAL; use a local file system (network file systems cannot hold a WAL database)"
    )]
    NoWal {
        /// The journal mode SQLite reported.
        mode: String,
    },
    /// A tracked table's registration in the database no longer matches the
    /// table.
    #[error(transparent)]
    Track(#[from] TrackError),
}

impl OpenError {
    pub(crate) fn sqlite(context: &str) -> impl FnOnce(rusqlite::Error) -> OpenError + '_ {
        move |source| OpenError::Sqlite {
            context: context.to_owned(),
            source,
        }
    }
}

/// Tracking a table failed; nothing was changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrackError {
    /// No such table.
    #[error("there is no table named {table:?} in this database; create it before tracking it")]
    NoSuchTable {
        /// The name asked for.
        table: String,
    },
    /// The table name is reserved for the store's own tables.
    #[error("{table:?} is one of syncplan's own tables and cannot be tracked")]
    Reserved {
        /// The name asked for.
        table: String,
    },
    /// Another table is already tracked under this entity type name.
    #[error(
        "entity type {entity_type:?} is already tracked as table {other:?}; give {table:?} another name with TrackOptions::entity_type_name"
    )]
    TypeTaken {
        /// The entity type name.
        entity_type: String,
        /// The table asked for.
        table: String,
        /// The table already registered under that name.
        other: String,
    },
    /// An existing column cannot serve as a sync column.
    #[error(
        "column {table}.{column} cannot be used as the {role} column: {reason}; name another column for it in TrackOptions"
    )]
    BadColumn {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// What syncplan wanted it for.
        role: &'static str,
        /// Why it does not fit.
        reason: String,
    },
    /// The caller's entity type does not match the table.
    #[error("entity type {entity_type} does not fit table {table}: {reason}")]
    TypeMismatch {
        /// The entity type.
        entity_type: String,
        /// The table.
        table: String,
        /// What does not match.
        reason: String,
    },
    /// The store refuses writes after an earlier failure.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// SQLite refused an operation.
    #[error("could not track table {table} while {context}: {source}")]
    Sqlite {
        /// The table.
        table: String,
        /// What the store was doing.
        context: String,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
}

impl TrackError {
    pub(crate) fn sqlite<'a>(
        table: &'a str,
        context: &'a str,
    ) -> impl FnOnce(rusqlite::Error) -> TrackError + 'a {
        move |source| TrackError::Sqlite {
            table: table.to_owned(),
            context: context.to_owned(),
            source,
        }
    }
}

/// Whether a failed write leaves the database in a state the store cannot
/// vouch for (I/O error, full disk, corruption...), so that it must refuse
/// further writes. Constraint violations, a busy database and misuse leave
/// the transaction intact and are rolled back as usual.
pub(crate) fn poisons(error: &rusqlite::Error) -> bool {
    match error.sqlite_error_code() {
        Some(
            ErrorCode::ConstraintViolation
            | ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::ApiMisuse
            | ErrorCode::TooBig
            | ErrorCode::TypeMismatch
            | ErrorCode::OperationInterrupted,
        ) => false,
        Some(_) => true,
        // Errors raised by rusqlite itself (conversions, wrong parameter
        // counts) say nothing about the database file.
        None => false,
    }
}
