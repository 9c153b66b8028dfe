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
//!   later flip of them is refused. A cancel that comes after the flip answers with the
//!   flip (the source then completes instead of resuming).
//! - **Lease**: an import with no frame from its source for the node's import idle
//!   timeout ([`DEFAULT_IMPORT_IDLE_TIMEOUT`] by default) is cancelled here (the source died or was cut off; its slots stay with it or its
//!   successor).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use slotkv_transport::PeerAddr;

use crate::core::slots::SlotRange;
use crate::core::{AdminCommand, AdminError, AdminReply};
use crate::node_state::write_log::drop_lost_slots;
use crate::node_state::NodeState;
use crate::slot_migration::batch::{
    bounded_text, AckOutcome, ImportRefusal, SlotsRequest, WireRange,
};
use crate::slot_migration::{CoreAdmin, CoreAdminError};

/// Default time an import may hear nothing from its source before it is cancelled.
pub const DEFAULT_IMPORT_IDLE_TIMEOUT: Duration = Duration::from_secs(15);

/// Sources with an atomic import running here at once (more are refused).
pub(crate) const IMPORTS_MAX: usize = 64;

/// The imports running here, by source: their slots and the last frame seen.
#[derive(Default)]
pub(crate) struct ImportLeases {
    leases: HashMap<PeerAddr, (Vec<SlotRange>, Instant)>,
}

impl ImportLeases {
    /// A frame came from `from`: its lease, if any, is renewed.
    pub(crate) fn renew(&mut self, from: &PeerAddr, now: Instant) {
        if let Some((_, seen)) = self.leases.get_mut(from) {
            *seen = now;
        }
    }

    fn open(&mut self, from: &PeerAddr, ranges: &[SlotRange], now: Instant) -> bool {
        if !self.leases.contains_key(from) && self.leases.len() >= IMPORTS_MAX {
            return false;
        }
        let entry = self
            .leases
            .entry(from.clone())
            .or_insert_with(|| (Vec::new(), now));
        entry.0.extend_from_slice(ranges);
        entry.1 = now;
        true
    }

    fn close(&mut self, from: &PeerAddr, ranges: &[SlotRange]) {
        if let Some((open, _)) = self.leases.get_mut(from) {
            open.retain(|range| !ranges.contains(range));
            if open.is_empty() {
                self.leases.remove(from);
            }
        }
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
            .filter(|(_, (_, seen))| now.duration_since(*seen) >= idle)
            .map(|(from, _)| from.clone())
            .collect();
        stale
            .into_iter()
            .filter_map(|from| self.leases.remove(&from).map(|(ranges, _)| (from, ranges)))
            .collect()
    }
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
    from: &PeerAddr,
    request: &SlotsRequest,
) -> AckOutcome {
    let ranges = ranges_of(request.ranges());
    let source = {
        let table = shared.routing.table();
        if !table.myself_is_master {
            return AckOutcome::Refused(ImportRefusal::NotMaster);
        }
        match table.node_at(from) {
            Some(node) => node.id,
            None => {
                let text = format!("{from} is not a node of this cluster");
                return AckOutcome::Refused(ImportRefusal::Admin(text));
            }
        }
    };
    match request {
        SlotsRequest::Begin { .. } => {
            if !leases.lock().open(from, &ranges, Instant::now()) {
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
                    AckOutcome::Owned { epoch }
                }
                Ok(AdminReply::Ok) => {
                    refusal(CoreAdminError::Unexpected("the flip named no epoch"))
                }
                Err(error) => refusal(error),
            }
        }
        SlotsRequest::Cancel { .. } => {
            leases.lock().close(from, &ranges);
            abandon(shared, admin, &ranges).await
        }
    }
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
            AckOutcome::Abandoned
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
