//! A tiny seeded pseudo-random generator (SplitMix64) for jitter and simulated faults.
//!
//! Not for cryptography: nonces come from `ring::rand::SystemRandom`. Seeded so a failing
//! simulation replays exactly; the library never touches a global RNG.

use ring::rand::SecureRandom;

/// SplitMix64: 64 bits of state, full period, good enough statistics for jitter and drops.
#[derive(Clone, Debug)]
pub(crate) struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator that replays the same sequence for the same seed.
    pub(crate) fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    /// A generator seeded from the operating system (falls back to the clock if unavailable).
    pub(crate) fn from_os() -> SplitMix64 {
        let mut seed = [0u8; 8];
        if ring::rand::SystemRandom::new().fill(&mut seed).is_err() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|elapsed| elapsed.as_nanos() as u64)
                .unwrap_or(0x5eed);
            seed = nanos.to_le_bytes();
        }
        SplitMix64::new(u64::from_le_bytes(seed))
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut mixed = self.state;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        mixed ^ (mixed >> 31)
    }

    /// A uniform value in `0..=max` (slightly biased for huge `max`; fine for jitter).
    pub(crate) fn below_or_equal(&mut self, max: u64) -> u64 {
        match max.checked_add(1) {
            Some(range) => self.next_u64() % range,
            None => self.next_u64(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_replays_the_same_sequence() {
        let mut first = SplitMix64::new(7);
        let mut second = SplitMix64::new(7);
        for _ in 0..100 {
            assert_eq!(first.next_u64(), second.next_u64());
        }
    }

    #[test]
    fn bounded_values_stay_in_range() {
        let mut rng = SplitMix64::new(1);
        for _ in 0..1_000 {
            assert!(rng.below_or_equal(9) <= 9);
        }
    }
}
