//! Key → slot mapping: the one home of slot math in slotkv.
//!
//! A key maps to one of [`SLOT_COUNT`] hash slots by CRC16-XMODEM of the key (or of its
//! hash tag) modulo 16384, exactly as Redis Cluster does, so that Redis clients and
//! slotkv agree on where every key lives.

/// Number of hash slots in a cluster (`2^14`).
pub const SLOT_COUNT: usize = 16384;

/// A hash-slot number, always `< SLOT_COUNT`.
pub type Slot = u16;

const _: () = assert!(SLOT_COUNT.is_power_of_two());
const _: () = assert!(SLOT_COUNT - 1 <= u16::MAX as usize);

/// CRC16-XMODEM (polynomial 0x1021, initial value 0, no reflection, no final xor).
pub fn crc16(bytes: &[u8]) -> u16 {
    crc16::State::<crc16::XMODEM>::calculate(bytes)
}

/// The part of `key` that is hashed: the hash tag if the key has a non-empty one,
/// otherwise the whole key.
///
/// The tag is the bytes between the first `{` and the first `}` after it; an empty tag
/// (`{}`) or a missing `}` means the whole key is hashed.
pub fn hash_tag(key: &[u8]) -> &[u8] {
    let Some(open) = key.iter().position(|&b| b == b'{') else {
        return key;
    };
    let rest = &key[open + 1..];
    match rest.iter().position(|&b| b == b'}') {
        Some(close) if close > 0 => &rest[..close],
        _ => key,
    }
}

/// The hash slot of `key`: `CRC16(hash_tag(key)) mod 16384`.
pub fn key_slot(key: &[u8]) -> Slot {
    crc16(hash_tag(key)) & (SLOT_COUNT as u16 - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_check_value_matches_xmodem() {
        assert_eq!(crc16(b"123456789"), 0x31C3);
    }

    #[test]
    fn slots_match_redis_vectors() {
        let vectors: &[(&[u8], u16)] = &[
            (b"123456789", 12739),
            (b"", 0),
            (b"a", 15495),
            (b"foo", 12182),
            (b"bar", 5061),
            (b"hello", 866),
            (b"key", 12539),
            (b"user:1000", 1649),
            (b"{user1000}.following", 3443),
            (b"{user1000}.followers", 3443),
            (b"user1000", 3443),
            (b"{foo}bar", 12182),
            (b"foo{bar}{zap}", 5061),
            (b"foo{}{bar}", 8363),
            (b"{}", 15257),
            (b"a{}", 6082),
            (b"{{a}}", 10276),
            (b"foo{{bar}}zap", 4015),
            (b"{bar", 4015),
            (b"foo{bar", 15278),
            (b"{a}", 15495),
        ];
        for (key, slot) in vectors {
            assert_eq!(
                key_slot(key),
                *slot,
                "key {:?}",
                String::from_utf8_lossy(key)
            );
        }
    }

    #[test]
    fn hash_tag_only_considers_first_open_brace() {
        assert_eq!(hash_tag(b"foo{bar}{zap}"), b"bar");
        assert_eq!(hash_tag(b"foo{}{bar}"), b"foo{}{bar}");
        assert_eq!(hash_tag(b"foo{{bar}}zap"), b"{bar");
        assert_eq!(hash_tag(b"nobraces"), b"nobraces");
    }

    #[test]
    fn every_slot_is_in_range() {
        for i in 0..100_000u32 {
            assert!((key_slot(&i.to_le_bytes()) as usize) < SLOT_COUNT);
        }
    }
}
