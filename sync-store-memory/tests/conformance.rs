//! The store conformance suite on [`MemoryStore`]: one `#[test]` per case.

use sync_store_memory::MemoryStore;

sync_conformance::store_suite!(memory, MemoryStore::new);
