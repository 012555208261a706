//! Change-registry cases: `pending` and `count_pending` (order, limit,
//! `after_seq`, echo suppression, coalescing).

use sync_core::{NodeId, PeerState, PendingQuery, Store, StoreTxn, StoredEntity, Uuid};

use super::entities::{put, report};
use super::{read, write};
use crate::fixtures::{hub_id, hub_info, node_id, t};

/// The query for everything owed to `peer` after `after_seq`.
pub fn query(peer: NodeId, after_seq: u64, limit: usize) -> PendingQuery {
    PendingQuery {
        peer,
        after_seq,
        resend_own_upto: 0,
        limit,
    }
}

/// Runs a pending query.
pub fn pending<S: Store>(store: &mut S, query: &PendingQuery) -> Vec<StoredEntity> {
    read(store, |txn| txn.pending(query).expect("pending"))
}

/// Runs a count query.
pub fn count<S: Store>(store: &mut S, query: &PendingQuery) -> u64 {
    read(store, |txn| {
        txn.count_pending(query).expect("count_pending")
    })
}

fn ids(rows: &[StoredEntity]) -> Vec<u128> {
    rows.iter().map(|s| s.entity.key.id.as_u128()).collect()
}

/// Twenty entities written in a scrambled id order: rows come back in
/// ascending sequence (write order), not id order.
fn scrambled<S: Store>(store: &mut S, source: NodeId) -> Vec<u64> {
    write(store, |txn| {
        (0..20u128)
            .map(|i| {
                txn.put_entity(&report(i * 13 % 20, i as i64), source, t(1))
                    .expect("put_entity")
            })
            .collect()
    })
}

/// Pending rows come in ascending sequence order.
pub fn pending_is_ascending_by_seq<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    let seqs = scrambled(&mut store, node_id(0));
    let rows = pending(&mut store, &query(hub_id(), 0, 100));
    assert_eq!(rows.iter().map(|s| s.seq).collect::<Vec<_>>(), seqs);
    assert_eq!(
        ids(&rows),
        (0..20u128).map(|i| i * 13 % 20).collect::<Vec<_>>()
    );
}

/// At most `limit` rows, the lowest sequences first.
pub fn pending_respects_limit<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    let seqs = scrambled(&mut store, node_id(0));
    for limit in [1, 3, 19, 20, 21] {
        let rows = pending(&mut store, &query(hub_id(), 0, limit));
        let got: Vec<u64> = rows.iter().map(|s| s.seq).collect();
        assert_eq!(got, seqs[..limit.min(20)], "limit {limit}");
    }
}

/// Only sequences strictly above `after_seq`.
pub fn pending_respects_after_seq<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    let seqs = scrambled(&mut store, node_id(0));
    for cut in [0usize, 1, 10, 19] {
        let rows = pending(&mut store, &query(hub_id(), seqs[cut], 100));
        let got: Vec<u64> = rows.iter().map(|s| s.seq).collect();
        assert_eq!(got, seqs[cut + 1..], "after {}", seqs[cut]);
    }
    let last = *seqs.last().expect("twenty");
    assert!(pending(&mut store, &query(hub_id(), last, 100)).is_empty());
    assert!(pending(&mut store, &query(hub_id(), u64::MAX, 100)).is_empty());
}

/// A change is never owed back to the node it came from.
pub fn pending_skips_changes_from_the_peer<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    put(&mut store, &report(1, 1), node_id(1));
    put(&mut store, &report(2, 1), node_id(2));
    put(&mut store, &report(3, 1), hub_id());
    put(&mut store, &report(4, 1), node_id(1));
    let rows = pending(&mut store, &query(node_id(1), 0, 100));
    assert_eq!(ids(&rows), vec![2, 3]);
    assert_eq!(count(&mut store, &query(node_id(1), 0, 100)), 2);
}

/// With `resend_own_upto`, the peer's own changes up to that sequence are
/// owed to it again (it was restored and lost them); later ones are not.
pub fn pending_resends_own_changes_up_to_mark<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    let first = put(&mut store, &report(1, 1), node_id(1));
    put(&mut store, &report(2, 1), node_id(2));
    let mark = put(&mut store, &report(3, 1), node_id(1));
    put(&mut store, &report(4, 1), node_id(1));
    let q = PendingQuery {
        resend_own_upto: mark,
        ..query(node_id(1), 0, 100)
    };
    assert_eq!(ids(&pending(&mut store, &q)), vec![1, 2, 3]);
    assert_eq!(count(&mut store, &q), 3);
    let q = PendingQuery {
        after_seq: first,
        ..q
    };
    assert_eq!(ids(&pending(&mut store, &q)), vec![2, 3]);
}

/// A change from peer A is owed to peer B (the hub forwards it).
pub fn pending_sends_changes_from_one_peer_to_others<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    put(&mut store, &report(1, 1), node_id(1));
    let to_other = pending(&mut store, &query(node_id(2), 0, 100));
    assert_eq!(ids(&to_other), vec![1]);
    assert_eq!(to_other[0].source, node_id(1));
}

/// Several writes to one entity make one pending row: the latest version at
/// the latest sequence.
pub fn pending_coalesces_writes_to_one_entity<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    put(&mut store, &report(1, 1), node_id(0));
    put(&mut store, &report(2, 1), node_id(0));
    let mut last = 0;
    for n in 2..=6 {
        last = put(&mut store, &report(1, n), node_id(0));
    }
    let rows = pending(&mut store, &query(hub_id(), 0, 100));
    assert_eq!(ids(&rows), vec![2, 1], "entity 1 moved behind entity 2");
    assert_eq!(rows[1].seq, last);
    assert_eq!(rows[1].entity, report(1, 6));
    assert_eq!(count(&mut store, &query(hub_id(), 0, 100)), 2);
    write(&mut store, |txn| {
        for n in 7..=9 {
            txn.put_entity(&report(2, n), node_id(0), t(1))
                .expect("put_entity");
        }
    });
    let rows = pending(&mut store, &query(hub_id(), 0, 100));
    assert_eq!(ids(&rows), vec![1, 2]);
    assert_eq!(rows[1].entity, report(2, 9));
}

/// A change that came from peer P and was then edited locally is owed to P
/// again: the latest source counts.
pub fn pending_after_local_update_of_peer_change<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    let from_peer = put(&mut store, &report(1, 1), node_id(1));
    assert!(pending(&mut store, &query(node_id(1), 0, 100)).is_empty());
    put(&mut store, &report(1, 2), hub_id());
    let rows = pending(&mut store, &query(node_id(1), from_peer, 100));
    assert_eq!(ids(&rows), vec![1]);
}

/// A zero limit gives no rows (the count ignores it).
pub fn pending_limit_zero_is_empty<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    scrambled(&mut store, node_id(0));
    assert!(pending(&mut store, &query(hub_id(), 0, 0)).is_empty());
    assert_eq!(count(&mut store, &query(hub_id(), 0, 0)), 20);
}

/// `count_pending` counts every match, whatever the limit.
pub fn count_pending_ignores_limit<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    scrambled(&mut store, node_id(0));
    for limit in [0, 1, 5, usize::MAX] {
        assert_eq!(count(&mut store, &query(hub_id(), 0, limit)), 20);
    }
}

/// `count_pending` agrees with `pending` under every filter.
pub fn count_pending_matches_pending<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    let sources = [node_id(1), node_id(2), hub_id()];
    let mut seqs = Vec::new();
    for i in 0..60u128 {
        let source = sources[(i * 7 % 3) as usize];
        seqs.push(put(&mut store, &report(i % 23, i as i64), source));
    }
    for peer in [node_id(1), node_id(2), node_id(3)] {
        for after in [0, seqs[10], seqs[40], seqs[59]] {
            for resend in [0, seqs[30]] {
                let q = PendingQuery {
                    peer,
                    after_seq: after,
                    resend_own_upto: resend,
                    limit: usize::MAX,
                };
                let rows = pending(&mut store, &q);
                assert_eq!(rows.len() as u64, count(&mut store, &q), "{q:?}");
                assert!(rows.iter().all(|s| q.matches(s.seq, s.source)), "{q:?}");
                let all = read(&mut store, |txn| {
                    txn.entities(crate::fixtures::REPORT, None, usize::MAX)
                        .expect("entities")
                });
                let expected = all.iter().filter(|s| q.matches(s.seq, s.source)).count();
                assert_eq!(rows.len(), expected, "{q:?}");
            }
        }
    }
}

/// The query built from a stored [`PeerState`] selects exactly what the
/// peer has not acknowledged.
pub fn pending_for_peer_state_round_trip<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    let mut peer = PeerState::new(hub_info());
    write(&mut store, |txn| txn.put_peer(&peer).expect("put_peer"));
    let seqs: Vec<u64> = (0..10u128)
        .map(|i| put(&mut store, &report(i, 1), node_id(0)))
        .collect();
    peer.acked_seq = seqs[6];
    write(&mut store, |txn| txn.put_peer(&peer).expect("put_peer"));
    let rows = read(&mut store, |txn| {
        let stored = txn.peer(peer.id()).expect("peer").expect("stored");
        txn.pending(&PendingQuery::for_peer(&stored, 100))
            .expect("pending")
    });
    assert_eq!(
        rows.iter().map(|s| s.entity.key.id).collect::<Vec<_>>(),
        (7..10u128).map(Uuid::from_u128).collect::<Vec<_>>()
    );
}

/// `visit_pending` hands over what `pending` returns, in the same order,
/// honours the limit, and stops at the change where the visitor breaks (the
/// engine stops loading once a packet is full).
pub fn visit_pending_matches_pending_and_stops<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    let sources = [node_id(1), hub_id()];
    for i in 0..300u128 {
        put(
            &mut store,
            &report(i % 250, i as i64),
            sources[(i % 2) as usize],
        );
    }
    for limit in [0, 1, 63, 64, 65, 130, usize::MAX] {
        let q = PendingQuery {
            limit,
            ..query(node_id(1), 3, limit)
        };
        let expected = pending(&mut store, &q);
        let visited = read(&mut store, |txn| {
            let mut seen = Vec::new();
            txn.visit_pending(&q, &mut |s| {
                seen.push(s);
                std::ops::ControlFlow::Continue(())
            })
            .expect("visit_pending");
            seen
        });
        assert_eq!(visited, expected, "limit {limit}");
    }
    let q = query(node_id(1), 0, usize::MAX);
    let total = pending(&mut store, &q).len();
    assert!(total > 100, "{total} changes are owed, more than a chunk");
    for stop_after in [1usize, 64, 65, 100] {
        let visited = read(&mut store, |txn| {
            let mut seen = 0usize;
            txn.visit_pending(&q, &mut |_| {
                seen += 1;
                if seen == stop_after {
                    std::ops::ControlFlow::Break(())
                } else {
                    std::ops::ControlFlow::Continue(())
                }
            })
            .expect("visit_pending");
            seen
        });
        assert_eq!(visited, stop_after, "the visit stops where asked");
    }
}

/// `count_pending_upto` counts the matching changes up to a sequence:
/// nothing for an empty range, everything up to the last sequence, and the
/// same as filtering `pending` for every range.
pub fn count_pending_upto_counts_a_range<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    let sources = [node_id(1), node_id(2), hub_id()];
    let seqs: Vec<u64> = (0..60u128)
        .map(|i| {
            put(
                &mut store,
                &report(i % 41, i as i64),
                sources[(i % 3) as usize],
            )
        })
        .collect();
    for peer in [node_id(1), node_id(3)] {
        for after in [0, seqs[5], seqs[30]] {
            for upto in [0, after, seqs[20], seqs[45], seqs[59], u64::MAX] {
                let q = PendingQuery {
                    peer,
                    after_seq: after,
                    resend_own_upto: 0,
                    limit: 1,
                };
                let expected = pending(
                    &mut store,
                    &PendingQuery {
                        limit: usize::MAX,
                        ..q
                    },
                )
                .iter()
                .filter(|s| s.seq <= upto)
                .count() as u64;
                let counted = read(&mut store, |txn| {
                    txn.count_pending_upto(&q, upto)
                        .expect("count_pending_upto")
                });
                assert_eq!(counted, expected, "{q:?} up to {upto}");
            }
        }
    }
}
