//! Noticing schema changes of tracked tables: the data columns mapped last
//! time are remembered in `_sync_types.columns`; when a table is mapped again
//! (on open, in `track_table`, and at the start of a transaction after any
//! schema change) with columns that were not there, every row holding a value
//! in one of them is registered as a change again, so values that arrived
//! without a trigger (`ALTER TABLE ... ADD COLUMN ... DEFAULT`) or were sent
//! before the column was mapped reach the other nodes.

use std::collections::HashMap;

use rusqlite::{Connection, TransactionBehavior};
use sync_core::Uuid;

use crate::rows;
use crate::table::{TrackedTable, quote};
use crate::txn::{Doc, decode_doc, encode_doc};

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
    mapped: TrackedTable,
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
            mapped: mapped.clone(),
            columns,
            added,
        })
    }
}

/// Remembers the new columns, registers the rows holding values in the
/// added ones, and moves values kept beside rows for want of a column into
/// the column now there, in one transaction.
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
        // A new version of each such row, stamped later than the one
        // before (its content changed without a write): the update trigger
        // captures it as this node's own write, with its own clock entry.
        tx.execute(
            &format!(
                "UPDATE {t} SET {u} = max({now}, coalesce({u} + 1, 0))
                 WHERE {k} IS NOT NULL AND ({any})",
                k = quote(&change.mapped.key),
                u = quote(&change.mapped.updated_at),
                t = quote(&change.mapped.table),
                now = crate::tracking::NOW_MICROS_SQL,
                any = any_value.join(" OR "),
            ),
            [],
        )?;
        move_kept_values(&tx, change)?;
    }
    tx.commit()
}

/// Writes the values kept in `_sync_changes.doc` for fields that now have a
/// column into that column (where it is NULL), and keeps the rest. These
/// values came from peers, which have them already: the store's own apply
/// flag keeps `updated_at` as it is, and what the triggers log is dropped.
fn move_kept_values(tx: &Connection, change: &Change) -> rusqlite::Result<()> {
    let kept: Vec<(Vec<u8>, Vec<u8>)> = tx
        .prepare(
            "SELECT uuid, doc FROM _sync_changes WHERE type_id = ?1 AND substr(doc, 1, 1) = x'01'",
        )?
        .query_map([change.type_id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    if kept.is_empty() {
        return Ok(());
    }
    let table = &change.mapped;
    let logged_before: i64 =
        tx.query_row("SELECT coalesce(max(id), 0) FROM _sync_capture", [], |r| {
            r.get(0)
        })?;
    tx.execute("INSERT OR IGNORE INTO _sync_applying(flag) VALUES (1)", [])?;
    for (uuid, doc) in kept {
        let Ok(Doc::Extras(mut extras)) = decode_doc(&doc) else {
            continue;
        };
        let Ok(id) = Uuid::from_slice(&uuid) else {
            continue;
        };
        let mut moved = false;
        for name in &change.added {
            let (Some(column), Some(value)) = (table.column(name), extras.get(name)) else {
                continue;
            };
            let Ok(value) = rows::to_sql(table, column, value) else {
                // A value the column cannot hold stays kept beside the row.
                continue;
            };
            tx.execute(
                &format!(
                    "UPDATE {t} SET {c} = ?2 WHERE {k} = ?1 AND {c} IS NULL",
                    t = quote(&table.table),
                    c = quote(name),
                    k = quote(&table.key),
                ),
                rusqlite::params![rows::key_text(id), value],
            )?;
            extras.remove(name);
            moved = true;
        }
        if moved {
            let doc = (!extras.is_empty()).then(|| encode_doc(&Doc::Extras(extras)));
            tx.execute(
                "UPDATE _sync_changes SET doc = ?3 WHERE type_id = ?1 AND uuid = ?2",
                rusqlite::params![change.type_id, uuid, doc],
            )?;
        }
    }
    tx.execute("DELETE FROM _sync_applying", [])?;
    tx.execute("DELETE FROM _sync_capture WHERE id > ?1", [logged_before])
        .map(drop)
}
