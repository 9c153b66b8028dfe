//! The target's side of an atomic slot migration: the source's slots requests
//! ([`SlotsRequest`]) and the lease that abandons an import whose source went silent.
//!
//! - **Begin**: the slots turn IMPORTING from the source (refused if one is mine or
//!   already migrating: one migration per slot), and any stale keys of them are dropped
//!   (logged, so this node's replicas drop them too): the source's snapshot and tail then
//!   fill them, through the ordinary batch import (`super::target`), which acknowledges a
//!   batch only once this node's replicas hold it.
//! - **Flip**: the core takes every slot with one configEpoch bump and tells everyone
//!   (`AdminCommand::ClaimSlots`); the ack names the new epoch. Repeating it is harmless.
//! - **Cancel**: the slots are no longer importing and their partial copy is dropped; a
//!   later flip of them is refused. Confirmed once this node's replicas dropped the copy
//!   too; refused, changing nothing, while its writes are paused (a hand-over), so that a
//!   replica taking over never keeps the copy unbeknown to the source. A cancel that comes
//!   after the flip answers with the flip (the source then completes instead of resuming).
//! - **Lease**: an import with no frame from its source for the node's import idle
//!   timeout ([`DEFAULT_IMPORT_IDLE_TIMEOUT`] by default) is cancelled here (the source died or was cut off; its slots stay with it or its
//!   successor).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use slotkv_transport::PeerAddr;

use crate::core::slots::{Slot, SlotRange};
use crate::core::{AdminCommand, AdminError, AdminReply};
use crate::node_state::write_log::{drop_lost_slots, WriteGate};
use crate::node_state::NodeState;
use crate::slot_migration::batch::{
    bounded_text, AckOutcome, ImportRefusal, SlotsRequest, WireRange,
};
use crate::slot_migration::jobs::{SlotMigrationJobState, SlotMigrationJobs};
use crate::slot_migration::target::replicated;
use crate::slot_migration::{CoreAdmin, CoreAdminError};

/// Default time an import may hear nothing from its source before it is cancelled.
pub const DEFAULT_IMPORT_IDLE_TIMEOUT: Duration = Duration::from_secs(15);

/// Sources with an atomic import running here at once (more are refused).
pub(crate) const IMPORTS_MAX: usize = 64;

/// The imports running here, by source: their slots, each with the migration that opened
/// it (named by its Begin), and the last frame seen.
///
/// The migration's id fences an import from the frames of any other migration of the same
/// slots: a flip or cancel must name the import's migration, and a batch must come from
/// its source and be numbered after its id (a source takes the id from the sequence it
/// numbers its frames with, before sending the Begin). A frame of a migration that gave
/// up on this node and arrives late (for instance once this node is back from a restart),
/// or a source's frame for slots another source imports here, is refused
/// ([`ImportRefusal::Superseded`]) instead of cancelling, flipping or filling the import.
#[derive(Default)]
pub(crate) struct ImportLeases {
    leases: HashMap<PeerAddr, Lease>,
}

/// One source's imports here.
struct Lease {
    /// Each import's slots and the number of the Begin that opened them.
    imports: Vec<(SlotRange, u64)>,
    /// When the last frame came from the source.
    seen: Instant,
}

impl ImportLeases {
    /// A frame came from `from`: its lease, if any, is renewed.
    pub(crate) fn renew(&mut self, from: &PeerAddr, now: Instant) {
        if let Some(lease) = self.leases.get_mut(from) {
            lease.seen = now;
        }
    }

    fn open(&mut self, from: &PeerAddr, ranges: &[SlotRange], begin: u64, now: Instant) -> bool {
        if !self.leases.contains_key(from) && self.leases.len() >= IMPORTS_MAX {
            return false;
        }
        let lease = self.leases.entry(from.clone()).or_insert_with(|| Lease {
            imports: Vec::new(),
            seen: now,
        });
        lease
            .imports
            .extend(ranges.iter().map(|range| (*range, begin)));
        lease.seen = now;
        true
    }

    fn close(&mut self, from: &PeerAddr, ranges: &[SlotRange]) {
        if let Some(lease) = self.leases.get_mut(from) {
            lease.imports.retain(|(range, _)| !ranges.contains(range));
            if lease.imports.is_empty() {
                self.leases.remove(from);
            }
        }
    }

    /// The first slot of `ranges` under an import here that is not migration `migration`
    /// of `from` (the request belongs to another migration), if any.
    fn superseded(&self, from: &PeerAddr, migration: u64, ranges: &[SlotRange]) -> Option<Slot> {
        self.leases.iter().find_map(|(source, lease)| {
            lease
                .imports
                .iter()
                .filter(|(_, opened_by)| source != from || *opened_by != migration)
                .find_map(|(open, _)| {
                    ranges
                        .iter()
                        .find_map(|range| first_common_slot(open, range))
                })
        })
    }

    /// Whether batch `batch` from `from`, holding keys of `slots`, may fill them: refused
    /// ([`ImportRefusal::Superseded`]) if one of them is imported here from another source,
    /// or by an import of `from` opened after the batch was sent. Slots no atomic import
    /// names are left to the ownership check (`super::target`).
    pub(crate) fn admit_batch(
        &self,
        from: &PeerAddr,
        batch: u64,
        slots: &[Slot],
    ) -> Result<(), ImportRefusal> {
        for (source, lease) in &self.leases {
            for (range, begin) in &lease.imports {
                let stale = source != from || *begin > batch;
                if let Some(slot) = slots.iter().find(|slot| range.contains(**slot)) {
                    if stale {
                        return Err(ImportRefusal::Superseded { slot: *slot });
                    }
                }
            }
        }
        Ok(())
    }

    /// Removes and returns the imports whose source has been silent for `idle` or longer.
    pub(crate) fn expired(
        &mut self,
        now: Instant,
        idle: Duration,
    ) -> Vec<(PeerAddr, Vec<SlotRange>)> {
        let stale: Vec<PeerAddr> = self
            .leases
            .iter()
            .filter(|(_, lease)| now.duration_since(lease.seen) >= idle)
            .map(|(from, _)| from.clone())
            .collect();
        stale
            .into_iter()
            .filter_map(|from| {
                let lease = self.leases.remove(&from)?;
                Some((
                    from,
                    lease.imports.into_iter().map(|(range, _)| range).collect(),
                ))
            })
            .collect()
    }
}

/// The lowest slot two ranges share, if any.
fn first_common_slot(left: &SlotRange, right: &SlotRange) -> Option<Slot> {
    let start = left.start.max(right.start);
    (start <= left.end.min(right.end)).then_some(start)
}

/// The slot ranges of a request.
pub(crate) fn ranges_of(wire: &[WireRange]) -> Vec<SlotRange> {
    wire.iter()
        .map(|range| SlotRange {
            start: range.start,
            end: range.end,
        })
        .collect()
}

/// Answers one slots request from `from` (see the module docs).
pub(crate) async fn handle_request(
    shared: &NodeState,
    admin: &dyn CoreAdmin,
    leases: &parking_lot::Mutex<ImportLeases>,
    jobs: &SlotMigrationJobs,
    from: &PeerAddr,
    request: &SlotsRequest,
) -> AckOutcome {
    let ranges = ranges_of(request.ranges());
    let migration = request.migration();
    if !matches!(request, SlotsRequest::Begin { .. }) {
        if let Some(slot) = leases.lock().superseded(from, migration, &ranges) {
            tracing::info!(%from, migration, slot, "refused a slots request of another migration");
            return AckOutcome::Refused(ImportRefusal::Superseded { slot });
        }
    }
    let (source, myself) = {
        let table = shared.routing.table();
        if !table.myself_is_master {
            return AckOutcome::Refused(ImportRefusal::NotMaster);
        }
        match table.node_at(from) {
            Some(node) => (node.id, table.myself),
            None => {
                let text = format!("{from} is not a node of this cluster");
                return AckOutcome::Refused(ImportRefusal::Admin(text));
            }
        }
    };
    match request {
        SlotsRequest::Begin { .. } => {
            if !leases.lock().open(from, &ranges, migration, Instant::now()) {
                let text = "too many atomic imports at once".to_string();
                return AckOutcome::Refused(ImportRefusal::Admin(text));
            }
            let command = AdminCommand::ImportSlots {
                ranges: ranges.clone(),
                source,
            };
            match admin.run(command).await {
                Ok(_) => {
                    let dropped = drop_lost_slots(&shared.log, &shared.store, &ranges);
                    tracing::info!(%from, ?ranges, stale_keys_dropped = dropped, "importing slots atomically");
                    jobs.import_began(from, migration, &ranges, source, myself);
                    AckOutcome::Ready
                }
                Err(error) => {
                    leases.lock().close(from, &ranges);
                    refusal(error)
                }
            }
        }
        SlotsRequest::Flip { .. } => {
            let command = AdminCommand::ClaimSlots {
                ranges: ranges.clone(),
                source,
            };
            match admin.run(command).await {
                Ok(AdminReply::Bumped(epoch) | AdminReply::Still(epoch)) => {
                    leases.lock().close(from, &ranges);
                    let message = format!("{} slots owned at epoch {epoch}", slot_count(&ranges));
                    jobs.import_ended(
                        from,
                        Some(migration),
                        SlotMigrationJobState::Succeeded,
                        &message,
                    );
                    AckOutcome::Owned { epoch }
                }
                Ok(AdminReply::Ok) => {
                    refusal(CoreAdminError::Unexpected("the flip named no epoch"))
                }
                Err(error) => refusal(error),
            }
        }
        SlotsRequest::Cancel { .. } => {
            // Writes paused (a hand-over to a replica, a failover): the drop could miss the
            // replicas, so the import stays for the source to cancel at whoever serves next.
            if shared.log.gate() != WriteGate::Open {
                return AckOutcome::Refused(ImportRefusal::WritesPaused);
            }
            leases.lock().close(from, &ranges);
            let outcome = abandon(shared, admin, &ranges).await;
            let ended = match &outcome {
                AckOutcome::Abandoned => Some((
                    SlotMigrationJobState::Cancelled,
                    "cancelled by the source".to_string(),
                )),
                AckOutcome::Owned { epoch } => Some((
                    SlotMigrationJobState::Succeeded,
                    format!("{} slots owned at epoch {epoch}", slot_count(&ranges)),
                )),
                _ => None,
            };
            if let Some((state, message)) = ended {
                jobs.import_ended(from, Some(migration), state, &message);
            }
            outcome
        }
    }
}

/// Slots in `ranges`.
fn slot_count(ranges: &[SlotRange]) -> usize {
    ranges.iter().map(SlotRange::len).sum()
}

/// Cancels an import of `ranges` here: abandoned (partial copy dropped), or owned if the
/// flip came first.
pub(crate) async fn abandon(
    shared: &NodeState,
    admin: &dyn CoreAdmin,
    ranges: &[SlotRange],
) -> AckOutcome {
    match admin
        .run(AdminCommand::AbandonImport(ranges.to_vec()))
        .await
    {
        Ok(AdminReply::Still(epoch) | AdminReply::Bumped(epoch)) => AckOutcome::Owned { epoch },
        Ok(AdminReply::Ok) => {
            let dropped = drop_lost_slots(&shared.log, &shared.store, ranges);
            tracing::info!(
                ?ranges,
                partial_keys_dropped = dropped,
                "abandoned an atomic import"
            );
            // Confirmed once the replicas dropped the copy too: one of them may take over.
            match replicated(shared, shared.log.offset()).await {
                Ok(()) => AckOutcome::Abandoned,
                Err(refusal) => AckOutcome::Refused(refusal),
            }
        }
        Err(error) => refusal(error),
    }
}

fn refusal(error: CoreAdminError) -> AckOutcome {
    AckOutcome::Refused(match error {
        CoreAdminError::Refused(
            AdminError::AlreadyOwner(slot) | AdminError::SlotInMigration(slot),
        ) => ImportRefusal::SlotBusy { slot },
        other => ImportRefusal::Admin(bounded_text(&other.to_string())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(port: u16) -> PeerAddr {
        PeerAddr::new(format!("127.0.0.1:{port}")).unwrap()
    }

    fn range(start: Slot, end: Slot) -> SlotRange {
        SlotRange { start, end }
    }

    #[test]
    fn an_import_refuses_the_frames_of_other_migrations_and_of_other_sources() {
        let (source, other) = (peer(1), peer(2));
        let mut leases = ImportLeases::default();
        let now = Instant::now();
        assert!(leases.open(&source, &[range(0, 99)], 10, now));
        // The import's own cancel or flip, and its batches, numbered after its id.
        assert_eq!(leases.superseded(&source, 10, &[range(0, 99)]), None);
        assert_eq!(leases.admit_batch(&source, 12, &[5, 99]), Ok(()));
        // Another migration's cancel (an earlier one's, late, or a later one's), and a
        // batch sent before the import began.
        assert_eq!(leases.superseded(&source, 9, &[range(50, 120)]), Some(50));
        assert_eq!(leases.superseded(&source, 11, &[range(99, 99)]), Some(99));
        assert_eq!(
            leases.admit_batch(&source, 9, &[3]),
            Err(ImportRefusal::Superseded { slot: 3 })
        );
        // Slots no import names, and another source's frames for imported ones.
        assert_eq!(leases.superseded(&source, 9, &[range(100, 120)]), None);
        assert_eq!(leases.admit_batch(&source, 9, &[100]), Ok(()));
        assert_eq!(
            leases.admit_batch(&other, 50, &[100, 7]),
            Err(ImportRefusal::Superseded { slot: 7 })
        );
        assert_eq!(leases.superseded(&other, 10, &[range(0, 0)]), Some(0));
        // Once closed (flipped or cancelled) the fence goes with the import.
        leases.close(&source, &[range(0, 99)]);
        assert_eq!(leases.admit_batch(&other, 50, &[7]), Ok(()));
        assert_eq!(leases.superseded(&other, 50, &[range(0, 99)]), None);
        assert!(leases.expired(now, Duration::ZERO).is_empty());
    }

    #[test]
    fn a_silent_source_loses_every_import_at_once() {
        let source = peer(1);
        let mut leases = ImportLeases::default();
        let now = Instant::now();
        assert!(leases.open(&source, &[range(0, 9)], 1, now));
        assert!(leases.open(&source, &[range(20, 29)], 5, now));
        let later = now + Duration::from_secs(20);
        leases.renew(&source, now + Duration::from_secs(10));
        assert!(leases.expired(later, Duration::from_secs(15)).is_empty());
        let expired = leases.expired(later, Duration::from_secs(5));
        assert_eq!(expired, vec![(source, vec![range(0, 9), range(20, 29)])]);
    }
}
