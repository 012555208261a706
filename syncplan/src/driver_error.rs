//! The driver's errors: what went wrong in a sync session, and what to do.

use sync_core::{SyncError, TransportError};

/// Why a driver call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// The engine or its store refused or failed (a schema mismatch, a
    /// refusal from the hub, a store failure); its message says what to do.
    #[error(transparent)]
    Sync(#[from] SyncError),
    /// The transport failed in a way that retrying will not fix (the hub
    /// refused the request outright).
    #[error("the exchange with the hub failed and retrying will not help: {0}")]
    Transport(#[source] TransportError),
    /// The hub could not be reached within the session's attempts; nothing
    /// is lost, the changes stay queued for the next session.
    #[error(
        "gave up after {attempts} attempt(s) to reach the hub; the changes stay queued, sync again when the hub is reachable"
    )]
    GaveUp {
        /// Exchanges tried in the session.
        attempts: u32,
        /// The last failure.
        #[source]
        last: TransportError,
    },
    /// The hub kept refusing the session's packets as damaged or as a
    /// temporary failure of its own.
    #[error(
        "gave up after {attempts} attempt(s): the hub kept answering with a temporary refusal; check the hub's log and sync again"
    )]
    KeptRefusing {
        /// Exchanges tried in the session.
        attempts: u32,
        /// The last refusal.
        #[source]
        last: SyncError,
    },
    /// An earlier call panicked while it held the engine, so its state is
    /// in doubt.
    #[error(
        "the engine is unavailable because an earlier call panicked while using it; drop this node and open its store again"
    )]
    EngineUnavailable,
    /// A blocking task that ran store work was cancelled or panicked.
    #[error(
        "store work on a blocking thread did not finish ({detail}); the runtime is shutting down or the work panicked"
    )]
    Task {
        /// What the runtime reported.
        detail: String,
    },
}

impl DriverError {
    /// How long the hub asked to wait before the next request (the
    /// `Retry-After` of the last failed exchange), if it said.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            DriverError::Transport(e) | DriverError::GaveUp { last: e, .. } => {
                e.retry_after_ms().map(std::time::Duration::from_millis)
            }
            _ => None,
        }
    }

    /// Whether a later session may succeed without anyone changing
    /// anything: the hub was unreachable or answered with a temporary
    /// refusal.
    pub fn is_transient(&self) -> bool {
        match self {
            DriverError::GaveUp { .. } | DriverError::KeptRefusing { .. } => true,
            DriverError::Transport(e) => e.is_transient(),
            DriverError::Sync(e) => e.is_retryable(),
            DriverError::EngineUnavailable | DriverError::Task { .. } => false,
        }
    }
}
