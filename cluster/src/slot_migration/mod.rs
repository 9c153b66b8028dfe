//! Slot migration on the transport's bulk channel under the `SlotMigration` stream tag,
//! both ways: atomic (the default: a snapshot of whole slots plus the tail of their writes,
//! a short per-slot pause and one configEpoch bump for all the slots) and key by key
//! (Redis's MIGRATING / IMPORTING path). Its place is beside `replication`, below the
//! runtime, above `node_state`; it reaches the core only through [`CoreAdmin`].
//!
//! - [`batch`]: the stream's frames, the split of a batch into bounded frames (a large value
//!   in chunks, deletions packed) and the target's reassembly: pure, fuzzable;
//! - [`atomic_source`] and [`atomic_target`]: the atomic migration's two sides (callers
//!   never see ASK; any failure before the flip leaves the slots with the source);
//! - [`source`]: MIGRATE on the source: read the keys, ship them as one batch, wait for the
//!   ack, delete (unless COPY), all under the slots' migration gates
//!   ([`crate::node_state::migration_gate`]);
//! - [`target`]: import a batch (REPLACE or BUSYKEY, and its deletions), replicate it,
//!   then ack;
//! - [`jobs`]: atomic migrations in the background and the node's log of them (Valkey's
//!   `CLUSTER MIGRATESLOTS` / `GETSLOTMIGRATIONS` / `CANCELSLOTMIGRATIONS`);
//! - [`balance`]: the pure decision of which slots a rebalance moves (weights, threshold);
//! - [`plan`]: the pure decision of which SETSLOT steps a slot still needs, which makes a
//!   reshard resumable after any interruption;
//! - this file: the stream's consumer task ([`run_migration_stream`]) and the table of
//!   batches awaiting their ack ([`MigrationHub`]).
//!
//! A key is always in at least one of the two engines: the source deletes a batch's keys
//! (key by key) or its slots' copy (atomic, after the flip) only after the target
//! acknowledged them, and the target acknowledges only once its replicas hold them. The
//! orchestration (`reshard`) lives in `crate::runtime::reshard`.

pub(crate) mod atomic_source;
pub(crate) mod atomic_target;
pub(crate) mod balance;
pub(crate) mod batch;
pub(crate) mod jobs;
pub(crate) mod plan;
pub(crate) mod source;
pub(crate) mod target;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use slotkv_transport::{InboundFrame, PeerAddr};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::core::{AdminCommand, AdminError, AdminReply};
use crate::node_state::stats::Refusal;
use crate::node_state::NodeState;
use atomic_target::ImportLeases;
use batch::{
    decode_frame, encode_frame, AckOutcome, Assembly, CompleteBatch, ImportRefusal, MigrationFrame,
};
use jobs::SlotMigrationJobs;

/// Sources whose batches a target reassembles at once.
pub(crate) const SOURCES_MAX: usize = 64;

/// Imported batches awaiting the target's replicas at once (beyond, the stream's consumer
/// waits for one to be acknowledged before it applies the next).
pub(crate) const IMPORTS_IN_FLIGHT_MAX: usize = 16;

/// How the migration tasks reach this node's core (the runtime's driver implements it):
/// a migration runs the slot-state admin commands of `crate::core::admin` through it.
pub(crate) trait CoreAdmin: Send + Sync + 'static {
    /// Runs `command` on the core; answered once its effects are saved and published.
    fn run(
        &self,
        command: AdminCommand,
    ) -> futures_util::future::BoxFuture<'_, Result<AdminReply, CoreAdminError>>;
}

/// Why the core did not run a migration's admin command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CoreAdminError {
    /// The core refused it; nothing changed.
    #[error(transparent)]
    Refused(#[from] AdminError),
    /// The node is shutting down.
    #[error("the node is shut down")]
    Stopped,
    /// The core answered something the migration cannot use.
    #[error("{0}")]
    Unexpected(&'static str),
}

/// How often the stream task looks for imports whose source went silent.
const LEASE_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

/// Locks a source's batch senders take turns on, by a hash of the target: a target
/// reassembles one batch per source at a time, so one batch's frames must not interleave
/// with another's (two migrations, or two MIGRATE calls, to one target). Two targets that
/// share a lock only take turns.
pub(crate) const SEND_TURN_LOCKS: usize = 16;

/// The batches this node sent and awaits acks for, by batch id, and the turns its batch
/// senders take per target.
#[derive(Default)]
pub(crate) struct MigrationHub {
    next_batch: AtomicU64,
    pending: Mutex<HashMap<u64, (PeerAddr, oneshot::Sender<AckOutcome>)>>,
    send_turns: [tokio::sync::Mutex<()>; SEND_TURN_LOCKS],
}

impl MigrationHub {
    /// Waits for the turn to send one batch's frames to `target`; held until they are all
    /// handed to the transport (take the batch's id inside it, so a target sees a source's
    /// batches in id order).
    pub(crate) async fn send_turn(&self, target: &PeerAddr) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        target.hash(&mut hasher);
        let lock = (hasher.finish() % SEND_TURN_LOCKS as u64) as usize;
        self.send_turns[lock].lock().await
    }

    /// A fresh batch id and the receiver of its ack from `target`.
    pub(crate) fn expect_ack(&self, target: &PeerAddr) -> (u64, oneshot::Receiver<AckOutcome>) {
        let batch = self.next_batch.fetch_add(1, Ordering::Relaxed) + 1;
        let (sender, receiver) = oneshot::channel();
        self.pending.lock().insert(batch, (target.clone(), sender));
        (batch, receiver)
    }

    /// A fresh number from the sequence batches are numbered from: an atomic migration's
    /// id, below every frame it sends next (see [`batch::SlotsRequest`]).
    pub(crate) fn next_migration(&self) -> u64 {
        self.next_batch.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Forgets a batch given up on (a late ack for it is then dropped).
    pub(crate) fn forget(&self, batch: u64) {
        self.pending.lock().remove(&batch);
    }

    /// Delivers an ack; `false` if no batch of that id awaits one from `from`.
    fn deliver(&self, from: &PeerAddr, batch: u64, outcome: AckOutcome) -> bool {
        let mut pending = self.pending.lock();
        match pending.get(&batch) {
            Some((target, _)) if target == from => {}
            _ => return false,
        }
        match pending.remove(&batch) {
            Some((_, sender)) => sender.send(outcome).is_ok(),
            None => false,
        }
    }
}

/// Consumes this node's migration frames until shutdown: acks go to the waiting source
/// calls, slots requests to [`atomic_target`], batch frames to each source's [`Assembly`];
/// a complete batch is imported (at most [`IMPORTS_IN_FLIGHT_MAX`] at once) and
/// acknowledged. Imports whose source went silent are cancelled here.
pub(crate) async fn run_migration_stream(
    shared: Arc<NodeState>,
    hub: Arc<MigrationHub>,
    admin: Arc<dyn CoreAdmin>,
    jobs: Arc<SlotMigrationJobs>,
    mut frames: mpsc::Receiver<InboundFrame>,
) {
    let mut assemblies: HashMap<PeerAddr, Assembly> = HashMap::new();
    let imports = Arc::new(Semaphore::new(IMPORTS_IN_FLIGHT_MAX));
    let leases = Arc::new(Mutex::new(ImportLeases::default()));
    let mut lease_check = tokio::time::interval(LEASE_CHECK_INTERVAL);
    loop {
        let frame = tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            _ = lease_check.tick() => {
                expire_leases(&shared, &admin, &leases, &jobs);
                continue;
            }
            frame = frames.recv() => match frame {
                Some(frame) => frame,
                None => break,
            },
        };
        let decoded = match decode_frame(&frame.payload) {
            Ok(decoded) => decoded,
            Err(error) => {
                shared.stats.count(Refusal::MalformedStreamFrame);
                tracing::debug!(from = %frame.from, %error, "dropped a malformed migration frame");
                continue;
            }
        };
        leases.lock().renew(&frame.from, std::time::Instant::now());
        let decoded = match decoded {
            MigrationFrame::Ack { batch, outcome } => {
                if !hub.deliver(&frame.from, batch, outcome) {
                    tracing::debug!(from = %frame.from, batch, "dropped an ack nothing waits for");
                }
                continue;
            }
            MigrationFrame::Slots { batch, request } => {
                let Ok(permit) = Arc::clone(&imports).acquire_owned().await else {
                    break;
                };
                let (shared, admin, leases, jobs) = (
                    Arc::clone(&shared),
                    Arc::clone(&admin),
                    Arc::clone(&leases),
                    Arc::clone(&jobs),
                );
                tokio::spawn(async move {
                    let outcome = atomic_target::handle_request(
                        &shared,
                        admin.as_ref(),
                        &leases,
                        &jobs,
                        &frame.from,
                        &request,
                    )
                    .await;
                    send_ack(&shared, &frame.from, batch, outcome).await;
                    drop(permit);
                });
                continue;
            }
            decoded => decoded,
        };
        let Some(complete) = assemble(&shared, &mut assemblies, &frame.from, decoded).await else {
            continue;
        };
        let Ok(permit) = Arc::clone(&imports).acquire_owned().await else {
            break;
        };
        // Applied here, in the order the source sent (a tail round's newer state of a key
        // after its snapshot's older one); only the wait for the replicas runs beside.
        let slots = complete.slots();
        let admitted = leases
            .lock()
            .admit_batch(&frame.from, complete.batch, &slots);
        let applied = admitted
            .map_err(AckOutcome::Refused)
            .and_then(|()| target::apply_batch(&shared, &complete));
        if let Ok(imported) = &applied {
            let bytes = complete
                .entries
                .iter()
                .map(|entry| (entry.key.len() + entry.value.len()) as u64)
                .sum();
            jobs.import_received(&frame.from, &slots, u64::from(imported.keys), bytes);
        }
        let shared = Arc::clone(&shared);
        let from = frame.from.clone();
        tokio::spawn(async move {
            let outcome = match applied {
                Ok(imported) => imported.acknowledge(&shared).await,
                Err(refusal) => refusal,
            };
            send_ack(&shared, &from, complete.batch, outcome).await;
            drop(permit);
        });
    }
}

/// Cancels the imports whose source has been silent for the lease.
fn expire_leases(
    shared: &Arc<NodeState>,
    admin: &Arc<dyn CoreAdmin>,
    leases: &Mutex<ImportLeases>,
    jobs: &SlotMigrationJobs,
) {
    let idle = shared.import_idle_timeout;
    for (from, ranges) in leases.lock().expired(std::time::Instant::now(), idle) {
        tracing::warn!(%from, ?ranges, "an atomic import's source went silent; abandoning it");
        let message = format!("the source was silent for {} ms", idle.as_millis());
        jobs.import_ended(&from, None, jobs::SlotMigrationJobState::Failed, &message);
        let (shared, admin) = (Arc::clone(shared), Arc::clone(admin));
        tokio::spawn(async move {
            atomic_target::abandon(&shared, admin.as_ref(), &ranges).await;
        });
    }
}

/// Feeds a batch frame to its source's assembly; answers a refusal itself.
async fn assemble(
    shared: &NodeState,
    assemblies: &mut HashMap<PeerAddr, Assembly>,
    from: &PeerAddr,
    frame: MigrationFrame,
) -> Option<CompleteBatch> {
    if !assemblies.contains_key(from) && assemblies.len() >= SOURCES_MAX {
        let outcome = AckOutcome::Refused(ImportRefusal::Incomplete);
        send_ack(shared, from, frame.batch(), outcome).await;
        return None;
    }
    let assembly = assemblies.entry(from.clone()).or_default();
    match assembly.handle_frame(frame) {
        Ok(Some(complete)) => {
            assemblies.remove(from);
            Some(complete)
        }
        Ok(None) => None,
        Err((batch, error)) => {
            assemblies.remove(from);
            tracing::debug!(%from, batch, %error, "refused a migration batch");
            let outcome = AckOutcome::Refused(ImportRefusal::Incomplete);
            send_ack(shared, from, batch, outcome).await;
            None
        }
    }
}

async fn send_ack(shared: &NodeState, to: &PeerAddr, batch: u64, outcome: AckOutcome) {
    let frame = Bytes::from(encode_frame(&MigrationFrame::Ack { batch, outcome }));
    if let Err(error) = shared.endpoint.send_bulk(to, frame).await {
        tracing::debug!(%to, batch, %error, "could not send a migration ack");
    }
}
