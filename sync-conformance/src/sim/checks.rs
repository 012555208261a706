//! The simulator's invariants: a reference log of every write (no
//! acknowledged change lost), applied-once bookkeeping per receiver (no
//! packet body applied twice), packet counters that never go backwards
//! except on a detected restore, and the traces a conflict leaves behind.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use sync_core::{
    ConflictSide, Entity, EntityKey, EntityRegistry, NodeId, PeerState, StoreError, StoreTxn,
    Timestamp, Uuid, Value, VersionVector,
};

use super::scheduler::{SimTime, Who};
use super::watch::Watch;

/// What went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ViolationKind {
    /// After healing, nodes hold different entities or field values.
    Divergence,
    /// Changes still pending, children still parked, or sessions still
    /// running after healing.
    NotQuiescent,
    /// Convergence took more rounds than the bound.
    Liveness,
    /// A write that must survive left no trace anywhere.
    LostWrite,
    /// The same packet bytes were applied twice by one receiver.
    AppliedTwice,
    /// A packet counter went backwards without a detected restore.
    CounterRegression,
    /// The engine returned an error it should not have.
    EngineError,
    /// The same seed gave different results.
    Nondeterminism,
    /// A conflict was recorded (audit, history, copy or open conflict)
    /// between two versions one of which was written knowing the other: a
    /// late copy taken for a concurrent edit.
    FalseConflict,
    /// Two stores resolved the same concurrent pair of versions differently
    /// (a different winner, or a merge on one and a winner on the other).
    ResolvedDifferently,
    /// Under per-field merge, a field edit that no other write changed
    /// concurrently or after it did not survive.
    LostFieldEdit,
    /// After quiescence the hub holds a live child under a deleted parent:
    /// the orphan rule did not settle it.
    LiveOrphan,
    /// A node applied an entity outside its scope (another user's memo).
    ScopeLeak,
}

/// One violated invariant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Which invariant.
    pub kind: ViolationKind,
    /// Simulated time it was found at (microseconds).
    pub at: SimTime,
    /// What exactly, for a person.
    pub detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?} at {:.3}s: {}",
            self.kind,
            self.at as f64 / 1e6,
            self.detail
        )
    }
}

/// Identifies a version by content, whatever entity id it is stored under
/// (so a keep-both copy matches its original) and whatever history it was
/// stored with (a resolution keeps a winner's content under a clock that
/// includes the loser): a digest over type, timestamp, writer, deletion flag
/// and synced non-null fields.
pub type VersionId = [u8; 32];

/// The [`VersionId`] of `entity`.
pub fn version_id(registry: &EntityRegistry, entity: &Entity) -> VersionId {
    let mut normalized = entity.clone();
    normalized.key.id = Uuid::nil();
    normalized.clock = VersionVector::new();
    let ty = registry.get(&entity.key.entity_type);
    normalized
        .fields
        .retain(|name, value| !value.is_null() && !ty.is_some_and(|t| t.is_excluded(name)));
    normalized.content_digest()
}

fn describe_outcome(outcome: &Outcome) -> String {
    match outcome {
        Some(d) => format!("winner {:02x}{:02x}{:02x}{:02x}", d[0], d[1], d[2], d[3]),
        None => "merged".into(),
    }
}

/// A version named by an audit record: key, writer and timestamp.
pub type AuditTrace = (EntityKey, NodeId, Timestamp);

/// One local write in the reference log.
#[derive(Clone, Debug)]
struct WriteRecord {
    who: Who,
    /// Position in the log (for restores).
    number: u64,
    key: EntityKey,
    origin: NodeId,
    updated_at: Timestamp,
    id: VersionId,
    /// Its `rev` marker, named in the body of versions merged from it.
    rev: Option<String>,
    /// The writer had lost it to a restore from an older backup.
    restored_away: bool,
    /// It is a deletion.
    deleted: bool,
    /// The writes it replaced knowingly (indices into the log): its causal
    /// predecessors as the application saw them.
    after: Vec<usize>,
    /// The synced fields it changed against the version it replaced, with
    /// their new values (`None`: cleared).
    changed: Vec<(String, Option<Value>)>,
}

/// What a node's checks state looked like when its store was backed up.
#[derive(Clone, Debug, Default)]
pub struct Shadow {
    applied: HashSet<u64>,
    writes: u64,
}

/// Every trace a version can leave in a store.
#[derive(Default)]
pub struct Traces {
    versions: HashSet<VersionId>,
    audit: HashSet<AuditTrace>,
    /// `rev` markers named by merged versions
    /// ([`crate::fixtures::MergeResolver`] writes `merged A + B`).
    merged: HashSet<String>,
    /// The two versions of every recorded conflict (audit records and open
    /// conflicts) by entity and sync digest, with where it was found, for
    /// the causal check.
    conflicts: Vec<(EntityKey, [[u8; 32]; 2], &'static str)>,
    /// Entities whose current version somewhere is a tombstone: a deletion
    /// merged with a concurrent deletion of the same entity leaves no record
    /// of its own, and needs none.
    deleted: HashSet<EntityKey>,
    /// Every audit record's pair (digests in ascending order) with its
    /// outcome (the winner's digest, `None` for a merge) and the store it
    /// was found in, for the same-resolution-everywhere check.
    resolutions: Vec<Resolution>,
    /// The store being collected (see [`Traces::collect_from`]).
    store: usize,
}

/// One recorded resolution: entity, the pair in ascending order, the
/// winner's digest (`None`: merged) and the store that recorded it.
type Resolution = (EntityKey, Pair, Outcome, usize);

/// Two versions' sync digests, ascending.
type Pair = [[u8; 32]; 2];

/// A resolution's outcome: the winner's sync digest, `None` for a merge.
type Outcome = Option<[u8; 32]>;

impl Traces {
    /// Adds everything `txn` sees: current entities, version history,
    /// open conflicts, and the losing sides named in the audit log.
    pub fn collect<T: StoreTxn>(
        &mut self,
        registry: &EntityRegistry,
        txn: &T,
    ) -> Result<(), StoreError> {
        for ty in registry.types() {
            let mut after = None;
            loop {
                let page = txn.entities(ty.name(), after, 1_000)?;
                let Some(last) = page.last() else { break };
                after = Some(last.entity.key.id);
                for stored in &page {
                    self.add(registry, &stored.entity);
                    if stored.entity.is_deleted {
                        self.deleted.insert(stored.entity.key.clone());
                    }
                    for record in txn.versions(&stored.entity.key)? {
                        self.add(registry, &record.data);
                    }
                }
            }
        }
        // A refused version is kept whole among the rejected changes.
        for rejected in txn.rejected()? {
            self.add(registry, &rejected.entity);
        }
        for conflict in txn.open_conflicts()? {
            self.versions
                .insert(version_id(registry, &conflict.current));
            self.versions
                .insert(version_id(registry, &conflict.incoming));
            if let Some(ty) = registry.get(&conflict.key.entity_type) {
                let digests = [
                    ty.sync_digest(&conflict.current),
                    ty.sync_digest(&conflict.incoming),
                ];
                self.conflicts
                    .push((conflict.key.clone(), digests, "open conflict"));
            }
        }
        for audit in txn.audit_log(0, usize::MAX)? {
            let local = (
                audit.key.clone(),
                audit.local_origin,
                audit.local_updated_at,
            );
            let incoming = (
                audit.key.clone(),
                audit.incoming_origin,
                audit.incoming_updated_at,
            );
            self.conflicts
                .push((audit.key.clone(), audit.digests, "audit record"));
            let [a, b] = audit.digests;
            let outcome = match audit.winner {
                ConflictSide::Local => Some(a),
                ConflictSide::Incoming => Some(b),
                ConflictSide::Merged => None,
            };
            let pair = if a <= b { [a, b] } else { [b, a] };
            // Manual: the hub keeps its version until a person decides
            // (a second record of the same pair, with the person's choice).
            if audit.strategy != "manual" {
                self.resolutions
                    .push((audit.key.clone(), pair, outcome, self.store));
            }
            match audit.winner {
                ConflictSide::Local => self.audit.insert(incoming),
                ConflictSide::Incoming => self.audit.insert(local),
                ConflictSide::Merged => self.audit.insert(local) | self.audit.insert(incoming),
            };
        }
        Ok(())
    }

    /// [`Traces::collect`] for the store numbered `store` (distinct per
    /// participant), so that resolutions can be compared across stores.
    pub fn collect_from<T: StoreTxn>(
        &mut self,
        store: usize,
        registry: &EntityRegistry,
        txn: &T,
    ) -> Result<(), StoreError> {
        self.store = store;
        self.collect(registry, txn)
    }

    fn add(&mut self, registry: &EntityRegistry, entity: &Entity) {
        self.versions.insert(version_id(registry, entity));
        let body = entity.fields.get("body").and_then(Value::as_text);
        if let Some(revs) = body.and_then(|b| b.strip_prefix("merged ")) {
            self.merged.extend(revs.split(" + ").map(str::to_owned));
        }
    }

    fn holds_any(&self, other: &Traces, write: &WriteRecord) -> bool {
        self.holds(write) || other.holds(write)
    }

    fn holds(&self, write: &WriteRecord) -> bool {
        self.versions.contains(&write.id)
            || (write.deleted && self.deleted.contains(&write.key))
            || write.rev.as_ref().is_some_and(|r| self.merged.contains(r))
            || self
                .audit
                .contains(&(write.key.clone(), write.origin, write.updated_at))
    }
}

/// The invariants' state over one run.
#[derive(Default)]
pub struct Checks {
    /// Everything found so far.
    pub violations: Vec<Violation>,
    writes: Vec<WriteRecord>,
    /// For each version, the writes that replaced it knowingly (their
    /// writer held it when writing).
    overwritten_by: HashMap<VersionId, Vec<usize>>,
    /// Versions the hub applied (from its `Applied` events).
    hub_applied: HashSet<VersionId>,
    /// Each write by entity and sync digest, as conflict records name
    /// versions.
    by_digest: HashMap<(EntityKey, [u8; 32]), usize>,
    /// Per receiver: hashes of the packets it applied (not as duplicates).
    applied: BTreeMap<Who, HashSet<u64>>,
    /// Per participant and peer: sent, received, acknowledged-sequence.
    counters: BTreeMap<(Who, NodeId), [u64; 3]>,
    /// Pairs re-initialized by a committed transaction whose event died with
    /// a crash of the same engine call: their next decrease is allowed.
    reinitialized_unseen: BTreeSet<(Who, NodeId)>,
    /// Traces held by stores just before a restore replaced them: conflict
    /// records kept only on the restored node are gone with its old store,
    /// but the resolution did happen and did keep the loser.
    pub archived: Traces,
    /// Prints the watched entity's writes, when diagnosing.
    pub watch: Option<Watch>,
    /// Simulated time of the operation being recorded (for the watch).
    pub clock: SimTime,
    /// Observations that help explain a failure (not violations).
    pub hints: Vec<String>,
}

impl Checks {
    /// Records a violation.
    pub fn violation(&mut self, kind: ViolationKind, at: SimTime, detail: String) {
        self.violations.push(Violation { kind, at, detail });
    }

    /// Records a committed local write by `who`: the version now stored
    /// (`after`) and the versions its writer replaced knowingly.
    pub fn write(
        &mut self,
        who: Who,
        registry: &EntityRegistry,
        after: &Entity,
        replaced: &[&Entity],
    ) {
        if let Some(watch) = &self.watch {
            watch.write(self.clock, who, after, replaced);
        }
        let index = self.writes.len();
        let digest = |e: &Entity| {
            let digest = registry
                .get(&e.key.entity_type)
                .map_or_else(|| e.content_digest(), |ty| ty.sync_digest(e));
            (e.key.clone(), digest)
        };
        let after_writes = replaced
            .iter()
            .filter_map(|old| self.by_digest.get(&digest(old)).copied())
            .collect();
        self.by_digest.insert(digest(after), index);
        let ty = registry.get(&after.key.entity_type);
        let before = replaced.last().map(|old| &old.fields);
        let mut names: BTreeSet<&String> = after.fields.keys().collect();
        names.extend(before.into_iter().flat_map(|b| b.keys()));
        let changed = names
            .into_iter()
            .filter(|name| !ty.is_some_and(|t| t.is_excluded(name)))
            .filter(|name| before.and_then(|b| b.get(*name)) != after.fields.get(*name))
            .map(|name| (name.clone(), after.fields.get(name).cloned()))
            .collect();
        self.writes.push(WriteRecord {
            who,
            number: index as u64 + 1,
            key: after.key.clone(),
            origin: after.origin,
            updated_at: after.updated_at,
            id: version_id(registry, after),
            rev: after
                .fields
                .get("rev")
                .and_then(Value::as_text)
                .map(str::to_owned),
            restored_away: false,
            deleted: after.is_deleted,
            after: after_writes,
            changed,
        });
        for old in replaced {
            self.overwritten_by
                .entry(version_id(registry, old))
                .or_default()
                .push(index);
        }
    }

    /// Notes a conflict on `who` that took the incoming `version` when `who`
    /// itself had already replaced that very version: a re-delivered old
    /// version was treated as a concurrent edit. Returned as a hint for the
    /// failure report (it explains most divergences).
    pub fn stale_conflict(
        &mut self,
        who: Who,
        registry: &EntityRegistry,
        version: &Entity,
        at: SimTime,
    ) {
        let id = version_id(registry, version);
        let replaced_here = self
            .overwritten_by
            .get(&id)
            .is_some_and(|by| by.iter().any(|i| self.writes[*i].who == who));
        if replaced_here && self.hints.len() < 20 {
            self.hints.push(format!(
                "at {:.3}s {who} resolved a conflict on {} in favour of a version it had itself replaced earlier (a re-delivered old version taken for a concurrent edit)",
                at as f64 / 1e6,
                version.key
            ));
        }
    }

    /// Records a version the hub applied.
    pub fn hub_applied(&mut self, registry: &EntityRegistry, entity: &Entity) {
        self.hub_applied.insert(version_id(registry, entity));
    }

    /// Records that `receiver` applied packet bytes with hash `hash` (not as
    /// a duplicate); a second application is a violation.
    pub fn applied(&mut self, receiver: Who, from: NodeId, packet_no: u64, hash: u64, at: SimTime) {
        if !self.applied.entry(receiver).or_default().insert(hash) {
            self.violation(
                ViolationKind::AppliedTwice,
                at,
                format!("{receiver} applied packet {packet_no} from {from} a second time"),
            );
        }
    }

    /// Compares `who`'s peer counters with what was seen last. A decrease is
    /// allowed only for peers in `reinitialized` (the engine detected a
    /// restore and re-initialized that pair in this step).
    pub fn counters(
        &mut self,
        who: Who,
        peers: &[PeerState],
        reinitialized: &BTreeSet<NodeId>,
        at: SimTime,
    ) {
        for peer in peers {
            let now = [peer.sent_packet_no, peer.received_packet_no, peer.acked_seq];
            let before = self.counters.insert((who, peer.id()), now);
            let Some(before) = before else { continue };
            let unseen = self.reinitialized_unseen.remove(&(who, peer.id()));
            if unseen || reinitialized.contains(&peer.id()) {
                continue;
            }
            for (name, (old, new)) in ["sent_packet_no", "received_packet_no", "acked_seq"]
                .iter()
                .zip(before.iter().zip(now))
            {
                if new < *old {
                    self.violation(
                        ViolationKind::CounterRegression,
                        at,
                        format!(
                            "{who}'s {name} for {} went from {old} to {new}",
                            peer.info.code
                        ),
                    );
                }
            }
        }
    }

    /// `who` re-initialized its pair with `peer` in a committed transaction
    /// and then crashed before the event was seen: the engine did detect the
    /// restore, so the next decrease of that pair's counters is allowed.
    pub fn reinitialized_before_crash(&mut self, who: Who, peer: NodeId) {
        self.reinitialized_unseen.insert((who, peer));
    }

    /// The checks state of node `who` at a backup.
    pub fn shadow(&self, who: Who) -> Shadow {
        Shadow {
            applied: self.applied.get(&who).cloned().unwrap_or_default(),
            writes: self.writes.len() as u64,
        }
    }

    /// `who` was restored from a backup taken at `shadow`: its later writes
    /// are gone unless the hub had them, it may apply packets again that it
    /// applied after the backup, and its counters start over.
    pub fn restored(&mut self, who: Who, shadow: &Shadow) {
        for write in &mut self.writes {
            if write.who == who && write.number > shadow.writes {
                write.restored_away = true;
            }
        }
        self.applied.insert(who, shadow.applied.clone());
        self.counters.retain(|(w, _), _| *w != who);
    }

    /// Writes that must survive: all except those lost to a restore before
    /// the hub applied them.
    fn required(&self, write: &WriteRecord) -> bool {
        !write.restored_away || self.hub_applied.contains(&write.id)
    }

    /// The no-lost-write check at the end of a run: every required write is
    /// covered: it is in some store (current, version history, open
    /// conflict, audit), or a write that replaced it knowingly is covered
    /// (so a chain of edits on one node that ends in a surviving version
    /// accounts for every link).
    pub fn lost_writes(&mut self, traces: &Traces, at: SimTime) {
        // A replacing write always comes later in the log, so one pass from
        // the end settles every chain. Deletions of one entity stand for
        // each other (concurrent deletions merge with no record), so a
        // deletion is covered when another deletion of its entity is; that
        // can cover earlier writes in turn, hence the repeat.
        let mut covered = vec![false; self.writes.len()];
        loop {
            for i in (0..self.writes.len()).rev() {
                let write = &self.writes[i];
                covered[i] = covered[i]
                    || traces.holds_any(&self.archived, write)
                    || self
                        .overwritten_by
                        .get(&write.id)
                        .is_some_and(|by| by.iter().any(|j| *j > i && covered[*j]));
            }
            let deletions: HashSet<&EntityKey> = self
                .writes
                .iter()
                .zip(&covered)
                .filter(|(w, c)| w.deleted && **c)
                .map(|(w, _)| &w.key)
                .collect();
            let mut changed = false;
            for (write, covered) in self.writes.iter().zip(covered.iter_mut()) {
                if write.deleted && !*covered && deletions.contains(&write.key) {
                    *covered = true;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        let lost: Vec<String> = self
            .writes
            .iter()
            .zip(&covered)
            .filter(|(write, covered)| !**covered && self.required(write))
            .map(|(write, _)| {
                format!(
                    "write #{} by {} of {} (updated_at {}, origin {}) is nowhere",
                    write.number, write.who, write.key, write.updated_at, write.origin
                )
            })
            .collect();
        for detail in lost {
            self.violation(ViolationKind::LostWrite, at, detail);
        }
    }

    /// The causal check at the end of a run: no conflict was recorded
    /// between two versions one of which was written knowing the other (its
    /// writer held it, or a version written knowing it, when writing).
    /// Versions that are no write of the log (merges) are not judged.
    pub fn false_conflicts(&mut self, traces: &Traces, at: SimTime) {
        let mut found = Vec::new();
        for (key, [a, b], what) in traces.conflicts.iter().chain(&self.archived.conflicts) {
            let (Some(&x), Some(&y)) = (
                self.by_digest.get(&(key.clone(), *a)),
                self.by_digest.get(&(key.clone(), *b)),
            ) else {
                continue;
            };
            let ordered = if self.descends(x, y) {
                Some((x, y))
            } else if self.descends(y, x) {
                Some((y, x))
            } else {
                None
            };
            if let Some((later, earlier)) = ordered {
                let (l, e) = (&self.writes[later], &self.writes[earlier]);
                found.push(format!(
                    "{what} on {} between write #{} by {} (updated_at {}) and write #{} by {} (updated_at {}), which it was written knowing",
                    l.key, l.number, l.who, l.updated_at, e.number, e.who, e.updated_at
                ));
            }
        }
        found.sort();
        found.dedup();
        for detail in found {
            self.violation(ViolationKind::FalseConflict, at, detail);
        }
    }

    /// The same-resolution check at the end of a run: every concurrent pair
    /// that more than one store resolved (an audit record naming the same
    /// two versions) had the same outcome on each: the same winner, or a
    /// merge everywhere. (Merged contents are compared by convergence.)
    pub fn same_resolutions(&mut self, traces: &Traces, at: SimTime) {
        let mut seen: BTreeMap<(&EntityKey, Pair), (Outcome, usize)> = BTreeMap::new();
        let mut found = Vec::new();
        for (key, pair, outcome, store) in &traces.resolutions {
            match seen.get(&(key, *pair)) {
                None => {
                    seen.insert((key, *pair), (*outcome, *store));
                }
                Some((first, other)) if first != outcome => found.push(format!(
                    "{key}: store {other} and store {store} resolved the same two versions differently ({} / {})",
                    describe_outcome(first),
                    describe_outcome(outcome),
                )),
                Some(_) => {}
            }
        }
        found.sort();
        found.dedup();
        for detail in found {
            self.violation(ViolationKind::ResolvedDifferently, at, detail);
        }
    }

    /// The per-field check at the end of a run, for the types in `merged`
    /// (merged per field): on every entity with no deletion and no refused
    /// write, a field changed by exactly one write that no other write
    /// changing it follows or runs concurrently with (as far as the log
    /// knows: a write on top of a merge knows no log write) holds that
    /// write's value in the hub's final state. Edits of different fields
    /// on different nodes must all survive.
    pub fn field_edits(&mut self, merged: &[&str], hub: &[Entity], refused: &Value, at: SimTime) {
        let mut by_key: BTreeMap<&EntityKey, Vec<usize>> = BTreeMap::new();
        for (i, write) in self.writes.iter().enumerate() {
            if merged.contains(&write.key.entity_type.as_str()) {
                by_key.entry(&write.key).or_default().push(i);
            }
        }
        let mut found = Vec::new();
        for (key, writes) in by_key {
            let untouchable = writes.iter().any(|&i| {
                let w = &self.writes[i];
                w.deleted || w.changed.iter().any(|(_, v)| v.as_ref() == Some(refused))
            });
            let Some(current) = hub.iter().find(|e| &e.key == key) else {
                continue;
            };
            if untouchable || current.is_deleted {
                continue;
            }
            let mut fields: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
            // Every write counts as a changer, even one lost to a restore:
            // it may have reached the hub all the same.
            for &i in &writes {
                for (name, _) in &self.writes[i].changed {
                    fields.entry(name.as_str()).or_default().push(i);
                }
            }
            for (name, changers) in fields {
                let latest: Vec<usize> = changers
                    .iter()
                    .copied()
                    .filter(|&i| !changers.iter().any(|&j| j != i && self.descends(j, i)))
                    .collect();
                let [only] = latest[..] else { continue };
                let write = &self.writes[only];
                if !self.required(write) {
                    continue;
                }
                let value = write
                    .changed
                    .iter()
                    .find(|(n, _)| n == name)
                    .and_then(|(_, v)| v.as_ref());
                if current.fields.get(name) != value {
                    found.push(format!(
                        "{key}: field {name} was last changed by write #{} by {} to {value:?}, but the hub holds {:?}",
                        write.number,
                        write.who,
                        current.fields.get(name)
                    ));
                }
            }
        }
        for detail in found {
            self.violation(ViolationKind::LostFieldEdit, at, detail);
        }
    }

    /// Whether write `later` was written knowing write `earlier`.
    fn descends(&self, later: usize, earlier: usize) -> bool {
        let mut stack = self.writes[later].after.clone();
        let mut seen = HashSet::new();
        while let Some(i) = stack.pop() {
            if i == earlier {
                return true;
            }
            if seen.insert(i) {
                stack.extend(self.writes[i].after.iter().copied());
            }
        }
        false
    }

    /// Whether every write of `key` was lost to a restore before the hub
    /// applied it (so a child waiting for it waits for good, rightly).
    pub fn lost_to_restore(&self, key: &EntityKey) -> bool {
        let mut writes = self.writes.iter().filter(|w| &w.key == key).peekable();
        writes.peek().is_some() && writes.all(|w| !self.required(w))
    }

    /// Writes recorded so far.
    pub fn write_count(&self) -> u64 {
        self.writes.len() as u64
    }
}
