//! The real `syncplan` binary, part 1: setting up hubs and nodes, plain
//! SQL, status, tokens, inspection and errors, against real SQLite files
//! and a real HTTPS hub on 127.0.0.1 (part 2 is `cli_sync.rs`).

mod common;

use common::Workspace;

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
        &["hub", "migrate"],
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
        &["bench"],
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

/// `syncplan bench` prints every figure issue 15 asks for, one `key=value`
/// line each, in-process and over HTTPS (a few changes: the figures of a
/// debug build mean nothing, the lines and the run do).
#[test]
fn bench_prints_every_figure() {
    let ws = Workspace::new();
    for transport in ["in-process", "https"] {
        let run = ws.ok(&[
            "bench",
            "--changes",
            "300",
            "--idle",
            "5",
            "--transport",
            transport,
        ]);
        for key in [
            "e2e_changes_per_s",
            "ratio_vs_sqlite_upsert",
            "first_sync_entities_per_s",
            "capture_insert_x",
            "capture_update_x",
            "apply_x",
            "idle_exchange_p99_us",
            "wire_vs_gzip_json",
            "peak_rss_mb",
        ] {
            let line = run
                .stdout
                .lines()
                .find(|l| l.starts_with(&format!("{key}=")))
                .unwrap_or_else(|| panic!("no {key}= line ({transport}):\n{}", run.stdout));
            let value: f64 = line[key.len() + 1..]
                .parse()
                .unwrap_or_else(|_| panic!("{line} is not a number"));
            assert!(value.is_finite() && value >= 0.0, "{line}");
        }
        assert!(run.stdout.contains(&format!("transport={transport}")));
    }
}
