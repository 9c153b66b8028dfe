//! The admin API of a node: CLUSTER MEET, ADDSLOTS, SETSLOT, REPLICATE, FAILOVER, FORGET,
//! RESET; the views (NODES, SLOTS, SHARDS, INFO); memory and key counts; the key-by-key
//! migration's COUNTKEYSINSLOT, GETKEYSINSLOT and MIGRATE; the atomic
//! [`Node::migrate_slots`]; and
//! [`create_cluster`], the `redis-cli --cluster create --cluster-replicas N` helper.
//!
//! Every command goes to the driver over its bounded channel and is answered once the core
//! handled it; views run as closures on the core inside the driver.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use bytes::Bytes;
use slotkv_engine::{Store, SLOT_COUNT};
use slotkv_transport::PeerAddr;
use tokio::sync::{mpsc, oneshot};

use crate::core::node::NodeId;
use crate::core::slots::{slots_of_ranges, spread_slots, Slot, SlotRange};
use crate::core::{
    AdminCommand, AdminError, AdminReply, ClusterState, Core, FailoverMode, ResetMode,
    SetSlotAction,
};
use crate::runtime::driver::DriverRequest;
use crate::runtime::Node;
use crate::slot_migration::atomic_source::{
    self, Parties, SlotMigrationError, SlotMigrationOptions, SlotMigrationProgress,
    SlotMigrationReport,
};
use crate::slot_migration::jobs::{self, SlotMigrationJob, StartMigrationsError};
use crate::slot_migration::source::{migrate_keys, MigrateError, MigrateOptions, MigrateReply};
use crate::slot_migration::{CoreAdmin, CoreAdminError};
use crate::views::{self, PreferredEndpoint, ShardView, SlotsEntry};

/// How often [`create_cluster`] re-checks the cluster while it waits, in ms.
const CREATE_POLL_INTERVAL_MS: u64 = 20;

/// Why an admin call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminCallError {
    /// The core refused the command; nothing changed.
    #[error(transparent)]
    Refused(#[from] AdminError),
    /// The node is shut down.
    #[error("the node is shut down")]
    Stopped,
    /// An address is not `host:port`.
    #[error("{0} is not a host:port address")]
    BadAddress(String),
    /// [`create_cluster`] was given too few nodes.
    #[error(
        "{nodes} nodes cannot make {masters} masters with {replicas_per_master} replicas each"
    )]
    TooFewNodes {
        /// Nodes given.
        nodes: usize,
        /// Masters wanted (at least 1).
        masters: usize,
        /// Replicas per master.
        replicas_per_master: usize,
    },
    /// The cluster did not reach the expected shape in time.
    #[error("the cluster did not {stage} within {timeout_ms} ms")]
    Timeout {
        /// What it was waiting for.
        stage: &'static str,
        /// The limit in ms.
        timeout_ms: u64,
    },
}

/// Per-node memory and key counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeMemory {
    /// Keys in the engine (expired keys not yet removed included).
    pub keys: usize,
    /// Bytes used as the engine accounts them.
    pub used_memory_bytes: usize,
}

/// The driver's request channel is how the migration tasks reach the core.
pub(crate) struct DriverAdmin(pub(crate) mpsc::Sender<DriverRequest>);

impl DriverAdmin {
    async fn command(&self, command: AdminCommand) -> Result<AdminReply, AdminCallError> {
        let (reply, answer) = oneshot::channel();
        self.0
            .send(DriverRequest::Admin(command, reply))
            .await
            .map_err(|_| AdminCallError::Stopped)?;
        Ok(answer.await.map_err(|_| AdminCallError::Stopped)??)
    }
}

impl CoreAdmin for DriverAdmin {
    fn run(&self, command: AdminCommand) -> BoxFuture<'_, Result<AdminReply, CoreAdminError>> {
        Box::pin(async move {
            self.command(command).await.map_err(|error| match error {
                AdminCallError::Refused(error) => CoreAdminError::Refused(error),
                _ => CoreAdminError::Stopped,
            })
        })
    }
}

impl Node {
    /// Runs an admin command.
    pub async fn command(&self, command: AdminCommand) -> Result<AdminReply, AdminCallError> {
        DriverAdmin(self.requests.clone()).command(command).await
    }

    /// Runs `look` on the core inside the driver and returns its result.
    pub async fn inspect<T: Send + 'static>(
        &self,
        look: impl FnOnce(&Core) -> T + Send + 'static,
    ) -> Result<T, AdminCallError> {
        let (reply, answer) = oneshot::channel();
        let inspection = Box::new(move |core: &Core| {
            let _ = reply.send(look(core));
        });
        self.requests
            .send(DriverRequest::Inspect(inspection))
            .await
            .map_err(|_| AdminCallError::Stopped)?;
        answer.await.map_err(|_| AdminCallError::Stopped)
    }

    /// CLUSTER MEET with the node at bus address `address` (`host:port`).
    pub async fn meet(&self, address: &PeerAddr) -> Result<(), AdminCallError> {
        let (host, port) = address
            .as_str()
            .rsplit_once(':')
            .and_then(|(host, port)| Some((host.to_string(), port.parse::<u16>().ok()?)))
            .ok_or_else(|| AdminCallError::BadAddress(address.to_string()))?;
        self.command(AdminCommand::Meet {
            ip: host,
            client_port: port,
            bus_port: port,
        })
        .await
        .map(|_| ())
    }

    /// CLUSTER ADDSLOTSRANGE.
    pub async fn add_slots(&self, ranges: Vec<SlotRange>) -> Result<(), AdminCallError> {
        self.command(AdminCommand::AddSlots(ranges))
            .await
            .map(|_| ())
    }

    /// CLUSTER SETSLOT.
    pub async fn set_slot(&self, slot: Slot, action: SetSlotAction) -> Result<(), AdminCallError> {
        self.command(AdminCommand::SetSlot { slot, action })
            .await
            .map(|_| ())
    }

    /// CLUSTER REPLICATE.
    pub async fn replicate(&self, master: NodeId) -> Result<(), AdminCallError> {
        self.command(AdminCommand::Replicate(master))
            .await
            .map(|_| ())
    }

    /// CLUSTER FAILOVER (send to a replica).
    pub async fn failover(&self, mode: FailoverMode) -> Result<(), AdminCallError> {
        self.command(AdminCommand::Failover(mode)).await.map(|_| ())
    }

    /// CLUSTER FORGET.
    pub async fn forget(&self, node: NodeId) -> Result<(), AdminCallError> {
        self.command(AdminCommand::Forget(node)).await.map(|_| ())
    }

    /// CLUSTER RESET. A replica becomes an empty master, as in Redis: once the core made it
    /// a master (its replication stopped), its copy of its former master's keys is deleted,
    /// so a node removed by `redis-cli --cluster del-node` can be added again.
    pub async fn reset(&self, mode: ResetMode) -> Result<(), AdminCallError> {
        let was_replica = self.master().is_some();
        self.command(AdminCommand::Reset(mode)).await?;
        if was_replica {
            let every_slot = SlotRange::new(0, (SLOT_COUNT - 1) as Slot)
                .into_iter()
                .collect::<Vec<_>>();
            let deleted = crate::node_state::write_log::drop_lost_slots(
                &self.shared.log,
                &self.shared.store,
                &every_slot,
            );
            tracing::info!(deleted, "reset a replica into an empty master");
        }
        Ok(())
    }

    /// CLUSTER NODES.
    pub async fn cluster_nodes(&self) -> Result<String, AdminCallError> {
        let unix_now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_millis() as u64);
        self.inspect(move |core| views::cluster_nodes(core, unix_now_ms))
            .await
    }

    /// CLUSTER SLOTS.
    pub async fn cluster_slots(&self) -> Result<Vec<SlotsEntry>, AdminCallError> {
        self.inspect(|core| views::cluster_slots(core, PreferredEndpoint::Ip))
            .await
    }

    /// CLUSTER SHARDS.
    pub async fn cluster_shards(&self) -> Result<Vec<ShardView>, AdminCallError> {
        self.inspect(|core| views::cluster_shards(core, PreferredEndpoint::Ip))
            .await
    }

    /// CLUSTER INFO.
    pub async fn cluster_info(&self) -> Result<String, AdminCallError> {
        self.inspect(views::cluster_info).await
    }

    /// `cluster_state`.
    pub async fn cluster_state(&self) -> Result<ClusterState, AdminCallError> {
        self.inspect(Core::cluster_state).await
    }

    /// CLUSTER COUNTKEYSINSLOT: keys of `slot` in this node's engine (expired keys not yet
    /// removed included, as Redis counts them).
    pub fn count_keys_in_slot(&self, slot: Slot) -> Result<usize, AdminCallError> {
        self.store()
            .count_keys_in_slot(slot)
            .map_err(|_| invalid_slot(slot))
    }

    /// CLUSTER GETKEYSINSLOT: up to `count` live keys of `slot` in this node's engine.
    pub fn get_keys_in_slot(&self, slot: Slot, count: usize) -> Result<Vec<Bytes>, AdminCallError> {
        self.store()
            .list_keys_in_slot(slot, count)
            .map_err(|_| invalid_slot(slot))
    }

    /// MIGRATE (KEYS form) of `keys` to the node at bus address `target`, as one batch on
    /// the migration stream: the target imports them (REPLACE or BUSYKEY as `options`
    /// says), its replicas acknowledge them, then they are deleted here unless COPY. NOKEY
    /// when none exists here. See [`MigrateError`] for what each failure left behind.
    pub async fn migrate_keys(
        &self,
        target: &PeerAddr,
        keys: &[&[u8]],
        options: MigrateOptions,
    ) -> Result<MigrateReply, MigrateError> {
        migrate_keys(&self.shared, &self.migration, target, keys, options).await
    }

    /// Moves `ranges` from this node (their master) to master `to` by atomic slot
    /// migration, the default way to move slots (Valkey 9's `CLUSTER MIGRATESLOTS`): a
    /// snapshot of the slots and the tail of their writes stream to the target while
    /// callers keep reading and writing here; then the slots pause here for the last
    /// keys and the flip (at most [`SlotMigrationOptions::pause_max`]), and the target
    /// takes all of them with one configEpoch bump. Callers never see ASK. `progress`
    /// sees every batch; `ControlFlow::Break` before the pause cancels. On any error
    /// the slots stay here, served throughout, and the target drops its partial copy
    /// (see [`SlotMigrationError`]).
    pub async fn migrate_slots(
        &self,
        ranges: &[SlotRange],
        to: NodeId,
        options: SlotMigrationOptions,
        progress: impl FnMut(&SlotMigrationProgress) -> ControlFlow<()>,
    ) -> Result<SlotMigrationReport, SlotMigrationError> {
        atomic_source::migrate_slots(self.parties(), ranges, to, options, progress).await
    }

    /// Starts atomic migrations in the background, one per `(ranges, target)` of `moves`
    /// (Valkey 9's `CLUSTER MIGRATESLOTS SLOTSRANGE ... NODE ...`): every move is checked
    /// first (its slots are this master's and stable, its target another master, no slot
    /// named twice or already migrating), then all start, or none does. Returns the jobs'
    /// names; follow them with [`Node::slot_migrations`].
    pub fn start_slot_migrations(
        &self,
        moves: &[(Vec<SlotRange>, NodeId)],
        options: SlotMigrationOptions,
    ) -> Result<Vec<String>, StartMigrationsError> {
        jobs::start(&self.migration_jobs, &self.parties(), moves, options)
    }

    /// The background migrations out of this node: every running one and the latest
    /// finished ones (at most [`crate::SLOT_MIGRATION_LOG_MAX`]), oldest first; in memory only.
    pub fn slot_migrations(&self) -> Vec<SlotMigrationJob> {
        self.migration_jobs.list()
    }

    /// Cancels every running background migration (each stops at its next batch, before
    /// its pause; one already paused completes or resumes as its flip resolves); returns
    /// how many were running.
    pub fn cancel_slot_migrations(&self) -> usize {
        self.migration_jobs.cancel_all()
    }

    fn parties(&self) -> Parties {
        Parties {
            shared: Arc::clone(&self.shared),
            hub: Arc::clone(&self.migration),
            admin: Arc::new(DriverAdmin(self.requests.clone())),
        }
    }

    /// FLUSHALL on this node: deletes every key of the slots it masters, each slot under
    /// its write stripe and replicated to its replicas as one slot drop (the mechanism of
    /// lost slots). A replica deletes nothing (its data is its master's). Returns the keys
    /// deleted.
    pub async fn flush_owned_slots(&self) -> Result<usize, AdminCallError> {
        let owned = self
            .inspect(|core| {
                let myself = core.myself_id();
                let master = core.myself().is_master();
                core.slot_table()
                    .owner_ranges()
                    .into_iter()
                    .filter(|(_, owner)| master && *owner == myself)
                    .map(|(range, _)| range)
                    .collect::<Vec<SlotRange>>()
            })
            .await?;
        Ok(crate::node_state::write_log::drop_lost_slots(
            &self.shared.log,
            &self.shared.store,
            &owned,
        ))
    }

    /// For a replica: its master's id and client (RESP) address, `ip:port`; `None` for a
    /// master. Read from the data path's published map, without a round trip to the core.
    pub fn master(&self) -> Option<(NodeId, String)> {
        let table = self.shared.routing.table();
        let master = table.my_master?;
        let address = table
            .client_address(&master)
            .unwrap_or_default()
            .to_string();
        Some((master, address))
    }

    /// The id and bus address of the node (this one included, none in its handshake) whose
    /// client (RESP) address is `host:port`, the reverse of the address MOVED names: how
    /// MIGRATE's target, given as a client address, is found. Read from the data path's
    /// published map; `None` when no node of the cluster is there (no name is resolved).
    pub fn node_at_client_address(&self, host: &str, port: u16) -> Option<(NodeId, PeerAddr)> {
        let table = self.shared.routing.table();
        let node = table.node_at_client_address(host, port)?;
        Some((node.id, node.address.clone()))
    }

    /// For a replica: whether its replication link to its master is up (INFO's
    /// `master_link_status`).
    pub fn master_link_up(&self) -> bool {
        self.shared
            .master_link_up
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// This node's key count and memory.
    pub fn memory(&self) -> NodeMemory {
        let store = self.store();
        NodeMemory {
            keys: store.dbsize(),
            used_memory_bytes: store.used_memory_bytes(),
        }
    }
}

fn invalid_slot(slot: Slot) -> AdminCallError {
    AdminCallError::Refused(AdminError::InvalidSlot {
        start: slot.into(),
        end: slot.into(),
    })
}

/// The one rule for the admin commands whose refusal depends on keys, which the core
/// cannot see: ADDSLOTS / ADDSLOTSRANGE of a slot the engine still holds keys of,
/// SETSLOT NODE giving one of this node's slots with keys to another node, and REPLICATE
/// on a master holding any key are refused with Redis's errors. The driver applies it
/// right before the core runs the command (a write racing a SETSLOT NODE is deleted by the
/// core's [`crate::core::Output::DropSlots`]).
pub(crate) fn refuse_while_keys_held(
    core: &Core,
    store: &Store,
    command: &AdminCommand,
) -> Result<(), AdminError> {
    let holds_keys = |slot: Slot| store.count_keys_in_slot(slot).is_ok_and(|count| count > 0);
    let myself = core.myself_id();
    match command {
        AdminCommand::AddSlots(ranges) => {
            let valid: Vec<SlotRange> =
                ranges.iter().copied().filter(SlotRange::is_valid).collect();
            let held = slots_of_ranges(&valid).find(|slot| holds_keys(*slot));
            held.map_or(Ok(()), |slot| Err(AdminError::AddedSlotHasKeys(slot)))
        }
        AdminCommand::SetSlot {
            slot,
            action: SetSlotAction::Node(owner),
        } if *owner != myself && core.slot_owner(*slot) == Some(myself) && holds_keys(*slot) => {
            Err(AdminError::SlotHasKeys(*slot))
        }
        AdminCommand::Replicate(_) if core.myself().is_master() && store.dbsize() > 0 => {
            Err(AdminError::HasSlots)
        }
        AdminCommand::FlushSlots if store.dbsize() > 0 => Err(AdminError::NotEmpty),
        _ => Ok(()),
    }
}

/// Waits until `check` holds on every node, polling, or fails after `timeout`.
pub(crate) async fn wait_for_all(
    nodes: &[&Node],
    timeout: Duration,
    stage: &'static str,
    check: impl Fn(&Core) -> bool + Clone + Send + 'static,
) -> Result<(), AdminCallError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let mut all = true;
        for node in nodes {
            all &= node.inspect(check.clone()).await?;
        }
        if all {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(AdminCallError::Timeout {
                stage,
                timeout_ms: timeout.as_millis() as u64,
            });
        }
        tokio::time::sleep(Duration::from_millis(CREATE_POLL_INTERVAL_MS)).await;
    }
}

/// `redis-cli --cluster create --cluster-replicas N` for nodes of this process: the first
/// `nodes.len() / (N + 1)` nodes become masters with the slots spread evenly, the others
/// replicate them round robin. Waits until every node has state ok, agrees on the slot map
/// and the replicas are attached.
pub async fn create_cluster(
    nodes: &[&Node],
    replicas_per_master: usize,
    timeout: Duration,
) -> Result<(), AdminCallError> {
    let masters = nodes.len() / (replicas_per_master + 1);
    if masters == 0 {
        return Err(AdminCallError::TooFewNodes {
            nodes: nodes.len(),
            masters: 1,
            replicas_per_master,
        });
    }
    for (index, master) in nodes.iter().take(masters).enumerate() {
        // Distinct epochs up front spare the collision dance, as redis-cli does.
        let _ = master
            .command(AdminCommand::SetConfigEpoch(index as u64 + 1))
            .await;
    }
    for node in &nodes[1..] {
        nodes[0].meet(node.bus_address()).await?;
    }
    let count = nodes.len();
    wait_for_all(nodes, timeout, "form a full mesh", move |core| {
        core.nodes().filter(|node| !node.in_handshake()).count() == count
    })
    .await?;
    for (master, range) in nodes.iter().zip(spread_slots(masters)) {
        master.add_slots(vec![range]).await?;
    }
    for (index, replica) in nodes.iter().enumerate().skip(masters) {
        let master = nodes[(index - masters) % masters].id();
        replica.replicate(master).await?;
    }
    wait_for_all(
        nodes,
        timeout,
        "reach state ok with every slot",
        move |core| {
            let replicas = core.nodes().filter(|node| node.is_replica()).count();
            core.cluster_state() == ClusterState::Ok
                && core.slot_table().assigned_count() == SLOT_COUNT
                && replicas == count - masters
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::Arc;

    use slotkv_engine::{key_slot, ManualClock, SetOptions, StoreConfig};

    use crate::core::Config;

    #[test]
    fn commands_that_would_orphan_keys_are_refused_with_redis_errors() {
        let mut core = Core::new(Config::default(), 0);
        let other = Core::new(
            Config {
                rng_seed: 9,
                ..Config::default()
            },
            0,
        )
        .myself_id();
        let store = Store::new(StoreConfig::default(), Arc::new(ManualClock::new(1)));
        let slot = key_slot(b"{held}");
        store.set(b"{held}:1", b"v", SetOptions::default()).unwrap();
        let add = AdminCommand::AddSlots(vec![SlotRange::new(0, 16383).unwrap()]);
        assert_eq!(
            refuse_while_keys_held(&core, &store, &add),
            Err(AdminError::AddedSlotHasKeys(slot))
        );
        assert_eq!(
            refuse_while_keys_held(&core, &store, &AdminCommand::Replicate(other))
                .map_err(|e| e.to_string()),
            Err("To set a master the node must be empty and without assigned slots.".to_string())
        );
        core.handle_command(0, AdminCommand::AddSlots(vec![SlotRange::single(slot)]))
            .unwrap();
        let give = AdminCommand::SetSlot {
            slot,
            action: SetSlotAction::Node(other),
        };
        assert_eq!(
            refuse_while_keys_held(&core, &store, &give).map_err(|e| e.to_string()),
            Err(format!(
                "Can't assign hashslot {slot} to a different node while I still hold keys for this hash slot."
            ))
        );
        store.drop_slot(slot).unwrap();
        for command in [add, give, AdminCommand::Replicate(other)] {
            assert_eq!(refuse_while_keys_held(&core, &store, &command), Ok(()));
        }
    }

    #[test]
    fn a_finished_migration_passes_the_keys_held_refusal_and_an_unfinished_one_does_not() {
        use crate::core::testing::{add_node, core, id};
        let mut core = core(1);
        add_node(&mut core, 2, None, 1);
        let store = Store::new(StoreConfig::default(), Arc::new(ManualClock::new(1)));
        let slot = key_slot(b"{moving}");
        core.handle_command(0, AdminCommand::AddSlots(vec![SlotRange::single(slot)]))
            .unwrap();
        let migrating = AdminCommand::SetSlot {
            slot,
            action: SetSlotAction::Migrating(id(2)),
        };
        core.handle_command(0, migrating).unwrap();
        let assign = AdminCommand::SetSlot {
            slot,
            action: SetSlotAction::Node(id(2)),
        };
        store
            .set(b"{moving}:1", b"v", SetOptions::default())
            .unwrap();
        assert_eq!(
            refuse_while_keys_held(&core, &store, &assign),
            Err(AdminError::SlotHasKeys(slot)),
            "keys left in a migrating slot keep it here"
        );
        store.del(&[b"{moving}:1"]).unwrap();
        assert_eq!(refuse_while_keys_held(&core, &store, &assign), Ok(()));
        core.handle_command(0, assign).unwrap();
        assert_eq!(core.slot_owner(slot), Some(id(2)));
        assert_eq!(core.slot_state(slot), crate::core::slots::SlotState::Stable);
    }

    #[test]
    fn slots_spread_like_redis_cli() {
        let ranges = spread_slots(3);
        assert_eq!(ranges.len(), 3);
        assert_eq!((ranges[0].start, ranges[0].end), (0, 5460));
        assert_eq!((ranges[1].start, ranges[1].end), (5461, 10922));
        assert_eq!((ranges[2].start, ranges[2].end), (10923, 16383));
        assert_eq!(spread_slots(1)[0].end, 16383);
    }
}
