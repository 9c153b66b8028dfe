//! Counters of input a node refused or dropped, of config saves that failed, of the
//! redirections it answered and of its atomic slot migrations, readable from the host through
//! [`crate::Node::stats`]. Bus messages that do not decode are counted by the core.

use std::sync::atomic::{AtomicU64, Ordering};

use slotkv_transport::LinkStatistics;

/// The live counters (relaxed atomics: monitoring, not synchronisation).
#[derive(Debug, Default)]
pub(crate) struct NodeStats {
    requests_malformed: AtomicU64,
    responses_malformed: AtomicU64,
    stream_frames_malformed: AtomicU64,
    bulk_frames_unroutable: AtomicU64,
    config_saves_failed: AtomicU64,
    bus_messages_withheld: AtomicU64,
    bus_messages_impostor: AtomicU64,
    psyncs_from_strangers: AtomicU64,
    asks_answered: AtomicU64,
    moves_answered: AtomicU64,
    try_agains_answered: AtomicU64,
    paused_calls: AtomicU64,
    slot_migrations_completed: AtomicU64,
    slot_migrations_abandoned: AtomicU64,
}

/// Which data-path or migration event to count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Served {
    /// An ASK redirection answered.
    Ask,
    /// A MOVED redirection answered.
    Moved,
    /// A TRYAGAIN answered.
    TryAgain,
    /// A call that waited for a slot paused by an atomic migration.
    PausedCall,
    /// An atomic migration out of this node completed.
    MigrationCompleted,
    /// An atomic migration out of this node was abandoned (the slots stayed).
    MigrationAbandoned,
}

/// Which counter to bump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// A forwarded data request that did not decode (dropped unanswered).
    MalformedRequest,
    /// An owner's answer to a forwarded request that did not decode (the call failed).
    MalformedResponse,
    /// A bulk-stream frame (replication, migration) that did not decode.
    MalformedStreamFrame,
    /// A bulk frame with an unknown stream tag, or for a stream kind nothing consumes.
    UnroutableBulkFrame,
    /// A nodes.conf save that failed.
    ConfigSaveFailed,
    /// A bus message not sent because the config it may rest on is not saved.
    BusMessageWithheld,
    /// A bus message whose claimed sender the link's certificate does not name.
    ImpostorBusMessage,
    /// A PSYNC from an address no known node has (a forgotten node, a stranger).
    PsyncFromStranger,
}

/// A snapshot of a node's counters of refused input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NodeStatistics {
    /// Forwarded data requests that did not decode (unknown command or option code,
    /// truncated, oversized, wrong version): dropped, nothing applied.
    pub requests_malformed: u64,
    /// Answers from owners to this node's forwarded requests that did not decode (unknown
    /// value, error or command-name code, ...): the call failed with
    /// `ClusterError::Protocol`; the command may have been executed there.
    pub responses_malformed: u64,
    /// Bulk-stream frames (replication, slot migration) that did not decode: dropped,
    /// nothing applied.
    pub stream_frames_malformed: u64,
    /// Bulk frames whose stream tag is unknown or has no consumer on this node: dropped.
    pub bulk_frames_unroutable: u64,
    /// nodes.conf saves that failed (disk full, directory gone, ...). While the latest
    /// config is unsaved the node sends no bus message and retries the save every tick.
    pub config_saves_failed: u64,
    /// Bus messages withheld because the config they may rest on was not saved.
    pub bus_messages_withheld: u64,
    /// Bus messages dropped because the certificate of the link they came on does not
    /// name the node id they claim as sender (per-node identity: a member posing as
    /// another).
    pub bus_messages_impostor: u64,
    /// PSYNCs refused because no node of the cluster is at their address (a forgotten
    /// replica still running, a stranger): no stream, so no say in WAIT.
    pub psyncs_from_strangers: u64,
    /// Inbound connections the transport refused (handshake budgets, wrong secret or
    /// certificate, malformed hello, timeouts) and inbound links it closed on the peer's
    /// fault (oversized or truncated frames), by cause.
    pub links: LinkStatistics,
    /// ASK redirections this node answered (only a key-by-key migration's MIGRATING slot
    /// answers ASK; an atomic migration never does).
    pub asks_answered: u64,
    /// MOVED redirections this node answered.
    pub moves_answered: u64,
    /// TRYAGAIN answers this node gave (callers of the library retry them).
    pub try_agains_answered: u64,
    /// Calls that waited for a slot paused by an atomic migration's flip.
    pub paused_calls: u64,
    /// Atomic migrations out of this node that completed.
    pub slot_migrations_completed: u64,
    /// Atomic migrations out of this node that were abandoned (their slots stayed here).
    pub slot_migrations_abandoned: u64,
}

impl NodeStats {
    /// Counts one refusal.
    pub(crate) fn count(&self, refusal: Refusal) {
        let counter = match refusal {
            Refusal::MalformedRequest => &self.requests_malformed,
            Refusal::MalformedResponse => &self.responses_malformed,
            Refusal::MalformedStreamFrame => &self.stream_frames_malformed,
            Refusal::UnroutableBulkFrame => &self.bulk_frames_unroutable,
            Refusal::ConfigSaveFailed => &self.config_saves_failed,
            Refusal::BusMessageWithheld => &self.bus_messages_withheld,
            Refusal::ImpostorBusMessage => &self.bus_messages_impostor,
            Refusal::PsyncFromStranger => &self.psyncs_from_strangers,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one data-path or migration event.
    pub(crate) fn served(&self, event: Served) {
        let counter = match event {
            Served::Ask => &self.asks_answered,
            Served::Moved => &self.moves_answered,
            Served::TryAgain => &self.try_agains_answered,
            Served::PausedCall => &self.paused_calls,
            Served::MigrationCompleted => &self.slot_migrations_completed,
            Served::MigrationAbandoned => &self.slot_migrations_abandoned,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The current values.
    pub(crate) fn snapshot(&self) -> NodeStatistics {
        NodeStatistics {
            requests_malformed: self.requests_malformed.load(Ordering::Relaxed),
            responses_malformed: self.responses_malformed.load(Ordering::Relaxed),
            stream_frames_malformed: self.stream_frames_malformed.load(Ordering::Relaxed),
            bulk_frames_unroutable: self.bulk_frames_unroutable.load(Ordering::Relaxed),
            config_saves_failed: self.config_saves_failed.load(Ordering::Relaxed),
            bus_messages_withheld: self.bus_messages_withheld.load(Ordering::Relaxed),
            bus_messages_impostor: self.bus_messages_impostor.load(Ordering::Relaxed),
            psyncs_from_strangers: self.psyncs_from_strangers.load(Ordering::Relaxed),
            links: LinkStatistics::default(),
            asks_answered: self.asks_answered.load(Ordering::Relaxed),
            moves_answered: self.moves_answered.load(Ordering::Relaxed),
            try_agains_answered: self.try_agains_answered.load(Ordering::Relaxed),
            paused_calls: self.paused_calls.load(Ordering::Relaxed),
            slot_migrations_completed: self.slot_migrations_completed.load(Ordering::Relaxed),
            slot_migrations_abandoned: self.slot_migrations_abandoned.load(Ordering::Relaxed),
        }
    }
}
