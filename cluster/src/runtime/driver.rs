//! The driver: the one task that owns the sans-IO [`Core`] and feeds it.
//!
//! Inputs: the cron (at [`Core::poll_timeout`], at most every [`TICK_INTERVAL_MS`]), bus
//! frames from the endpoint, link events, the replication status (every tick) and admin
//! requests from the node handle over a bounded channel. After each input it drains
//! [`Core::poll_output`] in order: a transmit is encoded with the core's wire module and
//! queued with `send_bus`; a `SaveConfig` is written with `save_conf` on the blocking pool
//! and awaited before any later output (if it fails, no bus message goes out until a
//! retried save succeeds, as Redis exits rather than gossip unsaved state); an event is
//! acted on (role → replication) and published; a `PauseWrites` publishes the closed
//! map, closes the write log's gate, waits for the writes in flight and reports the
//! offset after the last one to the core. Then it republishes the slot map for the data
//! path. It decides nothing itself.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use slotkv_transport::{Channel, Direction, InboundFrame, PeerAddr, TransportEvent};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::core::node::NodeId;
use crate::core::slots::SlotRange;
use crate::core::wire::{self, HandOverMode};
use crate::core::{
    AdminCommand, AdminError, AdminReply, Core, Event, HandOverError, NodesConf, Output,
    ReleaseReason, Role, TICK_INTERVAL_MS,
};
use crate::node_state::stats::Refusal;
use crate::node_state::write_log::drop_lost_slots;
use crate::node_state::{NodeState, RoutingTable};
use crate::replication::master::MasterStreams;
use crate::runtime::admin::refuse_while_keys_held;
use crate::runtime::node_identity::sender_is_named;
use crate::runtime::nodes_conf_file::save_conf;

/// Capacity of the admin request channel.
pub(crate) const ADMIN_QUEUE_MAX: usize = 64;

/// Capacity of the host's event channel (slow subscribers miss events).
pub(crate) const EVENT_QUEUE_MAX: usize = 256;

/// A look at the core from outside the driver.
pub(crate) type Inspection = Box<dyn FnOnce(&Core) + Send>;

/// What the node handle asks of the driver.
pub(crate) enum DriverRequest {
    /// Run an admin command.
    Admin(
        AdminCommand,
        oneshot::Sender<Result<AdminReply, AdminError>>,
    ),
    /// Run a closure on the core (views, ids).
    Inspect(Inspection),
    /// A step of the shutdown hand-over (answered once its outputs are drained).
    HandOver(HandOverStep, oneshot::Sender<Result<(), HandOverError>>),
}

/// The steps of the shutdown hand-over the node asks of the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HandOverStep {
    /// Pause writes for good ([`Core::pause_for_hand_over`]).
    Pause,
    /// Ask this replica to take over gracefully ([`Core::hand_over`]).
    Ask(NodeId),
}

/// The driver's inputs and outputs.
pub(crate) struct Driver {
    /// The core.
    pub(crate) core: Core,
    /// Shared node state.
    pub(crate) shared: Arc<NodeState>,
    /// nodes.conf path, if persisted.
    pub(crate) config_path: Option<PathBuf>,
    /// Admin requests.
    pub(crate) requests: mpsc::Receiver<DriverRequest>,
    /// Bus frames from the endpoint.
    pub(crate) bus: mpsc::Receiver<InboundFrame>,
    /// Link events from the endpoint.
    pub(crate) link_events: mpsc::Receiver<TransportEvent>,
    /// The master this node replicates, for the replication task.
    pub(crate) role: watch::Sender<Option<NodeId>>,
    /// Events for the host.
    pub(crate) events: broadcast::Sender<Event>,
    /// The latest config when its save failed: until a save succeeds no bus message goes
    /// out (it may rest on this state: a vote, an epoch, slots) and the save is retried.
    pub(crate) unsaved: Option<NodesConf>,
    /// The answer to the admin command of the current input, sent after publishing.
    pub(crate) pending_reply: Option<AdminAnswer>,
    /// The master's replication streams (run by the replication task), stopped here when
    /// the core releases their peer.
    pub(crate) streams: Arc<MasterStreams>,
    /// The answer to the hand-over step of the current input, sent after publishing.
    pub(crate) pending_hand_over: Option<HandOverAnswer>,
    /// Slots the current input lost to other nodes, whose keys are deleted once the new
    /// map is published and the answers are sent (an atomic migration's source waits on
    /// its answer with the slots paused; the deletion is no part of that pause).
    pub(crate) lost_slots: Vec<SlotRange>,
}

/// A hand-over step's answer and where it goes.
pub(crate) type HandOverAnswer = (
    oneshot::Sender<Result<(), HandOverError>>,
    Result<(), HandOverError>,
);

/// An admin command's answer and where it goes.
pub(crate) type AdminAnswer = (
    oneshot::Sender<Result<AdminReply, AdminError>>,
    Result<AdminReply, AdminError>,
);

impl Driver {
    /// Runs until the node shuts down, then saves the configuration one last time.
    pub(crate) async fn run(mut self) {
        self.publish();
        loop {
            let deadline = self.deadline();
            tokio::select! {
                _ = self.shared.shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(deadline) => {
                    self.retry_unsaved().await;
                    self.handle_tick();
                }
                Some(frame) = self.bus.recv() => self.handle_bus_frame(frame),
                Some(event) = self.link_events.recv() => self.handle_link_event(event),
                Some(request) = self.requests.recv() => self.handle_request(request),
            }
            let changed = self.drain().await;
            if changed {
                self.publish();
            }
            // Answer admin commands only once their effects are saved and published, so a
            // caller's next data call sees them.
            if let Some((reply, result)) = self.pending_reply.take() {
                let _ = reply.send(result);
            }
            if let Some((reply, result)) = self.pending_hand_over.take() {
                let _ = reply.send(result);
            }
            // Before the next input: nothing can give the slots back in between.
            self.drop_lost_slots();
        }
        let snapshot = self.core.snapshot();
        self.save(&snapshot).await;
    }

    fn deadline(&self) -> tokio::time::Instant {
        let due_ms = self
            .core
            .poll_timeout()
            .min(self.core.now_ms() + TICK_INTERVAL_MS);
        let start = tokio::time::Instant::from_std(self.shared.started);
        start + Duration::from_millis(due_ms)
    }

    fn handle_tick(&mut self) {
        let now_ms = self.shared.now_ms();
        let offset = self.shared.log.offset();
        let link_up = self.shared.master_link_is_up();
        self.core.handle_replication_status(now_ms, offset, link_up);
        self.core.handle_tick(now_ms);
        // The tick republishes the map so liveness flags reach the data path.
        self.publish();
    }

    /// A bus message in; under per-node identity only if the link's certificate names the
    /// sender it claims (see `node_identity`).
    fn handle_bus_frame(&mut self, frame: InboundFrame) {
        let now_ms = self.shared.now_ms();
        let from = frame.from.as_str();
        if frame.identity.is_none() {
            let _ = self.core.handle_datagram(now_ms, from, &frame.payload);
            return;
        }
        match wire::decode(&frame.payload) {
            Ok(message) if sender_is_named(frame.identity.as_ref(), &message.header.sender) => {
                self.core.handle_message(now_ms, from, message);
            }
            Ok(message) => {
                self.shared.stats.count(Refusal::ImpostorBusMessage);
                tracing::warn!(%from, sender = %message.header.sender, "dropped a bus message \
                    whose sender the link's certificate does not name");
            }
            // The core counts and logs the malformed message.
            Err(_) => {
                let _ = self.core.handle_datagram(now_ms, from, &frame.payload);
            }
        }
    }

    fn handle_link_event(&mut self, event: TransportEvent) {
        let (peer, up) = match event {
            TransportEvent::Connected {
                peer,
                channel: Channel::Bus,
                direction: Direction::Outbound,
            } => (peer, true),
            TransportEvent::Closed {
                peer,
                channel: Channel::Bus,
                direction: Direction::Outbound,
                ..
            } => (peer, false),
            _ => return,
        };
        let id = self
            .core
            .nodes()
            .find(|node| node.bus_address() == peer.as_str())
            .map(|node| node.id);
        if let Some(id) = id {
            let now_ms = self.shared.now_ms();
            self.core.handle_link_event(now_ms, &id, up);
        }
    }

    fn handle_request(&mut self, request: DriverRequest) {
        match request {
            DriverRequest::Admin(command, reply) => {
                let now_ms = self.shared.now_ms();
                let store = self.shared.store.get();
                let result = refuse_while_keys_held(&self.core, &store, &command)
                    .and_then(|()| self.core.handle_command(now_ms, command));
                self.pending_reply = Some((reply, result));
            }
            DriverRequest::Inspect(inspect) => inspect(&self.core),
            DriverRequest::HandOver(step, reply) => {
                let now_ms = self.shared.now_ms();
                let result = match step {
                    HandOverStep::Pause => self.core.pause_for_hand_over(now_ms),
                    HandOverStep::Ask(replica) => {
                        self.core.hand_over(now_ms, replica, HandOverMode::Graceful)
                    }
                };
                self.pending_hand_over = Some((reply, result));
            }
        }
    }

    /// Acts on every queued output in order; returns whether anything may have changed the
    /// slot map.
    async fn drain(&mut self) -> bool {
        let mut changed = false;
        while let Some(output) = self.core.poll_output() {
            match output {
                Output::Transmit { to, message } => {
                    if self.unsaved.is_some() {
                        self.shared.stats.count(Refusal::BusMessageWithheld);
                    } else {
                        self.transmit(&to.address, &message);
                    }
                }
                Output::SaveConfig(conf) => {
                    changed = true;
                    // A newer config replaces an unsaved older one.
                    self.unsaved = None;
                    if !self.save(&conf).await {
                        self.unsaved = Some(conf);
                    }
                }
                Output::DropSlots(ranges) => {
                    changed = true;
                    self.lost_slots.extend(ranges);
                }
                Output::ReleasePeer { address, reason } => {
                    self.release_peer(&address, reason).await;
                }
                Output::Event(event) => {
                    changed = true;
                    self.handle_event(event);
                }
                Output::PauseWrites => {
                    changed = true;
                    self.pause_writes();
                }
            }
        }
        changed
    }

    /// Deletes the keys of slots this master lost (replicated as one op per slot). The new
    /// slot map is published first (the loop publishes after any `DropSlots`), so the data
    /// path sends new writes to the new owner.
    fn drop_lost_slots(&mut self) {
        if self.lost_slots.is_empty() {
            return;
        }
        let ranges = std::mem::take(&mut self.lost_slots);
        let deleted = drop_lost_slots(&self.shared.log, &self.shared.store, &ranges);
        if deleted > 0 {
            tracing::info!(
                ?ranges,
                deleted,
                "deleted the keys of slots lost to other nodes"
            );
        }
    }

    /// Ends the replication stream to `address` and, for a forgotten, long-failed or
    /// re-addressed peer, its outbound links (the stream first, so it cannot reopen them).
    async fn release_peer(&self, address: &str, reason: ReleaseReason) {
        let Ok(peer) = PeerAddr::new(address) else {
            return;
        };
        let stopped = self.streams.stop(&self.shared, &peer).await;
        let closed = reason.closes_links() && self.shared.endpoint.disconnect(&peer);
        if stopped || closed {
            tracing::debug!(%peer, ?reason, stopped, closed, "released a peer");
        }
    }

    fn transmit(&self, address: &str, message: &wire::Message) {
        let Ok(peer) = PeerAddr::new(address) else {
            tracing::debug!(%address, "cannot send to an invalid bus address");
            return;
        };
        let frame = Bytes::from(wire::encode(message));
        if let Err(error) = self.shared.endpoint.send_bus(&peer, frame) {
            tracing::debug!(%peer, %error, "bus frame not sent");
        }
    }

    /// Saves `conf` (when persisted); returns whether it is on disk. A failure is logged
    /// and counted.
    async fn save(&self, conf: &NodesConf) -> bool {
        let Some(path) = self.config_path.clone() else {
            return true;
        };
        let conf = conf.clone();
        let saved = tokio::task::spawn_blocking(move || save_conf(&path, &conf)).await;
        let failure = match saved {
            Ok(Ok(())) => return true,
            Ok(Err(error)) => error.to_string(),
            Err(error) => format!("the save task failed: {error}"),
        };
        self.shared.stats.count(Refusal::ConfigSaveFailed);
        tracing::error!(
            error = %failure,
            "could not save nodes.conf; no bus message is sent until a save succeeds"
        );
        false
    }

    /// Retries the save of an unsaved config (every tick while one is pending).
    async fn retry_unsaved(&mut self) {
        let Some(conf) = self.unsaved.take() else {
            return;
        };
        if self.save(&conf).await {
            tracing::info!("nodes.conf saved again; the node talks to its peers again");
        } else {
            self.unsaved = Some(conf);
        }
    }

    fn handle_event(&mut self, event: Event) {
        if let Event::RoleChanged(role) = &event {
            let master = match role {
                Role::Master => None,
                Role::Replica { master } => Some(*master),
            };
            self.role.send_replace(master);
        }
        // No subscriber is fine; a lagging one misses events.
        let _ = self.events.send(event);
    }

    /// Writes paused: the data path's map and the log's gate close, the writes in flight
    /// finish, and the core learns the offset after the last one.
    fn pause_writes(&mut self) {
        self.publish();
        let offset = self.shared.log.close_writes();
        let now_ms = self.shared.now_ms();
        self.core.handle_writes_paused(now_ms, offset);
    }

    fn publish(&mut self) {
        let table = RoutingTable::from_core(&self.core, self.shared.endpoint.local_addr());
        if self.core.my_master() != *self.role.borrow() {
            self.role.send_replace(self.core.my_master());
        }
        // Opening needs no barrier; closing for a pause goes through `pause_writes`.
        self.shared.log.set_writes_open(table.accepts_writes);
        self.shared.routing.publish(table);
    }
}
