//! The deterministic simulator: a hub and N nodes on a seeded, IO-free
//! network with simulated time.
//!
//! Per seed, fault rates are drawn from fixed ranges ([`faults`]): loss
//! 0-30 %, duplication 0-50 % (up to 5 copies), reordering 0-30 % (held back
//! up to 10 s), jitter up to 2 s, corruption 0-10 % (flipped, truncated or
//! extended bytes), up to 6 partitions of 5 s to 5 min, up to 10 crashes of
//! the hub or a node at a random store operation (uncommitted work is lost;
//! the engine is rebuilt with `Engine::open`), up to 3 restores of a node
//! from an older backup, and clock skews up to ±10 min (redrawn at some
//! restarts). Engine settings (batch size, in-flight window, backoff, codec)
//! and the report types' conflict strategy are drawn too; the note types
//! cover every strategy in every seed.
//!
//! The transport is node-initiated request/response: a node sends, the hub
//! answers with its packet; both directions are faulty. A node that gets no
//! answer waits for `poll_timeout` and calls `handle_timeout`.
//!
//! After the fault phase everything heals, the network drains, and every
//! node syncs in rounds. Then the run checks ([`checks`]): convergence
//! within [`quiesce::MAX_ROUNDS`] (2) rounds and within
//! [`quiesce::exchange_bound`] exchanges from the end of the faults,
//! `nodes × (8 + 2 × ⌈entities / batch⌉)` (every node holds the hub's
//! entities and field values, nothing pending or parked anywhere except
//! children whose parent was lost with a restore before reaching the hub, no
//! session running); no lost write (every write is in some store: current, a
//! keep-both copy, the version history, an open conflict or the audit log,
//! or was replaced by a writer that had it; writes lost to a restore count
//! only if the hub had applied them); no packet applied twice by one
//! receiver; packet counters never going backwards except where the engine
//! detected a restore; no false conflict (no audit record or open conflict
//! between two versions one of which was written knowing the other: the
//! causal check, against the writes each writer replaced knowingly, see
//! [`checks::Checks::false_conflicts`]); every concurrent pair resolved the
//! same way by every store that recorded it ([`checks::Checks::same_resolutions`]);
//! under per-field merge, every field edit that no other write changed
//! concurrently or after it held in the final state
//! ([`checks::Checks::field_edits`]); and, with
//! [`check_determinism_with`], that the same seed gives the same hashes
//! twice.

pub mod actor;
pub mod checks;
pub mod faults;
pub mod network;
pub mod quiesce;
pub mod random;
pub mod scheduler;
pub mod stores;
pub mod watch;
pub mod workload;
pub mod world;

use checks::{Violation, ViolationKind};
use faults::Faults;
use network::NetStats;
#[cfg(feature = "memory")]
use stores::MemoryStores;
use stores::SimStores;
use watch::Watch;
use world::World;

/// Default number of nodes.
pub const DEFAULT_NODES: usize = 4;
/// Default number of workload operations per seed.
pub const DEFAULT_OPS: usize = 1_000;

/// One simulation run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimConfig {
    /// The seed: everything in the run follows from it.
    pub seed: u64,
    /// Nodes besides the hub.
    pub nodes: usize,
    /// Workload operations during the fault phase (one per simulated second
    /// on average).
    pub ops: usize,
    /// Per-node scopes on: the hub scopes the [`crate::fixtures::MEMO`]
    /// type by owner, nodes have users ([`crate::fixtures::memo_user`]),
    /// the workload writes memos (some outside the writer's scope, some
    /// reassigned at the hub), and the checks require that no node ever
    /// applies a memo of another user and that each node ends holding
    /// exactly the hub's live memos of its user. Off by default: the
    /// course of every other seed stays as it was.
    pub scopes: bool,
}

impl SimConfig {
    /// Seed `seed` with the default size.
    pub fn new(seed: u64) -> Self {
        SimConfig {
            seed,
            nodes: DEFAULT_NODES,
            ops: DEFAULT_OPS,
            scopes: false,
        }
    }

    /// Turns per-node scopes on (see [`SimConfig::scopes`]).
    pub fn scopes(mut self, on: bool) -> Self {
        self.scopes = on;
        self
    }

    /// Sets the number of nodes.
    pub fn nodes(mut self, nodes: usize) -> Self {
        self.nodes = nodes.max(1);
        self
    }

    /// Sets the number of operations.
    pub fn ops(mut self, ops: usize) -> Self {
        self.ops = ops;
        self
    }

    /// The command that replays this run.
    pub fn replay_command(&self) -> String {
        format!(
            "cargo run --release -p sync-conformance --bin simulate -- --seed {} --nodes {} --ops {}{}",
            self.seed,
            self.nodes,
            self.ops,
            if self.scopes { " --scopes" } else { "" }
        )
    }
}

/// Counts from one run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Workload operations run.
    pub ops: u64,
    /// Conflicts resolved (events on any participant).
    pub conflicts: u64,
    /// Crashes (armed or immediate).
    pub crashes: u64,
    /// Restores from backups.
    pub restores: u64,
    /// Pairs re-initialized after a detected restore.
    pub reinitialized: u64,
    /// Rounds of sync sessions needed after healing.
    pub rounds_to_converge: u32,
    /// Exchanges (hub answers) in those rounds.
    pub exchanges_to_converge: u64,
    /// Exchanges from the end of the faults to convergence (draining the
    /// network included).
    pub exchanges_after_heal: u64,
    /// Entities on the hub at the end (tombstones and copies included).
    pub entities: u64,
    /// Most changes per packet in this run.
    pub batch: u64,
    /// Exchanges in the whole run.
    pub exchanges: u64,
    /// Actions (deliveries, timers, operations, faults) the scheduler ran.
    pub actions: u64,
    /// Most actions ever queued at once.
    pub max_queued: u64,
    /// Children left parked because their parent was lost to a restore
    /// before it reached the hub (allowed: the parent is gone everywhere).
    pub orphans: u64,
    /// Live children the hub deleted because their parent was deleted
    /// concurrently (the orphan rule of `sync_core::engine::cascade`).
    pub orphaned: u64,
    /// Versions the hub's store refused, kept as rejected changes.
    pub rejected: u64,
    /// What the network did.
    pub net: NetStats,
}

/// The outcome of one run.
#[derive(Clone, Debug)]
pub struct SimReport {
    /// What ran.
    pub config: SimConfig,
    /// The faults drawn for it.
    pub faults: Faults,
    /// Every violated invariant (empty: the run passed).
    pub violations: Vec<Violation>,
    /// Hash of the final state of every participant.
    pub state_hash: u64,
    /// Hash of everything that happened, in order.
    pub trace_hash: u64,
    /// Counts.
    pub stats: SimStats,
    /// Observations that may explain a failure.
    pub hints: Vec<String>,
}

impl SimReport {
    /// Whether every invariant held.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// The failure text: seed, violations, and the command to replay it.
    pub fn failure(&self) -> String {
        let mut text = format!("seed {} failed:\n", self.config.seed);
        for v in self.violations.iter().take(10) {
            text.push_str(&format!("  {v}\n"));
        }
        if self.violations.len() > 10 {
            text.push_str(&format!("  ... and {} more\n", self.violations.len() - 10));
        }
        for hint in self.hints.iter().take(5) {
            text.push_str(&format!("  hint: {hint}\n"));
        }
        text.push_str(&format!("  faults: {:?}\n", self.faults));
        text.push_str(&format!("  replay: {}", self.config.replay_command()));
        text
    }
}

/// Runs one seed on memory stores.
#[cfg(feature = "memory")]
pub fn run(config: SimConfig) -> SimReport {
    run_with(config, MemoryStores)
}

/// Runs one seed on memory stores, printing the history of the entities
/// whose id starts with `prefix` to stderr.
#[cfg(feature = "memory")]
pub fn run_watched(config: SimConfig, prefix: &str) -> SimReport {
    run_inner(config, MemoryStores, Some(Watch::new(prefix)))
}

/// Runs one seed on stores from `backend`.
pub fn run_with<B: SimStores>(config: SimConfig, backend: B) -> SimReport {
    run_inner(config, backend, None)
}

fn run_inner<B: SimStores>(config: SimConfig, backend: B, watch: Option<Watch>) -> SimReport {
    let mut world = match World::new(config, backend) {
        Ok(world) => world,
        Err(e) => {
            return SimReport {
                config,
                faults: Faults::none(),
                violations: vec![Violation {
                    kind: ViolationKind::EngineError,
                    at: 0,
                    detail: format!("setting up the participants failed: {e}"),
                }],
                state_hash: 0,
                trace_hash: 0,
                stats: SimStats::default(),
                hints: Vec::new(),
            };
        }
    };
    world.checks.watch = watch.clone();
    world.watch = watch;
    world.finish();
    let mut stats = world.stats.clone();
    stats.exchanges = world.exchanges;
    stats.net = world.net.stats.clone();
    SimReport {
        config,
        faults: world.faults.clone(),
        state_hash: world.state_hash(),
        trace_hash: world.trace.0,
        violations: std::mem::take(&mut world.checks.violations),
        hints: std::mem::take(&mut world.checks.hints),
        stats,
    }
}

/// Runs a seed twice on memory stores and adds a violation when the two
/// runs differ in state or trace.
#[cfg(feature = "memory")]
pub fn check_determinism(config: SimConfig) -> SimReport {
    check_determinism_with(config, || MemoryStores)
}

/// Runs a seed twice, each time on fresh stores from `backend()`, and adds
/// a violation when the two runs differ in state or trace.
pub fn check_determinism_with<B: SimStores>(
    config: SimConfig,
    mut backend: impl FnMut() -> B,
) -> SimReport {
    let mut first = run_with(config, backend());
    let second = run_with(config, backend());
    if (first.state_hash, first.trace_hash) != (second.state_hash, second.trace_hash) {
        first.violations.push(Violation {
            kind: ViolationKind::Nondeterminism,
            at: 0,
            detail: format!(
                "state/trace hashes {:016x}/{:016x} then {:016x}/{:016x}",
                first.state_hash, first.trace_hash, second.state_hash, second.trace_hash
            ),
        });
    }
    first
}
