//! Crash test: a child process (this test binary, re-executed) syncs a
//! SQLite node with a hub in the parent over loopback TCP and is killed with
//! SIGKILL at random moments, mostly while it applies packets. After every
//! kill the database must pass `PRAGMA integrity_check`, and its state must
//! be exactly the hub's state when it built the last packet the node
//! recorded: a packet is applied whole with its number, or not at all.
//! Finally sync resumes and converges.
//!
//! 100 trials by default; set `SYNCPLAN_KILL_TRIALS` for more.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::Rng;
use common::*;
use sync_core::{Engine, EngineConfig, EntityKey, Record, Store, StoreTxn, Timestamp};
use sync_store_memory::MemoryStore;
use sync_store_sqlite::{Durability, SqliteOptions, SqliteStore};

const CHILD_PORT: &str = "SYNCPLAN_CRASH_PORT";
const CHILD_DB: &str = "SYNCPLAN_CRASH_DB";
const CHILD_DURABILITY: &str = "SYNCPLAN_CRASH_NORMAL";

type State = Vec<(EntityKey, bool, Record)>;

fn write_frame(stream: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    stream.write_all(&(bytes.len() as u32).to_be_bytes())?;
    stream.write_all(bytes)
}

fn read_frame(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len)?;
    let mut bytes = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut bytes)?;
    Ok(bytes)
}

fn options(normal: bool) -> SqliteOptions {
    let durability = if normal {
        Durability::Normal
    } else {
        Durability::Full
    };
    SqliteOptions::default().durability(durability)
}

/// The child: syncs with the parent's hub until it is killed. Does nothing
/// when run as an ordinary test.
#[test]
fn crash_child_process() {
    let (Ok(port), Ok(db)) = (std::env::var(CHILD_PORT), std::env::var(CHILD_DB)) else {
        return;
    };
    let normal = std::env::var(CHILD_DURABILITY).is_ok();
    let store = SqliteStore::open(&db, options(normal)).unwrap();
    let registry = store.registry();
    let mut node = Engine::open(store, registry, EngineConfig::default().seed(77)).unwrap();
    let mut stream = TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap())).unwrap();
    for round in 0.. {
        let now = t(round);
        let packet = node.build_packet(hub_id(), now).unwrap();
        if write_frame(&mut stream, &packet.bytes).is_err() {
            return;
        }
        let Ok(reply) = read_frame(&mut stream) else {
            return;
        };
        // The marker tells the parent the kill landed inside the apply.
        let marker = format!("{db}.applying");
        std::fs::write(&marker, b"").unwrap();
        node.handle_incoming(&reply, now).unwrap();
        std::fs::remove_file(&marker).unwrap();
    }
}

/// Random hub writes: new reports and lines, edits, deletions (fewer once
/// the data set is large, so packets stay a size a node can apply between
/// kills).
fn hub_writes(hub: &mut Engine<MemoryStore>, rng: &mut Rng, now: Timestamp) {
    let stored = hub.store().entity_count() as u64;
    let writes = if stored > 1_500 {
        rng.below(4)
    } else {
        rng.below(40)
    };
    for _ in 0..writes {
        let reports: Vec<_> = {
            let txn = hub.store_mut().begin().unwrap();
            txn.entities("DailyReport", None, usize::MAX)
                .unwrap()
                .into_iter()
                .filter(|s| !s.entity.is_deleted)
                .map(|s| s.entity.key)
                .collect()
        };
        let pick = |rng: &mut Rng| reports[rng.below(reports.len() as u64) as usize].clone();
        match rng.below(10) {
            0..=2 => {
                hub.insert(
                    "DailyReport",
                    report_fields("2025-12-12", rng.below(12) as i64),
                    now,
                )
                .unwrap();
            }
            3..=6 if !reports.is_empty() => {
                let parent = pick(rng);
                hub.insert(
                    "DailyReportLine",
                    line_fields(parent.id, "work", rng.below(9) as f64),
                    now,
                )
                .unwrap();
            }
            7 | 8 if !reports.is_empty() => {
                hub.put(
                    pick(rng),
                    report_fields("2025-12-13", rng.below(12) as i64),
                    now,
                )
                .unwrap();
            }
            9 if !reports.is_empty() => hub.delete(pick(rng), now).unwrap(),
            _ => {}
        }
    }
}

fn state_of(store: &mut SqliteStore) -> State {
    let txn = store.begin().unwrap();
    let mut out = Vec::new();
    for ty in ["DailyReport", "DailyReportLine"] {
        for s in txn.entities(ty, None, usize::MAX).unwrap() {
            let mut fields = s.entity.fields;
            fields.remove("local_note");
            out.push((s.entity.key, s.entity.is_deleted, fields));
        }
    }
    out
}

fn integrity(path: &Path) -> String {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap()
}

/// One trial: run the child, kill it after `delay`, check the database.
fn trial(
    path: &Path,
    hub: &mut Engine<MemoryStore>,
    snapshots: &mut BTreeMap<u64, State>,
    rng: &mut Rng,
    normal: bool,
    now: &mut Timestamp,
) -> (u64, bool) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "crash_child_process",
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_PORT, port.to_string())
        .env(CHILD_DB, path)
        .envs(normal.then_some((CHILD_DURABILITY, "1")))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Half the kills aim at an apply: they wait for the child to start one,
    // then strike within a few milliseconds; the others strike at random,
    // and one trial in ten lets the node catch up for a while first.
    let targeted = rng.chance(50);
    let delay = if targeted {
        Duration::from_micros(rng.below(4_000))
    } else if rng.chance(10) {
        Duration::from_millis(300 + rng.below(300))
    } else {
        Duration::from_millis(5 + rng.below(120))
    };
    let marker = std::path::PathBuf::from(format!("{}.applying", path.display()));
    let killer = std::thread::spawn(move || {
        let start = std::time::Instant::now();
        while targeted && !marker.exists() && start.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_micros(100));
        }
        std::thread::sleep(delay);
        // SIGKILL: no chance to clean up.
        let _ = child.kill();
        child.wait().unwrap()
    });
    listener.set_nonblocking(false).unwrap();
    let accepted = accept_until_killed(&listener, &killer);
    if let Some(mut stream) = accepted {
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        while let Ok(request) = read_frame(&mut stream) {
            *now = now.add_millis(1);
            hub_writes(hub, rng, *now);
            let reply = hub.respond(&request, *now).unwrap();
            let sent = hub.peer(node_id(0)).unwrap().sent_packet_no;
            snapshots.insert(sent, common::state(hub));
            if write_frame(&mut stream, &reply).is_err() {
                break;
            }
        }
    }
    killer.join().unwrap();
    let marker = format!("{}.applying", path.display());
    let mid_apply = std::fs::remove_file(&marker).is_ok();
    assert_eq!(integrity(path), "ok", "integrity_check after a kill");
    let mut store = SqliteStore::open(path, options(normal)).unwrap();
    let received = store
        .begin()
        .unwrap()
        .peer(hub_id())
        .unwrap()
        .unwrap()
        .received_packet_no;
    let expected = snapshots.get(&received).cloned().unwrap_or_default();
    assert_eq!(
        state_of(&mut store),
        expected,
        "the node must hold exactly the hub's state as of packet {received}"
    );
    let leftovers: i64 = store
        .connection()
        .query_row(
            "SELECT (SELECT count(*) FROM _sync_capture) + (SELECT count(*) FROM _sync_applying)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(leftovers, 0, "no echo or apply flag survives a kill");
    assert_eq!(foreign_key_violations(&store), 0);
    snapshots.retain(|no, _| *no >= received);
    (received, mid_apply)
}

/// Accepts the child's connection, unless it dies first.
fn accept_until_killed(
    listener: &TcpListener,
    killer: &std::thread::JoinHandle<std::process::ExitStatus>,
) -> Option<TcpStream> {
    listener.set_nonblocking(true).unwrap();
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).unwrap();
                return Some(stream);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if killer.is_finished() {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("accept failed: {e}"),
        }
    }
}

#[test]
fn sigkill_during_apply_never_leaves_a_partial_packet() {
    let trials: usize = std::env::var("SYNCPLAN_KILL_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.db");
    let (store, registry) = file_sqlite(&path);
    let mut node = engine(store, registry.clone(), node_info(0), 77);
    let mut hub = memory_hub(registry.clone());
    connect(&mut hub, &mut [&mut node]);
    drop(node);
    let mut snapshots = BTreeMap::new();
    let mut rng = Rng(0x5eed_0001);
    let mut now = t(0);
    let mut progress = Vec::new();
    let mut mid_apply = 0;
    for i in 0..trials {
        let (received, during_apply) = trial(
            &path,
            &mut hub,
            &mut snapshots,
            &mut rng,
            i % 2 == 1,
            &mut now,
        );
        progress.push(received);
        mid_apply += usize::from(during_apply);
    }
    assert!(
        mid_apply > 0 || trials < 20,
        "no kill landed inside an apply"
    );
    let last = *progress.last().unwrap_or(&0);
    assert!(
        last > 0,
        "the node applied packets between kills: {progress:?}"
    );
    // Sync resumes and converges, both ways.
    let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    let mut node = Engine::open(store, registry, EngineConfig::default().seed(78)).unwrap();
    sql_report(node.store(), "2025-12-20", 3);
    let now = now.add_millis(1_000);
    settle(std::slice::from_mut(&mut node), &mut hub, now);
    assert_eq!(common::state(&mut node), common::state(&mut hub));
    assert!(integrity_ok(node.store()));
    println!(
        "{trials} kill trials, {mid_apply} of them inside an apply, all consistent; {last} packets applied in all"
    );
}
