//! Packet inspection and forging through the public codec: decode what an
//! engine sent, read its changes, corrupt its body, rewrite its header, or
//! forge packets a well-behaved engine never sends.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::ops::Range;

use bytes::Bytes;
use sync_core::codec::{self, Limits};
use sync_core::packet::{Change, Codec, Envelope, Packet, PacketHeader};
use sync_core::{Engine, EntityKey, EntityRegistry, NodeId, Store};

use crate::fixtures::{node_id, t};
use crate::net::Net;

/// Decodes wire bytes that must hold a packet.
///
/// # Panics
///
/// When the bytes are not a packet envelope (the test fails).
pub fn decode(bytes: &[u8]) -> Packet {
    match codec::decode_envelope(bytes, &Limits::default()).expect("envelope decodes") {
        Envelope::Packet(p) => p,
        other => panic!("expected a packet, got {other:?}"),
    }
}

/// Decodes wire bytes that must hold a packet or a train of packets: the
/// packets, in order.
///
/// # Panics
///
/// When the bytes are a refusal or do not decode (the test fails).
pub fn packets(bytes: &[u8]) -> Vec<Packet> {
    match codec::decode_envelope(bytes, &Limits::default()).expect("envelope decodes") {
        Envelope::Packet(p) => vec![p],
        Envelope::Train(t) => t,
        Envelope::Error(e) => panic!("expected a packet, got a refusal: {e:?}"),
    }
}

/// The header of wire bytes that must hold one packet.
pub fn header(bytes: &[u8]) -> PacketHeader {
    decode(bytes).header
}

/// The changes one packet carries (its hash is checked first).
///
/// # Panics
///
/// When the body's hash or encoding is wrong (the test fails).
pub fn packet_body(p: &Packet) -> Vec<Change> {
    assert_eq!(codec::sha256(&p.body), p.header.body_sha256, "body hash");
    codec::decode_body(&p.header, &p.body, &Limits::default()).expect("body decodes")
}

/// The changes a message carries: those of its packet, or of every packet
/// of its train in order.
///
/// # Panics
///
/// When a body's hash or encoding is wrong (the test fails).
pub fn body(bytes: &[u8]) -> Vec<Change> {
    packets(bytes).iter().flat_map(packet_body).collect()
}

/// The keys a packet carries.
pub fn keys_in(bytes: &[u8]) -> BTreeSet<EntityKey> {
    body(bytes).into_iter().map(|c| c.entity.key).collect()
}

/// Where the (compressed) body sits inside the envelope bytes.
///
/// # Panics
///
/// When the packet has no body (the test fails).
pub fn body_range(bytes: &[u8]) -> Range<usize> {
    let body = packets(bytes).swap_remove(0).body;
    assert!(!body.is_empty(), "packet has a body");
    let start = bytes
        .windows(body.len())
        .position(|w| w == body.as_ref())
        .expect("the body appears verbatim in the envelope");
    start..start + body.len()
}

/// A copy of `bytes` with one byte of the body flipped.
pub fn flip_body_byte(bytes: &[u8], which: usize) -> Vec<u8> {
    let range = body_range(bytes);
    let mut out = bytes.to_vec();
    out[range.start + which % range.len()] ^= 0x55;
    out
}

/// Re-encodes a packet after `edit` changed its header (the body and its
/// hash stay as they were).
pub fn rewrite_header(bytes: &[u8], edit: impl FnOnce(&mut PacketHeader)) -> Bytes {
    let mut packet = decode(bytes);
    edit(&mut packet.header);
    codec::encode_envelope(&Envelope::Packet(packet))
}

/// Packet bytes as a peer would send them: `changes` in the given order,
/// numbered `packet_no`, acknowledging nothing, chained onto the packet this
/// thread forged before it for the same pair. Lets tests deliver children
/// before their parents, which a well-behaved engine never sends.
pub fn forge(
    sender: NodeId,
    recipient: NodeId,
    packet_no: u64,
    changes: &[Change],
    registry: &EntityRegistry,
) -> Bytes {
    let (body, body_raw_len) = codec::encode_body(changes, registry, Codec::Zstd);
    let header = PacketHeader {
        sender,
        recipient,
        packet_no,
        ack_packet_no: 0,
        ack_digest: [0; 32],
        prev_digest: forged_digest(sender, recipient, packet_no.wrapping_sub(1)),
        gap_check_packet_no: 0,
        gap_check_digest: [0; 32],
        protocol_version: sync_proto::PROTOCOL_VERSION,
        schema_version: "1.0.0".into(),
        timestamp: t(0),
        codec: Codec::Zstd,
        body_sha256: codec::sha256(&body),
        entity_count: changes.len() as u32,
        more: false,
        resync: false,
        pending_total: changes.len() as u64,
        body_raw_len,
        continues: false,
    };
    FORGED.with(|f| {
        f.borrow_mut().insert(
            (sender, recipient, packet_no),
            codec::packet_digest(&header),
        )
    });
    codec::encode_envelope(&Envelope::Packet(Packet {
        header,
        body: Bytes::from(body),
    }))
}

thread_local! {
    /// Digests of the packets `forge` made in this test, so that a forged
    /// packet chains onto the previous one like a real sender's.
    static FORGED: RefCell<HashMap<(NodeId, NodeId, u64), [u8; 32]>> = Default::default();
}

fn forged_digest(sender: NodeId, recipient: NodeId, packet_no: u64) -> [u8; 32] {
    FORGED.with(|f| {
        f.borrow()
            .get(&(sender, recipient, packet_no))
            .copied()
            .unwrap_or([0; 32])
    })
}

/// The changes a hub on a fresh default store would send to node 0 for
/// `writes`, in the order the engine sends them (parents first).
///
/// # Panics
///
/// When the changes do not fit one packet (the test fails).
pub fn changes_from_hub<S: Store + Default>(
    registry: &EntityRegistry,
    writes: impl FnOnce(&mut Engine<S>),
) -> Vec<Change> {
    let mut net = Net::<S>::new(1, registry.clone());
    writes(&mut net.hub);
    let packet = net.hub.build_packet(node_id(0), t(0)).expect("hub builds");
    assert!(!packet.more, "one packet holds every change");
    body(&packet.bytes)
}
