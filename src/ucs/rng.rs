//! A small seeded PRNG (splitmix64) for retry jitter and the simulator's fault injection:
//! deterministic for a given seed, no dependency, not for anything cryptographic.

use std::sync::atomic::{AtomicU64, Ordering};

/// A splitmix64 generator safe to share between tasks.
#[derive(Debug)]
pub(crate) struct SplitMix64 {
    state: AtomicU64,
}

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        Self { state: AtomicU64::new(seed) }
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&self) -> u64 {
        let mut z = self
            .state
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform float in `[0, 1)`.
    pub(crate) fn next_f64(&self) -> f64 {
        // 53 random bits: exactly representable.
        let value = (self.next_u64() >> 11) as f64;
        value / (1u64 << 53) as f64
    }

    /// A uniform integer in `[0, bound]`.
    pub(crate) fn up_to(&self, bound: u64) -> u64 {
        match bound.checked_add(1) {
            Some(modulus) => self.next_u64() % modulus,
            None => self.next_u64(),
        }
    }
}
