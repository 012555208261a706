//! Scenario tests of bad input and failures: children arriving before their
//! parents, schema version checks, corrupted and misaddressed bytes, unknown
//! and revoked senders, crashes, and a node or the hub restored from an older
//! backup of its store.

mod common;

use common::*;
use sync_core::packet::Change;
use sync_core::{
    ConflictStrategy, EngineConfig, ErrorCode, Event, LocalWrite, PeerError, SchemaError,
    SchemaVersion, SecurityKind, SyncError, Uuid, WriteError,
};

fn server_wins() -> sync_core::EntityRegistry {
    registry(ConflictStrategy::ServerWins)
}

fn security_kinds(engine: &mut MemEngine) -> Vec<SecurityKind> {
    engine
        .security_events()
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

// --- parents and children -----------------------------------------------------

/// A report and two lines, as the hub would send them.
fn family() -> (Vec<Change>, Uuid, [Uuid; 2]) {
    let mut ids = (Uuid::nil(), [Uuid::nil(); 2]);
    let changes = changes_from_hub(&server_wins(), |hub| {
        let r = hub
            .insert("DailyReport", report("2025-12-12", 8), t(0))
            .unwrap();
        let l1 = hub
            .insert("DailyReportLine", line(r, "dig", 1.0), t(0))
            .unwrap();
        let l2 = hub
            .insert("DailyReportLine", line(r, "fill", 2.0), t(0))
            .unwrap();
        ids = (r, [l1, l2]);
    });
    assert_eq!(changes[0].entity.key, report_key(ids.0), "parents first");
    (changes, ids.0, ids.1)
}

#[test]
fn a_child_that_arrives_first_is_parked_until_its_parent_arrives() {
    let (changes, r, [l1, _]) = family();
    let mut net = Net::new(1, server_wins());
    let node = &mut net.nodes[0];
    let child_first = forge(hub_id(), node_id(0), 1, &changes[1..2], &net.registry);
    let incoming = node.handle_incoming(&child_first, t(5)).unwrap();
    assert_eq!((incoming.applied, incoming.parked), (0, 1));
    assert!(node.get(&line_key(l1)).unwrap().is_none());
    let parked = node.parked().unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].entity.key, line_key(l1));
    assert_eq!(
        (parked[0].from, &parked[0].waiting_for, parked[0].arrived_at),
        (hub_id(), &report_key(r), t(5))
    );
    assert_no_dangling(node);

    let parent = forge(hub_id(), node_id(0), 2, &changes[0..1], &net.registry);
    node.handle_incoming(&parent, t(6)).unwrap();
    assert!(node.parked().unwrap().is_empty());
    assert_eq!(
        node.get(&line_key(l1)).unwrap().unwrap().fields,
        changes[1].entity.fields
    );
    assert_no_dangling(node);
}

#[test]
fn children_are_applied_whatever_order_the_packets_arrive_in() {
    let (changes, _, _) = family();
    let orders = [
        [0, 1, 2],
        [0, 2, 1],
        [1, 0, 2],
        [1, 2, 0],
        [2, 0, 1],
        [2, 1, 0],
    ];
    for order in orders {
        let mut net = Net::new(1, server_wins());
        let node = &mut net.nodes[0];
        for (packet_no, &which) in (1..).zip(&order) {
            let bytes = forge(
                hub_id(),
                node_id(0),
                packet_no,
                &changes[which..=which],
                &net.registry,
            );
            node.handle_incoming(&bytes, t(packet_no as i64)).unwrap();
            assert_no_dangling(node);
        }
        assert!(node.parked().unwrap().is_empty(), "order {order:?}");
        for change in &changes {
            assert_eq!(
                node.get(&change.entity.key).unwrap().unwrap(),
                change.entity
            );
        }
    }
}

#[test]
fn a_child_sent_ahead_of_its_newer_parent_waits_parked_on_the_hub() {
    // One change per packet and one packet per message; the report is
    // rewritten after its line was written, so the line (older change)
    // travels first, alone.
    let mut net = Net::with_config(1, server_wins(), |c| c.batch(1, 1 << 20).pipeline(1));
    let node = &mut net.nodes[0];
    let r = node
        .insert("DailyReport", report("2025-12-12", 1), t(0))
        .unwrap();
    let l = node
        .insert("DailyReportLine", line(r, "dig", 1.0), t(0))
        .unwrap();
    node.put(report_key(r), report("2025-12-12", 2), t(1))
        .unwrap();
    node.start_sync(hub_id()).unwrap();
    let first = node.poll_transmit(t(2)).unwrap().unwrap();
    assert_eq!(keys_in(&first.bytes), [line_key(l)].into());
    let reply = net.hub.respond(&first.bytes, t(2)).unwrap();
    assert!(
        net.hub.get(&line_key(l)).unwrap().is_none(),
        "never applied without its parent"
    );
    let parked = net.hub.parked().unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(
        (&parked[0].entity.key, &parked[0].waiting_for),
        (&line_key(l), &report_key(r))
    );
    assert_no_dangling(&mut net.hub);

    net.nodes[0].handle_incoming(&reply, t(2)).unwrap();
    while let Some(p) = net.nodes[0].poll_transmit(t(3)).unwrap() {
        let reply = net.hub.respond(&p.bytes, t(3)).unwrap();
        assert_no_dangling(&mut net.hub);
        net.nodes[0].handle_incoming(&reply, t(3)).unwrap();
    }
    assert!(net.hub.parked().unwrap().is_empty());
    assert!(net.hub.get(&line_key(l)).unwrap().is_some());
    assert!(net.converged());
    assert!(net.quiet());
}

#[test]
fn a_child_written_locally_needs_its_parent() {
    let mut net = Net::new(1, server_wins());
    let node = &mut net.nodes[0];
    let missing = Uuid::from_u128(42);
    let err = node
        .insert("DailyReportLine", line(missing, "x", 1.0), t(0))
        .unwrap_err();
    assert!(matches!(
        err,
        SyncError::Write(WriteError::MissingParent { .. })
    ));

    // Child before parent in one batch: refused whole.
    let r = Uuid::from_u128(7);
    let l = Uuid::from_u128(8);
    let child = LocalWrite::Put {
        key: line_key(l),
        fields: line(r, "x", 1.0),
    };
    let parent = LocalWrite::Put {
        key: report_key(r),
        fields: report("2025-12-12", 1),
    };
    let err = node
        .write_batch(vec![child.clone(), parent.clone()], t(0))
        .unwrap_err();
    assert!(matches!(
        err,
        SyncError::Write(WriteError::MissingParent { .. })
    ));
    assert_eq!(node.store().entity_count(), 0);
    assert_eq!(node.pending_count(hub_id()).unwrap(), 0);
    node.write_batch(vec![parent, child], t(0)).unwrap();
    assert_eq!(node.pending_count(hub_id()).unwrap(), 2);
}

// --- schema versions ----------------------------------------------------------------

fn versioned_net(node: SchemaVersion) -> Net {
    let hub = hub_config()
        .schema_version(SchemaVersion::new(1, 3, 0))
        .min_peer_schema(SchemaVersion::new(1, 2, 0));
    Net::with_configs(1, server_wins(), hub, move |i| {
        node_config(i).schema_version(node)
    })
}

#[test]
fn the_hub_refuses_an_outdated_node_with_a_message_naming_both_versions() {
    let mut net = versioned_net(SchemaVersion::new(1, 1, 0));
    net.nodes[0]
        .insert("DailyReport", report("2025-12-12", 8), t(0))
        .unwrap();
    let err = net.sync(0, t(1)).unwrap_err();
    let SyncError::Rejected {
        peer,
        code,
        message,
        retryable,
    } = err
    else {
        panic!("expected a refusal, got {err:?}");
    };
    assert_eq!(
        (peer, code, retryable),
        (hub_id(), ErrorCode::SchemaMismatch, false)
    );
    assert!(
        message.contains("1.1.0") && message.contains("1.2.0"),
        "{message}"
    );
    assert!(message.contains("upgrade"), "{message}");
    assert_eq!(net.hub.store().entity_count(), 0, "nothing applied");
    assert_eq!(net.hub.peer(node_id(0)).unwrap().received_packet_no, 0);
    assert_eq!(
        security_kinds(&mut net.hub),
        vec![SecurityKind::SchemaRejected]
    );
    assert_eq!(net.nodes[0].pending_count(hub_id()).unwrap(), 1);
    assert!(
        !net.nodes[0].is_syncing(hub_id()),
        "a refusal that cannot pass ends the session"
    );
    assert!(
        drain(&mut net.nodes[0])
            .iter()
            .any(|e| matches!(e, Event::Rejected { peer, .. } if *peer == hub_id()))
    );
}

#[test]
fn the_hub_accepts_nodes_of_the_same_major_at_or_above_its_minimum() {
    for version in [
        SchemaVersion::new(1, 2, 0),
        SchemaVersion::new(1, 3, 0),
        SchemaVersion::new(1, 9, 4),
    ] {
        let mut net = versioned_net(version);
        net.nodes[0]
            .insert("DailyReport", report("2025-12-12", 8), t(0))
            .unwrap();
        net.hub
            .insert("DailyReport", report("2025-12-13", 1), t(0))
            .unwrap();
        net.sync(0, t(1)).unwrap();
        assert!(net.converged(), "{version}");
        assert_eq!(
            net.hub.peer(node_id(0)).unwrap().schema_version,
            Some(version.to_string())
        );
    }
}

#[test]
fn a_different_major_version_is_refused() {
    let mut net = versioned_net(SchemaVersion::new(2, 0, 0));
    net.nodes[0]
        .insert("DailyReport", report("2025-12-12", 8), t(0))
        .unwrap();
    let err = net.sync(0, t(1)).unwrap_err();
    let SyncError::Rejected { code, message, .. } = err else {
        panic!("{err:?}")
    };
    assert_eq!(code, ErrorCode::SchemaMismatch);
    assert!(
        message.contains("2.0.0") && message.contains("1.3.0"),
        "{message}"
    );
    assert_eq!(net.hub.store().entity_count(), 0);

    // A node refuses a hub of another major version too.
    let mut net = Net::new(1, server_wins());
    net.hub
        .insert("DailyReport", report("2025-12-12", 8), t(0))
        .unwrap();
    let packet = net.hub.build_packet(node_id(0), t(1)).unwrap();
    let newer = rewrite_header(&packet.bytes, |h| h.schema_version = "2.1.0".into());
    let err = net.nodes[0].handle_incoming(&newer, t(2)).unwrap_err();
    assert!(
        matches!(err, SyncError::Schema(SchemaError::MajorMismatch { .. })),
        "{err:?}"
    );
    let garbled = rewrite_header(&packet.bytes, |h| h.schema_version = "1.x".into());
    let err = net.nodes[0].handle_incoming(&garbled, t(2)).unwrap_err();
    assert!(
        matches!(err, SyncError::Schema(SchemaError::Invalid { .. })),
        "{err:?}"
    );
    assert_eq!(net.nodes[0].store().entity_count(), 0);
}

// --- damaged and misaddressed bytes -------------------------------------------------

#[test]
fn a_corrupted_body_is_refused_whole_and_logged_then_resent() {
    let mut net = Net::new(1, server_wins());
    let id = net.nodes[0]
        .insert("DailyReport", report("2025-12-12", 8), t(0))
        .unwrap();
    net.nodes[0].start_sync(hub_id()).unwrap();
    let packet = net.nodes[0].poll_transmit(t(1)).unwrap().unwrap();
    let damaged = flip_body_byte(&packet.bytes, 3);

    let err = net.hub.handle_incoming(&damaged, t(2)).unwrap_err();
    assert!(
        matches!(err, SyncError::Peer(PeerError::BodyHashMismatch { sender, packet_no }) if sender == node_id(0) && packet_no == packet.packet_no),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert_eq!(net.hub.store().entity_count(), 0);
    assert_eq!(net.hub.peer(node_id(0)).unwrap().received_packet_no, 0);
    let events = net.hub.security_events().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].kind, events[0].peer, events[0].at),
        (SecurityKind::Corrupt, Some(node_id(0)), t(2))
    );

    // Through respond(): the node is told to send again, and does.
    let refusal = net.hub.respond(&damaged, t(3)).unwrap();
    let err = net.nodes[0].handle_incoming(&refusal, t(3)).unwrap_err();
    assert!(
        matches!(
            err,
            SyncError::Rejected {
                code: ErrorCode::Corrupt,
                retryable: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(net.nodes[0].is_syncing(hub_id()));
    let deadline = net.nodes[0].poll_timeout().expect("retry armed");
    net.nodes[0].handle_timeout(deadline);
    let again = net.nodes[0].poll_transmit(deadline).unwrap().unwrap();
    let reply = net.hub.respond(&again.bytes, deadline).unwrap();
    net.nodes[0].handle_incoming(&reply, deadline).unwrap();
    assert!(net.hub.get(&report_key(id)).unwrap().is_some());
    assert_eq!(net.nodes[0].pending_count(hub_id()).unwrap(), 0);
}

#[test]
fn a_corrupted_reply_changes_nothing_on_the_node() {
    let mut net = Net::new(1, server_wins());
    net.hub
        .insert("DailyReport", report("2025-12-12", 8), t(0))
        .unwrap();
    net.nodes[0].start_sync(hub_id()).unwrap();
    let packet = net.nodes[0].poll_transmit(t(1)).unwrap().unwrap();
    let reply = net.hub.respond(&packet.bytes, t(2)).unwrap();
    for which in [0, 7, 1_000] {
        let err = net.nodes[0]
            .handle_incoming(&flip_body_byte(&reply, which), t(3))
            .unwrap_err();
        assert!(
            matches!(err, SyncError::Peer(PeerError::BodyHashMismatch { .. })),
            "{err:?}"
        );
    }
    assert_eq!(net.nodes[0].store().entity_count(), 0);
    assert_eq!(net.nodes[0].peer(hub_id()).unwrap().received_packet_no, 0);
    assert_eq!(
        security_kinds(&mut net.nodes[0]),
        vec![SecurityKind::Corrupt; 3]
    );
    net.sync(0, t(10)).unwrap();
    assert!(net.converged());
}

#[test]
fn truncated_and_garbage_bytes_are_decode_errors() {
    let mut net = Net::new(1, server_wins());
    net.nodes[0].start_sync(hub_id()).unwrap();
    let packet = net.nodes[0].poll_transmit(t(1)).unwrap().unwrap();
    let cut = &packet.bytes[..packet.bytes.len() / 2];
    for bytes in [cut, b"\xff\xff\xff\xff".as_slice()] {
        let err = net.hub.handle_incoming(bytes, t(2)).unwrap_err();
        assert!(
            matches!(err, SyncError::Peer(PeerError::Decode { .. })),
            "{err:?}"
        );
    }
    assert_eq!(security_kinds(&mut net.hub), vec![SecurityKind::Corrupt; 2]);
    assert_eq!(net.hub.peer(node_id(0)).unwrap().received_packet_no, 0);
}

#[test]
fn a_packet_for_another_node_is_refused() {
    let mut net = Net::new(2, server_wins());
    net.hub
        .insert("DailyReport", report("2025-12-12", 8), t(0))
        .unwrap();
    let for_node0 = net.hub.build_packet(node_id(0), t(1)).unwrap();
    let err = net.nodes[1]
        .handle_incoming(&for_node0.bytes, t(2))
        .unwrap_err();
    assert!(
        matches!(err, SyncError::Peer(PeerError::WrongRecipient { local, recipient }) if local == node_id(1) && recipient == node_id(0)),
        "{err:?}"
    );
    assert_eq!(net.nodes[1].store().entity_count(), 0);
    assert_eq!(
        security_kinds(&mut net.nodes[1]),
        vec![SecurityKind::WrongRecipient]
    );

    // The hub refuses a packet a node addressed elsewhere.
    net.nodes[0].start_sync(hub_id()).unwrap();
    let packet = net.nodes[0].poll_transmit(t(3)).unwrap().unwrap();
    let misaddressed = rewrite_header(&packet.bytes, |h| h.recipient = node_id(1));
    let err = net.hub.handle_incoming(&misaddressed, t(4)).unwrap_err();
    assert!(
        matches!(err, SyncError::Peer(PeerError::WrongRecipient { .. })),
        "{err:?}"
    );
}

#[test]
fn an_unknown_sender_is_refused_and_logged() {
    let mut net = Net::new(1, server_wins());
    let mut stranger = sync_core::Engine::new(
        sync_store_memory::MemoryStore::new(),
        net.registry.clone(),
        node_config(7),
        node_info(7),
    )
    .unwrap();
    stranger.register_peer(hub_info()).unwrap();
    stranger
        .insert("DailyReport", report("2025-12-12", 8), t(0))
        .unwrap();
    stranger.start_sync(hub_id()).unwrap();
    let packet = stranger.poll_transmit(t(1)).unwrap().unwrap();
    let err = net.hub.handle_incoming(&packet.bytes, t(2)).unwrap_err();
    assert!(
        matches!(err, SyncError::Peer(PeerError::UnknownSender { sender }) if sender == node_id(7)),
        "{err:?}"
    );
    assert_eq!(net.hub.store().entity_count(), 0);
    assert_eq!(
        security_kinds(&mut net.hub),
        vec![SecurityKind::UnknownSender]
    );
    let refusal = net.hub.respond(&packet.bytes, t(3)).unwrap();
    let err = stranger.handle_incoming(&refusal, t(3)).unwrap_err();
    assert!(
        matches!(
            err,
            SyncError::Rejected {
                code: ErrorCode::UnknownNode,
                retryable: false,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!stranger.is_syncing(hub_id()));
}

#[test]
fn a_revoked_sender_is_refused_until_registered_again() {
    let mut net = Net::new(1, server_wins());
    net.nodes[0]
        .insert("DailyReport", report("2025-12-12", 1), t(0))
        .unwrap();
    net.sync(0, t(1)).unwrap();
    let before = net.hub.peer(node_id(0)).unwrap();
    net.hub.revoke_peer(node_id(0)).unwrap();

    net.nodes[0]
        .insert("DailyReport", report("2025-12-13", 2), t(2))
        .unwrap();
    net.nodes[0].start_sync(hub_id()).unwrap();
    let packet = net.nodes[0].poll_transmit(t(3)).unwrap().unwrap();
    let err = net.hub.handle_incoming(&packet.bytes, t(3)).unwrap_err();
    assert!(
        matches!(err, SyncError::Peer(PeerError::RevokedSender { .. })),
        "{err:?}"
    );
    assert_eq!(net.hub.store().entity_count(), 1);
    assert_eq!(
        security_kinds(&mut net.hub),
        vec![SecurityKind::RevokedSender]
    );
    assert!(matches!(
        net.hub.build_packet(node_id(0), t(3)),
        Err(SyncError::RevokedPeer(_))
    ));
    assert!(matches!(
        net.sync(0, t(4)),
        Err(SyncError::Rejected {
            code: ErrorCode::UnknownNode,
            ..
        })
    ));

    net.hub.register_peer(node_info(0)).unwrap();
    let after = net.hub.peer(node_id(0)).unwrap();
    assert_eq!(
        (after.received_packet_no, after.acked_seq),
        (before.received_packet_no, before.acked_seq)
    );
    net.sync(0, t(5)).unwrap();
    assert_eq!(net.hub.store().entity_count(), 2);
    assert!(net.quiet());
}

#[test]
fn an_unregistered_peer_cannot_be_synced_with() {
    let mut net = Net::new(1, server_wins());
    assert!(matches!(
        net.nodes[0].start_sync(node_id(5)),
        Err(SyncError::UnknownPeer(_))
    ));
    assert!(matches!(
        net.hub.build_packet(node_id(5), t(0)),
        Err(SyncError::UnknownPeer(_))
    ));
    let cfg = EngineConfig::default();
    assert!(matches!(
        sync_core::Engine::open(
            sync_store_memory::MemoryStore::new(),
            net.registry.clone(),
            cfg
        ),
        Err(SyncError::NotInitialized)
    ));
}

// --- damaged headers -----------------------------------------------------------------

/// A fresh net where node 0 has synced once and holds a new change; returns
/// the net, every entity id, and node 0's next request.
fn one_request() -> (Net, Vec<Uuid>, bytes::Bytes) {
    let mut net = Net::new(1, server_wins());
    let a = net.nodes[0]
        .insert("DailyReport", report("2025-12-12", 1), t(0))
        .unwrap();
    let h = net
        .hub
        .insert("DailyReport", report("2025-12-13", 2), t(0))
        .unwrap();
    net.sync(0, t(1)).unwrap();
    let b = net.nodes[0]
        .insert("DailyReport", report("2025-12-14", 3), t(2))
        .unwrap();
    net.nodes[0].start_sync(hub_id()).unwrap();
    let request = net.nodes[0].poll_transmit(t(3)).unwrap().unwrap().bytes;
    (net, vec![a, h, b], request)
}

#[test]
fn any_single_bit_flip_in_a_request_is_refused_and_loses_nothing() {
    let len = one_request().2.len();
    for position in 0..len {
        for bit in [0x01u8, 0x80] {
            let (mut net, ids, request) = one_request();
            let mut damaged = request.to_vec();
            damaged[position] ^= bit;
            let before = (
                net.hub.peer(node_id(0)).unwrap(),
                net.hub.store().entity_count(),
            );
            let result = net.hub.handle_incoming(&damaged, t(3));
            assert!(
                matches!(result, Err(SyncError::Peer(_))),
                "byte {position} bit {bit:#x}: {result:?}"
            );
            let after = (
                net.hub.peer(node_id(0)).unwrap(),
                net.hub.store().entity_count(),
            );
            assert_eq!(before, after, "byte {position}: nothing acted on");
            for k in 0..2 {
                net.sync(0, t(10 + k)).unwrap();
            }
            for id in &ids {
                assert!(net.hub.get(&report_key(*id)).unwrap().is_some());
                assert!(net.nodes[0].get(&report_key(*id)).unwrap().is_some());
            }
            assert!(net.converged() && net.quiet(), "byte {position}");
        }
    }
}

/// Regression: header fields used to travel without an integrity check, so
/// a damaged acknowledgement was accepted and re-initialized the pair.
#[test]
fn a_corrupted_header_is_refused() {
    let (mut net, _, request) = one_request();
    let digest = header(&request).ack_digest;
    let at = request
        .windows(digest.len())
        .position(|w| w == digest)
        .expect("the acknowledged digest appears verbatim in the header");
    let mut damaged = request.to_vec();
    damaged[at] ^= 0x01;
    let before = net.hub.peer(node_id(0)).unwrap();
    let result = net.hub.handle_incoming(&damaged, t(3));
    assert!(
        matches!(result, Err(SyncError::Peer(PeerError::HeaderHashMismatch))),
        "{result:?}"
    );
    assert_eq!(
        net.hub.peer(node_id(0)).unwrap(),
        before,
        "nothing acted on"
    );
    let events = drain(&mut net.hub);
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::PairReinitialized { .. }))
    );
    assert_eq!(security_kinds(&mut net.hub), vec![SecurityKind::Corrupt]);
}
