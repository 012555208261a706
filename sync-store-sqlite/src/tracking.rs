//! Tracking a user table: the sync columns, the UUIDv7 backfill, the capture
//! triggers, and the mapping from the live schema to a tracked table.
//!
//! Triggers installed on a tracked table `t` (named `_sync_t_*`), one per
//! statement kind, because SQLite runs each trigger as a sub-program whose
//! start costs about as much as the capture itself:
//!
//! - `ins`: appends the new row's sync key to `_sync_capture`; if the insert
//!   left the key or the time NULL, fills them (a fresh UUIDv7, the current
//!   time), and `upd` captures that update. When syncplan added the key and
//!   time columns itself they also carry SQL defaults, so a plain insert
//!   needs no second write.
//! - `upd`: appends the row's key; if the update did not move `updated_at`
//!   forward, moves it to the current time (at least one microsecond past
//!   the previous value), so last-writer-wins sees every local write.
//! - `del`: a hard `DELETE` becomes a tombstone that travels: the key and
//!   the delete time are logged, nothing else. SQLite runs it for rows a
//!   foreign-key cascade removes, too.
//! - `pre` (`BEFORE INSERT`) and `preupd` (`BEFORE UPDATE OF` the primary
//!   key and UNIQUE columns): log, with the time, the key of every row that
//!   shares the rowid, primary key or a UNIQUE value with the row being
//!   written. Those are the rows `INSERT OR REPLACE` and `UPDATE OR REPLACE`
//!   remove without firing `del` (SQLite fires delete triggers for them only
//!   under `recursive_triggers`, a per-connection pragma this store cannot
//!   ask of the application). They are logged as "check" entries
//!   (`deleted = 2`): when the log is folded, one whose row is gone becomes
//!   a removal at that time, one whose row stays (`INSERT OR IGNORE`, an
//!   UPSERT) is dropped, so it changes nothing.
//! - `key`: refuses to change a row's sync key.
//!
//! Filling and stamping stand still while the store itself writes a tracked
//! table (`_sync_applying` holds a row only inside such a transaction, never
//! committed); what the store's own writes append to the capture log is
//! dropped before commit, so a remote change is never re-captured as a local
//! one. (Checking the flag in every trigger's `WHEN` clause instead measured
//! noticeably slower for the application's own writes.)
//!
//! Only built-in SQL functions are used, so any connection (even the
//! `sqlite3` shell) is tracked, as long as its SQLite is 3.42 or newer.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, Transaction};
use serde_json::{Value as Json, json};
use sync_core::{EntityType, FieldKind, StoreError};

use crate::error::TrackError;
use crate::options::TrackOptions;
use crate::table::{
    Column, ColumnKind, ForeignKey, TrackedTable, affinity, derive_kind, literal, quote,
};

/// SQL expression for the current time in microseconds since the UNIX
/// epoch (millisecond resolution).
pub const NOW_MICROS_SQL: &str = "(CAST(round(unixepoch('subsec') * 1000) AS INTEGER) * 1000)";

/// SQL expression for a fresh UUIDv7 in lowercase hyphenated text: 48 bits of
/// milliseconds, then random bits. Usable as a column default:
/// `sync_uuid TEXT DEFAULT (...)`.
pub const UUID_V7_SQL: &str = "(lower(printf('%08x-%04x-7%03x-%04x-%012x', \
     CAST(round(unixepoch('subsec') * 1000) AS INTEGER) >> 16, \
     CAST(round(unixepoch('subsec') * 1000) AS INTEGER) & 65535, \
     random() & 4095, (random() & 16383) | 32768, random() & 281474976710655)))";

/// The parts of [`TrackOptions`] the store remembers in `_sync_types`, so a
/// reopened store maps the table the same way.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Remembered {
    pub key: String,
    pub updated_at: String,
    pub is_deleted: String,
    pub excluded: Vec<String>,
    /// Field kinds of a caller-supplied entity type, by column.
    pub kinds: Vec<(String, FieldKind, bool)>,
}

impl Remembered {
    pub fn from_options(options: &TrackOptions) -> Self {
        Remembered {
            key: options.key().to_owned(),
            updated_at: options.updated_at().to_owned(),
            is_deleted: options.is_deleted().to_owned(),
            excluded: options.excluded.clone(),
            kinds: options
                .entity_type
                .iter()
                .flat_map(|t| t.fields())
                .map(|f| (f.name.clone(), f.kind.clone(), f.excluded))
                .collect(),
        }
    }

    pub fn to_json(&self) -> String {
        let kinds: Vec<Json> = self
            .kinds
            .iter()
            .map(|(name, kind, excluded)| json!([name, kind_json(kind), excluded]))
            .collect();
        json!({
            "key": self.key, "updated_at": self.updated_at, "is_deleted": self.is_deleted,
            "excluded": self.excluded, "kinds": kinds,
        })
        .to_string()
    }

    pub fn from_json(text: &str) -> Option<Self> {
        let v: Json = serde_json::from_str(text).ok()?;
        let s = |k: &str| v.get(k).and_then(Json::as_str).map(str::to_owned);
        let excluded = v
            .get("excluded")?
            .as_array()?
            .iter()
            .filter_map(|e| e.as_str().map(str::to_owned))
            .collect();
        let kinds = v
            .get("kinds")?
            .as_array()?
            .iter()
            .filter_map(|k| {
                let name = k.get(0)?.as_str()?.to_owned();
                Some((name, kind_from_json(k.get(1)?)?, k.get(2)?.as_bool()?))
            })
            .collect();
        Some(Remembered {
            key: s("key")?,
            updated_at: s("updated_at")?,
            is_deleted: s("is_deleted")?,
            excluded,
            kinds,
        })
    }
}

fn kind_json(kind: &FieldKind) -> Json {
    match kind {
        FieldKind::Reference { target } => json!({ "reference": target }),
        other => json!(format!("{other:?}")),
    }
}

fn kind_from_json(v: &Json) -> Option<FieldKind> {
    if let Some(target) = v.get("reference").and_then(Json::as_str) {
        return Some(FieldKind::Reference {
            target: target.to_owned(),
        });
    }
    Some(match v.as_str()? {
        "Bool" => FieldKind::Bool,
        "Int" => FieldKind::Int,
        "Float" => FieldKind::Float,
        "Text" => FieldKind::Text,
        "Bytes" => FieldKind::Bytes,
        "Timestamp" => FieldKind::Timestamp,
        "Uuid" => FieldKind::Uuid,
        "List" => FieldKind::List,
        "Record" => FieldKind::Record,
        _ => return None,
    })
}

/// A column as `PRAGMA table_xinfo` describes it.
#[derive(Clone, Debug)]
pub(crate) struct ColumnInfo {
    pub name: String,
    pub declared: String,
    pub pk: i64,
    pub hidden: i64,
}

pub(crate) fn columns(conn: &Connection, table: &str) -> rusqlite::Result<Vec<ColumnInfo>> {
    let sql = format!("PRAGMA table_xinfo({})", quote(table));
    let mut stmt = conn.prepare(&sql)?;
    stmt.query_map([], |r| {
        Ok(ColumnInfo {
            name: r.get(1)?,
            declared: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
            pk: r.get(5)?,
            hidden: r.get(6)?,
        })
    })?
    .collect()
}

fn without_rowid(conn: &Connection, table: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT wr FROM pragma_table_list WHERE name = ?1 AND schema = 'main'",
        [table],
        |r| r.get(0),
    )
}

/// The local row id column (an `INTEGER PRIMARY KEY` of a rowid table).
fn rowid_alias(columns: &[ColumnInfo], without_rowid: bool) -> Option<&str> {
    let pks: Vec<&ColumnInfo> = columns.iter().filter(|c| c.pk > 0).collect();
    match pks.as_slice() {
        [only] if !without_rowid && only.declared.eq_ignore_ascii_case("INTEGER") => {
            Some(&only.name)
        }
        _ => None,
    }
}

/// A single-column foreign key: child column, parent table, parent column
/// (`None`: the parent's primary key).
struct ForeignKeyInfo {
    from: String,
    table: String,
    to: Option<String>,
    on_delete: String,
}

fn foreign_keys(conn: &Connection, table: &str) -> rusqlite::Result<Vec<ForeignKeyInfo>> {
    let sql = format!("PRAGMA foreign_key_list({})", quote(table));
    let mut stmt = conn.prepare(&sql)?;
    let rows: Vec<(i64, ForeignKeyInfo)> = stmt
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                ForeignKeyInfo {
                    table: r.get(2)?,
                    from: r.get(3)?,
                    to: r.get(4)?,
                    on_delete: r.get(6)?,
                },
            ))
        })?
        .collect::<Result<_, _>>()?;
    let mut per_key: BTreeMap<i64, Vec<ForeignKeyInfo>> = BTreeMap::new();
    for (id, fk) in rows {
        per_key.entry(id).or_default().push(fk);
    }
    Ok(per_key
        .into_values()
        .filter(|parts| parts.len() == 1)
        .flatten()
        .collect())
}

/// What the mapping of one table needs to know about the others.
pub(crate) struct Peers<'a> {
    /// Tracked tables: table name to (entity type name, key column).
    pub tracked: &'a BTreeMap<String, (String, String)>,
}

/// Maps a tracked table's live schema to a [`TrackedTable`].
pub(crate) fn describe(
    conn: &Connection,
    type_name: &str,
    table: &str,
    remembered: &Remembered,
    options: Option<&TrackOptions>,
    peers: &Peers<'_>,
) -> Result<TrackedTable, TrackError> {
    let sql_err = |context| TrackError::sqlite(table, context);
    let infos = columns(conn, table).map_err(sql_err("reading its columns"))?;
    let wr = without_rowid(conn, table).map_err(sql_err("reading its kind"))?;
    let fks = foreign_keys(conn, table).map_err(sql_err("reading its foreign keys"))?;
    let local_id = rowid_alias(&infos, wr).map(str::to_owned);
    let supplied = options.and_then(|o| o.entity_type.as_ref());
    let special = [
        &remembered.key,
        &remembered.updated_at,
        &remembered.is_deleted,
    ];
    let mut cols = Vec::new();
    for info in &infos {
        if info.hidden != 0
            || special.contains(&&info.name)
            || local_id.as_ref() == Some(&info.name)
        {
            continue;
        }
        let declared_kind = remembered
            .kinds
            .iter()
            .find(|(name, _, _)| *name == info.name)
            .map(|(_, kind, excluded)| (kind.clone(), *excluded));
        let has_declarations = !remembered.kinds.is_empty();
        let fk = fks
            .iter()
            .find(|fk| fk.from == info.name)
            .and_then(|fk| foreign_key(conn, fk, peers).transpose())
            .transpose()
            .map_err(sql_err("reading a parent table"))?;
        let excluded_by_option = remembered.excluded.contains(&info.name);
        let (kind, excluded) = match (declared_kind, fk, has_declarations) {
            (Some((FieldKind::Reference { .. }, excluded)), Some(fk), _) => {
                (ColumnKind::ForeignKey(fk), excluded)
            }
            (Some((kind, excluded)), _, _) => (ColumnKind::Declared(kind), excluded),
            // A caller-supplied type that does not declare the column: local.
            (None, _, true) => (derived(&info.declared), true),
            (None, Some(fk), false) => (ColumnKind::ForeignKey(fk), false),
            (None, None, false) => (derived(&info.declared), false),
        };
        cols.push(Column {
            name: info.name.clone(),
            kind,
            excluded: excluded || excluded_by_option,
        });
    }
    if let Some((name, _, _)) = remembered
        .kinds
        .iter()
        .find(|(name, _, _)| !cols.iter().any(|c| c.name == *name))
    {
        return Err(TrackError::TypeMismatch {
            entity_type: type_name.to_owned(),
            table: table.to_owned(),
            reason: format!(
                "it declares field {name}, but the table has no data column of that name"
            ),
        });
    }
    let entity_type = match supplied {
        Some(t) => t.clone(),
        None => derived_type(type_name, &cols, options),
    };
    Ok(TrackedTable {
        type_name: type_name.to_owned(),
        table: table.to_owned(),
        key: remembered.key.clone(),
        updated_at: remembered.updated_at.clone(),
        is_deleted: remembered.is_deleted.clone(),
        columns: cols,
        entity_type,
        select_sql: String::new(),
    }
    .finish())
}

fn derived(declared: &str) -> ColumnKind {
    derive_kind(declared).map_or(ColumnKind::Dynamic, ColumnKind::Declared)
}

fn foreign_key(
    conn: &Connection,
    fk: &ForeignKeyInfo,
    peers: &Peers<'_>,
) -> rusqlite::Result<Option<ForeignKey>> {
    let Some((target_type, parent_key)) = peers.tracked.get(&fk.table) else {
        return Ok(None);
    };
    let parent_column = match &fk.to {
        Some(to) => to.clone(),
        None => {
            let parent = columns(conn, &fk.table)?;
            match parent.iter().find(|c| c.pk == 1) {
                Some(pk) => pk.name.clone(),
                None => "rowid".to_owned(),
            }
        }
    };
    Ok(Some(ForeignKey {
        target_type: target_type.clone(),
        parent_table: fk.table.clone(),
        parent_column,
        parent_key: parent_key.clone(),
        cascades: fk.on_delete.eq_ignore_ascii_case("CASCADE"),
    }))
}

fn derived_type(name: &str, cols: &[Column], options: Option<&TrackOptions>) -> EntityType {
    let mut t = EntityType::new(name);
    for c in cols {
        let kind = match &c.kind {
            ColumnKind::Declared(kind) => kind.clone(),
            ColumnKind::ForeignKey(fk) => FieldKind::Reference {
                target: fk.target_type.clone(),
            },
            ColumnKind::Dynamic => continue,
        };
        t = if c.excluded {
            t.excluded_field(&c.name, kind)
        } else {
            t.field(&c.name, kind)
        };
    }
    if let Some(strategy) = options.and_then(|o| o.strategy.clone()) {
        t = t.strategy(strategy);
    }
    if let Some(on) = options.and_then(|o| o.versioning) {
        t = t.versioning(on);
    }
    t
}

/// Everything `track_table` changes, in one transaction. Returns the type id
/// and whether the table's schema text was edited (the connection must then
/// be reopened to see the new defaults everywhere).
pub(crate) fn install(
    tx: &Transaction<'_>,
    table: &str,
    type_name: &str,
    remembered: &Remembered,
    edit_defaults: bool,
) -> Result<(i64, bool), TrackError> {
    let sql_err = |context| TrackError::sqlite(table, context);
    let exists: bool = tx
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?1)",
            [table],
            |r| r.get(0),
        )
        .map_err(sql_err("looking it up"))?;
    if !exists {
        return Err(TrackError::NoSuchTable {
            table: table.to_owned(),
        });
    }
    let type_id = register_type(tx, table, type_name, remembered)?;
    drop_triggers(tx, table).map_err(sql_err("removing old triggers"))?;
    let added = add_columns(tx, table, remembered)?;
    backfill(tx, table, remembered).map_err(sql_err("giving existing rows sync keys"))?;
    let index = format!(
        "CREATE UNIQUE INDEX IF NOT EXISTS {} ON {}({})",
        quote(&format!("_sync_{table}_key")),
        quote(table),
        quote(&remembered.key)
    );
    tx.execute_batch(&index).map_err(sql_err(
        "indexing the sync key (are two rows sharing a key?)",
    ))?;
    let edited = edit_defaults && !added.is_empty() && add_defaults(tx, table, &added)?;
    register_rows(tx, table, type_id, remembered).map_err(sql_err("registering existing rows"))?;
    create_triggers(tx, table, type_id, remembered)
        .map_err(sql_err("creating the capture triggers"))?;
    Ok((type_id, edited))
}

fn register_type(
    tx: &Transaction<'_>,
    table: &str,
    type_name: &str,
    remembered: &Remembered,
) -> Result<i64, TrackError> {
    let sql_err = |context| TrackError::sqlite(table, context);
    let by_name: Option<(i64, Option<String>)> = tx
        .query_row(
            "SELECT type_id, table_name FROM _sync_types WHERE name = ?1",
            [type_name],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(sql_err("reading registered types"))?;
    let by_table: Option<String> = tx
        .query_row(
            "SELECT name FROM _sync_types WHERE table_name = ?1",
            [table],
            |r| r.get(0),
        )
        .optional()
        .map_err(sql_err("reading registered types"))?;
    if let Some(other) = by_table.filter(|name| name != type_name) {
        return Err(TrackError::TypeMismatch {
            entity_type: type_name.to_owned(),
            table: table.to_owned(),
            reason: format!(
                "the table is already tracked as entity type {other}; track it under that name"
            ),
        });
    }
    match by_name {
        Some((_, Some(other))) if other != table => Err(TrackError::TypeTaken {
            entity_type: type_name.to_owned(),
            table: table.to_owned(),
            other,
        }),
        Some((id, _)) => {
            // Entities of this type may already exist without a table (stored
            // whole); tracking now would hide them.
            let count: i64 = tx
                .query_row(
                    "SELECT count(*) FROM _sync_changes WHERE type_id = ?1 AND doc IS NOT NULL
                     AND (SELECT table_name FROM _sync_types WHERE type_id = ?1) IS NULL",
                    [id],
                    |r| r.get(0),
                )
                .map_err(sql_err("reading registered types"))?;
            if count > 0 {
                return Err(TrackError::TypeMismatch {
                    entity_type: type_name.to_owned(),
                    table: table.to_owned(),
                    reason: format!(
                        "{count} entities of this type are already stored without a table; track the table before syncing the type"
                    ),
                });
            }
            tx.execute(
                "UPDATE _sync_types SET table_name = ?2, options = ?3 WHERE type_id = ?1",
                rusqlite::params![id, table, remembered.to_json()],
            )
            .map_err(sql_err("registering the type"))?;
            Ok(id)
        }
        None => {
            tx.execute(
                "INSERT INTO _sync_types(name, table_name, options) VALUES (?1, ?2, ?3)",
                rusqlite::params![type_name, table, remembered.to_json()],
            )
            .map_err(sql_err("registering the type"))?;
            Ok(tx.last_insert_rowid())
        }
    }
}

/// Adds missing sync columns; returns the definitions of those added that
/// want a default, with that default (the key and the time).
fn add_columns(
    tx: &Transaction<'_>,
    table: &str,
    r: &Remembered,
) -> Result<Vec<(String, &'static str)>, TrackError> {
    let infos = columns(tx, table).map_err(TrackError::sqlite(table, "reading its columns"))?;
    let find = |name: &str| infos.iter().find(|c| c.name == name);
    let mut added = Vec::new();
    let wanted = [
        (
            &r.key,
            "sync key",
            "TEXT COLLATE NOCASE",
            "TEXT",
            Some(UUID_V7_SQL),
        ),
        (
            &r.updated_at,
            "updated_at",
            "INTEGER",
            "INTEGER",
            Some(NOW_MICROS_SQL),
        ),
        (
            &r.is_deleted,
            "is_deleted",
            "INTEGER NOT NULL DEFAULT 0",
            "INTEGER",
            None,
        ),
    ];
    for (name, role, definition, want, default) in wanted {
        match find(name) {
            Some(info) => check_existing(table, info, role, want)?,
            None => {
                let column_def = format!("{} {definition}", quote(name));
                tx.execute_batch(&format!(
                    "ALTER TABLE {} ADD COLUMN {column_def}",
                    quote(table)
                ))
                .map_err(TrackError::sqlite(table, "adding a sync column"))?;
                if let Some(default) = default {
                    added.push((column_def, default));
                }
            }
        }
    }
    Ok(added)
}

fn check_existing(
    table: &str,
    info: &ColumnInfo,
    role: &'static str,
    want: &str,
) -> Result<(), TrackError> {
    let found = affinity(&info.declared);
    let fits = found == want || (want == "INTEGER" && role == "is_deleted" && found == "NUMERIC");
    if fits && info.hidden == 0 {
        return Ok(());
    }
    Err(TrackError::BadColumn {
        table: table.to_owned(),
        column: info.name.clone(),
        role,
        reason: format!(
            "it is declared {:?} ({found} affinity) but must have {want} affinity{}",
            info.declared,
            if role == "updated_at" {
                " holding microseconds since the UNIX epoch"
            } else {
                ""
            }
        ),
    })
}

fn backfill(tx: &Transaction<'_>, table: &str, r: &Remembered) -> rusqlite::Result<()> {
    tx.execute_batch(&format!(
        "UPDATE {t} SET {k} = {UUID_V7_SQL} WHERE {k} IS NULL;
         UPDATE {t} SET {u} = {NOW_MICROS_SQL} WHERE {u} IS NULL;
         UPDATE {t} SET {d} = 0 WHERE {d} IS NULL;",
        t = quote(table),
        k = quote(&r.key),
        u = quote(&r.updated_at),
        d = quote(&r.is_deleted),
    ))
}

/// Gives the columns syncplan just added SQL defaults (a fresh UUIDv7, the
/// current time), by editing the table's stored `CREATE TABLE` text as
/// SQLite's documentation describes for changing a default. Only text this
/// function itself added is touched, and the edited statement is checked on
/// a scratch database first; when anything looks off it changes nothing and
/// the `fill` trigger does the job instead. Returns whether it edited.
fn add_defaults(
    tx: &Transaction<'_>,
    table: &str,
    added: &[(String, &'static str)],
) -> Result<bool, TrackError> {
    let sql_err = |context| TrackError::sqlite(table, context);
    let original: String = tx
        .query_row(
            "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?1",
            [table],
            |r| r.get(0),
        )
        .map_err(sql_err("reading its definition"))?;
    let mut edited = original.clone();
    for (column_def, default) in added {
        if edited.matches(column_def.as_str()).count() != 1 {
            return Ok(false);
        }
        edited = edited.replace(
            column_def.as_str(),
            &format!("{column_def} DEFAULT {default}"),
        );
    }
    if !statement_is_valid(&edited) {
        return Ok(false);
    }
    let version: i64 = tx
        .query_row("PRAGMA schema_version", [], |r| r.get(0))
        .map_err(sql_err("reading the schema version"))?;
    let edit = || -> rusqlite::Result<()> {
        tx.execute_batch("PRAGMA writable_schema = ON")?;
        tx.execute(
            "UPDATE sqlite_schema SET sql = ?1 WHERE type = 'table' AND name = ?2",
            [&edited, table],
        )?;
        tx.execute_batch(&format!("PRAGMA schema_version = {}", version + 1))?;
        tx.execute_batch("PRAGMA writable_schema = OFF")
    };
    match edit() {
        Ok(()) => Ok(true),
        Err(e) => {
            let _ = tx.execute_batch("PRAGMA writable_schema = OFF");
            Err(TrackError::sqlite(table, "adding column defaults")(e))
        }
    }
}

fn statement_is_valid(create_table: &str) -> bool {
    Connection::open_in_memory()
        .and_then(|c| c.execute_batch(create_table))
        .is_ok()
}

fn register_rows(
    tx: &Transaction<'_>,
    table: &str,
    type_id: i64,
    r: &Remembered,
) -> rusqlite::Result<()> {
    tx.execute(
        &format!(
            "INSERT INTO _sync_capture(type_id, key, deleted)
             SELECT ?1, t.{k}, coalesce(t.{d}, 0) <> 0 FROM {t} t
             WHERE NOT EXISTS (SELECT 1 FROM _sync_changes c
                               WHERE c.type_id = ?1 AND c.uuid = unhex(replace(t.{k}, '-', '')))",
            t = quote(table),
            k = quote(&r.key),
            d = quote(&r.is_deleted),
        ),
        [type_id],
    )
    .map(drop)
}

const TRIGGERS: [&str; 8] = ["pre", "ins", "preupd", "upd", "del", "fill", "stamp", "key"];

fn trigger_name(table: &str, which: &str) -> String {
    quote(&format!("_sync_{table}_{which}"))
}

pub(crate) fn drop_triggers(conn: &Connection, table: &str) -> rusqlite::Result<()> {
    for which in TRIGGERS {
        conn.execute_batch(&format!(
            "DROP TRIGGER IF EXISTS {}",
            trigger_name(table, which)
        ))?;
    }
    Ok(())
}

fn create_triggers(
    tx: &Transaction<'_>,
    table: &str,
    type_id: i64,
    r: &Remembered,
) -> rusqlite::Result<()> {
    let t = quote(table);
    let k = quote(&r.key);
    let u = quote(&r.updated_at);
    let d = quote(&r.is_deleted);
    let wr = without_rowid(tx, table)?;
    let locator = if wr {
        let pks: Vec<String> = columns(tx, table)?
            .into_iter()
            .filter(|c| c.pk > 0)
            .map(|c| format!("{0} = NEW.{0}", quote(&c.name)))
            .collect();
        pks.join(" AND ")
    } else {
        "rowid = NEW.rowid".to_owned()
    };
    let not_applying = "NOT EXISTS (SELECT 1 FROM _sync_applying)";
    let replaceable = replaceable(tx, table, &r.key, wr)?;
    let replaced = &replaceable.condition;
    let key_message = literal(&format!(
        "syncplan: {table}.{} is the row's sync key on every node and cannot be changed",
        r.key
    ));
    // One trigger per statement kind: SQLite runs a trigger as a
    // sub-program, and each one costs about as much as the capture itself,
    // so the rare cases (fill, stamp) ride in the same trigger as conditional
    // statements rather than in triggers of their own.
    let sql = format!(
        "CREATE TRIGGER {pre} BEFORE INSERT ON {t}
           WHEN {possible}
         BEGIN
           INSERT INTO _sync_capture(type_id, key, deleted, deleted_at)
           SELECT {type_id}, {k}, 2, {NOW_MICROS_SQL} FROM {t}
           WHERE {k} IS NOT NULL AND ({replaced});
         END;
         CREATE TRIGGER {ins} AFTER INSERT ON {t}
         BEGIN
           INSERT INTO _sync_capture(type_id, key, deleted)
           SELECT {type_id}, NEW.{k}, coalesce(NEW.{d}, 0) <> 0
           WHERE NEW.{k} IS NOT NULL AND NEW.{u} IS NOT NULL;
           UPDATE {t} SET {k} = coalesce({k}, {UUID_V7_SQL}), {u} = coalesce({u}, {NOW_MICROS_SQL})
           WHERE (NEW.{k} IS NULL OR NEW.{u} IS NULL) AND {not_applying} AND {locator};
         END;
         CREATE TRIGGER {upd} AFTER UPDATE ON {t}
           WHEN NEW.{k} IS NOT NULL
         BEGIN
           INSERT INTO _sync_capture(type_id, key, deleted)
           VALUES ({type_id}, NEW.{k}, coalesce(NEW.{d}, 0) <> 0);
           UPDATE {t} SET {u} = max({NOW_MICROS_SQL}, coalesce(OLD.{u} + 1, 0))
           WHERE OLD.{k} IS NOT NULL
             AND (NEW.{u} IS NULL OR (OLD.{u} IS NOT NULL AND NEW.{u} <= OLD.{u}))
             AND {not_applying} AND {locator};
         END;
         CREATE TRIGGER {del} AFTER DELETE ON {t}
           WHEN OLD.{k} IS NOT NULL
         BEGIN
           INSERT INTO _sync_capture(type_id, key, deleted, deleted_at)
           VALUES ({type_id}, OLD.{k}, 1, max({NOW_MICROS_SQL}, coalesce(OLD.{u} + 1, 0)));
         END;
         CREATE TRIGGER {key} BEFORE UPDATE OF {k} ON {t}
           WHEN OLD.{k} IS NOT NULL AND NEW.{k} IS NOT OLD.{k}
         BEGIN SELECT RAISE(ABORT, {key_message}); END;",
        pre = trigger_name(table, "pre"),
        possible = replaceable.possible,
        ins = trigger_name(table, "ins"),
        upd = trigger_name(table, "upd"),
        del = trigger_name(table, "del"),
        key = trigger_name(table, "key"),
    );
    tx.execute_batch(&sql)?;
    if replaceable.columns.is_empty() {
        return Ok(());
    }
    // Only an update that sets one of these columns can replace a row, so
    // the trigger is not even started for any other update.
    let of: Vec<String> = replaceable.columns.iter().map(|c| quote(c)).collect();
    tx.execute_batch(&format!(
        "CREATE TRIGGER {preupd} BEFORE UPDATE OF {of} ON {t}
         BEGIN
           INSERT INTO _sync_capture(type_id, key, deleted, deleted_at)
           SELECT {type_id}, {k}, 2, {NOW_MICROS_SQL} FROM {t}
           WHERE {k} IS NOT NULL AND {k} IS NOT OLD.{k} AND ({replaced});
         END;",
        preupd = trigger_name(table, "preupd"),
        of = of.join(", "),
    ))
}

/// What an `INSERT OR REPLACE`, an `UPDATE OR REPLACE` or a `REPLACE`
/// conflict clause in the schema may remove without firing a delete
/// trigger: rows sharing the rowid, the primary key or a UNIQUE value with
/// the row being written.
struct Replaceable {
    /// The condition that an existing row conflicts with `NEW`.
    condition: String,
    /// A cheaper condition on `NEW` alone that must hold for any row to
    /// conflict: a value in every column of some key (in a `BEFORE INSERT`
    /// trigger, SQLite shows a rowid it has yet to assign as -1).
    possible: String,
    /// The columns whose change can make an update conflict.
    columns: Vec<String>,
}

/// Finds the [`Replaceable`] rows of `table`. Unique indexes on expressions
/// are left out (their values cannot be compared in a trigger); partial ones
/// are compared as if whole, which at worst notes a row that stays, and a
/// noted row that stays is only sent again. The sync key's own index is left
/// out: a row replaced under the same key is an update of that key.
fn replaceable(
    conn: &Connection,
    table: &str,
    key: &str,
    without_rowid: bool,
) -> rusqlite::Result<Replaceable> {
    let mut arms = Vec::new();
    let mut possible = Vec::new();
    let mut columns: Vec<String> = Vec::new();
    if !without_rowid {
        arms.push("rowid = NEW.rowid".to_owned());
        possible.push("NEW.rowid <> -1".to_owned());
        if let Some(alias) = rowid_alias(&self::columns(conn, table)?, false) {
            columns.push(alias.to_owned());
        }
    }
    let sql = format!("PRAGMA index_list({})", quote(table));
    let indexes: Vec<(String, bool)> = conn
        .prepare(&sql)?
        .query_map([], |r| Ok((r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    for (index, unique) in indexes {
        if !unique {
            continue;
        }
        let sql = format!("PRAGMA index_info({})", quote(&index));
        let cols: Vec<Option<String>> = conn
            .prepare(&sql)?
            .query_map([], |r| r.get(2))?
            .collect::<Result<_, _>>()?;
        if cols.iter().any(Option::is_none) || cols == [Some(key.to_owned())] {
            continue;
        }
        let cols: Vec<String> = cols.into_iter().flatten().collect();
        let parts: Vec<String> = cols
            .iter()
            .map(|c| format!("{0} = NEW.{0}", quote(c)))
            .collect();
        arms.push(format!("({})", parts.join(" AND ")));
        let present: Vec<String> = cols
            .iter()
            .map(|c| format!("NEW.{} IS NOT NULL", quote(c)))
            .collect();
        possible.push(format!("({})", present.join(" AND ")));
        for c in cols {
            if !columns.contains(&c) {
                columns.push(c);
            }
        }
    }
    let any = |parts: Vec<String>| {
        if parts.is_empty() {
            "false".to_owned()
        } else {
            parts.join(" OR ")
        }
    };
    Ok(Replaceable {
        condition: any(arms),
        possible: any(possible),
        columns,
    })
}

/// Whether `name` is reserved for the store's own tables.
pub(crate) fn reserved(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.starts_with("_sync_")
        || lower.starts_with("sqlite_")
        || lower == "sync_nodes"
        || lower == "sync_changes"
}

/// Converts a store failure met while tracking.
impl From<rusqlite::Error> for TrackError {
    fn from(e: rusqlite::Error) -> Self {
        TrackError::Store(StoreError::backend("tracking a table", e))
    }
}
