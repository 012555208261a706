//! Timers: retry deadlines with exponential backoff and seeded jitter.
//!
//! The engine arms a [`Timer::Retry`] for a peer whenever it hands out a
//! packet for it and disarms it when the peer answers. A driver asks
//! [`crate::Engine::poll_timeout`] for the earliest deadline and calls
//! [`crate::Engine::handle_timeout`] once it has passed; calling it early is
//! harmless.

use crate::ids::{NodeId, Timestamp};
use crate::rng::SeededRng;

/// The engine's timers (a closed set).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    /// No answer from the peer: send again.
    Retry {
        /// The peer.
        peer: NodeId,
    },
}

/// Backoff for retries: `initial * multiplier^attempt`, capped at `max`, then
/// scaled by a random factor in `[1 - jitter, 1 + jitter]` from the engine's
/// seeded generator.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Wait before the first retry, in milliseconds (default 2,000).
    pub initial_ms: i64,
    /// Longest wait, in milliseconds (default 300,000).
    pub max_ms: i64,
    /// Growth per attempt (default 2.0).
    pub multiplier: f64,
    /// Relative jitter (default 0.2).
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial_ms: 2_000,
            max_ms: 300_000,
            multiplier: 2.0,
            jitter: 0.2,
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `attempt` (0-based), jittered.
    pub fn delay_ms(&self, attempt: u32, rng: &mut SeededRng) -> i64 {
        let base =
            (self.initial_ms.max(1) as f64) * self.multiplier.max(1.0).powi(attempt.min(64) as i32);
        let capped = base.min(self.max_ms.max(1) as f64);
        let jitter = self.jitter.clamp(0.0, 1.0);
        let factor = 1.0 - jitter + 2.0 * jitter * rng.next_f64();
        (capped * factor).round().max(1.0) as i64
    }
}

/// One armed timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Armed {
    pub deadline: Timestamp,
    pub attempt: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let policy = RetryPolicy {
            jitter: 0.0,
            ..RetryPolicy::default()
        };
        let mut rng = SeededRng::new(1);
        assert_eq!(policy.delay_ms(0, &mut rng), 2_000);
        assert_eq!(policy.delay_ms(1, &mut rng), 4_000);
        assert_eq!(policy.delay_ms(30, &mut rng), 300_000);
    }

    #[test]
    fn jitter_stays_in_bounds() {
        let policy = RetryPolicy::default();
        let mut rng = SeededRng::new(9);
        for _ in 0..1000 {
            let d = policy.delay_ms(0, &mut rng);
            assert!((1_600..=2_400).contains(&d), "{d}");
        }
    }
}
