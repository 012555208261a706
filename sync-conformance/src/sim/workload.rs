//! The workload: random creates, updates, deletes, concurrent edits of a
//! small set of hot entities, reports with lines (parent and children), and
//! manual-conflict decisions. Every committed write goes to the reference
//! log in [`Checks`].

use std::collections::VecDeque;

use sync_core::{
    Entity, EntityKey, LocalWrite, ManualChoice, Record, Store, StoreTxn, SyncError, Timestamp,
    Uuid, Value,
};

use super::actor::Actor;
use super::checks::Checks;
use super::random::Rand;
use super::scheduler::Who;
use crate::fixtures::{
    LINE, MEMO, NOTE_FIELD_MERGE, NOTE_FIELD_MERGE_LWW, NOTE_KEEP_BOTH, NOTE_LAST_WRITER_WINS,
    NOTE_MANUAL, NOTE_MERGE, NOTE_SERVER_WINS, NOTE_UNVERSIONED, REPORT, memo_user,
};

/// Note types the workload writes.
const NOTES: [&str; 8] = [
    NOTE_SERVER_WINS,
    NOTE_LAST_WRITER_WINS,
    NOTE_KEEP_BOTH,
    NOTE_MANUAL,
    NOTE_MERGE,
    NOTE_UNVERSIONED,
    NOTE_FIELD_MERGE,
    NOTE_FIELD_MERGE_LWW,
];

/// Note types merged per field: an update changes one or two fields of the
/// current version, so concurrent edits mostly touch different fields.
pub const FIELD_MERGED: [&str; 2] = [NOTE_FIELD_MERGE, NOTE_FIELD_MERGE_LWW];

/// The fields a partial update of a note merged per field picks from.
const PARTIAL: [&str; 6] = ["title", "body", "rev", "n", "flag", "tags"];

/// How many recently written keys count as "hot" (edited concurrently).
const HOT: usize = 12;

/// The title of note versions that the hub's store refuses (as a UNIQUE or
/// CHECK constraint of an application's table would). One update of a note
/// in 40 carries it; chosen by count, not by the random stream, so runs
/// keep their schedules.
pub const REFUSED_TITLE: &str = "refused by the hub's schema";

/// The hub's refusal rule for [`REFUSED_TITLE`].
pub fn hub_refuses(entity: &sync_core::Entity) -> Option<String> {
    (!entity.is_deleted && entity.fields.get("title") == Some(&Value::from(REFUSED_TITLE)))
        .then(|| format!("table note refuses title = '{REFUSED_TITLE}'"))
}

/// What the workload remembers across operations.
#[derive(Default)]
pub struct Workload {
    /// Every key ever created, by anyone, in creation order.
    keys: Vec<EntityKey>,
    /// Recently written keys.
    hot: VecDeque<EntityKey>,
    /// Writes made (for unique `rev` markers).
    revs: u64,
    /// Operations that found nothing to do (e.g. nothing to delete).
    pub skipped: u64,
    /// Per-node scopes are on: memos are written too (see
    /// [`super::SimConfig::scopes`]).
    pub scopes: bool,
    /// Every memo ever created, by anyone.
    memos: Vec<EntityKey>,
}

/// The result of one operation.
pub type OpResult = Result<(), SyncError>;

impl Workload {
    /// A workload that writes memos too when `scopes` is on.
    pub fn scoped(scopes: bool) -> Self {
        Workload {
            scopes,
            ..Workload::default()
        }
    }

    /// Runs one random operation on `actor`, recording committed writes in
    /// `checks`.
    pub fn op<S: Store>(
        &mut self,
        rng: &mut Rand,
        actor: &mut Actor<S>,
        checks: &mut Checks,
        now: Timestamp,
    ) -> OpResult {
        if self.scopes && rng.chance(0.2) {
            return self.memo(rng, actor, checks, now);
        }
        match rng.below(100) {
            0..25 => self.create(rng, actor, checks, now),
            25..70 => self.update(rng, actor, checks, now),
            70..78 => self.delete(rng, actor, checks, now),
            78..85 => self.resolve(rng, actor, checks, now),
            _ => self.report_with_lines(rng, actor, checks, now),
        }
    }

    fn create<S: Store>(
        &mut self,
        rng: &mut Rand,
        actor: &mut Actor<S>,
        checks: &mut Checks,
        now: Timestamp,
    ) -> OpResult {
        let entity_type = match rng.below(10) {
            0..3 => REPORT,
            3..5 => LINE,
            _ => NOTES[rng.index(NOTES.len())],
        };
        let parent = if entity_type == LINE {
            match self.existing(rng, actor, REPORT, false) {
                Some(report) => Some(report.key.id),
                None => return self.report_with_lines(rng, actor, checks, now),
            }
        } else {
            None
        };
        let id = self.new_id(rng);
        let key = EntityKey::new(entity_type, id);
        let fields = self.fields(rng, entity_type, parent);
        self.commit(
            actor,
            checks,
            vec![LocalWrite::Put { key, fields }],
            &[],
            now,
        )
    }

    fn update<S: Store>(
        &mut self,
        rng: &mut Rand,
        actor: &mut Actor<S>,
        checks: &mut Checks,
        now: Timestamp,
    ) -> OpResult {
        let Some(current) = self.pick(rng, actor, true) else {
            return self.create(rng, actor, checks, now);
        };
        let parent = current.fields.get("report_id").and_then(Value::as_uuid);
        let mut fields = self.fields(rng, &current.key.entity_type, parent);
        if FIELD_MERGED.contains(&current.key.entity_type.as_str()) && !current.is_deleted {
            fields = partial_update(rng, &current.fields, &fields);
        }
        if NOTES.contains(&current.key.entity_type.as_str()) && self.revs % 40 == 0 {
            fields.insert("title".into(), REFUSED_TITLE.into());
        }
        let write = LocalWrite::Put {
            key: current.key,
            fields,
        };
        self.commit(actor, checks, vec![write], &[], now)
    }

    fn delete<S: Store>(
        &mut self,
        rng: &mut Rand,
        actor: &mut Actor<S>,
        checks: &mut Checks,
        now: Timestamp,
    ) -> OpResult {
        let Some(current) = self.pick(rng, actor, false).filter(|e| !e.is_deleted) else {
            self.skipped += 1;
            return Ok(());
        };
        let write = LocalWrite::Delete { key: current.key };
        self.commit(actor, checks, vec![write], &[], now)
    }

    /// A person decides one of the open manual conflicts on `actor`.
    fn resolve<S: Store>(
        &mut self,
        rng: &mut Rand,
        actor: &mut Actor<S>,
        checks: &mut Checks,
        now: Timestamp,
    ) -> OpResult {
        let open = actor.peek(|txn| txn.open_conflicts());
        if open.is_empty() {
            return self.update(rng, actor, checks, now);
        }
        let conflict = &open[rng.index(open.len())];
        let choice = match rng.below(3) {
            0 => ManualChoice::KeepCurrent,
            1 => ManualChoice::TakeIncoming,
            _ => ManualChoice::Merge(self.fields(rng, &conflict.key.entity_type, None)),
        };
        let key = conflict.key.clone();
        let before = actor.peek(|txn| txn.entity(&key)).map(|s| s.entity);
        // Cannot fail: the world runs operations only on live participants.
        let engine = actor.engine().expect("operations run on live participants");
        engine.resolve_conflict(conflict.id, choice, now)?;
        let replaced: Vec<&Entity> = before
            .iter()
            .chain([&conflict.current, &conflict.incoming])
            .collect();
        self.record(actor, checks, &key, &replaced);
        Ok(())
    }

    /// A memo write (scoped runs): a new memo, mostly the writer's own user's
    /// (a node's memo for another user is refused by the hub's scope); an
    /// edit of one it holds, which at the hub may give it to another user
    /// (it leaves one user's devices and reaches the other's); or a
    /// deletion.
    fn memo<S: Store>(
        &mut self,
        rng: &mut Rand,
        actor: &mut Actor<S>,
        checks: &mut Checks,
        now: Timestamp,
    ) -> OpResult {
        let own = match actor.who {
            Who::Node(i) => Some(memo_user(i)),
            Who::Hub => None,
        };
        let any_user = |rng: &mut Rand| memo_user(rng.index(2));
        let held = self.held_memo(rng, actor);
        let choice = rng.below(100);
        let (key, owner) = match held {
            Some(current) if choice < 60 && !current.is_deleted => {
                let owner = current.fields.get("owner").cloned().unwrap_or(Value::Null);
                let owner = match (&own, rng.chance(0.2)) {
                    (None, true) => Value::from(any_user(rng)),
                    (Some(_), true) if rng.chance(0.3) => Value::from(any_user(rng)),
                    _ => owner,
                };
                (current.key, owner)
            }
            Some(current) if choice < 70 && !current.is_deleted => {
                let write = LocalWrite::Delete { key: current.key };
                return self.commit(actor, checks, vec![write], &[], now);
            }
            _ => {
                let owner = match own {
                    Some(user) if rng.chance(0.9) => user,
                    _ => any_user(rng),
                };
                let key = EntityKey::new(MEMO, self.new_id(rng));
                self.memos.push(key.clone());
                (key, Value::from(owner))
            }
        };
        self.revs += 1;
        let mut fields = Record::new();
        fields.insert("owner".into(), owner);
        fields.insert("title".into(), format!("memo {}", rng.below(1000)).into());
        fields.insert("rev".into(), Value::Text(format!("rev-{}", self.revs)));
        self.commit(
            actor,
            checks,
            vec![LocalWrite::Put { key, fields }],
            &[],
            now,
        )
    }

    /// A memo `actor` holds, if it finds one in a few tries.
    fn held_memo<S: Store>(&mut self, rng: &mut Rand, actor: &mut Actor<S>) -> Option<Entity> {
        for _ in 0..3 {
            if self.memos.is_empty() {
                return None;
            }
            let key = self.memos[rng.index(self.memos.len())].clone();
            if let Some(found) = actor.peek(|txn| txn.entity(&key)) {
                return Some(found.entity);
            }
        }
        None
    }

    /// A new report and one to three lines, in one batch.
    fn report_with_lines<S: Store>(
        &mut self,
        rng: &mut Rand,
        actor: &mut Actor<S>,
        checks: &mut Checks,
        now: Timestamp,
    ) -> OpResult {
        let report = self.new_id(rng);
        let mut writes = vec![LocalWrite::Put {
            key: EntityKey::new(REPORT, report),
            fields: self.fields(rng, REPORT, None),
        }];
        for _ in 0..rng.between(1, 3) {
            let key = EntityKey::new(LINE, self.new_id(rng));
            let fields = self.fields(rng, LINE, Some(report));
            writes.push(LocalWrite::Put { key, fields });
        }
        self.commit(actor, checks, writes, &[], now)
    }

    /// Applies `writes` in one batch and logs each committed version with
    /// the version it replaced.
    fn commit<S: Store>(
        &mut self,
        actor: &mut Actor<S>,
        checks: &mut Checks,
        writes: Vec<LocalWrite>,
        replaced: &[&Entity],
        now: Timestamp,
    ) -> OpResult {
        let keys: Vec<EntityKey> = writes
            .iter()
            .map(|w| match w {
                LocalWrite::Put { key, .. } | LocalWrite::Delete { key } => key.clone(),
            })
            .collect();
        let before: Vec<Option<Entity>> = keys
            .iter()
            .map(|k| actor.peek(|txn| txn.entity(k)).map(|s| s.entity))
            .collect();
        // Cannot fail: the world runs operations only on live participants.
        let engine = actor.engine().expect("operations run on live participants");
        engine.write_batch(writes, now)?;
        for (key, old) in keys.iter().zip(&before) {
            let mut all: Vec<&Entity> = replaced.to_vec();
            all.extend(old.iter());
            self.record(actor, checks, key, &all);
            // Memos have their own list: the other operations write
            // fields a memo does not have.
            if old.is_none() && key.entity_type != MEMO {
                self.keys.push(key.clone());
            }
        }
        Ok(())
    }

    fn record<S: Store>(
        &mut self,
        actor: &mut Actor<S>,
        checks: &mut Checks,
        key: &EntityKey,
        replaced: &[&Entity],
    ) {
        let after = actor
            .peek(|txn| txn.entity(key))
            .map(|s| s.entity)
            // Cannot fail: the write was just committed.
            .expect("a committed write is stored");
        checks.write(actor.who, actor.registry(), &after, replaced);
        if key.entity_type == MEMO {
            return;
        }
        self.hot.push_back(key.clone());
        if self.hot.len() > HOT {
            self.hot.pop_front();
        }
    }

    /// An entity that exists on `actor`: a hot one most of the time, so
    /// that participants edit the same entities concurrently.
    fn pick<S: Store>(
        &mut self,
        rng: &mut Rand,
        actor: &mut Actor<S>,
        any_type: bool,
    ) -> Option<Entity> {
        for _ in 0..4 {
            let key = if !self.hot.is_empty() && rng.chance(0.6) {
                self.hot[rng.index(self.hot.len())].clone()
            } else if !self.keys.is_empty() {
                self.keys[rng.index(self.keys.len())].clone()
            } else {
                return None;
            };
            if !any_type && key.entity_type == REPORT && rng.chance(0.5) {
                continue;
            }
            if let Some(found) = actor.peek(|txn| txn.entity(&key)) {
                return Some(found.entity);
            }
        }
        None
    }

    /// An existing entity of `entity_type` on `actor`.
    fn existing<S: Store>(
        &mut self,
        rng: &mut Rand,
        actor: &mut Actor<S>,
        entity_type: &str,
        live: bool,
    ) -> Option<Entity> {
        let candidates: Vec<&EntityKey> = self
            .keys
            .iter()
            .filter(|k| k.entity_type == entity_type)
            .collect();
        for _ in 0..4 {
            if candidates.is_empty() {
                return None;
            }
            let key = candidates[rng.index(candidates.len())].clone();
            if let Some(found) = actor.peek(|txn| txn.entity(&key)) {
                if !live || !found.entity.is_deleted {
                    return Some(found.entity);
                }
            }
        }
        None
    }

    fn new_id(&mut self, rng: &mut Rand) -> Uuid {
        Uuid::from_u64_pair(rng.next_u64(), rng.next_u64())
    }

    /// Fresh field values for `entity_type`, with a unique `rev` marker.
    fn fields(&mut self, rng: &mut Rand, entity_type: &str, parent: Option<Uuid>) -> Record {
        self.revs += 1;
        let rev = Value::Text(format!("rev-{}", self.revs));
        let mut fields = Record::new();
        fields.insert("rev".into(), rev);
        match entity_type {
            REPORT => {
                fields.insert(
                    "date".into(),
                    format!("2025-12-{:02}", rng.between(1, 28)).into(),
                );
                fields.insert("brigade".into(), format!("B-{}", rng.below(9)).into());
                fields.insert("hours".into(), Value::Int(rng.between(0, 12)));
                if rng.chance(0.3) {
                    fields.insert(
                        "local_note".into(),
                        format!("local {}", rng.below(100)).into(),
                    );
                }
            }
            LINE => {
                fields.insert("report_id".into(), parent.map_or(Value::Null, Value::Uuid));
                fields.insert("text".into(), format!("task {}", rng.below(1000)).into());
                fields.insert("qty".into(), Value::Float(rng.between(0, 40) as f64 / 4.0));
            }
            _ => self.note_fields(rng, &mut fields),
        }
        fields
    }

    fn note_fields(&mut self, rng: &mut Rand, fields: &mut Record) {
        fields.insert("title".into(), format!("note {}", rng.below(10_000)).into());
        let mut maybe = |rng: &mut Rand, name: &str, value: Value| {
            if rng.chance(0.3) {
                fields.insert(name.into(), value);
            }
        };
        let body = Value::Text("lorem ipsum ".repeat(rng.between(0, 20) as usize));
        maybe(rng, "body", body);
        let n = Value::Int(rng.next_u64() as i64);
        maybe(rng, "n", n);
        let x = Value::Float(rng.range_f64(-1e6, 1e6));
        maybe(rng, "x", x);
        let flag = Value::Bool(rng.chance(0.5));
        maybe(rng, "flag", flag);
        let len = if rng.chance(0.01) {
            64 << 10
        } else {
            rng.between(0, 256) as usize
        };
        let data = Value::Bytes(rng.bytes(len));
        maybe(rng, "data", data);
        let at = Value::Timestamp(Timestamp::from_micros(rng.next_u64() as i64 >> 8));
        maybe(rng, "at", at);
        let other = Value::Uuid(Uuid::from_u64_pair(rng.next_u64(), rng.next_u64()));
        maybe(rng, "other", other);
        let tags = Value::List((0..rng.below(5)).map(|i| Value::Int(i as i64)).collect());
        maybe(rng, "tags", tags);
        let mut meta = Record::new();
        meta.insert("depth".into(), Value::Int(rng.between(0, 3)));
        meta.insert(
            "list".into(),
            Value::List(vec![Value::Null, Value::Text("x".into())]),
        );
        maybe(rng, "meta", Value::Record(meta));
    }
}

/// One or two fields of `current` replaced by their values in `fresh` (or
/// cleared, where `fresh` has none).
fn partial_update(rng: &mut Rand, current: &Record, fresh: &Record) -> Record {
    let mut fields = current.clone();
    for _ in 0..rng.between(1, 2) {
        let name = PARTIAL[rng.index(PARTIAL.len())];
        match fresh.get(name) {
            Some(value) => fields.insert(name.to_owned(), value.clone()),
            None => fields.remove(name),
        };
    }
    fields
}
