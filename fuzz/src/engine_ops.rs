//! Target `engine_ops`: structure-aware. An [`Arbitrary`] sequence of
//! [`Op`]s (writes on the hub and two nodes, sync sessions over a network
//! that loses, duplicates and reorders packets, crashes that reopen an
//! engine from its store, and manual conflict resolutions) runs on memory
//! stores; then the network heals, every node syncs until quiescent
//! (bounded), and the simulator's invariants are checked with
//! the simulator's oracle, `sync_conformance::sim::checks::Checks`, fed
//! the same observations the simulator feeds it. After every step:
//! - no receiver applies the same packet bytes twice (`Checks::applied`);
//! - no packet counter goes backwards (`Checks::counters`, with the
//!   engine's own re-initialisation events);
//! - the causal check (`Checks::false_conflicts`): no conflict (audit
//!   record, history entry, keep-both copy or open conflict) between two
//!   versions one of which was written knowing the other, against the
//!   writes each writer replaced knowingly;
//! - no write is lost (`Checks::lost_writes`): every committed write is
//!   current somewhere, in a version history, an open conflict or the audit
//!   log, or was replaced knowingly by a write that is.
//!
//! And after healing: hub and nodes converge (concurrent versions resolved
//! the same way everywhere): the same entities with the same contents,
//! nothing pending either way, nothing parked, no session running; then
//! the causal and lost-write checks once more.

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use std::collections::BTreeSet;
use sync_conformance::fixtures::{self, hub_id, hub_info, node_info, t};
use sync_conformance::net::{self, synced_state};

use sync_conformance::sim::checks::{Checks, Traces};
use sync_conformance::sim::scheduler::Who;
use sync_conformance::sim::world::Fnv;
use sync_core::{
    ConflictStrategy, Engine, EngineConfig, Entity, EntityKey, EntityRegistry, Event, ManualChoice,
    NodeId, Record, Store, SyncError, Timestamp, Uuid, Value,
};
use sync_store_memory::MemoryStore;

/// Most operations run per input.
pub const MAX_OPS: usize = 96;
/// Sync rounds (every node, one session each) allowed to reach quiescence
/// after healing; the simulator needs at most 2.
pub const MAX_ROUNDS: usize = 3;

/// A participant.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Actor {
    /// The hub.
    Hub,
    /// Node 0.
    Node0,
    /// Node 1.
    Node1,
}

/// The entity types written (the fixture registry's).
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `DailyReport`, a parent, resolved by the scenario's report strategy.
    Report,
    /// `DailyReportLine`, referencing a report.
    Line,
    /// A note resolved by server-wins.
    NoteServerWins,
    /// A note resolved by last-writer-wins.
    NoteLastWriterWins,
    /// A note resolved by keep-both.
    NoteKeepBoth,
    /// A note resolved by a person.
    NoteManual,
    /// A note resolved by the merge resolver.
    NoteMerge,
    /// A last-writer-wins note without version history.
    NoteUnversioned,
}

/// A person's decision on an open manual conflict.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    /// Keep the current version.
    KeepCurrent,
    /// Take the incoming one.
    TakeIncoming,
    /// Store merged fields.
    Merge,
}

/// One step.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// A new entity of `kind` on `who` (a line takes a known report).
    Insert {
        /// Writer.
        who: Actor,
        /// Type.
        kind: Kind,
        /// Chooses the parent of a line among the known keys.
        parent: u8,
        /// Field content.
        value: u8,
    },
    /// Writes new fields to a known key on `who` (creating it there if
    /// `who` does not have it: a concurrent creation).
    Put {
        /// Writer.
        who: Actor,
        /// Chooses the key among the known keys.
        pick: u8,
        /// Field content.
        value: u8,
    },
    /// Deletes a known key on `who`.
    Delete {
        /// Writer.
        who: Actor,
        /// Chooses the key.
        pick: u8,
    },
    /// Node `node` (false: 0, true: 1) starts a session with the hub.
    StartSync {
        /// Which node.
        node: bool,
    },
    /// The node builds its next packet, if any, and puts it on the wire.
    Send {
        /// Which node.
        node: bool,
    },
    /// One of the node's packets on the wire reaches the hub (any of them:
    /// reordering), and the hub's answer goes on the wire back.
    Deliver {
        /// Which node.
        node: bool,
        /// Chooses the packet.
        pick: u8,
        /// Deliver a copy and leave the packet on the wire.
        duplicate: bool,
    },
    /// One of the hub's answers on the wire reaches the node.
    Receive {
        /// Which node.
        node: bool,
        /// Chooses the packet.
        pick: u8,
        /// Deliver a copy and leave the packet on the wire.
        duplicate: bool,
    },
    /// A packet on the wire is lost.
    Lose {
        /// Which node's link.
        node: bool,
        /// Towards the hub (else towards the node).
        to_hub: bool,
        /// Chooses the packet.
        pick: u8,
    },
    /// Time reaches the node's retry deadline, which fires.
    Timeout {
        /// Which node.
        node: bool,
    },
    /// `who` crashes and restarts: its engine is reopened from its store.
    Crash {
        /// Who.
        who: Actor,
    },
    /// A person on `who` decides an open manual conflict.
    Resolve {
        /// Who.
        who: Actor,
        /// Chooses the conflict.
        pick: u8,
        /// The decision.
        choice: Choice,
    },
    /// Time passes.
    Tick {
        /// Milliseconds.
        millis: u16,
    },
}

/// A whole input: the report types' strategy and the operations.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub struct Scenario {
    /// Index into `fixtures::all_strategies()` for the report types.
    pub report_strategy: u8,
    /// The operations (at most [`MAX_OPS`] run).
    pub ops: Vec<Op>,
}

/// Runs one input; panics on a failed check.
pub fn run(data: &[u8]) {
    let Ok(scenario) = Scenario::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    run_scenario(&scenario);
}

/// Runs a scenario and checks the invariants; panics on a failed check.
pub fn run_scenario(scenario: &Scenario) {
    let mut world = OpsWorld::new(scenario.report_strategy);
    for (i, op) in scenario.ops.iter().take(MAX_OPS).enumerate() {
        world.now = world.now.add_millis(1);
        world.step(op);
        world.check(&format!("after step {i} ({op:?})"));
    }
    world.quiesce();
    world.check("after healing");
}

/// One participant: its engine (rebuilt after a crash) and its config.
struct Participant {
    who: Who,
    engine: Option<Engine<MemoryStore>>,
    config: EngineConfig,
}

impl Participant {
    fn engine(&mut self) -> &mut Engine<MemoryStore> {
        // Only `crash` takes the engine, and it puts one back at once.
        self.engine.as_mut().expect("the engine is running")
    }

    fn crash(&mut self, registry: &EntityRegistry) {
        let store = self.engine.take().expect("running").into_store();
        let engine = Engine::open(store, registry.clone(), self.config.clone())
            .unwrap_or_else(|e| panic!("{} does not reopen after a crash: {e}", self.who));
        self.engine = Some(engine);
    }
}

struct OpsWorld {
    registry: EntityRegistry,
    /// Hub, node 0, node 1.
    actors: [Participant; 3],
    /// Per node: packets on the wire towards the hub, and back.
    to_hub: [Vec<Bytes>; 2],
    to_node: [Vec<Bytes>; 2],
    /// Every key ever written, with a line's parent.
    keys: Vec<(EntityKey, Option<Uuid>)>,
    checks: Checks,
    now: Timestamp,
    writes: u64,
}

impl OpsWorld {
    fn new(report_strategy: u8) -> Self {
        let strategies = fixtures::all_strategies();
        let strategy: ConflictStrategy =
            strategies[usize::from(report_strategy) % strategies.len()].clone();
        let registry = fixtures::registry(strategy);
        let participant = |who: Who, info, seed| {
            let config = EngineConfig::default().seed(seed);
            let engine = Engine::new(MemoryStore::new(), registry.clone(), config.clone(), info)
                .expect("create engine");
            Participant {
                who,
                engine: Some(engine),
                config,
            }
        };
        let mut actors = [
            participant(Who::Hub, hub_info(), 1),
            participant(Who::Node(0), node_info(0), 100),
            participant(Who::Node(1), node_info(1), 101),
        ];
        for i in 0..2 {
            actors[0]
                .engine()
                .register_peer(node_info(i))
                .expect("register node");
            actors[i + 1]
                .engine()
                .register_peer(hub_info())
                .expect("register hub");
        }
        OpsWorld {
            registry,
            actors,
            to_hub: [Vec::new(), Vec::new()],
            to_node: [Vec::new(), Vec::new()],
            keys: Vec::new(),
            checks: Checks::default(),
            now: t(0),
            writes: 0,
        }
    }

    fn step(&mut self, op: &Op) {
        match *op {
            Op::Insert {
                who,
                kind,
                parent,
                value,
            } => self.insert(who, kind, parent, value),
            Op::Put { who, pick, value } => self.put(who, pick, value),
            Op::Delete { who, pick } => self.delete(who, pick),
            Op::StartSync { node } => {
                let engine = self.actors[node_index(node) + 1].engine();
                engine.start_sync(hub_id()).expect("start_sync");
            }
            Op::Send { node } => self.send(node_index(node)),
            Op::Deliver {
                node,
                pick,
                duplicate,
            } => self.deliver(node_index(node), pick, duplicate),
            Op::Receive {
                node,
                pick,
                duplicate,
            } => self.receive(node_index(node), pick, duplicate),
            Op::Lose { node, to_hub, pick } => {
                let wire = if to_hub {
                    &mut self.to_hub[node_index(node)]
                } else {
                    &mut self.to_node[node_index(node)]
                };
                take(wire, pick, false);
            }
            Op::Timeout { node } => {
                let engine = self.actors[node_index(node) + 1].engine();
                if let Some(deadline) = engine.poll_timeout() {
                    self.now = self.now.max(deadline);
                }
                engine.handle_timeout(self.now);
            }
            Op::Crash { who } => {
                let registry = self.registry.clone();
                self.actors[actor_index(who)].crash(&registry);
            }
            Op::Resolve { who, pick, choice } => self.resolve(who, pick, choice),
            Op::Tick { millis } => self.now = self.now.add_millis(i64::from(millis)),
        }
        self.observe_all();
    }

    /// Feeds every participant's events and packet counters to the checks.
    fn observe_all(&mut self) {
        for i in 0..3 {
            self.observe(i);
        }
    }

    /// Drains participant `i`'s events into the checks (versions the hub
    /// applied, conflicts taking an old version, re-initialised pairs) and
    /// checks its packet counters, as the simulator does.
    fn observe(&mut self, i: usize) {
        let at = sim_time(self.now);
        let who = self.actors[i].who;
        let events = net::drain(self.actors[i].engine());
        let mut reinitialized = BTreeSet::<NodeId>::new();
        for event in &events {
            match event {
                Event::Applied(change) if who == Who::Hub => {
                    self.checks.hub_applied(&self.registry, &change.entity);
                }
                Event::PairReinitialized { peer, .. } => {
                    reinitialized.insert(*peer);
                }
                Event::Conflict(conflict) => {
                    let taken = events.iter().find_map(|e| match e {
                        Event::Applied(a) if a.entity.key == conflict.key => Some(&a.entity),
                        _ => None,
                    });
                    if let Some(version) = taken {
                        self.checks.stale_conflict(who, &self.registry, version, at);
                    }
                }
                _ => {}
            }
        }
        let peers = self.actors[i].engine().peers().expect("read peers");
        self.checks.counters(who, &peers, &reinitialized, at);
    }

    fn fields(&mut self, kind: Kind, parent: Option<Uuid>, value: u8) -> Record {
        self.writes += 1;
        let rev = Value::Text(format!("w{}", self.writes));
        let mut record = Record::new();
        match kind {
            Kind::Report => {
                record.insert("date".into(), Value::from("2025-12-12"));
                record.insert("hours".into(), Value::Int(i64::from(value)));
            }
            Kind::Line => {
                if let Some(parent) = parent {
                    record.insert("report_id".into(), Value::Uuid(parent));
                }
                record.insert("qty".into(), Value::Float(f64::from(value) / 4.0));
            }
            _ => {
                record.insert("title".into(), Value::Text(format!("v{value}")));
                record.insert("n".into(), Value::Int(i64::from(value)));
            }
        }
        record.insert("rev".into(), rev);
        record
    }

    fn insert(&mut self, who: Actor, kind: Kind, parent: u8, value: u8) {
        let parent = if kind == Kind::Line {
            let reports: Vec<Uuid> = self
                .keys
                .iter()
                .filter(|(k, _)| k.entity_type == fixtures::REPORT)
                .map(|(k, _)| k.id)
                .collect();
            if reports.is_empty() {
                return;
            }
            Some(reports[usize::from(parent) % reports.len()])
        } else {
            None
        };
        let fields = self.fields(kind, parent, value);
        let type_name = type_name(kind);
        let actor = &mut self.actors[actor_index(who)];
        let Some(id) = local_result(
            actor.who,
            actor.engine().insert(type_name, fields, self.now),
        ) else {
            return;
        };
        let key = EntityKey::new(type_name, id);
        self.keys.push((key.clone(), parent));
        self.record(who, &key, &[]);
    }

    fn put(&mut self, who: Actor, pick: u8, value: u8) {
        let Some((key, parent)) = pick_from(&self.keys, pick).cloned() else {
            return;
        };
        let kind = kind_of(&key.entity_type);
        let fields = self.fields(kind, parent, value);
        let before = self.current(who, &key);
        let actor = &mut self.actors[actor_index(who)];
        let result = actor.engine().put(key.clone(), fields, self.now);
        if local_result(actor.who, result).is_some() {
            self.record(who, &key, &before.iter().collect::<Vec<_>>());
        }
    }

    fn delete(&mut self, who: Actor, pick: u8) {
        let Some((key, _)) = pick_from(&self.keys, pick).cloned() else {
            return;
        };
        let Some(before) = self.current(who, &key).filter(|e| !e.is_deleted) else {
            return;
        };
        let actor = &mut self.actors[actor_index(who)];
        let result = actor.engine().delete(key.clone(), self.now);
        if local_result(actor.who, result).is_some() {
            self.record(who, &key, &[&before]);
        }
    }

    fn resolve(&mut self, who: Actor, pick: u8, choice: Choice) {
        let engine = self.actors[actor_index(who)].engine();
        let open = engine.open_conflicts().expect("open conflicts");
        let Some(conflict) = pick_from(&open, pick).cloned() else {
            return;
        };
        let choice = match choice {
            Choice::KeepCurrent => ManualChoice::KeepCurrent,
            Choice::TakeIncoming => ManualChoice::TakeIncoming,
            Choice::Merge => {
                ManualChoice::Merge(self.fields(kind_of(&conflict.key.entity_type), None, 7))
            }
        };
        let before = self.current(who, &conflict.key);
        let actor = &mut self.actors[actor_index(who)];
        let result = actor
            .engine()
            .resolve_conflict(conflict.id, choice, self.now);
        if local_result(actor.who, result).is_some() {
            let mut replaced: Vec<&Entity> = before.iter().collect();
            replaced.extend([&conflict.current, &conflict.incoming]);
            self.record(who, &conflict.key, &replaced);
        }
    }

    fn current(&mut self, who: Actor, key: &EntityKey) -> Option<Entity> {
        let engine = self.actors[actor_index(who)].engine();
        engine.get(key).expect("read entity")
    }

    /// Logs a committed write in the reference log.
    fn record(&mut self, who: Actor, key: &EntityKey, replaced: &[&Entity]) {
        let Some(after) = self.current(who, key) else {
            return;
        };
        let actor_who = self.actors[actor_index(who)].who;
        self.checks
            .write(actor_who, &self.registry, &after, replaced);
    }

    fn send(&mut self, i: usize) {
        let now = self.now;
        let node = self.actors[i + 1].engine();
        match node.poll_transmit(now) {
            Ok(Some(transmit)) => self.to_hub[i].push(transmit.bytes),
            Ok(None) => {}
            Err(e) => panic!("node {i}'s poll_transmit failed: {e}"),
        }
    }

    fn deliver(&mut self, i: usize, pick: u8, duplicate: bool) {
        let Some(bytes) = take(&mut self.to_hub[i], pick, duplicate) else {
            return;
        };
        let now = self.now;
        let hub = self.actors[0].engine();
        let reply = match hub.handle_incoming(&bytes, now) {
            Ok(incoming) => {
                if !incoming.duplicate {
                    self.checks.applied(
                        Who::Hub,
                        incoming.from,
                        incoming.packet_no,
                        Fnv::of(&bytes),
                        sim_time(now),
                    );
                }
                match hub.build_packet(incoming.from, now) {
                    Ok(transmit) => transmit.bytes,
                    Err(e) => panic!("the hub could not build its answer: {e}"),
                }
            }
            Err(SyncError::Store(e)) => panic!("the hub's memory store failed: {e}"),
            Err(e) => hub.error_envelope(&e),
        };
        self.to_node[i].push(reply);
    }

    fn receive(&mut self, i: usize, pick: u8, duplicate: bool) {
        let Some(bytes) = take(&mut self.to_node[i], pick, duplicate) else {
            return;
        };
        let now = self.now;
        let node = self.actors[i + 1].engine();
        match node.handle_incoming(&bytes, now) {
            Ok(incoming) if !incoming.duplicate => self.checks.applied(
                Who::Node(i),
                incoming.from,
                incoming.packet_no,
                Fnv::of(&bytes),
                sim_time(now),
            ),
            Ok(_) | Err(SyncError::Peer(_) | SyncError::Rejected { .. }) => {}
            Err(e) => panic!("node {i} failed on the hub's packet: {e}"),
        }
    }

    /// Heals: the wire is cleared (what was on it is lost), then every node
    /// runs sessions on a perfect network until all agree.
    fn quiesce(&mut self) {
        self.to_hub = [Vec::new(), Vec::new()];
        self.to_node = [Vec::new(), Vec::new()];
        for round in 0..=MAX_ROUNDS {
            let Some(problem) = self.unsettled() else {
                return;
            };
            assert!(
                round < MAX_ROUNDS,
                "not quiescent after {MAX_ROUNDS} rounds of sync on a perfect network: {problem}"
            );
            for i in 0..2 {
                self.now = self.now.add_millis(10);
                let (hub, nodes) = self.actors.split_at_mut(1);
                let result = net::session(nodes[i].engine(), hub[0].engine(), self.now);
                if let Err(e) = result {
                    panic!("node {i}'s session after healing failed: {e}");
                }
                self.observe(0);
                self.observe(i + 1);
            }
        }
    }

    /// What keeps the system from being settled, if anything.
    fn unsettled(&mut self) -> Option<String> {
        let hub_state = digests(&synced_state(self.actors[0].engine()).expect("read hub"));
        if let Some(p) = self.actors[0].engine().parked().expect("parked").first() {
            return Some(format!("{} parked on the hub", p.entity.key));
        }
        for i in 0..2 {
            let owed = self.actors[0]
                .engine()
                .pending_count(node_info(i).id)
                .expect("pending");
            let node = self.actors[i + 1].engine();
            if node.is_syncing(hub_id()) {
                return Some(format!("node {i} is still syncing"));
            }
            let pending = node.pending_count(hub_id()).expect("pending");
            if pending > 0 || owed > 0 {
                return Some(format!(
                    "node {i} owes the hub {pending} changes, the hub owes it {owed}"
                ));
            }
            if let Some(p) = node.parked().expect("parked").first() {
                return Some(format!("{} parked on node {i}", p.entity.key));
            }
            let state = digests(&synced_state(node).expect("read node"));
            if state != hub_state {
                let first = hub_state
                    .iter()
                    .zip(&state)
                    .find(|(h, n)| h != n)
                    .map(|(h, n)| format!("hub {:?} / node {:?}", h.0, n.0));
                return Some(format!(
                    "diverged: node {i} holds {} entities, the hub {}; first difference {first:?}",
                    state.len(),
                    hub_state.len()
                ));
            }
        }
        None
    }

    /// The oracle's checks on the stores as they are now (causal order, no
    /// lost write), then every violation found so far (these, applied once,
    /// counters); panics naming `when` if there is one.
    fn check(&mut self, when: &str) {
        let mut traces = Traces::default();
        for actor in &mut self.actors {
            let txn = actor.engine().store_mut().begin().expect("begin");
            traces
                .collect(&self.registry, &txn)
                .expect("collect traces");
            drop(txn);
        }
        let at = sim_time(self.now);
        self.checks.false_conflicts(&traces, at);
        self.checks.lost_writes(&traces, at);
        if !self.checks.violations.is_empty() {
            let list: Vec<String> = self
                .checks
                .violations
                .iter()
                .take(10)
                .map(ToString::to_string)
                .collect();
            panic!(
                "{} invariant violations {when}:\n  {}{}",
                self.checks.violations.len(),
                list.join("\n  "),
                if self.checks.hints.is_empty() {
                    String::new()
                } else {
                    format!("\nhints:\n  {}", self.checks.hints.join("\n  "))
                }
            );
        }
    }
}

/// Takes packet `pick % len` off `wire` (a copy, if `duplicate`).
fn take(wire: &mut Vec<Bytes>, pick: u8, duplicate: bool) -> Option<Bytes> {
    if wire.is_empty() {
        return None;
    }
    let index = usize::from(pick) % wire.len();
    Some(if duplicate {
        wire[index].clone()
    } else {
        wire.remove(index)
    })
}

fn pick_from<T>(items: &[T], pick: u8) -> Option<&T> {
    if items.is_empty() {
        None
    } else {
        items.get(usize::from(pick) % items.len())
    }
}

/// A local write's outcome: refused writes are skipped; a failing store is
/// a finding.
fn local_result<T>(who: Who, result: Result<T, SyncError>) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(SyncError::Store(e)) => panic!("{who}'s memory store failed on a local write: {e}"),
        Err(_) => None,
    }
}

fn node_index(node: bool) -> usize {
    usize::from(node)
}

fn actor_index(actor: Actor) -> usize {
    match actor {
        Actor::Hub => 0,
        Actor::Node0 => 1,
        Actor::Node1 => 2,
    }
}

fn type_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Report => fixtures::REPORT,
        Kind::Line => fixtures::LINE,
        Kind::NoteServerWins => fixtures::NOTE_SERVER_WINS,
        Kind::NoteLastWriterWins => fixtures::NOTE_LAST_WRITER_WINS,
        Kind::NoteKeepBoth => fixtures::NOTE_KEEP_BOTH,
        Kind::NoteManual => fixtures::NOTE_MANUAL,
        Kind::NoteMerge => fixtures::NOTE_MERGE,
        Kind::NoteUnversioned => fixtures::NOTE_UNVERSIONED,
    }
}

fn kind_of(type_name: &str) -> Kind {
    match type_name {
        fixtures::REPORT => Kind::Report,
        fixtures::LINE => Kind::Line,
        fixtures::NOTE_SERVER_WINS => Kind::NoteServerWins,
        fixtures::NOTE_LAST_WRITER_WINS => Kind::NoteLastWriterWins,
        fixtures::NOTE_KEEP_BOTH => Kind::NoteKeepBoth,
        fixtures::NOTE_MANUAL => Kind::NoteManual,
        fixtures::NOTE_MERGE => Kind::NoteMerge,
        _ => Kind::NoteUnversioned,
    }
}

/// Simulated microseconds for the checks' reports.
fn sim_time(now: Timestamp) -> i64 {
    now.as_micros() - t(0).as_micros()
}

fn digests(entities: &[Entity]) -> Vec<(EntityKey, [u8; 32])> {
    entities
        .iter()
        .map(|e| (e.key.clone(), e.content_digest()))
        .collect()
}
