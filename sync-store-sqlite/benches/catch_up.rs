//! Catch-up at scale and the idle exchange (issue 9, item 7), on SQLite
//! stores in temporary files with full durability.
//!
//! Groups:
//! - `catch_up/next_packet`: a hub owing a fresh node 10,000 or 100,000
//!   changes builds its next packet. The cost follows the batch, not the
//!   backlog (entities are loaded one at a time up to the batch limits and
//!   the progress total is kept by difference); `catch_up/full_count` is
//!   the count of the whole backlog that every packet used to pay.
//! - `exchange/idle`: a node with nothing to send exchanges with a hub with
//!   nothing to send: one request, one reply, one commit at each end.
//! - `orphans/delete_parent`: the hub deletes a report that has no lines
//!   while it holds 0, 10,000 or 100,000 lines of another report. The
//!   orphan rule looks for the deleted report's live lines; the store
//!   contract has no reference index, so that read grows with the lines
//!   held.
//! - `scopes/next_packet`: the hub's next packet for a node owed 10,000
//!   reports under a scope rule (`brigade = node.brigade`): with every one
//!   of the 40 brigades in the node's scope (each change checked and
//!   marked as sent), and with one (each change checked, 1 in 40 sent);
//!   `catch_up/next_packet/10000` is the same packet without a rule.

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use sync_core::{
    Engine, EngineConfig, EntityRegistry, NodeId, NodeInfo, PendingQuery, Role, Store, StoreTxn,
    Timestamp, Uuid,
};
use sync_store_sqlite::{SqliteOptions, SqliteStore, TrackOptions};

const SCHEMA: &str = "CREATE TABLE daily_report(id INTEGER PRIMARY KEY, date TEXT, brigade TEXT, hours INTEGER, qty REAL);";

fn hub_info() -> NodeInfo {
    NodeInfo::new(NodeId(Uuid::from_u128(1)), "HUB", "Hub", Role::Hub)
}

fn node_info() -> NodeInfo {
    NodeInfo::new(NodeId(Uuid::from_u128(2)), "NODE", "Node", Role::Node)
}

fn now() -> Timestamp {
    Timestamp::from_secs(1_765_535_400)
}

fn open(path: &std::path::Path) -> (SqliteStore, EntityRegistry) {
    let mut store = SqliteStore::open(path, SqliteOptions::default()).expect("open");
    store.connection().execute_batch(SCHEMA).expect("schema");
    let ty = store
        .track_table(
            "daily_report",
            TrackOptions::new().entity_type_name("DailyReport"),
        )
        .expect("track");
    (store, EntityRegistry::new().with(ty))
}

/// A hub holding `rows` reports written with plain SQL, none of them sent
/// to the registered node yet.
fn hub_with_backlog(dir: &std::path::Path, rows: usize) -> Engine<SqliteStore> {
    let (store, registry) = open(&dir.join(format!("hub-{rows}.db")));
    store
        .connection()
        .execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
             INSERT INTO daily_report(id, date, brigade, hours, qty)
             SELECT i, '2025-12-12', 'B-' || (i % 40), i % 12, i * 0.5 FROM n",
            [rows as i64],
        )
        .expect("rows");
    let mut hub =
        Engine::new(store, registry, EngineConfig::default().seed(1), hub_info()).expect("hub");
    hub.register_peer(node_info()).expect("peer");
    // The first packet counts the backlog once; later ones update the count.
    hub.build_packet(node_info().id, now()).expect("packet");
    hub
}

fn catch_up(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut group = c.benchmark_group("catch_up");
    group.sample_size(20);
    for rows in [10_000usize, 100_000] {
        let mut hub = hub_with_backlog(dir.path(), rows);
        group.bench_function(format!("next_packet/{rows}"), |b| {
            b.iter(|| hub.build_packet(node_info().id, now()).expect("packet"))
        });
        group.bench_function(format!("full_count/{rows}"), |b| {
            b.iter(|| {
                let txn = hub.store_mut().begin().expect("begin");
                let peer = txn.peer(node_info().id).expect("peer").expect("known");
                let count = txn
                    .count_pending(&PendingQuery::for_peer(&peer, usize::MAX))
                    .expect("count");
                txn.commit().expect("commit");
                count
            })
        });
    }
    group.finish();
}

fn idle_exchange(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, registry) = open(&dir.path().join("idle-hub.db"));
    let mut hub = Engine::new(
        store,
        registry.clone(),
        EngineConfig::default().seed(1),
        hub_info(),
    )
    .expect("hub");
    hub.register_peer(node_info()).expect("peer");
    let (store, _) = open(&dir.path().join("idle-node.db"));
    let mut node = Engine::new(
        store,
        registry,
        EngineConfig::default().seed(2),
        node_info(),
    )
    .expect("node");
    node.register_peer(hub_info()).expect("peer");
    let exchange = |hub: &mut Engine<SqliteStore>, node: &mut Engine<SqliteStore>| {
        node.start_sync(hub_info().id).expect("start");
        while let Some(packet) = node.poll_transmit(now()).expect("poll") {
            let reply = hub.respond(&packet.bytes, now()).expect("respond");
            node.handle_incoming(&reply, now()).expect("reply");
        }
    };
    exchange(&mut hub, &mut node);
    let mut group = c.benchmark_group("exchange");
    group.sample_size(50);
    group.bench_function("idle", |b| {
        b.iter_batched(
            || (),
            |()| exchange(&mut hub, &mut node),
            BatchSize::SmallInput,
        )
    });
    // The hub's part alone: decode, verify, bookkeeping, one commit, reply.
    group.bench_function("idle_hub_respond", |b| {
        b.iter_custom(|iters| {
            let mut spent = std::time::Duration::ZERO;
            for _ in 0..iters {
                node.start_sync(hub_info().id).expect("start");
                let packet = node.poll_transmit(now()).expect("poll").expect("packet");
                let started = std::time::Instant::now();
                let reply = hub.respond(&packet.bytes, now()).expect("respond");
                spent += started.elapsed();
                node.handle_incoming(&reply, now()).expect("reply");
            }
            spent
        })
    });
    group.finish();
}

const LINES: &str = "CREATE TABLE report_line(id INTEGER PRIMARY KEY,
    report_id INTEGER NOT NULL REFERENCES daily_report(id) ON DELETE CASCADE, qty REAL);";

fn orphans(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut group = c.benchmark_group("orphans");
    group.sample_size(10);
    for lines in [0usize, 10_000, 100_000] {
        let (mut store, registry) = open(&dir.path().join(format!("orphans-{lines}.db")));
        store.connection().execute_batch(LINES).expect("lines");
        let line = store
            .track_table("report_line", TrackOptions::new().entity_type_name("Line"))
            .expect("track");
        store
            .connection()
            .execute_batch(&format!(
                "INSERT INTO daily_report(id, date, brigade, hours, qty) VALUES (1, '2025-12-12', 'B-1', 8, 1.0);
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {lines})
                 INSERT INTO report_line(id, report_id, qty) SELECT i, 1, i * 0.5 FROM n WHERE {lines} > 0;"
            ))
            .expect("rows");
        let mut hub = Engine::new(
            store,
            registry.with(line),
            EngineConfig::default().seed(1),
            hub_info(),
        )
        .expect("hub");
        let report = |hours: i64| {
            sync_core::Record::from([
                ("date".to_owned(), sync_core::Value::from("2025-12-13")),
                ("brigade".to_owned(), sync_core::Value::from("B-2")),
                ("hours".to_owned(), sync_core::Value::Int(hours)),
            ])
        };
        group.bench_function(format!("delete_parent/{lines}"), |b| {
            b.iter_custom(|iters| {
                let mut spent = std::time::Duration::ZERO;
                for _ in 0..iters {
                    let id = hub.insert("DailyReport", report(1), now()).expect("insert");
                    let key = sync_core::EntityKey::new("DailyReport", id);
                    let started = std::time::Instant::now();
                    hub.delete(key, now()).expect("delete");
                    spent += started.elapsed();
                }
                spent
            })
        });
    }
    group.finish();
}

fn scopes(c: &mut Criterion) {
    use sync_core::scope::{NodeAttributes, ScopeRule};
    let dir = tempfile::tempdir().expect("tempdir");
    let mut group = c.benchmark_group("scopes");
    group.sample_size(20);
    let every: Vec<String> = (0..40).map(|b| format!("B-{b}")).collect();
    for (case, brigades) in [
        ("all_40_in_scope", every),
        ("1_of_40_in_scope", vec!["B-1".to_owned()]),
    ] {
        let rows = 10_000;
        let path = dir.path().join(case);
        std::fs::create_dir_all(&path).expect("dir");
        let mut hub = hub_with_backlog(&path, rows);
        hub.set_scope_rule("DailyReport", ScopeRule::attribute("brigade", "brigade"))
            .expect("rule");
        hub.set_node_attributes(
            node_info().id,
            NodeAttributes::default().with("brigade", brigades),
        )
        .expect("attributes");
        group.bench_function(format!("next_packet/{case}/{rows}"), |b| {
            b.iter(|| hub.build_packet(node_info().id, now()).expect("packet"))
        });
    }
    group.finish();
}

criterion_group!(benches, catch_up, idle_exchange, orphans, scopes);
criterion_main!(benches);
