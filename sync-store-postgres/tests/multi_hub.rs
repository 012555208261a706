//! Three hub engines, each on its own connection to one schema (what three
//! hub processes behind a load balancer hold), serving four nodes at once:
//! each node's requests go to the hubs in turn, from four threads. Every
//! node converges with the hub, and every report a node wrote is on the hub
//! with its last value.
//!
//! It found a lost change: a hub that built a packet read the pending
//! changes and then the last sequence in two statements, and a change
//! another hub committed in between was covered by the packet without being
//! in it (see `sequence.rs`, the last test).

mod common;

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use sync_conformance::fixtures::{REPORT, hub_info, key, node_info, record, registry, t};
use sync_conformance::net::synced_state;
use sync_core::{ConflictStrategy, Engine, EngineConfig, Timestamp, Value};
use sync_store_memory::MemoryStore;
use sync_store_postgres::{PgOptions, PgStore, cluster};

const HUBS: usize = 3;
const NODES: usize = 4;
const ROUNDS: usize = 20;

#[test]
fn three_hubs_on_one_database_serve_nodes_round_robin_and_converge() {
    let registry = registry(ConflictStrategy::LastWriterWins);
    let store = PgStore::connect(
        &common::url(),
        PgOptions::new()
            .schema(cluster::unique_schema("multi"))
            .temporary(true),
    )
    .expect("connect");
    let others: Vec<PgStore> = (1..HUBS)
        .map(|_| store.reconnect().expect("another connection"))
        .collect();
    let mut first = Engine::new(
        store,
        registry.clone(),
        EngineConfig::default().seed(1),
        hub_info(),
    )
    .expect("first hub");
    for i in 0..NODES {
        first.register_peer(node_info(i)).expect("register a node");
    }
    let mut hubs = vec![Mutex::new(first)];
    for (i, store) in others.into_iter().enumerate() {
        let config = EngineConfig::default().seed(2 + i as u64);
        let hub = Engine::open(store, registry.clone(), config).expect("another hub");
        hubs.push(Mutex::new(hub));
    }
    let failed = AtomicUsize::new(0);
    let served: [AtomicUsize; HUBS] = Default::default();

    let mut nodes: Vec<Engine<MemoryStore>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..NODES)
            .map(|i| {
                let (hubs, failed, served, registry) = (&hubs, &failed, &served, &registry);
                scope.spawn(move || {
                    let mut node = common::memory_node(registry, i);
                    let mut now = t(0);
                    let mut turn = i;
                    for round in 0..ROUNDS {
                        now = now.add_millis(1_000);
                        // One report of its own, and the shared ones that
                        // every node edits (conflicts across hubs).
                        let own = key(REPORT, (1_000 * (i + 1) + round) as u128);
                        node.put(own, report(i, round), now).expect("write own");
                        let shared = key(REPORT, (round % 3) as u128 + 1);
                        node.put(shared, report(i, round), now)
                            .expect("write shared");
                        common::drive(&mut node, &mut now, 200, |request, now| {
                            turn += 1;
                            let which = turn % HUBS;
                            let reply = hubs[which].lock().expect("a hub").respond(request, now);
                            match reply {
                                Ok(reply) => {
                                    served[which].fetch_add(1, Ordering::Relaxed);
                                    Some(reply.to_vec())
                                }
                                Err(_) => {
                                    failed.fetch_add(1, Ordering::Relaxed);
                                    None
                                }
                            }
                        });
                    }
                    node
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("a node thread"))
            .collect()
    });

    // Quiet rounds, one node at a time, hubs in turn: everyone catches up.
    let mut now = Timestamp::from_micros(t(10_000).as_micros());
    for pass in 0..3 {
        for (i, node) in nodes.iter_mut().enumerate() {
            let hub = &hubs[(i + pass) % HUBS];
            common::drive(node, &mut now, 500, |request, now| {
                hub.lock()
                    .expect("a hub")
                    .respond(request, now)
                    .ok()
                    .map(|r| r.to_vec())
            });
        }
    }
    let mut hubs: Vec<_> = hubs
        .into_iter()
        .map(|h| h.into_inner().expect("a hub"))
        .collect();
    let on_hub = synced_state(&mut hubs[0]).expect("read the hub");
    for hub in &mut hubs[1..] {
        assert_eq!(on_hub, synced_state(hub).expect("read the hub"));
    }
    let first = &mut hubs[0];
    for (i, node) in nodes.iter_mut().enumerate() {
        assert_eq!(synced_state(node).expect("read a node"), on_hub, "node {i}");
        for round in 0..ROUNDS {
            let own = key(REPORT, (1_000 * (i + 1) + round) as u128);
            let kept = first
                .get(&own)
                .expect("read")
                .expect("an acknowledged report is kept");
            assert_eq!(kept.fields["hours"], Value::Int((100 * i + round) as i64));
        }
    }
    assert_eq!(on_hub.len(), NODES * ROUNDS + 3);
    let served = served.map(|s| s.into_inner());
    eprintln!(
        "{NODES} nodes, {ROUNDS} rounds: hubs answered {served:?} requests, {} failed and were retried",
        failed.into_inner()
    );
    assert!(
        served.iter().all(|&s| s > 0),
        "every hub served: {served:?}"
    );
}

fn report(node: usize, round: usize) -> sync_core::Record {
    record([
        (
            "date",
            Value::Text(format!("2025-12-{:02}", round % 28 + 1)),
        ),
        ("brigade", Value::Text(format!("B{node}"))),
        ("hours", Value::Int((100 * node + round) as i64)),
    ])
}
