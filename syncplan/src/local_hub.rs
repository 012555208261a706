//! [`LocalHub`]: a hub engine in the same process as its nodes, with a
//! [`Transport`] (and [`Push`]) per node. For tests, examples, and an
//! application that hosts the hub and a few nodes in one process.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use sync_core::{Engine, Event, NodeId, Store, StoreTxn, Transport, TransportError};
use tokio::sync::watch;
use tracing::{debug, debug_span, info};

use crate::driver_error::DriverError;
use crate::push::Push;
use crate::shared::SharedEngine;
use crate::time;

/// The name local transports give in their errors.
pub const LOCAL_TARGET: &str = "in-process hub";

/// A hub engine shared by in-process transports. Cloning gives another
/// handle to the same hub.
pub struct LocalHub<S: Store> {
    engine: SharedEngine<S>,
    changed: Arc<watch::Sender<Changed>>,
}

impl<S: Store> Clone for LocalHub<S> {
    fn clone(&self) -> Self {
        LocalHub {
            engine: self.engine.clone(),
            changed: Arc::clone(&self.changed),
        }
    }
}

/// The hub's change generation: bumped whenever its store gained changes.
#[derive(Clone, Copy, Debug, Default)]
struct Changed {
    generation: u64,
}

impl<S: Store + Send + 'static> LocalHub<S> {
    /// Serves `engine` (a hub whose nodes are registered peers).
    pub fn new(engine: Engine<S>) -> Self {
        LocalHub {
            engine: SharedEngine::new(engine),
            changed: Arc::new(watch::channel(Changed::default()).0),
        }
    }

    /// A transport for `node`: every packet it carries is answered by the
    /// hub as coming from `node` ([`Engine::respond_as`]), so a packet in
    /// another node's name is refused, as by a server that authenticated
    /// the connection.
    pub fn transport(&self, node: NodeId) -> LocalTransport<S> {
        LocalTransport {
            hub: self.clone(),
            node,
            seen: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Runs `f` with the hub's engine on a blocking thread (the hub's own
    /// writes, administration, queries). Nodes waiting for a push hear of
    /// any change it makes.
    pub async fn with_engine<R, F>(&self, f: F) -> Result<R, DriverError>
    where
        F: FnOnce(&mut Engine<S>) -> R + Send + 'static,
        R: Send + 'static,
    {
        let changed = Arc::clone(&self.changed);
        self.engine
            .run(move |engine| {
                let before = last_seq(engine);
                let result = f(engine);
                if last_seq(engine) != before {
                    bump(&changed);
                }
                log_events(engine);
                result
            })
            .await
    }

    /// The engine back, once this is the last handle (transports hold
    /// one).
    pub fn into_engine(self) -> Option<Engine<S>> {
        drop(self.changed);
        self.engine.into_inner()
    }
}

/// One node's way to its [`LocalHub`].
pub struct LocalTransport<S: Store> {
    hub: LocalHub<S>,
    node: NodeId,
    /// The hub's change generation that this node's last reply covered.
    seen: Arc<AtomicU64>,
}

impl<S: Store> Clone for LocalTransport<S> {
    fn clone(&self) -> Self {
        LocalTransport {
            hub: self.hub.clone(),
            node: self.node,
            seen: Arc::clone(&self.seen),
        }
    }
}

#[async_trait::async_trait]
impl<S: Store + Send + 'static> Transport for LocalTransport<S> {
    async fn exchange(&self, outgoing: Bytes) -> Result<Vec<Bytes>, TransportError> {
        let node = self.node;
        let changed = Arc::clone(&self.hub.changed);
        let seen = Arc::clone(&self.seen);
        let reply = self
            .hub
            .engine
            .run(move |engine| {
                let _span = debug_span!("hub_respond", peer = %node).entered();
                let reply = engine.respond_as(node, &outgoing, time::now())?;
                let outcome = &reply.outcome;
                if outcome.applied + outcome.conflicts + outcome.parked > 0 {
                    bump(&changed);
                }
                // The reply covers every change the hub held until now.
                seen.store(changed.borrow().generation, Ordering::SeqCst);
                debug!(applied = outcome.applied, conflicts = outcome.conflicts, refused = ?outcome.error, "answered");
                log_events(engine);
                Ok::<_, sync_core::SyncError>(reply.bytes)
            })
            .await;
        match reply {
            Ok(Ok(bytes)) => Ok(vec![bytes]),
            Ok(Err(e)) => Err(TransportError::Refused {
                target: LOCAL_TARGET.into(),
                status: 503,
                message: e.to_string(),
            }),
            Err(e) => Err(TransportError::Unreachable {
                target: LOCAL_TARGET.into(),
                detail: e.to_string(),
            }),
        }
    }
}

#[async_trait::async_trait]
impl<S: Store + Send + 'static> Push for LocalTransport<S> {
    async fn wait_for_changes(&self, max_wait: Duration) -> Result<bool, TransportError> {
        let mut changes = self.hub.changed.subscribe();
        let deadline = tokio::time::sleep(max_wait);
        tokio::pin!(deadline);
        loop {
            if changes.borrow_and_update().generation > self.seen.load(Ordering::SeqCst) {
                return Ok(true);
            }
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        return Ok(false);
                    }
                }
                () = &mut deadline => return Ok(false),
            }
        }
    }
}

fn bump(changed: &watch::Sender<Changed>) {
    changed.send_modify(|c| c.generation += 1);
}

fn last_seq<S: Store>(engine: &mut Engine<S>) -> Option<u64> {
    engine.store_mut().begin().ok()?.last_seq().ok()
}

/// Drains the hub's events into the log (a server has no one to hand them
/// to; they are also in its store where they matter: audit, history,
/// security).
fn log_events<S: Store>(engine: &mut Engine<S>) {
    while let Some(event) = engine.poll_event() {
        match event {
            Event::Conflict(c) => {
                info!(entity = %c.key, strategy = %c.strategy, winner = ?c.winner, "hub resolved a conflict")
            }
            Event::Security(s) => info!(kind = ?s.kind, detail = %s.detail, "hub security event"),
            other => debug!(event = ?other, "hub event"),
        }
    }
}
