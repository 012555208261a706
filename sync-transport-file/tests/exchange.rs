//! Syncing through files only: export, answer, import, acknowledgements,
//! duplicates, parts, dry run, header inspection, folder mode with real
//! engines, and the pair-key API.

mod common;

use common::*;
use sync_conformance::fixtures::{NOTE_SERVER_WINS, hub_id, record};
use sync_conformance::net::synced_state;
use sync_core::{ConflictSide, ConflictStrategy, EntityKey, Transport, Value};
use sync_transport_file::{
    ExportOptions, FileKind, FileRejection, FolderEndpoint, FolderOptions, FolderPaths,
    FolderTransport, KeyError, PairKey, answer, create_pair_key, dry_run, export, import, inspect,
    install_pair_key, pair_key, paired_peers, remove_pair_key, serve_folder,
};

/// One round for node `i`: it exports, the hub answers, it imports the reply.
fn round(w: &mut World, i: usize, now: sync_core::Timestamp) -> (usize, usize) {
    let stick = tempfile::tempdir().expect("dir");
    let exported = w.node_export(i, stick.path(), now);
    let answers = answer(
        &mut w.hub,
        &exported.files,
        stick.path(),
        &ExportOptions::default(),
        now,
    )
    .expect("hub answers");
    assert_eq!(answers.len(), 1);
    let answered = &answers[0];
    assert!(answered.refusal.is_none(), "{:?}", answered.refusal);
    let hub_applied = answered.imported.as_ref().expect("imported").applied;
    let imported = import(&mut w.nodes[i], &answered.reply_files, now).expect("node imports");
    (hub_applied, imported[0].applied)
}

#[test]
fn a_hub_and_two_nodes_sync_only_through_files() {
    let mut w = World::new(2);
    for i in 0..2 {
        for k in 0..3 {
            insert_note(&mut w.nodes[i], &format!("{i}-{k}"), t(k));
        }
    }
    // Node 0 sends its three; the reply acknowledges them.
    assert_eq!(round(&mut w, 0, t(10)), (3, 0));
    assert_eq!(w.nodes[0].pending_count(hub_id()).unwrap(), 0);
    // Node 1 sends its three and gets node 0's in the reply.
    assert_eq!(round(&mut w, 1, t(11)), (3, 3));
    assert_eq!(w.nodes[1].pending_count(hub_id()).unwrap(), 0);
    // The hub learns from node 1's next packet that the reply arrived.
    assert_eq!(w.hub.pending_count(node_id(1)).unwrap(), 3);
    assert_eq!(round(&mut w, 1, t(12)), (0, 0));
    assert_eq!(w.hub.pending_count(node_id(1)).unwrap(), 0);
    // Node 0 gets node 1's; then acknowledges them.
    assert_eq!(round(&mut w, 0, t(13)), (0, 3));
    round(&mut w, 0, t(14));
    assert_eq!(w.hub.pending_count(node_id(0)).unwrap(), 0);

    let hub_state = synced_state(&mut w.hub).unwrap();
    assert_eq!(hub_state.len(), 6);
    for node in &mut w.nodes {
        assert_eq!(synced_state(node).unwrap(), hub_state);
    }
}

#[test]
fn exported_changes_stay_pending_until_a_reply_acknowledges_them() {
    let mut w = World::new(1);
    insert_note(&mut w.nodes[0], "carried", t(0));
    let stick = tempfile::tempdir().unwrap();
    let first = w.node_export(0, stick.path(), t(1));
    assert_eq!(w.nodes[0].pending_count(hub_id()).unwrap(), 1);
    // The stick was lost: exporting again carries the change again.
    let second = w.node_export(0, stick.path(), t(2));
    assert_eq!(second.header.packet_no, first.header.packet_no + 1);
    assert_eq!(second.header.entity_count, 1);
    let answers = answer(
        &mut w.hub,
        &second.files,
        stick.path(),
        &ExportOptions::default(),
        t(3),
    )
    .unwrap();
    assert_eq!(w.nodes[0].pending_count(hub_id()).unwrap(), 1);
    import(&mut w.nodes[0], &answers[0].reply_files, t(4)).unwrap();
    assert_eq!(w.nodes[0].pending_count(hub_id()).unwrap(), 0);
}

#[test]
fn a_duplicate_or_older_file_changes_nothing_and_is_acknowledged_again() {
    let mut w = World::new(1);
    insert_note(&mut w.nodes[0], "once", t(0));
    let stick = tempfile::tempdir().unwrap();
    let older = w.node_export(0, stick.path(), t(1));
    let newer = w.node_export(0, stick.path(), t(2));
    let options = ExportOptions::default();
    let first = answer(&mut w.hub, &newer.files, stick.path(), &options, t(3)).unwrap();
    assert_eq!(first[0].imported.as_ref().unwrap().applied, 1);
    let before = snapshot(&mut w.hub);
    for files in [&newer.files, &older.files] {
        let again = answer(&mut w.hub, files, stick.path(), &options, t(4)).unwrap();
        let imported = again[0].imported.as_ref().unwrap();
        assert!(imported.duplicate);
        assert_eq!(imported.applied, 0);
        // Acknowledged again: the reply carries the newest packet's number.
        let reply = inspect(&again[0].reply_files[0]).unwrap();
        assert_eq!(reply.ack, newer.header.packet_no);
        assert_eq!(snapshot(&mut w.hub).entities, before.entities);
    }
    // A node importing a reply twice: the second is a duplicate.
    let reply_files = first[0].reply_files.clone();
    assert!(!import(&mut w.nodes[0], &reply_files, t(5)).unwrap()[0].duplicate);
    let node_before = snapshot(&mut w.nodes[0]);
    assert!(import(&mut w.nodes[0], &reply_files, t(6)).unwrap()[0].duplicate);
    assert_eq!(snapshot(&mut w.nodes[0]), node_before);
}

#[test]
fn the_header_is_readable_without_the_key() {
    let mut w = World::new(1);
    insert_note(&mut w.nodes[0], "a", t(0));
    insert_note(&mut w.nodes[0], "b", t(0));
    let stick = tempfile::tempdir().unwrap();
    let exported = w.node_export(0, stick.path(), t(1));
    let header = inspect(&exported.files[0]).unwrap();
    assert_eq!(header, exported.header);
    assert_eq!(header.kind, FileKind::Packet);
    assert_eq!((header.sender, header.recipient), (node_id(0), hub_id()));
    assert_eq!(
        (header.packet_no, header.ack, header.entity_count),
        (1, 0, 2)
    );
    assert_eq!(header.schema_version, "1.0.0");
    let text = std::fs::read(&exported.files[0]).unwrap();
    let start = String::from_utf8_lossy(&text[..200]);
    assert!(
        start.starts_with("SYNCPLAN-FILE 1\nkind: packet\n"),
        "{start}"
    );
    assert!(start.contains(&format!("sender: {}", node_id(0))));
}

#[test]
fn a_large_packet_is_split_into_parts_that_import_in_any_order() {
    let mut w = World::new(1);
    let data = sync_conformance::store_suite::values::noise(40_000, 3);
    let fields = record([
        ("title", "big".into()),
        ("data", Value::Bytes(data.clone())),
    ]);
    let id = w.nodes[0].insert(NOTE_SERVER_WINS, fields, t(0)).unwrap();
    let stick = tempfile::tempdir().unwrap();
    let options = ExportOptions::default().max_file_bytes(8 * 1024);
    let exported = export(&mut w.nodes[0], hub_id(), stick.path(), &options, t(1)).unwrap();
    let parts = exported.files.len();
    assert!(parts >= 5, "{parts} parts");
    for file in &exported.files {
        assert!(std::fs::metadata(file).unwrap().len() <= 8 * 1024);
        assert_eq!(inspect(file).unwrap().parts as usize, parts);
    }
    // Missing one part: refused, nothing applied.
    let before = snapshot(&mut w.hub);
    let error = import(&mut w.hub, &exported.files[1..], t(2)).unwrap_err();
    assert!(matches!(
        error.rejection(),
        Some(FileRejection::MissingParts { missing, .. }) if missing == &vec![1]
    ));
    assert_eq!(snapshot(&mut w.hub), before);
    // Every part, in reverse order.
    let mut reversed = exported.files.clone();
    reversed.reverse();
    let imported = import(&mut w.hub, &reversed, t(2)).unwrap();
    assert_eq!(imported.len(), 1);
    assert_eq!(imported[0].applied, 1);
    let on_hub = w.hub.get(&EntityKey::new(NOTE_SERVER_WINS, id)).unwrap();
    assert_eq!(on_hub.unwrap().fields["data"], Value::Bytes(data));
}

#[test]
fn several_exports_import_in_packet_order() {
    let mut w = World::new(1);
    let stick = tempfile::tempdir().unwrap();
    let id = insert_note(&mut w.hub, "v1", t(0));
    let key = EntityKey::new(NOTE_SERVER_WINS, id);
    let first = w.hub_export(0, stick.path(), t(1));
    w.hub.put(key.clone(), note("v2"), t(2)).unwrap();
    let second = w.hub_export(0, stick.path(), t(3));
    let mut files = second.files.clone();
    files.extend(first.files.clone());
    let imported = import(&mut w.nodes[0], &files, t(4)).unwrap();
    let numbers: Vec<u64> = imported.iter().map(|i| i.header.packet_no).collect();
    assert_eq!(numbers, vec![1, 2]);
    let on_node = w.nodes[0].get(&key).unwrap().unwrap();
    assert_eq!(on_node.fields["title"], Value::from("v2"));
}

#[test]
fn a_dry_run_reports_inserts_updates_deletes_and_conflicts_without_changing_anything() {
    let mut w = World::with(1, ConflictStrategy::ServerWins, |c| c);
    let stick = tempfile::tempdir().unwrap();
    // Three entities both sides hold.
    let ids: Vec<_> = (0..3)
        .map(|k| insert_note(&mut w.hub, &format!("shared {k}"), t(0)))
        .collect();
    let exported = w.hub_export(0, stick.path(), t(1));
    let answers = answer(
        &mut w.nodes[0],
        &exported.files,
        stick.path(),
        &ExportOptions::default(),
        t(2),
    )
    .unwrap();
    import(&mut w.hub, &answers[0].reply_files, t(3)).unwrap();
    let keys: Vec<EntityKey> = ids
        .iter()
        .map(|id| EntityKey::new(NOTE_SERVER_WINS, *id))
        .collect();
    // The node updates one, deletes one, inserts one, and edits the third
    // while the hub edits it too (a conflict).
    w.nodes[0]
        .put(keys[0].clone(), note("node edit"), t(4))
        .unwrap();
    w.nodes[0].delete(keys[1].clone(), t(4)).unwrap();
    let new_id = insert_note(&mut w.nodes[0], "new on node", t(4));
    w.nodes[0]
        .put(keys[2].clone(), note("node side"), t(4))
        .unwrap();
    w.hub.put(keys[2].clone(), note("hub side"), t(4)).unwrap();

    let exported = w.node_export(0, stick.path(), t(5));
    let before = snapshot(&mut w.hub);
    let security_before = w.hub.security_events().unwrap().len();
    let previews = dry_run(&mut w.hub, &exported.files, t(6)).unwrap();
    assert_eq!(snapshot(&mut w.hub), before, "a dry run changes nothing");
    assert_eq!(w.hub.security_events().unwrap().len(), security_before);
    assert_eq!(w.hub.audit_log().unwrap().len(), 0);

    let preview = &previews[0];
    assert!(!preview.duplicate);
    assert!(preview.refusal.is_none());
    assert_eq!(
        preview.inserts,
        vec![EntityKey::new(NOTE_SERVER_WINS, new_id)]
    );
    assert_eq!(preview.updates, vec![keys[0].clone()]);
    assert_eq!(preview.deletes, vec![keys[1].clone()]);
    assert_eq!(preview.conflicts.len(), 1);
    assert_eq!(preview.conflicts[0].key, keys[2]);
    assert_eq!(preview.conflicts[0].winner, ConflictSide::Local);
    assert!(!preview.conflicts[0].needs_person);

    // The real import does what the preview said.
    let imported = import(&mut w.hub, &exported.files, t(6)).unwrap();
    assert_eq!(imported[0].conflicts, 1);
    assert_eq!(w.hub.audit_log().unwrap().len(), 1);
    assert!(w.hub.get(&keys[1]).unwrap().unwrap().is_deleted);
    let hub_side = w.hub.get(&keys[2]).unwrap().unwrap();
    assert_eq!(hub_side.fields["title"], Value::from("hub side"));
    // Previewing it again: a duplicate, nothing would change.
    let again = dry_run(&mut w.hub, &exported.files, t(7)).unwrap();
    assert!(again[0].duplicate);
    assert!(again[0].inserts.is_empty() && again[0].conflicts.is_empty());
}

#[test]
fn a_dry_run_reports_a_refusal() {
    let mut w = World::new(1);
    let stick = tempfile::tempdir().unwrap();
    insert_note(&mut w.nodes[0], "from a revoked node", t(0));
    let exported = w.node_export(0, stick.path(), t(1));
    w.hub.revoke_peer(node_id(0)).unwrap();
    let previews = dry_run(&mut w.hub, &exported.files, t(2)).unwrap();
    assert!(previews[0].refusal.is_some());
    assert!(previews[0].inserts.is_empty());
    assert_eq!(w.hub.store().entity_count(), 0);
}

#[test]
fn folder_mode_carries_packets_between_real_engines() {
    let mut w = World::new(1);
    let shared = tempfile::tempdir().unwrap();
    let paths = FolderPaths::shared(shared.path(), node_id(0), hub_id());
    let transport = FolderTransport::for_peer(
        &mut w.nodes[0],
        hub_id(),
        paths.clone(),
        FolderOptions::default(),
    )
    .unwrap();
    let hub_side = FolderEndpoint::for_peer(
        &mut w.hub,
        node_id(0),
        paths.reversed(),
        FolderOptions::default(),
    )
    .unwrap();
    insert_note(&mut w.nodes[0], "through the folder", t(0));
    insert_note(&mut w.hub, "from the hub", t(0));

    // The driver's loop, with the hub serving the folder between exchanges.
    w.nodes[0].start_sync(hub_id()).unwrap();
    let mut exchanges = 0;
    let mut pending_replies = Vec::new();
    while let Some(packet) = w.nodes[0].poll_transmit(t(1)).unwrap() {
        exchanges += 1;
        assert!(exchanges < 20);
        // Air-gapped: the first exchange finds nothing yet.
        let replies = futures_executor::block_on(transport.exchange(packet.bytes)).unwrap();
        pending_replies.extend(replies);
        assert_eq!(
            serve_folder(&mut w.hub, &hub_side, t(1)).unwrap().answered,
            1
        );
        if pending_replies.is_empty() {
            pending_replies = transport
                .endpoint()
                .receive()
                .unwrap()
                .into_iter()
                .map(|r| r.envelope)
                .collect();
        }
        for reply in pending_replies.drain(..) {
            w.nodes[0].handle_incoming(&reply, t(1)).unwrap();
        }
    }
    assert_eq!(w.nodes[0].pending_count(hub_id()).unwrap(), 0);
    assert_eq!(
        synced_state(&mut w.nodes[0]).unwrap(),
        synced_state(&mut w.hub).unwrap()
    );
    assert!(transport.endpoint().take_rejections().is_empty());
}

#[test]
fn a_tampered_file_in_a_folder_is_set_aside_and_answered_with_a_refusal() {
    let mut w = World::new(1);
    let shared = tempfile::tempdir().unwrap();
    let paths = FolderPaths::shared(shared.path(), node_id(0), hub_id());
    let node_side = FolderEndpoint::for_peer(
        &mut w.nodes[0],
        hub_id(),
        paths.clone(),
        FolderOptions::default(),
    )
    .unwrap();
    let hub_side = FolderEndpoint::for_peer(
        &mut w.hub,
        node_id(0),
        paths.reversed(),
        FolderOptions::default(),
    )
    .unwrap();
    insert_note(&mut w.nodes[0], "x", t(0));
    w.nodes[0].start_sync(hub_id()).unwrap();
    let packet = w.nodes[0].poll_transmit(t(0)).unwrap().unwrap();
    let files = node_side.send(&packet.bytes).unwrap();
    let mut bytes = std::fs::read(&files[0]).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&files[0], bytes).unwrap();

    let served = serve_folder(&mut w.hub, &hub_side, t(1)).unwrap();
    assert_eq!(served.answered, 0);
    assert_eq!(w.hub.store().entity_count(), 0);
    let rejected = served.rejected;
    assert_eq!(rejected.len(), 1);
    assert!(matches!(
        rejected[0].rejection(),
        Some(FileRejection::Tampered { .. })
    ));
    let aside = paths.outbox.join(sync_transport_file::REJECTED_DIR);
    assert_eq!(files_in(&aside).len(), 1);
    // The node is told to send again; its next packet gets through.
    let replies = node_side.receive().unwrap();
    assert_eq!(replies[0].header.kind, FileKind::Refusal);
    let refusal = w.nodes[0].handle_incoming(&replies[0].envelope, t(1));
    assert!(refusal.is_err_and(|e| e.is_retryable()));
    let again = w.nodes[0].build_packet(hub_id(), t(2)).unwrap();
    node_side.send(&again.bytes).unwrap();
    let served = serve_folder(&mut w.hub, &hub_side, t(2)).unwrap();
    assert_eq!((served.answered, served.rejected.len()), (1, 0));
    assert_eq!(w.hub.store().entity_count(), 1);
}

#[test]
fn pair_keys_are_created_once_installed_once_and_never_shown() {
    let mut w = World::new(1);
    // Created at registration: a second create refuses.
    assert!(matches!(
        create_pair_key(&mut w.hub, node_id(0)),
        Err(KeyError::Exists { .. })
    ));
    // An unregistered peer has no key to create.
    assert!(matches!(
        create_pair_key(&mut w.hub, node_id(9)),
        Err(KeyError::UnknownPeer { .. })
    ));
    // Installing the same key again is fine; another one is refused.
    let same = PairKey::parse(&w.printable[0]).unwrap();
    install_pair_key(&mut w.nodes[0], hub_id(), &same).unwrap();
    let other = PairKey::generate().unwrap();
    assert!(matches!(
        install_pair_key(&mut w.nodes[0], hub_id(), &other),
        Err(KeyError::Exists { .. })
    ));
    assert_eq!(
        paired_peers(&mut w.hub).unwrap(),
        vec![(node_id(0), same.key_id())]
    );
    assert!(!format!("{same:?}").contains(&w.printable[0][5..69]));

    // The key is in no file.
    let secret_hex = &w.printable[0][5..69].to_owned();
    insert_note(&mut w.nodes[0], "secret?", t(0));
    let stick = tempfile::tempdir().unwrap();
    let exported = w.node_export(0, stick.path(), t(1));
    let bytes = std::fs::read(&exported.files[0]).unwrap();
    let secret = (0..32)
        .map(|i| u8::from_str_radix(&secret_hex[2 * i..2 * i + 2], 16).unwrap())
        .collect::<Vec<u8>>();
    assert!(!bytes.windows(32).any(|w| w == secret.as_slice()));
    assert!(!String::from_utf8_lossy(&bytes).contains(secret_hex));

    // Removed: exports and imports say the key is missing.
    assert!(remove_pair_key(&mut w.nodes[0], hub_id()).unwrap());
    assert!(pair_key(&mut w.nodes[0], hub_id()).unwrap().is_none());
    let error = export(
        &mut w.nodes[0],
        hub_id(),
        stick.path(),
        &ExportOptions::default(),
        t(2),
    )
    .unwrap_err();
    assert!(matches!(
        error,
        sync_transport_file::FileError::NoPairKey { .. }
    ));
}

#[test]
fn a_dry_run_names_a_conflict_left_to_a_person() {
    use sync_conformance::fixtures::NOTE_MANUAL;
    let mut w = World::new(1);
    let stick = tempfile::tempdir().unwrap();
    let id = w.hub.insert(NOTE_MANUAL, note("base"), t(0)).unwrap();
    let key = EntityKey::new(NOTE_MANUAL, id);
    let exported = w.hub_export(0, stick.path(), t(1));
    import(&mut w.nodes[0], &exported.files, t(2)).unwrap();
    w.nodes[0].put(key.clone(), note("node"), t(3)).unwrap();
    w.hub.put(key.clone(), note("hub"), t(3)).unwrap();
    let exported = w.node_export(0, stick.path(), t(4));

    let before = snapshot(&mut w.hub);
    let preview = dry_run(&mut w.hub, &exported.files, t(5))
        .unwrap()
        .remove(0);
    assert_eq!(snapshot(&mut w.hub), before);
    assert_eq!(preview.conflicts.len(), 1);
    assert!(preview.conflicts[0].needs_person);
    assert_eq!(preview.conflicts[0].strategy, "manual");
    assert!(preview.updates.is_empty());

    import(&mut w.hub, &exported.files, t(5)).unwrap();
    assert_eq!(w.hub.open_conflicts().unwrap().len(), 1);
}

#[test]
fn a_newer_packet_supersedes_older_ones_nobody_collected() {
    let mut w = World::new(1);
    let shared = tempfile::tempdir().unwrap();
    let paths = FolderPaths::shared(shared.path(), node_id(0), hub_id());
    let small_parts =
        FolderOptions::default().export(ExportOptions::default().max_file_bytes(4096));
    let transport = FolderTransport::for_peer(
        &mut w.nodes[0],
        hub_id(),
        paths.clone(),
        small_parts.clone(),
    )
    .unwrap();
    let keeping = FolderEndpoint::for_peer(
        &mut w.nodes[0],
        hub_id(),
        FolderPaths::per_peer(shared.path(), hub_id()),
        small_parts.supersede_unsent(false),
    )
    .unwrap();
    let hub_side = FolderEndpoint::for_peer(
        &mut w.hub,
        node_id(0),
        paths.reversed(),
        FolderOptions::default(),
    )
    .unwrap();
    // Three retries while nobody collects: one packet (in parts) is left.
    w.nodes[0].start_sync(hub_id()).unwrap();
    for k in 0..3 {
        let data = sync_conformance::store_suite::values::noise(6_000, k);
        let fields = record([("title", "big".into()), ("data", Value::Bytes(data))]);
        w.nodes[0].insert(NOTE_SERVER_WINS, fields, t(0)).unwrap();
        let packet = w.nodes[0].build_packet(hub_id(), t(k as i64)).unwrap();
        keeping.send(&packet.bytes).unwrap();
        let replies = futures_executor::block_on(transport.exchange(packet.bytes)).unwrap();
        assert!(replies.is_empty(), "nobody answered yet");
    }
    let left: Vec<_> = files_in(&paths.outbox)
        .iter()
        .map(|f| inspect(f).unwrap().packet_no)
        .collect();
    assert!(left.len() > 1 && left.iter().all(|&n| n == 3), "{left:?}");
    let kept = files_in(&FolderPaths::per_peer(shared.path(), hub_id()).outbox);
    let mut numbers: Vec<u64> = kept.iter().map(|f| inspect(f).unwrap().packet_no).collect();
    numbers.dedup();
    assert_eq!(
        numbers,
        vec![1, 2, 3],
        "without superseding every packet stays"
    );

    // The newest packet carries all three changes.
    assert_eq!(
        serve_folder(&mut w.hub, &hub_side, t(5)).unwrap().answered,
        1
    );
    assert_eq!(w.hub.store().entity_count(), 3);
    for reply in transport.endpoint().receive().unwrap() {
        w.nodes[0].handle_incoming(&reply.envelope, t(5)).unwrap();
    }
    assert_eq!(w.nodes[0].pending_count(hub_id()).unwrap(), 0);
}

#[test]
fn a_refusal_file_is_reported_and_not_answered() {
    let mut w = World::new(1);
    let stick = tempfile::tempdir().unwrap();
    let refusal = w.nodes[0].error_envelope(&sync_core::SyncError::UnknownPeer(node_id(5)));
    let key = PairKey::parse(&w.printable[0]).unwrap();
    let options = ExportOptions::default();
    let sealed =
        sync_transport_file::seal_envelope(&refusal, node_id(0), hub_id(), &key, &options, t(0))
            .unwrap();
    assert_eq!(sealed[0].header.kind, FileKind::Refusal);
    let files = sync_transport_file::write_files(stick.path(), &sealed).unwrap();
    let answers = answer(&mut w.hub, &files, stick.path(), &options, t(1)).unwrap();
    assert!(matches!(
        answers[0].refusal,
        Some(sync_core::SyncError::Rejected { .. })
    ));
    assert!(answers[0].imported.is_none());
    assert!(answers[0].reply_files.is_empty());
    assert_eq!(files_in(stick.path()), files);
}

#[test]
fn the_pair_key_lives_in_the_store_and_survives_a_restart() {
    let mut w = World::new(1);
    let created = pair_key(&mut w.hub, node_id(0)).unwrap().expect("key");
    let registry = w.hub.registry().clone();
    let config = w.hub.config().clone();
    let hub = std::mem::replace(
        &mut w.hub,
        sync_core::Engine::new(
            sync_store_memory::MemoryStore::new(),
            registry.clone(),
            config.clone(),
            sync_conformance::fixtures::hub_info(),
        )
        .unwrap(),
    );
    let mut reopened = sync_core::Engine::open(hub.into_store(), registry, config).unwrap();
    let stored = pair_key(&mut reopened, node_id(0)).unwrap().expect("kept");
    assert_eq!(stored.key_id(), created.key_id());
    // And it still opens the node's files.
    insert_note(&mut w.nodes[0], "after restart", t(0));
    let stick = tempfile::tempdir().unwrap();
    let exported = w.node_export(0, stick.path(), t(1));
    assert_eq!(
        import(&mut reopened, &exported.files, t(2)).unwrap()[0].applied,
        1
    );
}
