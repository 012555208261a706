//! Packets as domain types: what the engine builds and reads. The packet
//! codec ([`crate::codec`]) turns them into wire bytes and back.

use bytes::Bytes;

use crate::entity::{Entity, Operation};
use crate::error::ErrorCode;
use crate::ids::{NodeId, Timestamp};

/// Compression of a packet body, named in its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Codec {
    /// Uncompressed.
    None,
    /// zstd (default): fast, the same ratio as gzip.
    #[default]
    Zstd,
    /// gzip, for peers that cannot speak zstd.
    Gzip,
}

/// Packet metadata, readable without touching the body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PacketHeader {
    /// Who built it.
    pub sender: NodeId,
    /// For whom.
    pub recipient: NodeId,
    /// Per-pair sequence number, from 1.
    pub packet_no: u64,
    /// Last packet number the sender applied from the recipient.
    pub ack_packet_no: u64,
    /// Digest of that packet ([`crate::codec::packet_digest`]).
    pub ack_digest: [u8; 32],
    /// Digest of the sender's previous packet to the recipient (zeros for the
    /// first): a packet numbered one above the last one received must chain
    /// onto it.
    pub prev_digest: [u8; 32],
    /// After a gap in the recipient's numbering: the recipient's packet the
    /// sender held before the gap (0 = no question) and its digest, which the
    /// recipient checks against what it really sent.
    pub gap_check_packet_no: u64,
    /// Digest for `gap_check_packet_no`.
    pub gap_check_digest: [u8; 32],
    /// Wire protocol version.
    pub protocol_version: u32,
    /// Sender's schema version, `major.minor.patch`.
    pub schema_version: String,
    /// Sender's clock when built.
    pub timestamp: Timestamp,
    /// Body compression.
    pub codec: Codec,
    /// SHA-256 of the (compressed) body bytes.
    pub body_sha256: [u8; 32],
    /// Number of entity changes in the body.
    pub entity_count: u32,
    /// More changes are pending than fit.
    pub more: bool,
    /// The sender asks for everything to be sent again (it was restored).
    pub resync: bool,
    /// Changes still pending at the sender for the recipient, this packet's
    /// included.
    pub pending_total: u64,
    /// Length of the encoded body before compression.
    pub body_raw_len: u64,
    /// The packet carries only the changes after those of the sender's
    /// packet `packet_no - 1`, which it follows in a train
    /// ([`Envelope::Train`]): the recipient applies it only right after that
    /// packet.
    pub continues: bool,
}

/// One change in a packet body.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// Insert, update or delete, as seen from the recipient.
    pub operation: Operation,
    /// The version being sent (excluded fields removed).
    pub entity: Entity,
}

/// A packet: header and compressed body.
#[derive(Clone, Debug, PartialEq)]
pub struct Packet {
    /// Metadata.
    pub header: PacketHeader,
    /// The compressed, encoded body.
    pub body: Bytes,
}

/// A refusal sent back instead of a packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorMessage {
    /// Kind of refusal.
    pub code: ErrorCode,
    /// Explanation for a person.
    pub message: String,
    /// Sending again later may succeed.
    pub retryable: bool,
    /// Who refused (nil if unknown).
    pub sender: NodeId,
    /// Whose packet was refused (nil if unknown).
    pub recipient: NodeId,
}

/// What crosses the wire: a packet, a train of packets, or a refusal.
// Short-lived and moved once from decoder to engine; boxing the common
// variant would add an allocation per packet for no gain.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Envelope {
    /// A packet.
    Packet(Packet),
    /// A refusal.
    Error(ErrorMessage),
    /// Consecutive packets from one sender to one recipient, sent together
    /// when more changes are pending than fit in one (pipelining): the
    /// first is a packet like any other, each following one
    /// [`PacketHeader::continues`] the one before it. Never empty.
    Train(Vec<Packet>),
}

impl Envelope {
    /// The packets carried: one for [`Envelope::Packet`], all of a train,
    /// none for a refusal.
    pub fn packets(&self) -> &[Packet] {
        match self {
            Envelope::Packet(p) => std::slice::from_ref(p),
            Envelope::Train(packets) => packets,
            Envelope::Error(_) => &[],
        }
    }
}
