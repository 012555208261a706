//! Schema migrations distributed by the hub, through the engine's public
//! API on memory stores (the driver's part, running the script, is played by
//! calling `migration_applied` / `migration_failed`; the SQLite store's own
//! tests run real scripts).

mod common;

use common::*;
use sync_core::{
    ConflictStrategy, EngineConfig, EntityKey, Event, Migration, MigrationFailure, SchemaVersion,
    SyncError, Uuid,
};

const V1_0: SchemaVersion = SchemaVersion::new(1, 0, 0);
const V1_1: SchemaVersion = SchemaVersion::new(1, 1, 0);
const V1_2: SchemaVersion = SchemaVersion::new(1, 2, 0);

fn migration(version: SchemaVersion) -> Migration {
    Migration::sqlite(
        version,
        format!(
            "ALTER TABLE daily_report ADD COLUMN c_{} TEXT;",
            version.minor
        ),
        format!("column {}", version.minor),
    )
}

/// A hub at 1.2.0 accepting nodes from `minimum`, holding migrations to
/// 1.1.0 and 1.2.0, and one node at 1.0.0.
fn net(minimum: SchemaVersion) -> Net {
    let hub = hub_config()
        .schema_version(V1_2)
        .min_peer_schema(minimum)
        .migration(migration(V1_2))
        .migration(migration(V1_1));
    Net::with_configs(1, registry(ConflictStrategy::ServerWins), hub, |i| {
        node_config(i).schema_version(V1_0)
    })
}

fn node_schema_at_hub(net: &mut Net) -> Option<String> {
    net.hub.peer(node_id(0)).unwrap().schema_version
}

/// One report written at the hub and one at node 0 (its key returned).
fn a_report_each(net: &mut Net) -> EntityKey {
    net.hub
        .put(
            report_key(Uuid::from_u128(1)),
            report("2025-12-01", 1),
            t(0),
        )
        .unwrap();
    let mine = report_key(Uuid::from_u128(2));
    net.nodes[0]
        .put(mine.clone(), report("2025-12-12", 8), t(0))
        .unwrap();
    mine
}

#[test]
fn a_node_too_old_for_the_hub_gets_its_migrations_instead_of_a_refusal() {
    let mut net = net(V1_2);
    let mine = a_report_each(&mut net);

    net.sync(0, t(1)).unwrap();
    let node = &mut net.nodes[0];
    assert_eq!(
        node.pending_migrations().unwrap(),
        vec![migration(V1_1), migration(V1_2)],
        "oldest first"
    );
    assert!(
        drain(node).iter().any(
            |e| matches!(e, Event::MigrationsReceived { versions } if versions == &[V1_1, V1_2])
        )
    );
    assert_eq!(
        state(node).len(),
        1,
        "no entity change before the migrations"
    );
    assert!(net.hub.get(&mine).unwrap().is_none(), "its packet waited");
    assert_eq!(node_schema_at_hub(&mut net).as_deref(), Some("1.0.0"));

    // One of two applied: still under the minimum, still waiting.
    net.nodes[0].migration_applied(V1_1, t(2)).unwrap();
    assert_eq!(net.nodes[0].schema_version(), V1_1);
    net.sync(0, t(3)).unwrap();
    assert_eq!(
        net.nodes[0].pending_migrations().unwrap(),
        vec![migration(V1_2)]
    );
    assert!(net.hub.get(&mine).unwrap().is_none());
    assert_eq!(node_schema_at_hub(&mut net).as_deref(), Some("1.1.0"));

    net.nodes[0].migration_applied(V1_2, t(4)).unwrap();
    net.sync(0, t(5)).unwrap();
    assert!(net.nodes[0].pending_migrations().unwrap().is_empty());
    assert_eq!(node_schema_at_hub(&mut net).as_deref(), Some("1.2.0"));
    assert!(net.hub.get(&mine).unwrap().is_some());
    assert_eq!(state(&mut net.nodes[0]), state(&mut net.hub));
}

#[test]
fn without_a_migration_to_reach_the_minimum_a_too_old_node_is_still_refused() {
    let hub = hub_config()
        .schema_version(V1_2)
        .min_peer_schema(V1_2)
        .migration(migration(V1_1));
    let mut net = Net::with_configs(1, registry(ConflictStrategy::ServerWins), hub, |i| {
        node_config(i).schema_version(V1_0)
    });
    let err = net.sync(0, t(1)).unwrap_err();
    assert!(matches!(err, SyncError::Rejected { .. }), "{err:?}");
    assert!(err.to_string().contains("1.2.0"), "{err}");
}

#[test]
fn a_node_at_the_minimum_sends_its_changes_and_receives_none_until_migrated() {
    let mut net = net(V1_0);
    let mine = a_report_each(&mut net);
    net.sync(0, t(1)).unwrap();
    assert!(net.hub.get(&mine).unwrap().is_some(), "its changes flow");
    assert_eq!(
        net.nodes[0].pending_count(hub_id()).unwrap(),
        0,
        "and are acknowledged"
    );
    assert_eq!(
        state(&mut net.nodes[0]).len(),
        1,
        "nothing from the hub yet"
    );
    // Repeated syncs change nothing while it is behind.
    net.sync(0, t(2)).unwrap();
    assert_eq!(state(&mut net.nodes[0]).len(), 1);
    for version in [V1_1, V1_2] {
        net.nodes[0].migration_applied(version, t(3)).unwrap();
    }
    net.sync(0, t(4)).unwrap();
    assert_eq!(state(&mut net.nodes[0]), state(&mut net.hub));
}

#[test]
fn a_failed_migration_is_reported_to_the_hub_until_a_retry_succeeds() {
    let mut net = net(V1_2);
    net.sync(0, t(1)).unwrap();
    net.nodes[0]
        .migration_failed(V1_1, "table tag already exists", t(2))
        .unwrap();
    let failure = MigrationFailure {
        version: V1_1,
        message: "table tag already exists".into(),
    };
    assert!(
        drain(&mut net.nodes[0])
            .iter()
            .any(|e| matches!(e, Event::MigrationFailed { failure: f } if f == &failure))
    );
    let status = net.nodes[0].migration_status().unwrap();
    assert_eq!(status.failure.as_ref(), Some(&failure));
    assert!(status.blocked());
    assert!(failure.to_string().contains("1.1.0"), "{failure}");

    drain(&mut net.hub);
    net.sync(0, t(3)).unwrap();
    net.sync(0, t(4)).unwrap();
    let reported: Vec<_> = drain(&mut net.hub)
        .into_iter()
        .filter(|e| matches!(e, Event::NodeMigrationFailed { .. }))
        .collect();
    assert_eq!(
        reported,
        vec![Event::NodeMigrationFailed {
            peer: node_id(0),
            failure: failure.clone()
        }],
        "one event per new report, however often it is sent"
    );
    assert_eq!(
        net.hub.migration_failures().unwrap(),
        vec![(node_id(0), failure)]
    );

    for version in [V1_1, V1_2] {
        net.nodes[0].migration_applied(version, t(5)).unwrap();
    }
    assert_eq!(net.nodes[0].migration_status().unwrap().failure, None);
    net.sync(0, t(6)).unwrap();
    assert!(net.hub.migration_failures().unwrap().is_empty());
}

#[test]
fn a_repeated_migrations_reply_is_ignored() {
    let mut net = net(V1_2);
    let node = &mut net.nodes[0];
    node.start_sync(hub_id()).unwrap();
    let packet = node.poll_transmit(t(1)).unwrap().unwrap();
    let reply = net.hub.respond(&packet.bytes, t(1)).unwrap();
    net.nodes[0].handle_incoming(&reply, t(1)).unwrap();
    let first = drain(&mut net.nodes[0]);
    assert!(
        first
            .iter()
            .any(|e| matches!(e, Event::MigrationsReceived { .. }))
    );
    let again = net.nodes[0].handle_incoming(&reply, t(2)).unwrap();
    assert!(again.duplicate);
    assert!(
        !drain(&mut net.nodes[0])
            .iter()
            .any(|e| matches!(e, Event::MigrationsReceived { .. }))
    );
    assert_eq!(net.nodes[0].pending_migrations().unwrap().len(), 2);
}

#[test]
fn a_hub_distributes_only_migrations_of_its_major_up_to_its_own_version() {
    let config = EngineConfig::default()
        .schema_version(V1_1)
        .migration(migration(V1_1))
        .migration(migration(V1_2))
        .migration(migration(SchemaVersion::new(2, 0, 0)));
    assert_eq!(config.migrations_after(V1_0), vec![migration(V1_1)]);
    assert!(
        config
            .migrations_after(SchemaVersion::new(0, 9, 0))
            .is_empty()
    );
    // A fixed script for a version replaces the one held.
    let fixed = Migration::sqlite(V1_1, "SELECT 1;", "fixed");
    let config = config.migration(fixed.clone());
    assert_eq!(config.migrations_after(V1_0), vec![fixed]);
}
