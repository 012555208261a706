//! Transactions: every [`StoreTxn`] operation as SQL.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use postgres::types::ToSql;
use postgres::{Row, Statement, Transaction};
use sync_core::{
    AuditRecord, Entity, EntityKey, NodeId, NodeInfo, OpenConflict, ParkedChange, PeerState,
    PendingQuery, RejectedBy, RejectedChange, SecurityEvent, StoreError, StoreTxn, StoredEntity,
    Timestamp, Uuid, VersionRecord,
};

use crate::blob::{decode_entity, encode_entity};
use crate::error::{backend, corrupt};
use crate::rows::{self, bound, get, limit, n, node, time, u};
use crate::tracking::{self, Tracked};
use sync_core::Value;
use sync_core::entity::REMOVED_FIELD;

/// `SELECT` of every peer column (in [`peer_from_row`]'s order), then `$tail`.
macro_rules! select_peer {
    ($tail:literal) => {
        concat!(
            "SELECT id, code, name, role, writer, revoked, sent_packet_no, received_packet_no,
                 received_digest, peer_ack_high, acked_seq, resend_own_upto, in_flight,
                 sent_digests, gap_packet_no, gap_digest, gap_announced_in, resync_requested,
                 last_sync_in, last_sync_out, schema_version FROM _sync_nodes ",
            $tail
        )
    };
}

/// `SELECT` of a change (for [`stored_from_row`]), then `$tail`.
macro_rules! select_change {
    ($tail:literal) => {
        concat!(
            "SELECT version, seq, created_seq, source, stored_at FROM _sync_changes ",
            $tail
        )
    };
}

/// `SELECT` of a conflict (for [`conflict_from_row`]), then `$tail`.
macro_rules! select_conflict {
    ($tail:literal) => {
        concat!(
            "SELECT id, current, incoming, from_node, arrived_at FROM _sync_conflicts ",
            $tail
        )
    };
}

/// `SELECT` of a parked change (for [`parked_from_row`]), then `$tail`.
macro_rules! select_parked {
    ($tail:literal) => {
        concat!(
            "SELECT entity, from_node, waiting_type, waiting_id, arrived_at FROM _sync_parked ",
            $tail
        )
    };
}

/// `SELECT` of a rejected change (for [`rejected_from_row`]), then `$tail`.
macro_rules! select_rejected {
    ($tail:literal) => {
        concat!(
            "SELECT id, entity, peer, rejected_by, reason, at, notify, notified_in
             FROM _sync_rejected ",
            $tail
        )
    };
}

/// A transaction on a [`crate::PgStore`]. Dropping it uncommitted rolls back
/// every write.
pub struct PgTxn<'a> {
    txn: RefCell<Transaction<'a>>,
    statements: RefCell<&'a mut HashMap<&'static str, Statement>>,
    /// This transaction holds the counter row's lock (it assigned a
    /// sequence): it keeps it until it ends.
    counter_locked: Cell<bool>,
    /// The sequence of every entity this transaction read before it held
    /// the counter lock (`None`: absent), to detect another process's write
    /// in between.
    seen: RefCell<HashMap<EntityKey, Option<u64>>>,
    /// The store's tracked tables.
    tracked: &'a [Tracked],
    /// The change counter as this transaction first read it, while it held
    /// no counter lock: the last sequence it reports, and the bound of its
    /// reads of the change registry, until it takes the lock. See
    /// [`PgTxn::horizon`].
    horizon: Cell<Option<u64>>,
}

type Params<'p> = &'p [&'p (dyn ToSql + Sync)];

impl<'a> PgTxn<'a> {
    pub(crate) fn new(
        txn: Transaction<'a>,
        statements: &'a mut HashMap<&'static str, Statement>,
        tracked: &'a [Tracked],
    ) -> Self {
        PgTxn {
            txn: RefCell::new(txn),
            statements: RefCell::new(statements),
            counter_locked: Cell::new(false),
            seen: RefCell::new(HashMap::new()),
            tracked,
            horizon: Cell::new(None),
        }
    }

    /// Turns the writes that the tracked tables' triggers logged into
    /// changes of this hub (see [`crate::tracking`]).
    pub(crate) fn fold_captured(&mut self) -> Result<(), StoreError> {
        let Some(local) = self.local_node()? else {
            // No identity yet: the log waits for the engine to set one.
            return Ok(());
        };
        let rows = self.query(
            "DELETE FROM _sync_capture RETURNING position, entity_type, id, deleted, at",
            &[],
            "reading the captured writes",
        )?;
        if rows.is_empty() {
            return Ok(());
        }
        let w = "a captured write";
        let mut logged = Vec::with_capacity(rows.len());
        for row in &rows {
            let position: i64 = get(row, 0, w)?;
            let key = EntityKey::new(get::<String>(row, 1, w)?, get::<Uuid>(row, 2, w)?);
            logged.push((
                position,
                key,
                get::<bool>(row, 3, w)?,
                get::<i64>(row, 4, w)?,
            ));
        }
        logged.sort_by_key(|(position, ..)| *position);
        // The last write of each key is the one that counts.
        let mut last: HashMap<EntityKey, usize> = HashMap::new();
        for (i, (_, key, ..)) in logged.iter().enumerate() {
            last.insert(key.clone(), i);
        }
        for (i, (_, key, deleted, at)) in logged.iter().enumerate() {
            if last.get(key) != Some(&i) {
                continue;
            }
            let Some(tracked) = self
                .tracked
                .iter()
                .find(|t| t.entity_type == key.entity_type)
            else {
                continue;
            };
            let previous = self.entity(key)?;
            let at = Timestamp::from_micros(*at);
            let mut version = if *deleted {
                let Some(previous) = &previous else { continue };
                let mut fields = previous.entity.fields.clone();
                fields.insert(REMOVED_FIELD.to_owned(), Value::Bool(true));
                Entity::new_version(key.clone(), at, true, local.writer, fields)
            } else {
                let row = self
                    .txn
                    .borrow_mut()
                    .query_opt(&tracked.select_sql(), &[&key.id])
                    .map_err(backend("reading a tracked row"))?;
                // Gone since: its deletion is logged after this write.
                let Some(row) = row else { continue };
                let (is_deleted, fields) = tracked.fields_from_row(&row)?;
                Entity::new_version(key.clone(), at, is_deleted, local.writer, fields)
            };
            if let Some(previous) = &previous {
                if previous.entity.same_content(&version) {
                    continue;
                }
                version.clock = previous.entity.clock.merged(&version.clock);
            }
            self.store_version(&version, local.id, at, false)?;
        }
        Ok(())
    }

    /// Writes a version of a tracked type to its row, inside a savepoint:
    /// a row the table refuses leaves nothing of the version behind (the
    /// caller's entity write included) and the transaction usable.
    fn write_row(&self, tracked: &Tracked, entity: &Entity) -> Result<(), StoreError> {
        let key = &entity.key;
        let mut txn = self.txn.borrow_mut();
        txn.execute("SELECT set_config('syncplan.applying', 'on', true)", &[])
            .map_err(backend("switching capture off"))?;
        let is_refusal = |e: &postgres::Error| {
            e.code()
                .is_some_and(|c| c.code().starts_with("23") || c.code().starts_with("22"))
        };
        let fail = |e: postgres::Error| {
            if is_refusal(&e) {
                tracking::refused(key, &tracked.table, &e)
            } else {
                StoreError::backend("writing a tracked row", e)
            }
        };
        if tracking::is_removal(&entity.fields) {
            let sql = format!("DELETE FROM {} WHERE sync_uuid = $1", tracked.table);
            txn.batch_execute("SAVEPOINT _sync_row")
                .map_err(backend("writing a tracked row"))?;
            match txn.execute(&sql, &[&key.id]) {
                Ok(_) => {}
                // Rows of this node's still refer to it (a foreign key
                // without a cascade): it stays, soft-deleted.
                Err(e) if e.code() == Some(&postgres::error::SqlState::FOREIGN_KEY_VIOLATION) => {
                    txn.batch_execute("ROLLBACK TO SAVEPOINT _sync_row")
                        .map_err(backend("writing a tracked row"))?;
                    let sql = format!(
                        "UPDATE {} SET is_deleted = true, updated_at = $2 WHERE sync_uuid = $1",
                        tracked.table
                    );
                    txn.execute(&sql, &[&key.id, &entity.updated_at.as_micros()])
                        .map_err(fail)?;
                }
                Err(e) => return Err(fail(e)),
            }
            return txn
                .batch_execute("RELEASE SAVEPOINT _sync_row")
                .map_err(backend("writing a tracked row"));
        }
        // A parent whose row is gone here (only its tombstone is left): the
        // version is kept whole in the sync tables, the row waits for a
        // version whose parents have rows.
        for (parent, id) in tracked.references(&entity.fields) {
            let sql = format!("SELECT EXISTS (SELECT 1 FROM {parent} WHERE sync_uuid = $1)");
            let found: bool = txn
                .query_one(&sql, &[&id])
                .map_err(backend("looking for a parent row"))?
                .get(0);
            if !found {
                return Ok(());
            }
        }
        let (sql, params) = tracked
            .upsert(
                key.id,
                entity.updated_at.as_micros(),
                entity.is_deleted,
                &entity.fields,
            )
            .map_err(|reason| StoreError::Refused {
                key: key.clone(),
                reason: format!("table {} cannot hold the version: {reason}", tracked.table),
            })?;
        let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| &**p).collect();
        txn.execute(&sql, &params).map(drop).map_err(fail)
    }

    /// The prepared statement for `sql` (prepared once per connection).
    fn statement(&self, sql: &'static str, context: &'static str) -> Result<Statement, StoreError> {
        if let Some(s) = self.statements.borrow().get(sql) {
            return Ok(s.clone());
        }
        let s = self
            .txn
            .borrow_mut()
            .prepare(sql)
            .map_err(backend(context))?;
        self.statements.borrow_mut().insert(sql, s.clone());
        Ok(s)
    }

    fn query(
        &self,
        sql: &'static str,
        params: Params<'_>,
        context: &'static str,
    ) -> Result<Vec<Row>, StoreError> {
        let s = self.statement(sql, context)?;
        self.txn
            .borrow_mut()
            .query(&s, params)
            .map_err(backend(context))
    }

    fn query_opt(
        &self,
        sql: &'static str,
        params: Params<'_>,
        context: &'static str,
    ) -> Result<Option<Row>, StoreError> {
        let s = self.statement(sql, context)?;
        self.txn
            .borrow_mut()
            .query_opt(&s, params)
            .map_err(backend(context))
    }

    fn execute(
        &self,
        sql: &'static str,
        params: Params<'_>,
        context: &'static str,
    ) -> Result<u64, StoreError> {
        let s = self.statement(sql, context)?;
        self.txn
            .borrow_mut()
            .execute(&s, params)
            .map_err(backend(context))
    }

    /// The counter row as this statement sees it: the last committed value,
    /// or this transaction's own last sequence once it holds the lock.
    fn committed_seq(&self) -> Result<u64, StoreError> {
        let row = self.query_opt(
            "SELECT last_seq FROM _sync_counter WHERE slot = 1",
            &[],
            "reading the last sequence",
        )?;
        let row = row.ok_or_else(|| corrupt("the change counter row is missing"))?;
        Ok(u(get(&row, 0, "the change counter")?))
    }

    /// The highest sequence this transaction's reads of the change registry
    /// cover, `None` once it holds the counter lock (no other writer can
    /// commit then, so every read sees everything up to its own changes).
    ///
    /// Under `READ COMMITTED` every statement sees the commits made before
    /// it started, so without a bound a transaction that reads the pending
    /// changes and then the last sequence (what the engine does to build a
    /// packet: the packet covers every change up to that sequence) can see a
    /// change commit in between, report it in the last sequence and never
    /// have shown it; the peer's acknowledgement then skips it for good.
    /// So the counter is read once, before the first such read, and both
    /// [`StoreTxn::last_seq`] and the registry reads stop there until the
    /// transaction takes the lock. Sequences become visible in order (see
    /// the crate docs), so every change up to the horizon is visible to
    /// every later statement, except one whose entity was written again
    /// since: that entity is owed again under its newer sequence, which is
    /// above the horizon. One hub process alone never sees the difference.
    fn horizon(&self) -> Result<Option<u64>, StoreError> {
        if self.counter_locked.get() {
            return Ok(None);
        }
        if let Some(horizon) = self.horizon.get() {
            return Ok(Some(horizon));
        }
        let horizon = self.committed_seq()?;
        self.horizon.set(Some(horizon));
        Ok(Some(horizon))
    }

    /// The bound on `seq` for a registry read (see [`PgTxn::horizon`]).
    fn seq_bound(&self) -> Result<i64, StoreError> {
        Ok(self.horizon()?.map_or(i64::MAX, bound))
    }

    /// The next sequence; takes the counter row's lock on the first call.
    fn next_seq(&self) -> Result<u64, StoreError> {
        let row = self.query_opt(
            "UPDATE _sync_counter SET last_seq = last_seq + 1 WHERE slot = 1 RETURNING last_seq",
            &[],
            "assigning a change sequence",
        )?;
        let row = row.ok_or_else(|| corrupt("the change counter row is missing"))?;
        self.counter_locked.set(true);
        Ok(u(get(&row, 0, "the change counter")?))
    }
}

impl PgTxn<'_> {
    /// [`StoreTxn::put_entity`]; `to_row`: also write a tracked type's row
    /// (not for versions read from that row).
    fn store_version(
        &mut self,
        entity: &Entity,
        source: NodeId,
        stored_at: Timestamp,
        to_row: bool,
    ) -> Result<u64, StoreError> {
        let seq = self.next_seq()?;
        let tracked = if to_row {
            self.tracked
                .iter()
                .find(|t| t.entity_type == entity.key.entity_type)
        } else {
            None
        };
        let Some(tracked) = tracked else {
            return self.store_entity(entity, seq, source, stored_at);
        };
        // After the counter lock (a rolled-back savepoint keeps it): a row
        // the table refuses takes the entity's write with it.
        self.txn
            .borrow_mut()
            .batch_execute("SAVEPOINT _sync_put")
            .map_err(backend("storing an entity"))?;
        let seen_before = self.seen.borrow().get(&entity.key).copied();
        let stored = self
            .store_entity(entity, seq, source, stored_at)
            .and_then(|seq| self.write_row(tracked, entity).map(|()| seq));
        let end = if stored.is_ok() {
            "RELEASE SAVEPOINT _sync_put"
        } else {
            let mut seen = self.seen.borrow_mut();
            match seen_before {
                Some(before) => seen.insert(entity.key.clone(), before),
                None => seen.remove(&entity.key),
            };
            "ROLLBACK TO SAVEPOINT _sync_put"
        };
        self.txn
            .borrow_mut()
            .batch_execute(end)
            .map_err(backend("storing an entity"))?;
        stored
    }

    /// Writes `entity` to the change registry as sequence `seq`.
    fn store_entity(
        &self,
        entity: &Entity,
        seq: u64,
        source: NodeId,
        stored_at: Timestamp,
    ) -> Result<u64, StoreError> {
        let key = &entity.key;
        // A fresh statement after the counter lock: it sees every commit of
        // the writers this transaction waited for.
        let row = self.query_opt(
            "WITH old AS (SELECT seq, created_seq FROM _sync_changes
                          WHERE entity_type = $1 AND id = $2)
             INSERT INTO _sync_changes(entity_type, id, seq, created_seq, source, stored_at,
                 is_deleted, updated_at, version)
             VALUES ($1, $2, $3, coalesce((SELECT created_seq FROM old), $3), $4, $5, $6, $7, $8)
             ON CONFLICT (entity_type, id) DO UPDATE SET seq = EXCLUDED.seq,
                 source = EXCLUDED.source, stored_at = EXCLUDED.stored_at,
                 is_deleted = EXCLUDED.is_deleted, updated_at = EXCLUDED.updated_at,
                 version = EXCLUDED.version
             RETURNING (SELECT seq FROM old)",
            &[
                &key.entity_type,
                &key.id,
                &n(seq),
                &source.0,
                &stored_at.as_micros(),
                &entity.is_deleted,
                &entity.updated_at.as_micros(),
                &encode_entity(entity),
            ],
            "storing an entity",
        )?;
        let row = row.ok_or_else(|| corrupt("storing an entity returned no row"))?;
        let previous: Option<i64> = get(&row, 0, "an entity's previous sequence")?;
        let mut seen = self.seen.borrow_mut();
        if let Some(read) = seen.get(key)
            && *read != previous.map(u)
        {
            return Err(StoreError::backend(
                format!("storing {key}"),
                format!(
                    "another hub process changed {key} after this transaction read it \
                     (sequence {read:?}, now {previous:?}); nothing was committed and the \
                     node's retry is answered from the new state"
                ),
            ));
        }
        seen.insert(key.clone(), Some(seq));
        Ok(seq)
    }
}

fn peer_from_row(row: &Row) -> Result<PeerState, StoreError> {
    let w = "a peer's state";
    let info = NodeInfo {
        id: node(get(row, 0, w)?),
        code: get(row, 1, w)?,
        name: get(row, 2, w)?,
        role: rows::role(get(row, 3, w)?)?,
        writer: node(get(row, 4, w)?),
    };
    Ok(PeerState {
        info,
        revoked: get(row, 5, w)?,
        sent_packet_no: u(get(row, 6, w)?),
        received_packet_no: u(get(row, 7, w)?),
        received_digest: rows::digest(get(row, 8, w)?, "a peer's received digest")?,
        peer_ack_high: u(get(row, 9, w)?),
        acked_seq: u(get(row, 10, w)?),
        resend_own_upto: u(get(row, 11, w)?),
        in_flight: rows::decode_in_flight(get(row, 12, w)?)?,
        sent_digests: rows::decode_sent(get(row, 13, w)?)?,
        gap_check: rows::gap(get(row, 14, w)?, get(row, 15, w)?, get(row, 16, w)?)?,
        resync_requested: get(row, 17, w)?,
        last_sync_in: get::<Option<i64>>(row, 18, w)?.map(time),
        last_sync_out: get::<Option<i64>>(row, 19, w)?.map(time),
        schema_version: get(row, 20, w)?,
    })
}

/// A `_sync_changes` row read with `select_change!`.
fn stored_from_row(row: &Row) -> Result<StoredEntity, StoreError> {
    let w = "a change";
    Ok(StoredEntity {
        entity: decode_entity(get(row, 0, w)?)?,
        seq: u(get(row, 1, w)?),
        created_seq: u(get(row, 2, w)?),
        source: node(get(row, 3, w)?),
        stored_at: time(get(row, 4, w)?),
    })
}

fn entity_at(row: &Row, i: usize, what: &str) -> Result<Entity, StoreError> {
    decode_entity(get(row, i, what)?)
}

fn conflict_from_row(row: &Row) -> Result<OpenConflict, StoreError> {
    let w = "an open conflict";
    let current = entity_at(row, 1, w)?;
    Ok(OpenConflict {
        id: get(row, 0, w)?,
        key: current.key.clone(),
        current,
        incoming: entity_at(row, 2, w)?,
        from: node(get(row, 3, w)?),
        arrived_at: time(get(row, 4, w)?),
    })
}

fn parked_from_row(row: &Row) -> Result<ParkedChange, StoreError> {
    let w = "a parked change";
    Ok(ParkedChange {
        entity: entity_at(row, 0, w)?,
        from: node(get(row, 1, w)?),
        waiting_for: EntityKey::new(get::<String>(row, 2, w)?, get(row, 3, w)?),
        arrived_at: time(get(row, 4, w)?),
    })
}

fn rejected_from_row(row: &Row) -> Result<RejectedChange, StoreError> {
    let w = "a rejected change";
    let by: String = get(row, 3, w)?;
    Ok(RejectedChange {
        id: get(row, 0, w)?,
        entity: entity_at(row, 1, w)?,
        peer: node(get(row, 2, w)?),
        by: RejectedBy::parse(&by)
            .ok_or_else(|| corrupt(format!("unknown refusal source {by:?}")))?,
        reason: get(row, 4, w)?,
        at: time(get(row, 5, w)?),
        notify: get::<Option<Uuid>>(row, 6, w)?.map(node),
        notified_in: get::<Option<i64>>(row, 7, w)?.map(u),
    })
}

impl StoreTxn for PgTxn<'_> {
    fn commit(self) -> Result<(), StoreError> {
        self.txn
            .into_inner()
            .commit()
            .map_err(backend("committing"))
    }

    fn local_node(&self) -> Result<Option<NodeInfo>, StoreError> {
        let row = self.query_opt(
            "SELECT id, code, name, role, writer FROM _sync_local WHERE slot = 1",
            &[],
            "reading this hub's identity",
        )?;
        let Some(row) = row else { return Ok(None) };
        let w = "this hub's identity";
        Ok(Some(NodeInfo {
            id: node(get(&row, 0, w)?),
            code: get(&row, 1, w)?,
            name: get(&row, 2, w)?,
            role: rows::role(get(&row, 3, w)?)?,
            writer: node(get(&row, 4, w)?),
        }))
    }

    fn set_local_node(&mut self, info: &NodeInfo) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO _sync_local(slot, id, code, name, role, writer) VALUES (1, $1, $2, $3, $4, $5)
             ON CONFLICT (slot) DO UPDATE SET id = EXCLUDED.id, code = EXCLUDED.code,
                 name = EXCLUDED.name, role = EXCLUDED.role, writer = EXCLUDED.writer",
            &[
                &info.id.0,
                &info.code,
                &info.name,
                &rows::role_name(info.role),
                &info.writer.0,
            ],
            "recording this hub's identity",
        )
        .map(drop)
    }

    fn peer(&self, id: NodeId) -> Result<Option<PeerState>, StoreError> {
        // The first peer a transaction reads is locked until it ends: that
        // serialises one node's exchanges across hub processes. A peer read
        // after this transaction took the counter lock is read without one,
        // so that lock is never waited for while holding the counter.
        let row = if self.counter_locked.get() {
            self.query_opt(
                select_peer!("WHERE id = $1"),
                &[&id.0],
                "reading a peer's state",
            )?
        } else {
            self.query_opt(
                select_peer!("WHERE id = $1 FOR UPDATE"),
                &[&id.0],
                "locking a peer's state",
            )?
        };
        row.as_ref().map(peer_from_row).transpose()
    }

    fn peers(&self) -> Result<Vec<PeerState>, StoreError> {
        self.query(select_peer!("ORDER BY id"), &[], "reading the peers")?
            .iter()
            .map(peer_from_row)
            .collect()
    }

    fn put_peer(&mut self, p: &PeerState) -> Result<(), StoreError> {
        let gap = p.gap_check.as_ref();
        self.execute(
            "INSERT INTO _sync_nodes(id, code, name, role, writer, revoked, sent_packet_no,
                 received_packet_no, received_digest, peer_ack_high, acked_seq, resend_own_upto,
                 in_flight, sent_digests, gap_packet_no, gap_digest, gap_announced_in,
                 resync_requested, last_sync_in, last_sync_out, schema_version)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
                 $18, $19, $20, $21)
             ON CONFLICT (id) DO UPDATE SET code = EXCLUDED.code, name = EXCLUDED.name,
                 role = EXCLUDED.role, writer = EXCLUDED.writer, revoked = EXCLUDED.revoked,
                 sent_packet_no = EXCLUDED.sent_packet_no,
                 received_packet_no = EXCLUDED.received_packet_no,
                 received_digest = EXCLUDED.received_digest,
                 peer_ack_high = EXCLUDED.peer_ack_high, acked_seq = EXCLUDED.acked_seq,
                 resend_own_upto = EXCLUDED.resend_own_upto, in_flight = EXCLUDED.in_flight,
                 sent_digests = EXCLUDED.sent_digests, gap_packet_no = EXCLUDED.gap_packet_no,
                 gap_digest = EXCLUDED.gap_digest, gap_announced_in = EXCLUDED.gap_announced_in,
                 resync_requested = EXCLUDED.resync_requested,
                 last_sync_in = EXCLUDED.last_sync_in, last_sync_out = EXCLUDED.last_sync_out,
                 schema_version = EXCLUDED.schema_version",
            &[
                &p.info.id.0,
                &p.info.code,
                &p.info.name,
                &rows::role_name(p.info.role),
                &p.info.writer.0,
                &p.revoked,
                &n(p.sent_packet_no),
                &n(p.received_packet_no),
                &&p.received_digest[..],
                &n(p.peer_ack_high),
                &n(p.acked_seq),
                &n(p.resend_own_upto),
                &rows::encode_in_flight(&p.in_flight),
                &rows::encode_sent(&p.sent_digests),
                &gap.map(|g| n(g.packet_no)),
                &gap.map(|g| &g.digest[..]),
                &gap.map(|g| n(g.announced_in)),
                &p.resync_requested,
                &p.last_sync_in.map(Timestamp::as_micros),
                &p.last_sync_out.map(Timestamp::as_micros),
                &p.schema_version,
            ],
            "storing a peer's state",
        )
        .map(drop)
    }

    fn entity(&self, key: &EntityKey) -> Result<Option<StoredEntity>, StoreError> {
        let row = self.query_opt(
            select_change!("WHERE entity_type = $1 AND id = $2"),
            &[&key.entity_type, &key.id],
            "reading an entity",
        )?;
        let stored = row.as_ref().map(stored_from_row).transpose()?;
        if !self.counter_locked.get() {
            self.seen
                .borrow_mut()
                .entry(key.clone())
                .or_insert(stored.as_ref().map(|s| s.seq));
        }
        Ok(stored)
    }

    fn put_entity(
        &mut self,
        entity: &Entity,
        source: NodeId,
        stored_at: Timestamp,
    ) -> Result<u64, StoreError> {
        self.store_version(entity, source, stored_at, true)
    }

    fn last_seq(&self) -> Result<u64, StoreError> {
        // Before the counter lock, the horizon (see `PgTxn::horizon`); with
        // it, this transaction's own last sequence.
        match self.horizon()? {
            Some(horizon) => Ok(horizon),
            None => self.committed_seq(),
        }
    }

    fn pending(&self, q: &PendingQuery) -> Result<Vec<StoredEntity>, StoreError> {
        self.query(
            select_change!(
                "WHERE seq > $1 AND (source <> $2 OR seq <= $3) AND seq <= $5
                 ORDER BY seq LIMIT $4"
            ),
            &[
                &bound(q.after_seq),
                &q.peer.0,
                &bound(q.resend_own_upto),
                &limit(q.limit),
                &self.seq_bound()?,
            ],
            "reading the changes a peer is owed",
        )?
        .iter()
        .map(stored_from_row)
        .collect()
    }

    fn count_pending(&self, q: &PendingQuery) -> Result<u64, StoreError> {
        let row = self.query_opt(
            "SELECT count(*) FROM _sync_changes
             WHERE seq > $1 AND (source <> $2 OR seq <= $3) AND seq <= $4",
            &[
                &bound(q.after_seq),
                &q.peer.0,
                &bound(q.resend_own_upto),
                &self.seq_bound()?,
            ],
            "counting the changes a peer is owed",
        )?;
        let row = row.ok_or_else(|| corrupt("count(*) returned no row"))?;
        Ok(u(get(&row, 0, "a count")?))
    }

    fn visit_pending(
        &self,
        q: &PendingQuery,
        visit: &mut dyn FnMut(StoredEntity) -> std::ops::ControlFlow<()>,
    ) -> Result<(), StoreError> {
        // Read in small chunks so that a packet's byte limit bounds memory
        // whatever the backlog.
        const CHUNK: usize = 64;
        let mut left = q.limit;
        let mut next = PendingQuery {
            limit: CHUNK.min(left),
            ..*q
        };
        while left > 0 {
            let chunk = self.pending(&next)?;
            let last = chunk.len() < next.limit;
            for stored in chunk {
                next.after_seq = stored.seq;
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

    fn count_pending_upto(&self, q: &PendingQuery, upto_seq: u64) -> Result<u64, StoreError> {
        if upto_seq <= q.after_seq {
            return Ok(0);
        }
        let row = self.query_opt(
            "SELECT count(*) FROM _sync_changes
             WHERE seq > $1 AND (source <> $2 OR seq <= $3) AND seq <= $4",
            &[
                &bound(q.after_seq),
                &q.peer.0,
                &bound(q.resend_own_upto),
                &bound(upto_seq).min(self.seq_bound()?),
            ],
            "counting the changes a peer is owed",
        )?;
        let row = row.ok_or_else(|| corrupt("count(*) returned no row"))?;
        Ok(u(get(&row, 0, "a count")?))
    }

    fn entities(
        &self,
        entity_type: &str,
        after: Option<Uuid>,
        max: usize,
    ) -> Result<Vec<StoredEntity>, StoreError> {
        let rows = match after {
            Some(after) => self.query(
                select_change!(
                    "WHERE entity_type = $1 AND id > $2 ORDER BY entity_type, id LIMIT $3"
                ),
                &[&entity_type, &after, &limit(max)],
                "listing entities",
            )?,
            None => self.query(
                select_change!("WHERE entity_type = $1 ORDER BY entity_type, id LIMIT $2"),
                &[&entity_type, &limit(max)],
                "listing entities",
            )?,
        };
        rows.iter().map(stored_from_row).collect()
    }

    fn add_version(&mut self, v: &VersionRecord) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO _sync_versions(id, entity_type, entity_id, source_node, arrival_time, data,
                 resolution) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &v.id,
                &v.key.entity_type,
                &v.key.id,
                &v.source_node.0,
                &v.arrival_time.as_micros(),
                &encode_entity(&v.data),
                &v.resolution,
            ],
            "adding to the version history",
        )
        .map(drop)
    }

    fn versions(&self, key: &EntityKey) -> Result<Vec<VersionRecord>, StoreError> {
        let w = "the version history";
        self.query(
            "SELECT id, source_node, arrival_time, data, resolution FROM _sync_versions
             WHERE entity_type = $1 AND entity_id = $2 ORDER BY position",
            &[&key.entity_type, &key.id],
            "reading the version history",
        )?
        .iter()
        .map(|row| {
            Ok(VersionRecord {
                id: get(row, 0, w)?,
                key: key.clone(),
                source_node: node(get(row, 1, w)?),
                arrival_time: time(get(row, 2, w)?),
                data: entity_at(row, 3, w)?,
                resolution: get(row, 4, w)?,
            })
        })
        .collect()
    }

    fn add_audit(&mut self, r: &AuditRecord) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO _sync_audit(id, at, entity_type, entity_id, peer, strategy, winner,
                 local_origin, local_updated_at, incoming_origin, incoming_updated_at,
                 local_digest, incoming_digest, detail)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            &[
                &r.id,
                &r.at.as_micros(),
                &r.key.entity_type,
                &r.key.id,
                &r.peer.0,
                &r.strategy,
                &rows::side_name(r.winner),
                &r.local_origin.0,
                &r.local_updated_at.as_micros(),
                &r.incoming_origin.0,
                &r.incoming_updated_at.as_micros(),
                &&r.digests[0][..],
                &&r.digests[1][..],
                &r.detail,
            ],
            "adding to the audit log",
        )
        .map(drop)
    }

    fn audit_log(&self, offset: usize, max: usize) -> Result<Vec<AuditRecord>, StoreError> {
        let w = "the audit log";
        self.query(
            "SELECT id, at, entity_type, entity_id, peer, strategy, winner, local_origin,
                 local_updated_at, incoming_origin, incoming_updated_at, local_digest,
                 incoming_digest, detail
             FROM _sync_audit ORDER BY position OFFSET $1 LIMIT $2",
            &[&limit(offset), &limit(max)],
            "reading the audit log",
        )?
        .iter()
        .map(|row| {
            Ok(AuditRecord {
                id: get(row, 0, w)?,
                at: time(get(row, 1, w)?),
                key: EntityKey::new(get::<String>(row, 2, w)?, get(row, 3, w)?),
                peer: node(get(row, 4, w)?),
                strategy: get(row, 5, w)?,
                winner: rows::side(get(row, 6, w)?)?,
                local_origin: node(get(row, 7, w)?),
                local_updated_at: time(get(row, 8, w)?),
                incoming_origin: node(get(row, 9, w)?),
                incoming_updated_at: time(get(row, 10, w)?),
                digests: [
                    rows::digest(get(row, 11, w)?, "an audit record's digest")?,
                    rows::digest(get(row, 12, w)?, "an audit record's digest")?,
                ],
                detail: get(row, 13, w)?,
            })
        })
        .collect()
    }

    fn put_open_conflict(&mut self, c: &OpenConflict) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO _sync_conflicts(id, entity_type, entity_id, current, incoming, from_node,
                 arrived_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &c.id,
                &c.key.entity_type,
                &c.key.id,
                &encode_entity(&c.current),
                &encode_entity(&c.incoming),
                &c.from.0,
                &c.arrived_at.as_micros(),
            ],
            "adding an open conflict",
        )
        .map(drop)
    }

    fn open_conflicts(&self) -> Result<Vec<OpenConflict>, StoreError> {
        self.query(
            select_conflict!("ORDER BY position"),
            &[],
            "reading the open conflicts",
        )?
        .iter()
        .map(conflict_from_row)
        .collect()
    }

    fn open_conflicts_for(&self, key: &EntityKey) -> Result<Vec<OpenConflict>, StoreError> {
        self.query(
            select_conflict!("WHERE entity_type = $1 AND entity_id = $2 ORDER BY position"),
            &[&key.entity_type, &key.id],
            "reading an entity's open conflicts",
        )?
        .iter()
        .map(conflict_from_row)
        .map(|c| {
            // The key columns are the conflict's; the entity inside must agree.
            c.map(|mut c| {
                c.key = key.clone();
                c
            })
        })
        .collect()
    }

    fn take_open_conflict(&mut self, id: Uuid) -> Result<Option<OpenConflict>, StoreError> {
        let row = self.query_opt(
            "DELETE FROM _sync_conflicts WHERE id = $1
             RETURNING id, current, incoming, from_node, arrived_at, entity_type, entity_id",
            &[&id],
            "taking an open conflict",
        )?;
        row.as_ref()
            .map(|row| {
                let mut c = conflict_from_row(row)?;
                c.key = EntityKey::new(
                    get::<String>(row, 5, "an open conflict")?,
                    get(row, 6, "an open conflict")?,
                );
                Ok(c)
            })
            .transpose()
    }

    fn park(&mut self, p: &ParkedChange) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO _sync_parked(entity_type, entity_id, entity, from_node, waiting_type,
                 waiting_id, arrived_at) VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (entity_type, entity_id) DO UPDATE SET entity = EXCLUDED.entity,
                 from_node = EXCLUDED.from_node, waiting_type = EXCLUDED.waiting_type,
                 waiting_id = EXCLUDED.waiting_id, arrived_at = EXCLUDED.arrived_at",
            &[
                &p.entity.key.entity_type,
                &p.entity.key.id,
                &encode_entity(&p.entity),
                &p.from.0,
                &p.waiting_for.entity_type,
                &p.waiting_for.id,
                &p.arrived_at.as_micros(),
            ],
            "parking a change",
        )
        .map(drop)
    }

    fn take_parked(&mut self, parent: &EntityKey) -> Result<Vec<ParkedChange>, StoreError> {
        let rows = self.query(
            "DELETE FROM _sync_parked WHERE waiting_type = $1 AND waiting_id = $2
             RETURNING entity, from_node, waiting_type, waiting_id, arrived_at,
                 entity_type, entity_id",
            &[&parent.entity_type, &parent.id],
            "taking parked changes",
        )?;
        let mut taken = rows
            .iter()
            .map(parked_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        taken.sort_by(|a, b| a.entity.key.cmp(&b.entity.key));
        Ok(taken)
    }

    fn unpark(&mut self, child: &EntityKey) -> Result<(), StoreError> {
        self.execute(
            "DELETE FROM _sync_parked WHERE entity_type = $1 AND entity_id = $2",
            &[&child.entity_type, &child.id],
            "dropping a parked change",
        )
        .map(drop)
    }

    fn parked(&self) -> Result<Vec<ParkedChange>, StoreError> {
        self.query(
            select_parked!("ORDER BY entity_type, entity_id"),
            &[],
            "reading the parked changes",
        )?
        .iter()
        .map(parked_from_row)
        .collect()
    }

    fn parked_change(&self, child: &EntityKey) -> Result<Option<ParkedChange>, StoreError> {
        self.query_opt(
            select_parked!("WHERE entity_type = $1 AND entity_id = $2"),
            &[&child.entity_type, &child.id],
            "reading a parked change",
        )?
        .as_ref()
        .map(parked_from_row)
        .transpose()
    }

    fn add_security_event(&mut self, e: &SecurityEvent) -> Result<(), StoreError> {
        let kind = rows::kind_name(e.kind).ok_or_else(|| {
            StoreError::backend(
                "adding a security event",
                format!(
                    "this build of sync-store-postgres has no name for {:?}; upgrade it",
                    e.kind
                ),
            )
        })?;
        self.execute(
            "INSERT INTO _sync_security(at, peer, kind, detail) VALUES ($1, $2, $3, $4)",
            &[&e.at.as_micros(), &e.peer.map(|p| p.0), &kind, &e.detail],
            "adding a security event",
        )
        .map(drop)
    }

    fn security_events(&self) -> Result<Vec<SecurityEvent>, StoreError> {
        let w = "a security event";
        self.query(
            "SELECT at, peer, kind, detail FROM _sync_security ORDER BY position",
            &[],
            "reading the security events",
        )?
        .iter()
        .map(|row| {
            Ok(SecurityEvent {
                at: time(get(row, 0, w)?),
                peer: get::<Option<Uuid>>(row, 1, w)?.map(node),
                kind: rows::kind(get(row, 2, w)?)?,
                detail: get(row, 3, w)?,
            })
        })
        .collect()
    }

    fn put_rejected(&mut self, r: &RejectedChange) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO _sync_rejected(id, entity, peer, rejected_by, reason, at, notify,
                 notified_in) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (id) DO UPDATE SET entity = EXCLUDED.entity, peer = EXCLUDED.peer,
                 rejected_by = EXCLUDED.rejected_by, reason = EXCLUDED.reason, at = EXCLUDED.at,
                 notify = EXCLUDED.notify, notified_in = EXCLUDED.notified_in",
            &[
                &r.id,
                &encode_entity(&r.entity),
                &r.peer.0,
                &r.by.as_str(),
                &r.reason,
                &r.at.as_micros(),
                &r.notify.map(|p| p.0),
                &r.notified_in.map(n),
            ],
            "storing a rejected change",
        )
        .map(drop)
    }

    fn rejected(&self) -> Result<Vec<RejectedChange>, StoreError> {
        self.query(
            select_rejected!("ORDER BY position"),
            &[],
            "reading the rejected changes",
        )?
        .iter()
        .map(rejected_from_row)
        .collect()
    }

    fn take_rejected(&mut self, id: Uuid) -> Result<Option<RejectedChange>, StoreError> {
        self.query_opt(
            "DELETE FROM _sync_rejected WHERE id = $1
             RETURNING id, entity, peer, rejected_by, reason, at, notify, notified_in",
            &[&id],
            "taking a rejected change",
        )?
        .as_ref()
        .map(rejected_from_row)
        .transpose()
    }

    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.query_opt(
            "SELECT value FROM _sync_kv WHERE key = $1",
            &[&key],
            "reading driver metadata",
        )?
        .as_ref()
        .map(|row| get(row, 0, "driver metadata"))
        .transpose()
    }

    fn put_meta(&mut self, key: &str, value: Option<&[u8]>) -> Result<(), StoreError> {
        match value {
            Some(value) => self.execute(
                "INSERT INTO _sync_kv(key, value) VALUES ($1, $2)
                 ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                &[&key, &value],
                "storing driver metadata",
            ),
            None => self.execute(
                "DELETE FROM _sync_kv WHERE key = $1",
                &[&key],
                "removing driver metadata",
            ),
        }
        .map(drop)
    }

    fn meta_with_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let w = "driver metadata";
        self.query(
            "SELECT key, value FROM _sync_kv WHERE starts_with(key, $1) ORDER BY key",
            &[&prefix],
            "listing driver metadata",
        )?
        .iter()
        .map(|row| Ok((get(row, 0, w)?, get(row, 1, w)?)))
        .collect()
    }
}
