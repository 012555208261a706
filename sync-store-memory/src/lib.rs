//! # sync-store-memory
//!
//! A complete [`Store`] kept in memory: the reference implementation of the
//! store contract, and the fastest store for tests and simulation.
//!
//! Transactions keep an undo log: reads see the transaction's own writes, and
//! dropping a transaction without committing rolls every write back.
//! [`MemoryStore`] is `Clone`, and a clone is a consistent snapshot, which is
//! how simulations restore a node "from an older backup".
//!
//! ```
//! use sync_core::{Store, StoreTxn, NodeId, NodeInfo, Role};
//! use sync_store_memory::MemoryStore;
//!
//! let mut store = MemoryStore::new();
//! let me = NodeInfo::new(NodeId::NIL, "HUB", "Hub", Role::Hub);
//! {
//!     let mut txn = store.begin()?;
//!     txn.set_local_node(&me)?;
//!     // dropped without commit: rolled back
//! }
//! assert!(store.begin()?.local_node()?.is_none());
//! let mut txn = store.begin()?;
//! txn.set_local_node(&me)?;
//! txn.commit()?;
//! assert_eq!(store.begin()?.local_node()?, Some(me));
//! # Ok::<(), sync_core::StoreError>(())
//! ```

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod txn;

use std::collections::BTreeMap;

use sync_core::{
    AuditRecord, EntityKey, NodeId, NodeInfo, OpenConflict, ParkedChange, PeerState,
    RejectedChange, SecurityEvent, Store, StoreError, StoredEntity, VersionRecord,
};

pub use txn::MemoryTxn;

/// A store held in memory. Cloning it takes a consistent snapshot.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    state: State,
}

#[derive(Clone, Debug, Default)]
struct State {
    local: Option<NodeInfo>,
    peers: BTreeMap<NodeId, PeerState>,
    entities: BTreeMap<EntityKey, StoredEntity>,
    by_seq: BTreeMap<u64, EntityKey>,
    last_seq: u64,
    versions: Vec<VersionRecord>,
    audit: Vec<AuditRecord>,
    conflicts: Vec<OpenConflict>,
    parked: BTreeMap<EntityKey, ParkedChange>,
    security: Vec<SecurityEvent>,
    meta: BTreeMap<String, Vec<u8>>,
    rejected: Vec<RejectedChange>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of entities stored (tombstones included).
    pub fn entity_count(&self) -> usize {
        self.state.entities.len()
    }

    /// Every stored entity, in key order (for inspection and convergence
    /// checks).
    pub fn all_entities(&self) -> impl Iterator<Item = &StoredEntity> {
        self.state.entities.values()
    }
}

impl Store for MemoryStore {
    type Txn<'a> = MemoryTxn<'a>;

    fn begin(&mut self) -> Result<Self::Txn<'_>, StoreError> {
        Ok(MemoryTxn::new(&mut self.state))
    }
}
