//! Regression tests for the causality issue: what version vectors fixed.
//! Each test names the case it reproduces; each failed on the engine that
//! judged conflicts by "the receiver holds a version the sender has not
//! acknowledged".

mod common;

use std::sync::Arc;

use common::*;
use sync_core::{
    ConflictContext, ConflictStrategy, Decision, EntityKey, ErrorCode, Event, PeerError, Resolver,
    SecurityKind, SyncError,
};

/// A resolver that always takes the incoming version: the worst case for a
/// stale copy judged as a conflict.
struct TakeIncoming;

impl Resolver for TakeIncoming {
    fn name(&self) -> &str {
        "take-incoming"
    }
    fn resolve(&self, _ctx: &ConflictContext<'_>) -> Decision {
        Decision::TakeIncoming
    }
}

fn every_strategy() -> Vec<ConflictStrategy> {
    vec![
        ConflictStrategy::ServerWins,
        ConflictStrategy::LastWriterWins,
        ConflictStrategy::KeepBoth,
        ConflictStrategy::Manual,
        ConflictStrategy::Custom(Arc::new(TakeIncoming)),
    ]
}

fn hours(engine: &mut MemEngine, key: &EntityKey) -> i64 {
    engine.get(key).unwrap().unwrap().fields["hours"]
        .as_int()
        .unwrap()
}

/// Nothing in `engine` says a conflict happened.
fn assert_no_conflict_records(engine: &mut MemEngine, key: &EntityKey, who: &str) {
    assert!(
        engine.audit_log().unwrap().is_empty(),
        "{who}: audit record"
    );
    assert!(
        engine.versions(key).unwrap().is_empty(),
        "{who}: history entry"
    );
    assert!(
        engine.open_conflicts().unwrap().is_empty(),
        "{who}: open conflict"
    );
    let copies = engine.store().all_entities().count();
    assert_eq!(copies, 1, "{who}: a keep-both copy was made");
    assert!(
        !drain(engine)
            .iter()
            .any(|e| matches!(e, Event::Conflict(_))),
        "{who}: conflict event"
    );
}

/// Node B sends V1; the hub applies it but its reply is lost. Node C
/// receives V1, edits it (V2, built on V1) and syncs. B's retry carries V1
/// again: an ancestor of V2, so old news under every strategy: no audit, no
/// history, no open conflict, no copy, and C's acknowledged V2 stands.
#[test]
fn a_retry_after_a_lost_reply_is_old_news_not_a_conflict() {
    for strategy in every_strategy() {
        let name = strategy.name();
        let mut net = Net::new(2, registry(strategy));
        let (b, c) = (0, 1);
        let id = net.nodes[b]
            .insert("DailyReport", report("2025-12-12", 1), t(10))
            .unwrap();
        let key = report_key(id);
        net.nodes[b].start_sync(hub_id()).unwrap();
        let v1 = net.nodes[b].poll_transmit(t(11)).unwrap().unwrap();
        let _lost_reply = net.hub.respond(&v1.bytes, t(11)).unwrap();

        net.sync(c, t(20)).unwrap();
        net.nodes[c]
            .put(key.clone(), report("2025-12-12", 2), t(21))
            .unwrap();
        net.sync(c, t(22)).unwrap();
        assert_eq!(hours(&mut net.hub, &key), 2, "{name}");

        // B's retry: its session times out and sends V1 again.
        let deadline = net.nodes[b].poll_timeout().unwrap();
        net.nodes[b].handle_timeout(deadline);
        let retry = net.nodes[b].poll_transmit(deadline).unwrap().unwrap();
        assert_eq!(
            keys_in(&retry.bytes).len(),
            1,
            "{name}: the retry carries V1"
        );
        let reply = net.hub.respond(&retry.bytes, deadline).unwrap();
        net.nodes[b].handle_incoming(&reply, deadline).unwrap();
        net.sync_all(t(40)).unwrap();

        assert_eq!(hours(&mut net.hub, &key), 2, "{name}: V2 stands");
        assert!(net.converged(), "{name}");
        assert!(net.quiet(), "{name}");
        assert_no_conflict_records(&mut net.hub, &key, &format!("{name} hub"));
        for i in [b, c] {
            assert_no_conflict_records(&mut net.nodes[i], &key, &format!("{name} node {i}"));
        }
    }
}

/// A reply that arrives twice (a duplicated request answered twice, the
/// second answer delivered after the node edited again) carries a version
/// the node's newer edit is built on: old news, the edit stays.
#[test]
fn a_late_copy_of_the_hub_version_does_not_replace_a_newer_local_edit() {
    for strategy in every_strategy() {
        let name = strategy.name();
        let mut net = Net::new(1, registry(strategy));
        let id = net
            .hub
            .insert("DailyReport", report("2025-12-12", 1), t(10))
            .unwrap();
        let key = report_key(id);
        net.nodes[0].start_sync(hub_id()).unwrap();
        let request = net.nodes[0].poll_transmit(t(11)).unwrap().unwrap();
        let reply = net.hub.respond(&request.bytes, t(11)).unwrap();
        net.nodes[0].handle_incoming(&reply, t(11)).unwrap();
        net.nodes[0]
            .put(key.clone(), report("2025-12-12", 5), t(12))
            .unwrap();
        // The same reply again, late: the duplicate check drops the packet;
        // a reply rebuilt for the repeated request carries the hub version
        // again under a new number.
        let again = net.hub.respond(&request.bytes, t(13)).unwrap();
        net.nodes[0].handle_incoming(&again, t(13)).unwrap();
        assert_eq!(hours(&mut net.nodes[0], &key), 5, "{name}: the edit stays");
        net.sync_all(t(20)).unwrap();
        assert_eq!(hours(&mut net.hub, &key), 5, "{name}");
        assert!(net.converged(), "{name}");
        assert_no_conflict_records(&mut net.hub, &key, &format!("{name} hub"));
        assert_no_conflict_records(&mut net.nodes[0], &key, &format!("{name} node"));
    }
}

/// Two nodes delete the same entity offline: no conflict anywhere, and the
/// tombstone reaches everyone.
#[test]
fn two_deletes_of_one_entity_are_no_conflict() {
    for strategy in every_strategy() {
        let name = strategy.name();
        let mut net = Net::new(2, registry(strategy));
        let id = net
            .hub
            .insert("DailyReport", report("2025-12-12", 1), t(10))
            .unwrap();
        let key = report_key(id);
        net.sync_all(t(11)).unwrap();
        drain(&mut net.hub);
        net.nodes[0].delete(key.clone(), t(20)).unwrap();
        net.nodes[1].delete(key.clone(), t(21)).unwrap();
        net.sync_all(t(30)).unwrap();
        assert!(net.converged(), "{name}");
        assert!(net.quiet(), "{name}");
        assert!(net.hub.get(&key).unwrap().unwrap().is_deleted, "{name}");
        assert_no_conflict_records(&mut net.hub, &key, &format!("{name} hub"));
        for i in 0..2 {
            assert_no_conflict_records(&mut net.nodes[i], &key, &format!("{name} node {i}"));
        }
    }
}

/// An update against a concurrent delete is a real conflict and follows the
/// type's strategy: server-wins keeps the hub's side everywhere.
#[test]
fn update_against_delete_is_a_conflict() {
    let mut net = Net::new(2, registry(ConflictStrategy::LastWriterWins));
    let id = net
        .hub
        .insert("DailyReport", report("2025-12-12", 1), t(10))
        .unwrap();
    let key = report_key(id);
    net.sync_all(t(11)).unwrap();
    net.nodes[0].delete(key.clone(), t(20)).unwrap();
    net.nodes[1]
        .put(key.clone(), report("2025-12-12", 7), t(25))
        .unwrap();
    net.sync_all(t(30)).unwrap();
    assert!(net.converged());
    let current = net.hub.get(&key).unwrap().unwrap();
    assert!(!current.is_deleted, "the later update wins");
    assert_eq!(net.hub.audit_log().unwrap().len(), 1);
    assert_eq!(
        net.hub.versions(&key).unwrap().len(),
        1,
        "the delete is kept"
    );
}

/// A peer whose clock runs further ahead than the maximum offset is refused
/// with both clocks named, and a security event is recorded.
#[test]
fn a_peer_clock_too_far_ahead_is_refused() {
    let mut net = Net::new(1, registry(ConflictStrategy::LastWriterWins));
    net.nodes[0]
        .insert("DailyReport", report("2025-12-12", 1), t(10_000))
        .unwrap();
    net.nodes[0].start_sync(hub_id()).unwrap();
    let packet = net.nodes[0].poll_transmit(t(10_000)).unwrap().unwrap();
    let hub_now = t(10_000 - 2 * 3600);
    let err = net.hub.handle_incoming(&packet.bytes, hub_now).unwrap_err();
    let SyncError::Peer(PeerError::ClockAhead { ahead_ms, .. }) = &err else {
        panic!("expected ClockAhead, got {err:?}");
    };
    assert_eq!(*ahead_ms, 2 * 3600 * 1000);
    let message = err.to_string();
    assert!(message.contains("fix the clock"), "{message}");
    assert!(message.contains(&hub_now.to_string()), "{message}");
    assert!(
        net.hub
            .security_events()
            .unwrap()
            .iter()
            .any(|e| e.kind == SecurityKind::ClockAhead)
    );
    assert!(
        net.hub
            .get(&keys_in(&packet.bytes).pop_first().unwrap())
            .unwrap()
            .is_none()
    );
    let reply = net.hub.respond(&packet.bytes, hub_now).unwrap();
    let refused = net.nodes[0].handle_incoming(&reply, t(10_000)).unwrap_err();
    assert!(matches!(
        refused,
        SyncError::Rejected {
            code: ErrorCode::ClockAhead,
            retryable: false,
            ..
        }
    ));
}
