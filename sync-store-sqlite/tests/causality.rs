//! Version clocks for writes made with plain SQL: an edit through the
//! application's own connection carries its history like an engine write,
//! so a late copy of the version it was built on is old news, and a real
//! concurrent edit is still a conflict.

mod common;

use common::*;
use rusqlite::Connection;
use sync_core::{EntityKey, Event, Store, StoreTxn, Value};

fn hours_on(conn: &Connection, id: sync_core::Uuid) -> i64 {
    conn.query_row(
        "SELECT hours FROM daily_report WHERE sync_uuid = ?1",
        [id.to_string()],
        |r| r.get(0),
    )
    .unwrap()
}

/// The hub answers one request twice (a duplicated request); the second
/// answer reaches the node after the node edited the row with plain SQL on
/// its own connection. The answer carries the hub version that edit was
/// built on: old news, the edit stays, nothing records a conflict.
#[test]
fn a_late_hub_version_does_not_replace_a_plain_sql_edit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.db");
    let (store, registry) = file_sqlite(&path);
    let mut node = engine(store, registry.clone(), node_info(0), 7);
    let mut hub = memory_hub(registry);
    connect(&mut hub, &mut [&mut node]);
    let id = hub
        .insert("DailyReport", report_fields("2025-12-12", 1), t(10))
        .unwrap();
    node.start_sync(hub_id()).unwrap();
    let request = node.poll_transmit(t(11)).unwrap().unwrap();
    let reply = hub.respond(&request.bytes, t(11)).unwrap();
    node.handle_incoming(&reply, t(11)).unwrap();

    let app = Connection::open(&path).unwrap();
    app.execute(
        "UPDATE daily_report SET hours = 5 WHERE sync_uuid = ?1",
        [id.to_string()],
    )
    .unwrap();
    let again = hub.respond(&request.bytes, t(12)).unwrap();
    node.handle_incoming(&again, t(12)).unwrap();
    assert_eq!(hours_on(&app, id), 5, "the plain-SQL edit stays");

    sync(&mut node, &mut hub, t(20)).unwrap();
    let key = EntityKey::new("DailyReport", id);
    assert_eq!(
        hub.get(&key).unwrap().unwrap().fields["hours"],
        Value::Int(5)
    );
    assert!(hub.audit_log().unwrap().is_empty());
    assert!(node.audit_log().unwrap().is_empty());
    assert!(hub.versions(&key).unwrap().is_empty());
    assert!(!std::iter::from_fn(|| node.poll_event()).any(|e| matches!(e, Event::Conflict(_))));
}

/// A plain-SQL edit's clock follows the version it replaced, with this
/// node's entry at the row's new `updated_at`; a second edit moves it on.
#[test]
fn plain_sql_edits_extend_the_clock_of_the_version_they_replace() {
    let (store, registry) = memory_sqlite();
    let mut node = engine(store, registry.clone(), node_info(0), 7);
    let mut hub = memory_hub(registry);
    connect(&mut hub, &mut [&mut node]);
    let id = hub
        .insert("DailyReport", report_fields("2025-12-12", 1), t(10))
        .unwrap();
    sync(&mut node, &mut hub, t(11)).unwrap();
    let key = EntityKey::new("DailyReport", id);
    let from_hub = node.get(&key).unwrap().unwrap().clock;
    let edit = |hours: i64, node: &mut sync_core::Engine<sync_store_sqlite::SqliteStore>| {
        node.store()
            .connection()
            .execute(
                "UPDATE daily_report SET hours = ?1 WHERE sync_uuid = ?2",
                (hours, id.to_string()),
            )
            .unwrap();
        let txn = node.store_mut().begin().unwrap();
        txn.entity(&key).unwrap().unwrap().entity
    };
    let first = edit(2, &mut node);
    assert!(first.clock.includes(&from_hub));
    assert!(!from_hub.includes(&first.clock));
    let own = first.clock.get(node_id(0)).expect("this node's entry");
    assert_eq!(own.at, first.updated_at);
    let second = edit(3, &mut node);
    assert!(second.clock.includes(&first.clock));
    assert!(
        !first.clock.includes(&second.clock),
        "each edit moves it on"
    );
}
