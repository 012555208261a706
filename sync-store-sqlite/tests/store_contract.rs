//! The `Store` contract on SQLite, for entity types without a table: each
//! method against its documented contract, and random operation sequences
//! compared with the reference implementation (`MemoryStore`).

mod common;

use proptest::prelude::*;
use sync_core::{
    AuditRecord, ConflictSide, Entity, EntityKey, InFlight, NodeId, NodeInfo, OpenConflict,
    ParkedChange, PeerState, PendingQuery, Record, Role, SecurityEvent, SecurityKind, Store,
    StoreErrorKind, StoreTxn, Timestamp, Uuid, Value, VersionRecord,
};
use sync_store_memory::MemoryStore;
use sync_store_sqlite::{SqliteOptions, SqliteStore};

fn store() -> SqliteStore {
    SqliteStore::open_in_memory(SqliteOptions::default()).unwrap()
}

fn node(n: u128) -> NodeId {
    NodeId(Uuid::from_u128(n))
}

fn note(id: u128, text: &str, origin: NodeId) -> Entity {
    Entity::new_version(
        EntityKey::new("Note", Uuid::from_u128(id)),
        Timestamp::from_micros(id as i64 * 10),
        false,
        origin,
        Record::from([
            ("text".to_owned(), Value::from(text)),
            (
                "tags".to_owned(),
                Value::List(vec![Value::Int(1), Value::Null]),
            ),
        ]),
    )
}

fn peer_state(n: u128) -> PeerState {
    let mut p = PeerState::new(NodeInfo::new(node(n), format!("N{n}"), "Node", Role::Node));
    p.sent_packet_no = 7;
    p.received_packet_no = 3;
    p.received_digest = [5; 32];
    p.peer_ack_high = 2;
    p.acked_seq = 11;
    p.resend_own_upto = 4;
    p.resync_requested = true;
    p.last_sync_in = Some(Timestamp::from_secs(9));
    p.schema_version = Some("1.2.0".into());
    p.in_flight = vec![
        InFlight {
            packet_no: 6,
            upto_seq: 10,
            digest: [1; 32],
            resync: false,
        },
        InFlight {
            packet_no: 7,
            upto_seq: 12,
            digest: [2; 32],
            resync: true,
        },
    ];
    p
}

#[test]
fn dropping_a_transaction_discards_every_write() {
    let mut s = store();
    {
        let mut txn = s.begin().unwrap();
        txn.set_local_node(&NodeInfo::new(node(1), "HUB", "Hub", Role::Hub))
            .unwrap();
        txn.put_peer(&peer_state(2)).unwrap();
        txn.put_entity(&note(1, "a", node(1)), node(1), Timestamp::from_secs(5))
            .unwrap();
        txn.add_security_event(&SecurityEvent {
            at: Timestamp::EPOCH,
            peer: None,
            kind: SecurityKind::Corrupt,
            detail: "x".into(),
        })
        .unwrap();
        assert!(
            txn.entity(&note(1, "", node(1)).key).unwrap().is_some(),
            "reads see own writes"
        );
    }
    let txn = s.begin().unwrap();
    assert!(txn.local_node().unwrap().is_none());
    assert!(txn.peers().unwrap().is_empty());
    assert!(txn.entity(&note(1, "", node(1)).key).unwrap().is_none());
    assert!(txn.security_events().unwrap().is_empty());
    assert_eq!(txn.last_seq().unwrap(), 0);
}

#[test]
fn committed_writes_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let me = NodeInfo::new(node(1), "HUB", "Hub", Role::Hub);
    {
        let mut s = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        let mut txn = s.begin().unwrap();
        txn.set_local_node(&me).unwrap();
        txn.put_peer(&peer_state(2)).unwrap();
        txn.put_entity(&note(1, "a", node(2)), node(2), Timestamp::from_secs(5))
            .unwrap();
        txn.commit().unwrap();
    }
    let mut s = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    let txn = s.begin().unwrap();
    assert_eq!(txn.local_node().unwrap(), Some(me));
    assert_eq!(txn.peer(node(2)).unwrap(), Some(peer_state(2)));
    let stored = txn.entity(&note(1, "", node(1)).key).unwrap().unwrap();
    assert_eq!(stored.entity, note(1, "a", node(2)));
    assert_eq!(
        (stored.seq, stored.created_seq, stored.source),
        (1, 1, node(2))
    );
}

#[test]
fn sequences_increase_and_created_seq_is_kept() {
    let mut s = store();
    let mut txn = s.begin().unwrap();
    assert_eq!(
        txn.put_entity(&note(1, "a", node(1)), node(1), Timestamp::from_secs(5))
            .unwrap(),
        1
    );
    assert_eq!(
        txn.put_entity(&note(2, "b", node(1)), node(1), Timestamp::from_secs(5))
            .unwrap(),
        2
    );
    assert_eq!(
        txn.put_entity(&note(1, "c", node(3)), node(3), Timestamp::from_secs(5))
            .unwrap(),
        3
    );
    txn.commit().unwrap();
    let mut txn = s.begin().unwrap();
    let one = txn.entity(&note(1, "", node(1)).key).unwrap().unwrap();
    assert_eq!((one.seq, one.created_seq, one.source), (3, 1, node(3)));
    assert_eq!(
        txn.put_entity(&note(2, "d", node(1)), node(1), Timestamp::from_secs(5))
            .unwrap(),
        4
    );
    assert_eq!(txn.last_seq().unwrap(), 4);
}

#[test]
fn pending_follows_the_query() {
    let mut s = store();
    let mut txn = s.begin().unwrap();
    txn.put_entity(&note(1, "a", node(1)), node(1), Timestamp::from_secs(5))
        .unwrap(); // seq 1 local
    txn.put_entity(&note(2, "b", node(2)), node(2), Timestamp::from_secs(5))
        .unwrap(); // seq 2 from peer 2
    txn.put_entity(&note(3, "c", node(3)), node(3), Timestamp::from_secs(5))
        .unwrap(); // seq 3 from peer 3
    txn.put_entity(&note(4, "d", node(2)), node(2), Timestamp::from_secs(5))
        .unwrap(); // seq 4 from peer 2
    let q = |after_seq, resend_own_upto, limit| PendingQuery {
        peer: node(2),
        after_seq,
        resend_own_upto,
        limit,
    };
    let seqs =
        |q: PendingQuery| -> Vec<u64> { txn.pending(&q).unwrap().iter().map(|s| s.seq).collect() };
    assert_eq!(seqs(q(0, 0, 10)), vec![1, 3]);
    assert_eq!(seqs(q(1, 0, 10)), vec![3]);
    assert_eq!(seqs(q(0, 2, 10)), vec![1, 2, 3]);
    assert_eq!(seqs(q(0, 4, 2)), vec![1, 2]);
    assert_eq!(txn.count_pending(&q(0, 4, 2)).unwrap(), 4);
    assert_eq!(txn.count_pending(&q(0, 0, 0)).unwrap(), 2);
}

#[test]
fn entities_page_by_id_with_tombstones() {
    let mut s = store();
    let mut txn = s.begin().unwrap();
    for i in [5u128, 1, 3, 2, 4] {
        let mut e = note(i, "x", node(1));
        e.is_deleted = i == 3;
        txn.put_entity(&e, node(1), Timestamp::from_secs(5))
            .unwrap();
    }
    let ids = |after: Option<u128>, limit| -> Vec<u128> {
        txn.entities("Note", after.map(Uuid::from_u128), limit)
            .unwrap()
            .iter()
            .map(|s| s.entity.key.id.as_u128())
            .collect()
    };
    assert_eq!(ids(None, 10), vec![1, 2, 3, 4, 5]);
    assert_eq!(ids(Some(2), 2), vec![3, 4]);
    assert!(txn.entities("Other", None, 10).unwrap().is_empty());
}

#[test]
fn records_round_trip_in_order() {
    let mut s = store();
    let mut txn = s.begin().unwrap();
    let key = note(1, "", node(1)).key;
    let version = |i: u128| VersionRecord {
        id: Uuid::from_u128(100 + i),
        key: key.clone(),
        source_node: node(2),
        arrival_time: Timestamp::from_secs(i as i64),
        data: note(1, &format!("v{i}"), node(2)),
        resolution: "server-wins: hub version kept".into(),
    };
    txn.add_version(&version(1)).unwrap();
    txn.add_version(&version(2)).unwrap();
    assert_eq!(txn.versions(&key).unwrap(), vec![version(1), version(2)]);
    let audit = |i: u128| AuditRecord {
        id: Uuid::from_u128(200 + i),
        at: Timestamp::from_secs(1),
        key: key.clone(),
        peer: node(2),
        strategy: "last-writer-wins".into(),
        winner: if i % 2 == 0 {
            ConflictSide::Local
        } else {
            ConflictSide::Merged
        },
        local_origin: node(1),
        local_updated_at: Timestamp::from_secs(2),
        incoming_origin: node(2),
        incoming_updated_at: Timestamp::from_secs(3),
        digests: [[1; 32], [i as u8; 32]],
        detail: format!("audit {i}"),
    };
    for i in 0..4 {
        txn.add_audit(&audit(i)).unwrap();
    }
    assert_eq!(txn.audit_log(1, 2).unwrap(), vec![audit(1), audit(2)]);
    assert_eq!(txn.audit_log(0, usize::MAX).unwrap().len(), 4);
    let conflict = |i: u128| OpenConflict {
        id: Uuid::from_u128(300 + i),
        key: key.clone(),
        current: note(1, "mine", node(1)),
        incoming: note(1, "theirs", node(2)),
        from: node(2),
        arrived_at: Timestamp::from_secs(4),
    };
    txn.put_open_conflict(&conflict(1)).unwrap();
    txn.put_open_conflict(&conflict(2)).unwrap();
    assert_eq!(
        txn.take_open_conflict(Uuid::from_u128(301)).unwrap(),
        Some(conflict(1))
    );
    assert_eq!(txn.take_open_conflict(Uuid::from_u128(301)).unwrap(), None);
    assert_eq!(txn.open_conflicts().unwrap(), vec![conflict(2)]);
    let parked = |child: u128, parent: u128| ParkedChange {
        entity: note(child, "child", node(2)),
        from: node(2),
        waiting_for: EntityKey::new("Parent", Uuid::from_u128(parent)),
        arrived_at: Timestamp::from_secs(5),
    };
    txn.park(&parked(12, 1)).unwrap();
    txn.park(&parked(11, 1)).unwrap();
    txn.park(&parked(13, 2)).unwrap();
    txn.park(&parked(13, 1)).unwrap(); // replaces the earlier one for child 13
    txn.unpark(&note(11, "", node(1)).key).unwrap();
    assert_eq!(txn.parked().unwrap(), vec![parked(12, 1), parked(13, 1)]);
    let parent = EntityKey::new("Parent", Uuid::from_u128(1));
    assert_eq!(
        txn.take_parked(&parent).unwrap(),
        vec![parked(12, 1), parked(13, 1)]
    );
    assert!(txn.parked().unwrap().is_empty());
    let event = SecurityEvent {
        at: Timestamp::from_secs(6),
        peer: Some(node(9)),
        kind: SecurityKind::RestoreDetected,
        detail: "restored".into(),
    };
    txn.add_security_event(&event).unwrap();
    assert_eq!(txn.security_events().unwrap(), vec![event]);
}

#[test]
fn peers_round_trip_in_id_order() {
    let mut s = store();
    let mut txn = s.begin().unwrap();
    txn.put_peer(&peer_state(9)).unwrap();
    txn.put_peer(&peer_state(3)).unwrap();
    let mut changed = peer_state(9);
    changed.in_flight.pop();
    changed.revoked = true;
    txn.put_peer(&changed).unwrap();
    assert_eq!(txn.peers().unwrap(), vec![peer_state(3), changed]);
    assert_eq!(txn.peer(node(4)).unwrap(), None);
}

#[test]
fn a_failed_write_poisons_the_store_until_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("full.db");
    let mut s = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    {
        let mut txn = s.begin().unwrap();
        txn.put_entity(&note(1, "small", node(1)), node(1), Timestamp::from_secs(5))
            .unwrap();
        txn.commit().unwrap();
    }
    let pages: i64 = s
        .connection()
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .unwrap();
    s.connection()
        .execute_batch(&format!("PRAGMA max_page_count = {pages}"))
        .unwrap();
    let mut big = note(2, "big", node(1));
    big.fields
        .insert("blob".into(), Value::Bytes(vec![7; 1 << 20]));
    let first = {
        let mut txn = s.begin().unwrap();
        txn.put_entity(&big, node(1), Timestamp::from_secs(5))
            .and_then(|_| txn.commit())
    };
    assert_eq!(first.unwrap_err().kind(), StoreErrorKind::Backend);
    assert!(s.poisoned().is_some());
    let mut txn = s.begin().unwrap();
    let again = txn
        .put_entity(&note(3, "more", node(1)), node(1), Timestamp::from_secs(5))
        .unwrap_err();
    assert_eq!(again.kind(), StoreErrorKind::Poisoned);
    assert!(again.to_string().contains("reopen"), "{again}");
    drop(txn);
    drop(s);
    let mut s = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    let txn = s.begin().unwrap();
    assert!(txn.entity(&big.key).unwrap().is_none(), "nothing partial");
    assert!(txn.entity(&note(1, "", node(1)).key).unwrap().is_some());
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.db");
    drop(SqliteStore::open(&path, SqliteOptions::default()).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "UPDATE _sync_meta SET value = 99 WHERE key = 'schema_version'",
        [],
    )
    .unwrap();
    drop(conn);
    let err = SqliteStore::open(&path, SqliteOptions::default()).unwrap_err();
    assert!(
        matches!(
            err,
            sync_store_sqlite::OpenError::NewerSchema { found: 99, .. }
        ),
        "{err}"
    );
}

/// One operation of the model-based comparison.
#[derive(Clone, Debug)]
enum Op {
    Put {
        id: u8,
        text: u8,
        source: u8,
        deleted: bool,
    },
    Park {
        child: u8,
        parent: u8,
    },
    Unpark {
        child: u8,
    },
    TakeParked {
        parent: u8,
    },
    Version {
        id: u8,
    },
    Commit,
    Rollback,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..8, any::<u8>(), 0u8..3, any::<bool>())
            .prop_map(|(id, text, source, deleted)| Op::Put { id, text, source, deleted }),
        1 => (0u8..8, 0u8..4).prop_map(|(child, parent)| Op::Park { child, parent }),
        1 => (0u8..8).prop_map(|child| Op::Unpark { child }),
        1 => (0u8..4).prop_map(|parent| Op::TakeParked { parent }),
        1 => (0u8..8).prop_map(|id| Op::Version { id }),
        1 => Just(Op::Commit),
        1 => Just(Op::Rollback),
    ]
}

/// Everything observable through the trait, for comparison.
fn snapshot<S: Store>(s: &mut S) -> String {
    let txn = s.begin().unwrap();
    let mut out = String::new();
    for peer in 0..3u128 {
        for after in [0, 2, 5] {
            let q = PendingQuery {
                peer: node(peer),
                after_seq: after,
                resend_own_upto: 3,
                limit: 4,
            };
            out += &format!(
                "{:?} {}\n",
                txn.pending(&q).unwrap(),
                txn.count_pending(&q).unwrap()
            );
        }
    }
    out += &format!(
        "{:?}\n{:?}\n{}\n",
        txn.entities("Note", None, 100).unwrap(),
        txn.parked().unwrap(),
        txn.last_seq().unwrap()
    );
    for id in 0..8u128 {
        out += &format!(
            "{:?}\n",
            txn.versions(&EntityKey::new("Note", Uuid::from_u128(id)))
                .unwrap()
        );
    }
    out
}

fn apply<T: StoreTxn>(txn: &mut T, op: &Op) -> String {
    match op {
        Op::Put {
            id,
            text,
            source,
            deleted,
        } => {
            let mut e = note(
                u128::from(*id),
                &text.to_string(),
                node(u128::from(*source)),
            );
            e.is_deleted = *deleted;
            format!(
                "{:?}",
                txn.put_entity(&e, node(u128::from(*source)), Timestamp::from_secs(5))
                    .unwrap()
            )
        }
        Op::Park { child, parent } => {
            txn.park(&ParkedChange {
                entity: note(u128::from(*child), "p", node(1)),
                from: node(1),
                waiting_for: EntityKey::new("Parent", Uuid::from_u128(u128::from(*parent))),
                arrived_at: Timestamp::EPOCH,
            })
            .unwrap();
            String::new()
        }
        Op::Unpark { child } => {
            txn.unpark(&EntityKey::new("Note", Uuid::from_u128(u128::from(*child))))
                .unwrap();
            String::new()
        }
        Op::TakeParked { parent } => format!(
            "{:?}",
            txn.take_parked(&EntityKey::new(
                "Parent",
                Uuid::from_u128(u128::from(*parent))
            ))
            .unwrap()
        ),
        Op::Version { id } => {
            let key = EntityKey::new("Note", Uuid::from_u128(u128::from(*id)));
            txn.add_version(&VersionRecord {
                id: Uuid::from_u128(u128::from(*id) + 1000),
                key: key.clone(),
                source_node: node(1),
                arrival_time: Timestamp::EPOCH,
                data: note(u128::from(*id), "old", node(1)),
                resolution: "r".into(),
            })
            .unwrap();
            String::new()
        }
        Op::Commit | Op::Rollback => unreachable!("handled by the caller"),
    }
}

fn run<S: Store>(s: &mut S, ops: &[Op]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < ops.len() {
        let mut txn = s.begin().unwrap();
        let mut end = Op::Rollback;
        while i < ops.len() {
            let op = &ops[i];
            i += 1;
            if matches!(op, Op::Commit | Op::Rollback) {
                end = op.clone();
                break;
            }
            out.push(apply(&mut txn, op));
        }
        if matches!(end, Op::Commit) {
            txn.commit().unwrap();
        } else {
            drop(txn);
        }
        out.push(snapshot(s));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]

    /// Any sequence of writes, commits and rollbacks leaves the SQLite store
    /// observably identical to the reference store.
    #[test]
    fn behaves_like_the_reference_store(ops in proptest::collection::vec(op(), 1..40)) {
        let mut reference = MemoryStore::new();
        let mut sqlite = store();
        prop_assert_eq!(run(&mut sqlite, &ops), run(&mut reference, &ops));
    }
}
