//! The shared store suite of sync-conformance, run on SQLite stores (in
//! memory, entity types without tables), and its fidelity cases on a tracked
//! table.

use sync_store_sqlite::{SqliteOptions, SqliteStore, TrackOptions};

fn fresh() -> SqliteStore {
    SqliteStore::open_in_memory(SqliteOptions::default()).expect("open an in-memory SQLite store")
}

sync_conformance::store_suite!(sqlite, fresh);

/// A store tracking a table for the suite's report type with columns
/// `date` and `hours` only: every other field has no column.
fn tracked() -> SqliteStore {
    let mut store = fresh();
    store
        .connection()
        .execute_batch("CREATE TABLE report(id INTEGER PRIMARY KEY, date TEXT, hours INTEGER)")
        .expect("create the report table");
    store
        .track_table(
            "report",
            TrackOptions::new().entity_type_name(sync_conformance::fixtures::REPORT),
        )
        .expect("track the report table");
    store
}

sync_conformance::fidelity_suite!(sqlite_tracked, tracked);

#[test]
fn the_removal_marker_is_the_stores() {
    assert_eq!(
        sync_conformance::store_suite::fidelity::REMOVED_FIELD,
        sync_store_sqlite::REMOVED_FIELD
    );
}
