//! Property test of queue integrity: under any sequence of queue operations
//! (writes, coalescing, failed transactions, packet builds, deliveries,
//! losses, duplicates, corrupted replies, restarts) node 0's queue for the
//! hub equals a simple reference model and is never corrupted.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use proptest::prelude::*;
use sync_core::{
    ConflictStrategy, EntityKey, LocalWrite, Operation, PeerError, SyncError, Timestamp, Uuid,
    WriteError,
};

fn server_wins() -> sync_core::EntityRegistry {
    registry(ConflictStrategy::ServerWins)
}

// --- queue integrity --------------------------------------------------------------

/// One operation on the queue of node 0 towards the hub.
#[derive(Clone, Debug)]
enum QueueOp {
    Put(u8, i16),
    Delete(u8),
    /// A batch whose last write is invalid: the transaction rolls back.
    FailedBatch(u8),
    /// A packet is built (and kept "in the air").
    Build,
    Deliver(usize),
    Duplicate(usize),
    Lose(usize),
    DeliverReply(usize),
    DuplicateReply(usize),
    LoseReply(usize),
    CorruptReply(usize),
    HubPut(u8),
    Restart,
}

fn arb_queue_op() -> impl Strategy<Value = QueueOp> {
    type Index = usize;
    prop_oneof![
        4 => (any::<u8>(), any::<i16>()).prop_map(|(k, h)| QueueOp::Put(k, h)),
        1 => any::<u8>().prop_map(QueueOp::Delete),
        1 => any::<u8>().prop_map(QueueOp::FailedBatch),
        3 => Just(QueueOp::Build),
        2 => any::<Index>().prop_map(QueueOp::Deliver),
        1 => any::<Index>().prop_map(QueueOp::Duplicate),
        1 => any::<Index>().prop_map(QueueOp::Lose),
        2 => any::<Index>().prop_map(QueueOp::DeliverReply),
        1 => any::<Index>().prop_map(QueueOp::DuplicateReply),
        1 => any::<Index>().prop_map(QueueOp::LoseReply),
        1 => any::<Index>().prop_map(QueueOp::CorruptReply),
        1 => any::<u8>().prop_map(QueueOp::HubPut),
        1 => Just(QueueOp::Restart),
    ]
}

/// The reference model of node 0's queue for the hub: which of its own
/// writes the hub is still owed, and the packets that may acknowledge them.
#[derive(Debug, Default)]
struct QueueModel {
    /// Local writes so far.
    clock: u64,
    /// key -> (order of its latest write, order of its first write, deleted).
    keys: BTreeMap<Uuid, (u64, u64, bool)>,
    /// Everything written up to this order is acknowledged.
    acked: u64,
    sent: u64,
    received: u64,
    /// (packet number, covers writes up to this order), oldest first.
    in_flight: Vec<(u64, u64)>,
    /// Node 0's open question to the hub after a gap in the hub's
    /// numbering: (the hub packet to confirm, node 0's first packet that
    /// carries the question).
    gap_check: Option<(u64, u64)>,
}

/// What node 0 does with a reply from the hub.
#[derive(Debug, PartialEq, Eq)]
enum Reception {
    /// Already received: ignored.
    Duplicate,
    /// After a second gap while node 0's question is open: it waits (not
    /// applied, not acknowledged) until the hub has seen the question.
    Waits,
    Applied,
}

/// The parts of a reply's header the model reacts to.
struct ReplyHeader {
    packet_no: u64,
    ack: u64,
    /// The reply carries the hub's own gap question.
    hub_asks: bool,
    resync: bool,
}

const BATCH: usize = 3;
const IN_FLIGHT: usize = 16;

impl QueueModel {
    fn write(&mut self, key: Uuid, deleted: bool) {
        self.clock += 1;
        let first = self.keys.get(&key).map_or(self.clock, |k| k.1);
        self.keys.insert(key, (self.clock, first, deleted));
    }

    /// Pending keys by write order.
    fn pending(&self) -> Vec<(u64, Uuid)> {
        let mut out: Vec<_> = self
            .keys
            .iter()
            .filter(|(_, k)| k.0 > self.acked)
            .map(|(id, k)| (k.0, *id))
            .collect();
        out.sort();
        out
    }

    /// A packet is built: the first `BATCH` pending keys.
    fn build(&mut self) -> (BTreeSet<Uuid>, bool) {
        let pending = self.pending();
        let more = pending.len() > BATCH;
        let upto = if more {
            pending[BATCH - 1].0
        } else {
            self.clock
        };
        self.sent += 1;
        self.in_flight.push((self.sent, upto));
        if self.in_flight.len() > IN_FLIGHT {
            self.in_flight.remove(0);
        }
        (pending.iter().take(BATCH).map(|p| p.1).collect(), more)
    }

    /// A reply arrives. The rule (spec: a question after a gap is never
    /// replaced before it is answered): a fresh reply after a gap waits
    /// while node 0's question is open, unless it carries the hub's own
    /// question (the hub's goes first) or resets the pair.
    fn receive(&mut self, h: &ReplyHeader) -> Reception {
        if h.packet_no <= self.received {
            return Reception::Duplicate;
        }
        let after_gap = h.packet_no > self.received + 1;
        let open = self
            .gap_check
            .is_some_and(|(_, announced)| h.ack < announced);
        if open && after_gap && !h.hub_asks && !h.resync {
            return Reception::Waits;
        }
        let mut confirmed = None;
        if let Some((asked, announced)) = self.gap_check {
            if h.ack >= announced {
                self.gap_check = None;
                confirmed = Some(asked);
            }
        }
        if let Some(&(_, upto)) = self.in_flight.iter().find(|f| f.0 == h.ack) {
            self.acked = self.acked.max(upto);
            self.in_flight.retain(|f| f.0 > h.ack);
        }
        if self.received > 0
            && after_gap
            && confirmed != Some(self.received)
            && self.gap_check.is_none()
        {
            self.gap_check = Some((self.received, self.sent + 1));
        }
        self.received = h.packet_no;
        Reception::Applied
    }
}

fn node_key(k: u8) -> EntityKey {
    report_key(Uuid::from_u128(0x100 + u128::from(k % 5)))
}

fn hub_key(k: u8) -> EntityKey {
    report_key(Uuid::from_u128(0x200 + u128::from(k % 3)))
}

/// Checks node 0's queue, `sync_changes` view and counters against `model`.
fn check_queue(node: &mut MemEngine, model: &QueueModel) -> Result<(), TestCaseError> {
    let pending = model.pending();
    prop_assert_eq!(node.pending_count(hub_id()).unwrap(), pending.len() as u64);
    let view = node.sync_changes(hub_id(), usize::MAX).unwrap();
    let ids: Vec<Uuid> = view.iter().map(|c| c.entity_uuid).collect();
    let expected: Vec<Uuid> = pending.iter().map(|p| p.1).collect();
    prop_assert_eq!(ids, expected, "same changes, same order");
    for (row, (order, id)) in view.iter().zip(&pending) {
        let (_, first, deleted) = model.keys[id];
        let operation = if deleted {
            Operation::Delete
        } else if first > model.acked {
            Operation::Insert
        } else {
            Operation::Update
        };
        prop_assert_eq!(row.operation, operation);
        let carried_by = model.in_flight.iter().find(|f| f.1 >= *order).map(|f| f.0);
        prop_assert_eq!(row.packet_no, carried_by);
    }
    let hub = node.peer(hub_id()).unwrap();
    prop_assert_eq!(
        (hub.sent_packet_no, hub.received_packet_no),
        (model.sent, model.received)
    );
    prop_assert_eq!(
        hub.gap_check.map(|g| (g.packet_no, g.announced_in)),
        model.gap_check
    );
    let numbers: Vec<u64> = hub.in_flight.iter().map(|f| f.packet_no).collect();
    prop_assert_eq!(
        numbers,
        model.in_flight.iter().map(|f| f.0).collect::<Vec<_>>()
    );
    Ok(())
}

/// Plays one queue operation on the engines and the model.
fn play(
    net: &mut Net,
    model: &mut QueueModel,
    air: &mut [Vec<bytes::Bytes>; 2],
    op: &QueueOp,
    now: Timestamp,
) -> Result<(), TestCaseError> {
    let node = &mut net.nodes[0];
    match op {
        QueueOp::Put(k, h) => {
            node.put(node_key(*k), report("2025-12-12", (*h).into()), now)
                .unwrap();
            model.write(node_key(*k).id, false);
        }
        QueueOp::Delete(k) => match node.delete(node_key(*k), now) {
            Ok(()) => model.write(node_key(*k).id, true),
            Err(e) => prop_assert!(
                matches!(e, SyncError::Write(WriteError::NotFound(_))),
                "{:?}",
                e
            ),
        },
        QueueOp::FailedBatch(k) => {
            let mut bad = report("2025-12-12", 1);
            bad.insert("no_such_field".into(), 1.into());
            let writes = vec![
                LocalWrite::Put {
                    key: node_key(*k),
                    fields: report("2025-12-12", 2),
                },
                LocalWrite::Put {
                    key: node_key(k.wrapping_add(1)),
                    fields: bad,
                },
            ];
            let err = node.write_batch(writes, now).unwrap_err();
            prop_assert!(
                matches!(err, SyncError::Write(WriteError::UnknownField { .. })),
                "{:?}",
                err
            );
        }
        QueueOp::Build => {
            let packet = node.build_packet(hub_id(), now).unwrap();
            let (keys, more) = model.build();
            prop_assert_eq!(packet.packet_no, model.sent);
            prop_assert_eq!(packet.more, more);
            let carried: BTreeSet<Uuid> =
                keys_in(&packet.bytes).into_iter().map(|k| k.id).collect();
            prop_assert_eq!(carried, keys);
            air[0].push(packet.bytes);
        }
        QueueOp::Deliver(i) | QueueOp::Duplicate(i) | QueueOp::Lose(i) if !air[0].is_empty() => {
            let at = i % air[0].len();
            let request = if matches!(op, QueueOp::Duplicate(_)) {
                air[0][at].clone()
            } else {
                air[0].remove(at)
            };
            if !matches!(op, QueueOp::Lose(_)) {
                air[1].push(net.hub.respond(&request, now).unwrap());
            }
        }
        QueueOp::DeliverReply(i)
        | QueueOp::DuplicateReply(i)
        | QueueOp::LoseReply(i)
        | QueueOp::CorruptReply(i)
            if !air[1].is_empty() =>
        {
            let at = i % air[1].len();
            let keep = matches!(op, QueueOp::DuplicateReply(_) | QueueOp::CorruptReply(_));
            let reply = if keep {
                air[1][at].clone()
            } else {
                air[1].remove(at)
            };
            match op {
                QueueOp::LoseReply(_) => {}
                QueueOp::CorruptReply(_) => {
                    let err = node
                        .handle_incoming(&flip_body_byte(&reply, at), now)
                        .unwrap_err();
                    prop_assert!(
                        matches!(err, SyncError::Peer(PeerError::BodyHashMismatch { .. })),
                        "{:?}",
                        err
                    );
                }
                _ => {
                    let h = header(&reply);
                    let incoming = node.handle_incoming(&reply, now).unwrap();
                    let seen = match (incoming.duplicate, incoming.skipped) {
                        (true, _) => Reception::Duplicate,
                        (false, true) => Reception::Waits,
                        (false, false) => Reception::Applied,
                    };
                    let expected = model.receive(&ReplyHeader {
                        packet_no: h.packet_no,
                        ack: h.ack_packet_no,
                        hub_asks: h.gap_check_packet_no != 0,
                        resync: h.resync,
                    });
                    prop_assert_eq!(seen, expected);
                    prop_assert!(!incoming.reinitialized);
                }
            }
        }
        QueueOp::HubPut(k) => net
            .hub
            .put(hub_key(*k), report("2025-12-14", 1), now)
            .unwrap(),
        QueueOp::Restart => net.restart_node(0),
        _ => {}
    }
    Ok(())
}

// Feature: sync-system, Property 37: Queue integrity maintenance
proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]
    #[test]
    fn the_queue_matches_a_reference_model_under_any_operations(
        ops in prop::collection::vec(arb_queue_op(), 1..60),
    ) {
        // One packet per message: the model numbers packets one build at a
        // time (trains have their own tests in properties_sync).
        let mut net = Net::with_config(1, server_wins(), |c| c.batch(BATCH, 1 << 20).pipeline(1));
        let mut model = QueueModel::default();
        let mut air: [Vec<bytes::Bytes>; 2] = [Vec::new(), Vec::new()];
        for (i, op) in ops.iter().enumerate() {
            play(&mut net, &mut model, &mut air, op, t(i as i64))?;
            check_queue(&mut net.nodes[0], &model)?;
            assert_no_dangling(&mut net.hub);
        }
        // Then a clean link empties the queue and the hub holds every write.
        for _ in 0..20 {
            if model.pending().is_empty() {
                break;
            }
            play(&mut net, &mut model, &mut air, &QueueOp::Build, t(1_000))?;
            let last = air[0].len() - 1;
            play(&mut net, &mut model, &mut air, &QueueOp::Deliver(last), t(1_000))?;
            let last = air[1].len() - 1;
            play(&mut net, &mut model, &mut air, &QueueOp::DeliverReply(last), t(1_000))?;
            check_queue(&mut net.nodes[0], &model)?;
        }
        prop_assert!(model.pending().is_empty());
        for id in model.keys.keys() {
            let key = report_key(*id);
            prop_assert_eq!(net.hub.get(&key).unwrap(), net.nodes[0].get(&key).unwrap());
        }
    }
}
