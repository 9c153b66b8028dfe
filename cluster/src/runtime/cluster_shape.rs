//! Changing the cluster's shape over nodes of this process, as `redis-cli --cluster
//! rebalance / add-node / del-node` do it: [`rebalance`] asks the pure planner
//! (`crate::slot_migration::balance`) which slots move where and runs each move with
//! [`reshard`] (key by key, resumable; the default) or as one atomic slot migration
//! ([`Node::migrate_slots`]), as [`MoveMethod`] says; [`add_node`] meets a new node in and optionally
//! makes it a replica; [`remove_node`] drains a master's slots onto the other masters,
//! gives its replicas to the masters with the fewest, has every node forget it and resets
//! it. Each step is bounded in time; an error names what was left (a rerun finishes it).

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use slotkv_engine::Slot;

use crate::core::node::NodeId;
use crate::core::slots::SlotRange;
use crate::core::{Core, ResetMode};
use crate::runtime::admin::{wait_for_all, AdminCallError};
use crate::runtime::reshard::{reshard, ReshardError, ReshardOptions, ReshardProgress};
use crate::runtime::Node;
use crate::slot_migration::atomic_source::{SlotMigrationError, SlotMigrationOptions};
use crate::slot_migration::balance::{plan_rebalance, BalanceError, MasterShare, SlotMove};

/// Default of [`RebalanceOptions::threshold_percent`] (redis-cli's).
pub const DEFAULT_REBALANCE_THRESHOLD_PERCENT: f64 = 2.0;

/// Default bound on each wait of [`add_node`] and [`remove_node`] (the cluster agreeing).
pub const DEFAULT_SHAPE_TIMEOUT: Duration = Duration::from_secs(30);

/// How a [`rebalance`] decides and moves.
#[derive(Debug, Clone, PartialEq)]
pub struct RebalanceOptions {
    /// Weights of masters (`--cluster-weight id=w`); a master not listed weighs 1, and a
    /// weight of 0 drains it.
    pub weights: Vec<(NodeId, u32)>,
    /// Rebalance only if some master is more than this many percent off its share
    /// (default [`DEFAULT_REBALANCE_THRESHOLD_PERCENT`]).
    pub threshold_percent: f64,
    /// Give slots to masters that own none (`--cluster-use-empty-masters`); a master given a
    /// weight counts either way.
    pub use_empty_masters: bool,
    /// How each move runs.
    pub method: MoveMethod,
}

/// How a shape change moves slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoveMethod {
    /// Each move is one atomic slot migration from its source ([`Node::migrate_slots`]):
    /// no ASK, one epoch bump per move; a failed move leaves its slots with the source.
    /// Progress is reported per batch with `slots_done` 0 until the move's flip, then all
    /// of its slots. The default.
    Atomic(SlotMigrationOptions),
    /// Each move is a key-by-key [`reshard`] (Redis's path, ASK during the move; a failed
    /// move is finished by a rerun).
    KeyByKey(ReshardOptions),
}

impl Default for MoveMethod {
    fn default() -> Self {
        MoveMethod::Atomic(SlotMigrationOptions::default())
    }
}

impl Default for RebalanceOptions {
    fn default() -> Self {
        RebalanceOptions {
            weights: Vec::new(),
            threshold_percent: DEFAULT_REBALANCE_THRESHOLD_PERCENT,
            use_empty_masters: false,
            method: MoveMethod::default(),
        }
    }
}

/// One move a rebalance or removal made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MoveSummary {
    /// The master that gave the slots.
    pub from: NodeId,
    /// The master that took them.
    pub to: NodeId,
    /// How many.
    pub slots: usize,
}

/// What a finished [`rebalance`] or [`remove_node`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ShapeReport {
    /// The moves, in order (empty: already balanced).
    pub moves: Vec<MoveSummary>,
    /// Keys moved.
    pub keys_moved: u64,
    /// Their key and value bytes.
    pub bytes_moved: u64,
    /// Replicas given to another master ([`remove_node`]).
    pub replicas_moved: usize,
    /// Wall time.
    pub elapsed: Duration,
}

/// Why a shape change stopped. Moves before the failing one are done; see
/// [`ReshardError`] for what a failed move left (a rerun finishes it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    /// A node the operation needs is not among the nodes given.
    #[error("node {0} is not among the nodes given")]
    UnknownNode(NodeId),
    /// The node to remove or to follow is not a master.
    #[error("node {0} is not a master")]
    NotAMaster(NodeId),
    /// Every master has weight 0.
    #[error("every master has weight 0: no master could take the slots")]
    NoWeight,
    /// No other master could take a removed master's slots or replicas.
    #[error("node {0} is the only master: there is nowhere to move its slots")]
    LastMaster(NodeId),
    /// A key-by-key move failed.
    #[error(transparent)]
    Reshard(#[from] ReshardError),
    /// An atomic move failed; its slots stayed with its source.
    #[error("moving {slots} slots from {from} to {to}: {error}")]
    Migration {
        /// The move's source.
        from: NodeId,
        /// The move's target.
        to: NodeId,
        /// Its slots.
        slots: usize,
        /// Why.
        error: SlotMigrationError,
    },
    /// An admin call failed or the cluster did not agree in time.
    #[error(transparent)]
    Admin(#[from] AdminCallError),
}

/// Brings the masters among `nodes` to their weighted shares of the slots (see
/// [`RebalanceOptions`]); `nodes` must hold every master that owns slots. `progress` sees
/// every batch of every move; `ControlFlow::Break` cancels (see [`reshard`]).
pub async fn rebalance(
    nodes: &[&Node],
    options: &RebalanceOptions,
    mut progress: impl FnMut(&ReshardProgress) -> ControlFlow<()>,
) -> Result<ShapeReport, ShapeError> {
    let started = Instant::now();
    let masters = master_shares(nodes, options).await?;
    let moves = plan_rebalance(&masters, options.threshold_percent).map_err(balance_error)?;
    let mut report = run_moves(
        nodes,
        &moves,
        options.method,
        DEFAULT_SHAPE_TIMEOUT,
        &mut progress,
    )
    .await?;
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Meets `new` into the cluster of `nodes` and waits until each knows the other; with
/// `as_replica_of`, then makes it that master's replica and waits until its link is up.
pub async fn add_node(
    nodes: &[&Node],
    new: &Node,
    as_replica_of: Option<NodeId>,
    timeout: Duration,
) -> Result<(), ShapeError> {
    let Some(first) = nodes.first() else {
        return Err(ShapeError::UnknownNode(new.id()));
    };
    new.meet(first.bus_address()).await?;
    let new_id = new.id();
    let ids: Vec<NodeId> = nodes.iter().map(|node| node.id()).collect();
    wait_for_all(nodes, timeout, "learn the new node", move |core| {
        knows(core, &new_id)
    })
    .await?;
    wait_for_all(
        &[new],
        timeout,
        "show the new node the cluster",
        move |core| ids.iter().all(|id| knows(core, id)),
    )
    .await?;
    let Some(master) = as_replica_of else {
        return Ok(());
    };
    let is_master = first
        .inspect(move |core| core.node(&master).is_some_and(|node| node.is_master()))
        .await?;
    if !is_master {
        return Err(ShapeError::NotAMaster(master));
    }
    new.replicate(master).await?;
    let deadline = tokio::time::Instant::now() + timeout;
    while !new.master_link_up() {
        if tokio::time::Instant::now() >= deadline {
            return Err(AdminCallError::Timeout {
                stage: "sync the new replica",
                timeout_ms: timeout.as_millis() as u64,
            }
            .into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Removes node `id` from the cluster of `nodes` (which must hold it, every master that
/// owns slots and its replicas): a master's slots are drained onto the other masters
/// evenly, its replicas follow the masters with the fewest replicas, every other node
/// forgets it and it is reset (soft) so it forgets them. The caller may then shut it down.
pub async fn remove_node(
    nodes: &[&Node],
    id: NodeId,
    method: MoveMethod,
    timeout: Duration,
    mut progress: impl FnMut(&ReshardProgress) -> ControlFlow<()>,
) -> Result<ShapeReport, ShapeError> {
    let started = Instant::now();
    let removed = find(nodes, id)?;
    let others: Vec<&Node> = nodes
        .iter()
        .copied()
        .filter(|node| node.id() != id)
        .collect();
    let mut report = ShapeReport::default();
    let removed_is_master = removed.inspect(|core| core.myself().is_master()).await?;
    if removed_is_master {
        let drain = RebalanceOptions {
            weights: vec![(id, 0)],
            use_empty_masters: true,
            ..RebalanceOptions::default()
        };
        let masters = master_shares(nodes, &drain).await?;
        if masters.iter().all(|master| master.id == id) {
            let owns = masters.iter().any(|master| !master.slots.is_empty());
            if owns {
                return Err(ShapeError::LastMaster(id));
            }
        }
        // Only the removed master's slots move: the others keep their layout.
        let moves: Vec<SlotMove> = match plan_rebalance(&masters, 0.0) {
            Ok(moves) => moves
                .into_iter()
                .filter(|planned| planned.from == id)
                .collect(),
            Err(BalanceError::NoWeight) => return Err(ShapeError::LastMaster(id)),
            Err(error) => return Err(balance_error(error)),
        };
        report = run_moves(nodes, &moves, method, timeout, &mut progress).await?;
        report.replicas_moved = move_replicas(nodes, &others, id, timeout).await?;
    }
    wait_for_all(
        &others,
        timeout,
        "see the removed node own no slot",
        move |core| core.slot_table().count_of(&id) == 0,
    )
    .await?;
    for node in &others {
        // FORGET spreads cluster-wide: a node reached late may have forgotten it already.
        if let Err(error) = node.forget(id).await {
            let already = !node.inspect(move |core| core.node(&id).is_some()).await?;
            if !already {
                return Err(error.into());
            }
        }
    }
    wait_for_all(&others, timeout, "forget the removed node", move |core| {
        core.node(&id).is_none()
    })
    .await?;
    removed.reset(ResetMode::Soft).await?;
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Gives each replica of `id` to the other master with the fewest replicas.
async fn move_replicas(
    nodes: &[&Node],
    others: &[&Node],
    id: NodeId,
    timeout: Duration,
) -> Result<usize, ShapeError> {
    let replicas: Vec<NodeId> = nodes[0]
        .inspect(move |core| core.replicas_of(&id).map(|node| node.id).collect())
        .await?;
    let mut moved = 0;
    for replica_id in replicas {
        let replica = find(nodes, replica_id)?;
        let counts: Vec<(NodeId, usize)> = nodes[0]
            .inspect(move |core| {
                core.nodes()
                    .filter(|node| node.is_master() && node.id != id && !node.is_failed())
                    .map(|node| (node.id, core.replicas_of(&node.id).count()))
                    .collect()
            })
            .await?;
        let Some((master, _)) = counts
            .into_iter()
            .filter(|(master, _)| others.iter().any(|node| node.id() == *master))
            .min_by_key(|(master, replicas)| (*replicas, *master))
        else {
            return Err(ShapeError::LastMaster(id));
        };
        replica.replicate(master).await?;
        wait_for_all(&[replica], timeout, "attach a moved replica", move |core| {
            core.my_master() == Some(master)
        })
        .await?;
        moved += 1;
    }
    Ok(moved)
}

/// Runs `moves` in order as `method` says, summing what they did.
async fn run_moves(
    nodes: &[&Node],
    moves: &[SlotMove],
    method: MoveMethod,
    timeout: Duration,
    progress: &mut impl FnMut(&ReshardProgress) -> ControlFlow<()>,
) -> Result<ShapeReport, ShapeError> {
    let mut report = ShapeReport::default();
    for planned in moves {
        let (keys, bytes) = match method {
            MoveMethod::KeyByKey(options) => {
                let done = reshard(
                    nodes,
                    planned.from,
                    planned.to,
                    &planned.slots,
                    options,
                    &mut *progress,
                )
                .await?;
                (done.keys_moved, done.bytes_moved)
            }
            MoveMethod::Atomic(options) => {
                migrate_atomically(nodes, planned, options, timeout, &mut *progress).await?
            }
        };
        report.keys_moved += keys;
        report.bytes_moved += bytes;
        report.moves.push(MoveSummary {
            from: planned.from,
            to: planned.to,
            slots: planned.slots.len(),
        });
    }
    Ok(report)
}

/// One planned move as one atomic migration; returns the keys and bytes sent once every
/// node of `nodes` sees the target own the slots (within `timeout`), as a key-by-key move's
/// SETSLOT NODE to every node leaves them: the next move plans from an agreed map.
async fn migrate_atomically(
    nodes: &[&Node],
    planned: &SlotMove,
    options: SlotMigrationOptions,
    timeout: Duration,
    progress: &mut impl FnMut(&ReshardProgress) -> ControlFlow<()>,
) -> Result<(u64, u64), ShapeError> {
    let source = find(nodes, planned.from)?;
    find(nodes, planned.to)?;
    let ranges = ranges_of(&planned.slots);
    let first = planned.slots.first().copied().unwrap_or(0);
    let total = planned.slots.len();
    let done = source
        .migrate_slots(&ranges, planned.to, options, |batch| {
            progress(&ReshardProgress {
                slot: first,
                slots_done: 0,
                slots_total: total,
                keys_moved: batch.keys_sent,
                bytes_moved: batch.bytes_sent,
            })
        })
        .await
        .map_err(|error| ShapeError::Migration {
            from: planned.from,
            to: planned.to,
            slots: total,
            error,
        })?;
    let _ = progress(&ReshardProgress {
        slot: first,
        slots_done: total,
        slots_total: total,
        keys_moved: done.keys_sent,
        bytes_moved: done.bytes_sent,
    });
    let (to, slots) = (planned.to, planned.slots.clone());
    wait_for_all(
        nodes,
        timeout,
        "agree on a migration's new owner",
        move |core| {
            slots
                .iter()
                .all(|slot| core.slot_table().owner(*slot) == Some(to))
        },
    )
    .await?;
    Ok((done.keys_sent, done.bytes_sent))
}

/// The contiguous ranges of `slots` (ascending or not).
fn ranges_of(slots: &[Slot]) -> Vec<SlotRange> {
    let mut sorted = slots.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut ranges: Vec<SlotRange> = Vec::new();
    for slot in sorted {
        match ranges.last_mut() {
            Some(range) if range.end + 1 == slot => range.end = slot,
            _ => ranges.push(SlotRange {
                start: slot,
                end: slot,
            }),
        }
    }
    ranges
}

/// The masters a rebalance considers, with their slots (as the first node sees them)
/// and weights.
async fn master_shares(
    nodes: &[&Node],
    options: &RebalanceOptions,
) -> Result<Vec<MasterShare>, ShapeError> {
    let Some(first) = nodes.first() else {
        return Ok(Vec::new());
    };
    let owners: Vec<(NodeId, Vec<Slot>)> = first
        .inspect(|core| {
            let mut owners: Vec<(NodeId, Vec<Slot>)> = Vec::new();
            for (range, owner) in core.slot_table().owner_ranges() {
                match owners.iter_mut().find(|(id, _)| *id == owner) {
                    Some((_, slots)) => slots.extend(range.slots()),
                    None => owners.push((owner, range.slots().collect())),
                }
            }
            owners
        })
        .await?;
    let mut masters = Vec::new();
    for (owner, _) in &owners {
        find(nodes, *owner)?;
    }
    for node in nodes {
        if !node.inspect(|core| core.myself().is_master()).await? {
            continue;
        }
        let id = node.id();
        let slots = owners
            .iter()
            .find(|(owner, _)| *owner == id)
            .map(|(_, slots)| slots.clone())
            .unwrap_or_default();
        let weight = options.weights.iter().find(|(weighed, _)| *weighed == id);
        if slots.is_empty() && weight.is_none() && !options.use_empty_masters {
            continue;
        }
        masters.push(MasterShare {
            id,
            slots,
            weight: weight.map_or(1, |(_, weight)| *weight),
        });
    }
    Ok(masters)
}

fn knows(core: &Core, id: &NodeId) -> bool {
    core.myself_id() == *id || core.node(id).is_some_and(|node| !node.in_handshake())
}

fn find<'a>(nodes: &[&'a Node], id: NodeId) -> Result<&'a Node, ShapeError> {
    nodes
        .iter()
        .copied()
        .find(|node| node.id() == id)
        .ok_or(ShapeError::UnknownNode(id))
}

fn balance_error(error: BalanceError) -> ShapeError {
    match error {
        BalanceError::NoWeight => ShapeError::NoWeight,
        BalanceError::Duplicate(id) => ShapeError::UnknownNode(id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_move_s_slots_become_their_contiguous_ranges() {
        let range = |start, end| SlotRange { start, end };
        assert_eq!(
            ranges_of(&[7, 3, 4, 5, 9, 10, 4]),
            vec![range(3, 5), range(7, 7), range(9, 10)]
        );
        assert!(ranges_of(&[]).is_empty());
        assert_eq!(ranges_of(&[16_383]), vec![range(16_383, 16_383)]);
    }
}
