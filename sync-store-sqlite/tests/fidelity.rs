//! To plain SQL, every node looks like one database (issue 10): a hub and two
//! SQLite nodes, the application writing through its own second
//! `rusqlite::Connection` with no pragma set for syncplan, and every tracked
//! table compared row by row with plain SQL after sync.
//!
//! The schema is an application's own: a UNIQUE e-mail, a foreign key with
//! `ON DELETE CASCADE`, a text primary key.

mod common;

use std::path::{Path, PathBuf};

use common::{connect, engine, hub_info, node_info, sync, t};
use rusqlite::Connection;
use rusqlite::types::Value as Sql;
use sync_core::{Engine, EntityKey, Store, StoreTxn, Timestamp, Uuid};
use sync_store_sqlite::{SqliteOptions, SqliteStore, TrackOptions};

const SCHEMA: &str = "
    CREATE TABLE customer(
        id INTEGER PRIMARY KEY,
        email TEXT NOT NULL UNIQUE,
        name TEXT
    );
    CREATE TABLE purchase(
        id INTEGER PRIMARY KEY,
        customer_id INTEGER NOT NULL REFERENCES customer(id) ON DELETE CASCADE,
        item TEXT NOT NULL
    );
    CREATE TABLE tag(
        code TEXT PRIMARY KEY,
        label TEXT
    );
    CREATE TABLE department(
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        manager_id INTEGER REFERENCES employee(id)
    );
    CREATE TABLE employee(
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        department_id INTEGER NOT NULL REFERENCES department(id)
    );";

/// The columns compared between nodes: everything but local row ids and the
/// sync-only `updated_at`.
const COMPARED: [(&str, &str); 5] = [
    ("customer", "sync_uuid, email, name, is_deleted"),
    (
        "purchase",
        "sync_uuid, (SELECT c.sync_uuid FROM customer c WHERE c.id = customer_id), item, is_deleted",
    ),
    ("tag", "sync_uuid, code, label, is_deleted"),
    (
        "department",
        "sync_uuid, name, (SELECT e.sync_uuid FROM employee e WHERE e.id = manager_id), is_deleted",
    ),
    (
        "employee",
        "sync_uuid, name, (SELECT d.sync_uuid FROM department d WHERE d.id = department_id), is_deleted",
    ),
];

struct Fleet {
    _dir: tempfile::TempDir,
    paths: Vec<PathBuf>,
    hub: Engine<SqliteStore>,
    nodes: Vec<Engine<SqliteStore>>,
    now: Timestamp,
}

/// Creates the application's schema at `path` and tracks its tables, with
/// `customer` resolving conflicts by `strategy` when one is given.
fn open_tracked_with(
    path: &Path,
    extra_sql: &str,
    strategy: Option<sync_core::ConflictStrategy>,
) -> SqliteStore {
    let app = Connection::open(path).expect("create the app database");
    app.execute_batch(SCHEMA).expect("app schema");
    app.execute_batch(extra_sql).expect("extra schema");
    drop(app);
    let mut store = SqliteStore::open(path, SqliteOptions::default()).expect("open");
    for (table, name) in [
        ("customer", "Customer"),
        ("purchase", "Purchase"),
        ("tag", "Tag"),
        ("department", "Department"),
        ("employee", "Employee"),
    ] {
        let mut options = TrackOptions::new().entity_type_name(name);
        if let (Some(strategy), "customer") = (&strategy, table) {
            options = options.strategy(strategy.clone());
        }
        store.track_table(table, options).expect("track");
    }
    store
}

impl Fleet {
    /// A SQLite hub and two SQLite nodes; `extra[i]` runs on database `i`
    /// (0: hub) before tracking.
    fn new(extra: [&str; 3]) -> Fleet {
        Fleet::with_strategy(extra, None)
    }

    /// [`Fleet::new`], with `customer` resolving conflicts by `strategy`.
    fn with_strategy(extra: [&str; 3], strategy: Option<sync_core::ConflictStrategy>) -> Fleet {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths: Vec<PathBuf> = ["hub.db", "n0.db", "n1.db"]
            .iter()
            .map(|n| dir.path().join(n))
            .collect();
        let stores: Vec<SqliteStore> = paths
            .iter()
            .zip(extra)
            .map(|(p, e)| open_tracked_with(p, e, strategy.clone()))
            .collect();
        let mut stores = stores.into_iter();
        let hub_store = stores.next().expect("hub store");
        let registry = hub_store.registry();
        let mut hub = engine(hub_store, registry.clone(), hub_info(), 1);
        let mut nodes: Vec<Engine<SqliteStore>> = stores
            .enumerate()
            .map(|(i, s)| {
                let reg = s.registry();
                engine(s, reg, node_info(i), 10 + i as u64)
            })
            .collect();
        {
            let (a, b) = nodes.split_at_mut(1);
            connect(&mut hub, &mut [&mut a[0], &mut b[0]]);
        }
        Fleet {
            _dir: dir,
            paths,
            hub,
            nodes,
            now: t(1),
        }
    }

    /// The application's own second connection to node `i`.
    fn app(&self, i: usize) -> Connection {
        Connection::open(&self.paths[i + 1]).expect("app connection")
    }

    fn sync_node(&mut self, i: usize) {
        self.now = self.now.add_millis(1000);
        sync(&mut self.nodes[i], &mut self.hub, self.now).expect("sync");
    }

    fn settle(&mut self) {
        for _ in 0..3 {
            for i in 0..self.nodes.len() {
                self.sync_node(i);
            }
        }
    }

    /// Every compared table of database `i` (0: hub), by plain SQL.
    fn tables(&self, i: usize) -> Vec<Vec<Vec<Sql>>> {
        let conn = Connection::open(&self.paths[i]).expect("reader");
        COMPARED
            .iter()
            .map(|(table, cols)| rows(&conn, table, cols))
            .collect()
    }

    fn assert_same_tables(&self) {
        let hub = self.tables(0);
        for i in 1..=self.nodes.len() {
            assert_eq!(self.tables(i), hub, "database {i} differs from the hub's");
        }
    }
}

fn rows(conn: &Connection, table: &str, cols: &str) -> Vec<Vec<Sql>> {
    let sql = format!("SELECT {cols} FROM {table} ORDER BY sync_uuid");
    let mut stmt = conn.prepare(&sql).expect("prepare");
    let n = stmt.column_count();
    stmt.query_map([], |r| (0..n).map(|i| r.get::<_, Sql>(i)).collect())
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

fn count(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).expect("count")
}

fn key(conn: &Connection, sql: &str) -> Uuid {
    let text: String = conn.query_row(sql, [], |r| r.get(0)).expect("key");
    text.parse().expect("uuid")
}

// --- item 1: every write captured ------------------------------------------

/// Issue 10, first bullet: `INSERT OR REPLACE` over an existing row removes
/// it without a delete trigger; the old row must die on every node.
#[test]
fn replace_into_an_existing_row_replaces_it_on_every_node() {
    let mut fleet = Fleet::new(["", "", ""]);
    let app = fleet.app(0);
    app.execute_batch(
        "INSERT INTO customer(email, name) VALUES ('ann@example.com', 'Ann');
         INSERT INTO tag(code, label) VALUES ('vip', 'Important');",
    )
    .unwrap();
    fleet.settle();
    app.execute_batch(
        "INSERT OR REPLACE INTO customer(email, name) VALUES ('ann@example.com', 'Ann B.');
         REPLACE INTO tag(code, label) VALUES ('vip', 'Very important');",
    )
    .unwrap();
    fleet.settle();
    fleet.assert_same_tables();
    let n1 = fleet.app(1);
    assert_eq!(count(&n1, "SELECT count(*) FROM customer"), 1);
    assert_eq!(
        count(
            &n1,
            "SELECT count(*) FROM customer WHERE name = 'Ann B.' AND NOT is_deleted"
        ),
        1
    );
    assert_eq!(count(&n1, "SELECT count(*) FROM tag"), 1);
}

/// `UPDATE OR REPLACE` onto another row's UNIQUE value removes that row
/// without a delete trigger, too.
#[test]
fn update_or_replace_removes_the_conflicting_row_everywhere() {
    let mut fleet = Fleet::new(["", "", ""]);
    let app = fleet.app(0);
    app.execute_batch(
        "INSERT INTO customer(email, name) VALUES ('jo@example.com', 'Jo');
         INSERT INTO customer(email, name) VALUES ('kim@example.com', 'Kim');
         INSERT INTO tag(code, label) VALUES ('a', 'A'), ('b', 'B');",
    )
    .unwrap();
    fleet.settle();
    app.execute_batch(
        "UPDATE OR REPLACE customer SET email = 'jo@example.com' WHERE name = 'Kim';
         UPDATE OR REPLACE tag SET code = 'a' WHERE code = 'b';",
    )
    .unwrap();
    fleet.settle();
    fleet.assert_same_tables();
    let n1 = fleet.app(1);
    assert_eq!(
        count(&n1, "SELECT count(*) FROM customer WHERE name = 'Kim'"),
        1
    );
    assert_eq!(count(&n1, "SELECT count(*) FROM customer"), 1);
    assert_eq!(count(&n1, "SELECT count(*) FROM tag"), 1);
}

/// `INSERT OR IGNORE` and UPSERT over an existing row set off the `REPLACE`
/// trigger's check but replace nothing: the row another node wrote is not
/// taken over by this one.
#[test]
fn insert_or_ignore_of_an_existing_row_changes_nothing() {
    let mut fleet = Fleet::new(["", "", ""]);
    fleet
        .app(1)
        .execute("INSERT INTO tag(code, label) VALUES ('new', 'New')", [])
        .unwrap();
    let tag = key(&fleet.app(1), "SELECT sync_uuid FROM tag");
    fleet.settle();
    fleet
        .app(0)
        .execute_batch(
            "INSERT OR IGNORE INTO tag(code, label) VALUES ('new', 'Ignored');
             INSERT INTO tag(code, label) VALUES ('new', 'Ignored too') ON CONFLICT DO NOTHING;",
        )
        .unwrap();
    fleet.settle();
    fleet.assert_same_tables();
    let on_hub = fleet.hub.get(&EntityKey::new("Tag", tag)).unwrap().unwrap();
    assert_eq!(on_hub.origin, node_info(1).id, "still node 1's version");
    assert_eq!(on_hub.fields["label"], sync_core::Value::from("New"));
}

/// Issue 10, first bullet: a row replaced before it was ever synced is not
/// corruption.
#[test]
fn replace_of_a_never_synced_row_is_not_corruption() {
    let mut fleet = Fleet::new(["", "", ""]);
    let app = fleet.app(0);
    app.execute_batch(
        "INSERT INTO customer(email, name) VALUES ('bo@example.com', 'Bo');
         INSERT OR REPLACE INTO customer(email, name) VALUES ('bo@example.com', 'Bo C.');",
    )
    .unwrap();
    fleet.settle();
    fleet.assert_same_tables();
    assert_eq!(count(&fleet.app(1), "SELECT count(*) FROM customer"), 1);
}

/// UPSERT, updates and deletes through a second connection, and a cascaded
/// foreign-key delete: all captured, all applied alike.
#[test]
fn upserts_and_cascaded_deletes_from_a_second_connection_sync() {
    let mut fleet = Fleet::new(["", "", ""]);
    let app = fleet.app(0);
    app.execute_batch(
        "PRAGMA foreign_keys = ON;
         INSERT INTO customer(email, name) VALUES ('cy@example.com', 'Cy');
         INSERT INTO purchase(customer_id, item) VALUES (last_insert_rowid(), 'lamp');
         INSERT INTO purchase(customer_id, item)
             VALUES ((SELECT id FROM customer WHERE email = 'cy@example.com'), 'desk');",
    )
    .unwrap();
    fleet.settle();
    app.execute(
        "INSERT INTO customer(email, name) VALUES ('cy@example.com', 'Cyrus')
         ON CONFLICT(email) DO UPDATE SET name = excluded.name",
        [],
    )
    .unwrap();
    fleet.settle();
    assert_eq!(
        count(
            &fleet.app(1),
            "SELECT count(*) FROM customer WHERE name = 'Cyrus'"
        ),
        1
    );
    app.execute("DELETE FROM customer WHERE email = 'cy@example.com'", [])
        .unwrap();
    assert_eq!(count(&app, "SELECT count(*) FROM purchase"), 0, "cascaded");
    fleet.settle();
    fleet.assert_same_tables();
    assert_eq!(count(&fleet.app(1), "SELECT count(*) FROM purchase"), 0);
}

/// A row whose deletion the triggers never saw (they were dropped while
/// the row was deleted) is sent as a deletion, not reported as corruption.
#[test]
fn a_row_gone_without_capture_is_sent_as_a_deletion() {
    let mut fleet = Fleet::new(["", "", ""]);
    let app = fleet.app(0);
    app.execute(
        "INSERT INTO customer(email, name) VALUES ('di@example.com', 'Di')",
        [],
    )
    .unwrap();
    app.execute_batch(
        "DROP TRIGGER \"_sync_customer_del\";
         UPDATE customer SET name = 'Diana';
         DELETE FROM customer;",
    )
    .unwrap();
    fleet.settle();
    let n1 = fleet.app(1);
    assert_eq!(count(&n1, "SELECT count(*) FROM customer"), 0);
}

// --- item 2: receiving tables look like the writer's -------------------------

/// Issue 10, second bullet: a row deleted with `DELETE` is removed on every
/// node, so its UNIQUE value can be used again, anywhere.
#[test]
fn a_deleted_row_is_removed_everywhere_and_its_unique_value_freed() {
    let mut fleet = Fleet::new(["", "", ""]);
    let app0 = fleet.app(0);
    app0.execute(
        "INSERT INTO customer(email, name) VALUES ('ed@example.com', 'Ed')",
        [],
    )
    .unwrap();
    let old = key(&app0, "SELECT sync_uuid FROM customer");
    fleet.settle();
    app0.execute("DELETE FROM customer", []).unwrap();
    fleet.settle();
    let app1 = fleet.app(1);
    assert_eq!(count(&app1, "SELECT count(*) FROM customer"), 0, "removed");
    app1.execute(
        "INSERT INTO customer(email, name) VALUES ('ed@example.com', 'Edwin')",
        [],
    )
    .unwrap();
    fleet.settle();
    fleet.assert_same_tables();
    assert_eq!(
        count(
            &app0,
            "SELECT count(*) FROM customer WHERE name = 'Edwin' AND NOT is_deleted"
        ),
        1
    );
    // The tombstone lives on in the sync tables.
    let txn = fleet.nodes[1].store_mut().begin().unwrap();
    let tomb = txn.entity(&EntityKey::new("Customer", old)).unwrap();
    assert!(tomb.is_some_and(|s| s.entity.is_deleted));
}

/// A packet carries each row's latest state only, so a row's new UNIQUE
/// value may arrive before the row that held it lets go: the receiver
/// writes it once the value is free, in the same packet.
#[test]
fn a_unique_value_taken_over_in_one_batch_lands_on_every_node() {
    let mut fleet = Fleet::new(["", "", ""]);
    let app0 = fleet.app(0);
    app0.execute_batch(
        "INSERT INTO customer(email, name) VALUES ('a@example.com', 'First');
         INSERT INTO customer(email, name) VALUES ('b@example.com', 'Second');",
    )
    .unwrap();
    fleet.settle();
    // Second lets go of b, First takes it, Second is edited again: Second's
    // latest state is sent after First's.
    app0.execute_batch(
        "UPDATE customer SET email = 'x@example.com' WHERE name = 'Second';
         UPDATE customer SET email = 'b@example.com' WHERE name = 'First';
         UPDATE customer SET name = 'Second!' WHERE name = 'Second';",
    )
    .unwrap();
    fleet.settle();
    fleet.assert_same_tables();
}

/// A row soft-deleted with `is_deleted = 1` stays, soft-deleted, everywhere.
#[test]
fn a_soft_deleted_row_is_soft_deleted_everywhere() {
    let mut fleet = Fleet::new(["", "", ""]);
    let app0 = fleet.app(0);
    app0.execute(
        "INSERT INTO customer(email, name) VALUES ('fi@example.com', 'Fi')",
        [],
    )
    .unwrap();
    fleet.settle();
    app0.execute("UPDATE customer SET is_deleted = 1, name = 'Fiona'", [])
        .unwrap();
    fleet.settle();
    fleet.assert_same_tables();
    assert_eq!(
        count(
            &fleet.app(1),
            "SELECT count(*) FROM customer WHERE is_deleted = 1 AND name = 'Fiona'"
        ),
        1
    );
}

// --- item 3: mixed schemas never lose data -----------------------------------

/// Issue 10, third bullet: node 1's table lacks `phone`; its edits must not
/// erase the phone numbers written where the column exists.
#[test]
fn a_field_one_table_lacks_survives_that_nodes_edits() {
    let phone = "ALTER TABLE customer ADD COLUMN phone TEXT;";
    let mut fleet = Fleet::new([phone, phone, ""]);
    let app0 = fleet.app(0);
    app0.execute(
        "INSERT INTO customer(email, name, phone) VALUES ('gus@example.com', 'Gus', '555-0100')",
        [],
    )
    .unwrap();
    fleet.settle();
    fleet
        .app(1)
        .execute("UPDATE customer SET name = 'Gustav'", [])
        .unwrap();
    fleet.settle();
    let (name, phone): (String, Option<String>) = app0
        .query_row("SELECT name, phone FROM customer", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(name, "Gustav");
    assert_eq!(phone.as_deref(), Some("555-0100"), "the phone survives");
}

/// Issue 10, fourth bullet: values written after `ALTER TABLE ... ADD
/// COLUMN` and before the store tracks the table again still sync.
#[test]
fn values_written_after_add_column_sync_without_retracking() {
    let phone = "ALTER TABLE customer ADD COLUMN phone TEXT;";
    // The hub lacks the column throughout; node 1 has had it from the start.
    let mut fleet = Fleet::new(["", "", phone]);
    let app0 = fleet.app(0);
    app0.execute(
        "INSERT INTO customer(email, name) VALUES ('hal@example.com', 'Hal')",
        [],
    )
    .unwrap();
    fleet.settle();
    app0.execute_batch(
        "ALTER TABLE customer ADD COLUMN phone TEXT;
         UPDATE customer SET phone = '555-0199';",
    )
    .unwrap();
    fleet.settle();
    let phone: Option<String> = fleet
        .app(1)
        .query_row("SELECT phone FROM customer", [], |r| r.get(0))
        .unwrap();
    assert_eq!(phone.as_deref(), Some("555-0199"));
}

/// A column added with a default while the store was closed fills every
/// row without firing a trigger: the store notices on open and sends them.
#[test]
fn a_column_added_while_closed_is_noticed_on_open() {
    let phone = "ALTER TABLE customer ADD COLUMN phone TEXT;";
    let mut fleet = Fleet::new(["", "", phone]);
    let app0 = fleet.app(0);
    app0.execute(
        "INSERT INTO customer(email, name) VALUES ('ida@example.com', 'Ida')",
        [],
    )
    .unwrap();
    fleet.settle();
    // Node 0 is closed; the application migrates its schema meanwhile.
    let registry = fleet.nodes[0].registry().clone();
    let placeholder = engine(
        SqliteStore::open_in_memory(SqliteOptions::default()).unwrap(),
        registry.clone(),
        node_info(9),
        99,
    );
    drop(std::mem::replace(&mut fleet.nodes[0], placeholder));
    app0.execute_batch("ALTER TABLE customer ADD COLUMN phone TEXT DEFAULT '555-0142';")
        .unwrap();
    let store = SqliteStore::open(&fleet.paths[1], SqliteOptions::default()).unwrap();
    fleet.nodes[0] =
        Engine::open(store, registry, sync_core::EngineConfig::default().seed(10)).unwrap();
    fleet.settle();
    let phone: Option<String> = fleet
        .app(1)
        .query_row("SELECT phone FROM customer", [], |r| r.get(0))
        .unwrap();
    assert_eq!(phone.as_deref(), Some("555-0142"));
}

/// Values a table kept beside its rows for want of a column land in the
/// column once the application adds it: plain SQL then reads them.
#[test]
fn a_column_added_later_takes_the_values_kept_for_it() {
    let phone = "ALTER TABLE customer ADD COLUMN phone TEXT;";
    // Node 0 has the column from the start; the hub and node 1 add it later.
    let mut fleet = Fleet::new(["", phone, ""]);
    fleet
        .app(0)
        .execute(
            "INSERT INTO customer(email, name, phone) VALUES ('mo@example.com', 'Mo', '555-0111')",
            [],
        )
        .unwrap();
    fleet.settle();
    for i in [0, 2] {
        Connection::open(&fleet.paths[i])
            .unwrap()
            .execute_batch(phone)
            .unwrap();
    }
    fleet.settle();
    for i in 0..3 {
        let phone: Option<String> = Connection::open(&fleet.paths[i])
            .unwrap()
            .query_row("SELECT phone FROM customer", [], |r| r.get(0))
            .unwrap();
        assert_eq!(phone.as_deref(), Some("555-0111"), "database {i}");
    }
}

// --- item 4, as far as it goes without version vectors ------------------------

/// A peer's removal of a parent cascades here too; the children it takes
/// with it are kept whole in the version history first.
#[test]
fn children_a_cascade_removes_are_kept_in_the_version_history() {
    let mut fleet = Fleet::new(["", "", ""]);
    let app0 = fleet.app(0);
    app0.execute_batch(
        "PRAGMA foreign_keys = ON;
         INSERT INTO customer(email, name) VALUES ('lu@example.com', 'Lu');
         INSERT INTO purchase(customer_id, item) VALUES (last_insert_rowid(), 'chair');",
    )
    .unwrap();
    let purchase = key(&app0, "SELECT sync_uuid FROM purchase");
    fleet.settle();
    app0.execute("DELETE FROM customer", []).unwrap();
    fleet.settle();
    fleet.assert_same_tables();
    let purchase_key = EntityKey::new("Purchase", purchase);
    for engine in [&mut fleet.hub, &mut fleet.nodes[1]] {
        let kept = engine.versions(&purchase_key).unwrap();
        assert_eq!(kept.len(), 1, "{kept:?}");
        assert!(kept[0].resolution.starts_with("cascade-deleted"));
        assert!(!kept[0].data.is_deleted);
        assert_eq!(kept[0].data.fields["item"], sync_core::Value::from("chair"));
    }
}

/// Issue 10, item 4: node 1 renames a customer while node 0 deletes it
/// (its purchases go with it, by the application's `ON DELETE CASCADE`).
/// The rename reaches the hub first and wins (server-wins): the customer
/// lives, and so do its purchases, on every node.
#[test]
fn children_of_a_parent_whose_deletion_loses_come_back_everywhere() {
    let mut fleet = Fleet::new(["", "", ""]);
    let app0 = fleet.app(0);
    app0.execute_batch(
        "PRAGMA foreign_keys = ON;
         INSERT INTO customer(email, name) VALUES ('mo@example.com', 'Mo');
         INSERT INTO purchase(customer_id, item) VALUES (last_insert_rowid(), 'chair');
         INSERT INTO purchase(customer_id, item)
             VALUES ((SELECT id FROM customer WHERE email = 'mo@example.com'), 'desk');",
    )
    .unwrap();
    fleet.settle();
    fleet
        .app(1)
        .execute("UPDATE customer SET name = 'Maurice'", [])
        .unwrap();
    fleet.sync_node(1);
    app0.execute("DELETE FROM customer", []).unwrap();
    assert_eq!(count(&app0, "SELECT count(*) FROM purchase"), 0, "cascaded");
    fleet.sync_node(0);
    fleet.settle();
    fleet.assert_same_tables();
    for i in 0..3 {
        let conn = Connection::open(&fleet.paths[i]).unwrap();
        assert_eq!(
            count(
                &conn,
                "SELECT count(*) FROM customer WHERE name = 'Maurice'"
            ),
            1,
            "database {i}"
        );
        assert_eq!(
            count(
                &conn,
                "SELECT count(*) FROM purchase WHERE item IN ('chair', 'desk')"
            ),
            2,
            "database {i}: the purchases came back with their customer"
        );
    }
}

/// The same, the other way round: the deletion reaches the hub first (the
/// hub's own cascade removes the purchases there), then the rename, later,
/// wins by last-writer-wins. The purchases the hub's cascade removed come
/// back too.
#[test]
fn children_the_hubs_cascade_removed_come_back_when_the_deletion_loses() {
    let mut fleet = Fleet::with_strategy(
        ["", "", ""],
        Some(sync_core::ConflictStrategy::LastWriterWins),
    );
    let app0 = fleet.app(0);
    app0.execute_batch(
        "PRAGMA foreign_keys = ON;
         INSERT INTO customer(email, name) VALUES ('jo@example.com', 'Jo');
         INSERT INTO purchase(customer_id, item) VALUES (last_insert_rowid(), 'lamp');",
    )
    .unwrap();
    fleet.settle();
    app0.execute("DELETE FROM customer", []).unwrap();
    fleet.sync_node(0);
    let hub = Connection::open(&fleet.paths[0]).unwrap();
    assert_eq!(count(&hub, "SELECT count(*) FROM purchase"), 0);
    std::thread::sleep(std::time::Duration::from_millis(5));
    fleet
        .app(1)
        .execute("UPDATE customer SET name = 'Joanna'", [])
        .unwrap();
    fleet.sync_node(1);
    fleet.settle();
    fleet.assert_same_tables();
    for i in 0..3 {
        let conn = Connection::open(&fleet.paths[i]).unwrap();
        assert_eq!(
            count(&conn, "SELECT count(*) FROM customer WHERE name = 'Joanna'"),
            1,
            "database {i}"
        );
        assert_eq!(
            count(&conn, "SELECT count(*) FROM purchase WHERE item = 'lamp'"),
            1,
            "database {i}: the purchase came back with its customer"
        );
    }
}

// --- everything at once ------------------------------------------------------

/// Seeded rounds of plain SQL of every kind above on both nodes (REPLACE,
/// UPDATE OR REPLACE, UPSERT, INSERT OR IGNORE, soft and hard deletes with
/// cascades), synced in between over a network that loses and duplicates
/// packets: afterwards every table reads the same on every database. UNIQUE
/// values are per node, so no change is refused.
#[test]
fn mixed_plain_sql_leaves_every_database_alike() {
    for seed in 1..=12u64 {
        let mut fleet = Fleet::new(["", "", ""]);
        let mut rng = common::Rng(seed * 7919);
        for round in 0..40 {
            let node = rng.below(2) as usize;
            let app = fleet.app(node);
            app.execute_batch("PRAGMA foreign_keys = ON").unwrap();
            let sql = random_sql(&mut rng, node);
            app.execute_batch(&sql)
                .unwrap_or_else(|e| panic!("seed {seed} round {round}: {sql}: {e}"));
            if rng.chance(40) {
                // Lost and duplicated packets on the way, retried.
                let i = rng.below(2) as usize;
                let mut faults = common::Rng(rng.next());
                common::sync_faulty(
                    &mut fleet.nodes[i],
                    &mut fleet.hub,
                    &mut fleet.now,
                    &mut faults,
                    15,
                )
                .unwrap_or_else(|e| panic!("seed {seed} round {round}: {e}"));
            }
        }
        fleet.settle();
        let hub = fleet.tables(0);
        for i in 1..=2 {
            assert_eq!(fleet.tables(i), hub, "seed {seed}: database {i} differs");
        }
    }
}

fn random_sql(rng: &mut common::Rng, node: usize) -> String {
    let e = format!("n{node}-{}@example.com", rng.below(4));
    let e2 = format!("n{node}-{}@example.com", rng.below(4));
    let code = format!("n{node}-{}", rng.below(3));
    let name = format!("v{}", rng.below(1000));
    match rng.below(11) {
        0 => format!("INSERT OR IGNORE INTO customer(email, name) VALUES ('{e}', '{name}')"),
        1 => format!("INSERT OR REPLACE INTO customer(email, name) VALUES ('{e}', '{name}')"),
        2 => format!(
            "INSERT INTO customer(email, name) VALUES ('{e}', '{name}')
             ON CONFLICT(email) DO UPDATE SET name = excluded.name"
        ),
        3 => format!("UPDATE OR REPLACE customer SET email = '{e2}' WHERE email = '{e}'"),
        4 => format!("DELETE FROM customer WHERE email = '{e}'"),
        5 => format!(
            "UPDATE customer SET is_deleted = 1 - is_deleted, name = '{name}' WHERE email = '{e}'"
        ),
        6 | 7 => format!(
            "INSERT INTO purchase(customer_id, item)
             SELECT id, '{name}' FROM customer ORDER BY random() LIMIT 1"
        ),
        8 => "DELETE FROM purchase WHERE id IN (SELECT id FROM purchase ORDER BY random() LIMIT 1)"
            .to_owned(),
        9 => format!("REPLACE INTO tag(code, label) VALUES ('{code}', '{name}')"),
        _ => format!("DELETE FROM tag WHERE code = '{code}'"),
    }
}

// --- issue 9, item 5: quarantine instead of blocking ---------------------------

/// Issue 9, fifth bullet: the same e-mail created on two nodes offline. The
/// hub refuses the second one; it ends as one rejected change whose message
/// names the table, the column and the value; the rest of that node's packet
/// applies; the node puts the hub's state back, so all three databases agree
/// and nothing is sent again and again.
#[test]
fn the_same_unique_value_created_on_two_nodes_ends_in_one_rejected_change() {
    let mut fleet = Fleet::new(["", "", ""]);
    fleet
        .app(0)
        .execute(
            "INSERT INTO customer(email, name) VALUES ('ann@example.com', 'Ann')",
            [],
        )
        .unwrap();
    fleet
        .app(1)
        .execute_batch(
            "INSERT INTO customer(email, name) VALUES ('ann@example.com', 'Bob');
             INSERT INTO tag(code, label) VALUES ('vip', 'Important');",
        )
        .unwrap();
    fleet.sync_node(0);
    fleet.sync_node(1);
    fleet.settle();
    fleet.assert_same_tables();

    let at_hub = fleet.hub.rejected().unwrap();
    assert_eq!(
        at_hub.len(),
        1,
        "one rejected change at the hub: {at_hub:?}"
    );
    let refused = &at_hub[0];
    assert_eq!(refused.by, sync_core::RejectedBy::Here);
    assert_eq!(refused.peer, node_info(1).id);
    for word in ["customer", "email", "ann@example.com"] {
        assert!(
            refused.reason.contains(word),
            "{word} in {:?}",
            refused.reason
        );
    }
    let at_writer = fleet.nodes[1].rejected().unwrap();
    assert_eq!(at_writer.len(), 1, "{at_writer:?}");
    assert_eq!(at_writer[0].id, refused.id);
    assert_eq!(at_writer[0].by, sync_core::RejectedBy::Peer);
    assert!(fleet.nodes[0].rejected().unwrap().is_empty());
    // The rest of node 1's packet applied, and node 1 holds Ann, not Bob.
    assert_eq!(count(&fleet.app(0), "SELECT count(*) FROM tag"), 1);
    assert_eq!(
        count(
            &fleet.app(1),
            "SELECT count(*) FROM customer WHERE name = 'Bob'"
        ),
        0
    );
    // Nothing is left to send.
    for i in 0..2 {
        let hub_id = hub_info().id;
        assert_eq!(fleet.nodes[i].pending_count(hub_id).unwrap(), 0, "node {i}");
    }
}

/// Once the cause is fixed, the hub retries the refused version: it lands on
/// every node, its writer included (whose copy was put away).
#[test]
fn a_rejected_change_retried_after_the_fix_reaches_every_node() {
    let mut fleet = Fleet::new(["", "", ""]);
    fleet
        .app(0)
        .execute(
            "INSERT INTO customer(email, name) VALUES ('ann@example.com', 'Ann')",
            [],
        )
        .unwrap();
    fleet
        .app(1)
        .execute(
            "INSERT INTO customer(email, name) VALUES ('ann@example.com', 'Bob')",
            [],
        )
        .unwrap();
    fleet.sync_node(0);
    fleet.sync_node(1);
    fleet.settle();
    let id = fleet.hub.rejected().unwrap()[0].id;
    // Still refused while Ann holds the address: the reason comes back.
    let again = fleet.hub.retry_rejected(id, fleet.now).unwrap_err();
    assert!(again.to_string().contains("ann@example.com"), "{again}");
    assert_eq!(fleet.hub.rejected().unwrap().len(), 1);
    fleet
        .app(0)
        .execute(
            "UPDATE customer SET email = 'ann@work.example.com' WHERE name = 'Ann'",
            [],
        )
        .unwrap();
    fleet.settle();
    fleet.hub.retry_rejected(id, fleet.now).unwrap();
    assert!(fleet.hub.rejected().unwrap().is_empty());
    fleet.settle();
    fleet.assert_same_tables();
    for i in 0..2 {
        assert_eq!(
            count(
                &fleet.app(i),
                "SELECT count(*) FROM customer WHERE name = 'Bob'"
            ),
            1,
            "node {i}"
        );
    }
}

/// A row that one node's schema refuses (a trigger raising a constraint
/// error) is kept there as a rejected change: the rest of the packet
/// applies and later changes still flow, the hub learns why, and a discard
/// moves the version to the history.
#[test]
fn a_row_one_node_refuses_blocks_nothing_behind_it() {
    let strict = "CREATE TRIGGER no_forbidden BEFORE INSERT ON tag
                  WHEN NEW.label = 'forbidden'
                  BEGIN SELECT RAISE(ABORT, 'labels may not be forbidden'); END;";
    let mut fleet = Fleet::new(["", "", strict]);
    fleet
        .app(0)
        .execute_batch(
            "INSERT INTO tag(code, label) VALUES ('x', 'forbidden');
             INSERT INTO customer(email, name) VALUES ('cy@example.com', 'Cy');",
        )
        .unwrap();
    fleet.sync_node(0);
    fleet.settle();
    let n1 = fleet.app(1);
    assert_eq!(count(&n1, "SELECT count(*) FROM customer"), 1);
    assert_eq!(count(&n1, "SELECT count(*) FROM tag"), 0);
    let here = fleet.nodes[1].rejected().unwrap();
    assert_eq!(here.len(), 1, "{here:?}");
    assert_eq!(here[0].by, sync_core::RejectedBy::Here);
    assert!(here[0].reason.contains("forbidden"), "{}", here[0].reason);
    assert!(here[0].reason.contains("tag"), "{}", here[0].reason);
    // The hub was told, and keeps its version.
    let told = fleet.hub.rejected().unwrap();
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0].by, sync_core::RejectedBy::Peer);
    assert_eq!(told[0].peer, node_info(1).id);
    assert_eq!(count(&fleet.app(0), "SELECT count(*) FROM tag"), 1);
    // Later changes flow past it.
    fleet
        .app(0)
        .execute("UPDATE customer SET name = 'Cyrus'", [])
        .unwrap();
    fleet.settle();
    assert_eq!(
        count(&n1, "SELECT count(*) FROM customer WHERE name = 'Cyrus'"),
        1
    );
    let key = here[0].entity.key.clone();
    fleet.nodes[1]
        .discard_rejected(here[0].id, fleet.now)
        .unwrap();
    assert!(fleet.nodes[1].rejected().unwrap().is_empty());
    let history = fleet.nodes[1].versions(&key).unwrap();
    assert!(
        history.iter().any(|v| v.resolution.contains("discarded")),
        "{history:?}"
    );
}

// --- issue 9, item 4: references ------------------------------------------------

/// Issue 9, fourth bullet: a department whose manager is an employee of it.
/// A fresh node receives both in one packet; neither waits for the other,
/// and both references are in place afterwards.
#[test]
fn records_that_reference_each_other_arrive_on_a_fresh_node() {
    let mut fleet = Fleet::new(["", "", ""]);
    fleet
        .app(0)
        .execute_batch(
            "INSERT INTO department(name) VALUES ('Sales');
             INSERT INTO employee(name, department_id) VALUES ('Dee', 1);
             UPDATE department SET manager_id = 1 WHERE name = 'Sales';",
        )
        .unwrap();
    fleet.sync_node(0);
    fleet.sync_node(1);
    fleet.assert_same_tables();
    let n1 = fleet.app(1);
    assert_eq!(
        count(
            &n1,
            "SELECT count(*) FROM department d JOIN employee e
               ON d.manager_id = e.id AND e.department_id = d.id"
        ),
        1,
        "both references are filled in on the fresh node"
    );
    assert!(fleet.nodes[1].parked().unwrap().is_empty());
    assert!(fleet.hub.parked().unwrap().is_empty());
}

/// A parent's children are looked up through the foreign-key column of a
/// tracked table (rows written with plain SQL), the same entities a scan of
/// the child type finds.
#[test]
fn children_are_found_through_the_foreign_key_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("app.db");
    let mut store = open_tracked_with(&path, "", None);
    store
        .connection()
        .execute_batch(
            "INSERT INTO customer(id, email, name) VALUES (1, 'a@example.com', 'A'), (2, 'b@example.com', 'B');
             INSERT INTO purchase(customer_id, item) VALUES (1, 'lamp'), (2, 'desk'), (1, 'chair');",
        )
        .unwrap();
    let uuid = |store: &SqliteStore, sql: &str| -> Uuid {
        let text: String = store.connection().query_row(sql, [], |r| r.get(0)).unwrap();
        text.parse().unwrap()
    };
    let a = uuid(&store, "SELECT sync_uuid FROM customer WHERE id = 1");
    let txn = store.begin().unwrap();
    let mut items: Vec<String> = txn
        .referencing("Purchase", "customer_id", a)
        .unwrap()
        .into_iter()
        .map(|c| c.entity.fields["item"].as_text().unwrap().to_owned())
        .collect();
    items.sort();
    assert_eq!(items, ["chair", "lamp"]);
    let mut scanned: Vec<Uuid> =
        sync_core::store::referencing_by_scan(&txn, "Purchase", "customer_id", a)
            .unwrap()
            .into_iter()
            .map(|c| c.entity.key.id)
            .collect();
    let mut joined: Vec<Uuid> = txn
        .referencing("Purchase", "customer_id", a)
        .unwrap()
        .into_iter()
        .map(|c| c.entity.key.id)
        .collect();
    scanned.sort();
    joined.sort();
    assert_eq!(joined, scanned);
    assert!(
        txn.referencing("Purchase", "customer_id", Uuid::from_u128(7))
            .unwrap()
            .is_empty()
    );
}
