//! The change sequence under concurrent writers: writers on connections of
//! their own hold their transactions open for a random while after their
//! change (so that, with a plain `SEQUENCE`, a lower number would commit
//! after a higher one became visible), while a reader pages through
//! `pending` with a cursor that only moves forward, as a hub does for a
//! peer. The reader must see every committed change: none is skipped.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sync_conformance::fixtures::{REPORT, entity, key, node_id, record, t};
use sync_core::{PendingQuery, Store, StoreTxn, Value};
use sync_store_postgres::{PgOptions, PgStore, cluster};

const WRITERS: usize = 3;
const WRITES: usize = 40;

#[test]
fn a_forward_cursor_never_skips_a_change_that_commits_late() {
    let mut reader = PgStore::connect(
        &common::url(),
        PgOptions::new()
            .schema(cluster::unique_schema("seq"))
            .temporary(true),
    )
    .expect("connect");
    let done = AtomicBool::new(false);
    let mut seen = BTreeSet::new();
    let writer_stores: Vec<PgStore> = (0..WRITERS)
        .map(|_| reader.reconnect().expect("a writer's connection"))
        .collect();
    let committed: Vec<u64> = std::thread::scope(|scope| {
        let writers: Vec<_> = writer_stores
            .into_iter()
            .enumerate()
            .map(|(w, mut store)| {
                scope.spawn(move || {
                    let mut mine = Vec::new();
                    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ (w as u64 + 1);
                    for i in 0..WRITES {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        let mut txn = store.begin().expect("begin");
                        let k = key(REPORT, (w * 1_000 + i) as u128);
                        let fields = record([("hours", Value::Int(i as i64))]);
                        let version = entity(k, fields, t(i as i64), node_id(w));
                        let seq = txn.put_entity(&version, node_id(w), t(0)).expect("put");
                        std::thread::sleep(Duration::from_micros(state % 3_000));
                        txn.commit().expect("commit");
                        mine.push(seq);
                    }
                    mine
                })
            })
            .collect();
        let done = &done;
        let watcher = scope.spawn(move || {
            let all: Vec<u64> = writers
                .into_iter()
                .flat_map(|w| w.join().expect("a writer"))
                .collect();
            done.store(true, Ordering::SeqCst);
            all
        });
        let mut cursor = 0;
        loop {
            let finished = done.load(Ordering::SeqCst);
            let page = {
                let txn = reader.begin().expect("begin");
                txn.pending(&PendingQuery {
                    peer: node_id(99),
                    after_seq: cursor,
                    resend_own_upto: 0,
                    limit: 7,
                })
                .expect("pending")
            };
            for change in &page {
                assert!(change.seq > cursor, "pending goes forward");
                seen.insert(change.seq);
                cursor = change.seq;
            }
            if finished && page.is_empty() {
                break;
            }
        }
        watcher.join().expect("the writers")
    });
    let committed: BTreeSet<u64> = committed.into_iter().collect();
    assert_eq!(committed.len(), WRITERS * WRITES);
    let skipped: Vec<_> = committed.difference(&seen).collect();
    assert!(skipped.is_empty(), "the reader skipped {skipped:?}");
    eprintln!(
        "{} changes from {WRITERS} concurrent writers, all seen by a forward cursor",
        committed.len()
    );
}

/// A hub builds a packet by reading what a peer is owed and then the last
/// sequence, which the packet then covers: acknowledging it acknowledges
/// every change up to that sequence. If another process commits a change
/// between the two reads, the last sequence must not move past what the
/// reads showed, or that change is acknowledged without ever being sent
/// (the divergence `multi_hub` found: one node missing another's report).
#[test]
fn the_last_sequence_a_reader_sees_covers_only_changes_its_reads_could_show() {
    let mut reader = PgStore::connect(
        &common::url(),
        PgOptions::new()
            .schema(cluster::unique_schema("seq"))
            .temporary(true),
    )
    .expect("connect");
    let mut writer = reader.reconnect().expect("a second process's connection");
    let write = |store: &mut PgStore, i: u128| {
        let mut txn = store.begin().expect("begin");
        let version = entity(
            key(REPORT, i),
            record([("hours", Value::Int(i as i64))]),
            t(i as i64),
            node_id(1),
        );
        let seq = txn.put_entity(&version, node_id(1), t(0)).expect("put");
        txn.commit().expect("commit");
        seq
    };
    let first = write(&mut writer, 1);
    let query = PendingQuery {
        peer: node_id(99),
        after_seq: 0,
        resend_own_upto: 0,
        limit: 100,
    };
    let txn = reader.begin().expect("begin");
    let shown: Vec<u64> = txn
        .pending(&query)
        .expect("pending")
        .iter()
        .map(|s| s.seq)
        .collect();
    assert_eq!(shown, [first]);
    // Another hub process commits a change meanwhile.
    let late = write(&mut writer, 2);
    assert!(late > first);
    assert_eq!(
        txn.last_seq().expect("last sequence"),
        first,
        "the last sequence covers a change the transaction's read did not show"
    );
    let again: Vec<u64> = txn
        .pending(&query)
        .expect("pending")
        .iter()
        .map(|s| s.seq)
        .collect();
    assert_eq!(again, [first], "the reads agree with the last sequence");
    assert_eq!(txn.count_pending(&query).expect("count"), 1);
    drop(txn);
    // The next transaction sees the late change, and the last sequence
    // moves on with it.
    let txn = reader.begin().expect("begin");
    assert_eq!(txn.last_seq().expect("last sequence"), late);
    assert_eq!(txn.count_pending(&query).expect("count"), 2);
}
