//! Shared test setup: a hub and nodes on memory stores, paired with file
//! keys the way an operator would do it (created at the hub, handed over in
//! printable form, installed at the node).

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use sync_conformance::fixtures::{NOTE_SERVER_WINS, hub_id, hub_info, node_info, record, registry};
use sync_conformance::net::synced_state;
use sync_core::{
    ConflictStrategy, Engine, EngineConfig, Entity, NodeId, PeerState, Record, Timestamp,
};
use sync_store_memory::MemoryStore;
use sync_transport_file::{
    ExportOptions, Exported, PairKey, create_pair_key, export, install_pair_key,
};

pub use sync_conformance::fixtures::{node_id, t};

/// An engine on a memory store.
pub type Mem = Engine<MemoryStore>;

/// A hub and `n` nodes, each node paired with the hub by a file key.
pub struct World {
    pub hub: Mem,
    pub nodes: Vec<Mem>,
    /// The printable keys, as handed over (node `i`'s at `i`).
    pub printable: Vec<String>,
}

impl World {
    pub fn new(n: usize) -> World {
        World::with(n, ConflictStrategy::ServerWins, |c| c)
    }

    pub fn with(
        n: usize,
        strategy: ConflictStrategy,
        tweak: impl Fn(EngineConfig) -> EngineConfig,
    ) -> World {
        let mut hub = Engine::new(
            MemoryStore::new(),
            registry(strategy.clone()),
            tweak(EngineConfig::default().seed(1)),
            hub_info(),
        )
        .expect("hub");
        let mut nodes = Vec::new();
        let mut printable = Vec::new();
        for i in 0..n {
            hub.register_peer(node_info(i)).expect("register node");
            let key = create_pair_key(&mut hub, node_id(i)).expect("create key");
            let text = key.expose_printable();
            let mut node = Engine::new(
                MemoryStore::new(),
                registry(strategy.clone()),
                tweak(EngineConfig::default().seed(100 + i as u64)),
                node_info(i),
            )
            .expect("node");
            node.register_peer(hub_info()).expect("register hub");
            install_pair_key(&mut node, hub_id(), &PairKey::parse(&text).expect("parse"))
                .expect("install key");
            nodes.push(node);
            printable.push(text);
        }
        World {
            hub,
            nodes,
            printable,
        }
    }

    /// Node `i` exports for the hub into `dir`.
    pub fn node_export(&mut self, i: usize, dir: &Path, now: Timestamp) -> Exported {
        export(
            &mut self.nodes[i],
            hub_id(),
            dir,
            &ExportOptions::default(),
            now,
        )
        .expect("node export")
    }

    /// The hub exports for node `i` into `dir`.
    pub fn hub_export(&mut self, i: usize, dir: &Path, now: Timestamp) -> Exported {
        export(
            &mut self.hub,
            node_id(i),
            dir,
            &ExportOptions::default(),
            now,
        )
        .expect("hub export")
    }
}

/// A note record.
pub fn note(title: &str) -> Record {
    record([("title", title.into())])
}

/// Inserts a note at `engine`.
pub fn insert_note(engine: &mut Mem, title: &str, now: Timestamp) -> sync_core::Uuid {
    engine
        .insert(NOTE_SERVER_WINS, note(title), now)
        .expect("insert")
}

/// What must not change when a file is refused: the synced entities, every
/// peer's state, and what each peer is owed.
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    pub entities: Vec<Entity>,
    pub peers: Vec<PeerState>,
    pub pending: Vec<(NodeId, u64)>,
    pub parked: usize,
    pub open_conflicts: usize,
}

pub fn snapshot(engine: &mut Mem) -> Snapshot {
    let peers = engine.peers().expect("peers");
    let pending = peers
        .iter()
        .map(|p| (p.id(), engine.pending_count(p.id()).expect("pending")))
        .collect();
    Snapshot {
        entities: synced_state(engine).expect("state"),
        peers,
        pending,
        parked: engine.parked().expect("parked").len(),
        open_conflicts: engine.open_conflicts().expect("conflicts").len(),
    }
}

/// Every final file in `dir`, sorted.
pub fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "syncpkt"))
        .collect();
    files.sort();
    files
}

/// A copy of `file` in `dir` with `edit` applied to its bytes.
pub fn edited_copy(file: &Path, dir: &Path, edit: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let mut bytes = std::fs::read(file).expect("read");
    edit(&mut bytes);
    let target = dir.join(file.file_name().expect("name"));
    std::fs::write(&target, bytes).expect("write");
    target
}
