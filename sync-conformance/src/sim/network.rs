//! The simulated network: an IO-free, seeded link between the hub and each
//! node that loses, duplicates, delays, reorders and damages packets in
//! both directions, and partitions nodes from the hub for a while.

use bytes::Bytes;

use super::faults::{Faults, MAX_COPIES};
use super::random::Rand;
use super::scheduler::{Action, MS, Scheduler, SimTime, Who};

/// What the network did, for the report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Packets handed to the network.
    pub sent: u64,
    /// Bytes handed to the network.
    pub bytes: u64,
    /// Packets dropped by loss.
    pub lost: u64,
    /// Extra copies delivered by duplication.
    pub duplicated: u64,
    /// Copies held back (reordered).
    pub reordered: u64,
    /// Copies whose bytes were damaged.
    pub corrupted: u64,
    /// Packets dropped by a partition (at sending or on arrival).
    pub partitioned: u64,
}

/// The links between the hub and the nodes.
pub struct Network {
    faults: Faults,
    rng: Rand,
    /// Per node: cut off from the hub until this time.
    cut_until: Vec<SimTime>,
    /// What happened so far.
    pub stats: NetStats,
}

impl Network {
    /// A network for `nodes` nodes with `faults`, drawing from `rng`.
    pub fn new(nodes: usize, faults: Faults, rng: Rand) -> Self {
        Network {
            faults,
            rng,
            cut_until: vec![SimTime::MIN; nodes],
            stats: NetStats::default(),
        }
    }

    /// Sends `bytes` from `from` to `to`: zero or more copies, each with its
    /// own delay and possibly damaged, are scheduled for delivery.
    pub fn send(&mut self, sched: &mut Scheduler, from: Who, to: Who, bytes: Bytes) {
        self.stats.sent += 1;
        self.stats.bytes += bytes.len() as u64;
        if self.is_cut(sched.now(), from, to) {
            self.stats.partitioned += 1;
            return;
        }
        if self.rng.chance(self.faults.loss) {
            self.stats.lost += 1;
            return;
        }
        let copies = if self.rng.chance(self.faults.duplication) {
            1 + self.rng.between(1, MAX_COPIES as i64 - 1) as u64
        } else {
            1
        };
        self.stats.duplicated += copies - 1;
        for _ in 0..copies {
            let delay = self.delay();
            let bytes = if self.rng.chance(self.faults.corruption) {
                self.stats.corrupted += 1;
                damage(&mut self.rng, &bytes)
            } else {
                bytes.clone()
            };
            sched.after(delay, Action::Deliver { from, to, bytes });
        }
    }

    /// Whether a copy arriving now still gets through (a partition that
    /// started while it was in flight drops it).
    pub fn arrives(&mut self, now: SimTime, from: Who, to: Who) -> bool {
        if self.is_cut(now, from, to) {
            self.stats.partitioned += 1;
            return false;
        }
        true
    }

    /// Cuts `nodes` off from the hub until `until`.
    pub fn partition(&mut self, nodes: &[usize], until: SimTime) {
        for &i in nodes {
            if let Some(cut) = self.cut_until.get_mut(i) {
                *cut = (*cut).max(until);
            }
        }
    }

    /// Stops every fault: no loss, duplication, reordering, jitter,
    /// corruption or partitions from now on (packets already in flight are
    /// still delivered as scheduled).
    pub fn heal(&mut self) {
        self.faults = Faults::none();
        self.cut_until.fill(SimTime::MIN);
    }

    fn is_cut(&self, now: SimTime, from: Who, to: Who) -> bool {
        let node = match (from, to) {
            (Who::Node(i), _) | (_, Who::Node(i)) => i,
            (Who::Hub, Who::Hub) => return false,
        };
        self.cut_until.get(node).is_some_and(|until| now < *until)
    }

    /// Base latency of 1-50 ms, plus jitter, plus a hold-back when the copy
    /// is reordered.
    fn delay(&mut self) -> SimTime {
        let mut delay = self.rng.between(1, 50) * MS;
        delay += self.rng.between(0, self.faults.jitter_ms) * MS;
        if self.rng.chance(self.faults.reorder) {
            self.stats.reordered += 1;
            delay += self.rng.between(0, self.faults.reorder_delay_ms) * MS;
        }
        delay
    }
}

/// Damages a copy: flips a few bytes, truncates it, or appends garbage.
fn damage(rng: &mut Rand, bytes: &Bytes) -> Bytes {
    let mut out = bytes.to_vec();
    match rng.below(4) {
        0 | 1 if !out.is_empty() => {
            for _ in 0..rng.between(1, 3) {
                let at = rng.index(out.len());
                out[at] ^= 1 + rng.below(255) as u8;
            }
        }
        2 if !out.is_empty() => out.truncate(rng.index(out.len())),
        _ => {
            let len = rng.between(1, 64) as usize;
            out.extend(rng.bytes(len));
        }
    }
    Bytes::from(out)
}
