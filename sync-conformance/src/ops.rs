//! Random local writes and random multi-node runs for property tests, on
//! the report types of [`reports_registry`](crate::fixtures::reports_registry).

use proptest::prelude::*;
use sync_core::{Engine, EntityKey, LocalWrite, Store, StoreTxn, Timestamp, Uuid};

use crate::fixtures::{LINE, REPORT, line, line_key, report, report_key, t};
use crate::net::{Fault, Link, Net};

/// One local write. Indices pick among what the writing engine holds.
#[derive(Clone, Debug)]
pub enum Op {
    /// A new report.
    Insert(i64),
    /// A new version of one of this engine's own reports.
    Update(usize, i64),
    /// Soft-delete one of this engine's own entities.
    Delete(usize),
    /// A new line under any report this engine holds (its own or synced).
    Line(usize, f64),
}

/// Any [`Op`], inserts and updates more often than deletes.
pub fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => any::<i16>().prop_map(|h| Op::Insert(h.into())),
        3 => (any::<usize>(), any::<i16>()).prop_map(|(p, h)| Op::Update(p, h.into())),
        1 => any::<usize>().prop_map(Op::Delete),
        2 => (any::<usize>(), -400i32..400).prop_map(|(p, q)| Op::Line(p, f64::from(q) / 4.0)),
    ]
}

/// What one engine wrote itself: it alone changes these, so runs built from
/// [`Op`]s have no conflicts.
#[derive(Clone, Debug, Default)]
pub struct Owned {
    /// The reports it created.
    pub reports: Vec<Uuid>,
    /// The lines it created.
    pub lines: Vec<Uuid>,
}

impl Owned {
    /// Every key this engine created.
    pub fn keys(&self) -> Vec<EntityKey> {
        let reports = self.reports.iter().map(|id| report_key(*id));
        reports
            .chain(self.lines.iter().map(|id| line_key(*id)))
            .collect()
    }

    /// Performs `op` on `engine` at `now` and returns the key it wrote. A
    /// write needing something that does not exist yet becomes an insert.
    ///
    /// # Panics
    ///
    /// When the engine refuses the write (the test fails).
    pub fn apply<S: Store>(
        &mut self,
        engine: &mut Engine<S>,
        op: &Op,
        now: Timestamp,
    ) -> EntityKey {
        match *op {
            Op::Update(pick, hours) if !self.reports.is_empty() => {
                let key = report_key(self.reports[pick % self.reports.len()]);
                engine
                    .put(key.clone(), report("2025-12-13", hours), now)
                    .expect("an update of an own report succeeds");
                key
            }
            Op::Delete(pick) if !(self.reports.is_empty() && self.lines.is_empty()) => {
                let keys = self.keys();
                let key = keys[pick % keys.len()].clone();
                engine
                    .delete(key.clone(), now)
                    .expect("deleting an existing entity succeeds");
                key
            }
            Op::Line(pick, qty) => {
                let parents = ids_of(engine, REPORT, true);
                if parents.is_empty() {
                    return self.apply(engine, &Op::Insert(0), now);
                }
                let parent = parents[pick % parents.len()];
                let id = engine
                    .insert(LINE, line(parent, "task", qty), now)
                    .expect("a line under an existing report is accepted");
                self.lines.push(id);
                line_key(id)
            }
            Op::Insert(hours) | Op::Update(_, hours) => {
                let id = engine
                    .insert(REPORT, report("2025-12-12", hours), now)
                    .expect("an insert succeeds");
                self.reports.push(id);
                report_key(id)
            }
            Op::Delete(_) => self.apply(engine, &Op::Insert(0), now),
        }
    }
}

/// The ids of the entities of `entity_type` that `engine` holds, in id
/// order; tombstones too when `tombstones`.
///
/// # Panics
///
/// When the store fails a read (the test fails).
pub fn ids_of<S: Store>(engine: &mut Engine<S>, entity_type: &str, tombstones: bool) -> Vec<Uuid> {
    let txn = engine.store_mut().begin().expect("begin a read");
    txn.entities(entity_type, None, usize::MAX)
        .expect("entities")
        .into_iter()
        .filter(|s| tombstones || !s.entity.is_deleted)
        .map(|s| s.entity.key.id)
        .collect()
}

/// A fault for the link: mostly delivered.
pub fn arb_fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        5 => Just(Fault::Deliver),
        2 => Just(Fault::Drop),
        2 => Just(Fault::Duplicate),
        2 => Just(Fault::Delay),
    ]
}

/// One step of a multi-node run.
#[derive(Clone, Debug)]
pub enum Step {
    /// Engine `e` writes (0 is the hub, `i + 1` is node `i`).
    Write(usize, Op),
    /// Node `i` syncs over a link playing these faults.
    Sync(usize, Vec<Fault>),
}

/// Runs of `len` steps over a hub and `nodes` nodes: three writes to one
/// sync, each sync with up to five faults.
pub fn arb_steps(nodes: usize, len: std::ops::Range<usize>) -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        3 => (0..=nodes, arb_op()).prop_map(|(e, op)| Step::Write(e, op)),
        1 => (0..nodes, prop::collection::vec(arb_fault(), 0..6)).prop_map(|(i, f)| Step::Sync(i, f)),
    ];
    prop::collection::vec(step, len)
}

/// The engine a step names: 0 is the hub, `i + 1` is node `i`.
pub fn engine<S: Store>(net: &mut Net<S>, e: usize) -> &mut Engine<S> {
    if e == 0 {
        &mut net.hub
    } else {
        &mut net.nodes[e - 1]
    }
}

/// Plays `steps` on `net`, one second apart (a sync may advance the clock
/// through its retry deadlines). Every message goes through `link` (the
/// steps' faults are appended to its script). Returns what each engine
/// wrote and the time at the end.
///
/// # Panics
///
/// When a write or a sync fails (the test fails).
pub fn run<S: Store>(
    net: &mut Net<S>,
    steps: &[Step],
    link: &mut Link<S>,
) -> (Vec<Owned>, Timestamp) {
    let mut owned = vec![Owned::default(); net.nodes.len() + 1];
    let mut now = t(0);
    for step in steps {
        now = now.add_millis(1_000);
        match step {
            Step::Write(e, op) => {
                owned[*e].apply(engine(net, *e), op, now);
            }
            Step::Sync(i, faults) => {
                link.push(faults.iter().copied());
                now = net
                    .sync_faulty(*i, now, link)
                    .expect("a faulty sync fails no call");
            }
        }
    }
    (owned, now)
}

/// A write an application makes on whatever it holds, synced or its own,
/// so several engines edit and delete the same reports and lines
/// concurrently. Indices pick among the writer's live entities. Deleting a
/// report deletes its live lines with it in one batch (as `ON DELETE
/// CASCADE` would); lines are only added under live reports.
#[derive(Clone, Debug)]
pub enum Shared {
    /// A new report with these hours.
    NewReport(i64),
    /// A new version of a live report.
    EditReport(usize, i64),
    /// Deletes a live report and its live lines, in one batch.
    DeleteReport(usize),
    /// A new line under a live report.
    NewLine(usize, f64),
    /// A new version of a live line, under the same report.
    EditLine(usize, f64),
    /// Deletes a live line.
    DeleteLine(usize),
}

/// One step of a run of [`Shared`] writes.
#[derive(Clone, Debug)]
pub enum SharedStep {
    /// Engine `e` writes (0 is the hub, `i + 1` is node `i`).
    Write(usize, Shared),
    /// Node `i` syncs over the link playing these faults.
    Sync(usize, Vec<Fault>),
}

/// Runs of up to 40 [`SharedStep`]s over a hub and three nodes.
pub fn arb_shared_steps() -> impl Strategy<Value = Vec<SharedStep>> {
    let op = prop_oneof![
        2 => any::<i16>().prop_map(|h| Shared::NewReport(h.into())),
        2 => (any::<usize>(), any::<i16>()).prop_map(|(p, h)| Shared::EditReport(p, h.into())),
        1 => any::<usize>().prop_map(Shared::DeleteReport),
        3 => (any::<usize>(), -400i32..400).prop_map(|(p, q)| Shared::NewLine(p, f64::from(q) / 4.0)),
        2 => (any::<usize>(), -400i32..400).prop_map(|(p, q)| Shared::EditLine(p, f64::from(q) / 4.0)),
        1 => any::<usize>().prop_map(Shared::DeleteLine),
    ];
    let step = prop_oneof![
        3 => (0..=3usize, op).prop_map(|(e, op)| SharedStep::Write(e, op)),
        2 => (0..3usize, prop::collection::vec(arb_fault(), 0..6)).prop_map(|(i, f)| SharedStep::Sync(i, f)),
    ];
    prop::collection::vec(step, 1..40)
}

/// Performs `op` on `engine`; a write on something the engine does not hold
/// live does nothing.
///
/// # Panics
///
/// When the engine refuses the write (the test fails).
pub fn shared_write<S: Store>(engine: &mut Engine<S>, op: &Shared, now: Timestamp) {
    let reports = ids_of(engine, REPORT, false);
    let lines = ids_of(engine, LINE, false);
    let pick = |ids: &[Uuid], p: usize| (!ids.is_empty()).then(|| ids[p % ids.len()]);
    match *op {
        Shared::NewReport(hours) => {
            engine
                .insert("DailyReport", report("2025-12-12", hours), now)
                .expect("a write on a live entity succeeds");
        }
        Shared::EditReport(p, hours) => {
            if let Some(id) = pick(&reports, p) {
                engine
                    .put(report_key(id), report("2025-12-13", hours), now)
                    .expect("a write on a live entity succeeds");
            }
        }
        Shared::DeleteReport(p) => {
            let Some(id) = pick(&reports, p) else { return };
            let mut batch: Vec<LocalWrite> = lines
                .iter()
                .filter(|l| parent_of(engine, **l) == Some(id))
                .map(|l| LocalWrite::Delete { key: line_key(*l) })
                .collect();
            batch.push(LocalWrite::Delete {
                key: report_key(id),
            });
            engine
                .write_batch(batch, now)
                .expect("deleting live entities succeeds");
        }
        Shared::NewLine(p, qty) => {
            if let Some(id) = pick(&reports, p) {
                engine
                    .insert("DailyReportLine", line(id, "task", qty), now)
                    .expect("a write on a live entity succeeds");
            }
        }
        Shared::EditLine(p, qty) => {
            if let Some(id) = pick(&lines, p) {
                let parent = parent_of(engine, id).expect("a line names its report");
                engine
                    .put(line_key(id), line(parent, "edited", qty), now)
                    .expect("a write on a live entity succeeds");
            }
        }
        Shared::DeleteLine(p) => {
            if let Some(id) = pick(&lines, p) {
                engine
                    .delete(line_key(id), now)
                    .expect("deleting a live line succeeds");
            }
        }
    }
}

fn parent_of<S: Store>(engine: &mut Engine<S>, line: Uuid) -> Option<Uuid> {
    let stored = engine.get(&line_key(line)).expect("the store reads")?;
    stored.fields.get("report_id").and_then(|v| v.as_uuid())
}
