//! Test harness: a hub and N nodes on memory stores, exchanging packets
//! in-process through the real engine, with simulated time.

#![allow(dead_code)]

use sync_core::{
    ConflictStrategy, Engine, EngineConfig, EntityKey, EntityRegistry, EntityType, Event, FieldKind, NodeId, NodeInfo,
    Record, Role, SyncError, Timestamp, Uuid, Value,
};
use sync_store_memory::MemoryStore;

pub type MemEngine = Engine<MemoryStore>;

/// Two related types: a `DailyReport` with `DailyReportLine` children.
pub fn registry(strategy: ConflictStrategy) -> EntityRegistry {
    EntityRegistry::new()
        .with(
            EntityType::new("DailyReport")
                .field("date", FieldKind::Text)
                .field("brigade", FieldKind::Text)
                .field("hours", FieldKind::Int)
                .excluded_field("local_note", FieldKind::Text)
                .strategy(strategy.clone()),
        )
        .with(
            EntityType::new("DailyReportLine")
                .reference("report_id", "DailyReport")
                .field("text", FieldKind::Text)
                .field("qty", FieldKind::Float)
                .strategy(strategy),
        )
}

pub fn hub_id() -> NodeId {
    NodeId(Uuid::from_u128(0x1000))
}

pub fn node_id(i: usize) -> NodeId {
    NodeId(Uuid::from_u128(0x2000 + i as u128))
}

pub fn t(secs: i64) -> Timestamp {
    Timestamp::from_secs(1_765_535_400 + secs)
}

pub fn fields(pairs: &[(&str, Value)]) -> Record {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
}

pub fn report(date: &str, hours: i64) -> Record {
    fields(&[("date", date.into()), ("brigade", "B-7".into()), ("hours", hours.into())])
}

/// A hub with `n` nodes, all registered with each other.
pub struct Net {
    pub hub: MemEngine,
    pub nodes: Vec<MemEngine>,
}

impl Net {
    pub fn new(n: usize, registry: EntityRegistry) -> Self {
        Self::with_config(n, registry, |c| c)
    }

    pub fn with_config(n: usize, registry: EntityRegistry, tweak: impl Fn(EngineConfig) -> EngineConfig) -> Self {
        let hub_info = NodeInfo::new(hub_id(), "HUB", "Central hub", Role::Hub);
        let mut hub = Engine::new(MemoryStore::new(), registry.clone(), tweak(EngineConfig::default().seed(1)), hub_info.clone())
            .expect("hub");
        let mut nodes = Vec::new();
        for i in 0..n {
            let info = NodeInfo::new(node_id(i), format!("DESKTOP-{i}"), format!("Desktop {i}"), Role::Node);
            hub.register_peer(info.clone()).expect("register node");
            let mut node = Engine::new(MemoryStore::new(), registry.clone(), tweak(EngineConfig::default().seed(100 + i as u64)), info)
                .expect("node");
            node.register_peer(hub_info.clone()).expect("register hub");
            nodes.push(node);
        }
        Net { hub, nodes }
    }

    /// Runs one sync session of node `i` with the hub over a perfect network.
    /// Returns the number of round trips.
    pub fn sync(&mut self, i: usize, now: Timestamp) -> Result<usize, SyncError> {
        let node = &mut self.nodes[i];
        node.start_sync(hub_id())?;
        let mut rounds = 0;
        while let Some(packet) = node.poll_transmit(now)? {
            rounds += 1;
            assert!(rounds < 10_000, "sync session does not end");
            let reply = self.hub.respond(&packet.bytes, now)?;
            node.handle_incoming(&reply, now)?;
        }
        Ok(rounds)
    }

    /// Syncs every node, twice around, so changes reach everyone.
    pub fn sync_all(&mut self, now: Timestamp) -> Result<(), SyncError> {
        for _ in 0..2 {
            for i in 0..self.nodes.len() {
                self.sync(i, now)?;
            }
        }
        Ok(())
    }

    /// All entities of every type on the hub, as (key, is_deleted, fields).
    pub fn state(engine: &mut MemEngine) -> Vec<(EntityKey, bool, Record)> {
        engine
            .store()
            .all_entities()
            .map(|s| (s.entity.key.clone(), s.entity.is_deleted, s.entity.fields.clone()))
            .map(|(k, d, mut f)| {
                f.remove("local_note");
                (k, d, f)
            })
            .collect()
    }

    pub fn converged(&mut self) -> bool {
        let hub = Self::state(&mut self.hub);
        self.nodes.iter_mut().all(|n| Self::state(n) == hub)
    }
}

pub fn drain(engine: &mut MemEngine) -> Vec<Event> {
    std::iter::from_fn(|| engine.poll_event()).collect()
}
