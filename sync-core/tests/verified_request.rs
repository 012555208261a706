//! The hub API in two steps: `open_request` (pure: envelope, body hash,
//! decompression) outside any lock, then `respond_verified` (the store
//! work), with the same answers as `respond_as`; and the reply packet's
//! codec following the request's.

mod common;

use common::*;
use proptest::prelude::*;
use sync_core::codec::{self, Limits};
use sync_core::packet::{Codec, Envelope, Packet};
use sync_core::{Answer, ConflictStrategy, ErrorCode, PeerError, SecurityKind, open_request};

fn decode_packet(bytes: &[u8]) -> Packet {
    match codec::decode_envelope(bytes, &Limits::default()).expect("an envelope") {
        Envelope::Packet(packet) => packet,
        Envelope::Error(e) => panic!("expected a packet, got an error envelope: {e:?}"),
        Envelope::Train(t) => panic!("expected one packet, got a train of {}", t.len()),
    }
}

fn first_packet(node: &mut MemEngine, now: sync_core::Timestamp) -> bytes::Bytes {
    node.start_sync(hub_id()).unwrap();
    node.poll_transmit(now)
        .unwrap()
        .expect("a session starts with a packet")
        .bytes
}

/// Requests of every kind a hub meets, as node 0 would send them.
fn requests(net: &mut Net) -> Vec<Vec<u8>> {
    net.nodes[0]
        .insert("DailyReport", report("2025-12-12", 8), t(0))
        .unwrap();
    let good = first_packet(&mut net.nodes[0], t(1)).to_vec();
    let mut bad_hash = decode_packet(&good);
    let mut body = bad_hash.body.to_vec();
    body[0] ^= 0xff;
    bad_hash.body = body.into();
    let bad_hash = codec::encode_envelope(&Envelope::Packet(bad_hash)).to_vec();
    let other_sender = first_packet(&mut net.nodes[1], t(1)).to_vec();
    vec![
        good.clone(),
        // The same packet again: a duplicate, acknowledged again.
        good,
        bad_hash,
        b"\x0a\x03abc".to_vec(),
        Vec::new(),
        other_sender,
    ]
}

#[test]
fn the_two_steps_answer_every_request_as_respond_as_does() {
    let mut one = Net::new(2, registry(ConflictStrategy::ServerWins));
    let mut two = Net::new(2, registry(ConflictStrategy::ServerWins));
    let sent = requests(&mut one);
    assert_eq!(sent, requests(&mut two), "the nets are the same");
    for (i, request) in sent.iter().enumerate() {
        let now = t(2 + i as i64);
        let expected = one.hub.respond_as(node_id(0), request, now).unwrap();
        let got = match open_request(request, &two.hub.config().limits) {
            Ok(verified) => two.hub.respond_verified(node_id(0), verified, now).unwrap(),
            Err(error) => two.hub.respond_unreadable(node_id(0), error, now),
        };
        assert_eq!(got, expected, "request {i}");
    }
    assert_eq!(
        one.hub.security_events().unwrap(),
        two.hub.security_events().unwrap()
    );
    assert_eq!(one.hub.peers().unwrap(), two.hub.peers().unwrap());
    assert_eq!(two.hub.store().entity_count(), 1);
}

#[test]
fn opening_a_request_needs_no_engine_and_keeps_body_failures_for_it() {
    let mut net = Net::new(2, registry(ConflictStrategy::ServerWins));
    let sent = requests(&mut net);
    let limits = Limits::default();

    let good = open_request(&sent[0], &limits).expect("a packet");
    assert_eq!(good.sender(), node_id(0));
    let header = good.packet_header().expect("a packet header");
    assert_eq!((header.packet_no, header.entity_count), (1, 1));
    assert_eq!(good.reply_codec(), Some(Codec::Zstd));

    // A damaged body opens: the engine reports it in its own order.
    let damaged = open_request(&sent[2], &limits).expect("the envelope is fine");
    let reply = net.hub.respond_verified(node_id(0), damaged, t(5)).unwrap();
    assert_eq!(reply.outcome.error, Some(ErrorCode::Corrupt));
    assert_eq!(net.hub.store().entity_count(), 0);

    // Garbage does not open; the hub answers it and logs it.
    let error = open_request(&sent[3], &limits).expect_err("garbage");
    assert!(matches!(
        error,
        PeerError::Decode { .. } | PeerError::Malformed { .. }
    ));
    let reply = net.hub.respond_unreadable(node_id(0), error, t(6));
    assert_eq!(reply.outcome.error, Some(ErrorCode::Corrupt));
    assert_eq!(reply.outcome.peer, Some(node_id(0)));
    let last = net.hub.security_events().unwrap().pop().expect("an event");
    assert_eq!(last.kind, SecurityKind::Corrupt);
    assert_eq!(net.hub.peer(node_id(0)).unwrap().received_packet_no, 0);
}

#[test]
fn a_transport_may_choose_the_reply_codec() {
    let mut net = Net::new(1, registry(ConflictStrategy::ServerWins));
    net.hub
        .insert("DailyReport", report("2025-12-13", 3), t(0))
        .unwrap();
    let request = first_packet(&mut net.nodes[0], t(1));
    let verified = open_request(&request, &Limits::default())
        .unwrap()
        .with_reply_codec(Codec::Gzip);
    assert_eq!(verified.reply_codec(), Some(Codec::Gzip));
    let reply = net
        .hub
        .respond_verified(node_id(0), verified, t(1))
        .unwrap();
    let packet = decode_packet(&reply.bytes);
    assert_eq!(packet.header.codec, Codec::Gzip);
    assert_eq!(&packet.body[..2], &[0x1f, 0x8b][..]);
    assert_eq!(packet.header.entity_count, 1);
    net.nodes[0].handle_incoming(&reply.bytes, t(1)).unwrap();
    // The hub's own configuration is untouched.
    assert_eq!(net.hub.config().codec, Codec::Zstd);
}

fn arb_codec() -> impl Strategy<Value = Codec> {
    prop_oneof![Just(Codec::None), Just(Codec::Zstd), Just(Codec::Gzip)]
}

// Feature: sync-system, Property 22: GZIP compression
proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]
    #[test]
    fn a_hub_answers_each_node_in_the_codec_the_node_writes(
        codecs in prop::collection::vec(arb_codec(), 2..4),
        hours in prop::collection::vec(0i64..24, 1..6),
    ) {
        // The hub's own codec is zstd; each node writes with its own.
        let n = codecs.len();
        let mut net = Net::with_configs(
            n,
            registry(ConflictStrategy::ServerWins),
            hub_config(),
            |i| node_config(i).codec(codecs[i]),
        );
        for (j, h) in hours.iter().enumerate() {
            let date = format!("2025-12-{:02}", 1 + j);
            net.hub.insert("DailyReport", report(&date, *h), t(0)).unwrap();
        }
        for (i, codec) in codecs.iter().enumerate() {
            let node = &mut net.nodes[i];
            node.start_sync(hub_id()).unwrap();
            let mut rounds = 0;
            while let Some(packet) = node.poll_transmit(t(1)).unwrap() {
                rounds += 1;
                prop_assert!(rounds < 20, "the session ends");
                prop_assert_eq!(decode_packet(&packet.bytes).header.codec, *codec);
                let verified = open_request(&packet.bytes, &Limits::default()).unwrap();
                let reply = net.hub.respond_verified(node_id(i), verified, t(1)).unwrap();
                prop_assert_eq!(reply.outcome.error, None);
                let answer = decode_packet(&reply.bytes);
                prop_assert_eq!(answer.header.codec, *codec);
                if *codec == Codec::Gzip {
                    prop_assert_eq!(&answer.body[..2], &[0x1f, 0x8b][..]);
                }
                node.handle_incoming(&reply.bytes, t(1)).unwrap();
            }
        }
        prop_assert!(net.converged());
        prop_assert_eq!(net.hub.config().codec, Codec::Zstd);
    }
}

#[test]
fn respond_registered_answers_registered_nodes_as_respond_verified_does() {
    let mut one = Net::new(2, registry(ConflictStrategy::ServerWins));
    let mut two = Net::new(2, registry(ConflictStrategy::ServerWins));
    let sent = requests(&mut one);
    assert_eq!(sent, requests(&mut two), "the nets are the same");
    for (i, request) in sent.iter().enumerate() {
        let now = t(2 + i as i64);
        let expected = one.hub.respond_as(node_id(0), request, now).unwrap();
        let got = match open_request(request, &two.hub.config().limits) {
            Ok(verified) => two.hub.respond_registered(node_id(0), verified, now),
            Err(error) => two
                .hub
                .respond_unreadable_registered(node_id(0), error, now),
        };
        assert_eq!(got.unwrap(), Answer::Reply(expected), "request {i}");
    }
    assert_eq!(
        one.hub.security_events().unwrap(),
        two.hub.security_events().unwrap()
    );
    assert_eq!(one.hub.peers().unwrap(), two.hub.peers().unwrap());
    assert_eq!(two.hub.store().entity_count(), 1);
}

#[test]
fn respond_registered_refuses_unknown_and_revoked_nodes_first_and_records_nothing() {
    let mut net = Net::new(3, registry(ConflictStrategy::ServerWins));
    // Node 2 is known to the net's nodes but revoked at the hub; node 9 was
    // never registered there.
    net.hub.revoke_peer(node_id(2)).unwrap();
    let mut stranger = MemEngine::new(
        sync_store_memory::MemoryStore::new(),
        registry(ConflictStrategy::ServerWins),
        node_config(9),
        node_info(9),
    )
    .unwrap();
    stranger.register_peer(hub_info()).unwrap();
    stranger
        .insert("DailyReport", report("2025-12-14", 2), t(0))
        .unwrap();
    net.nodes[2]
        .insert("DailyReport", report("2025-12-15", 4), t(0))
        .unwrap();
    let revoked = first_packet(&mut net.nodes[2], t(1));
    let unknown = first_packet(&mut stranger, t(1));
    // A packet naming another recipient: the registration is checked first.
    let mut misaddressed = decode_packet(&revoked);
    misaddressed.header.recipient = node_id(1);
    let misaddressed = codec::encode_envelope(&Envelope::Packet(misaddressed));
    let limits = Limits::default();
    let before = net.hub.security_events().unwrap();
    let peers = net.hub.peers().unwrap();

    let answer = |net: &mut Net, node, bytes: &[u8]| match open_request(bytes, &limits) {
        Ok(verified) => net.hub.respond_registered(node, verified, t(2)).unwrap(),
        Err(error) => net
            .hub
            .respond_unreadable_registered(node, error, t(2))
            .unwrap(),
    };
    assert_eq!(answer(&mut net, node_id(2), &revoked), Answer::RevokedNode);
    assert_eq!(
        answer(&mut net, node_id(2), &misaddressed),
        Answer::RevokedNode
    );
    assert_eq!(answer(&mut net, node_id(9), &unknown), Answer::UnknownNode);
    // Requests that apply no packet of the node: garbage, another sender's
    // packet.
    assert_eq!(
        answer(&mut net, node_id(9), b"\x0a\x03abc"),
        Answer::UnknownNode
    );
    assert_eq!(answer(&mut net, node_id(2), &unknown), Answer::RevokedNode);

    assert_eq!(net.hub.security_events().unwrap(), before, "nothing logged");
    assert_eq!(net.hub.peers().unwrap(), peers, "no peer state changed");
    assert_eq!(net.hub.store().entity_count(), 0);
    // The same packet through the engine's own check is refused and logged.
    let reply = net.hub.respond_as(node_id(2), &revoked, t(3)).unwrap();
    assert_eq!(reply.outcome.error, Some(ErrorCode::UnknownNode));
    assert_eq!(
        net.hub.security_events().unwrap().pop().map(|e| e.kind),
        Some(SecurityKind::RevokedSender)
    );
}
