//! Errors of connecting to a store, and how PostgreSQL failures become
//! [`StoreError`]s.

use sync_core::StoreError;

/// Connecting to a store, or migrating its tables, failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// PostgreSQL refused an operation.
    #[error("could not open the PostgreSQL store while {context}: {source}")]
    Postgres {
        /// What the store was doing.
        context: String,
        /// The client's error.
        #[source]
        source: postgres::Error,
    },
    /// The schema name is not a plain lower-case SQL identifier.
    #[error(
        "{schema:?} cannot name the store's schema: use lower-case letters, digits and '_', starting with a letter or '_', at most 63 characters"
    )]
    BadSchemaName {
        /// The name asked for.
        schema: String,
    },
    /// The schema's sync tables were written by a newer version of this crate.
    #[error(
        "the sync tables in schema {schema:?} have version {found}, newer than the {supported} this build knows; upgrade every hub process before it connects"
    )]
    NewerSchema {
        /// The schema.
        schema: String,
        /// Version found in the database.
        found: i32,
        /// Newest version this build understands.
        supported: i32,
    },
    /// There is no such table to track.
    #[error(
        "there is no table {table:?} in schema {schema:?}; create it (in the store's schema) before tracking it"
    )]
    NoSuchTable {
        /// The table asked for.
        table: String,
        /// The store's schema.
        schema: String,
    },
    /// The target of a copy already exists.
    #[error("schema {schema:?} already exists; copy a store into a schema that does not")]
    SchemaExists {
        /// The schema asked for.
        schema: String,
    },
}

impl OpenError {
    pub(crate) fn pg(context: &str) -> impl FnOnce(postgres::Error) -> OpenError + '_ {
        move |source| OpenError::Postgres {
            context: context.to_owned(),
            source,
        }
    }
}

/// The error for a failed statement while `context`.
pub(crate) fn backend(context: &'static str) -> impl Fn(postgres::Error) -> StoreError {
    move |e| StoreError::backend(context, e)
}

/// Stored data that cannot be read back.
pub(crate) fn corrupt(detail: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        detail: detail.into(),
    }
}
