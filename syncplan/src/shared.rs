//! An engine shared between async tasks, whose store work runs on tokio's
//! blocking threads.
//!
//! Stores are synchronous and need not be `Sync` (a SQLite connection is
//! not): the engine sits behind a mutex, and every call runs inside
//! `spawn_blocking`, so a slow disk never stalls an async worker thread and
//! only one thread touches the store at a time.

use std::sync::{Arc, Mutex};

use sync_core::{Engine, Store};

use crate::driver_error::DriverError;

/// A cloneable handle to one engine.
pub(crate) struct SharedEngine<S: Store> {
    engine: Arc<Mutex<Engine<S>>>,
}

impl<S: Store> Clone for SharedEngine<S> {
    fn clone(&self) -> Self {
        SharedEngine {
            engine: Arc::clone(&self.engine),
        }
    }
}

impl<S: Store + Send + 'static> SharedEngine<S> {
    pub fn new(engine: Engine<S>) -> Self {
        SharedEngine {
            engine: Arc::new(Mutex::new(engine)),
        }
    }

    /// Runs `f` with the engine on a blocking thread.
    pub async fn run<R, F>(&self, f: F) -> Result<R, DriverError>
    where
        F: FnOnce(&mut Engine<S>) -> R + Send + 'static,
        R: Send + 'static,
    {
        let engine = Arc::clone(&self.engine);
        tokio::task::spawn_blocking(move || {
            let mut guard = engine.lock().map_err(|_| DriverError::EngineUnavailable)?;
            Ok(f(&mut guard))
        })
        .await
        .map_err(|e| DriverError::Task {
            detail: e.to_string(),
        })?
    }

    /// The engine back, if this is the last handle and no call panicked
    /// while holding it.
    pub fn into_inner(self) -> Option<Engine<S>> {
        Arc::try_unwrap(self.engine).ok()?.into_inner().ok()
    }
}
