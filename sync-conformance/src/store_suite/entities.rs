//! Entity and change-sequence cases: `put_entity`, `entity`, `last_seq`,
//! `entities` paging.

use sync_core::{
    Dot, Entity, EntityKey, NodeId, Stamp, Store, StoreTxn, StoredEntity, Uuid, Value,
    VersionVector,
};

use super::{abandon, read, write};
use crate::fixtures::{LINE, REPORT, entity, hub_id, key, node_id, record, t};

/// A small report version numbered `n`.
pub fn report(id: u128, n: i64) -> Entity {
    entity(
        key(REPORT, id),
        record([
            ("date", "2025-12-12".into()),
            ("hours", Value::Int(n)),
            ("rev", format!("r{id}-{n}").into()),
        ]),
        t(n),
        node_id(0),
    )
}

/// Stores `entity` from `source` in its own transaction; returns its seq.
pub fn put<S: Store>(store: &mut S, entity: &Entity, source: NodeId) -> u64 {
    write(store, |txn| {
        txn.put_entity(entity, source, t(1)).expect("put_entity")
    })
}

/// Reads one entity.
pub fn get<S: Store>(store: &mut S, key: &EntityKey) -> Option<StoredEntity> {
    read(store, |txn| txn.entity(key).expect("entity"))
}

/// A new store's sequence starts at zero.
pub fn empty_store_has_last_seq_zero<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    assert_eq!(read(&mut store, |txn| txn.last_seq().expect("last_seq")), 0);
}

/// Reading an entity that was never stored gives `None`.
pub fn missing_entity_is_none<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    put(&mut store, &report(1, 1), node_id(0));
    assert_eq!(get(&mut store, &key(REPORT, 2)), None);
    assert_eq!(
        get(&mut store, &key("OtherType", 1)),
        None,
        "keys include the type"
    );
}

/// Every `put_entity` returns a sequence strictly greater than all before
/// it, within a transaction and across transactions.
pub fn put_entity_assigns_increasing_seq<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    let mut last = 0;
    for round in 0..5u128 {
        write(&mut store, |txn| {
            for i in 0..10u128 {
                let seq = txn
                    .put_entity(&report(i % 4, (round * 10 + i) as i64), node_id(0), t(1))
                    .expect("put_entity");
                assert!(seq > last, "{seq} after {last}");
                last = seq;
            }
        });
    }
    assert_eq!(
        read(&mut store, |txn| txn.last_seq().expect("last_seq")),
        last
    );
}

/// The stored entity carries the sequence `put_entity` returned, and
/// `last_seq` reports it.
pub fn put_entity_returns_stored_seq<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    for n in 0..5 {
        let version = report(9, n);
        let seq = put(&mut store, &version, node_id(1));
        let stored = get(&mut store, &version.key).expect("stored");
        assert_eq!(stored.seq, seq);
        assert_eq!(stored.entity, version);
        assert_eq!(
            read(&mut store, |txn| txn.last_seq().expect("last_seq")),
            seq
        );
    }
}

/// A new entity's `created_seq` is its first sequence.
pub fn put_entity_sets_created_seq_on_insert<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    put(&mut store, &report(1, 1), node_id(0));
    let seq = put(&mut store, &report(2, 1), node_id(0));
    let stored = get(&mut store, &key(REPORT, 2)).expect("stored");
    assert_eq!(stored.created_seq, seq);
}

/// Updates move `seq` forward and keep `created_seq`, also when the update
/// is a tombstone or comes from another source.
pub fn put_entity_keeps_created_seq_on_update<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    let created = put(&mut store, &report(1, 1), node_id(0));
    put(&mut store, &report(2, 1), node_id(0));
    let mut last = 0;
    for n in 2..6 {
        let mut version = report(1, n);
        version.is_deleted = n == 4;
        last = put(&mut store, &version, node_id(n as usize));
    }
    let stored = get(&mut store, &key(REPORT, 1)).expect("stored");
    assert_eq!(stored.created_seq, created);
    assert_eq!(stored.seq, last);
    assert!(stored.seq > stored.created_seq);
}

/// The source of the latest change is recorded (and replaced by the next).
pub fn put_entity_records_source<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    put(&mut store, &report(1, 1), node_id(3));
    assert_eq!(
        get(&mut store, &key(REPORT, 1)).expect("stored").source,
        node_id(3)
    );
    put(&mut store, &report(1, 2), hub_id());
    assert_eq!(
        get(&mut store, &key(REPORT, 1)).expect("stored").source,
        hub_id()
    );
}

/// The arrival time passed to `put_entity` is stored with each version and
/// replaced by the next one's.
pub fn put_entity_records_stored_at<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    write(&mut store, |txn| {
        txn.put_entity(&report(1, 1), node_id(0), t(500))
            .expect("put_entity")
    });
    assert_eq!(
        get(&mut store, &key(REPORT, 1)).expect("stored").stored_at,
        t(500)
    );
    write(&mut store, |txn| {
        txn.put_entity(&report(1, 2), node_id(0), t(-7))
            .expect("put_entity")
    });
    assert_eq!(
        get(&mut store, &key(REPORT, 1)).expect("stored").stored_at,
        t(-7)
    );
}

/// A version's clock is stored exactly as given, whatever its entries (the
/// writer's own entry earlier than `updated_at` or absent, times before the
/// epoch), and each new version replaces it whole.
pub fn put_entity_keeps_clock<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    let mut merged = report(1, 1);
    merged.clock = VersionVector::from_entries([
        (hub_id(), t(-5)),
        (node_id(0), t(3)),
        (node_id(1), merged.updated_at),
    ]);
    put(&mut store, &merged, hub_id());
    let stored = get(&mut store, &key(REPORT, 1)).expect("stored");
    assert_eq!(stored.entity.clock, merged.clock);
    let next = report(1, 2);
    put(&mut store, &next, node_id(0));
    let stored = get(&mut store, &key(REPORT, 1)).expect("stored");
    assert_eq!(stored.entity.clock, next.clock);
    assert_eq!(stored.entity, next);
}

/// A version's field stamps (per-field merge) are stored exactly as given,
/// a field without a value included, and each new version replaces them
/// whole.
pub fn put_entity_keeps_field_stamps<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    let mut stamped = report(1, 1);
    let dot = |node: NodeId, at: i64, tag: u32| Dot {
        node,
        stamp: Stamp { at: t(at), tag },
    };
    stamped
        .field_stamps
        .insert("date".into(), dot(hub_id(), -5, 7));
    stamped
        .field_stamps
        .insert("brigade".into(), dot(node_id(1), 0, 0));
    put(&mut store, &stamped, hub_id());
    let stored = get(&mut store, &key(REPORT, 1)).expect("stored");
    assert_eq!(stored.entity.field_stamps, stamped.field_stamps);
    assert_eq!(stored.entity, stamped);
    let next = report(1, 2);
    put(&mut store, &next, node_id(0));
    let stored = get(&mut store, &key(REPORT, 1)).expect("stored");
    assert!(stored.entity.field_stamps.is_empty());
}

/// A new version replaces the old one whole: fields it lacks are gone,
/// metadata is the new version's.
pub fn put_entity_replaces_version_whole<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    let mut first = report(1, 1);
    first.fields.insert("brigade".into(), "B-7".into());
    put(&mut store, &first, node_id(0));
    let second = entity(
        key(REPORT, 1),
        record([("hours", Value::Int(3))]),
        t(-100),
        node_id(4),
    );
    put(&mut store, &second, node_id(4));
    assert_eq!(
        get(&mut store, &key(REPORT, 1)).expect("stored").entity,
        second
    );
}

/// Tombstones are stored with their fields and deletion flag, and can be
/// revived by a later version.
pub fn tombstones_are_kept<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    let mut tombstone = report(1, 1);
    tombstone.is_deleted = true;
    put(&mut store, &tombstone, node_id(0));
    assert_eq!(
        get(&mut store, &key(REPORT, 1)).expect("kept").entity,
        tombstone
    );
    let page = read(&mut store, |txn| {
        txn.entities(REPORT, None, 10).expect("entities")
    });
    assert_eq!(page.len(), 1, "tombstones are listed");
    put(&mut store, &report(1, 2), node_id(0));
    assert!(
        !get(&mut store, &key(REPORT, 1))
            .expect("kept")
            .entity
            .is_deleted
    );
}

/// After a rolled-back transaction, new sequences are still above every
/// committed one (a rolled-back sequence may or may not be reused).
pub fn seq_above_every_committed_after_rollback<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    let committed = put(&mut store, &report(1, 1), node_id(0));
    abandon(&mut store, |txn| {
        for n in 0..5 {
            txn.put_entity(&report(2, n), node_id(0), t(1))
                .expect("put_entity");
        }
    });
    let last = read(&mut store, |txn| txn.last_seq().expect("last_seq"));
    assert!(
        last >= committed,
        "last_seq {last} below committed {committed}"
    );
    let next = put(&mut store, &report(3, 1), node_id(0));
    assert!(
        next > committed && next > last,
        "{next} after {committed}/{last}"
    );
    assert_eq!(get(&mut store, &key(REPORT, 2)), None);
}

/// Every read inside a transaction sees that transaction's writes.
pub fn reads_see_own_writes<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    put(&mut store, &report(1, 1), node_id(0));
    abandon(&mut store, |txn| {
        let seq = txn
            .put_entity(&report(2, 5), node_id(1), t(1))
            .expect("put_entity");
        let stored = txn
            .entity(&key(REPORT, 2))
            .expect("entity")
            .expect("own write");
        assert_eq!((stored.seq, stored.source), (seq, node_id(1)));
        assert_eq!(txn.last_seq().expect("last_seq"), seq);
        let listed = txn.entities(REPORT, None, 10).expect("entities");
        assert_eq!(listed.len(), 2);
        let query = sync_core::PendingQuery {
            peer: hub_id(),
            after_seq: 0,
            resend_own_upto: 0,
            limit: 10,
        };
        assert_eq!(txn.pending(&query).expect("pending").len(), 2);
        assert_eq!(txn.count_pending(&query).expect("count"), 2);
        let updated = txn
            .put_entity(&report(1, 9), node_id(0), t(1))
            .expect("put_entity");
        let stored = txn
            .entity(&key(REPORT, 1))
            .expect("entity")
            .expect("own write");
        assert_eq!((stored.seq, stored.entity.updated_at), (updated, t(9)));
        let order: Vec<_> = txn
            .pending(&query)
            .expect("pending")
            .iter()
            .map(|s| s.entity.key.id)
            .collect();
        assert_eq!(order, vec![Uuid::from_u128(2), Uuid::from_u128(1)]);
    });
    assert_eq!(
        get(&mut store, &key(REPORT, 1)).expect("kept").entity,
        report(1, 1)
    );
}

/// `entities` pages through one type in ascending id order with an
/// exclusive cursor.
pub fn entities_pages_by_id<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    // Ids inserted out of order, including ones that differ only in the
    // high bytes.
    let ids: Vec<u128> = (0..25u128)
        .map(|i| (i * 7919 % 25) << if i % 2 == 0 { 0 } else { 100 })
        .collect();
    write(&mut store, |txn| {
        for (n, id) in ids.iter().enumerate() {
            txn.put_entity(&report(*id, n as i64), node_id(0), t(1))
                .expect("put_entity");
        }
    });
    let mut expected: Vec<Uuid> = ids.iter().map(|i| Uuid::from_u128(*i)).collect();
    expected.sort();
    expected.dedup();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = read(&mut store, |txn| {
            txn.entities(REPORT, after, 4).expect("entities")
        });
        assert!(page.len() <= 4);
        if page.is_empty() {
            break;
        }
        after = page.last().map(|s| s.entity.key.id);
        seen.extend(page.into_iter().map(|s| s.entity.key.id));
    }
    assert_eq!(seen, expected);
}

/// The paging cursor need not name a stored entity.
pub fn entities_cursor_need_not_exist<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    write(&mut store, |txn| {
        for id in [10u128, 20, 30] {
            txn.put_entity(&report(id, 1), node_id(0), t(1))
                .expect("put_entity");
        }
    });
    let page = read(&mut store, |txn| {
        txn.entities(REPORT, Some(Uuid::from_u128(15)), 10)
            .expect("entities")
    });
    let ids: Vec<_> = page.iter().map(|s| s.entity.key.id.as_u128()).collect();
    assert_eq!(ids, vec![20, 30]);
}

/// `entities` lists only the asked type, even when other types sort around
/// it.
pub fn entities_are_per_type<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    write(&mut store, |txn| {
        for (ty, id) in [("A", 1u128), ("Daily", 2), ("DailyReportZ", 3), ("Z", 4)] {
            let mut version = report(id, 1);
            version.key = key(ty, id);
            txn.put_entity(&version, node_id(0), t(1))
                .expect("put_entity");
        }
        txn.put_entity(&report(5, 1), node_id(0), t(1))
            .expect("put_entity");
    });
    let page = read(&mut store, |txn| {
        txn.entities(REPORT, None, 100).expect("entities")
    });
    let keys: Vec<_> = page.into_iter().map(|s| s.entity.key).collect();
    assert_eq!(keys, vec![key(REPORT, 5)]);
    let none = read(&mut store, |txn| {
        txn.entities("Nothing", None, 100).expect("entities")
    });
    assert!(none.is_empty());
}

/// A zero limit gives an empty page.
pub fn entities_limit_zero_is_empty<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    put(&mut store, &report(1, 1), node_id(0));
    let page = read(&mut store, |txn| {
        txn.entities(REPORT, None, 0).expect("entities")
    });
    assert!(page.is_empty());
}

/// Fifty entity types side by side: each lists its own entities; the
/// change registry orders them all by sequence.
pub fn many_entity_types<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    let types: Vec<String> = (0..50).map(|i| format!("Type{i:02}")).collect();
    write(&mut store, |txn| {
        for round in 0..3u128 {
            for (i, ty) in types.iter().enumerate() {
                let mut version = report(round, i as i64);
                version.key = EntityKey::new(ty.clone(), Uuid::from_u128(round));
                txn.put_entity(&version, node_id(0), t(1))
                    .expect("put_entity");
            }
        }
    });
    for ty in &types {
        let page = read(&mut store, |txn| {
            txn.entities(ty, None, 100).expect("entities")
        });
        assert_eq!(page.len(), 3, "{ty}");
        assert!(page.iter().all(|s| &s.entity.key.entity_type == ty));
    }
    let all = read(&mut store, |txn| {
        txn.pending(&sync_core::PendingQuery {
            peer: hub_id(),
            after_seq: 0,
            resend_own_upto: 0,
            limit: usize::MAX,
        })
        .expect("pending")
    });
    assert_eq!(all.len(), 150);
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
}

/// `referencing` finds exactly the entities of a type whose reference field
/// names the parent, tombstones included, whatever else the store holds.
pub fn referencing_finds_a_parents_children<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    put(&mut store, &report(1, 1), node_id(0));
    put(&mut store, &report(2, 1), node_id(0));
    let line = |id: u128, parent: u128, deleted: bool| {
        let mut e = entity(
            key(LINE, id),
            record([
                ("report_id", Value::Uuid(Uuid::from_u128(parent))),
                ("text", format!("line {id}").into()),
            ]),
            t(2),
            node_id(0),
        );
        e.is_deleted = deleted;
        e
    };
    for (id, parent, deleted) in [
        (10, 1, false),
        (11, 2, false),
        (12, 1, false),
        (13, 1, true),
    ] {
        put(&mut store, &line(id, parent, deleted), node_id(0));
    }
    let children = |store: &mut S, parent: u128| {
        let mut found: Vec<(u128, bool)> = read(store, |txn| {
            txn.referencing(LINE, "report_id", Uuid::from_u128(parent))
                .expect("referencing")
        })
        .into_iter()
        .map(|c| (c.entity.key.id.as_u128(), c.entity.is_deleted))
        .collect();
        found.sort();
        found
    };
    assert_eq!(
        children(&mut store, 1),
        [(10, false), (12, false), (13, true)]
    );
    assert_eq!(children(&mut store, 2), [(11, false)]);
    assert!(children(&mut store, 3).is_empty());
    let none = read(&mut store, |txn| {
        txn.referencing(LINE, "text", Uuid::from_u128(1))
            .expect("referencing")
    });
    assert!(none.is_empty(), "a field that names no parent");
}
