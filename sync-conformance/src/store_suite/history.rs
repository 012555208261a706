//! Conflict records and security events: object version history, the audit
//! log, the open manual-conflict queue, security events.

use sync_core::{
    AuditRecord, ConflictSide, EntityKey, OpenConflict, SecurityEvent, SecurityKind, Store,
    StoreTxn, Uuid, Value, VersionRecord,
};

use super::entities::report;
use super::{read, write};
use crate::fixtures::{REPORT, hub_id, key, node_id, t};

/// A version record numbered `n` for `key`, every field set.
pub fn sample_version(n: u128, key: &EntityKey) -> VersionRecord {
    let mut data = report(key.id.as_u128(), n as i64);
    data.key = key.clone();
    data.is_deleted = n % 2 == 1;
    data.fields.insert("local_note".into(), "kept whole".into());
    VersionRecord {
        id: Uuid::from_u128(0xAAAA_0000 + n),
        key: key.clone(),
        source_node: node_id(n as usize % 3),
        arrival_time: t(1_000 + n as i64),
        data,
        resolution: format!("server-wins: hub version kept ({n})"),
    }
}

/// An audit record numbered `n`, every field set.
pub fn sample_audit(n: u128) -> AuditRecord {
    let winners = [
        ConflictSide::Local,
        ConflictSide::Incoming,
        ConflictSide::Merged,
    ];
    AuditRecord {
        id: Uuid::from_u128(0xA0D1_0000 + n),
        at: t(2_000 + n as i64),
        key: key(REPORT, n % 5),
        peer: node_id(n as usize % 4),
        strategy: ["server-wins", "last-writer-wins", "custom:x"][n as usize % 3].into(),
        winner: winners[n as usize % 3],
        local_origin: hub_id(),
        local_updated_at: t(n as i64),
        incoming_origin: node_id(7),
        incoming_updated_at: t(-(n as i64)),
        digests: [[n as u8; 32], [0xEE; 32]],
        detail: format!("hub version kept, node version lost #{n}"),
    }
}

/// An open conflict numbered `n`, every field set.
pub fn sample_conflict(n: u128) -> OpenConflict {
    let mut incoming = report(n, 100 + n as i64);
    incoming.origin = node_id(2);
    incoming.fields.insert("hours".into(), Value::Null);
    OpenConflict {
        id: Uuid::from_u128(0xC0F1_0000 + n),
        key: key(REPORT, n),
        current: report(n, n as i64),
        incoming,
        from: node_id(2),
        arrived_at: t(3_000 + n as i64),
    }
}

/// A security event numbered `n`.
pub fn sample_security(n: usize) -> SecurityEvent {
    let kinds = [
        SecurityKind::UnknownSender,
        SecurityKind::RevokedSender,
        SecurityKind::WrongRecipient,
        SecurityKind::Corrupt,
        SecurityKind::SchemaRejected,
        SecurityKind::RestoreDetected,
        SecurityKind::AuthFailed,
    ];
    SecurityEvent {
        at: t(4_000 + n as i64),
        peer: (n % 2 == 0).then(|| node_id(n)),
        kind: kinds[n % kinds.len()],
        detail: format!("event {n}: details for a person"),
    }
}

/// Version records come back whole.
pub fn versions_round_trip_every_field<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    let k = key(REPORT, 1);
    let records: Vec<VersionRecord> = (0..3).map(|n| sample_version(n, &k)).collect();
    write(&mut store, |txn| {
        for r in &records {
            txn.add_version(r).expect("add_version");
        }
    });
    assert_eq!(
        read(&mut store, |txn| txn.versions(&k).expect("versions")),
        records
    );
}

/// Each key has its own history, oldest first; a key without history has
/// none.
pub fn versions_are_per_key_oldest_first<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    let keys = [key(REPORT, 1), key(REPORT, 2), key("Other", 1)];
    for n in 0..12u128 {
        let k = &keys[n as usize % 3];
        write(&mut store, |txn| {
            txn.add_version(&sample_version(n, k)).expect("add_version")
        });
    }
    for (i, k) in keys.iter().enumerate() {
        let got = read(&mut store, |txn| txn.versions(k).expect("versions"));
        let expected: Vec<VersionRecord> = (0..12u128)
            .filter(|n| *n as usize % 3 == i)
            .map(|n| sample_version(n, k))
            .collect();
        assert_eq!(got, expected, "{k}");
    }
    assert!(
        read(&mut store, |txn| txn
            .versions(&key(REPORT, 9))
            .expect("versions"))
        .is_empty()
    );
}

/// Audit records come back whole.
pub fn audit_round_trips_every_field<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    let records: Vec<AuditRecord> = (0..3).map(sample_audit).collect();
    write(&mut store, |txn| {
        for r in &records {
            txn.add_audit(r).expect("add_audit");
        }
    });
    let got = read(&mut store, |txn| {
        txn.audit_log(0, usize::MAX).expect("audit_log")
    });
    assert_eq!(got, records);
}

/// The audit log pages oldest first with `offset` and `limit`.
pub fn audit_log_pages_oldest_first<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    for n in 0..25 {
        write(&mut store, |txn| {
            txn.add_audit(&sample_audit(n)).expect("add_audit")
        });
    }
    for (offset, limit) in [
        (0, 10),
        (10, 10),
        (20, 10),
        (24, 1),
        (25, 5),
        (100, 5),
        (3, 0),
    ] {
        let got = read(&mut store, |txn| {
            txn.audit_log(offset, limit).expect("audit_log")
        });
        let expected: Vec<AuditRecord> = (0..25u128)
            .skip(offset)
            .take(limit)
            .map(sample_audit)
            .collect();
        assert_eq!(got, expected, "offset {offset} limit {limit}");
    }
}

/// Open conflicts: listed oldest first, taken by id (removed and returned
/// whole), others kept in order.
pub fn open_conflicts_put_list_take<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    let conflicts: Vec<OpenConflict> = (0..5).map(sample_conflict).collect();
    for c in &conflicts {
        write(&mut store, |txn| {
            txn.put_open_conflict(c).expect("put_open_conflict")
        });
    }
    assert_eq!(
        read(&mut store, |txn| txn
            .open_conflicts()
            .expect("open_conflicts")),
        conflicts
    );
    let taken = write(&mut store, |txn| {
        txn.take_open_conflict(conflicts[2].id).expect("take")
    });
    assert_eq!(taken.as_ref(), Some(&conflicts[2]));
    let again = write(&mut store, |txn| {
        txn.take_open_conflict(conflicts[2].id).expect("take")
    });
    assert_eq!(again, None, "a conflict is taken once");
    let left = read(&mut store, |txn| {
        txn.open_conflicts().expect("open_conflicts")
    });
    let expected: Vec<OpenConflict> = [0, 1, 3, 4].iter().map(|i| conflicts[*i].clone()).collect();
    assert_eq!(left, expected);
}

/// Taking an id that was never queued gives `None` and changes nothing.
pub fn take_unknown_conflict_is_none<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    write(&mut store, |txn| {
        txn.put_open_conflict(&sample_conflict(1))
            .expect("put_open_conflict")
    });
    let none = write(&mut store, |txn| {
        txn.take_open_conflict(Uuid::from_u128(42)).expect("take")
    });
    assert_eq!(none, None);
    assert_eq!(
        read(&mut store, |txn| txn
            .open_conflicts()
            .expect("open_conflicts"))
        .len(),
        1
    );
}

/// Security events come back whole, oldest first.
pub fn security_events_round_trip_oldest_first<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    let events: Vec<SecurityEvent> = (0..14).map(sample_security).collect();
    for e in &events {
        write(&mut store, |txn| {
            txn.add_security_event(e).expect("add_security_event")
        });
    }
    assert_eq!(
        read(&mut store, |txn| txn
            .security_events()
            .expect("security_events")),
        events
    );
}

/// A rejected change numbered `n`, every field set.
pub fn sample_rejected(n: u128) -> sync_core::RejectedChange {
    let mut entity = report(n, n as i64);
    entity
        .fields
        .insert("local_note".into(), "kept whole".into());
    sync_core::RejectedChange {
        id: Uuid::from_u128(0xDDDD_0000 + n),
        entity,
        peer: node_id(n as usize % 3),
        by: match n % 2 {
            0 => sync_core::RejectedBy::Here,
            _ => sync_core::RejectedBy::Peer,
        },
        reason: format!("table report already holds date = '2025-12-12' ({n})"),
        at: t(3_000 + n as i64),
        notify: (n % 2 == 0).then(|| node_id(1)),
        notified_in: (n % 4 == 0).then_some(40 + n as u64),
    }
}

/// Rejected changes come back whole, oldest first; a put with a known id
/// replaces the record in place; take removes exactly one.
pub fn rejected_round_trip_replace_and_take<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    let samples: Vec<_> = (0..4).map(sample_rejected).collect();
    write(&mut store, |txn| {
        for r in &samples {
            txn.put_rejected(r).expect("put");
        }
    });
    assert_eq!(
        read(&mut store, |txn| txn.rejected().expect("list")),
        samples
    );
    let mut delivered = samples[0].clone();
    delivered.notify = None;
    delivered.notified_in = Some(7);
    write(&mut store, |txn| {
        txn.put_rejected(&delivered).expect("replace")
    });
    let listed = read(&mut store, |txn| txn.rejected().expect("list"));
    assert_eq!(listed[0], delivered, "replaced in place, order kept");
    assert_eq!(listed.len(), 4);
    let taken = write(&mut store, |txn| {
        txn.take_rejected(samples[2].id).expect("take")
    });
    assert_eq!(taken.as_ref(), Some(&samples[2]));
    assert_eq!(
        write(&mut store, |txn| txn
            .take_rejected(samples[2].id)
            .expect("take")),
        None
    );
    let ids: Vec<Uuid> = read(&mut store, |txn| txn.rejected().expect("list"))
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, vec![samples[0].id, samples[1].id, samples[3].id]);
}

/// A dropped transaction leaves rejected changes as they were: new ones
/// gone, taken ones back, replaced ones restored.
pub fn dropped_txn_restores_rejected<S: Store>(make: impl Fn() -> S) {
    let mut store = make();
    let samples: Vec<_> = (0..3).map(sample_rejected).collect();
    write(&mut store, |txn| {
        for r in &samples[..2] {
            txn.put_rejected(r).expect("put");
        }
    });
    super::abandon(&mut store, |txn| {
        txn.put_rejected(&samples[2]).expect("put");
        txn.take_rejected(samples[0].id).expect("take");
        let mut changed = samples[1].clone();
        changed.reason = "changed".into();
        txn.put_rejected(&changed).expect("replace");
    });
    assert_eq!(
        read(&mut store, |txn| txn.rejected().expect("list")),
        samples[..2]
    );
}
