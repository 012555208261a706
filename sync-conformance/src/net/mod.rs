//! A hub and nodes in one process over any [`Store`], exchanging packets
//! through the real engine with simulated time: on a perfect network
//! ([`Net::sync`], [`session`]), over a scripted faulty [`Link`] (loss,
//! duplication, reordering: [`Net::sync_faulty`]), or over a seeded lossy
//! exchange ([`lossy`]). The fixture of the engine-level store cases, of the
//! transport suite, and of the engine's and the stores' integration tests.

pub mod link;
pub mod lossy;

use sync_core::{
    Engine, EngineConfig, Entity, EntityKey, EntityRegistry, Event, NodeInfo, Record, Store,
    StoreError, StoreTxn, SyncError, Timestamp,
};

use crate::fixtures::{hub_id, hub_info, node_id, node_info};

pub use link::{Fault, Link, Seen};

/// Most packets one sync session may take before the harness calls it a
/// hang (the test fails).
pub const MAX_ROUNDS: usize = 1_000;

/// The default configuration of node `i` in a [`Net`]: seeded `100 + i`.
pub fn node_config(i: usize) -> EngineConfig {
    EngineConfig::default().seed(100 + i as u64)
}

/// The default configuration of the hub in a [`Net`]: seeded 1.
pub fn hub_config() -> EngineConfig {
    EngineConfig::default().seed(1)
}

/// A hub and `n` nodes, registered with each other.
pub struct Net<S: Store> {
    /// The hub.
    pub hub: Engine<S>,
    /// The nodes, `nodes[i]` being [`node_info`]`(i)`.
    pub nodes: Vec<Engine<S>>,
    /// The registry every engine runs with.
    pub registry: EntityRegistry,
    /// The hub's configuration (what a restart reopens it with).
    pub hub_config: EngineConfig,
    /// Each node's configuration.
    pub node_configs: Vec<EngineConfig>,
}

impl<S: Store + Default> Net<S> {
    /// A hub and `n` nodes on fresh default stores, with [`hub_config`] and
    /// [`node_config`].
    ///
    /// # Panics
    ///
    /// When a store fails while the engines are set up (the test fails).
    pub fn new(n: usize, registry: EntityRegistry) -> Self {
        Self::with_config(n, registry, |c| c)
    }

    /// Like [`Net::new`], with every config passed through `tweak`.
    ///
    /// # Panics
    ///
    /// When a store fails while the engines are set up (the test fails).
    pub fn with_config(
        n: usize,
        registry: EntityRegistry,
        tweak: impl Fn(EngineConfig) -> EngineConfig,
    ) -> Self {
        Self::with_stores(n, registry, S::default, tweak)
    }

    /// A net where the hub and every node get their own configuration.
    ///
    /// # Panics
    ///
    /// When a store fails while the engines are set up (the test fails).
    pub fn with_configs(
        n: usize,
        registry: EntityRegistry,
        hub_config: EngineConfig,
        node_config: impl Fn(usize) -> EngineConfig,
    ) -> Self {
        Self::build(n, registry, S::default, hub_config, node_config)
    }
}

impl<S: Store> Net<S> {
    /// A hub and `n` nodes on stores from `make`, with [`hub_config`] and
    /// [`node_config`] passed through `tweak`.
    ///
    /// # Panics
    ///
    /// When a store fails while the engines are set up (the test fails).
    pub fn with_stores(
        n: usize,
        registry: EntityRegistry,
        make: impl Fn() -> S,
        tweak: impl Fn(EngineConfig) -> EngineConfig,
    ) -> Self {
        Self::build(n, registry, make, tweak(hub_config()), |i| {
            tweak(node_config(i))
        })
    }

    /// A hub and `n` nodes on stores from `make`, each with its own
    /// configuration.
    ///
    /// # Panics
    ///
    /// When a store fails while the engines are set up (the test fails).
    pub fn build(
        n: usize,
        registry: EntityRegistry,
        make: impl Fn() -> S,
        hub_config: EngineConfig,
        node_config: impl Fn(usize) -> EngineConfig,
    ) -> Self {
        let mut hub = Engine::new(make(), registry.clone(), hub_config.clone(), hub_info())
            .expect("the hub's store is fresh");
        let mut nodes = Vec::new();
        let mut node_configs = Vec::new();
        for i in 0..n {
            hub.register_peer(node_info(i)).expect("register node");
            let config = node_config(i);
            let mut node = Engine::new(make(), registry.clone(), config.clone(), node_info(i))
                .expect("the node's store is fresh");
            node.register_peer(hub_info()).expect("register hub");
            nodes.push(node);
            node_configs.push(config);
        }
        Net {
            hub,
            nodes,
            registry,
            hub_config,
            node_configs,
        }
    }

    /// One sync session of node `i` with the hub over a perfect network;
    /// returns the number of round trips.
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

    /// One sync session of node `i` over `link`: packets may be lost,
    /// duplicated or delayed; time advances to each retry deadline. Held
    /// messages are delivered (late) when the session ends. Returns the time
    /// at the end.
    ///
    /// # Panics
    ///
    /// When the session takes more than [`MAX_ROUNDS`] steps (a hang).
    pub fn sync_faulty(
        &mut self,
        i: usize,
        now: Timestamp,
        link: &mut Link<S>,
    ) -> Result<Timestamp, SyncError> {
        link.session(i, &mut self.hub, &mut self.nodes[i], now)
    }

    /// Whether every node holds exactly the hub's entities ([`state`]).
    pub fn converged(&mut self) -> bool {
        let hub = state(&mut self.hub);
        self.nodes.iter_mut().all(|n| state(n) == hub)
    }

    /// Nothing is pending in either direction between the hub and any node.
    ///
    /// # Panics
    ///
    /// When a store fails a read (the test fails).
    pub fn quiet(&mut self) -> bool {
        (0..self.nodes.len()).all(|i| {
            self.nodes[i]
                .pending_count(hub_id())
                .expect("hub registered")
                == 0
                && self.hub.pending_count(node_id(i)).expect("node registered") == 0
        })
    }
}

impl<S: Store + Clone> Net<S> {
    /// A snapshot (backup) of node `i`'s store.
    pub fn snapshot_node(&self, i: usize) -> S {
        self.nodes[i].store().clone()
    }

    /// Replaces node `i` by an engine opened on `store` (a restored backup).
    ///
    /// # Panics
    ///
    /// When `store` holds no node identity.
    pub fn restore_node(&mut self, i: usize, store: S) {
        self.nodes[i] = Engine::open(store, self.registry.clone(), self.node_configs[i].clone())
            .expect("snapshot holds the node identity");
    }

    /// Replaces the hub by an engine opened on `store` (a restored backup).
    ///
    /// # Panics
    ///
    /// When `store` holds no hub identity.
    pub fn restore_hub(&mut self, store: S) {
        self.hub = Engine::open(store, self.registry.clone(), self.hub_config.clone())
            .expect("snapshot holds the hub identity");
    }

    /// Crash and restart of node `i`: volatile session state is gone, the
    /// committed store survives.
    pub fn restart_node(&mut self, i: usize) {
        let store = self.nodes[i].store().clone();
        self.restore_node(i, store);
    }
}

/// An engine on `store` with the default configuration seeded `seed`.
///
/// # Panics
///
/// When the store fails while the engine is set up (the test fails).
pub fn engine<S: Store>(
    store: S,
    registry: EntityRegistry,
    info: NodeInfo,
    seed: u64,
) -> Engine<S> {
    Engine::new(store, registry, EngineConfig::default().seed(seed), info).expect("engine")
}

/// Registers every node with `hub` and the hub ([`hub_info`]) with each
/// node, for fixtures that build engines by hand (on different stores).
///
/// # Panics
///
/// When a store fails the registration (the test fails).
pub fn connect<H: Store, N: Store>(hub: &mut Engine<H>, nodes: &mut [&mut Engine<N>]) {
    for node in nodes.iter_mut() {
        hub.register_peer(node.local_node().clone())
            .expect("register node");
        node.register_peer(hub_info()).expect("register hub");
    }
}

/// Runs a sync session of `node` with `hub` over a perfect network until
/// the node has nothing more to send; returns the number of exchanges.
///
/// # Panics
///
/// When the session takes [`MAX_ROUNDS`] exchanges (a hang).
pub fn session<S: Store, H: Store>(
    node: &mut Engine<S>,
    hub: &mut Engine<H>,
    now: Timestamp,
) -> Result<usize, SyncError> {
    node.start_sync(hub_id())?;
    let mut exchanges = 0;
    while let Some(packet) = node.poll_transmit(now)? {
        exchanges += 1;
        assert!(exchanges < MAX_ROUNDS, "sync session does not end");
        let reply = hub.respond(&packet.bytes, now)?;
        node.handle_incoming(&reply, now)?;
    }
    Ok(exchanges)
}

/// Syncs until nothing moves: every node three times around, perfect
/// network.
///
/// # Panics
///
/// When a session fails (the test fails).
pub fn settle<A: Store, B: Store>(nodes: &mut [Engine<A>], hub: &mut Engine<B>, now: Timestamp) {
    for _ in 0..3 {
        for node in nodes.iter_mut() {
            session(node, hub, now).expect("sync");
        }
    }
}

/// Every entity of every registered type as (key, is_deleted, fields), in
/// type and id order, excluded fields removed (they never travel): what
/// convergence compares.
///
/// # Panics
///
/// When the store fails a read (the test fails).
pub fn state<S: Store>(engine: &mut Engine<S>) -> Vec<(EntityKey, bool, Record)> {
    let registry = engine.registry().clone();
    let txn = engine.store_mut().begin().expect("begin a read");
    let mut out = Vec::new();
    for ty in registry.types() {
        for s in txn.entities(ty.name(), None, usize::MAX).expect("entities") {
            let Entity {
                key,
                is_deleted,
                mut fields,
                ..
            } = s.entity;
            fields.retain(|name, _| !ty.is_excluded(name));
            out.push((key, is_deleted, fields));
        }
    }
    out
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
