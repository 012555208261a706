//! What the server serves: the [`Hub`] trait, and [`EngineHub`], the hub
//! engine over any [`Store`] behind a mutex.
//!
//! Every method of [`Hub`] may block on the store; the server calls them on
//! tokio's blocking pool (`spawn_blocking`), never on the async threads.
//! The server opens each request ([`HubRequest::open`]: envelope decoding,
//! body hash, decompression) before it calls [`Hub::exchange_request`], so
//! a hub holds its lock only for the store work.

use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use sync_core::codec::Limits;
use sync_core::{
    Answer, Engine, EntityRegistry, Event, NodeId, Outcome, PeerError, PendingQuery, SecurityKind,
    Store, StoreTxn, SyncError, Timestamp, VerifiedRequest,
};
use tokio::sync::{broadcast, watch};

/// A hub the HTTPS server can serve: the engine's hub API plus the driver
/// metadata the server keeps (its signing keys).
///
/// [`EngineHub`] is the implementation for a hub [`Engine`] over any store;
/// implement it yourself to put something in front of the engine (a test
/// fixture, a hub shared with other drivers).
pub trait Hub: Send + Sync + 'static {
    /// Handles one request from the node the server authenticated: refuses
    /// it as [`HubAnswer::UnknownNode`] or [`HubAnswer::RevokedNode`] when
    /// that node may not sync, otherwise answers it as
    /// [`Engine::respond_as`] does. The status check and the answer happen
    /// under one lock (for [`EngineHub`], in one store transaction:
    /// [`Engine::respond_registered`]), so a node revoked meanwhile is not
    /// served.
    fn exchange(&self, node: NodeId, request: &[u8], now: Timestamp)
    -> Result<HubAnswer, HubError>;

    /// [`Hub::exchange`] for a request the server already opened, outside
    /// any lock ([`HubRequest::open`]). The server calls this one. The
    /// default answers the request's bytes with [`Hub::exchange`]; a hub
    /// over an [`Engine`] overrides it to skip the decoding
    /// ([`Engine::respond_registered`]), as [`EngineHub`] does.
    fn exchange_request(
        &self,
        node: NodeId,
        request: HubRequest,
        now: Timestamp,
    ) -> Result<HubAnswer, HubError> {
        self.exchange(node, &request.bytes, now)
    }

    /// Whether `node` may sync.
    fn node_status(&self, node: NodeId) -> Result<NodeStatus, HubError>;

    /// How many changes the hub holds for `node` that it has not
    /// acknowledged yet.
    fn pending(&self, node: NodeId) -> Result<u64, HubError>;

    /// Per-node lag, for the metrics endpoint.
    fn lag(&self) -> Result<Vec<NodeLag>, HubError>;

    /// A driver value (see [`Engine::meta`]).
    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, HubError>;

    /// Every driver value under `prefix` (see [`Engine::meta_with_prefix`]).
    fn meta_with_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, HubError>;

    /// Stores or removes a driver value (see [`Engine::put_meta`]).
    fn put_meta(&self, key: &str, value: Option<&[u8]>) -> Result<(), HubError>;

    /// Writes a security event the server observed (a refused token) to the
    /// hub's security log (see [`Engine::record_security_event`]).
    fn record_security_event(
        &self,
        node: Option<NodeId>,
        kind: SecurityKind,
        detail: String,
        now: Timestamp,
    ) -> Result<(), HubError>;

    /// Checks that the store answers (for the health endpoint).
    fn check_store(&self) -> Result<(), HubError>;

    /// Facts that never change while the server runs.
    fn info(&self) -> HubInfo;

    /// A signal bumped whenever the hub may hold something new for some
    /// node (the long-poll endpoint waits on it).
    fn changes(&self) -> watch::Receiver<u64>;
}

/// One request for [`Hub::exchange_request`]: its bytes and what
/// [`sync_core::open_request`] made of them.
#[derive(Debug)]
#[non_exhaustive]
pub struct HubRequest {
    /// The envelope as received (after the HTTP content coding).
    pub bytes: Bytes,
    /// The opened request, or why the envelope could not be opened.
    pub opened: Result<VerifiedRequest, PeerError>,
}

impl HubRequest {
    /// Opens `bytes` with `limits` (the hub's, [`HubInfo::limits`]): pure
    /// CPU work, no lock, no store.
    pub fn open(bytes: Bytes, limits: &Limits) -> Self {
        let opened = sync_core::open_request(&bytes, limits);
        HubRequest { bytes, opened }
    }

    /// Asks for a reply of one packet, never a train
    /// ([`VerifiedRequest::with_single_packet_reply`]).
    pub fn with_single_packet_reply(mut self) -> Self {
        self.opened = self.opened.map(VerifiedRequest::with_single_packet_reply);
        self
    }

    /// Asks for the reply packet's body in `codec`, whatever the request's
    /// packet used ([`VerifiedRequest::with_reply_codec`]).
    pub fn with_reply_codec(mut self, codec: sync_core::Codec) -> Self {
        self.opened = self.opened.map(|r| r.with_reply_codec(codec));
        self
    }
}

/// The answer of [`Hub::exchange`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum HubAnswer {
    /// The engine answered (a packet, or an error envelope: see
    /// [`Outcome::error`]).
    Reply(HubReply),
    /// The node is not registered on the hub.
    UnknownNode,
    /// The node was revoked.
    RevokedNode,
}

/// The engine's reply to one request.
#[derive(Clone, Debug)]
pub struct HubReply {
    /// The envelope to send back.
    pub bytes: Bytes,
    /// What the request did.
    pub outcome: Outcome,
    /// The strategy of every conflict the request resolved, one entry per
    /// conflict (for the conflicts-by-strategy metric).
    pub conflict_strategies: Vec<String>,
}

/// Whether a node may sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeStatus {
    /// Registered and not revoked.
    Active,
    /// Not registered.
    Unknown,
    /// Revoked.
    Revoked,
}

/// How far behind one node is.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeLag {
    /// The node.
    pub node: NodeId,
    /// Its code (`DESKTOP-USER-1`).
    pub code: String,
    /// Changes the hub holds for it, not acknowledged yet.
    pub pending: u64,
    /// When the oldest of them was written (writer's clock).
    pub oldest_pending: Option<Timestamp>,
}

/// What never changes while the server runs.
#[derive(Clone, Debug)]
pub struct HubInfo {
    /// The hub's node id.
    pub id: NodeId,
    /// The hub's schema version.
    pub schema_version: String,
    /// Its entity registry (JSON requests are converted with it).
    pub registry: EntityRegistry,
    /// Its decoding limits.
    pub limits: Limits,
}

/// Why the hub could not answer: the server answers 503 and the node
/// retries.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    /// The engine or its store failed.
    #[error("the hub's engine failed: {0}")]
    Engine(#[from] SyncError),
    /// The hub is not available (stopped, restarting).
    #[error("the hub is not available: {0}")]
    Unavailable(String),
}

/// A hub [`Engine`] over any [`Store`], shared by the server's requests
/// behind a mutex, and by the application through [`EngineHub::with_engine`].
///
/// Cloning gives another handle to the same engine.
pub struct EngineHub<S: Store> {
    engine: Arc<Mutex<Engine<S>>>,
    info: HubInfo,
    changes: Arc<watch::Sender<u64>>,
    events: broadcast::Sender<Event>,
}

impl<S: Store> Clone for EngineHub<S> {
    fn clone(&self) -> Self {
        EngineHub {
            engine: Arc::clone(&self.engine),
            info: self.info.clone(),
            changes: Arc::clone(&self.changes),
            events: self.events.clone(),
        }
    }
}

impl<S: Store + Send + 'static> EngineHub<S> {
    /// Wraps a hub engine.
    pub fn new(engine: Engine<S>) -> Self {
        let local = engine.local_node();
        let info = HubInfo {
            id: local.id,
            schema_version: engine.config().schema.own.to_string(),
            registry: engine.registry().clone(),
            limits: engine.config().limits,
        };
        EngineHub {
            engine: Arc::new(Mutex::new(engine)),
            info,
            changes: Arc::new(watch::channel(0).0),
            events: broadcast::channel(1024).0,
        }
    }

    /// Runs `f` on the engine (register or revoke nodes, write entities,
    /// read state). Blocks while a request holds the engine: call it from
    /// `spawn_blocking` in async code. Waiting nodes are woken afterwards,
    /// since `f` may have written something for them.
    pub fn with_engine<R>(&self, f: impl FnOnce(&mut Engine<S>) -> R) -> R {
        let result = f(&mut self.lock());
        self.drain_events();
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
        result
    }

    /// Events from the engine (applied changes, conflicts, security), as
    /// they happen. A slow receiver misses the oldest ones.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    fn lock(&self) -> MutexGuard<'_, Engine<S>> {
        // A panic while holding the engine leaves it as its last committed
        // store transaction left it: the engine keeps no half-done state.
        self.engine.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forwards queued engine events; returns the strategies of conflicts.
    fn drain_events_of(&self, engine: &mut Engine<S>) -> Vec<String> {
        let mut strategies = Vec::new();
        while let Some(event) = engine.poll_event() {
            if let Event::Conflict(conflict) = &event {
                strategies.push(conflict.strategy.clone());
            }
            // No subscriber is fine: the event is dropped.
            let _ = self.events.send(event);
        }
        strategies
    }

    fn drain_events(&self) {
        let mut engine = self.lock();
        self.drain_events_of(&mut engine);
    }
}

fn status_of<S: Store>(engine: &mut Engine<S>, node: NodeId) -> Result<NodeStatus, HubError> {
    match engine.peer(node) {
        Ok(peer) if peer.revoked => Ok(NodeStatus::Revoked),
        Ok(_) => Ok(NodeStatus::Active),
        Err(SyncError::UnknownPeer(_)) => Ok(NodeStatus::Unknown),
        Err(e) => Err(e.into()),
    }
}

impl<S: Store + Send + 'static> Hub for EngineHub<S> {
    fn exchange(
        &self,
        node: NodeId,
        request: &[u8],
        now: Timestamp,
    ) -> Result<HubAnswer, HubError> {
        let request = HubRequest::open(Bytes::copy_from_slice(request), &self.info.limits);
        self.exchange_request(node, request, now)
    }

    fn exchange_request(
        &self,
        node: NodeId,
        request: HubRequest,
        now: Timestamp,
    ) -> Result<HubAnswer, HubError> {
        let mut engine = self.lock();
        // The node's registration is read in the transaction that applies
        // its packet: one store transaction per exchange.
        let answer: Result<Answer, SyncError> = match request.opened {
            Ok(verified) => engine.respond_registered(node, verified, now),
            Err(error) => engine.respond_unreadable_registered(node, error, now),
        };
        let conflict_strategies = self.drain_events_of(&mut engine);
        drop(engine);
        let reply = match answer? {
            Answer::Reply(reply) => reply,
            Answer::UnknownNode => return Ok(HubAnswer::UnknownNode),
            Answer::RevokedNode => return Ok(HubAnswer::RevokedNode),
            // A refusal this version does not know: the node may not sync.
            _ => return Ok(HubAnswer::UnknownNode),
        };
        if reply.outcome.applied > 0 || reply.outcome.reinitialized {
            self.changes.send_modify(|n| *n = n.wrapping_add(1));
        }
        Ok(HubAnswer::Reply(HubReply {
            bytes: reply.bytes,
            outcome: reply.outcome,
            conflict_strategies,
        }))
    }

    fn node_status(&self, node: NodeId) -> Result<NodeStatus, HubError> {
        status_of(&mut self.lock(), node)
    }

    fn pending(&self, node: NodeId) -> Result<u64, HubError> {
        Ok(self.lock().pending_count(node)?)
    }

    fn lag(&self) -> Result<Vec<NodeLag>, HubError> {
        let mut engine = self.lock();
        let hub = self.info.id;
        let peers = engine.peers()?;
        let txn = engine.store_mut().begin().map_err(SyncError::from)?;
        let mut lags = Vec::with_capacity(peers.len());
        for peer in peers.iter().filter(|p| !p.revoked && p.id() != hub) {
            let query = PendingQuery::for_peer(peer, 1);
            let pending = txn.count_pending(&query).map_err(SyncError::from)?;
            let oldest = if pending > 0 {
                txn.pending(&query)
                    .map_err(SyncError::from)?
                    .first()
                    .map(|s| s.entity.updated_at)
            } else {
                None
            };
            lags.push(NodeLag {
                node: peer.id(),
                code: peer.info.code.clone(),
                pending,
                oldest_pending: oldest,
            });
        }
        Ok(lags)
    }

    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, HubError> {
        Ok(self.lock().meta(key)?)
    }

    fn meta_with_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, HubError> {
        Ok(self.lock().meta_with_prefix(prefix)?)
    }

    fn put_meta(&self, key: &str, value: Option<&[u8]>) -> Result<(), HubError> {
        Ok(self.lock().put_meta(key, value)?)
    }

    fn record_security_event(
        &self,
        node: Option<NodeId>,
        kind: SecurityKind,
        detail: String,
        now: Timestamp,
    ) -> Result<(), HubError> {
        let mut engine = self.lock();
        engine.record_security_event(node, kind, detail, now)?;
        self.drain_events_of(&mut engine);
        Ok(())
    }

    fn check_store(&self) -> Result<(), HubError> {
        self.lock().meta("http/health")?;
        Ok(())
    }

    fn info(&self) -> HubInfo {
        self.info.clone()
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}
