//! The deterministic simulator of sync-conformance, run on PostgreSQL
//! stores: the hub and every node in a schema of their own. A backup copies
//! the store's rows into another schema ([`copy_schema`]), a restore copies
//! that backup into the schema of a new store, and a restart after a crash
//! closes the connection and connects again (the server rolled back
//! everything uncommitted).
//!
//! `cargo test` runs 100 seeds; set `SYNCPLAN_PG_SIM_SEEDS` for more.

mod common;

use std::sync::{Mutex, OnceLock};
use sync_conformance::sim::stores::SimStores;
use sync_conformance::sim::{self, SimConfig};

use sync_store_postgres::{PgOptions, PgStore, cluster, copy_schema};

/// Schemas that earlier seeds of this process used, free again (creating
/// the tables is what costs: a throwaway server's schemas are reused, an
/// existing server's are dropped after each seed).
static FREE: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Creates stores in schemas of their own, and gives every schema back at
/// the end.
struct PgStores {
    url: String,
    admin: postgres::Client,
    schemas: Vec<String>,
    reuse: bool,
}

impl PgStores {
    fn new() -> Self {
        let url = common::url();
        let admin = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
        PgStores {
            url,
            admin,
            schemas: Vec::new(),
            reuse: std::env::var_os("SYNCPLAN_PG_URL").is_none(),
        }
    }

    fn open(&self, schema: &str) -> PgStore {
        PgStore::connect(&self.url, PgOptions::new().schema(schema))
            .expect("connect a simulated store")
    }

    /// An empty store's schema: a free one emptied, or a new one.
    fn empty_schema(&mut self) -> String {
        let free = FREE.lock().expect("the free list").pop();
        let schema = match free {
            Some(schema) => {
                copy_schema(&mut self.admin, EMPTY.get().expect("made first"), &schema)
                    .expect("empty a schema");
                schema
            }
            None => {
                let schema = cluster::unique_schema("sim");
                drop(self.open(&schema));
                schema
            }
        };
        self.schemas.push(schema.clone());
        schema
    }
}

/// A schema holding an empty store, the source that empties reused ones.
static EMPTY: OnceLock<String> = OnceLock::new();

impl Drop for PgStores {
    fn drop(&mut self) {
        let schemas = std::mem::take(&mut self.schemas);
        if self.reuse {
            FREE.lock().expect("the free list").extend(schemas);
        } else if !schemas.is_empty() {
            let list = schemas.join(", ");
            let _ = self
                .admin
                .batch_execute(&format!("DROP SCHEMA IF EXISTS {list} CASCADE"));
        }
    }
}

impl SimStores for PgStores {
    type Store = PgStore;
    type Snapshot = String;

    fn create(&mut self, _name: &str) -> PgStore {
        EMPTY.get_or_init(|| {
            let schema = cluster::unique_schema("sim_empty");
            drop(self.open(&schema));
            schema
        });
        let schema = self.empty_schema();
        self.open(&schema)
    }

    fn snapshot(&mut self, store: &PgStore) -> String {
        let backup = self.empty_schema();
        copy_schema(&mut self.admin, store.schema(), &backup).expect("back up a store");
        backup
    }

    fn restore(&mut self, _name: &str, snapshot: &String) -> PgStore {
        let schema = self.empty_schema();
        copy_schema(&mut self.admin, snapshot, &schema).expect("restore a backup");
        self.open(&schema)
    }

    fn reopen(&mut self, _name: &str, store: PgStore) -> PgStore {
        let schema = store.schema().to_owned();
        drop(store);
        self.open(&schema)
    }
}

fn seeds() -> u64 {
    std::env::var("SYNCPLAN_PG_SIM_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100)
}

/// Seeds `start, start + stride, ...` on PostgreSQL stores: every
/// invariant holds.
fn run_seeds(start: u64, stride: u64) {
    let mut failures = Vec::new();
    let mut seed = start;
    while seed < seeds() {
        let config = SimConfig::new(seed).nodes(2).ops(40);
        let report = sim::run_with(config, PgStores::new());
        if !report.passed() {
            failures.push(report.failure());
        }
        seed += stride;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn simulated_seeds_hold_on_postgres_even() {
    run_seeds(0, 2);
}

#[test]
fn simulated_seeds_hold_on_postgres_odd() {
    run_seeds(1, 2);
}
