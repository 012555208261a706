//! Referential integrity checks on any store: which live children name a
//! parent the store does not hold.

use std::collections::BTreeSet;

use sync_core::{Engine, EntityKey, Store, StoreTxn, Value};

/// Every entity whose reference names a parent that is not in the store
/// (a tombstone counts as held here: see [`live_children_of_deleted`]).
///
/// # Panics
///
/// When the store fails a read (the test fails).
pub fn dangling_children<S: Store>(engine: &mut Engine<S>) -> Vec<EntityKey> {
    children_where(engine, |parent| parent.is_none())
}

/// Every live entity whose reference names a parent that is a tombstone
/// in the store.
///
/// # Panics
///
/// When the store fails a read (the test fails).
pub fn live_children_of_deleted<S: Store>(engine: &mut Engine<S>) -> Vec<EntityKey> {
    children_where(engine, |parent| parent == Some(true))
}

/// Panics if a child is stored without its parent.
pub fn assert_no_dangling<S: Store>(engine: &mut Engine<S>) {
    let dangling = dangling_children(engine);
    assert!(
        dangling.is_empty(),
        "{} holds children without parents: {dangling:?}",
        engine.local_node().code
    );
}

/// The children (live ones only, unless `bad` accepts an absent parent)
/// with a reference whose parent, given as `None` (absent) or
/// `Some(is_deleted)`, satisfies `bad`.
fn children_where<S: Store>(
    engine: &mut Engine<S>,
    bad: impl Fn(Option<bool>) -> bool,
) -> Vec<EntityKey> {
    let registry = engine.registry().clone();
    let txn = engine.store_mut().begin().expect("begin a read");
    let mut stored = Vec::new();
    for ty in registry.types() {
        stored.extend(txn.entities(ty.name(), None, usize::MAX).expect("entities"));
    }
    let held: std::collections::BTreeMap<EntityKey, bool> = stored
        .iter()
        .map(|s| (s.entity.key.clone(), s.entity.is_deleted))
        .collect();
    let mut out = BTreeSet::new();
    for s in &stored {
        let Some(ty) = registry.get(&s.entity.key.entity_type) else {
            continue;
        };
        for (field, target) in ty.references() {
            let Some(id) = s.entity.fields.get(field).and_then(Value::as_uuid) else {
                continue;
            };
            let parent = held.get(&EntityKey::new(target, id)).copied();
            let counts = parent.is_none() || !s.entity.is_deleted;
            if counts && bad(parent) {
                out.insert(s.entity.key.clone());
            }
        }
    }
    out.into_iter().collect()
}
