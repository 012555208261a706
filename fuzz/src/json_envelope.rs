//! Target `json_envelope`: the JSON parsing path that exists today.
//!
//! sync-core has no parser of JSON envelopes yet: [`sync_core::json_view`]
//! only renders envelopes as JSON (fuzzed by [`crate::packet_decode`]). What
//! parses outside JSON is the serde bridge, turning a JSON object into a
//! record of a registered type ([`serde_bridge::to_record`]) and back
//! ([`serde_bridge::from_record`]); this target fuzzes that, and becomes the
//! envelope parser's target when one lands.
//!
//! Input: a byte choosing the entity type (from the fixture registry: every
//! value kind and a reference), then JSON. Checks that
//! - nothing panics;
//! - every value the bridge accepts is of its field's declared kind;
//! - a record the bridge made renders back to JSON and parses to the same
//!   record (what `get_typed` after `put_typed` relies on).

use serde_json::Value as Json;
use sync_core::serde_bridge;
use sync_core::{EntityRegistry, EntityType, Record};

/// Runs one input; panics on a failed check.
pub fn run(data: &[u8]) {
    let Some((&selector, json_bytes)) = data.split_first() else {
        return;
    };
    let Ok(json) = serde_json::from_slice::<Json>(json_bytes) else {
        return;
    };
    let registry = crate::engine_receive::registry();
    let ty = pick_type(&registry, selector);
    let Ok(record) = serde_bridge::to_record(ty, &json) else {
        return;
    };
    check_kinds(ty, &record);
    let back: Json = serde_bridge::from_record(ty, &record).unwrap_or_else(|e| {
        panic!("a record the bridge made does not render back to JSON: {e}; record {record:?}")
    });
    let again = serde_bridge::to_record(ty, &back).unwrap_or_else(|e| {
        panic!(
            "the JSON rendering of a record the bridge made does not parse back: {e}; record {record:?}, rendered {back}"
        )
    });
    assert_eq!(
        again, record,
        "record -> JSON -> record changed the record (rendered {back})"
    );
}

fn pick_type(registry: &EntityRegistry, selector: u8) -> &EntityType {
    let types: Vec<&EntityType> = registry.types().collect();
    types[usize::from(selector) % types.len()]
}

fn check_kinds(ty: &EntityType, record: &Record) {
    for (name, value) in record {
        let def = ty
            .field_def(name)
            .unwrap_or_else(|| panic!("the bridge accepted undeclared field {name}"));
        assert!(
            def.kind.accepts(value),
            "{}.{name} got a {} value, which its declared kind does not accept",
            ty.name(),
            value.kind_name()
        );
    }
}
