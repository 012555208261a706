//! Rows of tracked tables to entity fields and back.
//!
//! Reading: each data column becomes a field of its mapped kind; a NULL
//! column is an absent field (the store contract: records hold no top-level
//! nulls). A foreign
//! key column is read as the parent's sync UUID. A value that cannot be read
//! as its column's kind (text in an integer column...) is reported with the
//! table, row and column, so a person can fix it; it is never guessed at.
//!
//! Writing: a live version sets every synced column (absent fields become
//! NULL) and the excluded columns it carries; a reference is written as the
//! parent row's key. A tombstone marked [`crate::REMOVED_FIELD`] (the writer
//! removed its row with SQL `DELETE`) removes the row, unless a foreign key
//! without a cascade still holds it (then it is soft-deleted instead); any
//! other tombstone soft-deletes the row (`is_deleted = 1`) with the values it
//! carries. The exact tombstone is kept in the registry either way.

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, params_from_iter};
use sync_core::{Entity, FieldKind, Record, StoreError, Timestamp, Uuid, Value};

use crate::table::{Column, ColumnKind, ForeignKey, TrackedTable, quote};

/// A row read from a tracked table.
pub(crate) struct RowVersion {
    /// The modification time column.
    pub updated_at: Timestamp,
    /// The delete flag column.
    pub is_deleted: bool,
    /// The data columns that are not NULL.
    pub fields: Record,
}

/// Reads the row whose sync key is `id`.
pub(crate) fn read(
    conn: &Connection,
    table: &TrackedTable,
    id: Uuid,
) -> Result<Option<RowVersion>, StoreError> {
    let mut stmt = conn
        .prepare_cached(&table.select_sql)
        .map_err(|e| StoreError::backend(format!("reading table {}", table.table), e))?;
    let cells: Option<Vec<SqlValue>> = stmt
        .query_row([key_text(id)], |r| {
            (0..r.as_ref().column_count())
                .map(|i| r.get::<_, SqlValue>(i))
                .collect()
        })
        .optional()
        .map_err(|e| StoreError::backend(format!("reading table {}", table.table), e))?;
    cells.map(|c| decode_row(table, id, &c)).transpose()
}

fn decode_row(
    table: &TrackedTable,
    id: Uuid,
    cells: &[SqlValue],
) -> Result<RowVersion, StoreError> {
    let bad = |column: &str, found: &SqlValue, wanted: &str| StoreError::Corrupt {
        detail: format!(
            "{}.{column} of the row with {} = {id} holds {}, which cannot be read as {wanted}; fix that value in the table",
            table.table,
            table.key,
            describe(found)
        ),
    };
    let updated_at = match &cells[0] {
        SqlValue::Integer(micros) => Timestamp::from_micros(*micros),
        other => {
            return Err(bad(
                &table.updated_at,
                other,
                "microseconds since the epoch",
            ));
        }
    };
    let is_deleted = match &cells[1] {
        SqlValue::Integer(flag) => *flag != 0,
        SqlValue::Null => false,
        other => return Err(bad(&table.is_deleted, other, "0 or 1")),
    };
    let mut fields = Record::new();
    let mut i = 2;
    for column in &table.columns {
        let cell = &cells[i];
        i += 1;
        let value = match &column.kind {
            ColumnKind::ForeignKey(_) => {
                let parent_key = &cells[i];
                i += 1;
                match (cell, parent_key) {
                    (SqlValue::Null, _) => None,
                    (_, SqlValue::Text(key)) => Some(Value::Uuid(
                        Uuid::parse_str(key)
                            .map_err(|_| bad(&column.name, parent_key, "a UUID"))?,
                    )),
                    _ => {
                        return Err(StoreError::Corrupt {
                            detail: format!(
                                "{}.{} of the row with {} = {id} references a parent row that does not exist; restore the parent or clear the reference",
                                table.table, column.name, table.key
                            ),
                        });
                    }
                }
            }
            ColumnKind::Declared(kind) => {
                read_cell(kind, cell).map_err(|wanted| bad(&column.name, cell, wanted))?
            }
            ColumnKind::Dynamic => dynamic(cell),
        };
        if let Some(value) = value {
            fields.insert(column.name.clone(), value);
        }
    }
    Ok(RowVersion {
        updated_at,
        is_deleted,
        fields,
    })
}

/// Reads one cell as `kind`; `Err` names what was expected.
fn read_cell(kind: &FieldKind, cell: &SqlValue) -> Result<Option<Value>, &'static str> {
    use SqlValue as S;
    if matches!(cell, S::Null) {
        return Ok(None);
    }
    let value = match (kind, cell) {
        (FieldKind::Bool, S::Integer(i)) => Value::Bool(*i != 0),
        (FieldKind::Bool, S::Text(t)) if t == "true" || t == "false" => Value::Bool(t == "true"),
        (FieldKind::Bool, _) => return Err("a boolean (0 or 1)"),
        (FieldKind::Int, S::Integer(i)) => Value::Int(*i),
        (FieldKind::Int, S::Real(x)) if x.fract() == 0.0 && x.abs() < 9.0e18 => {
            Value::Int(*x as i64)
        }
        (FieldKind::Int, _) => return Err("an integer"),
        (FieldKind::Float, S::Real(x)) => Value::Float(*x),
        (FieldKind::Float, S::Integer(i)) => Value::Float(*i as f64),
        (FieldKind::Float, _) => return Err("a number"),
        (FieldKind::Text, S::Text(t)) => Value::Text(t.clone()),
        (FieldKind::Text, S::Integer(i)) => Value::Text(i.to_string()),
        (FieldKind::Text, S::Real(x)) => Value::Text(x.to_string()),
        (FieldKind::Text, _) => return Err("text"),
        (FieldKind::Bytes, S::Blob(b)) => Value::Bytes(b.clone()),
        (FieldKind::Bytes, S::Text(t)) => Value::Bytes(t.clone().into_bytes()),
        (FieldKind::Bytes, _) => return Err("bytes"),
        (FieldKind::Timestamp, S::Integer(i)) => Value::Timestamp(Timestamp::from_micros(*i)),
        (FieldKind::Timestamp, _) => return Err("microseconds since the epoch"),
        (FieldKind::Uuid | FieldKind::Reference { .. }, S::Text(t)) => {
            Value::Uuid(Uuid::parse_str(t).map_err(|_| "a UUID")?)
        }
        (FieldKind::Uuid | FieldKind::Reference { .. }, S::Blob(b)) => {
            Value::Uuid(Uuid::from_slice(b).map_err(|_| "a UUID")?)
        }
        (FieldKind::Uuid | FieldKind::Reference { .. }, _) => return Err("a UUID"),
        (FieldKind::List | FieldKind::Record, _) => {
            return Err("a list or record (not storable in a column)");
        }
    };
    Ok(Some(value))
}

fn dynamic(cell: &SqlValue) -> Option<Value> {
    match cell {
        SqlValue::Null => None,
        SqlValue::Integer(i) => Some(Value::Int(*i)),
        SqlValue::Real(x) => Some(Value::Float(*x)),
        SqlValue::Text(t) => Some(Value::Text(t.clone())),
        SqlValue::Blob(b) => Some(Value::Bytes(b.clone())),
    }
}

fn describe(cell: &SqlValue) -> String {
    match cell {
        SqlValue::Null => "NULL".into(),
        SqlValue::Integer(i) => format!("the integer {i}"),
        SqlValue::Real(x) => format!("the real {x}"),
        SqlValue::Text(t) => format!("the text {:?}", t.chars().take(40).collect::<String>()),
        SqlValue::Blob(b) => format!("a {}-byte blob", b.len()),
    }
}

/// What writing a live version did.
pub(crate) enum Written {
    /// The row now holds the version; these fields have no column.
    Row {
        /// Fields kept beside the row.
        extras: Record,
    },
    /// A referenced parent has no row here (it exists only as a tombstone,
    /// or has not arrived yet) and the reference cannot be NULL, so the
    /// version cannot be written to the table.
    ParentRowMissing,
    /// The row is written, but a referenced parent has no row yet: the
    /// reference is NULL until it does (filled in at commit).
    Deferred,
    /// Another row holds one of its UNIQUE or primary-key values (it will
    /// most likely let go of it later in the same packet: several writes to
    /// one row travel as its latest state only), so the row was left as it
    /// was. `reason` names the table, the columns and the values.
    Blocked {
        /// For a person, should the row still be blocked at commit.
        reason: String,
    },
}

/// Whether a failed write left a NOT NULL column empty.
fn is_not_null(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_NOTNULL
    )
}

/// Whether a failed write collided with a UNIQUE or primary-key value.
fn is_key_conflict(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
    )
}

/// Writes a live version into its row: an insert when the entity is new
/// here (`known` false), else an update (or an insert when its row is gone).
/// The sync keys of the rows of `table` whose foreign-key column `column`
/// points at the parent row with sync key `parent` (one join in SQL, no
/// entity decoded), or `None` when `column` is no foreign key.
pub(crate) fn referencing(
    conn: &Connection,
    table: &TrackedTable,
    column: &str,
    parent: Uuid,
) -> Result<Option<Vec<Uuid>>, StoreError> {
    let Some(Column {
        kind: ColumnKind::ForeignKey(fk),
        ..
    }) = table.column(column)
    else {
        return Ok(None);
    };
    let sql = format!(
        "SELECT t.{key} FROM {child} t JOIN {parent} p ON p.{to} = t.{col} WHERE p.{parent_key} = ?1",
        key = quote(&table.key),
        child = quote(&table.table),
        parent = quote(&fk.parent_table),
        to = quote(&fk.parent_column),
        col = quote(column),
        parent_key = quote(&fk.parent_key),
    );
    let failed =
        |e| StoreError::backend(format!("reading the children in table {}", table.table), e);
    let mut stmt = conn.prepare_cached(&sql).map_err(failed)?;
    let keys = stmt
        .query_map([key_text(parent)], |r| r.get::<_, String>(0))
        .map_err(failed)?
        .collect::<Result<Vec<String>, _>>()
        .map_err(failed)?;
    keys.iter()
        .map(|k| {
            Uuid::parse_str(k).map_err(|_| StoreError::Corrupt {
                detail: format!(
                    "table {} holds the sync key {k:?}, which is no UUID",
                    table.table
                ),
            })
        })
        .collect::<Result<Vec<Uuid>, _>>()
        .map(Some)
}

pub(crate) fn write_live(
    conn: &Connection,
    table: &TrackedTable,
    entity: &Entity,
    known: bool,
) -> Result<Written, StoreError> {
    let mut sets: Vec<(&str, SqlValue)> = Vec::with_capacity(table.columns.len() + 2);
    sets.push((
        &table.updated_at,
        SqlValue::Integer(entity.updated_at.as_micros()),
    ));
    sets.push((
        &table.is_deleted,
        SqlValue::Integer(i64::from(entity.is_deleted)),
    ));
    // A reference whose parent has no row yet is written NULL and filled in
    // at commit, once the parent's row exists (records that reference each
    // other arrive in one packet).
    let mut deferred = false;
    for column in &table.columns {
        let field = entity.fields.get(&column.name);
        if column.excluded && field.is_none() {
            continue;
        }
        let value = match (&column.kind, field) {
            (_, None | Some(Value::Null)) => SqlValue::Null,
            (ColumnKind::ForeignKey(fk), Some(value)) => {
                match parent_value(conn, table, column, fk, value)? {
                    Some(v) => v,
                    None => {
                        deferred = true;
                        SqlValue::Null
                    }
                }
            }
            (_, Some(value)) => to_sql(table, column, value)?,
        };
        sets.push((&column.name, value));
    }
    let extras: Record = entity
        .fields
        .iter()
        .filter(|(name, _)| table.column(name).is_none() && *name != crate::REMOVED_FIELD)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let id = entity.key.id;
    let written = match known {
        true => update_raw(conn, table, id, &sets),
        false => Ok(false),
    }
    .and_then(|updated| match updated {
        true => Ok(()),
        false => insert_raw(conn, table, id, &sets),
    });
    match written {
        Ok(()) if deferred => Ok(Written::Deferred),
        Ok(()) => Ok(Written::Row { extras }),
        // The reference cannot be NULL: the row waits, kept whole.
        Err(e) if deferred && is_not_null(&e) => Ok(Written::ParentRowMissing),
        Err(e) if is_key_conflict(&e) => Ok(Written::Blocked {
            reason: key_conflict_reason(table, entity, &e),
        }),
        Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation) => {
            Err(StoreError::Refused {
                key: entity.key.clone(),
                reason: format!(
                    "table {} refuses the row with {} = {id}: {}",
                    table.table,
                    table.key,
                    constraint_message(&e)
                ),
            })
        }
        Err(e) => Err(write_error(table, id, e)),
    }
}

/// SQLite's own words for a failed constraint ("NOT NULL constraint
/// failed: customer.email").
fn constraint_message(e: &rusqlite::Error) -> String {
    match e {
        rusqlite::Error::SqliteFailure(_, Some(message)) => message.clone(),
        other => other.to_string(),
    }
}

/// Names the table, columns and values of a UNIQUE collision: "table
/// customer already holds email = 'a@example.com' in another row".
fn key_conflict_reason(table: &TrackedTable, entity: &Entity, e: &rusqlite::Error) -> String {
    let message = constraint_message(e);
    let columns: Vec<&str> = message
        .split_once(": ")
        .map(|(_, list)| list.split(", ").collect())
        .unwrap_or_default();
    let values: Vec<String> = columns
        .iter()
        .map(|qualified| {
            let column = qualified.rsplit_once('.').map_or(*qualified, |(_, c)| c);
            let value = match entity.fields.get(column) {
                Some(Value::Text(text)) => format!("'{text}'"),
                Some(Value::Null) | None if column == table.key => format!("'{}'", entity.key.id),
                Some(value) => format!("{value:?}"),
                None => "NULL".to_owned(),
            };
            format!("{column} = {value}")
        })
        .collect();
    match values.is_empty() {
        true => format!("table {} refuses the row: {message}", table.table),
        false => format!(
            "table {} already holds {} in another row ({message})",
            table.table,
            values.join(", ")
        ),
    }
}

/// Whether a tombstone says its row was removed with SQL `DELETE` (rather
/// than soft-deleted).
pub(crate) fn is_removal(entity: &Entity) -> bool {
    entity.is_deleted && entity.fields.get(crate::REMOVED_FIELD) == Some(&Value::Bool(true))
}

/// Removes the row of a tombstone that says so; else, or when a foreign key
/// without a cascade still holds the row, marks it deleted at `updated_at`
/// keeping its values. Returns whether the row was removed.
pub(crate) fn remove_or_mark(
    conn: &Connection,
    table: &TrackedTable,
    entity: &Entity,
) -> Result<bool, StoreError> {
    let id = entity.key.id;
    if is_removal(entity) {
        let sql = format!(
            "DELETE FROM {} WHERE {} = ?1",
            quote(&table.table),
            quote(&table.key)
        );
        match conn
            .prepare_cached(&sql)
            .and_then(|mut s| s.execute([key_text(id)]))
        {
            Ok(_) => return Ok(true),
            Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation) => {
                // Rows of this node still reference it (added concurrently
                // with its deletion): keep it, soft-deleted.
            }
            Err(e) => return Err(write_error(table, id, e)),
        }
    }
    let sets = [
        (
            table.updated_at.as_str(),
            SqlValue::Integer(entity.updated_at.as_micros()),
        ),
        (table.is_deleted.as_str(), SqlValue::Integer(1)),
    ];
    update(conn, table, id, &sets).map(|_| false)
}

fn update(
    conn: &Connection,
    table: &TrackedTable,
    id: Uuid,
    sets: &[(&str, SqlValue)],
) -> Result<bool, StoreError> {
    update_raw(conn, table, id, sets).map_err(|e| write_error(table, id, e))
}

fn update_raw(
    conn: &Connection,
    table: &TrackedTable,
    id: Uuid,
    sets: &[(&str, SqlValue)],
) -> rusqlite::Result<bool> {
    let assignments: Vec<String> = sets
        .iter()
        .enumerate()
        .map(|(i, (name, _))| format!("{} = ?{}", quote(name), i + 2))
        .collect();
    let sql = format!(
        "UPDATE {} SET {} WHERE {} = ?1",
        quote(&table.table),
        assignments.join(", "),
        quote(&table.key)
    );
    let params =
        std::iter::once(SqlValue::Text(key_text(id))).chain(sets.iter().map(|(_, v)| v.clone()));
    conn.prepare_cached(&sql)
        .and_then(|mut s| s.execute(params_from_iter(params)))
        .map(|changed| changed > 0)
}

fn insert_raw(
    conn: &Connection,
    table: &TrackedTable,
    id: Uuid,
    sets: &[(&str, SqlValue)],
) -> rusqlite::Result<()> {
    let names: Vec<String> = std::iter::once(quote(&table.key))
        .chain(sets.iter().map(|(name, _)| quote(name)))
        .collect();
    let marks: Vec<String> = (1..=names.len()).map(|i| format!("?{i}")).collect();
    let sql = format!(
        "INSERT INTO {}({}) VALUES ({})",
        quote(&table.table),
        names.join(", "),
        marks.join(", ")
    );
    let params =
        std::iter::once(SqlValue::Text(key_text(id))).chain(sets.iter().map(|(_, v)| v.clone()));
    conn.prepare_cached(&sql)
        .and_then(|mut s| s.execute(params_from_iter(params)))
        .map(drop)
}

fn write_error(table: &TrackedTable, id: Uuid, e: rusqlite::Error) -> StoreError {
    StoreError::backend(
        format!(
            "writing the row with {} = {id} into table {} (if a constraint failed, the peer's version does not fit this table's schema: align the schemas or relax the constraint)",
            table.key, table.table
        ),
        e,
    )
}

/// The parent row's key value for a reference, `None` when the parent has
/// no row here.
fn parent_value(
    conn: &Connection,
    table: &TrackedTable,
    column: &Column,
    fk: &ForeignKey,
    value: &Value,
) -> Result<Option<SqlValue>, StoreError> {
    let Value::Uuid(parent) = value else {
        return Err(StoreError::Corrupt {
            detail: format!(
                "{}.{} references its parent by UUID but the version holds a {} value",
                table.table,
                column.name,
                value.kind_name()
            ),
        });
    };
    let sql = format!(
        "SELECT {} FROM {} WHERE {} = ?1",
        quote(&fk.parent_column),
        quote(&fk.parent_table),
        quote(&fk.parent_key)
    );
    conn.prepare_cached(&sql)
        .and_then(|mut s| {
            s.query_row([key_text(*parent)], |r| r.get::<_, SqlValue>(0))
                .optional()
        })
        .map_err(|e| {
            StoreError::backend(format!("looking up a parent row in {}", fk.parent_table), e)
        })
}

/// A field value as SQLite stores it in `column`.
pub(crate) fn to_sql(
    table: &TrackedTable,
    column: &Column,
    value: &Value,
) -> Result<SqlValue, StoreError> {
    Ok(match value {
        Value::Null => SqlValue::Null,
        Value::Bool(b) => SqlValue::Integer(i64::from(*b)),
        Value::Int(i) => SqlValue::Integer(*i),
        Value::Float(x) => SqlValue::Real(*x),
        Value::Text(t) => SqlValue::Text(t.clone()),
        Value::Bytes(b) => SqlValue::Blob(b.clone()),
        Value::Timestamp(t) => SqlValue::Integer(t.as_micros()),
        Value::Uuid(u) => SqlValue::Text(key_text(*u)),
        Value::List(_) | Value::Record(_) => {
            return Err(StoreError::Corrupt {
                detail: format!(
                    "{}.{} cannot hold a {} value; declare the field as a list or record only where no column holds it",
                    table.table,
                    column.name,
                    value.kind_name()
                ),
            });
        }
    })
}

/// The text form of a sync key in user tables.
pub(crate) fn key_text(id: Uuid) -> String {
    id.hyphenated().to_string()
}
