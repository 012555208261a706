//! The packet codec: domain packets to protobuf bytes and back, with
//! positional entity encoding, compression, body hashing and size limits.
//!
//! Decoding never panics and never allocates beyond the configured limits; any
//! defect is a [`PeerError`].

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::{Read, Write};

use bytes::Bytes;
use prost::Message;
use sync_proto::v1 as pb;
use uuid::Uuid;

use crate::clock::{Dot, Stamp, VersionVector};
use crate::entity::{Entity, EntityKey, FieldStamps, Operation};
use crate::entity_registry::EntityRegistry;
use crate::error::{ErrorCode, PeerError};
use crate::ids::{NodeId, Timestamp};
use crate::packet::{Change, Codec, Envelope, ErrorMessage, Packet, PacketHeader};
use crate::rejected::Rejection;
use crate::value::{Record, Value};

/// Size limits applied to everything decoded. Defaults are safe for a hub.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest envelope accepted, in bytes (default 64 MiB).
    pub max_envelope_bytes: u64,
    /// Largest decompressed body accepted, in bytes (default 256 MiB).
    pub max_body_bytes: u64,
    /// Most entity changes accepted in one packet (default 100,000).
    pub max_entities: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_envelope_bytes: 64 << 20,
            max_body_bytes: 256 << 20,
            max_entities: 100_000,
        }
    }
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// A packet's identity for acknowledgements: SHA-256 over its sender,
/// recipient, number, timestamp and body hash. Two different packets that
/// reuse a number (one side was restored from a backup) differ here.
pub fn packet_digest(header: &PacketHeader) -> [u8; 32] {
    let mut bytes = Vec::with_capacity(16 + 16 + 8 + 8 + 32);
    bytes.extend(header.sender.as_bytes());
    bytes.extend(header.recipient.as_bytes());
    bytes.extend(header.packet_no.to_be_bytes());
    bytes.extend(header.timestamp.as_micros().to_be_bytes());
    bytes.extend(header.body_sha256);
    sha256(&bytes)
}

/// Most packets one train ([`Envelope::Train`]) may carry; a longer one is
/// refused as malformed. Senders build far shorter ones (see
/// [`crate::EngineConfig::pipeline`]).
pub const MAX_TRAIN_PACKETS: usize = 256;

/// Encodes an envelope to wire bytes. Deterministic.
pub fn encode_envelope(envelope: &Envelope) -> Bytes {
    let kind = match envelope {
        Envelope::Packet(p) => pb::envelope::Kind::Packet(packet_to_pb(p)),
        Envelope::Error(e) => pb::envelope::Kind::Error(error_to_pb(e)),
        Envelope::Train(packets) => pb::envelope::Kind::Train(pb::PacketTrain {
            packets: packets.iter().map(packet_to_pb).collect(),
        }),
    };
    Bytes::from(pb::Envelope { kind: Some(kind) }.encode_to_vec())
}

fn packet_to_pb(p: &Packet) -> pb::Packet {
    let header = header_to_pb(&p.header).encode_to_vec();
    pb::Packet {
        header_sha256: sha256(&header).to_vec(),
        header,
        body: p.body.to_vec(),
    }
}

/// Decodes wire bytes into an envelope, checking sizes and field shapes (the
/// body stays compressed; see [`decode_body`]). A train must hold one to
/// [`MAX_TRAIN_PACKETS`] packets between one sender and one recipient, each
/// after the first continuing the one before it under the next number.
pub fn decode_envelope(bytes: &[u8], limits: &Limits) -> Result<Envelope, PeerError> {
    check_size("envelope", bytes.len() as u64, limits.max_envelope_bytes)?;
    let envelope = pb::Envelope::decode(bytes).map_err(|e| decode_error("envelope", e))?;
    match envelope.kind {
        Some(pb::envelope::Kind::Packet(p)) => Ok(Envelope::Packet(packet_from_pb(p)?)),
        Some(pb::envelope::Kind::Error(e)) => Ok(Envelope::Error(error_from_pb(e)?)),
        Some(pb::envelope::Kind::Train(train)) => {
            if train.packets.is_empty() || train.packets.len() > MAX_TRAIN_PACKETS {
                return Err(malformed(
                    NodeId::NIL,
                    format!(
                        "a train holds {} packets; it must hold 1 to {MAX_TRAIN_PACKETS}",
                        train.packets.len()
                    ),
                ));
            }
            let packets = train
                .packets
                .into_iter()
                .map(packet_from_pb)
                .collect::<Result<Vec<_>, _>>()?;
            check_train(&packets)?;
            Ok(Envelope::Train(packets))
        }
        None => Err(malformed(
            NodeId::NIL,
            "envelope carries neither packet nor error",
        )),
    }
}

fn packet_from_pb(p: pb::Packet) -> Result<Packet, PeerError> {
    if p.header.is_empty() {
        return Err(malformed(NodeId::NIL, "packet has no header"));
    }
    if sha256(&p.header).as_slice() != p.header_sha256.as_slice() {
        return Err(PeerError::HeaderHashMismatch);
    }
    let header = pb::PacketHeader::decode(p.header.as_slice())
        .map_err(|e| decode_error("packet header", e))?;
    Ok(Packet {
        header: header_from_pb(header)?,
        body: Bytes::from(p.body),
    })
}

/// The packets of a train follow each other between one pair.
fn check_train(packets: &[Packet]) -> Result<(), PeerError> {
    for pair in packets.windows(2) {
        let (before, after) = (&pair[0].header, &pair[1].header);
        let follows = after.continues
            && after.sender == before.sender
            && after.recipient == before.recipient
            && Some(after.packet_no) == before.packet_no.checked_add(1);
        if !follows {
            return Err(malformed(
                after.sender,
                format!(
                    "packet {} of the train does not continue packet {} before it",
                    after.packet_no, before.packet_no
                ),
            ));
        }
    }
    Ok(())
}

/// Encodes changes positionally (field names once per type), compresses them
/// with `codec`, and returns `(compressed body, raw length)`.
pub fn encode_body(changes: &[Change], registry: &EntityRegistry, codec: Codec) -> (Vec<u8>, u64) {
    encode_body_with(changes, &[], registry, codec)
}

/// Like [`encode_body`], with notices of the recipient's changes that this
/// side refused.
pub fn encode_body_with(
    changes: &[Change],
    rejections: &[Rejection],
    registry: &EntityRegistry,
    codec: Codec,
) -> (Vec<u8>, u64) {
    encode_parts(changes, rejections, &[], registry, codec)
}

/// Encodes a whole [`Body`]: changes, rejection notices and evictions.
/// The migrations a hub sends and a node's failure report travel too.
pub fn encode_full_body(body: &Body, registry: &EntityRegistry, codec: Codec) -> (Vec<u8>, u64) {
    let mut pb_body = parts_to_pb(&body.changes, &body.rejections, &body.evictions, registry);
    pb_body.migrations = body
        .migrations
        .iter()
        .map(crate::migration::wire::migration_to_pb)
        .collect();
    pb_body.migration_failure = body
        .migration_failure
        .as_ref()
        .map(crate::migration::wire::failure_to_pb);
    let raw = pb_body.encode_to_vec();
    let raw_len = raw.len() as u64;
    (compress(codec, &raw), raw_len)
}

fn encode_parts(
    changes: &[Change],
    rejections: &[Rejection],
    evictions: &[EntityKey],
    registry: &EntityRegistry,
    codec: Codec,
) -> (Vec<u8>, u64) {
    let raw = parts_to_pb(changes, rejections, evictions, registry).encode_to_vec();
    let raw_len = raw.len() as u64;
    (compress(codec, &raw), raw_len)
}

fn parts_to_pb(
    changes: &[Change],
    rejections: &[Rejection],
    evictions: &[EntityKey],
    registry: &EntityRegistry,
) -> pb::PacketBody {
    let mut pb_body = body_to_pb(changes, registry);
    pb_body.rejections = rejections.iter().map(rejection_to_pb).collect();
    pb_body.evictions = evictions
        .iter()
        .map(|key| pb::Eviction {
            entity_type: key.entity_type.clone(),
            uuid: key.id.as_bytes().to_vec(),
        })
        .collect();
    pb_body
}

/// Verifies nothing: decompresses (bounded by `header.body_raw_len` and the
/// limits) and decodes a body. Call after checking the body hash.
pub fn decode_body(
    header: &PacketHeader,
    body: &[u8],
    limits: &Limits,
) -> Result<Vec<Change>, PeerError> {
    decode_body_with(header, body, limits).map(|body| body.changes)
}

/// A decoded packet body: the changes, the rejection notices and the
/// evictions.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Body {
    /// The changes, parents before children.
    pub changes: Vec<Change>,
    /// The sender's refusals of the recipient's changes.
    pub rejections: Vec<Rejection>,
    /// From the hub: entities that left the recipient's scope, children
    /// before parents (see [`crate::scope`]).
    pub evictions: Vec<EntityKey>,
    /// From the hub: the schema migrations the recipient needs, oldest
    /// first (see [`crate::migration`]).
    pub migrations: Vec<crate::migration::Migration>,
    /// From a node: the migration it could not apply.
    pub migration_failure: Option<crate::migration::MigrationFailure>,
}

/// Like [`decode_body`], keeping the rejection notices too.
pub fn decode_body_with(
    header: &PacketHeader,
    body: &[u8],
    limits: &Limits,
) -> Result<Body, PeerError> {
    check_size("packet body", header.body_raw_len, limits.max_body_bytes)?;
    if header.entity_count > limits.max_entities {
        return Err(PeerError::TooLarge {
            what: "packet's entity count",
            size: u64::from(header.entity_count),
            limit: u64::from(limits.max_entities),
        });
    }
    let raw = decompress(header.codec, body, header.body_raw_len)?;
    let mut pb_body =
        pb::PacketBody::decode(raw.as_slice()).map_err(|e| decode_error("packet body", e))?;
    check_size(
        "packet's rejection count",
        pb_body.rejections.len() as u64,
        u64::from(limits.max_entities),
    )?;
    let rejections = std::mem::take(&mut pb_body.rejections)
        .into_iter()
        .map(|r| rejection_from_pb(r, header.sender))
        .collect::<Result<Vec<_>, _>>()?;
    check_size(
        "packet's eviction count",
        pb_body.evictions.len() as u64,
        u64::from(limits.max_entities),
    )?;
    let evictions = std::mem::take(&mut pb_body.evictions)
        .into_iter()
        .map(|e| {
            let id = uuid_from(&e.uuid)
                .ok_or_else(|| malformed(header.sender, "evicted entity uuid is not 16 bytes"))?;
            Ok(EntityKey::new(e.entity_type, id))
        })
        .collect::<Result<Vec<_>, PeerError>>()?;
    check_size(
        "packet's migration count",
        pb_body.migrations.len() as u64,
        u64::from(limits.max_entities),
    )?;
    let migrations = std::mem::take(&mut pb_body.migrations)
        .into_iter()
        .map(|m| {
            let version = m.schema_version.clone();
            crate::migration::wire::migration_from_pb(m).ok_or_else(|| {
                malformed(
                    header.sender,
                    format!("migration schema version {version:?} is not major.minor.patch"),
                )
            })
        })
        .collect::<Result<Vec<_>, PeerError>>()?;
    let migration_failure = match pb_body.migration_failure.take() {
        None => None,
        Some(f) => {
            let version = f.schema_version.clone();
            Some(crate::migration::wire::failure_from_pb(f).ok_or_else(|| {
                malformed(
                    header.sender,
                    format!(
                        "failed migration's schema version {version:?} is not major.minor.patch"
                    ),
                )
            })?)
        }
    };
    let changes = body_from_pb(pb_body, header.sender)?;
    if changes.len() != header.entity_count as usize {
        return Err(malformed(
            header.sender,
            format!(
                "header announces {} changes, body holds {}",
                header.entity_count,
                changes.len()
            ),
        ));
    }
    Ok(Body {
        changes,
        rejections,
        evictions,
        migrations,
        migration_failure,
    })
}

/// A request opened by [`open_request`] without any engine state: the
/// envelope decoded and its header checked, the body hash verified, the
/// body decompressed and decoded. Hand it to
/// [`crate::Engine::respond_verified`], which then does only the store
/// work; a server opens requests outside the engine's lock.
///
/// A body whose hash or decoding fails does not make [`open_request`]
/// fail: the failure is kept and reported by the engine in the order it
/// checks every packet (addressing, sender, schema, clock, then the body),
/// so a request gets the same answer however it reaches the engine.
#[derive(Debug)]
pub struct VerifiedRequest {
    pub(crate) envelope: OpenedEnvelope,
    reply_codec: Option<Codec>,
    pub(crate) single_packet_reply: bool,
}

/// What a request carries.
#[derive(Debug)]
pub(crate) enum OpenedEnvelope {
    /// A packet, or the packets of a train in order: never empty.
    Packets(Vec<OpenedPacket>),
    /// The peer's refusal of a packet of ours.
    Refusal(ErrorMessage),
}

/// A packet with its body checked.
#[derive(Debug)]
pub(crate) struct OpenedPacket {
    /// The header.
    pub header: PacketHeader,
    /// The compressed body, kept to decode again when an apply is retried.
    pub body: Bytes,
    /// The body's SHA-256 matches the header.
    pub hash_ok: bool,
    /// The decoded body (when the hash holds), until the engine takes it.
    pub decoded: Option<Result<Body, PeerError>>,
}

/// The body of an opened packet: the one decoded when it was opened, or
/// decoded now (when an apply is retried after the first attempt took it).
pub(crate) fn take_body(
    decoded: &mut Option<Result<Body, PeerError>>,
    header: &PacketHeader,
    body: &[u8],
    limits: &Limits,
) -> Result<Body, PeerError> {
    match decoded.take() {
        Some(body) => body,
        None => decode_body_with(header, body, limits),
    }
}

impl VerifiedRequest {
    /// The sender the request names (not yet checked against anything but
    /// its own bytes).
    pub fn sender(&self) -> NodeId {
        match &self.envelope {
            OpenedEnvelope::Packets(packets) => packets
                .first()
                .map_or(NodeId::NIL, |packet| packet.header.sender),
            OpenedEnvelope::Refusal(message) => message.sender,
        }
    }

    /// The packet's header (the first packet's, for a train); `None` when
    /// the request is an error envelope.
    pub fn packet_header(&self) -> Option<&PacketHeader> {
        match &self.envelope {
            OpenedEnvelope::Packets(packets) => packets.first().map(|p| &p.header),
            OpenedEnvelope::Refusal(_) => None,
        }
    }

    /// How many packets the request carries: one, more for a train, none
    /// for an error envelope.
    pub fn packet_count(&self) -> usize {
        match &self.envelope {
            OpenedEnvelope::Packets(packets) => packets.len(),
            OpenedEnvelope::Refusal(_) => 0,
        }
    }

    /// The codec the reply packet's body is compressed with: the one set by
    /// [`VerifiedRequest::with_reply_codec`], else the codec of the
    /// request's packet (every peer reads what it writes), else (an error
    /// envelope) `None`, for the engine's configured codec.
    pub fn reply_codec(&self) -> Option<Codec> {
        self.reply_codec
            .or_else(|| self.packet_header().map(|h| h.codec))
    }

    /// The decompressed body lengths the request's packets announce,
    /// together.
    pub fn announced_body_bytes(&self) -> u64 {
        match &self.envelope {
            OpenedEnvelope::Packets(packets) => packets
                .iter()
                .fold(0u64, |sum, p| sum.saturating_add(p.header.body_raw_len)),
            OpenedEnvelope::Refusal(_) => 0,
        }
    }

    /// Answers with one packet, never a train
    /// ([`crate::packet::Envelope::Train`]), whatever is pending: for a
    /// client that reads one packet per reply (the JSON view).
    pub fn with_single_packet_reply(mut self) -> Self {
        self.single_packet_reply = true;
        self
    }

    /// Answers with `codec` whatever the request's packet used: for a
    /// transport that learned what the peer reads some other way (an HTTP
    /// `Accept-Encoding` that names gzip only).
    pub fn with_reply_codec(mut self, codec: Codec) -> Self {
        self.reply_codec = Some(codec);
        self
    }
}

/// Opens a request without the engine: decodes the envelope (sizes, field
/// shapes, header hash), checks the body's SHA-256 and decompresses and
/// decodes the body, all bounded by `limits` (pass the engine's
/// configured limits). Pure: no engine state, no IO; run it
/// on any thread, then hand the result to
/// [`crate::Engine::respond_verified`].
///
/// An envelope that cannot be decoded is an `Err`; answer it with
/// [`crate::Engine::respond_unreadable`]. A body that fails its hash or
/// its decoding is kept in the request for the engine to report (see
/// [`VerifiedRequest`]).
pub fn open_request(bytes: &[u8], limits: &Limits) -> Result<VerifiedRequest, PeerError> {
    // The bodies of a train share one decompression budget: together they
    // may announce no more than one body may.
    let mut announced = 0u64;
    let mut open = |packet: Packet| {
        let hash_ok = sha256(&packet.body) == packet.header.body_sha256;
        announced = announced.saturating_add(packet.header.body_raw_len);
        let decoded = hash_ok.then(|| {
            check_size("train's bodies", announced, limits.max_body_bytes)?;
            decode_body_with(&packet.header, &packet.body, limits)
        });
        OpenedPacket {
            header: packet.header,
            body: packet.body,
            hash_ok,
            decoded,
        }
    };
    let envelope = match decode_envelope(bytes, limits)? {
        Envelope::Packet(packet) => OpenedEnvelope::Packets(vec![open(packet)]),
        Envelope::Train(packets) => {
            OpenedEnvelope::Packets(packets.into_iter().map(open).collect())
        }
        Envelope::Error(message) => OpenedEnvelope::Refusal(message),
    };
    Ok(VerifiedRequest {
        envelope,
        reply_codec: None,
        single_packet_reply: false,
    })
}

thread_local! {
    /// zstd contexts kept per thread. Making a context per packet cost more
    /// than compressing or decompressing a small packet (an idle exchange's
    /// is a few bytes); a kept context gives the same bytes, since each
    /// call starts a new frame with the same parameters. A cache, not
    /// state: no output depends on what was compressed before.
    static ZSTD_COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> =
        RefCell::new(zstd::bulk::Compressor::new(1).ok());
    static ZSTD_DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        RefCell::new(zstd::bulk::Decompressor::new().ok());
}

/// Largest body decompressed into a buffer of its announced size at once
/// with the kept context; a larger one is read in steps, so a header that
/// announces much more than its body holds allocates no more than the
/// body can fill.
const BULK_DECOMPRESS_BYTES: u64 = 64 << 10;

fn zstd_compress(raw: &[u8]) -> Vec<u8> {
    let reused =
        ZSTD_COMPRESSOR.with(|c| c.borrow_mut().as_mut().and_then(|c| c.compress(raw).ok()));
    // Compressing an in-memory buffer fails only on allocation failure.
    reused.unwrap_or_else(|| zstd::bulk::compress(raw, 1).unwrap_or_else(|_| raw.to_vec()))
}

/// A small zstd body whose frame announces exactly `raw_len` bytes,
/// decompressed with the kept context; `None` for anything else (the
/// streaming path decodes it and reports its errors).
fn zstd_decompress_small(body: &[u8], raw_len: u64) -> Option<Vec<u8>> {
    if raw_len > BULK_DECOMPRESS_BYTES
        || zstd::zstd_safe::get_frame_content_size(body).ok()? != Some(raw_len)
    {
        return None;
    }
    let capacity = usize::try_from(raw_len).ok()?;
    ZSTD_DECOMPRESSOR.with(|d| {
        d.borrow_mut()
            .as_mut()
            .and_then(|d| d.decompress(body, capacity).ok())
    })
}

/// Compresses with `codec`. zstd at level 1 (fast, same ratio as gzip here).
pub fn compress(codec: Codec, raw: &[u8]) -> Vec<u8> {
    match codec {
        Codec::None => raw.to_vec(),
        Codec::Zstd => zstd_compress(raw),
        Codec::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(
                Vec::with_capacity(raw.len() / 3),
                flate2::Compression::default(),
            );
            // Writing to a Vec cannot fail.
            let _ = encoder.write_all(raw);
            encoder.finish().unwrap_or_default()
        }
    }
}

/// Decompresses exactly `raw_len` bytes, refusing anything longer.
pub fn decompress(codec: Codec, body: &[u8], raw_len: u64) -> Result<Vec<u8>, PeerError> {
    let expected = usize::try_from(raw_len)
        .map_err(|_| malformed(NodeId::NIL, "body length does not fit in memory"))?;
    let raw = match codec {
        Codec::None => body.to_vec(),
        Codec::Zstd => {
            if let Some(raw) = zstd_decompress_small(body, raw_len) {
                if raw.len() == expected {
                    return Ok(raw);
                }
            }
            let decoder =
                zstd::stream::read::Decoder::with_buffer(body).map_err(|e| PeerError::Decode {
                    what: "zstd body",
                    detail: e.to_string(),
                })?;
            read_bounded(decoder, body.len(), raw_len, "zstd body")?
        }
        Codec::Gzip => read_bounded(
            flate2::read::GzDecoder::new(body),
            body.len(),
            raw_len,
            "gzip body",
        )?,
    };
    if raw.len() != expected {
        return Err(malformed(
            NodeId::NIL,
            format!(
                "body decompresses to {} bytes, header says {raw_len}",
                raw.len()
            ),
        ));
    }
    Ok(raw)
}

/// Reads at most `raw_len + 1` bytes of decompressed output. Memory is
/// reserved as output arrives, from a small multiple of the compressed
/// size: a header that announces a huge body reserves nothing before the
/// bytes are really there.
fn read_bounded(
    reader: impl Read,
    body_len: usize,
    raw_len: u64,
    what: &'static str,
) -> Result<Vec<u8>, PeerError> {
    let first = usize::try_from(raw_len)
        .unwrap_or(usize::MAX)
        .min(body_len.saturating_mul(4).max(4096));
    let mut out = Vec::with_capacity(first);
    reader
        .take(raw_len.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| PeerError::Decode {
            what,
            detail: e.to_string(),
        })?;
    Ok(out)
}

fn check_size(what: &'static str, size: u64, limit: u64) -> Result<(), PeerError> {
    if size > limit {
        return Err(PeerError::TooLarge { what, size, limit });
    }
    Ok(())
}

fn decode_error(what: &'static str, e: prost::DecodeError) -> PeerError {
    PeerError::Decode {
        what,
        detail: e.to_string(),
    }
}

fn malformed(sender: NodeId, detail: impl Into<String>) -> PeerError {
    PeerError::Malformed {
        sender,
        detail: detail.into(),
    }
}

// --- header and error ------------------------------------------------------

fn header_to_pb(h: &PacketHeader) -> pb::PacketHeader {
    pb::PacketHeader {
        sender_node_id: h.sender.as_bytes().to_vec(),
        recipient_node_id: h.recipient.as_bytes().to_vec(),
        packet_no: h.packet_no,
        ack_packet_no: h.ack_packet_no,
        ack_digest: h.ack_digest.to_vec(),
        prev_digest: h.prev_digest.to_vec(),
        gap_check_packet_no: h.gap_check_packet_no,
        gap_check_digest: h.gap_check_digest.to_vec(),
        protocol_version: h.protocol_version,
        schema_version: h.schema_version.clone(),
        timestamp_micros: h.timestamp.as_micros(),
        codec: codec_to_pb(h.codec) as i32,
        body_sha256: h.body_sha256.to_vec(),
        entity_count: h.entity_count,
        more: h.more,
        resync: h.resync,
        pending_total: h.pending_total,
        body_raw_len: h.body_raw_len,
        continues: h.continues,
    }
}

fn header_from_pb(h: pb::PacketHeader) -> Result<PacketHeader, PeerError> {
    let sender = node_id(&h.sender_node_id, NodeId::NIL, "sender_node_id")?;
    Ok(PacketHeader {
        sender,
        recipient: node_id(&h.recipient_node_id, sender, "recipient_node_id")?,
        packet_no: h.packet_no,
        ack_packet_no: h.ack_packet_no,
        ack_digest: hash32(&h.ack_digest, sender, "ack_digest", true)?,
        prev_digest: hash32(&h.prev_digest, sender, "prev_digest", true)?,
        gap_check_packet_no: h.gap_check_packet_no,
        gap_check_digest: hash32(&h.gap_check_digest, sender, "gap_check_digest", true)?,
        protocol_version: h.protocol_version,
        schema_version: h.schema_version,
        timestamp: Timestamp::from_micros(h.timestamp_micros),
        codec: codec_from_pb(h.codec)?,
        body_sha256: hash32(&h.body_sha256, sender, "body_sha256", false)?,
        entity_count: h.entity_count,
        more: h.more,
        resync: h.resync,
        pending_total: h.pending_total,
        body_raw_len: h.body_raw_len,
        continues: h.continues,
    })
}

fn node_id(bytes: &[u8], sender: NodeId, field: &str) -> Result<NodeId, PeerError> {
    uuid_from(bytes)
        .map(NodeId)
        .ok_or_else(|| malformed(sender, format!("{field} is not a 16-byte UUID")))
}

fn hash32(
    bytes: &[u8],
    sender: NodeId,
    field: &str,
    may_be_empty: bool,
) -> Result<[u8; 32], PeerError> {
    if may_be_empty && bytes.is_empty() {
        return Ok([0; 32]);
    }
    bytes
        .try_into()
        .map_err(|_| malformed(sender, format!("{field} is not a 32-byte SHA-256")))
}

fn uuid_from(bytes: &[u8]) -> Option<Uuid> {
    Uuid::from_slice(bytes).ok()
}

fn codec_to_pb(codec: Codec) -> pb::Codec {
    match codec {
        Codec::None => pb::Codec::None,
        Codec::Zstd => pb::Codec::Zstd,
        Codec::Gzip => pb::Codec::Gzip,
    }
}

fn codec_from_pb(raw: i32) -> Result<Codec, PeerError> {
    match pb::Codec::try_from(raw) {
        Ok(pb::Codec::None) => Ok(Codec::None),
        Ok(pb::Codec::Zstd) => Ok(Codec::Zstd),
        Ok(pb::Codec::Gzip) => Ok(Codec::Gzip),
        _ => Err(PeerError::UnsupportedCodec { codec: raw }),
    }
}

fn error_to_pb(e: &ErrorMessage) -> pb::ErrorMessage {
    let code = match e.code {
        ErrorCode::Corrupt => pb::ErrorCode::Corrupt,
        ErrorCode::SchemaMismatch => pb::ErrorCode::SchemaMismatch,
        ErrorCode::UnknownNode => pb::ErrorCode::UnknownNode,
        ErrorCode::WrongRecipient => pb::ErrorCode::WrongRecipient,
        ErrorCode::TooLarge => pb::ErrorCode::TooLarge,
        ErrorCode::Unsupported => pb::ErrorCode::Unsupported,
        ErrorCode::Internal => pb::ErrorCode::Internal,
        ErrorCode::Unauthenticated => pb::ErrorCode::Unauthenticated,
        ErrorCode::ClockAhead => pb::ErrorCode::ClockAhead,
        ErrorCode::Unknown => pb::ErrorCode::Unspecified,
    };
    pb::ErrorMessage {
        code: code as i32,
        message: e.message.clone(),
        retryable: e.retryable,
        sender_node_id: e.sender.as_bytes().to_vec(),
        recipient_node_id: e.recipient.as_bytes().to_vec(),
    }
}

fn error_from_pb(e: pb::ErrorMessage) -> Result<ErrorMessage, PeerError> {
    let code = match pb::ErrorCode::try_from(e.code) {
        Ok(pb::ErrorCode::Corrupt) => ErrorCode::Corrupt,
        Ok(pb::ErrorCode::SchemaMismatch) => ErrorCode::SchemaMismatch,
        Ok(pb::ErrorCode::UnknownNode) => ErrorCode::UnknownNode,
        Ok(pb::ErrorCode::WrongRecipient) => ErrorCode::WrongRecipient,
        Ok(pb::ErrorCode::TooLarge) => ErrorCode::TooLarge,
        Ok(pb::ErrorCode::Unsupported) => ErrorCode::Unsupported,
        Ok(pb::ErrorCode::Internal) => ErrorCode::Internal,
        Ok(pb::ErrorCode::Unauthenticated) => ErrorCode::Unauthenticated,
        Ok(pb::ErrorCode::ClockAhead) => ErrorCode::ClockAhead,
        _ => ErrorCode::Unknown,
    };
    let optional_id = |bytes: &[u8]| uuid_from(bytes).map(NodeId).unwrap_or(NodeId::NIL);
    Ok(ErrorMessage {
        code,
        message: e.message.chars().take(4096).collect(),
        retryable: e.retryable,
        sender: optional_id(&e.sender_node_id),
        recipient: optional_id(&e.recipient_node_id),
    })
}

// --- body ------------------------------------------------------------------

/// Field names sent for each type: declared, non-excluded fields in
/// declaration order, then any other fields present (from newer peers) in name
/// order.
fn field_layout(changes: &[Change], registry: &EntityRegistry) -> BTreeMap<String, Vec<String>> {
    let mut layout: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for change in changes {
        let type_name = &change.entity.key.entity_type;
        let names = layout.entry(type_name.clone()).or_insert_with(|| {
            registry
                .get(type_name)
                .map(|t| {
                    t.fields()
                        .iter()
                        .filter(|f| !f.excluded)
                        .map(|f| f.name.clone())
                        .collect()
                })
                .unwrap_or_default()
        });
        let stamped = change.entity.field_stamps.keys();
        for name in change.entity.fields.keys().chain(stamped) {
            let excluded = registry.get(type_name).is_some_and(|t| t.is_excluded(name));
            if !excluded && !names.contains(name) {
                names.push(name.clone());
            }
        }
    }
    layout
}

fn body_to_pb(changes: &[Change], registry: &EntityRegistry) -> pb::PacketBody {
    let layout = field_layout(changes, registry);
    let index: BTreeMap<&str, u32> = layout
        .keys()
        .zip(0u32..)
        .map(|(k, i)| (k.as_str(), i))
        .collect();
    let types = layout
        .iter()
        .map(|(name, fields)| pb::TypeSchema {
            name: name.clone(),
            field_names: fields.clone(),
        })
        .collect();
    let mut clock_nodes = ClockNodes::default();
    let changes = changes
        .iter()
        .map(|c| {
            let type_name = c.entity.key.entity_type.as_str();
            let names = &layout[type_name];
            pb::EntityChange {
                type_index: index[type_name],
                uuid: c.entity.key.id.as_bytes().to_vec(),
                operation: operation_to_pb(c.operation) as i32,
                updated_at_micros: c.entity.updated_at.as_micros(),
                origin_node_id: c.entity.origin.as_bytes().to_vec(),
                values: names
                    .iter()
                    .map(|n| {
                        c.entity
                            .fields
                            .get(n)
                            .map_or_else(pb::Value::default, value_to_pb)
                    })
                    .collect(),
                clock: clock_to_pb(&c.entity, &mut clock_nodes),
                field_stamps: stamps_to_pb(&c.entity, names, &mut clock_nodes),
            }
        })
        .collect();
    pb::PacketBody {
        types,
        changes,
        clock_nodes: clock_nodes.ids,
        rejections: Vec::new(),
        evictions: Vec::new(),
        migrations: Vec::new(),
        migration_failure: None,
    }
}

/// The node table of one body: each node id once, in order of first use.
#[derive(Default)]
struct ClockNodes {
    ids: Vec<Vec<u8>>,
    index: BTreeMap<NodeId, u32>,
}

impl ClockNodes {
    fn index_of(&mut self, node: NodeId) -> u32 {
        let next = self.ids.len() as u32;
        *self.index.entry(node).or_insert_with(|| {
            self.ids.push(node.as_bytes().to_vec());
            next
        })
    }
}

fn clock_to_pb(entity: &Entity, nodes: &mut ClockNodes) -> Vec<pb::ClockEntry> {
    let at = entity.updated_at.as_micros();
    entity
        .clock
        .iter()
        .map(|(node, written)| pb::ClockEntry {
            node: nodes.index_of(node),
            micros_before: at.wrapping_sub(written.at.as_micros()),
            tag: written.tag,
        })
        .collect()
}

/// The field stamps of a version, by position in its type's field names
/// (every stamped field is in them: see `field_layout`; an excluded one,
/// which never travels, is left out).
fn stamps_to_pb(entity: &Entity, names: &[String], nodes: &mut ClockNodes) -> Vec<pb::FieldStamp> {
    let at = entity.updated_at.as_micros();
    entity
        .field_stamps
        .iter()
        .filter_map(|(name, dot)| {
            let field = names.iter().position(|n| n == name)?;
            Some(pb::FieldStamp {
                field: field as u32,
                node: nodes.index_of(dot.node),
                micros_before: at.wrapping_sub(dot.stamp.at.as_micros()),
                tag: dot.stamp.tag,
            })
        })
        .collect()
}

fn stamps_from_pb(
    stamps: Vec<pb::FieldStamp>,
    names: &[String],
    nodes: &[NodeId],
    updated_at: Timestamp,
    sender: NodeId,
) -> Result<FieldStamps, PeerError> {
    let mut out = FieldStamps::new();
    for stamp in stamps {
        let name = names.get(stamp.field as usize).ok_or_else(|| {
            malformed(
                sender,
                format!("field stamp index {} out of range", stamp.field),
            )
        })?;
        let node = *nodes.get(stamp.node as usize).ok_or_else(|| {
            malformed(
                sender,
                format!("field stamp node index {} out of range", stamp.node),
            )
        })?;
        let at = updated_at.as_micros().wrapping_sub(stamp.micros_before);
        let dot = Dot {
            node,
            stamp: Stamp {
                at: Timestamp::from_micros(at),
                tag: stamp.tag,
            },
        };
        if out.insert(name.clone(), dot).is_some() {
            return Err(malformed(sender, "a version stamps one field twice"));
        }
    }
    Ok(out)
}

fn clock_from_pb(
    entries: Vec<pb::ClockEntry>,
    nodes: &[NodeId],
    origin: NodeId,
    updated_at: Timestamp,
    sender: NodeId,
) -> Result<VersionVector, PeerError> {
    if entries.is_empty() {
        // A peer older than version vectors: the version includes its own
        // write only.
        return Ok(VersionVector::single(origin, updated_at));
    }
    let mut clock = VersionVector::new();
    for entry in entries {
        let node = *nodes.get(entry.node as usize).ok_or_else(|| {
            malformed(
                sender,
                format!("clock node index {} out of range", entry.node),
            )
        })?;
        if clock.get(node).is_some() {
            return Err(malformed(sender, "a version's clock names one node twice"));
        }
        let at = updated_at.as_micros().wrapping_sub(entry.micros_before);
        clock.observe(
            node,
            Stamp {
                at: Timestamp::from_micros(at),
                tag: entry.tag,
            },
        );
    }
    Ok(clock)
}

fn rejection_to_pb(r: &Rejection) -> pb::Rejection {
    pb::Rejection {
        id: r.id.as_bytes().to_vec(),
        entity_type: r.key.entity_type.clone(),
        uuid: r.key.id.as_bytes().to_vec(),
        version_digest: r.version_digest.to_vec(),
        reason: r.reason.clone(),
        hub_has_none: r.hub_has_none,
    }
}

fn rejection_from_pb(r: pb::Rejection, sender: NodeId) -> Result<Rejection, PeerError> {
    let id = uuid_from(&r.id).ok_or_else(|| malformed(sender, "rejection id is not 16 bytes"))?;
    let entity = uuid_from(&r.uuid)
        .ok_or_else(|| malformed(sender, "rejected entity uuid is not 16 bytes"))?;
    let version_digest: [u8; 32] = r
        .version_digest
        .as_slice()
        .try_into()
        .map_err(|_| malformed(sender, "rejected version digest is not 32 bytes"))?;
    Ok(Rejection {
        id,
        key: EntityKey::new(r.entity_type, entity),
        version_digest,
        reason: r.reason,
        hub_has_none: r.hub_has_none,
    })
}

fn body_from_pb(body: pb::PacketBody, sender: NodeId) -> Result<Vec<Change>, PeerError> {
    let clock_nodes = body
        .clock_nodes
        .iter()
        .map(|bytes| node_id(bytes, sender, "clock_nodes"))
        .collect::<Result<Vec<_>, _>>()?;
    body.changes
        .into_iter()
        .map(|c| {
            let schema = body.types.get(c.type_index as usize).ok_or_else(|| {
                malformed(sender, format!("type index {} out of range", c.type_index))
            })?;
            if c.values.len() > schema.field_names.len() {
                return Err(malformed(
                    sender,
                    format!("{} carries more values than field names", schema.name),
                ));
            }
            let id = uuid_from(&c.uuid)
                .ok_or_else(|| malformed(sender, "entity uuid is not 16 bytes"))?;
            let origin = node_id(&c.origin_node_id, sender, "origin_node_id")?;
            let operation = operation_from_pb(c.operation, sender)?;
            let mut fields = Record::new();
            for (name, value) in schema.field_names.iter().zip(c.values) {
                let value = value_from_pb(value, sender)?;
                // Positional encoding sends absent fields as nulls; absent
                // and null are the same, and records never store null.
                if !value.is_null() {
                    fields.insert(name.clone(), value);
                }
            }
            let updated_at = Timestamp::from_micros(c.updated_at_micros);
            let clock = clock_from_pb(c.clock, &clock_nodes, origin, updated_at, sender)?;
            let field_stamps = stamps_from_pb(
                c.field_stamps,
                &schema.field_names,
                &clock_nodes,
                updated_at,
                sender,
            )?;
            Ok(Change {
                operation,
                entity: Entity {
                    key: EntityKey::new(schema.name.clone(), id),
                    updated_at,
                    is_deleted: operation == Operation::Delete,
                    origin,
                    fields,
                    clock,
                    field_stamps,
                },
            })
        })
        .collect()
}

fn operation_to_pb(op: Operation) -> pb::Operation {
    match op {
        Operation::Insert => pb::Operation::Insert,
        Operation::Update => pb::Operation::Update,
        Operation::Delete => pb::Operation::Delete,
    }
}

fn operation_from_pb(raw: i32, sender: NodeId) -> Result<Operation, PeerError> {
    match pb::Operation::try_from(raw) {
        Ok(pb::Operation::Insert) => Ok(Operation::Insert),
        Ok(pb::Operation::Update) => Ok(Operation::Update),
        Ok(pb::Operation::Delete) => Ok(Operation::Delete),
        _ => Err(malformed(sender, format!("unknown operation {raw}"))),
    }
}

fn value_to_pb(value: &Value) -> pb::Value {
    use pb::value::Kind;
    let kind = match value {
        Value::Null => None,
        Value::Bool(b) => Some(Kind::BoolValue(*b)),
        Value::Int(i) => Some(Kind::IntValue(*i)),
        Value::Float(x) => Some(Kind::FloatValue(*x)),
        Value::Text(s) => Some(Kind::TextValue(s.clone())),
        Value::Bytes(b) => Some(Kind::BytesValue(b.clone())),
        Value::Timestamp(t) => Some(Kind::TimestampMicros(t.as_micros())),
        Value::Uuid(u) => Some(Kind::UuidValue(u.as_bytes().to_vec())),
        Value::List(items) => Some(Kind::ListValue(pb::ValueList {
            items: items.iter().map(value_to_pb).collect(),
        })),
        Value::Record(r) => Some(Kind::RecordValue(pb::ValueRecord {
            fields: r
                .iter()
                .map(|(name, v)| pb::RecordField {
                    name: name.clone(),
                    value: Some(value_to_pb(v)),
                })
                .collect(),
        })),
    };
    pb::Value { kind }
}

fn value_from_pb(value: pb::Value, sender: NodeId) -> Result<Value, PeerError> {
    use pb::value::Kind;
    Ok(match value.kind {
        None => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(b),
        Some(Kind::IntValue(i)) => Value::Int(i),
        Some(Kind::FloatValue(x)) => Value::Float(x),
        Some(Kind::TextValue(s)) => Value::Text(s),
        Some(Kind::BytesValue(b)) => Value::Bytes(b),
        Some(Kind::TimestampMicros(t)) => Value::Timestamp(Timestamp::from_micros(t)),
        Some(Kind::UuidValue(b)) => Value::Uuid(
            uuid_from(&b).ok_or_else(|| malformed(sender, "uuid value is not 16 bytes"))?,
        ),
        Some(Kind::ListValue(list)) => Value::List(
            list.items
                .into_iter()
                .map(|v| value_from_pb(v, sender))
                .collect::<Result<_, _>>()?,
        ),
        Some(Kind::RecordValue(record)) => {
            let mut out = Record::new();
            for field in record.fields {
                let value = value_from_pb(field.value.unwrap_or_default(), sender)?;
                if out.insert(field.name, value).is_some() {
                    return Err(malformed(sender, "nested record repeats a field name"));
                }
            }
            Value::Record(out)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let limits = Limits::default();
        for bytes in [&b""[..], b"\xff\xff\xff", b"\x0a\x05hello"] {
            let _ = decode_envelope(bytes, &limits);
        }
        assert!(
            decode_envelope(
                &[0u8; 10],
                &Limits {
                    max_envelope_bytes: 4,
                    ..limits
                }
            )
            .is_err()
        );
    }

    #[test]
    fn codecs_round_trip() {
        let raw = b"syncplan syncplan syncplan".repeat(50);
        for codec in [Codec::None, Codec::Zstd, Codec::Gzip] {
            let packed = compress(codec, &raw);
            assert_eq!(decompress(codec, &packed, raw.len() as u64).unwrap(), raw);
            assert!(decompress(codec, &packed, raw.len() as u64 - 1).is_err());
        }
    }
}
