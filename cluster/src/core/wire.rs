//! Bus messages and their encoding: the one home of the cluster bus format.
//!
//! A [`Message`] is a [`Header`] (the spec's header fields: sender id, epochs, flags, the
//! sender's slots, addresses, cluster state, master id, replication offset, mflags) plus a
//! typed [`Body`]. The information is Redis's; the bytes are not: slots travel as ranges
//! instead of a 2 KiB bitmap and integers as varints, so a PING is a tenth of Redis's size.
//!
//! On the wire a message is one protocol-version byte followed by its bincode 2 encoding:
//! [`BUS_FORMAT`], the crate's one versioned, bounded codec ([`crate::codec`]). Decoding is
//! bounded ([`MAX_MESSAGE_BYTES`], [`MAX_GOSSIP_ENTRIES`], ...), strict and fallible: an
//! unknown body type, flag bit ([`NodeFlags::KNOWN`]), mflags bit ([`MFLAGS_KNOWN`]),
//! boolean or option tag is a [`DecodeError`], never a panic and never a default; the core
//! drops and counts it ([`crate::core::Stats::malformed_dropped`]).

use bincode::{Decode, Encode};

pub use crate::codec::DecodeError;
use crate::codec::{Format, Validate};
use crate::core::formation::FormationMessage;
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

/// Longest ban a FORGOTTEN_NODE message may ask for, in ms (a day; Redis's default
/// `cluster-blacklist-ttl` is a minute): a longer one is refused as malformed.
pub const MAX_FORGOTTEN_TTL_MS: u64 = 24 * 60 * 60 * 1000;

/// `mflags` bit: the sender is a master paused for a manual failover.
pub const MFLAG_PAUSED: u8 = 1;
/// `mflags` bit: vote even though the master is not FAIL (manual failover).
pub const MFLAG_FORCEACK: u8 = 2;
/// `mflags` bit (slotkv's own): a PONG from a node that does not know the receiver (its
/// answer to a stranger's PING or MEET). A receiver with the autopilot on that knows the
/// sender MEETs it again: a handshake the sender dropped (lost messages) would otherwise
/// leave the receiver knowing everyone and known by no one.
pub const MFLAG_STRANGER: u8 = 4;
/// Every `mflags` bit this version knows; a message with any other bit is refused.
pub const MFLAGS_KNOWN: u8 = MFLAG_PAUSED | MFLAG_FORCEACK | MFLAG_STRANGER;

/// The bus format: [`PROTOCOL_VERSION`] then bincode, at most [`MAX_MESSAGE_BYTES`].
pub const BUS_FORMAT: Format<MAX_MESSAGE_BYTES> = Format::new("bus message", PROTOCOL_VERSION);

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
    /// Message flags ([`MFLAG_PAUSED`], [`MFLAG_FORCEACK`], [`MFLAG_STRANGER`]).
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
    /// The named node was forgotten (CLUSTER FORGET): forget it too and refuse it for
    /// `ttl_ms` (Redis 7's FORGOTTEN_NODE ping extension, as a message of its own).
    ForgottenNode {
        /// The forgotten node.
        node: NodeId,
        /// How long it stays banned, in ms: 1 ..= [`MAX_FORGOTTEN_TTL_MS`].
        ttl_ms: u64,
    },
    /// A master asks one of its replicas to take over its slots (slotkv's own message:
    /// shutdown hand-over, restart without data; see `crate::core::handover`).
    HandOver {
        /// How the replica takes over.
        mode: HandOverMode,
    },
    /// The autopilot's coordinator tells the members of a fresh cluster who masters which
    /// slots and who replicates whom (slotkv's own message; see `crate::core::formation`).
    Formation(FormationMessage),
}

/// How a replica takes over in a [`Body::HandOver`]. Decoding is strict: an unknown mode
/// is a [`DecodeError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
pub enum HandOverMode {
    /// The master paused its writes: the replica runs the lossless manual failover
    /// (MFSTART, wait for the paused offset, election with FORCEACK).
    Graceful,
    /// The master restarted without its data, so its offset means nothing: the replica
    /// starts the election with FORCEACK at once, like CLUSTER FAILOVER FORCE.
    WithoutData,
    /// The master restarted without its data and kept slots that no replica of it holds,
    /// while a former replica of it, promoted in its place, holds their data (a slot the
    /// master claimed just before it went down, which the replica never heard of): sent
    /// to that node, now a master, which takes the slots over with an epoch bump.
    Adopt,
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
    /// FORGOTTEN_NODE.
    ForgottenNode,
    /// HANDOVER (slotkv's own).
    HandOver,
    /// FORMATION (slotkv's own).
    Formation,
}

impl MessageType {
    /// Number of message types.
    pub const COUNT: usize = 11;
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
        MessageType::ForgottenNode,
        MessageType::HandOver,
        MessageType::Formation,
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
            MessageType::ForgottenNode => "forgotten-node",
            MessageType::HandOver => "handover",
            MessageType::Formation => "formation",
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
            Body::ForgottenNode { .. } => MessageType::ForgottenNode,
            Body::HandOver { .. } => MessageType::HandOver,
            Body::Formation(_) => MessageType::Formation,
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
        // Redis carries it as a ping extension: 8-byte extension header, 40-byte name, TTL.
        Body::ForgottenNode { .. } => 8 + 40 + 8,
        // Redis has no such message; its nearest, MFSTART, is a bare header.
        Body::HandOver { .. } => REDIS_HEADER_BYTES,
        // redis-cli sends each node its own ADDSLOTS / REPLICATE instead: about a header.
        Body::Formation(_) => REDIS_HEADER_BYTES,
    }
}

/// Encodes `message` as version byte + bincode ([`BUS_FORMAT`]).
pub fn encode(message: &Message) -> Vec<u8> {
    BUS_FORMAT.encode(message)
}

/// Decodes and validates one message ([`BUS_FORMAT`], then [`Message`]'s [`Validate`]).
pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
    BUS_FORMAT.decode(bytes)
}

fn validate_ranges(ranges: &[SlotRange]) -> Result<(), &'static str> {
    if ranges.len() > MAX_SLOT_RANGES {
        return Err("too many slot ranges");
    }
    if !ranges.iter().all(SlotRange::is_valid) {
        return Err("slot range out of bounds");
    }
    // Ascending and disjoint, as every sender builds them: overlapping copies of one
    // big range would otherwise make each slot walk cost up to MAX_SLOT_RANGES × 16384
    // steps and let duplicates pass the "same slot count" comparison of rule 2.
    if ranges.windows(2).any(|pair| pair[0].end >= pair[1].start) {
        return Err("slot ranges overlap or are out of order");
    }
    Ok(())
}

fn validate_header(header: &Header) -> Result<(), &'static str> {
    validate_ranges(&header.slots)?;
    if header.current_epoch > MAX_EPOCH || header.config_epoch > MAX_EPOCH {
        return Err("epoch beyond MAX_EPOCH");
    }
    if header.ip.len() > MAX_ADDRESS_BYTES || header.hostname.len() > MAX_ADDRESS_BYTES {
        return Err("address too long");
    }
    // Flags are hand-mapped bits: a bit this version does not know is refused, never
    // stored (it would be lost, or misread, at the next nodes.conf save).
    if !header.flags.is_known() {
        return Err("unknown node flag bit in the header");
    }
    if header.mflags & !MFLAGS_KNOWN != 0 {
        return Err("unknown mflags bit");
    }
    Ok(())
}

fn validate_gossip(gossip: &[GossipEntry]) -> Result<(), &'static str> {
    if gossip.len() > MAX_GOSSIP_ENTRIES {
        return Err("too many gossip entries");
    }
    if gossip
        .iter()
        .any(|entry| entry.ip.len() > MAX_ADDRESS_BYTES)
    {
        return Err("gossip address too long");
    }
    if !gossip.iter().all(|entry| entry.flags.is_known()) {
        return Err("unknown node flag bit in a gossip entry");
    }
    Ok(())
}

impl Validate for Message {
    fn validate(&self) -> Result<(), &'static str> {
        validate_header(&self.header)?;
        if let Some(gossip) = self.body.gossip() {
            validate_gossip(gossip)?;
        }
        if let Body::Update {
            slots,
            config_epoch,
            ..
        } = &self.body
        {
            validate_ranges(slots)?;
            if *config_epoch > MAX_EPOCH {
                return Err("epoch beyond MAX_EPOCH");
            }
        }
        if let Body::Formation(message) = &self.body {
            message.validate()?;
        }
        if let Body::ForgottenNode { ttl_ms, .. } = &self.body {
            if !(1..=MAX_FORGOTTEN_TTL_MS).contains(ttl_ms) {
                return Err("forgotten-node ttl out of range");
            }
        }
        Ok(())
    }
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

    /// True when `message` encodes but its decoding is refused by validation.
    fn is_invalid(message: &Message) -> bool {
        matches!(decode(&encode(message)), Err(DecodeError::Invalid { .. }))
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
        assert!(matches!(
            decode(&bytes),
            Err(DecodeError::UnsupportedVersion {
                found: 2,
                expected: PROTOCOL_VERSION,
                ..
            })
        ));
        assert!(matches!(decode(&[]), Err(DecodeError::Empty { .. })));
        assert!(matches!(
            decode(&[1, 0xff, 0xff]),
            Err(DecodeError::Malformed { .. })
        ));
        let mut trailing = encode(&sample_message(1));
        trailing.push(0);
        assert!(matches!(
            decode(&trailing),
            Err(DecodeError::TrailingBytes { count: 1, .. })
        ));
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
        assert!(is_invalid(&message));
        message.header.slots = vec![
            SlotRange { start: 5, end: 9 },
            SlotRange { start: 0, end: 2 },
        ];
        assert!(is_invalid(&message));
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
        assert!(is_invalid(&update));
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
        assert!(is_invalid(&message));
        let mut message = sample_message(0);
        message.header.config_epoch = MAX_EPOCH + 1;
        assert!(is_invalid(&message));
        let update = Message {
            body: Body::Update {
                node: NodeId([2; 20]),
                config_epoch: u64::MAX,
                slots: vec![SlotRange { start: 1, end: 2 }],
            },
            ..sample_message(0)
        };
        assert!(is_invalid(&update));
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
        assert!(is_invalid(&message));
    }

    /// `message` encoded, with the one byte where it differs from `other`'s encoding (of
    /// the same length) replaced by `code`.
    fn with_code_at_difference(message: &Message, other: &Message, code: u8) -> Vec<u8> {
        let mut bytes = encode(message);
        let other = encode(other);
        assert_eq!(bytes.len(), other.len());
        let index = (0..bytes.len())
            .find(|index| bytes[*index] != other[*index])
            .expect("the two messages differ in one byte");
        bytes[index] = code;
        bytes
    }

    #[test]
    fn an_unknown_body_type_is_a_decode_error() {
        let message = Message {
            body: Body::MfStart,
            ..sample_message(0)
        };
        let mut bytes = encode(&message);
        // The unit body is the last byte: its discriminant (MfStart, 7); ForgottenNode (8)
        // and HandOver (9, the last) need their fields.
        let last = bytes.len() - 1;
        assert_eq!(bytes[last], 7);
        bytes[last] = 10;
        assert!(matches!(decode(&bytes), Err(DecodeError::Malformed { .. })));
        bytes[last] = 8;
        assert!(matches!(decode(&bytes), Err(DecodeError::Malformed { .. })));
        bytes[last] = 9;
    }

    #[test]
    fn a_hand_over_round_trips_and_an_unknown_mode_is_a_decode_error() {
        for mode in [
            HandOverMode::Graceful,
            HandOverMode::WithoutData,
            HandOverMode::Adopt,
        ] {
            let message = Message {
                body: Body::HandOver { mode },
                ..sample_message(0)
            };
            assert_eq!(decode(&encode(&message)), Ok(message));
        }
        let message = Message {
            body: Body::HandOver {
                mode: HandOverMode::WithoutData,
            },
            ..sample_message(0)
        };
        let mut bytes = encode(&message);
        // The body is the last two bytes: its discriminant (9), then the mode's (1).
        let last = bytes.len() - 1;
        assert_eq!((bytes[last - 1], bytes[last]), (9, 1));
        bytes[last] = 3;
        assert!(matches!(decode(&bytes), Err(DecodeError::Malformed { .. })));
    }

    #[test]
    fn a_forgotten_node_message_round_trips_and_its_ttl_is_bounded() {
        let forgotten = |ttl_ms| Message {
            body: Body::ForgottenNode {
                node: NodeId([4; 20]),
                ttl_ms,
            },
            ..sample_message(0)
        };
        let message = forgotten(60_000);
        assert_eq!(decode(&encode(&message)), Ok(message));
        assert!(decode(&encode(&forgotten(MAX_FORGOTTEN_TTL_MS))).is_ok());
        assert!(is_invalid(&forgotten(0)));
        assert!(is_invalid(&forgotten(MAX_FORGOTTEN_TTL_MS + 1)));
        assert!(is_invalid(&forgotten(u64::MAX)));
        let bytes = encode(&forgotten(60_000));
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err());
        }
    }

    #[test]
    fn a_boolean_other_than_zero_or_one_is_a_decode_error() {
        let ok = sample_message(0);
        let mut not_ok = ok.clone();
        not_ok.header.cluster_ok = false;
        let bytes = with_code_at_difference(&ok, &not_ok, 2);
        assert!(matches!(decode(&bytes), Err(DecodeError::Malformed { .. })));
    }

    #[test]
    fn an_option_tag_other_than_none_or_some_is_a_decode_error() {
        // master_id's tag is the byte after the flags; the flags' byte is the one that
        // changes with them.
        let none = sample_message(0);
        let mut flagged = none.clone();
        flagged.header.flags = NodeFlags::REPLICA;
        let mut bytes = encode(&none);
        let flags_index = (0..bytes.len())
            .find(|index| bytes[*index] != encode(&flagged)[*index])
            .expect("the flags differ");
        assert_eq!(
            bytes[flags_index + 1],
            0,
            "master_id None follows the flags"
        );
        bytes[flags_index + 1] = 2;
        assert!(matches!(decode(&bytes), Err(DecodeError::Malformed { .. })));
    }

    #[test]
    fn an_unknown_flag_bit_in_the_header_or_gossip_is_invalid() {
        for bit in 10..16 {
            let mut message = sample_message(1);
            message.header.flags = NodeFlags(NodeFlags::MASTER.0 | 1 << bit);
            assert!(is_invalid(&message), "header flag bit {bit}");
            let mut message = sample_message(2);
            if let Body::Ping(gossip) = &mut message.body {
                gossip[1].flags = NodeFlags(NodeFlags::PFAIL.0 | 1 << bit);
            }
            assert!(is_invalid(&message), "gossip flag bit {bit}");
        }
        let mut message = sample_message(1);
        message.header.flags = NodeFlags::KNOWN;
        assert!(decode(&encode(&message)).is_ok(), "every known bit is fine");
    }

    #[test]
    fn an_unknown_mflags_bit_is_invalid() {
        let mut message = sample_message(0);
        for bit in (0..8).filter(|bit| MFLAGS_KNOWN & (1 << bit) == 0) {
            message.header.mflags = MFLAG_PAUSED | 1 << bit;
            assert!(is_invalid(&message), "mflags bit {bit}");
        }
        message.header.mflags = MFLAGS_KNOWN;
        assert!(decode(&encode(&message)).is_ok());
    }
}
