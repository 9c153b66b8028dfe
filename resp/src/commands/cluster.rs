//! CLUSTER subcommands: the views (INFO, NODES, SLOTS, SHARDS, MYID, MYSHARDID, REPLICAS,
//! COUNT-FAILURE-REPORTS, KEYSLOT, COUNTKEYSINSLOT, GETKEYSINSLOT, and SLOT-STATS: Valkey
//! 8's per-slot view of keys, bytes, reads and writes) and the admin commands (MEET, ADDSLOTS[RANGE], DELSLOTS[RANGE], REPLICATE, FAILOVER, FORGET, SETSLOT, RESET,
//! SAVECONFIG, SET-CONFIG-EPOCH, BUMPEPOCH, FLUSHSLOTS), through the node's admin API; the atomic
//! migration's MIGRATESLOTS, GETSLOTMIGRATIONS and CANCELSLOTMIGRATIONS are in
//! [`super::cluster_migrations`].

use slotkv_cluster::core::node::NodeId;
use slotkv_cluster::core::slots::SlotRange;
use slotkv_cluster::core::{AdminCommand, AdminReply, FailoverMode, ResetMode, SetSlotAction};
use slotkv_cluster::views::{self, ShardView, SlotsEntry, SlotsNode};
use slotkv_cluster::AdminCallError;
use slotkv_engine::{key_slot, Slot, SLOT_COUNT};
use slotkv_transport::{Channel, Direction};

use crate::commands::{
    cluster_migrations, integer_arg, is, unknown_subcommand, wrong_arity, Session,
};
use crate::reply::{Reply, OK};
use crate::server::Gateway;

/// Offset of the bus port from the client port when CLUSTER MEET names none (Redis's).
pub const BUS_PORT_OFFSET: u16 = 10_000;

/// Runs `CLUSTER <subcommand> ...`.
pub(crate) async fn cluster(gateway: &Gateway, _session: &Session, rest: &[&[u8]]) -> Reply {
    let Some((subcommand, args)) = rest.split_first() else {
        return wrong_arity("cluster");
    };
    let name = String::from_utf8_lossy(subcommand).to_ascii_lowercase();
    let result = match name.as_str() {
        "info"
        | "nodes"
        | "myid"
        | "myshardid"
        | "slots"
        | "shards"
        | "replicas"
        | "slaves"
        | "count-failure-reports"
        | "keyslot"
        | "countkeysinslot"
        | "getkeysinslot" => view(gateway, &name, args).await,
        "slot-stats" => slot_stats(gateway, args).await,
        "links" if args.is_empty() => Ok(links(gateway).await),
        "links" => Err(Refusal::Arity),
        "migrateslots" => cluster_migrations::migrate_slots(gateway, args),
        "getslotmigrations" => cluster_migrations::get_slot_migrations(gateway, args),
        "cancelslotmigrations" => cluster_migrations::cancel_slot_migrations(gateway, args),
        _ => admin(gateway, &name, args).await,
    };
    match result {
        Ok(reply) => reply,
        Err(Refusal::Arity) => wrong_arity(&format!("cluster|{name}")),
        Err(Refusal::Unknown) => unknown_subcommand("cluster", subcommand),
        Err(Refusal::Reply(reply)) => reply,
    }
}

/// Why a subcommand did not run.
pub(super) enum Refusal {
    Arity,
    Unknown,
    Reply(Reply),
}

impl From<AdminCallError> for Refusal {
    fn from(error: AdminCallError) -> Self {
        Refusal::Reply(Reply::err(error))
    }
}

/// CLUSTER LINKS: this node's bus links to and from the nodes it knows, as Redis lists them
/// (`direction` to / from, `node`, `create-time` in ms since the epoch, `events`, and the
/// bytes waiting to be sent as both `send-buffer-allocated` and `send-buffer-used`) plus
/// `send-queue-frames`. A link from an address no known node has is not listed.
async fn links(gateway: &Gateway) -> Reply {
    let known = gateway
        .node
        .inspect(|core| {
            core.nodes()
                .map(|record| (record.bus_address(), record.id))
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
    let entries = gateway
        .node
        .links()
        .into_iter()
        .filter(|link| link.channel == Channel::Bus)
        .filter_map(|link| {
            let (_, id) = known
                .iter()
                .find(|(address, _)| address == link.peer.as_str())?;
            let (direction, events) = match link.direction {
                Direction::Outbound => ("to", "rw"),
                Direction::Inbound => ("from", "r"),
            };
            let created_ms = link
                .since
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_millis() as i64);
            let queued = link.queued_bytes as i64;
            Some(Reply::Map(vec![
                (Reply::text("direction"), Reply::text(direction)),
                (Reply::text("node"), Reply::text(id.to_hex())),
                (Reply::text("create-time"), Reply::Integer(created_ms)),
                (Reply::text("events"), Reply::text(events)),
                (Reply::text("send-buffer-allocated"), Reply::Integer(queued)),
                (Reply::text("send-buffer-used"), Reply::Integer(queued)),
                (
                    Reply::text("send-queue-frames"),
                    Reply::Integer(link.queued_frames as i64),
                ),
            ]))
        })
        .collect();
    Reply::Array(entries)
}

fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

pub(super) fn node_id(arg: &[u8]) -> Result<NodeId, Refusal> {
    let text = String::from_utf8_lossy(arg);
    NodeId::parse_hex(&text)
        .map_err(|_| Refusal::Reply(Reply::Error(format!("ERR Unknown node {text}"))))
}

fn slot(arg: &[u8]) -> Result<Slot, Refusal> {
    match slotkv_engine::parse_i64(arg) {
        Some(slot) if (0..SLOT_COUNT as i64).contains(&slot) => Ok(slot as Slot),
        _ => Err(Refusal::Reply(Reply::error(
            "ERR Invalid or out of range slot",
        ))),
    }
}

async fn view(gateway: &Gateway, name: &str, args: &[&[u8]]) -> Result<Reply, Refusal> {
    let node = &gateway.node;
    Ok(match (name, args) {
        ("info", []) => Reply::Verbatim("txt", node.cluster_info().await?.into()),
        ("nodes", []) => Reply::Verbatim("txt", node.cluster_nodes().await?.into()),
        ("myid", []) => Reply::text(node.id().to_hex()),
        ("myshardid", []) => Reply::text(node.inspect(views::myshardid).await?),
        ("slots", []) => Reply::Array(
            node.cluster_slots()
                .await?
                .iter()
                .map(slots_entry)
                .collect(),
        ),
        ("shards", []) => Reply::Array(node.cluster_shards().await?.iter().map(shard).collect()),
        ("replicas" | "slaves", [id]) => {
            let id = node_id(id)?;
            let now = unix_now_ms();
            match node
                .inspect(move |core| views::cluster_replicas(core, &id, now))
                .await?
            {
                Ok(lines) => Reply::Array(
                    lines
                        .into_iter()
                        .map(|line| Reply::text(line + "\n"))
                        .collect(),
                ),
                Err(error) => Reply::err(error),
            }
        }
        ("count-failure-reports", [id]) => {
            let id = node_id(id)?;
            match node
                .inspect(move |core| views::count_failure_reports(core, &id))
                .await?
            {
                Ok(count) => Reply::Integer(count as i64),
                Err(error) => Reply::err(error),
            }
        }
        ("keyslot", [key]) => Reply::Integer(i64::from(key_slot(key))),
        ("countkeysinslot", [number]) => {
            let count = node.store().count_keys_in_slot(slot(number)?).unwrap_or(0);
            Reply::Integer(count as i64)
        }
        ("getkeysinslot", [number, count]) => {
            let slot = slot(number)?;
            let count = match integer_arg(count) {
                Ok(count) if count >= 0 => count as usize,
                _ => {
                    return Err(Refusal::Reply(Reply::error(
                        "ERR Invalid slot or number of keys",
                    )))
                }
            };
            let keys = node
                .store()
                .list_keys_in_slot(slot, count)
                .unwrap_or_default();
            Reply::Array(keys.into_iter().map(Reply::Bulk).collect())
        }
        _ => return Err(Refusal::Arity),
    })
}

fn slots_node(node: &SlotsNode) -> Reply {
    let mut metadata = Vec::new();
    if let Some(hostname) = &node.hostname {
        metadata.push((Reply::text("hostname"), Reply::text(hostname.clone())));
    }
    if let (Some(ip), None) = (&node.ip, &node.hostname) {
        if node.endpoint.as_deref() != Some(ip.as_str()) {
            metadata.push((Reply::text("ip"), Reply::text(ip.clone())));
        }
    }
    Reply::Array(vec![
        node.endpoint.clone().map_or(Reply::Nil, Reply::text),
        Reply::Integer(i64::from(node.port)),
        Reply::text(node.id.to_hex()),
        Reply::Map(metadata),
    ])
}

fn slots_entry(entry: &SlotsEntry) -> Reply {
    let mut items = vec![
        Reply::Integer(i64::from(entry.start)),
        Reply::Integer(i64::from(entry.end)),
        slots_node(&entry.master),
    ];
    items.extend(entry.replicas.iter().map(slots_node));
    Reply::Array(items)
}

fn shard(view: &ShardView) -> Reply {
    let slots = view
        .slots
        .iter()
        .flat_map(|range| [range.start, range.end])
        .map(|slot| Reply::Integer(i64::from(slot)))
        .collect();
    let nodes = view
        .nodes
        .iter()
        .map(|node| {
            let mut fields = vec![
                (Reply::text("id"), Reply::text(node.id.to_hex())),
                (Reply::text("port"), Reply::Integer(i64::from(node.port))),
                (Reply::text("ip"), Reply::text(node.ip.clone())),
                (Reply::text("endpoint"), Reply::text(node.endpoint.clone())),
            ];
            if let Some(hostname) = &node.hostname {
                fields.push((Reply::text("hostname"), Reply::text(hostname.clone())));
            }
            fields.push((Reply::text("role"), Reply::text(node.role.as_str())));
            fields.push((
                Reply::text("replication-offset"),
                Reply::Integer(node.replication_offset as i64),
            ));
            fields.push((Reply::text("health"), Reply::text(node.health.as_str())));
            Reply::Map(fields)
        })
        .collect();
    Reply::Map(vec![
        (Reply::text("slots"), Reply::Array(slots)),
        (Reply::text("nodes"), Reply::Array(nodes)),
    ])
}

/// Slot ranges from `first last ...` pairs (ADDSLOTSRANGE) or single slots (ADDSLOTS).
pub(super) fn slot_ranges(args: &[&[u8]], pairs: bool) -> Result<Vec<SlotRange>, Refusal> {
    if args.is_empty() || pairs && !args.len().is_multiple_of(2) {
        return Err(Refusal::Arity);
    }
    if !pairs {
        return args
            .iter()
            .map(|arg| Ok(SlotRange::single(slot(arg)?)))
            .collect();
    }
    args.chunks_exact(2)
        .map(|pair| {
            let (start, end) = (slot(pair[0])?, slot(pair[1])?);
            SlotRange::new(start, end).ok_or_else(|| {
                Refusal::Reply(Reply::Error(format!(
                    "ERR start slot number {start} is greater than end slot number {end}"
                )))
            })
        })
        .collect()
}

fn admin_reply(reply: AdminReply) -> Reply {
    match reply {
        AdminReply::Ok => OK,
        AdminReply::Bumped(epoch) => Reply::StatusText(format!("BUMPED {epoch}")),
        AdminReply::Still(epoch) => Reply::StatusText(format!("STILL {epoch}")),
    }
}

async fn admin(gateway: &Gateway, name: &str, args: &[&[u8]]) -> Result<Reply, Refusal> {
    let command = match (name, args) {
        ("meet", [ip, port, rest @ ..]) if rest.len() <= 1 => meet(ip, port, rest.first())?,
        ("addslots", _) => AdminCommand::AddSlots(slot_ranges(args, false)?),
        ("addslotsrange", _) => AdminCommand::AddSlots(slot_ranges(args, true)?),
        ("delslots", _) => AdminCommand::DelSlots(slot_ranges(args, false)?),
        ("delslotsrange", _) => AdminCommand::DelSlots(slot_ranges(args, true)?),
        ("replicate", [id]) => AdminCommand::Replicate(node_id(id)?),
        ("forget", [id]) => AdminCommand::Forget(node_id(id)?),
        ("failover", []) => AdminCommand::Failover(FailoverMode::Default),
        ("failover", [mode]) if is(mode, "FORCE") => AdminCommand::Failover(FailoverMode::Force),
        ("failover", [mode]) if is(mode, "TAKEOVER") => {
            AdminCommand::Failover(FailoverMode::Takeover)
        }
        ("failover", [_]) => return Err(Refusal::Reply(crate::commands::syntax_error())),
        ("setslot", [number, action, rest @ ..]) => AdminCommand::SetSlot {
            slot: slot(number)?,
            action: set_slot_action(action, rest)?,
        },
        ("reset", []) => return reset(gateway, ResetMode::Soft).await,
        ("reset", [mode]) if is(mode, "SOFT") => return reset(gateway, ResetMode::Soft).await,
        ("reset", [mode]) if is(mode, "HARD") => return reset(gateway, ResetMode::Hard).await,
        ("reset", [_]) => return Err(Refusal::Reply(crate::commands::syntax_error())),
        // nodes.conf is saved before every message that depends on a change.
        ("saveconfig", []) => return Ok(OK),
        ("set-config-epoch", [epoch]) => match integer_arg(epoch) {
            Ok(epoch) if epoch >= 0 => AdminCommand::SetConfigEpoch(epoch as u64),
            Ok(_) => {
                return Err(Refusal::Reply(Reply::error(
                    "ERR Invalid config epoch specified: negative",
                )))
            }
            Err(error) => return Err(Refusal::Reply(error)),
        },
        ("bumpepoch", []) => AdminCommand::BumpEpoch,
        ("flushslots", []) => AdminCommand::FlushSlots,
        ("help", []) => return Ok(help()),
        (
            "meet" | "replicate" | "forget" | "failover" | "setslot" | "reset" | "saveconfig"
            | "set-config-epoch" | "bumpepoch" | "flushslots" | "help",
            _,
        ) => return Err(Refusal::Arity),
        _ => return Err(Refusal::Unknown),
    };
    Ok(admin_reply(gateway.node.command(command).await?))
}

fn meet(ip: &[u8], port: &[u8], bus: Option<&&[u8]>) -> Result<AdminCommand, Refusal> {
    let ip = String::from_utf8_lossy(ip).into_owned();
    let bad = |port: &[u8]| {
        Refusal::Reply(Reply::Error(format!(
            "ERR Invalid base port specified: {}",
            String::from_utf8_lossy(port)
        )))
    };
    let client_port = std::str::from_utf8(port)
        .ok()
        .and_then(|text| text.parse::<u16>().ok())
        .ok_or_else(|| bad(port))?;
    let bus_port = match bus {
        Some(bus) => std::str::from_utf8(bus)
            .ok()
            .and_then(|text| text.parse::<u16>().ok())
            .ok_or_else(|| {
                Refusal::Reply(Reply::Error(format!(
                    "ERR Invalid bus port specified: {}",
                    String::from_utf8_lossy(bus)
                )))
            })?,
        None => client_port
            .checked_add(BUS_PORT_OFFSET)
            .ok_or_else(|| bad(port))?,
    };
    Ok(AdminCommand::Meet {
        ip,
        client_port,
        bus_port,
    })
}

fn set_slot_action(action: &[u8], rest: &[&[u8]]) -> Result<SetSlotAction, Refusal> {
    let lowered = String::from_utf8_lossy(action).to_ascii_lowercase();
    Ok(match (lowered.as_str(), rest) {
        ("importing", [id]) => SetSlotAction::Importing(node_id(id)?),
        ("migrating", [id]) => SetSlotAction::Migrating(node_id(id)?),
        ("node", [id]) => SetSlotAction::Node(node_id(id)?),
        ("stable", []) => SetSlotAction::Stable,
        _ => return Err(Refusal::Reply(crate::commands::syntax_error())),
    })
}

/// CLUSTER RESET is refused on a master holding keys (Redis's rule and wording); a replica
/// becomes an empty master (`Node::reset`).
async fn reset(gateway: &Gateway, mode: ResetMode) -> Result<Reply, Refusal> {
    if gateway.node.master().is_none() && gateway.node.memory().keys > 0 {
        return Err(Refusal::Reply(Reply::error(
            "ERR CLUSTER RESET can't be called with master nodes containing keys",
        )));
    }
    gateway.node.reset(mode).await?;
    Ok(OK)
}

/// What `CLUSTER SLOT-STATS ORDERBY` sorts by.
#[derive(Clone, Copy)]
enum SlotMetric {
    Keys,
    Bytes,
    Reads,
    Writes,
}

/// Most slots `CLUSTER SLOT-STATS ORDERBY ... LIMIT` returns (and its default).
const SLOT_STATS_LIMIT_MAX: i64 = SLOT_COUNT as i64;
const SLOT_STATS_LIMIT_DEFAULT: usize = 16;

/// `CLUSTER SLOT-STATS SLOTSRANGE start end` or `ORDERBY metric [LIMIT n] [ASC|DESC]`, as
/// Valkey 8 has it, over `Node::slot_statistics`: for each slot of this node's shard (in
/// the range, or the `n` first by `metric`: key-count, bytes, reads or writes), its
/// `key-count`, `bytes`, `reads` and `writes`.
async fn slot_stats(gateway: &Gateway, args: &[&[u8]]) -> Result<Reply, Refusal> {
    let node = &gateway.node;
    let shard_slots = node
        .inspect(|core| {
            let shard = core.my_master().unwrap_or(core.myself_id());
            core.slots_of(&shard)
        })
        .await?;
    let all = node.slot_statistics(SlotRange {
        start: 0,
        end: (SLOT_COUNT - 1) as Slot,
    });
    let mine = |slot: Slot| shard_slots.iter().any(|range| range.contains(slot));
    let syntax = || Refusal::Reply(crate::commands::syntax_error());
    let chosen: Vec<_> = match args {
        [keyword, start, end] if is(keyword, "SLOTSRANGE") => {
            let (start, end) = (slot(start)?, slot(end)?);
            if start > end {
                return Err(Refusal::Reply(Reply::Error(format!(
                    "ERR Start slot number {start} is greater than end slot number {end}"
                ))));
            }
            all.into_iter()
                .filter(|stats| (start..=end).contains(&stats.slot) && mine(stats.slot))
                .collect()
        }
        [keyword, metric, options @ ..] if is(keyword, "ORDERBY") => {
            let metric = match String::from_utf8_lossy(metric)
                .to_ascii_lowercase()
                .as_str()
            {
                "key-count" => SlotMetric::Keys,
                "bytes" => SlotMetric::Bytes,
                "reads" => SlotMetric::Reads,
                "writes" => SlotMetric::Writes,
                _ => return Err(syntax()),
            };
            let (mut limit, mut descending) = (SLOT_STATS_LIMIT_DEFAULT, true);
            let mut rest = options;
            while let Some((option, after)) = rest.split_first() {
                rest = after;
                if is(option, "ASC") {
                    descending = false;
                } else if is(option, "DESC") {
                    descending = true;
                } else if is(option, "LIMIT") {
                    let Some((value, after)) = rest.split_first() else {
                        return Err(syntax());
                    };
                    rest = after;
                    limit = match integer_arg(value) {
                        Ok(value) if (1..=SLOT_STATS_LIMIT_MAX).contains(&value) => value as usize,
                        _ => {
                            return Err(Refusal::Reply(Reply::Error(format!(
                                "ERR Limit has to lie in between 1 and {SLOT_STATS_LIMIT_MAX} (maximum number of slots)"
                            ))))
                        }
                    };
                } else {
                    return Err(syntax());
                }
            }
            let value = |stats: &slotkv_cluster::SlotStatistics| match metric {
                SlotMetric::Keys => stats.keys as u64,
                SlotMetric::Bytes => stats.bytes as u64,
                SlotMetric::Reads => stats.reads,
                SlotMetric::Writes => stats.writes,
            };
            let mut owned: Vec<_> = all.into_iter().filter(|stats| mine(stats.slot)).collect();
            // Ties keep slot order, as a stable sort does.
            if descending {
                owned.sort_by_key(|stats| std::cmp::Reverse(value(stats)));
            } else {
                owned.sort_by_key(value);
            }
            owned.truncate(limit);
            owned
        }
        _ => return Err(Refusal::Arity),
    };
    let field =
        |name: &str, value: u64| (Reply::text(name.to_string()), Reply::Integer(value as i64));
    Ok(Reply::Map(
        chosen
            .iter()
            .map(|stats| {
                (
                    Reply::Integer(i64::from(stats.slot)),
                    Reply::Map(vec![
                        field("key-count", stats.keys as u64),
                        field("bytes", stats.bytes as u64),
                        field("reads", stats.reads),
                        field("writes", stats.writes),
                    ]),
                )
            })
            .collect(),
    ))
}

fn help() -> Reply {
    let lines = [
        "CLUSTER <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "ADDSLOTS <slot> [<slot> ...]",
        "ADDSLOTSRANGE <start slot> <end slot> [<start slot> <end slot> ...]",
        "BUMPEPOCH",
        "CANCELSLOTMIGRATIONS",
        "COUNT-FAILURE-REPORTS <node-id>",
        "COUNTKEYSINSLOT <slot>",
        "DELSLOTS <slot> [<slot> ...]",
        "DELSLOTSRANGE <start slot> <end slot> [<start slot> <end slot> ...]",
        "FAILOVER [FORCE|TAKEOVER]",
        "FLUSHSLOTS",
        "FORGET <node-id>",
        "GETKEYSINSLOT <slot> <count>",
        "GETSLOTMIGRATIONS",
        "INFO",
        "KEYSLOT <key>",
        "LINKS",
        "MEET <ip> <port> [<bus-port>]",
        "MIGRATESLOTS SLOTSRANGE <start slot> <end slot> [<start slot> <end slot> ...] NODE <node-id> [SLOTSRANGE ... NODE <node-id> ...]",
        "MYID",
        "MYSHARDID",
        "NODES",
        "REPLICATE <node-id>",
        "REPLICAS <node-id>",
        "RESET [HARD|SOFT]",
        "SAVECONFIG",
        "SET-CONFIG-EPOCH <epoch>",
        "SETSLOT <slot> (IMPORTING <node-id>|MIGRATING <node-id>|STABLE|NODE <node-id>)",
        "SHARDS",
        "SLAVES <node-id>",
        "SLOT-STATS (SLOTSRANGE <start slot> <end slot>|ORDERBY <key-count|bytes|reads|writes> [LIMIT <n>] [ASC|DESC])",
        "SLOTS",
    ];
    Reply::Array(
        lines
            .iter()
            .map(|line| Reply::StatusText((*line).to_string()))
            .collect(),
    )
}
