//! How the simulator gets stores: [`SimStores`] creates them, copies them
//! (a backup) and brings a copy back (a restore), so any store can run the
//! simulation. `MemoryStores` (feature `memory`) does it for
//! `sync_store_memory::MemoryStore`.

use sync_core::Store;
#[cfg(feature = "memory")]
use sync_store_memory::MemoryStore;

/// Creates, snapshots and restores the stores of a simulation.
pub trait SimStores {
    /// The store under test.
    type Store: Store;
    /// A consistent copy of a store (what a backup holds).
    type Snapshot;

    /// A new, empty store for the participant named `name` (`hub`,
    /// `node-0`, ...).
    fn create(&mut self, name: &str) -> Self::Store;

    /// A consistent copy of `store`'s committed state.
    fn snapshot(&mut self, store: &Self::Store) -> Self::Snapshot;

    /// A store holding what `snapshot` holds, replacing the participant's
    /// store (named `name`) after a restore from backup.
    fn restore(&mut self, name: &str, snapshot: &Self::Snapshot) -> Self::Store;

    /// What a restart after a crash reopens. The store has already lost
    /// every uncommitted change (its open transaction was dropped); a
    /// persistent store may close and reopen its files here.
    fn reopen(&mut self, _name: &str, store: Self::Store) -> Self::Store {
        store
    }
}

/// [`SimStores`] for [`MemoryStore`]: a clone is a snapshot.
#[cfg(feature = "memory")]
#[derive(Clone, Copy, Debug, Default)]
pub struct MemoryStores;

#[cfg(feature = "memory")]
impl SimStores for MemoryStores {
    type Store = MemoryStore;
    type Snapshot = MemoryStore;

    fn create(&mut self, _name: &str) -> MemoryStore {
        MemoryStore::new()
    }

    fn snapshot(&mut self, store: &MemoryStore) -> MemoryStore {
        store.clone()
    }

    fn restore(&mut self, _name: &str, snapshot: &MemoryStore) -> MemoryStore {
        snapshot.clone()
    }
}
