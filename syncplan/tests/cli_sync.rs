//! The real `syncplan` binary, part 2: syncing over HTTPS and through
//! files, conflicts, rejected changes, and the demo, against real SQLite
//! files and a real HTTPS hub on 127.0.0.1 (part 1 is `cli_setup.rs`).

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{BIN, Workspace, eventually};

/// A hub serving HTTPS and two nodes, all with the note table.
fn network() -> Workspace {
    let mut ws = Workspace::new();
    ws.hub("hub");
    ws.node("hub", "DESKTOP-1", "one");
    ws.node("hub", "DESKTOP-2", "two");
    ws.serve("hub");
    ws
}

fn count(ws: &Workspace, dir: &str, query: &str) -> i64 {
    ws.rows(dir, query)[0][0].as_i64().expect("a count")
}

#[test]
fn sync_moves_rows_between_nodes_through_the_https_hub() {
    let ws = network();
    ws.ok(&[
        "sql",
        "INSERT INTO note(title, body) VALUES ('from one', 'x')",
        "--dir",
        "one",
    ]);
    let summary = ws.ok(&["sync", "--dir", "one"]).stdout;
    assert!(
        summary.starts_with("in sync: sent 1 change(s)"),
        "{summary}"
    );
    let report = ws.ok(&["sync", "--json", "--dir", "two"]).json();
    assert_eq!(report["complete"], true);
    assert_eq!(report["applied"], 1);
    assert_eq!(
        ws.rows("two", "SELECT title, body FROM note"),
        vec![vec![serde_json::json!("from one"), serde_json::json!("x")]]
    );
    assert_eq!(count(&ws, "hub", "SELECT count(*) FROM note"), 1);
}

#[test]
fn a_migration_recorded_at_the_hub_reaches_a_node_at_its_next_sync() {
    let mut ws = Workspace::new();
    ws.hub("hub");
    ws.node("hub", "DESKTOP-1", "one");
    ws.ok(&[
        "sql",
        "INSERT INTO note(title, body) VALUES ('before', 'x')",
        "--dir",
        "one",
    ]);
    // A script that fails changes nothing and is not recorded.
    let failed = ws
        .run(&[
            "hub",
            "migrate",
            "1.1.0",
            "--sql",
            "ALTER TABLE nope ADD COLUMN c",
            "--dir",
            "hub",
        ])
        .failed();
    assert!(failed.stderr.contains("nope"), "{}", failed.stderr);
    ws.ok(&[
        "hub",
        "migrate",
        "1.1.0",
        "--sql",
        "ALTER TABLE note ADD COLUMN tag TEXT",
        "--description",
        "notes get a tag",
        "--dir",
        "hub",
    ]);
    let again = ws
        .run(&[
            "hub", "migrate", "1.1.0", "--sql", "SELECT 1", "--dir", "hub",
        ])
        .failed();
    assert!(again.stderr.contains("1.1.0"), "{}", again.stderr);
    ws.ok(&[
        "sql",
        "INSERT INTO note(title, body, tag) VALUES ('from the hub', 'y', 'red')",
        "--dir",
        "hub",
    ]);
    ws.serve("hub");
    let report = ws.ok(&["sync", "--json", "--dir", "one"]).json();
    assert_eq!(report["complete"], true, "{report}");
    assert_eq!(report["migrations"], serde_json::json!(["1.1.0"]));
    assert_eq!(
        ws.rows("one", "SELECT tag FROM note WHERE title = 'from the hub'"),
        vec![vec![serde_json::json!("red")]]
    );
    assert_eq!(
        count(
            &ws,
            "hub",
            "SELECT count(*) FROM note WHERE title = 'before'"
        ),
        1
    );
    let status = ws.ok(&["status", "--json", "--dir", "one"]).json();
    assert_eq!(status["schema_version"], "1.1.0");
    assert_eq!(status["migrations_pending"], serde_json::json!([]));
    // The new column syncs from the node too.
    ws.ok(&[
        "sql",
        "UPDATE note SET tag = 'blue' WHERE title = 'before'",
        "--dir",
        "one",
    ]);
    ws.ok(&["sync", "--dir", "one"]);
    assert_eq!(
        ws.rows("hub", "SELECT tag FROM note WHERE title = 'before'"),
        vec![vec![serde_json::json!("blue")]]
    );
}

#[test]
fn sync_watch_receives_a_change_by_live_push() {
    let ws = network();
    let mut watcher = common::Server {
        child: Command::new(BIN)
            .args(["sync", "--watch", "--interval", "3600", "--dir", "two"])
            .current_dir(ws.root.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    };
    // Give the watcher its first session, then write on the other node.
    std::thread::sleep(Duration::from_millis(500));
    ws.ok(&[
        "sql",
        "INSERT INTO note(title) VALUES ('pushed')",
        "--dir",
        "one",
    ]);
    ws.ok(&["sync", "--dir", "one"]);
    let arrived = eventually(Duration::from_secs(20), || {
        count(
            &ws,
            "two",
            "SELECT count(*) FROM note WHERE title = 'pushed'",
        ) == 1
    });
    watcher.kill();
    assert!(
        arrived,
        "the change did not reach the watching node within 20 s"
    );
}

#[test]
fn sync_with_no_hub_fails_with_one_clear_message() {
    let ws = Workspace::new();
    ws.hub("hub");
    ws.node("hub", "DESKTOP-1", "one");
    ws.ok(&[
        "sql",
        "INSERT INTO note(title) VALUES ('queued')",
        "--dir",
        "one",
    ]);
    let run = ws
        .run(&["sync", "--attempts", "1", "--dir", "one"])
        .failed();
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr
            .starts_with("error: sync failed\n  because: gave up after 1 attempt(s)"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("the changes stay queued"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("could not be reached"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("Unreachable {"),
        "a debug dump: {}",
        run.stderr
    );
    let status = ws.ok(&["status", "--json", "--dir", "one"]).json();
    assert_eq!(status["peers"][0]["pending"], 1);
}

/// Both nodes edit the same note offline, then sync: the hub resolves it.
fn conflicting_edits(ws: &Workspace) {
    ws.ok(&[
        "sql",
        "INSERT INTO note(title, body) VALUES ('shared', 'v0')",
        "--dir",
        "one",
    ]);
    ws.ok(&["sync", "--dir", "one"]);
    ws.ok(&["sync", "--dir", "two"]);
    ws.ok(&[
        "sql",
        "UPDATE note SET body = 'one says' WHERE title = 'shared'",
        "--dir",
        "one",
    ]);
    ws.ok(&[
        "sql",
        "UPDATE note SET body = 'two says' WHERE title = 'shared'",
        "--dir",
        "two",
    ]);
    ws.ok(&["sync", "--dir", "one"]);
    ws.ok(&["sync", "--dir", "two"]);
    ws.ok(&["sync", "--dir", "one"]);
}

#[test]
fn audit_and_history_show_the_resolution_and_the_losing_version() {
    let ws = network();
    conflicting_edits(&ws);
    let audit = ws.ok(&["audit", "--json", "--dir", "hub"]).json();
    let resolutions = audit["resolutions"].as_array().unwrap();
    assert_eq!(resolutions.len(), 1);
    assert_eq!(resolutions[0]["strategy"], "server-wins");
    assert_eq!(resolutions[0]["peer"], "DESKTOP-2");
    let entity = resolutions[0]["entity"].as_str().unwrap().replace(' ', "/");
    let history = ws
        .ok(&["history", &entity, "--json", "--dir", "hub"])
        .json();
    assert_eq!(history["current"]["data"]["body"], "one says");
    let versions = history["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0]["version"]["data"]["body"], "two says");
    assert_eq!(versions[0]["source_node"], "DESKTOP-2");
    // The bare UUID finds it too; both nodes hold the winner.
    let uuid = entity.split('/').nth(1).unwrap();
    let text = ws.ok(&["history", uuid, "--dir", "hub"]).stdout;
    assert!(
        text.contains("two says") && text.contains("server-wins"),
        "{text}"
    );
    for dir in ["one", "two"] {
        assert_eq!(ws.rows(dir, "SELECT body FROM note")[0][0], "one says");
    }
    let text = ws.ok(&["audit", "--dir", "hub"]).stdout;
    assert!(text.starts_with("1 conflict resolution(s)"), "{text}");
}

#[test]
fn conflicts_list_and_resolve_with_the_manual_strategy() {
    let mut ws = Workspace::new();
    ws.hub("hub");
    ws.ok(&[
        "track",
        "note",
        "--as",
        "Note",
        "--strategy",
        "manual",
        "--dir",
        "hub",
    ]);
    for (code, dir) in [("DESKTOP-1", "one"), ("DESKTOP-2", "two")] {
        ws.node("hub", code, dir);
        ws.ok(&[
            "track",
            "note",
            "--as",
            "Note",
            "--strategy",
            "manual",
            "--dir",
            dir,
        ]);
    }
    ws.serve("hub");
    conflicting_edits(&ws);
    let listed = ws
        .ok(&["conflicts", "list", "--json", "--dir", "hub"])
        .json();
    let conflicts = listed["conflicts"].as_array().unwrap();
    assert_eq!(conflicts.len(), 1, "{listed}");
    assert_eq!(conflicts[0]["local"]["body"], "one says");
    assert_eq!(conflicts[0]["remote"]["body"], "two says");
    let id = conflicts[0]["id"].as_str().unwrap().to_owned();
    let resolved = ws
        .ok(&[
            "conflicts",
            "resolve",
            &id,
            "--keep",
            "remote",
            "--json",
            "--dir",
            "hub",
        ])
        .json();
    assert_eq!(resolved["kept"], "remote");
    let empty = ws
        .ok(&["conflicts", "list", "--json", "--dir", "hub"])
        .json();
    assert_eq!(empty["conflicts"], serde_json::json!([]));
    for dir in ["one", "two"] {
        ws.ok(&["sync", "--dir", dir]);
        assert_eq!(ws.rows(dir, "SELECT body FROM note")[0][0], "two says");
    }
    let again = ws
        .run(&[
            "conflicts",
            "resolve",
            &id,
            "--keep",
            "local",
            "--dir",
            "hub",
        ])
        .failed();
    assert!(again.stderr.contains("is not open"), "{}", again.stderr);
    // A second conflict, where both versions are kept: the remote one as a copy.
    ws.ok(&[
        "sql",
        "UPDATE note SET body = 'one again' WHERE title = 'shared'",
        "--dir",
        "one",
    ]);
    ws.ok(&[
        "sql",
        "UPDATE note SET body = 'two again' WHERE title = 'shared'",
        "--dir",
        "two",
    ]);
    for dir in ["one", "two"] {
        ws.ok(&["sync", "--dir", dir]);
    }
    let listed = ws
        .ok(&["conflicts", "list", "--json", "--dir", "hub"])
        .json();
    let id = listed["conflicts"][0]["id"]
        .as_str()
        .expect("a second conflict")
        .to_owned();
    let both = ws
        .ok(&[
            "conflicts",
            "resolve",
            &id,
            "--keep",
            "both",
            "--json",
            "--dir",
            "hub",
        ])
        .json();
    assert!(both["copy"].is_string(), "{both}");
    for dir in ["one", "two"] {
        ws.ok(&["sync", "--dir", dir]);
    }
    for dir in ["hub", "one", "two"] {
        let bodies = ws.rows(dir, "SELECT body FROM note ORDER BY body");
        assert_eq!(
            bodies,
            vec![
                vec![serde_json::json!("one again")],
                vec![serde_json::json!("two again")]
            ],
            "{dir}"
        );
    }
}

#[test]
fn export_and_import_carry_changes_in_sealed_files() {
    let ws = Workspace::new();
    ws.hub("hub");
    ws.node("hub", "DESKTOP-1", "one");
    ws.ok(&[
        "sql",
        "INSERT INTO note(title) VALUES ('by hand')",
        "--dir",
        "one",
    ]);
    let exported = ws.ok(&["export", "stick", "--json", "--dir", "one"]).json();
    assert_eq!(exported["header"]["entity_count"], 1);
    let file = exported["files"][0].as_str().unwrap().to_owned();
    // A dry run says what would happen and changes nothing.
    let preview = ws
        .ok(&["import", &file, "--dry-run", "--json", "--dir", "hub"])
        .json();
    assert_eq!(
        preview["exports"][0]["inserts"].as_array().unwrap().len(),
        1
    );
    assert_eq!(count(&ws, "hub", "SELECT count(*) FROM note"), 0);
    let text = ws
        .ok(&["import", &file, "--dry-run", "--dir", "hub"])
        .stdout;
    assert!(text.contains("would insert 1"), "{text}");
    // The hub imports and writes its reply; the node imports the reply.
    let answered = ws
        .ok(&[
            "import",
            &file,
            "--reply-dir",
            "back",
            "--json",
            "--dir",
            "hub",
        ])
        .json();
    assert_eq!(answered["exports"][0]["imported"]["applied"], 1);
    assert_eq!(count(&ws, "hub", "SELECT count(*) FROM note"), 1);
    let reply = answered["exports"][0]["reply_files"][0]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        ws.ok(&["status", "--json", "--dir", "one"]).json()["peers"][0]["pending"],
        1
    );
    ws.ok(&["import", &reply, "--dir", "one"]);
    assert_eq!(
        ws.ok(&["status", "--json", "--dir", "one"]).json()["peers"][0]["pending"],
        0
    );
    // Importing the same file again changes nothing.
    let again = ws.ok(&["import", &reply, "--dir", "one"]).stdout;
    assert!(again.contains("imported before"), "{again}");
    // A damaged file is refused before anything is applied.
    let mut bytes = std::fs::read(ws.path(&file)).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(ws.path("damaged.syncpkt"), bytes).unwrap();
    let damaged = ws
        .run(&["import", "damaged.syncpkt", "--dir", "hub"])
        .failed();
    assert!(
        damaged.stderr.starts_with("error: importing"),
        "{}",
        damaged.stderr
    );
    // At the hub an export needs a recipient.
    let no_peer = ws.run(&["export", "stick", "--dir", "hub"]).failed();
    assert!(no_peer.stderr.contains("--to CODE"), "{}", no_peer.stderr);
    ws.ok(&["export", "stick", "--to", "DESKTOP-1", "--dir", "hub"]);
}

#[test]
fn export_of_selected_types_leaves_the_rest_queued() {
    let ws = Workspace::new();
    ws.hub("hub");
    ws.node("hub", "DESKTOP-1", "one");
    for dir in ["hub", "one"] {
        ws.ok(&[
            "sql",
            "CREATE TABLE item(id INTEGER PRIMARY KEY, name TEXT)",
            "--dir",
            dir,
        ]);
        ws.ok(&["track", "item", "--as", "Item", "--dir", dir]);
    }
    ws.ok(&[
        "sql",
        "INSERT INTO note(title) VALUES ('later'); INSERT INTO item(name) VALUES ('bolts')",
        "--dir",
        "one",
    ]);
    // A time that is not RFC 3339 is refused with a hint.
    let bad = ws
        .run(&["export", "stick", "--since", "yesterday", "--dir", "one"])
        .failed();
    assert!(bad.stderr.contains("RFC 3339"), "{}", bad.stderr);
    let exported = ws
        .ok(&[
            "export",
            "stick",
            "--types",
            "Item",
            "--since",
            "2000-01-01T00:00:00Z",
            "--json",
            "--dir",
            "one",
        ])
        .json();
    assert_eq!(exported["header"]["entity_count"], 1, "{exported}");
    let file = exported["files"][0].as_str().unwrap().to_owned();
    let answered = ws
        .ok(&[
            "import",
            &file,
            "--reply-dir",
            "back",
            "--json",
            "--dir",
            "hub",
        ])
        .json();
    assert_eq!(count(&ws, "hub", "SELECT count(*) FROM item"), 1);
    assert_eq!(count(&ws, "hub", "SELECT count(*) FROM note"), 0);
    let reply = answered["exports"][0]["reply_files"][0]
        .as_str()
        .unwrap()
        .to_owned();
    ws.ok(&["import", &reply, "--dir", "one"]);
    // The note was left out: it is still queued, and the next export
    // carries it.
    let pending =
        ws.ok(&["status", "--json", "--dir", "one"]).json()["peers"][0]["pending"].clone();
    assert!(pending.as_u64().unwrap() >= 1, "{pending}");
    let next = ws
        .ok(&["export", "stick2", "--json", "--dir", "one"])
        .json();
    let file = next["files"][0].as_str().unwrap().to_owned();
    ws.ok(&["import", &file, "--reply-dir", "back2", "--dir", "hub"]);
    assert_eq!(count(&ws, "hub", "SELECT count(*) FROM note"), 1);
    assert_eq!(count(&ws, "hub", "SELECT count(*) FROM item"), 1);
}

#[test]
fn demo_syncs_over_https_explains_the_conflict_and_cleans_up() {
    let ws = Workspace::new();
    let run = ws.ok(&["demo"]);
    let out = &run.stdout;
    for expected in [
        "serves HTTPS on https://127.0.0.1:",
        "DESKTOP-1 -> hub: packet #1 with 4 change(s)",
        "resolved it with server-wins, the default strategy",
        "The losing version (hours = 10) is not lost",
        "DESKTOP-1: the same rows as the hub",
        "DESKTOP-2: the same rows as the hub",
        "all three databases agree",
        "Cleaned up: removed",
    ] {
        assert!(
            out.contains(expected),
            "the demo did not say {expected:?}:\n{out}"
        );
    }
    let removed = out
        .lines()
        .last()
        .unwrap()
        .trim_start_matches("== Cleaned up: removed ");
    assert!(
        !std::path::Path::new(removed).exists(),
        "{removed} is still there"
    );
}

#[test]
fn rejected_changes_are_listed_retried_and_discarded() {
    let mut ws = Workspace::new();
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    ws.ok(&["hub", "init", "hub", "--listen", &listen]);
    // The hub's table refuses what the node's accepts.
    ws.ok(&[
        "sql",
        "CREATE TABLE item(id INTEGER PRIMARY KEY, name TEXT, qty INTEGER CHECK (qty >= 0))",
        "--dir",
        "hub",
    ]);
    ws.ok(&["track", "item", "--as", "Item", "--dir", "hub"]);
    let credentials = ws
        .ok(&["node", "add", "DESKTOP-1", "--json", "--dir", "hub"])
        .stdout;
    std::fs::write(ws.path("d1.json"), credentials).unwrap();
    ws.ok(&["init", "one", "--credentials", "d1.json"]);
    ws.ok(&[
        "sql",
        "CREATE TABLE item(id INTEGER PRIMARY KEY, name TEXT, qty INTEGER)",
        "--dir",
        "one",
    ]);
    ws.ok(&["track", "item", "--as", "Item", "--dir", "one"]);
    ws.serve("hub");
    ws.ok(&["sql", "INSERT INTO item(name, qty) VALUES ('bolts', -5); INSERT INTO item(name, qty) VALUES ('nuts', 3)", "--dir", "one"]);
    let report = ws.ok(&["sync", "--json", "--dir", "one"]).json();
    assert_eq!(report["complete"], true);
    // The good row went through; the bad one is quarantined at the hub.
    assert_eq!(
        ws.rows("hub", "SELECT name FROM item"),
        vec![vec![serde_json::json!("nuts")]]
    );
    let at_hub = ws
        .ok(&["rejected", "list", "--json", "--dir", "hub"])
        .json();
    let records = at_hub["rejected"].as_array().unwrap();
    assert_eq!(records.len(), 1, "{at_hub}");
    assert_eq!(records[0]["refused_by"], "here");
    assert_eq!(records[0]["peer"], "DESKTOP-1");
    assert_eq!(records[0]["version"]["data"]["qty"], -5);
    assert!(!records[0]["reason"].as_str().unwrap().is_empty());
    let id = records[0]["id"].as_str().unwrap().to_owned();
    let text = ws.ok(&["rejected", "list", "--dir", "hub"]).stdout;
    assert!(
        text.contains("this store refused the version DESKTOP-1 sent"),
        "{text}"
    );
    // Retrying without fixing the cause fails and keeps it listed.
    let again = ws.run(&["rejected", "retry", &id, "--dir", "hub"]).failed();
    assert!(
        again
            .stderr
            .starts_with("error: retrying the rejected change"),
        "{}",
        again.stderr
    );
    assert_eq!(
        ws.ok(&["rejected", "list", "--json", "--dir", "hub"])
            .json()["rejected"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Discarded, it moves to the entity's history.
    ws.ok(&["rejected", "discard", &id, "--dir", "hub"]);
    assert_eq!(
        ws.ok(&["rejected", "list", "--json", "--dir", "hub"])
            .json()["rejected"],
        serde_json::json!([])
    );
    let entity = records[0]["entity"].as_str().unwrap().replace(' ', "/");
    let history = ws
        .ok(&["history", &entity, "--json", "--dir", "hub"])
        .json();
    assert!(
        history["versions"][0]["resolution"]
            .as_str()
            .unwrap()
            .contains("discarded"),
        "{history}"
    );
    // The node was told, and keeps its side of the story.
    ws.ok(&["sync", "--dir", "one"]);
    let at_node = ws
        .ok(&["rejected", "list", "--json", "--dir", "one"])
        .json();
    assert_eq!(at_node["rejected"][0]["refused_by"], "peer", "{at_node}");
    // Retried on the node, the version is sent again: the hub refuses it
    // again, and lists it again.
    let node_id = at_node["rejected"][0]["id"].as_str().unwrap().to_owned();
    ws.ok(&["rejected", "retry", &node_id, "--dir", "one"]);
    assert_eq!(
        ws.ok(&["rejected", "list", "--json", "--dir", "one"])
            .json()["rejected"],
        serde_json::json!([])
    );
    let report = ws.ok(&["sync", "--json", "--dir", "one"]).json();
    assert_eq!(report["rejected"][0]["refused_by"], "hub", "{report}");
    assert_eq!(
        ws.ok(&["rejected", "list", "--json", "--dir", "hub"])
            .json()["rejected"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}
