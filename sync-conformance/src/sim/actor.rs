//! One participant (the hub or a node): its engine on a [`CrashingStore`],
//! its skewed clock, and its life cycle (up, crashed, restarted, restored).

use sync_core::{
    Engine, EngineConfig, EntityRegistry, NodeInfo, Store, StoreError, SyncError, Timestamp,
};

use super::scheduler::{SimTime, Who};
use crate::crash::{CrashingStore, RefusalRule};
use crate::fixtures::t;

/// The engine type the simulator drives.
pub type SimEngine<S> = Engine<CrashingStore<S>>;

/// A participant.
pub struct Actor<S: Store> {
    /// Who it is.
    pub who: Who,
    /// Its store's name for [`super::stores::SimStores`].
    pub name: String,
    /// Its clock's offset from simulated time, in microseconds.
    pub skew: SimTime,
    /// When its retry timer check is scheduled (to avoid piling them up).
    pub timer_at: Option<SimTime>,
    registry: EntityRegistry,
    config: EngineConfig,
    /// The versions its store's schema refuses (the hub's: see
    /// [`super::workload::REFUSED_TITLE`]).
    refuse: Option<RefusalRule>,
    life: Life<S>,
}

enum Life<S: Store> {
    Up(Box<SimEngine<S>>),
    Down(S),
    /// Only while [`Actor::kill`] or [`Actor::restart`] swap the other two,
    /// or after a restart failed (the run is over then).
    Swapping,
}

impl<S: Store> Actor<S> {
    /// A participant on a new store, identity `info`.
    pub fn new(
        who: Who,
        store: S,
        registry: EntityRegistry,
        config: EngineConfig,
        info: NodeInfo,
    ) -> Result<Self, SyncError> {
        let engine = Engine::new(
            CrashingStore::new(store),
            registry.clone(),
            config.clone(),
            info,
        )?;
        Ok(Actor {
            who,
            name: match who {
                Who::Hub => "hub".into(),
                Who::Node(i) => format!("node-{i}"),
            },
            skew: 0,
            timer_at: None,
            refuse: None,
            registry,
            config,
            life: Life::Up(Box::new(engine)),
        })
    }

    /// The engine, while the participant is up.
    pub fn engine(&mut self) -> Option<&mut SimEngine<S>> {
        match &mut self.life {
            Life::Up(engine) => Some(engine),
            Life::Down(_) | Life::Swapping => None,
        }
    }

    /// Whether it is running.
    pub fn is_up(&self) -> bool {
        matches!(self.life, Life::Up(_))
    }

    /// Whether its store crashed during the last engine call.
    pub fn crashed(&self) -> bool {
        match &self.life {
            Life::Up(engine) => engine.store().crashed(),
            Life::Down(_) | Life::Swapping => false,
        }
    }

    /// Its clock at simulated time `sim`.
    pub fn now(&self, sim: SimTime) -> Timestamp {
        t(0).add_micros(sim.saturating_add(self.skew))
    }

    /// Simulated time at which its clock shows `at`.
    pub fn sim_time(&self, at: Timestamp) -> SimTime {
        at.as_micros() - t(0).as_micros() - self.skew
    }

    /// Makes its store refuse the versions `rule` picks, across restarts.
    pub fn refuse_when(&mut self, rule: RefusalRule) {
        self.refuse = Some(rule);
        if let Life::Up(engine) = &mut self.life {
            engine.store_mut().refuse_when(rule);
        }
    }

    /// Arms a crash after `ops` more store operations.
    pub fn arm_crash(&mut self, ops: u64) {
        if let Life::Up(engine) = &mut self.life {
            engine.store_mut().crash_after(ops);
        }
    }

    /// Disarms a crash that has not happened yet.
    pub fn disarm(&mut self) {
        if let Life::Up(engine) = &mut self.life {
            engine.store_mut().disarm();
        }
    }

    /// Kills the process: the engine and its volatile state are gone, the
    /// store keeps what was committed. `reopen` sees the surviving store.
    pub fn kill(&mut self, reopen: impl FnOnce(S) -> S) {
        self.timer_at = None;
        self.life = match std::mem::replace(&mut self.life, Life::Swapping) {
            Life::Up(engine) => Life::Down(reopen((*engine).into_store().into_inner())),
            down => down,
        };
    }

    /// Restarts a killed participant: a new engine on what its store holds.
    pub fn restart(&mut self) -> Result<(), SyncError> {
        let life = std::mem::replace(&mut self.life, Life::Swapping);
        self.life = match life {
            Life::Down(store) => {
                let mut store = CrashingStore::new(store);
                if let Some(rule) = self.refuse {
                    store.refuse_when(rule);
                }
                Life::Up(Box::new(Engine::open(
                    store,
                    self.registry.clone(),
                    self.config.clone(),
                )?))
            }
            up => up,
        };
        Ok(())
    }

    /// Replaces the store of a killed participant (a restore from backup).
    pub fn replace_store(&mut self, store: S) {
        if let Life::Down(old) = &mut self.life {
            *old = store;
        }
    }

    /// The store, bypassing the crash fuse (for checks and backups, which
    /// are not part of the participant's own work).
    ///
    /// # Panics
    ///
    /// After a failed [`Actor::restart`] (the store was consumed by it).
    pub fn store(&mut self) -> &mut S {
        match &mut self.life {
            Life::Up(engine) => engine.store_mut().inner_mut(),
            Life::Down(store) => store,
            Life::Swapping => panic!("{} has no store after a failed restart", self.name),
        }
    }

    /// The entity registry.
    pub fn registry(&self) -> &EntityRegistry {
        &self.registry
    }

    /// Runs a read on the store, bypassing the crash fuse.
    ///
    /// # Panics
    ///
    /// When the store fails a plain read outside any simulated crash: such
    /// a store is broken, the simulation cannot go on, and the panic says
    /// which participant's store it was.
    pub fn peek<R>(&mut self, f: impl FnOnce(&S::Txn<'_>) -> Result<R, StoreError>) -> R {
        let name = self.name.clone();
        let read = self.store().begin().and_then(|txn| f(&txn));
        match read {
            Ok(value) => value,
            Err(e) => panic!("{name}'s store failed a read: {e}"),
        }
    }
}
