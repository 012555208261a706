//! Crash test for export: a child process exports (multi-part, large
//! files) in a loop and is killed with SIGKILL at a random moment, 100
//! times. After each kill every file under a final name must verify, and
//! every export whose parts are all present must open whole.
//!
//! The child is this test binary run again with `--ignored --exact
//! export_child`; it only does work when the parent's environment variables
//! are set.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use sync_conformance::fixtures::{NOTE_SERVER_WINS, hub_id, hub_info, node_info, record, registry};
use sync_core::{ConflictStrategy, Engine, EngineConfig, Value};
use sync_store_memory::MemoryStore;
use sync_transport_file::{
    ExportOptions, PairKey, export, install_pair_key, open_files, verify_file,
};

const DIR_VAR: &str = "SYNC_FILE_CRASH_DIR";
const KEY_VAR: &str = "SYNC_FILE_CRASH_KEY";
const TRIALS: u64 = 100;
/// The child gives up after this long if nobody kills it.
const CHILD_LIFETIME: Duration = Duration::from_secs(20);

/// The child: writes a ready marker, then exports until killed (each
/// export is about 1.5 MB in parts of 128 KiB). Run on its own (without the
/// parent's variables) it exports three times into a temporary folder and
/// checks what it wrote.
#[test]
#[ignore = "the child of exports_killed_at_random_leave_no_bad_file_under_a_final_name"]
fn export_child() {
    match (std::env::var(DIR_VAR), std::env::var(KEY_VAR)) {
        (Ok(dir), Ok(key)) => {
            let key = PairKey::parse(&key).expect("key from the parent");
            export_loop(Path::new(&dir), &key, u64::MAX);
        }
        _ => {
            let dir = tempfile::tempdir().expect("dir");
            let mut w = World::new(1);
            let key = PairKey::parse(&w.printable[0]).expect("key");
            export_loop(dir.path(), &key, 3);
            let files = files_in(dir.path());
            assert_eq!(files.len() % 3, 0);
            assert_eq!(open_files(&mut w.hub, &files).expect("opens").len(), 3);
        }
    }
}

fn export_loop(dir: &Path, key: &PairKey, exports: u64) {
    let mut node = Engine::new(
        MemoryStore::new(),
        registry(ConflictStrategy::ServerWins),
        EngineConfig::default().seed(100),
        node_info(0),
    )
    .expect("node");
    node.register_peer(hub_info()).expect("hub");
    install_pair_key(&mut node, hub_id(), key).expect("install");
    for k in 0..3 {
        let data = sync_conformance::store_suite::values::noise(500_000, k);
        let fields = record([("title", "big".into()), ("data", Value::Bytes(data))]);
        node.insert(NOTE_SERVER_WINS, fields, t(0)).expect("insert");
    }
    let options = ExportOptions::default().max_file_bytes(128 * 1024);
    std::fs::write(dir.join("ready"), b"").expect("ready marker");
    let started = Instant::now();
    let mut n = 0;
    while n < exports && started.elapsed() < CHILD_LIFETIME {
        n += 1;
        export(&mut node, hub_id(), dir, &options, t(n as i64)).expect("export");
    }
}

/// A small deterministic generator for kill delays.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn exports_killed_at_random_leave_no_bad_file_under_a_final_name() {
    let mut w = World::new(1);
    let key = w.printable[0].clone();
    let exe = std::env::current_exe().expect("test binary");
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let (mut final_files, mut temp_left, mut complete_exports) = (0, 0, 0);
    for trial in 0..TRIALS {
        let dir = tempfile::tempdir().expect("dir");
        let mut child = Command::new(&exe)
            .args(["--ignored", "--exact", "export_child", "--test-threads=1"])
            .env(DIR_VAR, dir.path())
            .env(KEY_VAR, &key)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the child");
        let waited = Instant::now();
        while !dir.path().join("ready").exists() {
            assert!(
                waited.elapsed() < Duration::from_secs(30),
                "trial {trial}: the child never got ready"
            );
            assert!(
                child.try_wait().expect("child status").is_none(),
                "the child died"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_micros(next(&mut rng) % 60_000));
        child.kill().expect("SIGKILL the child");
        child.wait().expect("reap the child");

        let mut finals = Vec::new();
        for entry in std::fs::read_dir(dir.path()).expect("list") {
            let path = entry.expect("entry").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                temp_left += 1;
            } else if name.ends_with(".syncpkt") {
                verify_file(&mut w.hub, &path).unwrap_or_else(|e| {
                    panic!("trial {trial}: a file under its final name fails: {e}")
                });
                finals.push(path);
            }
        }
        final_files += finals.len();
        // Exports whose parts are all there open whole.
        let mut by_export = std::collections::BTreeMap::<String, Vec<_>>::new();
        for path in finals {
            let header = sync_transport_file::inspect(&path).expect("header");
            by_export
                .entry(header.export_id_hex())
                .or_default()
                .push((header, path));
        }
        for parts in by_export.into_values() {
            if parts.len() == parts[0].0.parts as usize {
                let files: Vec<_> = parts.into_iter().map(|(_, p)| p).collect();
                let opened = open_files(&mut w.hub, &files).expect("a complete export opens");
                assert_eq!(opened.len(), 1);
                complete_exports += 1;
            }
        }
    }
    eprintln!(
        "{TRIALS} kills: {final_files} files under final names all verified, {complete_exports} complete exports opened, {temp_left} temporary files left by kills mid-write"
    );
    assert!(
        temp_left > 0,
        "no kill landed mid-write: the test proved nothing"
    );
    assert!(
        final_files > 0,
        "no export finished a part: the test proved nothing"
    );
}
