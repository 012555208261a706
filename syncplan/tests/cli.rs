//! Every command of the real `syncplan` binary, against real SQLite files
//! and a real HTTPS hub on 127.0.0.1.

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
fn every_command_has_help_with_an_example() {
    let ws = Workspace::new();
    let commands: &[&[&str]] = &[
        &["hub", "init"],
        &["hub", "serve"],
        &["hub", "rotate-key"],
        &["node", "add"],
        &["node", "list"],
        &["node", "revoke"],
        &["node", "token"],
        &["set-token"],
        &["init"],
        &["track"],
        &["sql"],
        &["sync"],
        &["export"],
        &["import"],
        &["status"],
        &["conflicts", "list"],
        &["conflicts", "resolve"],
        &["rejected", "list"],
        &["rejected", "retry"],
        &["rejected", "discard"],
        &["history"],
        &["audit"],
        &["inspect"],
        &["demo"],
    ];
    for command in commands {
        let mut args = command.to_vec();
        args.push("--help");
        let help = ws.ok(&args).stdout;
        assert!(
            help.contains("Example"),
            "{command:?} --help has no example:\n{help}"
        );
    }
    let top = ws.ok(&["--help"]).stdout;
    for name in [
        "hub",
        "node",
        "init",
        "track",
        "sync",
        "export",
        "import",
        "status",
        "conflicts",
        "history",
        "audit",
        "inspect",
        "demo",
    ] {
        assert!(top.contains(name), "--help does not list {name}");
    }
}

#[test]
fn hub_init_makes_the_database_key_and_a_self_signed_certificate() {
    let ws = Workspace::new();
    let run = ws.ok(&[
        "hub",
        "init",
        "hub",
        "--code",
        "HQ",
        "--listen",
        "127.0.0.1:9443",
        "--json",
    ]);
    let json = run.json();
    assert_eq!(json["code"], "HQ");
    assert_eq!(json["url"], "https://127.0.0.1:9443");
    assert_eq!(json["self_signed"], true);
    let fingerprint = json["fingerprint"].as_str().unwrap();
    assert_eq!(fingerprint.len(), 64);
    for file in [
        "hub/hub.db",
        "hub/syncplan.json",
        "hub/tls/cert.pem",
        "hub/tls/key.pem",
    ] {
        assert!(ws.path(file).exists(), "{file} missing");
    }
    // The same directory cannot be set up twice.
    let again = ws.run(&["hub", "init", "hub"]).failed();
    assert!(
        again.stderr.contains("already holds a syncplan directory"),
        "{}",
        again.stderr
    );
    // A certificate from files is used as given, and not pinned.
    let run = ws.ok(&[
        "hub",
        "init",
        "other",
        "--cert",
        "hub/tls/cert.pem",
        "--key",
        "hub/tls/key.pem",
        "--json",
    ]);
    assert_eq!(run.json()["self_signed"], false);
    assert_eq!(run.json()["fingerprint"], fingerprint);
}

#[test]
fn node_add_prints_credentials_and_refuses_a_duplicate_code() {
    let ws = Workspace::new();
    ws.hub("hub");
    let json = ws
        .ok(&[
            "node",
            "add",
            "DESKTOP-1",
            "--name",
            "Site office",
            "--json",
            "--dir",
            "hub",
        ])
        .json();
    assert_eq!(json["node"]["code"], "DESKTOP-1");
    assert_eq!(json["node"]["name"], "Site office");
    assert!(json["token"].as_str().unwrap().len() > 20);
    assert!(!json["file_key"].as_str().unwrap().is_empty());
    assert_eq!(json["hub"]["fingerprint"].as_str().unwrap().len(), 64);
    let text = ws.ok(&["node", "add", "DESKTOP-2", "--dir", "hub"]).stdout;
    assert!(
        text.contains("token: ") && text.contains("file key: "),
        "{text}"
    );
    let duplicate = ws
        .run(&["node", "add", "DESKTOP-1", "--dir", "hub"])
        .failed();
    assert!(
        duplicate.stderr.contains("already registered"),
        "{}",
        duplicate.stderr
    );
}

#[test]
fn init_and_track_set_up_a_node() {
    let ws = Workspace::new();
    ws.hub("hub");
    let credentials = ws
        .ok(&["node", "add", "DESKTOP-1", "--json", "--dir", "hub"])
        .stdout;
    std::fs::write(ws.path("d1.json"), credentials).unwrap();
    let json = ws
        .ok(&["init", "one", "--credentials", "d1.json", "--json"])
        .json();
    assert_eq!(json["code"], "DESKTOP-1");
    assert!(ws.path("one/node.db").exists());
    ws.ok(&[
        "sql",
        "CREATE TABLE note(id INTEGER PRIMARY KEY, title TEXT, draft TEXT)",
        "--dir",
        "one",
    ]);
    let tracked = ws
        .ok(&[
            "track",
            "note",
            "--as",
            "Note",
            "--exclude",
            "draft",
            "--strategy",
            "last-writer-wins",
            "--json",
            "--dir",
            "one",
        ])
        .json();
    assert_eq!(tracked["entity_type"], "Note");
    assert_eq!(tracked["strategy"], "last-writer-wins");
    let draft = tracked["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "draft")
        .unwrap();
    assert_eq!(draft["excluded"], true);
    let status = ws.ok(&["status", "--json", "--dir", "one"]).json();
    assert_eq!(status["entity_types"], serde_json::json!(["Note"]));
    // A missing table is an error that says so.
    let missing = ws.run(&["track", "nope", "--dir", "one"]).failed();
    assert!(
        missing.stderr.starts_with("error: tracking the table nope"),
        "{}",
        missing.stderr
    );
}

#[test]
fn sql_runs_statements_and_prints_query_rows() {
    let ws = Workspace::new();
    ws.hub("hub");
    let run = ws.ok(&[
        "sql",
        "INSERT INTO note(title) VALUES ('a'); INSERT INTO note(title) VALUES ('b')",
        "--dir",
        "hub",
    ]);
    assert!(run.stdout.starts_with("ok"), "{}", run.stdout);
    let json = ws
        .ok(&[
            "sql",
            "SELECT title FROM note ORDER BY title",
            "--json",
            "--dir",
            "hub",
        ])
        .json();
    assert_eq!(json["columns"], serde_json::json!(["title"]));
    assert_eq!(json["rows"], serde_json::json!([["a"], ["b"]]));
    let bad = ws.run(&["sql", "SELEKT 1", "--dir", "hub"]).failed();
    assert!(bad.stderr.starts_with("error: "), "{}", bad.stderr);
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

#[test]
fn node_list_and_status_show_counters_and_pending_changes() {
    let ws = network();
    ws.ok(&[
        "sql",
        "INSERT INTO note(title) VALUES ('a')",
        "--dir",
        "one",
    ]);
    ws.ok(&["sync", "--dir", "one"]);
    let nodes = ws.ok(&["node", "list", "--json", "--dir", "hub"]).json();
    let rows = nodes["nodes"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    let one = rows.iter().find(|n| n["code"] == "DESKTOP-1").unwrap();
    let two = rows.iter().find(|n| n["code"] == "DESKTOP-2").unwrap();
    assert!(one["received_packet_no"].as_u64().unwrap() >= 1);
    assert!(one["last_sync_in"].is_string());
    assert_eq!(one["pending"], 0);
    // DESKTOP-2 has not synced: the note waits for it.
    assert_eq!(two["pending"], 1);
    assert!(two["last_sync_in"].is_null());
    assert!(
        two["oldest_unacknowledged"]["entity"]
            .as_str()
            .unwrap()
            .starts_with("Note ")
    );
    let table = ws.ok(&["node", "list", "--dir", "hub"]).stdout;
    assert!(
        table.contains("DESKTOP-2") && table.contains("never"),
        "{table}"
    );
    let status = ws.ok(&["status", "--json", "--dir", "hub"]).json();
    assert_eq!(status["role"], "hub");
    assert_eq!(status["peers"].as_array().unwrap().len(), 2);
    let text = ws.ok(&["status", "--dir", "one"]).stdout;
    assert!(text.contains("0 change(s) waiting"), "{text}");
}

#[test]
fn a_revoked_node_is_refused() {
    let ws = network();
    let revoked = ws
        .ok(&["node", "revoke", "DESKTOP-1", "--json", "--dir", "hub"])
        .json();
    assert_eq!(revoked["code"], "DESKTOP-1");
    ws.ok(&[
        "sql",
        "INSERT INTO note(title) VALUES ('late')",
        "--dir",
        "one",
    ]);
    let run = ws
        .run(&["sync", "--attempts", "1", "--dir", "one"])
        .failed();
    assert!(
        run.stderr.starts_with("error: sync failed"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("was revoked"), "{}", run.stderr);
    assert_eq!(count(&ws, "hub", "SELECT count(*) FROM note"), 0);
    let list = ws.ok(&["node", "list", "--json", "--dir", "hub"]).json();
    let one = list["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["code"] == "DESKTOP-1")
        .cloned()
        .unwrap();
    assert_eq!(one["revoked"], true);
}

#[test]
fn rotate_key_keeps_old_tokens_valid() {
    let mut ws = network();
    ws.ok(&["sync", "--dir", "one"]);
    ws.stop_servers();
    let rotated = ws
        .ok(&["hub", "rotate-key", "--json", "--dir", "hub"])
        .json();
    assert_eq!(
        rotated["key_id"],
        rotated["previous_key_id"].as_u64().unwrap() + 1
    );
    ws.serve("hub");
    ws.ok(&[
        "sql",
        "INSERT INTO note(title) VALUES ('after rotation')",
        "--dir",
        "one",
    ]);
    ws.ok(&["sync", "--dir", "one"]);
    assert_eq!(count(&ws, "hub", "SELECT count(*) FROM note"), 1);
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
fn inspect_prints_a_sealed_header_or_a_packet_as_json() {
    let ws = Workspace::new();
    ws.hub("hub");
    ws.node("hub", "DESKTOP-1", "one");
    ws.ok(&[
        "sql",
        "INSERT INTO note(title) VALUES ('look')",
        "--dir",
        "one",
    ]);
    let exported = ws.ok(&["export", "stick", "--json", "--dir", "one"]).json();
    let file = exported["files"][0].as_str().unwrap();
    let sealed = ws.ok(&["inspect", file]).json();
    assert_eq!(sealed["header"]["entity_count"], 1);
    assert_eq!(sealed["header"]["packet_no"], 1);
    assert_eq!(sealed["body"], "sealed");
    // A raw packet, as the engine builds it, shows its entities.
    std::fs::write(ws.path("packet.bin"), raw_packet()).unwrap();
    let packet = ws.ok(&["inspect", "packet.bin"]).json();
    assert_eq!(packet["header"]["packet_no"], 1);
    assert_eq!(packet["body"]["entities"][0]["type"], "Note");
    assert_eq!(packet["body"]["entities"][0]["operation"], "INSERT");
    assert_eq!(packet["body"]["entities"][0]["data"]["title"], "raw");
    std::fs::write(ws.path("junk.bin"), b"not a packet").unwrap();
    let junk = ws.run(&["inspect", "junk.bin"]).failed();
    assert!(
        junk.stderr
            .contains("neither a sealed syncplan file nor a packet"),
        "{}",
        junk.stderr
    );
}

fn raw_packet() -> Vec<u8> {
    use syncplan::{Engine, EngineConfig, EntityRegistry, EntityType, FieldKind, MemoryStore};
    use syncplan::{NodeId, NodeInfo, Record, Role, Timestamp, Uuid, Value};
    let registry =
        EntityRegistry::new().with(EntityType::new("Note").field("title", FieldKind::Text));
    let hub = NodeInfo::new(NodeId(Uuid::from_u128(1)), "HUB", "Hub", Role::Hub);
    let node = NodeInfo::new(NodeId(Uuid::from_u128(2)), "N", "N", Role::Node);
    let mut engine =
        Engine::new(MemoryStore::new(), registry, EngineConfig::default(), node).unwrap();
    engine.register_peer(hub.clone()).unwrap();
    let now = Timestamp::from_secs(1_765_535_400);
    engine
        .insert(
            "Note",
            Record::from([("title".into(), Value::from("raw"))]),
            now,
        )
        .unwrap();
    engine.build_packet(hub.id, now).unwrap().bytes.to_vec()
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
fn errors_are_one_message_with_causes_and_a_failing_exit_code() {
    let ws = Workspace::new();
    let run = ws.run(&["status", "--dir", "nowhere"]).failed();
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr
            .starts_with("error: nowhere is not a syncplan directory"),
        "{}",
        run.stderr
    );
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    std::fs::create_dir(ws.path("broken")).unwrap();
    std::fs::write(ws.path("broken/syncplan.json"), "{ not json").unwrap();
    let run = ws.run(&["status", "--dir", "broken"]).failed();
    assert!(
        run.stderr.contains("is damaged") && run.stderr.contains("because: "),
        "{}",
        run.stderr
    );
    // -v raises the log level: the session's spans show up on stderr.
    let mut ws = network();
    let quiet = ws.ok(&["sync", "--dir", "one"]);
    assert!(!quiet.stderr.contains("session ended"), "{}", quiet.stderr);
    let loud = ws.ok(&["-v", "sync", "--dir", "one"]);
    assert!(
        loud.stderr.contains("session ended") && loud.stderr.contains("sync_session"),
        "{}",
        loud.stderr
    );
    ws.stop_servers();
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

#[test]
fn a_fresh_token_replaces_a_lost_one() {
    let ws = network();
    // The node's token is lost (here: replaced by garbage): the hub refuses it.
    ws.ok(&["set-token", "not-a-real-token", "--dir", "one"]);
    let refused = ws
        .run(&["sync", "--attempts", "1", "--dir", "one"])
        .failed();
    assert!(refused.stderr.contains("401"), "{}", refused.stderr);
    let audit = ws.ok(&["audit", "--json", "--dir", "hub"]).json();
    assert!(!audit["security"].as_array().unwrap().is_empty(), "{audit}");
    // The hub issues a new one; the node keeps it and syncs again.
    let token = ws
        .ok(&["node", "token", "DESKTOP-1", "--json", "--dir", "hub"])
        .json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    ws.ok(&["set-token", &token, "--dir", "one"]);
    ws.ok(&[
        "sql",
        "INSERT INTO note(title) VALUES ('back in')",
        "--dir",
        "one",
    ]);
    ws.ok(&["sync", "--dir", "one"]);
    assert_eq!(count(&ws, "hub", "SELECT count(*) FROM note"), 1);
    let bad = ws.run(&["set-token", "two words", "--dir", "one"]).failed();
    assert!(bad.stderr.contains("not a token"), "{}", bad.stderr);
}
