//! The server's commands: INFO, ROLE, DBSIZE, FLUSHALL, CONFIG GET / SET, SHUTDOWN, WAIT,
//! SAVE, BGSAVE and TIME.

use std::fmt::Write as _;
use std::time::Duration;

use crate::commands::connection::REDIS_COMPATIBLE_VERSION;
use crate::commands::{
    integer_arg, is, syntax_error, unknown_subcommand, wrong_arity, Flow, Session,
};
use crate::limits::parse_memory_bytes;
use crate::policy::policy_name;
use crate::reply::{Reply, OK};
use crate::server::Gateway;

/// Longest WAIT, in ms, also for `WAIT n 0` (which Redis lets block for ever).
pub(crate) const WAIT_TIMEOUT_MS_MAX: u64 = 60 * 60 * 1000;

/// Runs a server command.
pub(crate) async fn server(
    gateway: &Gateway,
    session: &mut Session,
    name: &str,
    rest: &[&[u8]],
) -> (Reply, Flow) {
    let reply = match name {
        "info" => Reply::Verbatim("txt", info(gateway, rest).await.into()),
        "role" if rest.is_empty() => role(gateway).await,
        "dbsize" if rest.is_empty() => Reply::Integer(gateway.node.memory().keys as i64),
        "flushall" => flushall(gateway, rest).await,
        "config" => config(gateway, session, rest),
        "wait" => wait(gateway, rest).await,
        "shutdown" => {
            // Redis answers nothing to a successful SHUTDOWN: the connection just closes.
            gateway.request_shutdown();
            return (Reply::Status("OK"), Flow::CloseWithoutReply);
        }
        "save" | "bgsave" => match gateway.node.save_snapshot().await {
            Ok(_) if name == "bgsave" => Reply::Status("Background saving started"),
            Ok(_) => OK,
            Err(error) => Reply::err(error),
        },
        "time" => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            Reply::Array(vec![
                Reply::text(now.as_secs().to_string()),
                Reply::text(now.subsec_micros().to_string()),
            ])
        }
        _ => wrong_arity(name),
    };
    (reply, Flow::Continue)
}

async fn flushall(gateway: &Gateway, rest: &[&[u8]]) -> Reply {
    if !rest.iter().all(|arg| is(arg, "ASYNC") || is(arg, "SYNC")) || rest.len() > 1 {
        return syntax_error();
    }
    if gateway.node.master().is_some() {
        return Reply::error("READONLY You can't write against a read only replica.");
    }
    match gateway.node.flush_owned_slots().await {
        Ok(_) => OK,
        Err(error) => Reply::err(error),
    }
}

async fn wait(gateway: &Gateway, rest: &[&[u8]]) -> Reply {
    let [replicas, timeout] = rest else {
        return wrong_arity("wait");
    };
    let replicas = match integer_arg(replicas) {
        Ok(count) => count.clamp(0, i64::from(u32::MAX)) as u32,
        Err(error) => return error,
    };
    let timeout_ms = match integer_arg(timeout) {
        Ok(ms) if ms < 0 => return Reply::error("ERR timeout is negative"),
        Ok(0) => WAIT_TIMEOUT_MS_MAX,
        Ok(ms) => (ms as u64).min(WAIT_TIMEOUT_MS_MAX),
        Err(error) => return error,
    };
    match gateway
        .cluster
        .wait(replicas, Duration::from_millis(timeout_ms))
        .await
    {
        Ok(count) => Reply::Integer(i64::from(count)),
        Err(error) => Reply::err(error),
    }
}

/// The sections INFO prints without arguments, in order.
const DEFAULT_SECTIONS: &[&str] = &[
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cluster",
    "keyspace",
];

async fn info(gateway: &Gateway, rest: &[&[u8]]) -> String {
    let asked: Vec<String> = rest
        .iter()
        .map(|arg| String::from_utf8_lossy(arg).to_ascii_lowercase())
        .collect();
    let everything = asked.is_empty()
        || asked
            .iter()
            .any(|section| matches!(section.as_str(), "all" | "everything" | "default"));
    let mut text = String::new();
    for section in DEFAULT_SECTIONS {
        if !everything && !asked.iter().any(|asked| asked == section) {
            continue;
        }
        if !text.is_empty() {
            text.push_str("\r\n");
        }
        info_section(gateway, section, &mut text).await;
    }
    text
}

async fn info_section(gateway: &Gateway, section: &str, text: &mut String) {
    let node = &gateway.node;
    match section {
        "server" => {
            let uptime = gateway.started.elapsed().as_secs();
            let _ = write!(
                text,
                "# Server\r\nredis_version:{REDIS_COMPATIBLE_VERSION}\r\nslotkv_version:{}\r\n\
                 redis_mode:cluster\r\nos:{}\r\narch_bits:64\r\nprocess_id:{}\r\nrun_id:{}\r\n\
                 tcp_port:{}\r\nuptime_in_seconds:{uptime}\r\nuptime_in_days:{}\r\n",
                env!("CARGO_PKG_VERSION"),
                std::env::consts::OS,
                std::process::id(),
                node.id().to_hex(),
                gateway.address.port(),
                uptime / 86_400,
            );
        }
        "clients" => {
            let max = gateway.config.lock().max_clients;
            let _ = write!(
                text,
                "# Clients\r\nconnected_clients:{}\r\nmaxclients:{max}\r\nblocked_clients:0\r\n",
                gateway.clients.count()
            );
        }
        "memory" => {
            let store = node.store();
            let used = store.used_memory_bytes();
            let _ = write!(
                text,
                "# Memory\r\nused_memory:{used}\r\nused_memory_human:{}\r\nmaxmemory:{}\r\n\
                 maxmemory_human:{}\r\nmaxmemory_policy:{}\r\n",
                human_bytes(used as u64),
                store.max_memory_bytes(),
                human_bytes(store.max_memory_bytes()),
                policy_name(store.config().eviction_policy),
            );
        }
        "persistence" => {
            text.push_str("# Persistence\r\nloading:0\r\nasync_loading:0\r\naof_enabled:0\r\n");
        }
        "stats" => {
            let clients = &gateway.clients;
            let load = |counter: &std::sync::atomic::AtomicU64| {
                counter.load(std::sync::atomic::Ordering::Relaxed)
            };
            let _ = write!(
                text,
                "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\n\
                 rejected_connections:{}\r\n",
                load(&clients.connections_received),
                load(&clients.commands_processed),
                load(&clients.rejected_connections),
            );
        }
        "replication" => replication_section(gateway, text).await,
        "cluster" => text.push_str("# Cluster\r\ncluster_enabled:1\r\n"),
        "keyspace" => {
            let keys = node.memory().keys;
            text.push_str("# Keyspace\r\n");
            if keys > 0 {
                let _ = write!(text, "db0:keys={keys},expires=0,avg_ttl=0\r\n");
            }
        }
        _ => {}
    }
}

async fn replication_section(gateway: &Gateway, text: &mut String) {
    let node = &gateway.node;
    let replication = node.replication_info();
    text.push_str("# Replication\r\n");
    if let Some((_, address)) = node.master() {
        let (host, port) = host_and_port(&address);
        let link = if node.master_link_up() { "up" } else { "down" };
        let _ = write!(
            text,
            "role:slave\r\nmaster_host:{host}\r\nmaster_port:{port}\r\n\
             master_link_status:{link}\r\nmaster_sync_in_progress:{}\r\n\
             slave_repl_offset:{}\r\nslave_read_only:1\r\nconnected_slaves:0\r\n\
             master_repl_offset:{}\r\n",
            u8::from(replication.sync_in_progress),
            replication.offset,
            replication.offset,
        );
        return;
    }
    let replicas = replica_clients(gateway, &replication.replicas).await;
    let _ = write!(
        text,
        "role:master\r\nconnected_slaves:{}\r\n",
        replicas.len()
    );
    for (index, (ip, port, offset)) in replicas.iter().enumerate() {
        let lag = replication.offset.saturating_sub(*offset);
        let _ = write!(
            text,
            "slave{index}:ip={ip},port={port},state=online,offset={offset},lag={lag}\r\n"
        );
    }
    let _ = write!(
        text,
        "master_replid:{:040x}\r\nmaster_repl_offset:{}\r\n",
        replication.replid, replication.offset
    );
}

/// A master's client address (`ip:port`, as `Node::master` gives it) split for INFO and
/// ROLE; port "0" when it has none.
fn host_and_port(address: &str) -> (&str, &str) {
    address.rsplit_once(':').unwrap_or((address, "0"))
}

/// The replicas' client addresses (ip, RESP port) and acknowledged offsets, from their bus
/// addresses (replication names replicas by the latter).
async fn replica_clients(
    gateway: &Gateway,
    replicas: &[(slotkv_transport::PeerAddr, u64)],
) -> Vec<(String, u16, u64)> {
    let known = gateway
        .node
        .inspect(|core| {
            core.nodes()
                .map(|record| (record.bus_address(), record.ip.clone(), record.client_port))
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
    replicas
        .iter()
        .map(|(bus, offset)| {
            let (ip, port) = known
                .iter()
                .find(|(address, _, _)| address == bus.as_str())
                .map_or((bus.to_string(), 0), |(_, ip, port)| (ip.clone(), *port));
            (ip, port, *offset)
        })
        .collect()
}

/// ROLE, as Redis answers it: `master`, its offset and its replicas (ip, port, offset), or
/// `slave`, its master's ip and port, the link's state and its offset.
async fn role(gateway: &Gateway) -> Reply {
    let node = &gateway.node;
    let replication = node.replication_info();
    if let Some((_, address)) = node.master() {
        let (host, port) = host_and_port(&address);
        let state = if replication.sync_in_progress {
            "sync"
        } else if node.master_link_up() {
            "connected"
        } else {
            "connecting"
        };
        return Reply::Array(vec![
            Reply::text("slave"),
            Reply::text(host),
            Reply::Integer(port.parse().unwrap_or(0)),
            Reply::text(state),
            Reply::Integer(replication.offset as i64),
        ]);
    }
    let replicas = replica_clients(gateway, &replication.replicas).await;
    Reply::Array(vec![
        Reply::text("master"),
        Reply::Integer(replication.offset as i64),
        Reply::Array(
            replicas
                .into_iter()
                .map(|(ip, port, offset)| {
                    Reply::Array(vec![
                        Reply::text(ip),
                        Reply::text(port.to_string()),
                        Reply::text(offset.to_string()),
                    ])
                })
                .collect(),
        ),
    ])
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "K", "M", "G", "T"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.2}{}", UNITS[unit])
}

/// The settings CONFIG GET shows, with their current values.
fn settings(gateway: &Gateway) -> Vec<(&'static str, String)> {
    let config = gateway.config.lock().clone();
    let store = gateway.node.store();
    vec![
        ("bind", gateway.address.ip().to_string()),
        ("port", gateway.address.port().to_string()),
        ("requirepass", config.requirepass.unwrap_or_default()),
        ("maxclients", config.max_clients.to_string()),
        ("maxmemory", store.max_memory_bytes().to_string()),
        (
            "maxmemory-policy",
            policy_name(store.config().eviction_policy).to_string(),
        ),
        (
            "proto-max-bulk-len",
            config.limits.bulk_bytes_max.to_string(),
        ),
        (
            "client-query-buffer-limit",
            config.limits.query_buffer_bytes_max.to_string(),
        ),
        ("cluster-enabled", "yes".to_string()),
        ("databases", "1".to_string()),
        ("save", config.save.clone()),
        (
            "proxy-redirects",
            yes_no(config.proxy_redirects).to_string(),
        ),
        ("appendonly", "no".to_string()),
        ("timeout", "0".to_string()),
    ]
}

/// A setting's `yes` / `no`.
fn yes_no(on: bool) -> &'static str {
    if on {
        "yes"
    } else {
        "no"
    }
}

/// Redis's glob, for CONFIG GET patterns.
fn config_matches(pattern: &[u8], name: &str) -> bool {
    crate::commands::keys::glob_match(&pattern.to_ascii_lowercase(), name.as_bytes())
}

fn config(gateway: &Gateway, session: &Session, rest: &[&[u8]]) -> Reply {
    let Some((subcommand, args)) = rest.split_first() else {
        return wrong_arity("config");
    };
    if is(subcommand, "GET") {
        if args.is_empty() {
            return wrong_arity("config|get");
        }
        let pairs = settings(gateway)
            .into_iter()
            .filter(|(name, _)| args.iter().any(|pattern| config_matches(pattern, name)))
            .map(|(name, value)| (Reply::text(name), Reply::text(value)))
            .collect();
        return Reply::Map(pairs);
    }
    if is(subcommand, "SET") {
        if args.is_empty() || !args.len().is_multiple_of(2) {
            return wrong_arity("config|set");
        }
        for pair in args.chunks_exact(2) {
            if let Err(error) = config_set(gateway, pair[0], pair[1]) {
                return error;
            }
        }
        return OK;
    }
    if is(subcommand, "RESETSTAT") || is(subcommand, "REWRITE") {
        let _ = session;
        return OK;
    }
    unknown_subcommand("config", subcommand)
}

fn config_set(gateway: &Gateway, name: &[u8], value: &[u8]) -> Result<(), Reply> {
    let name = String::from_utf8_lossy(name).to_ascii_lowercase();
    let text = String::from_utf8_lossy(value).into_owned();
    let invalid = || {
        Reply::Error(format!(
            "ERR CONFIG SET failed (possibly related to argument '{name}') - argument couldn't be parsed into an integer"
        ))
    };
    let mut config = gateway.config.lock();
    match name.as_str() {
        "requirepass" => config.requirepass = (!text.is_empty()).then_some(text),
        "maxclients" => config.max_clients = text.parse().map_err(|_| invalid())?,
        "proto-max-bulk-len" => {
            config.limits.bulk_bytes_max = parse_memory_bytes(&text).ok_or_else(invalid)? as usize
        }
        "client-query-buffer-limit" => {
            config.limits.query_buffer_bytes_max =
                parse_memory_bytes(&text).ok_or_else(invalid)? as usize
        }
        "proxy-redirects" => {
            let on = match text.to_ascii_lowercase().as_str() {
                "yes" => true,
                "no" => false,
                _ => {
                    return Err(Reply::Error(format!(
                        "ERR CONFIG SET failed (possibly related to argument '{name}') - argument must be 'yes' or 'no'"
                    )))
                }
            };
            config.proxy_redirects = on;
            gateway
                .proxy_redirects
                .store(on, std::sync::atomic::Ordering::Relaxed);
        }
        // Set when the host starts: accepted as the values they already have.
        "save" if text == config.save => {}
        "appendonly" if text == "no" => {}
        _ => {
            return Err(Reply::Error(format!(
                "ERR Unknown option or number of arguments for CONFIG SET - '{name}'"
            )))
        }
    }
    Ok(())
}
