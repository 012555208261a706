//! Per-node scopes on the store under test: the hub keeps its rules,
//! attributes and marks of what each node holds in the store, and a node
//! removes an entity that left its scope locally, children first.

use sync_core::scope::{NodeAttributes, ScopeRule};
use sync_core::{ConflictStrategy, Engine, EntityKey, Event, Record, Store, Value};

use crate::fixtures::{LINE, REPORT, node_id, record, registry, t};
use crate::net::{Net, drain};

fn report(brigade: &str) -> Record {
    record([
        ("date", "2025-12-12".into()),
        ("brigade", brigade.into()),
        ("hours", Value::Int(8)),
    ])
}

fn holds<S: Store>(engine: &mut Engine<S>, key: &EntityKey) -> bool {
    engine.get(key).expect("get").is_some_and(|e| !e.is_deleted)
}

/// Reports scoped by brigade: a report and its line reach only their
/// brigade's node; reassigned at the hub, they leave that node (an event
/// each, the line first) and reach the other, while the hub keeps both;
/// reassigned back, they return whole.
pub fn engine_scopes_move_entities_in_and_out<S: Store>(make: impl Fn() -> S) {
    let mut net = Net::with_stores(2, registry(ConflictStrategy::ServerWins), make, |c| c);
    net.hub
        .set_scope_rule(REPORT, ScopeRule::attribute("brigade", "brigade"))
        .expect("rule");
    for (i, brigade) in ["B-7", "B-8"].into_iter().enumerate() {
        net.hub
            .set_node_attributes(
                node_id(i),
                NodeAttributes::default().with("brigade", [brigade]),
            )
            .expect("attributes");
    }
    let id = net.nodes[0]
        .insert(REPORT, report("B-7"), t(1))
        .expect("report");
    let line_id = net.nodes[0]
        .insert(
            LINE,
            record([
                ("report_id", Value::Uuid(id)),
                ("text", "task".into()),
                ("qty", Value::Float(1.0)),
            ]),
            t(1),
        )
        .expect("line");
    let (report_key, line_key) = (EntityKey::new(REPORT, id), EntityKey::new(LINE, line_id));
    net.sync_all(t(2)).expect("sync");
    net.sync_all(t(3)).expect("sync");
    assert!(
        !holds(&mut net.nodes[1], &report_key),
        "B-8 never sees B-7's report"
    );
    assert!(!holds(&mut net.nodes[1], &line_key));
    drain(&mut net.nodes[0]);

    net.hub
        .put(report_key.clone(), report("B-8"), t(4))
        .expect("reassign");
    net.sync_all(t(5)).expect("sync");
    net.sync_all(t(6)).expect("sync");
    assert!(!holds(&mut net.nodes[0], &report_key), "left B-7");
    assert!(!holds(&mut net.nodes[0], &line_key), "its line with it");
    let left: Vec<EntityKey> = drain(&mut net.nodes[0])
        .into_iter()
        .filter_map(|e| match e {
            Event::LeftScope { key, .. } => Some(key),
            _ => None,
        })
        .collect();
    assert_eq!(left, vec![line_key.clone(), report_key.clone()]);
    assert!(holds(&mut net.nodes[1], &report_key), "reached B-8");
    assert!(holds(&mut net.nodes[1], &line_key));
    assert!(holds(&mut net.hub, &report_key), "removed locally only");
    assert!(holds(&mut net.hub, &line_key));

    net.hub
        .put(report_key.clone(), report("B-7"), t(7))
        .expect("reassign back");
    net.sync_all(t(8)).expect("sync");
    net.sync_all(t(9)).expect("sync");
    assert!(holds(&mut net.nodes[0], &report_key), "back whole");
    assert!(holds(&mut net.nodes[0], &line_key), "with its line");
    assert!(!holds(&mut net.nodes[1], &report_key));
    assert!(!holds(&mut net.nodes[1], &line_key));
    assert!(net.quiet(), "nothing pending anywhere");
}
