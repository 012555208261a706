//! Value cases: every value kind, extremes, multi-megabyte text and bytes,
//! deep nesting, many fields, stored and read back exactly.

use sync_core::{Entity, Record, Store, Timestamp, Uuid, Value};

use super::entities::{get, put};
use crate::fixtures::{NOTE_LAST_WRITER_WINS, entity, key, node_id, t};

/// Deterministic pseudo-random bytes (incompressible enough to defeat any
/// backend compression).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = sync_core::rng::SeededRng::new(seed);
    let mut bytes = vec![0u8; len];
    rng.fill(&mut bytes);
    bytes
}

/// A record holding one value of every kind.
pub fn every_kind() -> Record {
    let mut nested = Record::new();
    nested.insert("inner".into(), Value::Int(1));
    nested.insert(
        "list".into(),
        Value::List(vec![Value::Null, Value::Bool(true)]),
    );
    [
        ("null", Value::Null),
        ("bool", Value::Bool(true)),
        ("int", Value::Int(-42)),
        ("float", Value::Float(3.25)),
        ("text", Value::Text("héllo, 世界 🚀 \0 nul".into())),
        ("bytes", Value::Bytes(vec![0, 1, 2, 255])),
        ("timestamp", Value::Timestamp(t(12))),
        ("uuid", Value::Uuid(Uuid::from_u128(0xDEAD_BEEF))),
        (
            "list",
            Value::List(vec![Value::Int(1), Value::Text("two".into())]),
        ),
        ("record", Value::Record(nested)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Stores `fields` as a note and asserts it reads back identical.
fn round_trip<S: Store>(make: impl Fn() -> S, fields: Record) -> Entity {
    let mut store = make();
    let version = entity(key(NOTE_LAST_WRITER_WINS, 1), fields, t(1), node_id(0));
    put(&mut store, &version, node_id(0));
    let back = get(&mut store, &version.key).expect("stored").entity;
    assert!(back == version, "value changed in the store");
    back
}

/// One field of every value kind survives.
pub fn every_value_kind_round_trips<S: Store>(make: impl Fn() -> S) {
    round_trip(make, every_kind());
}

/// Extremes: integer bounds, signed zero and infinities, empty text, bytes
/// and collections, extreme timestamps, nil and max UUIDs.
pub fn extreme_scalars_round_trip<S: Store>(make: impl Fn() -> S) {
    let fields: Record = [
        ("min", Value::Int(i64::MIN)),
        ("max", Value::Int(i64::MAX)),
        ("zero", Value::Int(0)),
        ("neg_zero", Value::Float(-0.0)),
        ("inf", Value::Float(f64::INFINITY)),
        ("neg_inf", Value::Float(f64::NEG_INFINITY)),
        ("tiny", Value::Float(f64::MIN_POSITIVE / 4.0)),
        ("big", Value::Float(f64::MAX)),
        ("empty_text", Value::Text(String::new())),
        ("empty_bytes", Value::Bytes(Vec::new())),
        ("empty_list", Value::List(Vec::new())),
        ("empty_record", Value::Record(Record::new())),
        ("early", Value::Timestamp(Timestamp::from_micros(i64::MIN))),
        ("late", Value::Timestamp(Timestamp::from_micros(i64::MAX))),
        ("nil", Value::Uuid(Uuid::nil())),
        ("max_uuid", Value::Uuid(Uuid::max())),
        ("", Value::Text("empty field name".into())),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let back = round_trip(make, fields);
    match back.fields.get("neg_zero") {
        Some(Value::Float(x)) => assert!(x.is_sign_negative(), "-0.0 lost its sign"),
        other => panic!("neg_zero came back as {other:?}"),
    }
}

/// Four MiB of text (multi-byte characters included).
pub fn large_text_round_trips<S: Store>(make: impl Fn() -> S) {
    let text: String = "syncplan ✓ ".chars().cycle().take(4 << 20).collect();
    round_trip(make, [("body".to_owned(), Value::Text(text))].into());
}

/// Eight MiB of random bytes.
pub fn large_bytes_round_trip<S: Store>(make: impl Fn() -> S) {
    round_trip(
        make,
        [("data".to_owned(), Value::Bytes(noise(8 << 20, 7)))].into(),
    );
}

/// Lists and records nested 64 deep, and a list of 100,000 values.
pub fn nested_lists_and_records_round_trip<S: Store>(make: impl Fn() -> S) {
    let mut deep = Value::Text("bottom".into());
    for level in 0..64 {
        deep = if level % 2 == 0 {
            Value::List(vec![Value::Int(level), deep, Value::Null])
        } else {
            let mut r = Record::new();
            r.insert(format!("level{level}"), deep);
            r.insert("n".into(), Value::Int(level));
            Value::Record(r)
        };
    }
    let long = Value::List((0..100_000).map(Value::Int).collect());
    round_trip(
        make,
        [("meta".to_owned(), deep), ("tags".to_owned(), long)].into(),
    );
}

/// An entity with 2,000 fields.
pub fn many_fields_round_trip<S: Store>(make: impl Fn() -> S) {
    let fields: Record = (0..2_000)
        .map(|i| (format!("field_{i:04}"), Value::Int(i)))
        .collect();
    round_trip(make, fields);
}
