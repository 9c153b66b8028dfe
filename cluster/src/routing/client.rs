//! The data path of a client protocol (the RESP gateway): a keyed command parsed from a
//! client's arguments runs here when this node serves its slot, and is otherwise answered
//! as a Redis Cluster node answers a client, with `MOVED` / `ASK` naming the owner's client
//! address, `TRYAGAIN`, `CROSSSLOT` or `CLUSTERDOWN` ([`ClientRefusal`]). Unlike the
//! [`Cluster`] handle's methods it does not forward: a cluster client follows redirections
//! itself. A plain client's connection can ask otherwise ([`ClientFlags::proxy_redirects`]):
//! a command MOVED or ASK would answer is then forwarded as the handle forwards it.
//!
//! The slot rules are the owner's (`routing::serve`); the local fast path is the handle's
//! (no lock shared with the protocol, the engine's bytes handed out without a copy).

use slotkv_engine::{key_slot, CommandError, Slot};

use crate::command::client::{ClientForm, ClientReply};
use crate::command::{
    append, copy, del, execute_while, exists, expire, get, getdel, getex, getrange, getset, incr,
    incrbyfloat, mget, mset, persist, registered_names, set, setex, setnx, setrange, static_name,
    strlen, touch, ttl, unlink, ClientCommand, ExecuteError, Reply,
};
use crate::core::node::NodeId;
use crate::core::slots::SlotState;
use crate::node_state::{NodeState, RoutingTable};
use crate::routing::error::down_line;
use crate::routing::protocol::{CommandRequest, DownReason, Request, Response};
use crate::routing::{serve, Cluster, ClusterError};

/// Longest command name of the registry, in bytes (names are lowered in a buffer this big).
const COMMAND_NAME_BYTES_MAX: usize = 16;

/// A client connection's state that changes how its commands are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClientFlags {
    /// ASKING was sent just before this command (one shot): an importing slot serves it.
    pub asking: bool,
    /// READONLY: a replica of the slot's master serves reads.
    pub read_only: bool,
    /// Serve a key of another node through this node's forwarding (following MOVED and ASK
    /// itself, as the [`Cluster`] handle does) instead of answering MOVED or ASK: for a
    /// plain, non-cluster client (the gateway's `proxy-redirects yes`).
    pub proxy_redirects: bool,
}

/// Why a client's keyed command was not executed here, worded as Redis words each line.
/// Nothing changed in any case.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientRefusal {
    /// The engine or the argument parse refused it (arity, syntax, type, OOM, ...).
    #[error("{0}")]
    Command(CommandError),
    /// Another node serves the slot: the client should ask it from now on.
    #[error("MOVED {slot} {address}")]
    Moved {
        /// The slot.
        slot: Slot,
        /// The owner's client address, `ip:port`.
        address: String,
    },
    /// The slot is migrating: ask the target, once, after ASKING.
    #[error("ASK {slot} {address}")]
    Ask {
        /// The slot.
        slot: Slot,
        /// The target's client address, `ip:port`.
        address: String,
    },
    /// Retry later: a multi-key request during a migration, or writes paused.
    #[error("TRYAGAIN Multiple keys request during rehashing of slot")]
    TryAgain,
    /// The keys span slots.
    #[error("CROSSSLOT Keys in request don't hash to the same slot")]
    CrossSlot,
    /// The cluster refuses keyed commands.
    #[error("{}", down_line(*.0))]
    ClusterDown(DownReason),
    /// The node is shutting down and takes no more writes.
    #[error("ERR the node is shutting down")]
    Shutdown,
    /// With [`ClientFlags::proxy_redirects`]: forwarding to the slot's owner failed (the
    /// owner did not answer in time, the link failed, its answer did not decode, or the
    /// slot kept redirecting). The command may have been executed there.
    #[error("ERR proxying to the slot's owner failed: {0}")]
    Proxy(String),
}

impl Cluster {
    /// Whether `name` (any case) is a keyed command of the registry, which
    /// [`Cluster::execute_client`] serves.
    pub fn is_client_command(name: &[u8]) -> bool {
        lowered_name(name).is_some()
    }

    /// Every keyed command name of the registry, lower case.
    pub fn client_command_names() -> impl Iterator<Item = &'static str> {
        registered_names()
    }

    /// Runs a client's keyed command (`args[0]` is its name, any case) by the rules of a
    /// Redis Cluster node (see the module docs); `None` when the name is no keyed command.
    pub async fn execute_client(
        &self,
        args: &[&[u8]],
        flags: ClientFlags,
    ) -> Option<Result<ClientReply, ClientRefusal>> {
        let (name, args) = args.split_first()?;
        let name = lowered_name(name)?;
        Some(dispatch(self, name, args, flags).await)
    }
}

impl Cluster {
    /// Redis Cluster's rule for MIGRATE's keys on the source: they must share one slot
    /// (else `CROSSSLOT`); a slot open here (MIGRATING or IMPORTING) lets MIGRATE run
    /// whatever the keys, so keys can move freely during a migration; otherwise this node
    /// must master the slot (else `MOVED` to its owner, `CLUSTERDOWN` when the cluster is
    /// down or nobody serves it, `TRYAGAIN` while writes are paused). No key at all passes
    /// (MIGRATE then answers NOKEY).
    pub fn check_migrate_keys(&self, keys: &[&[u8]]) -> Result<(), ClientRefusal> {
        let Some(first) = keys.first() else {
            return Ok(());
        };
        let slot = key_slot(first);
        if keys.iter().any(|key| key_slot(key) != slot) {
            return Err(ClientRefusal::CrossSlot);
        }
        migrate_rule(&self.shared.routing.table(), slot)
    }
}

/// [`Cluster::check_migrate_keys`] for one slot, on a snapshot of the slot map.
fn migrate_rule(table: &RoutingTable, slot: Slot) -> Result<(), ClientRefusal> {
    let Some(owner) = table.owner(slot) else {
        return Err(ClientRefusal::ClusterDown(DownReason::SlotNotServed));
    };
    let mine = owner.id == table.myself && table.myself_is_master;
    if mine && !table.serves_data {
        return Err(ClientRefusal::TryAgain);
    }
    if !table.cluster_ok {
        return Err(ClientRefusal::ClusterDown(DownReason::ClusterDown));
    }
    if table.state(slot) != SlotState::Stable {
        return Ok(());
    }
    if !mine {
        return match table.client_address(&owner.id) {
            Some(address) => Err(ClientRefusal::Moved {
                slot,
                address: address.to_string(),
            }),
            None => Err(ClientRefusal::ClusterDown(DownReason::SlotNotServed)),
        };
    }
    if !table.accepts_writes {
        return Err(ClientRefusal::TryAgain);
    }
    Ok(())
}

/// The registry's spelling of `name` compared without regard to case.
fn lowered_name(name: &[u8]) -> Option<&'static str> {
    if name.len() > COMMAND_NAME_BYTES_MAX {
        return None;
    }
    let mut buffer = [0u8; COMMAND_NAME_BYTES_MAX];
    let lowered = &mut buffer[..name.len()];
    lowered.copy_from_slice(name);
    lowered.make_ascii_lowercase();
    static_name(std::str::from_utf8(lowered).ok()?)
}

/// Parses and runs the command named `name` (one arm per command type of the registry;
/// `every_registered_name_is_dispatched` keeps the two lists equal).
async fn dispatch<'a>(
    cluster: &Cluster,
    name: &'static str,
    args: &'a [&'a [u8]],
    flags: ClientFlags,
) -> Result<ClientReply, ClientRefusal> {
    type B<'b> = &'b [u8];
    type L<'b> = &'b [&'b [u8]];
    type P<'b> = Vec<(&'b [u8], &'b [u8])>;
    match name {
        "get" => run::<get::Get<B<'a>>>(cluster, name, args, flags).await,
        "set" => run::<set::Set<B<'a>>>(cluster, name, args, flags).await,
        "del" => run::<del::Del<L<'a>>>(cluster, name, args, flags).await,
        "exists" => run::<exists::Exists<L<'a>>>(cluster, name, args, flags).await,
        "expire" | "pexpire" | "expireat" | "pexpireat" => {
            run::<expire::Expire<B<'a>>>(cluster, name, args, flags).await
        }
        "persist" => run::<persist::Persist<B<'a>>>(cluster, name, args, flags).await,
        "pttl" | "ttl" => run::<ttl::Pttl<B<'a>>>(cluster, name, args, flags).await,
        "incrby" | "incr" => run::<incr::IncrBy<B<'a>>>(cluster, name, args, flags).await,
        "decrby" | "decr" => run::<incr::DecrBy<B<'a>>>(cluster, name, args, flags).await,
        "append" => run::<append::Append<B<'a>>>(cluster, name, args, flags).await,
        "strlen" => run::<strlen::Strlen<B<'a>>>(cluster, name, args, flags).await,
        "getdel" => run::<getdel::GetDel<B<'a>>>(cluster, name, args, flags).await,
        "getex" => run::<getex::GetEx<B<'a>>>(cluster, name, args, flags).await,
        "mget" => run::<mget::MGet<L<'a>>>(cluster, name, args, flags).await,
        "mset" => run::<mset::MSet<P<'a>>>(cluster, name, args, flags).await,
        "msetnx" => run::<mset::MSetNx<P<'a>>>(cluster, name, args, flags).await,
        "setrange" => run::<setrange::SetRange<B<'a>>>(cluster, name, args, flags).await,
        "getrange" => run::<getrange::GetRange<B<'a>>>(cluster, name, args, flags).await,
        "getset" => run::<getset::GetSet<B<'a>>>(cluster, name, args, flags).await,
        "setnx" => run::<setnx::SetNx<B<'a>>>(cluster, name, args, flags).await,
        "setex" | "psetex" => run::<setex::SetEx<B<'a>>>(cluster, name, args, flags).await,
        "incrbyfloat" => run::<incrbyfloat::IncrByFloat<B<'a>>>(cluster, name, args, flags).await,
        "copy" => run::<copy::Copy<B<'a>>>(cluster, name, args, flags).await,
        "touch" => run::<touch::Touch<L<'a>>>(cluster, name, args, flags).await,
        "unlink" => run::<unlink::Unlink<L<'a>>>(cluster, name, args, flags).await,
        // `static_name` only yields registered names, and each has an arm above.
        _ => Err(ClientRefusal::Command(CommandError::Syntax)),
    }
}

/// Parses `args` as a `C` and runs it: on the local engine when this node serves the slot
/// on the fast path, else by the owner's rules, whose redirections name client addresses
/// (or, with [`ClientFlags::proxy_redirects`], are followed by forwarding).
async fn run<'a, C>(
    cluster: &Cluster,
    name: &'static str,
    args: &'a [&'a [u8]],
    flags: ClientFlags,
) -> Result<ClientReply, ClientRefusal>
where
    C: ClientForm<'a> + Into<ClientCommand<'a>> + Clone + Sync,
{
    let shared: &NodeState = &cluster.shared;
    let command = C::from_args(name, args).map_err(ClientRefusal::Command)?;
    let slot = command.slot().map_err(|error| match error {
        CommandError::CrossSlot => ClientRefusal::CrossSlot,
        other => ClientRefusal::Command(other),
    })?;
    if !flags.asking && shared.routing.is_local(slot, C::WRITES, flags.read_only) {
        // As on the handle's fast path: a write re-checks the slot under its stripe, and a
        // read counts only if the slot was still local after it (a migration batch may
        // have moved its keys meanwhile); otherwise the owner's rules decide (ASK).
        let still_local = || shared.routing.is_local(slot, C::WRITES, flags.read_only);
        match execute_while(&shared.store, &shared.log, slot, &command, still_local) {
            Ok((output, _)) if !C::WRITES && !still_local() => drop(output),
            Ok((output, _)) => return Ok(command.client_reply(name, output)),
            Err(ExecuteError::Command(error)) => return Err(ClientRefusal::Command(error)),
            // Stopped for good under the write's stripe (shutdown).
            Err(ExecuteError::Stopped) => return Err(ClientRefusal::Shutdown),
            // Paused after the routing check: the rules below answer TRYAGAIN.
            Err(ExecuteError::WritesClosed) => {}
        }
    }
    let request: Request<ClientCommand<'a>> = Request::Command(CommandRequest {
        command: command.clone().into(),
        asking: flags.asking,
        read_from_replica: flags.read_only,
        durability_replicas: 0,
        durability_timeout_ms: 0,
    });
    match serve::handle_request(shared, &request).await {
        Response::Done(value, _) | Response::NotDurable { value, .. } => {
            match C::Output::from_value(value) {
                Some(output) => Ok(command.client_reply(name, output)),
                // The value came from this node's own registry: always of the right shape.
                None => Err(ClientRefusal::Command(CommandError::Syntax)),
            }
        }
        Response::Failed(error) => Err(ClientRefusal::Command(
            error.to_engine().unwrap_or(CommandError::Syntax),
        )),
        Response::Moved(..) | Response::Ask(..) if flags.proxy_redirects => {
            let value = cluster
                .forward(slot, cluster.request(command.clone().into()))
                .await
                .map_err(proxy_refusal)?;
            match C::Output::from_value(value) {
                Some(output) => Ok(command.client_reply(name, output)),
                // `forward` decoded the owner's answer for this command's registry entry.
                None => Err(ClientRefusal::Proxy(
                    "the answer does not fit the command".into(),
                )),
            }
        }
        Response::Moved(slot, target, _) => Err(redirection(shared, slot, &target, false)),
        Response::Ask(slot, target, _) => Err(redirection(shared, slot, &target, true)),
        Response::TryAgain => Err(ClientRefusal::TryAgain),
        Response::Down(reason) => Err(ClientRefusal::ClusterDown(reason)),
        Response::CrossSlot => Err(ClientRefusal::CrossSlot),
    }
}

/// A forwarding failure as a client's refusal: the lines a client knows stay Redis's.
fn proxy_refusal(error: ClusterError) -> ClientRefusal {
    match error {
        ClusterError::Command(error) => ClientRefusal::Command(error),
        ClusterError::CrossSlot => ClientRefusal::CrossSlot,
        ClusterError::ClusterDown(reason) => ClientRefusal::ClusterDown(reason),
        ClusterError::TryAgain { .. } => ClientRefusal::TryAgain,
        ClusterError::Shutdown => ClientRefusal::Shutdown,
        other => ClientRefusal::Proxy(other.to_string()),
    }
}

/// MOVED or ASK naming the client address of node `target` (its id in hex, as the owner's
/// rules name it); CLUSTERDOWN when the node left the table meanwhile.
fn redirection(shared: &NodeState, slot: Slot, target: &str, ask: bool) -> ClientRefusal {
    let table = shared.routing.table();
    let address = NodeId::parse_hex(target)
        .ok()
        .and_then(|id| table.client_address(&id).map(str::to_string));
    match (address, ask) {
        (Some(address), false) => ClientRefusal::Moved { slot, address },
        (Some(address), true) => ClientRefusal::Ask { slot, address },
        (None, _) => ClientRefusal::ClusterDown(DownReason::SlotNotServed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_registered_name_is_dispatched_and_names_ignore_case() {
        for name in registered_names() {
            assert_eq!(
                lowered_name(name.to_ascii_uppercase().as_bytes()),
                Some(name)
            );
        }
        assert_eq!(lowered_name(b"FLUSHALL"), None);
        assert_eq!(lowered_name(&[b'g'; 40]), None);
        assert!(registered_names().all(|name| name.len() <= COMMAND_NAME_BYTES_MAX));
    }
}
