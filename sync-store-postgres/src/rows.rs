//! Conversions between the engine's types and column values.

use postgres::Row;
use postgres::types::FromSql;
use sync_core::conflict::ConflictSide;
use sync_core::events::SecurityKind;
use sync_core::node_registry::{GapCheck, InFlight, SentDigest};
use sync_core::{NodeId, Role, StoreError, Timestamp};

use crate::error::corrupt;

/// Column `i` of `row`, or a corruption error naming `what`.
pub(crate) fn get<'a, T: FromSql<'a>>(row: &'a Row, i: usize, what: &str) -> Result<T, StoreError> {
    row.try_get(i)
        .map_err(|e| corrupt(format!("column {i} of {what} cannot be read ({e})")))
}

/// A `u64` as PostgreSQL keeps it (`bigint`, bit for bit).
pub(crate) fn n(v: u64) -> i64 {
    v as i64
}

/// What [`n`] wrote.
pub(crate) fn u(v: i64) -> u64 {
    v as u64
}

/// A bound for `seq` comparisons (saturating: sequences never reach 2^63).
pub(crate) fn bound(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A row limit.
pub(crate) fn limit(v: usize) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A timestamp column.
pub(crate) fn time(v: i64) -> Timestamp {
    Timestamp::from_micros(v)
}

/// A digest column: exactly 32 bytes.
pub(crate) fn digest(bytes: &[u8], what: &str) -> Result<[u8; 32], StoreError> {
    bytes
        .try_into()
        .map_err(|_| corrupt(format!("{what} holds {} bytes, not 32", bytes.len())))
}

pub(crate) fn role_name(role: Role) -> &'static str {
    match role {
        Role::Hub => "hub",
        Role::Node => "node",
    }
}

pub(crate) fn role(name: &str) -> Result<Role, StoreError> {
    match name {
        "hub" => Ok(Role::Hub),
        "node" => Ok(Role::Node),
        other => Err(corrupt(format!("unknown node role {other:?}"))),
    }
}

pub(crate) fn side_name(side: ConflictSide) -> &'static str {
    match side {
        ConflictSide::Local => "local",
        ConflictSide::Incoming => "incoming",
        ConflictSide::Merged => "merged",
    }
}

pub(crate) fn side(name: &str) -> Result<ConflictSide, StoreError> {
    match name {
        "local" => Ok(ConflictSide::Local),
        "incoming" => Ok(ConflictSide::Incoming),
        "merged" => Ok(ConflictSide::Merged),
        other => Err(corrupt(format!("unknown conflict winner {other:?}"))),
    }
}

const KINDS: &[(SecurityKind, &str)] = &[
    (SecurityKind::UnknownSender, "unknown-sender"),
    (SecurityKind::RevokedSender, "revoked-sender"),
    (SecurityKind::WrongRecipient, "wrong-recipient"),
    (SecurityKind::Corrupt, "corrupt"),
    (SecurityKind::SchemaRejected, "schema-rejected"),
    (SecurityKind::RestoreDetected, "restore-detected"),
    (SecurityKind::AuthFailed, "auth-failed"),
    (SecurityKind::ClockAhead, "clock-ahead"),
];

/// The stored name of a security event's kind (`None` for a kind this
/// build does not know the name of).
pub(crate) fn kind_name(kind: SecurityKind) -> Option<&'static str> {
    KINDS
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, name)| *name)
}

pub(crate) fn kind(name: &str) -> Result<SecurityKind, StoreError> {
    KINDS
        .iter()
        .find(|(_, n)| *n == name)
        .map(|(k, _)| *k)
        .ok_or_else(|| corrupt(format!("unknown security event kind {name:?}")))
}

/// A node id column.
pub(crate) fn node(id: sync_core::Uuid) -> NodeId {
    NodeId(id)
}

const IN_FLIGHT_LEN: usize = 8 + 8 + 32 + 1;
const SENT_LEN: usize = 8 + 32;

/// The unacknowledged packets of a peer, 49 bytes each.
pub(crate) fn encode_in_flight(entries: &[InFlight]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * IN_FLIGHT_LEN);
    for e in entries {
        out.extend(e.packet_no.to_le_bytes());
        out.extend(e.upto_seq.to_le_bytes());
        out.extend(e.digest);
        out.push(u8::from(e.resync));
    }
    out
}

pub(crate) fn decode_in_flight(bytes: &[u8]) -> Result<Vec<InFlight>, StoreError> {
    if bytes.len() % IN_FLIGHT_LEN != 0 {
        return Err(corrupt("a peer's unacknowledged packets are truncated"));
    }
    Ok(bytes
        .chunks_exact(IN_FLIGHT_LEN)
        .map(|c| InFlight {
            packet_no: le(&c[0..8]),
            upto_seq: le(&c[8..16]),
            digest: array32(&c[16..48]),
            resync: c[48] != 0,
        })
        .collect())
}

/// The digests of a peer's recent packets, 40 bytes each.
pub(crate) fn encode_sent(entries: &[SentDigest]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * SENT_LEN);
    for e in entries {
        out.extend(e.packet_no.to_le_bytes());
        out.extend(e.digest);
    }
    out
}

pub(crate) fn decode_sent(bytes: &[u8]) -> Result<Vec<SentDigest>, StoreError> {
    if bytes.len() % SENT_LEN != 0 {
        return Err(corrupt("a peer's sent digests are truncated"));
    }
    Ok(bytes
        .chunks_exact(SENT_LEN)
        .map(|c| SentDigest {
            packet_no: le(&c[0..8]),
            digest: array32(&c[8..40]),
        })
        .collect())
}

/// A gap check from its three columns (all set or all NULL).
pub(crate) fn gap(
    packet_no: Option<i64>,
    digest: Option<&[u8]>,
    announced_in: Option<i64>,
) -> Result<Option<GapCheck>, StoreError> {
    match (packet_no, digest, announced_in) {
        (Some(p), Some(d), Some(a)) => Ok(Some(GapCheck {
            packet_no: u(p),
            digest: self::digest(d, "a gap check's digest")?,
            announced_in: u(a),
        })),
        (None, None, None) => Ok(None),
        _ => Err(corrupt("a peer's gap check is partly missing")),
    }
}

fn le(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(bytes);
    u64::from_le_bytes(b)
}

fn array32(bytes: &[u8]) -> [u8; 32] {
    let mut b = [0u8; 32];
    b.copy_from_slice(bytes);
    b
}
