//! The request protocol of the data path: what a node asks the owner of a slot on the
//! transport's request channel, and what the owner answers. One home for the encoding.
//!
//! A request frame is one version byte followed by the bincode 2 encoding of a [`Request`];
//! a response frame is the version byte and a [`Response`]. Decoding is bounded by
//! [`MAX_PROTOCOL_FRAME_BYTES`], so a hostile length prefix cannot make us allocate more.
//! Engine option types are mirrored here (`Wire*`) so that the engine stays free of any
//! encoding concern.

use bincode::{Decode, Encode};
use slotkv_engine::{
    CommandError, ExpireCondition, ExpireTime, GetExExpiry, SetCondition, SetExpiry, SetOptions,
};

/// Version byte in front of every request and response frame.
pub(crate) const PROTOCOL_VERSION: u8 = 1;

/// Largest request or response frame decoded, in bytes.
pub(crate) const MAX_PROTOCOL_FRAME_BYTES: usize = 64 << 20;

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The frame is empty or has another version byte.
    #[error("unsupported data-path protocol version (expected {PROTOCOL_VERSION})")]
    Version,
    /// The body is not a valid encoding or exceeds the size bound.
    #[error("malformed data-path frame: {0}")]
    Malformed(String),
}

/// An expire time on the wire (mirror of [`ExpireTime`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub(crate) enum WireExpireTime {
    /// EX / EXPIRE.
    Seconds(i64),
    /// PX / PEXPIRE.
    Milliseconds(i64),
    /// EXAT / EXPIREAT.
    UnixSeconds(i64),
    /// PXAT / PEXPIREAT.
    UnixMilliseconds(i64),
}

impl From<ExpireTime> for WireExpireTime {
    fn from(time: ExpireTime) -> Self {
        match time {
            ExpireTime::Seconds(v) => Self::Seconds(v),
            ExpireTime::Milliseconds(v) => Self::Milliseconds(v),
            ExpireTime::UnixSeconds(v) => Self::UnixSeconds(v),
            ExpireTime::UnixMilliseconds(v) => Self::UnixMilliseconds(v),
        }
    }
}

impl From<WireExpireTime> for ExpireTime {
    fn from(time: WireExpireTime) -> Self {
        match time {
            WireExpireTime::Seconds(v) => Self::Seconds(v),
            WireExpireTime::Milliseconds(v) => Self::Milliseconds(v),
            WireExpireTime::UnixSeconds(v) => Self::UnixSeconds(v),
            WireExpireTime::UnixMilliseconds(v) => Self::UnixMilliseconds(v),
        }
    }
}

/// SET options on the wire: condition (0 always, 1 NX, 2 XX), expiry, GET flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub(crate) struct WireSetOptions {
    condition: u8,
    keep_ttl: bool,
    expire: Option<WireExpireTime>,
    return_previous: bool,
}

impl From<SetOptions> for WireSetOptions {
    fn from(options: SetOptions) -> Self {
        let condition = match options.condition {
            SetCondition::Always => 0,
            SetCondition::IfAbsent => 1,
            SetCondition::IfPresent => 2,
        };
        let (keep_ttl, expire) = match options.expiry {
            SetExpiry::ClearTtl => (false, None),
            SetExpiry::KeepTtl => (true, None),
            SetExpiry::Expire(time) => (false, Some(time.into())),
        };
        WireSetOptions {
            condition,
            keep_ttl,
            expire,
            return_previous: options.return_previous,
        }
    }
}

impl From<WireSetOptions> for SetOptions {
    fn from(options: WireSetOptions) -> Self {
        let condition = match options.condition {
            1 => SetCondition::IfAbsent,
            2 => SetCondition::IfPresent,
            _ => SetCondition::Always,
        };
        let expiry = match (options.keep_ttl, options.expire) {
            (_, Some(time)) => SetExpiry::Expire(time.into()),
            (true, None) => SetExpiry::KeepTtl,
            (false, None) => SetExpiry::ClearTtl,
        };
        SetOptions {
            condition,
            expiry,
            return_previous: options.return_previous,
        }
    }
}

/// EXPIRE condition on the wire, as its position in [`ExpireCondition`]'s declaration.
pub(crate) fn expire_condition_to_code(condition: ExpireCondition) -> u8 {
    match condition {
        ExpireCondition::Always => 0,
        ExpireCondition::IfNoTtl => 1,
        ExpireCondition::IfHasTtl => 2,
        ExpireCondition::IfLater => 3,
        ExpireCondition::IfEarlier => 4,
        ExpireCondition::IfHasTtlAndLater => 5,
        ExpireCondition::IfHasTtlAndEarlier => 6,
    }
}

/// The condition for a wire code; unknown codes mean no condition.
pub(crate) fn expire_condition_from_code(code: u8) -> ExpireCondition {
    match code {
        1 => ExpireCondition::IfNoTtl,
        2 => ExpireCondition::IfHasTtl,
        3 => ExpireCondition::IfLater,
        4 => ExpireCondition::IfEarlier,
        5 => ExpireCondition::IfHasTtlAndLater,
        6 => ExpireCondition::IfHasTtlAndEarlier,
        _ => ExpireCondition::Always,
    }
}

/// GETEX expiry on the wire: `None` unchanged, `Some(None)` persist, `Some(Some(t))` expire.
pub(crate) type WireGetExExpiry = Option<Option<WireExpireTime>>;

/// Converts a GETEX expiry to its wire form.
pub(crate) fn getex_to_wire(expiry: GetExExpiry) -> WireGetExExpiry {
    match expiry {
        GetExExpiry::Unchanged => None,
        GetExExpiry::Persist => Some(None),
        GetExExpiry::Expire(time) => Some(Some(time.into())),
    }
}

/// Converts a wire GETEX expiry back.
pub(crate) fn getex_from_wire(expiry: WireGetExExpiry) -> GetExExpiry {
    match expiry {
        None => GetExExpiry::Unchanged,
        Some(None) => GetExExpiry::Persist,
        Some(Some(time)) => GetExExpiry::Expire(time.into()),
    }
}

/// One engine command with owned arguments.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub(crate) enum Command {
    /// GET.
    Get(Vec<u8>),
    /// SET with options.
    Set(Vec<u8>, Vec<u8>, WireSetOptions),
    /// DEL (same-slot keys).
    Del(Vec<Vec<u8>>),
    /// EXISTS (same-slot keys).
    Exists(Vec<Vec<u8>>),
    /// The EXPIRE family: key, time, condition code.
    Expire(Vec<u8>, WireExpireTime, u8),
    /// PERSIST.
    Persist(Vec<u8>),
    /// PTTL (the handle derives TTL).
    Pttl(Vec<u8>),
    /// INCRBY (INCR, DECR, DECRBY are special cases).
    IncrBy(Vec<u8>, i64),
    /// DECRBY (kept apart: `i64::MIN` has no negation).
    DecrBy(Vec<u8>, i64),
    /// APPEND.
    Append(Vec<u8>, Vec<u8>),
    /// STRLEN.
    Strlen(Vec<u8>),
    /// GETDEL.
    GetDel(Vec<u8>),
    /// GETEX.
    GetEx(Vec<u8>, WireGetExExpiry),
    /// MGET (same-slot keys).
    MGet(Vec<Vec<u8>>),
    /// MSET (same-slot keys).
    MSet(Vec<(Vec<u8>, Vec<u8>)>),
    /// MSETNX (same-slot keys).
    MSetNx(Vec<(Vec<u8>, Vec<u8>)>),
    /// WAIT: until `replicas` replicas acknowledged `offset`, at most `timeout_ms`.
    Wait {
        /// Replication offset to wait for.
        offset: u64,
        /// Replicas wanted.
        replicas: u32,
        /// Longest wait, in ms.
        timeout_ms: u64,
    },
}

impl Command {
    /// The keys the command touches, in order.
    pub(crate) fn keys(&self) -> Vec<&[u8]> {
        match self {
            Command::Get(key)
            | Command::Set(key, _, _)
            | Command::Expire(key, _, _)
            | Command::Persist(key)
            | Command::Pttl(key)
            | Command::IncrBy(key, _)
            | Command::DecrBy(key, _)
            | Command::Append(key, _)
            | Command::Strlen(key)
            | Command::GetDel(key)
            | Command::GetEx(key, _) => vec![key.as_slice()],
            Command::Del(keys) | Command::Exists(keys) | Command::MGet(keys) => {
                keys.iter().map(Vec::as_slice).collect()
            }
            Command::MSet(pairs) | Command::MSetNx(pairs) => {
                pairs.iter().map(|(key, _)| key.as_slice()).collect()
            }
            Command::Wait { .. } => Vec::new(),
        }
    }

    /// True for commands that never write.
    pub(crate) fn is_read_only(&self) -> bool {
        matches!(
            self,
            Command::Get(_)
                | Command::Exists(_)
                | Command::Pttl(_)
                | Command::Strlen(_)
                | Command::MGet(_)
                | Command::Wait { .. }
        )
    }
}

/// A forwarded command and how to execute it.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub(crate) struct Request {
    /// The command.
    pub(crate) command: Command,
    /// ASKING: execute on an importing slot (one-shot, after an ASK redirection).
    pub(crate) asking: bool,
    /// READONLY: a replica of the owner may serve this read.
    pub(crate) read_from_replica: bool,
    /// After a write, wait for this many replica acknowledgements before answering.
    pub(crate) durability_replicas: u32,
    /// Longest durability wait, in ms.
    pub(crate) durability_timeout_ms: u64,
}

/// A successful command's value.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub(crate) enum Value {
    /// No value (SET without GET, MSET).
    Unit,
    /// A value or nil.
    Bulk(Option<Vec<u8>>),
    /// An integer.
    Integer(i64),
    /// A yes/no answer.
    Bool(bool),
    /// SET's outcome: written, previous value.
    SetOutcome(bool, Option<Vec<u8>>),
    /// MGET's values.
    Array(Vec<Option<Vec<u8>>>),
}

/// An engine error on the wire: the variant's code and, where it has one, the command name.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub(crate) struct WireCommandError {
    code: u8,
    command: String,
}

/// Command names the engine reports in errors, mapped back to static strings.
const KNOWN_COMMANDS: [&str; 12] = [
    "set",
    "getex",
    "expire",
    "pexpire",
    "expireat",
    "pexpireat",
    "mget",
    "mset",
    "msetnx",
    "del",
    "exists",
    "incrby",
];

fn static_command(name: &str) -> &'static str {
    KNOWN_COMMANDS
        .iter()
        .find(|known| **known == name)
        .copied()
        .unwrap_or("command")
}

impl From<&CommandError> for WireCommandError {
    fn from(error: &CommandError) -> Self {
        let (code, command) = match error {
            CommandError::NotAnInteger => (0, ""),
            CommandError::IncrementOverflow => (1, ""),
            CommandError::DecrementOverflow => (2, ""),
            CommandError::InvalidExpireTime { command } => (3, *command),
            CommandError::Syntax => (4, ""),
            CommandError::WrongArity { command } => (5, *command),
            CommandError::OutOfMemory => (6, ""),
            CommandError::CrossSlot => (7, ""),
            CommandError::InvalidSlot => (8, ""),
            CommandError::KeyTooLarge => (9, ""),
            CommandError::ValueTooLarge => (10, ""),
        };
        WireCommandError {
            code,
            command: command.to_string(),
        }
    }
}

impl From<WireCommandError> for CommandError {
    fn from(error: WireCommandError) -> Self {
        let command = static_command(&error.command);
        match error.code {
            0 => CommandError::NotAnInteger,
            1 => CommandError::IncrementOverflow,
            2 => CommandError::DecrementOverflow,
            3 => CommandError::InvalidExpireTime { command },
            5 => CommandError::WrongArity { command },
            6 => CommandError::OutOfMemory,
            7 => CommandError::CrossSlot,
            8 => CommandError::InvalidSlot,
            9 => CommandError::KeyTooLarge,
            10 => CommandError::ValueTooLarge,
            _ => CommandError::Syntax,
        }
    }
}

/// Why the cluster refuses keyed commands (the three CLUSTERDOWN lines).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub enum DownReason {
    /// `CLUSTERDOWN The cluster is down`.
    ClusterDown,
    /// `CLUSTERDOWN The cluster is down and only accepts read commands`.
    ReadOnly,
    /// `CLUSTERDOWN Hash slot not served`.
    SlotNotServed,
}

/// The owner's answer.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub(crate) enum Response {
    /// Executed; the value and the node's replication offset after the command.
    Done(Value, u64),
    /// The engine refused the command; nothing changed.
    Failed(WireCommandError),
    /// `MOVED slot`: another node owns the slot (its id hex and bus address).
    Moved(u16, String, String),
    /// `ASK slot`: the slot is migrating; ask the target (id hex, bus address) with ASKING.
    Ask(u16, String, String),
    /// `TRYAGAIN`: multi-key request during a slot migration.
    TryAgain,
    /// `CLUSTERDOWN`.
    Down(DownReason),
    /// `CROSSSLOT`.
    CrossSlot,
    /// The write was done but fewer replicas than asked acknowledged it in time.
    NotDurable {
        /// The value of the write.
        value: Value,
        /// Replicas that acknowledged.
        acknowledged: u32,
    },
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_PROTOCOL_FRAME_BYTES>()
}

fn encode<T: Encode>(value: &T) -> Vec<u8> {
    let mut frame = vec![PROTOCOL_VERSION];
    // Encoding into a Vec cannot fail for these types; an empty body then fails to decode.
    if let Ok(body) = bincode::encode_to_vec(value, config()) {
        frame.extend_from_slice(&body);
    }
    frame
}

fn decode<T: Decode<()>>(frame: &[u8]) -> Result<T, ProtocolError> {
    let Some((&version, body)) = frame.split_first() else {
        return Err(ProtocolError::Version);
    };
    if version != PROTOCOL_VERSION {
        return Err(ProtocolError::Version);
    }
    let (value, used) = bincode::decode_from_slice(body, config())
        .map_err(|error| ProtocolError::Malformed(error.to_string()))?;
    if used != body.len() {
        return Err(ProtocolError::Malformed("trailing bytes".to_string()));
    }
    Ok(value)
}

/// Encodes a request frame.
pub(crate) fn encode_request(request: &Request) -> Vec<u8> {
    encode(request)
}

/// Decodes a request frame.
pub(crate) fn decode_request(frame: &[u8]) -> Result<Request, ProtocolError> {
    decode(frame)
}

/// Encodes a response frame.
pub(crate) fn encode_response(response: &Response) -> Vec<u8> {
    encode(response)
}

/// Decodes a response frame.
pub(crate) fn decode_response(frame: &[u8]) -> Result<Response, ProtocolError> {
    decode(frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_responses_round_trip() {
        let request = Request {
            command: Command::Set(
                b"k".to_vec(),
                b"v".to_vec(),
                SetOptions {
                    condition: SetCondition::IfAbsent,
                    expiry: SetExpiry::Expire(ExpireTime::Milliseconds(5)),
                    return_previous: true,
                }
                .into(),
            ),
            asking: true,
            read_from_replica: false,
            durability_replicas: 1,
            durability_timeout_ms: 100,
        };
        assert_eq!(decode_request(&encode_request(&request)), Ok(request));
        let response = Response::Moved(7, "ab".into(), "127.0.0.1:1".into());
        assert_eq!(decode_response(&encode_response(&response)), Ok(response));
    }

    #[test]
    fn bad_frames_are_refused() {
        assert_eq!(decode_request(&[]), Err(ProtocolError::Version));
        assert_eq!(decode_request(&[9, 0]), Err(ProtocolError::Version));
        assert!(decode_request(&[PROTOCOL_VERSION, 200, 1, 2]).is_err());
        let mut frame = encode_request(&Request {
            command: Command::Get(b"k".to_vec()),
            asking: false,
            read_from_replica: false,
            durability_replicas: 0,
            durability_timeout_ms: 0,
        });
        frame.push(0);
        assert!(decode_request(&frame).is_err());
    }

    #[test]
    fn engine_errors_survive_the_wire() {
        for error in [
            CommandError::InvalidExpireTime { command: "set" },
            CommandError::OutOfMemory,
            CommandError::NotAnInteger,
        ] {
            let back: CommandError = WireCommandError::from(&error).into();
            assert_eq!(back, error);
        }
    }

    #[test]
    fn expire_conditions_survive_the_wire() {
        for condition in [
            ExpireCondition::Always,
            ExpireCondition::IfNoTtl,
            ExpireCondition::IfHasTtl,
            ExpireCondition::IfLater,
            ExpireCondition::IfEarlier,
            ExpireCondition::IfHasTtlAndLater,
            ExpireCondition::IfHasTtlAndEarlier,
        ] {
            assert_eq!(
                expire_condition_from_code(expire_condition_to_code(condition)),
                condition
            );
        }
    }

    #[test]
    fn set_options_survive_the_wire() {
        let options = SetOptions {
            condition: SetCondition::IfPresent,
            expiry: SetExpiry::KeepTtl,
            return_previous: false,
        };
        let back: SetOptions = WireSetOptions::from(options).into();
        assert_eq!(back, options);
    }
}
