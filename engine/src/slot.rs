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

/// CRC16-XMODEM (polynomial 0x1021, initial value 0, no reflection, no final xor): the same
/// function as the `crc16` crate's `XMODEM` (checked against it in the tests), computed eight
/// bytes per step with slicing-by-8 tables, because every command computes it on its key.
#[inline]
pub fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let [b0, b1, b2, b3, b4, b5, b6, b7] = [
            chunk[0], chunk[1], chunk[2], chunk[3], chunk[4], chunk[5], chunk[6], chunk[7],
        ];
        let [high, low] = crc.to_be_bytes();
        crc = CRC_TABLES[7][usize::from(b0 ^ high)]
            ^ CRC_TABLES[6][usize::from(b1 ^ low)]
            ^ CRC_TABLES[5][usize::from(b2)]
            ^ CRC_TABLES[4][usize::from(b3)]
            ^ CRC_TABLES[3][usize::from(b4)]
            ^ CRC_TABLES[2][usize::from(b5)]
            ^ CRC_TABLES[1][usize::from(b6)]
            ^ CRC_TABLES[0][usize::from(b7)];
    }
    for &byte in chunks.remainder() {
        crc = (crc << 8) ^ CRC_TABLES[0][usize::from((crc >> 8) as u8 ^ byte)];
    }
    crc
}

/// `CRC_TABLES[k][b]`: the CRC register after feeding byte `b` followed by `k` zero bytes.
static CRC_TABLES: [[u16; 256]; 8] = crc_tables();

const CRC16_XMODEM_POLY: u16 = 0x1021;

const fn crc_tables() -> [[u16; 256]; 8] {
    let mut tables = [[0u16; 256]; 8];
    let mut byte = 0;
    while byte < 256 {
        let mut crc = (byte as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ CRC16_XMODEM_POLY
            } else {
                crc << 1
            };
            bit += 1;
        }
        tables[0][byte] = crc;
        byte += 1;
    }
    let mut k = 1;
    while k < 8 {
        let mut byte = 0;
        while byte < 256 {
            let previous = tables[k - 1][byte];
            tables[k][byte] = (previous << 8) ^ tables[0][(previous >> 8) as usize];
            byte += 1;
        }
        k += 1;
    }
    tables
}

/// The part of `key` that is hashed: the hash tag if the key has a non-empty one,
/// otherwise the whole key.
///
/// The tag is the bytes between the first `{` and the first `}` after it; an empty tag
/// (`{}`) or a missing `}` means the whole key is hashed.
#[inline]
pub fn hash_tag(key: &[u8]) -> &[u8] {
    let Some(open) = find_byte(key, b'{') else {
        return key;
    };
    let rest = &key[open + 1..];
    match find_byte(rest, b'}') {
        Some(close) if close > 0 => &rest[..close],
        _ => key,
    }
}

/// The index of the first `needle` in `bytes`, eight bytes per step (every command looks for
/// a hash tag in its key, and most keys have none).
#[inline]
fn find_byte(bytes: &[u8], needle: u8) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH_BITS: u64 = 0x8080_8080_8080_8080;
    let pattern = ONES * u64::from(needle);
    let mut chunks = bytes.chunks_exact(8);
    let mut offset = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word) ^ pattern;
        // A zero byte of `word` is a match; the lowest flagged byte is the first match (a
        // false flag can only sit above a true one, where the borrow runs).
        let matches = word.wrapping_sub(ONES) & !word & HIGH_BITS;
        if matches != 0 {
            return Some(offset + (matches.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    let tail = chunks.remainder().iter().position(|&byte| byte == needle);
    tail.map(|index| offset + index)
}

/// The hash slot of `key`: `CRC16(hash_tag(key)) mod 16384`.
#[inline]
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

    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn crc16_equals_the_crc16_crate_xmodem_on_all_lengths() {
        let mut state = 0x1234_5678_9ABC_DEF0u64;
        for len in 0..200 {
            for _ in 0..20 {
                let bytes: Vec<u8> = (0..len).map(|_| xorshift(&mut state) as u8).collect();
                let reference = crc16::State::<crc16::XMODEM>::calculate(&bytes);
                assert_eq!(crc16(&bytes), reference, "{bytes:?}");
            }
        }
    }

    #[test]
    fn hash_tag_equals_a_bytewise_search_on_keys_full_of_braces() {
        fn reference(key: &[u8]) -> &[u8] {
            let Some(open) = key.iter().position(|&b| b == b'{') else {
                return key;
            };
            let rest = &key[open + 1..];
            match rest.iter().position(|&b| b == b'}') {
                Some(close) if close > 0 => &rest[..close],
                _ => key,
            }
        }
        let alphabet = [b'{', b'}', b'a', 0xFB, 0x7A, 0x7C, 0x00, 0xFF];
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for len in 0..40 {
            for _ in 0..200 {
                let key: Vec<u8> = (0..len)
                    .map(|_| alphabet[(xorshift(&mut state) % 8) as usize])
                    .collect();
                assert_eq!(hash_tag(&key), reference(&key), "{key:?}");
            }
        }
    }

    #[test]
    fn every_slot_is_in_range() {
        for i in 0..100_000u32 {
            assert!((key_slot(&i.to_le_bytes()) as usize) < SLOT_COUNT);
        }
    }
}
