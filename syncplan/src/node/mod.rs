//! [`Node`]: the async driver of one node's engine, its store and its
//! transport to the hub.

mod auto;
mod session;

use std::sync::Arc;
use std::time::Duration;

use sync_core::{Engine, Event, NodeId, Store, SyncError, Transport};
use tokio::sync::{Notify, broadcast};

use crate::driver_error::DriverError;
use crate::push::Push;
use crate::report::{SessionEvent, SyncReport};
use crate::shared::SharedEngine;

pub use auto::AutoSync;

/// How sessions behave. `NodeConfig::default()` suits an interactive
/// application; every field has a chained setter.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeConfig {
    /// Failed exchanges (unreachable hub, timeout, temporary refusal) a
    /// session tries before it gives up with [`DriverError::GaveUp`]
    /// (default 5). The waits between them are the engine's backoff
    /// ([`sync_core::RetryPolicy`]).
    pub max_attempts: u32,
    /// Longest wait for one exchange before it counts as a timeout
    /// (default 30 s).
    pub exchange_timeout: Duration,
    /// Engine events kept for each [`Node::subscribe`] receiver that falls
    /// behind (default 1,024; a slower receiver misses the oldest).
    pub event_capacity: usize,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            max_attempts: 5,
            exchange_timeout: Duration::from_secs(30),
            event_capacity: 1024,
        }
    }
}

impl NodeConfig {
    /// Sets how many failed exchanges a session tries (at least 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Sets the longest wait for one exchange.
    pub fn exchange_timeout(mut self, timeout: Duration) -> Self {
        self.exchange_timeout = timeout;
        self
    }

    /// Sets how many events a lagging subscriber keeps (at least 1).
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = capacity.max(1);
        self
    }
}

/// One node's engine, store and transport, driven asynchronously.
///
/// Cloning gives another handle to the same node. Store work runs on
/// tokio's blocking threads (see [`Node::with_engine`]), one call at a
/// time; sessions run one at a time.
///
/// ```
/// # use syncplan::{Engine, EngineConfig, EntityRegistry, EntityType, FieldKind, LocalHub};
/// # use syncplan::{MemoryStore, Node, NodeId, NodeInfo, Record, Role, Uuid, Value};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let registry = EntityRegistry::new().with(EntityType::new("Note").field("text", FieldKind::Text));
/// let hub_info = NodeInfo::new(NodeId(Uuid::from_u128(1)), "HUB", "Hub", Role::Hub);
/// let node_info = NodeInfo::new(NodeId(Uuid::from_u128(2)), "DESKTOP-1", "Desktop", Role::Node);
/// let mut hub = Engine::new(MemoryStore::new(), registry.clone(), EngineConfig::default().seed(1), hub_info.clone())?;
/// hub.register_peer(node_info.clone())?;
/// let hub = LocalHub::new(hub);
///
/// let mut engine = Engine::new(MemoryStore::new(), registry, EngineConfig::default().seed(2), node_info.clone())?;
/// engine.register_peer(hub_info.clone())?;
/// let node = Node::builder(engine, hub_info.id, hub.transport(node_info.id)).build();
///
/// node.with_engine(|e| e.insert("Note", Record::from([("text".into(), Value::from("hi"))]), syncplan::now())).await??;
/// let report = node.sync().await?;
/// assert!(report.complete);
/// assert_eq!(report.sent, 1);
/// # Ok(())
/// # }
/// ```
pub struct Node<S: Store> {
    inner: Arc<Inner<S>>,
}

impl<S: Store> Clone for Node<S> {
    fn clone(&self) -> Self {
        Node {
            inner: Arc::clone(&self.inner),
        }
    }
}

/// Runs the schema migrations the hub sent (see [`NodeBuilder::migrate_with`]).
pub type Migrator<S> =
    Arc<dyn Fn(&mut Engine<S>, sync_core::Timestamp) -> Result<(), SyncError> + Send + Sync>;

struct Inner<S: Store> {
    engine: SharedEngine<S>,
    transport: Arc<dyn Transport>,
    push: Option<Arc<dyn Push>>,
    migrator: Option<Migrator<S>>,
    hub: NodeId,
    config: NodeConfig,
    /// Held for the length of a session: one at a time.
    session: tokio::sync::Mutex<()>,
    local_changes: Notify,
    events: broadcast::Sender<Event>,
}

/// Builds a [`Node`] ([`Node::builder`]).
pub struct NodeBuilder<S: Store> {
    engine: Engine<S>,
    hub: NodeId,
    transport: Arc<dyn Transport>,
    push: Option<Arc<dyn Push>>,
    migrator: Option<Migrator<S>>,
    config: NodeConfig,
}

#[cfg(feature = "sqlite")]
impl NodeBuilder<sync_store_sqlite::SqliteStore> {
    /// Applies the schema migrations the hub sends during a session with
    /// [`sync_store_sqlite::apply_migrations`], then syncs on at the new
    /// version (see [`NodeBuilder::migrate_with`]).
    pub fn apply_migrations(self) -> Self {
        self.migrate_with(|engine, now| {
            sync_store_sqlite::apply_migrations(engine, now).map(|_| ())
        })
    }
}

impl<S: Store + Send + 'static> NodeBuilder<S> {
    /// Runs `migrator` when a session ends with schema migrations from the
    /// hub pending ([`sync_core::migration`]); when it moved the engine's
    /// schema version on, the session goes on at the new version, so one
    /// [`Node::sync`] brings the node up to date. A failure the migrator
    /// reported to the engine ([`Engine::migration_failed`]) ends the
    /// session normally (the hub is told on the next one);
    /// [`Engine::migration_status`] says why.
    pub fn migrate_with(
        mut self,
        migrator: impl Fn(&mut Engine<S>, sync_core::Timestamp) -> Result<(), SyncError>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        self.migrator = Some(Arc::new(migrator));
        self
    }

    /// Sets the session behaviour.
    pub fn config(mut self, config: NodeConfig) -> Self {
        self.config = config;
        self
    }

    /// Enables live push: [`Node::auto_sync`] syncs as soon as `push` says
    /// the hub has something (usually the transport itself).
    pub fn push(mut self, push: Arc<dyn Push>) -> Self {
        self.push = Some(push);
        self
    }

    /// The node.
    pub fn build(self) -> Node<S> {
        let (events, _) = broadcast::channel(self.config.event_capacity.max(1));
        Node {
            inner: Arc::new(Inner {
                engine: SharedEngine::new(self.engine),
                transport: self.transport,
                push: self.push,
                migrator: self.migrator,
                hub: self.hub,
                config: self.config,
                session: tokio::sync::Mutex::new(()),
                local_changes: Notify::new(),
                events,
            }),
        }
    }
}

impl<S: Store + Send + 'static> Node<S> {
    /// A node syncing `engine` with the hub `hub` (a peer registered in the
    /// engine) over `transport`.
    pub fn builder(
        engine: Engine<S>,
        hub: NodeId,
        transport: impl Transport + 'static,
    ) -> NodeBuilder<S> {
        Self::builder_shared(engine, hub, Arc::new(transport))
    }

    /// As [`Node::builder`], with a transport shared with other code (for
    /// example one that also implements [`Push`]).
    pub fn builder_shared(
        engine: Engine<S>,
        hub: NodeId,
        transport: Arc<dyn Transport>,
    ) -> NodeBuilder<S> {
        NodeBuilder {
            engine,
            hub,
            transport,
            push: None,
            migrator: None,
            config: NodeConfig::default(),
        }
    }

    /// The hub this node syncs with.
    pub fn hub(&self) -> NodeId {
        self.inner.hub
    }

    /// The session behaviour.
    pub fn config(&self) -> &NodeConfig {
        &self.inner.config
    }

    /// Runs `f` with the engine on a blocking thread: application reads and
    /// writes (`insert`, `put`, queries, SQL through the store), between
    /// sessions or during one. Events the call raises are published to
    /// [`Node::subscribe`]rs. Call [`Node::notify_local_change`] after a
    /// write that [`Node::auto_sync`] should send soon.
    pub async fn with_engine<R, F>(&self, f: F) -> Result<R, DriverError>
    where
        F: FnOnce(&mut Engine<S>) -> R + Send + 'static,
        R: Send + 'static,
    {
        let (result, events) = self
            .inner
            .engine
            .run(move |engine| {
                let result = f(engine);
                (result, session::drain(engine))
            })
            .await?;
        self.publish(&events);
        Ok(result)
    }

    /// Tells a running [`Node::auto_sync`] that local changes wait: it
    /// syncs now rather than at the next interval.
    pub fn notify_local_change(&self) {
        self.inner.local_changes.notify_one();
    }

    /// Every engine event from now on: those of sessions and of
    /// [`Node::with_engine`] calls. A receiver that falls more than
    /// [`NodeConfig::event_capacity`] events behind misses the oldest.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    /// Runs one sync session with the hub: exchanges packets until both
    /// sides have nothing pending and everything is acknowledged, retrying
    /// failed exchanges on the engine's backoff up to
    /// [`NodeConfig::max_attempts`] times.
    pub async fn sync(&self) -> Result<SyncReport, DriverError> {
        self.sync_with(|_| {}).await
    }

    /// As [`Node::sync`], calling `observer` with each [`SessionEvent`] as
    /// it happens (for a progress bar or a log).
    pub async fn sync_with(
        &self,
        observer: impl FnMut(&SessionEvent) + Send,
    ) -> Result<SyncReport, DriverError> {
        let _one_at_a_time = self.inner.session.lock().await;
        session::run(self, observer).await
    }

    /// The engine back, once this is the last handle to the node and no
    /// call panicked while holding it.
    pub fn into_engine(self) -> Option<Engine<S>> {
        let inner = Arc::try_unwrap(self.inner).ok()?;
        inner.engine.into_inner()
    }

    fn publish(&self, events: &[Event]) {
        for event in events {
            // No receiver is not an error: nobody subscribed.
            let _ = self.inner.events.send(event.clone());
        }
    }
}
