//! Exchanges/s and changes/s with one, two and three hub engines (each on
//! its own connection, as separate hub processes would be) on one
//! PostgreSQL database, against one hub on SQLite: four nodes (memory
//! stores) in threads, each writing 20 reports per session and syncing
//! through the hubs in turn. Prints one line per setup.
//!
//! `cargo bench -p sync-store-postgres --bench hubs` (a throwaway server,
//! or `SYNCPLAN_PG_URL`).

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use sync_conformance::fixtures::{REPORT, hub_info, key, node_info, record, registry, t};
use sync_core::{ConflictStrategy, Engine, EngineConfig, Store, Value};
use sync_store_memory::MemoryStore;
use sync_store_postgres::{PgOptions, PgStore, cluster};
use sync_store_sqlite::{SqliteOptions, SqliteStore};

const NODES: usize = 4;
const SESSIONS: usize = 10;
const PER_SESSION: usize = 20;

/// CPU seconds this process has used (user + system), from /proc.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn run<S: Store + Send>(label: &str, stores: Vec<S>) {
    let registry = registry(ConflictStrategy::LastWriterWins);
    let mut stores = stores.into_iter();
    let mut first = Engine::new(
        stores.next().expect("a store"),
        registry.clone(),
        EngineConfig::default().seed(1),
        hub_info(),
    )
    .expect("hub");
    for i in 0..NODES {
        first.register_peer(node_info(i)).expect("register");
    }
    let mut hubs = vec![Mutex::new(first)];
    for (n, store) in stores.enumerate() {
        let engine = Engine::open(
            store,
            registry.clone(),
            EngineConfig::default().seed(2 + n as u64),
        )
        .expect("another hub");
        hubs.push(Mutex::new(engine));
    }
    let exchanges = AtomicUsize::new(0);
    let failed = AtomicUsize::new(0);
    let started = Instant::now();
    let cpu = cpu_secs();
    std::thread::scope(|scope| {
        for i in 0..NODES {
            let (hubs, exchanges, failed, registry) = (&hubs, &exchanges, &failed, &registry);
            scope.spawn(move || {
                let mut node = Engine::new(
                    MemoryStore::new(),
                    registry.clone(),
                    EngineConfig::default().seed(100 + i as u64),
                    node_info(i),
                )
                .expect("node");
                node.register_peer(hub_info()).expect("register");
                let mut turn = i;
                for s in 0..SESSIONS {
                    let now = t(s as i64 + 1);
                    for k in 0..PER_SESSION {
                        let id = (i * 1_000_000 + s * 1_000 + k) as u128;
                        let fields = record([
                            ("date", Value::Text("2025-12-12".into())),
                            ("hours", Value::Int(k as i64)),
                        ]);
                        node.put(key(REPORT, id), fields, now).expect("write");
                    }
                    node.start_sync(hub_info().id).expect("start");
                    while let Some(packet) = node.poll_transmit(now).expect("poll") {
                        turn += 1;
                        let hub = &hubs[turn % hubs.len()];
                        let reply = hub.lock().expect("hub").respond(&packet.bytes, now);
                        exchanges.fetch_add(1, Ordering::Relaxed);
                        let handled = reply
                            .map_err(drop)
                            .and_then(|r| node.handle_incoming(&r, now).map_err(drop));
                        if handled.is_err() {
                            // What a node does without a reply: it tries
                            // again in its next session.
                            failed.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                    }
                }
            });
        }
    });
    let secs = started.elapsed().as_secs_f64();
    let cpu = cpu_secs() - cpu;
    let exchanges = exchanges.into_inner();
    let failed = failed.into_inner();
    let changes = NODES * SESSIONS * PER_SESSION;
    println!(
        "{label}: {exchanges} exchanges ({failed} failed), {changes} changes up in {secs:.2} s: \
         {:.0} exchanges/s, {:.0} changes/s; this process {cpu:.2} CPU s",
        exchanges as f64 / secs,
        changes as f64 / secs,
    );
}

fn main() {
    let url = cluster::test_url().unwrap_or_else(|e| panic!("{e}"));
    // The first round warms the server up (catalog caches, statements).
    for hubs in [1, 1, 2, 3] {
        let first = PgStore::connect(
            &url,
            PgOptions::new()
                .schema(cluster::unique_schema("bench"))
                .temporary(true),
        )
        .expect("connect");
        let mut stores = vec![];
        for _ in 1..hubs {
            stores.push(first.reconnect().expect("connect"));
        }
        stores.insert(0, first);
        run(&format!("postgres, {hubs} hub engine(s)"), stores);
    }
    let dir = tempfile::tempdir().expect("dir");
    let sqlite =
        SqliteStore::open(dir.path().join("hub.db"), SqliteOptions::default()).expect("sqlite hub");
    run("sqlite, 1 hub engine", vec![sqlite]);
}
