//! Building packets: batch selection from the change registry, parents
//! before children, numbering, and in-flight bookkeeping.

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use bytes::Bytes;

use super::{Ctx, Engine};
use crate::codec::{self, sha256};
use crate::entity::{EntityKey, StoredEntity};
use crate::error::SyncError;
use crate::ids::{NodeId, Timestamp};
use crate::node_registry::{InFlight, PeerState, SENT_HISTORY, SentDigest};
use crate::packet::{Change, Envelope, Packet, PacketHeader};
use crate::scope::{Holding, NodeScope};
use crate::store::{PendingQuery, Store, StoreTxn};
use crate::timer::Armed;
use crate::value::Value;

/// A packet ready to send. Hand `bytes` to the transport.
#[derive(Clone, Debug, PartialEq)]
pub struct Transmit {
    /// The peer to send it to.
    pub to: NodeId,
    /// Its number (the last packet's, for a train).
    pub packet_no: u64,
    /// How many entity changes it carries (all its packets together).
    pub entity_count: u32,
    /// More changes are pending than fit.
    pub more: bool,
    /// Packets carried: more than one is a train
    /// ([`crate::packet::Envelope::Train`]), `packet_no` its last.
    pub packets: usize,
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
        self.build_packet_with(peer, now, &Selection::all())
    }

    /// Builds the next packet for `peer` holding only the pending changes
    /// that `selection` picks (an export of some entity types, or of the
    /// changes stored since a time). Changes it leaves out stay pending: the
    /// packet is recorded as covering only the changes before the first one
    /// it skipped, so its acknowledgement never acknowledges a change it did
    /// not carry. Selected changes after that point travel again in the
    /// next full packet (receivers treat a version they hold as old news).
    ///
    /// ```
    /// use sync_core::{Selection, Timestamp};
    ///
    /// let orders_this_week = Selection::all()
    ///     .with_types(["order", "order_line"])
    ///     .since(Timestamp::from_micros(1_700_000_000_000_000));
    /// assert!(!orders_this_week.is_all());
    /// ```
    pub fn build_packet_with(
        &mut self,
        peer: NodeId,
        now: Timestamp,
        selection: &Selection,
    ) -> Result<Transmit, SyncError> {
        let counted = self.pending_counts.get(&peer).copied();
        let (store, ctx) = self.parts(now);
        let mut txn = store.begin()?;
        let mut state = txn.peer(peer)?.ok_or(SyncError::UnknownPeer(peer))?;
        if state.revoked {
            return Err(SyncError::RevokedPeer(peer));
        }
        let (transmit, counted) =
            build_in_txn(&mut txn, &ctx, &mut state, now, selection, counted)?;
        txn.commit()?;
        self.after_build(&transmit, counted);
        Ok(transmit)
    }

    /// Bookkeeping once a packet built by [`build_in_txn`] is committed.
    pub(super) fn after_build(&mut self, transmit: &Transmit, counted: Option<PendingCount>) {
        match counted {
            Some(counted) => self.pending_counts.insert(transmit.to, counted),
            None => self.pending_counts.remove(&transmit.to),
        };
        if let Some(session) = self.sessions.get_mut(&transmit.to) {
            session.progress.sent += u64::from(transmit.entity_count);
        }
        self.progress_event(transmit.to);
    }
}

/// Which pending changes a packet may carry: every one (the default), or
/// those of some entity types, or those stored since a time, or both.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// Only changes of these entity types (`None`: every type).
    pub entity_types: Option<BTreeSet<String>>,
    /// Only changes stored here at or after this time
    /// ([`StoredEntity::stored_at`]: the local write, or the arrival of the
    /// packet that brought the change).
    pub since: Option<Timestamp>,
}

impl Selection {
    /// Every pending change.
    pub fn all() -> Self {
        Selection::default()
    }

    /// Also requires the change to be of one of `types`.
    pub fn with_types<I, T>(mut self, types: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.entity_types = Some(types.into_iter().map(Into::into).collect());
        self
    }

    /// Also requires the change to have been stored at or after `since`.
    pub fn since(mut self, since: Timestamp) -> Self {
        self.since = Some(since);
        self
    }

    /// Whether this selection picks every change.
    pub fn is_all(&self) -> bool {
        self.entity_types.is_none() && self.since.is_none()
    }

    /// Whether `stored` is picked.
    pub fn includes(&self, stored: &StoredEntity) -> bool {
        self.entity_types
            .as_ref()
            .is_none_or(|types| types.contains(&stored.entity.key.entity_type))
            && self.since.is_none_or(|since| stored.stored_at >= since)
    }
}

/// A remembered count of the changes a peer is owed, so that the progress
/// total of each packet of a long catch-up costs a count of the changes
/// acknowledged and written since the last packet, not of the whole backlog.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct PendingCount {
    /// The peer's acknowledged mark when counted.
    after_seq: u64,
    /// [`PendingQuery::resend_own_upto`] when counted.
    resend_own_upto: u64,
    /// The store's last sequence when counted.
    upto_seq: u64,
    /// Matching changes in `(after_seq, upto_seq]`.
    total: u64,
}

/// Builds the next packet for `state`'s peer inside `txn` and records it as
/// sent there (the caller commits), returning it with the pending count to
/// remember for the next one. When more changes are pending than fit in one
/// packet, further packets continuing it follow in a train, up to
/// [`crate::EngineConfig::pipeline`] packets and
/// [`crate::EngineConfig::batch_bytes`] encoded bytes together.
pub(super) fn build_in_txn<T: StoreTxn>(
    txn: &mut T,
    ctx: &Ctx<'_>,
    state: &mut PeerState,
    now: Timestamp,
    selection: &Selection,
    counted: Option<PendingCount>,
) -> Result<(Transmit, Option<PendingCount>), SyncError> {
    let first = build_one(txn, ctx, state, now, selection, counted, None)?;
    let counted = first.counted;
    let mut bytes = encoded_len(&first.packet);
    let mut last = first.follow_on();
    let mut packets = vec![first.packet];
    let longest = train_length(ctx);
    while last.more
        && selection.is_all()
        && packets.len() < longest
        && bytes < ctx.config.batch_bytes
    {
        let before = state.clone();
        let next = build_one(txn, ctx, state, now, selection, None, Some(last))?;
        let size = encoded_len(&next.packet);
        if bytes + size > ctx.config.batch_bytes {
            // Too big to ride along: it is built again, first in the next
            // message.
            *state = before;
            break;
        }
        bytes += size;
        last = next.follow_on();
        packets.push(next.packet);
    }
    remember_sent(state, last.packet_no, last.digest);
    txn.put_peer(state)?;
    let transmit = Transmit {
        to: state.id(),
        packet_no: last.packet_no,
        entity_count: packets.iter().map(|p| p.header.entity_count).sum(),
        more: last.more,
        packets: packets.len(),
        bytes: codec::encode_envelope(&match packets.len() {
            1 => Envelope::Packet(packets.remove(0)),
            _ => Envelope::Train(packets),
        }),
    };
    Ok((transmit, counted))
}

/// Most packets in one train: the configured pipeline, and fewer than the
/// in-flight window, so the whole train stays remembered until its
/// acknowledgement arrives.
fn train_length(ctx: &Ctx<'_>) -> usize {
    let window = ctx.config.max_in_flight.max(2);
    ctx.config.pipeline.clamp(1, window - 1)
}

/// Encoded size of a packet, near enough for the train's byte budget.
fn encoded_len(packet: &Packet) -> usize {
    packet.body.len() + 256
}

/// One packet built and recorded as sent.
struct Built {
    packet: Packet,
    /// Every change pending up to this sequence is in this packet or an
    /// earlier one of its train.
    upto_seq: u64,
    counted: Option<PendingCount>,
}

/// Where a packet continuing the one just built starts.
#[derive(Clone, Copy)]
struct FollowOn {
    packet_no: u64,
    /// The digest of the packet just built, which the next one chains onto.
    digest: [u8; 32],
    upto_seq: u64,
    more: bool,
    /// Changes still pending after the packet just built.
    pending_after: u64,
}

impl Built {
    fn follow_on(&self) -> FollowOn {
        let h = &self.packet.header;
        FollowOn {
            packet_no: h.packet_no,
            digest: codec::packet_digest(h),
            upto_seq: self.upto_seq,
            more: h.more,
            pending_after: h.pending_total.saturating_sub(u64::from(h.entity_count)),
        }
    }
}

/// Builds one packet for `state`'s peer and records it in `state` as sent
/// (the caller stores `state`). `after`: the packet continues the one
/// described, carrying only the changes after it, and no notices.
fn build_one<T: StoreTxn>(
    txn: &mut T,
    ctx: &Ctx<'_>,
    state: &mut PeerState,
    now: Timestamp,
    selection: &Selection,
    counted: Option<PendingCount>,
    after: Option<FollowOn>,
) -> Result<Built, SyncError> {
    let peer = state.id();
    let after_seq = after.map_or(state.acked_seq, |a| a.upto_seq);
    // A node behind the hub's schema gets its migrations before any entity
    // change: a packet of them alone.
    let migrations = match after {
        None => super::migrations::owed(ctx, state),
        Some(_) => Vec::new(),
    };
    let batch = if migrations.is_empty() {
        select_batch(txn, ctx, state, after_seq, selection)?
    } else {
        Batch::empty(after_seq)
    };
    let mut changes: Vec<Change> = batch
        .entities
        .iter()
        .map(|s| Change {
            operation: s.operation_for(state.acked_seq),
            entity: strip_excluded(ctx, s),
        })
        .collect();
    let packet_no = state.sent_packet_no + 1;
    let notices = match after {
        Some(_) => Vec::new(),
        None if !migrations.is_empty() => Vec::new(),
        None => {
            let (notices, put_back) =
                super::quarantine::notices_for(txn, ctx, state, packet_no, &changes)?;
            changes.extend(put_back);
            notices
        }
    };
    for (key, mark) in &batch.marks {
        Holding::save(txn, peer, key, *mark)?;
    }
    let body = codec::Body {
        changes,
        rejections: notices,
        evictions: batch.evictions,
        migrations,
        migration_failure: match after {
            None => ctx.migration_failure.cloned(),
            Some(_) => None,
        },
    };
    let quiet = body.rejections.is_empty() && body.migrations.is_empty();
    let (encoded, body_raw_len) = codec::encode_full_body(&body, ctx.registry, ctx.config.codec);
    let (changes, body) = (body.changes, encoded);
    let carried = changes.len() as u64;
    let (pending_total, counted) = match after {
        _ if !batch.more => (carried, None),
        Some(a) => (a.pending_after.max(carried), None),
        None if selection.is_all() => {
            let counted = count_pending(txn, state, counted)?;
            (counted.total.max(carried), Some(counted))
        }
        None => (carried, None),
    };
    let header = PacketHeader {
        sender: ctx.local.id,
        recipient: peer,
        packet_no,
        ack_packet_no: state.received_packet_no,
        ack_digest: state.received_digest,
        prev_digest: match after {
            Some(a) => a.digest,
            None => state.sent_digest(state.sent_packet_no).unwrap_or([0; 32]),
        },
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
        continues: after.is_some(),
    };
    record_sent(
        state,
        &header,
        batch.upto_seq,
        ctx.config.max_in_flight,
        now,
    );
    // A scoped node has no reason to acknowledge a packet that carries it
    // nothing, so changes outside its scope would stay owed to it. With
    // nothing else unacknowledged they are settled at once: there is
    // nothing in them for it to confirm.
    let settled = state
        .in_flight
        .iter()
        .all(|f| f.upto_seq <= state.acked_seq || f.packet_no == packet_no);
    if batch.nothing_owed && after.is_none() && carried == 0 && quiet && settled {
        state.acked_seq = state.acked_seq.max(batch.upto_seq);
    }
    Ok(Built {
        packet: Packet {
            header,
            body: Bytes::from(body),
        },
        upto_seq: batch.upto_seq,
        counted,
    })
}

/// The number of changes `state`'s peer is owed, from the remembered count
/// when it still describes this peer: minus the changes acknowledged since,
/// plus those written since. A change written again after it was counted is
/// counted twice until the next full count (the total is then an upper
/// bound); the last packet of a catch-up always carries the exact figure.
fn count_pending<T: StoreTxn>(
    txn: &T,
    state: &PeerState,
    counted: Option<PendingCount>,
) -> Result<PendingCount, SyncError> {
    let query = PendingQuery::for_peer(state, usize::MAX);
    let last = txn.last_seq()?;
    let total = match counted {
        Some(c)
            if c.after_seq <= query.after_seq
                && c.upto_seq <= last
                && c.resend_own_upto == query.resend_own_upto =>
        {
            let acked = txn.count_pending_upto(
                &PendingQuery {
                    after_seq: c.after_seq,
                    ..query
                },
                query.after_seq.min(c.upto_seq),
            )?;
            let written = txn.count_pending_upto(
                &PendingQuery {
                    after_seq: c.upto_seq.max(query.after_seq),
                    ..query
                },
                last,
            )?;
            c.total.saturating_sub(acked).saturating_add(written)
        }
        _ => txn.count_pending_upto(&query, last)?,
    };
    Ok(PendingCount {
        after_seq: query.after_seq,
        resend_own_upto: query.resend_own_upto,
        upto_seq: last,
        total,
    })
}

/// Entities chosen for one packet.
struct Batch {
    /// In send order: parents before children.
    entities: Vec<StoredEntity>,
    /// Entities that left the peer's scope, children before parents.
    evictions: Vec<EntityKey>,
    /// Scope marks to store with the packet.
    marks: Vec<(EntityKey, Option<Holding>)>,
    /// Every change pending for the peer up to this sequence is included.
    upto_seq: u64,
    /// Pending changes remain beyond `upto_seq`.
    more: bool,
    /// The peer is scoped and nothing in the batch concerns it: every
    /// change up to `upto_seq` was outside its scope and it holds none of
    /// them.
    nothing_owed: bool,
}

impl Batch {
    /// Nothing: every change pending after `after_seq` stays pending.
    fn empty(after_seq: u64) -> Self {
        Batch {
            entities: Vec::new(),
            evictions: Vec::new(),
            marks: Vec::new(),
            upto_seq: after_seq,
            more: false,
            nothing_owed: false,
        }
    }
}

/// Takes pending changes in sequence order up to the batch limits and orders
/// parents first. A child whose pending parent falls beyond the batch is
/// parked by the receiver until the parent arrives in a later packet; pulling
/// the parent forward would resend it after this packet is acknowledged.
///
/// Changes are loaded one at a time and the byte limit is checked before the
/// next is taken, so a batch never holds more than its limits plus one
/// change, however long the backlog.
fn select_batch<T: StoreTxn>(
    txn: &T,
    ctx: &Ctx<'_>,
    peer: &PeerState,
    after_seq: u64,
    selection: &Selection,
) -> Result<Batch, SyncError> {
    let limit = ctx.config.batch_entities;
    let query_limit = if selection.is_all() {
        limit.saturating_add(1)
    } else {
        usize::MAX
    };
    let mut entities = Vec::new();
    let mut evictions = Vec::new();
    let mut marks = Vec::new();
    let mut bytes = 0usize;
    let mut more = false;
    let mut first_skipped = None;
    // Changes outside the peer's scope are not owed to it: passed over, and
    // acknowledged with the rest.
    let scope = match ctx.is_hub() {
        true => Some(NodeScope::load(txn, peer.id())?).filter(|s| !s.is_everything()),
        false => None,
    };
    let mut failed = None;
    // The last change taken or passed over, and how many were visited: a
    // scoped peer's changes outside its scope fill no room, so the store's
    // page of `query_limit` changes can end before the batch is full.
    let mut handled_upto = after_seq;
    let mut visited = 0usize;
    txn.visit_pending(
        &PendingQuery {
            after_seq,
            ..PendingQuery::for_peer(peer, query_limit)
        },
        &mut |candidate| {
            visited += 1;
            if !selection.includes(&candidate) {
                first_skipped.get_or_insert(candidate.seq);
                return ControlFlow::Continue(());
            }
            let routed = match &scope {
                None => None,
                Some(scope) => {
                    match super::scopes::route(txn, ctx.registry, scope, peer, &candidate) {
                        Ok(routed) => Some(routed),
                        Err(e) => {
                            failed = Some(e);
                            return ControlFlow::Break(());
                        }
                    }
                }
            };
            let size = approx_size(&candidate)
                + routed.as_ref().map_or(0, |r| {
                    r.with.iter().map(approx_size).sum::<usize>() + 48 * r.evict.len()
                });
            let count = 1 + routed.as_ref().map_or(0, |r| r.with.len() + r.evict.len());
            let taken = entities.len() + evictions.len();
            if taken + count > limit.max(count)
                || (taken > 0 && bytes + size > ctx.config.batch_bytes)
            {
                more = true;
                return ControlFlow::Break(());
            }
            bytes += size;
            handled_upto = candidate.seq;
            match routed {
                None => entities.push(candidate),
                Some(routed) => {
                    if routed.send {
                        entities.push(candidate);
                    }
                    entities.extend(routed.with);
                    evictions.extend(routed.evict);
                    marks.extend(routed.marks);
                }
            }
            ControlFlow::Continue(())
        },
    )?;
    if let Some(e) = failed {
        return Err(e);
    }
    // A child that moved in with its parent may be pending itself: once.
    let mut seen = BTreeSet::new();
    entities.retain(|e| seen.insert(e.entity.key.clone()));
    if !more && visited >= query_limit {
        // The page ended, not the backlog: the rest comes next.
        more = true;
    }
    // Up to the last change handled, never further: children that moved
    // in with a parent may carry later sequences, and the changes between
    // are not in this batch.
    let mut upto_seq = if more { handled_upto } else { txn.last_seq()? };
    if let Some(skipped) = first_skipped {
        upto_seq = upto_seq.min(skipped - 1).max(after_seq);
    }
    entities.sort_by_key(|e| (ctx.registry.depth(&e.entity.key.entity_type), e.seq));
    let nothing_owed = scope.is_some() && entities.is_empty() && evictions.is_empty();
    Ok(Batch {
        entities,
        evictions,
        marks,
        upto_seq,
        more,
        nothing_owed,
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

/// Remembers the digest of a message's last packet (a packet alone, or a
/// train's last) for the peer's gap checks, the last [`SENT_HISTORY`] of
/// them. A packet before it in its train stays known while in flight.
fn remember_sent(state: &mut PeerState, packet_no: u64, digest: [u8; 32]) {
    state.sent_digests.push(SentDigest { packet_no, digest });
    let excess = state.sent_digests.len().saturating_sub(SENT_HISTORY);
    state.sent_digests.drain(..excess);
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
