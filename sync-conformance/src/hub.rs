//! [`HubHandle`]: a hub engine on a memory store behind a mutex, for
//! transports under test to serve. A transport's fixture wires
//! [`HubHandle::respond`] into whatever its server side is (a loopback
//! closure, an HTTP handler, a folder watcher).

use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use sync_core::{ConflictStrategy, Engine, EngineConfig, SyncError, Timestamp};
use sync_store_memory::MemoryStore;

use crate::crash::CrashingStore;
use crate::fixtures::{hub_info, node_info, registry, t};

/// The hub engine type behind a [`HubHandle`].
pub type HubEngine = Engine<CrashingStore<MemoryStore>>;

/// A shared hub. Cloning gives another handle to the same hub.
#[derive(Clone)]
pub struct HubHandle {
    inner: Arc<Mutex<HubState>>,
}

struct HubState {
    engine: Option<HubEngine>,
    now: Timestamp,
    up: bool,
}

/// Why the hub could not answer. A transport maps these to its own
/// [`TransportError`](sync_core::TransportError)s, which must be transient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HubFailure {
    /// The hub is gone (stopped, not listening): like a closed port.
    Gone,
    /// The hub failed internally (its store failed); like an HTTP 503.
    Internal(String),
}

impl std::fmt::Display for HubFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HubFailure::Gone => f.write_str("the hub is not running"),
            HubFailure::Internal(detail) => write!(f, "the hub failed internally: {detail}"),
        }
    }
}

impl std::error::Error for HubFailure {}

impl HubHandle {
    /// A running hub (fixture registry, server-wins reports) with nodes
    /// `0..nodes` ([`node_info`]) registered.
    pub fn new(nodes: usize) -> Self {
        let mut engine = Engine::new(
            CrashingStore::new(MemoryStore::new()),
            registry(ConflictStrategy::ServerWins),
            EngineConfig::default().seed(1),
            hub_info(),
        )
        .expect("a memory store cannot fail");
        for i in 0..nodes {
            engine
                .register_peer(node_info(i))
                .expect("a memory store cannot fail");
        }
        HubHandle {
            inner: Arc::new(Mutex::new(HubState {
                engine: Some(engine),
                now: t(0),
                up: true,
            })),
        }
    }

    /// Answers one request as the hub's server side would: the hub's reply
    /// (a packet, or an error envelope refusing the request), or why there
    /// is none.
    pub fn respond(&self, request: &[u8]) -> Result<Bytes, HubFailure> {
        let mut state = self.lock();
        if !state.up {
            return Err(HubFailure::Gone);
        }
        let now = state.now;
        let engine = state.engine.as_mut().ok_or(HubFailure::Gone)?;
        match engine.respond(request, now) {
            Ok(reply) => Ok(reply),
            Err(error) => {
                // A failed store: restart the engine on what was committed,
                // as a server would, and report a transient failure.
                state.restart();
                Err(HubFailure::Internal(error.to_string()))
            }
        }
    }

    /// Stops the hub: requests fail with [`HubFailure::Gone`] until
    /// [`HubHandle::start`].
    pub fn stop(&self) {
        self.lock().up = false;
    }

    /// Starts a stopped hub again (its state is kept).
    pub fn start(&self) {
        self.lock().up = true;
    }

    /// Whether the hub answers requests.
    pub fn is_up(&self) -> bool {
        self.lock().up
    }

    /// Makes the hub's store fail on the next request: that request gets
    /// [`HubFailure::Internal`] and changes nothing.
    pub fn fail_next_request(&self) {
        if let Some(engine) = self.lock().engine.as_mut() {
            engine.store_mut().crash_after(0);
        }
    }

    /// Sets the hub's clock.
    pub fn set_now(&self, now: Timestamp) {
        self.lock().now = now;
    }

    /// Runs `f` on the hub engine (to inspect or change its state).
    ///
    /// # Panics
    ///
    /// When `f` fails (a fixture step failed: the test fails with it), or
    /// when the hub could not be restarted after an injected failure.
    pub fn with_engine<R>(&self, f: impl FnOnce(&mut HubEngine) -> Result<R, SyncError>) -> R {
        let mut state = self.lock();
        let engine = state
            .engine
            .as_mut()
            .expect("the hub engine is always rebuilt");
        f(engine).expect("hub operation")
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        // A panic while holding the lock is a failed test already; the state
        // is still usable for its report.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl HubState {
    fn restart(&mut self) {
        if let Some(engine) = self.engine.take() {
            let registry = engine.registry().clone();
            let config = engine.config().clone();
            let store = CrashingStore::new(engine.into_store().into_inner());
            self.engine = Engine::open(store, registry, config).ok();
        }
    }
}
