//! Scenario tests of crashes and of a node or the hub restored from an older
//! backup of its store: the restore is detected, the pair re-initialized, and
//! nothing another engine still holds is lost; plus a seeded random search
//! over backups, restores, writes and faulty syncs.

mod common;

use common::*;
use sync_core::{ConflictStrategy, Event, SecurityKind};

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

// --- crashes and restores --------------------------------------------------------------

#[test]
fn a_node_that_crashes_mid_session_recovers() {
    let mut net = Net::new(1, server_wins());
    let id = net.nodes[0]
        .insert("DailyReport", report("2025-12-12", 1), t(0))
        .unwrap();
    net.hub
        .insert("DailyReport", report("2025-12-13", 2), t(0))
        .unwrap();
    net.nodes[0].start_sync(hub_id()).unwrap();
    let packet = net.nodes[0].poll_transmit(t(1)).unwrap().unwrap();
    net.restart_node(0);
    assert!(!net.nodes[0].is_syncing(hub_id()));
    assert_eq!(net.nodes[0].poll_timeout(), None, "timers are volatile");
    let reply = net.hub.respond(&packet.bytes, t(2)).unwrap();
    net.nodes[0].handle_incoming(&reply, t(2)).unwrap();
    net.sync(0, t(3)).unwrap();
    assert!(net.converged());
    assert!(net.quiet());
    assert!(net.hub.get(&report_key(id)).unwrap().is_some());
}

fn reinitialized_peers(engine: &mut MemEngine) -> Vec<sync_core::NodeId> {
    drain(engine)
        .into_iter()
        .filter_map(|e| match e {
            Event::PairReinitialized { peer, .. } => Some(peer),
            _ => None,
        })
        .collect()
}

#[test]
fn a_node_restored_from_an_old_backup_is_detected_and_keeps_its_new_changes() {
    let mut net = Net::new(2, server_wins());
    let a = net.nodes[0]
        .insert("DailyReport", report("2025-12-01", 1), t(0))
        .unwrap();
    net.sync(0, t(1)).unwrap();
    let backup = net.snapshot_node(0);

    let b = net.nodes[0]
        .insert("DailyReport", report("2025-12-02", 2), t(2))
        .unwrap();
    let h = net
        .hub
        .insert("DailyReport", report("2025-12-03", 3), t(2))
        .unwrap();
    net.sync(0, t(3)).unwrap();
    assert!(net.nodes[0].get(&report_key(h)).unwrap().is_some());

    net.restore_node(0, backup);
    assert!(net.nodes[0].get(&report_key(b)).unwrap().is_none());
    assert!(net.nodes[0].get(&report_key(h)).unwrap().is_none());
    let c = net.nodes[0]
        .insert("DailyReport", report("2025-12-04", 4), t(4))
        .unwrap();
    drain(&mut net.hub);

    net.sync(0, t(5)).unwrap();
    let on_node = reinitialized_peers(&mut net.nodes[0]);
    let on_hub = reinitialized_peers(&mut net.hub);
    assert!(
        !on_node.is_empty() || !on_hub.is_empty(),
        "the restore is detected"
    );
    assert!(on_node.iter().all(|p| *p == hub_id()) && on_hub.iter().all(|p| *p == node_id(0)));
    assert!(
        security_kinds(&mut net.hub).contains(&SecurityKind::RestoreDetected)
            || security_kinds(&mut net.nodes[0]).contains(&SecurityKind::RestoreDetected)
    );

    net.sync_all(t(6)).unwrap();
    for engine in std::iter::once(&mut net.hub).chain(net.nodes.iter_mut()) {
        for id in [a, b, c, h] {
            assert!(
                engine.get(&report_key(id)).unwrap().is_some(),
                "{} lacks {id}",
                engine.local_node().code
            );
        }
    }
    assert!(net.converged());
    assert!(net.quiet());
}

#[test]
fn a_node_restored_before_its_first_sync_is_detected() {
    let mut net = Net::new(1, server_wins());
    let backup = net.snapshot_node(0);
    let a = net.nodes[0]
        .insert("DailyReport", report("2025-12-01", 1), t(0))
        .unwrap();
    let h = net
        .hub
        .insert("DailyReport", report("2025-12-02", 2), t(0))
        .unwrap();
    net.sync(0, t(1)).unwrap();
    net.restore_node(0, backup);
    let c = net.nodes[0]
        .insert("DailyReport", report("2025-12-03", 3), t(2))
        .unwrap();
    net.sync(0, t(3)).unwrap();
    net.sync(0, t(4)).unwrap();
    for engine in [&mut net.hub, &mut net.nodes[0]] {
        for id in [a, c, h] {
            assert!(
                engine.get(&report_key(id)).unwrap().is_some(),
                "{} lacks {id}",
                engine.local_node().code
            );
        }
    }
    assert!(net.converged());
    assert!(net.quiet());
}

/// Regression: a restored node whose first packet after the restore was lost
/// used to go undetected and never got back its own earlier changes.
#[test]
fn a_restored_node_whose_first_packet_is_lost_is_detected() {
    let mut net = Net::new(1, server_wins());
    let backup = net.snapshot_node(0);
    let a = net.nodes[0]
        .insert("DailyReport", report("2025-12-01", 1), t(0))
        .unwrap();
    net.sync(0, t(1)).unwrap(); // the hub has A (received packet 1)
    net.restore_node(0, backup); // node 0 forgets A and that it sent packet 1
    drain(&mut net.hub);

    net.nodes[0].start_sync(hub_id()).unwrap();
    let lost = net.nodes[0].poll_transmit(t(2)).unwrap().unwrap();
    assert_eq!(lost.packet_no, 1); // this one would have been a duplicate
    let deadline = net.nodes[0].poll_timeout().unwrap();
    net.nodes[0].handle_timeout(deadline);
    let retry = net.nodes[0].poll_transmit(deadline).unwrap().unwrap();
    assert_eq!(retry.packet_no, 2); // fresh to the hub: nothing is detected
    let reply = net.hub.respond(&retry.bytes, deadline).unwrap();
    net.nodes[0].handle_incoming(&reply, deadline).unwrap();
    net.sync_all(t(10)).unwrap();

    assert!(net.hub.get(&report_key(a)).unwrap().is_some());
    assert!(
        net.nodes[0].get(&report_key(a)).unwrap().is_some(),
        "node 0 never gets back the change it wrote after its backup"
    );
    assert!(net.converged());
}

/// Regression (simulator seed 5278): a node restored from a backup older
/// than a packet the hub applied renumbers from there; when its renumbered
/// packets are lost across two gaps, the hub's question about the packet
/// before the first gap must survive the second gap, or the restore goes
/// unseen and the node never gets back its own change the hub holds. The
/// packet after the second gap waits (not applied, not acknowledged) until
/// the question is answered.
#[test]
fn a_restore_hidden_behind_two_gaps_is_seen() {
    restore_across_two_gaps(false);
}

/// Regression (simulator seed 5816): as above, but the packet after the
/// second gap also carries a question of the node's own (the node saw a gap
/// in the hub's numbering). Before, such a packet never waited, so that two
/// sides asking at once could not wait for each other; the hub applied it
/// and replaced its question with one about the node's newest packet, which
/// the restored node confirmed, and the restore went unseen. Now the hub's
/// question goes first: the node's packet waits at the hub, and the node
/// never holds back a hub packet carrying the hub's question.
#[test]
fn a_restore_is_seen_when_both_sides_ask_at_once() {
    restore_across_two_gaps(true);
}

/// Node 0, restored from a backup older than the packet the hub holds,
/// renumbers from 1; its packets 1, 2 and 4 are lost, and so is the hub's
/// reply to packet 3, which asks about packet 1. Packet 5 must wait at the
/// hub and the question must stay, so node 0 sees it was restored. With
/// `node_asks`, packet 5 also asks about the hub's lost reply, as a node
/// that saw a gap in the hub's numbering would.
fn restore_across_two_gaps(node_asks: bool) {
    let mut net = Net::new(1, server_wins());
    let backup = net.snapshot_node(0);
    let a = net.nodes[0]
        .insert("DailyReport", report("2025-12-01", 1), t(0))
        .unwrap();
    net.sync(0, t(1)).unwrap(); // the hub holds packet 1 from node 0, with A
    net.restore_node(0, backup); // node 0 forgets A and that it sent packet 1
    drain(&mut net.hub);
    let b = net.nodes[0]
        .insert("DailyReport", report("2025-12-02", 2), t(2))
        .unwrap();

    net.nodes[0].start_sync(hub_id()).unwrap();
    let mut now = t(3);
    let mut lost_reply = None;
    for packet_no in 1..=5 {
        let transmit = net.nodes[0].poll_transmit(now).unwrap().unwrap();
        assert_eq!(transmit.packet_no, packet_no);
        match packet_no {
            // After the first gap (1 to 3): applied, and the hub asks about
            // its packet 1; the reply with the question is lost.
            3 => {
                let reply = net.hub.respond(&transmit.bytes, now).unwrap();
                assert_eq!(header(&reply).ack_packet_no, 3);
                lost_reply = Some(reply);
            }
            // After a second gap (3 to 5), before node 0 saw the question:
            // it waits, and the reply asks again.
            5 => {
                let sent = match (node_asks, &lost_reply) {
                    (true, Some(lost)) => {
                        let lost = header(lost);
                        rewrite_header(&transmit.bytes, |h| {
                            h.gap_check_packet_no = lost.packet_no;
                            h.gap_check_digest = sync_core::codec::packet_digest(&lost);
                        })
                    }
                    _ => transmit.bytes.clone(),
                };
                let reply = net.hub.respond(&sent, now).unwrap();
                let answer = header(&reply);
                assert_eq!(answer.ack_packet_no, 3, "packet 5 waits");
                assert_eq!(answer.gap_check_packet_no, 1, "the question stays");
                net.nodes[0].handle_incoming(&reply, now).unwrap();
            }
            _ => {} // lost
        }
        let deadline = net.nodes[0].poll_timeout().unwrap_or(now);
        net.nodes[0].handle_timeout(deadline);
        now = deadline;
    }
    assert_eq!(
        reinitialized_peers(&mut net.nodes[0]),
        [hub_id()],
        "node 0 sees it was restored"
    );
    net.sync_all(t(100)).unwrap();
    assert!(net.hub.get(&report_key(b)).unwrap().is_some());
    assert!(
        net.nodes[0].get(&report_key(a)).unwrap().is_some(),
        "node 0 never gets back the change it wrote after its backup"
    );
    assert!(net.converged());
    assert!(net.quiet());
}

/// Regression (simulator seed 7018): a change the hub parked for its parent
/// and applied only after the sender was restored from an older backup was
/// never sent back to that sender, which had lost it in the restore: the
/// re-initialization resends only what the hub held at that moment, and the
/// late version still named the sender as its source. Both ways a parked
/// change is applied late are checked: its parent arrives, or it expires.
#[test]
fn a_restored_node_gets_back_its_own_change_the_hub_applied_late() {
    for parent_comes in [true, false] {
        let mut net = Net::with_config(1, server_wins(), |c| {
            c.batch(1, usize::MAX).pipeline(1).max_park_ms(60_000)
        });
        let backup = net.snapshot_node(0);
        let r = net.nodes[0]
            .insert("DailyReport", report("2025-12-01", 1), t(1))
            .unwrap();
        let l = net.nodes[0]
            .insert("DailyReportLine", line(r, "first", 1.0), t(2))
            .unwrap();
        // The report is edited after its line: the line travels first.
        net.nodes[0]
            .put(report_key(r), report("2025-12-01", 2), t(3))
            .unwrap();
        net.nodes[0].start_sync(hub_id()).unwrap();
        let first = net.nodes[0].poll_transmit(t(4)).unwrap().unwrap();
        let reply = net.hub.respond(&first.bytes, t(4)).unwrap();
        net.nodes[0].handle_incoming(&reply, t(4)).unwrap();
        assert_eq!(net.hub.parked().unwrap().len(), 1, "the line waits");

        // Node 0 loses both in a restore, and the pair is re-initialized.
        net.restore_node(0, backup.clone());
        net.sync(0, t(5)).unwrap();
        net.sync(0, t(6)).unwrap();
        assert!(net.nodes[0].get(&line_key(l)).unwrap().is_none());
        if parent_comes {
            // The report is written again on node 0 under the same id.
            net.nodes[0]
                .put(report_key(r), report("2025-12-01", 3), t(7))
                .unwrap();
            net.sync(0, t(8)).unwrap();
        } else {
            // The hub applies it without its parent; node 0 parks it in
            // turn, and applies it once that wait expires too.
            net.sync(0, t(4 + 61)).unwrap();
            net.sync(0, t(70)).unwrap();
            assert_eq!(net.nodes[0].parked().unwrap().len(), 1);
        }
        net.sync(0, t(200)).unwrap();
        assert!(net.hub.parked().unwrap().is_empty(), "{parent_comes}");
        assert!(net.hub.get(&line_key(l)).unwrap().is_some());
        assert!(
            net.nodes[0].get(&line_key(l)).unwrap().is_some(),
            "node 0 never gets back its own line (parent comes: {parent_comes})"
        );
        assert!(net.converged(), "{parent_comes}");
        assert!(net.quiet(), "{parent_comes}");
    }
}

#[test]
fn a_hub_restored_from_an_old_backup_is_detected_and_gets_everything_back() {
    let mut net = Net::new(2, server_wins());
    let a0 = net.nodes[0]
        .insert("DailyReport", report("2025-12-01", 1), t(0))
        .unwrap();
    net.sync(0, t(1)).unwrap();
    let a1 = net.nodes[1]
        .insert("DailyReport", report("2025-12-02", 2), t(0))
        .unwrap();
    net.sync(1, t(1)).unwrap();
    let backup = net.hub.store().clone();

    let b0 = net.nodes[0]
        .insert("DailyReport", report("2025-12-03", 3), t(2))
        .unwrap();
    net.sync(0, t(3)).unwrap();
    let h = net
        .hub
        .insert("DailyReport", report("2025-12-04", 4), t(3))
        .unwrap();
    net.sync(1, t(4)).unwrap();
    assert!(net.nodes[1].get(&report_key(b0)).unwrap().is_some());

    net.restore_hub(backup);
    assert!(net.hub.get(&report_key(b0)).unwrap().is_none());
    let c0 = net.nodes[0]
        .insert("DailyReport", report("2025-12-05", 5), t(5))
        .unwrap();
    let c1 = net.nodes[1]
        .insert("DailyReport", report("2025-12-06", 6), t(5))
        .unwrap();

    net.sync_all(t(6)).unwrap();
    let on_hub = reinitialized_peers(&mut net.hub);
    assert!(
        on_hub.contains(&node_id(0)) && on_hub.contains(&node_id(1)),
        "{on_hub:?}"
    );
    net.sync_all(t(7)).unwrap();
    for engine in std::iter::once(&mut net.hub).chain(net.nodes.iter_mut()) {
        for id in [a0, a1, b0, h, c0, c1] {
            assert!(
                engine.get(&report_key(id)).unwrap().is_some(),
                "{} lacks {id}",
                engine.local_node().code
            );
        }
    }
    assert!(net.converged());
    assert!(net.quiet());
}

// --- random restores ------------------------------------------------------------------

#[derive(Clone, Debug)]
enum RestoreStep {
    Run(common::ops::Step),
    /// Engine `e` (0 is the hub) is backed up.
    Backup(usize),
    /// Engine `e` is restored from its latest backup.
    Restore(usize),
}

/// Nodes in the random backup/restore search.
const RESTORE_NODES: usize = 3;

fn arb_restore_steps() -> impl proptest::strategy::Strategy<Value = Vec<RestoreStep>> {
    use proptest::prelude::*;
    let step = prop_oneof![
        6 => common::ops::arb_steps(RESTORE_NODES, 1..2).prop_map(|mut s| RestoreStep::Run(s.remove(0))),
        1 => (0..=RESTORE_NODES).prop_map(RestoreStep::Backup),
        1 => (0..=RESTORE_NODES).prop_map(RestoreStep::Restore),
    ];
    prop::collection::vec(step, 1..50)
}

/// Plays `steps`; then clean syncs. Whatever any engine held before the
/// clean syncs must end up everywhere: a restore may lose what only the
/// restored store had, never what another engine still holds.
fn restore_run(steps: &[RestoreStep]) {
    use common::ops::{Owned, Step, engine};
    let mut net = Net::new(RESTORE_NODES, server_wins());
    let mut owned = vec![Owned::default(); RESTORE_NODES + 1];
    let mut backups: Vec<Option<sync_store_memory::MemoryStore>> = vec![None; RESTORE_NODES + 1];
    let mut link = Link::perfect();
    link.check = Some(assert_no_dangling);
    let mut now = t(0);
    for step in steps {
        now = now.add_millis(1_000);
        match step {
            RestoreStep::Run(Step::Write(e, op)) => {
                owned[*e].apply(engine(&mut net, *e), op, now);
            }
            RestoreStep::Run(Step::Sync(i, faults)) => {
                link.push(faults.iter().copied());
                now = net.sync_faulty(*i, now, &mut link).expect("sync");
            }
            RestoreStep::Backup(e) => backups[*e] = Some(engine(&mut net, *e).store().clone()),
            RestoreStep::Restore(e) => {
                let Some(backup) = backups[*e].clone() else {
                    continue;
                };
                if *e == 0 {
                    net.restore_hub(backup);
                } else {
                    net.restore_node(*e - 1, backup);
                }
                let restored = engine(&mut net, *e);
                let own = &mut owned[*e];
                own.reports
                    .retain(|id| restored.get(&report_key(*id)).unwrap().is_some());
                own.lines
                    .retain(|id| restored.get(&line_key(*id)).unwrap().is_some());
            }
        }
    }
    let mut held = std::collections::BTreeSet::new();
    for e in 0..=RESTORE_NODES {
        held.extend(
            engine(&mut net, e)
                .store()
                .all_entities()
                .map(|s| s.entity.key.clone()),
        );
    }
    for _ in 0..3 {
        for i in 0..RESTORE_NODES {
            net.sync(i, now.add_millis(1_000)).expect("clean sync");
        }
    }
    for e in 0..=RESTORE_NODES {
        let engine = engine(&mut net, e);
        assert_no_dangling(engine);
        for key in &held {
            assert!(engine.get(key).unwrap().is_some(), "engine {e} lost {key}");
        }
    }
    assert!(net.converged(), "converged");
    assert!(net.quiet(), "quiet");
}

#[test]
fn random_backups_and_restores_lose_nothing_another_engine_holds() {
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let mut runner = TestRunner::new_with_rng(
        Config::with_cases(64),
        TestRng::from_seed(RngAlgorithm::ChaCha, &[3; 32]),
    );
    let result = runner.run(&arb_restore_steps(), |steps| {
        restore_run(&steps);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
