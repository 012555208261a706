//! Transaction cases: a dropped transaction, or one abandoned after an
//! error, leaves nothing behind, for every kind of write; a commit makes
//! everything visible.

use sync_core::{
    AuditRecord, NodeInfo, OpenConflict, ParkedChange, PeerState, PendingQuery, SecurityEvent,
    Store, StoreErrorKind, StoreTxn, StoredEntity, VersionRecord,
};

use super::entities::report;
use super::history::{sample_audit, sample_conflict, sample_security, sample_version};
use super::parked::sample_parked;
use super::registry::busy_peer;
use super::{abandon, read, write};
use crate::crash::CrashingStore;
use crate::fixtures::{LINE, REPORT, hub_id, hub_info, key, node_id, node_info, t};

/// Everything a store shows through the trait (except `last_seq`, which
/// may stay advanced after a rollback).
#[derive(Debug, PartialEq)]
pub struct Dump {
    local: Option<NodeInfo>,
    peers: Vec<PeerState>,
    entities: Vec<StoredEntity>,
    pending: Vec<StoredEntity>,
    versions: Vec<VersionRecord>,
    audit: Vec<AuditRecord>,
    conflicts: Vec<OpenConflict>,
    parked: Vec<ParkedChange>,
    security: Vec<SecurityEvent>,
}

/// Reads a [`Dump`] (entities of the fixture report types only).
pub fn dump<S: Store>(store: &mut S) -> Dump {
    read(store, |txn| {
        let mut entities = txn.entities(REPORT, None, usize::MAX).expect("entities");
        entities.extend(txn.entities(LINE, None, usize::MAX).expect("entities"));
        let mut versions = Vec::new();
        for s in &entities {
            versions.extend(txn.versions(&s.entity.key).expect("versions"));
        }
        let mut parked = txn.parked().expect("parked");
        parked.sort_by(|a, b| a.entity.key.cmp(&b.entity.key));
        Dump {
            local: txn.local_node().expect("local_node"),
            peers: txn.peers().expect("peers"),
            pending: txn
                .pending(&PendingQuery {
                    peer: hub_id(),
                    after_seq: 0,
                    resend_own_upto: 0,
                    limit: usize::MAX,
                })
                .expect("pending"),
            entities,
            versions,
            audit: txn.audit_log(0, usize::MAX).expect("audit_log"),
            conflicts: txn.open_conflicts().expect("open_conflicts"),
            parked,
            security: txn.security_events().expect("security_events"),
        }
    })
}

/// Commits one record of every kind, so that updates, takes and unparks
/// have something to act on.
pub fn baseline<S: Store>(store: &mut S) {
    write(store, |txn| {
        txn.set_local_node(&node_info(0)).expect("set_local_node");
        txn.put_peer(&PeerState::new(hub_info())).expect("put_peer");
        txn.put_peer(&busy_peer(node_info(5))).expect("put_peer");
        txn.put_entity(&report(1, 1), node_id(0), t(1))
            .expect("put_entity");
        txn.put_entity(&report(2, 1), hub_id(), t(1))
            .expect("put_entity");
        txn.add_version(&sample_version(1, &key(REPORT, 1)))
            .expect("add_version");
        txn.add_audit(&sample_audit(1)).expect("add_audit");
        txn.put_open_conflict(&sample_conflict(1))
            .expect("put_open_conflict");
        txn.put_open_conflict(&sample_conflict(2))
            .expect("put_open_conflict");
        txn.put_open_conflict(&sample_conflict(3))
            .expect("put_open_conflict");
        txn.park(&sample_parked(10, 100, 1)).expect("park");
        txn.park(&sample_parked(11, 100, 1)).expect("park");
        txn.park(&sample_parked(12, 200, 1)).expect("park");
        txn.add_security_event(&sample_security(1))
            .expect("add_security_event");
    });
}

/// Applies `change` in a transaction, checks that the transaction sees it
/// (`visible`), drops the transaction, and checks that the store is exactly
/// as before.
fn rolls_back<S: Store>(
    make: impl Fn() -> S,
    change: impl FnOnce(&mut S::Txn<'_>),
    visible: impl FnOnce(&S::Txn<'_>) -> bool,
) {
    let mut store = make();
    baseline(&mut store);
    let before = dump(&mut store);
    abandon(&mut store, |txn| {
        change(txn);
        assert!(visible(txn), "the transaction sees its own write");
    });
    assert_eq!(
        dump(&mut store),
        before,
        "a dropped transaction left changes"
    );
}

/// `set_local_node` is rolled back.
pub fn dropped_txn_discards_local_node<S: Store>(make: impl Fn() -> S) {
    rolls_back(
        make,
        |txn| txn.set_local_node(&node_info(9)).expect("set_local_node"),
        |txn| txn.local_node().expect("local_node") == Some(node_info(9)),
    );
}

/// A new peer is rolled back.
pub fn dropped_txn_discards_peer<S: Store>(make: impl Fn() -> S) {
    rolls_back(
        make,
        |txn| {
            txn.put_peer(&PeerState::new(node_info(7)))
                .expect("put_peer")
        },
        |txn| txn.peer(node_id(7)).expect("peer").is_some(),
    );
}

/// A peer update is rolled back to the committed state.
pub fn dropped_txn_discards_peer_update<S: Store>(make: impl Fn() -> S) {
    rolls_back(
        make,
        |txn| {
            let mut peer = txn.peer(hub_id()).expect("peer").expect("stored");
            peer.sent_packet_no = 99;
            peer.acked_seq = 99;
            txn.put_peer(&peer).expect("put_peer");
        },
        |txn| {
            txn.peer(hub_id())
                .expect("peer")
                .expect("stored")
                .sent_packet_no
                == 99
        },
    );
}

/// A new entity is rolled back (and no longer pending).
pub fn dropped_txn_discards_new_entity<S: Store>(make: impl Fn() -> S) {
    rolls_back(
        make,
        |txn| {
            txn.put_entity(&report(3, 1), node_id(0), t(1))
                .expect("put_entity");
        },
        |txn| txn.entity(&key(REPORT, 3)).expect("entity").is_some(),
    );
}

/// An entity update (twice, with a tombstone) is rolled back to the
/// committed version, sequence and pending position.
pub fn dropped_txn_discards_entity_update<S: Store>(make: impl Fn() -> S) {
    rolls_back(
        make,
        |txn| {
            txn.put_entity(&report(1, 2), node_id(3), t(1))
                .expect("put_entity");
            let mut tombstone = report(1, 3);
            tombstone.is_deleted = true;
            txn.put_entity(&tombstone, hub_id(), t(1))
                .expect("put_entity");
        },
        |txn| {
            txn.entity(&key(REPORT, 1))
                .expect("entity")
                .is_some_and(|s| s.entity.is_deleted)
        },
    );
}

/// `add_version` is rolled back.
pub fn dropped_txn_discards_version<S: Store>(make: impl Fn() -> S) {
    rolls_back(
        make,
        |txn| {
            txn.add_version(&sample_version(2, &key(REPORT, 1)))
                .expect("add_version")
        },
        |txn| txn.versions(&key(REPORT, 1)).expect("versions").len() == 2,
    );
}

/// `add_audit` is rolled back.
pub fn dropped_txn_discards_audit<S: Store>(make: impl Fn() -> S) {
    rolls_back(
        make,
        |txn| txn.add_audit(&sample_audit(2)).expect("add_audit"),
        |txn| txn.audit_log(0, 10).expect("audit_log").len() == 2,
    );
}

/// `put_open_conflict` is rolled back.
pub fn dropped_txn_discards_open_conflict<S: Store>(make: impl Fn() -> S) {
    rolls_back(
        make,
        |txn| {
            txn.put_open_conflict(&sample_conflict(4))
                .expect("put_open_conflict")
        },
        |txn| txn.open_conflicts().expect("open_conflicts").len() == 4,
    );
}

/// A taken conflict is back, in its place in the queue.
pub fn dropped_txn_restores_taken_conflict<S: Store>(make: impl Fn() -> S) {
    rolls_back(
        make,
        |txn| {
            let taken = txn.take_open_conflict(sample_conflict(2).id).expect("take");
            assert_eq!(taken, Some(sample_conflict(2)));
        },
        |txn| txn.open_conflicts().expect("open_conflicts").len() == 2,
    );
}

/// A newly parked child is rolled back.
pub fn dropped_txn_discards_park<S: Store>(make: impl Fn() -> S) {
    rolls_back(
        make,
        |txn| txn.park(&sample_parked(13, 300, 1)).expect("park"),
        |txn| txn.parked().expect("parked").len() == 4,
    );
}

/// A replaced parked child is restored to its earlier version.
pub fn dropped_txn_restores_replaced_park<S: Store>(make: impl Fn() -> S) {
    rolls_back(
        make,
        |txn| txn.park(&sample_parked(10, 300, 2)).expect("park"),
        |txn| {
            txn.parked()
                .expect("parked")
                .contains(&sample_parked(10, 300, 2))
        },
    );
}

/// Children taken with `take_parked` are parked again.
pub fn dropped_txn_restores_taken_parked<S: Store>(make: impl Fn() -> S) {
    rolls_back(
        make,
        |txn| {
            let taken = txn.take_parked(&key(REPORT, 100)).expect("take_parked");
            assert_eq!(taken.len(), 2);
        },
        |txn| txn.parked().expect("parked").len() == 1,
    );
}

/// An unparked child is parked again.
pub fn dropped_txn_restores_unparked<S: Store>(make: impl Fn() -> S) {
    rolls_back(
        make,
        |txn| txn.unpark(&key(LINE, 12)).expect("unpark"),
        |txn| txn.parked().expect("parked").len() == 2,
    );
}

/// `add_security_event` is rolled back.
pub fn dropped_txn_discards_security_event<S: Store>(make: impl Fn() -> S) {
    rolls_back(
        make,
        |txn| {
            txn.add_security_event(&sample_security(2))
                .expect("add_security_event")
        },
        |txn| txn.security_events().expect("security_events").len() == 2,
    );
}

/// Every kind of write in one transaction, interleaved: all rolled back.
pub fn dropped_txn_discards_every_kind_at_once<S: Store>(make: impl Fn() -> S) {
    rolls_back(
        make,
        |txn| every_kind_of_write(txn),
        |txn| {
            txn.entity(&key(REPORT, 3)).expect("entity").is_some()
                && txn.parked().expect("parked").len() == 2
        },
    );
}

/// One write of every kind, in an order that mixes them.
fn every_kind_of_write<T: StoreTxn>(txn: &mut T) {
    txn.put_entity(&report(3, 1), node_id(0), t(1))
        .expect("put_entity");
    txn.set_local_node(&node_info(9)).expect("set_local_node");
    txn.park(&sample_parked(10, 300, 2)).expect("park");
    txn.add_version(&sample_version(2, &key(REPORT, 3)))
        .expect("add_version");
    txn.put_entity(&report(1, 5), hub_id(), t(1))
        .expect("put_entity");
    txn.put_peer(&PeerState::new(node_info(7)))
        .expect("put_peer");
    txn.take_open_conflict(sample_conflict(1).id).expect("take");
    txn.add_audit(&sample_audit(2)).expect("add_audit");
    txn.take_parked(&key(REPORT, 100)).expect("take_parked");
    txn.put_open_conflict(&sample_conflict(4))
        .expect("put_open_conflict");
    txn.unpark(&key(LINE, 12)).expect("unpark");
    txn.add_security_event(&sample_security(2))
        .expect("add_security_event");
    txn.park(&sample_parked(14, 400, 1)).expect("park");
    txn.put_entity(&report(3, 2), node_id(1), t(1))
        .expect("put_entity");
}

/// A transaction whose `n`-th operation fails (at every `n`) and is then
/// abandoned leaves the store exactly as it was; the error has kind
/// `Backend`.
pub fn txn_abandoned_after_error_leaves_nothing<S: Store>(make: impl Fn() -> S) {
    let mut reference = make();
    baseline(&mut reference);
    let before = dump(&mut reference);
    let mut total = CrashingStore::new(make());
    {
        let mut txn = total.begin().expect("begin");
        every_kind_of_write_fallible(&mut txn).expect("unarmed");
    }
    let ops = total.ops();
    for n in 0..ops {
        let mut store = make();
        baseline(&mut store);
        let mut crashing = CrashingStore::new(store);
        crashing.crash_after(n);
        let error = match crashing.begin() {
            Ok(mut txn) => every_kind_of_write_fallible(&mut txn).expect_err("armed"),
            Err(e) => e,
        };
        assert_eq!(error.kind(), StoreErrorKind::Backend);
        let mut store = crashing.into_inner();
        assert_eq!(dump(&mut store), before, "failure at operation {n}");
    }
}

/// [`every_kind_of_write`], stopping at the first error.
fn every_kind_of_write_fallible<T: StoreTxn>(txn: &mut T) -> Result<(), sync_core::StoreError> {
    txn.put_entity(&report(3, 1), node_id(0), t(1))?;
    txn.set_local_node(&node_info(9))?;
    txn.park(&sample_parked(10, 300, 2))?;
    txn.add_version(&sample_version(2, &key(REPORT, 3)))?;
    txn.put_entity(&report(1, 5), hub_id(), t(1))?;
    txn.put_peer(&PeerState::new(node_info(7)))?;
    txn.take_open_conflict(sample_conflict(1).id)?;
    txn.add_audit(&sample_audit(2))?;
    txn.take_parked(&key(REPORT, 100))?;
    txn.put_open_conflict(&sample_conflict(4))?;
    txn.unpark(&key(LINE, 12))?;
    txn.add_security_event(&sample_security(2))?;
    txn.park(&sample_parked(14, 400, 1))?;
    txn.put_entity(&report(3, 2), node_id(1), t(1))?;
    Ok(())
}

/// After a commit, a fresh transaction sees every kind of write.
pub fn commit_makes_every_kind_visible<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    baseline(&mut store);
    write(&mut store, |txn| every_kind_of_write(txn));
    read(&mut store, |txn| {
        assert_eq!(txn.local_node().expect("local_node"), Some(node_info(9)));
        assert!(txn.peer(node_id(7)).expect("peer").is_some());
        let three = txn
            .entity(&key(REPORT, 3))
            .expect("entity")
            .expect("stored");
        assert_eq!(three.entity, report(3, 2));
        assert_eq!(three.source, node_id(1));
        assert_eq!(
            txn.entity(&key(REPORT, 1))
                .expect("entity")
                .expect("stored")
                .entity,
            report(1, 5)
        );
        assert_eq!(txn.versions(&key(REPORT, 3)).expect("versions").len(), 1);
        assert_eq!(txn.audit_log(0, 10).expect("audit_log").len(), 2);
        let conflicts = txn.open_conflicts().expect("open_conflicts");
        let ids: Vec<_> = conflicts.iter().map(|c| c.id).collect();
        let expected: Vec<_> = [2, 3, 4]
            .into_iter()
            .map(|n| sample_conflict(n).id)
            .collect();
        assert_eq!(ids, expected);
        let mut parked = txn.parked().expect("parked");
        parked.sort_by(|a, b| a.entity.key.cmp(&b.entity.key));
        assert_eq!(
            parked,
            vec![sample_parked(10, 300, 2), sample_parked(14, 400, 1)]
        );
        assert_eq!(txn.security_events().expect("security_events").len(), 2);
    });
}

/// A committed transaction is untouched by a later transaction that is
/// dropped.
pub fn committed_txn_survives_later_rollback<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    baseline(&mut store);
    write(&mut store, |txn| {
        txn.put_entity(&report(3, 1), node_id(0), t(1))
            .expect("put_entity")
    });
    let committed = dump(&mut store);
    abandon(&mut store, |txn| every_kind_of_write(txn));
    assert_eq!(dump(&mut store), committed);
    write(&mut store, |txn| {
        txn.put_entity(&report(4, 1), node_id(0), t(1))
            .expect("put_entity")
    });
    let after = dump(&mut store);
    assert_eq!(after.entities.len(), committed.entities.len() + 1);
}
