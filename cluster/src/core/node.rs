//! Node identity and the node table's record.
//!
//! A [`NodeId`] is 160 random bits shown as 40 lowercase hex characters, exactly as Redis
//! Cluster names nodes. A [`NodeRecord`] is what one node knows about another (or about
//! itself): addresses, [`NodeFlags`], role, epochs, liveness timestamps and failure reports.
//! All timestamps are the core's `now`: a monotonic millisecond count supplied by the caller.

use std::fmt;

use bincode::{Decode, Encode};

use crate::core::rng::Rng;

/// Length of a node id in bytes (160 bits).
pub const NODE_ID_BYTES: usize = 20;
/// Length of a node id shown as hex.
pub const NODE_ID_HEX_CHARS: usize = NODE_ID_BYTES * 2;

/// A node's 160-bit identity, shown as 40 lowercase hex characters.
///
/// Ordering is byte order, which equals the lexicographic order of the hex form: the
/// configEpoch collision rule ("the smaller id bumps") relies on it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
pub struct NodeId(pub [u8; NODE_ID_BYTES]);

/// Why a string is not a node id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeIdParseError {
    /// The string is not exactly 40 characters long.
    #[error("a node id has 40 hex characters, this one has {0}")]
    WrongLength(usize),
    /// A character is not a hex digit.
    #[error("a node id has only hex digits, found {0:?}")]
    NotHex(char),
}

impl NodeId {
    /// A fresh random id drawn from the core's seeded generator.
    pub fn random(rng: &mut Rng) -> NodeId {
        let mut bytes = [0u8; NODE_ID_BYTES];
        rng.fill_bytes(&mut bytes);
        NodeId(bytes)
    }

    /// Parses 40 hex characters (either case) into an id: the one parser of ids, for
    /// nodes.conf, admin input and tests alike.
    pub fn parse_hex(text: &str) -> Result<NodeId, NodeIdParseError> {
        if let Some(id) = decode_hex(text.as_bytes()) {
            return Ok(id);
        }
        // Only explains the failure: the first character that is not a hex digit (non-ASCII
        // text included), else the length.
        match text
            .chars()
            .find(|character| !character.is_ascii_hexdigit())
        {
            Some(character) => Err(NodeIdParseError::NotHex(character)),
            None => Err(NodeIdParseError::WrongLength(text.len())),
        }
    }

    /// The 40-character lowercase hex form.
    pub fn to_hex(&self) -> String {
        let mut hex = String::with_capacity(NODE_ID_HEX_CHARS);
        self.push_hex(&mut hex);
        hex
    }

    /// Appends the 40-character lowercase hex form to `out`, without the formatting
    /// machinery (ids are most of a nodes.conf).
    pub fn push_hex(&self, out: &mut String) {
        const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";
        for byte in self.0 {
            out.push(char::from(HEX_DIGITS[usize::from(byte >> 4)]));
            out.push(char::from(HEX_DIGITS[usize::from(byte & 0x0f)]));
        }
    }
}

/// Decodes exactly 40 hex digits (either case) into an id.
fn decode_hex(text: &[u8]) -> Option<NodeId> {
    if text.len() != NODE_ID_HEX_CHARS {
        return None;
    }
    let mut bytes = [0u8; NODE_ID_BYTES];
    for (byte, pair) in bytes.iter_mut().zip(text.chunks_exact(2)) {
        let high = char::from(pair[0]).to_digit(16)?;
        let low = char::from(pair[1]).to_digit(16)?;
        *byte = (high << 4 | low) as u8;
    }
    Some(NodeId(bytes))
}

impl fmt::Display for NodeId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.to_hex())
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The first 8 hex characters are enough to tell nodes apart in logs.
        let hex = self.to_string();
        write!(formatter, "NodeId({})", &hex[..8])
    }
}

impl std::str::FromStr for NodeId {
    type Err = NodeIdParseError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        NodeId::parse_hex(text)
    }
}

/// A node's flags as a bitset; bit positions are those of the Redis wire format.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, Encode, Decode)]
pub struct NodeFlags(pub u16);

impl NodeFlags {
    /// The node is a master (`master`).
    pub const MASTER: NodeFlags = NodeFlags(1 << 0);
    /// The node is a replica (`slave`).
    pub const REPLICA: NodeFlags = NodeFlags(1 << 1);
    /// Possibly failing: this node's local opinion (`fail?`).
    pub const PFAIL: NodeFlags = NodeFlags(1 << 2);
    /// Failing: a majority of masters agreed (`fail`).
    pub const FAIL: NodeFlags = NodeFlags(1 << 3);
    /// The record describes the local node (`myself`).
    pub const MYSELF: NodeFlags = NodeFlags(1 << 4);
    /// First contact not yet completed; the id is temporary (`handshake`).
    pub const HANDSHAKE: NodeFlags = NodeFlags(1 << 5);
    /// The address is unknown (`noaddr`).
    pub const NOADDR: NodeFlags = NodeFlags(1 << 6);
    /// Send MEET rather than PING on first contact (internal, not printed).
    pub const MEET: NodeFlags = NodeFlags(1 << 7);
    /// A master that once had a replica: eligible as a replica-migration target (internal).
    pub const MIGRATE_TO: NodeFlags = NodeFlags(1 << 8);
    /// A replica that never starts an automatic failover (`nofailover`).
    pub const NOFAILOVER: NodeFlags = NodeFlags(1 << 9);

    /// Every flag this version knows: on the wire, any other bit is a decode error.
    pub const KNOWN: NodeFlags = NodeFlags((1 << 10) - 1);

    /// The printed names in Redis's order, with the flag each stands for.
    pub const PRINTED_NAMES: [(NodeFlags, &'static str); 8] = [
        (NodeFlags::MYSELF, "myself"),
        (NodeFlags::MASTER, "master"),
        (NodeFlags::REPLICA, "slave"),
        (NodeFlags::PFAIL, "fail?"),
        (NodeFlags::FAIL, "fail"),
        (NodeFlags::HANDSHAKE, "handshake"),
        (NodeFlags::NOADDR, "noaddr"),
        (NodeFlags::NOFAILOVER, "nofailover"),
    ];

    /// True when no bit outside [`NodeFlags::KNOWN`] is set.
    pub fn is_known(self) -> bool {
        NodeFlags::KNOWN.contains(self)
    }

    /// True when every bit of `other` is set.
    pub fn contains(self, other: NodeFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// True when any bit of `other` is set.
    pub fn intersects(self, other: NodeFlags) -> bool {
        self.0 & other.0 != 0
    }

    /// Sets the bits of `other`.
    pub fn insert(&mut self, other: NodeFlags) {
        self.0 |= other.0;
    }

    /// Clears the bits of `other`.
    pub fn remove(&mut self, other: NodeFlags) {
        self.0 &= !other.0;
    }

    /// The flags as CLUSTER NODES prints them: comma-separated names, or `noflags`.
    pub fn to_names(self) -> String {
        let mut names = String::new();
        self.push_names(&mut names);
        names
    }

    /// Appends [`NodeFlags::to_names`] to `out`, without allocating.
    pub fn push_names(self, out: &mut String) {
        let mut first = true;
        for (flag, name) in NodeFlags::PRINTED_NAMES {
            if self.contains(flag) {
                if !first {
                    out.push(',');
                }
                out.push_str(name);
                first = false;
            }
        }
        if first {
            out.push_str("noflags");
        }
    }

    /// Parses a comma-separated list of printed names (`noflags` adds nothing), strictly:
    /// `Err(name)` names the first that is not one of [`NodeFlags::PRINTED_NAMES`] (Redis's
    /// loader refuses an unknown flag too).
    pub fn from_names(text: &str) -> Result<NodeFlags, &str> {
        let mut flags = NodeFlags::default();
        for name in text.split(',').filter(|name| *name != "noflags") {
            let (flag, _) = NodeFlags::PRINTED_NAMES
                .iter()
                .find(|(_, printed)| *printed == name)
                .ok_or(name)?;
            flags.insert(*flag);
        }
        Ok(flags)
    }
}

impl std::ops::BitOr for NodeFlags {
    type Output = NodeFlags;
    fn bitor(self, other: NodeFlags) -> NodeFlags {
        NodeFlags(self.0 | other.0)
    }
}

impl fmt::Debug for NodeFlags {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "NodeFlags({})", self.to_names())
    }
}

/// Whether the core has a working outbound link to the node (`connected`/`disconnected`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LinkState {
    /// The link is up (always true for myself).
    #[default]
    Connected,
    /// The runtime reported the link down and it has not come back.
    Disconnected,
}

/// One master's report that a node looked failing (PFAIL or FAIL in its gossip).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailureReport {
    /// The master that reported.
    pub reporter: NodeId,
    /// When the report was last received or refreshed (`now` ms).
    pub time_ms: u64,
}

/// Everything a node knows about one node of the cluster (itself included).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRecord {
    /// The node's id (temporary random id while in HANDSHAKE).
    pub id: NodeId,
    /// Announced IP address or host name used to reach it (empty when unknown).
    pub ip: String,
    /// Optional announced hostname (empty when none).
    pub hostname: String,
    /// Client (data) port.
    pub client_port: u16,
    /// Cluster bus port.
    pub bus_port: u16,
    /// Flags: role, failure state, handshake, ...
    pub flags: NodeFlags,
    /// For a replica: its master's id.
    pub master_id: Option<NodeId>,
    /// When the oldest unanswered PING to it was sent (`now` ms), 0 when none is pending.
    pub ping_sent_ms: u64,
    /// When the last PONG from it was received (`now` ms), 0 when never.
    pub pong_received_ms: u64,
    /// When any bus message from it was last received (`now` ms); liveness for PFAIL.
    pub data_received_ms: u64,
    /// When the record was created (`now` ms); bounds handshakes.
    pub created_ms: u64,
    /// When FAIL was set (`now` ms), 0 when not failing.
    pub fail_time_ms: u64,
    /// For a master: when this node last voted for one of its replicas (`now` ms).
    pub voted_time_ms: u64,
    /// The node's configEpoch (a replica's own value; views show its master's).
    pub config_epoch: u64,
    /// Outbound link state.
    pub link: LinkState,
    /// Replication offset last advertised in its headers.
    pub repl_offset: u64,
    /// Failure reports about this node from masters, at most one per reporter.
    pub failure_reports: Vec<FailureReport>,
    /// Shard id: a master's own random id, adopted by its replicas.
    pub shard_id: Option<NodeId>,
}

impl NodeRecord {
    /// A fresh record with the given id and addresses and no flags.
    pub fn new(id: NodeId, ip: &str, client_port: u16, bus_port: u16, now_ms: u64) -> Self {
        NodeRecord {
            id,
            ip: ip.to_string(),
            hostname: String::new(),
            client_port,
            bus_port,
            flags: NodeFlags::default(),
            master_id: None,
            ping_sent_ms: 0,
            pong_received_ms: 0,
            data_received_ms: now_ms,
            created_ms: now_ms,
            fail_time_ms: 0,
            voted_time_ms: 0,
            config_epoch: 0,
            link: LinkState::Connected,
            repl_offset: 0,
            failure_reports: Vec::new(),
            shard_id: None,
        }
    }

    /// The bus address `ip:bus_port` by which the runtime reaches the node.
    pub fn bus_address(&self) -> String {
        format!("{}:{}", self.ip, self.bus_port)
    }

    /// True for a master.
    pub fn is_master(&self) -> bool {
        self.flags.contains(NodeFlags::MASTER)
    }

    /// True for a replica.
    pub fn is_replica(&self) -> bool {
        self.flags.contains(NodeFlags::REPLICA)
    }

    /// True when the node is PFAIL or FAIL.
    pub fn is_failing(&self) -> bool {
        self.flags.intersects(NodeFlags::PFAIL | NodeFlags::FAIL)
    }

    /// True when the node is FAIL.
    pub fn is_failed(&self) -> bool {
        self.flags.contains(NodeFlags::FAIL)
    }

    /// True while the first contact is not completed.
    pub fn in_handshake(&self) -> bool {
        self.flags.contains(NodeFlags::HANDSHAKE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_round_trips_through_hex() {
        let mut rng = Rng::new(7);
        let id = NodeId::random(&mut rng);
        let hex = id.to_hex();
        assert_eq!(hex.len(), 40);
        assert_eq!(hex, hex.to_lowercase());
        assert_eq!(NodeId::parse_hex(&hex), Ok(id));
        assert_eq!(NodeId::parse_hex(&hex.to_uppercase()), Ok(id));
    }

    #[test]
    fn node_id_parse_rejects_bad_text() {
        assert_eq!(
            NodeId::parse_hex("abc"),
            Err(NodeIdParseError::WrongLength(3))
        );
        let bad = "g".repeat(40);
        assert_eq!(NodeId::parse_hex(&bad), Err(NodeIdParseError::NotHex('g')));
        let multibyte = "é".repeat(20);
        assert!(NodeId::parse_hex(&multibyte).is_err());
    }

    #[test]
    fn node_id_order_matches_hex_order() {
        let low = NodeId::parse_hex(&format!("0a{}", "0".repeat(38))).unwrap();
        let high = NodeId::parse_hex(&format!("b0{}", "0".repeat(38))).unwrap();
        assert!(low < high);
        assert!(low.to_hex() < high.to_hex());
    }

    #[test]
    fn the_known_flags_are_exactly_the_named_ones() {
        let named = [
            NodeFlags::MASTER,
            NodeFlags::REPLICA,
            NodeFlags::PFAIL,
            NodeFlags::FAIL,
            NodeFlags::MYSELF,
            NodeFlags::HANDSHAKE,
            NodeFlags::NOADDR,
            NodeFlags::MEET,
            NodeFlags::MIGRATE_TO,
            NodeFlags::NOFAILOVER,
        ];
        let union = named
            .iter()
            .fold(NodeFlags::default(), |union, flag| union | *flag);
        assert_eq!(union, NodeFlags::KNOWN);
        assert!(NodeFlags::KNOWN.is_known());
        assert!(!NodeFlags(1 << 10).is_known());
    }

    #[test]
    fn flags_print_in_redis_order_and_parse_back() {
        let flags = NodeFlags::MASTER | NodeFlags::MYSELF | NodeFlags::PFAIL;
        assert_eq!(flags.to_names(), "myself,master,fail?");
        assert_eq!(NodeFlags::from_names("myself,master,fail?"), Ok(flags));
        assert_eq!(NodeFlags::default().to_names(), "noflags");
        assert_eq!(NodeFlags::from_names("noflags"), Ok(NodeFlags::default()));
        assert_eq!(NodeFlags::from_names("master,leader"), Err("leader"));
        assert_eq!(NodeFlags::from_names("-"), Err("-"));
        let mut rng = Rng::new(5);
        for _ in 0..100 {
            let flags = NodeFlags(rng.next_u64() as u16 & NodeFlags::KNOWN.0);
            let printed = NodeFlags::PRINTED_NAMES
                .iter()
                .fold(NodeFlags::default(), |union, (flag, _)| union | *flag);
            let names = flags.to_names();
            assert_eq!(
                NodeFlags::from_names(&names),
                Ok(NodeFlags(flags.0 & printed.0)),
                "{names}"
            );
        }
    }

    #[test]
    fn the_hex_writer_and_parser_agree_with_display() {
        let mut rng = Rng::new(5);
        for _ in 0..100 {
            let id = NodeId::random(&mut rng);
            let mut out = String::from("x");
            id.push_hex(&mut out);
            assert_eq!(out[1..], format!("{id}"));
            assert_eq!(NodeId::parse_hex(&out[1..]), Ok(id));
            assert_eq!(NodeId::parse_hex(&out[1..].to_uppercase()), Ok(id));
        }
        assert_eq!(
            NodeId::parse_hex("0g00000000000000000000000000000000000000"),
            Err(NodeIdParseError::NotHex('g'))
        );
        assert_eq!(
            NodeId::parse_hex("00"),
            Err(NodeIdParseError::WrongLength(2))
        );
        assert_eq!(
            NodeId::parse_hex(&"é".repeat(20)),
            Err(NodeIdParseError::NotHex('é'))
        );
    }
}
