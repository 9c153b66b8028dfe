//! The owner's side of the data path: decides, by the spec's rules (8.1, 9), whether to
//! execute a request here or answer MOVED, ASK, TRYAGAIN, CLUSTERDOWN or CROSSSLOT; then
//! executes it through the command registry and, when asked, waits for replica
//! acknowledgements. The rules take the keys and the read/write flag from the command.
//!
//! Rule order: CROSSSLOT; slot unassigned → `CLUSTERDOWN Hash slot not served`; a slot
//! this master withholds after a restart without data → TRYAGAIN; cluster state fail → CLUSTERDOWN (reads pass with `allow_reads_when_down`); owner and migrating
//! → execute if every key exists here, TRYAGAIN if only some do, else ASK the target;
//! importing with ASKING → execute (TRYAGAIN for a multi-key request with missing keys);
//! READONLY read on a replica of the owner → execute; otherwise MOVED. A request on a
//! migrating slot holds the slot's migration gate from the rules through its execution.

use std::time::Duration;

use slotkv_engine::{CommandError, Slot, Store};
use slotkv_transport::{InboundRequest, Responder};

use crate::command::{
    AnyCommand, ExecuteError, KeyList, OwnedCommand, PairList, Value, WireCommandError,
};
use crate::core::slots::SlotState;
use crate::node_state::stats::{Refusal, Served};
use crate::node_state::{NodeState, NodeStats, RoutingTable};
use crate::routing::protocol::{
    CommandRequest, DownReason, Request, Response, REQUEST_FORMAT, RESPONSE_FORMAT,
};

/// What the rules say about one request.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Decision {
    Execute(Slot),
    Answer(Response),
}

/// What a request asks of the rules besides its keys.
#[derive(Debug, Clone, Copy)]
struct Asked {
    read_only: bool,
    asking: bool,
    read_from_replica: bool,
}

fn existing_keys(store: &Store, keys: &[&[u8]]) -> usize {
    keys.iter()
        .filter(|key| store.exists(&[**key]).unwrap_or(0) > 0)
        .count()
}

fn redirect(
    table: &RoutingTable,
    slot: Slot,
    target: &crate::core::node::NodeId,
    ask: bool,
) -> Response {
    let address = table
        .node(target)
        .map(|node| node.address.to_string())
        .unwrap_or_else(|| "?".to_string());
    if ask {
        Response::Ask(slot, target.to_hex(), address)
    } else {
        Response::Moved(slot, target.to_hex(), address)
    }
}

fn decide<B: AsRef<[u8]>, L: KeyList, P: PairList>(
    table: &RoutingTable,
    store: &Store,
    request: &CommandRequest<AnyCommand<B, L, P>>,
) -> Decision {
    let slot = match request.command.slot() {
        Ok(slot) => slot,
        Err(CommandError::CrossSlot) => return Decision::Answer(Response::CrossSlot),
        Err(error) => return Decision::Answer(Response::Failed((&error).into())),
    };
    let asked = Asked {
        read_only: !request.command.writes(),
        asking: request.asking,
        read_from_replica: request.read_from_replica,
    };
    request
        .command
        .with_keys(|keys| decide_slot(table, store, slot, keys, asked))
}

fn decide_slot(
    table: &RoutingTable,
    store: &Store,
    slot: Slot,
    keys: &[&[u8]],
    asked: Asked,
) -> Decision {
    let Some(owner) = table.owner(slot) else {
        return Decision::Answer(Response::Down(DownReason::SlotNotServed));
    };
    if owner.id == table.myself && table.myself_is_master && !table.serves_data {
        // Restarted without data: the slot is being handed to a replica (see
        // `crate::core::handover`), before and after the startup delay; the caller
        // retries TRYAGAIN and follows the new owner.
        return Decision::Answer(Response::TryAgain);
    }
    if !(table.cluster_ok || asked.read_only && table.allow_reads_when_down) {
        let reason = if table.allow_reads_when_down {
            DownReason::ReadOnly
        } else {
            DownReason::ClusterDown
        };
        return Decision::Answer(Response::Down(reason));
    }
    let owner_id = owner.id;
    if owner_id == table.myself && table.myself_is_master {
        if let SlotState::Migrating(target) = table.state(slot) {
            let present = existing_keys(store, keys);
            if present == keys.len() {
                return Decision::Execute(slot);
            }
            if present > 0 {
                return Decision::Answer(Response::TryAgain);
            }
            return Decision::Answer(redirect(table, slot, &target, true));
        }
        if !asked.read_only && !table.accepts_writes {
            return Decision::Answer(Response::TryAgain);
        }
        return Decision::Execute(slot);
    }
    if let SlotState::Importing(_) = table.state(slot) {
        if asked.asking {
            if keys.len() > 1 && existing_keys(store, keys) < keys.len() {
                return Decision::Answer(Response::TryAgain);
            }
            return Decision::Execute(slot);
        }
    }
    if asked.read_from_replica && asked.read_only && table.my_master == Some(owner_id) {
        return Decision::Execute(slot);
    }
    Decision::Answer(redirect(table, slot, &owner_id, false))
}

/// Serves one request on this node and returns the answer. Generic over how the command
/// holds its bytes: a peer's decoded request owns them, this node's own handle lends them.
pub(crate) async fn handle_request<B, L, P>(
    shared: &NodeState,
    request: &Request<AnyCommand<B, L, P>>,
) -> Response
where
    B: AsRef<[u8]> + Sync,
    L: KeyList + Sync,
    P: PairList + Sync,
{
    let request = match request {
        Request::Command(request) => request,
        Request::Wait {
            offset,
            replicas,
            timeout_ms,
        } => {
            let timeout = Duration::from_millis(*timeout_ms);
            let count = shared.log.wait(*offset, *replicas as usize, timeout).await;
            return Response::Done(Value::Integer(count as i64), *offset);
        }
    };
    if let Ok(slot) = request.command.slot() {
        // An atomic migration's flip: answer once it is over (MOVED if it moved).
        shared.wait_out_slot_pause(slot).await;
    }
    let mut table = shared.routing.table();
    // On a migrating slot the rules' look at which keys exist and the execution hold the
    // slot's migration gate, so no migration batch moves a key in between (see
    // `crate::node_state::migration_gate`); the map is read again under it.
    let gate = match request.command.slot() {
        Ok(slot) if matches!(table.state(slot), SlotState::Migrating(_)) => {
            let gate = shared.gates.enter(slot).await;
            table = shared.routing.table();
            Some(gate)
        }
        _ => None,
    };
    let slot = match decide(&table, &shared.store.get(), request) {
        Decision::Execute(slot) => slot,
        Decision::Answer(response) => {
            match response {
                Response::Ask(..) => shared.stats.served(Served::Ask),
                Response::Moved(..) => shared.stats.served(Served::Moved),
                Response::TryAgain => shared.stats.served(Served::TryAgain),
                _ => {}
            }
            return response;
        }
    };
    let executed = request.command.execute(&shared.store, &shared.log, slot);
    drop(gate);
    let (value, offset) = match executed {
        Ok((value, Some(offset))) => (value, offset),
        Ok((value, None)) => (value, shared.log.offset()),
        Err(ExecuteError::Command(error)) => {
            return Response::Failed(WireCommandError::from(&error))
        }
        // Paused or stopped (shutdown) after the rules let it through: as if that had come
        // first; the caller retries and follows the slot to whoever serves it next.
        Err(ExecuteError::WritesClosed | ExecuteError::Stopped) => {
            shared.stats.served(Served::TryAgain);
            return Response::TryAgain;
        }
    };
    let wanted = request.durability_replicas;
    if wanted == 0 || !request.command.writes() {
        return Response::Done(value, offset);
    }
    let timeout = Duration::from_millis(request.durability_timeout_ms);
    let acknowledged = shared.log.wait(offset, wanted as usize, timeout).await as u32;
    if acknowledged < wanted {
        return Response::NotDurable {
            value,
            acknowledged,
        };
    }
    Response::Done(value, offset)
}

/// Serves one decoded request from a peer and sends the answer.
pub(crate) async fn answer(
    shared: &NodeState,
    request: Request<OwnedCommand>,
    responder: Responder,
) {
    let response = handle_request(shared, &request).await;
    let frame = bytes::Bytes::from(RESPONSE_FORMAT.encode(&response));
    if let Err(error) = responder.respond(frame) {
        tracing::debug!(%error, "could not answer a data request");
    }
}

/// Decodes an inbound request. A malformed one (see [`crate::codec`]) is counted, logged at
/// debug and dropped: nothing is applied and the requester sees "unanswered".
pub(crate) fn decode_inbound(
    stats: &NodeStats,
    inbound: &InboundRequest,
) -> Option<Request<OwnedCommand>> {
    match REQUEST_FORMAT.decode(&inbound.payload) {
        Ok(request) => Some(request),
        Err(error) => {
            stats.count(Refusal::MalformedRequest);
            tracing::debug!(from = %inbound.from, %error, "dropped a malformed data request");
            None
        }
    }
}

/// True when serving `request` may wait (durability or WAIT) and so deserves its own task.
pub(crate) fn may_block(request: &Request<OwnedCommand>) -> bool {
    match request {
        Request::Wait { .. } => true,
        Request::Command(request) => request.durability_replicas > 0,
    }
}
