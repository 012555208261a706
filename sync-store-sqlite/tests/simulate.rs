//! The deterministic simulator of sync-conformance, run on SQLite stores
//! kept in files: a backup is a `VACUUM INTO` copy, a restore opens a copy
//! of that backup in place of the store, and a restart after a crash closes
//! and reopens the file (everything uncommitted is gone).
//!
//! `cargo test` runs a bounded number of seeds; set `SYNCPLAN_SQLITE_SIM_SEEDS`
//! for more.

use std::path::PathBuf;

use sync_conformance::sim::stores::SimStores;
use sync_conformance::sim::{self, SimConfig};
use sync_store_sqlite::{Durability, SqliteOptions, SqliteStore};

/// Creates SQLite stores as files in one temporary directory.
struct SqliteStores {
    dir: tempfile::TempDir,
    files: u64,
}

impl SqliteStores {
    fn new() -> Self {
        SqliteStores {
            dir: tempfile::tempdir().expect("temporary directory"),
            files: 0,
        }
    }

    /// A fresh file name: stores, backups and restored copies never share one.
    fn file(&mut self, name: &str) -> PathBuf {
        self.files += 1;
        self.dir.path().join(format!("{name}-{}.db", self.files))
    }

    fn open(path: &PathBuf) -> SqliteStore {
        // Normal durability: the simulation crashes processes, not machines,
        // and a commit in WAL mode survives a process crash either way.
        let options = SqliteOptions::default().durability(Durability::Normal);
        SqliteStore::open(path, options).expect("open a simulated SQLite store")
    }
}

impl SimStores for SqliteStores {
    type Store = SqliteStore;
    type Snapshot = PathBuf;

    fn create(&mut self, name: &str) -> SqliteStore {
        let path = self.file(name);
        Self::open(&path)
    }

    fn snapshot(&mut self, store: &SqliteStore) -> PathBuf {
        let path = self.file("backup");
        store
            .connection()
            .execute("VACUUM INTO ?1", [path.to_string_lossy()])
            .expect("back up a SQLite store");
        path
    }

    fn restore(&mut self, name: &str, snapshot: &PathBuf) -> SqliteStore {
        let path = self.file(name);
        std::fs::copy(snapshot, &path).expect("copy a backup");
        Self::open(&path)
    }

    fn reopen(&mut self, _name: &str, store: SqliteStore) -> SqliteStore {
        let path = store.path().expect("a file-backed store").to_path_buf();
        drop(store);
        Self::open(&path)
    }
}

fn seeds() -> u64 {
    std::env::var("SYNCPLAN_SQLITE_SIM_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24)
}

/// Seeds `start, start + stride, ...` on SQLite stores: every invariant holds.
fn run_seeds(start: u64, stride: u64) {
    let mut failures = Vec::new();
    let mut seed = start;
    while seed < seeds() {
        let config = SimConfig::new(seed).nodes(4).ops(200);
        let report = sim::run_with(config, SqliteStores::new());
        if !report.passed() {
            failures.push(report.failure());
        }
        seed += stride;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn simulated_seeds_hold_on_sqlite_even() {
    run_seeds(0, 2);
}

#[test]
fn simulated_seeds_hold_on_sqlite_odd() {
    run_seeds(1, 2);
}
