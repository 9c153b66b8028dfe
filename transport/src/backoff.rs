//! Reconnection backoff: exponential, capped, with jitter from a seeded generator.

use std::time::Duration;

use crate::config::BackoffConfig;
use crate::rng::SplitMix64;

/// The largest exponent applied to the base delay; beyond it the cap always wins.
const BACKOFF_EXPONENT_MAX: u32 = 32;

/// Computes the delay before reconnection attempt `attempt` (1-based): uniformly random in
/// `[d/2, d]` with `d = min(delay_ms_max, delay_ms_base * 2^(attempt-1))`.
pub(crate) fn backoff_delay(
    config: &BackoffConfig,
    attempt: u32,
    rng: &mut SplitMix64,
) -> Duration {
    let exponent = attempt.saturating_sub(1).min(BACKOFF_EXPONENT_MAX);
    let ceiling_ms = config
        .delay_ms_base
        .saturating_mul(1u64 << exponent)
        .min(config.delay_ms_max);
    let floor_ms = ceiling_ms / 2;
    let delay_ms = floor_ms + rng.below_or_equal(ceiling_ms - floor_ms);
    debug_assert!(delay_ms <= config.delay_ms_max);
    Duration::from_millis(delay_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_exponentially_and_stay_capped() {
        let config = BackoffConfig {
            delay_ms_base: 100,
            delay_ms_max: 1_000,
        };
        let mut rng = SplitMix64::new(3);
        for attempt in 1..100 {
            let delay = backoff_delay(&config, attempt, &mut rng).as_millis() as u64;
            let ceiling = (100u64 << (attempt - 1).min(20)).min(1_000);
            assert!(
                delay <= ceiling && delay >= ceiling / 2,
                "attempt {attempt}: {delay}"
            );
        }
    }
}
