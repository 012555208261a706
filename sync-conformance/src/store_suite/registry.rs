//! Node registry cases: the local node, peers and their persisted counters.

use sync_core::{InFlight, NodeId, NodeInfo, PeerState, Role, Store, StoreTxn, Uuid};

use super::{abandon, read, write};
use crate::fixtures::{hub_info, node_info, t};

/// A peer state with every field away from its default.
pub fn busy_peer(info: NodeInfo) -> PeerState {
    let mut peer = PeerState::new(info);
    peer.revoked = true;
    peer.sent_packet_no = 41;
    peer.received_packet_no = 17;
    peer.received_digest = [7; 32];
    peer.peer_ack_high = 16;
    peer.acked_seq = 1_000;
    peer.resend_own_upto = 900;
    peer.in_flight = (39..=41)
        .map(|n| InFlight {
            packet_no: n,
            upto_seq: 1_000 + n,
            digest: [n as u8; 32],
            resync: n == 40,
        })
        .collect();
    peer.resync_requested = true;
    peer.last_sync_in = Some(t(5));
    peer.last_sync_out = Some(t(6));
    peer.schema_version = Some("1.4.2".into());
    peer
}

/// A new store has no local node.
pub fn empty_store_has_no_local_node<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    assert_eq!(
        read(&mut store, |txn| txn.local_node().expect("local_node")),
        None
    );
    assert!(read(&mut store, |txn| txn.peers().expect("peers")).is_empty());
}

/// `set_local_node` is read back whole, in the same and in later
/// transactions.
pub fn set_local_node_round_trips<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    let me = NodeInfo::new(
        NodeId(Uuid::from_u128(u128::MAX - 3)),
        "DESKTOP-ÄÖÜ-1",
        "Desktop \"one\" 🚀",
        Role::Node,
    );
    write(&mut store, |txn| {
        txn.set_local_node(&me).expect("set_local_node");
        assert_eq!(txn.local_node().expect("local_node"), Some(me.clone()));
    });
    assert_eq!(
        read(&mut store, |txn| txn.local_node().expect("local_node")),
        Some(me)
    );
}

/// Asking for a peer that was never stored gives `None`.
pub fn unknown_peer_is_none<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    write(&mut store, |txn| {
        txn.put_peer(&PeerState::new(node_info(1)))
            .expect("put_peer")
    });
    let missing = read(&mut store, |txn| txn.peer(node_info(2).id).expect("peer"));
    assert_eq!(missing, None);
}

/// Every field of a peer state survives a commit, including the in-flight
/// list in order.
pub fn put_peer_round_trips_every_field<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    let peer = busy_peer(hub_info());
    write(&mut store, |txn| txn.put_peer(&peer).expect("put_peer"));
    let back = read(&mut store, |txn| txn.peer(peer.id()).expect("peer"));
    assert_eq!(back, Some(peer.clone()));
    let fresh = PeerState::new(node_info(3));
    write(&mut store, |txn| txn.put_peer(&fresh).expect("put_peer"));
    let back = read(&mut store, |txn| txn.peer(fresh.id()).expect("peer"));
    assert_eq!(
        back,
        Some(fresh),
        "defaults (None, zeros, empty) survive too"
    );
}

/// `put_peer` replaces the stored state whole (fields set back to defaults
/// included).
pub fn put_peer_replaces_existing<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    write(&mut store, |txn| {
        txn.put_peer(&busy_peer(node_info(1))).expect("put_peer")
    });
    let mut replaced = PeerState::new(node_info(1));
    replaced.info.name = "Renamed".into();
    replaced.sent_packet_no = 2;
    write(&mut store, |txn| txn.put_peer(&replaced).expect("put_peer"));
    let peers = read(&mut store, |txn| txn.peers().expect("peers"));
    assert_eq!(peers, vec![replaced], "one peer, the replacement");
}

/// `peers` lists every peer in id order, whatever the insertion order.
pub fn peers_are_ordered_by_id<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    let order = [7usize, 2, 9, 0, 5, 1, 8, 3, 6, 4];
    write(&mut store, |txn| {
        for i in order {
            txn.put_peer(&PeerState::new(node_info(i)))
                .expect("put_peer");
        }
        // Ids that sort differently as bytes and as text.
        for raw in [u128::MAX, 1, 0x8000_0000_0000_0000_0000_0000_0000_0000] {
            let info = NodeInfo::new(NodeId(Uuid::from_u128(raw)), "X", "X", Role::Node);
            txn.put_peer(&PeerState::new(info)).expect("put_peer");
        }
    });
    let ids: Vec<NodeId> = read(&mut store, |txn| txn.peers().expect("peers"))
        .iter()
        .map(PeerState::id)
        .collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids.len(), 13);
    assert_eq!(ids, sorted);
}

/// Packet bookkeeping as the engine does it: one transaction per packet
/// sent and per packet received (with its acknowledgement), each compared
/// with a model after reading it back.
pub fn peer_state_survives_many_updates<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    let mut model = PeerState::new(hub_info());
    write(&mut store, |txn| txn.put_peer(&model).expect("put_peer"));
    for n in 1..=40u64 {
        model.sent_packet_no = n;
        model.last_sync_out = Some(t(n as i64));
        model.in_flight.push(InFlight {
            packet_no: n,
            upto_seq: n * 10,
            digest: [n as u8; 32],
            resync: n % 7 == 0,
        });
        if model.in_flight.len() > 4 {
            model.in_flight.remove(0);
        }
        write(&mut store, |txn| txn.put_peer(&model).expect("put_peer"));
        model.received_packet_no = n;
        model.received_digest = [n as u8 ^ 0xFF; 32];
        if n % 3 == 0 {
            model.acked_seq = (n - 1) * 10;
            model.in_flight.retain(|f| f.packet_no >= n);
        }
        write(&mut store, |txn| {
            let stored = txn.peer(model.id()).expect("peer").expect("stored");
            assert_eq!(stored.sent_packet_no, n, "the send was committed");
            txn.put_peer(&model).expect("put_peer");
        });
        let back = read(&mut store, |txn| txn.peer(model.id()).expect("peer"));
        assert_eq!(back.as_ref(), Some(&model), "after packet {n}");
    }
}

/// Driver metadata: stored bytes come back whole, `None` removes a key, and
/// a prefix lists exactly the keys that start with it, in key order.
pub fn meta_round_trips_and_lists_by_prefix<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    assert_eq!(
        read(&mut store, |txn| txn.meta("http/key/1").expect("meta")),
        None
    );
    write(&mut store, |txn| {
        txn.put_meta("http/key/2", Some(&[0, 255, 7])).expect("put");
        txn.put_meta("http/key/1", Some(b"first")).expect("put");
        txn.put_meta("http/keys", Some(b"not under the prefix"))
            .expect("put");
        txn.put_meta("file/pair/x", Some(&[])).expect("put");
        txn.put_meta("http/key/1", Some(b"replaced")).expect("put");
    });
    assert_eq!(
        read(&mut store, |txn| txn.meta("http/key/1").expect("meta")),
        Some(b"replaced".to_vec())
    );
    assert_eq!(
        read(&mut store, |txn| txn.meta("file/pair/x").expect("meta")),
        Some(Vec::new()),
        "an empty value is a value, not an absent key"
    );
    assert_eq!(
        read(&mut store, |txn| txn
            .meta_with_prefix("http/key/")
            .expect("prefix")),
        vec![
            ("http/key/1".to_owned(), b"replaced".to_vec()),
            ("http/key/2".to_owned(), vec![0, 255, 7]),
        ]
    );
    write(&mut store, |txn| {
        txn.put_meta("http/key/1", None).expect("remove")
    });
    assert_eq!(
        read(&mut store, |txn| txn.meta("http/key/1").expect("meta")),
        None
    );
    assert_eq!(
        read(&mut store, |txn| txn
            .meta_with_prefix("http/")
            .expect("prefix"))
        .len(),
        2
    );
}

/// Metadata written in a transaction that is dropped is gone, and a removal
/// in a dropped transaction leaves the value in place.
pub fn dropped_txn_discards_meta<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    write(&mut store, |txn| {
        txn.put_meta("kept", Some(b"v1")).expect("put")
    });
    abandon(&mut store, |txn| {
        txn.put_meta("new", Some(b"x")).expect("put");
        txn.put_meta("kept", None).expect("remove");
    });
    assert_eq!(read(&mut store, |txn| txn.meta("new").expect("meta")), None);
    assert_eq!(
        read(&mut store, |txn| txn.meta("kept").expect("meta")),
        Some(b"v1".to_vec())
    );
}

/// A peer's packet lists (in flight, sent digests) read back exactly after
/// every kind of change the engine makes to them: appends, drops from the
/// front, a pinned first entry, a clear, a trim to the history length, and
/// an entry replaced under the same packet number.
pub fn peer_lists_read_back_after_any_change<S: Store>(make: impl Fn() -> S) {
    use sync_core::node_registry::SentDigest;
    let mut store = make();
    let mut model = PeerState::new(hub_info());
    let flight = |n: u64, salt: u8| InFlight {
        packet_no: n,
        upto_seq: n * 3 + u64::from(salt),
        digest: [n as u8 ^ salt; 32],
        resync: n % 5 == 0,
    };
    for step in 1..=150u64 {
        match step % 17 {
            // A restore: the numbering moves on and the window is emptied.
            0 => {
                model.in_flight.clear();
                model.sent_packet_no += 10;
            }
            // The newest entry replaced by another under the same number.
            7 => {
                if let Some(last) = model.in_flight.last_mut() {
                    *last = flight(last.packet_no, 0x55);
                }
                if let Some(last) = model.sent_digests.last_mut() {
                    last.digest = [0x55; 32];
                }
            }
            _ => {
                model.sent_packet_no += 1;
                let n = model.sent_packet_no;
                model.in_flight.push(flight(n, 0));
                model.sent_digests.push(SentDigest {
                    packet_no: n,
                    digest: [n as u8; 32],
                });
                let excess = model.sent_digests.len().saturating_sub(64);
                model.sent_digests.drain(..excess);
                // Keep the first entry pinned, drop the next ones.
                if model.in_flight.len() > 6 {
                    model.in_flight.remove(1);
                }
                if step % 4 == 0 {
                    let ack = model.sent_packet_no - 2;
                    model.in_flight.retain(|f| f.packet_no > ack);
                }
            }
        }
        write(&mut store, |txn| txn.put_peer(&model).expect("put_peer"));
        let back = read(&mut store, |txn| txn.peer(model.id()).expect("peer"));
        assert_eq!(back.as_ref(), Some(&model), "after step {step}");
    }
}
