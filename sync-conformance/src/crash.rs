//! [`CrashingStore`]: a [`Store`] wrapper that simulates a crash at a chosen
//! store operation.
//!
//! Arm it with [`CrashingStore::crash_after`]`(n)`: the first `n` operations
//! (begins, reads, writes, commits) pass through, and the next one fails with
//! a [`StoreErrorKind::Backend`](sync_core::StoreErrorKind::Backend) error,
//! as does every operation after it: the process is dead. A transaction that
//! was open is dropped uncommitted, so the wrapped store keeps exactly what
//! was committed before the crash. [`CrashingStore::into_inner`] takes the
//! wrapped store back, which is what a restart reopens.
//!
//! It also plays a store whose own schema refuses some versions (a UNIQUE
//! or NOT NULL constraint of an application's table):
//! [`CrashingStore::refuse_when`] makes `put_entity` answer
//! [`StoreError::Refused`] for the versions a rule picks.

use std::cell::Cell;

use sync_core::{
    AuditRecord, Entity, EntityKey, NodeId, NodeInfo, OpenConflict, ParkedChange, PeerState,
    PendingQuery, RejectedChange, SecurityEvent, Store, StoreError, StoreTxn, StoredEntity,
    Timestamp, Uuid, VersionRecord,
};

/// A store that fails every operation from a chosen one on, as if the
/// process had died there.
#[derive(Debug, Default)]
pub struct CrashingStore<S> {
    inner: S,
    fuse: Fuse,
    refuse: Option<RefusalRule>,
}

/// Picks the versions a store refuses, with the reason it gives.
pub type RefusalRule = fn(&Entity) -> Option<String>;

/// Counts operations down to the crash.
#[derive(Debug, Default)]
struct Fuse {
    /// Operations left before the crash (`None`: disarmed).
    remaining: Cell<Option<u64>>,
    /// The crash happened.
    blown: Cell<bool>,
    /// Operations seen so far.
    ops: Cell<u64>,
    /// Transactions committed so far.
    commits: Cell<u64>,
}

impl<S> CrashingStore<S> {
    /// Wraps `inner`, disarmed.
    pub fn new(inner: S) -> Self {
        CrashingStore {
            inner,
            fuse: Fuse::default(),
            refuse: None,
        }
    }

    /// From now on `put_entity` refuses every version `rule` names a reason
    /// for ([`StoreError::Refused`]), writing nothing of it.
    pub fn refuse_when(&mut self, rule: RefusalRule) {
        self.refuse = Some(rule);
    }

    /// Arms the crash: `ops` more operations succeed, the next one fails.
    pub fn crash_after(&mut self, ops: u64) {
        self.fuse.remaining.set(Some(ops));
    }

    /// Disarms a pending crash (one that has not happened yet).
    pub fn disarm(&mut self) {
        self.fuse.remaining.set(None);
    }

    /// Whether the crash has happened.
    pub fn crashed(&self) -> bool {
        self.fuse.blown.get()
    }

    /// Store operations seen so far (including the failed ones).
    pub fn ops(&self) -> u64 {
        self.fuse.ops.get()
    }

    /// Transactions committed through this wrapper so far (a store's cost
    /// per exchange: each commit is a sync to disk on a durable store).
    pub fn commits(&self) -> u64 {
        self.fuse.commits.get()
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The wrapped store, mutably.
    pub fn inner_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Takes back the wrapped store: what survived the crash.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl Fuse {
    fn tick(&self) -> Result<(), StoreError> {
        self.ops.set(self.ops.get() + 1);
        if self.blown.get() {
            return Err(crashed());
        }
        match self.remaining.get() {
            Some(0) => {
                self.blown.set(true);
                self.remaining.set(None);
                Err(crashed())
            }
            Some(n) => {
                self.remaining.set(Some(n - 1));
                Ok(())
            }
            None => Ok(()),
        }
    }
}

fn crashed() -> StoreError {
    StoreError::backend("running (simulated crash)", SimulatedCrash)
}

/// The backend error of a simulated crash.
#[derive(Debug)]
pub struct SimulatedCrash;

impl std::fmt::Display for SimulatedCrash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the process crashed (simulated)")
    }
}

impl std::error::Error for SimulatedCrash {}

impl<S: Store> Store for CrashingStore<S> {
    type Txn<'a>
        = CrashingTxn<'a, S::Txn<'a>>
    where
        Self: 'a;

    fn begin(&mut self) -> Result<Self::Txn<'_>, StoreError> {
        self.fuse.tick()?;
        let CrashingStore {
            inner,
            fuse,
            refuse,
        } = self;
        Ok(CrashingTxn {
            inner: inner.begin()?,
            fuse,
            refuse: *refuse,
        })
    }
}

/// A transaction of a [`CrashingStore`].
pub struct CrashingTxn<'a, T> {
    inner: T,
    fuse: &'a Fuse,
    refuse: Option<RefusalRule>,
}

impl<T: StoreTxn> StoreTxn for CrashingTxn<'_, T> {
    fn commit(self) -> Result<(), StoreError> {
        self.fuse.tick()?;
        self.inner.commit()?;
        self.fuse.commits.set(self.fuse.commits.get() + 1);
        Ok(())
    }

    fn local_node(&self) -> Result<Option<NodeInfo>, StoreError> {
        self.fuse.tick()?;
        self.inner.local_node()
    }

    fn set_local_node(&mut self, node: &NodeInfo) -> Result<(), StoreError> {
        self.fuse.tick()?;
        self.inner.set_local_node(node)
    }

    fn peer(&self, id: NodeId) -> Result<Option<PeerState>, StoreError> {
        self.fuse.tick()?;
        self.inner.peer(id)
    }

    fn peers(&self) -> Result<Vec<PeerState>, StoreError> {
        self.fuse.tick()?;
        self.inner.peers()
    }

    fn put_peer(&mut self, peer: &PeerState) -> Result<(), StoreError> {
        self.fuse.tick()?;
        self.inner.put_peer(peer)
    }

    fn entity(&self, key: &EntityKey) -> Result<Option<StoredEntity>, StoreError> {
        self.fuse.tick()?;
        self.inner.entity(key)
    }

    fn put_entity(
        &mut self,
        entity: &Entity,
        source: NodeId,
        stored_at: Timestamp,
    ) -> Result<u64, StoreError> {
        self.fuse.tick()?;
        if let Some(reason) = self.refuse.and_then(|rule| rule(entity)) {
            return Err(StoreError::Refused {
                key: entity.key.clone(),
                reason,
            });
        }
        self.inner.put_entity(entity, source, stored_at)
    }

    fn last_seq(&self) -> Result<u64, StoreError> {
        self.fuse.tick()?;
        self.inner.last_seq()
    }

    fn pending(&self, query: &PendingQuery) -> Result<Vec<StoredEntity>, StoreError> {
        self.fuse.tick()?;
        self.inner.pending(query)
    }

    fn count_pending(&self, query: &PendingQuery) -> Result<u64, StoreError> {
        self.fuse.tick()?;
        self.inner.count_pending(query)
    }

    fn visit_pending(
        &self,
        query: &PendingQuery,
        visit: &mut dyn FnMut(StoredEntity) -> std::ops::ControlFlow<()>,
    ) -> Result<(), StoreError> {
        self.fuse.tick()?;
        self.inner.visit_pending(query, visit)
    }

    fn count_pending_upto(&self, query: &PendingQuery, upto_seq: u64) -> Result<u64, StoreError> {
        self.fuse.tick()?;
        self.inner.count_pending_upto(query, upto_seq)
    }

    fn entities(
        &self,
        entity_type: &str,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<StoredEntity>, StoreError> {
        self.fuse.tick()?;
        self.inner.entities(entity_type, after, limit)
    }

    fn referencing(
        &self,
        entity_type: &str,
        field: &str,
        parent: Uuid,
    ) -> Result<Vec<StoredEntity>, StoreError> {
        self.fuse.tick()?;
        self.inner.referencing(entity_type, field, parent)
    }

    fn add_version(&mut self, record: &VersionRecord) -> Result<(), StoreError> {
        self.fuse.tick()?;
        self.inner.add_version(record)
    }

    fn versions(&self, key: &EntityKey) -> Result<Vec<VersionRecord>, StoreError> {
        self.fuse.tick()?;
        self.inner.versions(key)
    }

    fn add_audit(&mut self, record: &AuditRecord) -> Result<(), StoreError> {
        self.fuse.tick()?;
        self.inner.add_audit(record)
    }

    fn audit_log(&self, offset: usize, limit: usize) -> Result<Vec<AuditRecord>, StoreError> {
        self.fuse.tick()?;
        self.inner.audit_log(offset, limit)
    }

    fn put_open_conflict(&mut self, conflict: &OpenConflict) -> Result<(), StoreError> {
        self.fuse.tick()?;
        self.inner.put_open_conflict(conflict)
    }

    fn open_conflicts(&self) -> Result<Vec<OpenConflict>, StoreError> {
        self.fuse.tick()?;
        self.inner.open_conflicts()
    }

    fn take_open_conflict(&mut self, id: Uuid) -> Result<Option<OpenConflict>, StoreError> {
        self.fuse.tick()?;
        self.inner.take_open_conflict(id)
    }

    fn park(&mut self, parked: &ParkedChange) -> Result<(), StoreError> {
        self.fuse.tick()?;
        self.inner.park(parked)
    }

    fn take_parked(&mut self, parent: &EntityKey) -> Result<Vec<ParkedChange>, StoreError> {
        self.fuse.tick()?;
        self.inner.take_parked(parent)
    }

    fn unpark(&mut self, child: &EntityKey) -> Result<(), StoreError> {
        self.fuse.tick()?;
        self.inner.unpark(child)
    }

    fn parked(&self) -> Result<Vec<ParkedChange>, StoreError> {
        self.fuse.tick()?;
        self.inner.parked()
    }

    fn parked_change(&self, child: &EntityKey) -> Result<Option<ParkedChange>, StoreError> {
        self.fuse.tick()?;
        self.inner.parked_change(child)
    }

    fn add_security_event(&mut self, event: &SecurityEvent) -> Result<(), StoreError> {
        self.fuse.tick()?;
        self.inner.add_security_event(event)
    }

    fn security_events(&self) -> Result<Vec<SecurityEvent>, StoreError> {
        self.fuse.tick()?;
        self.inner.security_events()
    }

    fn put_rejected(&mut self, rejected: &RejectedChange) -> Result<(), StoreError> {
        self.fuse.tick()?;
        self.inner.put_rejected(rejected)
    }

    fn rejected(&self) -> Result<Vec<RejectedChange>, StoreError> {
        self.fuse.tick()?;
        self.inner.rejected()
    }

    fn take_rejected(&mut self, id: Uuid) -> Result<Option<RejectedChange>, StoreError> {
        self.fuse.tick()?;
        self.inner.take_rejected(id)
    }

    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.fuse.tick()?;
        self.inner.meta(key)
    }

    fn put_meta(&mut self, key: &str, value: Option<&[u8]>) -> Result<(), StoreError> {
        self.fuse.tick()?;
        self.inner.put_meta(key, value)
    }

    fn meta_with_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.fuse.tick()?;
        self.inner.meta_with_prefix(prefix)
    }
}
