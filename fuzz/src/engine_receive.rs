//! Target `engine_receive`: the full receive path of a hub (decode, verify,
//! apply) on a memory store, fed outside bytes through
//! [`Engine::respond`].
//!
//! Input: a [`crate::fixup`] flags byte, then up to [`MAX_PACKETS`]
//! packets in the [`fixup::split_frames`] format (each repaired as the flags
//! say). The hub knows node 0 ([`node_info`]`(0)`, whose real packets make
//! the seeds) and a probe node. After the packets it checks that
//! - `respond` never panics and never fails (a memory store does not fail:
//!   every refusal must be an error envelope), and every reply decodes;
//! - answering one packet holds at most [`ALLOC_SLACK`] bytes plus
//!   [`ALLOC_FACTOR`] times the packet and its decompressed body (a header
//!   announcing 256 MiB must not make the hub reserve it);
//! - the hub's store stays readable and consistent: a real probe node, whose
//!   id appears in no input, then runs a whole session with the hub, its
//!   write reaches the hub, and it ends holding exactly the hub's entities.

use sync_conformance::fixtures::{self, hub_info, node_info, t};
use sync_conformance::net::{self, synced_state};
use sync_core::codec::{self, Limits};
use sync_core::{
    ConflictStrategy, Engine, EngineConfig, Entity, EntityKey, EntityRegistry, NodeId, NodeInfo,
    Record, Role, Uuid, Value,
};
use sync_store_memory::MemoryStore;

use crate::packet_decode::ALLOC_FACTOR;
use crate::{alloc_track, fixup, packet_decode};

/// Bytes the hub may hold answering one packet whatever its size (the
/// decoder's buffers, the store's growth, building and compressing the
/// reply).
pub const ALLOC_SLACK: usize = 4 << 20;

/// Most packets per input.
pub const MAX_PACKETS: usize = 8;

/// The registry of the hub and the seed node: the fixture registry (a
/// report, a line referencing it, and a note type per strategy and with
/// every value kind), reports resolved by last-writer-wins.
pub fn registry() -> EntityRegistry {
    fixtures::registry(ConflictStrategy::LastWriterWins)
}

/// The probe node: an id no seed contains.
pub fn probe_info() -> NodeInfo {
    NodeInfo::new(
        NodeId(Uuid::from_u128(0x6b2f_91d4_3c5e_4a07_8e1b_f0c2_d9a3_5e71)),
        "PROBE",
        "Probe",
        Role::Node,
    )
}

/// The hub every input meets: fresh memory store, node 0 and the probe
/// registered. The corpus generator talks to the same hub.
///
/// # Panics
///
/// When a memory store fails (it does not).
pub fn new_hub() -> Engine<MemoryStore> {
    let mut hub = Engine::new(
        MemoryStore::new(),
        registry(),
        EngineConfig::default().seed(1),
        hub_info(),
    )
    .expect("create hub");
    hub.register_peer(node_info(0)).expect("register node 0");
    hub.register_peer(probe_info()).expect("register probe");
    hub
}

/// Runs one input; panics on a failed check.
pub fn run(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut hub = new_hub();
    let limits = Limits::default();
    for (i, packet) in fixup::split_frames(rest, MAX_PACKETS)
        .into_iter()
        .enumerate()
    {
        let bytes = fixup::prepare(&fixup::frame(flags, packet));
        let (reply, peak) = alloc_track::peak_during(|| hub.respond(&bytes, t(i as i64)));
        let reply =
            reply.unwrap_or_else(|e| panic!("respond failed on packet {i} on a memory store: {e}"));
        let allowed = ALLOC_SLACK
            + ALLOC_FACTOR * (bytes.len() + packet_decode::decoded_body_len(&bytes, &limits));
        assert!(
            peak <= allowed,
            "the hub held {peak} bytes at its peak answering packet {i} ({} bytes), over the bound of {allowed}",
            bytes.len()
        );
        if let Err(e) = codec::decode_envelope(&reply, &limits) {
            panic!("the hub's reply to packet {i} does not decode: {e}");
        }
        net::drain(&mut hub);
    }
    probe_session(&mut hub);
}

/// A real node writes, syncs with `hub` and must end holding the hub's
/// entities, its own write included.
pub fn probe_session(hub: &mut Engine<MemoryStore>) {
    let mut probe = Engine::new(
        MemoryStore::new(),
        registry(),
        EngineConfig::default().seed(77),
        probe_info(),
    )
    .expect("create probe");
    probe.register_peer(hub_info()).expect("register hub");
    let fields = Record::from([("title".to_owned(), Value::from("probe"))]);
    let id = probe
        .insert(fixtures::NOTE_SERVER_WINS, fields, t(100))
        .expect("probe write");
    for round in 0..2 {
        if let Err(e) = net::session(&mut probe, hub, t(101 + round)) {
            panic!("the probe's session with the hub failed after the input: {e}");
        }
    }
    let key = EntityKey::new(fixtures::NOTE_SERVER_WINS, id);
    assert!(
        hub.get(&key).expect("read hub").is_some(),
        "the probe's write did not reach the hub"
    );
    let pending = probe.pending_count(hub_info().id).expect("pending");
    assert_eq!(pending, 0, "the probe still has changes for the hub");
    let hub_state = digests(&synced_state(hub).expect("read hub"));
    let probe_state = digests(&synced_state(&mut probe).expect("read probe"));
    assert!(
        hub_state == probe_state,
        "the probe holds {} entities after syncing, the hub {}; first difference: {:?}",
        probe_state.len(),
        hub_state.len(),
        hub_state
            .iter()
            .zip(&probe_state)
            .find(|(a, b)| a != b)
            .map(|(a, _)| a.0.clone())
    );
}

/// Entities by key and content digest (a digest compares a NaN float equal
/// to itself, which `Entity`'s `PartialEq` does not).
fn digests(entities: &[Entity]) -> Vec<(EntityKey, [u8; 32])> {
    entities
        .iter()
        .map(|e| (e.key.clone(), e.content_digest()))
        .collect()
}
