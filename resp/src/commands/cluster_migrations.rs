//! The atomic slot migration as Valkey 9 spells it, over the node's background migrations
//! (`Node::start_slot_migrations`, `slot_migrations`, `cancel_slot_migrations`):
//!
//! - `CLUSTER MIGRATESLOTS SLOTSRANGE a b [a b ...] NODE id [SLOTSRANGE ... NODE id ...]`:
//!   one job per SLOTSRANGE ... NODE block, all started or none; `+OK`.
//! - `CLUSTER GETSLOTMIGRATIONS`: one map per job of this node's log (running ones and the
//!   latest finished), oldest first: `name`, `operation` (`EXPORT` on the source, which
//!   runs the job; `IMPORT` on the target), `slot_ranges` (`a-b c-d`), `source_node`,
//!   `target_node`, `create_time` and `last_update_time` (unix seconds), `state`, `message`,
//!   and beyond Valkey's fields `keys_sent` / `bytes_sent` (an import's
//!   `keys_received` / `bytes_received`).
//! - `CLUSTER CANCELSLOTMIGRATIONS`: stops every running export here (an import is
//!   cancelled by its source); `+OK`.

use slotkv_cluster::core::slots::SlotRange;
use slotkv_cluster::{SlotMigrationJob, SlotMigrationOperation, SlotMigrationOptions};

use super::cluster::{node_id, slot_ranges, Refusal};
use crate::commands::is;
use crate::reply::{Reply, OK};
use crate::server::Gateway;

/// `CLUSTER MIGRATESLOTS ...` (see the module docs).
pub(super) fn migrate_slots(gateway: &Gateway, args: &[&[u8]]) -> Result<Reply, Refusal> {
    let moves = parse_moves(args)?;
    match gateway
        .node
        .start_slot_migrations(&moves, SlotMigrationOptions::default())
    {
        Ok(_) => Ok(OK),
        Err(error) => Err(Refusal::Reply(Reply::Error(format!("ERR {error}")))),
    }
}

/// The SLOTSRANGE ... NODE blocks, in order.
fn parse_moves(
    args: &[&[u8]],
) -> Result<Vec<(Vec<SlotRange>, slotkv_cluster::core::node::NodeId)>, Refusal> {
    if args.is_empty() {
        return Err(Refusal::Arity);
    }
    let mut moves = Vec::new();
    let mut rest = args;
    while let Some((keyword, after)) = rest.split_first() {
        if !is(keyword, "SLOTSRANGE") {
            return Err(Refusal::Reply(crate::commands::syntax_error()));
        }
        let node_at = after
            .iter()
            .position(|arg| is(arg, "NODE"))
            .ok_or_else(|| Refusal::Reply(crate::commands::syntax_error()))?;
        let (pairs, tail) = after.split_at(node_at);
        if pairs.is_empty() || !pairs.len().is_multiple_of(2) {
            return Err(Refusal::Reply(crate::commands::syntax_error()));
        }
        let ranges = slot_ranges(pairs, true)?;
        let Some(id) = tail.get(1) else {
            return Err(Refusal::Reply(crate::commands::syntax_error()));
        };
        moves.push((ranges, node_id(id)?));
        rest = &tail[2..];
    }
    Ok(moves)
}

/// `CLUSTER GETSLOTMIGRATIONS`.
pub(super) fn get_slot_migrations(gateway: &Gateway, args: &[&[u8]]) -> Result<Reply, Refusal> {
    if !args.is_empty() {
        return Err(Refusal::Arity);
    }
    let jobs = gateway.node.slot_migrations();
    Ok(Reply::Array(jobs.iter().map(job_reply).collect()))
}

fn job_reply(job: &SlotMigrationJob) -> Reply {
    let ranges: Vec<String> = job
        .ranges
        .iter()
        .map(|range| format!("{}-{}", range.start, range.end))
        .collect();
    let field = |name: &str, value: Reply| (Reply::text(name.to_string()), value);
    let seconds = |ms: u64| Reply::Integer((ms / 1000) as i64);
    let (keys, bytes) = match job.operation {
        SlotMigrationOperation::Export => ("keys_sent", "bytes_sent"),
        SlotMigrationOperation::Import => ("keys_received", "bytes_received"),
    };
    Reply::Map(vec![
        field("name", Reply::text(job.name.clone())),
        field("operation", Reply::text(job.operation.name().to_string())),
        field("slot_ranges", Reply::text(ranges.join(" "))),
        field("source_node", Reply::text(job.source.to_hex())),
        field("target_node", Reply::text(job.target.to_hex())),
        field("create_time", seconds(job.created_unix_ms)),
        field("last_update_time", seconds(job.updated_unix_ms)),
        field("state", Reply::text(job.state.name().to_string())),
        field("message", Reply::text(job.message.clone())),
        field(keys, Reply::Integer(job.keys_sent as i64)),
        field(bytes, Reply::Integer(job.bytes_sent as i64)),
    ])
}

/// `CLUSTER CANCELSLOTMIGRATIONS`.
pub(super) fn cancel_slot_migrations(gateway: &Gateway, args: &[&[u8]]) -> Result<Reply, Refusal> {
    if !args.is_empty() {
        return Err(Refusal::Arity);
    }
    gateway.node.cancel_slot_migrations();
    Ok(OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<Vec<u8>> {
        text.split_whitespace()
            .map(|word| word.as_bytes().to_vec())
            .collect()
    }

    fn parse(text: &str) -> Result<Vec<(Vec<SlotRange>, String)>, String> {
        let owned = args(text);
        let borrowed: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
        match parse_moves(&borrowed) {
            Ok(moves) => Ok(moves
                .into_iter()
                .map(|(ranges, id)| (ranges, id.to_hex()))
                .collect()),
            Err(Refusal::Reply(Reply::Error(line))) => Err(line),
            Err(Refusal::Reply(other)) => Err(format!("{other:?}")),
            Err(Refusal::Arity) => Err("arity".to_string()),
            Err(Refusal::Unknown) => Err("unknown".to_string()),
        }
    }

    #[test]
    fn blocks_of_ranges_and_a_node_parse_in_order() {
        let a = "a".repeat(40);
        let b = "b".repeat(40);
        let moves = parse(&format!(
            "SLOTSRANGE 0 9 20 29 NODE {a} slotsrange 10 19 node {b}"
        ))
        .unwrap();
        let range = |start, end| SlotRange { start, end };
        assert_eq!(
            moves,
            vec![
                (vec![range(0, 9), range(20, 29)], a.clone()),
                (vec![range(10, 19)], b)
            ]
        );
        assert_eq!(parse(""), Err("arity".to_string()));
        for bad in [
            format!("NODE {a}"),
            format!("SLOTSRANGE 0 NODE {a}"),
            format!("SLOTSRANGE NODE {a}"),
            "SLOTSRANGE 0 9".to_string(),
            "SLOTSRANGE 0 9 NODE".to_string(),
            format!("SLOTSRANGE 0 9 NODE {a} extra"),
        ] {
            assert!(parse(&bad).unwrap_err().starts_with("ERR syntax"), "{bad}");
        }
        assert_eq!(
            parse(&format!("SLOTSRANGE 9 3 NODE {a}")),
            Err("ERR start slot number 9 is greater than end slot number 3".to_string())
        );
        assert_eq!(
            parse(&format!("SLOTSRANGE 0 16384 NODE {a}")),
            Err("ERR Invalid or out of range slot".to_string())
        );
        assert_eq!(
            parse("SLOTSRANGE 0 1 NODE nope"),
            Err("ERR Unknown node nope".to_string())
        );
    }
}
