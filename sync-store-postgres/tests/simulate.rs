//! The deterministic simulator of sync-conformance, run on PostgreSQL
//! stores: the hub and every node in a schema of their own. A backup is a
//! copy of the schema ([`PgStore::copy_to`]), a restore copies that backup
//! into a new schema, and a restart after a crash closes the connection and
//! connects again (the server rolled back everything uncommitted).
//!
//! `cargo test` runs 100 seeds; set `SYNCPLAN_PG_SIM_SEEDS` for more.

mod common;

use sync_conformance::sim::stores::SimStores;
use sync_conformance::sim::{self, SimConfig};
use sync_store_postgres::{PgOptions, PgStore, cluster};

/// Creates stores in fresh schemas, and drops every one at the end.
struct PgStores {
    url: String,
    schemas: Vec<String>,
}

impl PgStores {
    fn new() -> Self {
        PgStores {
            url: common::url(),
            schemas: Vec::new(),
        }
    }

    fn open(&self, schema: &str) -> PgStore {
        PgStore::connect(&self.url, PgOptions::new().schema(schema))
            .expect("connect a simulated store")
    }

    fn new_schema(&mut self, name: &str) -> String {
        let schema = cluster::unique_schema(&format!("sim_{}", name.replace('-', "_")));
        self.schemas.push(schema.clone());
        schema
    }
}

impl Drop for PgStores {
    fn drop(&mut self) {
        if let Ok(mut client) = postgres::Client::connect(&self.url, postgres::NoTls) {
            let list = self.schemas.join(", ");
            let _ = client.batch_execute(&format!("DROP SCHEMA IF EXISTS {list} CASCADE"));
        }
    }
}

impl SimStores for PgStores {
    type Store = PgStore;
    type Snapshot = String;

    fn create(&mut self, name: &str) -> PgStore {
        let schema = self.new_schema(name);
        self.open(&schema)
    }

    fn snapshot(&mut self, store: &PgStore) -> String {
        let backup = self.new_schema("backup");
        // The simulator holds the store by reference; a second connection
        // to its schema reads the same committed state.
        let mut source = self.open(store.schema());
        source.copy_to(&backup).expect("back up a store");
        backup
    }

    fn restore(&mut self, name: &str, snapshot: &String) -> PgStore {
        let schema = self.new_schema(name);
        self.open(snapshot)
            .copy_to(&schema)
            .expect("restore a backup");
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
        let config = SimConfig::new(seed).nodes(3).ops(60);
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
