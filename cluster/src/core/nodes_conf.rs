//! nodes.conf: rendering a node's configuration and parsing it back into a [`NodesConf`].
//!
//! This is the text format of spec 2.2, pure and without IO: the core emits
//! [`crate::core::Output::SaveConfig`] with a [`NodesConf`], the runtime renders it with
//! [`render_nodes_conf`] and writes it crash-safely (the file IO is the runtime's
//! `nodes_conf_file` module: the core names nothing of the shell); at start it reads the file,
//! [`parse_nodes_conf`] turns it back into a [`NodesConf`] and
//! [`crate::core::Core::restore`] starts from it. The simulator keeps the same text in
//! memory.
//!
//! One line per node (handshake nodes are not written), then a `vars` line:
//!
//! ```text
//! <id> <ip>:<port>@<cport>,<hostname>[,shard-id=<hex>] <flags> <master-id|-> <ping_sent> <pong_recv> <configEpoch> <connected|disconnected> <slot|start-end>... [<slot>->-<id>] [<slot>-<-<id>]
//! vars currentEpoch <n> lastVoteEpoch <n>
//! ```
//!
//! The parser is bounded ([`MAX_NODES_CONF_BYTES`], [`MAX_NODES_CONF_NODES`]) and fallible:
//! any input yields a [`NodesConf`] or a [`NodesConfError`] naming the line and the problem,
//! never a panic. Unknown aux fields and unknown `vars` keys are skipped, as Redis does.
//! The [`CLUSTER NODES`](crate::views::cluster_nodes) view shares the line writer.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::core::node::{LinkState, NodeFlags, NodeId, NodeIdParseError, NodeRecord};
use crate::core::slots::{open_slots_in_order, Slot, SlotRange, SlotState, SLOT_COUNT};

/// Largest nodes.conf accepted by [`parse_nodes_conf`], in bytes.
///
/// A 1000-node cluster with every slot fragmented into single-slot ranges is about 200 KiB;
/// 16 MiB leaves room for any real configuration while bounding a corrupt one.
pub const MAX_NODES_CONF_BYTES: usize = 16 * 1024 * 1024;
/// Most node lines one nodes.conf may hold (Redis advises at most ~1000 nodes).
pub const MAX_NODES_CONF_NODES: usize = 16_384;
/// Longest IP or hostname written or accepted, in bytes.
pub const MAX_ENDPOINT_BYTES: usize = 255;
/// Fields before the slot list on a node line.
const NODE_LINE_FIXED_FIELDS: usize = 8;
/// Longest excerpt of offending text kept in an error, in characters.
const ERROR_EXCERPT_CHARS: usize = 64;

/// A node's persistent configuration: what nodes.conf holds.
///
/// [`render_nodes_conf`] and [`parse_nodes_conf`] turn it into text and back;
/// [`Core::snapshot`](crate::core::Core::snapshot) makes it and
/// [`Core::restore`](crate::core::Core::restore) starts from it.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct NodesConf {
    /// Every known node, myself included (handshake nodes excluded).
    pub nodes: Vec<NodeRecord>,
    /// Slot ownership as (range, owner).
    pub slot_owners: Vec<(SlotRange, NodeId)>,
    /// Myself's migrating slots and their targets.
    pub migrating: Vec<(Slot, NodeId)>,
    /// Myself's importing slots and their sources.
    pub importing: Vec<(Slot, NodeId)>,
    /// `currentEpoch`.
    pub current_epoch: u64,
    /// `lastVoteEpoch`.
    pub last_vote_epoch: u64,
}

/// Why a nodes.conf text does not parse. Nothing was loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodesConfError {
    /// The text is larger than [`MAX_NODES_CONF_BYTES`].
    #[error("nodes.conf is {bytes} bytes, more than the {limit}-byte limit")]
    TooLarge {
        /// Size of the text, in bytes.
        bytes: usize,
        /// The limit, in bytes.
        limit: usize,
    },
    /// More node lines than [`MAX_NODES_CONF_NODES`].
    #[error("nodes.conf lists more than {limit} nodes")]
    TooManyNodes {
        /// The limit.
        limit: usize,
    },
    /// No node line carries the `myself` flag.
    #[error("nodes.conf has no node flagged myself")]
    NoMyself,
    /// One line is wrong.
    #[error("nodes.conf line {line}: {problem}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        problem: LineProblem,
    },
}

/// What is wrong with one line of nodes.conf.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineProblem {
    /// A node line has fewer than 8 fields.
    #[error("a node line needs at least 8 fields, found {0}")]
    TooFewFields(usize),
    /// A node id field is not 40 hex characters.
    #[error("bad {field} {text:?}: {source}")]
    BadId {
        /// Which id: `node id`, `master id`, `shard-id`, `open slot node id`.
        field: &'static str,
        /// The text found (shortened).
        text: String,
        /// Why it is not an id.
        source: NodeIdParseError,
    },
    /// The `ip:port@cport,hostname,...` field is malformed.
    #[error("bad address {text:?}: {reason}")]
    BadAddress {
        /// The text found (shortened).
        text: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A flag name is not one Redis prints.
    #[error("unknown flag {0:?} (known: myself, master, slave, fail?, fail, handshake, noaddr, nofailover, noflags)")]
    UnknownFlag(String),
    /// A numeric field is not a decimal u64.
    #[error("{field} {text:?} is not a decimal number that fits in 64 bits")]
    BadNumber {
        /// Which field.
        field: &'static str,
        /// The text found (shortened).
        text: String,
    },
    /// The link field is neither `connected` nor `disconnected`.
    #[error("link state {0:?} is neither connected nor disconnected")]
    BadLinkState(String),
    /// A slot, range or open slot is malformed or out of range.
    #[error("bad slot {text:?}: {reason}")]
    BadSlot {
        /// The text found (shortened).
        text: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A slot is claimed by this line and an earlier one.
    #[error("slot {slot} is already owned by {owner}")]
    SlotAlreadyOwned {
        /// The slot.
        slot: Slot,
        /// The earlier owner.
        owner: NodeId,
    },
    /// An open slot (`[slot->-id]`) on a node other than myself.
    #[error("open slot {0:?} on a node that is not myself")]
    OpenSlotNotMyself(String),
    /// The same node id on two lines.
    #[error("node {0} is listed twice")]
    DuplicateNode(NodeId),
    /// A second node flagged `myself`.
    #[error("a second node is flagged myself")]
    SecondMyself,
    /// The `vars` line is malformed.
    #[error("bad vars line: {0}")]
    BadVars(String),
}

/// How a hostname is written in the address field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HostnameStyle {
    /// nodes.conf: always `,<hostname>` (possibly empty), then aux fields.
    Always,
    /// CLUSTER NODES: `,<hostname>` only when set, no aux fields.
    WhenSet,
}

/// Everything one node line shows; shared by nodes.conf and CLUSTER NODES.
pub(crate) struct NodeLine<'a> {
    pub(crate) node: &'a NodeRecord,
    pub(crate) style: HostnameStyle,
    pub(crate) ping_sent_ms: u64,
    pub(crate) pong_received_ms: u64,
    pub(crate) config_epoch: u64,
    pub(crate) slots: &'a [SlotRange],
    /// Open slots, written only for myself, in slot order.
    pub(crate) open_slots: &'a [(Slot, SlotState)],
}

/// True for a hostname Redis accepts: at most 255 bytes of letters, digits, `-` and `.`.
pub fn is_valid_hostname(hostname: &str) -> bool {
    hostname.len() <= MAX_ENDPOINT_BYTES
        && hostname
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'.')
}

/// True for an IP text the line format can carry: at most 255 printable ASCII bytes with
/// no `,` or `@` (IPv6 colons are fine: the port is after the last colon).
pub fn is_valid_ip_text(ip: &str) -> bool {
    ip.len() <= MAX_ENDPOINT_BYTES
        && ip
            .bytes()
            .all(|byte| byte.is_ascii_graphic() && byte != b',' && byte != b'@')
}

/// Appends one node line (without the newline) to `out`.
pub(crate) fn write_node_line(out: &mut String, line: &NodeLine<'_>) {
    let node = line.node;
    node.id.push_hex(out);
    out.push(' ');
    write_address(out, node, line.style);
    out.push(' ');
    node.flags.push_names(out);
    out.push(' ');
    match node.master_id {
        Some(master) if node.is_replica() => master.push_hex(out),
        _ => out.push('-'),
    }
    let myself = node.flags.contains(NodeFlags::MYSELF);
    let link = if myself || node.link == LinkState::Connected {
        "connected"
    } else {
        "disconnected"
    };
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        " {} {} {} {link}",
        line.ping_sent_ms, line.pong_received_ms, line.config_epoch
    );
    write_slots(out, line.slots);
    if myself {
        write_open_slots(out, line.open_slots);
    }
}

/// `ip:port@cport` plus the hostname and aux fields as `style` asks.
fn write_address(out: &mut String, node: &NodeRecord, style: HostnameStyle) {
    let ip = if is_valid_ip_text(&node.ip) {
        node.ip.as_str()
    } else {
        tracing::warn!(node = %node.id, "an IP that the nodes line format cannot carry is written empty");
        ""
    };
    let hostname = if is_valid_hostname(&node.hostname) {
        node.hostname.as_str()
    } else {
        tracing::warn!(node = %node.id, "an invalid hostname is written empty");
        ""
    };
    let _ = write!(out, "{ip}:{}@{}", node.client_port, node.bus_port);
    match style {
        HostnameStyle::Always => {
            out.push(',');
            out.push_str(hostname);
            if let Some(shard_id) = node.shard_id {
                out.push_str(",shard-id=");
                shard_id.push_hex(out);
            }
        }
        HostnameStyle::WhenSet if !hostname.is_empty() => {
            out.push(',');
            out.push_str(hostname);
        }
        HostnameStyle::WhenSet => {}
    }
}

fn write_slots(out: &mut String, slots: &[SlotRange]) {
    for range in slots {
        if range.start == range.end {
            let _ = write!(out, " {}", range.start);
        } else {
            let _ = write!(out, " {}-{}", range.start, range.end);
        }
    }
}

fn write_open_slots(out: &mut String, open_slots: &[(Slot, SlotState)]) {
    for (slot, state) in open_slots {
        match state {
            SlotState::Migrating(target) => {
                let _ = write!(out, " [{slot}->-{target}]");
            }
            SlotState::Importing(source) => {
                let _ = write!(out, " [{slot}-<-{source}]");
            }
            SlotState::Stable => {}
        }
    }
}

/// Sorts ranges and merges overlapping or adjacent ones.
pub(crate) fn normalize_ranges(mut ranges: Vec<SlotRange>) -> Vec<SlotRange> {
    ranges.sort();
    let mut merged: Vec<SlotRange> = Vec::with_capacity(ranges.len());
    for range in ranges {
        match merged.last_mut() {
            Some(last) if u32::from(range.start) <= u32::from(last.end) + 1 => {
                last.end = last.end.max(range.end);
            }
            _ => merged.push(range),
        }
    }
    merged
}

/// Renders `conf` as nodes.conf text: one line per non-handshake node, then `vars`.
///
/// A replica's configEpoch column shows its master's epoch (Redis's `nodeEpoch`). Ping and
/// pong columns carry the record's times as they are (the core's clock); `Core::restore`
/// ignores them. Slot ranges are sorted and merged per owner.
pub fn render_nodes_conf(conf: &NodesConf) -> String {
    let records: BTreeMap<NodeId, &NodeRecord> =
        conf.nodes.iter().map(|node| (node.id, node)).collect();
    let mut owned: BTreeMap<NodeId, Vec<SlotRange>> = BTreeMap::new();
    for (range, owner) in &conf.slot_owners {
        if range.is_valid() {
            owned.entry(*owner).or_default().push(*range);
        }
    }
    let open_slots = open_slots_in_order(
        conf.migrating.iter().copied(),
        conf.importing.iter().copied(),
    );
    let mut text = String::new();
    for node in conf.nodes.iter().filter(|node| !node.in_handshake()) {
        let slots = normalize_ranges(owned.remove(&node.id).unwrap_or_default());
        let line = NodeLine {
            node,
            style: HostnameStyle::Always,
            ping_sent_ms: node.ping_sent_ms,
            pong_received_ms: node.pong_received_ms,
            config_epoch: conf_node_epoch(&records, node),
            slots: &slots,
            open_slots: &open_slots,
        };
        write_node_line(&mut text, &line);
        text.push('\n');
    }
    for owner in owned.keys() {
        tracing::warn!(%owner, "slots owned by a node without a line are not written");
    }
    let _ = writeln!(
        text,
        "vars currentEpoch {} lastVoteEpoch {}",
        conf.current_epoch, conf.last_vote_epoch
    );
    text
}

/// Redis's `nodeEpoch` within a [`NodesConf`]: a replica shows its master's configEpoch.
fn conf_node_epoch(records: &BTreeMap<NodeId, &NodeRecord>, node: &NodeRecord) -> u64 {
    match node.master_id.and_then(|master| records.get(&master)) {
        Some(master) if node.is_replica() => master.config_epoch,
        _ => node.config_epoch,
    }
}

/// Parses nodes.conf text (as written by [`render_nodes_conf`] or by Redis) into a
/// [`NodesConf`] whose `slot_owners` are maximal runs in slot order.
///
/// Blank lines are skipped; `vars` keys are case-insensitive and unknown ones ignored;
/// unknown aux fields in the address are ignored. A missing `vars` line leaves both epochs
/// at 0. A master or open-slot peer referenced without a line of its own is added as an
/// address-less `noaddr` node, as Redis's loader does.
pub fn parse_nodes_conf(text: &str) -> Result<NodesConf, NodesConfError> {
    if text.len() > MAX_NODES_CONF_BYTES {
        return Err(NodesConfError::TooLarge {
            bytes: text.len(),
            limit: MAX_NODES_CONF_BYTES,
        });
    }
    let mut builder = ConfBuilder::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let fields: Vec<&str> = line.split_ascii_whitespace().collect();
        let Some(first) = fields.first() else {
            continue;
        };
        let result = if first.eq_ignore_ascii_case("vars") {
            builder.handle_vars(&fields[1..])
        } else {
            if builder.nodes.len() >= MAX_NODES_CONF_NODES {
                return Err(NodesConfError::TooManyNodes {
                    limit: MAX_NODES_CONF_NODES,
                });
            }
            parse_node_line(&fields).and_then(|parsed| builder.handle_node(parsed))
        };
        result.map_err(|problem| NodesConfError::Line {
            line: number,
            problem,
        })?;
    }
    builder.finish()
}

/// One node line, parsed but not yet checked against the others.
struct ParsedLine {
    record: NodeRecord,
    slots: Vec<SlotRange>,
    open_slots: Vec<(Slot, SlotState, String)>,
}

fn parse_node_line(fields: &[&str]) -> Result<ParsedLine, LineProblem> {
    if fields.len() < NODE_LINE_FIXED_FIELDS {
        return Err(LineProblem::TooFewFields(fields.len()));
    }
    let id = parse_id("node id", fields[0])?;
    let address = parse_address(fields[1])?;
    let flags = parse_flags(fields[2])?;
    let master_id = match fields[3] {
        "-" => None,
        text => Some(parse_id("master id", text)?),
    };
    let mut record = NodeRecord::new(id, &address.ip, address.client_port, address.bus_port, 0);
    record.hostname = address.hostname;
    record.shard_id = address.shard_id;
    record.flags = flags;
    record.master_id = master_id;
    record.ping_sent_ms = parse_u64("ping_sent", fields[4])?;
    record.pong_received_ms = parse_u64("pong_recv", fields[5])?;
    record.config_epoch = parse_u64("configEpoch", fields[6])?;
    record.link = match fields[7] {
        "connected" => LinkState::Connected,
        "disconnected" => LinkState::Disconnected,
        other => return Err(LineProblem::BadLinkState(excerpt(other))),
    };
    let mut parsed = ParsedLine {
        record,
        slots: Vec::new(),
        open_slots: Vec::new(),
    };
    for field in &fields[NODE_LINE_FIXED_FIELDS..] {
        if field.starts_with('[') {
            let (slot, state) = parse_open_slot(field)?;
            parsed.open_slots.push((slot, state, field.to_string()));
        } else {
            parsed.slots.push(parse_slot_range(field)?);
        }
    }
    Ok(parsed)
}

fn excerpt(text: &str) -> String {
    text.chars().take(ERROR_EXCERPT_CHARS).collect()
}

fn parse_id(field: &'static str, text: &str) -> Result<NodeId, LineProblem> {
    NodeId::parse_hex(text).map_err(|source| LineProblem::BadId {
        field,
        text: excerpt(text),
        source,
    })
}

/// Parses a decimal made of ASCII digits only (no sign, no spaces).
fn parse_decimal<T: std::str::FromStr>(text: &str) -> Option<T> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn parse_u64(field: &'static str, text: &str) -> Result<u64, LineProblem> {
    parse_decimal(text).ok_or_else(|| LineProblem::BadNumber {
        field,
        text: excerpt(text),
    })
}

fn parse_flags(text: &str) -> Result<NodeFlags, LineProblem> {
    NodeFlags::from_names(text).map_err(|name| LineProblem::UnknownFlag(excerpt(name)))
}

/// The parts of `ip:port@cport,hostname,aux=value...`.
struct Address {
    ip: String,
    client_port: u16,
    bus_port: u16,
    hostname: String,
    shard_id: Option<NodeId>,
}

fn parse_address(text: &str) -> Result<Address, LineProblem> {
    let bad = |reason| LineProblem::BadAddress {
        text: excerpt(text),
        reason,
    };
    let mut parts = text.split(',');
    let endpoint = parts.next().unwrap_or_default();
    let (ip_port, bus_port) = endpoint
        .rsplit_once('@')
        .ok_or_else(|| bad("no @<bus port>"))?;
    let (ip, client_port) = ip_port.rsplit_once(':').ok_or_else(|| bad("no :<port>"))?;
    if !is_valid_ip_text(ip) {
        return Err(bad(
            "the IP is too long or has characters other than printable ASCII",
        ));
    }
    let client_port = parse_decimal(client_port).ok_or_else(|| bad("the port is not 0-65535"))?;
    let bus_port = parse_decimal(bus_port).ok_or_else(|| bad("the bus port is not 0-65535"))?;
    let hostname = parts.next().unwrap_or_default();
    if !is_valid_hostname(hostname) {
        return Err(bad(
            "the hostname is too long or has characters other than letters, digits, '-' and '.'",
        ));
    }
    let mut shard_id = None;
    for aux in parts {
        if let Some(value) = aux.strip_prefix("shard-id=") {
            shard_id = Some(parse_id("shard-id", value)?);
        }
    }
    Ok(Address {
        ip: ip.to_string(),
        client_port,
        bus_port,
        hostname: hostname.to_string(),
        shard_id,
    })
}

fn parse_slot(text: &str, whole: &str) -> Result<Slot, LineProblem> {
    match parse_decimal::<u32>(text) {
        Some(slot) if (slot as usize) < SLOT_COUNT => Ok(slot as Slot),
        Some(_) => Err(LineProblem::BadSlot {
            text: excerpt(whole),
            reason: "slots are 0-16383",
        }),
        None => Err(LineProblem::BadSlot {
            text: excerpt(whole),
            reason: "not a slot number",
        }),
    }
}

fn parse_slot_range(text: &str) -> Result<SlotRange, LineProblem> {
    let (start, end) = match text.split_once('-') {
        Some((start, end)) => (parse_slot(start, text)?, parse_slot(end, text)?),
        None => {
            let slot = parse_slot(text, text)?;
            (slot, slot)
        }
    };
    SlotRange::new(start, end).ok_or_else(|| LineProblem::BadSlot {
        text: excerpt(text),
        reason: "a range must not end before it starts",
    })
}

fn parse_open_slot(text: &str) -> Result<(Slot, SlotState), LineProblem> {
    let inner = text
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .ok_or_else(|| LineProblem::BadSlot {
            text: excerpt(text),
            reason: "an open slot is [<slot>->-<id>] or [<slot>-<-<id>]",
        })?;
    if let Some((slot, target)) = inner.split_once("->-") {
        let target = parse_id("open slot node id", target)?;
        return Ok((parse_slot(slot, text)?, SlotState::Migrating(target)));
    }
    if let Some((slot, source)) = inner.split_once("-<-") {
        let source = parse_id("open slot node id", source)?;
        return Ok((parse_slot(slot, text)?, SlotState::Importing(source)));
    }
    Err(LineProblem::BadSlot {
        text: excerpt(text),
        reason: "an open slot is [<slot>->-<id>] or [<slot>-<-<id>]",
    })
}

/// Accumulates lines and checks them against each other.
struct ConfBuilder {
    nodes: Vec<NodeRecord>,
    ids: BTreeSet<NodeId>,
    /// Owner of each slot as an index into `nodes`.
    owners: Vec<Option<u32>>,
    myself_seen: bool,
    /// Open slots of myself.
    open_slots: Vec<(Slot, SlotState)>,
    current_epoch: u64,
    last_vote_epoch: u64,
}

impl ConfBuilder {
    fn new() -> ConfBuilder {
        ConfBuilder {
            nodes: Vec::new(),
            ids: BTreeSet::new(),
            owners: vec![None; SLOT_COUNT],
            myself_seen: false,
            open_slots: Vec::new(),
            current_epoch: 0,
            last_vote_epoch: 0,
        }
    }

    fn handle_vars(&mut self, pairs: &[&str]) -> Result<(), LineProblem> {
        if !pairs.len().is_multiple_of(2) {
            return Err(LineProblem::BadVars(format!(
                "key {:?} has no value",
                excerpt(pairs[pairs.len() - 1])
            )));
        }
        for pair in pairs.chunks_exact(2) {
            let (key, value) = (pair[0], pair[1]);
            let target = if key.eq_ignore_ascii_case("currentEpoch") {
                &mut self.current_epoch
            } else if key.eq_ignore_ascii_case("lastVoteEpoch") {
                &mut self.last_vote_epoch
            } else {
                continue;
            };
            *target = parse_decimal(value).ok_or_else(|| {
                LineProblem::BadVars(format!(
                    "{} {:?} is not a number",
                    excerpt(key),
                    excerpt(value)
                ))
            })?;
        }
        Ok(())
    }

    fn handle_node(&mut self, parsed: ParsedLine) -> Result<(), LineProblem> {
        let id = parsed.record.id;
        if !self.ids.insert(id) {
            return Err(LineProblem::DuplicateNode(id));
        }
        let is_myself = parsed.record.flags.contains(NodeFlags::MYSELF);
        if is_myself && self.myself_seen {
            return Err(LineProblem::SecondMyself);
        }
        if let Some((_, _, text)) = parsed.open_slots.first() {
            if !is_myself {
                return Err(LineProblem::OpenSlotNotMyself(excerpt(text)));
            }
        }
        let index = self.nodes.len() as u32;
        for range in &parsed.slots {
            for slot in range.slots() {
                let entry = &mut self.owners[slot as usize];
                if let Some(owner) = *entry {
                    // An index not yet pushed is this very line listing the slot twice.
                    let owner = self.nodes.get(owner as usize).map_or(id, |node| node.id);
                    return Err(LineProblem::SlotAlreadyOwned { slot, owner });
                }
                *entry = Some(index);
            }
        }
        if is_myself {
            self.myself_seen = true;
            self.open_slots = parsed
                .open_slots
                .into_iter()
                .map(|(slot, state, _)| (slot, state))
                .collect();
        }
        self.nodes.push(parsed.record);
        Ok(())
    }

    /// Cross-line checks (myself present, references known), then the [`NodesConf`].
    fn finish(mut self) -> Result<NodesConf, NodesConfError> {
        if !self.myself_seen {
            return Err(NodesConfError::NoMyself);
        }
        let referenced: Vec<NodeId> = self
            .nodes
            .iter()
            .filter_map(|node| node.master_id)
            .chain(self.open_slots.iter().filter_map(|(_, state)| match state {
                SlotState::Migrating(peer) | SlotState::Importing(peer) => Some(*peer),
                SlotState::Stable => None,
            }))
            .collect();
        for id in referenced {
            if self.ids.insert(id) {
                tracing::warn!(node = %id, "nodes.conf references a node without a line; it is added without an address");
                self.nodes.push(placeholder(id));
            }
        }
        let mut conf = NodesConf {
            current_epoch: self.current_epoch,
            last_vote_epoch: self.last_vote_epoch,
            ..NodesConf::default()
        };
        for (slot, state) in self.open_slots {
            match state {
                SlotState::Migrating(target) => conf.migrating.push((slot, target)),
                SlotState::Importing(source) => conf.importing.push((slot, source)),
                SlotState::Stable => {}
            }
        }
        conf.slot_owners = owner_runs(&self.owners, &self.nodes);
        conf.nodes = self.nodes;
        Ok(conf)
    }
}

/// A node known only by reference (a replica's master, an open slot's peer), as Redis's
/// loader creates it: no address, flagged `noaddr` so no one tries to reach it; gossip fills
/// it in if the node still exists.
fn placeholder(id: NodeId) -> NodeRecord {
    let mut record = NodeRecord::new(id, "", 0, 0, 0);
    record.flags = NodeFlags::NOADDR;
    record.link = LinkState::Disconnected;
    record
}

/// Maximal runs of slots with the same owner, in slot order (as `SlotTable::owner_ranges`).
fn owner_runs(owners: &[Option<u32>], nodes: &[NodeRecord]) -> Vec<(SlotRange, NodeId)> {
    let mut runs: Vec<(SlotRange, u32)> = Vec::new();
    for (slot, owner) in owners.iter().enumerate() {
        let (Some(owner), Ok(slot)) = (owner, Slot::try_from(slot)) else {
            continue;
        };
        match runs.last_mut() {
            Some((range, last)) if last == owner && u32::from(range.end) + 1 == u32::from(slot) => {
                range.end = slot;
            }
            _ => runs.push((SlotRange::single(slot), *owner)),
        }
    }
    runs.into_iter()
        .map(|(range, owner)| (range, nodes[owner as usize].id))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::rng::Rng;
    use crate::core::{Config, Core};

    fn id(byte: u8) -> NodeId {
        NodeId([byte; 20])
    }

    fn hex(byte: u8) -> String {
        id(byte).to_hex()
    }

    fn record(byte: u8, flags: NodeFlags, port: u16) -> NodeRecord {
        let mut node = NodeRecord::new(id(byte), "127.0.0.1", port, port + 10_000, 0);
        node.flags = flags;
        node
    }

    /// Three masters, one with a replica, myself migrating and importing a slot.
    fn golden_conf() -> NodesConf {
        let mut myself = record(0xaa, NodeFlags::MYSELF | NodeFlags::MASTER, 30001);
        myself.config_epoch = 1;
        myself.shard_id = Some(id(0x11));
        myself.hostname = "host-a.example".to_string();
        let mut second = record(0xbb, NodeFlags::MASTER | NodeFlags::PFAIL, 30002);
        second.config_epoch = 2;
        second.ping_sent_ms = 1_500;
        second.pong_received_ms = 1_400;
        second.link = LinkState::Disconnected;
        let mut replica = record(0xcc, NodeFlags::REPLICA | NodeFlags::NOFAILOVER, 30003);
        replica.master_id = Some(id(0xaa));
        replica.config_epoch = 0;
        replica.shard_id = Some(id(0x11));
        NodesConf {
            nodes: vec![myself, second, replica],
            slot_owners: crate::core::testing::two_master_slot_owners(),
            migrating: vec![(100, id(0xbb))],
            importing: vec![(5463, id(0xbb))],
            current_epoch: 7,
            last_vote_epoch: 5,
        }
    }

    fn golden_text() -> String {
        format!(
            "{a} 127.0.0.1:30001@40001,host-a.example,shard-id={s} myself,master - 0 0 1 connected 0-5460 5462 [100->-{b}] [5463-<-{b}]\n\
             {b} 127.0.0.1:30002@40002, master,fail? - 1500 1400 2 disconnected 5461 5463-10922\n\
             {c} 127.0.0.1:30003@40003,,shard-id={s} slave,nofailover {a} 0 0 1 connected\n\
             vars currentEpoch 7 lastVoteEpoch 5\n",
            a = hex(0xaa),
            b = hex(0xbb),
            c = hex(0xcc),
            s = hex(0x11),
        )
    }

    #[test]
    fn renders_the_golden_configuration_exactly() {
        assert_eq!(render_nodes_conf(&golden_conf()), golden_text());
    }

    #[test]
    fn parses_the_golden_text_back_into_the_configuration() {
        let parsed = parse_nodes_conf(&golden_text()).unwrap();
        let mut expected = golden_conf();
        // The replica's configEpoch column shows its master's epoch (nodeEpoch).
        expected.nodes[2].config_epoch = 1;
        assert_eq!(parsed, expected);
    }

    #[test]
    fn handshake_nodes_are_not_written() {
        let mut conf = golden_conf();
        conf.nodes
            .push(record(0xdd, NodeFlags::HANDSHAKE | NodeFlags::MASTER, 7000));
        assert_eq!(render_nodes_conf(&conf), golden_text());
    }

    #[test]
    fn unordered_and_adjacent_ranges_render_sorted_and_merged() {
        let mut conf = golden_conf();
        conf.slot_owners = vec![
            (SlotRange { start: 10, end: 20 }, id(0xbb)),
            (SlotRange { start: 0, end: 4 }, id(0xbb)),
            (SlotRange { start: 5, end: 9 }, id(0xbb)),
            (SlotRange { start: 30, end: 30 }, id(0xbb)),
        ];
        let text = render_nodes_conf(&conf);
        let second = text.lines().nth(1).unwrap();
        assert!(second.ends_with("disconnected 0-20 30"), "{second}");
    }

    #[test]
    fn accepts_valkey_lines_with_unknown_aux_fields_and_case_insensitive_vars() {
        let text = format!(
            "{a} 10.0.0.1:6379@16379,,tls-port=0,nodename=alpha,shard-id={s} myself,master - 0 1700000000000 3 connected 0-16383\n\
             \n\
             VARS CURRENTEPOCH 9 someFutureVar 4 lastvoteepoch 8\n",
            a = hex(0xaa),
            s = hex(0x11),
        );
        let conf = parse_nodes_conf(&text).unwrap();
        assert_eq!(conf.nodes.len(), 1);
        let node = &conf.nodes[0];
        assert_eq!(node.ip, "10.0.0.1");
        assert_eq!((node.client_port, node.bus_port), (6379, 16379));
        assert_eq!(node.shard_id, Some(id(0x11)));
        assert_eq!(node.pong_received_ms, 1_700_000_000_000);
        assert_eq!((conf.current_epoch, conf.last_vote_epoch), (9, 8));
        assert_eq!(
            conf.slot_owners,
            vec![(
                SlotRange {
                    start: 0,
                    end: 16383
                },
                id(0xaa)
            )]
        );
    }

    #[test]
    fn accepts_ipv6_addresses_and_a_missing_vars_line() {
        let text = format!(
            "{} ::1:7000@17000 myself,master - 0 0 0 connected\n",
            hex(1)
        );
        let conf = parse_nodes_conf(&text).unwrap();
        assert_eq!(conf.nodes[0].ip, "::1");
        assert_eq!(conf.nodes[0].client_port, 7000);
        assert_eq!(conf.nodes[0].hostname, "");
        assert_eq!((conf.current_epoch, conf.last_vote_epoch), (0, 0));
        let rendered = render_nodes_conf(&conf);
        assert!(rendered.starts_with(&format!("{} ::1:7000@17000, ", hex(1))));
    }

    type ProblemCheck = fn(&LineProblem) -> bool;

    fn line_problem(text: &str) -> (usize, LineProblem) {
        match parse_nodes_conf(text) {
            Err(NodesConfError::Line { line, problem }) => (line, problem),
            other => panic!("expected a line error, got {other:?}"),
        }
    }

    fn myself_line() -> String {
        format!("{} 127.0.0.1:1@2, myself,master - 0 0 0 connected", hex(1))
    }

    #[test]
    fn reports_the_line_and_problem_of_malformed_node_lines() {
        let cases: Vec<(String, ProblemCheck)> = vec![
            (format!("{} 1.2.3.4:1@2 master - 0 0 0", hex(2)), |p| {
                matches!(p, LineProblem::TooFewFields(7))
            }),
            (
                "xyz 1.2.3.4:1@2 master - 0 0 0 connected".to_string(),
                |p| {
                    matches!(
                        p,
                        LineProblem::BadId {
                            field: "node id",
                            ..
                        }
                    )
                },
            ),
            (
                format!("{} 1.2.3.4:1 master - 0 0 0 connected", hex(2)),
                |p| {
                    matches!(
                        p,
                        LineProblem::BadAddress {
                            reason: "no @<bus port>",
                            ..
                        }
                    )
                },
            ),
            (
                format!("{} 1.2.3.4:70000@2 master - 0 0 0 connected", hex(2)),
                |p| matches!(p, LineProblem::BadAddress { .. }),
            ),
            (
                format!("{} 1.2.3.4:1@2,bad_host! master - 0 0 0 connected", hex(2)),
                |p| matches!(p, LineProblem::BadAddress { .. }),
            ),
            (
                format!("{} 1.2.3.4:1@2 master,leader - 0 0 0 connected", hex(2)),
                |p| *p == LineProblem::UnknownFlag("leader".to_string()),
            ),
            (
                format!("{} 1.2.3.4:1@2 slave nope 0 0 0 connected", hex(2)),
                |p| {
                    matches!(
                        p,
                        LineProblem::BadId {
                            field: "master id",
                            ..
                        }
                    )
                },
            ),
            (
                format!(
                    "{} 1.2.3.4:1@2 master - 0 0 18446744073709551616 connected",
                    hex(2)
                ),
                |p| {
                    matches!(
                        p,
                        LineProblem::BadNumber {
                            field: "configEpoch",
                            ..
                        }
                    )
                },
            ),
            (
                format!("{} 1.2.3.4:1@2 master - +5 0 0 connected", hex(2)),
                |p| {
                    matches!(
                        p,
                        LineProblem::BadNumber {
                            field: "ping_sent",
                            ..
                        }
                    )
                },
            ),
            (
                format!("{} 1.2.3.4:1@2 master - 0 0 0 linked", hex(2)),
                |p| matches!(p, LineProblem::BadLinkState(_)),
            ),
            (
                format!("{} 1.2.3.4:1@2 master - 0 0 0 connected 16384", hex(2)),
                |p| {
                    matches!(
                        p,
                        LineProblem::BadSlot {
                            reason: "slots are 0-16383",
                            ..
                        }
                    )
                },
            ),
            (
                format!("{} 1.2.3.4:1@2 master - 0 0 0 connected 9-3", hex(2)),
                |p| matches!(p, LineProblem::BadSlot { .. }),
            ),
            (
                format!("{} 1.2.3.4:1@2 master - 0 0 0 connected 1-2-3", hex(2)),
                |p| matches!(p, LineProblem::BadSlot { .. }),
            ),
            (
                format!(
                    "{} 1.2.3.4:1@2 master - 0 0 0 connected [5->-{}]",
                    hex(2),
                    hex(1)
                ),
                |p| matches!(p, LineProblem::OpenSlotNotMyself(_)),
            ),
            (
                format!(
                    "{} 1.2.3.4:1@2 master - 0 0 0 connected [5=>{}]",
                    hex(2),
                    hex(1)
                ),
                |p| matches!(p, LineProblem::BadSlot { .. }),
            ),
        ];
        for (line, check) in cases {
            let text = format!("{}\n\n{line}\n", myself_line());
            let (number, problem) = line_problem(&text);
            assert_eq!(number, 3, "{line}");
            assert!(check(&problem), "{line}: {problem}");
        }
    }

    #[test]
    fn reports_problems_between_lines() {
        let twice = format!("{}\n{}\n", myself_line(), myself_line());
        assert_eq!(line_problem(&twice), (2, LineProblem::DuplicateNode(id(1))));
        let second_myself = format!(
            "{}\n{} 1.2.3.4:1@2 myself,master - 0 0 0 connected\n",
            myself_line(),
            hex(2)
        );
        assert_eq!(line_problem(&second_myself), (2, LineProblem::SecondMyself));
        let overlap = format!(
            "{} 0-10\n{} 1.2.3.4:1@2 master - 0 0 0 connected 10-20\n",
            myself_line(),
            hex(2)
        );
        assert_eq!(
            line_problem(&overlap),
            (
                2,
                LineProblem::SlotAlreadyOwned {
                    slot: 10,
                    owner: id(1)
                }
            )
        );
        let same_line = format!("{} 0-10 5\n", myself_line());
        assert_eq!(
            line_problem(&same_line),
            (
                1,
                LineProblem::SlotAlreadyOwned {
                    slot: 5,
                    owner: id(1)
                }
            )
        );
        let vars = format!("{}\nvars currentEpoch\n", myself_line());
        assert!(matches!(line_problem(&vars), (2, LineProblem::BadVars(_))));
        let vars = format!("{}\nvars currentEpoch -1\n", myself_line());
        assert!(matches!(line_problem(&vars), (2, LineProblem::BadVars(_))));
    }

    #[test]
    fn referenced_nodes_without_lines_are_added_without_an_address() {
        let text = format!(
            "{} [7-<-{}]\n{} 1.2.3.4:1@2 slave {} 0 0 0 connected\n",
            myself_line(),
            hex(9),
            hex(2),
            hex(8)
        );
        let conf = parse_nodes_conf(&text).unwrap();
        let ids: Vec<NodeId> = conf.nodes.iter().map(|node| node.id).collect();
        assert_eq!(ids, vec![id(1), id(2), id(8), id(9)]);
        for placeholder in &conf.nodes[2..] {
            assert_eq!(placeholder.flags, NodeFlags::NOADDR);
            assert_eq!((placeholder.ip.as_str(), placeholder.client_port), ("", 0));
        }
        assert_eq!(conf.importing, vec![(7, id(9))]);
        let rendered = render_nodes_conf(&conf);
        assert!(rendered.contains(&format!("{} :0@0, noaddr - 0 0 0 disconnected\n", hex(8))));
        assert_eq!(
            render_nodes_conf(&parse_nodes_conf(&rendered).unwrap()),
            rendered
        );
        assert!(Core::restore(Config::default(), conf, 0).is_ok());
    }

    #[test]
    fn rejects_files_without_myself_and_oversized_input() {
        assert_eq!(parse_nodes_conf(""), Err(NodesConfError::NoMyself));
        let other = format!("{} 1.2.3.4:1@2 master - 0 0 0 connected\n", hex(2));
        assert_eq!(parse_nodes_conf(&other), Err(NodesConfError::NoMyself));
        let huge = " ".repeat(MAX_NODES_CONF_BYTES + 1);
        assert_eq!(
            parse_nodes_conf(&huge),
            Err(NodesConfError::TooLarge {
                bytes: MAX_NODES_CONF_BYTES + 1,
                limit: MAX_NODES_CONF_BYTES
            })
        );
    }

    #[test]
    fn rejects_more_nodes_than_the_bound() {
        let mut text = String::new();
        for index in 0..=MAX_NODES_CONF_NODES as u32 {
            let mut bytes = [0u8; 20];
            bytes[..4].copy_from_slice(&index.to_be_bytes());
            let _ = writeln!(
                text,
                "{} 1.2.3.4:1@2 master - 0 0 0 connected",
                NodeId(bytes)
            );
        }
        assert_eq!(
            parse_nodes_conf(&text),
            Err(NodesConfError::TooManyNodes {
                limit: MAX_NODES_CONF_NODES
            })
        );
    }

    #[test]
    fn error_messages_name_the_line_and_the_problem() {
        let text = format!(
            "{}\n{} 1.2.3.4:1@2 master - 0 0 0 connected 20000\n",
            myself_line(),
            hex(2)
        );
        let message = parse_nodes_conf(&text).unwrap_err().to_string();
        assert_eq!(
            message,
            "nodes.conf line 2: bad slot \"20000\": slots are 0-16383"
        );
    }

    #[test]
    fn invalid_endpoints_are_written_empty_so_the_file_stays_loadable() {
        let mut conf = golden_conf();
        conf.nodes[0].hostname = "has space".to_string();
        conf.nodes[1].ip = "1.2.3.4,evil".to_string();
        let parsed = parse_nodes_conf(&render_nodes_conf(&conf)).unwrap();
        assert_eq!(parsed.nodes[0].hostname, "");
        assert_eq!(parsed.nodes[1].ip, "");
    }

    /// A random but consistent configuration: masters with replicas, fragmented slots,
    /// failure flags, open slots on myself, extreme numbers.
    pub(crate) fn generated_conf(rng: &mut Rng) -> NodesConf {
        let masters = 1 + rng.below(6) as usize;
        let mut nodes: Vec<NodeRecord> = Vec::new();
        for _ in 0..masters {
            let mut master = random_record(rng, NodeFlags::MASTER);
            master.shard_id = rng.chance(4, 5).then_some(master.id);
            let replicas = rng.below(3);
            let (master_id, shard_id) = (master.id, master.shard_id);
            nodes.push(master);
            for _ in 0..replicas {
                let mut replica = random_record(rng, NodeFlags::REPLICA);
                replica.master_id = Some(master_id);
                replica.shard_id = shard_id;
                nodes.push(replica);
            }
        }
        let myself = rng.below(nodes.len() as u64) as usize;
        nodes[myself].flags.insert(NodeFlags::MYSELF);
        nodes[myself]
            .flags
            .remove(NodeFlags::PFAIL | NodeFlags::FAIL);
        let master_ids: Vec<NodeId> = nodes
            .iter()
            .filter(|n| n.is_master())
            .map(|n| n.id)
            .collect();
        let slot_owners = random_slot_owners(rng, &master_ids);
        let mut conf = NodesConf {
            slot_owners,
            current_epoch: random_number(rng),
            last_vote_epoch: random_number(rng),
            ..NodesConf::default()
        };
        if nodes[myself].is_master() {
            for _ in 0..rng.below(4) {
                let slot = rng.below(SLOT_COUNT as u64) as Slot;
                let peer = master_ids[rng.below(master_ids.len() as u64) as usize];
                if conf
                    .migrating
                    .iter()
                    .chain(&conf.importing)
                    .all(|(s, _)| *s != slot)
                {
                    if rng.chance(1, 2) {
                        conf.migrating.push((slot, peer));
                    } else {
                        conf.importing.push((slot, peer));
                    }
                }
            }
            conf.migrating.sort();
            conf.importing.sort();
        }
        conf.nodes = nodes;
        conf
    }

    fn random_number(rng: &mut Rng) -> u64 {
        match rng.below(4) {
            0 => 0,
            1 => u64::MAX,
            2 => rng.next_u64(),
            _ => rng.below(1000),
        }
    }

    fn random_record(rng: &mut Rng, role: NodeFlags) -> NodeRecord {
        let id = NodeId::random(rng);
        let ip = ["127.0.0.1", "10.1.2.3", "::1", "fe80::1%eth0", ""][rng.below(5) as usize];
        let port = rng.below(65536) as u16;
        let mut node = NodeRecord::new(id, ip, port, rng.below(65536) as u16, 0);
        node.hostname = ["", "a", "cache-3.example.com"][rng.below(3) as usize].to_string();
        node.flags = role;
        for flag in [
            NodeFlags::PFAIL,
            NodeFlags::FAIL,
            NodeFlags::NOADDR,
            NodeFlags::NOFAILOVER,
        ] {
            if rng.chance(1, 5) {
                node.flags.insert(flag);
            }
        }
        node.ping_sent_ms = random_number(rng);
        node.pong_received_ms = random_number(rng);
        node.config_epoch = random_number(rng);
        node.link = if rng.chance(1, 2) {
            LinkState::Connected
        } else {
            LinkState::Disconnected
        };
        node
    }

    /// Runs of random length (often a single slot) given to random masters or left unassigned.
    fn random_slot_owners(rng: &mut Rng, masters: &[NodeId]) -> Vec<(SlotRange, NodeId)> {
        let mut owners: Vec<Option<NodeId>> = vec![None; SLOT_COUNT];
        let mut start = 0usize;
        while start < SLOT_COUNT {
            let length = if rng.chance(1, 3) {
                1
            } else {
                1 + rng.below(4000) as usize
            };
            let owner = if rng.chance(1, 5) {
                None
            } else {
                Some(masters[rng.below(masters.len() as u64) as usize])
            };
            let end = (start + length).min(SLOT_COUNT);
            owners[start..end].iter_mut().for_each(|slot| *slot = owner);
            start = end;
        }
        let mut table = crate::core::slots::SlotTable::new();
        for (slot, owner) in owners.into_iter().enumerate() {
            table.set_owner(slot as Slot, owner);
        }
        table.owner_ranges()
    }

    #[test]
    fn generated_configurations_round_trip_through_text() {
        let mut rng = Rng::new(0x5107_4b5e);
        for _ in 0..200 {
            let conf = generated_conf(&mut rng);
            let text = render_nodes_conf(&conf);
            let parsed = parse_nodes_conf(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
            assert_eq!(render_nodes_conf(&parsed), text);
            assert_eq!(parsed.slot_owners, conf.slot_owners);
            assert_eq!(parsed.migrating, conf.migrating);
            assert_eq!(parsed.importing, conf.importing);
            assert_eq!(parsed.nodes.len(), conf.nodes.len());
        }
    }

    #[test]
    fn a_parsed_snapshot_restores_an_equivalent_core() {
        let mut rng = Rng::new(77);
        for _ in 0..50 {
            let conf = generated_conf(&mut rng);
            let direct = Core::restore(Config::default(), conf.clone(), 5_000).unwrap();
            let text = render_nodes_conf(&direct.snapshot());
            let parsed = parse_nodes_conf(&text).unwrap();
            let restored = Core::restore(Config::default(), parsed, 5_000).unwrap();
            assert_eq!(restored.myself_id(), direct.myself_id());
            assert_eq!(render_nodes_conf(&restored.snapshot()), text);
            assert_eq!(
                restored.slot_table().owner_ranges(),
                direct.slot_table().owner_ranges()
            );
            for node in direct.nodes() {
                assert_eq!(restored.node_epoch(&node.id), direct.node_epoch(&node.id));
            }
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = Rng::new(3);
        for _ in 0..2_000 {
            let mut bytes = vec![0u8; rng.below(300) as usize];
            rng.fill_bytes(&mut bytes);
            let _ = parse_nodes_conf(&String::from_utf8_lossy(&bytes));
        }
    }

    #[test]
    fn every_truncation_of_a_valid_file_parses_or_errors_without_panic() {
        let text = render_nodes_conf(&generated_conf(&mut Rng::new(11)));
        for end in (0..=text.len()).filter(|end| text.is_char_boundary(*end)) {
            let _ = parse_nodes_conf(&text[..end]);
        }
    }

    #[test]
    fn mutated_tokens_never_panic() {
        const NASTY: [&str; 20] = [
            "",
            "-",
            "18446744073709551616",
            "99999999999999999999999999",
            "16384",
            "0-16384",
            "5-3",
            "[1->-]",
            "[",
            "]",
            "[-<-]",
            "@",
            ":",
            ",,,,",
            "é",
            "\u{0}",
            "noflags",
            "myself,myself",
            "1@2:3",
            "[16383->-zz]",
        ];
        let mut rng = Rng::new(19);
        for _ in 0..300 {
            let text = render_nodes_conf(&generated_conf(&mut rng));
            let mut tokens: Vec<String> = text.split(' ').map(str::to_string).collect();
            for _ in 0..1 + rng.below(3) {
                let at = rng.below(tokens.len() as u64) as usize;
                let nasty = NASTY[rng.below(NASTY.len() as u64) as usize];
                tokens[at] = if rng.chance(1, 2) {
                    nasty.to_string()
                } else {
                    format!("{}{nasty}", tokens[at])
                };
            }
            if let Ok(conf) = parse_nodes_conf(&tokens.join(" ")) {
                // Whatever parses renders to a fixed point of parse-then-render.
                let text = render_nodes_conf(&conf);
                let again = parse_nodes_conf(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
                assert_eq!(render_nodes_conf(&again), text);
            }
        }
    }
}
