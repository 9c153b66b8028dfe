//! The access clock every entry carries (24 bits), with Redis's meaning under each
//! `maxmemory-policy` (`robj.lru` in Redis):
//!
//! * LRU policies: the time of the last access in seconds, modulo 2^24 (Redis's LRU clock:
//!   1-second resolution, idle times wrap after 194 days).
//! * LFU policies: the minute of the last decrement (16 bits, modulo 2^16) and an 8-bit
//!   logarithmic access counter. A new key starts at [`LFU_INIT_VAL`]; an access first decays
//!   the counter by one per `lfu_decay_time_minutes` elapsed, then increments it with
//!   probability `1 / ((counter - LFU_INIT_VAL) * lfu_log_factor + 1)` (Redis's `LFULogIncr`
//!   and `LFUDecrAndReturn`; with the default factor 10 the counter reaches 255 after about a
//!   million accesses).
//! * Other policies: unused (0), and reads write nothing.
//!
//! The eviction score of an entry (larger evicts first) is its idle time under LRU,
//! `255 - decayed counter` under LFU, and `u64::MAX - deadline` under volatile-ttl.

use crate::config::EvictionPolicy;
use crate::entry::{Entry, ACCESS_MASK};
use crate::store::{Now, Store};

/// Milliseconds per tick of the LRU clock.
pub(crate) const LRU_RESOLUTION_MS: u64 = 1_000;
/// Milliseconds per tick of the LFU decay clock.
const LFU_MINUTE_MS: u64 = 60_000;
/// The LFU counter of a new key (Redis's `LFU_INIT_VAL`), so that new keys are not evicted
/// before they had a chance to be read.
pub(crate) const LFU_INIT_VAL: u8 = 5;

/// What the access clock records, from the store's policy and LFU settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AccessMode {
    /// Nothing: the policy does not look at accesses.
    Untracked,
    /// Seconds of the last access.
    Lru,
    /// Minute of the last decrement and logarithmic counter.
    Lfu {
        /// `lfu-log-factor`.
        log_factor: u32,
        /// `lfu-decay-time`, in minutes; 0 never decays.
        decay_minutes: u32,
    },
}

impl AccessMode {
    pub(crate) fn new(policy: EvictionPolicy, log_factor: u32, decay_minutes: u32) -> Self {
        if policy.tracks_lru() {
            Self::Lru
        } else if policy.tracks_lfu() {
            Self::Lfu {
                log_factor,
                decay_minutes,
            }
        } else {
            Self::Untracked
        }
    }
}

fn lru_clock(now_ms: u64) -> u32 {
    (now_ms / LRU_RESOLUTION_MS) as u32 & ACCESS_MASK
}

fn lfu_minutes(now_ms: u64) -> u32 {
    (now_ms / LFU_MINUTE_MS) as u32 & 0xFFFF
}

/// Minutes from `last` to `now`, both modulo 2^16, as Redis's `LFUTimeElapsed`.
fn lfu_elapsed(now: u32, last: u32) -> u32 {
    if now >= last {
        now - last
    } else {
        0xFFFF - last + now
    }
}

/// The counter of `access` after the decay due at minute `now` (Redis's `LFUDecrAndReturn`).
pub(crate) fn lfu_decayed(access: u32, now: u32, decay_minutes: u32) -> u8 {
    let counter = (access & 0xFF) as u8;
    if decay_minutes == 0 {
        return counter;
    }
    let periods = lfu_elapsed(now, access >> 8) / decay_minutes;
    counter.saturating_sub(u8::try_from(periods).unwrap_or(u8::MAX))
}

/// `counter` after one access (Redis's `LFULogIncr`); `random` is uniform in `[0, 1)` and
/// only drawn (by calling it) when the increment is not certain.
pub(crate) fn lfu_incremented(counter: u8, log_factor: u32, random: impl FnOnce() -> f64) -> u8 {
    if counter == u8::MAX {
        return counter;
    }
    let base = f64::from(counter.saturating_sub(LFU_INIT_VAL));
    if base == 0.0 {
        return counter + 1;
    }
    let probability = 1.0 / (base * f64::from(log_factor) + 1.0);
    if random() < probability {
        counter + 1
    } else {
        counter
    }
}

fn lfu_word(minutes: u32, counter: u8) -> u32 {
    minutes << 8 | u32::from(counter)
}

impl Store {
    /// The access clock of a new entry written now.
    pub(crate) fn access_for_new(&self, now: &Now<'_>) -> u32 {
        match self.access_mode {
            AccessMode::Untracked => 0,
            AccessMode::Lru => lru_clock(now.ms()),
            AccessMode::Lfu { .. } => lfu_word(lfu_minutes(now.ms()), LFU_INIT_VAL),
        }
    }

    /// The access clock after an access to an entry whose clock was `access`.
    fn access_after(&self, access: u32, now: &Now<'_>) -> u32 {
        match self.access_mode {
            AccessMode::Untracked => access,
            AccessMode::Lru => lru_clock(now.ms()),
            AccessMode::Lfu {
                log_factor,
                decay_minutes,
            } => {
                let minutes = lfu_minutes(now.ms());
                let counter = lfu_decayed(access, minutes, decay_minutes);
                let counter = lfu_incremented(counter, log_factor, || self.rng.unit());
                lfu_word(minutes, counter)
            }
        }
    }

    /// Records a read of `entry` (nothing under policies that do not track accesses).
    #[inline]
    pub(crate) fn record_access(&self, entry: &Entry, now: &Now<'_>) {
        if self.access_mode != AccessMode::Untracked {
            entry.touch(self.access_after(entry.access(), now));
        }
    }

    /// The clock for an entry that replaces one whose clock was `replaced`: an overwrite is an
    /// access, and under LFU it keeps the key's counter (Redis keeps `lru` on overwrite).
    pub(crate) fn access_for_replacement(&self, replaced: u32, now: &Now<'_>) -> u32 {
        match self.access_mode {
            AccessMode::Lfu { .. } => self.access_after(replaced, now),
            _ => self.access_for_new(now),
        }
    }

    /// How good an eviction victim `entry` is under `policy` (larger evicts first).
    pub(crate) fn eviction_score(&self, policy: EvictionPolicy, entry: &Entry, now_ms: u64) -> u64 {
        match (policy, self.access_mode) {
            (EvictionPolicy::VolatileTtl, _) => u64::MAX - entry.expire_at_ms().unwrap_or(0),
            (_, AccessMode::Lru) => {
                u64::from(lru_clock(now_ms).wrapping_sub(entry.access()) & ACCESS_MASK)
            }
            (_, AccessMode::Lfu { decay_minutes, .. }) => {
                let counter = lfu_decayed(entry.access(), lfu_minutes(now_ms), decay_minutes);
                u64::from(u8::MAX - counter)
            }
            (_, AccessMode::Untracked) => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lfu_counter_decays_one_per_period_and_wraps_like_redis() {
        let access = lfu_word(100, 20);
        assert_eq!(lfu_decayed(access, 100, 1), 20);
        assert_eq!(lfu_decayed(access, 103, 1), 17);
        assert_eq!(lfu_decayed(access, 106, 2), 17);
        assert_eq!(lfu_decayed(access, 200, 1), 0);
        assert_eq!(
            lfu_decayed(access, 5_000, 0),
            20,
            "decay time 0 never decays"
        );
        let late = lfu_word(0xFFFE, 20);
        assert_eq!(lfu_decayed(late, 1, 1), 18, "minutes wrap at 2^16");
    }

    #[test]
    fn lfu_increment_is_certain_up_to_the_initial_value_then_logarithmic() {
        assert_eq!(lfu_incremented(0, 10, || unreachable!()), 1);
        assert_eq!(lfu_incremented(LFU_INIT_VAL, 10, || unreachable!()), 6);
        assert_eq!(lfu_incremented(255, 10, || 0.0), 255);
        // counter 6: base 1, p = 1/11.
        assert_eq!(lfu_incremented(6, 10, || 0.09), 7);
        assert_eq!(lfu_incremented(6, 10, || 0.091), 6);
        // Redis's table for lfu-log-factor 10: about 100 hits reach ~10, 1M hits reach 255.
        let mut state = 0x1234_5678u64;
        let mut random = || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut counter = LFU_INIT_VAL;
        for _ in 0..100 {
            counter = lfu_incremented(counter, 10, &mut random);
        }
        assert!((8..=14).contains(&counter), "{counter}");
        for _ in 0..1_000_000 {
            counter = lfu_incremented(counter, 10, &mut random);
        }
        assert!(counter >= 250, "{counter}");
    }
}
