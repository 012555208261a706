//! The simulator's only randomness: [`Rand`], a seeded generator with the
//! draws the simulator needs. Nothing reads a global or OS random source.

use sync_core::rng::SeededRng;

/// A seeded generator (SplitMix64 underneath).
#[derive(Clone, Debug)]
pub struct Rand {
    inner: SeededRng,
}

impl Rand {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Rand {
            inner: SeededRng::new(seed),
        }
    }

    /// An independent generator derived from this one (for a sub-system
    /// whose draws must not shift when another sub-system draws more).
    pub fn fork(&mut self, salt: u64) -> Rand {
        Rand::new(self.next_u64() ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    /// 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.inner.next_u64()
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// Uniform index into a collection of `len` items.
    pub fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub fn between(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            return lo;
        }
        lo + self.below((hi - lo) as u64 + 1) as i64
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        self.inner.next_f64()
    }

    /// Uniform in `[lo, hi)`.
    pub fn range_f64(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        self.inner.fill(&mut out);
        out
    }
}
