//! Fault rates and counts, drawn per seed from fixed ranges.

use super::random::Rand;

/// Upper bound of the loss rate.
pub const MAX_LOSS: f64 = 0.30;
/// Upper bound of the duplication rate.
pub const MAX_DUPLICATION: f64 = 0.50;
/// A duplicated packet is delivered this many times at most.
pub const MAX_COPIES: u64 = 5;
/// Upper bound of the reordering rate.
pub const MAX_REORDER: f64 = 0.30;
/// Upper bound of the extra delay of a reordered packet, in milliseconds.
pub const MAX_REORDER_DELAY_MS: i64 = 10_000;
/// Upper bound of the per-packet delay jitter, in milliseconds.
pub const MAX_JITTER_MS: i64 = 2_000;
/// Upper bound of the corruption rate.
pub const MAX_CORRUPTION: f64 = 0.10;
/// Most partition episodes per seed.
pub const MAX_PARTITIONS: u64 = 6;
/// Most crashes per seed (hub and nodes).
pub const MAX_CRASHES: u64 = 10;
/// Most restores of a node from an older snapshot per seed.
pub const MAX_RESTORES: u64 = 3;
/// Upper bound of a node's clock skew, in milliseconds (either direction).
pub const MAX_SKEW_MS: i64 = 10 * 60 * 1_000;

/// What the network and the scheduler do wrong in one seed.
#[derive(Clone, Debug, PartialEq)]
pub struct Faults {
    /// Probability that a packet is lost.
    pub loss: f64,
    /// Probability that a packet is delivered more than once.
    pub duplication: f64,
    /// Probability that a packet is held back (reordered).
    pub reorder: f64,
    /// Extra delay of a held-back packet, at most, in milliseconds.
    pub reorder_delay_ms: i64,
    /// Delay jitter on top of the base latency, at most, in milliseconds.
    pub jitter_ms: i64,
    /// Probability that a delivered copy has damaged bytes.
    pub corruption: f64,
    /// Partition episodes (a set of nodes cut off from the hub for a while).
    pub partitions: u64,
    /// Crashes (each at a random store operation of the victim).
    pub crashes: u64,
    /// Restores of a node from an older snapshot of its store.
    pub restores: u64,
    /// Largest clock skew of a node against the hub, in milliseconds.
    pub max_skew_ms: i64,
}

impl Faults {
    /// Draws the faults of one seed.
    pub fn draw(rng: &mut Rand) -> Self {
        Faults {
            loss: rng.range_f64(0.0, MAX_LOSS),
            duplication: rng.range_f64(0.0, MAX_DUPLICATION),
            reorder: rng.range_f64(0.0, MAX_REORDER),
            reorder_delay_ms: rng.between(0, MAX_REORDER_DELAY_MS),
            jitter_ms: rng.between(0, MAX_JITTER_MS),
            corruption: rng.range_f64(0.0, MAX_CORRUPTION),
            partitions: rng.below(MAX_PARTITIONS + 1),
            crashes: rng.below(MAX_CRASHES + 1),
            restores: rng.below(MAX_RESTORES + 1),
            max_skew_ms: rng.between(0, MAX_SKEW_MS),
        }
    }

    /// No faults at all (the network after healing).
    pub fn none() -> Self {
        Faults {
            loss: 0.0,
            duplication: 0.0,
            reorder: 0.0,
            reorder_delay_ms: 0,
            jitter_ms: 0,
            corruption: 0.0,
            partitions: 0,
            crashes: 0,
            restores: 0,
            max_skew_ms: 0,
        }
    }
}
