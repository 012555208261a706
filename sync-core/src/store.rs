//! The `Store` trait: synchronous, transactional persistence for the engine.
//!
//! A store keeps entities with their change-registry metadata, the node
//! registry, the object version history, the audit log, open manual
//! conflicts, parked children and security events. Every engine operation runs
//! in one transaction: applying a packet, recording its number and processing
//! its acknowledgement commit together or not at all.
//!
//! # Contract
//!
//! - **Atomicity.** Changes made through a [`StoreTxn`] become visible to later
//!   transactions only after [`StoreTxn::commit`] returns `Ok`. Dropping a
//!   transaction without committing discards every change made through it.
//! - **Durability.** After `commit` returns `Ok`, the changes survive a crash to
//!   the degree the store documents (the engine acknowledges packets only
//!   after commit).
//! - **Isolation.** The engine holds `&mut` to the store for the life of a
//!   transaction, so there is one transaction at a time per store handle.
//! - **Sequence.** [`StoreTxn::put_entity`] assigns a local change sequence that
//!   is strictly greater than every sequence ever committed by this store.
//! - **Errors.** A failed write may poison the store: later writes then fail
//!   with [`StoreError::Poisoned`] rather than guess.
//! - **Records.** An absent field and a null field are the same: records
//!   returned by the store hold no top-level `Null` (a SQL `NULL` column is an
//!   absent field), and records the engine passes in hold none either.

use std::ops::ControlFlow;

use uuid::Uuid;

use crate::conflict::{AuditRecord, OpenConflict, VersionRecord};
use crate::entity::{Entity, EntityKey, StoredEntity};
use crate::error::StoreError;
use crate::events::SecurityEvent;
use crate::ids::{NodeId, Timestamp};
use crate::node_registry::{NodeInfo, PeerState};
use crate::rejected::RejectedChange;

/// A transactional store. See the module docs for the contract.
pub trait Store {
    /// A transaction borrowing the store.
    type Txn<'a>: StoreTxn
    where
        Self: 'a;

    /// Starts a transaction.
    fn begin(&mut self) -> Result<Self::Txn<'_>, StoreError>;
}

/// Which changes a peer is owed: the change registry's one query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingQuery {
    /// The peer.
    pub peer: NodeId,
    /// Only changes with a sequence above this (the peer's acknowledged mark).
    pub after_seq: u64,
    /// Changes that came from the peer are skipped unless their sequence is at
    /// most this (see [`PeerState::resend_own_upto`]).
    pub resend_own_upto: u64,
    /// At most this many, in ascending sequence.
    pub limit: usize,
}

impl PendingQuery {
    /// The query for everything `peer` is owed, up to `limit` changes.
    pub fn for_peer(peer: &PeerState, limit: usize) -> Self {
        PendingQuery {
            peer: peer.id(),
            after_seq: peer.acked_seq,
            resend_own_upto: peer.resend_own_upto,
            limit,
        }
    }

    /// Whether a stored change matches.
    pub fn matches(&self, seq: u64, source: NodeId) -> bool {
        seq > self.after_seq && (source != self.peer || seq <= self.resend_own_upto)
    }
}

/// A child change waiting for its parent to arrive.
#[derive(Clone, Debug, PartialEq)]
pub struct ParkedChange {
    /// The child version.
    pub entity: Entity,
    /// The peer it came from.
    pub from: NodeId,
    /// The missing parent it waits for.
    pub waiting_for: EntityKey,
    /// When it arrived.
    pub arrived_at: Timestamp,
}

/// Operations inside one transaction. Reads see the transaction's own writes.
pub trait StoreTxn {
    /// Makes every change durable and visible, or fails and keeps none.
    fn commit(self) -> Result<(), StoreError>
    where
        Self: Sized;

    // --- node registry -------------------------------------------------

    /// This node's identity, if the store was initialized.
    fn local_node(&self) -> Result<Option<NodeInfo>, StoreError>;
    /// Records this node's identity: when the store is created, and again
    /// when its writer id moves on ([`NodeInfo::writer`]).
    fn set_local_node(&mut self, node: &NodeInfo) -> Result<(), StoreError>;
    /// One peer's state.
    fn peer(&self, id: NodeId) -> Result<Option<PeerState>, StoreError>;
    /// All peers, in id order.
    fn peers(&self) -> Result<Vec<PeerState>, StoreError>;
    /// Inserts or replaces a peer's state.
    fn put_peer(&mut self, peer: &PeerState) -> Result<(), StoreError>;

    // --- entities and the change registry ----------------------------

    /// The stored entity with its metadata.
    fn entity(&self, key: &EntityKey) -> Result<Option<StoredEntity>, StoreError>;
    /// Stores a version as the entity's current one and registers the change:
    /// assigns and returns the next sequence number, keeps `created_seq` of an
    /// existing entity (or sets it to the new sequence), and records `source`
    /// and `stored_at`. The version's [`Entity::clock`] is kept exactly as
    /// given and returned by later reads. Cost: O(1) in the number of peers.
    ///
    /// A store that also captures writes made outside the engine (plain SQL)
    /// must give each such write a clock too: the clock of the version it
    /// replaced with this node's entry raised to the write's `updated_at`.
    ///
    /// The version's [`Entity::field_stamps`] are kept exactly as given too
    /// (the engine sets them only for types merged per field). For such
    /// types, a captured write must be stamped as well: a field whose value
    /// it left as the last stored version had keeps that version's dot
    /// ([`crate::conflict::fields::field_dot`]); a field it changed is the
    /// write's own and is not listed.
    fn put_entity(
        &mut self,
        entity: &Entity,
        source: NodeId,
        stored_at: Timestamp,
    ) -> Result<u64, StoreError>;
    /// The highest sequence assigned so far (0 for an empty store).
    fn last_seq(&self) -> Result<u64, StoreError>;
    /// Changes matching `query`, ascending by sequence, at most `query.limit`.
    fn pending(&self, query: &PendingQuery) -> Result<Vec<StoredEntity>, StoreError>;
    /// How many changes match `query` (ignoring its limit).
    fn count_pending(&self, query: &PendingQuery) -> Result<u64, StoreError>;
    /// Hands the changes matching `query` to `visit` one at a time, ascending
    /// by sequence, at most `query.limit`, and stops as soon as `visit`
    /// returns [`ControlFlow::Break`]. The engine builds packets with it, so
    /// that a batch's byte limit bounds how much is loaded: a store should
    /// load each change only when it is about to be visited (in small chunks
    /// at most). The default loads them all first with
    /// [`StoreTxn::pending`]; stores with large registries override it.
    fn visit_pending(
        &self,
        query: &PendingQuery,
        visit: &mut dyn FnMut(StoredEntity) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        for stored in self.pending(query)? {
            if visit(stored).is_break() {
                break;
            }
        }
        Ok(())
    }
    /// How many changes match `query` with a sequence of at most `upto_seq`
    /// (ignoring its limit). The engine keeps progress totals up to date
    /// with it by counting only the changes between two marks, so a store
    /// should answer it from an index on the sequence in time proportional
    /// to the changes in the range. The default counts
    /// [`StoreTxn::visit_pending`].
    fn count_pending_upto(&self, query: &PendingQuery, upto_seq: u64) -> Result<u64, StoreError> {
        let mut count = 0u64;
        let query = PendingQuery {
            limit: usize::MAX,
            ..*query
        };
        self.visit_pending(&query, &mut |stored| {
            if stored.seq > upto_seq {
                return ControlFlow::Break(());
            }
            count += 1;
            ControlFlow::Continue(())
        })?;
        Ok(count)
    }
    /// Entities of one type with ids above `after`, ascending by id, at most
    /// `limit` (tombstones included).
    fn entities(
        &self,
        entity_type: &str,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<StoredEntity>, StoreError>;

    /// The entities of `entity_type` (tombstones included) whose reference
    /// field `field` names `parent`: a parent's children, which the hub's
    /// orphan rule looks for when the parent is deleted. The default reads
    /// every entity of the type in pages; a store that can look children up
    /// by the reference (an index, a foreign-key column) should.
    fn referencing(
        &self,
        entity_type: &str,
        field: &str,
        parent: Uuid,
    ) -> Result<Vec<StoredEntity>, StoreError> {
        referencing_by_scan(self, entity_type, field, parent)
    }

    // --- conflicts -----------------------------------------------------

    /// Appends to the object version history.
    fn add_version(&mut self, record: &VersionRecord) -> Result<(), StoreError>;
    /// Version history of one entity, oldest first.
    fn versions(&self, key: &EntityKey) -> Result<Vec<VersionRecord>, StoreError>;
    /// Appends to the audit log.
    fn add_audit(&mut self, record: &AuditRecord) -> Result<(), StoreError>;
    /// The audit log, oldest first, skipping `offset` records, at most `limit`.
    fn audit_log(&self, offset: usize, limit: usize) -> Result<Vec<AuditRecord>, StoreError>;
    /// Adds an open manual conflict.
    fn put_open_conflict(&mut self, conflict: &OpenConflict) -> Result<(), StoreError>;
    /// All open manual conflicts, oldest first.
    fn open_conflicts(&self) -> Result<Vec<OpenConflict>, StoreError>;
    /// The open manual conflicts about one entity, oldest first. The default
    /// filters [`StoreTxn::open_conflicts`]; stores with many open conflicts
    /// should answer it from an index.
    fn open_conflicts_for(&self, key: &EntityKey) -> Result<Vec<OpenConflict>, StoreError> {
        let mut all = self.open_conflicts()?;
        all.retain(|c| &c.key == key);
        Ok(all)
    }
    /// Removes and returns an open conflict.
    fn take_open_conflict(&mut self, id: Uuid) -> Result<Option<OpenConflict>, StoreError>;

    // --- parked children -----------------------------------------------

    /// Parks a child until its parent arrives; replaces any change already
    /// parked for the same child.
    fn park(&mut self, parked: &ParkedChange) -> Result<(), StoreError>;
    /// Removes and returns the changes waiting for `parent`.
    fn take_parked(&mut self, parent: &EntityKey) -> Result<Vec<ParkedChange>, StoreError>;
    /// Drops the parked change for `child`, if any (a newer version arrived).
    fn unpark(&mut self, child: &EntityKey) -> Result<(), StoreError>;
    /// All parked changes.
    fn parked(&self) -> Result<Vec<ParkedChange>, StoreError>;
    /// The change parked for `child`, if any. The default scans
    /// [`StoreTxn::parked`]; stores override it with a keyed read.
    fn parked_change(&self, child: &EntityKey) -> Result<Option<ParkedChange>, StoreError> {
        Ok(self.parked()?.into_iter().find(|p| &p.entity.key == child))
    }

    // --- security ------------------------------------------------------

    /// Appends a security event.
    fn add_security_event(&mut self, event: &SecurityEvent) -> Result<(), StoreError>;
    /// All security events, oldest first.
    fn security_events(&self) -> Result<Vec<SecurityEvent>, StoreError>;

    // --- rejected changes (quarantine) ------------------------------------

    /// Stores a rejected change, replacing the record with the same id.
    fn put_rejected(&mut self, rejected: &RejectedChange) -> Result<(), StoreError>;
    /// Every rejected change, oldest first (by first `put_rejected`).
    fn rejected(&self) -> Result<Vec<RejectedChange>, StoreError>;
    /// Removes and returns a rejected change.
    fn take_rejected(&mut self, id: Uuid) -> Result<Option<RejectedChange>, StoreError>;

    // --- driver metadata -------------------------------------------------

    /// The value a driver stored under `key` with [`StoreTxn::put_meta`], if
    /// any. Drivers keep their own durable state here (the hub's token
    /// signing keys, a pair's file key) so that it commits with the rest.
    /// Keys are opaque to the store; drivers namespace them (`"http/…"`).
    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Stores `value` under `key`, or removes the key when `value` is `None`.
    fn put_meta(&mut self, key: &str, value: Option<&[u8]>) -> Result<(), StoreError>;
    /// Every key that starts with `prefix`, in key order, with its value.
    fn meta_with_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
}

/// [`StoreTxn::referencing`] by reading every entity of `entity_type` in
/// pages: the default, and the fallback of stores that can look children up
/// only for some fields.
pub fn referencing_by_scan<T: StoreTxn + ?Sized>(
    txn: &T,
    entity_type: &str,
    field: &str,
    parent: Uuid,
) -> Result<Vec<StoredEntity>, StoreError> {
    const PAGE: usize = 1_000;
    let mut found = Vec::new();
    let mut after = None;
    loop {
        let page = txn.entities(entity_type, after, PAGE)?;
        after = page.last().map(|c| c.entity.key.id);
        let full = page.len() == PAGE;
        found.extend(
            page.into_iter()
                .filter(|c| c.entity.fields.get(field).and_then(|v| v.as_uuid()) == Some(parent)),
        );
        if !full {
            return Ok(found);
        }
    }
}
