//! Smoke test: three nodes and a hub converge after a conflict.

mod common;

use common::*;
use sync_core::*;

#[test]
fn three_nodes_converge_with_conflict() {
    let mut net = Net::new(3, registry(ConflictStrategy::ServerWins));
    let r = net.nodes[0]
        .insert("DailyReport", report("2025-12-12", 8), t(0))
        .unwrap();
    let key = EntityKey::new("DailyReport", r);
    let line = net.nodes[0]
        .insert(
            "DailyReportLine",
            record([
                ("report_id", Value::Uuid(r)),
                ("text", "dig".into()),
                ("qty", 2.0.into()),
            ]),
            t(1),
        )
        .unwrap();
    net.sync_all(t(10)).unwrap();
    assert!(net.converged());
    assert!(
        net.nodes[2]
            .get(&EntityKey::new("DailyReportLine", line))
            .unwrap()
            .is_some()
    );
    // concurrent edits on node 1 and node 2
    net.nodes[1]
        .put(key.clone(), report("2025-12-12", 9), t(20))
        .unwrap();
    net.nodes[2]
        .put(key.clone(), report("2025-12-12", 10), t(21))
        .unwrap();
    net.sync(1, t(30)).unwrap();
    net.sync(2, t(31)).unwrap();
    net.sync_all(t(40)).unwrap();
    assert!(net.converged());
    let hub_version = net.hub.get(&key).unwrap().unwrap();
    assert_eq!(hub_version.fields["hours"], Value::Int(9));
    let audit = net.hub.audit_log().unwrap();
    assert_eq!(audit.len(), 1, "{audit:?}");
    let versions = net.hub.versions(&key).unwrap();
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0].data.fields["hours"], Value::Int(10));
    assert_eq!(net.nodes[2].pending_count(hub_id()).unwrap(), 0);
}

#[test]
fn a_type_registered_on_a_running_engine_syncs() {
    let mut net = Net::new(1, registry(ConflictStrategy::ServerWins));
    let late = EntityType::new("Photo").field("caption", FieldKind::Text);
    net.hub.register_type(late.clone());
    net.nodes[0].register_type(late);
    let id = net.nodes[0]
        .insert("Photo", record([("caption", "site at dusk".into())]), t(0))
        .unwrap();
    net.sync(0, t(1)).unwrap();
    assert!(net.hub.get(&EntityKey::new("Photo", id)).unwrap().is_some());
}
