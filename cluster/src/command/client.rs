//! What a client protocol (the RESP gateway) needs of each command: its parse from the
//! request's arguments and the shape of its reply. Each command's file implements
//! [`ClientForm`] beside the rest of the command; this file holds the trait, the argument
//! helpers they share and the protocol-neutral [`ClientReply`] the gateway encodes.

use bytes::Bytes;
use slotkv_engine::{parse_f64, parse_i64, CommandError, ExpireTime, SetOutcome};

use crate::command::Command;

/// A command's answer as a client sees it, before any protocol encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientReply {
    /// `+OK`.
    Ok,
    /// The null (RESP2's nil bulk string).
    Nil,
    /// A bulk string.
    Bulk(Bytes),
    /// An integer.
    Integer(i64),
    /// An array of bulk strings or nulls (MGET).
    Values(Vec<Option<Bytes>>),
}

/// A command built from a client's arguments. `'a` borrows the request's bytes: nothing is
/// copied to parse a command.
pub(crate) trait ClientForm<'a>: Command + Sized {
    /// Parses the arguments after the command's name; `name` is the registry's spelling of
    /// the name received (a family member, e.g. `pexpire`). Errors are Redis's (arity,
    /// syntax, not an integer).
    fn from_args(name: &'static str, args: &'a [&'a [u8]]) -> Result<Self, CommandError>;

    /// The client's view of a successful output (`name` as given to [`Self::from_args`]).
    fn client_reply(&self, name: &'static str, output: Self::Output) -> ClientReply;
}

/// The arguments when there are exactly `N` of them, else Redis's arity error for `name`.
pub(crate) fn exactly<'a, const N: usize>(
    args: &'a [&'a [u8]],
    name: &'static str,
) -> Result<[&'a [u8]; N], CommandError> {
    <[&[u8]; N]>::try_from(args).map_err(|_| CommandError::WrongArity { command: name })
}

/// At least `minimum` arguments, else Redis's arity error for `name`.
pub(crate) fn at_least<'a>(
    args: &'a [&'a [u8]],
    minimum: usize,
    name: &'static str,
) -> Result<&'a [&'a [u8]], CommandError> {
    if args.len() < minimum {
        return Err(CommandError::WrongArity { command: name });
    }
    Ok(args)
}

/// An integer argument in Redis's strict syntax.
pub(crate) fn integer(arg: &[u8]) -> Result<i64, CommandError> {
    parse_i64(arg).ok_or(CommandError::NotAnInteger)
}

/// A float argument in Redis's syntax.
pub(crate) fn float(arg: &[u8]) -> Result<f64, CommandError> {
    parse_f64(arg).ok_or(CommandError::NotAFloat)
}

/// Whether `arg` is the option `option` (upper case), compared without regard to case.
pub(crate) fn is_option(arg: &[u8], option: &str) -> bool {
    arg.eq_ignore_ascii_case(option.as_bytes())
}

/// The expiry option at `args[0]` (EX, PX, EXAT, PXAT) with its amount at `args[1]`:
/// `None` when `args[0]` is no such option; a missing amount is a syntax error, a
/// non-integer one Redis's integer error.
pub(crate) fn expire_option(args: &[&[u8]]) -> Result<Option<ExpireTime>, CommandError> {
    let Some(option) = args.first() else {
        return Ok(None);
    };
    let make: fn(i64) -> ExpireTime = if is_option(option, "EX") {
        ExpireTime::Seconds
    } else if is_option(option, "PX") {
        ExpireTime::Milliseconds
    } else if is_option(option, "EXAT") {
        ExpireTime::UnixSeconds
    } else if is_option(option, "PXAT") {
        ExpireTime::UnixMilliseconds
    } else {
        return Ok(None);
    };
    let amount = args.get(1).ok_or(CommandError::Syntax)?;
    Ok(Some(make(integer(amount)?)))
}

/// Key-value pairs borrowed from a client's arguments.
pub(crate) type Pairs<'a> = Vec<(&'a [u8], &'a [u8])>;

/// Pairs of a command's arguments (MSET's key value ...): an odd count is `name`'s arity
/// error.
pub(crate) fn pairs<'a>(
    args: &'a [&'a [u8]],
    name: &'static str,
) -> Result<Pairs<'a>, CommandError> {
    if args.is_empty() || !args.len().is_multiple_of(2) {
        return Err(CommandError::WrongArity { command: name });
    }
    Ok(args
        .chunks_exact(2)
        .map(|pair| (pair[0], pair[1]))
        .collect())
}

/// The client reply of each output type where Redis answers it the same way for every
/// command returning it.
pub(crate) trait PlainReply {
    /// The reply.
    fn plain(self) -> ClientReply;
}

impl PlainReply for () {
    fn plain(self) -> ClientReply {
        ClientReply::Ok
    }
}

impl PlainReply for bool {
    fn plain(self) -> ClientReply {
        ClientReply::Integer(i64::from(self))
    }
}

impl PlainReply for i64 {
    fn plain(self) -> ClientReply {
        ClientReply::Integer(self)
    }
}

impl PlainReply for usize {
    fn plain(self) -> ClientReply {
        ClientReply::Integer(i64::try_from(self).unwrap_or(i64::MAX))
    }
}

impl PlainReply for Option<Bytes> {
    fn plain(self) -> ClientReply {
        self.map_or(ClientReply::Nil, ClientReply::Bulk)
    }
}

impl PlainReply for Bytes {
    fn plain(self) -> ClientReply {
        ClientReply::Bulk(self)
    }
}

impl PlainReply for Vec<Option<Bytes>> {
    fn plain(self) -> ClientReply {
        ClientReply::Values(self)
    }
}

impl PlainReply for SetOutcome {
    fn plain(self) -> ClientReply {
        if self.written {
            ClientReply::Ok
        } else {
            ClientReply::Nil
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argument_helpers_answer_redis_errors() {
        let args: &[&[u8]] = &[b"a", b"b"];
        assert_eq!(
            exactly::<1>(args, "get"),
            Err(CommandError::WrongArity { command: "get" })
        );
        assert_eq!(exactly::<2>(args, "x"), Ok([&b"a"[..], &b"b"[..]]));
        assert_eq!(integer(b"01"), Err(CommandError::NotAnInteger));
        assert_eq!(integer(b"-5"), Ok(-5));
        assert_eq!(float(b"x"), Err(CommandError::NotAFloat));
        let expiry: &[&[u8]] = &[b"px", b"10"];
        assert_eq!(
            expire_option(expiry),
            Ok(Some(ExpireTime::Milliseconds(10)))
        );
        let missing: &[&[u8]] = &[b"EX"];
        assert_eq!(expire_option(missing), Err(CommandError::Syntax));
        let odd: &[&[u8]] = &[b"k"];
        assert_eq!(
            pairs(odd, "mset"),
            Err(CommandError::WrongArity { command: "mset" })
        );
    }
}
