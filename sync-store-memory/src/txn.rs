//! Transactions with an undo log.

use std::ops::ControlFlow;

use sync_core::{
    AuditRecord, Entity, EntityKey, NodeId, NodeInfo, OpenConflict, ParkedChange, PeerState,
    PendingQuery, RejectedChange, SecurityEvent, StoreError, StoreTxn, StoredEntity, Timestamp,
    Uuid, VersionRecord,
};

use crate::State;

/// A transaction on a [`crate::MemoryStore`]. Dropping it uncommitted rolls
/// back every write.
pub struct MemoryTxn<'a> {
    state: &'a mut State,
    undo: Vec<Undo>,
}

/// How to take back one write.
enum Undo {
    Local(Option<NodeInfo>),
    Peer(NodeId, Option<PeerState>),
    Entity {
        key: EntityKey,
        previous: Option<StoredEntity>,
        new_seq: u64,
        last_seq: u64,
    },
    VersionAdded,
    AuditAdded,
    SecurityAdded,
    ConflictAdded,
    ConflictRemoved(usize, OpenConflict),
    Parked(EntityKey, Option<ParkedChange>),
    Meta(String, Option<Vec<u8>>),
    Rejected(Uuid, Option<RejectedChange>),
    RejectedTaken(usize, RejectedChange),
}

impl<'a> MemoryTxn<'a> {
    pub(crate) fn new(state: &'a mut State) -> Self {
        MemoryTxn {
            state,
            undo: Vec::new(),
        }
    }

    fn rollback_one(&mut self, undo: Undo) {
        let s = &mut *self.state;
        match undo {
            Undo::Local(previous) => s.local = previous,
            Undo::Peer(id, previous) => restore(&mut s.peers, id, previous),
            Undo::Entity {
                key,
                previous,
                new_seq,
                last_seq,
            } => {
                s.by_seq.remove(&new_seq);
                if let Some(p) = &previous {
                    s.by_seq.insert(p.seq, key.clone());
                }
                restore(&mut s.entities, key, previous);
                s.last_seq = last_seq;
            }
            Undo::VersionAdded => drop(s.versions.pop()),
            Undo::AuditAdded => drop(s.audit.pop()),
            Undo::SecurityAdded => drop(s.security.pop()),
            Undo::ConflictAdded => drop(s.conflicts.pop()),
            Undo::ConflictRemoved(index, conflict) => s.conflicts.insert(index, conflict),
            Undo::Parked(key, previous) => restore(&mut s.parked, key, previous),
            Undo::Meta(key, previous) => restore(&mut s.meta, key, previous),
            Undo::Rejected(id, previous) => match previous {
                Some(previous) => match s.rejected.iter_mut().find(|r| r.id == id) {
                    Some(slot) => *slot = previous,
                    None => s.rejected.push(previous),
                },
                None => s.rejected.retain(|r| r.id != id),
            },
            Undo::RejectedTaken(index, taken) => {
                let index = index.min(s.rejected.len());
                s.rejected.insert(index, taken);
            }
        }
    }

    fn set_parked(&mut self, key: EntityKey, value: Option<ParkedChange>) {
        let previous = match value {
            Some(v) => self.state.parked.insert(key.clone(), v),
            None => self.state.parked.remove(&key),
        };
        self.undo.push(Undo::Parked(key, previous));
    }
}

fn restore<K: Ord, V>(map: &mut std::collections::BTreeMap<K, V>, key: K, previous: Option<V>) {
    match previous {
        Some(v) => map.insert(key, v),
        None => map.remove(&key),
    };
}

impl Drop for MemoryTxn<'_> {
    fn drop(&mut self) {
        while let Some(undo) = self.undo.pop() {
            self.rollback_one(undo);
        }
    }
}

impl StoreTxn for MemoryTxn<'_> {
    fn commit(mut self) -> Result<(), StoreError> {
        self.undo.clear();
        Ok(())
    }

    fn local_node(&self) -> Result<Option<NodeInfo>, StoreError> {
        Ok(self.state.local.clone())
    }

    fn set_local_node(&mut self, node: &NodeInfo) -> Result<(), StoreError> {
        let previous = self.state.local.replace(node.clone());
        self.undo.push(Undo::Local(previous));
        Ok(())
    }

    fn peer(&self, id: NodeId) -> Result<Option<PeerState>, StoreError> {
        Ok(self.state.peers.get(&id).cloned())
    }

    fn peers(&self) -> Result<Vec<PeerState>, StoreError> {
        Ok(self.state.peers.values().cloned().collect())
    }

    fn put_peer(&mut self, peer: &PeerState) -> Result<(), StoreError> {
        let previous = self.state.peers.insert(peer.id(), peer.clone());
        self.undo.push(Undo::Peer(peer.id(), previous));
        Ok(())
    }

    fn entity(&self, key: &EntityKey) -> Result<Option<StoredEntity>, StoreError> {
        Ok(self.state.entities.get(key).cloned())
    }

    fn put_entity(
        &mut self,
        entity: &Entity,
        source: NodeId,
        stored_at: Timestamp,
    ) -> Result<u64, StoreError> {
        let s = &mut *self.state;
        let last_seq = s.last_seq;
        let seq = last_seq + 1;
        let previous = s.entities.get(&entity.key).cloned();
        if let Some(p) = &previous {
            s.by_seq.remove(&p.seq);
        }
        let created_seq = previous.as_ref().map_or(seq, |p| p.created_seq);
        s.entities.insert(
            entity.key.clone(),
            StoredEntity {
                entity: entity.clone(),
                seq,
                created_seq,
                source,
                stored_at,
            },
        );
        s.by_seq.insert(seq, entity.key.clone());
        s.last_seq = seq;
        self.undo.push(Undo::Entity {
            key: entity.key.clone(),
            previous,
            new_seq: seq,
            last_seq,
        });
        Ok(seq)
    }

    fn last_seq(&self) -> Result<u64, StoreError> {
        Ok(self.state.last_seq)
    }

    fn pending(&self, query: &PendingQuery) -> Result<Vec<StoredEntity>, StoreError> {
        Ok(self
            .pending_iter(query)
            .take(query.limit)
            .cloned()
            .collect())
    }

    fn count_pending(&self, query: &PendingQuery) -> Result<u64, StoreError> {
        Ok(self.pending_iter(query).count() as u64)
    }

    fn visit_pending(
        &self,
        query: &PendingQuery,
        visit: &mut dyn FnMut(StoredEntity) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        for stored in self.pending_iter(query).take(query.limit) {
            if visit(stored.clone()).is_break() {
                break;
            }
        }
        Ok(())
    }

    fn count_pending_upto(&self, query: &PendingQuery, upto_seq: u64) -> Result<u64, StoreError> {
        Ok(self
            .pending_iter(query)
            .take_while(|e| e.seq <= upto_seq)
            .count() as u64)
    }

    fn entities(
        &self,
        entity_type: &str,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<StoredEntity>, StoreError> {
        let start = EntityKey::new(entity_type, after.unwrap_or(Uuid::nil()));
        Ok(self
            .state
            .entities
            .range(start..)
            .take_while(|(k, _)| k.entity_type == entity_type)
            .filter(|(k, _)| after.is_none_or(|a| k.id != a))
            .take(limit)
            .map(|(_, v)| v.clone())
            .collect())
    }

    fn add_version(&mut self, record: &VersionRecord) -> Result<(), StoreError> {
        self.state.versions.push(record.clone());
        self.undo.push(Undo::VersionAdded);
        Ok(())
    }

    fn versions(&self, key: &EntityKey) -> Result<Vec<VersionRecord>, StoreError> {
        Ok(self
            .state
            .versions
            .iter()
            .filter(|v| &v.key == key)
            .cloned()
            .collect())
    }

    fn add_audit(&mut self, record: &AuditRecord) -> Result<(), StoreError> {
        self.state.audit.push(record.clone());
        self.undo.push(Undo::AuditAdded);
        Ok(())
    }

    fn audit_log(&self, offset: usize, limit: usize) -> Result<Vec<AuditRecord>, StoreError> {
        Ok(self
            .state
            .audit
            .iter()
            .skip(offset)
            .take(limit)
            .cloned()
            .collect())
    }

    fn put_open_conflict(&mut self, conflict: &OpenConflict) -> Result<(), StoreError> {
        self.state.conflicts.push(conflict.clone());
        self.undo.push(Undo::ConflictAdded);
        Ok(())
    }

    fn open_conflicts(&self) -> Result<Vec<OpenConflict>, StoreError> {
        Ok(self.state.conflicts.clone())
    }

    fn take_open_conflict(&mut self, id: Uuid) -> Result<Option<OpenConflict>, StoreError> {
        let Some(index) = self.state.conflicts.iter().position(|c| c.id == id) else {
            return Ok(None);
        };
        let conflict = self.state.conflicts.remove(index);
        self.undo
            .push(Undo::ConflictRemoved(index, conflict.clone()));
        Ok(Some(conflict))
    }

    fn park(&mut self, parked: &ParkedChange) -> Result<(), StoreError> {
        self.set_parked(parked.entity.key.clone(), Some(parked.clone()));
        Ok(())
    }

    fn take_parked(&mut self, parent: &EntityKey) -> Result<Vec<ParkedChange>, StoreError> {
        let children: Vec<EntityKey> = self
            .state
            .parked
            .iter()
            .filter(|(_, p)| &p.waiting_for == parent)
            .map(|(k, _)| k.clone())
            .collect();
        let mut taken = Vec::with_capacity(children.len());
        for child in children {
            if let Some(p) = self.state.parked.get(&child).cloned() {
                self.set_parked(child, None);
                taken.push(p);
            }
        }
        Ok(taken)
    }

    fn unpark(&mut self, child: &EntityKey) -> Result<(), StoreError> {
        if self.state.parked.contains_key(child) {
            self.set_parked(child.clone(), None);
        }
        Ok(())
    }

    fn parked(&self) -> Result<Vec<ParkedChange>, StoreError> {
        Ok(self.state.parked.values().cloned().collect())
    }

    fn parked_change(&self, child: &EntityKey) -> Result<Option<ParkedChange>, StoreError> {
        Ok(self.state.parked.get(child).cloned())
    }

    fn add_security_event(&mut self, event: &SecurityEvent) -> Result<(), StoreError> {
        self.state.security.push(event.clone());
        self.undo.push(Undo::SecurityAdded);
        Ok(())
    }

    fn security_events(&self) -> Result<Vec<SecurityEvent>, StoreError> {
        Ok(self.state.security.clone())
    }

    fn put_rejected(&mut self, rejected: &RejectedChange) -> Result<(), StoreError> {
        let previous = match self.state.rejected.iter_mut().find(|r| r.id == rejected.id) {
            Some(slot) => Some(std::mem::replace(slot, rejected.clone())),
            None => {
                self.state.rejected.push(rejected.clone());
                None
            }
        };
        self.undo.push(Undo::Rejected(rejected.id, previous));
        Ok(())
    }

    fn rejected(&self) -> Result<Vec<RejectedChange>, StoreError> {
        Ok(self.state.rejected.clone())
    }

    fn take_rejected(&mut self, id: Uuid) -> Result<Option<RejectedChange>, StoreError> {
        let Some(index) = self.state.rejected.iter().position(|r| r.id == id) else {
            return Ok(None);
        };
        let taken = self.state.rejected.remove(index);
        // A rollback puts it back at its old position.
        self.undo.push(Undo::RejectedTaken(index, taken.clone()));
        Ok(Some(taken))
    }

    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.state.meta.get(key).cloned())
    }

    fn put_meta(&mut self, key: &str, value: Option<&[u8]>) -> Result<(), StoreError> {
        let previous = match value {
            Some(value) => self.state.meta.insert(key.to_owned(), value.to_vec()),
            None => self.state.meta.remove(key),
        };
        self.undo.push(Undo::Meta(key.to_owned(), previous));
        Ok(())
    }

    fn meta_with_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        Ok(self
            .state
            .meta
            .range(prefix.to_owned()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect())
    }
}

impl MemoryTxn<'_> {
    fn pending_iter<'q>(
        &'q self,
        query: &'q PendingQuery,
    ) -> impl Iterator<Item = &'q StoredEntity> + 'q {
        self.state
            .by_seq
            .range(query.after_seq.saturating_add(1)..)
            .filter_map(|(_, key)| self.state.entities.get(key))
            .filter(|e| query.matches(e.seq, e.source))
    }
}
