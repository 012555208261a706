//! The server's own tables (see "Tracked tables" in the crate docs): rows
//! that other applications write with plain SQL are captured, and the
//! nodes' versions are written back as plain rows.

use sync_core::{EntityKey, Record, StoreError, Uuid, Value};

/// One tracked table.
#[derive(Clone, Debug)]
pub(crate) struct Tracked {
    pub(crate) entity_type: String,
    /// Schema-qualified.
    pub(crate) table: String,
    /// Data columns, quoted where written into SQL.
    pub(crate) columns: Vec<String>,
}

/// `name` as a quoted SQL identifier.
pub(crate) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A row's JSON (`to_jsonb(row)`) as the fields of a version.
pub(crate) fn fields_from_json(tracked: &Tracked, json: &str) -> Result<Record, StoreError> {
    let row: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(json).map_err(|e| StoreError::Corrupt {
            detail: format!("a row of {} did not read as JSON ({e})", tracked.table),
        })?;
    let mut fields = Record::new();
    for column in &tracked.columns {
        let value = match row.get(column) {
            None | Some(serde_json::Value::Null) => continue,
            Some(serde_json::Value::Bool(b)) => Value::Bool(*b),
            Some(serde_json::Value::Number(n)) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Some(serde_json::Value::String(s)) => Value::Text(s.clone()),
            Some(other) => Value::Text(other.to_string()),
        };
        fields.insert(column.clone(), value);
    }
    Ok(fields)
}

/// The JSON object `jsonb_populate_record` turns into the row of a version.
pub(crate) fn row_json(
    tracked: &Tracked,
    id: Uuid,
    updated_at: i64,
    is_deleted: bool,
    fields: &Record,
) -> String {
    let mut row = serde_json::Map::new();
    row.insert(
        "sync_uuid".into(),
        serde_json::Value::String(id.to_string()),
    );
    row.insert("updated_at".into(), updated_at.into());
    row.insert("is_deleted".into(), is_deleted.into());
    for column in &tracked.columns {
        if let Some(value) = fields.get(column) {
            row.insert(column.clone(), sync_core::serde_bridge::to_json(value));
        }
    }
    serde_json::Value::Object(row).to_string()
}

/// Whether a version is a removal (its row is deleted, not soft-deleted).
pub(crate) fn is_removal(fields: &Record) -> bool {
    matches!(
        fields.get(sync_core::entity::REMOVED_FIELD),
        Some(Value::Bool(true))
    )
}

/// The refusal of a version whose row a constraint refused.
pub(crate) fn refused(key: &EntityKey, table: &str, e: &postgres::Error) -> StoreError {
    StoreError::Refused {
        key: key.clone(),
        reason: format!(
            "table {table} refused the row: {}",
            e.as_db_error()
                .map_or_else(|| e.to_string(), |d| d.message().to_owned())
        ),
    }
}

/// The trigger function of a schema's tracked tables.
pub(crate) fn capture_function(schema: &str) -> String {
    format!(
        "CREATE OR REPLACE FUNCTION {schema}._sync_capture_row() RETURNS trigger
         LANGUAGE plpgsql AS $f$
         BEGIN
             IF current_setting('syncplan.applying', true) = 'on' THEN RETURN NULL; END IF;
             INSERT INTO {schema}._sync_capture(entity_type, id, deleted, at)
             VALUES (TG_ARGV[0],
                     CASE WHEN TG_OP = 'DELETE' THEN OLD.sync_uuid ELSE NEW.sync_uuid END,
                     TG_OP = 'DELETE',
                     (extract(epoch FROM clock_timestamp()) * 1000000)::bigint);
             RETURN NULL;
         END $f$;"
    )
}
