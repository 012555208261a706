//! Target `sqlite_sql`: the application's own plain SQL on tracked SQLite
//! tables, on a hub and two nodes, interleaved with syncs.
//!
//! Schema ([`APP_SCHEMA`]): `parent` with a UNIQUE `code`, and `child`
//! whose `parent_id` is a `FOREIGN KEY ... ON DELETE CASCADE` and whose
//! `label` is UNIQUE; both tracked by `sync-store-sqlite` on in-memory
//! databases. An [`Arbitrary`] sequence of [`SqlOp`]s runs INSERT, UPDATE,
//! DELETE, REPLACE and INSERT ... ON CONFLICT DO UPDATE through each
//! store's own connection (a statement a constraint refuses is skipped: that
//! is the application's business) and syncs nodes with the hub. Inserted
//! UNIQUE values carry the writer's name, so two writers never create the
//! same value concurrently (no store could reconcile that).
//!
//! At the end every node syncs with the hub until quiescent, and the target
//! checks, with plain SELECTs, that every node's tables hold the same rows
//! with the same values (sync-only columns `updated_at` and `is_deleted`
//! and the local row ids aside; rows are matched by sync key and a child's
//! parent is compared by the parent's sync key), and that foreign keys
//! hold. A row the writer removed with `DELETE` must be gone everywhere, as
//! issue 10 specifies, not left with `is_deleted = 1`.

use arbitrary::{Arbitrary, Unstructured};
use rusqlite::Connection;
use sync_conformance::fixtures::{hub_id, hub_info, node_info, t};
use sync_conformance::net;
use sync_core::{Engine, EngineConfig, EntityRegistry, NodeInfo, Timestamp};
use sync_store_sqlite::{SqliteOptions, SqliteStore, TrackOptions};

/// Most operations run per input.
pub const MAX_OPS: usize = 48;
/// Sync rounds allowed at the end to reach quiescence.
pub const MAX_ROUNDS: usize = 3;

/// The application's tables, before syncplan tracks them.
pub const APP_SCHEMA: &str = "
    CREATE TABLE parent(
        id INTEGER PRIMARY KEY,
        code TEXT NOT NULL UNIQUE,
        name TEXT,
        n INTEGER
    );
    CREATE TABLE child(
        id INTEGER PRIMARY KEY,
        parent_id INTEGER NOT NULL REFERENCES parent(id) ON DELETE CASCADE,
        label TEXT UNIQUE,
        qty REAL
    );";

/// A participant.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Actor {
    /// The hub (its application writes too).
    Hub,
    /// Node 0.
    Node0,
    /// Node 1.
    Node1,
}

/// A UNIQUE value: one of four per writer.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unique {
    /// Whose namespace.
    pub owner: Actor,
    /// Which of its four values.
    pub index: u8,
}

/// One application statement, or a sync.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SqlOp {
    /// `INSERT INTO parent` with one of `who`'s codes.
    InsertParent {
        /// Writer.
        who: Actor,
        /// Code index.
        code: u8,
        /// Value of `n`.
        n: u8,
    },
    /// `INSERT INTO child` under the parent with code `parent`, with one
    /// of `who`'s labels.
    InsertChild {
        /// Writer.
        who: Actor,
        /// Parent's code.
        parent: Unique,
        /// Label index.
        label: u8,
        /// Value of `qty`.
        qty: u8,
    },
    /// `UPDATE parent SET name, n WHERE code = ...`.
    UpdateParent {
        /// Writer.
        who: Actor,
        /// Which row.
        code: Unique,
        /// New `n`.
        n: u8,
    },
    /// `UPDATE parent SET code = <one of who's codes> WHERE code = ...`.
    Recode {
        /// Writer.
        who: Actor,
        /// Which row.
        code: Unique,
        /// New code index.
        to: u8,
    },
    /// `UPDATE child SET qty, parent_id WHERE label = ...`.
    UpdateChild {
        /// Writer.
        who: Actor,
        /// Which row.
        label: Unique,
        /// Move it under this parent (if it exists).
        parent: Unique,
        /// New `qty`.
        qty: u8,
    },
    /// `DELETE FROM parent WHERE code = ...` (cascades to its children).
    DeleteParent {
        /// Writer.
        who: Actor,
        /// Which row.
        code: Unique,
    },
    /// `DELETE FROM child WHERE label = ...`.
    DeleteChild {
        /// Writer.
        who: Actor,
        /// Which row.
        label: Unique,
    },
    /// `REPLACE INTO parent(code, name, n)` with one of `who`'s codes:
    /// deletes the row holding the code (cascading) and inserts a new one.
    ReplaceParent {
        /// Writer.
        who: Actor,
        /// Code index.
        code: u8,
        /// Value of `n`.
        n: u8,
    },
    /// `INSERT INTO parent ... ON CONFLICT(code) DO UPDATE SET n = ...`.
    UpsertParent {
        /// Writer.
        who: Actor,
        /// Code index.
        code: u8,
        /// Value of `n`.
        n: u8,
    },
    /// `INSERT INTO child ... ON CONFLICT(label) DO UPDATE SET qty = ...`.
    UpsertChild {
        /// Writer.
        who: Actor,
        /// Parent's code.
        parent: Unique,
        /// Label index.
        label: u8,
        /// Value of `qty`.
        qty: u8,
    },
    /// Node `node` (false: 0, true: 1) runs a sync session with the hub.
    Sync {
        /// Which node.
        node: bool,
    },
}

/// A whole input.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub struct Script {
    /// The operations (at most [`MAX_OPS`] run).
    pub ops: Vec<SqlOp>,
}

/// Runs one input; panics on a failed check.
pub fn run(data: &[u8]) {
    let Ok(script) = Script::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    run_script(&script);
}

/// Runs a script and checks the end state; panics on a failed check.
pub fn run_script(script: &Script) {
    let ops = &script.ops[..script.ops.len().min(MAX_OPS)];
    let mut world = SqlWorld::new();
    for (step, op) in ops.iter().enumerate() {
        world.now = world.now.add_millis(1);
        if let Err(problem) = world.step(op) {
            panic!("{problem}\nafter step {step} of {ops:#?}");
        }
    }
    if let Err(problem) = world.quiesce().and_then(|()| world.compare()) {
        panic!("{problem}\nafter {ops:#?}");
    }
}

/// A tracked in-memory SQLite store with [`APP_SCHEMA`], and its registry.
///
/// # Panics
///
/// When SQLite refuses the schema or tracking (it does not).
pub fn tracked_store() -> (SqliteStore, EntityRegistry) {
    let mut store = SqliteStore::open_in_memory(SqliteOptions::default()).expect("open sqlite");
    store
        .connection()
        .execute_batch(APP_SCHEMA)
        .expect("app schema");
    store
        .track_table("parent", TrackOptions::new().entity_type_name("Parent"))
        .expect("track parent");
    store
        .track_table("child", TrackOptions::new().entity_type_name("Child"))
        .expect("track child");
    let registry = store.registry();
    (store, registry)
}

struct SqlWorld {
    /// Hub, node 0, node 1.
    engines: Vec<Engine<SqliteStore>>,
    now: Timestamp,
}

impl SqlWorld {
    fn new() -> Self {
        let engine = |info: NodeInfo, seed| {
            let (store, registry) = tracked_store();
            Engine::new(store, registry, EngineConfig::default().seed(seed), info)
                .expect("create engine")
        };
        let mut engines = vec![
            engine(hub_info(), 1),
            engine(node_info(0), 100),
            engine(node_info(1), 101),
        ];
        for i in 0..2 {
            engines[0]
                .register_peer(node_info(i))
                .expect("register node");
            engines[i + 1]
                .register_peer(hub_info())
                .expect("register hub");
        }
        SqlWorld { engines, now: t(0) }
    }

    fn step(&mut self, op: &SqlOp) -> Result<(), String> {
        if let SqlOp::Sync { node } = *op {
            return self.sync(usize::from(node));
        }
        let (who, sql, params) = statement(op);
        let conn = self.engines[index(who)].store().connection();
        // A statement a constraint refuses is the application's problem:
        // skipped. The store must not be poisoned by it.
        let _ = conn.execute(&sql, rusqlite::params_from_iter(params));
        if let Some(reason) = self.engines[index(who)].store().poisoned() {
            return Err(format!(
                "{who:?}'s store is poisoned after {op:?}: {reason}"
            ));
        }
        Ok(())
    }

    fn sync(&mut self, i: usize) -> Result<(), String> {
        let now = self.now;
        let (hub, nodes) = self.engines.split_at_mut(1);
        let result = net::session(&mut nodes[i], &mut hub[0], now);
        net::drain(&mut hub[0]);
        net::drain(&mut nodes[i]);
        result
            .map(|_| ())
            .map_err(|e| format!("node {i}'s sync session with the hub failed: {e}"))
    }

    fn quiesce(&mut self) -> Result<(), String> {
        for _ in 0..MAX_ROUNDS {
            for i in 0..2 {
                self.now = self.now.add_millis(10);
                self.sync(i)?;
            }
            if self.settled()? {
                return Ok(());
            }
        }
        Err(format!(
            "not quiescent after {MAX_ROUNDS} rounds of sync on a perfect network"
        ))
    }

    fn settled(&mut self) -> Result<bool, String> {
        for i in 0..2 {
            let owed = self.engines[0]
                .pending_count(node_info(i).id)
                .map_err(|e| e.to_string())?;
            let pending = self.engines[i + 1]
                .pending_count(hub_id())
                .map_err(|e| e.to_string())?;
            if owed > 0 || pending > 0 {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Every node's live rows equal the hub's; foreign keys hold everywhere.
    fn compare(&mut self) -> Result<(), String> {
        let names = ["hub", "node 0", "node 1"];
        let tables: Vec<Tables> = self
            .engines
            .iter()
            .map(|e| Tables::read(e.store().connection()))
            .collect::<Result<_, _>>()?;
        for (name, tables) in names.iter().zip(&tables) {
            if tables.fk_violations > 0 {
                return Err(format!(
                    "{name}: PRAGMA foreign_key_check reports {} violations",
                    tables.fk_violations
                ));
            }
        }
        for (name, node) in names.iter().zip(&tables).skip(1) {
            let hub = &tables[0];
            if node.parents != hub.parents {
                return Err(format!(
                    "table parent differs after sync: {name} holds {:#?}, the hub {:#?}",
                    node.parents, hub.parents
                ));
            }
            if node.children != hub.children {
                return Err(format!(
                    "table child differs after sync: {name} holds {:#?}, the hub {:#?}",
                    node.children, hub.children
                ));
            }
        }
        Ok(())
    }
}

/// A `parent` row: `(sync_uuid, code, name, n)`.
type ParentRow = (String, String, Option<String>, Option<i64>);
/// A `child` row: `(sync_uuid, parent's sync_uuid, label, qty)`.
type ChildRow = (String, Option<String>, Option<String>, Option<f64>);

/// Every row as the application's plain SELECTs see it (a row soft-deleted
/// by sync is still a row to them), keyed by sync key.
struct Tables {
    parents: Vec<ParentRow>,
    children: Vec<ChildRow>,
    fk_violations: i64,
}

impl Tables {
    fn read(conn: &Connection) -> Result<Self, String> {
        let err = |e: rusqlite::Error| e.to_string();
        let mut stmt = conn
            .prepare("SELECT sync_uuid, code, name, n FROM parent ORDER BY sync_uuid")
            .map_err(err)?;
        let parents = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .map_err(err)?
            .collect::<Result<_, _>>()
            .map_err(err)?;
        let mut stmt = conn
            .prepare(
                "SELECT c.sync_uuid, p.sync_uuid, c.label, c.qty
                 FROM child c LEFT JOIN parent p ON p.id = c.parent_id
                 ORDER BY c.sync_uuid",
            )
            .map_err(err)?;
        let children = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .map_err(err)?
            .collect::<Result<_, _>>()
            .map_err(err)?;
        let fk_violations = conn
            .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
                r.get(0)
            })
            .map_err(err)?;
        Ok(Tables {
            parents,
            children,
            fk_violations,
        })
    }
}

type Params = Vec<rusqlite::types::Value>;

/// The statement `op` runs, on whose connection, with its parameters.
fn statement(op: &SqlOp) -> (Actor, String, Params) {
    use rusqlite::types::Value as V;
    let text = |s: String| V::Text(s);
    let int = |n: u8| V::Integer(i64::from(n));
    let real = |q: u8| V::Real(f64::from(q) / 4.0);
    let (who, sql, params) = match *op {
        SqlOp::InsertParent { who, code, n } => (
            who,
            "INSERT INTO parent(code, name, n) VALUES (?1, ?2, ?3)",
            vec![text(own(who, "P", code)), text(format!("n{n}")), int(n)],
        ),
        SqlOp::InsertChild {
            who,
            parent,
            label,
            qty,
        } => (
            who,
            "INSERT INTO child(parent_id, label, qty)
             VALUES ((SELECT id FROM parent WHERE code = ?1), ?2, ?3)",
            vec![
                text(unique("P", parent)),
                text(own(who, "L", label)),
                real(qty),
            ],
        ),
        SqlOp::UpdateParent { who, code, n } => (
            who,
            "UPDATE parent SET name = ?2, n = ?3 WHERE code = ?1",
            vec![text(unique("P", code)), text(format!("u{n}")), int(n)],
        ),
        SqlOp::Recode { who, code, to } => (
            who,
            "UPDATE parent SET code = ?2 WHERE code = ?1",
            vec![text(unique("P", code)), text(own(who, "P", to))],
        ),
        SqlOp::UpdateChild {
            who,
            label,
            parent,
            qty,
        } => (
            who,
            "UPDATE child SET qty = ?3,
                 parent_id = coalesce((SELECT id FROM parent WHERE code = ?2), parent_id)
             WHERE label = ?1",
            vec![
                text(unique("L", label)),
                text(unique("P", parent)),
                real(qty),
            ],
        ),
        SqlOp::DeleteParent { who, code } => (
            who,
            "DELETE FROM parent WHERE code = ?1",
            vec![text(unique("P", code))],
        ),
        SqlOp::DeleteChild { who, label } => (
            who,
            "DELETE FROM child WHERE label = ?1",
            vec![text(unique("L", label))],
        ),
        SqlOp::ReplaceParent { who, code, n } => (
            who,
            "REPLACE INTO parent(code, name, n) VALUES (?1, ?2, ?3)",
            vec![text(own(who, "P", code)), text(format!("r{n}")), int(n)],
        ),
        SqlOp::UpsertParent { who, code, n } => (
            who,
            "INSERT INTO parent(code, name, n) VALUES (?1, ?2, ?3)
             ON CONFLICT(code) DO UPDATE SET n = excluded.n, name = 'upserted'",
            vec![text(own(who, "P", code)), text(format!("i{n}")), int(n)],
        ),
        SqlOp::UpsertChild {
            who,
            parent,
            label,
            qty,
        } => (
            who,
            "INSERT INTO child(parent_id, label, qty)
             VALUES ((SELECT id FROM parent WHERE code = ?1), ?2, ?3)
             ON CONFLICT(label) DO UPDATE SET qty = excluded.qty",
            vec![
                text(unique("P", parent)),
                text(own(who, "L", label)),
                real(qty),
            ],
        ),
        SqlOp::Sync { .. } => unreachable!("syncs are not statements"),
    };
    (who, sql.to_owned(), params)
}

/// One of `who`'s four UNIQUE values with `prefix`.
fn own(who: Actor, prefix: &str, index: u8) -> String {
    unique(prefix, Unique { owner: who, index })
}

fn unique(prefix: &str, u: Unique) -> String {
    format!("{prefix}-{:?}-{}", u.owner, u.index % 4)
}

fn index(who: Actor) -> usize {
    match who {
        Actor::Hub => 0,
        Actor::Node0 => 1,
        Actor::Node1 => 2,
    }
}
