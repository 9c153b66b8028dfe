//! Fuzzing `handle_datagram`: random bytes and mutated valid messages (every body type,
//! headers and gossip naming real members) must be dropped and counted or handled,
//! never panic, and the node must keep running afterwards.
//!
//! `SLOTKV_FUZZ_ROUNDS=N` runs N messages per node instead of the bounded default.

use slotkv_cluster::core::node::{NodeFlags, NodeId};
use slotkv_cluster::core::nodes_conf;
use slotkv_cluster::core::rng::Rng;
use slotkv_cluster::core::slots::SlotRange;
use slotkv_cluster::core::wire::{self, Body, GossipEntry, HandOverMode, Header, Message};
use slotkv_cluster::sim::{SimConfig, Simulator};
use slotkv_cluster::views::{self, PreferredEndpoint};

const NODES: usize = 6;
/// Messages per node when `SLOTKV_FUZZ_ROUNDS` is unset.
const DEFAULT_ROUNDS: u64 = 200;

fn random_id(rng: &mut Rng, known: &[NodeId]) -> NodeId {
    if rng.chance(3, 4) {
        known[rng.below(known.len() as u64) as usize]
    } else {
        let mut bytes = [0u8; 20];
        rng.fill_bytes(&mut bytes);
        NodeId(bytes)
    }
}

fn random_ranges(rng: &mut Rng) -> Vec<SlotRange> {
    let mut ranges = Vec::new();
    let mut start = rng.below(200) as u16;
    for _ in 0..rng.below(4) {
        let end = (start + rng.below(6000) as u16).min(16383);
        ranges.push(SlotRange { start, end });
        if end >= 16382 {
            break;
        }
        start = end + 1 + rng.below(50) as u16;
        if start > 16383 {
            break;
        }
    }
    ranges
}

fn random_epoch(rng: &mut Rng) -> u64 {
    match rng.below(4) {
        0 => u64::MAX - rng.below(2),
        _ => rng.below(40),
    }
}

fn random_gossip(rng: &mut Rng, known: &[NodeId]) -> Vec<GossipEntry> {
    (0..rng.below(6))
        .map(|_| GossipEntry {
            id: random_id(rng, known),
            ip: format!("n{}", rng.below(NODES as u64 + 2)),
            client_port: 7000,
            bus_port: 17000,
            flags: NodeFlags(rng.below(1 << 10) as u16),
            pong_age_ms: if rng.chance(1, 5) {
                u64::MAX
            } else {
                rng.below(100_000)
            },
            ping_pending: rng.chance(1, 2),
        })
        .collect()
}

fn random_message(rng: &mut Rng, known: &[NodeId]) -> Message {
    let header = Header {
        sender: random_id(rng, known),
        current_epoch: random_epoch(rng),
        config_epoch: random_epoch(rng),
        repl_offset: rng.next_u64(),
        flags: NodeFlags(rng.below(1 << 10) as u16),
        master_id: rng.chance(1, 2).then(|| random_id(rng, known)),
        slots: random_ranges(rng),
        ip: format!("n{}", rng.below(NODES as u64 + 2)),
        hostname: String::new(),
        client_port: 7000,
        bus_port: 17000,
        cluster_ok: rng.chance(1, 2),
        mflags: rng.below(4) as u8,
        shard_id: rng.chance(1, 2).then(|| random_id(rng, known)),
    };
    let body = match rng.below(10) {
        0 => Body::Ping(random_gossip(rng, known)),
        1 => Body::Pong(random_gossip(rng, known)),
        2 => Body::Meet(random_gossip(rng, known)),
        3 => Body::Fail {
            node: random_id(rng, known),
        },
        4 => Body::Update {
            node: random_id(rng, known),
            config_epoch: random_epoch(rng),
            slots: random_ranges(rng),
        },
        5 => Body::FailoverAuthRequest,
        6 => Body::FailoverAuthAck,
        7 => Body::MfStart,
        8 => Body::HandOver {
            mode: HandOverMode::Graceful,
        },
        _ => Body::HandOver {
            mode: HandOverMode::WithoutData,
        },
    };
    Message { header, body }
}

fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(4) {
        match rng.below(4) {
            0 if !bytes.is_empty() => {
                let index = rng.below(bytes.len() as u64) as usize;
                bytes[index] ^= 1 << rng.below(8);
            }
            1 if !bytes.is_empty() => {
                let cut = rng.below(bytes.len() as u64) as usize;
                bytes.truncate(cut);
            }
            2 if !bytes.is_empty() => {
                let index = rng.below(bytes.len() as u64) as usize;
                bytes[index] = [0, 0xff, 0xfc, 0xfd, 0xfe][rng.below(5) as usize];
            }
            _ => bytes.push(rng.below(256) as u8),
        }
    }
}

fn fuzz_seed(seed: u64, rounds: u64) {
    // Shown with the panic message if anything below panics.
    println!("fuzz seed {seed}, {rounds} rounds per node");
    let mut sim = Simulator::new(SimConfig::new(NODES, seed, 1000));
    sim.form_cluster(3)
        .unwrap_or_else(|error| panic!("{error}"));
    let known: Vec<NodeId> = (0..NODES).filter_map(|index| sim.id_of(index)).collect();
    let mut rng = Rng::new(seed ^ 0xF0_22);
    let mut malformed = [0u64; NODES];
    for round in 0..rounds * NODES as u64 {
        let to = rng.below(NODES as u64) as usize;
        let from = rng.below(NODES as u64 + 2) as usize;
        let mut bytes = match rng.below(5) {
            0 => {
                let mut bytes = vec![0u8; rng.below(300) as usize];
                rng.fill_bytes(&mut bytes);
                bytes
            }
            _ => wire::encode(&random_message(&mut rng, &known)),
        };
        if rng.chance(1, 2) {
            mutate(&mut rng, &mut bytes);
        }
        if sim.inject_datagram(to, from, &bytes).is_err() {
            malformed[to] += 1;
        }
        if round % 50 == 0 {
            // Keep the nodes ticking among the forged input; forged messages may
            // legitimately break invariants, so only panics matter here.
            let _ = sim.run_for(100);
        }
    }
    for (index, count) in malformed.iter().enumerate() {
        let core = sim.core(index).unwrap();
        assert_eq!(
            core.stats().malformed_dropped,
            *count,
            "seed {seed}: n{index} counted drops"
        );
        // Every view and nodes.conf must still render from whatever was learned.
        let _ = views::cluster_nodes(core, 0);
        let _ = views::cluster_slots(core, PreferredEndpoint::Ip);
        let _ = views::cluster_shards(core, PreferredEndpoint::Ip);
        let _ = views::cluster_info(core);
        let text = nodes_conf::render_nodes_conf(&core.snapshot());
        assert!(
            nodes_conf::parse_nodes_conf(&text).is_ok(),
            "seed {seed}: n{index} nodes.conf reloads"
        );
    }
}

#[test]
fn forged_and_mutated_datagrams_never_panic() {
    let rounds = std::env::var("SLOTKV_FUZZ_ROUNDS")
        .ok()
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(DEFAULT_ROUNDS);
    for seed in 0..3 {
        fuzz_seed(seed, rounds);
    }
}

/// Every random message (every body type, random headers, gossip and slot ranges, some of
/// them deliberately out of range) either decodes back to itself from its encoding and
/// re-encodes to the same bytes, or is refused by the decoder with a reason (an epoch beyond
/// `MAX_EPOCH` and the like): the encoder never writes what the decoder misreads.
#[test]
fn random_messages_round_trip_through_the_wire_format() {
    let messages = std::env::var("SLOTKV_FUZZ_ROUNDS")
        .ok()
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(20_000u64);
    let mut rng = Rng::new(0x5EED);
    let known: Vec<NodeId> = (0..NODES).map(|_| NodeId::random(&mut rng)).collect();
    let mut round_tripped = 0;
    for index in 0..messages {
        let message = random_message(&mut rng, &known);
        let bytes = wire::encode(&message);
        if let Ok(decoded) = wire::decode(&bytes) {
            assert_eq!(decoded, message, "message {index}");
            assert_eq!(
                wire::encode(&decoded),
                bytes,
                "message {index} re-encodes differently"
            );
            round_tripped += 1;
        }
    }
    assert!(
        round_tripped * 4 > messages,
        "only {round_tripped} of {messages} random messages were valid: the generator drifted"
    );
}
