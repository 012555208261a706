//! The server's own tables (see "Tracked tables" in the crate docs): rows
//! that other applications write with plain SQL are captured, and the
//! nodes' versions are written back as plain rows.
//!
//! Each data column maps to a field by its PostgreSQL type:
//!
//! | column type | field kind | travels as |
//! |---|---|---|
//! | `boolean` | `Bool` | `Value::Bool` |
//! | `smallint`, `integer`, `bigint` | `Int` | `Value::Int` |
//! | `real`, `double precision` | `Float` | `Value::Float` |
//! | `bytea` | `Bytes` | `Value::Bytes` |
//! | `timestamptz`, `timestamp` (read as UTC) | `Timestamp` | `Value::Timestamp`, microseconds |
//! | `uuid` | `Uuid` | `Value::Uuid` |
//! | a single-column foreign key to another tracked table | `Reference` to its entity type | the parent row's `sync_uuid` |
//! | anything else: `text`, `varchar`, `numeric`, `date`, `json`, enums, arrays... | `Text` | the value's text form, exact (`numeric` keeps every digit), cast back to the column's type when written |
//!
//! `infinity` timestamps read as no value. A primary key column with a
//! default (`serial`, identity, `DEFAULT gen_random_uuid()`) is the row's
//! local id and does not travel; any other primary key column is a field.
//! Generated columns are neither read nor written.

use postgres::types::ToSql;
use sync_core::{EntityKey, EntityType, FieldKind, Record, StoreError, Timestamp, Uuid, Value};

/// How one column maps to a field.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum ColumnKind {
    Bool,
    Int,
    Float,
    Bytes,
    /// `zoned`: `timestamptz` (else `timestamp`, read as UTC).
    Timestamp {
        zoned: bool,
    },
    Uuid,
    /// A foreign key to the tracked table `parent_table` (of type
    /// `target`), on its column `parent_column`.
    Reference {
        target: String,
        parent_table: String,
        parent_column: String,
    },
    /// Anything else, as its text form.
    Text,
}

impl ColumnKind {
    /// The kind of a column of type `typname` (`pg_type.typname`).
    pub(crate) fn of_type(typname: &str) -> ColumnKind {
        match typname {
            "bool" => ColumnKind::Bool,
            "int2" | "int4" | "int8" => ColumnKind::Int,
            "float4" | "float8" => ColumnKind::Float,
            "bytea" => ColumnKind::Bytes,
            "timestamptz" => ColumnKind::Timestamp { zoned: true },
            "timestamp" => ColumnKind::Timestamp { zoned: false },
            "uuid" => ColumnKind::Uuid,
            _ => ColumnKind::Text,
        }
    }

    fn field_kind(&self) -> FieldKind {
        match self {
            ColumnKind::Bool => FieldKind::Bool,
            ColumnKind::Int => FieldKind::Int,
            ColumnKind::Float => FieldKind::Float,
            ColumnKind::Bytes => FieldKind::Bytes,
            ColumnKind::Timestamp { .. } => FieldKind::Timestamp,
            ColumnKind::Uuid => FieldKind::Uuid,
            ColumnKind::Reference { target, .. } => FieldKind::Reference {
                target: target.clone(),
            },
            ColumnKind::Text => FieldKind::Text,
        }
    }
}

/// One data column of a tracked table.
#[derive(Clone, Debug)]
pub(crate) struct Column {
    /// Column (and field) name.
    pub(crate) name: String,
    /// The column's type as SQL (`format_type`), for casts.
    pub(crate) sql_type: String,
    pub(crate) kind: ColumnKind,
}

/// One tracked table.
#[derive(Clone, Debug)]
pub(crate) struct Tracked {
    pub(crate) entity_type: String,
    /// Schema-qualified.
    pub(crate) table: String,
    /// Data columns.
    pub(crate) columns: Vec<Column>,
}

/// `name` as a quoted SQL identifier.
pub(crate) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl Tracked {
    /// The entity type the table's columns describe (last writer wins).
    pub(crate) fn entity_type(&self) -> EntityType {
        self.columns
            .iter()
            .fold(EntityType::new(&self.entity_type), |t, c| {
                t.field(&c.name, c.kind.field_kind())
            })
    }

    /// `SELECT is_deleted, <one typed expression per column> FROM table
    /// WHERE sync_uuid = $1`.
    pub(crate) fn select_sql(&self) -> String {
        let mut sql = "SELECT t.is_deleted".to_owned();
        for c in &self.columns {
            let col = format!("t.{}", quote(&c.name));
            let expr = match &c.kind {
                ColumnKind::Bool | ColumnKind::Bytes | ColumnKind::Uuid => col,
                ColumnKind::Int => format!("{col}::int8"),
                ColumnKind::Float => format!("{col}::float8"),
                ColumnKind::Timestamp { .. } => format!(
                    "CASE WHEN isfinite({col}) THEN (extract(epoch FROM {col}) * 1000000)::int8 END"
                ),
                ColumnKind::Reference {
                    parent_table,
                    parent_column,
                    ..
                } => format!(
                    "(SELECT p.sync_uuid FROM {parent_table} p WHERE p.{} = {col})",
                    quote(parent_column)
                ),
                ColumnKind::Text => format!("{col}::text"),
            };
            sql.push_str(", ");
            sql.push_str(&expr);
        }
        sql.push_str(&format!(" FROM {} t WHERE t.sync_uuid = $1", self.table));
        sql
    }

    /// A row read with [`Tracked::select_sql`] as the fields of a version,
    /// and its `is_deleted`.
    pub(crate) fn fields_from_row(
        &self,
        row: &postgres::Row,
    ) -> Result<(bool, Record), StoreError> {
        let bad = |e: postgres::Error| StoreError::Corrupt {
            detail: format!("a row of {} did not read ({e})", self.table),
        };
        let deleted: bool = row.try_get(0).map_err(bad)?;
        let mut fields = Record::new();
        for (i, c) in self.columns.iter().enumerate() {
            let i = i + 1;
            let value = match &c.kind {
                ColumnKind::Bool => row
                    .try_get::<_, Option<bool>>(i)
                    .map(|v| v.map(Value::Bool)),
                ColumnKind::Int => row.try_get::<_, Option<i64>>(i).map(|v| v.map(Value::Int)),
                ColumnKind::Float => row
                    .try_get::<_, Option<f64>>(i)
                    .map(|v| v.map(Value::Float)),
                ColumnKind::Bytes => row
                    .try_get::<_, Option<Vec<u8>>>(i)
                    .map(|v| v.map(Value::Bytes)),
                ColumnKind::Timestamp { .. } => row
                    .try_get::<_, Option<i64>>(i)
                    .map(|v| v.map(|m| Value::Timestamp(Timestamp::from_micros(m)))),
                ColumnKind::Uuid | ColumnKind::Reference { .. } => row
                    .try_get::<_, Option<Uuid>>(i)
                    .map(|v| v.map(Value::Uuid)),
                ColumnKind::Text => row
                    .try_get::<_, Option<String>>(i)
                    .map(|v| v.map(Value::Text)),
            }
            .map_err(bad)?;
            if let Some(value) = value {
                fields.insert(c.name.clone(), value);
            }
        }
        Ok((deleted, fields))
    }

    /// The `INSERT ... ON CONFLICT (sync_uuid) DO UPDATE` of a live version,
    /// with its parameters, or why a field does not fit its column (the
    /// version is then refused).
    pub(crate) fn upsert(
        &self,
        id: Uuid,
        updated_at: i64,
        is_deleted: bool,
        fields: &Record,
    ) -> Result<(String, Vec<Box<dyn ToSql + Sync>>), String> {
        let mut params: Vec<Box<dyn ToSql + Sync>> =
            vec![Box::new(id), Box::new(updated_at), Box::new(is_deleted)];
        let mut columns = vec![
            "sync_uuid".to_owned(),
            "updated_at".to_owned(),
            "is_deleted".to_owned(),
        ];
        let mut values = vec!["$1".to_owned(), "$2".to_owned(), "$3".to_owned()];
        for c in &self.columns {
            let value = fields.get(&c.name).unwrap_or(&Value::Null);
            let p = format!("${}", params.len() + 1);
            let (param, expr) = param(c, value, &p)?;
            params.push(param);
            columns.push(quote(&c.name));
            values.push(format!("CAST({expr} AS {})", c.sql_type));
        }
        let updates = columns[1..]
            .iter()
            .map(|c| format!("{c} = EXCLUDED.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT (sync_uuid) DO UPDATE SET {updates}",
            self.table,
            columns.join(", "),
            values.join(", "),
        );
        Ok((sql, params))
    }

    /// The parents a version refers to whose rows are missing here (each
    /// `(parent table, parent sync_uuid)`), for the caller to check.
    pub(crate) fn references<'f>(&'f self, fields: &'f Record) -> Vec<(&'f str, Uuid)> {
        self.columns
            .iter()
            .filter_map(|c| match (&c.kind, fields.get(&c.name)) {
                (ColumnKind::Reference { parent_table, .. }, Some(Value::Uuid(id))) => {
                    Some((parent_table.as_str(), *id))
                }
                _ => None,
            })
            .collect()
    }
}

/// The parameter for `value` in column `c`, and its SQL expression around
/// placeholder `p`.
fn param(c: &Column, value: &Value, p: &str) -> Result<(Box<dyn ToSql + Sync>, String), String> {
    let mismatch = || {
        format!(
            "field {} holds a {} value, which column {} ({}) cannot take",
            c.name,
            value.kind_name(),
            c.name,
            c.sql_type
        )
    };
    if matches!(value, Value::Null) {
        return Ok((Box::new(None::<String>), format!("{p}::text")));
    }
    Ok(match (&c.kind, value) {
        (ColumnKind::Bool, Value::Bool(b)) => (Box::new(*b), format!("{p}::bool")),
        (ColumnKind::Int, Value::Int(i)) => (Box::new(*i), format!("{p}::int8")),
        (ColumnKind::Float, Value::Float(x)) => (Box::new(*x), format!("{p}::float8")),
        #[allow(clippy::cast_precision_loss)]
        (ColumnKind::Float, Value::Int(i)) => (Box::new(*i as f64), format!("{p}::float8")),
        (ColumnKind::Bytes, Value::Bytes(b)) => (Box::new(b.clone()), format!("{p}::bytea")),
        (ColumnKind::Timestamp { zoned }, Value::Timestamp(t)) => {
            let epoch = if *zoned { "timestamptz" } else { "timestamp" };
            (
                Box::new(t.as_micros()),
                format!("('epoch'::{epoch} + {p}::int8 * interval '1 microsecond')"),
            )
        }
        (ColumnKind::Uuid, Value::Uuid(u)) => (Box::new(*u), format!("{p}::uuid")),
        (
            ColumnKind::Reference {
                parent_table,
                parent_column,
                ..
            },
            Value::Uuid(u),
        ) => (
            Box::new(*u),
            format!(
                "(SELECT p.{} FROM {parent_table} p WHERE p.sync_uuid = {p}::uuid)",
                quote(parent_column)
            ),
        ),
        (ColumnKind::Text, Value::Text(s)) => (Box::new(s.clone()), format!("{p}::text")),
        (ColumnKind::Text, Value::Int(i)) => (Box::new(i.to_string()), format!("{p}::text")),
        (ColumnKind::Text, Value::Float(x)) => (Box::new(x.to_string()), format!("{p}::text")),
        (ColumnKind::Text, Value::Bool(b)) => (Box::new(b.to_string()), format!("{p}::text")),
        _ => return Err(mismatch()),
    })
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

/// The trigger function of a schema's tracked tables. The store's own
/// writes (`syncplan.applying`) are not captured, but what a foreign key's
/// action does to other tracked tables because of them (an `ON DELETE
/// CASCADE`, `SET NULL`: trigger depth above one) is, so the nodes hear of
/// it.
pub(crate) fn capture_function(schema: &str) -> String {
    format!(
        "CREATE OR REPLACE FUNCTION {schema}._sync_capture_row() RETURNS trigger
         LANGUAGE plpgsql AS $f$
         BEGIN
             IF current_setting('syncplan.applying', true) = 'on' AND pg_trigger_depth() < 2 THEN
                 RETURN NULL;
             END IF;
             INSERT INTO {schema}._sync_capture(entity_type, id, deleted, at)
             VALUES (TG_ARGV[0],
                     CASE WHEN TG_OP = 'DELETE' THEN OLD.sync_uuid ELSE NEW.sync_uuid END,
                     TG_OP = 'DELETE',
                     (extract(epoch FROM clock_timestamp()) * 1000000)::bigint);
             RETURN NULL;
         END $f$;"
    )
}
