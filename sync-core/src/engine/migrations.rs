//! Schema migrations (see [`crate::migration`]): what the hub sends, what a
//! node keeps until its driver has applied them, and the failure reports.

use crate::error::SyncError;
use crate::events::Event;
use crate::ids::{NodeId, Timestamp};
use crate::migration::{
    FAILURE_KEY, Migration, MigrationFailure, MigrationStatus, NODE_FAILURE_PREFIX, PENDING_KEY,
    SCHEMA_META_KEY, wire,
};
use crate::node_registry::PeerState;
use crate::schema_version::SchemaVersion;
use crate::store::{Store, StoreTxn};

use super::{Ctx, Engine};

impl<S: Store> Engine<S> {
    /// This node's schema version: the configured one, moved on by
    /// [`Engine::migration_applied`]. Every packet names it.
    pub fn schema_version(&self) -> SchemaVersion {
        self.config.schema.own
    }

    /// The migrations received from the hub and not applied yet, oldest
    /// first. While any is pending the hub sends this node no entity
    /// change. Run each (a SQLite node: `sync_store_sqlite::apply_migrations`),
    /// then report with [`Engine::migration_applied`] or
    /// [`Engine::migration_failed`].
    pub fn pending_migrations(&mut self) -> Result<Vec<Migration>, SyncError> {
        Ok(self.migration_status()?.pending)
    }

    /// Pending migrations and the last failure (kept across restarts).
    pub fn migration_status(&mut self) -> Result<MigrationStatus, SyncError> {
        let txn = self.store.begin()?;
        let own = self.config.schema.own;
        let pending = txn
            .meta(PENDING_KEY)?
            .map(|bytes| wire::decode_list(&bytes))
            .unwrap_or_default()
            .into_iter()
            .filter(|m| m.version > own)
            .collect();
        let failure = txn
            .meta(FAILURE_KEY)?
            .and_then(|bytes| wire::decode_failure(&bytes));
        Ok(MigrationStatus { pending, failure })
    }

    /// The driver applied the migration to `version` (the script ran and
    /// committed): this node's schema is `version` from now on, migrations
    /// up to it are no longer pending, a recorded failure is cleared, and a
    /// running session with the hub sends again so the hub learns the new
    /// version. Emits [`Event::MigrationApplied`].
    pub fn migration_applied(
        &mut self,
        version: SchemaVersion,
        now: Timestamp,
    ) -> Result<(), SyncError> {
        let _ = now;
        let mut txn = self.store.begin()?;
        let pending: Vec<Migration> = txn
            .meta(PENDING_KEY)?
            .map(|bytes| wire::decode_list(&bytes))
            .unwrap_or_default()
            .into_iter()
            .filter(|m| m.version > version)
            .collect();
        if pending.is_empty() {
            txn.put_meta(PENDING_KEY, None)?;
        } else {
            txn.put_meta(PENDING_KEY, Some(&wire::encode_list(&pending)))?;
        }
        txn.put_meta(FAILURE_KEY, None)?;
        let at = self.config.schema.own.max(version);
        txn.put_meta(SCHEMA_META_KEY, Some(at.to_string().as_bytes()))?;
        txn.commit()?;
        self.config.schema.own = at;
        self.migration_failure = None;
        for session in self.sessions.values_mut() {
            session.want_send |= session.active;
            session.retry = None;
        }
        self.emit(Event::MigrationApplied { version });
        Ok(())
    }

    /// The driver could not apply the migration to `version`: the failure
    /// is kept (see [`Engine::migration_status`]), sent to the hub with
    /// every packet of this run, and this node stays at its schema. Emits
    /// [`Event::MigrationFailed`]. Apply the pending migrations again after
    /// a fix (a retry that succeeds clears it).
    pub fn migration_failed(
        &mut self,
        version: SchemaVersion,
        message: impl Into<String>,
        now: Timestamp,
    ) -> Result<(), SyncError> {
        let _ = now;
        let failure = MigrationFailure {
            version,
            message: message.into(),
        };
        let mut txn = self.store.begin()?;
        txn.put_meta(FAILURE_KEY, Some(&wire::encode_failure(&failure)))?;
        txn.commit()?;
        self.migration_failure = Some(failure.clone());
        self.emit(Event::MigrationFailed { failure });
        Ok(())
    }

    /// At the hub: the failures nodes reported, by node, until each node's
    /// retry succeeds.
    pub fn migration_failures(&mut self) -> Result<Vec<(NodeId, MigrationFailure)>, SyncError> {
        let txn = self.store.begin()?;
        Ok(txn
            .meta_with_prefix(NODE_FAILURE_PREFIX)?
            .into_iter()
            .filter_map(|(key, bytes)| {
                let id = key.strip_prefix(NODE_FAILURE_PREFIX)?.parse().ok()?;
                Some((NodeId(id), wire::decode_failure(&bytes)?))
            })
            .collect())
    }
}

/// The schema a peer's packets last named, if it parses.
fn peer_schema(peer: &PeerState) -> Option<SchemaVersion> {
    peer.schema_version.as_deref()?.parse().ok()
}

/// At the hub: the migrations `peer` still needs (empty at a node, or when
/// the hub distributes none).
pub(super) fn owed(ctx: &Ctx<'_>, peer: &PeerState) -> Vec<Migration> {
    if !ctx.is_hub() || ctx.config.migrations.is_empty() {
        return Vec::new();
    }
    peer_schema(peer).map_or_else(Vec::new, |v| ctx.config.migrations_after(v))
}

/// At the hub: whether a node too old to be accepted can be brought past
/// the minimum by the hub's migrations (its packet then waits, and the
/// reply carries them, rather than the packet being refused).
pub(super) fn can_catch_up(ctx: &Ctx<'_>, node_version: &str) -> bool {
    if !ctx.is_hub() {
        return false;
    }
    let Ok(version) = node_version.parse::<SchemaVersion>() else {
        return false;
    };
    ctx.config
        .migrations_after(version)
        .last()
        .is_some_and(|m| m.version >= ctx.config.schema.minimum)
}

/// Records what a packet said about migrations. At the hub: a node's
/// failure report is kept (an event when it is new or changed) and dropped
/// once the node sends without one. At a node: migrations from the hub are
/// kept as pending (an event when the list changed).
pub(super) fn received<T: StoreTxn>(
    txn: &mut T,
    ctx: &mut Ctx<'_>,
    peer: &PeerState,
    migrations: Vec<Migration>,
    failure: Option<MigrationFailure>,
) -> Result<(), SyncError> {
    if ctx.is_hub() {
        // Only a hub that distributes migrations keeps reports: any other
        // hub does no extra store work per packet.
        if ctx.config.migrations.is_empty() && failure.is_none() {
            return Ok(());
        }
        let key = format!("{NODE_FAILURE_PREFIX}{}", peer.id().0);
        let stored = txn.meta(&key)?.and_then(|b| wire::decode_failure(&b));
        if stored == failure {
            return Ok(());
        }
        match failure {
            Some(failure) => {
                txn.put_meta(&key, Some(&wire::encode_failure(&failure)))?;
                ctx.events.push(Event::NodeMigrationFailed {
                    peer: peer.id(),
                    failure,
                });
            }
            None => txn.put_meta(&key, None)?,
        }
        return Ok(());
    }
    if migrations.is_empty() {
        return Ok(());
    }
    let own = ctx.config.schema.own;
    let wanted: Vec<Migration> = migrations.into_iter().filter(|m| m.version > own).collect();
    let stored = txn
        .meta(PENDING_KEY)?
        .map(|b| wire::decode_list(&b))
        .unwrap_or_default();
    if stored == wanted || wanted.is_empty() {
        return Ok(());
    }
    txn.put_meta(PENDING_KEY, Some(&wire::encode_list(&wanted)))?;
    ctx.events.push(Event::MigrationsReceived {
        versions: wanted.iter().map(|m| m.version).collect(),
    });
    Ok(())
}
