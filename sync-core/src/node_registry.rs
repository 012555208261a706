//! The node registry (exchange plan): this node, its peers, and the per-peer
//! counters that must survive a restart.

use crate::ids::{NodeId, Timestamp};

/// Whether a node is the hub or a device node. Star topology: nodes sync only
/// with the hub.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The central node every other node syncs with.
    Hub,
    /// An offline-capable device node.
    Node,
}

/// Identity of a node: id, human code and display name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// UUID.
    pub id: NodeId,
    /// Human-readable code, e.g. `DESKTOP-USER-1`.
    pub code: String,
    /// Display name.
    pub name: String,
    /// Hub or node.
    pub role: Role,
    /// The id under which this node's writes enter version clocks
    /// ([`crate::clock`]): `id` in the first session on a new store, and a
    /// new one in every later session (an engine opening the store again)
    /// that writes. A store can be a restored older copy, whose clock
    /// entries may then name writes it lost; writes made after opening it
    /// carry a writer id never used before, so they cannot be mistaken for
    /// the lost ones.
    pub writer: NodeId,
}

impl NodeInfo {
    /// A node description (its writer id is its id).
    pub fn new(id: NodeId, code: impl Into<String>, name: impl Into<String>, role: Role) -> Self {
        NodeInfo {
            id,
            code: code.into(),
            name: name.into(),
            role,
            writer: id,
        }
    }

    /// The writer id of the next session on this store: derived from the
    /// node id, the current writer id and `salt` (the engine's seed mixed
    /// with the time of the session's first write).
    pub fn next_writer(&self, salt: u64) -> NodeId {
        let mut input = b"syncplan writer\0".to_vec();
        input.extend(self.id.as_bytes());
        input.extend(self.writer.as_bytes());
        input.extend(salt.to_be_bytes());
        let digest = crate::codec::sha256(&input);
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        NodeId(uuid::Builder::from_custom_bytes(bytes).into_uuid())
    }
}

/// A packet sent to a peer and not yet acknowledged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InFlight {
    /// Its number.
    pub packet_no: u64,
    /// Every change pending for the peer with a sequence up to this was in
    /// the packet: acknowledging it acknowledges them.
    pub upto_seq: u64,
    /// Its digest ([`crate::codec::packet_digest`]), compared with the
    /// peer's acknowledgement.
    pub digest: [u8; 32],
    /// It asked the peer to resend everything.
    pub resync: bool,
}

/// How many digests of packets sent to a peer are remembered, to answer the
/// peer's gap checks: one per message (the last packet of a train), so the
/// history spans as many exchanges whatever the trains' length.
pub const SENT_HISTORY: usize = 64;

/// A packet sent to a peer, remembered by number and digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SentDigest {
    /// Its number.
    pub packet_no: u64,
    /// Its digest ([`crate::codec::packet_digest`]).
    pub digest: [u8; 32],
}

/// A packet from the peer this node held before a gap in the peer's
/// numbering: the peer is asked to confirm it really sent it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GapCheck {
    /// The packet's number.
    pub packet_no: u64,
    /// Its digest as received here.
    pub digest: [u8; 32],
    /// The first packet of ours that carried the question; once the peer
    /// acknowledges it (or a later one), the peer has checked.
    pub announced_in: u64,
}

/// Everything this node remembers about one peer. Persisted by the store; a
/// plain struct so every field's meaning is documented in one place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerState {
    /// Who the peer is.
    pub info: NodeInfo,
    /// Revoked peers may not sync.
    pub revoked: bool,
    /// Number of the last packet built for the peer (0 = none).
    pub sent_packet_no: u64,
    /// Number of the last packet applied from the peer (0 = none).
    pub received_packet_no: u64,
    /// Digest of that packet (zeros when none).
    pub received_digest: [u8; 32],
    /// Highest acknowledgement seen in a packet applied from the peer. Fresh
    /// packets never acknowledge less than an earlier one unless the peer was
    /// restored from an older copy of its store.
    pub peer_ack_high: u64,
    /// Local change sequence up to which the peer has acknowledged
    /// everything pending for it.
    pub acked_seq: u64,
    /// Changes with a sequence up to this are sent to the peer even when they
    /// came from it (set when the peer was restored and lost them).
    pub resend_own_upto: u64,
    /// Unacknowledged packets, oldest first, bounded in length.
    pub in_flight: Vec<InFlight>,
    /// Digests of the last packets of the last [`SENT_HISTORY`] messages sent
    /// to the peer (a packet alone, or a train's last), oldest first
    /// (acknowledged or not).
    pub sent_digests: Vec<SentDigest>,
    /// A question for the peer after a gap in its numbering, carried in every
    /// packet until the peer has seen it.
    pub gap_check: Option<GapCheck>,
    /// This node was found restored relative to the peer and must ask it to
    /// resend everything, until a packet carrying the request is acknowledged.
    pub resync_requested: bool,
    /// Last time a packet from the peer was applied.
    pub last_sync_in: Option<Timestamp>,
    /// Last time a packet was built for the peer.
    pub last_sync_out: Option<Timestamp>,
    /// Schema version the peer last announced.
    pub schema_version: Option<String>,
}

impl PeerState {
    /// A freshly registered peer: nothing sent, nothing received.
    pub fn new(info: NodeInfo) -> Self {
        PeerState {
            info,
            revoked: false,
            sent_packet_no: 0,
            received_packet_no: 0,
            received_digest: [0; 32],
            peer_ack_high: 0,
            acked_seq: 0,
            resend_own_upto: 0,
            in_flight: Vec::new(),
            sent_digests: Vec::new(),
            gap_check: None,
            resync_requested: false,
            last_sync_in: None,
            last_sync_out: None,
            schema_version: None,
        }
    }

    /// The peer's id.
    pub fn id(&self) -> NodeId {
        self.info.id
    }

    /// Whether a stored change with this sequence and source is still owed to
    /// the peer.
    pub fn is_pending(&self, seq: u64, source: NodeId) -> bool {
        seq > self.acked_seq && (source != self.info.id || seq <= self.resend_own_upto)
    }

    /// Forgets what the peer has acknowledged so that everything is sent to it
    /// again, its own changes included (it was restored and lost them).
    pub fn reset_for_resync(&mut self, last_seq: u64) {
        self.acked_seq = 0;
        self.resend_own_upto = last_seq;
        self.in_flight.clear();
        self.gap_check = None;
    }

    /// Digest of the packet sent under `packet_no`, if still remembered: the
    /// last packet of each of the last [`SENT_HISTORY`] messages (a packet
    /// alone, or a train), and every packet still in flight.
    pub fn sent_digest(&self, packet_no: u64) -> Option<[u8; 32]> {
        self.sent_digests
            .iter()
            .find(|d| d.packet_no == packet_no)
            .map(|d| d.digest)
            .or_else(|| {
                self.in_flight
                    .iter()
                    .find(|f| f.packet_no == packet_no)
                    .map(|f| f.digest)
            })
    }
}
