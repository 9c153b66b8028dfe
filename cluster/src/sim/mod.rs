//! The deterministic simulator: N cores on a virtual clock over a seeded, faulty network.
//!
//! Everything random (message delay, loss, the cores' own seeds) derives from one seed, so
//! a run replays exactly. The clock jumps to the earliest of the next delivery and the
//! next core deadline; each step feeds one input to one core and routes its outputs:
//! transmits go through the real wire encoding into the network, `SaveConfig` is rendered
//! to nodes.conf text and kept as the node's "disk" (a restart parses it and restores),
//! events go to the trace. Invariants are
//! checked after every step (see [`invariants`]); a failure reports the seed, the replay
//! command and the last events.
//!
//! Nodes are named `n<i>` with bus address `n<i>:17000`. Each node carries data and
//! replicates it as the shell does (its `data` module: write histories, PSYNC, partial and full
//! resyncs that keep the old copy while loading, per-replica acknowledgements), over the
//! same network as the bus, so partitions, one-way cuts and loss cut replication as they
//! cut the bus; each node's offset and master link go to its core as the shell's driver
//! reports them, before every cron tick. Simulated clients (its `clients` module, started by
//! [`Simulator::start_clients`]) write and read through the cores' slot tables and count a
//! write acknowledged as WAIT does.
//!
//! Faults: [`Simulator::kill`] (the process stops; [`Simulator::restart`] brings it back
//! with its nodes.conf and its data, as after a snapshot), [`Simulator::restart_without_data`]
//! (its data is gone, its nodes.conf stays), [`Simulator::pause`] (it handles no input for
//! a while, then resumes with its old timers), partitions and one-way cuts
//! ([`Simulator::cut_one_way`]), and the network's delay, loss and duplication.

mod clients;
mod data;
#[cfg(test)]
mod faults;
pub mod invariants;
mod network;
mod scenario;
pub use scenario::{FORMATION_TIMEOUT_MS, SETTLE_AFTER_FORMATION_MS};
mod trace;

use std::fmt;

pub use clients::{ClientStats, Durability, Workload};
pub use network::NetworkConfig;
pub use trace::{Trace, TRACE_CAPACITY_LINES};

use crate::core::rng::Rng;
use crate::core::slots::SlotRange;
use crate::core::{nodes_conf, wire};
use crate::core::{AdminCommand, Config, Core, Output};
use clients::Clients;
use data::{NodeData, Outgoing, StreamFrame, ACK_INTERVAL_MS};
use invariants::InvariantState;
use network::{Network, Payload};

/// Bus port of every simulated node.
pub const SIM_BUS_PORT: u16 = 17000;
/// Client port of every simulated node.
pub const SIM_CLIENT_PORT: u16 = 7000;
/// Mixed into the seed for the replication model's random draws.
const DATA_RNG_SALT: u64 = 0xDA7A_5EED;
/// Mixed into the seed for the clients' random draws.
const CLIENT_RNG_SALT: u64 = 0xC11E_5EED;
/// Default cap on simulation steps for one run.
pub const DEFAULT_STEP_LIMIT: u64 = 50_000_000;

/// Simulation parameters.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Number of nodes.
    pub node_count: usize,
    /// The one seed every random choice derives from.
    pub seed: u64,
    /// node_timeout of every core, in ms.
    pub node_timeout_ms: u64,
    /// Network behaviour.
    pub network: NetworkConfig,
    /// Stop with an error after this many steps.
    pub step_limit: u64,
    /// Trace lines kept for failure reports.
    pub trace_capacity_lines: usize,
    /// Run every core with Redis's failover timings and no PFAIL push (a baseline).
    pub redis_failover_timing: bool,
    /// The autopilot of every core (`None`: formed by hand, the default).
    pub formation: Option<crate::core::formation::FormationConfig>,
}

impl SimConfig {
    /// `node_count` nodes, the given seed and node timeout, a lossless 1-10 ms network.
    pub fn new(node_count: usize, seed: u64, node_timeout_ms: u64) -> SimConfig {
        SimConfig {
            node_count,
            seed,
            node_timeout_ms,
            network: NetworkConfig::default(),
            step_limit: DEFAULT_STEP_LIMIT,
            trace_capacity_lines: TRACE_CAPACITY_LINES,
            redis_failover_timing: false,
            formation: None,
        }
    }
}

/// A failed run: what broke, the seed to replay it, and what led to it.
#[derive(Debug, Clone)]
pub struct SimError {
    /// The seed of the run.
    pub seed: u64,
    /// Virtual time of the failure, in ms.
    pub now_ms: u64,
    /// What went wrong.
    pub reason: String,
    /// The last events before it.
    pub trace: String,
}

impl fmt::Display for SimError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "simulation failed at {} ms with seed {}: {}\nreplay: SLOTKV_SIM_SEED={} cargo test --release -p slotkv-cluster --test random_faults\nlast events:\n{}",
            self.now_ms, self.seed, self.reason, self.seed, self.trace
        )
    }
}

impl std::error::Error for SimError {}

/// One simulated node: its core (absent while killed) and its "disk".
#[derive(Debug)]
struct SimNode {
    core: Option<Core>,
    config: Config,
    /// The node's "disk": the last nodes.conf text it saved.
    saved: Option<String>,
    /// The node's data and replication state.
    data: NodeData,
    /// The node handles no input before this time (a process pause), in virtual ms.
    paused_until_ms: u64,
    /// When the replication model next does its periodic work, in virtual ms.
    next_data_tick_ms: u64,
    restarts: u64,
}

/// The simulator. See the module docs.
#[derive(Debug)]
pub struct Simulator {
    config: SimConfig,
    now_ms: u64,
    rng: Rng,
    nodes: Vec<SimNode>,
    network: Network,
    trace: Trace,
    steps: u64,
    bytes_sent: Vec<u64>,
    redis_bytes_sent: Vec<u64>,
    messages_sent: Vec<u64>,
    config_saves: Vec<u64>,
    invariants: InvariantState,
    /// Draws of the replication model (its own stream, so bus runs replay as before).
    data_rng: Rng,
    clients: Option<Clients>,
    /// A holding of data may have ended (kill, restart, full sync): invariant 1 is checked
    /// at the end of the step.
    holdings_changed: bool,
    #[cfg(test)]
    faults: faults::Faults,
}

/// The bus address of node `index`.
pub fn address_of(index: usize) -> String {
    format!("n{index}:{SIM_BUS_PORT}")
}

fn index_of(address: &str) -> Option<usize> {
    let host = address.split(':').next()?;
    host.strip_prefix('n')?.parse().ok()
}

impl Simulator {
    /// `config.node_count` fresh nodes, each knowing only itself.
    pub fn new(config: SimConfig) -> Simulator {
        let mut rng = Rng::new(config.seed);
        let nodes = (0..config.node_count)
            .map(|index| {
                let core_config = Config {
                    node_timeout_ms: config.node_timeout_ms,
                    rng_seed: rng.next_u64(),
                    ip: format!("n{index}"),
                    client_port: SIM_CLIENT_PORT,
                    bus_port: SIM_BUS_PORT,
                    redis_failover_timing: config.redis_failover_timing,
                    fast_failure_push: !config.redis_failover_timing,
                    formation: config.formation.clone(),
                    ..Config::default()
                };
                SimNode {
                    core: Some(Core::new(core_config.clone(), 0)),
                    config: core_config,
                    saved: None,
                    data: NodeData::default(),
                    paused_until_ms: 0,
                    next_data_tick_ms: 0,
                    restarts: 0,
                }
            })
            .collect();
        let count = config.node_count;
        let data_rng = Rng::new(config.seed ^ DATA_RNG_SALT);
        let mut sim = Simulator {
            network: Network::new(config.network, count),
            trace: Trace::new(config.trace_capacity_lines),
            invariants: InvariantState::new(count),
            bytes_sent: vec![0; count],
            redis_bytes_sent: vec![0; count],
            messages_sent: vec![0; count],
            config_saves: vec![0; count],
            config,
            now_ms: 0,
            rng,
            nodes,
            steps: 0,
            data_rng,
            clients: None,
            holdings_changed: false,
            #[cfg(test)]
            faults: faults::Faults::default(),
        };
        for index in 0..count {
            sim.follow_role(index);
        }
        sim
    }

    /// Virtual time, in ms.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// Number of nodes (live or not).
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Node `index`'s core, `None` while it is killed.
    pub fn core(&self, index: usize) -> Option<&Core> {
        self.nodes.get(index).and_then(|node| node.core.as_ref())
    }

    /// Indices of live nodes.
    pub fn live_nodes(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|index| self.nodes[*index].core.is_some())
            .collect()
    }

    /// The index of the node with `id`, if any node has it.
    pub fn index_of_id(&self, id: &crate::core::node::NodeId) -> Option<usize> {
        (0..self.nodes.len()).find(|index| {
            self.nodes[*index]
                .core
                .as_ref()
                .map(Core::myself_id)
                .or_else(|| self.saved_id(*index))
                == Some(*id)
        })
    }

    fn saved_id(&self, index: usize) -> Option<crate::core::node::NodeId> {
        let text = self.nodes[index].saved.as_deref()?;
        let line = text.lines().find(|line| line.contains("myself"))?;
        crate::core::node::NodeId::parse_hex(line.split(' ').next()?).ok()
    }

    /// Bus bytes sent by each node so far.
    pub fn bytes_sent(&self) -> &[u64] {
        &self.bytes_sent
    }

    /// What the same messages would have taken in Redis's bus format, per node.
    pub fn redis_bytes_sent(&self) -> &[u64] {
        &self.redis_bytes_sent
    }

    /// Measures, over `duration_ms` of virtual time from now, the mean bus bytes sent per
    /// node per second: `(ours, the same messages in Redis's format)`.
    pub fn measure_bus_bytes_per_node_per_second(
        &mut self,
        duration_ms: u64,
    ) -> Result<(f64, f64), SimError> {
        let ours_before: u64 = self.bytes_sent.iter().sum();
        let redis_before: u64 = self.redis_bytes_sent.iter().sum();
        self.run_for(duration_ms)?;
        let ours = self.bytes_sent.iter().sum::<u64>() - ours_before;
        let redis = self.redis_bytes_sent.iter().sum::<u64>() - redis_before;
        let scale = self.node_count() as f64 * duration_ms as f64 / 1000.0;
        Ok((ours as f64 / scale, redis as f64 / scale))
    }

    /// Executes one step (one input to one core), whenever it is due; false when
    /// nothing is scheduled at all.
    pub fn step_once(&mut self) -> Result<bool, SimError> {
        self.step(u64::MAX)
    }

    /// Config saves (`SaveConfig` outputs) by each node so far.
    pub fn config_saves(&self) -> &[u64] {
        &self.config_saves
    }

    /// Bus messages sent by each node so far.
    pub fn messages_sent(&self) -> &[u64] {
        &self.messages_sent
    }

    /// Steps executed so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Messages lost to drops and partitions so far.
    pub fn dropped_messages(&self) -> u64 {
        self.network.dropped
    }

    /// Changes the network's delay and loss.
    pub fn set_network(&mut self, network: NetworkConfig) {
        self.network.config = network;
    }

    /// The trace kept so far (the last `trace_capacity_lines` lines), for replay checks.
    pub fn trace_text(&self) -> String {
        self.trace.render()
    }

    /// Appends a line to the trace.
    pub fn note(&mut self, line: String) {
        let stamped = format!("{:>8} {line}", self.now_ms);
        self.trace.push(stamped);
    }

    /// A failure at the current time with the trace so far.
    pub fn error(&self, reason: String) -> SimError {
        SimError {
            seed: self.config.seed,
            now_ms: self.now_ms,
            reason,
            trace: self.trace.render(),
        }
    }

    /// Runs an admin command on node `index` and routes its outputs.
    pub fn command(
        &mut self,
        index: usize,
        command: AdminCommand,
    ) -> Result<crate::core::AdminReply, SimError> {
        let now = self.now_ms;
        self.note(format!("n{index} admin {command:?}"));
        let Some(core) = self
            .nodes
            .get_mut(index)
            .and_then(|node| node.core.as_mut())
        else {
            return Err(self.error(format!("admin command to dead node n{index}")));
        };
        let reply = core
            .handle_command(now, command)
            .map_err(|error| self.error(format!("n{index} refused a command: {error}")));
        self.drain(index)?;
        reply
    }

    /// Kills node `index`: its process stops, the replication frames it had in flight
    /// are lost; its saved config and its data survive for [`Self::restart`].
    pub fn kill(&mut self, index: usize) {
        let Some(node) = self.nodes.get_mut(index) else {
            return;
        };
        node.core = None;
        node.data.stop();
        node.paused_until_ms = 0;
        self.network.drop_streams_from(index);
        self.note(format!("n{index} killed"));
        // Invariant 1 is checked at the next step.
        self.holdings_changed = true;
    }

    /// Node `index` announces bus port `port` from its next restart on (a node that comes
    /// back on a new address; the simulated network routes by host, so it stays reachable).
    pub fn set_bus_port(&mut self, index: usize, port: u16) {
        if let Some(node) = self.nodes.get_mut(index) {
            node.config.bus_port = port;
        }
    }

    /// Restarts node `index` from its last saved config (or fresh if it never saved) and
    /// its data, as after a snapshot.
    pub fn restart(&mut self, index: usize) -> Result<(), SimError> {
        self.start_process(index)
    }

    /// Restarts node `index` from its last saved config with its data gone (no
    /// persistence, or a crash): it holds nothing and has no history.
    pub fn restart_without_data(&mut self, index: usize) -> Result<(), SimError> {
        if self.core(index).is_some() || index >= self.nodes.len() {
            return Ok(());
        }
        self.nodes[index].data = NodeData::default();
        self.invariants.ledger.note_wiped(index, self.now_ms);
        self.note(format!("n{index} lost its data"));
        self.start_process(index)?;
        // As the shell does when no snapshot was loaded: a master withholds its slots
        // until a replica holding the data takes them over.
        let now = self.now_ms;
        if let Some(core) = self.nodes[index].core.as_mut() {
            core.note_restarted_without_data(now);
        }
        self.drain_outputs(index)
    }

    fn start_process(&mut self, index: usize) -> Result<(), SimError> {
        let now = self.now_ms;
        let Some(node) = self.nodes.get_mut(index) else {
            return Ok(());
        };
        if node.core.is_some() {
            return Ok(());
        }
        node.restarts += 1;
        let config = Config {
            rng_seed: node.config.rng_seed.wrapping_add(node.restarts),
            ..node.config.clone()
        };
        let core = match node.saved.as_deref() {
            Some(text) => nodes_conf::parse_nodes_conf(text)
                .map_err(|error| format!("n{index} cannot parse its nodes.conf: {error}"))
                .and_then(|conf| {
                    Core::restore(config, conf, now)
                        .map_err(|error| format!("n{index} cannot restart: {error}"))
                }),
            None => Ok(Core::new(config, now)),
        };
        match core {
            Ok(core) => node.core = Some(core),
            Err(reason) => return Err(self.error(reason)),
        }
        node.next_data_tick_ms = now;
        self.note(format!("n{index} restarted"));
        self.follow_role(index);
        self.holdings_changed = true;
        Ok(())
    }

    /// Pauses node `index` for `duration_ms`: it handles no message, tick or client
    /// request until then (messages wait for it), then resumes with its old timers.
    pub fn pause(&mut self, index: usize, duration_ms: u64) {
        let until_ms = self.now_ms + duration_ms;
        if let Some(node) = self.nodes.get_mut(index).filter(|node| node.core.is_some()) {
            node.paused_until_ms = until_ms;
            self.note(format!("n{index} paused until {until_ms} ms"));
        }
    }

    fn is_paused(&self, index: usize) -> bool {
        self.nodes
            .get(index)
            .is_some_and(|node| node.paused_until_ms > self.now_ms)
    }

    /// Cuts one direction of a link: `to` stops hearing `from` (bus and replication);
    /// `from` still hears `to`. [`Self::heal`] restores it.
    pub fn cut_one_way(&mut self, from: usize, to: usize) {
        self.note(format!("cut n{from} -> n{to}"));
        self.network.cut_one_way(from, to);
    }

    /// True when no partition or one-way cut is in force.
    pub fn network_is_whole(&self) -> bool {
        self.network.is_whole()
    }

    /// Splits the network into the given groups (others form one more group).
    pub fn partition(&mut self, groups: &[Vec<usize>]) {
        self.note(format!("partition {groups:?}"));
        self.network.partition(groups);
    }

    /// Reconnects everyone.
    pub fn heal(&mut self) {
        self.note("heal".to_string());
        self.network.heal();
    }

    /// Runs until `now_ms + duration_ms`.
    pub fn run_for(&mut self, duration_ms: u64) -> Result<(), SimError> {
        let until_ms = self.now_ms + duration_ms;
        while self.step(until_ms)? {}
        self.now_ms = self.now_ms.max(until_ms);
        Ok(())
    }

    /// Runs until `condition` holds (checked after every step) or `timeout_ms` passes;
    /// returns whether it held.
    pub fn run_until(
        &mut self,
        timeout_ms: u64,
        mut condition: impl FnMut(&Simulator) -> bool,
    ) -> Result<bool, SimError> {
        let until_ms = self.now_ms + timeout_ms;
        // The condition is evaluated at most once per virtual millisecond.
        let mut checked_at_ms = None;
        loop {
            if checked_at_ms != Some(self.now_ms) {
                checked_at_ms = Some(self.now_ms);
                if condition(self) {
                    return Ok(true);
                }
            }
            if !self.step(until_ms)? {
                self.now_ms = self.now_ms.max(until_ms);
                return Ok(condition(self));
            }
        }
    }

    /// One input to one node, if anything is due before `until_ms`; false otherwise.
    fn step(&mut self, until_ms: u64) -> Result<bool, SimError> {
        self.steps += 1;
        if self.steps > self.config.step_limit {
            return Err(self.error(format!("step limit {} reached", self.config.step_limit)));
        }
        let next_message = self.network.next_delivery_ms().map(|at_ms| (at_ms, 0));
        // A paused node's timers fire when it resumes.
        let next_timer = self
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(index, node)| {
                let core = node.core.as_ref()?;
                Some((core.poll_timeout().max(node.paused_until_ms), 1, index))
            })
            .min();
        let next_client = self.clients.as_ref().map(|clients| (clients.next_op_ms, 2));
        let next = [
            next_message,
            next_timer.map(|(at_ms, kind, _)| (at_ms, kind)),
            next_client,
        ]
        .into_iter()
        .flatten()
        .min();
        let Some((at_ms, kind)) = next else {
            return Ok(false);
        };
        if at_ms > until_ms {
            return Ok(false);
        }
        self.now_ms = self.now_ms.max(at_ms);
        let index = match kind {
            0 => self.deliver_next()?,
            1 => {
                let index = next_timer.map_or(0, |(_, _, index)| index);
                self.tick_node(index)?;
                Some(index)
            }
            _ => {
                self.client_operation()?;
                None
            }
        };
        if std::mem::take(&mut self.holdings_changed) {
            self.check_writes_held()?;
        }
        if let Some(index) = index {
            self.check_step_invariants(index)?;
        }
        Ok(true)
    }

    fn deliver_next(&mut self) -> Result<Option<usize>, SimError> {
        let now = self.now_ms;
        let Some(message) = self.network.pop_due(now) else {
            return Ok(None);
        };
        let to = message.to;
        if self.core(to).is_none() {
            return Ok(None);
        }
        if self.is_paused(to) {
            let until_ms = self.nodes[to].paused_until_ms;
            self.network.defer(message, until_ms);
            return Ok(None);
        }
        match message.payload {
            Payload::Bus(bytes) => {
                let from_address = address_of(message.from);
                let Some(core) = self.nodes[to].core.as_mut() else {
                    return Ok(None);
                };
                if let Err(error) = core.handle_datagram(now, &from_address, &bytes) {
                    return Err(self.error(format!("n{to} could not decode a message: {error}")));
                }
                self.drain(to)?;
            }
            Payload::Stream(frame) => self.deliver_frame(message.from, to, frame)?,
        }
        Ok(Some(to))
    }

    /// A replication frame reaches node `to`'s data.
    fn deliver_frame(
        &mut self,
        from: usize,
        to: usize,
        frame: StreamFrame,
    ) -> Result<(), SimError> {
        // A master withholding its slots after a restart without data serves no sync
        // (it would ship its empty engine); the replica keeps asking.
        if matches!(frame, StreamFrame::Psync { .. })
            && self.core(to).is_some_and(|core| !core.serves_data())
        {
            return Ok(());
        }
        let is_ack = matches!(frame, StreamFrame::Ack { .. });
        #[cfg(test)]
        let before = self.nodes[to].data.values.clone();
        let mut out = Vec::new();
        let replaced = self.nodes[to]
            .data
            .handle_frame(from, frame, self.now_ms, &mut out);
        if replaced {
            #[cfg(test)]
            self.apply_full_sync_fault(to, before);
            self.note(format!("n{to} full sync from n{from} loaded"));
            let foreign = self.keys_not_owned_by(from);
            let values = &self.nodes[to].data.values;
            self.invariants.ledger.note_left_shard(to, values, &foreign);
            self.holdings_changed = true;
        }
        self.send_frames(to, out);
        if is_ack {
            self.handle_acknowledgements(to);
        }
        Ok(())
    }

    /// The clients' keys whose slot node `index` does not own in its own view.
    fn keys_not_owned_by(&self, index: usize) -> std::collections::BTreeSet<data::Key> {
        let Some(core) = self.core(index) else {
            return Default::default();
        };
        let keys = self
            .clients
            .as_ref()
            .map_or(0, |clients| clients.workload.keys);
        (0..keys)
            .filter(|key| {
                self.clients_slot(*key)
                    .is_some_and(|slot| core.slot_owner(slot) != Some(core.myself_id()))
            })
            .collect()
    }

    fn send_frames(&mut self, from: usize, out: Vec<Outgoing>) {
        let now = self.now_ms;
        for (to, frame, extra_ms) in out {
            if matches!(frame, StreamFrame::FullSyncStart { .. }) {
                self.note(format!("n{from} -> n{to} full sync"));
            }
            self.network
                .send_stream(&mut self.data_rng, now, (from, to), frame, extra_ms);
        }
    }

    /// Reports replication progress as the shell's driver does, runs the replication
    /// model's periodic work when due, then ticks the core.
    fn tick_node(&mut self, index: usize) -> Result<(), SimError> {
        let now = self.now_ms;
        let node = &mut self.nodes[index];
        let Some(core) = node.core.as_mut() else {
            return Ok(());
        };
        let (offset, link_up) = node.data.status(now);
        core.handle_replication_status(now, offset, link_up);
        let mut out = Vec::new();
        if node.next_data_tick_ms <= now {
            node.next_data_tick_ms = now + ACK_INTERVAL_MS;
            node.data.tick(now, &mut out);
        }
        if let Some(core) = node.core.as_mut() {
            core.handle_tick(now);
        }
        self.send_frames(index, out);
        self.drain(index)
    }

    /// Makes node `index`'s replication follow its core's role.
    fn follow_role(&mut self, index: usize) {
        let Some(core) = self.core(index) else {
            return;
        };
        let master = match core.my_master() {
            None => None,
            Some(id) => match self.index_of_id(&id) {
                Some(master) => Some(master),
                // A master not known by any node yet: nothing to follow.
                None => return,
            },
        };
        let phase_before = self.nodes[index].data.phase();
        let now = self.now_ms;
        let rng = &mut self.data_rng;
        let mut out = Vec::new();
        self.nodes[index]
            .data
            .follow_role(master, now, || rng.next_u64().max(1), &mut out);
        if phase_before.is_some() != self.nodes[index].data.phase().is_some() {
            let role = master.map_or("master".to_string(), |m| format!("replica of n{m}"));
            let (replid, offset) = self.nodes[index].data.position();
            self.note(format!(
                "n{index} data follows: {role} (was {phase_before:?}, history {replid:x} offset {offset})"
            ));
        }
        self.send_frames(index, out);
    }

    /// Routes node `index`'s outputs (transmits into the network, saves to its disk), then
    /// lets its replication follow its role.
    fn drain(&mut self, index: usize) -> Result<(), SimError> {
        self.drain_outputs(index)?;
        self.follow_role(index);
        Ok(())
    }

    fn drain_outputs(&mut self, index: usize) -> Result<(), SimError> {
        let now = self.now_ms;
        loop {
            let Some(output) = self.nodes[index].core.as_mut().and_then(Core::poll_output) else {
                return Ok(());
            };
            match output {
                Output::Transmit { to, message } => {
                    if let Some(problem) =
                        self.invariants.check_persisted_before_send(index, &message)
                    {
                        return Err(self.error(problem));
                    }
                    let notable =
                        !matches!(message.body, wire::Body::Ping(_) | wire::Body::Pong(_));
                    let bytes = wire::encode(&message);
                    self.bytes_sent[index] += bytes.len() as u64;
                    self.redis_bytes_sent[index] += wire::redis_encoded_len(&message) as u64;
                    self.messages_sent[index] += 1;
                    let Some(target) = index_of(&to.address) else {
                        continue;
                    };
                    if notable {
                        let kind = message.body.message_type().stats_name();
                        self.note(format!("n{index} -> n{target} {kind}"));
                    }
                    if message.body == wire::Body::FailoverAuthAck {
                        let epoch = message.header.current_epoch;
                        if let Some(problem) =
                            self.invariants.check_single_vote(index, epoch, target)
                        {
                            return Err(self.error(problem));
                        }
                    }
                    self.network.send(&mut self.rng, now, index, target, bytes);
                }
                Output::SaveConfig(conf) => {
                    self.config_saves[index] += 1;
                    self.invariants.note_saved(index, &conf);
                    self.nodes[index].saved = Some(nodes_conf::render_nodes_conf(&conf));
                }
                Output::DropSlots(ranges) => self.note(format!("n{index} drops {ranges:?}")),
                Output::ReleasePeer { .. } => {}
                Output::Event(event) => self.note(format!("n{index} {event:?}")),
                // The simulated data path stops at once: the node's offset is final.
                Output::PauseWrites => {
                    let offset = self.nodes[index].data.position().1;
                    if let Some(core) = self.nodes[index].core.as_mut() {
                        core.handle_writes_paused(now, offset);
                    }
                }
            }
        }
    }

    /// Hands node `index` raw bus bytes as if `from` had sent them, routes whatever it
    /// answers, and returns the decode result (fuzzing and forged-message tests; no
    /// invariant is checked, since a forged message may legitimately mislead a node).
    pub fn inject_datagram(
        &mut self,
        index: usize,
        from: usize,
        bytes: &[u8],
    ) -> Result<(), wire::DecodeError> {
        let now = self.now_ms;
        let Some(core) = self
            .nodes
            .get_mut(index)
            .and_then(|node| node.core.as_mut())
        else {
            return Ok(());
        };
        let result = core.handle_datagram(now, &address_of(from), bytes);
        // Transmits that break the save-before-send check surface in the caller's own
        // checks; here only routing matters.
        let _ = self.drain(index);
        result
    }

    /// Node `index` adds `ranges` to itself.
    pub fn add_slots(&mut self, index: usize, ranges: Vec<SlotRange>) -> Result<(), SimError> {
        self.command(index, AdminCommand::AddSlots(ranges))
            .map(|_| ())
    }
}
