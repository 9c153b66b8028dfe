//! Running one request: the authentication gate, then a keyed command through the cluster
//! crate's registry (`Cluster::execute_client`: its parse, slot rule, MOVED / ASK and reply
//! live with each command there), else one of the RESP-only commands here, one file per
//! family: [`connection`] (PING, ECHO, QUIT, RESET, HELLO, AUTH, SELECT, CLIENT, READONLY,
//! READWRITE, ASKING), [`server`] (INFO, DBSIZE, FLUSHALL, CONFIG, SHUTDOWN, WAIT),
//! [`keys`] (TYPE, KEYS, SCAN), [`functions`] (FUNCTION), [`migrate`] (MIGRATE),
//! [`cluster`] (CLUSTER ...),
//! [`cluster_migrations`] (CLUSTER MIGRATESLOTS, GETSLOTMIGRATIONS, CANCELSLOTMIGRATIONS)
//! and [`table`] (COMMAND).

pub(crate) mod cluster;
pub(crate) mod cluster_migrations;
pub(crate) mod connection;
pub(crate) mod functions;
pub(crate) mod keys;
pub(crate) mod migrate;
pub(crate) mod server;
pub(crate) mod table;

use std::sync::Arc;

use bytes::Bytes;
use slotkv_cluster::{ClientFlags, ClientReply, Cluster};

use crate::clients::ClientEntry;
use crate::reply::{Protocol, Reply};
use crate::server::Gateway;

/// Whether the connection goes on after a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Serve the next request.
    Continue,
    /// Write the reply, then close (QUIT).
    Close,
    /// Close without a reply (SHUTDOWN).
    CloseWithoutReply,
}

/// Longest command name looked up, in bytes (longer ones are unknown).
const COMMAND_NAME_BYTES_MAX: usize = 32;

/// A connection's state.
#[derive(Debug)]
pub(crate) struct Session {
    /// RESP2 or RESP3 (HELLO).
    pub(crate) protocol: Protocol,
    /// AUTH succeeded, or no password is required.
    pub(crate) authenticated: bool,
    /// READONLY.
    pub(crate) read_only: bool,
    /// ASKING, for the next command only.
    pub(crate) asking: bool,
    /// The client's entry in the server's table.
    pub(crate) entry: Arc<ClientEntry>,
}

impl Session {
    /// A new connection's state.
    pub(crate) fn new(gateway: &Gateway, entry: Arc<ClientEntry>) -> Session {
        Session {
            protocol: Protocol::Resp2,
            authenticated: gateway.config.lock().requirepass.is_none(),
            read_only: false,
            asking: false,
            entry,
        }
    }

    /// CLIENT ID.
    pub(crate) fn client_id(&self) -> u64 {
        self.entry.id
    }

    /// Back to a new connection's state (RESET).
    pub(crate) fn reset(&mut self, gateway: &Gateway) {
        let entry = Arc::clone(&self.entry);
        *entry.info.lock() = crate::clients::ClientInfo {
            protocol: 2,
            ..Default::default()
        };
        *self = Session::new(gateway, entry);
    }
}

/// Commands a client may send before it authenticated.
const BEFORE_AUTH: &[&str] = &["auth", "hello", "quit", "reset"];

/// Runs one request (see the module docs) and returns its reply.
pub(crate) async fn execute(
    gateway: &Gateway,
    session: &mut Session,
    arguments: &[Bytes],
) -> (Reply, Flow) {
    let args: Vec<&[u8]> = arguments.iter().map(|argument| &argument[..]).collect();
    gateway
        .clients
        .commands_processed
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // Keyed commands first: the hot path looks the name up without allocating.
    if session.authenticated && Cluster::is_client_command(args[0]) {
        let flags = ClientFlags {
            asking: std::mem::take(&mut session.asking),
            read_only: session.read_only,
            proxy_redirects: gateway
                .proxy_redirects
                .load(std::sync::atomic::Ordering::Relaxed),
        };
        let reply = match gateway.cluster.execute_client(&args, flags).await {
            Some(Ok(reply)) => client_reply(reply),
            Some(Err(refusal)) => Reply::Error(refusal.to_string()),
            None => unknown_command(&args),
        };
        return (reply, Flow::Continue);
    }
    let Some(name) = lowered(args[0]) else {
        return (unknown_command(&args), Flow::Continue);
    };
    if !session.authenticated && !BEFORE_AUTH.contains(&name.as_str()) {
        return (
            Reply::error("NOAUTH Authentication required."),
            Flow::Continue,
        );
    }
    session.asking = false;
    note_command(session, &name);
    let rest = &args[1..];
    match name.as_str() {
        "cluster" => (
            cluster::cluster(gateway, session, rest).await,
            Flow::Continue,
        ),
        "command" => (table::command(rest), Flow::Continue),
        "migrate" => (migrate::migrate(gateway, rest).await, Flow::Continue),
        "type" => (key_type(gateway, session, rest).await, Flow::Continue),
        "keys" | "scan" => (keys::keys(gateway, &name, rest), Flow::Continue),
        "function" => (functions::function(rest), Flow::Continue),
        "info" | "dbsize" | "flushall" | "config" | "wait" | "shutdown" | "save" | "bgsave"
        | "lastsave" | "time" | "role" => server::server(gateway, session, &name, rest).await,
        _ => connection::connection(gateway, session, &name, &args).await,
    }
}

/// TYPE: `string` or `none`, decided by EXISTS through the registry, so a key of another
/// node is answered MOVED like any keyed command.
async fn key_type(gateway: &Gateway, session: &Session, rest: &[&[u8]]) -> Reply {
    let [key] = rest else {
        return wrong_arity("type");
    };
    let flags = ClientFlags {
        asking: false,
        read_only: session.read_only,
        proxy_redirects: gateway
            .proxy_redirects
            .load(std::sync::atomic::Ordering::Relaxed),
    };
    let exists: [&[u8]; 2] = [b"exists", key];
    match gateway.cluster.execute_client(&exists, flags).await {
        Some(Ok(ClientReply::Integer(count))) if count > 0 => Reply::Status("string"),
        Some(Ok(_)) => Reply::Status("none"),
        Some(Err(refusal)) => Reply::Error(refusal.to_string()),
        None => Reply::Status("none"),
    }
}

/// Records the last command a client sent (CLIENT LIST's `cmd`; keyed commands are not
/// recorded, to keep their path free of the client table's lock).
fn note_command(session: &Session, name: &str) {
    let mut info = session.entry.info.lock();
    if info.last_command != name {
        info.last_command.clear();
        info.last_command.push_str(name);
    }
}

/// The command name in lower case, `None` when longer than any command.
pub(crate) fn lowered(name: &[u8]) -> Option<String> {
    if name.len() > COMMAND_NAME_BYTES_MAX {
        return None;
    }
    Some(String::from_utf8_lossy(name).to_ascii_lowercase())
}

/// A keyed command's reply.
fn client_reply(reply: ClientReply) -> Reply {
    match reply {
        ClientReply::Ok => crate::reply::OK,
        ClientReply::Nil => Reply::Nil,
        ClientReply::Bulk(bytes) => Reply::Bulk(bytes),
        ClientReply::Integer(number) => Reply::Integer(number),
        ClientReply::Values(values) => {
            Reply::Array(values.into_iter().map(Reply::optional).collect())
        }
    }
}

/// Longest part of the arguments quoted by the unknown-command error, in bytes (Redis's).
const UNKNOWN_ARGS_QUOTED_MAX: usize = 128;

/// Redis's unknown-command error: the name and the first arguments, quoted.
pub(crate) fn unknown_command(args: &[&[u8]]) -> Reply {
    let name = String::from_utf8_lossy(&args[0][..args[0].len().min(UNKNOWN_ARGS_QUOTED_MAX)]);
    let mut quoted = String::new();
    for arg in &args[1..] {
        let room = UNKNOWN_ARGS_QUOTED_MAX.saturating_sub(quoted.len());
        if room == 0 {
            break;
        }
        let text = String::from_utf8_lossy(arg);
        let cut: String = text.chars().take(room).collect();
        quoted.push_str(&format!("'{cut}' "));
    }
    Reply::Error(format!(
        "ERR unknown command '{name}', with args beginning with: {quoted}"
    ))
}

/// Redis's unknown-subcommand error.
pub(crate) fn unknown_subcommand(command: &str, subcommand: &[u8]) -> Reply {
    Reply::Error(format!(
        "ERR unknown subcommand '{}'. Try {} HELP.",
        String::from_utf8_lossy(subcommand),
        command.to_ascii_uppercase()
    ))
}

/// Redis's arity error for `name` (`command|subcommand` for a subcommand).
pub(crate) fn wrong_arity(name: &str) -> Reply {
    Reply::Error(format!(
        "ERR wrong number of arguments for '{name}' command"
    ))
}

/// Redis's syntax error.
pub(crate) fn syntax_error() -> Reply {
    Reply::error("ERR syntax error")
}

/// An integer argument in Redis's syntax, or its error reply.
pub(crate) fn integer_arg(arg: &[u8]) -> Result<i64, Reply> {
    slotkv_engine::parse_i64(arg)
        .ok_or_else(|| Reply::error("ERR value is not an integer or out of range"))
}

/// Whether `arg` is `word`, compared without regard to case.
pub(crate) fn is(arg: &[u8], word: &str) -> bool {
    arg.eq_ignore_ascii_case(word.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_commands_are_worded_as_redis_words_them() {
        let args: &[&[u8]] = &[b"FOO", b"a", b"b"];
        assert_eq!(
            unknown_command(args),
            Reply::error("ERR unknown command 'FOO', with args beginning with: 'a' 'b' ")
        );
        let bare: &[&[u8]] = &[b"nope"];
        assert_eq!(
            unknown_command(bare),
            Reply::error("ERR unknown command 'nope', with args beginning with: ")
        );
        assert_eq!(
            unknown_subcommand("cluster", b"xyz"),
            Reply::error("ERR unknown subcommand 'xyz'. Try CLUSTER HELP.")
        );
    }
}
