//! The one error type of every engine command.
//!
//! `Display` is exactly the error line Redis would send (without the leading `-`), so a RESP
//! gateway can print it verbatim. A command that returns an error changed nothing.

/// Why a command was refused. The store is unchanged when a command returns one of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// INCR-family on a value that is not a canonical signed 64-bit decimal integer.
    #[error("ERR value is not an integer or out of range")]
    NotAnInteger,
    /// INCR-family whose result does not fit in an `i64`.
    #[error("ERR increment or decrement would overflow")]
    IncrementOverflow,
    /// DECRBY by `i64::MIN`, whose negation does not fit in an `i64`.
    #[error("ERR decrement would overflow")]
    DecrementOverflow,
    /// A zero, negative or overflowing expire time where Redis refuses one (SET, GETEX), or an
    /// EXPIRE-family time whose absolute deadline overflows.
    #[error("ERR invalid expire time in '{command}' command")]
    InvalidExpireTime {
        /// The lower-case command name, as Redis prints it.
        command: &'static str,
    },
    /// Options that cannot be combined; for callers that parse options from text.
    #[error("ERR syntax error")]
    Syntax,
    /// A multi-key command given no key at all.
    #[error("ERR wrong number of arguments for '{command}' command")]
    WrongArity {
        /// The lower-case command name, as Redis prints it.
        command: &'static str,
    },
    /// The write needs memory and `maxmemory` is reached with nothing (left) to evict.
    #[error("OOM command not allowed when used memory > 'maxmemory'.")]
    OutOfMemory,
    /// The keys of a multi-key command are in different hash slots.
    #[error("CROSSSLOT Keys in request don't hash to the same slot")]
    CrossSlot,
    /// A slot number outside `0..16384`.
    #[error("ERR Invalid or out of range slot")]
    InvalidSlot,
    /// A key longer than `StoreConfig::max_key_bytes`.
    #[error("ERR key exceeds maximum allowed size (max-key-bytes)")]
    KeyTooLarge,
    /// A value (or the result of APPEND) longer than `StoreConfig::max_value_bytes`.
    #[error("ERR string exceeds maximum allowed size (proto-max-bulk-len)")]
    ValueTooLarge,
    /// SETRANGE at a negative offset.
    #[error("ERR offset is out of range")]
    OffsetOutOfRange,
    /// INCRBYFLOAT on a value (or with an increment) that is not a decimal number.
    #[error("ERR value is not a valid float")]
    NotAFloat,
    /// INCRBYFLOAT whose result is not finite.
    #[error("ERR increment would produce NaN or Infinity")]
    NanOrInfinity,
    /// COPY of a key onto itself.
    #[error("ERR source and destination objects are the same")]
    SameObject,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_redis_error_lines() {
        let cases = [
            (
                CommandError::NotAnInteger,
                "ERR value is not an integer or out of range",
            ),
            (
                CommandError::IncrementOverflow,
                "ERR increment or decrement would overflow",
            ),
            (
                CommandError::InvalidExpireTime { command: "set" },
                "ERR invalid expire time in 'set' command",
            ),
            (
                CommandError::OutOfMemory,
                "OOM command not allowed when used memory > 'maxmemory'.",
            ),
            (
                CommandError::CrossSlot,
                "CROSSSLOT Keys in request don't hash to the same slot",
            ),
            (CommandError::Syntax, "ERR syntax error"),
            (CommandError::OffsetOutOfRange, "ERR offset is out of range"),
            (CommandError::NotAFloat, "ERR value is not a valid float"),
            (
                CommandError::NanOrInfinity,
                "ERR increment would produce NaN or Infinity",
            ),
            (
                CommandError::SameObject,
                "ERR source and destination objects are the same",
            ),
            (
                CommandError::WrongArity { command: "mget" },
                "ERR wrong number of arguments for 'mget' command",
            ),
        ];
        for (error, line) in cases {
            assert_eq!(error.to_string(), line);
        }
    }
}
