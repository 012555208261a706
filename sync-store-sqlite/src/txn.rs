//! Store transactions: one SQLite transaction each (`BEGIN IMMEDIATE`,
//! `COMMIT`, `ROLLBACK` on drop), with the capture log folded in at the start
//! and the store's own echoes dropped before commit.

use std::cell::{Cell, RefCell};
use std::ops::ControlFlow;
use std::sync::Arc;

use rusqlite::Connection;
use sync_core::{
    AuditRecord, Entity, EntityKey, NodeId, NodeInfo, OpenConflict, ParkedChange, PeerState,
    PendingQuery, Record, RejectedChange, SecurityEvent, Stamp, StoreError, StoreTxn, StoredEntity,
    Timestamp, Uuid, Value, VersionRecord, VersionVector,
};

use crate::blob;
use crate::error::poisons;
use crate::registry::{self, Meta};
use crate::rows::{self, Written};
use crate::table::TrackedTable;
use crate::{SqliteStore, TypeEntry, blocked, nodes, records, stamps};
use sync_core::conflict::fields;

/// What `_sync_changes.doc` holds for an entity.
pub(crate) enum Doc {
    /// Fields without a column, kept beside the row.
    Extras(Record),
    /// The whole version; the row (if any) is not authoritative.
    Whole(Entity),
}

const DOC_EXTRAS: u8 = 1;
const DOC_WHOLE: u8 = 2;

pub(crate) fn encode_doc(doc: &Doc) -> Vec<u8> {
    let (tag, body) = match doc {
        Doc::Extras(record) => (DOC_EXTRAS, blob::encode_record(record)),
        Doc::Whole(entity) => (DOC_WHOLE, blob::encode_entity(entity)),
    };
    let mut out = Vec::with_capacity(body.len() + 1);
    out.push(tag);
    out.extend(body);
    out
}

pub(crate) fn decode_doc(bytes: &[u8]) -> Result<Doc, StoreError> {
    match bytes.split_first() {
        Some((&DOC_EXTRAS, rest)) => blob::decode_record(rest).map(Doc::Extras),
        Some((&DOC_WHOLE, rest)) => blob::decode_entity(rest).map(Doc::Whole),
        _ => Err(StoreError::Corrupt {
            detail: "an entity document in _sync_changes has an unknown tag".into(),
        }),
    }
}

/// A transaction on a [`SqliteStore`]. Dropping it without committing rolls
/// back every write made through it.
pub struct SqliteTxn<'a> {
    store: &'a mut SqliteStore,
    finished: bool,
    wrote: bool,
    applying: bool,
    /// The last sequence before the store's first write to a tracked table
    /// in this transaction (see [`registry::settle_echoes`]).
    applied_after: u64,
    local: Cell<Option<NodeId>>,
    last_seq: Cell<Option<u64>>,
    /// The registry row last read or written: the engine reads an entity
    /// and then writes it, so the write need not read it again.
    last_meta: RefCell<Option<(i64, Uuid, Option<Meta>)>>,
    /// Whether `_sync_parked` is known to be empty (`None`: not known).
    parked_empty: Cell<Option<bool>>,
    /// Versions this transaction wrote whose row waits for a UNIQUE value,
    /// with the reason to give should it still wait at commit.
    blocked_here: Vec<(i64, EntityKey, String)>,
}

impl<'a> SqliteTxn<'a> {
    pub(crate) fn begin(store: &'a mut SqliteStore) -> Result<Self, StoreError> {
        store.refresh_types()?;
        store
            .conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| StoreError::backend("starting a transaction", e))?;
        let txn = SqliteTxn {
            store,
            finished: false,
            wrote: false,
            applying: false,
            applied_after: 0,
            local: Cell::new(None),
            last_seq: Cell::new(None),
            last_meta: RefCell::new(None),
            parked_empty: Cell::new(None),
            blocked_here: Vec::new(),
        };
        if let Err(e) = registry::fold(&txn.store.conn, &txn.store.types.logged()) {
            // Dropping `txn` rolls back.
            return Err(txn.store.failed("registering captured changes", e));
        }
        Ok(txn)
    }

    fn conn(&self) -> &Connection {
        &self.store.conn
    }

    /// This node's id (NULL sources and origins in the registry stand for
    /// it), or nil before the store has a local node.
    fn local_id(&self) -> Result<NodeId, StoreError> {
        if let Some(id) = self.local.get() {
            return Ok(id);
        }
        let id = nodes::local_node(self.conn())?.map_or(NodeId::NIL, |n| n.id);
        self.local.set(Some(id));
        Ok(id)
    }

    /// Runs a write, refusing it on a poisoned store and poisoning the store
    /// when the failure leaves the database in doubt.
    fn write<T>(
        &mut self,
        context: &str,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        self.store.check_poison()?;
        self.wrote = true;
        f(&self.store.conn).map_err(|e| self.store.failed(context, e))
    }

    /// Like [`Self::write`] for helpers that already return `StoreError`.
    fn write_with<T>(
        &mut self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.store.check_poison()?;
        self.wrote = true;
        f(&self.store.conn).inspect_err(|e| self.store.poison_if_backend(e))
    }

    /// The registry row of an entity, from the one-entry cache if it holds it.
    fn meta(&self, type_id: i64, id: Uuid) -> Result<Option<Meta>, StoreError> {
        if let Some((t, i, meta)) = &*self.last_meta.borrow() {
            if *t == type_id && *i == id {
                return Ok(meta.clone());
            }
        }
        let meta = registry::get(self.conn(), type_id, id)?;
        *self.last_meta.borrow_mut() = Some((type_id, id, meta.clone()));
        Ok(meta)
    }

    /// Whether anything is parked, remembered until the next change to it.
    fn any_parked(&self) -> Result<bool, StoreError> {
        if let Some(empty) = self.parked_empty.get() {
            return Ok(!empty);
        }
        let any = records::any_parked(self.conn())?;
        self.parked_empty.set(Some(!any));
        Ok(any)
    }

    fn next_seq(&self) -> Result<u64, StoreError> {
        let last = match self.last_seq.get() {
            Some(last) => last,
            None => registry::last_seq(self.conn())?,
        };
        Ok(last + 1)
    }

    fn set_applying(&mut self) -> Result<(), StoreError> {
        if !self.applying {
            self.applied_after = self.next_seq()? - 1;
            self.write("marking the store's own writes", |c| {
                c.prepare_cached("INSERT OR IGNORE INTO _sync_applying(flag) VALUES (1)")?
                    .execute([])
                    .map(drop)
            })?;
            self.applying = true;
        }
        Ok(())
    }

    /// Assembles an entity from its registry row (and its table row).
    fn load(
        &self,
        ty: &TypeEntry,
        id: Uuid,
        meta: Meta,
        for_sending: bool,
    ) -> Result<StoredEntity, StoreError> {
        let local = self.local_id()?;
        let doc = meta.doc.as_deref().map(decode_doc).transpose()?;
        let mut meta = meta;
        let origin = meta.origin.unwrap_or(local);
        let from_row = !matches!(doc, Some(Doc::Whole(_)));
        let entity = match (&ty.table, doc) {
            (_, Some(Doc::Whole(entity))) => entity,
            (None, _) => {
                return Err(StoreError::Corrupt {
                    detail: format!("entity {} {id} has no stored version", ty.name),
                });
            }
            (Some(table), extras) => {
                let extras = match extras {
                    Some(Doc::Extras(r)) => r,
                    _ => Record::new(),
                };
                match self.load_row(table, id, origin, extras, for_sending)? {
                    Some(entity) => entity,
                    None => {
                        let captured = meta.deleted && meta.deleted_at.is_some();
                        if !captured {
                            // Gone without a captured deletion: this node's
                            // own deletion, now, in its clock too.
                            meta.origin = None;
                        }
                        self.removed(ty, id, meta.origin.unwrap_or(local), &meta)?
                    }
                }
            }
        };
        let stored_at = meta
            .stored_at
            .map_or(entity.updated_at, Timestamp::from_micros);
        let clock = clock_of(&meta, ty, &entity, local)?;
        let mut entity = Entity { clock, ..entity };
        if let (Some(table), true) = (&ty.table, from_row) {
            let captured = meta.origin.is_none();
            entity.field_stamps =
                stamps::of_row(self.conn(), ty.id, &table.entity_type, &entity, captured)?;
        }
        Ok(StoredEntity {
            entity,
            seq: meta.seq,
            created_seq: meta.created_seq,
            source: meta.source.unwrap_or(local),
            stored_at,
        })
    }

    /// The tombstone of a row removed with SQL (`DELETE`, `REPLACE`, a
    /// cascade): no values but [`crate::REMOVED_FIELD`], at the deletion
    /// time the capture noted. A row found gone without a captured deletion
    /// (its triggers were dropped meanwhile) is given a deletion time now and
    /// travels as a deletion like any other; the registry is marked so the
    /// `sync_changes` view calls it a deletion.
    fn removed(
        &self,
        ty: &TypeEntry,
        id: Uuid,
        origin: NodeId,
        meta: &Meta,
    ) -> Result<Entity, StoreError> {
        let at = match meta.deleted_at {
            Some(at) if meta.deleted => at,
            _ => registry::heal_missing_row(self.conn(), ty.id, id)
                .map_err(|e| StoreError::backend("recording a deletion the triggers missed", e))?,
        };
        // The clock is filled in by `load` from the registry row.
        Ok(Entity::new_version(
            EntityKey::new(ty.name.clone(), id),
            Timestamp::from_micros(at),
            true,
            origin,
            Record::from([(crate::REMOVED_FIELD.to_owned(), Value::Bool(true))]),
        ))
    }

    /// The entity as its row holds it (`None`: there is no row). A field
    /// kept beside the row fills a column only while that column is NULL
    /// (a column added after the value arrived).
    fn load_row(
        &self,
        table: &TrackedTable,
        id: Uuid,
        origin: NodeId,
        extras: Record,
        for_sending: bool,
    ) -> Result<Option<Entity>, StoreError> {
        let Some(row) = rows::read(self.conn(), table, id)? else {
            return Ok(None);
        };
        let mut fields = row.fields;
        for (name, value) in extras {
            if name != crate::REMOVED_FIELD {
                fields.entry(name).or_insert(value);
            }
        }
        if for_sending {
            for column in table.columns.iter().filter(|c| c.excluded) {
                fields.remove(&column.name);
            }
        }
        // The clock is filled in by `load` from the registry row.
        Ok(Some(Entity::new_version(
            EntityKey::new(table.type_name.clone(), id),
            row.updated_at,
            row.is_deleted,
            origin,
            fields,
        )))
    }

    fn load_entries(
        &self,
        entries: Vec<registry::Entry>,
        for_sending: bool,
    ) -> Result<Vec<StoredEntity>, StoreError> {
        entries
            .into_iter()
            .map(|e| {
                let ty = self.store.types.by_id(e.type_id)?;
                self.load(&ty, e.id, e.meta, for_sending)
            })
            .collect()
    }

    fn finish(&mut self, sql: &str) -> rusqlite::Result<()> {
        self.finished = true;
        if self.store.conn.is_autocommit() {
            // SQLite already ended the transaction (after some I/O errors).
            return Ok(());
        }
        self.store.conn.execute_batch(sql)
    }
}

impl Drop for SqliteTxn<'_> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        // A transaction that wrote nothing through the API still keeps the
        // fold of the capture log, so it is not redone on every read.
        let end = if self.wrote || self.applying {
            "ROLLBACK"
        } else {
            "COMMIT"
        };
        if let Err(e) = self.finish(end) {
            if end == "COMMIT" && self.finish("ROLLBACK").is_ok() && !poisons(&e) {
                return;
            }
            self.store
                .poison(format!("ending a transaction failed: {e}"));
        }
        if self.wrote {
            self.store.types.stale = true;
        }
    }
}

impl StoreTxn for SqliteTxn<'_> {
    fn commit(mut self) -> Result<(), StoreError> {
        if let Err(e) = self.store.check_poison() {
            let _ = self.finish("ROLLBACK");
            return Err(e);
        }
        if self.applying {
            if let Err(e) = blocked::retry(&self.store.conn, &self.store.types) {
                self.store.poison_if_backend(&e);
                return Err(e);
            }
            // A version written now that still cannot have its row is
            // refused, whole transaction rolled back (on drop): the engine
            // applies the rest without it.
            for (type_id, key, reason) in std::mem::take(&mut self.blocked_here) {
                match blocked::is_noted(&self.store.conn, type_id, key.id) {
                    Ok(false) => {}
                    Ok(true) => return Err(StoreError::Refused { key, reason }),
                    Err(e) => {
                        self.store.poison_if_backend(&e);
                        return Err(e);
                    }
                }
            }
            let start = self.applied_after;
            let logged = self.store.types.logged();
            let cleared =
                registry::settle_echoes(&self.store.conn, start, &logged).and_then(|()| {
                    self.store
                        .conn
                        .prepare_cached("DELETE FROM _sync_applying")?
                        .execute([])
                        .map(drop)
                });
            if let Err(e) = cleared {
                return Err(self
                    .store
                    .failed("registering side effects and clearing the apply flag", e));
            }
        }
        match self.finish("COMMIT") {
            Ok(()) => Ok(()),
            Err(e) => {
                let constraint = !poisons(&e);
                let rolled_back = self.finish("ROLLBACK").is_ok();
                self.store.types.stale = true;
                if !(constraint && rolled_back) {
                    self.store.poison(format!("commit failed: {e}"));
                }
                Err(StoreError::backend("committing a transaction", e))
            }
        }
    }

    fn local_node(&self) -> Result<Option<NodeInfo>, StoreError> {
        nodes::local_node(self.conn())
    }

    fn set_local_node(&mut self, node: &NodeInfo) -> Result<(), StoreError> {
        self.write("recording the local node", |c| {
            nodes::set_local_node(c, node)
        })?;
        self.local.set(Some(node.id));
        Ok(())
    }

    fn peer(&self, id: NodeId) -> Result<Option<PeerState>, StoreError> {
        nodes::peer(self.conn(), id)
    }

    fn peers(&self) -> Result<Vec<PeerState>, StoreError> {
        nodes::peers(self.conn())
    }

    fn put_peer(&mut self, peer: &PeerState) -> Result<(), StoreError> {
        self.write("storing a peer", |c| nodes::put_peer(c, peer))
    }

    fn entity(&self, key: &EntityKey) -> Result<Option<StoredEntity>, StoreError> {
        let Some(ty) = self.store.types.by_name(&key.entity_type) else {
            return Ok(None);
        };
        let Some(meta) = self.meta(ty.id, key.id)? else {
            return Ok(None);
        };
        self.load(&ty, key.id, meta, false).map(Some)
    }

    fn put_entity(
        &mut self,
        entity: &Entity,
        source: NodeId,
        stored_at: Timestamp,
    ) -> Result<u64, StoreError> {
        self.store.check_poison()?;
        self.wrote = true;
        let ty = self.store.type_for_write(&entity.key.entity_type)?;
        let id = entity.key.id;
        let seq = self.next_seq()?;
        let previous = self.meta(ty.id, id)?;
        *self.last_meta.borrow_mut() = None;
        let doc = match &ty.table {
            None => Some(Doc::Whole(entity.clone())),
            Some(table) => {
                self.set_applying()?;
                if rows::is_removal(entity) {
                    self.keep_cascaded(table, &entity.key, entity.origin, stored_at, 0)?;
                }
                self.write_row(ty.id, table, entity, previous.is_some())?
            }
        };
        let meta = Meta {
            seq,
            created_seq: previous.map_or(seq, |p| p.created_seq),
            source: Some(source),
            origin: Some(entity.origin),
            deleted: entity.is_deleted,
            deleted_at: None,
            stored_at: Some(stored_at.as_micros()),
            doc: doc.as_ref().map(encode_doc),
            clock: Some(entity.clock.to_bytes()),
        };
        self.write("registering a change", |c| {
            registry::put(c, ty.id, id, &meta)
        })?;
        if let Some(table) = ty
            .table
            .as_ref()
            .filter(|t| fields::keeps_stamps(&t.entity_type))
        {
            self.write("recording field stamps", |c| {
                stamps::save(c, ty.id, &table.entity_type, entity)
            })?;
        }
        self.last_seq.set(Some(seq));
        Ok(seq)
    }

    fn last_seq(&self) -> Result<u64, StoreError> {
        match self.last_seq.get() {
            Some(seq) => Ok(seq),
            None => registry::last_seq(self.conn()),
        }
    }

    fn pending(&self, query: &PendingQuery) -> Result<Vec<StoredEntity>, StoreError> {
        let entries = registry::pending(self.conn(), query, self.local_id()?)?;
        self.load_entries(entries, true)
    }

    fn count_pending(&self, query: &PendingQuery) -> Result<u64, StoreError> {
        registry::count_pending(self.conn(), query, self.local_id()?)
    }

    fn visit_pending(
        &self,
        query: &PendingQuery,
        visit: &mut dyn FnMut(StoredEntity) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        // Registry rows are read in small chunks and each entity is loaded
        // only when it is visited, so a packet's byte limit bounds memory
        // whatever the size of the backlog.
        const CHUNK: usize = 64;
        let local = self.local_id()?;
        let mut left = query.limit;
        let mut next = PendingQuery {
            limit: CHUNK.min(left),
            ..*query
        };
        while left > 0 {
            let entries = registry::pending(self.conn(), &next, local)?;
            let last = entries.len() < next.limit;
            for entry in entries {
                next.after_seq = entry.meta.seq;
                let ty = self.store.types.by_id(entry.type_id)?;
                let stored = self.load(&ty, entry.id, entry.meta, true)?;
                left -= 1;
                if visit(stored).is_break() {
                    return Ok(());
                }
            }
            if last {
                break;
            }
            next.limit = CHUNK.min(left);
        }
        Ok(())
    }

    fn count_pending_upto(&self, query: &PendingQuery, upto_seq: u64) -> Result<u64, StoreError> {
        registry::count_pending_upto(self.conn(), query, self.local_id()?, upto_seq)
    }

    fn entities(
        &self,
        entity_type: &str,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<StoredEntity>, StoreError> {
        let Some(ty) = self.store.types.by_name(entity_type) else {
            return Ok(Vec::new());
        };
        let entries = registry::by_type(self.conn(), ty.id, after, limit)?;
        self.load_entries(entries, false)
    }

    fn referencing(
        &self,
        entity_type: &str,
        field: &str,
        parent: Uuid,
    ) -> Result<Vec<StoredEntity>, StoreError> {
        let Some(ty) = self.store.types.by_name(entity_type) else {
            return Ok(Vec::new());
        };
        let keys = match &ty.table {
            Some(table) => crate::rows::referencing(self.conn(), table, field, parent)?,
            None => None,
        };
        let Some(keys) = keys else {
            // Not a foreign-key column: read the type's entities.
            return sync_core::store::referencing_by_scan(self, entity_type, field, parent);
        };
        let mut found = Vec::with_capacity(keys.len());
        for id in keys {
            if let Some(child) = self.entity(&EntityKey::new(entity_type, id))? {
                found.push(child);
            }
        }
        Ok(found)
    }

    fn add_version(&mut self, record: &VersionRecord) -> Result<(), StoreError> {
        self.write("adding to the version history", |c| {
            records::add_version(c, record)
        })
    }

    fn versions(&self, key: &EntityKey) -> Result<Vec<VersionRecord>, StoreError> {
        records::versions(self.conn(), key)
    }

    fn add_audit(&mut self, record: &AuditRecord) -> Result<(), StoreError> {
        self.write("adding to the audit log", |c| records::add_audit(c, record))
    }

    fn audit_log(&self, offset: usize, limit: usize) -> Result<Vec<AuditRecord>, StoreError> {
        records::audit_log(self.conn(), offset, limit)
    }

    fn put_open_conflict(&mut self, conflict: &OpenConflict) -> Result<(), StoreError> {
        self.write("adding an open conflict", |c| {
            records::put_open_conflict(c, conflict)
        })
    }

    fn open_conflicts(&self) -> Result<Vec<OpenConflict>, StoreError> {
        records::open_conflicts(self.conn())
    }

    fn take_open_conflict(&mut self, id: Uuid) -> Result<Option<OpenConflict>, StoreError> {
        let Some((position, conflict)) = records::find_open_conflict(self.conn(), id)? else {
            return Ok(None);
        };
        self.write("removing an open conflict", |c| {
            records::delete_open_conflict(c, position)
        })?;
        Ok(Some(conflict))
    }

    fn park(&mut self, parked: &ParkedChange) -> Result<(), StoreError> {
        self.parked_empty.set(Some(false));
        self.write("parking a change", |c| records::park(c, parked))
    }

    fn take_parked(&mut self, parent: &EntityKey) -> Result<Vec<ParkedChange>, StoreError> {
        if !self.any_parked()? {
            return Ok(Vec::new());
        }
        let taken = records::parked_for(self.conn(), parent)?;
        if !taken.is_empty() {
            self.parked_empty.set(None);
            self.write("releasing parked changes", |c| {
                records::delete_parked_for(c, parent)
            })?;
        }
        Ok(taken)
    }

    fn unpark(&mut self, child: &EntityKey) -> Result<(), StoreError> {
        if !self.any_parked()? {
            return Ok(());
        }
        self.parked_empty.set(None);
        self.write("dropping a parked change", |c| records::unpark(c, child))
            .map(drop)
    }

    fn parked(&self) -> Result<Vec<ParkedChange>, StoreError> {
        records::parked(self.conn())
    }

    fn parked_change(&self, child: &EntityKey) -> Result<Option<ParkedChange>, StoreError> {
        if !self.any_parked()? {
            return Ok(None);
        }
        records::parked_change(self.conn(), child)
    }

    fn add_security_event(&mut self, event: &SecurityEvent) -> Result<(), StoreError> {
        self.write("recording a security event", |c| {
            records::add_security_event(c, event)
        })
    }

    fn security_events(&self) -> Result<Vec<SecurityEvent>, StoreError> {
        records::security_events(self.conn())
    }

    fn put_rejected(&mut self, rejected: &RejectedChange) -> Result<(), StoreError> {
        self.write("recording a rejected change", |c| {
            records::put_rejected(c, rejected)
        })
    }

    fn rejected(&self) -> Result<Vec<RejectedChange>, StoreError> {
        records::rejected(self.conn())
    }

    fn take_rejected(&mut self, id: Uuid) -> Result<Option<RejectedChange>, StoreError> {
        let found = records::rejected(self.conn())?
            .into_iter()
            .find(|r| r.id == id);
        if found.is_some() {
            self.write("removing a rejected change", |c| {
                records::delete_rejected(c, id)
            })?;
        }
        Ok(found)
    }

    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        records::meta(self.conn(), key)
    }

    fn put_meta(&mut self, key: &str, value: Option<&[u8]>) -> Result<(), StoreError> {
        self.write("writing driver metadata", |c| {
            records::put_meta(c, key, value)
        })
    }

    fn meta_with_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        records::meta_with_prefix(self.conn(), prefix)
    }
}

/// How deep [`SqliteTxn::keep_cascaded`] follows cascades (children of
/// children...).
const CASCADE_DEPTH: usize = 8;

impl SqliteTxn<'_> {
    /// Before a peer's removal of the row `id` of `table` is applied: the
    /// live rows of tracked tables that an `ON DELETE CASCADE` foreign key
    /// will remove with it go to the version history (resolution
    /// `cascade-deleted`), so that if the parent's deletion later loses to
    /// an update, the children's last versions are on record. Each is also
    /// linked under its parent as deleted with it by `deleted_by` (see
    /// [`sync_core::cascade`]), so the engine writes it back if the
    /// parent's deletion loses.
    fn keep_cascaded(
        &mut self,
        table: &TrackedTable,
        parent: &EntityKey,
        deleted_by: NodeId,
        arrival_time: Timestamp,
        depth: usize,
    ) -> Result<(), StoreError> {
        let id = parent.id;
        if depth >= CASCADE_DEPTH {
            return Ok(());
        }
        let mut children: Vec<(TypeEntry, Arc<TrackedTable>, String)> = Vec::new();
        for (ty, child) in self.store.types.tables() {
            for column in &child.columns {
                if let crate::table::ColumnKind::ForeignKey(fk) = &column.kind {
                    if fk.cascades && fk.parent_table == table.table {
                        let sql = crate::cascade::children_sql(&child, &column.name, fk);
                        children.push((ty.clone(), child.clone(), sql));
                    }
                }
            }
        }
        for (ty, child, sql) in children {
            let keys = crate::cascade::child_keys(self.conn(), &sql, id)?;
            for key in keys {
                let Some(meta) = registry::get(self.conn(), ty.id, key)? else {
                    continue;
                };
                let version = self.load(&ty, key, meta, false)?.entity;
                let record = VersionRecord {
                    id: crate::cascade::record_id(&version),
                    key: version.key.clone(),
                    source_node: version.origin,
                    arrival_time,
                    data: version,
                    resolution: "cascade-deleted: its parent was removed by a peer".into(),
                };
                self.write("keeping a cascaded child in the version history", |c| {
                    records::add_version(c, &record)
                })?;
                let link = sync_core::cascade::link_key(parent, &record.key);
                let value = sync_core::cascade::encode_link(deleted_by, &record.data);
                self.put_meta(&link, Some(&value))?;
                self.keep_cascaded(&child, &record.key, deleted_by, arrival_time, depth + 1)?;
            }
        }
        Ok(())
    }

    /// Writes a version into its tracked table; returns the document to keep
    /// in the registry beside it.
    fn write_row(
        &mut self,
        type_id: i64,
        table: &Arc<TrackedTable>,
        entity: &Entity,
        known: bool,
    ) -> Result<Option<Doc>, StoreError> {
        if entity.is_deleted && (rows::is_removal(entity) || entity.fields.is_empty()) {
            self.write_with(|c| rows::remove_or_mark(c, table, entity))?;
            return Ok(Some(Doc::Whole(entity.clone())));
        }
        match self.write_with(|c| rows::write_live(c, table, entity, known))? {
            Written::Row { extras } if extras.is_empty() => Ok(None),
            Written::Row { extras } => Ok(Some(Doc::Extras(extras))),
            Written::ParentRowMissing | Written::Deferred => {
                // Retried at commit: the parent's row may come later in
                // the same transaction (records referencing each other).
                self.write("noting a row that waits for its parent's row", |c| {
                    blocked::note(c, type_id, entity.key.id)
                })?;
                Ok(Some(Doc::Whole(entity.clone())))
            }
            Written::Blocked { reason } => {
                self.write("noting a row that waits for a UNIQUE value", |c| {
                    blocked::note(c, type_id, entity.key.id)
                })?;
                self.blocked_here
                    .push((type_id, entity.key.clone(), reason));
                Ok(Some(Doc::Whole(entity.clone())))
            }
        }
    }
}

/// The clock of a registry row's version. A write captured from SQL follows
/// the version it replaced: that version's clock with this node's entry
/// raised to the write's time (see `registry::Meta::clock`).
fn clock_of(
    meta: &Meta,
    ty: &TypeEntry,
    entity: &Entity,
    local: NodeId,
) -> Result<VersionVector, StoreError> {
    let stored = meta
        .clock
        .as_deref()
        .map(|bytes| {
            VersionVector::from_bytes(bytes).ok_or_else(|| StoreError::Corrupt {
                detail: format!(
                    "the clock of {} in the change registry is damaged",
                    entity.key
                ),
            })
        })
        .transpose()?;
    Ok(match (meta.origin, stored) {
        (Some(_), Some(clock)) => clock,
        // A row from before clocks: it includes its own write only.
        (Some(origin), None) => VersionVector::single(origin, entity.updated_at),
        (None, stored) => {
            // The tag ignores excluded columns: the row reads the same
            // whether it is loaded for sending or not.
            let tag = match &ty.table {
                Some(table) => table.entity_type.write_tag(entity),
                None => entity.write_tag(),
            };
            let mut clock = stored.unwrap_or_default();
            clock.observe(
                local,
                Stamp {
                    at: entity.updated_at,
                    tag,
                },
            );
            clock
        }
    })
}
