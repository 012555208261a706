//! The sans-IO engine: one node's side of sync.
//!
//! Inputs go in through `handle_*` and write methods, each with `now`;
//! outputs come out of `poll_*` methods. Drain them in this order after each
//! input: [`Engine::poll_transmit`] (packets to send), [`Engine::poll_event`]
//! (what happened), [`Engine::poll_timeout`] (when to call
//! [`Engine::handle_timeout`] next).

mod apply;
pub mod cascade;
mod incoming;
mod local;
mod migrations;
mod outgoing;
mod quarantine;
mod scopes;

use std::collections::{BTreeMap, VecDeque};

use uuid::Uuid;

use crate::config::EngineConfig;
use crate::conflict::{AuditRecord, OpenConflict, VersionRecord};
use crate::entity::{Entity, EntityKey, Operation};
use crate::entity_registry::EntityRegistry;
use crate::error::{StoreError, SyncError};
use crate::events::{Event, Progress, SecurityEvent, SecurityKind};
use crate::ids::{NodeId, Timestamp};
use crate::node_registry::{NodeInfo, PeerState, Role};
use crate::rng::SeededRng;
use crate::store::{ParkedChange, PendingQuery, Store, StoreTxn};
use crate::timer::{Armed, Timer};

pub use incoming::{Answer, Incoming, Outcome, Reply};
pub use local::{LocalWrite, ManualChoice};
pub use outgoing::{Selection, Transmit};

/// One node's sync engine over a store `S`.
///
/// The engine owns the store; reach it with [`Engine::store`] /
/// [`Engine::store_mut`]. It keeps no state that matters across a crash
/// outside the store: sessions and timers are rebuilt by the driver.
pub struct Engine<S: Store> {
    store: S,
    registry: EntityRegistry,
    config: EngineConfig,
    local: NodeInfo,
    rng: SeededRng,
    events: VecDeque<Event>,
    /// Events dropped because the queue was full (`EngineConfig::max_events`).
    dropped_events: u64,
    sessions: BTreeMap<NodeId, Session>,
    /// Per peer: this node's packet number when it last re-initialized the
    /// pair because the peer asked for a resync. The peer keeps the flag on
    /// every packet until it sees an answer, so a flagged packet that does
    /// not acknowledge anything sent after that point repeats the same
    /// request and is not answered again. Volatile: after a restart a
    /// repeated flag costs at most one more resend.
    resync_answered: BTreeMap<NodeId, u64>,
    /// Per peer: the count behind the progress total of the last packet
    /// built with more to send, updated by difference on the next one.
    /// Volatile: after a restart the first such packet counts again.
    pending_counts: BTreeMap<NodeId, outgoing::PendingCount>,
    /// This session has its own writer id (see `Engine::prepare_writer`):
    /// set by the first local write of a session on an existing store.
    writer_moved: bool,
    /// The migration this run failed to apply (see
    /// [`Engine::migration_failed`]): reported to the hub with every packet.
    migration_failure: Option<crate::migration::MigrationFailure>,
}

/// Volatile per-peer state of a sync session (rebuilt after a restart).
#[derive(Clone, Debug, Default)]
struct Session {
    /// This node started the session and drives it.
    active: bool,
    /// The last packet received from the peer asked for another send: a
    /// packet continuing it in the same train keeps the session going.
    train_again: bool,
    /// A packet should be built for the peer on the next `poll_transmit`.
    want_send: bool,
    /// Armed retry timer.
    retry: Option<Armed>,
    /// Retries since the peer last answered.
    attempt: u32,
    progress: SessionProgress,
}

#[derive(Clone, Copy, Debug, Default)]
struct SessionProgress {
    sent: u64,
    received: u64,
    total_to_send: u64,
    remaining_to_receive: u64,
}

/// Borrowed engine state handed to the helpers that run inside a store
/// transaction, with the events they produce (published only after commit).
pub(crate) struct Ctx<'a> {
    pub now: Timestamp,
    pub registry: &'a EntityRegistry,
    pub config: &'a EngineConfig,
    pub local: &'a NodeInfo,
    pub events: Vec<Event>,
    /// Entities whose incoming version the store refused while this packet
    /// was applied, with the reason: applied as rejected changes instead.
    pub quarantine: BTreeMap<EntityKey, String>,
    /// The incoming changes being applied, innermost last (a parent's
    /// application releases its parked children).
    pub applying: Vec<EntityKey>,
    /// Each entity written while applying, with the incoming change that
    /// wrote it (a keep-both copy, a merge), to trace a refusal at commit.
    pub written: BTreeMap<EntityKey, EntityKey>,
    /// Deletions with parents seen while applying (see [`cascade`]).
    pub cascades: cascade::Cascades,
    /// Set while a parked change is applied after the packet that brought it
    /// (see [`apply::release_parked`]).
    pub deferred: bool,
    /// The scope of the node whose changes are being applied, read once per
    /// transaction (hub only; see [`crate::scope`]).
    pub scope: Option<(crate::ids::NodeId, crate::scope::NodeScope)>,
    /// At a node: the migration failure to report to the hub.
    pub migration_failure: Option<&'a crate::migration::MigrationFailure>,
}

impl Ctx<'_> {
    /// An id for an audit, version or conflict record, derived from what the
    /// record is about (`kind`, the entity, `now` and the versions involved):
    /// the same event gets the same id on a replay, different events never
    /// share one, and a restart with the same seed cannot repeat an id.
    pub fn record_id(kind: &str, key: &EntityKey, now: Timestamp, versions: &[&Entity]) -> Uuid {
        let mut input = Vec::with_capacity(64 + 32 * versions.len());
        input.extend(kind.as_bytes());
        input.push(0);
        input.extend(key.entity_type.as_bytes());
        input.push(0);
        input.extend(key.id.as_bytes());
        input.extend(now.as_micros().to_be_bytes());
        for version in versions {
            input.extend(version.content_digest());
        }
        let digest = crate::codec::sha256(&input);
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        uuid::Builder::from_custom_bytes(bytes).into_uuid()
    }

    pub fn is_hub(&self) -> bool {
        self.local.role == Role::Hub
    }
}

/// One row of the spec's `sync_changes` view, derived from the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncChange {
    /// Target node.
    pub node_id: NodeId,
    /// Entity type.
    pub entity_type: String,
    /// Entity UUID.
    pub entity_uuid: Uuid,
    /// Insert, update or delete, as the target will see it.
    pub operation: Operation,
    /// Earliest unacknowledged packet that carried it (`None`: not sent yet).
    pub packet_no: Option<u64>,
    /// Local change sequence.
    pub seq: u64,
}

impl<S: Store> Engine<S> {
    /// Opens `store` as node `local`, recording the identity in an empty
    /// store. Fails with [`SyncError::WrongStore`] if the store belongs to
    /// another node.
    pub fn new(
        mut store: S,
        registry: EntityRegistry,
        config: EngineConfig,
        mut local: NodeInfo,
    ) -> Result<Self, SyncError> {
        let mut txn = store.begin()?;
        let last_seq = txn.last_seq()?;
        match txn.local_node()? {
            Some(stored) if stored.id != local.id => {
                return Err(SyncError::WrongStore {
                    stored: stored.id,
                    requested: local.id,
                });
            }
            Some(stored) => local.writer = stored.writer,
            None => {
                txn.set_local_node(&local)?;
                txn.commit()?;
                let mut engine = Self::assemble(store, registry, config, local, last_seq);
                // A new store: its first session writes under the node id.
                engine.writer_moved = true;
                return Ok(engine);
            }
        }
        txn.commit()?;
        Ok(Self::assemble(store, registry, config, local, last_seq))
    }

    /// Opens a store that already holds its node identity.
    pub fn open(
        mut store: S,
        registry: EntityRegistry,
        config: EngineConfig,
    ) -> Result<Self, SyncError> {
        let txn = store.begin()?;
        let local = txn.local_node()?.ok_or(SyncError::NotInitialized)?;
        let last_seq = txn.last_seq()?;
        drop(txn);
        Ok(Self::assemble(store, registry, config, local, last_seq))
    }

    /// The generator is seeded from the configured seed, the node id and the
    /// store's last change sequence, so an engine reopened with the same seed
    /// on a store that has moved on does not repeat the ids it handed out.
    fn assemble(
        store: S,
        registry: EntityRegistry,
        config: EngineConfig,
        local: NodeInfo,
        last_seq: u64,
    ) -> Self {
        let (hi, lo) = local.id.0.as_u64_pair();
        let mut mixer =
            SeededRng::new(config.seed ^ hi ^ lo.rotate_left(17) ^ last_seq.rotate_left(41));
        Engine {
            store,
            rng: SeededRng::new(mixer.next_u64()),
            registry,
            config,
            local,
            events: VecDeque::new(),
            dropped_events: 0,
            sessions: BTreeMap::new(),
            resync_answered: BTreeMap::new(),
            pending_counts: BTreeMap::new(),
            writer_moved: false,
            migration_failure: None,
        }
    }

    /// This node.
    pub fn local_node(&self) -> &NodeInfo {
        &self.local
    }

    /// The entity registry.
    pub fn registry(&self) -> &EntityRegistry {
        &self.registry
    }

    /// Registers (or replaces) an entity type on a running engine: a type
    /// added later syncs from the next packet on, with no other code.
    pub fn register_type(&mut self, entity_type: crate::EntityType) {
        self.registry.register(entity_type);
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The store, mutably (for application reads and writes outside sync).
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// Gives the store back, ending the engine.
    pub fn into_store(self) -> S {
        self.store
    }

    // --- node registry ---------------------------------------------------

    /// Registers a peer (idempotent; re-registering a revoked peer restores
    /// it with its counters intact).
    pub fn register_peer(&mut self, info: NodeInfo) -> Result<(), SyncError> {
        let mut txn = self.store.begin()?;
        let peer = match txn.peer(info.id)? {
            Some(mut existing) => {
                existing.info = info;
                existing.revoked = false;
                existing
            }
            None => PeerState::new(info),
        };
        txn.put_peer(&peer)?;
        txn.commit()?;
        Ok(())
    }

    /// Revokes a peer: its packets are refused from now on (its state is kept
    /// for audit).
    pub fn revoke_peer(&mut self, id: NodeId) -> Result<(), SyncError> {
        let mut txn = self.store.begin()?;
        let mut peer = txn.peer(id)?.ok_or(SyncError::UnknownPeer(id))?;
        peer.revoked = true;
        txn.put_peer(&peer)?;
        txn.commit()?;
        self.sessions.remove(&id);
        Ok(())
    }

    /// One peer's state.
    pub fn peer(&mut self, id: NodeId) -> Result<PeerState, SyncError> {
        self.store
            .begin()?
            .peer(id)?
            .ok_or(SyncError::UnknownPeer(id))
    }

    /// All peers.
    pub fn peers(&mut self) -> Result<Vec<PeerState>, SyncError> {
        Ok(self.store.begin()?.peers()?)
    }

    // --- queries -----------------------------------------------------------

    /// The current version of an entity (tombstones included).
    pub fn get(&mut self, key: &EntityKey) -> Result<Option<Entity>, SyncError> {
        Ok(self.store.begin()?.entity(key)?.map(|s| s.entity))
    }

    /// Changes pending for `peer`.
    pub fn pending_count(&mut self, peer: NodeId) -> Result<u64, SyncError> {
        let txn = self.store.begin()?;
        let state = txn.peer(peer)?.ok_or(SyncError::UnknownPeer(peer))?;
        Ok(txn.count_pending(&PendingQuery::for_peer(&state, usize::MAX))?)
    }

    /// The spec's `sync_changes` view for one peer: what it is owed and in
    /// which unacknowledged packet each change last travelled, at most
    /// `limit` rows.
    pub fn sync_changes(
        &mut self,
        peer: NodeId,
        limit: usize,
    ) -> Result<Vec<SyncChange>, SyncError> {
        let txn = self.store.begin()?;
        let state = txn.peer(peer)?.ok_or(SyncError::UnknownPeer(peer))?;
        let rows = txn.pending(&PendingQuery::for_peer(&state, limit))?;
        Ok(rows
            .into_iter()
            .map(|s| SyncChange {
                node_id: peer,
                entity_type: s.entity.key.entity_type.clone(),
                entity_uuid: s.entity.key.id,
                operation: s.operation_for(state.acked_seq),
                packet_no: state
                    .in_flight
                    .iter()
                    .find(|f| f.upto_seq >= s.seq)
                    .map(|f| f.packet_no),
                seq: s.seq,
            })
            .collect())
    }

    /// Object version history of one entity.
    pub fn versions(&mut self, key: &EntityKey) -> Result<Vec<VersionRecord>, SyncError> {
        Ok(self.store.begin()?.versions(key)?)
    }

    /// The audit log of conflict resolutions, oldest first.
    pub fn audit_log(&mut self) -> Result<Vec<AuditRecord>, SyncError> {
        Ok(self.store.begin()?.audit_log(0, usize::MAX)?)
    }

    /// Conflicts waiting for a person.
    pub fn open_conflicts(&mut self) -> Result<Vec<OpenConflict>, SyncError> {
        Ok(self.store.begin()?.open_conflicts()?)
    }

    /// Children waiting for a parent that has not arrived.
    pub fn parked(&mut self) -> Result<Vec<ParkedChange>, SyncError> {
        Ok(self.store.begin()?.parked()?)
    }

    /// Security events recorded in the store.
    pub fn security_events(&mut self) -> Result<Vec<SecurityEvent>, SyncError> {
        Ok(self.store.begin()?.security_events()?)
    }

    /// Records a security event that a driver observed before the engine saw
    /// any bytes (a refused token, a revoked credential), in the store's
    /// security log beside the engine's own, and emits it.
    pub fn record_security_event(
        &mut self,
        peer: Option<NodeId>,
        kind: SecurityKind,
        detail: impl Into<String>,
        now: Timestamp,
    ) -> Result<(), SyncError> {
        let event = SecurityEvent {
            at: now,
            peer,
            kind,
            detail: detail.into(),
        };
        let mut txn = self.store.begin()?;
        txn.add_security_event(&event)?;
        txn.commit()?;
        self.emit(Event::Security(event));
        Ok(())
    }

    // --- driver metadata ------------------------------------------------------

    /// A driver's durable value under `key` (see [`StoreTxn::meta`]).
    pub fn meta(&mut self, key: &str) -> Result<Option<Vec<u8>>, SyncError> {
        Ok(self.store.begin()?.meta(key)?)
    }

    /// Every driver value whose key starts with `prefix`, in key order.
    pub fn meta_with_prefix(&mut self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, SyncError> {
        Ok(self.store.begin()?.meta_with_prefix(prefix)?)
    }

    /// Stores (or with `None` removes) a driver's durable value under `key`,
    /// in its own committed transaction.
    pub fn put_meta(&mut self, key: &str, value: Option<&[u8]>) -> Result<(), SyncError> {
        let mut txn = self.store.begin()?;
        txn.put_meta(key, value)?;
        txn.commit()?;
        Ok(())
    }

    // --- outputs -------------------------------------------------------------

    /// The next event, if any. Drain after every input.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// How many events were dropped, oldest first, because the queue already
    /// held [`EngineConfig::max_events`] events (since the engine was
    /// created or opened). Never decreases.
    pub fn dropped_events(&self) -> u64 {
        self.dropped_events
    }

    /// Queues an event, dropping the oldest when the queue is full.
    fn emit(&mut self, event: Event) {
        let max = self.config.max_events.max(1);
        while self.events.len() >= max {
            self.events.pop_front();
            self.dropped_events = self.dropped_events.saturating_add(1);
        }
        self.events.push_back(event);
    }

    /// Queues events in order (see [`Engine::emit`]).
    fn emit_all(&mut self, events: impl IntoIterator<Item = Event>) {
        for event in events {
            self.emit(event);
        }
    }

    /// The earliest timer deadline, if any timer is armed.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.sessions
            .values()
            .filter_map(|s| s.retry.map(|r| r.deadline))
            .min()
    }

    /// The armed timers with their deadlines.
    pub fn timers(&self) -> Vec<(Timer, Timestamp)> {
        self.sessions
            .iter()
            .filter_map(|(peer, s)| s.retry.map(|r| (Timer::Retry { peer: *peer }, r.deadline)))
            .collect()
    }

    /// Fires every timer whose deadline is at or before `now`: an unanswered
    /// exchange is sent again (on the next `poll_transmit`) with a longer
    /// backoff. Early calls do nothing.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        for session in self.sessions.values_mut() {
            if session.retry.is_some_and(|r| r.deadline <= now) {
                session.retry = None;
                session.attempt = session.attempt.saturating_add(1);
                session.want_send = true;
            }
        }
    }

    // --- sessions -----------------------------------------------------------

    /// Starts a sync session with `peer`: the next `poll_transmit` returns a
    /// packet for it, and the session continues packet by packet until
    /// nothing is pending either way ([`Event::SyncComplete`]).
    pub fn start_sync(&mut self, peer: NodeId) -> Result<(), SyncError> {
        let pending = self.pending_count(peer)?;
        let session = self.sessions.entry(peer).or_default();
        session.active = true;
        session.want_send = true;
        session.attempt = 0;
        session.progress = SessionProgress {
            total_to_send: pending,
            ..SessionProgress::default()
        };
        Ok(())
    }

    /// Whether a session with `peer` is still running.
    pub fn is_syncing(&self, peer: NodeId) -> bool {
        self.sessions.get(&peer).is_some_and(|s| s.active)
    }

    fn progress_event(&mut self, peer: NodeId) {
        if let Some(s) = self.sessions.get(&peer) {
            let p = s.progress;
            self.emit(Event::Progress(Progress {
                peer,
                sent: p.sent,
                received: p.received,
                total_to_send: p.total_to_send,
                remaining_to_receive: p.remaining_to_receive,
            }));
        }
    }

    /// Records a security event in the store (best effort: its own
    /// transaction) and emits it.
    fn security(
        &mut self,
        peer: Option<NodeId>,
        kind: SecurityKind,
        detail: String,
        now: Timestamp,
    ) {
        let event = SecurityEvent {
            at: now,
            peer,
            kind,
            detail,
        };
        let recorded: Result<(), StoreError> = self.store.begin().and_then(|mut txn| {
            txn.add_security_event(&event)?;
            txn.commit()
        });
        // A store that cannot record the event still reports it as an event.
        let _ = recorded;
        self.emit(Event::Security(event));
    }

    fn parts(&mut self, now: Timestamp) -> (&mut S, Ctx<'_>) {
        let Engine {
            store,
            registry,
            config,
            local,
            migration_failure,
            ..
        } = self;
        (
            store,
            Ctx {
                now,
                registry,
                config,
                local,
                events: Vec::new(),
                quarantine: BTreeMap::new(),
                applying: Vec::new(),
                written: BTreeMap::new(),
                cascades: cascade::Cascades::default(),
                deferred: false,
                scope: None,
                migration_failure: migration_failure.as_ref(),
            },
        )
    }
}
