//! `syncplan hub serve --postgres`: the hub's sync state in PostgreSQL (a
//! throwaway server, or `SYNCPLAN_PG_URL`), the directory keeping its
//! identity, certificate and nodes; two nodes sync through it with the
//! real binary over HTTPS on 127.0.0.1.

mod common;

use common::Workspace;
use sync_store_postgres::cluster;

#[test]
fn a_hub_served_on_postgres_from_the_command_line_moves_rows_between_nodes() {
    let url = cluster::test_url().unwrap_or_else(|e| panic!("{e}"));
    let schema = cluster::unique_schema("cli");
    let mut ws = Workspace::new();
    ws.hub("hub");
    ws.node("hub", "DESKTOP-1", "one");
    ws.serve_with("hub", &["--postgres", &url, "--schema", &schema]);
    // Added after PostgreSQL took the hub over: known at the next start.
    ws.node("hub", "DESKTOP-2", "two");
    ws.stop_servers();
    ws.serve_with("hub", &["--postgres", &url, "--schema", &schema]);

    ws.ok(&[
        "sql",
        "INSERT INTO note(title, body) VALUES ('through postgres', 'x')",
        "--dir",
        "one",
    ]);
    let summary = ws.ok(&["sync", "--dir", "one"]).stdout;
    assert!(
        summary.starts_with("in sync: sent 1 change(s)"),
        "{summary}"
    );
    let report = ws.ok(&["sync", "--json", "--dir", "two"]).json();
    assert_eq!(report["complete"], true, "{report}");
    assert_eq!(report["applied"], 1, "{report}");
    assert_eq!(
        ws.rows("two", "SELECT title, body FROM note"),
        vec![vec![
            serde_json::json!("through postgres"),
            serde_json::json!("x")
        ]]
    );
    ws.stop_servers();

    // The change is in PostgreSQL, not in the directory's database.
    let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
    let changes: i64 = client
        .query_one(
            &format!("SELECT count(*) FROM {schema}._sync_changes WHERE entity_type = 'Note'"),
            &[],
        )
        .expect("read the hub's changes")
        .get(0);
    assert_eq!(changes, 1);
    let on_disk = ws.rows("hub", "SELECT count(*) FROM note");
    assert_eq!(on_disk, vec![vec![serde_json::json!(0)]]);
    client
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .expect("drop the test's schema");
}
