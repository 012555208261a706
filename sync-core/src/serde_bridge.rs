//! The serde bridge: any `T: Serialize + DeserializeOwned` maps to an entity
//! record and back, guided by the type's registered field kinds. No sync code
//! per type.
//!
//! Conversion goes through `serde_json::Value`; the registered kind decides
//! how ambiguous JSON becomes a typed [`Value`] (a string field declared as
//! `Uuid` becomes `Value::Uuid`, an integer declared as `Timestamp` becomes
//! microseconds since the epoch, an array declared as `Bytes` becomes bytes).

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Number, Value as Json};
use uuid::Uuid;

use crate::entity_registry::{EntityType, FieldKind};
use crate::error::WriteError;
use crate::ids::Timestamp;
use crate::value::{Record, Value};

/// Converts a typed struct into a record of the registered type. Fields the
/// type does not declare are refused; the struct's `uuid`, `updated_at` and
/// `is_deleted` members, if any, are left out (the engine owns them).
pub fn to_record<T: Serialize>(entity_type: &EntityType, value: &T) -> Result<Record, WriteError> {
    let serde_err = |detail: String| WriteError::Serde {
        entity_type: entity_type.name().to_owned(),
        detail,
    };
    let Json::Object(map) = serde_json::to_value(value).map_err(|e| serde_err(e.to_string()))?
    else {
        return Err(serde_err("a struct (JSON object) was expected".into()));
    };
    let mut record = Record::new();
    for (name, json) in map {
        if matches!(name.as_str(), "uuid" | "updated_at" | "is_deleted") {
            continue;
        }
        let def = entity_type
            .field_def(&name)
            .ok_or_else(|| WriteError::UnknownField {
                entity_type: entity_type.name().to_owned(),
                field: name.clone(),
            })?;
        let value =
            from_json(&def.kind, json).map_err(|detail| serde_err(format!("{name}: {detail}")))?;
        record.insert(name, value);
    }
    Ok(record)
}

/// Converts a record back into a typed struct.
pub fn from_record<T: DeserializeOwned>(
    entity_type: &EntityType,
    record: &Record,
) -> Result<T, WriteError> {
    let map: Map<String, Json> = record
        .iter()
        .map(|(k, v)| (k.clone(), to_json(v)))
        .collect();
    serde_json::from_value(Json::Object(map)).map_err(|e| WriteError::Serde {
        entity_type: entity_type.name().to_owned(),
        detail: e.to_string(),
    })
}

/// A JSON rendering of a value (timestamps as RFC 3339, UUIDs and bytes as
/// strings/arrays), used by the bridge and the readable packet view.
pub fn to_json(value: &Value) -> Json {
    match value {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => Json::Number((*i).into()),
        Value::Float(x) => Number::from_f64(*x).map_or(Json::Null, Json::Number),
        Value::Text(s) => Json::String(s.clone()),
        Value::Bytes(b) => Json::Array(b.iter().map(|x| Json::Number((*x).into())).collect()),
        Value::Timestamp(t) => match Timestamp::parse_rfc3339(&t.to_string()) {
            // RFC 3339 where it reads back the same (years 0 to 9999),
            // integer microseconds otherwise.
            Some(back) if back == *t => Json::String(t.to_string()),
            _ => Json::from(t.as_micros()),
        },
        Value::Uuid(u) => Json::String(u.to_string()),
        Value::List(items) => Json::Array(items.iter().map(to_json).collect()),
        Value::Record(r) => Json::Object(r.iter().map(|(k, v)| (k.clone(), to_json(v))).collect()),
    }
}

fn from_json(kind: &FieldKind, json: Json) -> Result<Value, String> {
    if json.is_null() {
        return Ok(Value::Null);
    }
    match kind {
        FieldKind::Bool => json
            .as_bool()
            .map(Value::Bool)
            .ok_or("expected a bool".into()),
        FieldKind::Int => json
            .as_i64()
            .map(Value::Int)
            .ok_or("expected an integer".into()),
        FieldKind::Float => json
            .as_f64()
            .map(Value::Float)
            .ok_or("expected a number".into()),
        FieldKind::Text => match json {
            Json::String(s) => Ok(Value::Text(s)),
            other => Err(format!("expected text, got {other}")),
        },
        FieldKind::Bytes => bytes_from_json(json).map(Value::Bytes),
        FieldKind::Timestamp => timestamp_from_json(&json).map(Value::Timestamp),
        FieldKind::Uuid | FieldKind::Reference { .. } => json
            .as_str()
            .and_then(|s| Uuid::parse_str(s).ok())
            .map(Value::Uuid)
            .ok_or("expected a UUID string".into()),
        FieldKind::List => match json {
            Json::Array(_) => Ok(untyped(json)),
            other => Err(format!("expected a list, got {other}")),
        },
        FieldKind::Record => match json {
            Json::Object(_) => Ok(untyped(json)),
            other => Err(format!("expected an object, got {other}")),
        },
    }
}

fn bytes_from_json(json: Json) -> Result<Vec<u8>, String> {
    let Json::Array(items) = json else {
        return Err("expected an array of bytes".into());
    };
    items
        .iter()
        .map(|i| {
            i.as_u64()
                .and_then(|b| u8::try_from(b).ok())
                .ok_or_else(|| "expected bytes 0-255".to_string())
        })
        .collect()
}

fn timestamp_from_json(json: &Json) -> Result<Timestamp, String> {
    if let Some(micros) = json.as_i64() {
        return Ok(Timestamp::from_micros(micros));
    }
    let text = json.as_str().ok_or("expected a timestamp")?;
    Timestamp::parse_rfc3339(text).ok_or_else(|| format!("{text:?} is not an RFC 3339 timestamp"))
}

/// JSON without a declared kind: numbers become Int or Float, strings Text.
fn untyped(json: Json) -> Value {
    match json {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(b),
        Json::Number(n) => n
            .as_i64()
            .map_or_else(|| Value::Float(n.as_f64().unwrap_or(f64::NAN)), Value::Int),
        Json::String(s) => Value::Text(s),
        Json::Array(items) => Value::List(items.into_iter().map(untyped).collect()),
        Json::Object(map) => Value::Record(map.into_iter().map(|(k, v)| (k, untyped(v))).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `json_envelope` fuzz target: timestamps past year 9999
    /// or before year 0 were written in a form `from_json` refused.
    /// Found by the `json_envelope` fuzz target: a list field took a number
    /// (`"tags": 2.5`) as an untyped value, which the type then refused.
    #[test]
    fn a_list_field_refuses_what_is_not_a_list() {
        assert!(from_json(&FieldKind::List, serde_json::json!(2.5)).is_err());
        assert!(from_json(&FieldKind::List, serde_json::json!("a")).is_err());
        assert_eq!(
            from_json(&FieldKind::List, serde_json::json!([1])),
            Ok(Value::List(vec![Value::Int(1)]))
        );
    }

    #[test]
    fn timestamps_outside_rfc3339_years_round_trip() {
        let kind = FieldKind::Timestamp;
        for micros in [
            i64::MAX,
            i64::MIN,
            253_402_300_800_000_000,
            -62_167_219_200_000_001,
            1_765_535_400_000_000,
        ] {
            let value = Value::Timestamp(Timestamp(micros));
            let json = to_json(&value);
            assert_eq!(
                from_json(&kind, json.clone()),
                Ok(value),
                "{micros} via {json}"
            );
        }
    }
}
