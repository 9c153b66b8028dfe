//! The shell's side of the shutdown hand-over (the protocol is in
//! [`crate::core::handover`]): a master owning slots with a healthy replica pauses its
//! writes, waits until a replica acknowledged the paused offset, asks the best such
//! replica to take over gracefully, and waits until the core shows it owning the slots.
//! Every wait is bounded by the node's `handover_timeout`; past it the node logs and stops
//! anyway (writes stay paused: it is stopping, and its replica fails over as after a crash).

use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::core::node::NodeId;
use crate::runtime::driver::{DriverRequest, HandOverStep};
use crate::runtime::Node;

/// How often the shutdown polls for the paused offset and for the new owner, in ms.
const POLL_INTERVAL_MS: u64 = 5;

/// Hands this node's slots to a replica before it stops, if it is a master with slots and
/// a healthy replica; returns when that is done or the bound passed.
pub(crate) async fn hand_over_before_shutdown(node: &Node) {
    if node.handover_timeout.is_zero() {
        return;
    }
    let deadline = Instant::now() + node.handover_timeout;
    let table = node.shared.routing.table();
    let myself = table.myself;
    let Some(slot) = (0..slotkv_engine::SLOT_COUNT as u16)
        .find(|slot| table.owner(*slot).is_some_and(|owner| owner.id == myself))
    else {
        return;
    };
    if !table.myself_is_master || table.healthy_replicas_of(&myself).is_empty() {
        return;
    }
    match hand_over(node, slot, deadline).await {
        Ok(replica) => tracing::info!(%replica, "slots handed over before the shutdown"),
        Err(reason) => tracing::warn!(reason, "stopping without a complete hand-over"),
    }
}

async fn hand_over(node: &Node, slot: u16, deadline: Instant) -> Result<NodeId, &'static str> {
    step(node, HandOverStep::Pause).await?;
    let offset = poll_until(deadline, || async {
        node.inspect(|core| core.hand_over_paused_offset())
            .await
            .ok()
            .flatten()
    })
    .await
    .ok_or("writes were not paused in time")?;
    let remaining = deadline.saturating_duration_since(Instant::now());
    node.shared.log.wait(offset, 1, remaining).await;
    let replica = caught_up_replica(node, offset).ok_or("no replica caught up in time")?;
    step(node, HandOverStep::Ask(replica)).await?;
    poll_until(deadline, || async {
        let table = node.shared.routing.table();
        table
            .owner(slot)
            .is_some_and(|owner| owner.id == replica)
            .then_some(())
    })
    .await
    .ok_or("the replica did not take over in time")?;
    Ok(replica)
}

/// The healthy replica with the highest acknowledged offset, if it reached `offset`.
fn caught_up_replica(node: &Node, offset: u64) -> Option<NodeId> {
    let table = node.shared.routing.table();
    let replicas = table.healthy_replicas_of(&table.myself);
    node.shared
        .log
        .replica_offsets()
        .into_iter()
        .filter(|(_, acknowledged)| *acknowledged >= offset)
        .filter_map(|(address, acknowledged)| {
            let replica = replicas.iter().find(|replica| replica.address == address)?;
            Some((acknowledged, replica.id))
        })
        .max_by_key(|(acknowledged, id)| (*acknowledged, std::cmp::Reverse(*id)))
        .map(|(_, id)| id)
}

async fn step(node: &Node, step: HandOverStep) -> Result<(), &'static str> {
    let (reply, answer) = oneshot::channel();
    node.requests
        .send(DriverRequest::HandOver(step, reply))
        .await
        .map_err(|_| "the driver stopped")?;
    match answer.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => {
            tracing::debug!(%error, "hand-over step refused");
            Err("the core refused the hand-over")
        }
        Err(_) => Err("the driver stopped"),
    }
}

/// Polls `check` every [`POLL_INTERVAL_MS`] until it yields a value or `deadline` passes.
async fn poll_until<T, F, Fut>(deadline: Instant, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(POLL_INTERVAL_MS)).await;
    }
}
