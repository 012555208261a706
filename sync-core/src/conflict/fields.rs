//! Per-field merge ([`crate::ConflictStrategy::FieldMerge`]): field-level
//! causality from per-field stamps.
//!
//! Every version of a type merged per field says, for each field, which
//! write last changed it (its [`Dot`], see [`crate::entity::FieldStamps`]).
//! Two concurrent versions `L` and `I` are merged field by field: a side
//! changed a field since the versions parted when the other side's clock
//! does not include that field's dot. A field one side changed is taken
//! from that side; a field both changed to different values is decided by
//! the type's [`FieldFallback`]. Each step depends only on the two versions,
//! never on which one is local, so every node merging the same pair stores
//! the same result.

use std::collections::BTreeSet;

use crate::clock::Dot;
use crate::conflict::ConflictSide;
use crate::conflict::strategies::{ConflictStrategy, FieldFallback};
use crate::entity::{Entity, FieldStamps, REMOVED_FIELD};
use crate::entity_registry::EntityType;
use crate::value::{Record, Value, record_canonical_bytes};

/// The dot of `entity`'s own write: the entry of its clock stamped with its
/// `updated_at` and its content's tag ([`EntityType::write_tag`]). `None`
/// for a version that is no single write (a merge).
pub fn own_dot(ty: &EntityType, entity: &Entity) -> Option<Dot> {
    let tag = ty.write_tag(entity);
    entity
        .clock
        .iter()
        .find(|(_, s)| s.at == entity.updated_at && s.tag == tag)
        .map(|(node, stamp)| Dot { node, stamp })
}

/// The dot of the write that last changed `field` in `entity`: its listed
/// stamp, else the version's own write ([`own_dot`]). `None` when neither
/// is known (a merge without stamps); such a field counts as changed.
pub fn field_dot(ty: &EntityType, entity: &Entity, field: &str) -> Option<Dot> {
    entity
        .field_stamps
        .get(field)
        .copied()
        .or_else(|| own_dot(ty, entity))
}

fn dot_of(entity: &Entity, own: Option<Dot>, field: &str) -> Option<Dot> {
    entity.field_stamps.get(field).copied().or(own)
}

/// Whether the engine keeps field stamps for versions of `ty`.
pub fn keeps_stamps(ty: &EntityType) -> bool {
    matches!(ty.conflict_strategy(), ConflictStrategy::FieldMerge { .. })
}

/// The fields whose stamps matter in `versions` of `ty`: the declared ones,
/// every one with a value or a stamp, never an excluded one (it does not
/// travel) nor the removal marker.
fn stamped_fields<'a>(ty: &'a EntityType, versions: &[&'a Entity]) -> BTreeSet<&'a str> {
    let mut names: BTreeSet<&str> = ty.fields().iter().map(|f| f.name.as_str()).collect();
    for version in versions {
        names.extend(version.fields.keys().map(String::as_str));
        names.extend(version.field_stamps.keys().map(String::as_str));
    }
    names.retain(|name| *name != REMOVED_FIELD && !ty.is_excluded(name));
    names
}

/// Sets `next.field_stamps` for a write that replaced `previous` (`None`
/// for a first write); `next.clock` must already hold its own write. A
/// field whose value this write left as it was keeps the dot of the write
/// that last changed it; a field it changed (set, altered or cleared) is
/// this write's own and is not listed. Versions of a type not merged per
/// field keep no stamps.
pub fn stamp_write(ty: &EntityType, previous: Option<&Entity>, next: &mut Entity) {
    next.field_stamps = FieldStamps::new();
    let (Some(previous), true) = (previous, keeps_stamps(ty)) else {
        return;
    };
    let before = own_dot(ty, previous);
    let now = own_dot(ty, next);
    let mut stamps = FieldStamps::new();
    for name in stamped_fields(ty, &[previous, &*next]) {
        if previous.fields.get(name) != next.fields.get(name) {
            continue;
        }
        if let Some(dot) = dot_of(previous, before, name) {
            if Some(dot) != now {
                stamps.insert(name.to_owned(), dot);
            }
        }
    }
    next.field_stamps = stamps;
}

/// Two concurrent versions merged field by field.
#[derive(Debug)]
pub(crate) struct FieldMerge {
    /// The merged version (clock: both histories).
    pub entity: Entity,
    /// Fields taken from the incoming version because only it changed them.
    pub from_incoming: Vec<String>,
    /// Fields both sides changed to different values, decided by the
    /// fallback.
    pub clashes: Vec<String>,
    /// The side whose values the clashing fields kept.
    pub clash_winner: ConflictSide,
}

/// The side a [`FieldFallback`] picks for a field both versions changed,
/// or for a deletion against an edit. Symmetric: the hub and a node pick
/// the same version.
pub(crate) fn fallback_side(
    fallback: FieldFallback,
    local: &Entity,
    incoming: &Entity,
    local_is_hub: bool,
) -> ConflictSide {
    match fallback {
        FieldFallback::ServerWins if local_is_hub => ConflictSide::Local,
        FieldFallback::ServerWins => ConflictSide::Incoming,
        FieldFallback::LastWriterWins => super::last_writer(local, incoming),
    }
}

/// Merges the concurrent versions `local` and `incoming` (neither
/// deleted). Per field: the side that changed it since the versions parted
/// (its dot is not in the other side's clock) gives its value; equal
/// values need no decision; a field both changed goes to `clash_winner`.
/// Excluded fields keep the local values. The result has the later time,
/// the larger writer id, both histories and, for every field, the dot of
/// the value it kept, so later merges see which write set it.
pub(crate) fn merge_fields(
    ty: &EntityType,
    local: &Entity,
    incoming: &Entity,
    clash_winner: ConflictSide,
) -> FieldMerge {
    let (own_l, own_i) = (own_dot(ty, local), own_dot(ty, incoming));
    let mut fields = local.fields.clone();
    fields.retain(|name, _| ty.is_excluded(name));
    let mut dots = Vec::new();
    let (mut from_incoming, mut clashes) = (Vec::new(), Vec::new());
    for name in stamped_fields(ty, &[local, incoming]) {
        let (dl, di) = (dot_of(local, own_l, name), dot_of(incoming, own_i, name));
        let (vl, vi) = (local.fields.get(name), incoming.fields.get(name));
        let local_changed = !dl.is_some_and(|d| incoming.clock.includes_dot(&d));
        let incoming_changed = !di.is_some_and(|d| local.clock.includes_dot(&d));
        let take_incoming = if vl == vi {
            // The same value either way. Keep the dot of the later write
            // (the one the other side has not seen): a later merge must
            // see that write as what set the field. Kept the earlier, a
            // field cleared after a value was seen would lose to that
            // value. Two unseen (or two seen) dots: the greater, so both
            // sides record the same one.
            match (local_changed, incoming_changed) {
                (true, false) => false,
                (false, true) => true,
                _ => di > dl,
            }
        } else {
            match (local_changed, incoming_changed) {
                (true, false) => false,
                (false, true) => true,
                // Each side saw the other's write of this field: histories
                // that disagree (a damaged store); the greater dot decides.
                (false, false) => di > dl,
                (true, true) => {
                    clashes.push(name.to_owned());
                    clash_winner == ConflictSide::Incoming
                }
            }
        };
        let (value, dot) = match take_incoming {
            true => (vi, di),
            false => (vl, dl),
        };
        if take_incoming && vl != vi {
            from_incoming.push(name.to_owned());
        }
        if let Some(value) = value {
            fields.insert(name.to_owned(), value.clone());
        }
        if let Some(dot) = dot {
            dots.push((name.to_owned(), dot));
        }
    }
    let mut entity = Entity {
        key: local.key.clone(),
        updated_at: local.updated_at.max(incoming.updated_at),
        is_deleted: false,
        origin: local.origin.max(incoming.origin),
        fields,
        clock: local.clock.merged(&incoming.clock),
        field_stamps: FieldStamps::new(),
    };
    let own = own_dot(ty, &entity);
    entity.field_stamps = dots.into_iter().filter(|(_, d)| Some(*d) != own).collect();
    FieldMerge {
        entity,
        from_incoming,
        clashes,
        clash_winner,
    }
}

/// An 8-byte digest of a field's value (`None`: no value), from the value's
/// canonical encoding: what a store with rows keeps of each field of the
/// version it last stored, to tell which columns a plain-SQL write changed
/// (see the SQLite store).
pub fn value_digest(value: Option<&Value>) -> [u8; 8] {
    let mut bytes = b"syncplan field\0".to_vec();
    if let Some(value) = value {
        let record = Record::from([(String::new(), value.clone())]);
        record_canonical_bytes(&record, &mut bytes);
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
    let mut out = [0u8; 8];
    out.copy_from_slice(&digest.as_ref()[..8]);
    out
}

/// The fields of `ty` whose stamps matter in `entity` (see
/// [`stamp_write`]), in name order.
pub fn stamped_field_names(ty: &EntityType, entity: &Entity) -> Vec<String> {
    stamped_fields(ty, &[entity])
        .into_iter()
        .map(str::to_owned)
        .collect()
}
