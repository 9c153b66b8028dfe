//! MIGRATE, the RESP-only command `redis-cli --cluster reshard / rebalance / fix` moves keys
//! with: `MIGRATE host port key|"" destination-db timeout [COPY] [REPLACE] [AUTH password |
//! AUTH2 username password] [KEYS key ...]`.
//!
//! The gateway parses it here and hands the keys to the node's key-by-key migration
//! (`Node::migrate_keys`: one batch on the cluster's own bulk stream, acknowledged once the
//! target's replicas hold the keys). `host:port` is the target's client (RESP) address, as
//! CLUSTER NODES and MOVED name it; it is mapped back to the node's bus address through the
//! slot map the node publishes (`Node::node_at_client_address`). A host:port that is no
//! node of the cluster is answered as Redis answers an unreachable target: no connection
//! is made to an arbitrary address. AUTH / AUTH2 are accepted and ignored: the cluster's
//! bus secret authenticates node to node.

use slotkv_cluster::{MigrateOptions, MigrateReply};

use crate::commands::{integer_arg, is, syntax_error, wrong_arity};
use crate::reply::{Reply, OK};
use crate::server::Gateway;

/// Longest MIGRATE timeout honoured, in ms (a longer one is cut to it): the slots' migration
/// gates are held while a batch waits for its ack, so the wait is bounded.
pub(crate) const MIGRATE_TIMEOUT_MS_MAX: u64 = 10 * 60 * 1000;

/// The timeout used for a zero or negative one, in ms (Redis's).
const MIGRATE_TIMEOUT_MS_NONPOSITIVE: u64 = 1_000;

/// Arguments before the options: host, port, key, destination-db, timeout.
const FIXED_ARGUMENTS: usize = 5;

/// Redis's reply when the target cannot be reached (here: no node of the cluster is there).
const UNREACHABLE: &str = "IOERR error or timeout connecting to the client";

/// What the target answers a SELECT of another database with, relayed as Redis relays it.
const OTHER_DATABASE: &str =
    "ERR Target instance replied with error: ERR SELECT is not allowed in cluster mode";

/// A parsed MIGRATE.
#[derive(Debug, PartialEq, Eq)]
struct Migrate<'a> {
    host: &'a [u8],
    port: &'a [u8],
    database: i64,
    options: MigrateOptions,
    keys: Vec<&'a [u8]>,
}

/// Parses MIGRATE's arguments (after the name) in Redis's order of checks: the options
/// first, then the timeout and the database as integers.
fn parse<'a>(args: &[&'a [u8]]) -> Result<Migrate<'a>, Reply> {
    if args.len() < FIXED_ARGUMENTS {
        return Err(wrong_arity("migrate"));
    }
    let mut options = MigrateOptions::default();
    let mut keys = vec![args[2]];
    let mut index = FIXED_ARGUMENTS;
    while index < args.len() {
        let option = args[index];
        let more = args.len() - 1 - index;
        if is(option, "COPY") {
            options.copy = true;
        } else if is(option, "REPLACE") {
            options.replace = true;
        } else if is(option, "AUTH") && more >= 1 {
            index += 1;
        } else if is(option, "AUTH2") && more >= 2 {
            index += 2;
        } else if is(option, "KEYS") {
            if !args[2].is_empty() {
                return Err(Reply::error(
                    "ERR When using MIGRATE KEYS option, the key argument must be set to \
                     the empty string",
                ));
            }
            keys = args[index + 1..].to_vec();
            break;
        } else {
            return Err(syntax_error());
        }
        index += 1;
    }
    let timeout_ms = integer_arg(args[4])?;
    let database = integer_arg(args[3])?;
    options.timeout_ms = match u64::try_from(timeout_ms) {
        Ok(0) | Err(_) => MIGRATE_TIMEOUT_MS_NONPOSITIVE,
        Ok(timeout_ms) => timeout_ms.min(MIGRATE_TIMEOUT_MS_MAX),
    };
    Ok(Migrate {
        host: args[0],
        port: args[1],
        database,
        options,
        keys,
    })
}

/// Runs MIGRATE (see the module docs).
pub(crate) async fn migrate(gateway: &Gateway, args: &[&[u8]]) -> Reply {
    let request = match parse(args) {
        Ok(request) => request,
        Err(reply) => return reply,
    };
    if let Err(refusal) = gateway.cluster.check_migrate_keys(&request.keys) {
        return Reply::Error(refusal.to_string());
    }
    let target = std::str::from_utf8(request.host)
        .ok()
        .zip(
            std::str::from_utf8(request.port)
                .ok()
                .and_then(|port| port.parse::<u16>().ok()),
        )
        .and_then(|(host, port)| gateway.node.node_at_client_address(host, port));
    // As Redis: keys are looked up before the target is reached, so none here is NOKEY
    // whatever the target.
    let refusal = match &target {
        None => Some(UNREACHABLE),
        Some(_) if request.database != 0 => Some(OTHER_DATABASE),
        Some((id, _)) if *id == gateway.node.id() => {
            Some("ERR MIGRATE's target is this node itself")
        }
        Some(_) => None,
    };
    if let Some(refusal) = refusal {
        let present = gateway.node.store().exists(&request.keys).unwrap_or(0);
        return if present == 0 {
            Reply::Status("NOKEY")
        } else {
            Reply::error(refusal)
        };
    }
    let Some((_, address)) = target else {
        return Reply::error(UNREACHABLE);
    };
    match gateway
        .node
        .migrate_keys(&address, &request.keys, request.options)
        .await
    {
        Ok(MigrateReply::Moved { .. }) => OK,
        Ok(MigrateReply::NoKey) => Reply::Status("NOKEY"),
        Err(error) => Reply::Error(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(args: &[&'static str]) -> Result<Migrate<'static>, Reply> {
        let args: Vec<&'static [u8]> = args.iter().copied().map(str::as_bytes).collect();
        parse(&args)
    }

    #[test]
    fn the_keys_form_takes_every_argument_after_keys_and_ignores_auth() {
        let migrate = parsed(&[
            "h", "7000", "", "0", "60000", "REPLACE", "AUTH2", "user", "pass", "keys", "a", "b",
        ])
        .unwrap();
        assert_eq!(migrate.keys, vec![&b"a"[..], &b"b"[..]]);
        assert!(migrate.options.replace && !migrate.options.copy);
        assert_eq!(migrate.options.timeout_ms, 60_000);
        let single = parsed(&["h", "7000", "k", "0", "5", "copy", "auth", "pw"]).unwrap();
        assert_eq!(single.keys, vec![&b"k"[..]]);
        assert!(single.options.copy && !single.options.replace);
        let none = parsed(&["h", "7000", "", "0", "5", "KEYS"]).unwrap();
        assert!(none.keys.is_empty());
    }

    #[test]
    fn timeouts_are_redis_s_for_nonpositive_and_bounded_above() {
        assert_eq!(
            parsed(&["h", "1", "k", "0", "0"])
                .unwrap()
                .options
                .timeout_ms,
            MIGRATE_TIMEOUT_MS_NONPOSITIVE
        );
        assert_eq!(
            parsed(&["h", "1", "k", "0", "-5"])
                .unwrap()
                .options
                .timeout_ms,
            MIGRATE_TIMEOUT_MS_NONPOSITIVE
        );
        assert_eq!(
            parsed(&["h", "1", "k", "0", "999999999999"])
                .unwrap()
                .options
                .timeout_ms,
            MIGRATE_TIMEOUT_MS_MAX
        );
    }

    #[test]
    fn malformed_migrates_are_refused_with_redis_s_errors() {
        assert_eq!(parsed(&["h", "1", "k", "0"]), Err(wrong_arity("migrate")));
        assert_eq!(
            parsed(&["h", "1", "k", "0", "5", "NOPE"]),
            Err(syntax_error())
        );
        assert_eq!(
            parsed(&["h", "1", "k", "0", "5", "AUTH"]),
            Err(syntax_error()),
            "AUTH without its password"
        );
        assert_eq!(
            parsed(&["h", "1", "k", "0", "5", "AUTH2", "user"]),
            Err(syntax_error())
        );
        assert_eq!(
            parsed(&["h", "1", "k", "0", "5", "KEYS", "a"]),
            Err(Reply::error(
                "ERR When using MIGRATE KEYS option, the key argument must be set to the \
                 empty string"
            ))
        );
        assert_eq!(
            parsed(&["h", "1", "k", "zero", "5"]),
            Err(Reply::error("ERR value is not an integer or out of range"))
        );
        assert_eq!(
            parsed(&["h", "1", "k", "0", "soon"]),
            Err(Reply::error("ERR value is not an integer or out of range"))
        );
    }
}
