//! The data path: the cloneable [`Cluster`] handle and how a call reaches the key's owner.
//!
//! Each command's `Cluster` method lives with the command (`crate::command`) and calls
//! [`Cluster::run`]: it computes the command's slot and reads the published slot map
//! ([`crate::node_state::routing_table`]). If this node masters the slot and it is stable, the command runs straight on
//! the local engine: no serialization, no copy of keys or values, values handed out
//! zero-copy. Otherwise it is encoded from the caller's borrowed bytes into a request
//! ([`protocol`]) sent on the transport's request channel to the owner, which applies the
//! spec's rules ([`serve`]) and executes it through the same command registry. The handle
//! follows MOVED (bounded, re-reading the map) and ASK (one-shot, with ASKING), retries
//! TRYAGAIN with exponential backoff, and maps the rest to [`ClusterError`].
//!
//! Many calls in flight to one peer share its request link: the endpoint keeps up to its
//! `requests_outstanding_max` requests outstanding and writes queued frames in batches, so
//! forwarded throughput grows with the number of concurrent callers.

pub(crate) mod client;
#[cfg(test)]
mod decoding_tests;
mod error;
mod multi;
pub(crate) mod protocol;
pub(crate) mod serve;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bincode::Encode;
use bytes::Bytes;
use futures_util::future::join_all;
use parking_lot::Mutex;
use slotkv_engine::{CommandError, Slot};
use slotkv_transport::PeerAddr;

pub use error::ClusterError;

use crate::codec::DecodeError;
use crate::command::{
    execute_while, AnyCommand, BorrowedCommand, Command, ExecuteError, KeyList, PairList, Reply,
    Value,
};
use protocol::{CommandRequest, DownReason, Request, Response, REQUEST_FORMAT, RESPONSE_FORMAT};

use crate::node_state::stats::Refusal;
use crate::node_state::NodeState;

/// Where reads go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadFrom {
    /// The slot's master (the default; never stale).
    #[default]
    Master,
    /// A healthy replica of the slot's master when there is one (like READONLY: may be
    /// stale); the master otherwise.
    Replica,
}

/// What a write waits for before it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Return once the master applied it (Redis's default).
    #[default]
    Master,
    /// Return once `replicas` replicas acknowledged it, or fail with
    /// [`ClusterError::NotDurable`] after `timeout_ms` (the write stays applied).
    Replicas {
        /// Replicas that must acknowledge.
        replicas: u32,
        /// Longest wait, in ms.
        timeout_ms: u64,
    },
}

/// A handle on the whole cluster through one node. Cheap to clone; clones share the
/// write-tracking used by [`Cluster::wait`].
#[derive(Clone)]
pub struct Cluster {
    shared: Arc<NodeState>,
    read_from: ReadFrom,
    durability: Durability,
    /// Highest replication offset written per remote master, for WAIT.
    written: Arc<Mutex<HashMap<PeerAddr, u64>>>,
    /// Rotates replica reads over the replicas.
    replica_cursor: Arc<AtomicUsize>,
    /// Owners learned from MOVED answers, ahead of this node's map (at most one per slot).
    moved: Arc<Mutex<HashMap<Slot, MovedHint>>>,
}

/// A MOVED answer remembered for a slot: used while this node's map still names the owner
/// that redirected us, dropped as soon as the map changes or the hint fails.
#[derive(Debug, Clone)]
struct MovedHint {
    address: PeerAddr,
    stale_owner: Option<crate::core::node::NodeId>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Cluster")
            .field("node", &self.shared.endpoint.local_addr())
            .field("read_from", &self.read_from)
            .field("durability", &self.durability)
            .finish()
    }
}

impl Cluster {
    pub(crate) fn new(shared: Arc<NodeState>) -> Cluster {
        Cluster {
            shared,
            read_from: ReadFrom::Master,
            durability: Durability::Master,
            written: Arc::new(Mutex::new(HashMap::new())),
            replica_cursor: Arc::new(AtomicUsize::new(0)),
            moved: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// A handle whose reads go where `read_from` says.
    pub fn with_read_from(&self, read_from: ReadFrom) -> Cluster {
        Cluster {
            read_from,
            ..self.clone()
        }
    }

    /// A handle whose writes wait as `durability` says.
    pub fn with_durability(&self, durability: Durability) -> Cluster {
        Cluster {
            durability,
            ..self.clone()
        }
    }

    /// WAIT: how many replicas acknowledged every write this handle (and its clones) made
    /// before the call, waiting up to `timeout` for `replicas` of them. With writes on
    /// several masters the answer is the smallest count among them; writes that went to this
    /// node's own engine are covered by waiting for this node's whole log.
    pub async fn wait(&self, replicas: u32, timeout: Duration) -> Result<u32, ClusterError> {
        let table = self.shared.routing.table();
        let written: Vec<(PeerAddr, u64)> = self
            .written
            .lock()
            .iter()
            .map(|(address, offset)| (address.clone(), *offset))
            .collect();
        // Every master is waited on at once, so the call returns within `timeout` (plus the
        // request timeout for an unanswered peer), as Redis's WAIT does.
        let remote = written.into_iter().map(|(address, offset)| async move {
            let request: Request<BorrowedCommand<'_>> = Request::Wait {
                offset,
                replicas,
                // Saturating: a timeout beyond u64 ms means "as long as it takes".
                timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            };
            let request_timeout = timeout.saturating_add(Duration::from_millis(
                self.shared.settings.request_timeout_ms,
            ));
            let count = match self.send(&address, &request, request_timeout).await? {
                Response::Done(Value::Integer(count), _) => count as u32,
                _ => 0,
            };
            Ok::<u32, ClusterError>(count)
        });
        let local = async {
            if !table.myself_is_master {
                return None;
            }
            let offset = self.shared.log.offset();
            let count = self
                .shared
                .log
                .wait(offset, replicas as usize, timeout)
                .await;
            Some(count as u32)
        };
        let (local, remote) = futures_util::future::join(local, join_all(remote)).await;
        let mut counts: Vec<u32> = local.into_iter().collect();
        for count in remote {
            counts.push(count?);
        }
        Ok(counts.into_iter().min().unwrap_or(0))
    }

    /// Runs `command`: on the local engine when this node serves its slot (borrowing the
    /// caller's bytes), else encoded from them and forwarded to the owner.
    pub(crate) async fn run<'a, C>(&self, command: C) -> Result<C::Output, ClusterError>
    where
        C: Command + Into<BorrowedCommand<'a>>,
    {
        let slot = command.slot().map_err(|error| match error {
            CommandError::CrossSlot => ClusterError::CrossSlot,
            other => ClusterError::Command(other),
        })?;
        let replica_reads = self.read_from == ReadFrom::Replica;
        // An atomic migration's flip: wait it out, then route (the new owner may answer).
        self.shared.wait_out_slot_pause(slot).await;
        if self.shared.routing.is_local(slot, C::WRITES, replica_reads) {
            // A local call completes without touching a tokio resource: it spends the
            // task's cooperative budget as one would, so a caller looping on local calls
            // still yields to the node's own tasks (its timers, the driver).
            tokio::task::coop::consume_budget().await;
            // The slot may have turned MIGRATING during the call (a migration batch may
            // then have moved its keys): a write re-checks under its stripe, which a batch
            // takes before reading, and a read's result counts only if the slot was still
            // local after it; otherwise the owner's rules decide (ASK).
            let still_local = || self.shared.routing.is_local(slot, C::WRITES, replica_reads);
            match execute_while(
                &self.shared.store,
                &self.shared.log,
                slot,
                &command,
                still_local,
            ) {
                Ok((output, _)) if !C::WRITES && !still_local() => drop(output),
                Ok((output, offset)) => return self.await_durability(output, offset).await,
                Err(ExecuteError::Command(error)) => return Err(ClusterError::Command(error)),
                // Stopped for good under the write's stripe (shutdown): not retryable here.
                Err(ExecuteError::Stopped) => return Err(ClusterError::Shutdown),
                // Writes were paused after the routing check: the owner's rules answer
                // TRYAGAIN on the forwarding path, which retries and follows the slot.
                Err(ExecuteError::WritesClosed) => {}
            }
        }
        let value = self.forward(slot, self.request(command.into())).await?;
        C::Output::from_value(value).ok_or_else(|| {
            self.shared.stats.count(Refusal::MalformedResponse);
            ClusterError::Protocol(DecodeError::Invalid {
                format: RESPONSE_FORMAT.name,
                reason: "the answer does not fit the command",
            })
        })
    }

    /// A local write's durability: waits for the replicas [`Durability`] asks for.
    async fn await_durability<T>(&self, output: T, offset: Option<u64>) -> Result<T, ClusterError> {
        let (
            Some(offset),
            Durability::Replicas {
                replicas,
                timeout_ms,
            },
        ) = (offset, self.durability)
        else {
            return Ok(output);
        };
        let timeout = Duration::from_millis(timeout_ms);
        let acknowledged = self
            .shared
            .log
            .wait(offset, replicas as usize, timeout)
            .await;
        if (acknowledged as u32) < replicas {
            return Err(ClusterError::NotDurable {
                acknowledged: acknowledged as u32,
                wanted: replicas,
            });
        }
        Ok(output)
    }

    pub(crate) fn request<C>(&self, command: C) -> CommandRequest<C> {
        let (durability_replicas, durability_timeout_ms) = match self.durability {
            Durability::Master => (0, 0),
            Durability::Replicas {
                replicas,
                timeout_ms,
            } => (replicas, timeout_ms),
        };
        CommandRequest {
            command,
            asking: false,
            read_from_replica: self.read_from == ReadFrom::Replica,
            durability_replicas,
            durability_timeout_ms,
        }
    }

    /// Sends `request` to the owner of `slot`, following redirections.
    pub(crate) async fn forward<B, L, P>(
        &self,
        slot: Slot,
        mut request: CommandRequest<AnyCommand<B, L, P>>,
    ) -> Result<Value, ClusterError>
    where
        B: AsRef<[u8]> + Sync + Clone + Encode,
        L: KeyList + Sync + Clone + Encode,
        P: PairList + Sync + Clone + Encode,
    {
        let settings = self.shared.settings;
        let mut redirections = 0;
        let mut attempts = 0;
        let mut backoff_ms = settings.try_again_backoff_ms;
        let mut target: Option<PeerAddr> = None;
        let timeout = Duration::from_millis(
            settings
                .request_timeout_ms
                .saturating_add(request.durability_timeout_ms),
        );
        loop {
            let address = match target.take() {
                Some(address) => address,
                None => self.route(slot, &request)?,
            };
            let frame = Request::Command(request.clone());
            let response = match self.send(&address, &frame, timeout).await {
                Ok(response) => response,
                Err(error) => {
                    self.moved.lock().remove(&slot);
                    return Err(error);
                }
            };
            if let Response::Moved(..) = &response {
                self.remember_moved(slot, &response);
            }
            let asking = matches!(response, Response::Ask(..));
            request.asking = false;
            match response {
                Response::Done(value, offset) => {
                    if request.command.writes() {
                        self.note_write(&address, offset);
                    }
                    return Ok(value);
                }
                Response::Failed(error) => {
                    // Validated when decoded: the name is the registry's.
                    return Err(match error.to_engine() {
                        Some(error) => ClusterError::Command(error),
                        None => ClusterError::Protocol(DecodeError::Invalid {
                            format: RESPONSE_FORMAT.name,
                            reason: "an engine error names an unknown command",
                        }),
                    });
                }
                Response::Moved(_, _, next) | Response::Ask(_, _, next) => {
                    redirections += 1;
                    if redirections > settings.redirections_max {
                        return Err(ClusterError::TooManyRedirections { slot, redirections });
                    }
                    target = Some(
                        PeerAddr::new(next)
                            .map_err(|_| ClusterError::ClusterDown(DownReason::SlotNotServed))?,
                    );
                    request.asking = asking;
                }
                Response::TryAgain => {
                    attempts += 1;
                    if attempts > settings.try_again_attempts_max {
                        return Err(ClusterError::TryAgain { slot, attempts });
                    }
                    tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
                    backoff_ms = (backoff_ms * 2).min(settings.try_again_backoff_ms_max);
                }
                Response::Down(reason) => return Err(ClusterError::ClusterDown(reason)),
                Response::CrossSlot => return Err(ClusterError::CrossSlot),
                Response::NotDurable { acknowledged, .. } => {
                    return Err(ClusterError::NotDurable {
                        acknowledged,
                        wanted: request.durability_replicas,
                    })
                }
            }
        }
    }

    /// Remembers a MOVED answer as the slot's owner until this node's map changes.
    fn remember_moved(&self, slot: Slot, response: &Response) {
        let Response::Moved(_, _, next) = response else {
            return;
        };
        let Ok(address) = PeerAddr::new(next.as_str()) else {
            return;
        };
        let stale_owner = self.shared.routing.table().owner(slot).map(|node| node.id);
        let hint = MovedHint {
            address,
            stale_owner,
        };
        self.moved.lock().insert(slot, hint);
    }

    /// Where a request for `slot` goes first: a MOVED hint still ahead of this node's map,
    /// else the map's owner (or one of its replicas for replica reads).
    fn route<B, L, P>(
        &self,
        slot: Slot,
        request: &CommandRequest<AnyCommand<B, L, P>>,
    ) -> Result<PeerAddr, ClusterError>
    where
        B: AsRef<[u8]>,
        L: KeyList,
        P: PairList,
    {
        let table = self.shared.routing.table();
        let owner = table
            .owner(slot)
            .ok_or(ClusterError::ClusterDown(DownReason::SlotNotServed))?;
        {
            let mut moved = self.moved.lock();
            match moved.get(&slot) {
                Some(hint) if hint.stale_owner == Some(owner.id) => {
                    return Ok(hint.address.clone());
                }
                Some(_) => {
                    moved.remove(&slot);
                }
                None => {}
            }
        }
        if request.read_from_replica && !request.command.writes() {
            let replicas = table.healthy_replicas_of(&owner.id);
            if !replicas.is_empty() {
                let pick = self.replica_cursor.fetch_add(1, Ordering::Relaxed) % replicas.len();
                return Ok(replicas[pick].address.clone());
            }
        }
        Ok(owner.address.clone())
    }

    /// Sends one request to `address` (in-process when it is this node).
    async fn send<B, L, P>(
        &self,
        address: &PeerAddr,
        request: &Request<AnyCommand<B, L, P>>,
        timeout: Duration,
    ) -> Result<Response, ClusterError>
    where
        B: AsRef<[u8]> + Sync + Encode,
        L: KeyList + Sync + Encode,
        P: PairList + Sync + Encode,
    {
        if address == self.shared.endpoint.local_addr() {
            return Ok(serve::handle_request(&self.shared, request).await);
        }
        if self.shared.shutdown.is_cancelled() {
            return Err(ClusterError::Shutdown);
        }
        let payload = Bytes::from(REQUEST_FORMAT.encode(request));
        let answer = self
            .shared
            .endpoint
            .request_with_timeout(address, payload, timeout)
            .await?;
        RESPONSE_FORMAT.decode(&answer).map_err(|error| {
            self.shared.stats.count(Refusal::MalformedResponse);
            tracing::debug!(from = %address, %error, "refused a malformed data answer");
            ClusterError::Protocol(error)
        })
    }

    fn note_write(&self, address: &PeerAddr, offset: u64) {
        if address == self.shared.endpoint.local_addr() {
            return;
        }
        let mut written = self.written.lock();
        let entry = written.entry(address.clone()).or_insert(0);
        *entry = (*entry).max(offset);
    }
}
