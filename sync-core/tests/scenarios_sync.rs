//! Scenario tests of plain synchronization through the public engine API:
//! two nodes, a hub with three nodes, offline edits, duplicate and lost
//! packets, retry timers, batching, codecs, excluded fields, the
//! `sync_changes` view, progress events and apply hooks.

mod common;

use common::*;
use sync_core::codec::Limits;
use sync_core::packet::{Codec, Envelope, Packet};
use sync_core::{
    ApplyHooks, ChangeKind, ConflictStrategy, Engine, EngineConfig, Entity, EntityKey, Event,
    Operation, RetryPolicy, Timer, Value,
};

fn server_wins() -> sync_core::EntityRegistry {
    registry(ConflictStrategy::ServerWins)
}

#[test]
fn two_nodes_exchange_changes_both_ways() {
    let mut net = Net::new(2, server_wins());
    let a = net.nodes[0]
        .insert("DailyReport", report("2025-12-12", 8), t(0))
        .unwrap();
    let b = net.nodes[1]
        .insert("DailyReport", report("2025-12-13", 6), t(1))
        .unwrap();

    net.sync(0, t(10)).unwrap();
    net.sync(1, t(11)).unwrap();
    net.sync(0, t(12)).unwrap();

    for engine in std::iter::once(&mut net.hub).chain(net.nodes.iter_mut()) {
        assert_eq!(
            engine.get(&report_key(a)).unwrap().unwrap().fields["hours"],
            Value::Int(8)
        );
        assert_eq!(
            engine.get(&report_key(b)).unwrap().unwrap().fields["hours"],
            Value::Int(6)
        );
    }
    assert!(net.converged());
    assert!(net.quiet());
    let applied: Vec<_> = drain(&mut net.nodes[0])
        .into_iter()
        .filter_map(|e| match e {
            Event::Applied(c) => Some((c.kind, c.entity.key)),
            _ => None,
        })
        .collect();
    assert_eq!(applied, vec![(ChangeKind::Created, report_key(b))]);
}

#[test]
fn hub_with_three_nodes_spreads_every_change() {
    let mut net = Net::new(3, server_wins());
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            net.nodes[i]
                .insert("DailyReport", report("2025-12-12", i as i64), t(i as i64))
                .unwrap(),
        );
    }
    ids.push(
        net.hub
            .insert("DailyReport", report("2025-12-12", 99), t(3))
            .unwrap(),
    );
    net.sync_all(t(10)).unwrap();

    assert!(net.converged());
    assert!(net.quiet());
    for engine in std::iter::once(&mut net.hub).chain(net.nodes.iter_mut()) {
        assert_eq!(engine.store().entity_count(), 4);
        for id in &ids {
            assert!(engine.get(&report_key(*id)).unwrap().is_some());
        }
    }
    let hub_peers = net.hub.peers().unwrap();
    assert_eq!(hub_peers.len(), 3);
    for peer in hub_peers {
        assert!(peer.received_packet_no > 0 && peer.sent_packet_no > 0);
        assert_eq!(peer.last_sync_in, Some(t(10)));
    }
    for node in &mut net.nodes {
        let hub = node.peer(hub_id()).unwrap();
        assert!(
            hub.in_flight.is_empty(),
            "the hub acknowledged everything: {hub:?}"
        );
    }
}

#[test]
fn offline_edits_on_several_nodes_are_all_delivered_on_reconnection() {
    let mut net = Net::new(3, server_wins());
    let shared = net
        .hub
        .insert("DailyReport", report("2025-12-01", 1), t(0))
        .unwrap();
    net.sync_all(t(1)).unwrap();

    // Offline: every node works on its own.
    let r0 = net.nodes[0]
        .insert("DailyReport", report("2025-12-02", 2), t(10))
        .unwrap();
    let l0 = net.nodes[0]
        .insert("DailyReportLine", line(r0, "dig", 1.5), t(11))
        .unwrap();
    net.nodes[0]
        .put(report_key(r0), report("2025-12-02", 3), t(12))
        .unwrap();
    let r1 = net.nodes[1]
        .insert("DailyReport", report("2025-12-03", 4), t(13))
        .unwrap();
    net.nodes[1].delete(report_key(r1), t(14)).unwrap();
    let l2 = net.nodes[2]
        .insert("DailyReportLine", line(shared, "fill", 2.0), t(15))
        .unwrap();
    assert_eq!(
        net.nodes[0].pending_count(hub_id()).unwrap(),
        2,
        "writes coalesce"
    );
    assert_eq!(net.nodes[1].pending_count(hub_id()).unwrap(), 1);
    assert_eq!(net.nodes[2].pending_count(hub_id()).unwrap(), 1);

    net.sync_all(t(100)).unwrap();
    assert!(net.converged());
    assert!(net.quiet());
    for engine in std::iter::once(&mut net.hub).chain(net.nodes.iter_mut()) {
        assert_eq!(
            engine.get(&report_key(r0)).unwrap().unwrap().fields["hours"],
            Value::Int(3)
        );
        assert!(engine.get(&line_key(l0)).unwrap().is_some());
        assert!(engine.get(&report_key(r1)).unwrap().unwrap().is_deleted);
        assert!(engine.get(&line_key(l2)).unwrap().is_some());
    }
}

#[test]
fn redelivered_request_changes_nothing_and_is_acknowledged_again() {
    let mut net = Net::new(1, server_wins());
    let id = net.nodes[0]
        .insert("DailyReport", report("2025-12-12", 8), t(0))
        .unwrap();
    net.nodes[0].start_sync(hub_id()).unwrap();
    let request = net.nodes[0].poll_transmit(t(1)).unwrap().unwrap();

    let first = net.hub.handle_incoming(&request.bytes, t(2)).unwrap();
    assert!(!first.duplicate);
    assert_eq!(first.applied, 1);
    drain(&mut net.hub);
    let before: Vec<_> = net.hub.store().all_entities().cloned().collect();

    let again = net.hub.handle_incoming(&request.bytes, t(3)).unwrap();
    assert!(again.duplicate);
    assert_eq!((again.applied, again.conflicts), (0, 0));
    let after: Vec<_> = net.hub.store().all_entities().cloned().collect();
    assert_eq!(
        before, after,
        "a duplicate changes nothing, not even sequences"
    );
    assert!(
        drain(&mut net.hub)
            .iter()
            .all(|e| !matches!(e, Event::Applied(_)))
    );

    // respond() to the same bytes acknowledges the packet again.
    let reply = net.hub.respond(&request.bytes, t(4)).unwrap();
    assert_eq!(header(&reply).ack_packet_no, request.packet_no);
    net.nodes[0].handle_incoming(&reply, t(5)).unwrap();
    assert_eq!(net.nodes[0].pending_count(hub_id()).unwrap(), 0);
    assert!(net.hub.get(&report_key(id)).unwrap().is_some());
}

#[test]
fn redelivered_reply_is_a_no_op() {
    let mut net = Net::new(1, server_wins());
    let id = net
        .hub
        .insert("DailyReport", report("2025-12-12", 8), t(0))
        .unwrap();
    net.nodes[0].start_sync(hub_id()).unwrap();
    let request = net.nodes[0].poll_transmit(t(1)).unwrap().unwrap();
    let reply = net.hub.respond(&request.bytes, t(2)).unwrap();

    let first = net.nodes[0].handle_incoming(&reply, t(3)).unwrap();
    assert_eq!((first.duplicate, first.applied), (false, 1));
    let stored = net.nodes[0]
        .store()
        .all_entities()
        .cloned()
        .collect::<Vec<_>>();
    let second = net.nodes[0].handle_incoming(&reply, t(4)).unwrap();
    assert_eq!((second.duplicate, second.applied), (true, 0));
    assert_eq!(
        stored,
        net.nodes[0]
            .store()
            .all_entities()
            .cloned()
            .collect::<Vec<_>>()
    );
    assert!(net.nodes[0].get(&report_key(id)).unwrap().is_some());
}

#[test]
fn lost_request_is_resent_by_the_next_exchange() {
    let mut net = Net::new(1, server_wins());
    let id = net.nodes[0]
        .insert("DailyReport", report("2025-12-12", 8), t(0))
        .unwrap();
    net.nodes[0].start_sync(hub_id()).unwrap();
    let lost = net.nodes[0].poll_transmit(t(1)).unwrap().unwrap();
    assert_eq!(lost.entity_count, 1);
    assert_eq!(
        net.nodes[0].pending_count(hub_id()).unwrap(),
        1,
        "kept until acknowledged"
    );

    net.sync(0, t(60)).unwrap();
    assert!(net.hub.get(&report_key(id)).unwrap().is_some());
    assert_eq!(net.nodes[0].pending_count(hub_id()).unwrap(), 0);
    assert!(net.nodes[0].peer(hub_id()).unwrap().in_flight.is_empty());
}

#[test]
fn lost_reply_is_resent_by_the_next_exchange() {
    let mut net = Net::new(1, server_wins());
    let mine = net.nodes[0]
        .insert("DailyReport", report("2025-12-12", 8), t(0))
        .unwrap();
    let theirs = net
        .hub
        .insert("DailyReport", report("2025-12-13", 5), t(0))
        .unwrap();
    net.nodes[0].start_sync(hub_id()).unwrap();
    let request = net.nodes[0].poll_transmit(t(1)).unwrap().unwrap();
    let lost_reply = net.hub.respond(&request.bytes, t(2)).unwrap();
    assert_eq!(keys_in(&lost_reply), [report_key(theirs)].into());
    assert!(net.nodes[0].get(&report_key(theirs)).unwrap().is_none());
    assert_eq!(
        net.nodes[0].pending_count(hub_id()).unwrap(),
        1,
        "no ack arrived"
    );
    assert_eq!(
        net.hub.pending_count(node_id(0)).unwrap(),
        1,
        "no ack arrived"
    );
    drain(&mut net.hub);

    net.sync(0, t(60)).unwrap();
    assert!(net.nodes[0].get(&report_key(theirs)).unwrap().is_some());
    assert!(net.hub.get(&report_key(mine)).unwrap().is_some());
    assert!(net.quiet());
    assert!(
        net.hub.audit_log().unwrap().is_empty(),
        "a resent change is not a conflict"
    );
    assert!(
        drain(&mut net.hub)
            .iter()
            .all(|e| !matches!(e, Event::Conflict(_) | Event::Applied(_)))
    );
}

#[test]
fn retry_timer_resends_the_same_changes_with_growing_backoff() {
    let config = |c: EngineConfig| {
        c.retry(RetryPolicy {
            jitter: 0.0,
            ..RetryPolicy::default()
        })
    };
    let mut net = Net::with_config(1, server_wins(), config);
    let a = net.nodes[0]
        .insert("DailyReport", report("2025-12-12", 1), t(0))
        .unwrap();
    let b = net.nodes[0]
        .insert("DailyReport", report("2025-12-13", 2), t(0))
        .unwrap();
    let node = &mut net.nodes[0];
    assert_eq!(node.poll_timeout(), None);
    node.start_sync(hub_id()).unwrap();

    let mut now = t(1);
    let first = node.poll_transmit(now).unwrap().unwrap();
    assert_eq!(
        node.timers(),
        vec![(
            Timer::Retry { peer: hub_id() },
            node.poll_timeout().unwrap()
        )]
    );
    let mut previous = first.clone();
    let mut delays = Vec::new();
    for _ in 0..3 {
        // dropped; nothing to send until the deadline
        let deadline = node.poll_timeout().expect("retry armed");
        delays.push(deadline.as_micros() - now.as_micros());
        node.handle_timeout(now); // early: harmless
        assert!(node.poll_transmit(now).unwrap().is_none());
        now = deadline;
        node.handle_timeout(now);
        let retry = node.poll_transmit(now).unwrap().expect("a retry packet");
        assert_eq!(retry.packet_no, previous.packet_no + 1);
        assert_ne!(retry.bytes, previous.bytes);
        assert_eq!(keys_in(&retry.bytes), [report_key(a), report_key(b)].into());
        previous = retry;
    }
    assert_eq!(
        delays,
        vec![2_000_000, 4_000_000, 8_000_000],
        "backoff doubles"
    );

    let reply = net.hub.respond(&previous.bytes, now).unwrap();
    net.nodes[0].handle_incoming(&reply, now).unwrap();
    while let Some(p) = net.nodes[0].poll_transmit(now).unwrap() {
        let reply = net.hub.respond(&p.bytes, now).unwrap();
        net.nodes[0].handle_incoming(&reply, now).unwrap();
    }
    let node = &mut net.nodes[0];
    assert_eq!(
        node.poll_timeout(),
        None,
        "an answered session disarms its timer"
    );
    assert!(!node.is_syncing(hub_id()));
    assert_eq!(node.pending_count(hub_id()).unwrap(), 0);
    assert_eq!(net.hub.store().entity_count(), 2);
}

#[test]
fn batching_limits_split_a_sync_into_several_round_trips() {
    // One packet per message: each batch takes a round trip of its own.
    let mut net = Net::with_config(1, server_wins(), |c| c.batch(3, 1 << 20).pipeline(1));
    for i in 0..10 {
        net.nodes[0]
            .insert("DailyReport", report("2025-12-12", i), t(0))
            .unwrap();
    }
    for i in 0..7 {
        net.hub
            .insert("DailyReport", report("2025-12-14", i), t(0))
            .unwrap();
    }
    let mut link = Link::perfect();
    net.sync_faulty(0, t(1), &mut link).unwrap();

    let sent: Vec<_> = link
        .log
        .iter()
        .filter_map(|s| match s {
            Seen::NodeSent(_, b) => Some(header(b)),
            _ => None,
        })
        .collect();
    let replies: Vec<_> = link
        .log
        .iter()
        .filter_map(|s| match s {
            Seen::HubSent(_, b) => Some(header(b)),
            _ => None,
        })
        .collect();
    assert!(
        sent.len() >= 4,
        "10 changes at 3 per packet need 4 packets: {}",
        sent.len()
    );
    assert!(sent.iter().all(|h| h.entity_count <= 3));
    assert!(replies.iter().all(|h| h.entity_count <= 3));
    assert_eq!(
        sent.iter().map(|h| u64::from(h.entity_count)).sum::<u64>(),
        10
    );
    assert_eq!(
        replies
            .iter()
            .map(|h| u64::from(h.entity_count))
            .sum::<u64>(),
        7
    );
    assert!(sent[0].more && sent[1].more && sent[2].more);
    assert!(!sent[3].more);
    assert!(replies[0].more && replies[1].more && !replies[2].more);
    assert!(net.converged());
    assert!(net.quiet());
}

/// The messages of one direction in a link's log, as their packets.
fn messages(link: &Link, node_side: bool) -> Vec<Vec<Packet>> {
    link.log
        .iter()
        .filter_map(|s| match s {
            Seen::NodeSent(_, b) if node_side => Some(packets(b)),
            Seen::HubSent(_, b) if !node_side => Some(packets(b)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_catch_up_moves_several_batches_per_round_trip_in_trains() {
    // 3 changes per packet, up to 4 packets per message: 25 changes are 9
    // packets, which travel in 3 messages each way (4 + 4 + 1).
    let mut net = Net::with_config(1, server_wins(), |c| c.batch(3, 1 << 20).pipeline(4));
    for i in 0..25 {
        net.nodes[0]
            .insert("DailyReport", report("2025-12-12", i), t(0))
            .unwrap();
        net.hub
            .insert("DailyReport", report("2025-12-14", i), t(0))
            .unwrap();
    }
    let mut link = Link::perfect();
    net.sync_faulty(0, t(1), &mut link).unwrap();
    for node_side in [true, false] {
        let sent = messages(&link, node_side);
        let trains: Vec<usize> = sent.iter().map(Vec::len).collect();
        assert_eq!(&trains[..3], [4, 4, 1], "node side {node_side}: {trains:?}");
        let mut numbers = Vec::new();
        for train in &sent {
            for (i, p) in train.iter().enumerate() {
                assert!(p.header.entity_count <= 3);
                // Each packet after the first continues the one before it,
                // and all of a train carry the same acknowledgement.
                assert_eq!(p.header.continues, i > 0);
                assert_eq!(p.header.ack_packet_no, train[0].header.ack_packet_no);
                numbers.push(p.header.packet_no);
            }
            assert!(
                train.iter().rev().skip(1).all(|p| p.header.more),
                "only the last packet of a train may say nothing more is pending"
            );
        }
        assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{numbers:?}");
        let carried: u32 = sent.iter().flatten().map(|p| p.header.entity_count).sum();
        assert_eq!(carried, 25, "nothing sent twice on a clean link");
    }
    assert!(net.converged());
    assert!(net.quiet());
}

#[test]
fn a_train_stops_growing_at_the_byte_budget() {
    // Packets of 2 changes, about 20 KB each; a budget of 50 KB lets a
    // train hold two of them.
    let mut net = Net::with_config(1, server_wins(), |c| c.batch(2, 50_000).pipeline(8));
    let noise = |i: i64| -> String {
        // Incompressible enough: a different pseudo-random text per row.
        (0..10_000u64)
            .map(|k| {
                let x = (k + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (i as u64) << 17;
                char::from(b'a' + (x >> 59) as u8 % 26)
            })
            .collect()
    };
    for i in 0..12 {
        net.nodes[0]
            .insert("DailyReport", report(&noise(i), i), t(0))
            .unwrap();
    }
    let mut link = Link::perfect();
    net.sync_faulty(0, t(1), &mut link).unwrap();
    let sent = messages(&link, true);
    for train in &sent {
        let bytes: usize = train.iter().map(|p| p.body.len()).sum();
        assert!(
            train.len() == 1 || bytes <= 50_000,
            "a train of {} packets holds {bytes} body bytes",
            train.len()
        );
    }
    assert!(sent.iter().any(|t| t.len() > 1), "some train formed");
    assert!(net.converged());
}

#[test]
fn a_train_whose_packet_is_lost_resends_from_the_acknowledgement() {
    // The hub applies the first packet of a train and skips the rest once
    // one is missing: the node's retry carries what was not acknowledged.
    let mut net = Net::with_config(1, server_wins(), |c| c.batch(2, 1 << 20).pipeline(4));
    for i in 0..8 {
        net.nodes[0]
            .insert("DailyReport", report("2025-12-12", i), t(0))
            .unwrap();
    }
    net.nodes[0].start_sync(hub_id()).unwrap();
    let transmit = net.nodes[0].poll_transmit(t(1)).unwrap().unwrap();
    assert_eq!(transmit.packets, 4);
    let mut train = packets(&transmit.bytes);
    // Packet 2 of 4 goes missing: 3 and 4 continue a packet the hub does
    // not hold, so they are skipped, not applied.
    train.remove(1);
    let gapped = sync_core::codec::encode_envelope(&Envelope::Train(train));
    let err = net.hub.respond(&gapped, t(1)).unwrap();
    // A train whose numbers do not follow is refused whole as malformed.
    assert!(matches!(
        sync_core::codec::decode_envelope(&err, &Default::default()).unwrap(),
        Envelope::Error(_)
    ));
    // The packets one at a time, the second lost: the first applies, the
    // third and fourth are skipped.
    let train = packets(&transmit.bytes);
    let mut applied = 0;
    for (i, p) in train.into_iter().enumerate() {
        if i == 1 {
            continue;
        }
        let bytes = sync_core::codec::encode_envelope(&Envelope::Packet(p));
        let reply = net.hub.respond(&bytes, t(1)).unwrap();
        let ack = packets(&reply)[0].header.ack_packet_no;
        if i == 0 {
            applied = ack;
        } else {
            assert_eq!(
                ack, applied,
                "a continuation after a gap is not acknowledged"
            );
        }
    }
    assert_eq!(
        state(&mut net.hub).len(),
        2,
        "only the first packet applied"
    );
    // The node hears nothing back and retries: everything arrives.
    let mut link = Link::perfect();
    net.sync_faulty(0, t(100), &mut link).unwrap();
    assert!(net.converged());
    assert_eq!(state(&mut net.hub).len(), 8);
}

#[test]
fn byte_limit_splits_packets_and_a_large_entity_travels_alone() {
    let mut net = Net::with_config(1, server_wins(), |c| c.batch(1_000, 10));
    let big = "x".repeat(20_000);
    let a = net.nodes[0]
        .insert("DailyReport", report(&big, 1), t(0))
        .unwrap();
    let b = net.nodes[0]
        .insert("DailyReport", report("2025-12-12", 2), t(0))
        .unwrap();
    let mut link = Link::perfect();
    net.sync_faulty(0, t(1), &mut link).unwrap();
    let sent: Vec<_> = link
        .log
        .iter()
        .filter_map(|s| match s {
            Seen::NodeSent(_, b) => Some(b.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(keys_in(&sent[0]), [report_key(a)].into());
    assert!(header(&sent[0]).more);
    assert_eq!(keys_in(&sent[1]), [report_key(b)].into());
    assert_eq!(
        net.hub.get(&report_key(a)).unwrap().unwrap().fields["date"],
        Value::Text(big)
    );
    assert!(net.quiet());
}

#[test]
fn zstd_gzip_and_uncompressed_peers_interoperate() {
    let codecs = [Codec::Zstd, Codec::None, Codec::Gzip];
    let mut net = Net::with_configs(3, server_wins(), hub_config().codec(Codec::Gzip), |i| {
        node_config(i).codec(codecs[i])
    });
    for i in 0..3 {
        net.nodes[i]
            .insert("DailyReport", report(&"z".repeat(300), i as i64), t(0))
            .unwrap();
    }
    net.hub
        .insert("DailyReport", report(&"h".repeat(300), 9), t(0))
        .unwrap();
    let mut link = Link::perfect();
    for round in 0..2 {
        for i in 0..3 {
            net.sync_faulty(i, t(10 + round), &mut link).unwrap();
        }
    }
    assert!(net.converged());
    assert!(net.quiet());
    for seen in &link.log {
        let (expected, bytes) = match seen {
            Seen::NodeSent(i, b) => (codecs[*i], b),
            Seen::HubSent(_, b) => (Codec::Gzip, b),
            _ => continue,
        };
        let h = header(bytes);
        assert_eq!(h.codec, expected);
        let p = decode(bytes);
        match expected {
            Codec::Gzip => assert_eq!(&p.body[..2], &[0x1f, 0x8b]),
            Codec::Zstd => assert_eq!(&p.body[..4], &[0x28, 0xb5, 0x2f, 0xfd]),
            Codec::None => assert_eq!(p.body.len() as u64, h.body_raw_len),
        }
        body(bytes); // decodes whatever the codec
    }
}

#[test]
fn excluded_fields_never_leave_the_node_and_survive_incoming_updates() {
    let mut net = Net::new(2, server_wins());
    let mut mine = report("2025-12-12", 8);
    mine.insert("local_note".into(), "node secret".into());
    let id = net.nodes[0].insert("DailyReport", mine, t(0)).unwrap();
    let key = report_key(id);

    let mut link = Link::perfect();
    net.sync_faulty(0, t(1), &mut link).unwrap();
    net.sync_faulty(1, t(2), &mut link).unwrap();
    assert!(
        !net.hub
            .get(&key)
            .unwrap()
            .unwrap()
            .fields
            .contains_key("local_note")
    );
    assert!(
        !net.nodes[1]
            .get(&key)
            .unwrap()
            .unwrap()
            .fields
            .contains_key("local_note")
    );

    // The hub and node 1 change the report; node 0 keeps its note.
    let mut hubs = report("2025-12-12", 9);
    hubs.insert("local_note".into(), "hub secret".into());
    net.hub.put(key.clone(), hubs, t(3)).unwrap();
    net.sync_faulty(0, t(4), &mut link).unwrap();
    net.sync_faulty(1, t(4), &mut link).unwrap();
    let on_node = net.nodes[0].get(&key).unwrap().unwrap();
    assert_eq!(on_node.fields["hours"], Value::Int(9));
    assert_eq!(on_node.fields["local_note"], Value::from("node secret"));
    net.nodes[1]
        .put(key.clone(), report("2025-12-12", 10), t(5))
        .unwrap();
    net.sync_faulty(1, t(6), &mut link).unwrap();
    net.sync_faulty(0, t(7), &mut link).unwrap();
    let on_node = net.nodes[0].get(&key).unwrap().unwrap();
    assert_eq!(on_node.fields["hours"], Value::Int(10));
    assert_eq!(on_node.fields["local_note"], Value::from("node secret"));
    assert_eq!(
        net.hub.get(&key).unwrap().unwrap().fields["local_note"],
        Value::from("hub secret")
    );

    for seen in &link.log {
        let (Seen::NodeSent(_, bytes) | Seen::HubSent(_, bytes)) = seen else {
            continue;
        };
        for change in body(bytes) {
            assert!(
                !change.entity.fields.contains_key("local_note"),
                "{change:?}"
            );
        }
        let json = sync_core::json_view::envelope_to_json(bytes, &Limits::default()).unwrap();
        let text = json.to_string();
        assert!(
            !text.contains("local_note") && !text.contains("secret"),
            "{text}"
        );
    }
}

#[test]
fn sync_changes_view_shows_node_entity_operation_and_packet() {
    let mut net = Net::new(2, server_wins());
    let r = net.nodes[0]
        .insert("DailyReport", report("2025-12-12", 8), t(0))
        .unwrap();
    let l = net.nodes[0]
        .insert("DailyReportLine", line(r, "dig", 1.0), t(0))
        .unwrap();
    net.sync(0, t(1)).unwrap();
    assert!(net.nodes[0].sync_changes(hub_id(), 100).unwrap().is_empty());

    net.nodes[0]
        .put(report_key(r), report("2025-12-12", 9), t(2))
        .unwrap();
    net.nodes[0].delete(line_key(l), t(3)).unwrap();
    let r2 = net.nodes[0]
        .insert("DailyReport", report("2025-12-13", 1), t(4))
        .unwrap();
    let view = net.nodes[0].sync_changes(hub_id(), 100).unwrap();
    let rows: Vec<_> = view
        .iter()
        .map(|c| {
            (
                c.node_id,
                c.entity_type.as_str(),
                c.entity_uuid,
                c.operation,
                c.packet_no,
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            (hub_id(), "DailyReport", r, Operation::Update, None),
            (hub_id(), "DailyReportLine", l, Operation::Delete, None),
            (hub_id(), "DailyReport", r2, Operation::Insert, None),
        ]
    );
    assert!(view.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(
        net.nodes[0].sync_changes(hub_id(), 2).unwrap().len(),
        2,
        "limit"
    );

    net.nodes[0].start_sync(hub_id()).unwrap();
    let packet = net.nodes[0].poll_transmit(t(5)).unwrap().unwrap();
    let view = net.nodes[0].sync_changes(hub_id(), 100).unwrap();
    assert!(
        view.iter().all(|c| c.packet_no == Some(packet.packet_no)),
        "{view:?}"
    );

    // On the hub the changes are now owed to node 1.
    let reply = net.hub.respond(&packet.bytes, t(6)).unwrap();
    let hub_view = net.hub.sync_changes(node_id(1), 100).unwrap();
    assert!(
        hub_view
            .iter()
            .all(|c| c.node_id == node_id(1) && c.packet_no.is_none())
    );
    let mut owed: Vec<_> = hub_view
        .iter()
        .map(|c| (c.entity_uuid, format!("{:?}", c.operation)))
        .collect();
    owed.sort();
    let mut expected = vec![
        (r, "Insert".to_owned()),
        (l, "Delete".to_owned()),
        (r2, "Insert".to_owned()),
    ];
    expected.sort();
    assert_eq!(owed, expected);

    net.nodes[0].handle_incoming(&reply, t(7)).unwrap();
    assert!(net.nodes[0].sync_changes(hub_id(), 100).unwrap().is_empty());
}

#[test]
fn progress_events_report_a_large_sync() {
    let mut net = Net::with_config(1, server_wins(), |c| c.batch(5, 1 << 20));
    for i in 0..23 {
        net.nodes[0]
            .insert("DailyReport", report("2025-12-12", i), t(0))
            .unwrap();
    }
    for i in 0..12 {
        net.hub
            .insert("DailyReport", report("2025-12-13", i), t(0))
            .unwrap();
    }
    net.sync(0, t(1)).unwrap();
    let progress: Vec<_> = drain(&mut net.nodes[0])
        .into_iter()
        .filter_map(|e| match e {
            Event::Progress(p) => Some(p),
            _ => None,
        })
        .collect();
    assert!(progress.len() >= 5, "{progress:?}");
    assert!(
        progress
            .iter()
            .all(|p| p.peer == hub_id() && p.total_to_send == 23)
    );
    assert!(
        progress
            .windows(2)
            .all(|w| w[0].sent <= w[1].sent && w[0].received <= w[1].received)
    );
    let last = progress.last().unwrap();
    assert_eq!(
        (last.sent, last.received, last.remaining_to_receive),
        (23, 12, 0)
    );
    let remaining: Vec<_> = progress.iter().map(|p| p.remaining_to_receive).collect();
    assert!(
        remaining.contains(&7) && remaining.contains(&2),
        "{remaining:?}"
    );
    assert!(net.quiet());
}

#[derive(Default)]
struct Hooks {
    calls: Vec<(&'static str, EntityKey)>,
}

impl ApplyHooks for Hooks {
    fn on_create(&mut self, entity: &Entity) {
        self.calls.push(("create", entity.key.clone()));
    }
    fn on_update(&mut self, entity: &Entity) {
        self.calls.push(("update", entity.key.clone()));
    }
    fn on_delete(&mut self, entity: &Entity) {
        self.calls.push(("delete", entity.key.clone()));
    }
}

#[test]
fn apply_hooks_see_every_applied_change() {
    let mut net = Net::new(1, server_wins());
    let a = net
        .hub
        .insert("DailyReport", report("2025-12-12", 1), t(0))
        .unwrap();
    let b = net
        .hub
        .insert("DailyReport", report("2025-12-13", 2), t(0))
        .unwrap();
    let mut hooks = Hooks::default();
    net.sync(0, t(1)).unwrap();
    drain(&mut net.nodes[0])
        .iter()
        .for_each(|e| e.dispatch(&mut hooks));
    net.hub
        .put(report_key(a), report("2025-12-12", 5), t(2))
        .unwrap();
    net.hub.delete(report_key(b), t(2)).unwrap();
    net.sync(0, t(3)).unwrap();
    drain(&mut net.nodes[0])
        .iter()
        .for_each(|e| e.dispatch(&mut hooks));
    assert_eq!(
        hooks.calls,
        vec![
            ("create", report_key(a)),
            ("create", report_key(b)),
            ("update", report_key(a)),
            ("delete", report_key(b)),
        ]
    );
}

#[test]
fn applied_events_can_be_turned_off() {
    let mut net = Net::with_configs(1, server_wins(), hub_config(), |i| {
        node_config(i).applied_events(false)
    });
    net.hub
        .insert("DailyReport", report("2025-12-12", 1), t(0))
        .unwrap();
    net.sync(0, t(1)).unwrap();
    let events = drain(&mut net.nodes[0]);
    assert!(
        events.iter().all(|e| !matches!(e, Event::Applied(_))),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::SyncComplete { peer } if *peer == hub_id()))
    );
    assert_eq!(net.nodes[0].store().entity_count(), 1);
}

#[test]
fn a_new_engine_refuses_a_store_of_another_node() {
    let net = Net::new(1, server_wins());
    let store = net.snapshot_node(0);
    let result = Engine::new(store, net.registry.clone(), node_config(1), node_info(1));
    assert!(matches!(
        result,
        Err(sync_core::SyncError::WrongStore { .. })
    ));
}

/// Regression: absent declared fields used to decode as explicit nulls.
#[test]
fn absent_fields_round_trip_exactly() {
    let mut net = Net::new(1, server_wins());
    // `brigade` and `hours` are declared but absent.
    let id = net.nodes[0]
        .insert("DailyReport", record([("date", "2025-12-12".into())]), t(0))
        .unwrap();
    net.sync(0, t(1)).unwrap();
    let written = net.nodes[0].get(&report_key(id)).unwrap().unwrap();
    let arrived = net.hub.get(&report_key(id)).unwrap().unwrap();
    assert!(
        arrived.same_version(&written),
        "{:?} became {:?}",
        written.fields,
        arrived.fields
    );
    assert_eq!(arrived.content_digest(), written.content_digest());
}

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Stamped {
    date: String,
    signed_at: sync_core::Timestamp,
}

/// Regression: a `Timestamp` member used to be written as micros and read
/// back as RFC 3339 text.
#[test]
fn a_timestamp_member_round_trips_through_the_serde_bridge() {
    let ty = sync_core::EntityType::new("Stamped")
        .field("date", sync_core::FieldKind::Text)
        .field("signed_at", sync_core::FieldKind::Timestamp);
    let value = Stamped {
        date: "2025-12-12".into(),
        signed_at: t(5),
    };
    let record = sync_core::serde_bridge::to_record(&ty, &value).unwrap();
    assert_eq!(record["signed_at"], Value::Timestamp(t(5)));
    let back: Result<Stamped, _> = sync_core::serde_bridge::from_record(&ty, &record);
    assert_eq!(back.unwrap(), value);
}
