//! The shared harness of `sync-conformance` on memory stores: a hub and N
//! nodes in one process, a faulty link, packet forging, random runs.

#![allow(dead_code, unused_imports)]

pub use sync_conformance::fixtures::{
    hub_id, hub_info, line, line_key, node_id, node_info, record, report, report_key,
    reports_registry as registry, t,
};
pub use sync_conformance::integrity::{
    assert_no_dangling, dangling_children, live_children_of_deleted,
};
pub use sync_conformance::net::{Fault, MAX_ROUNDS, Seen, drain, hub_config, node_config, state};
pub use sync_conformance::wire::{
    body, body_range, decode, flip_body_byte, forge, header, keys_in, packet_body, packets,
    rewrite_header,
};
pub use sync_conformance::{ops, strategies};

use sync_core::packet::Change;
use sync_core::{Engine, EntityRegistry};
use sync_store_memory::MemoryStore;

/// An engine over the memory store.
pub type MemEngine = Engine<MemoryStore>;

/// A hub with nodes, all on memory stores.
pub type Net = sync_conformance::net::Net<MemoryStore>;

/// A faulty link between memory-store engines.
pub type Link = sync_conformance::net::Link<MemoryStore>;

/// The changes a hub on a memory store sends for `writes` (see
/// [`sync_conformance::wire::changes_from_hub`]).
pub fn changes_from_hub(
    registry: &EntityRegistry,
    writes: impl FnOnce(&mut MemEngine),
) -> Vec<Change> {
    sync_conformance::wire::changes_from_hub::<MemoryStore>(registry, writes)
}
