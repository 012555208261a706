//! Building packets: batch selection from the change registry, parents
//! before children, numbering, and in-flight bookkeeping.

use bytes::Bytes;

use super::{Ctx, Engine};
use crate::codec::{self, sha256};
use crate::entity::StoredEntity;
use crate::error::SyncError;
use crate::ids::{NodeId, Timestamp};
use crate::node_registry::{InFlight, PeerState, SENT_HISTORY, SentDigest};
use crate::packet::{Change, Envelope, Packet, PacketHeader};
use crate::store::{PendingQuery, Store, StoreTxn};
use crate::timer::Armed;
use crate::value::Value;

/// A packet ready to send. Hand `bytes` to the transport.
#[derive(Clone, Debug, PartialEq)]
pub struct Transmit {
    /// The peer to send it to.
    pub to: NodeId,
    /// Its number.
    pub packet_no: u64,
    /// How many entity changes it carries.
    pub entity_count: u32,
    /// More changes are pending than fit.
    pub more: bool,
    /// The encoded envelope.
    pub bytes: Bytes,
}

impl<S: Store> Engine<S> {
    /// The next packet this engine wants sent, if any: one per peer with a
    /// running session that is waiting to send (just started, answered with
    /// more to do, or retrying after a timeout). Arms the peer's retry timer.
    pub fn poll_transmit(&mut self, now: Timestamp) -> Result<Option<Transmit>, SyncError> {
        let Some(peer) = self
            .sessions
            .iter()
            .find(|(_, s)| s.want_send)
            .map(|(id, _)| *id)
        else {
            return Ok(None);
        };
        let transmit = self.build_packet(peer, now)?;
        let delay = {
            let attempt = self.sessions.get(&peer).map_or(0, |s| s.attempt);
            self.config.retry.delay_ms(attempt, &mut self.rng)
        };
        if let Some(session) = self.sessions.get_mut(&peer) {
            session.want_send = false;
            session.retry = Some(Armed {
                deadline: now.add_millis(delay),
                attempt: session.attempt,
            });
        }
        Ok(Some(transmit))
    }

    /// Builds the next packet for `peer`: its acknowledgement of the peer's
    /// last packet and up to one batch of pending changes (all unacknowledged
    /// changes are sent again). The hub calls this to answer a node.
    pub fn build_packet(&mut self, peer: NodeId, now: Timestamp) -> Result<Transmit, SyncError> {
        let (store, ctx) = self.parts(now);
        let mut txn = store.begin()?;
        let mut state = txn.peer(peer)?.ok_or(SyncError::UnknownPeer(peer))?;
        if state.revoked {
            return Err(SyncError::RevokedPeer(peer));
        }
        let batch = select_batch(&txn, &ctx, &state)?;
        let mut changes: Vec<Change> = batch
            .entities
            .iter()
            .map(|s| Change {
                operation: s.operation_for(state.acked_seq),
                entity: strip_excluded(&ctx, s),
            })
            .collect();
        let packet_no = state.sent_packet_no + 1;
        let (notices, put_back) =
            super::quarantine::notices_for(&mut txn, &ctx, &state, packet_no, &changes)?;
        changes.extend(put_back);
        let (body, body_raw_len) =
            codec::encode_body_with(&changes, &notices, ctx.registry, ctx.config.codec);
        let pending_total = if batch.more {
            txn.count_pending(&PendingQuery::for_peer(&state, usize::MAX))?
        } else {
            changes.len() as u64
        };
        let header = PacketHeader {
            sender: ctx.local.id,
            recipient: peer,
            packet_no,
            ack_packet_no: state.received_packet_no,
            ack_digest: state.received_digest,
            prev_digest: state.sent_digest(state.sent_packet_no).unwrap_or([0; 32]),
            gap_check_packet_no: state.gap_check.map_or(0, |g| g.packet_no),
            gap_check_digest: state.gap_check.map_or([0; 32], |g| g.digest),
            protocol_version: sync_proto::PROTOCOL_VERSION,
            schema_version: ctx.config.schema.own.to_string(),
            timestamp: now,
            codec: ctx.config.codec,
            body_sha256: sha256(&body),
            entity_count: changes.len() as u32,
            more: batch.more,
            resync: state.resync_requested,
            pending_total,
            body_raw_len,
        };
        record_sent(
            &mut state,
            &header,
            batch.upto_seq,
            ctx.config.max_in_flight,
            now,
        );
        txn.put_peer(&state)?;
        txn.commit()?;
        let transmit = Transmit {
            to: peer,
            packet_no: header.packet_no,
            entity_count: header.entity_count,
            more: header.more,
            bytes: codec::encode_envelope(&Envelope::Packet(Packet {
                header,
                body: Bytes::from(body),
            })),
        };
        if let Some(session) = self.sessions.get_mut(&peer) {
            session.progress.sent += u64::from(transmit.entity_count);
        }
        self.progress_event(peer);
        Ok(transmit)
    }
}

/// Entities chosen for one packet.
struct Batch {
    /// In send order: parents before children.
    entities: Vec<StoredEntity>,
    /// Every change pending for the peer up to this sequence is included.
    upto_seq: u64,
    /// Pending changes remain beyond `upto_seq`.
    more: bool,
}

/// Takes pending changes in sequence order up to the batch limits and orders
/// parents first. A child whose pending parent falls beyond the batch is
/// parked by the receiver until the parent arrives in a later packet; pulling
/// the parent forward would resend it after this packet is acknowledged.
fn select_batch<T: StoreTxn>(txn: &T, ctx: &Ctx<'_>, peer: &PeerState) -> Result<Batch, SyncError> {
    let limit = ctx.config.batch_entities;
    let candidates = txn.pending(&PendingQuery::for_peer(peer, limit.saturating_add(1)))?;
    let mut entities = Vec::with_capacity(candidates.len().min(limit));
    let mut bytes = 0usize;
    for candidate in &candidates {
        let size = approx_size(candidate);
        if entities.len() == limit
            || (!entities.is_empty() && bytes + size > ctx.config.batch_bytes)
        {
            break;
        }
        bytes += size;
        entities.push(candidate.clone());
    }
    let complete = entities.len() == candidates.len();
    let upto_seq = if complete {
        txn.last_seq()?
    } else {
        entities.last().map_or(peer.acked_seq, |e| e.seq)
    };
    entities.sort_by_key(|e| (ctx.registry.depth(&e.entity.key.entity_type), e.seq));
    Ok(Batch {
        entities,
        upto_seq,
        more: !complete,
    })
}

fn strip_excluded(ctx: &Ctx<'_>, stored: &StoredEntity) -> crate::entity::Entity {
    let mut entity = stored.entity.clone();
    if let Some(ty) = ctx.registry.get(&entity.key.entity_type) {
        entity.fields.retain(|name, _| !ty.is_excluded(name));
    }
    entity
}

fn record_sent(
    state: &mut PeerState,
    header: &PacketHeader,
    upto_seq: u64,
    max_in_flight: usize,
    now: Timestamp,
) {
    state.sent_packet_no = header.packet_no;
    state.last_sync_out = Some(now);
    let digest = codec::packet_digest(header);
    state.sent_digests.push(SentDigest {
        packet_no: header.packet_no,
        digest,
    });
    let excess = state.sent_digests.len().saturating_sub(SENT_HISTORY);
    state.sent_digests.drain(..excess);
    state.in_flight.push(InFlight {
        packet_no: header.packet_no,
        upto_seq,
        digest,
        resync: header.resync,
    });
    // The oldest packet of a running resync request stays remembered beyond
    // the window: an acknowledgement of it or of any later packet (all carry
    // the request) answers the request, even once those later packets have
    // left the window.
    let pinned = usize::from(state.in_flight.first().is_some_and(|f| f.resync));
    // At least two: a request answered while the previous answer is still
    // on its way acknowledges that previous answer, which must still be
    // known, or with a window of one no acknowledgement ever lands.
    let limit = max_in_flight.max(2) + pinned;
    let excess = state.in_flight.len().saturating_sub(limit);
    state.in_flight.drain(pinned..pinned + excess);
}

/// Rough encoded size of an entity, for batch limits.
fn approx_size(stored: &StoredEntity) -> usize {
    48 + stored.entity.fields.values().map(value_size).sum::<usize>()
}

fn value_size(value: &Value) -> usize {
    2 + match value {
        Value::Null | Value::Bool(_) => 0,
        Value::Int(_) | Value::Float(_) | Value::Timestamp(_) => 8,
        Value::Text(s) => s.len(),
        Value::Bytes(b) => b.len(),
        Value::Uuid(_) => 16,
        Value::List(items) => items.iter().map(value_size).sum(),
        Value::Record(r) => r.iter().map(|(k, v)| k.len() + value_size(v)).sum(),
    }
}
