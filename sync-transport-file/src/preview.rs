//! Dry run: what importing a file would do, computed by the engine's own
//! code on a view of the store whose transactions never commit.
//!
//! The preview opens a second engine over [`RollbackStore`], a wrapper that
//! hands out the real store's transactions but drops them instead of
//! committing (the store contract: a dropped transaction keeps none of its
//! changes). The packet is applied exactly as an import would apply it, the
//! events say what changed, and every change is rolled back. So the
//! preview is the import's own verdict, not a second implementation of it.

use std::path::PathBuf;

use sync_core::conflict::{AuditRecord, OpenConflict, VersionRecord};
use sync_core::rejected::RejectedBy;
use sync_core::{
    ChangeKind, ConflictSide, Engine, Entity, EntityKey, Event, NodeId, NodeInfo, ParkedChange,
    PeerState, PendingQuery, RejectedChange, SecurityEvent, Store, StoreError, StoreTxn,
    StoredEntity, SyncError, Timestamp, Uuid,
};

use crate::error::FileError;
use crate::format::FileHeader;
use crate::import::open_files;

/// What importing one export would do. Nothing was changed to find out.
#[derive(Debug)]
#[non_exhaustive]
pub struct Preview {
    /// The export's header (of part 1).
    pub header: FileHeader,
    /// Its files.
    pub files: Vec<PathBuf>,
    /// Already applied: importing it would change nothing.
    pub duplicate: bool,
    /// Entities it would create.
    pub inserts: Vec<EntityKey>,
    /// Entities it would update.
    pub updates: Vec<EntityKey>,
    /// Entities it would delete (soft delete).
    pub deletes: Vec<EntityKey>,
    /// Conflicts it would raise, with how they would be resolved.
    pub conflicts: Vec<PreviewConflict>,
    /// Children it would park until their parent arrives.
    pub parked: usize,
    /// Changes it would quarantine: versions in it this store would refuse
    /// (a constraint of the application's schema), and notices that the
    /// sender refused versions of ours.
    pub rejected: Vec<PreviewRejected>,
    /// Changes it carries that would change nothing (this node already holds
    /// them or something newer).
    pub unchanged: usize,
    /// Why the engine would refuse the packet (nothing would be applied).
    pub refusal: Option<SyncError>,
}

/// A conflict an import would raise.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PreviewConflict {
    /// The entity.
    pub key: EntityKey,
    /// The strategy that would resolve it.
    pub strategy: String,
    /// Which version would win (for the manual strategy: the local one
    /// stays until a person decides).
    pub winner: ConflictSide,
    /// A person would have to decide (manual strategy).
    pub needs_person: bool,
}

/// A change an import would quarantine (see [`sync_core::rejected`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PreviewRejected {
    /// The entity.
    pub key: EntityKey,
    /// Which side refuses it: this store ([`RejectedBy::Here`]) or the
    /// sender, telling us ([`RejectedBy::Peer`]).
    pub by: RejectedBy,
    /// The store's reason.
    pub reason: String,
}

/// Previews importing `files`: verifies them like [`crate::import`] (the
/// same errors), then reports for each export what it would insert, update
/// and delete and which conflicts it would raise, without changing the
/// store (not even its security log). Each export is previewed against the
/// store as it is now, on its own.
pub fn dry_run<S: Store>(
    engine: &mut Engine<S>,
    files: &[PathBuf],
    now: Timestamp,
) -> Result<Vec<Preview>, FileError> {
    let opened = open_files(engine, files)?;
    let registry = engine.registry().clone();
    let config = engine
        .config()
        .clone()
        .applied_events(true)
        .max_events(usize::MAX);
    let mut out = Vec::with_capacity(opened.len());
    for export in opened {
        let first = export.files[0].clone();
        let mut shadow = Engine::open(
            RollbackStore::new(engine.store_mut()),
            registry.clone(),
            config.clone(),
        )
        .map_err(|source| FileError::NotApplied {
            file: first.clone(),
            source: Box::new(source),
        })?;
        let result = shadow.handle_incoming(&export.envelope, now);
        let mut preview = Preview {
            header: export.header,
            files: export.files,
            duplicate: false,
            inserts: Vec::new(),
            updates: Vec::new(),
            deletes: Vec::new(),
            conflicts: Vec::new(),
            parked: 0,
            rejected: Vec::new(),
            unchanged: 0,
            refusal: None,
        };
        match result {
            Ok(incoming) => {
                preview.duplicate = incoming.duplicate;
                preview.parked = incoming.parked;
                collect_events(&mut shadow, &mut preview);
                let counted = preview.inserts.len()
                    + preview.updates.len()
                    + preview.deletes.len()
                    + preview.conflicts.len()
                    + preview.parked
                    + preview
                        .rejected
                        .iter()
                        .filter(|r| r.by == RejectedBy::Here)
                        .count();
                if !incoming.duplicate {
                    preview.unchanged =
                        (preview.header.entity_count as usize).saturating_sub(counted);
                }
            }
            Err(SyncError::Store(e)) => {
                return Err(FileError::NotApplied {
                    file: first,
                    source: Box::new(SyncError::Store(e)),
                });
            }
            Err(refusal) => preview.refusal = Some(refusal),
        }
        out.push(preview);
    }
    Ok(out)
}

/// Sorts the shadow engine's events into the preview. A conflict's outcome
/// is reported as the conflict alone, not also as an update.
fn collect_events<S: Store>(shadow: &mut Engine<S>, preview: &mut Preview) {
    let mut applied = Vec::new();
    while let Some(event) = shadow.poll_event() {
        match event {
            Event::Applied(change) => applied.push((change.kind, change.entity.key)),
            Event::Conflict(conflict) => preview.conflicts.push(PreviewConflict {
                needs_person: conflict.open_conflict.is_some(),
                key: conflict.key,
                strategy: conflict.strategy,
                winner: conflict.winner,
            }),
            Event::ChangeRejected {
                key, by, reason, ..
            } => preview.rejected.push(PreviewRejected { key, by, reason }),
            _ => {}
        }
    }
    for (kind, key) in applied {
        if preview.conflicts.iter().any(|c| c.key == key) {
            continue;
        }
        let list = match kind {
            ChangeKind::Created => &mut preview.inserts,
            ChangeKind::Updated => &mut preview.updates,
            ChangeKind::Deleted => &mut preview.deletes,
        };
        if !list.contains(&key) {
            list.push(key);
        }
    }
}

/// A view of a store whose transactions are rolled back instead of
/// committed: [`StoreTxn::commit`] drops the real transaction (which keeps
/// none of its changes) and reports success. Reads inside a transaction see
/// its own writes, as the contract requires.
pub struct RollbackStore<'s, S: Store> {
    inner: &'s mut S,
}

impl<'s, S: Store> RollbackStore<'s, S> {
    /// Wraps a store for one preview.
    pub fn new(inner: &'s mut S) -> Self {
        RollbackStore { inner }
    }
}

/// A transaction of a [`RollbackStore`].
pub struct RollbackTxn<T> {
    inner: T,
}

impl<S: Store> Store for RollbackStore<'_, S> {
    type Txn<'a>
        = RollbackTxn<S::Txn<'a>>
    where
        Self: 'a;

    fn begin(&mut self) -> Result<Self::Txn<'_>, StoreError> {
        Ok(RollbackTxn {
            inner: self.inner.begin()?,
        })
    }
}

impl<T: StoreTxn> StoreTxn for RollbackTxn<T> {
    fn commit(self) -> Result<(), StoreError> {
        drop(self.inner);
        Ok(())
    }
    fn local_node(&self) -> Result<Option<NodeInfo>, StoreError> {
        self.inner.local_node()
    }
    fn set_local_node(&mut self, node: &NodeInfo) -> Result<(), StoreError> {
        self.inner.set_local_node(node)
    }
    fn peer(&self, id: NodeId) -> Result<Option<PeerState>, StoreError> {
        self.inner.peer(id)
    }
    fn peers(&self) -> Result<Vec<PeerState>, StoreError> {
        self.inner.peers()
    }
    fn put_peer(&mut self, peer: &PeerState) -> Result<(), StoreError> {
        self.inner.put_peer(peer)
    }
    fn entity(&self, key: &EntityKey) -> Result<Option<StoredEntity>, StoreError> {
        self.inner.entity(key)
    }
    fn put_entity(
        &mut self,
        entity: &Entity,
        source: NodeId,
        stored_at: Timestamp,
    ) -> Result<u64, StoreError> {
        self.inner.put_entity(entity, source, stored_at)
    }
    fn last_seq(&self) -> Result<u64, StoreError> {
        self.inner.last_seq()
    }
    fn pending(&self, query: &PendingQuery) -> Result<Vec<StoredEntity>, StoreError> {
        self.inner.pending(query)
    }
    fn count_pending(&self, query: &PendingQuery) -> Result<u64, StoreError> {
        self.inner.count_pending(query)
    }
    fn entities(
        &self,
        entity_type: &str,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<StoredEntity>, StoreError> {
        self.inner.entities(entity_type, after, limit)
    }
    fn referencing(
        &self,
        entity_type: &str,
        field: &str,
        parent: Uuid,
    ) -> Result<Vec<StoredEntity>, StoreError> {
        self.inner.referencing(entity_type, field, parent)
    }
    fn add_version(&mut self, record: &VersionRecord) -> Result<(), StoreError> {
        self.inner.add_version(record)
    }
    fn versions(&self, key: &EntityKey) -> Result<Vec<VersionRecord>, StoreError> {
        self.inner.versions(key)
    }
    fn add_audit(&mut self, record: &AuditRecord) -> Result<(), StoreError> {
        self.inner.add_audit(record)
    }
    fn audit_log(&self, offset: usize, limit: usize) -> Result<Vec<AuditRecord>, StoreError> {
        self.inner.audit_log(offset, limit)
    }
    fn put_open_conflict(&mut self, conflict: &OpenConflict) -> Result<(), StoreError> {
        self.inner.put_open_conflict(conflict)
    }
    fn open_conflicts(&self) -> Result<Vec<OpenConflict>, StoreError> {
        self.inner.open_conflicts()
    }
    fn open_conflicts_for(&self, key: &EntityKey) -> Result<Vec<OpenConflict>, StoreError> {
        self.inner.open_conflicts_for(key)
    }
    fn take_open_conflict(&mut self, id: Uuid) -> Result<Option<OpenConflict>, StoreError> {
        self.inner.take_open_conflict(id)
    }
    fn park(&mut self, parked: &ParkedChange) -> Result<(), StoreError> {
        self.inner.park(parked)
    }
    fn take_parked(&mut self, parent: &EntityKey) -> Result<Vec<ParkedChange>, StoreError> {
        self.inner.take_parked(parent)
    }
    fn unpark(&mut self, child: &EntityKey) -> Result<(), StoreError> {
        self.inner.unpark(child)
    }
    fn parked(&self) -> Result<Vec<ParkedChange>, StoreError> {
        self.inner.parked()
    }
    fn parked_change(&self, child: &EntityKey) -> Result<Option<ParkedChange>, StoreError> {
        self.inner.parked_change(child)
    }
    fn add_security_event(&mut self, event: &SecurityEvent) -> Result<(), StoreError> {
        self.inner.add_security_event(event)
    }
    fn security_events(&self) -> Result<Vec<SecurityEvent>, StoreError> {
        self.inner.security_events()
    }
    fn put_rejected(&mut self, rejected: &RejectedChange) -> Result<(), StoreError> {
        self.inner.put_rejected(rejected)
    }
    fn rejected(&self) -> Result<Vec<RejectedChange>, StoreError> {
        self.inner.rejected()
    }
    fn take_rejected(&mut self, id: Uuid) -> Result<Option<RejectedChange>, StoreError> {
        self.inner.take_rejected(id)
    }
    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.meta(key)
    }
    fn put_meta(&mut self, key: &str, value: Option<&[u8]>) -> Result<(), StoreError> {
        self.inner.put_meta(key, value)
    }
    fn meta_with_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.inner.meta_with_prefix(prefix)
    }
}
