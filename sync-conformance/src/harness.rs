//! A hub and nodes in one process over any [`Store`], exchanging packets
//! through the real engine on a perfect network: the fixture of the
//! engine-level store cases and of the transport suite.

use sync_core::{
    Engine, EngineConfig, Entity, EntityRegistry, Event, NodeInfo, Store, StoreError, StoreTxn,
    SyncError, Timestamp,
};

use crate::fixtures::{hub_id, hub_info, node_info};

/// A hub and `n` nodes, registered with each other.
pub struct Net<S: Store> {
    /// The hub.
    pub hub: Engine<S>,
    /// The nodes, `nodes[i]` being [`node_info`]`(i)`.
    pub nodes: Vec<Engine<S>>,
}

impl<S: Store> Net<S> {
    /// A hub and `n` nodes on stores from `make`, with default configs
    /// (seeded per node).
    ///
    /// # Panics
    ///
    /// When a store fails while the engines are set up (the test fails).
    pub fn new(n: usize, registry: EntityRegistry, make: impl Fn() -> S) -> Self {
        Self::with_config(n, registry, make, |c| c)
    }

    /// Like [`Net::new`], with every config passed through `tweak`.
    ///
    /// # Panics
    ///
    /// When a store fails while the engines are set up (the test fails).
    pub fn with_config(
        n: usize,
        registry: EntityRegistry,
        make: impl Fn() -> S,
        tweak: impl Fn(EngineConfig) -> EngineConfig,
    ) -> Self {
        let config = |seed| tweak(EngineConfig::default().seed(seed));
        let mut hub =
            Engine::new(make(), registry.clone(), config(1), hub_info()).expect("create hub");
        let nodes = (0..n)
            .map(|i| {
                let mut node = Engine::new(
                    make(),
                    registry.clone(),
                    config(100 + i as u64),
                    node_info(i),
                )
                .expect("create node");
                node.register_peer(hub_info()).expect("register hub");
                hub.register_peer(node_info(i)).expect("register node");
                node
            })
            .collect();
        Net { hub, nodes }
    }

    /// One sync session of node `i` with the hub; returns the exchanges.
    pub fn sync(&mut self, i: usize, now: Timestamp) -> Result<usize, SyncError> {
        session(&mut self.nodes[i], &mut self.hub, now)
    }

    /// Every node syncs, twice around, so every change reaches everyone.
    pub fn sync_all(&mut self, now: Timestamp) -> Result<(), SyncError> {
        for _ in 0..2 {
            for i in 0..self.nodes.len() {
                self.sync(i, now)?;
            }
        }
        Ok(())
    }

    /// Whether every node holds exactly the hub's entities.
    ///
    /// # Panics
    ///
    /// When a store fails a read (the test fails).
    pub fn converged(&mut self) -> bool {
        let hub = synced_state(&mut self.hub).expect("read hub");
        self.nodes
            .iter_mut()
            .all(|n| synced_state(n).expect("read node") == hub)
    }
}

/// Runs a sync session of `node` with `hub` until the node has nothing more
/// to send; returns the number of exchanges.
pub fn session<S: Store, H: Store>(
    node: &mut Engine<S>,
    hub: &mut Engine<H>,
    now: Timestamp,
) -> Result<usize, SyncError> {
    node.start_sync(hub_id())?;
    let mut exchanges = 0;
    while let Some(packet) = node.poll_transmit(now)? {
        exchanges += 1;
        assert!(exchanges < 100_000, "a sync session does not end");
        let reply = hub.respond(&packet.bytes, now)?;
        node.handle_incoming(&reply, now)?;
    }
    Ok(exchanges)
}

/// Every entity of every registered type, in type and id order, without
/// excluded fields (they never travel, so they may differ between nodes) and
/// with null fields dropped (a missing field is null; the packet codec sends
/// every declared field, so a receiver stores explicit nulls where the
/// writer stored none).
pub fn synced_state<S: Store>(engine: &mut Engine<S>) -> Result<Vec<Entity>, StoreError> {
    let registry = engine.registry().clone();
    synced_entities(&registry, engine.store_mut())
}

/// [`synced_state`] read straight from a store.
pub fn synced_entities<S: Store>(
    registry: &EntityRegistry,
    store: &mut S,
) -> Result<Vec<Entity>, StoreError> {
    let txn = store.begin()?;
    let mut all = Vec::new();
    for ty in registry.types() {
        let mut after = None;
        loop {
            let page = txn.entities(ty.name(), after, 1_000)?;
            let Some(last) = page.last() else { break };
            after = Some(last.entity.key.id);
            all.extend(page.into_iter().map(|s| {
                let mut entity = s.entity;
                entity
                    .fields
                    .retain(|name, value| !ty.is_excluded(name) && !value.is_null());
                entity
            }));
        }
    }
    Ok(all)
}

/// Drains an engine's events.
pub fn drain<S: Store>(engine: &mut Engine<S>) -> Vec<Event> {
    std::iter::from_fn(|| engine.poll_event()).collect()
}

/// Registers `nodes` on `hub` (for fixtures that build engines by hand).
pub fn register_nodes<S: Store>(hub: &mut Engine<S>, nodes: &[NodeInfo]) -> Result<(), SyncError> {
    nodes
        .iter()
        .try_for_each(|info| hub.register_peer(info.clone()))
}
