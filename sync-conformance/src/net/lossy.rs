//! A seeded lossy exchange between engines on any two stores: per exchange,
//! the request and the reply may each be lost or duplicated, drawn from a
//! small xorshift generator, so a seed replays the same faults. Where
//! [`Link`](super::Link) follows a script message by message, this draws
//! faults at a rate.

use sync_core::{Engine, Store, SyncError, Timestamp};

use crate::fixtures::hub_id;

/// Most steps of one lossy session before it gives up.
const MAX_STEPS: usize = 200;

/// Faults for one exchange, decided by an [`XorShift`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    /// The node's packet is lost.
    pub drop_request: bool,
    /// The hub's reply is lost.
    pub drop_reply: bool,
    /// The node's packet reaches the hub twice (the second reply is lost).
    pub duplicate_request: bool,
    /// The hub's reply reaches the node twice.
    pub duplicate_reply: bool,
}

/// A tiny deterministic generator (xorshift64) for test scenarios. The
/// state must not be zero.
pub struct XorShift(pub u64);

impl XorShift {
    /// 64 pseudo-random bits.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform-ish in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// True with `percent` percent probability.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// Faults for one exchange, each with `percent` percent probability.
    pub fn faults(&mut self, percent: u64) -> Faults {
        Faults {
            drop_request: self.chance(percent),
            drop_reply: self.chance(percent),
            duplicate_request: self.chance(percent),
            duplicate_reply: self.chance(percent),
        }
    }
}

/// One sync session of `node` with `hub` where each exchange suffers the
/// faults `rng` draws at `percent`: lost packets are retried after the
/// retry deadline (which advances `now`). Returns whether the session
/// completed within its step bound.
pub fn sync_lossy<A: Store, B: Store>(
    node: &mut Engine<A>,
    hub: &mut Engine<B>,
    now: &mut Timestamp,
    rng: &mut XorShift,
    percent: u64,
) -> Result<bool, SyncError> {
    node.start_sync(hub_id())?;
    for _ in 0..MAX_STEPS {
        let Some(packet) = node.poll_transmit(*now)? else {
            if !node.is_syncing(hub_id()) {
                return Ok(true);
            }
            *now = node.poll_timeout().unwrap_or(*now).add_millis(1);
            node.handle_timeout(*now);
            continue;
        };
        let f = rng.faults(percent);
        if f.drop_request {
            continue;
        }
        let reply = hub.respond(&packet.bytes, *now)?;
        if f.duplicate_request {
            let _ = hub.respond(&packet.bytes, *now)?;
        }
        if f.drop_reply {
            continue;
        }
        ignore_refusal(node.handle_incoming(&reply, *now))?;
        if f.duplicate_reply {
            ignore_refusal(node.handle_incoming(&reply, *now))?;
        }
    }
    Ok(false)
}

/// A refused packet (the peer sent an error envelope) is not a test failure
/// in a faulty network; store failures are.
fn ignore_refusal<T>(result: Result<T, SyncError>) -> Result<(), SyncError> {
    match result {
        Ok(_) | Err(SyncError::Rejected { .. }) | Err(SyncError::Peer(_)) => Ok(()),
        Err(e) => Err(e),
    }
}
