//! Receiving: envelope checks, body hash before anything is applied,
//! duplicate detection, acknowledgement processing with restore detection,
//! and the one transaction that applies a packet.

use bytes::Bytes;

use super::apply::{ApplyStats, apply_change};
use super::outgoing::{self, Selection, Transmit};
use super::{Ctx, Engine, quarantine};
use crate::codec::{self, OpenedEnvelope, OpenedPacket, VerifiedRequest};
use std::collections::BTreeMap;

use crate::entity::{Entity, EntityKey};
use crate::error::{ErrorCode, PeerError, StoreError, SyncError};
use crate::events::{Event, SecurityKind};
use crate::ids::{NodeId, Timestamp};
use crate::node_registry::{GapCheck, PeerState};
use crate::packet::{Change, Codec, Envelope, ErrorMessage, PacketHeader};
use crate::store::{PendingQuery, Store, StoreTxn};

/// What happened to a received packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Incoming {
    /// The sender.
    pub from: NodeId,
    /// Its packet number.
    pub packet_no: u64,
    /// Already applied earlier: nothing changed, it is acknowledged again
    /// (for a train: no packet applied now, and one at least was a
    /// duplicate).
    pub duplicate: bool,
    /// Changes applied.
    pub applied: usize,
    /// Conflicts resolved.
    pub conflicts: usize,
    /// Children parked until their parent arrives.
    pub parked: usize,
    /// Changes this store refused, kept as rejected changes (the rest of
    /// the packet applied).
    pub rejected: usize,
    /// The sender has more for us.
    pub more: bool,
    /// One side was found restored from an older copy of its store and the
    /// pair was re-initialized.
    pub reinitialized: bool,
    /// A packet continuing one this node does not hold (a train whose
    /// earlier packet was not applied): nothing applied, not acknowledged;
    /// the sender sends its changes again from the acknowledgement.
    pub skipped: bool,
}

impl Incoming {
    /// Whether the packet was applied now (neither a duplicate nor skipped).
    pub fn is_fresh(&self) -> bool {
        !self.duplicate && !self.skipped
    }

    /// The sum of this and the packet after it in the same message: counts
    /// added, the later packet's number and `more`. When neither was
    /// applied now, the sum is a duplicate if either was, else skipped.
    fn then(self, later: Incoming) -> Incoming {
        let none_fresh = !self.is_fresh() && !later.is_fresh();
        let duplicate = none_fresh && (self.duplicate || later.duplicate);
        Incoming {
            from: self.from,
            packet_no: later.packet_no,
            duplicate,
            applied: self.applied + later.applied,
            conflicts: self.conflicts + later.conflicts,
            parked: self.parked + later.parked,
            rejected: self.rejected + later.rejected,
            more: later.more,
            reinitialized: self.reinitialized || later.reinitialized,
            skipped: none_fresh && !duplicate,
        }
    }
}

/// The hub's answer to one request ([`Engine::respond_as`]): the bytes to
/// send back and what happened.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reply {
    /// The reply to send to the node: its next packet, or an error envelope
    /// when [`Outcome::error`] is set.
    pub bytes: Bytes,
    /// What the request did, for the server's status code and metrics.
    pub outcome: Outcome,
}

/// What one request did at the hub ([`Reply::outcome`]).
///
/// A refused request has `error` set and every count at zero: nothing of it
/// was applied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Outcome {
    /// The node the request came from: the sender its header names (the
    /// authenticated one, for a request refused for naming another sender),
    /// or the authenticated sender when the bytes could not be decoded
    /// (`None` then under [`Engine::respond`]).
    pub peer: Option<NodeId>,
    /// Changes applied.
    pub applied: usize,
    /// Conflicts resolved (or queued for a person).
    pub conflicts: usize,
    /// Children parked until their parent arrives.
    pub parked: usize,
    /// Changes the store refused, kept as rejected changes and reported to
    /// the node; the rest of its packet applied.
    pub rejected: usize,
    /// The packet had been applied before: nothing changed, it was
    /// acknowledged again.
    pub duplicate: bool,
    /// One side was found restored from an older copy of its store and the
    /// pair was re-initialized.
    pub reinitialized: bool,
    /// The reply is an error envelope, with this code; `None` when the reply
    /// is a packet.
    pub error: Option<ErrorCode>,
}

impl Outcome {
    /// Whether the request was refused (the reply is an error envelope).
    pub fn is_refused(&self) -> bool {
        self.error.is_some()
    }
}

/// The answer of [`Engine::respond_registered`]: the reply, or why the
/// authenticated node may not sync at all.
///
/// `UnknownNode` and `RevokedNode` change nothing and record no security
/// event: the transport answers them itself (an HTTP 401) and records the
/// event with what it knows of the request (the peer address).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Answer {
    /// The node may sync: the reply, as [`Engine::respond_verified`] gives
    /// it.
    Reply(Reply),
    /// The authenticated node is not registered on this hub.
    UnknownNode,
    /// The authenticated node was revoked.
    RevokedNode,
}

/// Who answers a packet whose sender is not registered or was revoked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SenderCheck {
    /// The engine: an error envelope and a security event.
    Engine,
    /// The caller ([`Engine::respond_registered`]): the error is returned
    /// as it is, no event recorded; the sender's registration is checked
    /// before anything else about the packet.
    Caller,
}

/// Whether `error` says the sender is not registered or was revoked.
fn is_unregistered(error: &SyncError) -> bool {
    matches!(
        error,
        SyncError::Peer(PeerError::UnknownSender { .. } | PeerError::RevokedSender { .. })
    )
}

/// The wire code of a refusal and whether sending again may succeed.
fn envelope_code(error: &SyncError) -> (ErrorCode, bool) {
    match error {
        SyncError::Peer(e) => (e.code(), e.is_corruption()),
        SyncError::Schema(_) => (ErrorCode::SchemaMismatch, false),
        SyncError::Store(_) => (ErrorCode::Internal, true),
        _ => (ErrorCode::Unsupported, false),
    }
}

/// What processing an acknowledgement found.
#[derive(Default)]
struct AckOutcome {
    advanced: bool,
    restore: Option<String>,
    /// The packet of the peer's that this node's gap check asked about, now
    /// answered (confirmed, or the peer would have asked for a resync).
    confirmed: Option<u64>,
}

impl<S: Store> Engine<S> {
    /// Handles bytes received from a peer: a packet is verified and applied
    /// in one transaction (or refused whole); a refusal from the peer is
    /// returned as [`SyncError::Rejected`].
    pub fn handle_incoming(&mut self, bytes: &[u8], now: Timestamp) -> Result<Incoming, SyncError> {
        let request = match codec::open_request(bytes, &self.config.limits) {
            Ok(request) => request,
            Err(e) => {
                self.security(None, SecurityKind::Corrupt, e.to_string(), now);
                return Err(e.into());
            }
        };
        match request.envelope {
            OpenedEnvelope::Packets(mut packets) => self
                .handle_packets(&mut packets, now, false, SenderCheck::Engine)
                .map(|(i, _)| i),
            OpenedEnvelope::Refusal(message) => Err(self.handle_refusal(message)),
        }
    }

    /// The hub's entry point for a trusted in-process transport, where
    /// whoever hands over the bytes may speak for any node (tests, a
    /// simulator, a single process hosting hub and nodes). Handles a node's
    /// bytes and returns the reply to send back: the next packet for that
    /// node, or an error envelope telling it why its packet was refused.
    /// Only store failures are returned as `Err` (answer those with a
    /// transient error).
    ///
    /// A server whose transport authenticates its clients calls
    /// [`Engine::respond_as`] instead, which also refuses a packet sent in
    /// another node's name and reports what happened. Both run the same
    /// code.
    ///
    /// The reply packet's body is compressed with the codec of the request's
    /// packet (see [`VerifiedRequest::reply_codec`]).
    pub fn respond(&mut self, request: &[u8], now: Timestamp) -> Result<Bytes, SyncError> {
        Ok(self.respond_inner(None, request, now)?.bytes)
    }

    /// The hub's entry point for servers: handles the bytes of a request
    /// whose sender the transport authenticated as `authenticated`, and
    /// returns the reply to send back with an [`Outcome`] to choose a status
    /// and record metrics from.
    ///
    /// A packet (or error envelope) whose header names a sender other than
    /// `authenticated` is refused before any store transaction is opened
    /// for it: nothing is applied, no peer state changes. The reply is an
    /// error envelope with [`ErrorCode::Unauthenticated`]
    /// ([`PeerError::SenderMismatch`]), and a security event of kind
    /// [`SecurityKind::AuthFailed`] is recorded (in its own transaction).
    ///
    /// Every other refusal (damaged bytes, unknown or revoked sender,
    /// schema, clock) is answered with an error envelope as by
    /// [`Engine::respond`], its code in [`Outcome::error`]. Only store
    /// failures are returned as `Err` (answer those with a transient error).
    ///
    /// It is [`codec::open_request`] followed by
    /// [`Engine::respond_verified`] (or [`Engine::respond_unreadable`]); a
    /// server that wants the decoding outside its lock on the engine calls
    /// those two itself.
    pub fn respond_as(
        &mut self,
        authenticated: NodeId,
        request: &[u8],
        now: Timestamp,
    ) -> Result<Reply, SyncError> {
        self.respond_inner(Some(authenticated), request, now)
    }

    /// The store half of [`Engine::respond_as`], for a request already
    /// opened by [`codec::open_request`] (decoding, hash check and
    /// decompression done, on any thread, without the engine): checks the
    /// sender against `authenticated`, applies the packet in one
    /// transaction and builds the reply, with the same answers, refusals,
    /// security events and [`Outcome`] as [`Engine::respond_as`].
    ///
    /// The reply packet's body is compressed with
    /// [`VerifiedRequest::reply_codec`]: the codec the request's packet was
    /// written in, unless the transport chose another with
    /// [`VerifiedRequest::with_reply_codec`]. It is built and encoded here,
    /// since its body hash is part of the digest the engine records for the
    /// packet; for a reply with nothing to send that is a few hundred bytes.
    pub fn respond_verified(
        &mut self,
        authenticated: NodeId,
        request: VerifiedRequest,
        now: Timestamp,
    ) -> Result<Reply, SyncError> {
        self.respond_opened(Some(authenticated), request, now, SenderCheck::Engine)
    }

    /// [`Engine::respond_verified`] for a transport that refuses nodes that
    /// are not registered, or were revoked, itself: the registration of
    /// `authenticated` is read in the transaction that applies its packet,
    /// so an exchange costs one store transaction, and a node revoked
    /// before that transaction is not served.
    ///
    /// Such a node gets [`Answer::UnknownNode`] or [`Answer::RevokedNode`]
    /// whatever its request holds (before any check of the packet itself),
    /// with nothing changed and no security event recorded; the caller
    /// answers it and records the event. Every other request is answered
    /// as by [`Engine::respond_verified`], as [`Answer::Reply`]. A request
    /// that applies no packet of `authenticated` (one naming another
    /// sender, an error envelope) reads the registration in a transaction
    /// of its own first. Only store failures are returned as `Err`.
    pub fn respond_registered(
        &mut self,
        authenticated: NodeId,
        request: VerifiedRequest,
        now: Timestamp,
    ) -> Result<Answer, SyncError> {
        let own_packet = matches!(request.envelope, OpenedEnvelope::Packets(_))
            && request.sender() == authenticated;
        if !own_packet {
            if let Some(refused) = self.registration(authenticated)? {
                return Ok(refused);
            }
        }
        match self.respond_opened(Some(authenticated), request, now, SenderCheck::Caller) {
            Ok(reply) => Ok(Answer::Reply(reply)),
            Err(SyncError::Peer(PeerError::UnknownSender { .. })) => Ok(Answer::UnknownNode),
            Err(SyncError::Peer(PeerError::RevokedSender { .. })) => Ok(Answer::RevokedNode),
            Err(e) => Err(e),
        }
    }

    /// [`Engine::respond_unreadable`] for a transport that refuses nodes
    /// that are not registered, or were revoked, itself (see
    /// [`Engine::respond_registered`]): reads the registration of
    /// `authenticated` first, in a transaction of its own, and answers such
    /// a node with [`Answer::UnknownNode`] or [`Answer::RevokedNode`],
    /// recording nothing.
    pub fn respond_unreadable_registered(
        &mut self,
        authenticated: NodeId,
        error: PeerError,
        now: Timestamp,
    ) -> Result<Answer, SyncError> {
        if let Some(refused) = self.registration(authenticated)? {
            return Ok(refused);
        }
        Ok(Answer::Reply(self.unreadable(
            Some(authenticated),
            error,
            now,
        )))
    }

    /// `None` when `node` may sync, otherwise the answer refusing it.
    fn registration(&mut self, node: NodeId) -> Result<Option<Answer>, SyncError> {
        match self.store.begin()?.peer(node)? {
            None => Ok(Some(Answer::UnknownNode)),
            Some(peer) if peer.revoked => Ok(Some(Answer::RevokedNode)),
            Some(_) => Ok(None),
        }
    }

    /// Answers a request that [`codec::open_request`] could not open (the
    /// error it returned) from the node the transport authenticated as
    /// `authenticated`: records a security event of kind
    /// [`SecurityKind::Corrupt`] and returns an error envelope, as
    /// [`Engine::respond_as`] does for the same bytes. Nothing else changes.
    pub fn respond_unreadable(
        &mut self,
        authenticated: NodeId,
        error: PeerError,
        now: Timestamp,
    ) -> Reply {
        self.unreadable(Some(authenticated), error, now)
    }

    /// The one path behind [`Engine::respond`] (`authenticated: None`) and
    /// [`Engine::respond_as`].
    fn respond_inner(
        &mut self,
        authenticated: Option<NodeId>,
        request: &[u8],
        now: Timestamp,
    ) -> Result<Reply, SyncError> {
        match codec::open_request(request, &self.config.limits) {
            Ok(request) => self.respond_opened(authenticated, request, now, SenderCheck::Engine),
            Err(e) => Ok(self.unreadable(authenticated, e, now)),
        }
    }

    fn unreadable(
        &mut self,
        authenticated: Option<NodeId>,
        error: PeerError,
        now: Timestamp,
    ) -> Reply {
        self.security(authenticated, SecurityKind::Corrupt, error.to_string(), now);
        self.refusal_reply(authenticated, &error.into())
    }

    /// [`Engine::respond_inner`] after the request was opened. Under
    /// [`SenderCheck::Caller`] a packet from a sender that is not
    /// registered (or revoked) is returned as that `Err`.
    fn respond_opened(
        &mut self,
        authenticated: Option<NodeId>,
        request: VerifiedRequest,
        now: Timestamp,
        check: SenderCheck,
    ) -> Result<Reply, SyncError> {
        let claimed = request.sender();
        let reply_codec = request.reply_codec();
        let pipeline = match request.single_packet_reply {
            true => 1,
            false => self.config.pipeline,
        };
        let configured = std::mem::replace(&mut self.config.pipeline, pipeline);
        let result = self.respond_checked(authenticated, claimed, reply_codec, request, now, check);
        self.config.pipeline = configured;
        result
    }

    /// [`Engine::respond_opened`] with the reply's pipeline set.
    fn respond_checked(
        &mut self,
        authenticated: Option<NodeId>,
        claimed: NodeId,
        reply_codec: Option<Codec>,
        request: VerifiedRequest,
        now: Timestamp,
        check: SenderCheck,
    ) -> Result<Reply, SyncError> {
        if let Some(authenticated) = authenticated {
            if claimed != authenticated {
                let error = SyncError::from(PeerError::SenderMismatch {
                    authenticated,
                    claimed,
                });
                self.security(
                    Some(authenticated),
                    SecurityKind::AuthFailed,
                    error.to_string(),
                    now,
                );
                return Ok(self.refusal_reply(Some(authenticated), &error));
            }
        }
        let result = match request.envelope {
            OpenedEnvelope::Packets(mut packets) => self.with_codec(reply_codec, |engine| {
                engine.handle_packets(&mut packets, now, true, check)
            }),
            OpenedEnvelope::Refusal(message) => Err(self.handle_refusal(message)),
        };
        match result {
            Ok((incoming, reply)) => {
                let bytes = match reply {
                    Some(reply) => reply.bytes,
                    None => self.build_reply(incoming.from, reply_codec, now)?.bytes,
                };
                Ok(Reply {
                    bytes,
                    outcome: Outcome {
                        peer: Some(incoming.from),
                        applied: incoming.applied,
                        conflicts: incoming.conflicts,
                        parked: incoming.parked,
                        rejected: incoming.rejected,
                        duplicate: incoming.duplicate,
                        reinitialized: incoming.reinitialized,
                        error: None,
                    },
                })
            }
            Err(SyncError::Store(e)) => Err(SyncError::Store(e)),
            Err(e) if check == SenderCheck::Caller && is_unregistered(&e) => Err(e),
            Err(e) => Ok(self.refusal_reply(Some(claimed), &e)),
        }
    }

    /// [`Engine::build_packet`] with the body compressed by `codec` (the
    /// configured codec when `None`).
    fn build_reply(
        &mut self,
        peer: NodeId,
        codec: Option<Codec>,
        now: Timestamp,
    ) -> Result<Transmit, SyncError> {
        self.with_codec(codec, |engine| engine.build_packet(peer, now))
    }

    /// Runs `f` with packets compressed by `codec` (the configured codec
    /// when `None`): the configured codec is what packets are built with,
    /// and it is put back right after, whatever the result.
    fn with_codec<R>(&mut self, codec: Option<Codec>, f: impl FnOnce(&mut Self) -> R) -> R {
        let Some(codec) = codec.filter(|c| *c != self.config.codec) else {
            return f(self);
        };
        let configured = std::mem::replace(&mut self.config.codec, codec);
        let result = f(self);
        self.config.codec = configured;
        result
    }

    /// An error envelope for `error` with the outcome that describes it.
    fn refusal_reply(&self, peer: Option<NodeId>, error: &SyncError) -> Reply {
        let (code, _) = envelope_code(error);
        Reply {
            bytes: self.error_envelope(error),
            outcome: Outcome {
                peer,
                error: Some(code),
                ..Outcome::default()
            },
        }
    }

    /// An error envelope telling a peer why its packet was refused.
    pub fn error_envelope(&self, error: &SyncError) -> Bytes {
        let (code, retryable) = envelope_code(error);
        codec::encode_envelope(&Envelope::Error(ErrorMessage {
            code,
            message: error.to_string(),
            retryable,
            sender: self.local.id,
            recipient: NodeId::NIL,
        }))
    }

    fn handle_refusal(&mut self, message: ErrorMessage) -> SyncError {
        let peer = message.sender;
        if let Some(session) = self.sessions.get_mut(&peer) {
            if !message.retryable {
                session.active = false;
                session.retry = None;
            }
        }
        self.emit(Event::Rejected {
            peer,
            message: message.message.clone(),
        });
        SyncError::Rejected {
            peer,
            code: message.code,
            message: message.message,
            retryable: message.retryable,
        }
    }

    /// Verifies and applies the packets of a message in order, each in its
    /// own transaction (see [`Engine::handle_packet`]); with `reply`, the
    /// answer is built with the last one. The first refusal stops the train
    /// and is returned (the packets before it stay applied; their changes
    /// come again from the acknowledgement the sender holds). What happened
    /// is summed over the packets handled.
    fn handle_packets(
        &mut self,
        packets: &mut [OpenedPacket],
        now: Timestamp,
        reply: bool,
        check: SenderCheck,
    ) -> Result<(Incoming, Option<Transmit>), SyncError> {
        let count = packets.len();
        let mut total: Option<Incoming> = None;
        let mut answer = None;
        for (i, packet) in packets.iter_mut().enumerate() {
            let (incoming, built) =
                self.handle_packet(packet, now, reply && i + 1 == count, check)?;
            answer = built;
            total = Some(match total {
                None => incoming,
                Some(sum) => sum.then(incoming),
            });
        }
        // Never empty: a train is refused at decoding unless it holds a
        // packet, and a single packet is a train of one.
        let total = total.ok_or_else(|| PeerError::Malformed {
            sender: NodeId::NIL,
            detail: "a message without packets".into(),
        })?;
        Ok((total, answer))
    }

    /// Verifies and applies a packet; with `reply`, the answering packet is
    /// built and recorded in the same transaction (one commit per exchange
    /// at the hub) and returned too, unless the packet was a duplicate.
    ///
    /// Under [`SenderCheck::Caller`] an unregistered or revoked sender is
    /// refused first and not logged here.
    fn handle_packet(
        &mut self,
        packet: &mut OpenedPacket,
        now: Timestamp,
        reply: bool,
        check: SenderCheck,
    ) -> Result<(Incoming, Option<Transmit>), SyncError> {
        let sender = packet.header.sender;
        let result = self.apply_packet(packet, now, reply, check);
        match &result {
            Ok((incoming, _)) => self.after_packet(incoming, &packet.header),
            Err(error) if check == SenderCheck::Caller && is_unregistered(error) => {}
            Err(error) => self.refused(sender, error, now),
        }
        result
    }

    /// Verifies and applies one packet in one transaction. A version the
    /// store refuses rolls the attempt back; the packet is applied again
    /// with that version kept as a rejected change instead, until it applies
    /// (at most once more per refused version).
    fn apply_packet(
        &mut self,
        packet: &mut OpenedPacket,
        now: Timestamp,
        reply: bool,
        check: SenderCheck,
    ) -> Result<(Incoming, Option<Transmit>), SyncError> {
        let mut quarantine = BTreeMap::new();
        loop {
            let result = self.apply_packet_once(packet, now, &quarantine, reply, check);
            match result.as_ref().err().and_then(quarantine::refused) {
                Some((key, reason)) if !quarantine.contains_key(key) => {
                    quarantine.insert(key.clone(), reason.to_owned());
                }
                _ => return result,
            }
        }
    }

    fn apply_packet_once(
        &mut self,
        packet: &mut OpenedPacket,
        now: Timestamp,
        quarantine: &BTreeMap<EntityKey, String>,
        reply: bool,
        check: SenderCheck,
    ) -> Result<(Incoming, Option<Transmit>), SyncError> {
        let header = &packet.header;
        let counted = self.pending_counts.get(&header.sender).copied();
        let local = self.local.id;
        if check == SenderCheck::Engine {
            check_addressing(header, local)?;
        }
        let repeated_resync = header.resync
            && self
                .resync_answered
                .get(&header.sender)
                .is_some_and(|&answered| header.ack_packet_no <= answered);
        let mut resync_answered = None;
        // Restoring children deleted with a parent writes new versions.
        let moving = self.prepare_writer(now);
        let (store, mut ctx) = self.parts(now);
        ctx.quarantine = quarantine.clone();
        let mut txn = store.begin()?;
        if moving {
            txn.set_local_node(ctx.local)?;
        }
        let mut peer = known_peer(&txn, header.sender)?;
        if check == SenderCheck::Caller {
            check_addressing(header, local)?;
        }
        // A node the hub would refuse as too old, which the hub's migrations
        // bring past the minimum, is not refused: its packet waits and the
        // reply carries the migrations.
        let migrating =
            match ctx
                .config
                .schema
                .check(&peer.info.code, &header.schema_version, ctx.is_hub())
            {
                Ok(()) => false,
                Err(_) if super::migrations::can_catch_up(&ctx, &header.schema_version) => true,
                Err(e) => return Err(e.into()),
            };
        check_clock(header, now, ctx.config.max_clock_offset_ms)?;
        if !packet.hash_ok {
            return Err(PeerError::BodyHashMismatch {
                sender: header.sender,
                packet_no: header.packet_no,
            }
            .into());
        }
        let mut incoming = Incoming {
            from: header.sender,
            packet_no: header.packet_no,
            duplicate: header.packet_no <= peer.received_packet_no,
            applied: 0,
            conflicts: 0,
            parked: 0,
            rejected: 0,
            more: header.more,
            reinitialized: false,
            skipped: false,
        };
        if incoming.duplicate {
            return Ok((incoming, None));
        }
        // A continuation applies only right after the very packet it
        // continues: the one numbered just before it, with the digest it
        // names (a sender restored from an older copy reuses numbers).
        let follows = Some(header.packet_no) == peer.received_packet_no.checked_add(1)
            && header.prev_digest == peer.received_digest;
        if header.continues && !follows {
            incoming.skipped = true;
            return Ok((incoming, None));
        }
        if migrating {
            // Not applied nor acknowledged: the node sends its changes again
            // once it is at a version the hub accepts. Its failure report is
            // kept, and its version, which the reply's migrations follow.
            let body = codec::take_body(
                &mut packet.decoded,
                header,
                &packet.body,
                &ctx.config.limits,
            )?;
            super::migrations::received(
                &mut txn,
                &mut ctx,
                &peer,
                Vec::new(),
                body.migration_failure,
            )?;
            peer.schema_version = Some(header.schema_version.clone());
            txn.put_peer(&peer)?;
            txn.commit()?;
            let events = ctx.events;
            self.emit_all(events);
            incoming.skipped = true;
            return Ok((incoming, None));
        }
        if waits_for_gap_answer(&peer, header, ctx.is_hub()) {
            incoming.skipped = true;
            drop(txn);
            drop(ctx);
            self.send_again(header.sender);
            return Ok((incoming, None));
        }
        let body = codec::take_body(
            &mut packet.decoded,
            header,
            &packet.body,
            &ctx.config.limits,
        )?;
        check_changes(&ctx, header.sender, &body.changes)?;
        let told = !body.rejections.is_empty() || !body.evictions.is_empty();
        let ack = process_ack(&mut peer, header);
        quarantine::delivered(&mut txn, header.sender, header.ack_packet_no)?;
        if let Some(reason) = &ack.restore {
            incoming.reinitialized = true;
            reinitialized(&mut txn, &mut ctx, &peer, reason.clone(), now)?;
        }
        if let Some(reason) = peer_restored(&mut peer, header, repeated_resync, ack.confirmed) {
            if header.resync {
                resync_answered = Some(peer.sent_packet_no);
            }
            peer.reset_for_resync(txn.last_seq()?);
            incoming.reinitialized = true;
            reinitialized(&mut txn, &mut ctx, &peer, reason, now)?;
        }
        super::migrations::received(
            &mut txn,
            &mut ctx,
            &peer,
            body.migrations,
            body.migration_failure,
        )?;
        let put_back =
            quarantine::take_notices(&mut txn, &mut ctx, header.sender, body.rejections)?;
        let mut stats = ApplyStats::default();
        for change in body.changes {
            if put_back.contains(&change.entity.key) {
                quarantine::put_back(&mut txn, &ctx, header.sender, &change.entity)?;
                continue;
            }
            apply_change(&mut txn, &mut ctx, &peer, change.entity, now, &mut stats)?;
        }
        super::scopes::evict(&mut txn, &mut ctx, &peer, body.evictions)?;
        super::apply::expire_parked(&mut txn, &mut ctx, &peer, now, &mut stats)?;
        super::cascade::finish(&mut txn, &mut ctx)?;
        peer.received_packet_no = header.packet_no;
        peer.received_digest = codec::packet_digest(header);
        peer.last_sync_in = Some(now);
        peer.schema_version = Some(header.schema_version.clone());
        let has_pending = !txn.pending(&PendingQuery::for_peer(&peer, 1))?.is_empty();
        let built = if reply {
            let all = Selection::all();
            Some(outgoing::build_in_txn(
                &mut txn, &ctx, &mut peer, now, &all, counted,
            )?)
        } else {
            txn.put_peer(&peer)?;
            None
        };
        // A store may refuse a version only at commit (a UNIQUE value still
        // held when the packet is through): name the change that wrote it.
        txn.commit().map_err(|e| match e {
            StoreError::Refused { key, reason } => StoreError::Refused {
                key: ctx.written.get(&key).cloned().unwrap_or(key),
                reason,
            },
            e => e,
        })?;
        let events = ctx.events;
        self.emit_all(events);
        self.writer_moved |= moving;
        let reply = built.map(|(transmit, counted)| {
            self.after_build(&transmit, counted);
            transmit
        });
        if let Some(answered) = resync_answered {
            self.resync_answered.insert(header.sender, answered);
        }
        incoming.applied = stats.applied;
        incoming.conflicts = stats.conflicts;
        incoming.parked = stats.parked;
        incoming.rejected = stats.rejected;
        self.continue_session(
            header,
            &incoming,
            ack.advanced || incoming.reinitialized,
            has_pending,
            told,
        );
        Ok((incoming, reply))
    }

    /// Session bookkeeping after a packet from `incoming.from`.
    fn after_packet(&mut self, incoming: &Incoming, header: &PacketHeader) {
        let fresh = !incoming.duplicate && !incoming.skipped;
        if let Some(session) = self.sessions.get_mut(&incoming.from) {
            if fresh {
                session.progress.received += u64::from(header.entity_count);
                session.progress.remaining_to_receive = header
                    .pending_total
                    .saturating_sub(u64::from(header.entity_count));
            }
        }
        if fresh {
            self.progress_event(incoming.from);
        }
    }

    /// Decides whether a running session needs another packet.
    fn continue_session(
        &mut self,
        header: &PacketHeader,
        incoming: &Incoming,
        progressed: bool,
        has_pending: bool,
        told: bool,
    ) {
        let Some(session) = self.sessions.get_mut(&incoming.from) else {
            return;
        };
        // The peer answered: the exchange is no longer unanswered.
        session.retry = None;
        session.attempt = 0;
        if !session.active {
            return;
        }
        // Received changes must be acknowledged; more may be waiting either
        // way; pending changes are sent while acknowledgements make progress;
        // notices of refused changes are acknowledged so they stop coming.
        // A packet of ours after a gap may have waited for the answer to
        // the peer's question (not applied): answering it, by acknowledging
        // the packet that asks, lets the pending changes through now.
        let waited = has_pending && !progressed && header.gap_check_packet_no != 0;
        let again =
            header.entity_count > 0 || header.more || told || waited || (has_pending && progressed);
        // A train is one reply: a packet continuing one that asked for more
        // does not end the session. (A scoped node's train can end in a
        // packet with nothing for it: the changes left were outside its
        // scope.)
        let again = again || (header.continues && session.train_again);
        session.train_again = again;
        if again {
            session.want_send = true;
        } else {
            session.active = false;
            self.emit(Event::SyncComplete {
                peer: incoming.from,
            });
        }
    }

    /// The peer's packet waits for an answer to this node's question (see
    /// [`waits_for_gap_answer`]): a session with it sends again at once,
    /// carrying the question, rather than after a retry's backoff.
    fn send_again(&mut self, peer: NodeId) {
        if let Some(session) = self.sessions.get_mut(&peer) {
            session.retry = None;
            session.attempt = 0;
            session.want_send |= session.active;
        }
    }

    /// Records a refused packet: security-relevant refusals are logged.
    fn refused(&mut self, sender: NodeId, error: &SyncError, now: Timestamp) {
        let kind = match error {
            SyncError::Peer(PeerError::UnknownSender { .. }) => SecurityKind::UnknownSender,
            SyncError::Peer(PeerError::RevokedSender { .. }) => SecurityKind::RevokedSender,
            SyncError::Peer(PeerError::WrongRecipient { .. }) => SecurityKind::WrongRecipient,
            SyncError::Peer(PeerError::ClockAhead { .. }) => SecurityKind::ClockAhead,
            SyncError::Peer(PeerError::SenderMismatch { .. }) => SecurityKind::AuthFailed,
            SyncError::Peer(_) => SecurityKind::Corrupt,
            SyncError::Schema(_) => SecurityKind::SchemaRejected,
            _ => return,
        };
        self.security(Some(sender), kind, error.to_string(), now);
    }
}

fn check_addressing(header: &PacketHeader, local: NodeId) -> Result<(), PeerError> {
    if header.protocol_version != sync_proto::PROTOCOL_VERSION {
        return Err(PeerError::UnsupportedProtocol {
            version: header.protocol_version,
            supported: sync_proto::PROTOCOL_VERSION,
        });
    }
    if header.recipient != local {
        return Err(PeerError::WrongRecipient {
            local,
            recipient: header.recipient,
        });
    }
    Ok(())
}

/// Refuses a packet stamped further ahead of `now` than `max_ms`.
fn check_clock(header: &PacketHeader, now: Timestamp, max_ms: i64) -> Result<(), PeerError> {
    let ahead_ms = header.timestamp.as_micros().saturating_sub(now.as_micros()) / 1_000;
    if ahead_ms > max_ms {
        return Err(PeerError::ClockAhead {
            sender: header.sender,
            peer_clock: header.timestamp,
            local_clock: now,
            ahead_ms,
            max_ms,
        });
    }
    Ok(())
}

fn known_peer<T: StoreTxn>(txn: &T, sender: NodeId) -> Result<PeerState, SyncError> {
    let peer = txn
        .peer(sender)?
        .ok_or(PeerError::UnknownSender { sender })?;
    if peer.revoked {
        return Err(PeerError::RevokedSender { sender }.into());
    }
    Ok(peer)
}

/// Every change must be of a registered type, and declared fields must hold
/// values of their declared kind. Undeclared fields (from a newer minor
/// schema) are kept as they are.
fn check_changes(ctx: &Ctx<'_>, sender: NodeId, changes: &[Change]) -> Result<(), PeerError> {
    for change in changes {
        let entity: &Entity = &change.entity;
        let ty = ctx.registry.get(&entity.key.entity_type).ok_or_else(|| {
            PeerError::UnknownEntityType {
                entity_type: entity.key.entity_type.clone(),
            }
        })?;
        for (name, value) in &entity.fields {
            if ty
                .field_def(name)
                .is_some_and(|def| !def.kind.accepts(value))
            {
                return Err(PeerError::Malformed {
                    sender,
                    detail: format!(
                        "{}.{name} holds a {} value, which its declared kind does not accept",
                        entity.key.entity_type,
                        value.kind_name()
                    ),
                });
            }
        }
    }
    Ok(())
}

/// Processes the acknowledgement in a fresh packet, and the peer's gap check.
/// Acknowledging a packet this node never sent, or one other than what this
/// node sent under that number, means this node was restored from an older
/// copy of its store: its numbering jumps past the peer's and it asks for a
/// resync.
fn process_ack(peer: &mut PeerState, header: &PacketHeader) -> AckOutcome {
    // A continuation repeats the claims of the packet it continues, checked
    // with that packet just before.
    let claims = match header.continues {
        true => None,
        false => check_peer_claims(peer, header),
    };
    if let Some(reason) = claims {
        restart_numbering(peer, header.ack_packet_no.max(header.gap_check_packet_no));
        return AckOutcome {
            advanced: false,
            restore: Some(reason),
            confirmed: None,
        };
    }
    let ack = header.ack_packet_no;
    let confirmed = match peer.gap_check {
        // The peer has applied a packet carrying our question: answered.
        Some(g) if ack >= g.announced_in => {
            peer.gap_check = None;
            Some(g.packet_no)
        }
        _ => None,
    };
    let Some(sent) = peer.in_flight.iter().find(|f| f.packet_no == ack).cloned() else {
        // No acknowledgement, or one of a packet no longer in the window. A
        // packet sent after the first one of a running resync request
        // carried the request too: the peer has it.
        if peer
            .in_flight
            .first()
            .is_some_and(|f| f.resync && f.packet_no <= ack)
        {
            peer.resync_requested = false;
        }
        return AckOutcome {
            confirmed,
            ..AckOutcome::default()
        };
    };
    let advanced = sent.upto_seq > peer.acked_seq;
    peer.acked_seq = peer.acked_seq.max(sent.upto_seq);
    if sent.resync {
        peer.resync_requested = false;
    }
    peer.in_flight.retain(|f| f.packet_no > ack);
    AckOutcome {
        advanced,
        restore: None,
        confirmed,
    }
}

/// Whether a fresh packet after a gap in the sender's numbering must wait:
/// this node's question about the packet before an earlier gap is still
/// unanswered (the packet's acknowledgement does not reach the packet that
/// first carried it). Applying it would move this node's newest packet from
/// the sender past the one asked about, and a later question would replace
/// the open one: a sender restored from a backup older than that earlier
/// packet would go unseen, its renumbered packets lost across two gaps. The
/// packet is not applied nor acknowledged; the sender sends its changes
/// again from the acknowledgement, once it has seen the question.
///
/// A request to resend everything never waits: it resets the pair anyway.
/// When both sides ask, the hub's question is answered first: at the hub a
/// node's packet waits even when it carries the node's own question (the
/// hub's reply carries the hub's question, and the node applies it), while
/// a node never holds back a hub packet that carries the hub's question
/// (and keeps its own question open meanwhile, see [`peer_restored`]).
/// Letting the hub apply such a packet would replace the hub's question
/// with one about a later packet, which a restored node confirms (seed 5816).
fn waits_for_gap_answer(peer: &PeerState, header: &PacketHeader, hub: bool) -> bool {
    let open = peer
        .gap_check
        .is_some_and(|g| header.ack_packet_no < g.announced_in);
    let after_gap = header.packet_no > peer.received_packet_no.saturating_add(1);
    let answers_first = !hub && header.gap_check_packet_no != 0;
    open && after_gap && !header.continues && !answers_first && !header.resync
}

/// Checks what the peer says it holds from this node (its acknowledgement
/// and its gap check) against what this node sent. A mismatch means this
/// node's store went back in time; the reason is returned.
fn check_peer_claims(peer: &PeerState, header: &PacketHeader) -> Option<String> {
    let claims = [
        (header.ack_packet_no, header.ack_digest),
        (header.gap_check_packet_no, header.gap_check_digest),
    ];
    for (packet_no, digest) in claims {
        if packet_no == 0 {
            continue;
        }
        let problem = match peer.sent_digest(packet_no) {
            Some(sent) if sent == digest => continue,
            Some(_) => "a packet other than the one this node sent under that number",
            None if packet_no > peer.sent_packet_no => "a packet this node never sent",
            // Older than the remembered history: only a gap check asks about
            // such a packet, and it cannot be confirmed.
            None if packet_no == header.gap_check_packet_no => {
                "a packet too old for this node to confirm"
            }
            None => continue,
        };
        return Some(format!(
            "{} holds packet {packet_no} from this node, {problem}: this node's store was restored from an older copy; asking it to resend everything",
            peer.info.code
        ));
    }
    None
}

/// Whether the sender of a fresh packet lost what this node sent it, or its
/// history changed: it says so (`resync`), it acknowledges less than it
/// already had, or its packet does not chain onto the one received before.
/// Also raises a gap check when the sender's numbering skipped packets, and
/// updates the acknowledgement high-water mark. A `resync` flag this node
/// already answered (`repeated_resync`) is not a new request; nor is a gap
/// after the packet the same packet just `confirmed` (the gap a waiting
/// packet left) a reason to ask about that packet again.
fn peer_restored(
    peer: &mut PeerState,
    header: &PacketHeader,
    repeated_resync: bool,
    confirmed: Option<u64>,
) -> Option<String> {
    let code = &peer.info.code;
    let high = peer.peer_ack_high;
    peer.peer_ack_high = header.ack_packet_no;
    let received = peer.received_packet_no;
    let reason = if header.resync && !repeated_resync {
        format!("{code} reports it was restored from an older copy of its store")
    } else if header.ack_packet_no < high {
        format!(
            "{code} acknowledges packet {} after having acknowledged {high}: it was restored from an older copy of its store",
            header.ack_packet_no
        )
    } else if received > 0
        && header.packet_no == received + 1
        && header.prev_digest != peer.received_digest
    {
        format!(
            "{code}'s packet {} does not follow the packet {received} received from it: it was restored from an older copy of its store",
            header.packet_no
        )
    } else {
        // An open question stays until it is answered: a later one would
        // ask about a packet after the earlier gap, which a peer restored
        // from before that gap may well confirm. Only a packet that does not
        // wait for the answer (see `waits_for_gap_answer`) reaches here with
        // a question open.
        if received > 0
            && header.packet_no > received + 1
            && confirmed != Some(received)
            && peer.gap_check.is_none()
        {
            // The newest packet held is the one to confirm: a peer's history
            // is linear, so confirming it confirms every packet before it.
            peer.gap_check = Some(GapCheck {
                packet_no: received,
                digest: peer.received_digest,
                announced_in: peer.sent_packet_no + 1,
            });
        }
        return None;
    };
    Some(format!("{reason}; resending everything to it"))
}

fn restart_numbering(peer: &mut PeerState, claimed: u64) {
    peer.sent_packet_no = peer.sent_packet_no.max(claimed);
    peer.in_flight.clear();
    peer.resync_requested = true;
}

fn reinitialized<T: StoreTxn>(
    txn: &mut T,
    ctx: &mut Ctx<'_>,
    peer: &PeerState,
    reason: String,
    now: Timestamp,
) -> Result<(), SyncError> {
    let event = crate::events::SecurityEvent {
        at: now,
        peer: Some(peer.id()),
        kind: SecurityKind::RestoreDetected,
        detail: reason.clone(),
    };
    txn.add_security_event(&event)?;
    ctx.events.push(Event::Security(event));
    ctx.events.push(Event::PairReinitialized {
        peer: peer.id(),
        reason,
    });
    Ok(())
}
