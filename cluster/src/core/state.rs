//! `cluster_state` (9 of the spec): ok or fail, evaluated after every input.
//!
//! Fail when full coverage is required and a slot is unassigned or owned by a FAIL node,
//! or when fewer than a majority of slot-owning masters are reachable (so a master cut
//! off in a minority stops accepting writes about node_timeout after the cut). A master
//! starts in fail for `writable_delay_ms`, and after being in a minority returns to ok
//! only `clamp(node_timeout, 500, 5000)` ms after it last saw itself in the minority.

use crate::core::node::NodeFlags;
use crate::core::slots::SLOT_COUNT;
use crate::core::{Core, Event};

/// Bounds of the rejoin delay, in ms.
const REJOIN_DELAY_MIN_MS: u64 = 500;
const REJOIN_DELAY_MAX_MS: u64 = 5000;

/// The cluster state as CLUSTER INFO reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ClusterState {
    /// Serving.
    Ok,
    /// Not serving keyed commands (uncovered slots, minority, or starting up).
    #[default]
    Fail,
}

/// Memory of past evaluations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct StateTracker {
    /// First evaluation (`now` ms), for the startup writable delay.
    first_evaluation_ms: Option<u64>,
    /// Last time this node saw itself in a minority (`now` ms).
    among_minority_ms: Option<u64>,
    /// The last evaluation (state ignoring delays, and whether in a minority), reused
    /// until something it depends on changes.
    cached: Option<(ClusterState, bool)>,
}

impl Core {
    /// What the state would be ignoring the delays, and whether we are in a minority;
    /// recomputed only when `state_dirty` says an input changed slots, roles or flags.
    fn evaluate_cluster_state(&mut self) -> ClusterState {
        let (state, minority) = match self.tracker.cached {
            Some(cached) if !self.state_dirty => cached,
            _ => {
                let fresh = self.compute_cluster_state();
                self.state_dirty = false;
                self.tracker.cached = Some(fresh);
                fresh
            }
        };
        if minority {
            self.tracker.among_minority_ms = Some(self.now_ms);
        }
        state
    }

    fn compute_cluster_state(&self) -> (ClusterState, bool) {
        if self.config.require_full_coverage {
            let uncovered = self.slots.assigned_count() < SLOT_COUNT;
            let failed_owner = self.slots.owners_with_counts().any(|(id, _)| {
                self.nodes
                    .get(id)
                    .is_none_or(|node| node.flags.contains(NodeFlags::FAIL))
            });
            if uncovered || failed_owner {
                return (ClusterState::Fail, false);
            }
        }
        let mut size = 0;
        let mut reachable = 0;
        for (id, _) in self.slots.owners_with_counts() {
            let Some(node) = self.nodes.get(id) else {
                continue;
            };
            if !node.is_master() {
                continue;
            }
            size += 1;
            if !node.is_failing() {
                reachable += 1;
            }
        }
        if reachable < size / 2 + 1 {
            return (ClusterState::Fail, true);
        }
        (ClusterState::Ok, false)
    }

    /// `clusterUpdateState`.
    pub(crate) fn update_cluster_state(&mut self) {
        let now = self.now_ms;
        let first = *self.tracker.first_evaluation_ms.get_or_insert(now);
        let is_master = self.myself().is_master();
        if is_master
            && self.state == ClusterState::Fail
            && now - first < self.config.writable_delay_ms
        {
            return;
        }
        let new_state = self.evaluate_cluster_state();
        if new_state == self.state {
            return;
        }
        if new_state == ClusterState::Ok && is_master {
            let rejoin_ms = self
                .config
                .node_timeout_ms
                .clamp(REJOIN_DELAY_MIN_MS, REJOIN_DELAY_MAX_MS);
            if let Some(minority_ms) = self.tracker.among_minority_ms {
                if now - minority_ms < rejoin_ms {
                    return;
                }
            }
        }
        tracing::info!(state = ?new_state, "cluster state changed");
        self.state = new_state;
        self.emit(Event::ClusterStateChanged(new_state));
    }
}

#[cfg(test)]
mod tests {
    use crate::core::node::NodeFlags;
    use crate::core::testing::{add_node, core, id, own};
    use crate::core::ClusterState;

    #[test]
    fn a_master_in_a_minority_fails_and_waits_the_rejoin_delay() {
        let mut core = core(1);
        own(&mut core, 1, 0..=5000);
        add_node(&mut core, 2, None, 2);
        own(&mut core, 2, 5001..=10000);
        add_node(&mut core, 3, None, 3);
        own(&mut core, 3, 10001..=16383);
        core.state_dirty = true;
        core.update_cluster_state();
        assert_eq!(core.cluster_state(), ClusterState::Ok);
        for peer in [2, 3] {
            core.nodes
                .get_mut(&id(peer))
                .unwrap()
                .flags
                .insert(NodeFlags::PFAIL);
        }
        core.state_dirty = true;
        core.update_cluster_state();
        assert_eq!(core.cluster_state(), ClusterState::Fail);
        core.nodes
            .get_mut(&id(2))
            .unwrap()
            .flags
            .remove(NodeFlags::PFAIL);
        core.state_dirty = true;
        core.now_ms += 500;
        core.update_cluster_state();
        assert_eq!(
            core.cluster_state(),
            ClusterState::Fail,
            "rejoin delay is 1000 ms"
        );
        core.now_ms += 600;
        core.update_cluster_state();
        assert_eq!(core.cluster_state(), ClusterState::Ok);
    }

    #[test]
    fn an_uncovered_slot_or_failed_owner_fails_the_cluster_with_full_coverage() {
        let mut core = core(1);
        own(&mut core, 1, 0..=16382);
        core.update_cluster_state();
        assert_eq!(core.cluster_state(), ClusterState::Fail);
        add_node(&mut core, 2, None, 1);
        own(&mut core, 2, 16383..=16383);
        core.state_dirty = true;
        core.update_cluster_state();
        assert_eq!(core.cluster_state(), ClusterState::Ok);
        core.nodes
            .get_mut(&id(2))
            .unwrap()
            .flags
            .insert(NodeFlags::FAIL);
        core.state_dirty = true;
        core.update_cluster_state();
        assert_eq!(core.cluster_state(), ClusterState::Fail);
    }
}
