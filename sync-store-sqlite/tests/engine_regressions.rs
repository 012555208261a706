//! Engine behaviour found while testing this store, reproduced on the
//! reference `MemoryStore` so that the store is not involved (fixed in
//! sync-core; kept as a regression test).

mod common;

use common::Rng;
use common::*;
use sync_core::{Engine, EngineConfig};
use sync_store_memory::MemoryStore;

/// The engine loses a node's own change after the node is restored from a
/// backup when the first exchanges after the restore lose packets: the hub
/// never marks the pair for resending (its `resend_own_upto` stays 0), so the
/// restored node never gets back the report it wrote before the restore.
/// Reproduced on `MemoryStore` alone, so it is the engine's, not this store's.
#[test]
fn memory_node_restore_then_lossy_resync_loses_own_change() {
    let (_, registry) = memory_sqlite();
    let mut hub = memory_hub(registry.clone());
    let mut node = engine(MemoryStore::new(), registry.clone(), node_info(0), 100);
    connect(&mut hub, &mut [&mut node]);
    let mut rng = Rng(815515493156212744 | 1);
    let mut now = t(0);
    now = now.add_millis(10);
    sync_faulty(&mut node, &mut hub, &mut now, &mut rng, 0).unwrap();
    now = now.add_millis(10);
    sync_faulty(&mut node, &mut hub, &mut now, &mut rng, 0).unwrap();
    now = now.add_millis(10);
    rng.next();
    let backup = node.store().clone();
    now = now.add_millis(10);
    node.insert("DailyReport", report_fields("d", 0), now)
        .unwrap();
    now = now.add_millis(10);
    sync_faulty(&mut node, &mut hub, &mut now, &mut rng, 0).unwrap();
    now = now.add_millis(10);
    rng.next();
    let mut node = Engine::open(backup, registry, EngineConfig::default().seed(500)).unwrap();
    now = now.add_millis(10);
    sync_faulty(&mut node, &mut hub, &mut now, &mut rng, 10).unwrap();
    for i in 0..3 {
        sync(&mut node, &mut hub, now.add_millis(1_000_000 + i)).unwrap();
    }
    assert_eq!(state(&mut node), state(&mut hub));
}
