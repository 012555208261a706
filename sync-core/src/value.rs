//! Typed field values and records: the generic shape of every entity.

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::ids::Timestamp;

/// A record of named values. A `BTreeMap`, so iteration order, and therefore
/// encoded bytes, are deterministic.
///
/// At the top level of an entity, an absent field and a `Null` field mean the
/// same thing, and stored records hold no top-level nulls: the engine drops
/// them from local writes and from decoded packets, and stores must return
/// records the same way (a SQL `NULL` column is an absent field). Nulls inside
/// lists and nested records are kept.
pub type Record = BTreeMap<String, Value>;

/// One typed value of an entity field.
#[derive(Clone, Debug, PartialEq, Default)]
pub enum Value {
    /// No value.
    #[default]
    Null,
    /// A boolean.
    Bool(bool),
    /// A signed 64-bit integer.
    Int(i64),
    /// A 64-bit float.
    Float(f64),
    /// UTF-8 text.
    Text(String),
    /// Raw bytes.
    Bytes(Vec<u8>),
    /// A UTC instant.
    Timestamp(Timestamp),
    /// A UUID, typically the sync key of another entity (a reference).
    Uuid(Uuid),
    /// An ordered list of values.
    List(Vec<Value>),
    /// A nested record.
    Record(Record),
}

impl Value {
    /// The kind's name, for error messages.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Text(_) => "text",
            Value::Bytes(_) => "bytes",
            Value::Timestamp(_) => "timestamp",
            Value::Uuid(_) => "uuid",
            Value::List(_) => "list",
            Value::Record(_) => "record",
        }
    }

    /// The UUID if this is a `Uuid` value.
    pub fn as_uuid(&self) -> Option<Uuid> {
        match self {
            Value::Uuid(u) => Some(*u),
            _ => None,
        }
    }

    /// The text if this is a `Text` value.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }

    /// The integer if this is an `Int` value.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// Whether this is `Null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Feeds a canonical, unambiguous byte form of the value to `out`
    /// (used for content hashes and deterministic tie-breaks).
    pub(crate) fn canonical_bytes(&self, out: &mut Vec<u8>) {
        match self {
            Value::Null => out.push(0),
            Value::Bool(b) => out.extend([1, u8::from(*b)]),
            Value::Int(i) => {
                out.push(2);
                out.extend(i.to_be_bytes());
            }
            Value::Float(x) => {
                out.push(3);
                out.extend(x.to_bits().to_be_bytes());
            }
            Value::Text(s) => len_prefixed(out, 4, s.as_bytes()),
            Value::Bytes(b) => len_prefixed(out, 5, b),
            Value::Timestamp(t) => {
                out.push(6);
                out.extend(t.as_micros().to_be_bytes());
            }
            Value::Uuid(u) => {
                out.push(7);
                out.extend(u.as_bytes());
            }
            Value::List(items) => {
                out.push(8);
                out.extend((items.len() as u64).to_be_bytes());
                items.iter().for_each(|v| v.canonical_bytes(out));
            }
            Value::Record(record) => {
                out.push(9);
                record_canonical_bytes(record, out);
            }
        }
    }
}

/// Canonical bytes of a whole record (fields in name order).
pub(crate) fn record_canonical_bytes(record: &Record, out: &mut Vec<u8>) {
    out.extend((record.len() as u64).to_be_bytes());
    for (name, value) in record {
        len_prefixed(out, 0xFF, name.as_bytes());
        value.canonical_bytes(out);
    }
}

fn len_prefixed(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    out.push(tag);
    out.extend((bytes.len() as u64).to_be_bytes());
    out.extend(bytes);
}

macro_rules! value_from {
    ($($t:ty => $variant:ident),* $(,)?) => {
        $(impl From<$t> for Value {
            fn from(v: $t) -> Self { Value::$variant(v.into()) }
        })*
    };
}

value_from!(
    bool => Bool,
    i64 => Int,
    i32 => Int,
    f64 => Float,
    String => Text,
    &str => Text,
    Vec<u8> => Bytes,
    Timestamp => Timestamp,
    Uuid => Uuid,
    Vec<Value> => List,
    Record => Record,
);

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}
