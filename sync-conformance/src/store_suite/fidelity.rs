//! What every store must keep so that all nodes read alike: deletions are
//! visible to reads (soft ones with their values, removals with their
//! marker), and fields the store's schema does not know are kept whole.
//!
//! Stores that map entities to tables of their own (SQLite tracking an
//! application's table) run these cases twice: on entity types without a
//! table ([`crate::store_suite!`]) and on a tracked table for
//! [`crate::fixtures::REPORT`] with columns `date` and `hours` only
//! ([`crate::fidelity_suite!`]), so that `rev` and the fields below have no
//! column there.

use sync_core::{Entity, PendingQuery, Store, StoreTxn, Value};

use super::entities::{get, put, report};
use super::read;
use crate::fixtures::{REPORT, hub_id, key, node_id, record, t};

/// The field a tombstone carries, set to `true`, when its row was removed
/// rather than soft-deleted (the same name as `sync_store_sqlite::REMOVED_FIELD`).
/// To a store it is a field like any other.
pub const REMOVED_FIELD: &str = "_sync_removed";

fn everything_for_the_hub<S: Store>(store: &mut S) -> Vec<Entity> {
    read(store, |txn| {
        txn.pending(&PendingQuery {
            peer: hub_id(),
            after_seq: 0,
            resend_own_upto: 0,
            limit: usize::MAX,
        })
        .expect("pending")
    })
    .into_iter()
    .map(|s| s.entity)
    .collect()
}

/// A soft tombstone (with values) reads back exactly, in `entity`,
/// `entities` and `pending`; a later live version brings the entity back.
pub fn soft_deletion_is_visible_to_reads<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    put(&mut store, &report(1, 1), node_id(1));
    let mut tombstone = report(1, 2);
    tombstone.is_deleted = true;
    put(&mut store, &tombstone, node_id(1));
    assert_eq!(
        get(&mut store, &key(REPORT, 1)).expect("kept").entity,
        tombstone
    );
    let listed = read(&mut store, |txn| {
        txn.entities(REPORT, None, 10).expect("entities")
    });
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].entity, tombstone);
    assert_eq!(everything_for_the_hub(&mut store), vec![tombstone]);
    put(&mut store, &report(1, 3), node_id(1));
    assert_eq!(
        get(&mut store, &key(REPORT, 1)).expect("kept").entity,
        report(1, 3)
    );
}

/// A removal tombstone (no values but [`REMOVED_FIELD`]) reads back
/// exactly, is listed and sent; a later live version brings the entity
/// back with all its values.
pub fn removal_is_visible_to_reads<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    put(&mut store, &report(2, 1), node_id(1));
    let removal = Entity::new_version(
        key(REPORT, 2),
        t(2),
        true,
        node_id(1),
        record([(REMOVED_FIELD, Value::Bool(true))]),
    );
    put(&mut store, &removal, node_id(1));
    assert_eq!(
        get(&mut store, &key(REPORT, 2)).expect("kept").entity,
        removal
    );
    let listed = read(&mut store, |txn| {
        txn.entities(REPORT, None, 10).expect("entities")
    });
    assert_eq!(listed.len(), 1, "the tombstone is listed");
    assert!(listed[0].entity.is_deleted);
    assert_eq!(everything_for_the_hub(&mut store), vec![removal]);
    put(&mut store, &report(2, 3), node_id(1));
    assert_eq!(
        get(&mut store, &key(REPORT, 2)).expect("kept").entity,
        report(2, 3)
    );
}

/// Fields the store's schema lacks (from a peer with a newer schema) are
/// kept whole, read back and sent on, on live versions and tombstones.
pub fn unknown_fields_are_kept<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    let mut version = report(3, 1);
    version
        .fields
        .insert("phone".into(), Value::from("555-0100"));
    version.fields.insert(
        "address".into(),
        Value::Record(record([("city", "Oslo".into()), ("zip", Value::Int(150))])),
    );
    version
        .fields
        .insert("tags".into(), Value::List(vec!["a".into(), Value::Int(2)]));
    put(&mut store, &version, node_id(1));
    assert_eq!(
        get(&mut store, &key(REPORT, 3)).expect("kept").entity,
        version
    );
    assert_eq!(everything_for_the_hub(&mut store), vec![version.clone()]);
    let mut tombstone = version.clone();
    tombstone.is_deleted = true;
    tombstone.updated_at = t(5);
    put(&mut store, &tombstone, node_id(1));
    assert_eq!(
        get(&mut store, &key(REPORT, 3)).expect("kept").entity,
        tombstone
    );
}

/// Stamps out the cases of this module alone (see the module docs): one
/// `#[test]` per case in a module named `$name`.
#[macro_export]
macro_rules! fidelity_suite {
    ($name:ident, $make:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $crate::__store_cases! { $make;
                fidelity::soft_deletion_is_visible_to_reads,
                fidelity::removal_is_visible_to_reads,
                fidelity::unknown_fields_are_kept,
            }
        }
    };
}
