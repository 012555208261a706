//! Noticing schema changes of tracked tables: the data columns mapped last
//! time are remembered in `_sync_types.columns`; when a table is mapped again
//! (on open, in `track_table`, and at the start of a transaction after any
//! schema change) with columns that were not there, every row holding a value
//! in one of them is registered as a change again, so values that arrived
//! without a trigger (`ALTER TABLE ... ADD COLUMN ... DEFAULT`) or were sent
//! before the column was mapped reach the other nodes.

use std::collections::HashMap;

use rusqlite::{Connection, TransactionBehavior};

use crate::table::{TrackedTable, quote};

/// The remembered data columns of each tracked type, by type id.
pub(crate) fn known(conn: &Connection) -> rusqlite::Result<HashMap<i64, Vec<String>>> {
    let mut stmt =
        conn.prepare("SELECT type_id, columns FROM _sync_types WHERE columns IS NOT NULL")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
    let mut out = HashMap::new();
    for row in rows {
        let (id, text) = row?;
        // A damaged list is treated as unknown: it is written again.
        if let Ok(names) = serde_json::from_str::<Vec<String>>(&text) {
            out.insert(id, names);
        }
    }
    Ok(out)
}

/// A tracked table whose mapped columns differ from the remembered ones.
pub(crate) struct Change {
    type_id: i64,
    table: String,
    key: String,
    is_deleted: String,
    columns: Vec<String>,
    /// Synced columns new since last time (empty the first time).
    added: Vec<String>,
}

impl Change {
    /// The change from `known` to the columns of `mapped`, if any.
    pub fn between(
        type_id: i64,
        known: Option<&Vec<String>>,
        mapped: &TrackedTable,
    ) -> Option<Change> {
        let columns: Vec<String> = mapped.columns.iter().map(|c| c.name.clone()).collect();
        if known == Some(&columns) {
            return None;
        }
        let added = match known {
            None => Vec::new(),
            Some(known) => mapped
                .columns
                .iter()
                .filter(|c| !c.excluded && !known.contains(&c.name))
                .map(|c| c.name.clone())
                .collect(),
        };
        Some(Change {
            type_id,
            table: mapped.table.clone(),
            key: mapped.key.clone(),
            is_deleted: mapped.is_deleted.clone(),
            columns,
            added,
        })
    }
}

/// Remembers the new columns and registers the rows holding values in the
/// added ones, in one transaction.
pub(crate) fn record(conn: &mut Connection, changes: &[Change]) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for change in changes {
        let list = serde_json::to_string(&change.columns)
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        tx.execute(
            "UPDATE _sync_types SET columns = ?2 WHERE type_id = ?1",
            rusqlite::params![change.type_id, list],
        )?;
        if change.added.is_empty() {
            continue;
        }
        let any_value: Vec<String> = change
            .added
            .iter()
            .map(|c| format!("{} IS NOT NULL", quote(c)))
            .collect();
        tx.execute(
            &format!(
                "INSERT INTO _sync_capture(type_id, key, deleted)
                 SELECT ?1, {k}, coalesce({d}, 0) <> 0 FROM {t}
                 WHERE {k} IS NOT NULL AND ({any})",
                k = quote(&change.key),
                d = quote(&change.is_deleted),
                t = quote(&change.table),
                any = any_value.join(" OR "),
            ),
            [change.type_id],
        )?;
    }
    tx.commit()
}
