//! Simulated clients: writes and reads routed by the cores' slot tables, acknowledged
//! with replica durability as WAIT does.
//!
//! Client `c` lives in the host process of node `c mod node_count` (slotkv is embedded) and
//! is idle while that node is dead or paused. Every [`Workload::op_interval_ms`] one
//! client picks a key of the run's set and writes (a fresh value) or reads it at the node
//! it believes owns the key's slot: first the owner in its home node's slot table, then
//! wherever a MOVED pointed. The node answers only if the client reaches it both ways
//! (partitions and one-way cuts apply) and it is not paused; a non-owner answers MOVED, an
//! owner that does not accept writes TRYAGAIN (as the shell's routing does), and a read is
//! served only by a master that owns the slot. An accepted write is acknowledged once
//! [`Durability`] replicas acknowledged its offset on the master within
//! [`Workload::wait_timeout_ms`] (the shell's WAIT); its master changing history (a
//! demotion) before that ends the wait unacknowledged.

use std::collections::BTreeMap;

use crate::core::rng::Rng;
use crate::core::slots::Slot;
use crate::sim::data::{Key, Value};
use crate::sim::{SimError, Simulator, CLIENT_RNG_SALT};

/// How many replicas must acknowledge a write before the client counts it acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// This many replicas (Redis's `WAIT n`).
    Replicas(usize),
    /// Every replica of the shard, at least one: each replica the master's core knows
    /// (failed ones included) and each replica its replication streams to, as both stand
    /// when the acknowledgement is checked, must have acknowledged the write. A count
    /// (WAIT with the shard's replica count) is not the same: a replica the master does not
    /// know yet, or one that just migrated in, could stand in for a known one that never
    /// acknowledged, and that one could win the election while the others are on the other
    /// side. With fewer, Redis Cluster's asynchronous replication can lose an acknowledged
    /// write without any node losing data: a replica that did not acknowledge it (cut off,
    /// paused, or back from a failure before resyncing) can win the election while the one
    /// that did is on the other side.
    AllReplicas,
}

/// What the simulated clients do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    /// Number of clients (client `c` lives on node `c mod node_count`).
    pub clients: usize,
    /// Keys written and read (`key:0` .. `key:<keys - 1>`), at least 1.
    pub keys: u32,
    /// One operation, by a random client, every this many virtual ms (at least 1).
    pub op_interval_ms: u64,
    /// Share of operations that are writes, in parts per thousand.
    pub writes_per_mille: u64,
    /// The acknowledgement rule of writes.
    pub durability: Durability,
    /// Longest wait for the acknowledgements of a write, in virtual ms.
    pub wait_timeout_ms: u64,
}

impl Default for Workload {
    /// 3 clients, 128 keys, an operation every 10 ms, 70 % writes, every replica
    /// acknowledges within 1 s.
    fn default() -> Self {
        Workload {
            clients: 3,
            keys: 128,
            op_interval_ms: 10,
            writes_per_mille: 700,
            durability: Durability::AllReplicas,
            wait_timeout_ms: 1_000,
        }
    }
}

/// What the clients saw so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Writes acknowledged with the required durability.
    pub writes_acknowledged: u64,
    /// Writes accepted by a master but not acknowledged in time (or whose master changed
    /// history first).
    pub writes_unacknowledged: u64,
    /// Reads answered with a value or nil.
    pub reads_served: u64,
    /// MOVED answers.
    pub moved: u64,
    /// TRYAGAIN answers (an owner not accepting writes).
    pub try_again: u64,
    /// Operations whose node was unreachable, dead or paused.
    pub unreachable: u64,
}

/// A write waiting for its acknowledgements.
#[derive(Clone, Debug)]
pub(crate) struct PendingWrite {
    pub(crate) key: Key,
    pub(crate) value: Value,
    pub(crate) master: usize,
    /// The master's history and the write's offset in it.
    pub(crate) replid: u64,
    pub(crate) offset: u64,
    /// Which replicas must acknowledge.
    pub(crate) durability: Durability,
    pub(crate) deadline_ms: u64,
}

/// One operation a client is about to make.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Operation {
    pub(crate) client: usize,
    pub(crate) key: Key,
    pub(crate) slot: Slot,
    pub(crate) write: bool,
}

/// The clients' state.
#[derive(Clone, Debug)]
pub(crate) struct Clients {
    pub(crate) workload: Workload,
    rng: Rng,
    pub(crate) next_op_ms: u64,
    /// Slot of each key.
    slots: Vec<Slot>,
    /// Per client: where a MOVED sent it, by key.
    routes: Vec<BTreeMap<Key, usize>>,
    next_value: Value,
    pub(crate) pending: Vec<PendingWrite>,
    pub(crate) stats: ClientStats,
}

impl Clients {
    pub(crate) fn new(workload: Workload, seed: u64, now_ms: u64) -> Clients {
        let keys = workload.keys.max(1);
        let slots = (0..keys)
            .map(|key| slotkv_engine::key_slot(key_name(key).as_bytes()))
            .collect();
        Clients {
            routes: vec![BTreeMap::new(); workload.clients],
            workload,
            rng: Rng::new(seed),
            next_op_ms: now_ms,
            slots,
            next_value: 1,
            pending: Vec::new(),
            stats: ClientStats::default(),
        }
    }

    /// The next operation (and schedules the one after it).
    pub(crate) fn next_operation(&mut self) -> Option<Operation> {
        self.next_op_ms += self.workload.op_interval_ms.max(1);
        if self.workload.clients == 0 {
            return None;
        }
        let client = self.rng.below(self.workload.clients as u64) as usize;
        let key = self.rng.below(self.slots.len() as u64) as Key;
        let write = self.rng.below(1000) < self.workload.writes_per_mille;
        Some(Operation {
            client,
            key,
            slot: self.slots[key as usize],
            write,
        })
    }

    /// The slot of `key`, if it is one of the run's keys.
    pub(crate) fn slot_of(&self, key: Key) -> Option<Slot> {
        self.slots.get(key as usize).copied()
    }

    /// Where a MOVED last sent `client` for `key`.
    pub(crate) fn route(&self, client: usize, key: Key) -> Option<usize> {
        self.routes.get(client)?.get(&key).copied()
    }

    /// Remembers (`Some`) or forgets (`None`) where `client` goes for `key`.
    pub(crate) fn set_route(&mut self, client: usize, key: Key, node: Option<usize>) {
        if let Some(routes) = self.routes.get_mut(client) {
            match node {
                Some(node) => routes.insert(key, node),
                None => routes.remove(&key),
            };
        }
    }

    /// A fresh value (write id) for a write.
    pub(crate) fn fresh_value(&mut self) -> Value {
        let value = self.next_value;
        self.next_value += 1;
        value
    }

    /// Drops the writes whose wait ended at `now_ms` without enough acknowledgements.
    pub(crate) fn expire(&mut self, now_ms: u64) {
        let before = self.pending.len();
        self.pending.retain(|write| write.deadline_ms > now_ms);
        self.stats.writes_unacknowledged += (before - self.pending.len()) as u64;
    }
}

/// The name of key `key` (its slot is the engine's slot of this name).
pub(crate) fn key_name(key: Key) -> String {
    format!("key:{key}")
}

impl Simulator {
    /// Starts the simulated clients (replacing any running ones) with `workload`.
    pub fn start_clients(&mut self, workload: Workload) {
        let seed = self.config.seed ^ CLIENT_RNG_SALT;
        self.note(format!("clients start: {workload:?}"));
        self.clients = Some(Clients::new(workload, seed, self.now_ms));
    }

    /// Stops the simulated clients; writes still waiting stay unacknowledged.
    pub fn stop_clients(&mut self) {
        if let Some(clients) = self.clients.as_mut() {
            let waiting = clients.pending.len() as u64;
            clients.stats.writes_unacknowledged += waiting;
            clients.pending.clear();
            clients.next_op_ms = u64::MAX;
        }
    }

    /// What the clients saw so far (zeros without clients).
    pub fn client_stats(&self) -> ClientStats {
        self.clients
            .as_ref()
            .map(|clients| clients.stats)
            .unwrap_or_default()
    }

    pub(super) fn clients_slot(&self, key: Key) -> Option<Slot> {
        self.clients.as_ref()?.slot_of(key)
    }

    /// Whether a client on node `home` reaches node `node` both ways, and `node` answers.
    fn client_reaches(&self, home: usize, node: usize) -> bool {
        self.core(node).is_some()
            && !self.is_paused(node)
            && (home == node
                || (self.network.connected(home, node) && self.network.connected(node, home)))
    }

    /// One client operation, due now.
    pub(super) fn client_operation(&mut self) -> Result<(), SimError> {
        let now = self.now_ms;
        let Some(clients) = self.clients.as_mut() else {
            return Ok(());
        };
        clients.expire(now);
        let Some(operation) = clients.next_operation() else {
            return Ok(());
        };
        let home = operation.client % self.nodes.len();
        if self.core(home).is_none() || self.is_paused(home) {
            return Ok(());
        }
        let routed = self
            .clients
            .as_ref()
            .and_then(|clients| clients.route(operation.client, operation.key));
        let target = routed.or_else(|| {
            let owner = self.core(home)?.slot_owner(operation.slot)?;
            self.index_of_id(&owner)
        });
        let Some(target) = target.filter(|target| self.client_reaches(home, *target)) else {
            self.client_answer(operation, None, |stats| stats.unreachable += 1);
            return Ok(());
        };
        let Some(core) = self.core(target) else {
            return Ok(());
        };
        let owner = core.slot_owner(operation.slot);
        if owner != Some(core.myself_id()) {
            let moved_to = owner.and_then(|owner| self.index_of_id(&owner));
            self.client_answer(operation, moved_to, |stats| stats.moved += 1);
            return Ok(());
        }
        if !operation.write {
            return self.serve_read(operation, target);
        }
        if !self.accepts_client_writes(target) {
            self.client_answer(operation, Some(target), |stats| stats.try_again += 1);
            return Ok(());
        }
        #[cfg(test)]
        let target = self.write_acceptor(target);
        self.accept_write(operation, target)
    }

    /// Records an answer that sends the client to `route` next time.
    fn client_answer(
        &mut self,
        operation: Operation,
        route: Option<usize>,
        count: impl FnOnce(&mut ClientStats),
    ) {
        if let Some(clients) = self.clients.as_mut() {
            clients.set_route(operation.client, operation.key, route);
            count(&mut clients.stats);
        }
    }

    fn serve_read(&mut self, operation: Operation, target: usize) -> Result<(), SimError> {
        let is_master = self
            .core(target)
            .is_some_and(|core| core.myself().is_master() && core.serves_data());
        if !is_master {
            self.client_answer(operation, None, |stats| stats.try_again += 1);
            return Ok(());
        }
        let value = self.nodes[target].data.values.get(&operation.key).copied();
        if let Some(value) = value {
            if !self.invariants.ledger.was_written(operation.key, value) {
                return Err(self.error(format!(
                    "n{target} served key:{}={value}, a value never written to it",
                    operation.key
                )));
            }
        }
        self.client_answer(operation, Some(target), |stats| stats.reads_served += 1);
        Ok(())
    }

    /// Whether node `index` takes a client write now (the shell's routing check).
    fn accepts_client_writes(&self, index: usize) -> bool {
        let Some(core) = self.core(index) else {
            return false;
        };
        #[cfg(test)]
        if self.faults.accepts_writes_despite_pause(core) {
            return true;
        }
        core.accepts_writes()
    }

    /// The configEpoch node `index` acts under, as its headers carry it (its master's
    /// for a replica).
    fn acting_config_epoch(&self, index: usize) -> u64 {
        let Some(core) = self.core(index) else {
            return 0;
        };
        match core.my_master().and_then(|master| core.node(&master)) {
            Some(master) => master.config_epoch,
            None => core.myself().config_epoch,
        }
    }

    fn accept_write(&mut self, operation: Operation, target: usize) -> Result<(), SimError> {
        let epoch = self.acting_config_epoch(target);
        if let Some(problem) = self
            .invariants
            .check_single_acceptor(target, operation.slot, epoch)
        {
            return Err(self.error(problem));
        }
        let now = self.now_ms;
        let Some(clients) = self.clients.as_mut() else {
            return Ok(());
        };
        let durability = clients.workload.durability;
        clients.set_route(operation.client, operation.key, Some(target));
        let value = clients.fresh_value();
        let deadline_ms = now + clients.workload.wait_timeout_ms;
        let mut out = Vec::new();
        let data = &mut self.nodes[target].data;
        let offset = data.write(operation.key, value, &mut out);
        let (replid, _) = data.position();
        clients.pending.push(PendingWrite {
            key: operation.key,
            value,
            master: target,
            replid,
            offset,
            durability,
            deadline_ms,
        });
        self.invariants.ledger.note_written(operation.key, value);
        self.send_frames(target, out);
        Ok(())
    }

    /// The replicas of the shard master `index` leads: those its core knows (failed ones
    /// included), and those its replication streams to unless its core knows them as
    /// replicas of another master (the shell stops such a stream).
    fn shard_replicas(&self, index: usize) -> Vec<usize> {
        let Some(core) = self.core(index) else {
            return Vec::new();
        };
        let me = core.myself_id();
        let follows_another = |replica: usize| {
            let id = self
                .core(replica)
                .map(|replica| replica.myself_id())
                .or_else(|| self.saved_id(replica));
            let master = id
                .and_then(|id| core.node(&id))
                .filter(|node| node.is_replica())
                .and_then(|node| node.master_id);
            master.is_some_and(|master| master != me)
        };
        let mut replicas: Vec<usize> = self.nodes[index]
            .data
            .streamed_replicas()
            .into_iter()
            .filter(|replica| !follows_another(*replica))
            .collect();
        let known = core
            .replicas_of(&me)
            .filter_map(|replica| self.index_of_id(&replica.id));
        replicas.extend(known);
        replicas.sort_unstable();
        replicas.dedup();
        replicas
    }

    /// Whether `write` is acknowledged under its durability now: `Some((N, holders))` with
    /// the replicas required (N) and every replica that acknowledged its offset.
    fn acknowledgement(&self, write: &PendingWrite) -> Option<(usize, Vec<usize>)> {
        let acknowledging = self.nodes[write.master].data.replicas_at(write.offset);
        match write.durability {
            Durability::Replicas(replicas) => {
                (acknowledging.len() >= replicas).then_some((replicas, acknowledging))
            }
            Durability::AllReplicas => {
                let required = self.shard_replicas(write.master);
                let all = required
                    .iter()
                    .all(|replica| acknowledging.contains(replica));
                (all && !acknowledging.is_empty()).then_some((required.len().max(1), acknowledging))
            }
        }
    }

    /// Master `master` received an acknowledgement: its writes that now have enough
    /// replicas are acknowledged to their clients; writes of a history it left end.
    pub(super) fn handle_acknowledgements(&mut self, master: usize) {
        let now = self.now_ms;
        let Some(clients) = self.clients.as_mut() else {
            return;
        };
        let (mine, others): (Vec<PendingWrite>, Vec<PendingWrite>) =
            std::mem::take(&mut clients.pending)
                .into_iter()
                .partition(|write| write.master == master);
        clients.pending = others;
        let data = &self.nodes[master].data;
        let (replid, _) = data.position();
        let replica_now = data.phase().is_some();
        let mut waiting = Vec::new();
        let mut acknowledged = Vec::new();
        let mut ended = 0;
        for write in mine {
            if write.replid != replid || replica_now {
                ended += 1;
            } else if let Some((replicas, acknowledging)) = self.acknowledgement(&write) {
                acknowledged.push((write, replicas, acknowledging));
            } else {
                waiting.push(write);
            }
        }
        let Some(clients) = self.clients.as_mut() else {
            return;
        };
        clients.pending.extend(waiting);
        clients.stats.writes_unacknowledged += ended;
        clients.stats.writes_acknowledged += acknowledged.len() as u64;
        for (write, replicas, acknowledging) in acknowledged {
            let mut holders = vec![master];
            holders.extend(acknowledging);
            self.invariants.ledger.note_acknowledged(
                write.key,
                write.value,
                replicas,
                holders,
                now,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Operation, Workload};
    use crate::sim::Simulator;

    /// n0 masters a third of the slots with replicas n3 and n6 (see `form_cluster`).
    const MASTER: usize = 0;
    const CUT_OFF: usize = 3;
    const STAND_IN: usize = 6;

    /// A key of a slot n0 owns, as a write operation of client 0.
    fn write_on_master(sim: &Simulator) -> Operation {
        let core = sim.core(MASTER).expect("n0 lives");
        let (key, slot) = (0..)
            .find_map(|key| {
                let slot = sim.clients_slot(key)?;
                (core.slot_owner(slot) == Some(core.myself_id())).then_some((key, slot))
            })
            .expect("n0 owns a slot of some key");
        Operation {
            client: 0,
            key,
            slot,
            write: true,
        }
    }

    #[test]
    fn a_replica_outside_the_masters_view_does_not_stand_in_for_a_known_one_that_never_acknowledged(
    ) {
        let mut sim = Simulator::formed(9, 3, 1, 1000).unwrap_or_else(|error| panic!("{error}"));
        let stand_in = sim.id_of(STAND_IN).expect("n6 lives");
        // Clients that do nothing by themselves: the one write below is all.
        sim.start_clients(Workload {
            clients: 0,
            ..Workload::default()
        });
        // n3 is cut off (it never acknowledges), and n0 does not know that n6, which it
        // streams to, is its replica (a stale view, as when a node became its replica by
        // gossip while cut off from it): n0 knows one replica, n3.
        sim.partition(&[vec![CUT_OFF]]);
        let forget_stand_in = |sim: &mut Simulator| {
            if let Some(core) = sim.nodes[MASTER].core.as_mut() {
                core.set_node_role(stand_in, None);
            }
        };
        forget_stand_in(&mut sim);
        let operation = write_on_master(&sim);
        sim.accept_write(operation, MASTER)
            .unwrap_or_else(|error| panic!("{error}"));
        let offset = sim.nodes[MASTER].data.position().1;
        let end_ms = sim.now_ms() + 500;
        while sim.now_ms() < end_ms {
            forget_stand_in(&mut sim);
            sim.step_once().unwrap_or_else(|error| panic!("{error}"));
        }
        assert_eq!(
            sim.nodes[MASTER].data.replicas_at(offset),
            vec![STAND_IN],
            "n6 acknowledged the write, n3 did not"
        );
        let stats = sim.client_stats();
        assert_eq!(
            stats.writes_acknowledged, 0,
            "n6's acknowledgement stood in for n3's: {stats:?}"
        );
    }
}
