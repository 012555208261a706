//! Simulated time and the event queue: actions ordered by time, ties broken
//! by the order they were scheduled in, so a run is a pure function of its
//! seed.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use bytes::Bytes;

/// Simulated time in microseconds since the simulation's epoch.
pub type SimTime = i64;

/// One millisecond of simulated time.
pub const MS: SimTime = 1_000;
/// One second of simulated time.
pub const SECOND: SimTime = 1_000_000;

/// Who takes part: the hub or node `i`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Who {
    /// The hub.
    Hub,
    /// Node `i`.
    Node(usize),
}

impl std::fmt::Display for Who {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Who::Hub => f.write_str("hub"),
            Who::Node(i) => write!(f, "node {i}"),
        }
    }
}

/// Something that happens at a point in simulated time.
#[derive(Clone, Debug)]
pub enum Action {
    /// Bytes arrive at `to` (sent by `from`).
    Deliver {
        /// Sender.
        from: Who,
        /// Receiver.
        to: Who,
        /// The bytes as they arrive (possibly damaged).
        bytes: Bytes,
    },
    /// A node checks its retry timer.
    Timer(usize),
    /// The next workload operation.
    Op,
    /// A node starts a sync session (if none is running).
    Sync(usize),
    /// A crash is armed: the victim dies at a random later store operation.
    Crash(Who),
    /// A crashed participant restarts.
    Restart(Who),
    /// A node's store is copied (a backup).
    Snapshot(usize),
    /// A node is restored from one of its older backups.
    Restore(usize),
    /// Nodes are cut off from the hub until `heal` (simulated time).
    Partition {
        /// The nodes cut off.
        nodes: Vec<usize>,
        /// When the partition heals.
        heal: SimTime,
    },
}

struct Scheduled {
    at: SimTime,
    seq: u64,
    action: Action,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Scheduled {}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scheduled {
    /// Reversed, so the max-heap pops the earliest action first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// The event queue and the clock.
#[derive(Default)]
pub struct Scheduler {
    now: SimTime,
    next_seq: u64,
    queue: BinaryHeap<Scheduled>,
}

impl Scheduler {
    /// The current simulated time.
    pub fn now(&self) -> SimTime {
        self.now
    }

    /// Schedules `action` at `at` (never before now).
    pub fn at(&mut self, at: SimTime, action: Action) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queue.push(Scheduled {
            at: at.max(self.now),
            seq,
            action,
        });
    }

    /// Schedules `action` after `delay`.
    pub fn after(&mut self, delay: SimTime, action: Action) {
        self.at(self.now.saturating_add(delay.max(0)), action);
    }

    /// Pops the next action and advances the clock to it.
    pub fn pop(&mut self) -> Option<Action> {
        let next = self.queue.pop()?;
        self.now = next.at;
        Some(next.action)
    }

    /// Actions still queued.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}
