//! How commands print: a sentence or table for a person, or JSON for a
//! script (`--json`).

use serde_json::Value as Json;
use syncplan::{Entity, Record};

use super::failure::{Context, Result};

/// Where a command's result goes.
#[derive(Clone, Copy, Debug)]
pub struct Output {
    /// Print JSON instead of text.
    pub json: bool,
}

impl Output {
    /// Prints `value` as JSON, or the text `human` builds.
    pub fn emit(&self, value: &Json, human: impl FnOnce() -> String) -> Result<()> {
        if self.json {
            let text = serde_json::to_string_pretty(value).context("encoding the output")?;
            println!("{text}");
        } else {
            println!("{}", human());
        }
        Ok(())
    }
}

/// `seconds` as "12s ago", "5m ago", "3h ago", "2d ago".
pub fn ago(seconds: i64) -> String {
    match seconds {
        s if s < 0 => "in the future".into(),
        s if s < 120 => format!("{s}s ago"),
        s if s < 2 * 3600 => format!("{}m ago", s / 60),
        s if s < 2 * 86_400 => format!("{}h ago", s / 3600),
        s => format!("{}d ago", s / 86_400),
    }
}

/// An entity's fields as a JSON object (values in the serde bridge's JSON
/// form).
pub fn fields_json(fields: &Record) -> Json {
    Json::Object(
        fields
            .iter()
            .map(|(k, v)| (k.clone(), syncplan::serde_bridge::to_json(v)))
            .collect(),
    )
}

/// One version of an entity as JSON.
pub fn entity_json(entity: &Entity) -> Json {
    serde_json::json!({
        "type": entity.key.entity_type,
        "uuid": entity.key.id.to_string(),
        "updated_at": entity.updated_at.to_string(),
        "is_deleted": entity.is_deleted,
        "origin_node_id": entity.origin.to_string(),
        "data": fields_json(&entity.fields),
    })
}

/// Fields as `name=value, ...` for a person.
pub fn fields_text(fields: &Record) -> String {
    fields
        .iter()
        .filter(|(name, _)| !name.starts_with("_sync"))
        .map(|(k, v)| format!("{k}={}", syncplan::serde_bridge::to_json(v)))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ago_picks_a_readable_unit() {
        assert_eq!(ago(59), "59s ago");
        assert_eq!(ago(600), "10m ago");
        assert_eq!(ago(3 * 3600), "3h ago");
        assert_eq!(ago(3 * 86_400), "3d ago");
    }
}
