//! proptest strategies: typed values of every kind, records, and an entity
//! type with one field of every kind.

use proptest::prelude::*;
use sync_core::{EntityType, FieldKind, Record, Timestamp, Uuid, Value};

/// Finite floats of every class (NaN never equals itself, so it is left out).
pub fn arb_float() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("finite", |x| x.is_finite()),
        Just(0.0),
        Just(-0.5),
        Just(f64::MAX),
        Just(f64::MIN_POSITIVE),
        (-1_000_000i64..1_000_000).prop_map(|i| i as f64 / 8.0),
    ]
}

/// Short texts: any characters, lowercase words, or empty.
pub fn arb_text() -> impl Strategy<Value = String> {
    prop_oneof![".{0,12}", "[a-z]{0,6}", Just(String::new())]
}

/// Any UUID.
pub fn arb_uuid() -> impl Strategy<Value = Uuid> {
    any::<u128>().prop_map(Uuid::from_u128)
}

/// Any timestamp, and ones in a plausible range more often.
pub fn arb_timestamp() -> impl Strategy<Value = Timestamp> {
    prop_oneof![
        any::<i64>().prop_map(Timestamp::from_micros),
        (0i64..4_000_000_000_000_000).prop_map(Timestamp::from_micros),
    ]
}

/// A value of any kind except list and record.
pub fn arb_scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        arb_float().prop_map(Value::Float),
        arb_text().prop_map(Value::Text),
        prop::collection::vec(any::<u8>(), 0..16).prop_map(Value::Bytes),
        arb_timestamp().prop_map(Value::Timestamp),
        arb_uuid().prop_map(Value::Uuid),
    ]
}

/// A value of any kind, nested lists and records included.
pub fn arb_value() -> impl Strategy<Value = Value> {
    arb_scalar().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::List),
            prop::collection::btree_map("[a-z]{1,5}", inner, 0..4).prop_map(Value::Record),
        ]
    })
}

/// A value that fits `kind` (sometimes null, which every kind accepts).
pub fn arb_value_of(kind: &FieldKind) -> BoxedStrategy<Value> {
    let typed: BoxedStrategy<Value> = match kind {
        FieldKind::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
        FieldKind::Int => any::<i64>().prop_map(Value::Int).boxed(),
        FieldKind::Float => arb_float().prop_map(Value::Float).boxed(),
        FieldKind::Text => arb_text().prop_map(Value::Text).boxed(),
        FieldKind::Bytes => prop::collection::vec(any::<u8>(), 0..16)
            .prop_map(Value::Bytes)
            .boxed(),
        FieldKind::Timestamp => arb_timestamp().prop_map(Value::Timestamp).boxed(),
        FieldKind::Uuid | FieldKind::Reference { .. } => arb_uuid().prop_map(Value::Uuid).boxed(),
        FieldKind::List => prop::collection::vec(arb_value(), 0..4)
            .prop_map(Value::List)
            .boxed(),
        FieldKind::Record => prop::collection::btree_map("[a-z]{1,5}", arb_value(), 0..4)
            .prop_map(Value::Record)
            .boxed(),
    };
    prop_oneof![1 => Just(Value::Null), 6 => typed].boxed()
}

/// The fields of [`all_kinds_type`], one per kind.
pub fn all_kinds() -> Vec<(&'static str, FieldKind)> {
    vec![
        ("b", FieldKind::Bool),
        ("i", FieldKind::Int),
        ("f", FieldKind::Float),
        ("s", FieldKind::Text),
        ("y", FieldKind::Bytes),
        ("ts", FieldKind::Timestamp),
        ("u", FieldKind::Uuid),
        ("l", FieldKind::List),
        ("r", FieldKind::Record),
    ]
}

/// An entity type named `name` with one field of every kind.
pub fn all_kinds_type(name: &str) -> EntityType {
    all_kinds()
        .into_iter()
        .fold(EntityType::new(name), |ty, (field, kind)| {
            ty.field(field, kind)
        })
}

/// A record of [`all_kinds_type`]: every field present or absent, any value
/// of its kind.
pub fn arb_all_kinds_record() -> impl Strategy<Value = Record> {
    let per_field: Vec<_> = all_kinds()
        .into_iter()
        .map(|(name, kind)| {
            prop::option::weighted(0.85, arb_value_of(&kind)).prop_map(move |v| (name, v))
        })
        .collect();
    per_field.prop_map(|pairs| {
        pairs
            .into_iter()
            .filter_map(|(name, v)| v.map(|v| (name.to_owned(), v)))
            .collect()
    })
}
