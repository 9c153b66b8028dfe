//! Bus messages and their encoding: the one home of the cluster bus format.
//!
//! A [`Message`] is a [`Header`] (the spec's header fields: sender id, epochs, flags, the
//! sender's slots, addresses, cluster state, master id, replication offset, mflags) plus a
//! typed [`Body`]. The information is Redis's; the bytes are not: slots travel as ranges
//! instead of a 2 KiB bitmap and integers as varints, so a PING is a tenth of Redis's size.
//!
//! On the wire a message is one protocol-version byte followed by its bincode 2 encoding.
//! Decoding is bounded ([`MAX_MESSAGE_BYTES`], [`MAX_GOSSIP_ENTRIES`], ...) and fallible:
//! a malformed message yields a [`WireError`], never a panic.

use bincode::{Decode, Encode};

use crate::core::node::{NodeFlags, NodeId};
use crate::core::slots::{SlotRange, SLOT_COUNT};

/// The protocol version byte that starts every encoded message.
pub const PROTOCOL_VERSION: u8 = 1;
/// Largest encoded message accepted, in bytes (also the bincode decode limit).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// Most gossip entries one message may carry.
pub const MAX_GOSSIP_ENTRIES: usize = 2048;
/// Most slot ranges one message may carry (every other slot is the worst case).
pub const MAX_SLOT_RANGES: usize = SLOT_COUNT / 2;
/// Longest IP or host name accepted, in bytes.
pub const MAX_ADDRESS_BYTES: usize = 255;
/// Largest currentEpoch/configEpoch accepted (Redis's epochs are signed 64-bit when
/// typed by an admin). Far beyond any real count of bumps, it leaves every `+ 1` room,
/// so a forged or corrupted epoch near `u64::MAX` cannot wrap a node's epochs to zero.
pub const MAX_EPOCH: u64 = i64::MAX as u64;

/// `mflags` bit: the sender is a master paused for a manual failover.
pub const MFLAG_PAUSED: u8 = 1;
/// `mflags` bit: vote even though the master is not FAIL (manual failover).
pub const MFLAG_FORCEACK: u8 = 2;

/// The header every bus message carries (3.3 of the spec, minus framing fields).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Header {
    /// Sender's node id.
    pub sender: NodeId,
    /// Sender's currentEpoch.
    pub current_epoch: u64,
    /// Sender's configEpoch, or its master's when the sender is a replica.
    pub config_epoch: u64,
    /// Master: its replication offset; replica: its processed offset.
    pub repl_offset: u64,
    /// Sender's flags (role, and so on).
    pub flags: NodeFlags,
    /// The sender's master when it is a replica, `None` when it claims to be a master.
    pub master_id: Option<NodeId>,
    /// Slots of the sender (its master's when it is a replica), sorted ranges.
    pub slots: Vec<SlotRange>,
    /// Announced IP (empty: use the address the message came from).
    pub ip: String,
    /// Announced hostname (may be empty).
    pub hostname: String,
    /// Client port.
    pub client_port: u16,
    /// Bus port.
    pub bus_port: u16,
    /// Sender's view of the cluster state.
    pub cluster_ok: bool,
    /// Message flags ([`MFLAG_PAUSED`], [`MFLAG_FORCEACK`]).
    pub mflags: u8,
    /// Sender's shard id, when it has one.
    pub shard_id: Option<NodeId>,
}

/// What the sender knows about one other node (Redis's 104-byte gossip entry).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct GossipEntry {
    /// The node described.
    pub id: NodeId,
    /// Its IP.
    pub ip: String,
    /// Its client port.
    pub client_port: u16,
    /// Its bus port.
    pub bus_port: u16,
    /// Its flags as the sender sees them (PFAIL/FAIL are failure reports).
    pub flags: NodeFlags,
    /// Milliseconds since the sender last got a PONG from it (`u64::MAX` when never).
    ///
    /// Redis sends absolute Unix seconds; an age needs no synchronised clocks.
    pub pong_age_ms: u64,
    /// True when the sender has a PING to it outstanding.
    pub ping_pending: bool,
}

/// The type-specific part of a message.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum Body {
    /// Liveness probe with gossip; answered by PONG.
    Ping(Vec<GossipEntry>),
    /// Reply to PING/MEET, or an unsolicited config broadcast.
    Pong(Vec<GossipEntry>),
    /// Like PING but asks the receiver to add the sender to its table.
    Meet(Vec<GossipEntry>),
    /// The named node is FAIL.
    Fail {
        /// The failing node.
        node: NodeId,
    },
    /// The named node owns these slots with this configEpoch: update your view.
    Update {
        /// The owner the update is about.
        node: NodeId,
        /// Its configEpoch.
        config_epoch: u64,
        /// Its slots.
        slots: Vec<SlotRange>,
    },
    /// A replica asks masters for a vote.
    FailoverAuthRequest,
    /// A master grants its vote.
    FailoverAuthAck,
    /// A replica asks its master to start a manual failover.
    MfStart,
}

/// One bus message.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Message {
    /// The header.
    pub header: Header,
    /// The body.
    pub body: Body,
}

/// Message types as CLUSTER INFO counts them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MessageType {
    /// PING.
    Ping,
    /// PONG.
    Pong,
    /// MEET.
    Meet,
    /// FAIL.
    Fail,
    /// FAILOVER_AUTH_REQUEST.
    FailoverAuthRequest,
    /// FAILOVER_AUTH_ACK.
    FailoverAuthAck,
    /// UPDATE.
    Update,
    /// MFSTART.
    MfStart,
}

impl MessageType {
    /// Number of message types.
    pub const COUNT: usize = 8;
    /// Every type, in counter-index order.
    pub const ALL: [MessageType; MessageType::COUNT] = [
        MessageType::Ping,
        MessageType::Pong,
        MessageType::Meet,
        MessageType::Fail,
        MessageType::FailoverAuthRequest,
        MessageType::FailoverAuthAck,
        MessageType::Update,
        MessageType::MfStart,
    ];

    /// The name CLUSTER INFO uses (`cluster_stats_messages_<name>_sent`).
    pub fn stats_name(self) -> &'static str {
        match self {
            MessageType::Ping => "ping",
            MessageType::Pong => "pong",
            MessageType::Meet => "meet",
            MessageType::Fail => "fail",
            MessageType::FailoverAuthRequest => "auth-req",
            MessageType::FailoverAuthAck => "auth-ack",
            MessageType::Update => "update",
            MessageType::MfStart => "mfstart",
        }
    }

    /// Index into per-type counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl Body {
    /// The message type of this body.
    pub fn message_type(&self) -> MessageType {
        match self {
            Body::Ping(_) => MessageType::Ping,
            Body::Pong(_) => MessageType::Pong,
            Body::Meet(_) => MessageType::Meet,
            Body::Fail { .. } => MessageType::Fail,
            Body::Update { .. } => MessageType::Update,
            Body::FailoverAuthRequest => MessageType::FailoverAuthRequest,
            Body::FailoverAuthAck => MessageType::FailoverAuthAck,
            Body::MfStart => MessageType::MfStart,
        }
    }

    /// The gossip section, for PING/PONG/MEET.
    pub fn gossip(&self) -> Option<&[GossipEntry]> {
        match self {
            Body::Ping(gossip) | Body::Pong(gossip) | Body::Meet(gossip) => Some(gossip),
            _ => None,
        }
    }
}

/// Why bytes did not decode into a message. The message is dropped and counted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Zero bytes.
    #[error("empty bus message")]
    Empty,
    /// More than [`MAX_MESSAGE_BYTES`].
    #[error("bus message of {0} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit")]
    TooLarge(usize),
    /// The version byte is not [`PROTOCOL_VERSION`].
    #[error("bus protocol version {0} is not supported (expected {PROTOCOL_VERSION})")]
    UnsupportedVersion(u8),
    /// bincode could not decode the payload.
    #[error("bus message does not decode: {0}")]
    Malformed(String),
    /// Bytes left over after the message.
    #[error("bus message has {0} trailing bytes")]
    TrailingBytes(usize),
    /// Decoded, but a field breaks a bound or an invariant.
    #[error("bus message is invalid: {0}")]
    Invalid(&'static str),
}

/// Redis's fixed header size in bytes (`clusterMsg` before `data`).
pub const REDIS_HEADER_BYTES: usize = 2256;
/// Redis's gossip entry size in bytes.
pub const REDIS_GOSSIP_ENTRY_BYTES: usize = 104;

/// The size this message would have in Redis's bus format (header with the 2 KiB slot
/// bitmap, 104-byte gossip entries, 40-byte names): the baseline our encoding is measured
/// against. Ping extensions (hostname, shard id: at least 56 bytes in Redis 7) are not
/// counted, which favours Redis.
pub fn redis_encoded_len(message: &Message) -> usize {
    match &message.body {
        Body::Ping(gossip) | Body::Pong(gossip) | Body::Meet(gossip) => {
            REDIS_HEADER_BYTES + REDIS_GOSSIP_ENTRY_BYTES * gossip.len()
        }
        Body::Fail { .. } => REDIS_HEADER_BYTES + 40,
        Body::Update { .. } => REDIS_HEADER_BYTES + 8 + 40 + 2048,
        Body::FailoverAuthRequest | Body::FailoverAuthAck | Body::MfStart => REDIS_HEADER_BYTES,
    }
}

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_MESSAGE_BYTES>()
}

/// Encodes `message` as version byte + bincode.
pub fn encode(message: &Message) -> Vec<u8> {
    let mut bytes = vec![PROTOCOL_VERSION];
    // Encoding into a Vec cannot fail for these types except by exceeding the limit,
    // which our own bounded messages never do; an empty payload then fails to decode.
    if let Ok(payload) = bincode::encode_to_vec(message, bincode_config()) {
        bytes.extend_from_slice(&payload);
    }
    bytes
}

/// Decodes and validates one message.
pub fn decode(bytes: &[u8]) -> Result<Message, WireError> {
    let (&version, payload) = bytes.split_first().ok_or(WireError::Empty)?;
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(WireError::TooLarge(bytes.len()));
    }
    if version != PROTOCOL_VERSION {
        return Err(WireError::UnsupportedVersion(version));
    }
    let (message, used): (Message, usize) =
        bincode::decode_from_slice(payload, bincode_config())
            .map_err(|error| WireError::Malformed(error.to_string()))?;
    if used != payload.len() {
        return Err(WireError::TrailingBytes(payload.len() - used));
    }
    validate(&message)?;
    Ok(message)
}

fn validate_ranges(ranges: &[SlotRange]) -> Result<(), WireError> {
    if ranges.len() > MAX_SLOT_RANGES {
        return Err(WireError::Invalid("too many slot ranges"));
    }
    if !ranges.iter().all(SlotRange::is_valid) {
        return Err(WireError::Invalid("slot range out of bounds"));
    }
    // Ascending and disjoint, as every sender builds them: overlapping copies of one
    // big range would otherwise make each slot walk cost up to MAX_SLOT_RANGES × 16384
    // steps and let duplicates pass the "same slot count" comparison of rule 2.
    if ranges.windows(2).any(|pair| pair[0].end >= pair[1].start) {
        return Err(WireError::Invalid(
            "slot ranges overlap or are out of order",
        ));
    }
    Ok(())
}

fn validate(message: &Message) -> Result<(), WireError> {
    let header = &message.header;
    validate_ranges(&header.slots)?;
    if header.current_epoch > MAX_EPOCH || header.config_epoch > MAX_EPOCH {
        return Err(WireError::Invalid("epoch beyond MAX_EPOCH"));
    }
    if header.ip.len() > MAX_ADDRESS_BYTES || header.hostname.len() > MAX_ADDRESS_BYTES {
        return Err(WireError::Invalid("address too long"));
    }
    if let Some(gossip) = message.body.gossip() {
        if gossip.len() > MAX_GOSSIP_ENTRIES {
            return Err(WireError::Invalid("too many gossip entries"));
        }
        if gossip
            .iter()
            .any(|entry| entry.ip.len() > MAX_ADDRESS_BYTES)
        {
            return Err(WireError::Invalid("gossip address too long"));
        }
    }
    if let Body::Update {
        slots,
        config_epoch,
        ..
    } = &message.body
    {
        validate_ranges(slots)?;
        if *config_epoch > MAX_EPOCH {
            return Err(WireError::Invalid("epoch beyond MAX_EPOCH"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample_message(gossip_count: usize) -> Message {
        let entry = GossipEntry {
            id: NodeId([9; 20]),
            ip: "10.0.0.9".to_string(),
            client_port: 6379,
            bus_port: 16379,
            flags: NodeFlags::MASTER,
            pong_age_ms: 1200,
            ping_pending: false,
        };
        Message {
            header: Header {
                sender: NodeId([1; 20]),
                current_epoch: 7,
                config_epoch: 3,
                repl_offset: 123_456,
                flags: NodeFlags::MASTER,
                master_id: None,
                slots: vec![SlotRange {
                    start: 0,
                    end: 5460,
                }],
                ip: "10.0.0.1".to_string(),
                hostname: String::new(),
                client_port: 6379,
                bus_port: 16379,
                cluster_ok: true,
                mflags: 0,
                shard_id: Some(NodeId([1; 20])),
            },
            body: Body::Ping(vec![entry; gossip_count]),
        }
    }

    #[test]
    fn messages_round_trip() {
        let message = sample_message(3);
        assert_eq!(decode(&encode(&message)), Ok(message));
        let update = Message {
            body: Body::Update {
                node: NodeId([2; 20]),
                config_epoch: 9,
                slots: vec![SlotRange { start: 1, end: 2 }],
            },
            ..sample_message(0)
        };
        assert_eq!(decode(&encode(&update)), Ok(update));
    }

    #[test]
    fn a_ping_is_far_smaller_than_redis() {
        // Redis: 2256-byte header + 104 bytes per gossip entry.
        let bytes = encode(&sample_message(10)).len();
        assert!(bytes * 4 <= 2256 + 104 * 10, "{bytes} bytes");
    }

    #[test]
    fn wrong_version_and_garbage_are_rejected() {
        let mut bytes = encode(&sample_message(1));
        bytes[0] = 2;
        assert_eq!(decode(&bytes), Err(WireError::UnsupportedVersion(2)));
        assert_eq!(decode(&[]), Err(WireError::Empty));
        assert!(matches!(
            decode(&[1, 0xff, 0xff]),
            Err(WireError::Malformed(_))
        ));
        let mut trailing = encode(&sample_message(1));
        trailing.push(0);
        assert_eq!(decode(&trailing), Err(WireError::TrailingBytes(1)));
    }

    #[test]
    fn every_truncation_and_bit_flip_fails_cleanly() {
        let bytes = encode(&sample_message(4));
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err());
        }
        for index in 1..bytes.len() {
            for bit in 0..8 {
                let mut flipped = bytes.clone();
                flipped[index] ^= 1 << bit;
                let _ = decode(&flipped);
            }
        }
    }

    #[test]
    fn huge_length_claims_are_bounded() {
        let mut bytes = encode(&sample_message(0));
        // Replace the tail with a gossip count claiming u64::MAX entries.
        bytes.truncate(bytes.len() - 1);
        bytes.extend_from_slice(&[253, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        assert!(decode(&bytes).is_err());
    }

    #[test]
    fn overlapping_or_unsorted_slot_ranges_are_invalid() {
        let whole = SlotRange {
            start: 0,
            end: 16383,
        };
        let mut message = sample_message(0);
        message.header.slots = vec![whole; 1000];
        assert!(matches!(
            decode(&encode(&message)),
            Err(WireError::Invalid(_))
        ));
        message.header.slots = vec![
            SlotRange { start: 5, end: 9 },
            SlotRange { start: 0, end: 2 },
        ];
        assert!(matches!(
            decode(&encode(&message)),
            Err(WireError::Invalid(_))
        ));
        let update = Message {
            body: Body::Update {
                node: NodeId([2; 20]),
                config_epoch: 9,
                slots: vec![
                    SlotRange { start: 1, end: 4 },
                    SlotRange { start: 4, end: 6 },
                ],
            },
            ..sample_message(0)
        };
        assert!(matches!(
            decode(&encode(&update)),
            Err(WireError::Invalid(_))
        ));
        message.header.slots = vec![
            SlotRange { start: 0, end: 2 },
            SlotRange { start: 3, end: 9 },
        ];
        assert!(
            decode(&encode(&message)).is_ok(),
            "adjacent ranges are fine"
        );
    }

    #[test]
    fn epochs_beyond_the_bound_are_invalid() {
        let mut message = sample_message(0);
        message.header.current_epoch = u64::MAX;
        assert!(matches!(
            decode(&encode(&message)),
            Err(WireError::Invalid(_))
        ));
        let mut message = sample_message(0);
        message.header.config_epoch = MAX_EPOCH + 1;
        assert!(matches!(
            decode(&encode(&message)),
            Err(WireError::Invalid(_))
        ));
        let update = Message {
            body: Body::Update {
                node: NodeId([2; 20]),
                config_epoch: u64::MAX,
                slots: vec![SlotRange { start: 1, end: 2 }],
            },
            ..sample_message(0)
        };
        assert!(matches!(
            decode(&encode(&update)),
            Err(WireError::Invalid(_))
        ));
        message.header.config_epoch = MAX_EPOCH;
        assert!(decode(&encode(&message)).is_ok());
    }

    #[test]
    fn out_of_range_slots_are_invalid() {
        let mut message = sample_message(0);
        message.header.slots = vec![SlotRange {
            start: 10,
            end: 20000,
        }];
        assert!(matches!(
            decode(&encode(&message)),
            Err(WireError::Invalid(_))
        ));
    }
}
