//! The bounds of one client's input, with Redis's defaults as named constants
//! ([`RequestLimits`]). The parser ([`crate::frame`]) enforces them; the server's
//! configuration ([`crate::RespConfig`]) carries them.

/// Largest bulk argument, in bytes: Redis's `proto-max-bulk-len` default (512 MiB).
pub const PROTO_MAX_BULK_LEN_DEFAULT: usize = 512 << 20;

/// Most arguments of one multibulk request (Redis's historical limit of 1024 × 1024).
pub const MULTIBULK_ARGS_MAX_DEFAULT: usize = 1024 * 1024;

/// Longest inline request, and longest `*<count>` / `$<length>` header line, in bytes
/// (Redis's `PROTO_INLINE_MAX_SIZE`, 64 KiB).
pub const INLINE_BYTES_MAX_DEFAULT: usize = 64 << 10;

/// Most bytes buffered for one client's unparsed input: Redis's
/// `client-query-buffer-limit` default (1 GiB). A client past it is closed.
pub const QUERY_BUFFER_BYTES_MAX_DEFAULT: usize = 1 << 30;

/// The bounds the parser enforces on one client's input. Each is in bytes except
/// `multibulk_args_max`; `inline_bytes_max` ≤ `query_buffer_bytes_max` and
/// `bulk_bytes_max` ≤ `query_buffer_bytes_max` make sense (a request larger than the query
/// buffer can never complete).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    /// Largest bulk argument (`proto-max-bulk-len`).
    pub bulk_bytes_max: usize,
    /// Most arguments of one multibulk request.
    pub multibulk_args_max: usize,
    /// Longest inline request or header line.
    pub inline_bytes_max: usize,
    /// Most bytes of one request buffered before it is complete
    /// (`client-query-buffer-limit`).
    pub query_buffer_bytes_max: usize,
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits {
            bulk_bytes_max: PROTO_MAX_BULK_LEN_DEFAULT,
            multibulk_args_max: MULTIBULK_ARGS_MAX_DEFAULT,
            inline_bytes_max: INLINE_BYTES_MAX_DEFAULT,
            query_buffer_bytes_max: QUERY_BUFFER_BYTES_MAX_DEFAULT,
        }
    }
}

const _: () = assert!(INLINE_BYTES_MAX_DEFAULT <= QUERY_BUFFER_BYTES_MAX_DEFAULT);
const _: () = assert!(PROTO_MAX_BULK_LEN_DEFAULT <= QUERY_BUFFER_BYTES_MAX_DEFAULT);

/// A memory amount as Redis's config accepts it: bytes, or a number with `k`, `kb`, `m`,
/// `mb`, `g`, `gb` (any case; `k` is 1000, `kb` 1024, as in redis.conf). `None` when
/// malformed or beyond `u64`.
pub fn parse_memory_bytes(text: &str) -> Option<u64> {
    let lowered = text.trim().to_ascii_lowercase();
    let digits = lowered.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit: u64 = match &lowered[digits.len()..] {
        "" | "b" => 1,
        "k" => 1_000,
        "kb" => 1 << 10,
        "m" => 1_000_000,
        "mb" => 1 << 20,
        "g" => 1_000_000_000,
        "gb" => 1 << 30,
        _ => return None,
    };
    digits.parse::<u64>().ok()?.checked_mul(unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_amounts_read_as_redis_reads_them() {
        assert_eq!(parse_memory_bytes("100"), Some(100));
        assert_eq!(parse_memory_bytes("1kb"), Some(1024));
        assert_eq!(parse_memory_bytes("1k"), Some(1000));
        assert_eq!(parse_memory_bytes("2GB"), Some(2 << 30));
        assert_eq!(parse_memory_bytes("3mb"), Some(3 << 20));
        assert_eq!(parse_memory_bytes("x"), None);
        assert_eq!(parse_memory_bytes("1tb"), None);
        assert_eq!(parse_memory_bytes("99999999999999999999gb"), None);
    }
}
