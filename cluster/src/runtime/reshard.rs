//! [`reshard`]: `redis-cli --cluster reshard` as a library call over nodes of this process.
//! For each slot it asks the pure plan (`crate::slot_migration::plan`) which steps are
//! left, then runs them: SETSLOT IMPORTING on the target, MIGRATING on the source, MIGRATE
//! of the slot's keys in batches until the source holds none, SETSLOT NODE on the target
//! (its configEpoch bump), the source and every other master. Every step is retried a
//! bounded number of times; on failure or cancel the slot stays open (MIGRATING /
//! IMPORTING: every key readable through ASK) and the error names the open slots; a rerun
//! with the same arguments finishes them.

use std::num::NonZeroUsize;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use slotkv_engine::Slot;
use slotkv_transport::PeerAddr;

use crate::core::node::NodeId;
use crate::core::slots::SlotState;
use crate::core::{AdminError, SetSlotAction};
use crate::runtime::admin::AdminCallError;
use crate::runtime::Node;
use crate::slot_migration::batch::BATCH_KEYS_MAX;
use crate::slot_migration::plan::{plan_slot, SlotView, Step};
use crate::slot_migration::source::{MigrateOptions, MigrateReply};

/// Default keys per MIGRATE batch of a reshard.
pub const DEFAULT_RESHARD_KEYS_PER_BATCH: usize = 1_000;

/// Default attempts per step of a reshard.
pub const DEFAULT_RESHARD_ATTEMPTS_MAX: u32 = 5;

/// How a [`reshard`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReshardOptions {
    /// Keys per MIGRATE batch (GETKEYSINSLOT count); at most 10,000 (a batch's bound).
    pub keys_per_batch: NonZeroUsize,
    /// Options of each MIGRATE. REPLACE by default: a copy a failed earlier batch left at
    /// the target is stale, the source's is the live one.
    pub migrate: MigrateOptions,
    /// Attempts per step before the reshard stops (at least 1).
    pub attempts_max: u32,
    /// Wait before the first retry of a step, doubled per retry, in ms.
    pub retry_backoff_ms: u64,
    /// A former target whose open migrations `to` may continue: set it when that target
    /// died and `to` is its promoted replica (which holds the keys it had received).
    pub retarget_from: Option<NodeId>,
}

impl Default for ReshardOptions {
    fn default() -> Self {
        ReshardOptions {
            keys_per_batch: NonZeroUsize::new(DEFAULT_RESHARD_KEYS_PER_BATCH)
                .unwrap_or(NonZeroUsize::MIN),
            migrate: MigrateOptions {
                replace: true,
                ..MigrateOptions::default()
            },
            attempts_max: DEFAULT_RESHARD_ATTEMPTS_MAX,
            retry_backoff_ms: 50,
            retarget_from: None,
        }
    }
}

/// Progress of a reshard, reported after every batch and every finished slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReshardProgress {
    /// The slot being moved.
    pub slot: Slot,
    /// Slots finished.
    pub slots_done: usize,
    /// Slots asked for.
    pub slots_total: usize,
    /// Keys moved so far.
    pub keys_moved: u64,
    /// Their key and value bytes.
    pub bytes_moved: u64,
}

/// What a finished reshard did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReshardReport {
    /// Slots now owned by the target.
    pub slots_moved: usize,
    /// Keys moved.
    pub keys_moved: u64,
    /// Their key and value bytes.
    pub bytes_moved: u64,
    /// Steps retried.
    pub retries: u32,
    /// Wall time.
    pub elapsed: Duration,
}

/// Why a reshard stopped. Slots before `slot` are moved; the rest are untouched except
/// those in `open_slots` (MIGRATING on the source or IMPORTING on the target), which a
/// rerun finishes. No key is lost either way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReshardError {
    /// A node the reshard needs is not among the nodes given.
    #[error("node {0} is not among the nodes given to reshard")]
    UnknownNode(NodeId),
    /// The slot's state does not allow this move; nothing was changed for it.
    #[error("slot {slot} cannot move: {reason}; open slots: {open_slots:?}")]
    Unplannable {
        /// The slot.
        slot: Slot,
        /// Why.
        reason: String,
        /// Slots left open on the source or target.
        open_slots: Vec<Slot>,
    },
    /// A step kept failing.
    #[error(
        "slot {slot}: {step} failed {attempts} times ({error}); open slots: {open_slots:?} \
         (rerun the reshard to finish them)"
    )]
    StepFailed {
        /// The slot.
        slot: Slot,
        /// The step.
        step: &'static str,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        error: String,
        /// Slots left open on the source or target.
        open_slots: Vec<Slot>,
    },
    /// The progress callback asked to stop.
    #[error("cancelled at slot {slot}; open slots: {open_slots:?}")]
    Cancelled {
        /// The slot being moved.
        slot: Slot,
        /// Slots left open on the source or target.
        open_slots: Vec<Slot>,
    },
}

/// The nodes of one reshard.
struct Parties<'a> {
    source: &'a Node,
    target: &'a Node,
    target_address: PeerAddr,
    others: Vec<&'a Node>,
    from: NodeId,
    to: NodeId,
}

/// Running totals of one reshard.
struct Totals {
    slots_done: usize,
    slots_total: usize,
    keys: u64,
    bytes: u64,
    retries: u32,
}

/// Moves `slots` from master `from` to master `to` key by key (see the module docs).
/// `nodes` are nodes of this process and must hold both and every other master (the
/// others get SETSLOT NODE too). `progress` sees every batch and finished slot; returning
/// `ControlFlow::Break` cancels, leaving the current slot open for a rerun.
pub async fn reshard(
    nodes: &[&Node],
    from: NodeId,
    to: NodeId,
    slots: &[Slot],
    options: ReshardOptions,
    mut progress: impl FnMut(&ReshardProgress) -> ControlFlow<()>,
) -> Result<ReshardReport, ReshardError> {
    let started = Instant::now();
    let parties = parties(nodes, from, to).await?;
    let mut totals = Totals {
        slots_done: 0,
        slots_total: slots.len(),
        keys: 0,
        bytes: 0,
        retries: 0,
    };
    for &slot in slots {
        let view = observe(&parties, slot).await;
        let steps = plan_slot(from, to, options.retarget_from, view).map_err(|error| {
            ReshardError::Unplannable {
                slot,
                reason: error.to_string(),
                open_slots: Vec::new(),
            }
        });
        let steps = match steps {
            Ok(steps) => steps,
            Err(error) => return Err(with_open_slots(error, &parties).await),
        };
        for step in steps {
            if let Err(error) =
                run_step(&parties, slot, step, &options, &mut totals, &mut progress).await
            {
                return Err(with_open_slots(error, &parties).await);
            }
        }
        totals.slots_done += 1;
        if report(&mut progress, slot, &totals).is_break() && totals.slots_done < slots.len() {
            let error = ReshardError::Cancelled {
                slot,
                open_slots: Vec::new(),
            };
            return Err(with_open_slots(error, &parties).await);
        }
    }
    Ok(ReshardReport {
        slots_moved: totals.slots_done,
        keys_moved: totals.keys,
        bytes_moved: totals.bytes,
        retries: totals.retries,
        elapsed: started.elapsed(),
    })
}

async fn parties<'a>(
    nodes: &[&'a Node],
    from: NodeId,
    to: NodeId,
) -> Result<Parties<'a>, ReshardError> {
    let find = |id: NodeId| {
        nodes
            .iter()
            .copied()
            .find(|node| node.id() == id)
            .ok_or(ReshardError::UnknownNode(id))
    };
    let source = find(from)?;
    let target = find(to)?;
    let mut others = Vec::new();
    for node in nodes.iter().copied() {
        let id = node.id();
        if id == from || id == to {
            continue;
        }
        if node
            .inspect(|core| core.myself().is_master())
            .await
            .unwrap_or(false)
        {
            others.push(node);
        }
    }
    Ok(Parties {
        source,
        target,
        target_address: target.bus_address().clone(),
        others,
        from,
        to,
    })
}

async fn observe(parties: &Parties<'_>, slot: Slot) -> SlotView {
    let look = move |core: &crate::core::Core| (core.slot_owner(slot), core.slot_state(slot));
    let (owner_at_source, source_state) = parties
        .source
        .inspect(look)
        .await
        .unwrap_or((None, SlotState::Stable));
    let (owner_at_target, target_state) = parties
        .target
        .inspect(look)
        .await
        .unwrap_or((None, SlotState::Stable));
    SlotView {
        owner_at_source,
        source_state,
        owner_at_target,
        target_state,
    }
}

fn report(
    progress: &mut impl FnMut(&ReshardProgress) -> ControlFlow<()>,
    slot: Slot,
    totals: &Totals,
) -> ControlFlow<()> {
    progress(&ReshardProgress {
        slot,
        slots_done: totals.slots_done,
        slots_total: totals.slots_total,
        keys_moved: totals.keys,
        bytes_moved: totals.bytes,
    })
}

fn step_name(step: Step) -> &'static str {
    match step {
        Step::SetImporting => "SETSLOT IMPORTING on the target",
        Step::SetMigrating => "SETSLOT MIGRATING on the source",
        Step::MoveKeys => "MIGRATE of the slot's keys",
        Step::AssignOnTarget => "SETSLOT NODE on the target",
        Step::AssignOnSource => "SETSLOT NODE on the source",
        Step::AssignOnOthers => "SETSLOT NODE on the other masters",
    }
}

async fn run_step(
    parties: &Parties<'_>,
    slot: Slot,
    step: Step,
    options: &ReshardOptions,
    totals: &mut Totals,
    progress: &mut impl FnMut(&ReshardProgress) -> ControlFlow<()>,
) -> Result<(), ReshardError> {
    if step == Step::MoveKeys {
        return move_keys(parties, slot, options, totals, progress).await;
    }
    if step == Step::AssignOnOthers {
        // Best effort, as redis-cli: the target's epoch bump reaches them by gossip anyway.
        // All at once: each waits for its own nodes.conf save.
        let assigns = parties
            .others
            .iter()
            .map(|node| node.set_slot(slot, SetSlotAction::Node(parties.to)));
        for result in futures_util::future::join_all(assigns).await {
            if let Err(error) = result {
                tracing::warn!(slot, %error, "SETSLOT NODE on another master failed");
            }
        }
        return Ok(());
    }
    let (node, action) = match step {
        Step::SetImporting => (parties.target, SetSlotAction::Importing(parties.from)),
        Step::SetMigrating => (parties.source, SetSlotAction::Migrating(parties.to)),
        Step::AssignOnTarget => (parties.target, SetSlotAction::Node(parties.to)),
        _ => (parties.source, SetSlotAction::Node(parties.to)),
    };
    let mut attempts = 0;
    loop {
        attempts += 1;
        let error = match node.set_slot(slot, action).await {
            Ok(()) => return Ok(()),
            Err(error) => error,
        };
        // The source refuses while keys remain (expired ones not yet removed, or keys a
        // write kept): move them again, then retry.
        if let AdminCallError::Refused(AdminError::SlotHasKeys(_)) = error {
            move_keys(parties, slot, options, totals, progress).await?;
        }
        if attempts >= options.attempts_max.max(1) {
            return Err(ReshardError::StepFailed {
                slot,
                step: step_name(step),
                attempts,
                error: error.to_string(),
                open_slots: Vec::new(),
            });
        }
        totals.retries += 1;
        backoff(options, attempts).await;
    }
}

async fn backoff(options: &ReshardOptions, attempts: u32) {
    let shift = attempts.saturating_sub(1).min(10);
    let wait_ms = options.retry_backoff_ms.saturating_mul(1 << shift);
    tokio::time::sleep(Duration::from_millis(wait_ms)).await;
}

/// MIGRATE batches of the slot's keys until the source lists none.
async fn move_keys(
    parties: &Parties<'_>,
    slot: Slot,
    options: &ReshardOptions,
    totals: &mut Totals,
    progress: &mut impl FnMut(&ReshardProgress) -> ControlFlow<()>,
) -> Result<(), ReshardError> {
    let count = options.keys_per_batch.get().min(BATCH_KEYS_MAX);
    let mut failures = 0;
    loop {
        let keys = parties
            .source
            .get_keys_in_slot(slot, count)
            .map_err(|error| failed(slot, Step::MoveKeys, 1, error.to_string()))?;
        if keys.is_empty() {
            return Ok(());
        }
        let keys: Vec<&[u8]> = keys.iter().map(|key| &key[..]).collect();
        let moved = parties
            .source
            .migrate_keys(&parties.target_address, &keys, options.migrate)
            .await;
        match moved {
            Ok(MigrateReply::Moved { keys, bytes, .. }) if keys > 0 => {
                failures = 0;
                totals.keys += keys as u64;
                totals.bytes += bytes as u64;
                if report(progress, slot, totals).is_break() {
                    return Err(ReshardError::Cancelled {
                        slot,
                        open_slots: Vec::new(),
                    });
                }
                continue;
            }
            // Expired meanwhile: the next listing no longer has them.
            Ok(MigrateReply::NoKey) => continue,
            Ok(MigrateReply::Moved { .. }) => {
                failures += 1;
                if failures >= options.attempts_max.max(1) {
                    let error = "no key moved (each changed while it was sent)".to_string();
                    return Err(failed(slot, Step::MoveKeys, failures, error));
                }
            }
            Err(error) => {
                failures += 1;
                tracing::debug!(slot, %error, failures, "a reshard batch failed");
                if failures >= options.attempts_max.max(1) {
                    return Err(failed(slot, Step::MoveKeys, failures, error.to_string()));
                }
            }
        }
        totals.retries += 1;
        backoff(options, failures).await;
    }
}

fn failed(slot: Slot, step: Step, attempts: u32, error: String) -> ReshardError {
    ReshardError::StepFailed {
        slot,
        step: step_name(step),
        attempts,
        error,
        open_slots: Vec::new(),
    }
}

/// Fills the error's open slots from the source's and target's views.
async fn with_open_slots(mut error: ReshardError, parties: &Parties<'_>) -> ReshardError {
    let mut open: Vec<Slot> = Vec::new();
    for node in [parties.source, parties.target] {
        let slots = node
            .inspect(|core| {
                core.slot_table()
                    .open_slots()
                    .into_iter()
                    .map(|(slot, _)| slot)
                    .collect::<Vec<Slot>>()
            })
            .await
            .unwrap_or_default();
        open.extend(slots);
    }
    open.sort_unstable();
    open.dedup();
    match &mut error {
        ReshardError::Unplannable { open_slots, .. }
        | ReshardError::StepFailed { open_slots, .. }
        | ReshardError::Cancelled { open_slots, .. } => *open_slots = open,
        ReshardError::UnknownNode(_) => {}
    }
    error
}
