//! The source's side of an atomic slot migration (the default way to move slots; Valkey
//! 9's `CLUSTER MIGRATESLOTS`), run by the slots' master on the migration stream.
//!
//! 1. **Begin.** Start tracking the slots' writes ([`OutboundSlots`]), then ask the target
//!    to import them ([`SlotsRequest::Begin`]: IMPORTING there, stale keys dropped).
//! 2. **Snapshot.** Export every key of the slots in bounded batches (REPLACE); the target
//!    acknowledges each batch once its replicas hold it. Callers keep reading and writing
//!    here; every key written meanwhile is marked dirty.
//! 3. **Tail.** Round after round (one at least), send the current state of each dirty
//!    key (its value, or a deletion) until few enough are left ([`SlotMigrationOptions::pause_at_dirty_keys`])
//!    or the rounds run out (then the writes outrun the move: see
//!    [`SlotMigrationError::WritesOutran`]).
//! 4. **Pause and flip.** Pause the slots here (every call on them waits; no write is in
//!    flight once [`crate::node_state::WriteLog::pause_slots`] returns), send the last
//!    dirty keys, then ask the target to flip ([`SlotsRequest::Flip`]): it takes every
//!    slot with one configEpoch bump and tells everyone. Then this node gives the slots
//!    to it (`AdminCommand::GiveSlots`, which drops its copy, logged for its replicas) and
//!    resumes: the waiting calls route again and reach the new owner (one MOVED for a
//!    peer's request that was already here, never back and forth).
//!
//! **Failures.** Before the flip is asked, any failure (the target refuses or stops
//! answering, a slot is lost, the caller cancels) cancels the import at the target
//! ([`SlotsRequest::Cancel`]: its partial copy is dropped and it will never flip) and the
//! slots stay here, served throughout: no key is lost. If the flip is not answered within
//! [`SlotMigrationOptions::pause_max`], a cancel is sent: the target answers with the flip
//! (complete) or with the abandonment (resume here). While neither answer comes the slots
//! stay paused here: resuming could leave two owners. They resume once the target is
//! seen failing with no healthy replica left that could still claim them, after
//! [`FLIP_SETTLE`] more for the cluster's claims to arrive (or complete, if another node
//! claimed them).

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use slotkv_engine::{ExportCursor, ExportLimits, ExportedEntry, Slot};
use slotkv_transport::PeerAddr;

use crate::core::node::NodeId;
use crate::core::slots::{slots_of_ranges, SlotRange, SlotState};
use crate::core::AdminCommand;
use crate::node_state::stats::Served;
use crate::node_state::NodeState;
use crate::slot_migration::batch::{
    encode_frame, AckOutcome, ImportRefusal, MigrationFrame, SlotsRequest, WireRange,
    BATCH_KEYS_MAX, FRAME_PAYLOAD_BYTES,
};
use crate::slot_migration::source::{
    read_states, refusal_text, send_batch, MigrateOptions, SentBatch,
};
use crate::slot_migration::{CoreAdmin, MigrationHub};

/// Default [`SlotMigrationOptions::pause_max`].
pub const DEFAULT_SLOT_MIGRATION_PAUSE_MAX: Duration = Duration::from_millis(500);

/// Default [`SlotMigrationOptions::pause_at_dirty_keys`].
pub const DEFAULT_PAUSE_AT_DIRTY_KEYS: usize = 256;

/// Default [`SlotMigrationOptions::tail_rounds_max`].
pub const DEFAULT_TAIL_ROUNDS_MAX: u32 = 20;

/// Default [`SlotMigrationOptions::batch_bytes`].
pub const DEFAULT_SLOT_MIGRATION_BATCH_BYTES: usize = 8 << 20;

/// Default [`SlotMigrationOptions::batches_in_flight`] (the target imports at most 16
/// batches at once, from all sources).
pub const DEFAULT_BATCHES_IN_FLIGHT: usize = 2;

/// Default [`SlotMigrationOptions::ack_timeout`].
pub const DEFAULT_SLOT_MIGRATION_ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// After an unanswered flip, how long the slots stay paused once the target is seen
/// failing (or no longer a master) with no healthy replica, for any claim of them to reach
/// this node.
pub const FLIP_SETTLE: Duration = Duration::from_secs(2);

/// Between two cancels while a flip is unresolved.
const UNRESOLVED_RETRY: Duration = Duration::from_millis(200);

/// How long an unconfirmed cancel is retried at the target or its successor (longer
/// than a failover takes with the default node timeout).
pub(crate) const SUCCESSOR_CANCEL_WINDOW: Duration = Duration::from_secs(60);

/// Between two rounds of an unconfirmed cancel.
const SUCCESSOR_CANCEL_RETRY: Duration = Duration::from_millis(500);

/// How an atomic slot migration runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotMigrationOptions {
    /// Longest wait for the flip once the slots are paused (the last dirty keys are sent
    /// first). Past it the flip is cancelled (see the module docs).
    pub pause_max: Duration,
    /// Pause once at most this many keys are dirty.
    pub pause_at_dirty_keys: usize,
    /// Tail rounds before giving up on writes that outrun the move.
    pub tail_rounds_max: u32,
    /// Most keys per batch (at most 10,000, a batch's bound).
    pub batch_keys: usize,
    /// Most key and value bytes per batch (one larger value still travels, in chunks).
    pub batch_bytes: usize,
    /// Longest wait for each ack (a batch's includes the target's replicas).
    pub ack_timeout: Duration,
    /// Throttle: at most this many key and value bytes per second (`None`: unthrottled).
    pub bytes_per_second: Option<u64>,
    /// Batches sent ahead of their acks within a phase or tail round (at least 1).
    pub batches_in_flight: usize,
}

impl Default for SlotMigrationOptions {
    fn default() -> Self {
        SlotMigrationOptions {
            pause_max: DEFAULT_SLOT_MIGRATION_PAUSE_MAX,
            pause_at_dirty_keys: DEFAULT_PAUSE_AT_DIRTY_KEYS,
            tail_rounds_max: DEFAULT_TAIL_ROUNDS_MAX,
            batch_keys: BATCH_KEYS_MAX,
            batch_bytes: DEFAULT_SLOT_MIGRATION_BATCH_BYTES,
            ack_timeout: DEFAULT_SLOT_MIGRATION_ACK_TIMEOUT,
            bytes_per_second: None,
            batches_in_flight: DEFAULT_BATCHES_IN_FLIGHT,
        }
    }
}

/// Where a migration is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotMigrationPhase {
    /// Sending the snapshot.
    Snapshot,
    /// Sending dirty keys, round `n` (from 1).
    Tail(u32),
    /// Paused: the last keys and the flip.
    Flip,
}

/// Progress of a migration, reported after every batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotMigrationProgress {
    /// The phase.
    pub phase: SlotMigrationPhase,
    /// Slots being moved.
    pub slots: usize,
    /// Keys sent so far (a key sent again in the tail counts again).
    pub keys_sent: u64,
    /// Deletions sent so far.
    pub deletes_sent: u64,
    /// Key and value bytes sent so far.
    pub bytes_sent: u64,
    /// Keys dirty now.
    pub dirty_keys: usize,
    /// Since the migration began.
    pub elapsed: Duration,
}

/// What a finished migration did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotMigrationReport {
    /// Slots the target now owns.
    pub slots: usize,
    /// Keys sent (snapshot and tail).
    pub keys_sent: u64,
    /// Deletions sent.
    pub deletes_sent: u64,
    /// Key and value bytes sent.
    pub bytes_sent: u64,
    /// Tail rounds before the pause.
    pub tail_rounds: u32,
    /// Keys sent while paused.
    pub paused_keys: usize,
    /// How long the slots were paused here.
    pub pause: Duration,
    /// The target's configEpoch after the flip (0 when this node learned of the flip
    /// from the cluster, after the target's answer was lost).
    pub epoch: u64,
    /// Wall time.
    pub elapsed: Duration,
}

/// Why an atomic migration did not complete. Unless a variant says otherwise the slots
/// stay with this node, served throughout, and the target dropped its partial copy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlotMigrationError {
    /// No slot range, or one out of 0..=16383 or reversed.
    #[error("invalid slot ranges {0:?}")]
    InvalidRanges(Vec<SlotRange>),
    /// This node is not a master owning the slot with no migration open on it.
    #[error("this node is not the master of hash slot {0}, or the slot is migrating")]
    NotOwner(Slot),
    /// The target is unknown here, not a master, or this node.
    #[error("node {0} is not another master of this cluster")]
    BadTarget(NodeId),
    /// An atomic migration of one of the slots is already running from this node.
    #[error("hash slot {0} is already migrating")]
    AlreadyMigrating(Slot),
    /// The target refused a request or a batch.
    #[error("the target refused: {0}")]
    Refused(String),
    /// The target did not answer in time (or could not be reached).
    #[error("the target did not answer the {stage} within the ack timeout")]
    TargetSilent {
        /// What went unanswered.
        stage: &'static str,
    },
    /// The flip did not come within the pause bound and the target abandoned the import.
    #[error("the flip did not complete within the {pause_max_ms} ms pause bound; abandoned")]
    PauseExceeded {
        /// The bound.
        pause_max_ms: u64,
    },
    /// Writes kept more keys dirty than the pause allows for every tail round (or beyond
    /// the dirty-key bound); retry when writes are calmer, or raise the options' bounds.
    #[error("writes outran the migration: {dirty} keys still dirty after {rounds} rounds")]
    WritesOutran {
        /// Keys dirty at the end.
        dirty: usize,
        /// Rounds run.
        rounds: u32,
    },
    /// This node lost a slot while it was being migrated (a failover, a SETSLOT).
    #[error("this node lost hash slot {0} during the migration")]
    SlotLost(Slot),
    /// The progress callback asked to stop.
    #[error("cancelled")]
    Cancelled,
    /// This node's core refused a step, or the node is shutting down.
    #[error("this node could not run the migration: {0}")]
    Node(String),
}

/// The parties of one migration.
#[derive(Clone)]
pub(crate) struct Parties {
    pub(crate) shared: Arc<NodeState>,
    pub(crate) hub: Arc<MigrationHub>,
    pub(crate) admin: Arc<dyn CoreAdmin>,
}

/// Where a run is, for its drop (a caller may drop the future at any await).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Before the pause: dropping cancels the import and stops tracking.
    Streaming,
    /// Paused, the flip perhaps asked: dropping hands the resolution to a task.
    Paused,
    /// Over: nothing left.
    Done,
}

struct Run<P> {
    /// The parties, the target and the slots (also what a drop hands to a task).
    link: Detached,
    stage: Stage,
    options: SlotMigrationOptions,
    started: Instant,
    keys_sent: u64,
    deletes_sent: u64,
    bytes_sent: u64,
    in_flight: VecDeque<InFlight>,
    progress: P,
}

/// A batch awaiting its ack.
struct InFlight {
    sent: SentBatch,
    phase: SlotMigrationPhase,
    keys: usize,
    deletes: usize,
    bytes: usize,
}

/// Moves `ranges` from this node to master `to` atomically (see the module docs).
pub(crate) async fn migrate_slots(
    parties: Parties,
    ranges: &[SlotRange],
    to: NodeId,
    options: SlotMigrationOptions,
    progress: impl FnMut(&SlotMigrationProgress) -> ControlFlow<()>,
) -> Result<SlotMigrationReport, SlotMigrationError> {
    let slots = slots_to_move(ranges)?;
    let target = check_parties(&parties.shared, &slots, to)?;
    parties
        .shared
        .log
        .outbound
        .track(&slots)
        .map_err(SlotMigrationError::AlreadyMigrating)?;
    let mut run = Run {
        link: Detached {
            parties: parties.clone(),
            target,
            target_id: to,
            migration: parties.hub.next_migration(),
            target_replicas: parties.shared.routing.table().replicas_of(&to),
            ranges: ranges.to_vec(),
            slots,
            ack_timeout: options.ack_timeout,
        },
        stage: Stage::Streaming,
        options,
        started: Instant::now(),
        keys_sent: 0,
        deletes_sent: 0,
        bytes_sent: 0,
        in_flight: VecDeque::new(),
        progress,
    };
    let result = run.run().await;
    let event = if result.is_ok() {
        Served::MigrationCompleted
    } else {
        Served::MigrationAbandoned
    };
    parties.shared.stats.served(event);
    // Tracking ends (and the slots resume) however the run ended; an unresolved flip kept
    // them paused inside `run` until it was resolved.
    parties.shared.log.outbound.untrack(&run.link.slots);
    run.stage = Stage::Done;
    result
}

impl<P> Drop for Run<P> {
    /// The caller dropped the migration mid-way: before the pause the import is cancelled
    /// (best effort; the target's lease drops the copy otherwise) and the slots stay here;
    /// once paused, a task resolves the flip exactly as the run would have, then resumes
    /// or completes. Never resumes slots the target may own.
    fn drop(&mut self) {
        if self.stage == Stage::Done {
            return;
        }
        let detached = self.link.clone();
        let stage = self.stage;
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!(
                "an atomic migration was dropped outside a runtime; its slots stay paused"
            );
            return;
        };
        tracing::warn!(
            ?stage,
            slots = detached.slots.len(),
            "an atomic migration was dropped mid-way"
        );
        runtime.spawn(async move {
            if stage == Stage::Streaming {
                let cancel = SlotsRequest::Cancel {
                    migration: detached.migration,
                    ranges: wire(&detached.ranges),
                };
                let answer = detached
                    .request_within(cancel, "cancel", detached.ack_timeout)
                    .await;
                if !matches!(answer, Ok(AckOutcome::Abandoned)) {
                    detached.clone().cancel_at_successor().await;
                }
            } else {
                match detached.resolve().await {
                    Ok(Some(_)) => {
                        if let Err(error) = detached.give_slots().await {
                            tracing::error!(%error, "could not give the flipped slots after a drop");
                        }
                    }
                    Ok(None) => {}
                    Err(error) => tracing::error!(%error, "a dropped migration's flip stayed unresolved"),
                }
            }
            detached.parties.shared.stats.served(Served::MigrationAbandoned);
            detached.parties.shared.log.outbound.untrack(&detached.slots);
        });
    }
}

/// What a migration's end needs, owned: the flip's resolution, the give-away, slots
/// requests. Held by the run and, when the run's future is dropped, cloned into a task.
#[derive(Clone)]
struct Detached {
    parties: Parties,
    target: PeerAddr,
    target_id: NodeId,
    /// The migration's id, named by each of its slots requests.
    migration: u64,
    /// The target's replicas when the migration began (one may take over from it with
    /// the partial copy).
    target_replicas: Vec<NodeId>,
    ranges: Vec<SlotRange>,
    slots: Vec<Slot>,
    ack_timeout: Duration,
}

/// The slots of `ranges`, sorted, once each range is valid (and one given at least).
fn slots_to_move(ranges: &[SlotRange]) -> Result<Vec<Slot>, SlotMigrationError> {
    if ranges.is_empty() || ranges.iter().any(|range| !range.is_valid()) {
        return Err(SlotMigrationError::InvalidRanges(ranges.to_vec()));
    }
    let mut slots: Vec<Slot> = slots_of_ranges(ranges).collect();
    slots.sort_unstable();
    slots.dedup();
    Ok(slots)
}

/// Whether a migration of `ranges` to `to` may start here now: what [`migrate_slots`]
/// checks before it begins (the slots are this master's and stable, the target another
/// master, no migration of the slots runs).
pub(crate) fn check_start(
    shared: &NodeState,
    ranges: &[SlotRange],
    to: NodeId,
) -> Result<(), SlotMigrationError> {
    let slots = slots_to_move(ranges)?;
    check_parties(shared, &slots, to)?;
    match shared.log.outbound.first_tracked(&slots) {
        Some(slot) => Err(SlotMigrationError::AlreadyMigrating(slot)),
        None => Ok(()),
    }
}

/// The target's bus address, once the slots and the target check out.
fn check_parties(
    shared: &NodeState,
    slots: &[Slot],
    to: NodeId,
) -> Result<PeerAddr, SlotMigrationError> {
    let table = shared.routing.table();
    if let Some(slot) = slots.iter().copied().find(|slot| {
        !table.myself_is_master
            || table.owner(*slot).map(|owner| owner.id) != Some(table.myself)
            || table.state(*slot) != SlotState::Stable
    }) {
        return Err(SlotMigrationError::NotOwner(slot));
    }
    match table.node(&to) {
        Some(node) if node.is_master && node.id != table.myself => Ok(node.address.clone()),
        _ => Err(SlotMigrationError::BadTarget(to)),
    }
}

fn wire(ranges: &[SlotRange]) -> Vec<WireRange> {
    ranges
        .iter()
        .map(|range| WireRange {
            start: range.start,
            end: range.end,
        })
        .collect()
}

impl<P: FnMut(&SlotMigrationProgress) -> ControlFlow<()>> Run<P> {
    async fn run(&mut self) -> Result<SlotMigrationReport, SlotMigrationError> {
        let begin = SlotsRequest::Begin {
            migration: self.link.migration,
            ranges: wire(&self.link.ranges),
        };
        match self.request(begin, "begin").await {
            Ok(AckOutcome::Ready) => {}
            // A refused begin changed nothing there; a silent one may have.
            Ok(AckOutcome::Refused(refusal)) => {
                return Err(SlotMigrationError::Refused(refusal_text(&refusal)))
            }
            Ok(other) => return Err(self.abandon(unexpected(&other)).await),
            Err(error) => return Err(self.abandon(error).await),
        }
        if let Err(error) = self.snapshot().await {
            return Err(self.abandon(error).await);
        }
        let tail_rounds = match self.tail().await {
            Ok(rounds) => rounds,
            Err(error) => return Err(self.abandon(error).await),
        };
        self.pause_and_flip(tail_rounds).await
    }

    /// Sends every key of the slots, in bounded batches.
    async fn snapshot(&mut self) -> Result<(), SlotMigrationError> {
        let store = self.link.parties.shared.store.get();
        let limits = ExportLimits {
            max_keys_per_batch: std::num::NonZeroUsize::new(self.batch_keys())
                .unwrap_or(std::num::NonZeroUsize::MIN),
            max_bytes_per_batch: std::num::NonZeroUsize::new(self.options.batch_bytes.max(1))
                .unwrap_or(std::num::NonZeroUsize::MIN),
        };
        let mut pending: Vec<ExportedEntry> = Vec::new();
        let mut pending_bytes = 0;
        for slot in self.link.slots.clone() {
            let mut cursor = ExportCursor::start();
            loop {
                let batch = store
                    .export_slot(slot, &cursor, limits)
                    .map_err(|error| SlotMigrationError::Node(error.to_string()))?;
                for entry in batch.entries {
                    pending_bytes += entry.key.len() + entry.value.len();
                    pending.push(entry);
                    if pending.len() >= self.batch_keys()
                        || pending_bytes >= self.options.batch_bytes
                    {
                        let entries = std::mem::take(&mut pending);
                        pending_bytes = 0;
                        self.send(&entries, &[], SlotMigrationPhase::Snapshot)
                            .await?;
                    }
                }
                match batch.next {
                    Some(next) => cursor = next,
                    None => break,
                }
            }
        }
        if !pending.is_empty() {
            self.send(&pending, &[], SlotMigrationPhase::Snapshot)
                .await?;
        }
        Ok(())
    }

    /// Tail rounds until few keys are dirty; returns the rounds run.
    async fn tail(&mut self) -> Result<u32, SlotMigrationError> {
        let shared = Arc::clone(&self.link.parties.shared);
        let outbound = &shared.log.outbound;
        let mut round = 0;
        loop {
            let dirty = outbound.dirty_count(&self.link.slots);
            if outbound.overflowed() {
                return Err(SlotMigrationError::WritesOutran {
                    dirty,
                    rounds: round,
                });
            }
            // One round at least: the snapshot's last batches settle while it runs, so
            // the pause covers only what the round's short span dirtied. The batches in
            // flight settle before the pause too (their acks wait for the target's
            // replicas), so it waits on the last dirty keys' trip only.
            if round > 0 && dirty <= self.options.pause_at_dirty_keys {
                self.drain().await?;
                if outbound.dirty_count(&self.link.slots) <= self.options.pause_at_dirty_keys {
                    return Ok(round);
                }
            }
            if round >= self.options.tail_rounds_max {
                return Err(SlotMigrationError::WritesOutran {
                    dirty,
                    rounds: round,
                });
            }
            round += 1;
            let keys = outbound.take_dirty(&self.link.slots);
            self.send_keys(&keys, SlotMigrationPhase::Tail(round))
                .await?;
        }
    }

    /// Sends the current state of `keys` in bounded batches.
    async fn send_keys(
        &mut self,
        keys: &[Bytes],
        phase: SlotMigrationPhase,
    ) -> Result<(), SlotMigrationError> {
        for chunk in keys.chunks(self.batch_keys()) {
            let (entries, deletes) =
                read_states(&self.link.parties.shared, chunk.iter().map(|key| &key[..]));
            // Split further by bytes.
            let mut start = 0;
            let mut bytes = 0;
            for (index, entry) in entries.iter().enumerate() {
                bytes += entry.key.len() + entry.value.len();
                if bytes >= self.options.batch_bytes {
                    self.send(&entries[start..=index], &[], phase).await?;
                    start = index + 1;
                    bytes = 0;
                }
            }
            self.send(&entries[start..], &deletes, phase).await?;
        }
        Ok(())
    }

    /// Pauses the slots, sends the last dirty keys and flips; see the module docs.
    async fn pause_and_flip(
        &mut self,
        tail_rounds: u32,
    ) -> Result<SlotMigrationReport, SlotMigrationError> {
        let shared = Arc::clone(&self.link.parties.shared);
        let paused_at = Instant::now();
        self.stage = Stage::Paused;
        shared.log.pause_slots(&self.link.slots);
        let last = shared.log.outbound.take_dirty(&self.link.slots);
        let sent = match self.send_keys(&last, SlotMigrationPhase::Flip).await {
            Ok(()) => self.drain().await,
            Err(error) => Err(error),
        };
        if let Err(error) = sent {
            return Err(self.abandon(error).await);
        }
        let flip = SlotsRequest::Flip {
            migration: self.link.migration,
            ranges: wire(&self.link.ranges),
        };
        let left = self.options.pause_max.saturating_sub(paused_at.elapsed());
        let answer = self.link.request_within(flip, "flip", left).await;
        let epoch = match answer {
            Ok(AckOutcome::Owned { epoch }) => epoch,
            // Nothing changed there (the import lapsed, or it is no master): clean up.
            Ok(AckOutcome::Refused(refusal)) => {
                let error = SlotMigrationError::Refused(refusal_text(&refusal));
                return Err(self.abandon(error).await);
            }
            Ok(other) => return Err(self.abandon(unexpected(&other)).await),
            Err(_) => match self.link.resolve().await? {
                Some(epoch) => epoch,
                None => {
                    return Err(SlotMigrationError::PauseExceeded {
                        pause_max_ms: self.options.pause_max.as_millis() as u64,
                    })
                }
            },
        };
        self.link.give_slots().await?;
        let pause = paused_at.elapsed();
        tracing::info!(
            slots = self.link.slots.len(),
            keys = self.keys_sent,
            pause_us = pause.as_micros() as u64,
            epoch,
            "atomic slot migration complete"
        );
        Ok(SlotMigrationReport {
            slots: self.link.slots.len(),
            keys_sent: self.keys_sent,
            deletes_sent: self.deletes_sent,
            bytes_sent: self.bytes_sent,
            tail_rounds,
            paused_keys: last.len(),
            pause,
            epoch,
            elapsed: self.started.elapsed(),
        })
    }

    /// Cancels the import at the target (best effort) and returns `error`.
    async fn abandon(&mut self, error: SlotMigrationError) -> SlotMigrationError {
        // The batches in flight land (or time out) before the cancel, so none applies
        // after the target dropped its copy.
        let options = self.migrate_options();
        for batch in std::mem::take(&mut self.in_flight) {
            let _ = batch.sent.ack(&self.link.parties.hub, options).await;
        }
        let cancel = SlotsRequest::Cancel {
            migration: self.link.migration,
            ranges: wire(&self.link.ranges),
        };
        match self.request(cancel, "cancel").await {
            Ok(AckOutcome::Abandoned) => {}
            Ok(AckOutcome::Owned { .. }) => {
                // Only a flip makes the target owner, and no flip was asked.
                tracing::error!("the target owns slots whose flip was never asked");
            }
            answer => {
                tracing::warn!(
                    ?answer,
                    "the target did not confirm the cancel; cancelling at it or its successor"
                );
                tokio::spawn(self.link.clone().cancel_at_successor());
            }
        }
        tracing::info!(%error, slots = self.link.slots.len(), "atomic slot migration abandoned; the slots stay here");
        error
    }

    fn batch_keys(&self) -> usize {
        self.options.batch_keys.clamp(1, BATCH_KEYS_MAX)
    }

    fn migrate_options(&self) -> MigrateOptions {
        MigrateOptions {
            copy: true,
            replace: true,
            timeout_ms: self.options.ack_timeout.as_millis() as u64,
        }
    }

    /// Sends one batch (its ack awaited later, at most
    /// [`SlotMigrationOptions::batches_in_flight`] outstanding), after checking that the
    /// migration may go on.
    async fn send(
        &mut self,
        entries: &[ExportedEntry],
        deletes: &[Bytes],
        phase: SlotMigrationPhase,
    ) -> Result<(), SlotMigrationError> {
        if entries.is_empty() && deletes.is_empty() {
            return Ok(());
        }
        self.check_still_mine()?;
        while self.in_flight.len() >= self.options.batches_in_flight.max(1) {
            self.settle_one().await?;
        }
        let sent = send_batch(
            &self.link.parties.shared,
            &self.link.parties.hub,
            &self.link.target,
            entries,
            deletes,
            self.migrate_options(),
        )
        .await
        .map_err(|_| SlotMigrationError::TargetSilent { stage: "batch" })?;
        let bytes: usize = entries
            .iter()
            .map(|entry| entry.key.len() + entry.value.len())
            .chain(deletes.iter().map(Bytes::len))
            .sum();
        self.in_flight.push_back(InFlight {
            sent,
            phase,
            keys: entries.len(),
            deletes: deletes.len(),
            bytes,
        });
        Ok(())
    }

    /// Waits for every batch in flight (between phases and tail rounds: a key sent again
    /// must land after its earlier copy).
    async fn drain(&mut self) -> Result<(), SlotMigrationError> {
        while !self.in_flight.is_empty() {
            self.settle_one().await?;
        }
        Ok(())
    }

    /// Awaits the oldest batch's ack; reports progress, throttles.
    async fn settle_one(&mut self) -> Result<(), SlotMigrationError> {
        let Some(batch) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let outcome = batch
            .sent
            .ack(&self.link.parties.hub, self.migrate_options())
            .await
            .map_err(|_| SlotMigrationError::TargetSilent { stage: "batch" })?;
        match outcome {
            AckOutcome::Imported { .. } => {}
            AckOutcome::Refused(refusal) => {
                return Err(SlotMigrationError::Refused(refusal_text(&refusal)))
            }
            other => return Err(unexpected(&other)),
        }
        self.keys_sent += batch.keys as u64;
        self.deletes_sent += batch.deletes as u64;
        self.bytes_sent += batch.bytes as u64;
        let report = SlotMigrationProgress {
            phase: batch.phase,
            slots: self.link.slots.len(),
            keys_sent: self.keys_sent,
            deletes_sent: self.deletes_sent,
            bytes_sent: self.bytes_sent,
            dirty_keys: self
                .link
                .parties
                .shared
                .log
                .outbound
                .dirty_count(&self.link.slots),
            elapsed: self.started.elapsed(),
        };
        // Once paused the move is committed to its end: no cancel then.
        let flip = batch.phase == SlotMigrationPhase::Flip;
        if (self.progress)(&report).is_break() && !flip {
            return Err(SlotMigrationError::Cancelled);
        }
        if let Some(rate) = self.options.bytes_per_second.filter(|rate| *rate > 0) {
            if !flip {
                let due = Duration::from_secs_f64(self.bytes_sent as f64 / rate as f64);
                if let Some(wait) = due.checked_sub(self.started.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
            }
        }
        Ok(())
    }

    fn check_still_mine(&self) -> Result<(), SlotMigrationError> {
        let shared = Arc::clone(&self.link.parties.shared);
        if let Some(slot) = shared.log.outbound.lost_slot(&self.link.slots) {
            return Err(SlotMigrationError::SlotLost(slot));
        }
        let table = shared.routing.table();
        match self.link.slots.iter().copied().find(|slot| {
            !table.myself_is_master
                || table.owner(*slot).map(|owner| owner.id) != Some(table.myself)
        }) {
            Some(slot) => Err(SlotMigrationError::SlotLost(slot)),
            None => Ok(()),
        }
    }

    async fn request(
        &self,
        request: SlotsRequest,
        stage: &'static str,
    ) -> Result<AckOutcome, SlotMigrationError> {
        self.link
            .request_within(request, stage, self.options.ack_timeout)
            .await
    }
}

impl Detached {
    /// The target did not confirm a cancel: it may be down with its partial copy held by
    /// a replica that takes over from it. For [`SUCCESSOR_CANCEL_WINDOW`], every
    /// [`SUCCESSOR_CANCEL_RETRY`], the cancel goes to the target and to each node that
    /// was its replica, once it is a healthy master, until one confirms it (and drops the
    /// copy, logged for its replicas) or answers that another migration of the slots runs
    /// there (whose begin dropped the copy). A node that never imported the slots simply
    /// confirms; the cancel names this migration, so it cannot end another one.
    async fn cancel_at_successor(self) {
        let shared = &self.parties.shared;
        let deadline = Instant::now() + SUCCESSOR_CANCEL_WINDOW;
        while Instant::now() < deadline && !shared.shutdown.is_cancelled() {
            let candidates: Vec<PeerAddr> = {
                let table = shared.routing.table();
                std::iter::once(self.target_id)
                    .chain(self.target_replicas.iter().copied())
                    .filter_map(|id| table.node(&id))
                    .filter(|node| node.is_master && !node.failing && node.id != table.myself)
                    .map(|node| node.address.clone())
                    .collect()
            };
            for address in candidates {
                let cancel = SlotsRequest::Cancel {
                    migration: self.migration,
                    ranges: wire(&self.ranges),
                };
                let answer = self
                    .request_at(&address, cancel, "cancel", SUCCESSOR_CANCEL_RETRY * 2)
                    .await;
                match answer {
                    Ok(AckOutcome::Abandoned) => {
                        tracing::info!(%address, slots = self.slots.len(), "the cancel of an abandoned atomic migration was confirmed");
                        return;
                    }
                    Ok(AckOutcome::Refused(ImportRefusal::Superseded { .. })) => return,
                    Ok(AckOutcome::Owned { .. }) => {
                        tracing::error!(%address, "a node owns slots whose flip was never asked");
                        return;
                    }
                    _ => {}
                }
            }
            tokio::time::sleep(SUCCESSOR_CANCEL_RETRY).await;
        }
        tracing::warn!(
            slots = self.slots.len(),
            "no node confirmed the cancel of an abandoned atomic migration"
        );
    }

    /// The flip went unanswered: cancel until the target answers (`Some(epoch)`: it had
    /// flipped; `None`: abandoned), or until it is failing or a replica, with no healthy
    /// replica of its own, and the settle time passed with the slots still mine (`None`). Another owner of the slots
    /// meanwhile completes the move.
    async fn resolve(&self) -> Result<Option<u64>, SlotMigrationError> {
        let shared = &self.parties.shared;
        let mut orphaned_since: Option<Instant> = None;
        loop {
            let cancel = SlotsRequest::Cancel {
                migration: self.migration,
                ranges: wire(&self.ranges),
            };
            match self
                .request_within(cancel, "cancel", UNRESOLVED_RETRY)
                .await
            {
                Ok(AckOutcome::Owned { epoch }) => return Ok(Some(epoch)),
                Ok(AckOutcome::Abandoned) => return Ok(None),
                Ok(other) => {
                    tracing::warn!(answer = ?other, "unexpected answer to a cancel; retrying");
                }
                Err(_) => {}
            }
            if self.moved_away() {
                // The target's (or its successor's) claim reached this node.
                return Ok(Some(0));
            }
            let table = shared.routing.table();
            // A target that became a replica (restarted without its data, it handed its
            // slots to its replica and follows it) answers every cancel with WritesPaused
            // and can flip nothing: a claim of the slots would have reached this node with
            // its new master's slots. Waiting on it kept the slots paused for good (the
            // crash reproduction's reads unanswered at the source after a repair).
            let orphaned = table
                .node(&self.target_id)
                .is_none_or(|node| node.failing || !node.is_master)
                && table.healthy_replicas_of(&self.target_id).is_empty();
            match (orphaned, orphaned_since) {
                (false, _) => orphaned_since = None,
                (true, None) => orphaned_since = Some(Instant::now()),
                (true, Some(since)) if since.elapsed() >= FLIP_SETTLE => return Ok(None),
                (true, Some(_)) => {}
            }
            if shared.shutdown.is_cancelled() {
                return Err(SlotMigrationError::Node(
                    "the node is shut down".to_string(),
                ));
            }
            tokio::time::sleep(UNRESOLVED_RETRY).await;
        }
    }

    /// Whether this node's map gives every slot to another node.
    fn moved_away(&self) -> bool {
        let table = self.parties.shared.routing.table();
        self.slots.iter().all(|slot| {
            table
                .owner(*slot)
                .is_some_and(|owner| owner.id != table.myself)
        })
    }

    /// This node gives the slots to the target (its copy is dropped, logged). Should its
    /// core refuse, the slots stay paused until the target's claim arrives by gossip (at
    /// most the ack timeout): resuming before could take writes the target's claim drops.
    async fn give_slots(&self) -> Result<(), SlotMigrationError> {
        if self.moved_away() {
            return Ok(());
        }
        let command = AdminCommand::GiveSlots {
            ranges: self.ranges.clone(),
            owner: self.target_id,
        };
        let Err(error) = self.parties.admin.run(command).await else {
            return Ok(());
        };
        tracing::error!(%error, "could not give the flipped slots; waiting for the target's claim");
        let deadline = Instant::now() + self.ack_timeout;
        while !self.moved_away() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if self.moved_away() {
            return Ok(());
        }
        Err(SlotMigrationError::Node(error.to_string()))
    }

    /// Sends a slots request to the target and waits for its answer, at most `timeout`.
    async fn request_within(
        &self,
        request: SlotsRequest,
        stage: &'static str,
        timeout: Duration,
    ) -> Result<AckOutcome, SlotMigrationError> {
        self.request_at(&self.target, request, stage, timeout).await
    }

    /// Sends a slots request to the node at `to` and waits for its answer, at most
    /// `timeout`.
    async fn request_at(
        &self,
        to: &PeerAddr,
        request: SlotsRequest,
        stage: &'static str,
        timeout: Duration,
    ) -> Result<AckOutcome, SlotMigrationError> {
        let hub = &self.parties.hub;
        let (batch, ack) = hub.expect_ack(to);
        let frame = Bytes::from(encode_frame(&MigrationFrame::Slots { batch, request }));
        let exchange = async {
            self.parties
                .shared
                .endpoint
                .send_bulk(to, frame)
                .await
                .ok()?;
            ack.await.ok()
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Some(outcome)) => Ok(outcome),
            _ => {
                hub.forget(batch);
                Err(SlotMigrationError::TargetSilent { stage })
            }
        }
    }
}

fn unexpected(outcome: &AckOutcome) -> SlotMigrationError {
    SlotMigrationError::Refused(format!("unexpected answer {outcome:?}"))
}

// The frame payload bound keeps a batch of the default bytes within a few frames.
const _: () = assert!(DEFAULT_SLOT_MIGRATION_BATCH_BYTES >= FRAME_PAYLOAD_BYTES);
