//! The simulated network: messages in flight ordered by delivery time, random delay,
//! drop, duplication and (through the random delays) reordering, and partitions.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::core::rng::Rng;

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
    /// The encoded message.
    pub(crate) bytes: Vec<u8>,
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
            dropped: 0,
        }
    }

    pub(crate) fn connected(&self, a: usize, b: usize) -> bool {
        self.group_of.get(a) == self.group_of.get(b)
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
            self.enqueue(rng, now_ms, from, to, bytes.clone());
        }
        self.enqueue(rng, now_ms, from, to, bytes);
        true
    }

    fn enqueue(&mut self, rng: &mut Rng, now_ms: u64, from: usize, to: usize, bytes: Vec<u8>) {
        let spread = self
            .config
            .delay_ms_max
            .saturating_sub(self.config.delay_ms_min)
            + 1;
        let delay_ms = self.config.delay_ms_min + rng.below(spread);
        self.next_sequence += 1;
        self.queue.push(Reverse(InFlight {
            deliver_at_ms: now_ms + delay_ms,
            sequence: self.next_sequence,
            from,
            to,
            bytes,
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
