//! Per-field merge through the public API: the field stamps a local write
//! gets and their trip over the wire, concurrent edits of different fields
//! on the memory store, and a deletion against an edit (decided whole by
//! the fallback).

mod common;

use common::*;
use sync_core::codec::{self, Limits};
use sync_core::conflict::fields;
use sync_core::packet::Envelope;
use sync_core::{
    Codec, ConflictSide, ConflictStrategy, Engine, EngineConfig, EntityKey, EntityRegistry,
    EntityType, FieldFallback, FieldKind, Value,
};
use sync_store_memory::MemoryStore;

fn merged_registry(fallback: FieldFallback) -> EntityRegistry {
    EntityRegistry::new().with(
        EntityType::new("Card")
            .field("title", FieldKind::Text)
            .field("body", FieldKind::Text)
            .field("due", FieldKind::Int)
            .excluded_field("draft", FieldKind::Text)
            .strategy(ConflictStrategy::FieldMerge { fallback }),
    )
}

fn card(title: &str, body: &str, due: i64) -> sync_core::Record {
    record([
        ("title", Value::from(title)),
        ("body", Value::from(body)),
        ("due", Value::Int(due)),
    ])
}

/// A write that changes one field stamps the others with the write that
/// last changed them; the stamps survive encoding and decoding, and a type
/// merged otherwise carries none.
#[test]
fn field_stamps_follow_each_field_and_travel() {
    let registry = merged_registry(FieldFallback::ServerWins);
    let mut node = Engine::new(
        MemoryStore::new(),
        registry.clone(),
        EngineConfig::default().seed(3),
        node_info(0),
    )
    .expect("node");
    node.register_peer(hub_info()).expect("register");
    let id = node
        .insert("Card", card("a", "b", 1), t(0))
        .expect("insert");
    let key = EntityKey::new("Card", id);
    let first = node.get(&key).expect("get").expect("present");
    assert!(
        first.field_stamps.is_empty(),
        "a first write wrote every field"
    );
    let ty = registry.get("Card").expect("type");
    let insert_dot = fields::own_dot(ty, &first).expect("a write has its own dot");
    let mut changed = card("a", "b", 1);
    changed.insert("body".into(), Value::from("b2"));
    changed.insert("draft".into(), Value::from("local only"));
    node.put(key.clone(), changed, t(5)).expect("put");
    let second = node.get(&key).expect("get").expect("present");
    let own = fields::own_dot(ty, &second).expect("own dot");
    assert_ne!(own, insert_dot);
    assert_eq!(second.field_stamps.get("title"), Some(&insert_dot));
    assert_eq!(second.field_stamps.get("due"), Some(&insert_dot));
    assert_eq!(
        second.field_stamps.get("body"),
        None,
        "changed by this write"
    );
    assert_eq!(
        second.field_stamps.get("draft"),
        None,
        "excluded fields have none"
    );
    assert_eq!(fields::field_dot(ty, &second, "body"), Some(own));

    let packet = node.build_packet(hub_info().id, t(6)).expect("build");
    let Envelope::Packet(packet) =
        codec::decode_envelope(&packet.bytes, &Limits::default()).expect("decodes")
    else {
        panic!("not a packet");
    };
    let changes =
        codec::decode_body(&packet.header, &packet.body, &Limits::default()).expect("body");
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].entity.field_stamps, second.field_stamps);
    let (body, raw) = codec::encode_body(&changes, &registry, Codec::None);
    let mut header = packet.header.clone();
    header.codec = Codec::None;
    header.body_raw_len = raw;
    let again = codec::decode_body(&header, &body, &Limits::default()).expect("again");
    assert_eq!(again[0].entity.field_stamps, second.field_stamps);

    // The same writes on a type merged otherwise keep no stamps.
    let plain = EntityRegistry::new().with(
        EntityType::new("Card")
            .field("title", FieldKind::Text)
            .field("body", FieldKind::Text)
            .field("due", FieldKind::Int),
    );
    let mut other = Engine::new(
        MemoryStore::new(),
        plain,
        EngineConfig::default().seed(4),
        node_info(1),
    )
    .expect("node");
    let id = other
        .insert("Card", card("a", "b", 1), t(0))
        .expect("insert");
    let key = EntityKey::new("Card", id);
    other
        .put(key.clone(), card("a", "b2", 1), t(5))
        .expect("put");
    assert!(
        other
            .get(&key)
            .expect("get")
            .expect("present")
            .field_stamps
            .is_empty()
    );
}

/// Two nodes edit different fields, a third the same field as one of them:
/// every different-field edit survives on every node, the field both
/// changed goes to the later writer (last-writer-wins fallback).
#[test]
fn different_fields_survive_and_the_same_field_falls_back() {
    let mut net = Net::new(3, merged_registry(FieldFallback::LastWriterWins));
    let id = net
        .hub
        .insert("Card", card("t", "b", 1), t(0))
        .expect("insert");
    let key = EntityKey::new("Card", id);
    net.sync_all(t(1)).expect("sync");
    let edit = |net: &mut Net, i: usize, name: &str, value: Value, at: i64| {
        let mut fields = net.nodes[i]
            .get(&key)
            .expect("get")
            .expect("present")
            .fields;
        fields.insert(name.into(), value);
        net.nodes[i].put(key.clone(), fields, t(at)).expect("put");
    };
    edit(&mut net, 0, "title", Value::from("t0"), 10);
    edit(&mut net, 1, "body", Value::from("b1"), 11);
    edit(&mut net, 2, "title", Value::from("t2"), 12);
    net.sync_all(t(20)).expect("sync");
    net.sync_all(t(21)).expect("sync");
    assert!(net.converged());
    let held = net.hub.get(&key).expect("get").expect("present");
    assert_eq!(held.fields["title"], Value::from("t2"), "the later writer");
    assert_eq!(held.fields["body"], Value::from("b1"));
    assert_eq!(held.fields["due"], Value::Int(1));
    for node in &mut net.nodes {
        let here = node.get(&key).expect("get").expect("present");
        assert!(here.same_version(&held), "{here:?} != {held:?}");
    }
    let audit = net.hub.audit_log().expect("audit");
    assert_eq!(audit.len(), 2, "{audit:?}");
    assert!(audit.iter().all(|a| a.winner == ConflictSide::Merged));
    assert!(audit[1].detail.contains("title"), "{}", audit[1].detail);
}

/// A deletion against a concurrent edit is decided whole by the fallback:
/// under server-wins the hub's version (here the edit, which reached it
/// first) stands and the deletion is in the version history.
#[test]
fn a_deletion_against_an_edit_is_decided_by_the_fallback() {
    let mut net = Net::new(2, merged_registry(FieldFallback::ServerWins));
    let id = net.nodes[0]
        .insert("Card", card("t", "b", 1), t(0))
        .expect("insert");
    let key = EntityKey::new("Card", id);
    net.sync_all(t(1)).expect("sync");
    net.nodes[0]
        .put(key.clone(), card("t", "b", 2), t(10))
        .expect("put");
    net.nodes[1].delete(key.clone(), t(11)).expect("delete");
    net.sync(0, t(20)).expect("sync");
    net.sync(1, t(21)).expect("sync");
    net.sync_all(t(30)).expect("sync");
    assert!(net.converged());
    let held = net.hub.get(&key).expect("get").expect("present");
    assert!(!held.is_deleted, "the hub's version stands");
    assert_eq!(held.fields["due"], Value::Int(2));
    let versions = net.hub.versions(&key).expect("versions");
    assert!(versions.iter().any(|v| v.data.is_deleted), "{versions:?}");
    let audit = net.hub.audit_log().expect("audit");
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].winner, ConflictSide::Local);
    assert!(audit[0].detail.contains("deletion"), "{}", audit[0].detail);
}

/// Regression (simulator seed 6573): a merge whose two sides hold the same
/// value of a field kept the dot of the earlier write, so a later merge
/// took that write as the field's last change and brought back a value the
/// hub had replaced after seeing it. Here the hub sets `body` back to its
/// first value after node 0 changed it; node 1's concurrent title edit
/// (still holding the first value) merges with that, and node 0's later
/// edit of `due` (still holding its own body) must not undo the hub's.
#[test]
fn a_field_set_back_after_an_edit_stays_through_later_merges() {
    let mut net = Net::new(2, merged_registry(FieldFallback::LastWriterWins));
    let id = net.nodes[0]
        .insert("Card", card("t", "b", 1), t(0))
        .expect("insert");
    let key = EntityKey::new("Card", id);
    net.sync(0, t(1)).expect("sync");
    net.sync(1, t(2)).expect("sync");
    net.nodes[0]
        .put(key.clone(), card("t", "b2", 1), t(3))
        .expect("node 0 edits the body");
    net.sync(0, t(4)).expect("sync");
    net.hub
        .put(key.clone(), card("t", "b", 1), t(5))
        .expect("the hub sets it back");
    net.nodes[0]
        .put(key.clone(), card("t", "b2", 2), t(6))
        .expect("node 0 edits due, before it sees the hub's write");
    net.nodes[1]
        .put(key.clone(), card("t1", "b", 1), t(7))
        .expect("node 1 edits the title");
    net.sync(1, t(8)).expect("sync");
    net.sync(0, t(9)).expect("sync");
    net.sync_all(t(10)).expect("sync");
    net.sync_all(t(11)).expect("sync");
    assert!(net.converged());
    let held = net.hub.get(&key).expect("get").expect("present");
    assert_eq!(
        held.fields["body"],
        Value::from("b"),
        "the hub's later write"
    );
    assert_eq!(held.fields["title"], Value::from("t1"));
    assert_eq!(held.fields["due"], Value::Int(2));
}
