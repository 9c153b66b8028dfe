//! Atomic migrations run in the background, as Valkey 9's `CLUSTER MIGRATESLOTS`,
//! `GETSLOTMIGRATIONS` and `CANCELSLOTMIGRATIONS` run them: [`crate::Node::start_slot_migrations`]
//! checks every requested move and starts all of them or none, each as a task running
//! [`super::atomic_source::migrate_slots`]; the node's job log ([`SlotMigrationJobs`])
//! keeps each job's state, updated after every batch, for
//! [`crate::Node::slot_migrations`]; [`crate::Node::cancel_slot_migrations`] stops every
//! running one (before its pause, as `migrate_slots`' `progress` can; a job already paused
//! completes or resumes as its flip resolves).
//!
//! A target logs the imports it serves the same way (their `operation` is
//! [`SlotMigrationOperation::Import`]): opened by the source's begin, counting the keys of
//! every batch it applies, and ended by the flip (succeeded), the source's cancel
//! (cancelled) or a silent source's lease (failed).
//!
//! The log is in memory only (a restart forgets it, as Valkey's does), holds every running
//! job and at most [`SLOT_MIGRATION_LOG_MAX`] finished ones (the oldest finished go first).

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use slotkv_transport::PeerAddr;

use crate::core::node::NodeId;
use crate::core::rng::Rng;
use crate::core::slots::{Slot, SlotRange};
use crate::slot_migration::atomic_source::{
    migrate_slots, Parties, SlotMigrationError, SlotMigrationOptions, SlotMigrationPhase,
};

/// Finished jobs the log keeps (running ones are always kept).
pub const SLOT_MIGRATION_LOG_MAX: usize = 64;

/// Jobs running at once on one node (more are refused).
pub const SLOT_MIGRATION_JOBS_MAX: usize = 64;

/// Which side of a migration a job of the log is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotMigrationOperation {
    /// Slots leaving this node (started here).
    Export,
    /// Slots coming to this node (started by their source).
    Import,
}

impl SlotMigrationOperation {
    /// Its name, as `CLUSTER GETSLOTMIGRATIONS` prints it.
    pub fn name(self) -> &'static str {
        match self {
            SlotMigrationOperation::Export => "EXPORT",
            SlotMigrationOperation::Import => "IMPORT",
        }
    }
}

/// Where a background migration is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotMigrationJobState {
    /// Started; the target has not answered the begin yet.
    Starting,
    /// An import: the slots are importing here, filled by the source's batches.
    Importing,
    /// Streaming or flipping (the phase of its last batch).
    Running(SlotMigrationPhase),
    /// The target owns the slots.
    Succeeded,
    /// Abandoned on an error; the slots stayed here (see the job's message).
    Failed,
    /// Cancelled (`cancel_slot_migrations`); the slots stayed here.
    Cancelled,
}

impl SlotMigrationJobState {
    /// Its name, as `CLUSTER GETSLOTMIGRATIONS` prints it.
    pub fn name(self) -> &'static str {
        match self {
            SlotMigrationJobState::Starting => "connecting",
            SlotMigrationJobState::Importing => "importing",
            SlotMigrationJobState::Running(SlotMigrationPhase::Snapshot) => "snapshot",
            SlotMigrationJobState::Running(SlotMigrationPhase::Tail(_)) => "streaming",
            SlotMigrationJobState::Running(SlotMigrationPhase::Flip) => "paused",
            SlotMigrationJobState::Succeeded => "success",
            SlotMigrationJobState::Failed => "failed",
            SlotMigrationJobState::Cancelled => "cancelled",
        }
    }

    /// True until the job ends.
    pub fn is_running(self) -> bool {
        matches!(
            self,
            SlotMigrationJobState::Starting
                | SlotMigrationJobState::Importing
                | SlotMigrationJobState::Running(_)
        )
    }
}

/// One migration out of this node (a background job) or into it, as the job log holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotMigrationJob {
    /// A unique name: 40 hex characters (an import is named by its target).
    pub name: String,
    /// Export (started here) or import.
    pub operation: SlotMigrationOperation,
    /// The slots it moves.
    pub ranges: Vec<SlotRange>,
    /// The slots' master when it started (this node, for an export).
    pub source: NodeId,
    /// The master receiving them (this node, for an import).
    pub target: NodeId,
    /// When it started (unix ms).
    pub created_unix_ms: u64,
    /// When its state last changed (unix ms).
    pub updated_unix_ms: u64,
    /// Where it is.
    pub state: SlotMigrationJobState,
    /// Keys sent so far (an import: received and applied).
    pub keys_sent: u64,
    /// Key and value bytes sent so far (an import: received and applied).
    pub bytes_sent: u64,
    /// What happened: the report once done, the error once failed.
    pub message: String,
}

struct Entry {
    job: SlotMigrationJob,
    cancel: Arc<AtomicBool>,
    /// An import's source address and migration id.
    import: Option<(PeerAddr, u64)>,
}

/// The node's job log (see the module docs).
#[derive(Default)]
pub(crate) struct SlotMigrationJobs {
    entries: Mutex<VecDeque<Entry>>,
    names: Mutex<Option<Rng>>,
    /// Held by a start from its checks until its jobs are in the log.
    starting: Mutex<()>,
}

/// Why `start_slot_migrations` started nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartMigrationsError {
    /// No move was given.
    #[error("no slot migration requested")]
    Empty,
    /// Two moves name the same slot.
    #[error("hash slot {0} is named by more than one migration")]
    Overlap(u16),
    /// Too many jobs would run at once.
    #[error("at most {SLOT_MIGRATION_JOBS_MAX} slot migrations run at once")]
    TooMany,
    /// A move cannot start (its slots, its target, or a migration already running).
    #[error(transparent)]
    Migration(#[from] SlotMigrationError),
}

fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

impl SlotMigrationJobs {
    /// Every job of the log, oldest first.
    pub(crate) fn list(&self) -> Vec<SlotMigrationJob> {
        self.entries
            .lock()
            .iter()
            .map(|entry| entry.job.clone())
            .collect()
    }

    /// Asks every running export to stop; returns how many were running (an import is
    /// cancelled by its source).
    pub(crate) fn cancel_all(&self) -> usize {
        let entries = self.entries.lock();
        let running = entries
            .iter()
            .filter(|entry| entry.import.is_none() && entry.job.state.is_running());
        running
            .map(|entry| entry.cancel.store(true, Ordering::Release))
            .count()
    }

    /// The slots of each running export.
    fn running_ranges(&self) -> Vec<Vec<SlotRange>> {
        self.entries
            .lock()
            .iter()
            .filter(|entry| entry.import.is_none() && entry.job.state.is_running())
            .map(|entry| entry.job.ranges.clone())
            .collect()
    }

    fn fresh_name(&self, seed: u64) -> String {
        let mut names = self.names.lock();
        let rng = names.get_or_insert_with(|| Rng::new(seed));
        let words = [rng.next_u64(), rng.next_u64(), rng.next_u64()];
        let hex: String = words.iter().map(|word| format!("{word:016x}")).collect();
        hex[..40].to_string()
    }

    fn add(&self, job: SlotMigrationJob, cancel: Arc<AtomicBool>) {
        let mut entries = self.entries.lock();
        entries.push_back(Entry {
            job,
            cancel,
            import: None,
        });
        trim(&mut entries);
    }

    /// Logs an import of `ranges` from `source` (at `from`) into `target` (this node),
    /// opened by migration `migration`'s begin.
    pub(crate) fn import_began(
        &self,
        from: &PeerAddr,
        migration: u64,
        ranges: &[SlotRange],
        source: NodeId,
        target: NodeId,
    ) {
        let now = unix_now_ms();
        let job = SlotMigrationJob {
            name: self.fresh_name(now ^ migration ^ (u64::from(target.0[0]) << 56)),
            operation: SlotMigrationOperation::Import,
            ranges: ranges.to_vec(),
            source,
            target,
            created_unix_ms: now,
            updated_unix_ms: now,
            state: SlotMigrationJobState::Importing,
            keys_sent: 0,
            bytes_sent: 0,
            message: String::new(),
        };
        let mut entries = self.entries.lock();
        entries.push_back(Entry {
            job,
            cancel: Arc::default(),
            import: Some((from.clone(), migration)),
        });
        trim(&mut entries);
    }

    /// Counts a batch from `from` applied here (`keys` keys of `bytes` bytes, in `slots`)
    /// on the running import it fills.
    pub(crate) fn import_received(&self, from: &PeerAddr, slots: &[Slot], keys: u64, bytes: u64) {
        let Some(first) = slots.first() else {
            return;
        };
        let mut entries = self.entries.lock();
        let import = entries.iter_mut().find(|entry| {
            entry.job.state.is_running()
                && entry
                    .import
                    .as_ref()
                    .is_some_and(|(source, _)| source == from)
                && entry.job.ranges.iter().any(|range| range.contains(*first))
        });
        if let Some(entry) = import {
            entry.job.keys_sent += keys;
            entry.job.bytes_sent += bytes;
            entry.job.updated_unix_ms = unix_now_ms();
        }
    }

    /// Ends the running imports from `from`: migration `migration`'s, or every one when
    /// `None` (its source went silent), with `state` and `message`.
    pub(crate) fn import_ended(
        &self,
        from: &PeerAddr,
        migration: Option<u64>,
        state: SlotMigrationJobState,
        message: &str,
    ) {
        let mut entries = self.entries.lock();
        for entry in entries.iter_mut() {
            let Some((source, id)) = &entry.import else {
                continue;
            };
            let named = source == from && migration.is_none_or(|migration| migration == *id);
            if named && entry.job.state.is_running() {
                entry.job.state = state;
                entry.job.message = message.to_string();
                entry.job.updated_unix_ms = unix_now_ms();
            }
        }
        trim(&mut entries);
    }

    fn update(&self, name: &str, change: impl FnOnce(&mut SlotMigrationJob)) {
        let mut entries = self.entries.lock();
        if let Some(entry) = entries.iter_mut().find(|entry| entry.job.name == name) {
            change(&mut entry.job);
            entry.job.updated_unix_ms = unix_now_ms();
        }
        // A finished job may push the oldest finished one out.
        trim(&mut entries);
    }
}

/// Drops the oldest finished job while more than [`SLOT_MIGRATION_LOG_MAX`] are.
fn trim(entries: &mut VecDeque<Entry>) {
    let finished = entries
        .iter()
        .filter(|entry| !entry.job.state.is_running())
        .count();
    for _ in SLOT_MIGRATION_LOG_MAX..finished {
        if let Some(oldest) = entries
            .iter()
            .position(|entry| !entry.job.state.is_running())
        {
            entries.remove(oldest);
        }
    }
}

/// Checks every move (`(ranges, target)`), then starts each as a background job; all or
/// none. Returns the jobs' names, in the moves' order.
pub(crate) fn start(
    jobs: &Arc<SlotMigrationJobs>,
    parties: &Parties,
    moves: &[(Vec<SlotRange>, NodeId)],
    options: SlotMigrationOptions,
) -> Result<Vec<String>, StartMigrationsError> {
    if moves.is_empty() {
        return Err(StartMigrationsError::Empty);
    }
    // One start at a time: a job is in the log before its task tracks its slots, so the
    // log's running jobs are checked too.
    let _starting = jobs.starting.lock();
    let running = jobs.running_ranges();
    if running.len() + moves.len() > SLOT_MIGRATION_JOBS_MAX {
        return Err(StartMigrationsError::TooMany);
    }
    let mut named = std::collections::BTreeSet::new();
    for (ranges, to) in moves {
        super::atomic_source::check_start(&parties.shared, ranges, *to)?;
        for slot in ranges.iter().flat_map(SlotRange::slots) {
            if !named.insert(slot) {
                return Err(StartMigrationsError::Overlap(slot));
            }
            if running.iter().flatten().any(|range| range.contains(slot)) {
                return Err(SlotMigrationError::AlreadyMigrating(slot).into());
            }
        }
    }
    let myself = parties.shared.routing.table().myself;
    let mut names = Vec::with_capacity(moves.len());
    for (ranges, to) in moves {
        let now = unix_now_ms();
        let name = jobs.fresh_name(now ^ (u64::from(myself.0[0]) << 56));
        let cancel = Arc::new(AtomicBool::new(false));
        jobs.add(
            SlotMigrationJob {
                name: name.clone(),
                operation: SlotMigrationOperation::Export,
                ranges: ranges.clone(),
                source: myself,
                target: *to,
                created_unix_ms: now,
                updated_unix_ms: now,
                state: SlotMigrationJobState::Starting,
                keys_sent: 0,
                bytes_sent: 0,
                message: String::new(),
            },
            Arc::clone(&cancel),
        );
        let (jobs, parties, ranges, to) = (Arc::clone(jobs), parties.clone(), ranges.clone(), *to);
        let job = name.clone();
        tokio::spawn(async move {
            let progress = |batch: &super::atomic_source::SlotMigrationProgress| {
                jobs.update(&job, |entry| {
                    entry.state = SlotMigrationJobState::Running(batch.phase);
                    entry.keys_sent = batch.keys_sent;
                    entry.bytes_sent = batch.bytes_sent;
                });
                if cancel.load(Ordering::Acquire) {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            };
            let result = migrate_slots(parties, &ranges, to, options, progress).await;
            jobs.update(&job, |entry| match result {
                Ok(report) => {
                    entry.state = SlotMigrationJobState::Succeeded;
                    entry.keys_sent = report.keys_sent;
                    entry.bytes_sent = report.bytes_sent;
                    entry.message = format!(
                        "{} slots, {} keys, paused {} ms, epoch {}",
                        report.slots,
                        report.keys_sent,
                        report.pause.as_millis(),
                        report.epoch
                    );
                }
                Err(SlotMigrationError::Cancelled) => {
                    entry.state = SlotMigrationJobState::Cancelled;
                    entry.message = "cancelled".to_string();
                }
                Err(error) => {
                    entry.state = SlotMigrationJobState::Failed;
                    entry.message = error.to_string();
                }
            });
        });
        names.push(name);
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(name: &str, state: SlotMigrationJobState) -> SlotMigrationJob {
        SlotMigrationJob {
            name: name.to_string(),
            operation: SlotMigrationOperation::Export,
            ranges: vec![SlotRange { start: 0, end: 9 }],
            source: NodeId([1; 20]),
            target: NodeId([2; 20]),
            created_unix_ms: 0,
            updated_unix_ms: 0,
            state,
            keys_sent: 0,
            bytes_sent: 0,
            message: String::new(),
        }
    }

    #[test]
    fn the_log_keeps_every_running_job_and_the_newest_finished_ones() {
        let jobs = SlotMigrationJobs::default();
        jobs.add(
            job("running", SlotMigrationJobState::Starting),
            Arc::default(),
        );
        for index in 0..SLOT_MIGRATION_LOG_MAX + 5 {
            jobs.add(
                job(&format!("done{index}"), SlotMigrationJobState::Succeeded),
                Arc::default(),
            );
        }
        let listed = jobs.list();
        assert_eq!(listed.len(), SLOT_MIGRATION_LOG_MAX + 1);
        assert_eq!(listed[0].name, "running");
        assert_eq!(listed[1].name, "done5", "the oldest finished went first");
        assert_eq!(jobs.cancel_all(), 1);
        jobs.update("running", |entry| {
            entry.state = SlotMigrationJobState::Cancelled
        });
        assert_eq!(jobs.cancel_all(), 0);
        assert_eq!(
            jobs.list().len(),
            SLOT_MIGRATION_LOG_MAX,
            "one more finished"
        );
    }

    #[test]
    fn an_import_is_logged_from_its_begin_to_its_end_and_counts_its_batches() {
        let jobs = SlotMigrationJobs::default();
        let (from, other) = (
            PeerAddr::new("10.0.0.1:17000").unwrap(),
            PeerAddr::new("10.0.0.2:17000").unwrap(),
        );
        let ranges = [SlotRange { start: 0, end: 9 }];
        jobs.import_began(&from, 7, &ranges, NodeId([1; 20]), NodeId([2; 20]));
        jobs.import_received(&from, &[3, 4], 10, 1_000);
        jobs.import_received(&other, &[3], 99, 99);
        jobs.import_received(&from, &[50], 99, 99);
        let listed = jobs.list();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].operation, SlotMigrationOperation::Import);
        assert_eq!(listed[0].state, SlotMigrationJobState::Importing);
        assert_eq!((listed[0].keys_sent, listed[0].bytes_sent), (10, 1_000));
        assert_eq!(jobs.cancel_all(), 0, "an import is cancelled by its source");
        jobs.import_ended(&from, Some(8), SlotMigrationJobState::Succeeded, "other");
        assert!(jobs.list()[0].state.is_running(), "another migration's end");
        jobs.import_ended(&from, Some(7), SlotMigrationJobState::Succeeded, "owned");
        let listed = jobs.list();
        assert_eq!(listed[0].state, SlotMigrationJobState::Succeeded);
        assert_eq!(listed[0].message, "owned");
        jobs.import_began(&from, 9, &ranges, NodeId([1; 20]), NodeId([2; 20]));
        jobs.import_ended(&from, None, SlotMigrationJobState::Failed, "silent");
        assert_eq!(jobs.list()[1].state, SlotMigrationJobState::Failed);
    }

    #[test]
    fn names_are_forty_hex_characters_and_unique() {
        let jobs = SlotMigrationJobs::default();
        let first = jobs.fresh_name(7);
        let second = jobs.fresh_name(7);
        assert_eq!(first.len(), 40);
        assert!(first.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(first, second);
    }
}
