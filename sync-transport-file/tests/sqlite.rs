//! A hub on SQLite: its pair keys survive a restart, a dry run leaves the
//! database as it was (the preview's transactions are rolled back by
//! SQLite itself), and the import then does what the preview said.

mod common;

use common::*;
use sync_conformance::fixtures::{NOTE_SERVER_WINS, hub_id, hub_info, node_info, registry};
use sync_conformance::harness::synced_state;
use sync_core::{ConflictStrategy, Engine, EngineConfig, EntityKey, PeerState};
use sync_store_sqlite::{SqliteOptions, SqliteStore};
use sync_transport_file::{
    ExportOptions, PairKey, create_pair_key, dry_run, export, import, install_pair_key, pair_key,
};

type SqliteEngine = Engine<SqliteStore>;

fn open_hub(path: &std::path::Path) -> SqliteEngine {
    let store = SqliteStore::open(path, SqliteOptions::default()).expect("open SQLite");
    Engine::new(
        store,
        registry(ConflictStrategy::ServerWins),
        EngineConfig::default().seed(1),
        hub_info(),
    )
    .expect("hub")
}

/// What a dry run must leave alone, read from the database.
fn state(hub: &mut SqliteEngine) -> (Vec<sync_core::Entity>, Vec<PeerState>, usize, usize) {
    (
        synced_state(hub).expect("state"),
        hub.peers().expect("peers"),
        hub.audit_log().expect("audit").len(),
        hub.security_events().expect("security").len(),
    )
}

#[test]
fn a_sqlite_hub_keeps_its_keys_and_a_dry_run_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hub.db");
    let stick = tempfile::tempdir().unwrap();
    let mut hub = open_hub(&db);
    hub.register_peer(node_info(0)).unwrap();
    let key = create_pair_key(&mut hub, node_id(0)).unwrap();
    let mut node = Engine::new(
        sync_store_memory::MemoryStore::new(),
        registry(ConflictStrategy::ServerWins),
        EngineConfig::default().seed(100),
        node_info(0),
    )
    .unwrap();
    node.register_peer(hub_info()).unwrap();
    let handed_over = PairKey::parse(&key.expose_printable()).unwrap();
    install_pair_key(&mut node, hub_id(), &handed_over).unwrap();

    // A shared note, then concurrent edits and a new note.
    let shared = hub.insert(NOTE_SERVER_WINS, note("shared"), t(0)).unwrap();
    let shared = EntityKey::new(NOTE_SERVER_WINS, shared);
    let options = ExportOptions::default();
    let first = export(&mut hub, node_id(0), stick.path(), &options, t(1)).unwrap();
    import(&mut node, &first.files, t(2)).unwrap();
    node.put(shared.clone(), note("node edit"), t(3)).unwrap();
    hub.put(shared.clone(), note("hub edit"), t(3)).unwrap();
    let new = insert_note(&mut node, "new", t(3));
    let exported = export(&mut node, hub_id(), stick.path(), &options, t(4)).unwrap();

    // Restart the hub: the key is in the database.
    drop(hub);
    let mut hub = Engine::open(
        SqliteStore::open(&db, SqliteOptions::default()).unwrap(),
        registry(ConflictStrategy::ServerWins),
        EngineConfig::default().seed(1),
    )
    .unwrap();
    let stored = pair_key(&mut hub, node_id(0)).unwrap().expect("key kept");
    assert_eq!(stored.key_id(), key.key_id());

    let before = state(&mut hub);
    let preview = dry_run(&mut hub, &exported.files, t(5)).unwrap().remove(0);
    assert_eq!(state(&mut hub), before, "the dry run changed the database");
    assert_eq!(preview.inserts, vec![EntityKey::new(NOTE_SERVER_WINS, new)]);
    assert_eq!(preview.conflicts.len(), 1);
    assert_eq!(preview.conflicts[0].key, shared);

    let imported = import(&mut hub, &exported.files, t(5)).unwrap();
    // The new note is applied; the conflict is resolved (the hub wins).
    assert_eq!((imported[0].applied, imported[0].conflicts), (1, 1));
    assert_eq!(hub.audit_log().unwrap().len(), before.2 + 1);
    assert!(
        hub.get(&EntityKey::new(NOTE_SERVER_WINS, new))
            .unwrap()
            .is_some()
    );
}
