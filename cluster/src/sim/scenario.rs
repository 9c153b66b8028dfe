//! Scenario building blocks: forming a cluster from a chain of MEETs, assigning slots and
//! replicas, and waiting for agreement.

use crate::core::node::NodeId;
use crate::core::slots::{SlotRange, SLOT_COUNT};
use crate::core::{AdminCommand, ClusterState};
use crate::sim::{SimConfig, SimError, Simulator, SIM_BUS_PORT, SIM_CLIENT_PORT};

/// Longest wait for a MEET chain to become a full mesh of knowledge, in virtual ms.
pub const FORMATION_TIMEOUT_MS: u64 = 120_000;

/// Quiet time [`Simulator::formed`] runs after formation, in virtual ms.
pub const SETTLE_AFTER_FORMATION_MS: u64 = 3_000;

impl Simulator {
    /// Node `from` meets node `to` (CLUSTER MEET).
    pub fn meet(&mut self, from: usize, to: usize) -> Result<(), SimError> {
        self.command(
            from,
            AdminCommand::Meet {
                ip: format!("n{to}"),
                client_port: SIM_CLIENT_PORT,
                bus_port: SIM_BUS_PORT,
            },
        )
        .map(|_| ())
    }

    /// True when every live node knows every node (no handshakes left).
    pub fn all_know_each_other(&self) -> bool {
        let count = self.node_count();
        self.live_nodes().iter().all(|index| {
            self.core(*index).is_some_and(|core| {
                core.nodes().filter(|node| !node.in_handshake()).count() == count
            })
        })
    }

    /// Node `index`'s id (live or saved).
    pub fn id_of(&self, index: usize) -> Option<NodeId> {
        self.core(index).map(|core| core.myself_id())
    }

    /// MEETs node i with node i+1 for every i, then waits until everyone knows everyone.
    pub fn form_mesh(&mut self) -> Result<(), SimError> {
        for index in 0..self.node_count().saturating_sub(1) {
            self.meet(index, index + 1)?;
        }
        if !self.run_until(FORMATION_TIMEOUT_MS, Simulator::all_know_each_other)? {
            return Err(self.error("the MEET chain did not form a full mesh".to_string()));
        }
        Ok(())
    }

    /// Forms the mesh, gives `masters` nodes (0..masters) equal slot ranges and makes the
    /// rest replicas, round robin; waits until all agree and the state is ok everywhere.
    pub fn form_cluster(&mut self, masters: usize) -> Result<(), SimError> {
        self.form_mesh()?;
        self.form_cluster_slots_only(masters)?;
        if !self.run_until(FORMATION_TIMEOUT_MS, Simulator::all_ok_and_agreed)? {
            return Err(self.error("the cluster did not converge to state ok".to_string()));
        }
        Ok(())
    }

    /// A simulator of `nodes` nodes (node_timeout `node_timeout_ms`) formed into a cluster of
    /// `masters` masters by [`Simulator::form_cluster`], then left to settle for
    /// [`SETTLE_AFTER_FORMATION_MS`]: the starting point of most scenarios.
    pub fn formed(
        nodes: usize,
        masters: usize,
        seed: u64,
        node_timeout_ms: u64,
    ) -> Result<Simulator, SimError> {
        let mut sim = Simulator::new(SimConfig::new(nodes, seed, node_timeout_ms));
        sim.form_cluster(masters)?;
        sim.run_for(SETTLE_AFTER_FORMATION_MS)?;
        Ok(sim)
    }

    /// Gives `masters` nodes equal slot ranges and makes the rest replicas (no waiting).
    pub fn form_cluster_slots_only(&mut self, masters: usize) -> Result<(), SimError> {
        let per_master = SLOT_COUNT / masters;
        for master in 0..masters {
            let start = master * per_master;
            let end = if master + 1 == masters {
                SLOT_COUNT - 1
            } else {
                start + per_master - 1
            };
            let range = SlotRange::new(start as u16, end as u16)
                .ok_or_else(|| self.error("bad slot range".to_string()))?;
            self.add_slots(master, vec![range])?;
        }
        for replica in masters..self.node_count() {
            let master = (replica - masters) % masters;
            let master_id = self
                .id_of(master)
                .ok_or_else(|| self.error(format!("n{master} is dead")))?;
            self.command(replica, AdminCommand::Replicate(master_id))?;
        }
        Ok(())
    }

    /// True when every live node has state ok and the same full slot map.
    pub fn all_ok_and_agreed(&self) -> bool {
        let live = self.live_nodes();
        let Some(first) = live.first().and_then(|index| self.core(*index)) else {
            return false;
        };
        let table = first.slot_table();
        let all_ok = live.iter().all(|index| {
            self.core(*index).is_some_and(|core| {
                core.cluster_state() == ClusterState::Ok
                    && core.slot_table().assigned_count() == SLOT_COUNT
            })
        });
        all_ok
            && live.iter().all(|index| {
                self.core(*index)
                    .is_some_and(|core| core.slot_table().same_owners(table))
            })
    }

    /// Slot owner of `slot` according to node `index`.
    pub fn owner_seen_by(&self, index: usize, slot: u16) -> Option<NodeId> {
        self.core(index).and_then(|core| core.slot_owner(slot))
    }
}
