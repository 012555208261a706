//! What the tests share: the server (throwaway, or `SYNCPLAN_PG_URL`) and
//! fresh stores in schemas of their own.

#![allow(dead_code)]

use sync_store_postgres::{PgOptions, PgStore, cluster};

/// The server's connection string; fails the test, saying how to install
/// PostgreSQL, when there is none.
pub fn url() -> String {
    cluster::test_url().unwrap_or_else(|e| panic!("{e}"))
}

/// An empty store in a schema of its own, dropped with the store.
pub fn fresh() -> PgStore {
    PgStore::connect(
        &url(),
        PgOptions::new()
            .schema(cluster::unique_schema("t"))
            .temporary(true),
    )
    .expect("connect to PostgreSQL")
}

use sync_conformance::fixtures::hub_id;
use sync_core::{Engine, Store, Timestamp};

/// What one node's sync session through [`drive`] did.
#[derive(Clone, Copy, Debug, Default)]
pub struct Drove {
    /// Replies received and handled.
    pub exchanges: usize,
    /// Requests whose reply never came (a hub failed or was killed).
    pub lost: usize,
}

/// Runs a sync session of `node` with the hub until it ends, sending every
/// request through `send` (`None`: no reply, as when a hub process dies or
/// answers an error). When the node waits for a retry, `now` jumps to its
/// timer. At most `max_steps` requests.
pub fn drive<S: Store>(
    node: &mut Engine<S>,
    now: &mut Timestamp,
    max_steps: usize,
    mut send: impl FnMut(&[u8], Timestamp) -> Option<Vec<u8>>,
) -> Drove {
    let mut drove = Drove::default();
    node.start_sync(hub_id()).expect("start a session");
    for _ in 0..max_steps {
        match node.poll_transmit(*now).expect("build a request") {
            Some(packet) => match send(&packet.bytes, *now) {
                Some(reply) if node.handle_incoming(&reply, *now).is_ok() => drove.exchanges += 1,
                _ => drove.lost += 1,
            },
            None if node.is_syncing(hub_id()) => match node.poll_timeout() {
                Some(at) => {
                    *now = Timestamp::from_micros(now.as_micros().max(at.as_micros()));
                    node.handle_timeout(*now);
                }
                None => break,
            },
            None => break,
        }
    }
    drove
}

use sync_conformance::fixtures::{hub_info, node_info};
use sync_core::{EngineConfig, EntityRegistry};
use sync_store_memory::MemoryStore;

/// A hub engine (seed 1) on `store`.
pub fn hub_on(store: PgStore, registry: &EntityRegistry) -> Engine<PgStore> {
    Engine::new(
        store,
        registry.clone(),
        EngineConfig::default().seed(1),
        hub_info(),
    )
    .expect("hub")
}

/// Node `i` on a memory store (seed `100 + i`), with the hub registered.
pub fn memory_node(registry: &EntityRegistry, i: usize) -> Engine<MemoryStore> {
    let mut node = Engine::new(
        MemoryStore::new(),
        registry.clone(),
        EngineConfig::default().seed(100 + i as u64),
        node_info(i),
    )
    .expect("node");
    node.register_peer(hub_info()).expect("register the hub");
    node
}
