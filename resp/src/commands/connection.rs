//! The connection's own commands: PING, ECHO, QUIT, RESET, HELLO, AUTH, SELECT, CLIENT,
//! READONLY, READWRITE, ASKING. Anything else reaching here is an unknown command.

use bytes::Bytes;

use crate::commands::{
    integer_arg, is, syntax_error, unknown_command, unknown_subcommand, wrong_arity, Flow, Session,
};
use crate::reply::{Protocol, Reply, OK};
use crate::server::Gateway;

/// The version this server reports as `redis_version` and in HELLO: the Redis release
/// whose commands and replies the gateway follows.
pub(crate) const REDIS_COMPATIBLE_VERSION: &str = "7.2.0";

/// Longest client name or library field kept, in bytes.
const CLIENT_FIELD_BYTES_MAX: usize = 256;

/// Runs a connection command (`args[0]` is its name as sent).
pub(crate) async fn connection(
    gateway: &Gateway,
    session: &mut Session,
    name: &str,
    args: &[&[u8]],
) -> (Reply, Flow) {
    let rest = &args[1..];
    let reply = match name {
        "ping" => match rest {
            [] => Reply::Status("PONG"),
            [message] => Reply::Bulk(Bytes::copy_from_slice(message)),
            _ => wrong_arity("ping"),
        },
        "echo" => match rest {
            [message] => Reply::Bulk(Bytes::copy_from_slice(message)),
            _ => wrong_arity("echo"),
        },
        "quit" => return (OK, Flow::Close),
        "reset" => {
            session.reset(gateway);
            Reply::Status("RESET")
        }
        "hello" => hello(gateway, session, rest),
        "auth" => auth(gateway, session, rest),
        "select" => match rest {
            [index] => match integer_arg(index) {
                Ok(0) => OK,
                Ok(_) => Reply::error("ERR SELECT is not allowed in cluster mode"),
                Err(error) => error,
            },
            _ => wrong_arity("select"),
        },
        "client" => client(gateway, session, rest),
        "readonly" => {
            session.read_only = true;
            session.entry.info.lock().read_only = true;
            OK
        }
        "readwrite" => {
            session.read_only = false;
            session.entry.info.lock().read_only = false;
            OK
        }
        "asking" => {
            session.asking = true;
            OK
        }
        _ => unknown_command(args),
    };
    (reply, Flow::Continue)
}

/// Checks a password against `requirepass` (Redis's errors when wrong or when none is set).
fn check_password(gateway: &Gateway, user: Option<&[u8]>, password: &[u8]) -> Result<(), Reply> {
    let required = gateway.config.lock().requirepass.clone();
    let user_ok = user.is_none_or(|user| user == b"default");
    match required {
        None if user.is_none() => Err(Reply::error(
            "ERR AUTH <password> called without any password configured for the default user. \
             Are you sure your configuration is correct?",
        )),
        None if user_ok => Ok(()),
        Some(required) if user_ok && required.as_bytes() == password => Ok(()),
        _ => Err(Reply::error(
            "WRONGPASS invalid username-password pair or user is disabled.",
        )),
    }
}

fn auth(gateway: &Gateway, session: &mut Session, rest: &[&[u8]]) -> Reply {
    let checked = match rest {
        [password] => check_password(gateway, None, password),
        [user, password] => check_password(gateway, Some(user), password),
        _ => return wrong_arity("auth"),
    };
    match checked {
        Ok(()) => {
            session.authenticated = true;
            OK
        }
        Err(error) => error,
    }
}

/// HELLO [protover [AUTH username password] [SETNAME clientname]].
fn hello(gateway: &Gateway, session: &mut Session, rest: &[&[u8]]) -> Reply {
    let mut protocol = session.protocol;
    let mut options = rest;
    if let Some((version, after)) = rest.split_first() {
        protocol = match integer_arg(version) {
            Ok(2) => Protocol::Resp2,
            Ok(3) => Protocol::Resp3,
            Ok(_) => return Reply::error("NOPROTO unsupported protocol version"),
            Err(_) => {
                return Reply::error("ERR Protocol version is not an integer or out of range")
            }
        };
        options = after;
    }
    let mut name = None;
    while let Some(option) = options.first() {
        match options {
            [auth, user, password, ..] if is(auth, "AUTH") => {
                if let Err(error) = check_password(gateway, Some(user), password) {
                    return error;
                }
                session.authenticated = true;
                options = &options[3..];
            }
            [setname, client_name, ..] if is(setname, "SETNAME") => {
                name = Some(*client_name);
                options = &options[2..];
            }
            _ => {
                return Reply::Error(format!(
                    "ERR Syntax error in HELLO option '{}'",
                    String::from_utf8_lossy(option)
                ))
            }
        }
    }
    if !session.authenticated {
        return Reply::error(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the \
             HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and \
             select the RESP protocol version at the same time",
        );
    }
    if let Some(name) = name {
        if let Err(error) = set_name(session, name) {
            return error;
        }
    }
    session.protocol = protocol;
    session.entry.info.lock().protocol = if protocol == Protocol::Resp3 { 3 } else { 2 };
    let role = if gateway.node.master().is_some() {
        "replica"
    } else {
        "master"
    };
    Reply::Map(vec![
        (Reply::text("server"), Reply::text("redis")),
        (
            Reply::text("version"),
            Reply::text(REDIS_COMPATIBLE_VERSION),
        ),
        (
            Reply::text("proto"),
            Reply::Integer(if protocol == Protocol::Resp3 { 3 } else { 2 }),
        ),
        (
            Reply::text("id"),
            Reply::Integer(session.client_id() as i64),
        ),
        (Reply::text("mode"), Reply::text("cluster")),
        (Reply::text("role"), Reply::text(role)),
        (Reply::text("modules"), Reply::Array(Vec::new())),
    ])
}

/// A client name: printable, without spaces (Redis's rule), bounded.
fn set_name(session: &Session, name: &[u8]) -> Result<(), Reply> {
    if name.len() > CLIENT_FIELD_BYTES_MAX || name.iter().any(|byte| !(b'!'..=b'~').contains(byte))
    {
        return Err(Reply::error(
            "ERR Client names cannot contain spaces, newlines or special characters.",
        ));
    }
    session.entry.info.lock().name = String::from_utf8_lossy(name).into_owned();
    Ok(())
}

/// CLIENT SETNAME / GETNAME / ID / SETINFO / LIST / KILL / INFO.
fn client(gateway: &Gateway, session: &mut Session, rest: &[&[u8]]) -> Reply {
    let Some((subcommand, args)) = rest.split_first() else {
        return wrong_arity("client");
    };
    let lowered = String::from_utf8_lossy(subcommand).to_ascii_lowercase();
    match (lowered.as_str(), args) {
        ("setname", [name]) => set_name(session, name).map_or_else(|error| error, |()| OK),
        ("getname", []) => {
            let name = session.entry.info.lock().name.clone();
            if name.is_empty() {
                Reply::Nil
            } else {
                Reply::text(name)
            }
        }
        ("id", []) => Reply::Integer(session.client_id() as i64),
        ("info", []) => Reply::Verbatim("txt", Bytes::from(session.entry.list_line() + "\n")),
        ("setinfo", [field, value]) => set_info(session, field, value),
        ("list", _) => {
            let lines: String = gateway
                .clients
                .all()
                .iter()
                .map(|entry| entry.list_line() + "\n")
                .collect();
            Reply::Verbatim("txt", Bytes::from(lines))
        }
        ("kill", args) => kill(gateway, args),
        ("setname" | "getname" | "id" | "info" | "setinfo", _) => {
            wrong_arity(&format!("client|{lowered}"))
        }
        _ => unknown_subcommand("client", subcommand),
    }
}

fn set_info(session: &Session, field: &[u8], value: &[u8]) -> Reply {
    if value.len() > CLIENT_FIELD_BYTES_MAX
        || value.iter().any(|byte| !(b'!'..=b'~').contains(byte))
    {
        return Reply::error(
            "ERR lib-name and lib-ver cannot contain spaces, newlines or special characters.",
        );
    }
    let value = String::from_utf8_lossy(value).into_owned();
    let mut info = session.entry.info.lock();
    if is(field, "LIB-NAME") {
        info.lib_name = value;
    } else if is(field, "LIB-VER") {
        info.lib_version = value;
    } else {
        return Reply::Error(format!(
            "ERR Unrecognized option '{}'",
            String::from_utf8_lossy(field)
        ));
    }
    OK
}

/// CLIENT KILL addr | ID id | ADDR addr | LADDR addr ...: the old form answers OK or an
/// error, the new form the number killed.
fn kill(gateway: &Gateway, args: &[&[u8]]) -> Reply {
    if let [address] = args {
        let address = String::from_utf8_lossy(address);
        let found = gateway
            .clients
            .all()
            .into_iter()
            .find(|entry| entry.address.to_string() == address);
        return match found {
            Some(entry) => {
                entry.kill.notify_one();
                OK
            }
            None => Reply::error("ERR No such client"),
        };
    }
    if args.is_empty() || !args.len().is_multiple_of(2) {
        return syntax_error();
    }
    let mut killed = 0;
    for entry in gateway.clients.all() {
        let matches = args.chunks_exact(2).all(|filter| {
            let value = String::from_utf8_lossy(filter[1]);
            if is(filter[0], "ID") {
                value == entry.id.to_string()
            } else if is(filter[0], "ADDR") {
                value == entry.address.to_string()
            } else if is(filter[0], "LADDR") {
                value == entry.local_address.to_string()
            } else {
                is(filter[0], "SKIPME") || is(filter[0], "USER") && value == "default"
            }
        });
        if matches {
            entry.kill.notify_one();
            killed += 1;
        }
    }
    Reply::Integer(killed)
}
