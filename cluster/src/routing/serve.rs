//! The owner's side of the data path: decides, by the spec's rules (8.1, 9), whether to
//! execute a request here or answer MOVED, ASK, TRYAGAIN, CLUSTERDOWN or CROSSSLOT; then
//! executes it and, when asked, waits for replica acknowledgements.
//!
//! Rule order: CROSSSLOT; slot unassigned → `CLUSTERDOWN Hash slot not served`; cluster
//! state fail → CLUSTERDOWN (reads pass with `allow_reads_when_down`); owner and migrating
//! → execute if every key exists here, TRYAGAIN if only some do, else ASK the target;
//! importing with ASKING → execute (TRYAGAIN for a multi-key request with missing keys);
//! READONLY read on a replica of the owner → execute; otherwise MOVED.

use std::time::Duration;

use slotkv_engine::{key_slot, Slot, Store};
use slotkv_transport::{InboundRequest, Responder};

use crate::core::slots::SlotState;
use crate::node_state::stats::Refusal;
use crate::node_state::{NodeState, NodeStats, RoutingTable};
use crate::routing::execute::execute;
use crate::routing::protocol::{
    decode_request, encode_response, Command, DownReason, Request, Response, WireCommandError,
};

/// What the rules say about one request.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Decision {
    Execute(Slot),
    Answer(Response),
}

/// The common slot of `keys`, or `None` when they span slots (or there are none).
pub(crate) fn common_slot(keys: &[&[u8]]) -> Option<Slot> {
    let first = key_slot(keys.first()?);
    keys.iter()
        .all(|key| key_slot(key) == first)
        .then_some(first)
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

fn decide(table: &RoutingTable, store: &Store, request: &Request) -> Decision {
    let keys = request.command.keys();
    let Some(slot) = common_slot(&keys) else {
        return Decision::Answer(Response::CrossSlot);
    };
    let read_only = request.command.is_read_only();
    let Some(owner) = table.owner(slot) else {
        return Decision::Answer(Response::Down(DownReason::SlotNotServed));
    };
    if !(table.cluster_ok || read_only && table.allow_reads_when_down) {
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
            let present = existing_keys(store, &keys);
            if present == keys.len() {
                return Decision::Execute(slot);
            }
            if present > 0 {
                return Decision::Answer(Response::TryAgain);
            }
            return Decision::Answer(redirect(table, slot, &target, true));
        }
        if !read_only && !table.accepts_writes {
            return Decision::Answer(Response::TryAgain);
        }
        return Decision::Execute(slot);
    }
    if let SlotState::Importing(_) = table.state(slot) {
        if request.asking {
            if keys.len() > 1 && existing_keys(store, &keys) < keys.len() {
                return Decision::Answer(Response::TryAgain);
            }
            return Decision::Execute(slot);
        }
    }
    if request.read_from_replica && read_only && table.my_master == Some(owner_id) {
        return Decision::Execute(slot);
    }
    Decision::Answer(redirect(table, slot, &owner_id, false))
}

/// Serves one request on this node and returns the answer.
pub(crate) async fn handle_request(shared: &NodeState, request: &Request) -> Response {
    if let Command::Wait {
        offset,
        replicas,
        timeout_ms,
    } = request.command
    {
        let count = shared
            .log
            .wait(offset, replicas as usize, Duration::from_millis(timeout_ms))
            .await;
        return Response::Done(
            crate::routing::protocol::Value::Integer(count as i64),
            offset,
        );
    }
    let table = shared.routing.table();
    let slot = match decide(&table, &shared.store.get(), request) {
        Decision::Execute(slot) => slot,
        Decision::Answer(response) => return response,
    };
    let (value, offset) = match execute(&shared.store, &shared.log, slot, &request.command) {
        Ok(done) => done,
        Err(error) => return Response::Failed(WireCommandError::from(&error)),
    };
    let wanted = request.durability_replicas;
    if wanted == 0 || request.command.is_read_only() {
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
pub(crate) async fn answer(shared: &NodeState, request: Request, responder: Responder) {
    let response = handle_request(shared, &request).await;
    let frame = bytes::Bytes::from(encode_response(&response));
    if let Err(error) = responder.respond(frame) {
        tracing::debug!(%error, "could not answer a data request");
    }
}

/// Decodes an inbound request; malformed ones are dropped and counted (the requester sees
/// "unanswered").
pub(crate) fn decode_inbound(stats: &NodeStats, inbound: &InboundRequest) -> Option<Request> {
    match decode_request(&inbound.payload) {
        Ok(request) => Some(request),
        Err(error) => {
            stats.count(Refusal::MalformedRequest);
            tracing::debug!(from = %inbound.from, %error, "dropped a malformed data request");
            None
        }
    }
}

/// True when serving `request` may wait (durability or WAIT) and so deserves its own task.
pub(crate) fn may_block(request: &Request) -> bool {
    request.durability_replicas > 0 || matches!(request.command, Command::Wait { .. })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_slot_requires_one_slot() {
        assert_eq!(common_slot(&[b"{a}x", b"{a}y"]), Some(key_slot(b"a")));
        assert_eq!(common_slot(&[b"foo", b"bar"]), None);
        assert_eq!(common_slot(&[]), None);
    }
}
