//! COMMAND, COMMAND COUNT, COMMAND INFO and COMMAND DOCS: the table of every command the
//! gateway serves, with Redis's arity, flags and key positions (what cluster clients such
//! as redis-py read to find a command's keys). A test checks it names every keyed command
//! of the cluster crate's registry.

use crate::commands::{is, unknown_subcommand};
use crate::reply::Reply;

/// One command: name, arity (negative: at least), flags, first key, last key, key step.
type Entry = (&'static str, i64, &'static [&'static str], i64, i64, i64);

const W: &[&str] = &["write", "denyoom"];
const WF: &[&str] = &["write", "fast"];
const WDF: &[&str] = &["write", "denyoom", "fast"];
const R: &[&str] = &["readonly"];
const RF: &[&str] = &["readonly", "fast"];
const ADMIN: &[&str] = &["admin", "noscript"];
const CONN: &[&str] = &["noscript", "loading", "stale", "fast"];

/// Every command served, in no particular order.
const COMMANDS: &[Entry] = &[
    ("get", 2, RF, 1, 1, 1),
    ("set", -3, W, 1, 1, 1),
    ("setnx", 3, WDF, 1, 1, 1),
    ("setex", 4, W, 1, 1, 1),
    ("psetex", 4, W, 1, 1, 1),
    ("getset", 3, WDF, 1, 1, 1),
    ("getdel", 2, WF, 1, 1, 1),
    ("getex", -2, WF, 1, 1, 1),
    ("append", 3, WDF, 1, 1, 1),
    ("strlen", 2, RF, 1, 1, 1),
    ("setrange", 4, W, 1, 1, 1),
    ("getrange", 4, R, 1, 1, 1),
    ("incr", 2, WDF, 1, 1, 1),
    ("decr", 2, WDF, 1, 1, 1),
    ("incrby", 3, WDF, 1, 1, 1),
    ("decrby", 3, WDF, 1, 1, 1),
    ("incrbyfloat", 3, WDF, 1, 1, 1),
    ("mget", -2, RF, 1, -1, 1),
    ("mset", -3, W, 1, -1, 2),
    ("msetnx", -3, W, 1, -1, 2),
    ("del", -2, &["write"], 1, -1, 1),
    ("unlink", -2, WF, 1, -1, 1),
    ("exists", -2, RF, 1, -1, 1),
    ("touch", -2, RF, 1, -1, 1),
    ("copy", -3, W, 1, 2, 1),
    ("expire", -3, WF, 1, 1, 1),
    ("pexpire", -3, WF, 1, 1, 1),
    ("expireat", -3, WF, 1, 1, 1),
    ("pexpireat", -3, WF, 1, 1, 1),
    ("persist", 2, WF, 1, 1, 1),
    ("ttl", 2, RF, 1, 1, 1),
    ("pttl", 2, RF, 1, 1, 1),
    ("type", 2, RF, 1, 1, 1),
    ("migrate", -6, &["write", "movablekeys"], 3, 3, 1),
    ("keys", 2, R, 0, 0, 0),
    ("scan", -2, R, 0, 0, 0),
    ("dbsize", 1, RF, 0, 0, 0),
    ("flushall", -1, &["write"], 0, 0, 0),
    ("wait", 3, &["noscript"], 0, 0, 0),
    ("info", -1, &["loading", "stale"], 0, 0, 0),
    ("config", -2, ADMIN, 0, 0, 0),
    ("cluster", -2, &[], 0, 0, 0),
    ("command", -1, &["loading", "stale"], 0, 0, 0),
    ("shutdown", -1, ADMIN, 0, 0, 0),
    ("save", 1, ADMIN, 0, 0, 0),
    ("bgsave", -1, ADMIN, 0, 0, 0),
    ("time", 1, &["loading", "stale", "fast"], 0, 0, 0),
    ("role", 1, CONN, 0, 0, 0),
    ("function", -2, &[], 0, 0, 0),
    ("ping", -1, &["fast"], 0, 0, 0),
    ("echo", 2, &["fast"], 0, 0, 0),
    ("quit", -1, CONN, 0, 0, 0),
    ("reset", 1, CONN, 0, 0, 0),
    ("hello", -1, CONN, 0, 0, 0),
    ("auth", -2, CONN, 0, 0, 0),
    ("select", 2, CONN, 0, 0, 0),
    ("client", -2, &[], 0, 0, 0),
    ("readonly", 1, &["loading", "stale", "fast"], 0, 0, 0),
    ("readwrite", 1, &["loading", "stale", "fast"], 0, 0, 0),
    ("asking", 1, &["fast"], 0, 0, 0),
];

fn entry_reply(entry: &Entry) -> Reply {
    let (name, arity, flags, first, last, step) = *entry;
    Reply::Array(vec![
        Reply::text(name),
        Reply::Integer(arity),
        Reply::Set(flags.iter().map(|flag| Reply::Status(flag)).collect()),
        Reply::Integer(first),
        Reply::Integer(last),
        Reply::Integer(step),
        Reply::Set(Vec::new()),
        Reply::Array(Vec::new()),
        Reply::Array(Vec::new()),
        Reply::Array(Vec::new()),
    ])
}

fn find(name: &[u8]) -> Option<&'static Entry> {
    COMMANDS
        .iter()
        .find(|entry| entry.0.as_bytes().eq_ignore_ascii_case(name))
}

/// Runs COMMAND [COUNT | INFO name... | DOCS [name...] | LIST].
pub(crate) fn command(rest: &[&[u8]]) -> Reply {
    let Some((subcommand, args)) = rest.split_first() else {
        return Reply::Array(COMMANDS.iter().map(entry_reply).collect());
    };
    if is(subcommand, "COUNT") {
        return Reply::Integer(COMMANDS.len() as i64);
    }
    if is(subcommand, "LIST") {
        return Reply::Array(COMMANDS.iter().map(|entry| Reply::text(entry.0)).collect());
    }
    if is(subcommand, "INFO") {
        if args.is_empty() {
            return Reply::Array(COMMANDS.iter().map(entry_reply).collect());
        }
        return Reply::Array(
            args.iter()
                .map(|name| find(name).map_or(Reply::NilArray, entry_reply))
                .collect(),
        );
    }
    if is(subcommand, "DOCS") {
        // Each command with an empty doc map: enough for clients that look names up.
        let wanted: Vec<&Entry> = if args.is_empty() {
            COMMANDS.iter().collect()
        } else {
            args.iter().filter_map(|name| find(name)).collect()
        };
        return Reply::Map(
            wanted
                .into_iter()
                .map(|entry| (Reply::text(entry.0), Reply::Map(Vec::new())))
                .collect(),
        );
    }
    unknown_subcommand("command", subcommand)
}

/// Whether the table lists `name` (lower case).
#[cfg(test)]
fn is_listed(name: &str) -> bool {
    COMMANDS.iter().any(|entry| entry.0 == name)
}

#[cfg(test)]
mod tests {
    use slotkv_cluster::Cluster;

    use super::*;

    #[test]
    fn the_table_lists_every_keyed_command_of_the_registry_once() {
        for name in Cluster::client_command_names() {
            assert!(is_listed(name), "COMMAND does not list {name}");
        }
        for (index, entry) in COMMANDS.iter().enumerate() {
            assert!(
                COMMANDS[index + 1..].iter().all(|other| other.0 != entry.0),
                "{} is listed twice",
                entry.0
            );
        }
    }
}
