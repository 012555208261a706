//! The simulated world: a hub and nodes, the network between them, the
//! scheduler, the workload and the checks, and what each action does.

use std::collections::BTreeSet;

use bytes::Bytes;
use sync_core::{
    Codec, ConflictStrategy, EngineConfig, EntityRegistry, Event, Incoming, NodeId, RetryPolicy,
    Store, StoreTxn, SyncError,
};

use super::actor::Actor;
use super::checks::{Checks, Shadow, ViolationKind};
use super::faults::Faults;
use super::network::Network;
use super::random::Rand;
use super::scheduler::{Action, MS, SECOND, Scheduler, SimTime, Who};
use super::stores::SimStores;
use super::watch::Watch;
use super::workload::Workload;
use super::{SimConfig, SimStats};
use crate::fixtures::{
    MEMO, all_strategies, hub_id, hub_info, memo_type, memo_user, node_info, registry,
};
use sync_core::scope::{NodeAttributes, ScopeRule};

/// Backups kept per node.
const SNAPSHOTS_KEPT: usize = 4;

/// Everything one run holds.
pub struct World<B: SimStores> {
    pub(super) backend: B,
    pub(super) config: SimConfig,
    pub(super) faults: Faults,
    pub(super) registry: EntityRegistry,
    pub(super) rng: Rand,
    pub(super) sched: Scheduler,
    pub(super) net: Network,
    pub(super) hub: Actor<B::Store>,
    pub(super) nodes: Vec<Actor<B::Store>>,
    pub(super) snapshots: Vec<Vec<(B::Snapshot, Shadow)>>,
    pub(super) checks: Checks,
    pub(super) workload: Workload,
    pub(super) stats: SimStats,
    /// Running hash of everything that happened, for the determinism check.
    pub(super) trace: Fnv,
    /// When the fault phase ends.
    pub(super) fault_end: SimTime,
    /// Faults are over: no new operations, crashes or partitions.
    pub(super) healed: bool,
    /// Hub answers (exchanges) so far.
    pub(super) exchanges: u64,
    /// Hub answers when the faults stopped.
    pub(super) exchanges_at_heal: u64,
    /// A participant could not be restarted: the run cannot go on.
    pub(super) fatal: bool,
    /// Prints one entity's history, when diagnosing.
    pub(super) watch: Option<Watch>,
}

/// FNV-1a, 64 bits: a small deterministic hash for traces and packets.
#[derive(Clone, Copy, Debug)]
pub struct Fnv(pub u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    /// Feeds `bytes`.
    pub fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    /// Feeds a number.
    pub fn write_u64(&mut self, n: u64) {
        self.write(&n.to_le_bytes());
    }

    /// The hash of `bytes` alone.
    pub fn of(bytes: &[u8]) -> u64 {
        let mut h = Fnv::default();
        h.write(bytes);
        h.0
    }
}

impl<B: SimStores> World<B> {
    /// Builds the world of `config`: draws the faults, the engine settings
    /// and the schedule from the seed.
    pub fn new(config: SimConfig, mut backend: B) -> Result<Self, SyncError> {
        let mut rng = Rand::new(config.seed);
        let faults = Faults::draw(&mut rng);
        let strategies = all_strategies();
        let report_strategy: ConflictStrategy = strategies[rng.index(strategies.len())].clone();
        let mut registry = registry(report_strategy);
        if config.scopes {
            registry.register(memo_type());
        }
        let engine_config = engine_config(&mut rng);
        let hub_store = backend.create("hub");
        let mut hub = Actor::new(
            Who::Hub,
            hub_store,
            registry.clone(),
            engine_config(&mut rng, 1),
            hub_info(),
        )?;
        hub.refuse_when(super::workload::hub_refuses);
        let mut nodes = Vec::new();
        for i in 0..config.nodes {
            let store = backend.create(&format!("node-{i}"));
            let mut node = Actor::new(
                Who::Node(i),
                store,
                registry.clone(),
                engine_config(&mut rng, 100 + i as u64),
                node_info(i),
            )?;
            node.skew = rng.between(-faults.max_skew_ms, faults.max_skew_ms) * MS;
            register(&mut node, &mut hub, i)?;
            nodes.push(node);
        }
        if config.scopes {
            scope_memos(&mut hub, config.nodes)?;
        }
        let net = Network::new(config.nodes, faults.clone(), rng.fork(1));
        let fault_end = config.ops as SimTime * SECOND;
        let mut world = World {
            backend,
            faults,
            registry,
            sched: Scheduler::default(),
            net,
            hub,
            snapshots: nodes.iter().map(|_| Vec::new()).collect(),
            nodes,
            checks: Checks::default(),
            workload: Workload::scoped(config.scopes),
            stats: SimStats::default(),
            trace: Fnv::default(),
            fault_end,
            healed: false,
            exchanges: 0,
            exchanges_at_heal: 0,
            fatal: false,
            watch: None,
            rng,
            config,
        };
        world.schedule_faults_and_work();
        Ok(world)
    }

    /// Puts the whole fault phase on the schedule: operations, sync starts,
    /// backups, crashes, restores, partitions.
    fn schedule_faults_and_work(&mut self) {
        let end = self.fault_end;
        for _ in 0..self.config.ops {
            let at = self.rng.between(0, end);
            self.sched.at(at, Action::Op);
        }
        for i in 0..self.config.nodes {
            let at = self.rng.between(0, 30 * SECOND);
            self.sched.at(at, Action::Sync(i));
            for _ in 0..8 {
                let at = self.rng.between(0, end);
                self.sched.at(at, Action::Snapshot(i));
            }
        }
        for _ in 0..self.faults.crashes {
            let at = self.rng.between(0, end);
            let victim = self.random_participant();
            self.sched.at(at, Action::Crash(victim));
        }
        for _ in 0..self.faults.restores {
            let at = self.rng.between(end / 4, end);
            let node = self.rng.index(self.config.nodes);
            self.sched.at(at, Action::Restore(node));
        }
        for _ in 0..self.faults.partitions {
            let at = self.rng.between(0, end);
            let heal = at + self.rng.between(5 * SECOND, 300 * SECOND);
            let nodes: Vec<usize> = (0..self.config.nodes)
                .filter(|_| self.rng.chance(0.5))
                .collect();
            self.sched.at(at, Action::Partition { nodes, heal });
        }
    }

    fn random_participant(&mut self) -> Who {
        let pick = self.rng.index(self.config.nodes + 1);
        if pick == self.config.nodes {
            Who::Hub
        } else {
            Who::Node(pick)
        }
    }

    pub(super) fn actor(&mut self, who: Who) -> &mut Actor<B::Store> {
        match who {
            Who::Hub => &mut self.hub,
            Who::Node(i) => &mut self.nodes[i],
        }
    }

    /// Runs queued actions until the queue is empty or `max` actions ran;
    /// returns whether the queue emptied.
    pub(super) fn run(&mut self, max: u64) -> bool {
        for _ in 0..max {
            if self.fatal {
                return true;
            }
            let Some(action) = self.sched.pop() else {
                return true;
            };
            self.trace.write_u64(self.sched.now() as u64);
            self.stats.actions += 1;
            self.stats.max_queued = self.stats.max_queued.max(self.sched.len() as u64);
            if let Some(problem) = self.runaway() {
                let at = self.sched.now();
                self.checks.violation(ViolationKind::Liveness, at, problem);
                self.fatal = true;
                return true;
            }
            self.step(action);
            self.watch_stores();
        }
        self.sched.is_empty()
    }

    /// Whether the run has gone out of bounds: far more actions than a run
    /// of this size needs (typically 5-25 per operation), a queue that keeps
    /// growing (packets multiplying), or far more bytes sent than written
    /// (typically well under 100 KiB per operation). Each means the system
    /// does not settle, and the run stops.
    fn runaway(&self) -> Option<String> {
        let ops = self.config.ops as u64 + 100;
        if self.stats.actions > 200 * ops {
            Some(format!("runaway: over {} actions", 200 * ops))
        } else if self.sched.len() as u64 > ops + 50_000 {
            Some(format!("runaway: {} actions queued", self.sched.len()))
        } else if self.net.stats.bytes > ops * (64 << 10) {
            Some(format!("runaway: {} bytes sent", self.net.stats.bytes))
        } else {
            None
        }
    }

    /// With a watch on: prints any change of a watched entity in any store.
    fn watch_stores(&mut self) {
        let Some(watch) = self.watch.clone() else {
            return;
        };
        let now = self.sched.now();
        for key in watch.keys() {
            for who in self.everyone() {
                let held = self.actor(who).peek(|txn| txn.entity(&key));
                watch.holds(now, who, &key, held.as_ref().map(|s| &s.entity));
            }
        }
    }

    fn step(&mut self, action: Action) {
        if !self.healed && self.sched.now() >= self.fault_end {
            self.heal();
        }
        match action {
            Action::Deliver { from, to, bytes } => self.deliver(from, to, bytes),
            Action::Timer(i) => self.timer(i),
            Action::Op if !self.healed => self.op(),
            Action::Sync(i) if !self.healed => self.sync(i, true),
            Action::Crash(who) if !self.healed => self.crash(who),
            Action::Restart(who) => self.restart(who),
            Action::Snapshot(i) if !self.healed => self.snapshot(i),
            Action::Restore(i) if !self.healed => self.restore(i),
            Action::Partition { nodes, heal } if !self.healed => {
                self.trace.write_u64(nodes.len() as u64);
                self.net.partition(&nodes, heal);
            }
            _ => {}
        }
    }

    /// Ends the fault phase: a perfect network, every crash disarmed, every
    /// participant running.
    pub(super) fn heal(&mut self) {
        self.healed = true;
        self.exchanges_at_heal = self.exchanges;
        self.net.heal();
        for who in self.everyone() {
            self.actor(who).disarm();
            if !self.actor(who).is_up() {
                self.restart(who);
            }
        }
    }

    pub(super) fn everyone(&self) -> Vec<Who> {
        std::iter::once(Who::Hub)
            .chain((0..self.nodes.len()).map(Who::Node))
            .collect()
    }

    fn op(&mut self) {
        let who = if self.rng.chance(1.0 / (self.nodes.len() as f64 + 2.0)) {
            Who::Hub
        } else {
            Who::Node(self.rng.index(self.nodes.len()))
        };
        let now = self.sched.now();
        let actor = match who {
            Who::Hub => &mut self.hub,
            Who::Node(i) => &mut self.nodes[i],
        };
        if !actor.is_up() {
            self.workload.skipped += 1;
            return;
        }
        let clock = actor.now(now);
        self.stats.ops += 1;
        self.checks.clock = now;
        let result = self
            .workload
            .op(&mut self.rng, actor, &mut self.checks, clock);
        self.trace.write_u64(self.checks.write_count());
        // The hub's own write (or a person's resolution there) that its
        // schema refuses fails like any constraint error, changing nothing.
        let result = match result {
            Err(SyncError::Store(e)) if e.kind() == sync_core::StoreErrorKind::Refused => {
                self.workload.skipped += 1;
                Ok(())
            }
            other => other,
        };
        self.settle(who, result);
    }

    /// A node starts a session with the hub, unless one is running.
    pub(super) fn sync(&mut self, i: usize, again: bool) {
        if again && !self.healed {
            let next = self.rng.between(5 * SECOND, 60 * SECOND);
            self.sched.after(next, Action::Sync(i));
        }
        let Some(engine) = self.nodes[i].engine() else {
            return;
        };
        if engine.is_syncing(hub_id()) && again {
            return;
        }
        let result = engine.start_sync(hub_id());
        if self.settle(Who::Node(i), result).is_some() {
            self.pump(i);
        }
    }

    /// Sends whatever node `i` wants sent and schedules its timer check.
    fn pump(&mut self, i: usize) {
        let now = self.sched.now();
        loop {
            let node = &mut self.nodes[i];
            let clock = node.now(now);
            let Some(engine) = node.engine() else { return };
            let result = engine.poll_transmit(clock);
            match self.settle(Who::Node(i), result) {
                Some(Some(transmit)) => {
                    self.net
                        .send(&mut self.sched, Who::Node(i), Who::Hub, transmit.bytes)
                }
                _ => break,
            }
        }
        self.arm_timer(i);
    }

    fn arm_timer(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let Some(deadline) = node.engine().and_then(|e| e.poll_timeout()) else {
            return;
        };
        let at = node.sim_time(deadline).max(self.sched.now());
        if node.timer_at != Some(at) {
            node.timer_at = Some(at);
            self.sched.at(at, Action::Timer(i));
        }
    }

    fn timer(&mut self, i: usize) {
        let now = self.sched.now();
        let node = &mut self.nodes[i];
        if node.timer_at == Some(now) {
            node.timer_at = None;
        }
        let clock = node.now(now);
        let Some(engine) = node.engine() else { return };
        if engine.poll_timeout().is_some_and(|d| d <= clock) {
            engine.handle_timeout(clock);
            self.pump(i);
        } else {
            self.arm_timer(i);
        }
    }

    fn deliver(&mut self, from: Who, to: Who, bytes: Bytes) {
        let now = self.sched.now();
        self.trace.write_u64(Fnv::of(&bytes));
        if !self.net.arrives(now, from, to) {
            return;
        }
        match to {
            Who::Hub => self.hub_receives(from, bytes),
            Who::Node(i) => self.node_receives(i, bytes),
        }
    }

    /// The hub answers a request as [`sync_core::Engine::respond`] does,
    /// with the applied packet recorded for the checks.
    fn hub_receives(&mut self, from: Who, bytes: Bytes) {
        let now = self.sched.now();
        let clock = self.hub.now(now);
        let Some(hub) = self.hub.engine() else { return };
        let reply = match hub.handle_incoming(&bytes, clock) {
            Ok(incoming) => {
                let built = hub.build_packet(incoming.from, clock);
                self.applied(Who::Hub, &incoming, &bytes);
                match self.settle(Who::Hub, built) {
                    Some(transmit) => transmit.bytes,
                    None => return,
                }
            }
            Err(SyncError::Store(e)) => {
                self.settle::<()>(Who::Hub, Err(SyncError::Store(e)));
                return;
            }
            Err(e) => {
                let envelope = hub.error_envelope(&e);
                if self.hub.crashed() {
                    self.settle::<()>(Who::Hub, Err(e));
                    return;
                }
                envelope
            }
        };
        self.exchanges += 1;
        self.observe(Who::Hub);
        self.net.send(&mut self.sched, Who::Hub, from, reply);
    }

    fn node_receives(&mut self, i: usize, bytes: Bytes) {
        let now = self.sched.now();
        let clock = self.nodes[i].now(now);
        let Some(engine) = self.nodes[i].engine() else {
            return;
        };
        let result = engine.handle_incoming(&bytes, clock);
        if let Some(incoming) = self.settle(Who::Node(i), result) {
            self.applied(Who::Node(i), &incoming, &bytes);
        }
        if self.nodes[i].is_up() {
            self.pump(i);
        }
    }

    fn applied(&mut self, receiver: Who, incoming: &Incoming, bytes: &[u8]) {
        if let Some(watch) = &self.watch {
            watch.packet(self.sched.now(), receiver, incoming, bytes);
        }
        if incoming.is_fresh() {
            let at = self.sched.now();
            self.checks.applied(
                receiver,
                incoming.from,
                incoming.packet_no,
                Fnv::of(bytes),
                at,
            );
        }
    }

    /// Handles the outcome of an engine call by `who`: a crash kills it,
    /// expected refusals are dropped, anything else is a violation. Then
    /// drains its events and checks its counters.
    pub(super) fn settle<T>(&mut self, who: Who, result: Result<T, SyncError>) -> Option<T> {
        if self.actor(who).crashed() {
            self.kill(who);
            return None;
        }
        let value = match result {
            Ok(value) => Some(value),
            Err(SyncError::Peer(_) | SyncError::Rejected { .. }) => None,
            Err(e) => {
                let at = self.sched.now();
                self.checks
                    .violation(ViolationKind::EngineError, at, format!("{who}: {e}"));
                None
            }
        };
        self.observe(who);
        value
    }

    /// Drains `who`'s events and checks its packet counters.
    pub(super) fn observe(&mut self, who: Who) {
        let actor = match who {
            Who::Hub => &mut self.hub,
            Who::Node(i) => &mut self.nodes[i],
        };
        let Some(engine) = actor.engine() else { return };
        let events: Vec<Event> = std::iter::from_fn(|| engine.poll_event()).collect();
        if let Some(watch) = &self.watch {
            watch.events(self.sched.now(), who, &events);
        }
        let mut reinitialized = BTreeSet::<NodeId>::new();
        for event in &events {
            match event {
                Event::Applied(change) if who == Who::Hub => {
                    self.checks.hub_applied(&self.registry, &change.entity)
                }
                Event::Applied(change) => {
                    if let (Who::Node(i), Some(owner)) = (who, foreign_memo(&change.entity, who)) {
                        let at = self.sched.now();
                        self.checks.violation(
                            ViolationKind::ScopeLeak,
                            at,
                            format!(
                                "node {i} ({}) applied {} owned by {owner}",
                                memo_user(i),
                                change.entity.key
                            ),
                        );
                    }
                }
                // The hub's deletion of an orphan is a write of its own,
                // made knowing the child's live version.
                Event::Orphaned { live, deletion, .. } => {
                    self.stats.orphaned += 1;
                    self.checks.write(who, &self.registry, deletion, &[live]);
                }
                Event::PairReinitialized { peer, .. } => {
                    reinitialized.insert(*peer);
                    self.stats.reinitialized += 1;
                }
                Event::Conflict(conflict) => {
                    self.stats.conflicts += 1;
                    let taken = events.iter().find_map(|e| match e {
                        Event::Applied(a) if a.entity.key == conflict.key => Some(&a.entity),
                        _ => None,
                    });
                    if let Some(version) = taken {
                        let at = self.sched.now();
                        self.checks.stale_conflict(who, &self.registry, version, at);
                    }
                }
                _ => {}
            }
        }
        let peers = actor.peek(|txn| txn.peers());
        let at = self.sched.now();
        self.checks.counters(who, &peers, &reinitialized, at);
    }

    fn crash(&mut self, who: Who) {
        if !self.actor(who).is_up() {
            return;
        }
        self.stats.crashes += 1;
        if self.rng.chance(0.3) {
            self.kill(who);
        } else {
            let ops = self.rng.below(60);
            self.actor(who).arm_crash(ops);
        }
    }

    /// The process dies: uncommitted work is gone; it restarts later.
    pub(super) fn kill(&mut self, who: Who) {
        let name = self.actor(who).name.clone();
        // Events of transactions committed during the fatal call die with the
        // process, but what they report happened: a re-initialization there
        // explains counters that go back after the restart.
        if let Some(engine) = self.actor(who).engine() {
            let events: Vec<Event> = std::iter::from_fn(|| engine.poll_event()).collect();
            for event in events {
                if let Event::PairReinitialized { peer, .. } = event {
                    self.checks.reinitialized_before_crash(who, peer);
                }
            }
        }
        let backend = &mut self.backend;
        let actor = match who {
            Who::Hub => &mut self.hub,
            Who::Node(i) => &mut self.nodes[i],
        };
        actor.kill(|store| backend.reopen(&name, store));
        self.trace.write_u64(0xDEAD);
        if !self.healed {
            let delay = self.rng.between(SECOND, 60 * SECOND);
            self.sched.after(delay, Action::Restart(who));
        } else {
            self.restart(who);
        }
    }

    fn restart(&mut self, who: Who) {
        if self.actor(who).is_up() {
            return;
        }
        if let Who::Node(_) = who {
            if self.rng.chance(0.3) {
                let skew = self.faults.max_skew_ms;
                let drawn = self.rng.between(-skew, skew) * MS;
                self.actor(who).skew = drawn;
            }
        }
        if let Err(e) = self.actor(who).restart() {
            let at = self.sched.now();
            self.checks.violation(
                ViolationKind::EngineError,
                at,
                format!("{who} could not restart: {e}"),
            );
            self.fatal = true;
        }
    }

    fn snapshot(&mut self, i: usize) {
        let shadow = self.checks.shadow(Who::Node(i));
        let snapshot = {
            let backend = &mut self.backend;
            backend.snapshot(self.nodes[i].store())
        };
        let kept = &mut self.snapshots[i];
        kept.push((snapshot, shadow));
        if kept.len() > SNAPSHOTS_KEPT {
            kept.remove(0);
        }
    }

    /// Node `i` is restored from one of its backups: killed, its store
    /// replaced by the backup, restarted.
    fn restore(&mut self, i: usize) {
        if self.snapshots[i].is_empty() {
            return;
        }
        let pick = self.rng.index(self.snapshots[i].len());
        self.stats.restores += 1;
        let registry = self.registry.clone();
        let archived = &mut self.checks.archived;
        self.nodes[i].peek(|txn| archived.collect(&registry, txn));
        if self.nodes[i].is_up() {
            let name = self.nodes[i].name.clone();
            let backend = &mut self.backend;
            self.nodes[i].kill(|store| backend.reopen(&name, store));
        }
        let name = self.nodes[i].name.clone();
        let (snapshot, shadow) = &self.snapshots[i][pick];
        let store = self.backend.restore(&name, snapshot);
        self.checks.restored(Who::Node(i), shadow);
        self.nodes[i].replace_store(store);
        self.trace.write_u64(0x5E5 + pick as u64);
        if let Some(watch) = &self.watch {
            let own = self.nodes[i].peek(|txn| txn.peers());
            let hub = self.hub.peek(|txn| txn.peers());
            let view = hub.iter().find(|p| p.id() == node_info(i).id);
            watch.restore(self.sched.now(), i, pick, &own, view);
        }
        self.restart(Who::Node(i));
    }
}

/// The hub scopes memos by owner; node `i` is [`memo_user`]`(i)`.
fn scope_memos<S: Store>(hub: &mut Actor<S>, nodes: usize) -> Result<(), SyncError> {
    let hub = hub.engine().ok_or(SyncError::NotInitialized)?;
    hub.set_scope_rule(MEMO, ScopeRule::attribute("owner", "user"))?;
    for i in 0..nodes {
        hub.set_node_attributes(
            node_info(i).id,
            NodeAttributes::default().with("user", [memo_user(i)]),
        )?;
    }
    Ok(())
}

/// The owner of a live memo that node `who` must not hold (another user's).
pub(super) fn foreign_memo(entity: &sync_core::Entity, who: Who) -> Option<String> {
    let Who::Node(i) = who else { return None };
    if entity.key.entity_type != MEMO || entity.is_deleted {
        return None;
    }
    let owner = entity
        .fields
        .get("owner")
        .and_then(sync_core::Value::as_text);
    (owner != Some(memo_user(i).as_str())).then(|| owner.unwrap_or("nobody").to_owned())
}

fn register<S: Store>(node: &mut Actor<S>, hub: &mut Actor<S>, i: usize) -> Result<(), SyncError> {
    let engine = node.engine().ok_or(SyncError::NotInitialized)?;
    engine.register_peer(hub_info())?;
    let hub = hub.engine().ok_or(SyncError::NotInitialized)?;
    hub.register_peer(node_info(i))
}

/// Engine settings drawn per seed: batch size, in-flight window, retry
/// backoff; the codec per participant.
fn engine_config(rng: &mut Rand) -> impl Fn(&mut Rand, u64) -> EngineConfig + use<> {
    let batch = [3, 16, 200, 5_000][rng.index(4)];
    let in_flight = [1, 4, 16][rng.index(3)];
    let retry = RetryPolicy {
        initial_ms: rng.between(300, 2_000),
        max_ms: rng.between(5_000, 60_000),
        multiplier: 2.0,
        jitter: 0.2,
    };
    move |rng: &mut Rand, seed: u64| {
        let codec = [Codec::Zstd, Codec::Gzip, Codec::None][rng.index(3)];
        let mut config = EngineConfig::default()
            .seed(seed)
            .batch(batch, 1 << 20)
            .retry(retry)
            .codec(codec);
        config.max_in_flight = in_flight;
        config
    }
}
