//! The node's write log: the master's ordered log of write *effects*, offsets, the bounded
//! backlog, replica acknowledgements and WAIT; and the replica's applied offset.
//!
//! The engine has no write hook, so effects are captured here: every write of a master runs
//! under a per-slot stripe lock, and after the engine call the caller reads back each
//! touched key (value and absolute deadline, or absence) and appends that as one op
//! ([`WriteLog::record`]). Two writes to one key are thus logged in the order the engine
//! applied them. Expirations and evictions the engine performs by itself come out of its
//! removal log and are logged the same way ([`record_removals`]), so they replicate as
//! deletes. The slots a master loses to another node are emptied and logged as one
//! [`Op::DropSlot`] each ([`drop_lost_slots`]). The data path writes to it; replication (`crate::replication`) streams it.
//!
//! The log also holds the one write gate ([`WriteLog::gate`]): open, paused (a manual
//! failover or hand-over: TRYAGAIN) or stopped (shutdown: for good). A write checks it
//! under its stripe, so once [`WriteLog::close_writes`] or [`WriteLog::stop_writes`]
//! returns, no write that passed the routing check before can still apply: the offset a
//! pause reports is final, and a snapshot written after a stop holds every acknowledged
//! write.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::{Mutex, MutexGuard};
use slotkv_engine::{Slot, Store};
use slotkv_transport::PeerAddr;
use tokio::sync::watch;

use crate::core::slots::SlotRange;
use crate::node_state::outbound_slots::OutboundSlots;
use crate::node_state::StoreCell;

/// Stripes of the write-ordering lock (slot modulo this).
pub(crate) const WRITE_STRIPES: usize = 1024;

/// Default bound of the backlog, in bytes of keys and values.
pub(crate) const DEFAULT_BACKLOG_BYTES_MAX: usize = 64 << 20;

/// Fixed per-op overhead counted against the backlog bound, in bytes.
const OP_OVERHEAD_BYTES: usize = 32;

/// One write effect in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    /// The key holds `value` until `expire_at_ms` (unix ms; `None`: no TTL).
    Set {
        /// The key.
        key: Bytes,
        /// Its value (shared with the engine, zero copy).
        value: Bytes,
        /// Absolute deadline.
        expire_at_ms: Option<u64>,
    },
    /// The key does not exist.
    Del {
        /// The key.
        key: Bytes,
    },
    /// The slot holds no key: this master lost it to another node ([`drop_lost_slots`]).
    DropSlot {
        /// The slot.
        slot: Slot,
    },
}

impl Op {
    /// Bytes counted against the backlog bound.
    pub(crate) fn size_bytes(&self) -> usize {
        OP_OVERHEAD_BYTES
            + match self {
                Op::Set { key, value, .. } => key.len() + value.len(),
                Op::Del { key } => key.len(),
                Op::DropSlot { .. } => 0,
            }
    }
}

/// What a replica last acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ReplicaProgress {
    replid: u64,
    acknowledged_offset: u64,
}

#[derive(Debug)]
struct LogState {
    /// The current history; a master draws a new one whenever it becomes master.
    replid: u64,
    /// Offset of the last op written (master) or applied (replica).
    offset: u64,
    /// Ops `offset - backlog.len() + 1 ..= offset`.
    backlog: VecDeque<Op>,
    backlog_bytes: usize,
    replicas: HashMap<PeerAddr, ReplicaProgress>,
}

impl LogState {
    fn first_backlog_offset(&self) -> u64 {
        self.offset + 1 - self.backlog.len() as u64
    }
}

/// Ops read from the backlog for streaming.
#[derive(Debug)]
pub(crate) enum BacklogRead {
    /// Ops starting at `first_offset` (possibly none: caught up).
    Ops {
        /// Offset of the first op.
        first_offset: u64,
        /// The ops.
        ops: Vec<Op>,
    },
    /// The requested offset is no longer (or not) in the backlog, or the history changed.
    Gap,
}

/// Whether the data path's writes may apply: the state of [`WriteLog`]'s one gate, read
/// under the write's stripe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteGate {
    /// Writes apply (the routing check still decides which).
    Open,
    /// Paused while the core does not accept writes (a manual failover, a hand-over): a
    /// retryable TRYAGAIN. Reopened by the driver.
    Paused,
    /// Stopped for good (shutdown): nothing reopens it.
    Stopped,
}

impl WriteGate {
    const fn code(self) -> u8 {
        match self {
            WriteGate::Open => 0,
            WriteGate::Paused => 1,
            WriteGate::Stopped => 2,
        }
    }

    fn from_code(code: u8) -> WriteGate {
        match code {
            0 => WriteGate::Open,
            1 => WriteGate::Paused,
            _ => WriteGate::Stopped,
        }
    }
}

/// The write log of one node. See the module docs.
pub(crate) struct WriteLog {
    stripes: Box<[Mutex<()>]>,
    /// The [`WriteGate`] (checked under the stripe; the driver opens and pauses it as the
    /// core accepts writes or not, shutdown stops it). Open at creation: the routing check
    /// comes first anyway.
    gate: AtomicU8,
    state: Mutex<LogState>,
    backlog_bytes_max: usize,
    /// Bumped on every new op (wakes streamers).
    written: watch::Sender<u64>,
    /// Bumped on every acknowledgement (wakes WAIT).
    acknowledged: watch::Sender<u64>,
    /// Bumped by every [`Self::wait`] that does not find its acks at once: the streams to
    /// the replicas then ask for an ack (replicas otherwise ack every
    /// `replica::ACK_INTERVAL_MS`, not per batch).
    ack_requests: watch::Sender<u64>,
    /// [`Self::wait`]s in progress: while any waits, each batch a stream sends is followed
    /// by a GETACK, so a waiter arriving mid-stream is answered by the next batch's ack.
    waiters: AtomicUsize,
    full_syncs_served: AtomicU64,
    partial_syncs_served: AtomicU64,
    /// The slots an atomic migration moves out of this node: their dirty keys (noted as
    /// ops are appended) and their pause.
    pub(crate) outbound: OutboundSlots,
}

/// Replication counters and position, for monitoring and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationInfo {
    /// The current history id.
    pub replid: u64,
    /// Offset written (master) or applied (replica).
    pub offset: u64,
    /// Full syncs this node served as a master.
    pub full_syncs_served: u64,
    /// Partial resyncs (CONTINUE) this node served as a master.
    pub partial_syncs_served: u64,
    /// Each replica's address and acknowledged offset.
    pub replicas: Vec<(PeerAddr, u64)>,
    /// A replica's full sync is loading (Redis's `master_sync_in_progress`); the previous
    /// copy serves meanwhile.
    pub sync_in_progress: bool,
    /// Replication streams this master runs (one per replica being served).
    pub master_streams: usize,
}

impl WriteLog {
    /// An empty log with history `replid` and a backlog of at most `backlog_bytes_max` bytes.
    pub(crate) fn new(replid: u64, backlog_bytes_max: usize) -> WriteLog {
        WriteLog {
            stripes: (0..WRITE_STRIPES).map(|_| Mutex::new(())).collect(),
            gate: AtomicU8::new(WriteGate::Open.code()),
            state: Mutex::new(LogState {
                replid,
                offset: 0,
                backlog: VecDeque::new(),
                backlog_bytes: 0,
                replicas: HashMap::new(),
            }),
            backlog_bytes_max,
            written: watch::channel(0).0,
            acknowledged: watch::channel(0).0,
            ack_requests: watch::channel(0).0,
            waiters: AtomicUsize::new(0),
            full_syncs_served: AtomicU64::new(0),
            partial_syncs_served: AtomicU64::new(0),
            outbound: OutboundSlots::default(),
        }
    }

    /// Locks the write stripe of `slot`: hold it across an engine write and [`Self::record`].
    pub(crate) fn lock_slot(&self, slot: Slot) -> MutexGuard<'_, ()> {
        self.stripes[usize::from(slot) % WRITE_STRIPES].lock()
    }

    /// Stops the data path's writes for good (shutdown, before the snapshot): closes the
    /// gate for good, then takes every stripe once, waiting for the writes in flight.
    pub(crate) fn stop_writes(&self) {
        self.gate
            .store(WriteGate::Stopped.code(), Ordering::Release);
        self.barrier();
    }

    /// The gate's state. Call with the write's stripe held for a decision that counts (the
    /// handle also looks before a write, to answer a stopped node at once).
    pub(crate) fn gate(&self) -> WriteGate {
        WriteGate::from_code(self.gate.load(Ordering::Acquire))
    }

    /// Opens or pauses the gate without waiting (opening, or pausing when no offset is
    /// needed; [`Self::close_writes`] pauses and waits). A stopped gate stays stopped.
    pub(crate) fn set_writes_open(&self, open: bool) {
        let wanted = if open {
            WriteGate::Open
        } else {
            WriteGate::Paused
        };
        // Only Open ⇄ Paused: a failed exchange means the gate is stopped, or already there.
        let _ = self
            .gate
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |code| {
                (WriteGate::from_code(code) != WriteGate::Stopped).then_some(wanted.code())
            });
    }

    /// Pauses the gate (unless stopped), then takes every stripe once: a write that saw
    /// it open holds its stripe until it is logged, and any later one sees it closed.
    /// Returns the offset after the last write that applied.
    pub(crate) fn close_writes(&self) -> u64 {
        self.set_writes_open(false);
        self.barrier();
        self.offset()
    }

    /// Pauses `slots` ([`OutboundSlots`]), then takes each of their stripes once: a write
    /// that saw them unpaused holds its stripe until it is logged (and noted dirty), and
    /// any later one is refused.
    pub(crate) fn pause_slots(&self, slots: &[Slot]) {
        self.outbound.mark_paused(slots);
        let mut stripes: Vec<usize> = slots
            .iter()
            .map(|slot| usize::from(*slot) % WRITE_STRIPES)
            .collect();
        stripes.sort_unstable();
        stripes.dedup();
        for stripe in stripes {
            drop(self.stripes[stripe].lock());
        }
    }

    /// Takes every stripe once: every write that held one has been logged.
    fn barrier(&self) {
        for stripe in self.stripes.iter() {
            drop(stripe.lock());
        }
    }

    /// Appends the current state of each of `keys` as ops; returns the last offset. Call
    /// with the keys' stripe lock held, right after the engine write.
    pub(crate) fn record(&self, store: &Store, keys: &[&[u8]]) -> u64 {
        let ops: Vec<Op> = keys.iter().map(|key| capture(store, key)).collect();
        self.append(ops)
    }

    fn append(&self, ops: Vec<Op>) -> u64 {
        let mut state = self.state.lock();
        for op in ops {
            self.outbound.note_op(&op);
            state.offset += 1;
            state.backlog_bytes += op.size_bytes();
            state.backlog.push_back(op);
        }
        while state.backlog_bytes > self.backlog_bytes_max && state.backlog.len() > 1 {
            if let Some(dropped) = state.backlog.pop_front() {
                state.backlog_bytes -= dropped.size_bytes();
            }
        }
        let offset = state.offset;
        drop(state);
        self.written.send_replace(offset);
        offset
    }

    /// The current history id and offset.
    pub(crate) fn position(&self) -> (u64, u64) {
        let state = self.state.lock();
        (state.replid, state.offset)
    }

    /// The current offset.
    pub(crate) fn offset(&self) -> u64 {
        self.state.lock().offset
    }

    /// Starts a new history at the current offset (this node became master). The backlog is
    /// cleared: replicas of the previous history must full-sync.
    pub(crate) fn start_history(&self, replid: u64) {
        let mut state = self.state.lock();
        state.replid = replid;
        state.backlog.clear();
        state.backlog_bytes = 0;
        state.replicas.clear();
    }

    /// Replica side: adopt the master's history and offset (after a full sync or CONTINUE).
    pub(crate) fn adopt(&self, replid: u64, offset: u64) {
        let mut state = self.state.lock();
        state.replid = replid;
        state.offset = offset;
        state.backlog.clear();
        state.backlog_bytes = 0;
    }

    /// Replica side: ops up to `offset` were applied.
    pub(crate) fn set_applied(&self, offset: u64) {
        self.state.lock().offset = offset;
    }

    /// Up to `max_ops` ops after `after_offset` of history `replid`.
    pub(crate) fn read_after(&self, replid: u64, after_offset: u64, max_ops: usize) -> BacklogRead {
        let state = self.state.lock();
        if replid != state.replid || after_offset > state.offset {
            return BacklogRead::Gap;
        }
        let first = state.first_backlog_offset();
        if after_offset + 1 < first {
            return BacklogRead::Gap;
        }
        let skip = (after_offset + 1 - first) as usize;
        let ops = state
            .backlog
            .iter()
            .skip(skip)
            .take(max_ops)
            .cloned()
            .collect();
        BacklogRead::Ops {
            first_offset: after_offset + 1,
            ops,
        }
    }

    /// A replica acknowledged `offset` of history `replid`.
    pub(crate) fn handle_ack(&self, replica: &PeerAddr, replid: u64, offset: u64) {
        let mut state = self.state.lock();
        let progress = ReplicaProgress {
            replid,
            acknowledged_offset: offset,
        };
        state.replicas.insert(replica.clone(), progress);
        drop(state);
        self.acknowledged.send_modify(|generation| *generation += 1);
    }

    /// Forgets a replica (its stream ended).
    pub(crate) fn remove_replica(&self, replica: &PeerAddr) {
        self.state.lock().replicas.remove(replica);
    }

    /// Forgets every replica (this node stopped streaming to them): WAIT counts none.
    pub(crate) fn clear_replicas(&self) {
        self.state.lock().replicas.clear();
    }

    /// Replicas that acknowledged `offset` or later of the current history.
    pub(crate) fn replicas_at(&self, offset: u64) -> usize {
        let state = self.state.lock();
        state
            .replicas
            .values()
            .filter(|progress| {
                progress.replid == state.replid && progress.acknowledged_offset >= offset
            })
            .count()
    }

    /// Acknowledged offsets per replica address (for INFO-style views).
    pub(crate) fn replica_offsets(&self) -> Vec<(PeerAddr, u64)> {
        let state = self.state.lock();
        state
            .replicas
            .iter()
            .map(|(address, progress)| (address.clone(), progress.acknowledged_offset))
            .collect()
    }

    /// WAIT: until `replicas` replicas acknowledged `offset`, or `timeout`; returns how many
    /// did (as Redis's WAIT, the count may be below the ask after the timeout).
    pub(crate) async fn wait(&self, offset: u64, replicas: usize, timeout: Duration) -> usize {
        let mut changes = self.acknowledged.subscribe();
        // A timeout too large for the clock (e.g. `Duration::MAX`) waits without a deadline.
        let deadline = tokio::time::Instant::now().checked_add(timeout);
        let mut requested = false;
        let _waiting = Waiting::new(&self.waiters);
        loop {
            let count = self.replicas_at(offset);
            if count >= replicas {
                return count;
            }
            if !requested {
                // The ops up to `offset` are logged: a stream that sees this request
                // sends them before it asks its replica for an ack.
                requested = true;
                self.ack_requests.send_modify(|generation| *generation += 1);
            }
            let changed = match deadline {
                Some(deadline) => tokio::time::timeout_at(deadline, changes.changed()).await,
                None => Ok(changes.changed().await),
            };
            match changed {
                Ok(Ok(())) => continue,
                _ => return self.replicas_at(offset),
            }
        }
    }

    /// Counts a sync served: full or partial.
    pub(crate) fn note_sync_served(&self, full: bool) {
        let counter = if full {
            &self.full_syncs_served
        } else {
            &self.partial_syncs_served
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Position and counters.
    pub(crate) fn info(&self) -> ReplicationInfo {
        let (replid, offset) = self.position();
        ReplicationInfo {
            replid,
            offset,
            full_syncs_served: self.full_syncs_served.load(Ordering::Relaxed),
            partial_syncs_served: self.partial_syncs_served.load(Ordering::Relaxed),
            replicas: self.replica_offsets(),
            sync_in_progress: false,
            master_streams: 0,
        }
    }

    /// A receiver that changes whenever an op is written.
    pub(crate) fn subscribe_writes(&self) -> watch::Receiver<u64> {
        self.written.subscribe()
    }

    /// True while a [`Self::wait`] is in progress.
    pub(crate) fn has_waiters(&self) -> bool {
        self.waiters.load(Ordering::Acquire) > 0
    }

    /// Changes when a [`Self::wait`] waits for acks (see `ack_requests`).
    pub(crate) fn subscribe_ack_requests(&self) -> watch::Receiver<u64> {
        self.ack_requests.subscribe()
    }
}

/// Counts one [`WriteLog::wait`] in progress, until dropped (also when the wait's future
/// is dropped unfinished).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(waiters: &'a AtomicUsize) -> Self {
        waiters.fetch_add(1, Ordering::AcqRel);
        Waiting(waiters)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The current state of `key` as an op. Call with the key's stripe lock held.
///
/// Under the stripe lock no write changes the key, but expiry and eviction still may, and
/// they only remove it. So the deadline is read first: a key still present at the second
/// read had that deadline at the first. (Reading the value first would log a key that
/// expired between the reads as a value without a TTL, which a replica keeps forever.)
pub(crate) fn capture(store: &Store, key: &[u8]) -> Op {
    let key_bytes = Bytes::copy_from_slice(key);
    let expire_at_ms = store.expire_at_ms(key);
    match store.get(key) {
        Some(value) => Op::Set {
            key: key_bytes,
            value,
            expire_at_ms,
        },
        None => Op::Del { key: key_bytes },
    }
}

/// Most engine removals a write logs after itself (see `command::execute`): a write that
/// evicts logs its victims at once, so sustained eviction never outruns the housekeeping
/// drain and overflows the engine's removal log; bounded so one write's latency is too.
pub(crate) const REMOVALS_PER_WRITE_MAX: usize = 64;

/// Logs the engine's own removals (expiry, eviction) as the keys' current state. Call with
/// no stripe held (it takes each removal's).
pub(crate) fn record_removals(log: &WriteLog, store: &Store, max_events: usize) -> usize {
    let removals = store.drain_removals(max_events);
    for removal in &removals {
        let _stripe = log.lock_slot(removal.slot);
        log.record(store, &[&removal.key[..]]);
    }
    removals.len()
}

/// Deletes every key of `ranges` (slots this master lost, see
/// [`crate::core::Output::DropSlots`]) and logs one [`Op::DropSlot`] per slot that held
/// keys, so replicas delete them too. Each slot is dropped under its write stripe, so no
/// write to it is half logged; the engine swaps the slot's table out, so the data path
/// waits for one slot's swap at a time, never for the whole drop. The keys' memory is
/// freed on tokio's blocking pool (hundreds of thousands of keys take milliseconds to
/// free: not on the driver, whose next input may be an atomic migration's request with its
/// slots paused), or here when no runtime runs. Returns the keys deleted.
pub(crate) fn drop_lost_slots(log: &WriteLog, stores: &StoreCell, ranges: &[SlotRange]) -> usize {
    let mut deleted = 0;
    let mut taken = Vec::new();
    for slot in ranges.iter().flat_map(SlotRange::slots) {
        let _stripe = log.lock_slot(slot);
        let store = stores.get();
        match store.take_slot(slot) {
            Ok(keys) if keys.is_empty() => {}
            Ok(keys) => {
                deleted += keys.len();
                taken.push(keys);
                log.append(vec![Op::DropSlot { slot }]);
            }
            Err(error) => tracing::warn!(slot, %error, "could not drop a lost slot"),
        }
    }
    if !taken.is_empty() {
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(move || drop(taken))),
            Err(_) => drop(taken),
        }
    }
    deleted
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use slotkv_engine::{ManualClock, SetOptions, StoreConfig};

    use super::*;

    fn store() -> Store {
        Store::new(StoreConfig::default(), Arc::new(ManualClock::new(1_000)))
    }

    #[test]
    fn records_effects_in_order_and_reads_them_back() {
        let store = store();
        let log = WriteLog::new(7, DEFAULT_BACKLOG_BYTES_MAX);
        store.set(b"a", b"1", SetOptions::default()).unwrap();
        assert_eq!(log.record(&store, &[b"a"]), 1);
        store.del(&[b"a"]).unwrap();
        assert_eq!(log.record(&store, &[b"a"]), 2);
        let BacklogRead::Ops { first_offset, ops } = log.read_after(7, 0, 10) else {
            panic!("gap");
        };
        assert_eq!(first_offset, 1);
        assert!(matches!(&ops[0], Op::Set { value, .. } if &value[..] == b"1"));
        assert!(matches!(&ops[1], Op::Del { .. }));
        assert!(matches!(log.read_after(8, 0, 10), BacklogRead::Gap));
    }

    #[test]
    fn the_backlog_is_bounded_and_reports_gaps() {
        let store = store();
        let log = WriteLog::new(1, 200);
        for index in 0..20u32 {
            let key = index.to_be_bytes();
            store.set(&key, b"value", SetOptions::default()).unwrap();
            log.record(&store, &[&key]);
        }
        assert!(matches!(log.read_after(1, 0, 10), BacklogRead::Gap));
        assert!(matches!(log.read_after(1, 19, 10), BacklogRead::Ops { .. }));
    }

    /// Reads `before_ms` for the next `early_reads` reads, then `after_ms`.
    struct JumpingClock {
        early_reads: std::sync::atomic::AtomicI64,
        before_ms: u64,
        after_ms: u64,
    }

    impl slotkv_engine::Clock for JumpingClock {
        fn now_ms(&self) -> u64 {
            if self.early_reads.fetch_sub(1, Ordering::AcqRel) > 0 {
                self.before_ms
            } else {
                self.after_ms
            }
        }
    }

    #[test]
    fn a_key_expiring_while_captured_is_never_logged_without_its_ttl() {
        let clock = Arc::new(JumpingClock {
            early_reads: std::sync::atomic::AtomicI64::new(i64::MAX),
            before_ms: 1_000,
            after_ms: 5_000,
        });
        let store = Store::new(StoreConfig::default(), Arc::clone(&clock) as _);
        let deadline = SetOptions {
            expiry: slotkv_engine::SetExpiry::Expire(slotkv_engine::ExpireTime::UnixMilliseconds(
                2_000,
            )),
            ..SetOptions::default()
        };
        store.set(b"k", b"v", deadline).unwrap();
        // The clock passes the key's deadline after exactly one more read: between the
        // capture's two looks at the key.
        clock.early_reads.store(1, Ordering::Release);
        match capture(&store, b"k") {
            Op::Set { expire_at_ms, .. } => assert_eq!(expire_at_ms, Some(2_000)),
            other => assert!(matches!(other, Op::Del { .. }), "{other:?}"),
        }
    }

    #[test]
    fn a_write_holding_its_stripe_is_logged_before_close_writes_returns() {
        let log = Arc::new(WriteLog::new(1, DEFAULT_BACKLOG_BYTES_MAX));
        let store = Arc::new(store());
        let stripe = log.lock_slot(7);
        assert_eq!(log.gate(), WriteGate::Open, "the write saw the gate open");
        let closing = {
            let log = Arc::clone(&log);
            std::thread::spawn(move || log.close_writes())
        };
        // The barrier waits for this write's stripe.
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            !closing.is_finished(),
            "close_writes returned with a write in flight"
        );
        store.set(b"k", b"v", SetOptions::default()).unwrap();
        let offset = log.record(&store, &[b"k"]);
        drop(stripe);
        assert_eq!(closing.join().unwrap(), offset);
        let _stripe = log.lock_slot(7);
        assert_eq!(
            log.gate(),
            WriteGate::Paused,
            "a later write sees the gate closed"
        );
    }

    #[tokio::test]
    async fn wait_counts_acknowledging_replicas() {
        let log = Arc::new(WriteLog::new(3, DEFAULT_BACKLOG_BYTES_MAX));
        let store = store();
        store.set(b"k", b"v", SetOptions::default()).unwrap();
        let offset = log.record(&store, &[b"k"]);
        assert_eq!(log.wait(offset, 1, Duration::from_millis(10)).await, 0);
        let acking = Arc::clone(&log);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let replica = PeerAddr::new("r:1").unwrap();
            acking.handle_ack(&replica, 3, offset);
        });
        assert_eq!(log.wait(offset, 1, Duration::from_secs(5)).await, 1);
    }

    #[tokio::test]
    async fn wait_with_an_unbounded_timeout_does_not_overflow() {
        let log = Arc::new(WriteLog::new(3, DEFAULT_BACKLOG_BYTES_MAX));
        let store = store();
        store.set(b"k", b"v", SetOptions::default()).unwrap();
        let offset = log.record(&store, &[b"k"]);
        let acking = Arc::clone(&log);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            acking.handle_ack(&PeerAddr::new("r:1").unwrap(), 3, offset);
        });
        assert_eq!(log.wait(offset, 1, Duration::MAX).await, 1);
    }
}
