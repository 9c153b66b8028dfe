//! Atomic migrations run in the background, as Valkey 9's `CLUSTER MIGRATESLOTS`,
//! `GETSLOTMIGRATIONS` and `CANCELSLOTMIGRATIONS` run them: [`crate::Node::start_slot_migrations`]
//! checks every requested move and starts all of them or none, each as a task running
//! [`super::atomic_source::migrate_slots`]; the node's job log ([`SlotMigrationJobs`])
//! keeps each job's state, updated after every batch, for
//! [`crate::Node::slot_migrations`]; [`crate::Node::cancel_slot_migrations`] stops every
//! running one (before its pause, as `migrate_slots`' `progress` can; a job already paused
//! completes or resumes as its flip resolves).
//!
//! The log is in memory only (a restart forgets it, as Valkey's does), holds every running
//! job and at most [`SLOT_MIGRATION_LOG_MAX`] finished ones (the oldest finished go first).

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::core::node::NodeId;
use crate::core::rng::Rng;
use crate::core::slots::SlotRange;
use crate::slot_migration::atomic_source::{
    migrate_slots, Parties, SlotMigrationError, SlotMigrationOptions, SlotMigrationPhase,
};

/// Finished jobs the log keeps (running ones are always kept).
pub const SLOT_MIGRATION_LOG_MAX: usize = 64;

/// Jobs running at once on one node (more are refused).
pub const SLOT_MIGRATION_JOBS_MAX: usize = 64;

/// Where a background migration is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotMigrationJobState {
    /// Started; the target has not answered the begin yet.
    Starting,
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
            SlotMigrationJobState::Starting | SlotMigrationJobState::Running(_)
        )
    }
}

/// One background migration out of this node, as the job log holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotMigrationJob {
    /// A unique name: 40 hex characters.
    pub name: String,
    /// The slots it moves.
    pub ranges: Vec<SlotRange>,
    /// This node, the slots' master when it started.
    pub source: NodeId,
    /// The master receiving them.
    pub target: NodeId,
    /// When it started (unix ms).
    pub created_unix_ms: u64,
    /// When its state last changed (unix ms).
    pub updated_unix_ms: u64,
    /// Where it is.
    pub state: SlotMigrationJobState,
    /// Keys sent so far.
    pub keys_sent: u64,
    /// Key and value bytes sent so far.
    pub bytes_sent: u64,
    /// What happened: the report once done, the error once failed.
    pub message: String,
}

struct Entry {
    job: SlotMigrationJob,
    cancel: Arc<AtomicBool>,
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

    /// Asks every running job to stop; returns how many were running.
    pub(crate) fn cancel_all(&self) -> usize {
        let entries = self.entries.lock();
        let running = entries.iter().filter(|entry| entry.job.state.is_running());
        running
            .map(|entry| entry.cancel.store(true, Ordering::Release))
            .count()
    }

    /// The slots of each running job.
    fn running_ranges(&self) -> Vec<Vec<SlotRange>> {
        self.entries
            .lock()
            .iter()
            .filter(|entry| entry.job.state.is_running())
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
        entries.push_back(Entry { job, cancel });
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
    fn names_are_forty_hex_characters_and_unique() {
        let jobs = SlotMigrationJobs::default();
        let first = jobs.fresh_name(7);
        let second = jobs.fresh_name(7);
        assert_eq!(first.len(), 40);
        assert!(first.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(first, second);
    }
}
