//! Parked children: `park` (replacing), `take_parked`, `unpark`, `parked`.

use sync_core::{Entity, EntityKey, ParkedChange, Store, StoreTxn, Uuid, Value};

use super::{read, write};
use crate::fixtures::{LINE, REPORT, entity, key, node_id, record, t};

/// A line version `n` of child `child` waiting for report `parent`.
pub fn sample_parked(child: u128, parent: u128, n: i64) -> ParkedChange {
    let line: Entity = entity(
        key(LINE, child),
        record([
            ("report_id", Value::Uuid(Uuid::from_u128(parent))),
            ("text", format!("line {child} v{n}").into()),
            ("qty", Value::Float(n as f64 + 0.5)),
        ]),
        t(n),
        node_id(1),
    );
    ParkedChange {
        entity: line,
        from: node_id(n as usize % 3),
        waiting_for: key(REPORT, parent),
        arrived_at: t(100 + n),
    }
}

fn parked<S: Store>(store: &mut S) -> Vec<ParkedChange> {
    let mut all = read(store, |txn| txn.parked().expect("parked"));
    all.sort_by(|a, b| a.entity.key.cmp(&b.entity.key));
    all
}

fn take<S: Store>(store: &mut S, parent: &EntityKey) -> Vec<ParkedChange> {
    let mut taken = write(store, |txn| txn.take_parked(parent).expect("take_parked"));
    taken.sort_by(|a, b| a.entity.key.cmp(&b.entity.key));
    taken
}

/// A new store has nothing parked.
pub fn empty_store_has_nothing_parked<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    assert!(parked(&mut store).is_empty());
    assert!(take(&mut store, &key(REPORT, 1)).is_empty());
}

/// Parked children come back whole from `parked` and from `take_parked`
/// of their parent, which removes them.
pub fn park_then_take_by_parent<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    let children = [sample_parked(10, 1, 1), sample_parked(11, 1, 2)];
    write(&mut store, |txn| {
        for c in &children {
            txn.park(c).expect("park");
        }
    });
    assert_eq!(parked(&mut store), children);
    assert_eq!(take(&mut store, &key(REPORT, 1)), children);
    assert!(parked(&mut store).is_empty());
    assert!(take(&mut store, &key(REPORT, 1)).is_empty(), "taken once");
}

/// Parking a child again replaces its earlier parked version, even when it
/// now waits for another parent.
pub fn park_replaces_same_child<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    write(&mut store, |txn| {
        txn.park(&sample_parked(10, 1, 1)).expect("park")
    });
    write(&mut store, |txn| {
        txn.park(&sample_parked(10, 1, 2)).expect("park")
    });
    assert_eq!(parked(&mut store), vec![sample_parked(10, 1, 2)]);
    write(&mut store, |txn| {
        txn.park(&sample_parked(10, 2, 3)).expect("park")
    });
    assert_eq!(parked(&mut store), vec![sample_parked(10, 2, 3)]);
    assert!(take(&mut store, &key(REPORT, 1)).is_empty());
    assert_eq!(
        take(&mut store, &key(REPORT, 2)),
        vec![sample_parked(10, 2, 3)]
    );
}

/// `take_parked` takes only the children of the named parent.
pub fn take_parked_leaves_other_parents<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    write(&mut store, |txn| {
        for (child, parent) in [(10, 1), (11, 2), (12, 1), (13, 3)] {
            txn.park(&sample_parked(child, parent, child as i64))
                .expect("park");
        }
    });
    assert_eq!(
        take(&mut store, &key(REPORT, 1)),
        vec![sample_parked(10, 1, 10), sample_parked(12, 1, 12)]
    );
    assert_eq!(
        parked(&mut store),
        vec![sample_parked(11, 2, 11), sample_parked(13, 3, 13)]
    );
    assert!(
        take(&mut store, &key(LINE, 2)).is_empty(),
        "keys include the type"
    );
}

/// `unpark` drops one child and leaves the rest.
pub fn unpark_drops_child<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    write(&mut store, |txn| {
        txn.park(&sample_parked(10, 1, 1)).expect("park");
        txn.park(&sample_parked(11, 1, 1)).expect("park");
    });
    write(&mut store, |txn| {
        txn.unpark(&key(LINE, 10)).expect("unpark")
    });
    assert_eq!(parked(&mut store), vec![sample_parked(11, 1, 1)]);
    assert_eq!(
        take(&mut store, &key(REPORT, 1)),
        vec![sample_parked(11, 1, 1)]
    );
}

/// Unparking a child that is not parked changes nothing.
pub fn unpark_missing_is_noop<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    write(&mut store, |txn| {
        txn.park(&sample_parked(10, 1, 1)).expect("park")
    });
    write(&mut store, |txn| {
        txn.unpark(&key(LINE, 99)).expect("unpark");
        txn.unpark(&key(REPORT, 10)).expect("unpark");
    });
    assert_eq!(parked(&mut store), vec![sample_parked(10, 1, 1)]);
}
