//! The simulated network: messages in flight ordered by delivery time, random delay,
//! drop, duplication and (through the random delays) reordering, partitions and one-way
//! links.
//!
//! Two kinds of traffic share it. Bus messages are datagrams: each may be lost,
//! duplicated or overtaken. Replication frames ([`StreamFrame`]) model the bulk channel, a
//! byte stream: they keep their order per link and are never duplicated, but a partition,
//! a one-way cut or random loss can drop one (the connection broke), which the receiver
//! sees as a gap, as the shell's replica does.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::core::rng::Rng;
use crate::sim::data::StreamFrame;

/// What a message in flight carries.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Payload {
    /// An encoded bus message.
    Bus(Vec<u8>),
    /// A replication frame on the bulk channel.
    Stream(StreamFrame),
}

/// One encoded message on its way.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct InFlight {
    /// Delivery time (virtual ms).
    pub(crate) deliver_at_ms: u64,
    /// Tie-breaker: send order.
    pub(crate) sequence: u64,
    /// Sender index.
    pub(crate) from: usize,
    /// Receiver index.
    pub(crate) to: usize,
    /// What it carries.
    pub(crate) payload: Payload,
}

/// Network behaviour knobs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetworkConfig {
    /// Smallest one-way delay, in ms.
    pub delay_ms_min: u64,
    /// Largest one-way delay, in ms (≥ `delay_ms_min`).
    pub delay_ms_max: u64,
    /// Probability that a message is lost, in parts per million.
    pub drop_per_million: u64,
    /// Probability that a delivered message arrives twice (each copy with its own delay),
    /// in parts per million.
    pub duplicate_per_million: u64,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            delay_ms_min: 1,
            delay_ms_max: 10,
            drop_per_million: 0,
            duplicate_per_million: 0,
        }
    }
}

/// Messages in flight plus the partition map.
#[derive(Debug)]
pub(crate) struct Network {
    pub(crate) config: NetworkConfig,
    queue: BinaryHeap<Reverse<InFlight>>,
    next_sequence: u64,
    /// Partition group of each node: messages only flow within a group.
    group_of: Vec<u32>,
    /// Cut directions `(from, to)`: `to` does not hear `from` (one-way links).
    cut: std::collections::BTreeSet<(usize, usize)>,
    /// Per directed link, the delivery time of the last stream frame (keeps their order).
    stream_tail_ms: std::collections::BTreeMap<(usize, usize), u64>,
    /// Messages dropped by loss or partition.
    pub(crate) dropped: u64,
}

impl Network {
    pub(crate) fn new(config: NetworkConfig, node_count: usize) -> Network {
        Network {
            config,
            queue: BinaryHeap::new(),
            next_sequence: 0,
            group_of: vec![0; node_count],
            cut: std::collections::BTreeSet::new(),
            stream_tail_ms: std::collections::BTreeMap::new(),
            dropped: 0,
        }
    }

    /// Whether `to` hears `from` (same partition group, direction not cut).
    pub(crate) fn connected(&self, from: usize, to: usize) -> bool {
        self.group_of.get(from) == self.group_of.get(to) && !self.cut.contains(&(from, to))
    }

    /// Cuts one direction: `to` stops hearing `from`, `from` still hears `to`.
    pub(crate) fn cut_one_way(&mut self, from: usize, to: usize) {
        self.cut.insert((from, to));
    }

    /// Splits nodes: each listed group gets its own id; unlisted nodes stay in group 0.
    pub(crate) fn partition(&mut self, groups: &[Vec<usize>]) {
        self.group_of.iter_mut().for_each(|group| *group = 0);
        for (index, members) in groups.iter().enumerate() {
            for member in members {
                if let Some(group) = self.group_of.get_mut(*member) {
                    *group = index as u32 + 1;
                }
            }
        }
    }

    pub(crate) fn heal(&mut self) {
        self.group_of.iter_mut().for_each(|group| *group = 0);
        self.cut.clear();
    }

    /// True when nothing is partitioned or cut.
    pub(crate) fn is_whole(&self) -> bool {
        self.cut.is_empty() && self.group_of.iter().all(|group| *group == 0)
    }

    /// Queues a message unless the network loses it; returns false when dropped.
    pub(crate) fn send(
        &mut self,
        rng: &mut Rng,
        now_ms: u64,
        from: usize,
        to: usize,
        bytes: Vec<u8>,
    ) -> bool {
        if !self.connected(from, to) || rng.chance(self.config.drop_per_million, 1_000_000) {
            self.dropped += 1;
            return false;
        }
        if rng.chance(self.config.duplicate_per_million, 1_000_000) {
            let at_ms = now_ms + self.delay_ms(rng);
            self.enqueue(at_ms, from, to, Payload::Bus(bytes.clone()));
        }
        let at_ms = now_ms + self.delay_ms(rng);
        self.enqueue(at_ms, from, to, Payload::Bus(bytes));
        true
    }

    /// Queues a replication frame behind the earlier frames of the same link, `extra_ms`
    /// later than the network's delay (the time a large transfer takes); it may be lost
    /// (a broken connection) but is never duplicated or reordered.
    pub(crate) fn send_stream(
        &mut self,
        rng: &mut Rng,
        now_ms: u64,
        (from, to): (usize, usize),
        frame: StreamFrame,
        extra_ms: u64,
    ) {
        if !self.connected(from, to) || rng.chance(self.config.drop_per_million, 1_000_000) {
            self.dropped += 1;
            return;
        }
        let tail_ms = self.stream_tail_ms.get(&(from, to)).copied().unwrap_or(0);
        let at_ms = (now_ms + self.delay_ms(rng) + extra_ms).max(tail_ms);
        self.stream_tail_ms.insert((from, to), at_ms);
        self.enqueue(at_ms, from, to, Payload::Stream(frame));
    }

    /// Drops every replication frame `from` has in flight (its process is gone).
    pub(crate) fn drop_streams_from(&mut self, from: usize) {
        let before = self.queue.len();
        self.queue.retain(|Reverse(message)| {
            message.from != from || matches!(message.payload, Payload::Bus(_))
        });
        self.dropped += (before - self.queue.len()) as u64;
    }

    /// Puts a message back to be delivered at `at_ms` (its receiver is paused); messages
    /// put back in the order they were popped keep that order.
    pub(crate) fn defer(&mut self, mut message: InFlight, at_ms: u64) {
        message.deliver_at_ms = at_ms;
        self.next_sequence += 1;
        message.sequence = self.next_sequence;
        if matches!(message.payload, Payload::Stream(_)) {
            let tail = self
                .stream_tail_ms
                .entry((message.from, message.to))
                .or_insert(0);
            *tail = (*tail).max(at_ms);
        }
        self.queue.push(Reverse(message));
    }

    fn delay_ms(&self, rng: &mut Rng) -> u64 {
        let spread = self
            .config
            .delay_ms_max
            .saturating_sub(self.config.delay_ms_min)
            + 1;
        self.config.delay_ms_min + rng.below(spread)
    }

    fn enqueue(&mut self, at_ms: u64, from: usize, to: usize, payload: Payload) {
        self.next_sequence += 1;
        self.queue.push(Reverse(InFlight {
            deliver_at_ms: at_ms,
            sequence: self.next_sequence,
            from,
            to,
            payload,
        }));
    }

    pub(crate) fn next_delivery_ms(&self) -> Option<u64> {
        self.queue
            .peek()
            .map(|Reverse(message)| message.deliver_at_ms)
    }

    /// The next message, if it is due at `now_ms` (and not cut off by a partition since).
    pub(crate) fn pop_due(&mut self, now_ms: u64) -> Option<InFlight> {
        while self.next_delivery_ms().is_some_and(|at| at <= now_ms) {
            let Reverse(message) = self.queue.pop()?;
            if self.connected(message.from, message.to) {
                return Some(message);
            }
            self.dropped += 1;
        }
        None
    }
}
