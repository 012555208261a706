//! Engine bugs the simulator found, replayed as short scenarios on the real
//! engine (memory stores, a perfect in-process network, packets delivered
//! by hand).

use sync_conformance::fixtures::{NOTE_SERVER_WINS, hub_id, record, registry, t};
use sync_conformance::net::{Net, synced_state};
use sync_core::{ConflictStrategy, EntityKey, Value};

/// Found by `simulate --seed 1` (and seeds 31, 93, 118, 254, 298): a node
/// request is duplicated by the network, the hub answers both copies with
/// two packets that carry the same old version; the node applies the first,
/// edits the entity, sends the edit (which the hub accepts, since the node
/// acknowledged the old version), and then receives the second, late reply.
/// The node takes the re-delivered old version for a concurrent edit,
/// resolves the "conflict" for the hub's side and reverts its own newer
/// edit, while the hub keeps the edit: the two diverge for good.
#[test]
fn late_duplicate_reply_does_not_revert_newer_local_edit() {
    let mut net =
        Net::<sync_store_memory::MemoryStore>::new(1, registry(ConflictStrategy::ServerWins));
    let title = |s: &str| record([("title", Value::from(s))]);
    let id = net
        .hub
        .insert(NOTE_SERVER_WINS, title("old"), t(0))
        .expect("insert");
    let key = EntityKey::new(NOTE_SERVER_WINS, id);
    let node = &mut net.nodes[0];
    node.start_sync(hub_id()).expect("start");
    let request = node.poll_transmit(t(1)).expect("poll").expect("packet");
    // The network delivers the request twice; the hub answers each copy.
    let first = net.hub.respond(&request.bytes, t(1)).expect("respond");
    let second = net.hub.respond(&request.bytes, t(1)).expect("respond");
    node.handle_incoming(&first, t(1)).expect("first reply");
    node.put(key.clone(), title("new"), t(2))
        .expect("local edit");
    node.start_sync(hub_id()).expect("start");
    let edit = node.poll_transmit(t(3)).expect("poll").expect("packet");
    let answer = net.hub.respond(&edit.bytes, t(3)).expect("respond");
    // The second reply to the duplicated request arrives late.
    let _ = node.handle_incoming(&second, t(4));
    node.handle_incoming(&answer, t(4)).expect("answer");
    net.sync_all(t(5)).expect("sync");
    let hub = net.hub.get(&key).expect("get").expect("present");
    let node = net.nodes[0].get(&key).expect("get").expect("present");
    assert_eq!(
        hub.fields["title"],
        Value::from("new"),
        "the hub took the edit"
    );
    assert_eq!(
        node.fields["title"], hub.fields["title"],
        "node and hub diverged"
    );
    assert_eq!(
        synced_state(&mut net.nodes[0]).expect("state"),
        synced_state(&mut net.hub).expect("state")
    );
}
