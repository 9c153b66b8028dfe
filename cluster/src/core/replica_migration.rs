//! Replica migration (7 of the spec): keep every slot-owning master covered by a replica.
//!
//! A replica of the best-covered master (with more than `migration_barrier` healthy
//! replicas, and the smallest id among the candidates) moves to a master that has been
//! orphaned (no healthy replica, though it once had one) for `replica_migration_delay_ms`.

use std::collections::BTreeMap;

use crate::core::node::{NodeFlags, NodeId};
use crate::core::{ClusterState, Core};

impl Core {
    /// Healthy (not PFAIL/FAIL) replicas per slot-owning master.
    fn healthy_replica_counts(&self) -> BTreeMap<NodeId, usize> {
        let mut counts: BTreeMap<NodeId, usize> = self
            .slots
            .owners_with_counts()
            .filter(|(id, _)| self.is_master_node(id))
            .map(|(id, _)| (*id, 0))
            .collect();
        for node in self.nodes.values() {
            if node.is_replica() && !node.is_failing() {
                if let Some(count) = node.master_id.and_then(|master| counts.get_mut(&master)) {
                    *count += 1;
                }
            }
        }
        counts
    }

    /// Cron, replicas only: migrate to an orphaned master when this node is the candidate.
    pub(super) fn handle_replica_migration(&mut self) {
        let counts = self.healthy_replica_counts();
        let now = self.now_ms;
        let orphaned: Vec<NodeId> = counts
            .iter()
            .filter(|(id, count)| {
                **count == 0
                    && self.nodes.get(id).is_some_and(|node| {
                        !node.is_failing() && node.flags.contains(NodeFlags::MIGRATE_TO)
                    })
            })
            .map(|(id, _)| *id)
            .collect();
        self.orphaned_since.retain(|id, _| orphaned.contains(id));
        for id in &orphaned {
            self.orphaned_since.entry(*id).or_insert(now);
        }
        let Some(my_master) = self.my_master() else {
            return;
        };
        if orphaned.is_empty()
            || !self.config.allow_replica_migration
            || self.state != ClusterState::Ok
        {
            return;
        }
        let max_replicas = counts.values().copied().max().unwrap_or(0);
        let mine = counts.get(&my_master).copied().unwrap_or(0);
        if mine != max_replicas || mine <= self.config.migration_barrier as usize {
            return;
        }
        let candidate = self
            .nodes
            .values()
            .filter(|node| node.is_replica() && !node.is_failing())
            .filter(|node| {
                node.master_id
                    .is_some_and(|master| counts.get(&master) == Some(&max_replicas))
            })
            .map(|node| node.id)
            .min();
        if candidate != Some(self.myself) {
            return;
        }
        let delay_ms = self.config.replica_migration_delay_ms;
        let target = orphaned.iter().find(|id| {
            self.orphaned_since
                .get(id)
                .is_some_and(|since| now - since > delay_ms)
        });
        if let Some(target) = target.copied() {
            tracing::info!(%target, "migrating to an orphaned master");
            self.set_my_master_in_another_shard(target);
            self.announce_config();
        }
    }
}
