//! Shared fixtures: node identities, a registry with every conflict strategy,
//! a deterministic custom resolver, and small builders for entities and
//! records. The suites and the simulator use the same ones.

use std::sync::Arc;

use sync_core::{
    ConflictContext, ConflictStrategy, Decision, Entity, EntityKey, EntityRegistry, EntityType,
    FieldFallback, FieldKind, NodeId, NodeInfo, Record, Resolver, Role, Timestamp, Uuid, Value,
};

/// `2025-12-12T10:30:00Z`, the origin of fixture time.
pub const EPOCH_SECS: i64 = 1_765_535_400;

/// The report type: a parent.
pub const REPORT: &str = "DailyReport";
/// The report line type: a child referencing a [`REPORT`] through `report_id`.
pub const LINE: &str = "DailyReportLine";
/// Note types, one per conflict strategy (see [`note_types`]).
pub const NOTE_SERVER_WINS: &str = "NoteServerWins";
/// Note type resolved by last-writer-wins.
pub const NOTE_LAST_WRITER_WINS: &str = "NoteLastWriterWins";
/// Note type resolved by keep-both.
pub const NOTE_KEEP_BOTH: &str = "NoteKeepBoth";
/// Note type resolved by a person.
pub const NOTE_MANUAL: &str = "NoteManual";
/// Note type resolved by [`MergeResolver`].
pub const NOTE_MERGE: &str = "NoteMerge";
/// Note type with last-writer-wins and version history turned off (losers
/// are only in the audit log).
pub const NOTE_UNVERSIONED: &str = "NoteUnversioned";
/// Note type merged per field; a field both sides changed: the hub's value.
pub const NOTE_FIELD_MERGE: &str = "NoteFieldMerge";
/// Note type merged per field; a field both sides changed: the later
/// writer's value.
pub const NOTE_FIELD_MERGE_LWW: &str = "NoteFieldMergeLww";

/// A type scoped per user (see [`memo_type`]): a node receives the memos
/// whose `owner` is its `user` attribute.
pub const MEMO: &str = "Memo";

/// The memo type of scoped runs: an owner, a title and the workload's `rev`
/// marker; server-wins.
pub fn memo_type() -> EntityType {
    EntityType::new(MEMO)
        .field("owner", FieldKind::Text)
        .field("title", FieldKind::Text)
        .field("rev", FieldKind::Text)
        .strategy(ConflictStrategy::ServerWins)
}

/// The user of node `i` in scoped runs: two users, alternating, so that
/// each user has several devices.
pub fn memo_user(i: usize) -> String {
    format!("user-{}", i % 2)
}

/// Fixture time: `secs` seconds after [`EPOCH_SECS`].
pub fn t(secs: i64) -> Timestamp {
    Timestamp::from_secs(EPOCH_SECS + secs)
}

/// The hub's id.
pub fn hub_id() -> NodeId {
    NodeId(Uuid::from_u128(0x1000))
}

/// Node `i`'s id.
pub fn node_id(i: usize) -> NodeId {
    NodeId(Uuid::from_u128(0x2000 + i as u128))
}

/// The hub's identity.
pub fn hub_info() -> NodeInfo {
    NodeInfo::new(hub_id(), "HUB", "Central hub", Role::Hub)
}

/// Node `i`'s identity.
pub fn node_info(i: usize) -> NodeInfo {
    NodeInfo::new(
        node_id(i),
        format!("DESKTOP-{i}"),
        format!("Desktop {i}"),
        Role::Node,
    )
}

/// A key of `entity_type` with a small readable id.
pub fn key(entity_type: &str, n: u128) -> EntityKey {
    EntityKey::new(entity_type, Uuid::from_u128(n))
}

/// A record from name/value pairs.
pub fn record<const N: usize>(pairs: [(&str, Value); N]) -> Record {
    pairs
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
}

/// A report's fields: `date`, brigade `B-7`, `hours`.
pub fn report(date: &str, hours: i64) -> Record {
    record([
        ("date", date.into()),
        ("brigade", "B-7".into()),
        ("hours", hours.into()),
    ])
}

/// A report line's fields: under the report `report_id`.
pub fn line(report_id: Uuid, text: &str, qty: f64) -> Record {
    record([
        ("report_id", Value::Uuid(report_id)),
        ("text", text.into()),
        ("qty", qty.into()),
    ])
}

/// The key of the report `id`.
pub fn report_key(id: Uuid) -> EntityKey {
    EntityKey::new(REPORT, id)
}

/// The key of the report line `id`.
pub fn line_key(id: Uuid) -> EntityKey {
    EntityKey::new(LINE, id)
}

/// A live entity version.
pub fn entity(key: EntityKey, fields: Record, updated_at: Timestamp, origin: NodeId) -> Entity {
    Entity::new_version(key, updated_at, false, origin, fields)
}

/// A registry with the report types (both resolved by `report_strategy`,
/// each with a `rev` marker field) and one note type per strategy.
pub fn registry(report_strategy: ConflictStrategy) -> EntityRegistry {
    let mut registry = EntityRegistry::new();
    for ty in report_types(report_strategy, true)
        .into_iter()
        .chain(note_types())
    {
        registry.register(ty);
    }
    registry
}

/// Just the two report types, both resolved by `strategy`: a report with
/// `date`, `brigade`, `hours` and an excluded `local_note`, and its lines
/// (`report_id`, `text`, `qty`). Every field of [`report`] and [`line`] is
/// declared and nothing else, so a version written with them arrives whole
/// (no explicit nulls for fields the writer left out).
pub fn reports_registry(strategy: ConflictStrategy) -> EntityRegistry {
    let mut registry = EntityRegistry::new();
    for ty in report_types(strategy, false) {
        registry.register(ty);
    }
    registry
}

/// The report and line types, with a `rev` text field when `rev`.
fn report_types(strategy: ConflictStrategy, rev: bool) -> [EntityType; 2] {
    let with_rev = |ty: EntityType| match rev {
        true => ty.field("rev", FieldKind::Text),
        false => ty,
    };
    let report = EntityType::new(REPORT)
        .field("date", FieldKind::Text)
        .field("brigade", FieldKind::Text)
        .field("hours", FieldKind::Int);
    let line = EntityType::new(LINE)
        .reference("report_id", REPORT)
        .field("text", FieldKind::Text)
        .field("qty", FieldKind::Float);
    [
        with_rev(report)
            .excluded_field("local_note", FieldKind::Text)
            .strategy(strategy.clone()),
        with_rev(line).strategy(strategy),
    ]
}

/// The note types: every value kind, one type per conflict strategy.
pub fn note_types() -> Vec<EntityType> {
    let note = |name: &str, strategy: ConflictStrategy| {
        EntityType::new(name)
            .field("title", FieldKind::Text)
            .field("body", FieldKind::Text)
            .field("rev", FieldKind::Text)
            .field("n", FieldKind::Int)
            .field("x", FieldKind::Float)
            .field("flag", FieldKind::Bool)
            .field("data", FieldKind::Bytes)
            .field("at", FieldKind::Timestamp)
            .field("other", FieldKind::Uuid)
            .field("tags", FieldKind::List)
            .field("meta", FieldKind::Record)
            .strategy(strategy)
    };
    vec![
        note(NOTE_SERVER_WINS, ConflictStrategy::ServerWins),
        note(NOTE_LAST_WRITER_WINS, ConflictStrategy::LastWriterWins),
        note(NOTE_KEEP_BOTH, ConflictStrategy::KeepBoth),
        note(NOTE_MANUAL, ConflictStrategy::Manual),
        note(NOTE_MERGE, merge_strategy()),
        note(NOTE_UNVERSIONED, ConflictStrategy::LastWriterWins).versioning(false),
        note(
            NOTE_FIELD_MERGE,
            ConflictStrategy::FieldMerge {
                fallback: FieldFallback::ServerWins,
            },
        ),
        note(
            NOTE_FIELD_MERGE_LWW,
            ConflictStrategy::FieldMerge {
                fallback: FieldFallback::LastWriterWins,
            },
        ),
    ]
}

/// Every strategy, for per-seed choices: server-wins, last-writer-wins,
/// keep-both, manual, and [`MergeResolver`].
pub fn all_strategies() -> Vec<ConflictStrategy> {
    vec![
        ConflictStrategy::ServerWins,
        ConflictStrategy::LastWriterWins,
        ConflictStrategy::KeepBoth,
        ConflictStrategy::Manual,
        merge_strategy(),
    ]
}

/// The custom strategy backed by [`MergeResolver`].
pub fn merge_strategy() -> ConflictStrategy {
    ConflictStrategy::Custom(Arc::new(MergeResolver))
}

/// A deterministic, symmetric custom resolver: the fields of the later
/// version (by `updated_at`, then writer, then content digest) plus a
/// `merged_from` note naming both versions' `rev` markers in sorted order.
/// When the versions are equal in rank it keeps the local one.
#[derive(Clone, Copy, Debug, Default)]
pub struct MergeResolver;

impl Resolver for MergeResolver {
    fn name(&self) -> &str {
        "lww-merge"
    }

    fn resolve(&self, ctx: &ConflictContext<'_>) -> Decision {
        let rank = |e: &Entity| (e.updated_at, e.origin, e.content_digest());
        let (winner, loser) = if rank(ctx.incoming) > rank(ctx.local) {
            (ctx.incoming, ctx.local)
        } else {
            (ctx.local, ctx.incoming)
        };
        let mut revs = [rev_of(winner), rev_of(loser)];
        revs.sort();
        let mut fields = winner.fields.clone();
        fields.insert(
            "body".into(),
            Value::Text(format!("merged {} + {}", revs[0], revs[1])),
        );
        Decision::Merge(fields)
    }
}

fn rev_of(entity: &Entity) -> String {
    entity
        .fields
        .get("rev")
        .and_then(Value::as_text)
        .unwrap_or("")
        .to_owned()
}
