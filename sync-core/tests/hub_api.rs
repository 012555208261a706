//! The hub API for servers: `respond_as` with the transport's authenticated
//! sender, the outcome it reports, and the bounded event queue.

mod common;

use common::*;
use sync_core::codec::{self, Limits};
use sync_core::packet::Envelope;
use sync_core::{ConflictStrategy, ErrorCode, Event, PeerError, SecurityKind, SyncError, Value};

fn server_wins() -> sync_core::EntityRegistry {
    registry(ConflictStrategy::ServerWins)
}

/// The first packet node `i` sends in a new session.
fn first_packet(net: &mut Net, i: usize, now: sync_core::Timestamp) -> bytes::Bytes {
    net.nodes[i].start_sync(hub_id()).unwrap();
    net.nodes[i]
        .poll_transmit(now)
        .unwrap()
        .expect("a session starts with a packet")
        .bytes
}

#[test]
fn a_packet_naming_another_sender_is_refused_without_touching_the_store() {
    let mut net = Net::new(2, server_wins());
    net.nodes[1]
        .insert("DailyReport", report("2025-12-12", 8), t(0))
        .unwrap();
    let bytes = first_packet(&mut net, 1, t(1));

    let peers_before = net.hub.peers().unwrap();
    let pending_before = [
        net.hub.pending_count(node_id(0)).unwrap(),
        net.hub.pending_count(node_id(1)).unwrap(),
    ];
    let security_before = net.hub.security_events().unwrap().len();

    // The transport authenticated node 0; the header names node 1.
    let reply = net.hub.respond_as(node_id(0), &bytes, t(1)).unwrap();
    assert_eq!(reply.outcome.error, Some(ErrorCode::Unauthenticated));
    assert!(reply.outcome.is_refused());
    assert_eq!(reply.outcome.peer, Some(node_id(0)));
    assert_eq!(
        (
            reply.outcome.applied,
            reply.outcome.conflicts,
            reply.outcome.parked
        ),
        (0, 0, 0)
    );
    assert!(!reply.outcome.duplicate);

    // Nothing was applied: no entity, peer state and pending counts as before.
    assert_eq!(net.hub.store().entity_count(), 0);
    assert_eq!(net.hub.peers().unwrap(), peers_before);
    assert_eq!(net.hub.peer(node_id(1)).unwrap().received_packet_no, 0);
    assert_eq!(
        [
            net.hub.pending_count(node_id(0)).unwrap(),
            net.hub.pending_count(node_id(1)).unwrap(),
        ],
        pending_before
    );

    // A security event names both nodes.
    let security = net.hub.security_events().unwrap();
    assert_eq!(security.len(), security_before + 1);
    let event = security.last().unwrap();
    assert_eq!(event.kind, SecurityKind::AuthFailed);
    assert_eq!(event.peer, Some(node_id(0)));
    assert!(
        event.detail.contains(&node_id(0).to_string()),
        "{}",
        event.detail
    );
    assert!(
        event.detail.contains(&node_id(1).to_string()),
        "{}",
        event.detail
    );
    assert!(
        drain(&mut net.hub)
            .iter()
            .any(|e| matches!(e, Event::Security(s) if s.kind == SecurityKind::AuthFailed))
    );

    // The reply is an error envelope the sender understands.
    match codec::decode_envelope(&reply.bytes, &Limits::default()).unwrap() {
        Envelope::Error(message) => {
            assert_eq!(message.code, ErrorCode::Unauthenticated);
            assert!(!message.retryable);
        }
        other => panic!("expected an error envelope, got {other:?}"),
    }
    let err = net.nodes[1]
        .handle_incoming(&reply.bytes, t(1))
        .unwrap_err();
    assert!(
        matches!(
            err,
            SyncError::Rejected {
                code: ErrorCode::Unauthenticated,
                ..
            }
        ),
        "{err}"
    );

    // The same bytes from the node they belong to apply.
    let reply = net.hub.respond_as(node_id(1), &bytes, t(2)).unwrap();
    assert_eq!(reply.outcome.error, None);
    assert_eq!(reply.outcome.applied, 1);
    assert_eq!(net.hub.store().entity_count(), 1);
}

#[test]
fn sender_mismatch_names_both_nodes_and_maps_to_unauthenticated() {
    let error = PeerError::SenderMismatch {
        authenticated: node_id(0),
        claimed: node_id(1),
    };
    assert_eq!(error.code(), ErrorCode::Unauthenticated);
    assert!(!error.is_corruption());
    let text = error.to_string();
    assert!(text.contains(&node_id(0).to_string()), "{text}");
    assert!(text.contains(&node_id(1).to_string()), "{text}");
}

#[test]
fn the_outcome_counts_a_normal_exchange_and_a_duplicate() {
    let mut net = Net::new(1, server_wins());
    let a = net.nodes[0]
        .insert("DailyReport", report("2025-12-12", 8), t(0))
        .unwrap();
    net.nodes[0]
        .insert("DailyReportLine", line(a, "digging", 2.5), t(0))
        .unwrap();
    let bytes = first_packet(&mut net, 0, t(1));

    let reply = net.hub.respond_as(node_id(0), &bytes, t(1)).unwrap();
    let outcome = &reply.outcome;
    assert_eq!(outcome.peer, Some(node_id(0)));
    assert_eq!(outcome.applied, 2);
    assert_eq!(outcome.conflicts, 0);
    assert_eq!(outcome.parked, 0);
    assert!(!outcome.duplicate);
    assert!(!outcome.reinitialized);
    assert_eq!(outcome.error, None);
    // The reply is the node's next packet.
    net.nodes[0].handle_incoming(&reply.bytes, t(1)).unwrap();

    // The same request again (a retry after a lost reply) is a duplicate.
    let again = net.hub.respond_as(node_id(0), &bytes, t(2)).unwrap();
    assert!(again.outcome.duplicate);
    assert_eq!(again.outcome.applied, 0);
    assert_eq!(again.outcome.conflicts, 0);
    assert_eq!(again.outcome.error, None);
    assert_eq!(net.hub.store().entity_count(), 2);
}

#[test]
fn the_outcome_counts_conflicts() {
    let mut net = Net::new(1, server_wins());
    let a = net.nodes[0]
        .insert("DailyReport", report("2025-12-12", 8), t(0))
        .unwrap();
    net.sync(0, t(1)).unwrap();
    // Both sides edit the same report concurrently.
    net.hub
        .put(report_key(a), report("2025-12-12", 9), t(2))
        .unwrap();
    net.nodes[0]
        .put(report_key(a), report("2025-12-12", 10), t(2))
        .unwrap();
    let bytes = first_packet(&mut net, 0, t(3));
    let reply = net.hub.respond_as(node_id(0), &bytes, t(3)).unwrap();
    assert_eq!(reply.outcome.error, None);
    assert_eq!(reply.outcome.conflicts, 1);
    let hub_hours = net.hub.get(&report_key(a)).unwrap().unwrap().fields["hours"].clone();
    assert_eq!(hub_hours, Value::from(9));
}

#[test]
fn a_refused_packet_reports_its_error_code() {
    let mut net = Net::new(1, server_wins());
    net.nodes[0]
        .insert("DailyReport", report("2025-12-12", 8), t(0))
        .unwrap();
    let bytes = first_packet(&mut net, 0, t(1));

    // Damaged bytes: corrupt, attributed to the authenticated sender.
    let mut damaged = bytes.to_vec();
    let last = damaged.len() - 1;
    damaged[last] ^= 0xff;
    let reply = net.hub.respond_as(node_id(0), &damaged, t(1)).unwrap();
    assert_eq!(reply.outcome.error, Some(ErrorCode::Corrupt));
    assert_eq!(reply.outcome.peer, Some(node_id(0)));
    assert_eq!(reply.outcome.applied, 0);

    // A revoked node: its own packet, refused as an unknown node.
    net.hub.revoke_peer(node_id(0)).unwrap();
    let reply = net.hub.respond_as(node_id(0), &bytes, t(1)).unwrap();
    assert_eq!(reply.outcome.error, Some(ErrorCode::UnknownNode));
    assert_eq!(reply.outcome.peer, Some(node_id(0)));
    assert_eq!(reply.outcome.applied, 0);
    assert_eq!(net.hub.store().entity_count(), 0);
    match codec::decode_envelope(&reply.bytes, &Limits::default()).unwrap() {
        Envelope::Error(message) => assert_eq!(message.code, ErrorCode::UnknownNode),
        other => panic!("expected an error envelope, got {other:?}"),
    }
}

#[test]
fn respond_for_trusted_transports_still_answers_every_sender() {
    let mut net = Net::new(2, server_wins());
    net.nodes[1]
        .insert("DailyReport", report("2025-12-12", 8), t(0))
        .unwrap();
    let bytes = first_packet(&mut net, 1, t(1));
    let reply = net.hub.respond(&bytes, t(1)).unwrap();
    net.nodes[1].handle_incoming(&reply, t(1)).unwrap();
    assert_eq!(net.hub.store().entity_count(), 1);
}

/// Ten reports from node 0 applied at a hub with `max_events`; returns the
/// hub's queued events and its dropped counter.
fn hub_events_with_cap(max_events: usize) -> (Vec<Event>, u64) {
    let hub_config = hub_config().max_events(max_events);
    let mut net = Net::with_configs(1, server_wins(), hub_config, node_config);
    for h in 0..10 {
        net.nodes[0]
            .insert("DailyReport", report("2025-12-12", h), t(0))
            .unwrap();
    }
    let bytes = first_packet(&mut net, 0, t(1));
    let reply = net.hub.respond_as(node_id(0), &bytes, t(1)).unwrap();
    assert_eq!(reply.outcome.applied, 10);
    let dropped = net.hub.dropped_events();
    (drain(&mut net.hub), dropped)
}

#[test]
fn the_event_queue_is_capped_and_counts_what_it_dropped() {
    let (all, none_dropped) = hub_events_with_cap(10_000);
    assert_eq!(none_dropped, 0);
    assert!(
        all.iter()
            .filter(|e| matches!(e, Event::Applied(_)))
            .count()
            >= 10,
        "{all:?}"
    );

    let (kept, dropped) = hub_events_with_cap(3);
    assert_eq!(kept.len(), 3);
    assert_eq!(dropped, (all.len() - 3) as u64);
    // The newest events are kept.
    assert_eq!(kept, all[all.len() - 3..].to_vec());
}

#[test]
fn the_default_event_cap_is_ten_thousand() {
    assert_eq!(sync_core::EngineConfig::default().max_events, 10_000);
    assert_eq!(
        sync_core::EngineConfig::default().max_events(0).max_events,
        1
    );
}
