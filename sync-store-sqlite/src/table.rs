//! A tracked table as the store sees it: which column holds what, how each
//! column maps to an entity field, and the entity type derived from it.
//!
//! Derivation rules (used unless the caller supplies an entity type), applied
//! to each column's declared type in this order, case-insensitively:
//!
//! | declared type contains | field kind | stored as |
//! |---|---|---|
//! | `BOOL` | `Bool` | integer 0 or 1 |
//! | `UUID` | `Uuid` | text, `8-4-4-4-12` hex |
//! | `INT` | `Int` | integer |
//! | `CHAR`, `CLOB`, `TEXT` | `Text` | text |
//! | `BLOB` | `Bytes` | blob |
//! | `REAL`, `FLOA`, `DOUB` | `Float` | real |
//! | anything else, or nothing | not declared: sent as stored | any |
//!
//! A column with a single-column foreign key to another tracked table becomes
//! a `Reference` to that table's entity type: locally it holds the parent's
//! key (usually its primary key), on the wire the parent's sync UUID. An
//! `INTEGER PRIMARY KEY` is the row's local id and never leaves the node (each
//! node numbers its own rows); any other primary key is synced like a field
//! and must then be unique across all nodes.

use sync_core::{EntityType, FieldKind};

/// How one column maps to a field.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum ColumnKind {
    /// A declared field of this kind.
    Declared(FieldKind),
    /// Not declared in the entity type: values travel as stored.
    Dynamic,
    /// A foreign key to a tracked table, sent as the parent's sync UUID.
    ForeignKey(ForeignKey),
}

/// A foreign key column mapped to a reference.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ForeignKey {
    /// Entity type of the parent.
    pub target_type: String,
    /// The parent table.
    pub parent_table: String,
    /// The parent column the foreign key points at.
    pub parent_column: String,
    /// The parent's sync key column.
    pub parent_key: String,
    /// Deleting the parent row deletes this row (`ON DELETE CASCADE`).
    pub cascades: bool,
}

/// One data column of a tracked table.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Column {
    /// Column (and field) name.
    pub name: String,
    /// How values map.
    pub kind: ColumnKind,
    /// Stored locally, never sent.
    pub excluded: bool,
}

/// A tracked table and everything needed to read and write its rows.
#[derive(Clone, Debug)]
pub(crate) struct TrackedTable {
    /// Entity type name.
    pub type_name: String,
    /// Table name.
    pub table: String,
    /// Sync key column.
    pub key: String,
    /// Modification time column.
    pub updated_at: String,
    /// Soft-delete flag column.
    pub is_deleted: String,
    /// Data columns (neither the key, the time, the flag nor a local row id).
    pub columns: Vec<Column>,
    /// The entity type for the engine's registry.
    pub entity_type: EntityType,
    /// `SELECT updated_at, is_deleted, columns... FROM table WHERE key = ?1`.
    pub select_sql: String,
}

impl TrackedTable {
    /// The column named `name`.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Builds the row query once the columns are known.
    pub fn finish(mut self) -> Self {
        let mut select = format!(
            "SELECT t.{}, t.{}",
            quote(&self.updated_at),
            quote(&self.is_deleted)
        );
        for c in &self.columns {
            match &c.kind {
                ColumnKind::ForeignKey(fk) => select.push_str(&format!(
                    ", t.{col}, (SELECT p.{key} FROM {parent} p WHERE p.{to} = t.{col})",
                    col = quote(&c.name),
                    key = quote(&fk.parent_key),
                    parent = quote(&fk.parent_table),
                    to = quote(&fk.parent_column),
                )),
                _ => select.push_str(&format!(", t.{}", quote(&c.name))),
            }
        }
        select.push_str(&format!(
            " FROM {} t WHERE t.{} = ?1",
            quote(&self.table),
            quote(&self.key)
        ));
        self.select_sql = select;
        self
    }
}

/// The field kind derived from a declared column type (`None`: dynamic).
pub(crate) fn derive_kind(declared: &str) -> Option<FieldKind> {
    let t = declared.to_ascii_uppercase();
    let has = |s: &str| t.contains(s);
    if has("BOOL") {
        Some(FieldKind::Bool)
    } else if has("UUID") {
        Some(FieldKind::Uuid)
    } else if has("INT") {
        Some(FieldKind::Int)
    } else if has("CHAR") || has("CLOB") || has("TEXT") {
        Some(FieldKind::Text)
    } else if has("BLOB") {
        Some(FieldKind::Bytes)
    } else if has("REAL") || has("FLOA") || has("DOUB") {
        Some(FieldKind::Float)
    } else {
        None
    }
}

/// SQLite's column affinity for a declared type (the rules of section 3.1 of
/// SQLite's datatype documentation).
pub(crate) fn affinity(declared: &str) -> &'static str {
    let t = declared.to_ascii_uppercase();
    if t.contains("INT") {
        "INTEGER"
    } else if t.contains("CHAR") || t.contains("CLOB") || t.contains("TEXT") {
        "TEXT"
    } else if t.contains("BLOB") || t.is_empty() {
        "BLOB"
    } else if t.contains("REAL") || t.contains("FLOA") || t.contains("DOUB") {
        "REAL"
    } else {
        "NUMERIC"
    }
}

/// An SQL identifier in double quotes.
pub(crate) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// An SQL string literal.
pub(crate) fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_follow_declared_types() {
        assert_eq!(derive_kind("BOOLEAN"), Some(FieldKind::Bool));
        assert_eq!(derive_kind("bigint"), Some(FieldKind::Int));
        assert_eq!(derive_kind("VARCHAR(20)"), Some(FieldKind::Text));
        assert_eq!(derive_kind("uuid"), Some(FieldKind::Uuid));
        assert_eq!(derive_kind("double precision"), Some(FieldKind::Float));
        assert_eq!(derive_kind("blob"), Some(FieldKind::Bytes));
        assert_eq!(derive_kind("NUMERIC"), None);
        assert_eq!(derive_kind(""), None);
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote("a\"b"), "\"a\"\"b\"");
        assert_eq!(literal("it's"), "'it''s'");
    }
}
