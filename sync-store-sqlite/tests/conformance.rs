//! The shared store suite of sync-conformance, run on SQLite stores (in
//! memory, entity types without tables).

use sync_store_sqlite::{SqliteOptions, SqliteStore};

fn fresh() -> SqliteStore {
    SqliteStore::open_in_memory(SqliteOptions::default()).expect("open an in-memory SQLite store")
}

sync_conformance::store_suite!(sqlite, fresh);
